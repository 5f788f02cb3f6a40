//! What every simulated component shares: the seed's randomness, its fault
//! plan, virtual time and the trace. One seed runs on one thread in a paused
//! current-thread tokio runtime, so time only moves when every task waits,
//! and the order tasks run in depends on nothing but the seed.

use std::collections::BTreeMap;
use std::future::Future;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use time::OffsetDateTime;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use ulid::Ulid;

use crate::faults::{Fault, FaultPlan, FaultSet};

/// Wall-clock time at the start of every seed (2030-01-01T00:00:00Z).
const START_UNIX_SECONDS: i64 = 1_893_456_000;
/// Trace lines kept per seed; a seed that writes more keeps the first ones.
const TRACE_LINE_COUNT_MAX: usize = 200_000;

/// One line of a seed's trace: when, about what (a payment or refund id, or
/// `-`), and what happened.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TraceLine {
    pub at_ms: u64,
    pub subject: String,
    pub text: String,
}

impl std::fmt::Display for TraceLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let seconds = self.at_ms / 1000;
        let millis = self.at_ms % 1000;
        write!(
            f,
            "{seconds:>5}.{millis:03}s {:<30} {}",
            self.subject, self.text
        )
    }
}

struct State {
    rng: StdRng,
    plan: FaultPlan,
    trace: Vec<TraceLine>,
    metrics: BTreeMap<String, u64>,
    tasks: Vec<JoinHandle<()>>,
}

/// A cheap handle on the seed's shared state.
#[derive(Clone)]
pub struct Env {
    state: Arc<Mutex<State>>,
    origin: Instant,
}

impl Env {
    /// Must be called inside the seed's runtime (it reads the virtual clock).
    pub fn new(seed: u64, faults: &FaultSet) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let plan = FaultPlan::draw(faults, &mut rng);
        Self {
            state: Arc::new(Mutex::new(State {
                rng,
                plan,
                trace: Vec::new(),
                metrics: BTreeMap::new(),
                tasks: Vec::new(),
            })),
            origin: Instant::now(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `fault` strikes at this opportunity (counted when it does).
    pub fn roll(&self, fault: Fault) -> bool {
        let mut state = self.lock();
        let State { rng, plan, .. } = &mut *state;
        plan.roll(fault, rng)
    }

    pub fn range(&self, range: RangeInclusive<u64>) -> u64 {
        self.lock().rng.random_range(range)
    }

    pub fn chance(&self, numerator: u32, denominator: u32) -> bool {
        self.lock().rng.random_ratio(numerator, denominator)
    }

    pub fn random_u64(&self) -> u64 {
        self.lock().rng.random()
    }

    /// Milliseconds of virtual time since the seed started.
    pub fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    pub fn now(&self) -> OffsetDateTime {
        let start = OffsetDateTime::from_unix_timestamp(START_UNIX_SECONDS)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let elapsed =
            time::Duration::try_from(self.origin.elapsed()).unwrap_or(time::Duration::ZERO);
        start.saturating_add(elapsed)
    }

    /// Waits a random time in `range_ms` of virtual time.
    pub async fn latency(&self, range_ms: RangeInclusive<u64>) {
        let ms = self.range(range_ms);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }

    pub fn trace(&self, subject: &str, text: impl Into<String>) {
        let at_ms = self.now_ms();
        let mut state = self.lock();
        if state.trace.len() < TRACE_LINE_COUNT_MAX {
            state.trace.push(TraceLine {
                at_ms,
                subject: subject.to_owned(),
                text: text.into(),
            });
        }
    }

    pub fn count_metric(&self, metric: &str) {
        *self.lock().metrics.entry(metric.to_owned()).or_default() += 1;
    }

    pub fn metric(&self, metric: &str) -> u64 {
        self.lock().metrics.get(metric).copied().unwrap_or(0)
    }

    /// Runs `work` as its own task, which quiescence waits for. The task goes
    /// on even when whoever started it stops waiting (a function that Step
    /// Functions timed out keeps running, as on AWS).
    pub fn spawn<F>(&self, work: F) -> tokio::sync::oneshot::Receiver<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let handle = tokio::spawn(async move {
            let output = work.await;
            let _ignored = sender.send(output);
        });
        self.lock().tasks.push(handle);
        receiver
    }

    /// Waits until every spawned task (and every task they spawned) is done.
    pub async fn quiesce(&self) {
        loop {
            let tasks = std::mem::take(&mut self.lock().tasks);
            if tasks.is_empty() {
                return;
            }
            for task in tasks {
                let _ignored = task.await;
            }
        }
    }

    pub fn injected(&self) -> BTreeMap<Fault, u64> {
        self.lock().plan.injected().clone()
    }

    pub fn trace_lines(&self) -> Vec<TraceLine> {
        self.lock().trace.clone()
    }

    /// A digest of the whole trace: equal for two runs of one seed.
    pub fn trace_digest(&self) -> u64 {
        let mut hasher = DefaultHasher::new();
        self.lock().trace.hash(&mut hasher);
        hasher.finish()
    }
}

/// `shared::domain::source` for the seed's thread: virtual time and seeded ids.
pub struct SimSource {
    env: Env,
    rng: Mutex<StdRng>,
}

impl SimSource {
    pub fn new(env: Env, seed: u64) -> Self {
        Self {
            env,
            rng: Mutex::new(StdRng::seed_from_u64(seed ^ 0x05ee_d1d5)),
        }
    }
}

impl shared::domain::source::Source for SimSource {
    fn now(&self) -> OffsetDateTime {
        self.env.now()
    }

    fn ulid(&self) -> Ulid {
        let millis = u64::try_from(self.env.now().unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
        let random: u128 = self
            .rng
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .random();
        Ulid::from_parts(millis, random)
    }
}

/// The interpreter's clock: virtual Wait states, retry intervals and timeouts.
pub struct SimClock {
    pub env: Env,
}

#[async_trait]
impl asl::Clock for SimClock {
    fn now(&self) -> OffsetDateTime {
        self.env.now()
    }

    async fn sleep(&self, duration: Duration) {
        tokio::time::sleep(duration).await;
    }

    async fn timeout(&self, duration: Duration) {
        tokio::time::sleep(duration).await;
    }
}
