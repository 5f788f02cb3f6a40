//! The template's schedule: the reconciler, as EventBridge runs it. A few
//! runs land at random moments while the clients are busy, each with a
//! random age threshold, zero included (it must be safe beside live sagas
//! and beside another copy of itself: sometimes two runs overlap); then,
//! once the world is quiet and the sagas' worst case has passed, it runs
//! every five minutes, as deployed, until a run leaves nothing the gateway
//! could not answer yet.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use reconciler::{Outcome, ReconcileRequest};
use shared::domain::Timestamp;

use crate::env::Env;

/// Runs while the clients are busy, at most.
const BUSY_RUN_COUNT_MAX: u64 = 3;
/// Virtual time over which the busy runs are spread.
const BUSY_WINDOW_MS: u64 = 300_000;
/// The template's schedule: every five minutes.
const PERIOD_MS: u64 = 300_000;
/// Scheduled runs once quiet, at most (an hour of them).
const QUIET_RUN_COUNT_MAX: u32 = 12;

/// Outcomes of every run, counted (`reconciler RESOLVED`, …).
pub type Tally = BTreeMap<String, u64>;

fn record(env: &Env, tally: &mut Tally, report: &reconciler::ReconcileReport, label: &str) {
    for finding in &report.findings {
        env.trace(
            &finding.id,
            format!(
                "reconciler ({label}): {:?} {}",
                finding.outcome, finding.detail
            ),
        );
    }
    for (outcome, count) in &report.counts {
        *tally.entry(format!("reconciler {outcome:?}")).or_default() += u64::from(*count);
    }
}

/// One run's report, or `None` (traced) when the run failed as a whole.
async fn attempt(
    env: &Env,
    deps: &reconciler::Deps,
    request: &ReconcileRequest,
    label: &str,
) -> Option<reconciler::ReconcileReport> {
    match reconciler::reconcile(deps, request, Timestamp::now()).await {
        Ok(report) => Some(report),
        Err(err) => {
            env.trace("-", format!("reconciler ({label}) failed: {err}"));
            None
        }
    }
}

async fn run(env: &Env, deps: &reconciler::Deps, request: &ReconcileRequest, label: &str) -> Tally {
    let mut tally = Tally::new();
    match attempt(env, deps, request, label).await {
        Some(report) => record(env, &mut tally, &report, label),
        None => *tally.entry("reconciler run failed".to_owned()).or_default() += 1,
    }
    tally
}

/// The busy-time runs, as detached tasks; their tallies arrive on the
/// receivers.
pub fn start_busy_runs(
    env: &Env,
    deps: &Arc<reconciler::Deps>,
) -> Vec<tokio::sync::oneshot::Receiver<Tally>> {
    let count = env.range(0..=BUSY_RUN_COUNT_MAX);
    (0..count)
        .map(|number| {
            let delay_ms = env.range(0..=BUSY_WINDOW_MS);
            let age = |default: u32| {
                if env.chance(1, 2) {
                    Some(0)
                } else {
                    Some(u32::try_from(env.range(0..=u64::from(default))).unwrap_or(default))
                }
            };
            let request = ReconcileRequest {
                payment_age_min_seconds: age(reconciler::PAYMENT_AGE_MIN_SECONDS_DEFAULT),
                refund_age_min_seconds: age(reconciler::REFUND_AGE_MIN_SECONDS_DEFAULT),
                item_count_max: Some(u32::try_from(env.range(1..=64)).unwrap_or(64)),
                ..ReconcileRequest::default()
            };
            let (env, deps) = (env.clone(), deps.clone());
            env.clone().spawn(async move {
                tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                run(&env, &deps, &request, &format!("busy run {number}")).await
            })
        })
        .collect()
}

/// The scheduled runs once everything is quiet: first past the sagas' worst
/// case, then every [`PERIOD_MS`] while the last run had something the
/// gateway could not answer yet.
pub async fn run_until_settled(env: &Env, deps: &reconciler::Deps) -> Tally {
    let mut tally = Tally::new();
    let worst_case_s =
        reconciler::PAYMENT_AGE_MIN_SECONDS_DEFAULT.max(reconciler::REFUND_AGE_MIN_SECONDS_DEFAULT);
    tokio::time::sleep(Duration::from_secs(u64::from(worst_case_s))).await;
    for number in 0..QUIET_RUN_COUNT_MAX {
        let request = ReconcileRequest::default();
        let label = format!("scheduled run {number}");
        let report = attempt(env, deps, &request, &label).await;
        let failed = report.is_none();
        env.quiesce().await;
        // What the gateway or the store could not answer this time (a
        // mismatch stays for a person: asking again changes nothing).
        let unanswered = report.as_ref().map_or(0, |report| {
            let unknown = report.counts.get(&Outcome::Unknown).copied().unwrap_or(0);
            unknown.saturating_add(u32::try_from(report.unread.len()).unwrap_or(u32::MAX))
        });
        if let Some(report) = &report {
            record(env, &mut tally, report, &label);
        }
        if !failed && unanswered == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(PERIOD_MS)).await;
    }
    tally
}

/// api-handler's `ReconcileTrigger`: a verified gateway webhook's items,
/// reconciled as an asynchronous Lambda invoke would (a detached run a
/// moment later).
pub struct OnDemand {
    pub env: Env,
    pub deps: Arc<reconciler::Deps>,
}

#[async_trait::async_trait]
impl api_handler::ReconcileTrigger for OnDemand {
    async fn reconcile(&self, request: &ReconcileRequest) -> Result<(), String> {
        let (env, deps, request) = (self.env.clone(), self.deps.clone(), request.clone());
        let _detached = self.env.spawn(async move {
            env.latency(5..=200).await;
            let tally = run(&env, &deps, &request, "webhook").await;
            drop(tally);
        });
        Ok(())
    }
}
