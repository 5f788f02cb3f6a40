//! Latency summaries in whole microseconds: nearest-rank percentiles, no
//! floats (the workspace lints forbid float arithmetic).

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::{Serialize, Serializer};

/// p50/p95/p99/max of a set of durations, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub count: u64,
    pub p50_us: u64,
    pub p95_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    pub mean_us: u64,
}

impl Summary {
    /// `None` for an empty set.
    pub fn of(samples: &[u64]) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        let total: u128 = sorted.iter().map(|&us| u128::from(us)).sum();
        let count = u64::try_from(sorted.len()).unwrap_or(u64::MAX);
        let mean = total / u128::from(count.max(1));
        Some(Self {
            count,
            p50_us: percentile(&sorted, 50),
            p95_us: percentile(&sorted, 95),
            p99_us: percentile(&sorted, 99),
            max_us: sorted.last().copied().unwrap_or_default(),
            mean_us: u64::try_from(mean).unwrap_or(u64::MAX),
        })
    }
}

/// The nearest-rank percentile of sorted samples: the smallest sample such that
/// at least `pct`% of the samples are ≤ it (p100 is the max, p0 the min).
pub fn percentile(sorted: &[u64], pct: u32) -> u64 {
    let len = sorted.len();
    if len == 0 {
        return 0;
    }
    let pct = usize::try_from(pct.min(100)).unwrap_or(100);
    // ceil(pct/100 * len), at least rank 1.
    let rank = (pct * len).div_ceil(100).max(1);
    sorted[rank.min(len) - 1]
}

/// The median of unsorted samples (nearest rank: the lower middle of an even set).
pub fn median(samples: &[u64]) -> u64 {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    percentile(&sorted, 50)
}

/// `value / total` as an exact decimal rounded to `scale` places; 0 when `total` is 0.
pub fn ratio(value: u64, total: u64, scale: u32) -> Decimal {
    if total == 0 {
        return Decimal::ZERO;
    }
    let mut quotient = Decimal::from(value)
        .checked_div(Decimal::from(total))
        .unwrap_or_default()
        .round_dp(scale);
    // Always `scale` places: 2 per second shows as 2.0, like 2.5 does.
    quotient.rescale(scale);
    quotient
}

/// Microseconds as milliseconds with one decimal: 41_260 → "41.3".
pub fn ms(us: u64) -> String {
    ratio(us, 1000, 1).to_string()
}

/// Events per second, with one decimal.
pub fn per_second(count: u64, elapsed_us: u64) -> Decimal {
    ratio(count.saturating_mul(1_000_000), elapsed_us, 1)
}

/// Decimals go to JSON as strings (`"312.5"`), exact, like money in this
/// project (rust_decimal is built without its serde feature here).
pub fn decimal<S: Serializer>(value: &Decimal, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

pub fn optional_decimal<S: Serializer>(
    value: &Option<Decimal>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(value) => serializer.collect_str(value),
        None => serializer.serialize_none(),
    }
}

pub fn decimal_map<S: Serializer>(
    values: &BTreeMap<String, Decimal>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_map(values.iter().map(|(key, value)| (key, value.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        // GIVEN 1..=100 in any order
        let mut samples: Vec<u64> = (1..=100).rev().collect();
        samples.swap(3, 70);
        // WHEN summarised
        let summary = Summary::of(&samples).unwrap_or_default();
        // THEN each percentile is the sample at its rank
        assert_eq!(summary.count, 100);
        assert_eq!(summary.p50_us, 50);
        assert_eq!(summary.p95_us, 95);
        assert_eq!(summary.p99_us, 99);
        assert_eq!(summary.max_us, 100);
        assert_eq!(summary.mean_us, 50);
    }

    #[test]
    fn small_sets_round_the_rank_up() {
        let sorted = [10, 20, 30];
        assert_eq!(percentile(&sorted, 50), 20);
        assert_eq!(percentile(&sorted, 99), 30);
        assert_eq!(percentile(&sorted, 0), 10);
        assert_eq!(percentile(&[7], 99), 7);
        assert_eq!(percentile(&[], 50), 0);
        assert_eq!(median(&[4, 1, 3, 2]), 2);
        assert_eq!(Summary::of(&[]), None);
    }

    #[test]
    fn one_slow_sample_in_a_hundred_is_the_p99_not_the_p95() {
        let mut samples = vec![1_000; 99];
        samples.push(500_000);
        let summary = Summary::of(&samples).unwrap_or_default();
        assert_eq!(summary.p95_us, 1_000);
        assert_eq!(summary.p99_us, 1_000);
        assert_eq!(summary.max_us, 500_000);
        samples.push(500_000);
        let summary = Summary::of(&samples).unwrap_or_default();
        assert_eq!(summary.p99_us, 500_000);
    }

    #[test]
    fn ratios_and_rates_are_exact_decimals() {
        assert_eq!(ms(41_260).to_string(), "41.3");
        assert_eq!(ms(999).to_string(), "1.0");
        assert_eq!(per_second(2_000, 6_400_000).to_string(), "312.5");
        assert_eq!(ratio(1, 0, 2), Decimal::ZERO);
        assert_eq!(ratio(2, 3, 3).to_string(), "0.667");
        assert_eq!(ratio(4, 2, 2).to_string(), "2.00");
    }
}
