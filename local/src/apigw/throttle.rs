//! Throttling by token buckets, as API Gateway meters each key of a usage
//! plan (a bucket per (plan, key)) and each method of a stage (a bucket per
//! (resource path, method), shared by every client): `BurstLimit` requests
//! at once, refilled continuously at `RateLimit` per second. Integer
//! arithmetic in millionths of a request, so fractional rates (0.5/s) refill
//! exactly.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Instant, SystemTime};

use crate::template::Throttle;

/// Millionths of a request: the bucket's unit.
const MICROTOKENS_PER_REQUEST: u64 = 1_000_000;

/// The local API Gateway's time: wall-clock for SigV4 dates and
/// `requestTimeEpoch`, monotonic for the buckets. Tests inject their own.
pub trait GatewayClock: Send + Sync {
    fn now(&self) -> SystemTime;
    /// Milliseconds since a fixed start; never goes back.
    fn monotonic_ms(&self) -> u64;
}

/// The real clocks.
#[derive(Debug)]
pub struct SystemGatewayClock {
    start: Instant,
}

impl Default for SystemGatewayClock {
    fn default() -> Self {
        Self {
            start: Instant::now(),
        }
    }
}

impl GatewayClock for SystemGatewayClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    fn monotonic_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    microtokens: u64,
    updated_ms: u64,
}

/// The buckets of every (scope, key) seen so far — (plan, usage key) or
/// (resource path, method): at most one per usage key of the template and
/// the local clients, or per declared route, so the map stays small.
#[derive(Debug, Default)]
pub struct TokenBuckets {
    buckets: Mutex<HashMap<(String, String), Bucket>>,
}

impl TokenBuckets {
    /// Takes one request from the bucket of `scope` and `key` at `now_ms`;
    /// `false` when it is empty (the request is throttled, nothing taken).
    pub fn admit(&self, scope: &str, key: &str, throttle: &Throttle, now_ms: u64) -> bool {
        let capacity = throttle
            .burst_requests
            .saturating_mul(MICROTOKENS_PER_REQUEST);
        let mut buckets = match self.buckets.lock() {
            Ok(buckets) => buckets,
            Err(poisoned) => poisoned.into_inner(),
        };
        let bucket = buckets
            .entry((scope.to_owned(), key.to_owned()))
            .or_insert(Bucket {
                microtokens: capacity,
                updated_ms: now_ms,
            });
        // rate r/s = 1000·r thousandths per 1000 ms = 1000·r microtokens per ms.
        let elapsed_ms = now_ms.saturating_sub(bucket.updated_ms);
        let refill = elapsed_ms.saturating_mul(throttle.rate_millirequests_per_second);
        bucket.microtokens = bucket.microtokens.saturating_add(refill).min(capacity);
        bucket.updated_ms = bucket.updated_ms.max(now_ms);
        match bucket.microtokens.checked_sub(MICROTOKENS_PER_REQUEST) {
            Some(left) => {
                bucket.microtokens = left;
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO_PER_SECOND_BURST_TWO: Throttle = Throttle {
        rate_millirequests_per_second: 2_000,
        burst_requests: 2,
    };

    #[test]
    fn a_burst_is_served_then_refused_until_tokens_refill() {
        let throttle = TokenBuckets::default();
        let admit = |now_ms| throttle.admit("plan", "key", &TWO_PER_SECOND_BURST_TWO, now_ms);
        // GIVEN a full bucket of 2 THEN two requests at once pass, the third not
        assert!(admit(0));
        assert!(admit(0));
        assert!(!admit(0));
        // WHEN 499 ms pass (0.998 of a request at 2/s) THEN still refused
        assert!(!admit(499));
        // WHEN 1 ms more completes a request THEN exactly one passes
        assert!(admit(500));
        assert!(!admit(500));
        // WHEN an hour passes THEN the bucket holds its burst, not more
        assert!(admit(3_600_000));
        assert!(admit(3_600_000));
        assert!(!admit(3_600_000));
    }

    #[test]
    fn fractional_rates_refill_exactly_and_keys_have_their_own_buckets() {
        let half_per_second = Throttle {
            rate_millirequests_per_second: 500,
            burst_requests: 1,
        };
        let throttle = TokenBuckets::default();
        assert!(throttle.admit("plan", "a", &half_per_second, 0));
        assert!(!throttle.admit("plan", "a", &half_per_second, 1_999));
        // Another key, or the same key in another plan, is not throttled by it.
        assert!(throttle.admit("plan", "b", &half_per_second, 1_999));
        assert!(throttle.admit("other", "a", &half_per_second, 1_999));
        assert!(throttle.admit("plan", "a", &half_per_second, 2_000));
        // A clock read out of order takes nothing back.
        assert!(!throttle.admit("plan", "a", &half_per_second, 1_000));
    }

    #[test]
    fn a_zero_burst_refuses_everything() {
        let none = Throttle {
            rate_millirequests_per_second: 1_000_000,
            burst_requests: 0,
        };
        assert!(!TokenBuckets::default().admit("plan", "key", &none, 10_000));
    }
}
