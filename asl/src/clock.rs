//! Time for the interpreter. Two kinds of waiting are kept apart:
//! - `sleep`: a Wait state or a retry interval. A time scale may compress it
//!   (0.01 = 100x faster), for tests and demos;
//! - `timeout`: a TimeoutSeconds timer. Never compressed, because the Lambdas
//!   it guards run in real time;
//! - `callback_timeout`: a callback task's wait for SendTask*, compressed
//!   like `sleep` (nothing of ours runs in real time meanwhile).

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;

#[async_trait]
pub trait Clock: Send + Sync {
    /// Wall-clock time for timestamps, `$$` fields and deadlines.
    fn now(&self) -> OffsetDateTime;
    /// A Wait state or a retry interval (may be compressed by a time scale).
    async fn sleep(&self, duration: Duration);
    /// A timeout timer for a task or the execution (never compressed).
    async fn timeout(&self, duration: Duration);
    /// The HeartbeatSeconds / TimeoutSeconds of a callback task
    /// (`.waitForTaskToken`): a timeout, but one that waits for someone
    /// outside rather than guarding a running Lambda, so a time scale
    /// compresses it like a Wait. By default, `timeout`.
    async fn callback_timeout(&self, duration: Duration) {
        self.timeout(duration).await;
    }
}

/// Why a time scale was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("time scale must be a number in (0, 1], got {0}")]
pub struct TimeScaleError(pub f64);

/// The real clock, with an optional compression of sleeps.
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    time_scale: f64,
}

impl Default for SystemClock {
    fn default() -> Self {
        Self { time_scale: 1.0 }
    }
}

impl SystemClock {
    /// `time_scale` multiplies every Wait and retry interval: 1.0 is real
    /// time, 0.01 makes them 100 times shorter.
    pub fn with_time_scale(time_scale: f64) -> Result<Self, TimeScaleError> {
        if time_scale.is_finite() && time_scale > 0.0 && time_scale <= 1.0 {
            Ok(Self { time_scale })
        } else {
            Err(TimeScaleError(time_scale))
        }
    }

    pub fn time_scale(&self) -> f64 {
        self.time_scale
    }
}

#[async_trait]
impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }

    async fn sleep(&self, duration: Duration) {
        // time_scale is in (0, 1], so the product cannot overflow or go negative.
        tokio::time::sleep(duration.mul_f64(self.time_scale)).await;
    }

    async fn timeout(&self, duration: Duration) {
        tokio::time::sleep(duration).await;
    }

    async fn callback_timeout(&self, duration: Duration) {
        tokio::time::sleep(duration.mul_f64(self.time_scale)).await;
    }
}

#[derive(Debug)]
struct FakeState {
    now: OffsetDateTime,
    sleeps: Vec<Duration>,
    timeouts: Vec<Duration>,
}

/// A clock for tests: nothing really waits. `sleep` records the duration and
/// moves the fake time forward. `timeout` yields once, then fires and moves
/// the time forward: a task that answers at once (a scripted runner) beats
/// it, a task that never answers times out. Use it only with runners that
/// answer without awaiting real I/O.
#[derive(Debug)]
pub struct FakeClock {
    state: Mutex<FakeState>,
}

impl FakeClock {
    pub fn new(start: OffsetDateTime) -> Self {
        Self {
            state: Mutex::new(FakeState {
                now: start,
                sleeps: Vec::new(),
                timeouts: Vec::new(),
            }),
        }
    }

    /// Every `sleep` so far (Wait states and retry intervals), in order.
    pub fn sleeps(&self) -> Vec<Duration> {
        self.lock().sleeps.clone()
    }

    /// Every `timeout` that fired, in order.
    pub fn fired_timeouts(&self) -> Vec<Duration> {
        self.lock().timeouts.clone()
    }

    pub fn advance(&self, duration: Duration) {
        let mut state = self.lock();
        state.now = state.now.saturating_add(time_duration(duration));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn time_duration(duration: Duration) -> time::Duration {
    time::Duration::try_from(duration).unwrap_or(time::Duration::MAX)
}

#[async_trait]
impl Clock for FakeClock {
    fn now(&self) -> OffsetDateTime {
        self.lock().now
    }

    async fn sleep(&self, duration: Duration) {
        {
            let mut state = self.lock();
            state.sleeps.push(duration);
            state.now = state.now.saturating_add(time_duration(duration));
        }
        tokio::task::yield_now().await;
    }

    async fn timeout(&self, duration: Duration) {
        tokio::task::yield_now().await;
        let mut state = self.lock();
        state.timeouts.push(duration);
        state.now = state.now.saturating_add(time_duration(duration));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[tokio::test]
    async fn fake_clock_records_sleeps_and_moves_time() {
        let clock = FakeClock::new(datetime!(2024-01-01 0:00 UTC));
        clock.sleep(Duration::from_secs(3)).await;
        clock.timeout(Duration::from_secs(2)).await;
        assert_eq!(clock.sleeps(), vec![Duration::from_secs(3)]);
        assert_eq!(clock.fired_timeouts(), vec![Duration::from_secs(2)]);
        assert_eq!(clock.now(), datetime!(2024-01-01 0:00:05 UTC));
    }

    #[tokio::test]
    async fn system_clock_compresses_sleeps_and_callback_waits_only() {
        assert!(SystemClock::with_time_scale(0.0).is_err());
        assert!(SystemClock::with_time_scale(2.0).is_err());
        assert!(SystemClock::with_time_scale(f64::NAN).is_err());
        let clock = SystemClock::with_time_scale(0.001).unwrap();
        let started = std::time::Instant::now();
        clock.sleep(Duration::from_secs(5)).await;
        clock.callback_timeout(Duration::from_secs(5)).await;
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
