//! Circuit-breaker state as stored in the CircuitBreaker table, shared by all
//! payments-adapter instances, and the pure rules that move it (DESIGN §6):
//!
//! CLOSED → OPEN after `failure_threshold` consecutive failures → after
//! `open_seconds`, one HALF_OPEN probe at a time → CLOSED after
//! `success_threshold` consecutive probe successes; a failed probe re-opens.
//!
//! "One probe at a time" across instances is a lease: the instance that wins
//! the versioned write of `probe_lease_until` probes, every other instance is
//! refused until the probe reports or its lease expires (a crashed prober must
//! not keep the circuit shut for ever). The rules take `now` explicitly and do
//! no I/O; `crate::breaker` loads and saves records around them.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::timestamp::Timestamp;

/// Largest failure or success threshold: beyond that a breaker never trips.
pub const BREAKER_THRESHOLD_MAX: u32 = 1_000;
/// Longest open period: one day.
pub const OPEN_SECONDS_MAX: u32 = 86_400;
/// Longest probe lease: Lambda's own maximum duration (15 minutes), since a
/// probe cannot outlive the invocation that makes it.
pub const PROBE_LEASE_SECONDS_MAX: u32 = 900;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "CLOSED",
            Self::Open => "OPEN",
            Self::HalfOpen => "HALF_OPEN",
        }
    }
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BreakerRecord {
    pub service_name: String,
    pub state: BreakerState,
    pub consecutive_failures: u32,
    pub consecutive_successes: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opened_at: Option<Timestamp>,
    /// While HALF_OPEN, the single probe in flight holds this lease until it expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_lease_until: Option<Timestamp>,
    pub updated_at: Timestamp,
    /// 0 = never written; writes are conditioned on the version read.
    pub version: u64,
}

impl BreakerRecord {
    pub fn closed(service_name: String, at: Timestamp) -> Self {
        Self {
            service_name,
            state: BreakerState::Closed,
            consecutive_failures: 0,
            consecutive_successes: 0,
            opened_at: None,
            probe_lease_until: None,
            updated_at: at,
            version: 0,
        }
    }

    /// When an OPEN circuit lets its first probe through. A record written
    /// without `opened_at` (never by these rules) falls back to `updated_at`.
    pub fn probe_allowed_at(&self, policy: &BreakerPolicy) -> Timestamp {
        self.opened_at
            .unwrap_or(self.updated_at)
            .plus_seconds(i64::from(policy.open_seconds))
    }

    /// The record that follows this one: one version later, written at `now`.
    fn successor(&self, now: Timestamp) -> Self {
        Self {
            version: self.version.saturating_add(1),
            updated_at: now,
            ..self.clone()
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name} must be an integer between 1 and {max}, got {value}")]
pub struct PolicyError {
    pub name: &'static str,
    pub value: u32,
    pub max: u32,
}

/// The thresholds of one breaker; every field is validated to `1..=MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerPolicy {
    failure_threshold: u32,
    open_seconds: u32,
    success_threshold: u32,
    probe_lease_seconds: u32,
}

impl BreakerPolicy {
    pub fn new(
        failure_threshold: u32,
        open_seconds: u32,
        success_threshold: u32,
        probe_lease_seconds: u32,
    ) -> Result<Self, PolicyError> {
        let check = |name: &'static str, value: u32, max: u32| {
            if (1..=max).contains(&value) {
                Ok(value)
            } else {
                Err(PolicyError { name, value, max })
            }
        };
        Ok(Self {
            failure_threshold: check("failureThreshold", failure_threshold, BREAKER_THRESHOLD_MAX)?,
            open_seconds: check("openSeconds", open_seconds, OPEN_SECONDS_MAX)?,
            success_threshold: check("successThreshold", success_threshold, BREAKER_THRESHOLD_MAX)?,
            probe_lease_seconds: check(
                "probeLeaseSeconds",
                probe_lease_seconds,
                PROBE_LEASE_SECONDS_MAX,
            )?,
        })
    }

    pub fn failure_threshold(&self) -> u32 {
        self.failure_threshold
    }

    pub fn open_seconds(&self) -> u32 {
        self.open_seconds
    }

    pub fn success_threshold(&self) -> u32 {
        self.success_threshold
    }

    pub fn probe_lease_seconds(&self) -> u32 {
        self.probe_lease_seconds
    }
}

/// How a guarded call went, as far as the breaker is concerned: whether the
/// protected service answered, not whether the business outcome was good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallOutcome {
    Success,
    Failure,
}

/// What a caller was allowed to do; handed back when it reports the outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    /// The circuit was CLOSED (or the caller's view of it was).
    Normal,
    /// The caller holds the HALF_OPEN probe lease that ends at `lease_until`.
    Probe { lease_until: Timestamp },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// CLOSED: call, nothing to write.
    Allowed,
    /// Call as the probe, but only after `next` (which holds the lease) is
    /// stored with its version condition: losing that race means another
    /// instance probes instead.
    Probe { next: BreakerRecord, permit: Permit },
    /// OPEN, or another instance holds a live probe lease: do not call.
    Refused,
}

/// Whether a call may go out now.
pub fn admit(record: &BreakerRecord, policy: &BreakerPolicy, now: Timestamp) -> Admission {
    match record.state {
        BreakerState::Closed => Admission::Allowed,
        BreakerState::Open if now < record.probe_allowed_at(policy) => Admission::Refused,
        BreakerState::HalfOpen if record.probe_lease_until.is_some_and(|until| now < until) => {
            Admission::Refused
        }
        // OPEN long enough, or HALF_OPEN with no live lease: take the lease.
        BreakerState::Open | BreakerState::HalfOpen => {
            let lease_until = now.plus_seconds(i64::from(policy.probe_lease_seconds));
            let mut next = record.successor(now);
            if record.state == BreakerState::Open {
                // A fresh half-open period counts its successes from zero.
                next.consecutive_successes = 0;
            }
            next.state = BreakerState::HalfOpen;
            next.probe_lease_until = Some(lease_until);
            Admission::Probe {
                next,
                permit: Permit::Probe { lease_until },
            }
        }
    }
}

/// The record after a call reported `outcome`, or `None` when nothing changes
/// (so a healthy CLOSED circuit costs no write per call).
pub fn record(
    record: &BreakerRecord,
    permit: Permit,
    outcome: CallOutcome,
    policy: &BreakerPolicy,
    now: Timestamp,
) -> Option<BreakerRecord> {
    match (record.state, outcome) {
        (BreakerState::Closed, CallOutcome::Success) => {
            (record.consecutive_failures > 0).then(|| closed(record, now))
        }
        (BreakerState::Closed, CallOutcome::Failure) => {
            let failures = record.consecutive_failures.saturating_add(1);
            if failures >= policy.failure_threshold {
                Some(opened(record, failures, now))
            } else {
                let mut next = record.successor(now);
                next.consecutive_failures = failures;
                Some(next)
            }
        }
        // Admitted before the circuit opened: the open period decides now.
        (BreakerState::Open, _) => None,
        // Only the probe's own outcome moves a HALF_OPEN circuit; calls admitted
        // under an older CLOSED view, or a prober whose lease was taken over,
        // must not close (or re-open) it on the new probe's behalf.
        (BreakerState::HalfOpen, _) if !holds_lease(record, permit) => None,
        (BreakerState::HalfOpen, CallOutcome::Failure) => Some(opened(
            record,
            record.consecutive_failures.saturating_add(1),
            now,
        )),
        (BreakerState::HalfOpen, CallOutcome::Success) => {
            let successes = record.consecutive_successes.saturating_add(1);
            if successes >= policy.success_threshold {
                Some(closed(record, now))
            } else {
                let mut next = record.successor(now);
                next.consecutive_successes = successes;
                // The probe is done: the next caller may take the lease.
                next.probe_lease_until = None;
                Some(next)
            }
        }
    }
}

fn holds_lease(record: &BreakerRecord, permit: Permit) -> bool {
    match permit {
        Permit::Normal => false,
        Permit::Probe { lease_until } => record.probe_lease_until == Some(lease_until),
    }
}

fn opened(record: &BreakerRecord, failures: u32, now: Timestamp) -> BreakerRecord {
    BreakerRecord {
        state: BreakerState::Open,
        consecutive_failures: failures,
        consecutive_successes: 0,
        opened_at: Some(now),
        probe_lease_until: None,
        ..record.successor(now)
    }
}

fn closed(record: &BreakerRecord, now: Timestamp) -> BreakerRecord {
    BreakerRecord {
        state: BreakerState::Closed,
        consecutive_failures: 0,
        consecutive_successes: 0,
        opened_at: None,
        probe_lease_until: None,
        ..record.successor(now)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_unix_seconds(1_800_000_000 + seconds).unwrap()
    }

    /// failures 3, open 30 s, successes 2, lease 10 s.
    fn policy() -> BreakerPolicy {
        BreakerPolicy::new(3, 30, 2, 10).unwrap()
    }

    fn fresh() -> BreakerRecord {
        BreakerRecord::closed("payment-gateway".into(), at(0))
    }

    fn fail(r: &BreakerRecord, now: Timestamp) -> BreakerRecord {
        record(r, Permit::Normal, CallOutcome::Failure, &policy(), now).unwrap()
    }

    fn open_at(seconds: i64) -> BreakerRecord {
        let mut r = fresh();
        for _ in 0..3 {
            r = fail(&r, at(seconds));
        }
        assert_eq!(r.state, BreakerState::Open);
        r
    }

    fn probe(r: &BreakerRecord, now: Timestamp) -> (BreakerRecord, Permit) {
        match admit(r, &policy(), now) {
            Admission::Probe { next, permit } => (next, permit),
            other => panic!("expected a probe, got {other:?}"),
        }
    }

    #[test]
    fn policy_values_are_bounded() {
        assert!(BreakerPolicy::new(0, 30, 2, 10).is_err());
        assert!(BreakerPolicy::new(5, 0, 2, 10).is_err());
        assert!(BreakerPolicy::new(5, 30, 0, 10).is_err());
        assert!(BreakerPolicy::new(5, 30, 2, 901).is_err());
        let err = BreakerPolicy::new(1_001, 30, 2, 10).unwrap_err();
        assert_eq!(err.name, "failureThreshold");
        assert!(BreakerPolicy::new(1_000, 86_400, 1_000, 900).is_ok());
    }

    #[test]
    fn closed_allows_and_a_clean_success_writes_nothing() {
        // GIVEN a fresh CLOSED breaker
        let r = fresh();
        // THEN calls go through and success changes nothing
        assert_eq!(admit(&r, &policy(), at(1)), Admission::Allowed);
        assert_eq!(
            record(&r, Permit::Normal, CallOutcome::Success, &policy(), at(1)),
            None
        );
    }

    #[test]
    fn failures_below_the_threshold_are_counted_and_a_success_resets_them() {
        let r = fail(&fail(&fresh(), at(1)), at(2));
        assert_eq!(r.state, BreakerState::Closed);
        assert_eq!((r.consecutive_failures, r.version), (2, 2));
        let reset = record(&r, Permit::Normal, CallOutcome::Success, &policy(), at(3)).unwrap();
        assert_eq!(reset.consecutive_failures, 0);
        assert_eq!(reset.state, BreakerState::Closed);
        assert_eq!(reset.version, 3);
        assert_eq!(reset.updated_at, at(3));
    }

    #[test]
    fn the_threshold_failure_opens_the_circuit() {
        // WHEN the third consecutive failure is reported at t=5
        let r = open_at(5);
        // THEN it is OPEN since t=5 and refuses calls for the open period
        assert_eq!(r.opened_at, Some(at(5)));
        assert_eq!(r.consecutive_failures, 3);
        assert_eq!(admit(&r, &policy(), at(5)), Admission::Refused);
        assert_eq!(admit(&r, &policy(), at(34)), Admission::Refused);
    }

    #[test]
    fn outcomes_reported_while_open_change_nothing() {
        let r = open_at(0);
        for outcome in [CallOutcome::Success, CallOutcome::Failure] {
            assert_eq!(record(&r, Permit::Normal, outcome, &policy(), at(1)), None);
        }
    }

    #[test]
    fn after_the_open_period_one_probe_takes_the_lease() {
        // GIVEN a circuit opened at t=0 (open 30 s, lease 10 s)
        let r = open_at(0);
        // WHEN a caller arrives at t=30
        let (next, permit) = probe(&r, at(30));
        // THEN it probes under a lease until t=40, and others are refused
        assert_eq!(next.state, BreakerState::HalfOpen);
        assert_eq!(next.probe_lease_until, Some(at(40)));
        assert_eq!(next.version, r.version + 1);
        assert_eq!(
            permit,
            Permit::Probe {
                lease_until: at(40)
            }
        );
        assert_eq!(admit(&next, &policy(), at(31)), Admission::Refused);
        assert_eq!(admit(&next, &policy(), at(39)), Admission::Refused);
    }

    #[test]
    fn an_expired_lease_lets_another_caller_probe() {
        let (half_open, _) = probe(&open_at(0), at(30));
        let (next, permit) = probe(&half_open, at(40));
        assert_eq!(
            permit,
            Permit::Probe {
                lease_until: at(50)
            }
        );
        assert_eq!(next.version, half_open.version + 1);
    }

    #[test]
    fn probe_successes_close_the_circuit_after_the_threshold() {
        let (half_open, permit) = probe(&open_at(0), at(30));
        // first success: still HALF_OPEN, lease released for the next probe
        let one = record(&half_open, permit, CallOutcome::Success, &policy(), at(31)).unwrap();
        assert_eq!(one.state, BreakerState::HalfOpen);
        assert_eq!(one.consecutive_successes, 1);
        assert_eq!(one.probe_lease_until, None);
        // second probe succeeds: CLOSED, counters cleared
        let (leased, permit) = probe(&one, at(32));
        assert_eq!(leased.consecutive_successes, 1);
        let closed = record(&leased, permit, CallOutcome::Success, &policy(), at(33)).unwrap();
        assert_eq!(closed.state, BreakerState::Closed);
        assert_eq!(
            (closed.consecutive_failures, closed.consecutive_successes),
            (0, 0)
        );
        assert_eq!((closed.opened_at, closed.probe_lease_until), (None, None));
    }

    #[test]
    fn a_failed_probe_reopens_for_a_new_period() {
        let (half_open, permit) = probe(&open_at(0), at(30));
        let reopened = record(&half_open, permit, CallOutcome::Failure, &policy(), at(31)).unwrap();
        assert_eq!(reopened.state, BreakerState::Open);
        assert_eq!(reopened.opened_at, Some(at(31)));
        assert_eq!(reopened.probe_lease_until, None);
        assert_eq!(admit(&reopened, &policy(), at(60)), Admission::Refused);
        assert!(matches!(
            admit(&reopened, &policy(), at(61)),
            Admission::Probe { .. }
        ));
    }

    #[test]
    fn only_the_lease_holder_moves_a_half_open_circuit() {
        let (half_open, _) = probe(&open_at(0), at(30));
        let stranger = Permit::Probe {
            lease_until: at(99),
        };
        for permit in [Permit::Normal, stranger] {
            for outcome in [CallOutcome::Success, CallOutcome::Failure] {
                assert_eq!(record(&half_open, permit, outcome, &policy(), at(31)), None);
            }
        }
    }

    #[test]
    fn a_reopened_circuit_probes_from_zero_successes() {
        let (half_open, permit) = probe(&open_at(0), at(30));
        let one = record(&half_open, permit, CallOutcome::Success, &policy(), at(31)).unwrap();
        let (leased, permit) = probe(&one, at(32));
        let reopened = record(&leased, permit, CallOutcome::Failure, &policy(), at(33)).unwrap();
        assert_eq!(reopened.consecutive_successes, 0);
        let (again, _) = probe(&reopened, at(63));
        assert_eq!(again.consecutive_successes, 0);
    }

    #[test]
    fn states_have_wire_names() {
        assert_eq!(BreakerState::HalfOpen.to_string(), "HALF_OPEN");
        assert_eq!(
            serde_json::to_value(BreakerState::HalfOpen).unwrap(),
            serde_json::json!("HALF_OPEN")
        );
    }

    #[derive(Debug, Clone)]
    enum Step {
        Admit,
        Report(CallOutcome),
    }

    fn step() -> impl Strategy<Value = (u8, Step)> {
        let step = prop_oneof![
            Just(Step::Admit),
            Just(Step::Report(CallOutcome::Success)),
            Just(Step::Report(CallOutcome::Failure)),
        ];
        (0_u8..20, step)
    }

    fn check_invariants(r: &BreakerRecord, p: &BreakerPolicy) {
        match r.state {
            BreakerState::Closed => {
                assert!(r.consecutive_failures < p.failure_threshold());
                assert_eq!(r.consecutive_successes, 0);
                assert_eq!((r.opened_at, r.probe_lease_until), (None, None));
            }
            BreakerState::Open => {
                assert!(r.opened_at.is_some());
                assert_eq!(r.probe_lease_until, None);
            }
            BreakerState::HalfOpen => {
                assert!(r.consecutive_successes < p.success_threshold());
                assert!(r.opened_at.is_some());
            }
        }
    }

    proptest! {
        /// Any interleaving of admissions and reports, by callers holding the
        /// permits they were given, keeps the record consistent: versions move
        /// by one per write, an OPEN circuit refuses until its period is over,
        /// and a live lease is never handed out twice.
        #[test]
        fn any_sequence_keeps_the_breaker_consistent(
            failures in 1_u32..5, open_seconds in 1_u32..40, successes in 1_u32..4,
            lease in 1_u32..15, steps in proptest::collection::vec(step(), 1..200),
        ) {
            let p = BreakerPolicy::new(failures, open_seconds, successes, lease).unwrap();
            let mut r = fresh();
            let mut now = at(0);
            let mut permits: Vec<Permit> = vec![Permit::Normal];
            for (advance, step) in steps {
                now = now.plus_seconds(i64::from(advance));
                let before = r.clone();
                match step {
                    Step::Admit => match admit(&r, &p, now) {
                        Admission::Allowed => {
                            prop_assert_eq!(r.state, BreakerState::Closed);
                            permits.push(Permit::Normal);
                        }
                        Admission::Refused => prop_assert_ne!(r.state, BreakerState::Closed),
                        Admission::Probe { next, permit } => {
                            prop_assert!(before.probe_lease_until.is_none_or(|u| u <= now));
                            prop_assert_eq!(admit(&next, &p, now), Admission::Refused);
                            permits.push(permit);
                            r = next;
                        }
                    },
                    Step::Report(outcome) => {
                        let permit = permits.pop().unwrap_or(Permit::Normal);
                        if let Some(next) = record(&r, permit, outcome, &p, now) {
                            r = next;
                        }
                    }
                }
                if r != before {
                    prop_assert_eq!(r.version, before.version + 1);
                    prop_assert_eq!(r.updated_at, now);
                }
                if r.state == BreakerState::Open && now < r.probe_allowed_at(&p) {
                    prop_assert_eq!(admit(&r, &p, now), Admission::Refused);
                }
                check_invariants(&r, &p);
            }
        }
    }
}
