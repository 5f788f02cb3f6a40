//! `make sim [SEEDS=N] [SEED=s] [FAULTS=…]`: runs seeds, prints seeds/s, the
//! faults injected, the outcomes, and for every violation its seed,
//! invariant, minimized trace and one-line reproducer.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use clap::Parser;
use sim::SeedReport;
use sim::faults::FaultSet;

#[derive(Debug, Parser)]
#[command(
    name = "sim",
    about = "Deterministic fault simulation of the payment saga"
)]
struct Args {
    /// How many seeds to run (from --first-seed on).
    #[arg(long, env = "SEEDS", default_value_t = 10_000)]
    seeds: u64,
    /// The first seed of the run.
    #[arg(long, default_value_t = 1)]
    first_seed: u64,
    /// Run this one seed and print its whole trace.
    #[arg(long, env = "SEED")]
    seed: Option<u64>,
    /// `all`, `none`, or a comma-separated list of fault names.
    #[arg(long, env = "FAULTS", default_value = "all")]
    faults: String,
    /// Worker threads (default: the machine's cores).
    #[arg(long)]
    jobs: Option<usize>,
    /// Violations printed in full (the rest are counted).
    #[arg(long, default_value_t = 5)]
    show: usize,
}

/// Seeds with an expected violation named in the summary.
const EXPECTED_EXAMPLE_COUNT: usize = 5;

#[derive(Default)]
struct Totals {
    seeds: u64,
    payments: u64,
    refunds: u64,
    injected: BTreeMap<String, u64>,
    statuses: BTreeMap<String, u64>,
    executions: BTreeMap<String, u64>,
    invariants: BTreeMap<String, u64>,
    expected: BTreeMap<String, u64>,
    expected_seeds: u64,
    /// The lowest few of them, to replay.
    expected_examples: Vec<u64>,
    failing: Vec<SeedReport>,
}

impl Totals {
    fn add(&mut self, report: SeedReport) {
        self.seeds += 1;
        self.payments += report.payment_count;
        self.refunds += report.refund_count;
        for (fault, count) in &report.injected {
            *self.injected.entry(fault.name().to_owned()).or_default() += count;
        }
        merge(&mut self.statuses, &report.payment_statuses);
        merge(&mut self.executions, &report.executions);
        for violation in report.unexpected() {
            *self
                .invariants
                .entry(violation.invariant.to_owned())
                .or_default() += 1;
        }
        let mut expected_here = false;
        for violation in report.expected() {
            expected_here = true;
            let known = violation.known.map_or("", |k| k.describe());
            *self.expected.entry(known.to_owned()).or_default() += 1;
        }
        if expected_here {
            self.expected_seeds += 1;
            self.expected_examples.push(report.seed);
            self.expected_examples.sort_unstable();
            self.expected_examples.truncate(EXPECTED_EXAMPLE_COUNT);
        }
        if report.unexpected().next().is_some() {
            self.failing.push(report);
        }
    }
}

fn merge(into: &mut BTreeMap<String, u64>, from: &BTreeMap<String, u64>) {
    for (key, count) in from {
        *into.entry(key.clone()).or_default() += count;
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let faults = match FaultSet::parse(&args.faults) {
        Ok(faults) => faults,
        Err(err) => {
            eprintln!("error: FAULTS: {err}");
            return ExitCode::from(2);
        }
    };
    if let Some(seed) = args.seed {
        return replay(seed, &faults);
    }
    run_many(&args, &faults)
}

fn replay(seed: u64, faults: &FaultSet) -> ExitCode {
    let report = match sim::run_seed(seed, faults) {
        Ok(report) => report,
        Err(err) => {
            eprintln!("error: seed {seed}: {err}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "seed {seed}: {} trace lines (digest {:016x})",
        report.trace.len(),
        report.trace_digest
    );
    for line in &report.trace {
        println!("  {line}");
    }
    println!();
    print_seed_summary(&report);
    for violation in &report.violations {
        let tag = violation.known.map_or("VIOLATION", |_| "expected");
        println!("{tag}: {violation}");
        if let Some(known) = violation.known {
            println!("  known defect: {}", known.describe());
        }
    }
    if report.unexpected().next().is_some() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn print_seed_summary(report: &SeedReport) {
    println!(
        "payments {} refunds {} virtual time {:.1} s",
        report.payment_count,
        report.refund_count,
        Duration::from_millis(report.virtual_ms).as_secs_f64()
    );
    println!("statuses: {}", line(&report.payment_statuses));
    println!("executions: {}", line(&report.executions));
    let injected: BTreeMap<String, u64> = report
        .injected
        .iter()
        .map(|(fault, count)| (fault.name().to_owned(), *count))
        .collect();
    println!("faults injected: {}", line(&injected));
}

use std::time::Duration;

fn line(map: &BTreeMap<String, u64>) -> String {
    let parts: Vec<String> = map
        .iter()
        .map(|(key, count)| format!("{key} {count}"))
        .collect();
    if parts.is_empty() {
        "none".to_owned()
    } else {
        parts.join(", ")
    }
}

fn run_many(args: &Args, faults: &FaultSet) -> ExitCode {
    let jobs = args
        .jobs
        .or_else(|| std::thread::available_parallelism().ok().map(usize::from))
        .unwrap_or(1)
        .max(1);
    let last = args.first_seed.saturating_add(args.seeds);
    println!(
        "sim: seeds {}..{} ({} seeds), faults {}, {jobs} threads",
        args.first_seed,
        last.saturating_sub(1),
        args.seeds,
        args.faults
    );
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(args.first_seed));
    let done = Arc::new(AtomicU64::new(0));
    let totals = Arc::new(Mutex::new(Totals::default()));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let workers: Vec<_> = (0..jobs)
        .map(|_| {
            let (next, done, totals, errors, faults) = (
                next.clone(),
                done.clone(),
                totals.clone(),
                errors.clone(),
                faults.clone(),
            );
            std::thread::spawn(move || {
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= last {
                        return;
                    }
                    // A panic in a handler is a finding too: report the seed.
                    let run = std::panic::catch_unwind(|| sim::run_seed(seed, &faults))
                        .unwrap_or_else(|_| Err("panicked (replay it to see where)".to_owned()));
                    match run {
                        Ok(mut report) => {
                            if report.unexpected().next().is_none() {
                                report.trace = Vec::new();
                            }
                            totals
                                .lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .add(report);
                        }
                        Err(err) => errors
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .push(format!("seed {seed}: {err}")),
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    progress(&done, args.seeds, started, &workers);
    for worker in workers {
        let _ignored = worker.join();
    }
    let elapsed = started.elapsed();
    let totals = std::mem::take(&mut *totals.lock().unwrap_or_else(PoisonError::into_inner));
    let errors = std::mem::take(&mut *errors.lock().unwrap_or_else(PoisonError::into_inner));
    report(args, &totals, &errors, elapsed)
}

/// A progress line every second on a terminal (or every 10 s into a log).
fn progress(
    done: &AtomicU64,
    total: u64,
    started: Instant,
    workers: &[std::thread::JoinHandle<()>],
) {
    use std::io::IsTerminal;
    let terminal = std::io::stderr().is_terminal();
    let every = Duration::from_secs(if terminal { 1 } else { 10 });
    let mut last = Instant::now();
    while workers.iter().any(|w| !w.is_finished()) {
        std::thread::sleep(Duration::from_millis(50));
        if last.elapsed() < every {
            continue;
        }
        last = Instant::now();
        let count = done.load(Ordering::Relaxed);
        let rate = per_second(count, started.elapsed());
        let text = format!("  {count}/{total} seeds, {rate:.0} seeds/s");
        if terminal {
            eprint!("\r{text}   ");
        } else {
            eprintln!("{text}");
        }
        let _ignored = std::io::stderr().flush();
    }
    if terminal {
        eprint!("\r");
    }
}

#[allow(clippy::float_arithmetic, clippy::as_conversions)]
fn per_second(count: u64, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64().max(1e-9)
}

fn report(args: &Args, totals: &Totals, errors: &[String], elapsed: Duration) -> ExitCode {
    println!(
        "{} seeds in {:.1} s: {:.0} seeds/s; {} payments, {} refunds",
        totals.seeds,
        elapsed.as_secs_f64(),
        per_second(totals.seeds, elapsed),
        totals.payments,
        totals.refunds
    );
    println!("faults injected: {}", line(&totals.injected));
    println!("payment statuses: {}", line(&totals.statuses));
    println!("executions: {}", line(&totals.executions));
    for (known, count) in &totals.expected {
        println!("expected (known defect, not counted): {count} × {known}");
    }
    if totals.expected_seeds > 0 {
        println!(
            "seeds with an expected violation: {} (e.g. {:?})",
            totals.expected_seeds, totals.expected_examples
        );
    }
    for error in errors {
        println!("error: {error}");
    }
    let mut failing: Vec<&SeedReport> = totals.failing.iter().collect();
    failing.sort_by_key(|report| report.seed);
    for report in failing.iter().take(args.show) {
        for violation in report.unexpected() {
            println!();
            println!("VIOLATION seed {}: {}", report.seed, violation.invariant);
            println!("  {}: {}", violation.subject, violation.detail);
            println!("  trace:");
            for line in report.minimized_trace(violation) {
                println!("    {line}");
            }
            println!(
                "  reproduce: make sim SEED={} FAULTS={}",
                report.seed, args.faults
            );
        }
    }
    let violation_count: u64 = totals.invariants.values().sum();
    println!();
    println!("violations by invariant: {}", line(&totals.invariants));
    let failing_seeds: Vec<String> = failing.iter().map(|r| r.seed.to_string()).collect();
    if !failing_seeds.is_empty() {
        let shown: Vec<&String> = failing_seeds.iter().take(50).collect();
        println!("failing seeds: {shown:?}");
    }
    println!(
        "sim: {} seeds, {violation_count} violations in {} seeds, {:.0} seeds/s",
        totals.seeds,
        failing.len(),
        per_second(totals.seeds, elapsed)
    );
    if violation_count > 0 || !errors.is_empty() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
