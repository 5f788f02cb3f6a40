//! The benchmark's results: one serialisable [`Report`] (the JSON under
//! `target/bench/`), its text rendering (stdout) and a Markdown rendering (the
//! README's Performance table), with the targets checked against it.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use rust_decimal::Decimal;
use serde::Serialize;

use super::coldstart::{BinaryFacts, ColdSample};
use super::cost::{Bill, Usage};
use super::floor::FloorPlan;
use super::stats::{Summary, ms, ratio};

pub const MIB: u64 = 1024 * 1024;

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub run_id: String,
    pub started_at: String,
    pub command: String,
    pub machine: Machine,
    pub setup: Setup,
    pub load: LoadReport,
    pub floor: Option<FloorReport>,
    pub cold_starts: Vec<ColdReport>,
    pub binaries: Vec<BinaryReport>,
    pub cost: Option<CostReport>,
    pub targets: Vec<TargetCheck>,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Machine {
    pub cpu_count: u64,
    pub cpu_model: String,
    pub os: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Setup {
    pub payments: u64,
    pub concurrency: u32,
    pub users: u64,
    pub hot_wallet: bool,
    pub gateway_mode: String,
    pub warmup_payments: u64,
    pub amount: String,
    pub api_url: String,
    pub edge_url: String,
    /// `release`, `debug`, … : the directory the functions' binaries are in.
    pub functions_profile: String,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StateReport {
    pub state: String,
    pub visits: u64,
    pub p50_us: u64,
    pub p99_us: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadReport {
    pub sent: u64,
    pub succeeded: u64,
    /// Executions that ended otherwise, by status.
    pub ended_otherwise: BTreeMap<String, u64>,
    pub errors: u64,
    pub error_examples: Vec<String>,
    pub elapsed_ms: u64,
    #[serde(serialize_with = "super::stats::decimal")]
    pub throughput_per_second: Decimal,
    /// POST sent → execution stopped.
    pub end_to_end: Option<Summary>,
    /// POST sent → 202 back.
    pub accept: Option<Summary>,
    pub states: Vec<StateReport>,
    pub per_payment: PerPayment,
    pub contention: Contention,
    /// Cold starts the local cloud made during the measured phase.
    pub cold_starts_during_run: Option<u64>,
    /// Peak RSS (VmHWM) of each function's live instances after the run, the
    /// largest per function, KiB.
    pub peak_rss_kib: BTreeMap<String, u64>,
    pub instances: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PerPayment {
    #[serde(serialize_with = "super::stats::decimal")]
    pub lambda_invocations: Decimal,
    #[serde(serialize_with = "super::stats::decimal_map")]
    pub lambda_invocations_by_function: BTreeMap<String, Decimal>,
    /// Where they come from: the local cloud's Lambda counters, or the histories.
    pub lambda_invocations_source: String,
    #[serde(serialize_with = "super::stats::optional_decimal")]
    pub dynamodb_requests: Option<Decimal>,
    #[serde(serialize_with = "super::stats::decimal_map")]
    pub dynamodb_requests_by_operation: BTreeMap<String, Decimal>,
    #[serde(serialize_with = "super::stats::optional_decimal")]
    pub read_request_units: Option<Decimal>,
    #[serde(serialize_with = "super::stats::optional_decimal")]
    pub write_request_units: Option<Decimal>,
    #[serde(serialize_with = "super::stats::decimal")]
    pub state_transitions: Decimal,
    #[serde(serialize_with = "super::stats::decimal")]
    pub gateway_calls: Decimal,
}

/// What many payments on few wallets cost.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Contention {
    /// Wallet writes refused because the wallet's version moved on (its
    /// condition failed on the wallets table): the wallet-service re-reads and
    /// retries inside the same invocation.
    pub version_conflict_retries: Option<u64>,
    #[serde(serialize_with = "super::stats::optional_decimal")]
    pub version_conflict_retries_per_payment: Option<Decimal>,
    /// Task retries by Step Functions (an invocation failed `Retryable`, …).
    pub step_function_retries: u64,
    pub task_errors: BTreeMap<String, u64>,
    /// Every refused condition by table, per payment: the wallets' are
    /// version conflicts, the others idempotent replays (a step finding the
    /// record a previous step or attempt already wrote).
    #[serde(serialize_with = "super::stats::decimal_map")]
    pub condition_failures_per_payment: BTreeMap<String, Decimal>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FloorReport {
    pub plan: FloorPlan,
    pub payments: u64,
    pub errors: u64,
    pub error_examples: Vec<String>,
    pub elapsed_ms: u64,
    #[serde(serialize_with = "super::stats::decimal")]
    pub throughput_per_second: Decimal,
    pub end_to_end: Option<Summary>,
    /// Saga p50 / floor p50.
    #[serde(serialize_with = "super::stats::optional_decimal")]
    pub saga_over_floor_p50: Option<Decimal>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ColdReport {
    pub function: String,
    pub binary: String,
    pub samples: Vec<ColdSample>,
    pub init_p50_us: u64,
    pub first_invocation_p50_us: u64,
    pub peak_rss_kib_max: Option<u64>,
    /// Init p50 / the hello-world's init p50.
    #[serde(serialize_with = "super::stats::optional_decimal")]
    pub init_over_hello: Option<Decimal>,
    pub errors: BTreeMap<String, u64>,
    pub failures: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BinaryReport {
    pub function: String,
    /// `host` (what the local cloud and the cold starts ran) or `deploy`
    /// (`target/lambda/<name>/bootstrap`, the arm64 artefact `make build-all` makes).
    pub kind: String,
    pub facts: BinaryFacts,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CostReport {
    pub region: String,
    pub prices_checked_on: String,
    pub usage: Usage,
    pub per_million_payments: Bill,
    pub assumptions: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetCheck {
    pub target: String,
    pub measured: String,
    pub met: bool,
    /// How far off, when missed.
    pub miss: Option<String>,
}

impl TargetCheck {
    fn new(
        target: impl Into<String>,
        measured: impl Into<String>,
        met: bool,
        miss: String,
    ) -> Self {
        Self {
            target: target.into(),
            measured: measured.into(),
            met,
            miss: (!met).then_some(miss),
        }
    }
}

/// `value` over `limit` as a percentage beyond it: 130 over 100 → "30% over".
fn over(value: u64, limit: u64) -> String {
    let excess = value.saturating_sub(limit);
    format!("{}% over", ratio(excess.saturating_mul(100), limit, 0))
}

fn under(value: Decimal, goal: Decimal) -> String {
    let short = goal.checked_sub(value).unwrap_or_default();
    let percent = short
        .checked_mul(Decimal::ONE_HUNDRED)
        .and_then(|s| s.checked_div(goal))
        .unwrap_or_default()
        .round_dp(0);
    format!("{percent}% short ({short}/s)")
}

/// The targets against this report.
pub fn check_targets(report: &Report) -> Vec<TargetCheck> {
    let mut checks = Vec::new();
    let throughput_goal = Decimal::from(300);
    checks.push(TargetCheck::new(
        format!(
            "≥ 300 payments/s at concurrency {}",
            report.setup.concurrency
        ),
        format!("{}/s", report.load.throughput_per_second),
        report.load.throughput_per_second >= throughput_goal,
        under(report.load.throughput_per_second, throughput_goal),
    ));
    if let Some(e2e) = report.load.end_to_end {
        checks.push(TargetCheck::new(
            "p99 ≤ 100 ms end to end",
            format!("{} ms", ms(e2e.p99_us)),
            e2e.p99_us <= 100_000,
            over(e2e.p99_us, 100_000),
        ));
    }
    if let Some(floor) = &report.floor
        && let (Some(saga), Some(floor_e2e)) = (report.load.end_to_end, floor.end_to_end)
    {
        let limit = floor_e2e.p50_us.saturating_mul(3);
        checks.push(TargetCheck::new(
            "saga p50 ≤ 3 × floor p50",
            format!(
                "{} ms vs {} ms ({}×)",
                ms(saga.p50_us),
                ms(floor_e2e.p50_us),
                ratio(saga.p50_us, floor_e2e.p50_us, 2)
            ),
            saga.p50_us <= limit,
            over(saga.p50_us, limit),
        ));
    }
    let hello = report
        .cold_starts
        .iter()
        .find(|c| c.function == HELLO && !c.samples.is_empty());
    if let Some(hello) = hello {
        for cold in report.cold_starts.iter().filter(|c| c.function != HELLO) {
            let limit = hello.init_p50_us.saturating_mul(3) / 2;
            checks.push(TargetCheck::new(
                format!("{} cold start (init) ≤ 1.5 × hello-world", cold.binary),
                format!(
                    "{} ms vs {} ms ({}×)",
                    ms(cold.init_p50_us),
                    ms(hello.init_p50_us),
                    ratio(cold.init_p50_us, hello.init_p50_us, 2)
                ),
                cold.init_p50_us <= limit,
                over(cold.init_p50_us, limit),
            ));
        }
    }
    for binary in &report.binaries {
        let limit = 8 * MIB;
        checks.push(TargetCheck::new(
            format!(
                "{} {} binary ({}) stripped ≤ 8 MiB",
                binary.function, binary.kind, binary.facts.architecture
            ),
            format!(
                "{} MiB{}",
                ratio(binary.facts.bytes, MIB, 2),
                if binary.facts.stripped {
                    ""
                } else {
                    " (not stripped)"
                }
            ),
            binary.facts.bytes <= limit && binary.facts.stripped,
            over(binary.facts.bytes, limit),
        ));
    }
    let mut rss: BTreeMap<String, u64> = report.load.peak_rss_kib.clone();
    for cold in &report.cold_starts {
        if let Some(kib) = cold.peak_rss_kib_max
            && cold.function != HELLO
        {
            let entry = rss.entry(cold.binary.clone()).or_default();
            *entry = (*entry).max(kib);
        }
    }
    for (binary, kib) in rss {
        let limit_kib = 25 * 1024;
        checks.push(TargetCheck::new(
            format!("{binary} peak RSS per instance ≤ 25 MiB"),
            format!("{} MiB", ratio(kib, 1024, 1)),
            kib <= limit_kib,
            over(kib, limit_kib),
        ));
    }
    checks
}

/// The hello-world Lambda's name in the cold-start table.
pub const HELLO: &str = "hello-world";

fn summary_row(label: &str, summary: Option<&Summary>) -> String {
    match summary {
        Some(s) => format!(
            "  {label:<22} p50 {:>7} ms   p95 {:>7} ms   p99 {:>7} ms   max {:>7} ms",
            ms(s.p50_us),
            ms(s.p95_us),
            ms(s.p99_us),
            ms(s.max_us)
        ),
        None => format!("  {label:<22} (no samples)"),
    }
}

/// The whole report as text, for the terminal.
pub fn render_text(report: &Report) -> String {
    let mut out = String::new();
    let setup = &report.setup;
    let load = &report.load;
    let _ = writeln!(
        out,
        "\nsaga bench {} — {} payments, concurrency {}, {} {}, gateway {}{}",
        report.run_id,
        setup.payments,
        setup.concurrency,
        setup.users,
        if setup.users == 1 { "user" } else { "users" },
        setup.gateway_mode,
        if setup.hot_wallet { ", HOT WALLET" } else { "" }
    );
    let _ = writeln!(
        out,
        "machine: {} × {} ({}); functions built: {}",
        report.machine.cpu_count,
        report.machine.cpu_model,
        report.machine.os,
        setup.functions_profile
    );
    let _ = writeln!(out, "\nLoad (saga, through the API)");
    let _ = writeln!(
        out,
        "  throughput             {}/s ({} succeeded of {} in {} s){}",
        load.throughput_per_second,
        load.succeeded,
        load.sent,
        ratio(load.elapsed_ms, 1_000, 1),
        if load.errors > 0 || !load.ended_otherwise.is_empty() {
            format!(
                "; {} errors, ended otherwise {:?}",
                load.errors, load.ended_otherwise
            )
        } else {
            String::new()
        }
    );
    let _ = writeln!(
        out,
        "{}",
        summary_row("end to end", load.end_to_end.as_ref())
    );
    let _ = writeln!(
        out,
        "{}",
        summary_row("accept (POST → 202)", load.accept.as_ref())
    );
    for example in &load.error_examples {
        let _ = writeln!(out, "  error: {example}");
    }
    let _ = writeln!(out, "\nPer state (from the execution histories)");
    for state in &load.states {
        let _ = writeln!(
            out,
            "  {:<28} p50 {:>7} ms   p99 {:>7} ms   ({} visits)",
            state.state,
            ms(state.p50_us),
            ms(state.p99_us),
            state.visits
        );
    }
    let per = &load.per_payment;
    let _ = writeln!(out, "\nPer payment");
    let _ = writeln!(
        out,
        "  Lambda invocations     {} ({}: {})",
        per.lambda_invocations,
        per.lambda_invocations_source,
        per.lambda_invocations_by_function
            .iter()
            .map(|(f, n)| format!("{f} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    match per.dynamodb_requests {
        Some(requests) => {
            let _ = writeln!(
                out,
                "  DynamoDB requests      {requests} ({}); RRU {}, WRU {}",
                per.dynamodb_requests_by_operation
                    .iter()
                    .map(|(op, n)| format!("{op} {n}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                per.read_request_units.unwrap_or_default(),
                per.write_request_units.unwrap_or_default()
            );
        }
        None => {
            let _ = writeln!(
                out,
                "  DynamoDB requests      not counted by this local cloud (rebuild it: `/_local/dynamodb/stats`)"
            );
        }
    }
    let _ = writeln!(out, "  state transitions      {}", per.state_transitions);
    let _ = writeln!(out, "  gateway calls          {}", per.gateway_calls);
    let contention = &load.contention;
    let _ = writeln!(
        out,
        "  version-conflict retries {} (total {}), Step Functions retries {}{}",
        contention
            .version_conflict_retries_per_payment
            .map(|d| d.to_string())
            .unwrap_or_else(|| "n/a".into()),
        contention
            .version_conflict_retries
            .map(|d| d.to_string())
            .unwrap_or_else(|| "n/a".into()),
        contention.step_function_retries,
        if contention.task_errors.is_empty() {
            String::new()
        } else {
            format!(", task errors {:?}", contention.task_errors)
        }
    );
    if !contention.condition_failures_per_payment.is_empty() {
        let _ = writeln!(
            out,
            "  refused conditions     {} (wallets: version conflicts; others: idempotent replays)",
            contention
                .condition_failures_per_payment
                .iter()
                .map(|(table, n)| format!("{table} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if let Some(floor) = &report.floor {
        let _ = writeln!(
            out,
            "\nFloor (same hops and requests, no orchestration): {} Lambda hops, {} DynamoDB requests, {} gateway calls per payment",
            floor.plan.lambda_hops,
            floor.plan.dynamo_request_count(),
            floor.plan.gateway_calls
        );
        let _ = writeln!(
            out,
            "{}",
            summary_row("floor end to end", floor.end_to_end.as_ref())
        );
        let _ = writeln!(
            out,
            "  floor throughput       {}/s; saga p50 / floor p50 = {}",
            floor.throughput_per_second,
            floor
                .saga_over_floor_p50
                .map(|d| format!("{d}×"))
                .unwrap_or_else(|| "n/a".into())
        );
        for example in &floor.error_examples {
            let _ = writeln!(out, "  floor error: {example}");
        }
    }
    if !report.cold_starts.is_empty() {
        let _ = writeln!(
            out,
            "\nCold starts (median of {} each; init = process start → first Runtime API poll)",
            report
                .cold_starts
                .iter()
                .map(|c| c.samples.len())
                .max()
                .unwrap_or_default()
        );
        for cold in &report.cold_starts {
            let _ = writeln!(
                out,
                "  {:<20} init {:>6} ms{}   first invocation {:>7} ms   peak RSS {:>5} MiB{}",
                cold.binary,
                ms(cold.init_p50_us),
                cold.init_over_hello
                    .map(|r| format!(" ({r}×)"))
                    .unwrap_or_default(),
                ms(cold.first_invocation_p50_us),
                cold.peak_rss_kib_max
                    .map(|kib| ratio(kib, 1024, 1).to_string())
                    .unwrap_or_else(|| "?".into()),
                if cold.errors.is_empty() && cold.failures.is_empty() {
                    String::new()
                } else {
                    format!("   errors {:?} {:?}", cold.errors, cold.failures)
                }
            );
        }
    }
    if !load.peak_rss_kib.is_empty() {
        let _ = writeln!(out, "\nPeak RSS per instance under load (largest, MiB)");
        let _ = writeln!(
            out,
            "  {}",
            load.peak_rss_kib
                .iter()
                .map(|(f, kib)| format!(
                    "{f} {} ({} inst.)",
                    ratio(*kib, 1024, 1),
                    load.instances.get(f).copied().unwrap_or_default()
                ))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if !report.binaries.is_empty() {
        let _ = writeln!(out, "\nBinaries (bytes on disk)");
        for binary in &report.binaries {
            let _ = writeln!(
                out,
                "  {:<20} {:<6} {:<8} {:>6} MiB  {:<12} built {}",
                binary.function,
                binary.kind,
                binary.facts.architecture,
                ratio(binary.facts.bytes, MIB, 2),
                if binary.facts.stripped {
                    "stripped"
                } else {
                    "NOT stripped"
                },
                binary.facts.modified.as_deref().unwrap_or("?")
            );
        }
    }
    if let Some(cost) = &report.cost {
        let _ = writeln!(
            out,
            "\nAWS cost per 1 million payments ({}, prices of {}, bench/prices.json)",
            cost.region, cost.prices_checked_on
        );
        let _ = writeln!(out, "  {:<58} {:>10} {:>10}", "", "STANDARD", "EXPRESS");
        for line in &cost.per_million_payments.lines {
            let _ = writeln!(
                out,
                "  {:<58} {:>10} {:>10}",
                line.item, line.standard, line.express
            );
        }
        let _ = writeln!(
            out,
            "  {:<58} {:>10} {:>10}",
            "total (USD)",
            cost.per_million_payments.standard_total,
            cost.per_million_payments.express_total
        );
    }
    let _ = writeln!(out, "\nTargets");
    for check in &report.targets {
        let _ = writeln!(
            out,
            "  [{}] {:<58} {}{}",
            if check.met { "met " } else { "MISS" },
            check.target,
            check.measured,
            check
                .miss
                .as_ref()
                .map(|m| format!(" — {m}"))
                .unwrap_or_default()
        );
    }
    for note in &report.notes {
        let _ = writeln!(out, "note: {note}");
    }
    out
}

/// The README's Performance tables.
pub fn render_markdown(report: &Report) -> String {
    let mut out = String::new();
    let setup = &report.setup;
    let load = &report.load;
    let _ = writeln!(
        out,
        "Run `{}` on {} × {} ({}), {} UTC, functions built `{}`.\n",
        report.command,
        report.machine.cpu_count,
        report.machine.cpu_model,
        report.machine.os,
        report.started_at,
        setup.functions_profile
    );
    let _ = writeln!(out, "| Load | value |\n|---|---|");
    let _ = writeln!(
        out,
        "| payments / concurrency / users | {} / {} / {}{} |",
        setup.payments,
        setup.concurrency,
        setup.users,
        if setup.hot_wallet {
            " (hot wallet)"
        } else {
            ""
        }
    );
    let _ = writeln!(
        out,
        "| throughput | {} payments/s ({} of {} succeeded) |",
        load.throughput_per_second, load.succeeded, load.sent
    );
    if let Some(e2e) = load.end_to_end {
        let _ = writeln!(
            out,
            "| end to end (POST → execution end) p50 / p95 / p99 / max | {} / {} / {} / {} ms |",
            ms(e2e.p50_us),
            ms(e2e.p95_us),
            ms(e2e.p99_us),
            ms(e2e.max_us)
        );
    }
    if let Some(floor) = &report.floor
        && let Some(f) = floor.end_to_end
    {
        let _ = writeln!(
            out,
            "| floor ({} hops, {} DynamoDB requests, {} gateway calls, no orchestration) p50 / p99 | {} / {} ms (saga p50 = {}× floor) |",
            floor.plan.lambda_hops,
            floor.plan.dynamo_request_count(),
            floor.plan.gateway_calls,
            ms(f.p50_us),
            ms(f.p99_us),
            floor
                .saga_over_floor_p50
                .map(|d| d.to_string())
                .unwrap_or_else(|| "?".into())
        );
    }
    let per = &load.per_payment;
    let _ = writeln!(
        out,
        "| per payment: Lambda invocations / DynamoDB requests (RRU, WRU) / state transitions / gateway calls | {} / {} ({}, {}) / {} / {} |",
        per.lambda_invocations,
        per.dynamodb_requests
            .map(|d| d.to_string())
            .unwrap_or_else(|| "?".into()),
        per.read_request_units.unwrap_or_default(),
        per.write_request_units.unwrap_or_default(),
        per.state_transitions,
        per.gateway_calls
    );
    if let Some(retries) = load.contention.version_conflict_retries_per_payment {
        let _ = writeln!(out, "| version-conflict retries per payment | {retries} |");
    }
    let _ = writeln!(out, "\n| State | p50 ms | p99 ms |\n|---|---|---|");
    for state in &load.states {
        let _ = writeln!(
            out,
            "| {} | {} | {} |",
            state.state,
            ms(state.p50_us),
            ms(state.p99_us)
        );
    }
    if !report.cold_starts.is_empty() {
        let _ = writeln!(
            out,
            "\n| Function | init p50 ms (× hello) | first invocation p50 ms | peak RSS MiB (cold / under load) | stripped size MiB (host / arm64) |\n|---|---|---|---|---|"
        );
        for cold in &report.cold_starts {
            let size = |kind: &str| {
                report
                    .binaries
                    .iter()
                    .find(|b| b.function == cold.binary && b.kind == kind)
                    .map(|b| ratio(b.facts.bytes, MIB, 2).to_string())
                    .unwrap_or_else(|| "–".into())
            };
            let _ = writeln!(
                out,
                "| {} | {}{} | {} | {} / {} | {} / {} |",
                cold.binary,
                ms(cold.init_p50_us),
                cold.init_over_hello
                    .map(|r| format!(" ({r}×)"))
                    .unwrap_or_default(),
                ms(cold.first_invocation_p50_us),
                cold.peak_rss_kib_max
                    .map(|kib| ratio(kib, 1024, 1).to_string())
                    .unwrap_or_else(|| "?".into()),
                load.peak_rss_kib
                    .get(&cold.binary)
                    .map(|kib| ratio(*kib, 1024, 1).to_string())
                    .unwrap_or_else(|| "–".into()),
                size("host"),
                size("deploy"),
            );
        }
    }
    if let Some(cost) = &report.cost {
        let _ = writeln!(
            out,
            "\n| AWS cost per 1 M payments ({}, prices of {}) | STANDARD | EXPRESS |\n|---|---|---|",
            cost.region, cost.prices_checked_on
        );
        for line in &cost.per_million_payments.lines {
            let _ = writeln!(
                out,
                "| {} | ${} | ${} |",
                line.item, line.standard, line.express
            );
        }
        let _ = writeln!(
            out,
            "| **total** | **${}** | **${}** |",
            cost.per_million_payments.standard_total, cost.per_million_payments.express_total
        );
    }
    let _ = writeln!(out, "\n| Target | measured | |\n|---|---|---|");
    for check in &report.targets {
        let _ = writeln!(
            out,
            "| {} | {} | {} |",
            check.target,
            check.measured,
            if check.met {
                "met".to_owned()
            } else {
                format!("**missed**: {}", check.miss.clone().unwrap_or_default())
            }
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misses_say_by_how_much() {
        assert_eq!(over(130, 100), "30% over");
        assert_eq!(over(90, 100), "0% over");
        assert_eq!(
            under(Decimal::from(150), Decimal::from(300)),
            "50% short (150/s)"
        );
    }
}
