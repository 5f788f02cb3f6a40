//! The circuit breaker service: the pure rules of `domain::breaker` over the
//! [`BreakerStore`] port, so every Lambda instance sees one shared state.
//!
//! Reads go through a short local cache (one DynamoDB read per `cache_ttl_ms`
//! rather than per call); every state change is written with the version
//! condition, and a lost race reloads and decides again, a bounded number of
//! times. A stale cache can therefore only let a few calls through late (an
//! instance that has not seen the circuit open yet); it can never produce a
//! second probe or overwrite another instance's change.

use std::future::Future;
use std::io::Write;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tracing::{info, warn};

use crate::domain::Timestamp;
use crate::domain::breaker::{
    self, Admission, BreakerPolicy, BreakerRecord, BreakerState, CallOutcome, Permit,
};
use crate::error::{Entity, ErrorType, StoreError, TaskError};
use crate::ports::{BreakerStore, VERSION_ATTEMPT_COUNT_MAX};

/// Default life of the cached record: short enough that an instance learns of
/// a circuit opened elsewhere within a second.
pub const CACHE_TTL_MS_DEFAULT: u32 = 1_000;
/// Longest allowed cache life.
pub const CACHE_TTL_MS_MAX: u32 = 60_000;
/// Name of the breaker (its CircuitBreaker table key) unless configured.
pub const SERVICE_NAME_DEFAULT: &str = "payment-gateway";
pub const SERVICE_NAME_LENGTH_MAX: u32 = 128;
/// EMF metric counted each time a circuit opens (alarm: open breaker).
pub const METRIC_BREAKER_OPENED: &str = "CircuitBreakerOpened";

/// Source of "now"; tests move a [`ManualClock`] instead of sleeping.
pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that only moves when told to.
#[cfg(any(test, feature = "fakes"))]
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<Timestamp>,
}

#[cfg(any(test, feature = "fakes"))]
impl ManualClock {
    pub fn new(start: Timestamp) -> Self {
        Self {
            now: Mutex::new(start),
        }
    }

    pub fn advance_millis(&self, millis: i64) {
        let mut now = self.now.lock().unwrap_or_else(PoisonError::into_inner);
        let next = now
            .datetime()
            .saturating_add(time::Duration::milliseconds(millis));
        *now = Timestamp::from_datetime(next);
    }

    pub fn advance_seconds(&self, seconds: i64) {
        self.advance_millis(seconds.saturating_mul(1_000));
    }
}

#[cfg(any(test, feature = "fakes"))]
impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Where EMF metric lines go: stdout in a Lambda, a recorder in tests.
pub trait MetricSink: Send + Sync {
    fn emit(&self, line: &str);
}

/// Writes each line to stdout in one locked write, so it cannot interleave
/// with the JSON log lines Lambda also collects from stdout.
#[derive(Debug, Default, Clone, Copy)]
pub struct StdoutMetrics;

impl MetricSink for StdoutMetrics {
    fn emit(&self, line: &str) {
        let mut stdout = std::io::stdout().lock();
        if let Err(err) = writeln!(stdout, "{line}") {
            warn!(error = %err, "metric line not written");
        }
    }
}

/// Keeps every line, for tests.
#[cfg(any(test, feature = "fakes"))]
#[derive(Debug, Default)]
pub struct RecordedMetrics {
    lines: Mutex<Vec<String>>,
}

#[cfg(any(test, feature = "fakes"))]
impl RecordedMetrics {
    pub fn lines(&self) -> Vec<String> {
        self.lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[cfg(any(test, feature = "fakes"))]
impl MetricSink for RecordedMetrics {
    fn emit(&self, line: &str) {
        self.lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(line.to_owned());
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerSettings {
    /// The breaker's key in the CircuitBreaker table.
    pub service_name: String,
    pub policy: BreakerPolicy,
    /// 0 disables the cache (every call reads the table).
    pub cache_ttl_ms: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BreakerError {
    #[error("circuit breaker {service_name} is open: the gateway was not called")]
    Open { service_name: String },
    #[error("circuit breaker {service_name} state unavailable: {source}")]
    Store {
        service_name: String,
        source: StoreError,
    },
}

impl BreakerError {
    pub fn error_type(&self) -> ErrorType {
        match self {
            Self::Open { .. } => ErrorType::CircuitOpen,
            Self::Store { source, .. } => source.error_type(),
        }
    }
}

impl From<BreakerError> for TaskError {
    fn from(err: BreakerError) -> Self {
        Self::new(err.error_type(), err.to_string())
    }
}

struct Cached {
    record: BreakerRecord,
    read_at: Timestamp,
}

pub struct CircuitBreaker {
    store: Arc<dyn BreakerStore>,
    settings: BreakerSettings,
    clock: Arc<dyn Clock>,
    metrics: Arc<dyn MetricSink>,
    cache: Mutex<Option<Cached>>,
}

impl CircuitBreaker {
    pub fn new(
        store: Arc<dyn BreakerStore>,
        settings: BreakerSettings,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            store,
            settings,
            clock,
            metrics: Arc::new(StdoutMetrics),
            cache: Mutex::new(None),
        }
    }

    /// Sends EMF metric lines to `metrics` instead of stdout.
    pub fn with_metrics(mut self, metrics: Arc<dyn MetricSink>) -> Self {
        self.metrics = metrics;
        self
    }

    pub fn settings(&self) -> &BreakerSettings {
        &self.settings
    }

    /// Runs `call` if the circuit lets it through, then reports how it went
    /// (`classify`). `call` is a future, so a refused call is never started.
    /// A failure to store the outcome is logged, not returned: the call has
    /// happened and its result must reach the caller.
    pub async fn call<T, E>(
        &self,
        call: impl Future<Output = Result<T, E>>,
        classify: impl FnOnce(&Result<T, E>) -> CallOutcome,
    ) -> Result<Result<T, E>, BreakerError> {
        let permit = self.admit().await?;
        let result = call.await;
        if let Err(err) = self.report(permit, classify(&result)).await {
            warn!(breaker = %self.settings.service_name, error = %err,
                "circuit breaker outcome not stored");
        }
        Ok(result)
    }

    /// Asks for permission to call; `Open` when the circuit refuses. If the
    /// shared state cannot be read the call is not made either (a retryable
    /// `Store` error): sending blind would defeat the breaker exactly when
    /// the platform is degraded, and Step Functions retries the step.
    pub async fn admit(&self) -> Result<Permit, BreakerError> {
        let now = self.clock.now();
        for attempt in 0..VERSION_ATTEMPT_COUNT_MAX {
            let current = self.current(now, attempt == 0).await?;
            match breaker::admit(&current, &self.settings.policy, now) {
                Admission::Allowed => return Ok(Permit::Normal),
                Admission::Refused => {
                    return Err(BreakerError::Open {
                        service_name: self.settings.service_name.clone(),
                    });
                }
                Admission::Probe { next, permit } => {
                    if self.write(&current, next, now).await? {
                        return Ok(permit);
                    }
                }
            }
        }
        Err(self.lost_every_race())
    }

    /// Reports the outcome of a call admitted with `permit`.
    pub async fn report(&self, permit: Permit, outcome: CallOutcome) -> Result<(), BreakerError> {
        let now = self.clock.now();
        for attempt in 0..VERSION_ATTEMPT_COUNT_MAX {
            let current = self.current(now, attempt == 0).await?;
            let policy = &self.settings.policy;
            let Some(next) = breaker::record(&current, permit, outcome, policy, now) else {
                return Ok(());
            };
            if self.write(&current, next, now).await? {
                return Ok(());
            }
        }
        Err(self.lost_every_race())
    }

    /// The stored record, read now (bypassing and refreshing the cache).
    pub async fn state(&self) -> Result<BreakerRecord, BreakerError> {
        let now = self.clock.now();
        self.current(now, false).await
    }

    /// The record to decide on: the cached one if `cached_ok` and fresh.
    async fn current(
        &self,
        now: Timestamp,
        cached_ok: bool,
    ) -> Result<BreakerRecord, BreakerError> {
        if cached_ok && let Some(record) = self.fresh_cached(now) {
            return Ok(record);
        }
        let record = self
            .store
            .load(&self.settings.service_name, now)
            .await
            .map_err(|source| self.store_error(source))?;
        self.remember(record.clone(), now);
        Ok(record)
    }

    /// Stores `next` over `current`. `Ok(false)` when another instance wrote
    /// first: the caller reloads and decides again.
    async fn write(
        &self,
        current: &BreakerRecord,
        next: BreakerRecord,
        now: Timestamp,
    ) -> Result<bool, BreakerError> {
        match self.store.save(&next).await {
            Ok(()) => {
                if next.state != current.state {
                    self.announce(current, &next);
                }
                self.remember(next, now);
                Ok(true)
            }
            Err(StoreError::StaleVersion { .. }) => {
                self.forget();
                Ok(false)
            }
            Err(source) => {
                self.forget();
                Err(self.store_error(source))
            }
        }
    }

    /// Logs a state change; an opening also emits its EMF metric. Only the
    /// instance whose write won reaches this, so each change is told once.
    fn announce(&self, current: &BreakerRecord, next: &BreakerRecord) {
        info!(breaker = %next.service_name, from = %current.state, to = %next.state,
            consecutiveFailures = next.consecutive_failures,
            consecutiveSuccesses = next.consecutive_successes,
            version = next.version, "circuit breaker state changed");
        if next.state == BreakerState::Open {
            let line = breaker_opened_metric(&next.service_name, next.updated_at);
            self.metrics.emit(&line);
        }
    }

    fn fresh_cached(&self, now: Timestamp) -> Option<BreakerRecord> {
        let ttl_ms = i128::from(self.settings.cache_ttl_ms);
        let cache = self.lock_cache();
        let cached = cache.as_ref()?;
        let age_ms = now
            .unix_millis()
            .saturating_sub(cached.read_at.unix_millis());
        // A clock that went backwards (age < 0) does not make an entry fresh.
        ((0..ttl_ms).contains(&age_ms)).then(|| cached.record.clone())
    }

    fn remember(&self, record: BreakerRecord, read_at: Timestamp) {
        *self.lock_cache() = Some(Cached { record, read_at });
    }

    fn forget(&self) {
        *self.lock_cache() = None;
    }

    fn lock_cache(&self) -> MutexGuard<'_, Option<Cached>> {
        // The cache is only ever replaced whole, so a poisoned lock holds a
        // complete value (or none) and is safe to keep using.
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn store_error(&self, source: StoreError) -> BreakerError {
        BreakerError::Store {
            service_name: self.settings.service_name.clone(),
            source,
        }
    }

    /// Every bounded attempt lost the version race: retryable.
    fn lost_every_race(&self) -> BreakerError {
        self.store_error(StoreError::StaleVersion {
            entity: Entity::Breaker,
            id: self.settings.service_name.clone(),
        })
    }
}

/// The CloudWatch Embedded Metric Format line for one opening of `service_name`:
/// CloudWatch Logs turns it into the `PaymentSaga/CircuitBreakerOpened` metric
/// (dimension `Service`) that the open-breaker alarm watches.
pub fn breaker_opened_metric(service_name: &str, at: Timestamp) -> String {
    crate::observability::count_metric_line(METRIC_BREAKER_OPENED, service_name, at)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use crate::error::RepoError;
    use crate::memory::InMemoryStore;

    use super::*;

    fn start() -> Timestamp {
        Timestamp::from_unix_seconds(1_800_000_000).unwrap()
    }

    fn settings(cache_ttl_ms: u32) -> BreakerSettings {
        BreakerSettings {
            service_name: SERVICE_NAME_DEFAULT.into(),
            policy: BreakerPolicy::new(2, 30, 1, 10).unwrap(),
            cache_ttl_ms,
        }
    }

    fn breaker(
        store: &Arc<InMemoryStore>,
        clock: &Arc<ManualClock>,
        ttl_ms: u32,
    ) -> CircuitBreaker {
        CircuitBreaker::new(store.clone(), settings(ttl_ms), clock.clone())
            .with_metrics(Arc::new(RecordedMetrics::default()))
    }

    async fn fail(b: &CircuitBreaker) -> Result<Result<(), ()>, BreakerError> {
        b.call(async { Err(()) }, |_| CallOutcome::Failure).await
    }

    #[tokio::test]
    async fn opens_after_the_threshold_and_refuses_without_calling() {
        // GIVEN a breaker with failure threshold 2
        let store = Arc::new(InMemoryStore::new());
        let clock = Arc::new(ManualClock::new(start()));
        let metrics = Arc::new(RecordedMetrics::default());
        let b = breaker(&store, &clock, 1_000).with_metrics(metrics.clone());
        // WHEN two calls fail
        fail(&b).await.unwrap().unwrap_err();
        fail(&b).await.unwrap().unwrap_err();
        // THEN the stored state is OPEN, the opening was counted once,
        // and a third call is not started
        assert_eq!(b.state().await.unwrap().state, BreakerState::Open);
        assert_eq!(
            metrics.lines(),
            [breaker_opened_metric(SERVICE_NAME_DEFAULT, start())]
        );
        let err = b
            .call(async { panic!("must not run") }, |_: &Result<(), ()>| {
                CallOutcome::Success
            })
            .await
            .unwrap_err();
        assert_eq!(err.error_type(), ErrorType::CircuitOpen);
        assert_eq!(TaskError::from(err).error_type, ErrorType::CircuitOpen);
    }

    #[tokio::test]
    async fn another_instance_sees_the_open_circuit_once_its_cache_expires() {
        let store = Arc::new(InMemoryStore::new());
        let clock = Arc::new(ManualClock::new(start()));
        let (a, b) = (
            breaker(&store, &clock, 1_000),
            breaker(&store, &clock, 1_000),
        );
        // b caches CLOSED, then a opens the circuit
        b.admit().await.unwrap();
        fail(&a).await.unwrap().unwrap_err();
        fail(&a).await.unwrap().unwrap_err();
        // within b's cache life b still lets calls through; after it, b refuses
        assert_eq!(b.admit().await.unwrap(), Permit::Normal);
        clock.advance_millis(1_000);
        assert!(matches!(b.admit().await, Err(BreakerError::Open { .. })));
    }

    #[tokio::test]
    async fn failures_from_two_instances_add_up_through_version_races() {
        // GIVEN two instances that both cached the CLOSED record (version 0)
        let store = Arc::new(InMemoryStore::new());
        let clock = Arc::new(ManualClock::new(start()));
        let (a, b) = (
            breaker(&store, &clock, 60_000),
            breaker(&store, &clock, 60_000),
        );
        a.admit().await.unwrap();
        b.admit().await.unwrap();
        // WHEN each reports one failure from its stale cache
        a.report(Permit::Normal, CallOutcome::Failure)
            .await
            .unwrap();
        b.report(Permit::Normal, CallOutcome::Failure)
            .await
            .unwrap();
        // THEN b lost the race, reloaded and counted on top: OPEN at version 2
        let stored = a.state().await.unwrap();
        assert_eq!(stored.state, BreakerState::Open);
        assert_eq!(stored.version, 2);
    }

    #[tokio::test]
    async fn a_store_failure_on_report_is_logged_not_returned() {
        let store = Arc::new(InMemoryStore::new());
        let clock = Arc::new(ManualClock::new(start()));
        let b = breaker(&store, &clock, 0);
        store.fail_next_write(RepoError::Throttled("slow down".into()));
        // the call still returns its result although its failure was not stored
        assert_eq!(fail(&b).await.unwrap(), Err(()));
        assert_eq!(b.state().await.unwrap().consecutive_failures, 0);
    }

    #[tokio::test]
    async fn half_open_probe_is_single_and_its_success_closes() {
        let store = Arc::new(InMemoryStore::new());
        let clock = Arc::new(ManualClock::new(start()));
        let (a, b) = (
            breaker(&store, &clock, 1_000),
            breaker(&store, &clock, 1_000),
        );
        fail(&a).await.unwrap().unwrap_err();
        fail(&a).await.unwrap().unwrap_err();
        clock.advance_seconds(30);
        // a takes the probe lease; b (and a again) are refused meanwhile
        let permit = a.admit().await.unwrap();
        assert!(matches!(permit, Permit::Probe { .. }));
        assert!(matches!(b.admit().await, Err(BreakerError::Open { .. })));
        assert!(matches!(a.admit().await, Err(BreakerError::Open { .. })));
        // the probe succeeds (threshold 1): CLOSED for everybody
        a.report(permit, CallOutcome::Success).await.unwrap();
        clock.advance_millis(1_000);
        assert_eq!(b.admit().await.unwrap(), Permit::Normal);
        assert_eq!(b.state().await.unwrap().state, BreakerState::Closed);
    }

    #[test]
    fn the_metric_line_is_embedded_metric_format() {
        let line = breaker_opened_metric("payment-gateway", start());
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "_aws": {"Timestamp": 1_800_000_000_000_i64, "CloudWatchMetrics": [{
                    "Namespace": "PaymentSaga", "Dimensions": [["Service"]],
                    "Metrics": [{"Name": "CircuitBreakerOpened", "Unit": "Count"}]}]},
                "Service": "payment-gateway", "CircuitBreakerOpened": 1
            })
        );
        assert!(!line.contains('\n'));
    }
}
