//! The simulator in CI: a fixed seed set and every regression seed must hold
//! every invariant, and a seed must replay bit for bit.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use sim::SeedReport;
use sim::faults::FaultSet;

/// The CI seed set: seeds `1..=CI_SEED_COUNT` with every fault.
const CI_SEED_COUNT: u64 = 2_000;

/// Seeds that found a defect of issue 10 (or 11) with only that fix undone (each
/// failed then and passes now): `(seed, faults, defect)`. Replay one with
/// `make sim SEED=… FAULTS=…`.
const REGRESSION_SEEDS: &[(u64, &str, &str)] = &[
    (
        103,
        "start-ambiguous,start-refused",
        "a: a payment FAILED after an unconfirmed start while its saga charged it",
    ),
    (
        2,
        "duplicate-execution",
        "b: a second execution compensated a completed payment",
    ),
    (
        44,
        "task-overrun,duplicate-delivery,reply-lost",
        "c: a debit landed after a compensation that found none",
    ),
    (
        434,
        "gateway-capture-then-5xx,gateway-5xx",
        "d: a 5xx after a capture was read as not processed and compensated",
    ),
    (
        3,
        "gateway-slow,task-overrun",
        "e: NOT_FOUND compensated a charge that landed late",
    ),
    (
        372,
        "duplicate-delivery,task-overrun,gateway-slow",
        "i: a 409 (same key in flight) was read as nothing captured",
    ),
    (
        9,
        "store-commit-then-error",
        "j: a create that committed but answered an error left a payment PENDING",
    ),
    (
        60718,
        "all",
        "k: a refused start whose FAILED fence could not be written left the payment PENDING \
         with nothing driving it",
    ),
    (
        94921,
        "all",
        "l: \"not charged\" was said while the key, never released, resumed that payment and \
         charged it",
    ),
    (
        35599,
        "all",
        "m: a release retried after its first try committed dropped the next request's claim, \
         and one key made two payments",
    ),
    (
        2,
        "all",
        "h: a refund stranded REQUESTED or GATEWAY_REFUNDED by a transient failure, its \
         payment already showing the refunded amount",
    ),
    (
        4,
        "all",
        "h: a refund stranded REQUESTED or GATEWAY_REFUNDED by a transient failure, its \
         payment already showing the refunded amount",
    ),
    (
        99,
        "all",
        "11: a refund the gateway refused, failed by a write whose answer was lost, raised no \
         alarm (the retry found it FAILED and said nothing)",
    ),
    (
        93169,
        "all",
        "11: a payment failed as not started whose saga had started and debited it, and could \
         not close it at the gateway, kept the debit as FAILED with nothing to give it back \
         (now it is flagged RECONCILIATION_REQUIRED and the reconciler gives it back)",
    ),
    (
        125,
        "all",
        "11: a refund reserved whose client gave up before its saga started stayed REQUESTED \
         (now the reconciler's sweep finishes it)",
    ),
];

fn run(seed: u64, faults: &str) -> SeedReport {
    let faults = FaultSet::parse(faults).unwrap_or_else(|err| panic!("{err}"));
    sim::run_seed(seed, &faults).unwrap_or_else(|err| panic!("seed {seed}: {err}"))
}

fn describe(report: &SeedReport) -> String {
    report
        .unexpected()
        .map(|violation| {
            let trace: Vec<String> = report
                .minimized_trace(violation)
                .iter()
                .map(|line| line.to_string())
                .collect();
            format!(
                "seed {}: {} — {} {}\n{}\nreproduce: make sim SEED={}",
                report.seed,
                violation.invariant,
                violation.subject,
                violation.detail,
                trace.join("\n"),
                report.seed
            )
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

#[test]
fn the_same_seed_replays_bit_for_bit() {
    for seed in [1, 6, 42] {
        let first = run(seed, "all");
        let second = run(seed, "all");
        assert_eq!(first.trace_digest, second.trace_digest, "seed {seed}");
        assert_eq!(first.trace.len(), second.trace.len(), "seed {seed}");
        assert!(
            first.trace.iter().zip(&second.trace).all(|(a, b)| a == b),
            "seed {seed}: traces differ"
        );
        assert_eq!(first.injected, second.injected, "seed {seed}");
    }
    // and another seed is another world
    assert_ne!(run(1, "all").trace_digest, run(2, "all").trace_digest);
}

#[test]
fn every_regression_seed_holds_every_invariant() {
    let mut failures = Vec::new();
    for &(seed, faults, defect) in REGRESSION_SEEDS {
        let report = run(seed, faults);
        if report.unexpected().next().is_some() {
            failures.push(format!("{defect} (FAULTS={faults})\n{}", describe(&report)));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn the_ci_seed_set_holds_every_invariant() {
    let started = Instant::now();
    let next = AtomicU64::new(1);
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let failing: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut found = Vec::new();
                    loop {
                        let seed = next.fetch_add(1, Ordering::Relaxed);
                        if seed > CI_SEED_COUNT {
                            return found;
                        }
                        let report = run(seed, "all");
                        if report.unexpected().next().is_some() {
                            found.push(describe(&report));
                        }
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|handle| handle.join().unwrap_or_default())
            .collect()
    });
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "sim CI set: {CI_SEED_COUNT} seeds in {seconds:.1} s ({:.0} seeds/s, debug build)",
        f64::from(u32::try_from(CI_SEED_COUNT).unwrap_or(u32::MAX)) / seconds
    );
    assert!(
        failing.is_empty(),
        "{} of {CI_SEED_COUNT} seeds broke an invariant:\n\n{}",
        failing.len(),
        failing.join("\n\n")
    );
}
