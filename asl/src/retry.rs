//! Error matching for Retry/Catch and the retry delay sequence, as AWS
//! documents them: the delay before retry n (n = 1, 2, …) of a retrier is
//! `IntervalSeconds × BackoffRate^(n-1)`, capped by `MaxDelaySeconds`; with
//! `JitterStrategy: FULL` it is a random duration in [0, that delay].

use std::time::Duration;

use rand::Rng;
use rand::rngs::StdRng;

use super::definition::{Jitter, Retrier};
use super::error::names;

/// The longest delay the interpreter will compute (AWS's MaxDelaySeconds bound).
const DELAY_SECONDS_MAX: f64 = 31_622_400.0;

/// Whether an error name is matched by an `ErrorEquals` list.
/// `States.ALL` matches every error; `States.TaskFailed` every error except
/// `States.Timeout`. Neither matches the terminal `States.Runtime`.
pub fn error_matches(error_equals: &[String], error: &str) -> bool {
    if error == names::RUNTIME || error == names::DATA_LIMIT_EXCEEDED {
        return error_equals.iter().any(|name| name == error);
    }
    error_equals.iter().any(|name| {
        name == error
            || name == names::ALL
            || (name == names::TASK_FAILED && error != names::TIMEOUT)
    })
}

/// The delay before the retry that follows `retries_done` earlier retries of
/// this retrier, before jitter.
// AWS defines BackoffRate as a floating-point multiplier; this is not money.
#[allow(clippy::float_arithmetic)]
pub fn backoff_delay(retrier: &Retrier, retries_done: u32) -> Duration {
    let exponent = i32::try_from(retries_done).unwrap_or(i32::MAX);
    let mut seconds = f64::from(retrier.interval_seconds) * retrier.backoff_rate.powi(exponent);
    if let Some(max) = retrier.max_delay_seconds {
        seconds = seconds.min(f64::from(max));
    }
    if !seconds.is_finite() {
        seconds = DELAY_SECONDS_MAX;
    }
    Duration::try_from_secs_f64(seconds.clamp(0.0, DELAY_SECONDS_MAX))
        .unwrap_or(Duration::from_secs(31_622_400))
}

/// Applies the retrier's jitter: FULL picks uniformly in [0, delay].
pub fn jittered(delay: Duration, jitter: Jitter, rng: &mut StdRng) -> Duration {
    match jitter {
        Jitter::None => delay,
        Jitter::Full => {
            let nanos = u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX);
            Duration::from_nanos(rng.random_range(0..=nanos))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn retrier(interval: u32, rate: f64, max_delay: Option<u32>) -> Retrier {
        Retrier {
            error_equals: vec!["E".into()],
            interval_seconds: interval,
            max_attempts: 10,
            backoff_rate: rate,
            max_delay_seconds: max_delay,
            jitter: Jitter::None,
        }
    }

    #[test]
    fn delays_follow_the_documented_formula() {
        // AWS example: IntervalSeconds 3, BackoffRate 1.5 -> 3 and 4.5 seconds
        let r = retrier(3, 1.5, None);
        assert_eq!(backoff_delay(&r, 0), Duration::from_secs(3));
        assert_eq!(backoff_delay(&r, 1), Duration::from_millis(4500));
        // IntervalSeconds 1, BackoffRate 2, MaxDelaySeconds 3 -> 1, 2, 3, 3
        let r = retrier(1, 2.0, Some(3));
        let delays: Vec<u64> = (0..4).map(|n| backoff_delay(&r, n).as_secs()).collect();
        assert_eq!(delays, vec![1, 2, 3, 3]);
        // a huge exponent stays bounded instead of overflowing
        assert_eq!(
            backoff_delay(&retrier(1, 2.0, None), 5000),
            Duration::from_secs(31_622_400)
        );
    }

    #[test]
    fn full_jitter_stays_within_zero_and_the_delay() {
        let mut rng = StdRng::seed_from_u64(42);
        let delay = Duration::from_secs(4);
        let samples: Vec<Duration> = (0..1000)
            .map(|_| jittered(delay, Jitter::Full, &mut rng))
            .collect();
        assert!(samples.iter().all(|d| *d <= delay));
        assert!(samples.iter().any(|d| *d < Duration::from_secs(1)));
        assert!(samples.iter().any(|d| *d > Duration::from_secs(3)));
        assert_eq!(jittered(delay, Jitter::None, &mut rng), delay);
    }

    #[test]
    fn wildcards_match_as_documented() {
        let all = vec![names::ALL.to_owned()];
        let task_failed = vec![names::TASK_FAILED.to_owned()];
        assert!(error_matches(&all, "InsufficientFunds"));
        assert!(error_matches(&all, names::TIMEOUT));
        assert!(!error_matches(&all, names::RUNTIME));
        assert!(error_matches(&task_failed, "Lambda.Unknown"));
        assert!(!error_matches(&task_failed, names::TIMEOUT));
        assert!(error_matches(&["A".into(), "B".into()], "B"));
        assert!(!error_matches(&["A".into()], "a"));
    }
}
