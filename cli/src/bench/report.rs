//! The benchmark's results: one serialisable [`Report`] (the JSON under
//! `target/bench/`), its text rendering (stdout) and a Markdown rendering (the
//! README's Performance table), with the targets checked against it.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};

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

/// A titled block of the text rendering: `title`, then each line indented.
struct Section {
    title: String,
    lines: Vec<String>,
}

impl Section {
    fn new(title: impl Into<String>, lines: Vec<String>) -> Self {
        Self {
            title: title.into(),
            lines,
        }
    }
}

impl fmt::Display for Section {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "\n{}", self.title)?;
        self.lines
            .iter()
            .try_for_each(|line| writeln!(f, "  {line}"))
    }
}

/// A table of the Markdown rendering.
struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(header: impl IntoIterator<Item = impl Into<String>>, rows: Vec<Vec<String>>) -> Self {
        Self {
            header: header.into_iter().map(Into::into).collect(),
            rows,
        }
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A blank header cell is written `| |`.
        let header: String = self
            .header
            .iter()
            .map(|cell| match cell.as_str() {
                "" => " |".to_owned(),
                cell => format!(" {cell} |"),
            })
            .collect();
        writeln!(f, "\n|{header}\n|{}", "---|".repeat(self.header.len()))?;
        self.rows
            .iter()
            .try_for_each(|row| writeln!(f, "| {} |", row.join(" | ")))
    }
}

/// A text line: `label` in a column of its own, then `value`.
fn field(label: &str, value: impl fmt::Display) -> String {
    format!("{label:<22} {value}")
}

fn summary_line(label: &str, summary: Option<&Summary>) -> String {
    match summary {
        Some(s) => field(
            label,
            format!(
                "p50 {:>7} ms   p95 {:>7} ms   p99 {:>7} ms   max {:>7} ms",
                ms(s.p50_us),
                ms(s.p95_us),
                ms(s.p99_us),
                ms(s.max_us)
            ),
        ),
        None => field(label, "(no samples)"),
    }
}

/// `name value, name value, …`
fn listing<V: fmt::Display>(values: &BTreeMap<String, V>) -> String {
    values
        .iter()
        .map(|(name, value)| format!("{name} {value}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The value, or `missing` in its place.
fn shown_or(value: Option<impl fmt::Display>, missing: &str) -> String {
    value.map_or_else(|| missing.to_owned(), |v| v.to_string())
}

/// KiB in MiB, one decimal.
fn mib(kib: u64) -> Decimal {
    ratio(kib, 1024, 1)
}

/// A state's cells: name, p50 ms, p99 ms.
fn state_cells(state: &StateReport) -> [String; 3] {
    [state.state.clone(), ms(state.p50_us), ms(state.p99_us)]
}

/// A cold-started function's cells: binary, init p50 ms, ` (r×)` against
/// hello-world (or nothing), first invocation p50 ms, peak RSS MiB.
fn cold_cells(cold: &ColdReport) -> [String; 5] {
    [
        cold.binary.clone(),
        ms(cold.init_p50_us),
        cold.init_over_hello
            .map(|r| format!(" ({r}×)"))
            .unwrap_or_default(),
        ms(cold.first_invocation_p50_us),
        shown_or(cold.peak_rss_kib_max.map(mib), "?"),
    ]
}

/// The whole report as text, for the terminal.
pub fn render_text(report: &Report) -> String {
    let setup = &report.setup;
    let load = &report.load;
    let mut out = format!(
        "\nsaga bench {} — {} payments, concurrency {}, {} {}, gateway {}{}\n\
         machine: {} × {} ({}); functions built: {}\n",
        report.run_id,
        setup.payments,
        setup.concurrency,
        setup.users,
        if setup.users == 1 { "user" } else { "users" },
        setup.gateway_mode,
        if setup.hot_wallet { ", HOT WALLET" } else { "" },
        report.machine.cpu_count,
        report.machine.cpu_model,
        report.machine.os,
        setup.functions_profile
    );
    let sections = [
        Some(load_section(load)),
        Some(Section::new(
            "Per state (from the execution histories)",
            load.states.iter().map(state_line).collect(),
        )),
        Some(per_payment_section(load)),
        report.floor.as_ref().map(floor_section),
        cold_starts_section(&report.cold_starts),
        peak_rss_section(load),
        binaries_section(&report.binaries),
        report.cost.as_ref().map(cost_section),
        Some(targets_section(&report.targets)),
    ];
    out.extend(sections.iter().flatten().map(Section::to_string));
    for note in &report.notes {
        let _ = writeln!(out, "note: {note}");
    }
    out
}

fn load_section(load: &LoadReport) -> Section {
    let trouble = if load.errors > 0 || !load.ended_otherwise.is_empty() {
        format!(
            "; {} errors, ended otherwise {:?}",
            load.errors, load.ended_otherwise
        )
    } else {
        String::new()
    };
    let throughput = format!(
        "{}/s ({} succeeded of {} in {} s){trouble}",
        load.throughput_per_second,
        load.succeeded,
        load.sent,
        ratio(load.elapsed_ms, 1_000, 1)
    );
    let mut lines = vec![
        field("throughput", throughput),
        summary_line("end to end", load.end_to_end.as_ref()),
        summary_line("accept (POST → 202)", load.accept.as_ref()),
    ];
    lines.extend(load.error_examples.iter().map(|e| format!("error: {e}")));
    Section::new("Load (saga, through the API)", lines)
}

fn state_line(state: &StateReport) -> String {
    let [name, p50, p99] = state_cells(state);
    format!(
        "{name:<28} p50 {p50:>7} ms   p99 {p99:>7} ms   ({} visits)",
        state.visits
    )
}

fn per_payment_section(load: &LoadReport) -> Section {
    let per = &load.per_payment;
    let dynamodb = match per.dynamodb_requests {
        Some(requests) => format!(
            "{requests} ({}); RRU {}, WRU {}",
            listing(&per.dynamodb_requests_by_operation),
            per.read_request_units.unwrap_or_default(),
            per.write_request_units.unwrap_or_default()
        ),
        None => "not counted by this local cloud (rebuild it: `/_local/dynamodb/stats`)".into(),
    };
    let contention = &load.contention;
    let retries = format!(
        "{} (total {}), Step Functions retries {}{}",
        shown_or(contention.version_conflict_retries_per_payment, "n/a"),
        shown_or(contention.version_conflict_retries, "n/a"),
        contention.step_function_retries,
        if contention.task_errors.is_empty() {
            String::new()
        } else {
            format!(", task errors {:?}", contention.task_errors)
        }
    );
    let invocations = format!(
        "{} ({}: {})",
        per.lambda_invocations,
        per.lambda_invocations_source,
        listing(&per.lambda_invocations_by_function)
    );
    let mut lines = vec![
        field("Lambda invocations", invocations),
        field("DynamoDB requests", dynamodb),
        field("state transitions", per.state_transitions),
        field("gateway calls", per.gateway_calls),
        field("version-conflict retries", retries),
    ];
    if !contention.condition_failures_per_payment.is_empty() {
        lines.push(field(
            "refused conditions",
            format!(
                "{} (wallets: version conflicts; others: idempotent replays)",
                listing(&contention.condition_failures_per_payment)
            ),
        ));
    }
    Section::new("Per payment", lines)
}

fn floor_section(floor: &FloorReport) -> Section {
    let throughput = format!(
        "{}/s; saga p50 / floor p50 = {}",
        floor.throughput_per_second,
        shown_or(floor.saga_over_floor_p50.map(|d| format!("{d}×")), "n/a")
    );
    let mut lines = vec![
        summary_line("floor end to end", floor.end_to_end.as_ref()),
        field("floor throughput", throughput),
    ];
    lines.extend(
        floor
            .error_examples
            .iter()
            .map(|e| format!("floor error: {e}")),
    );
    let title = format!(
        "Floor (same hops and requests, no orchestration): {} Lambda hops, {} DynamoDB requests, {} gateway calls per payment",
        floor.plan.lambda_hops,
        floor.plan.dynamo_request_count(),
        floor.plan.gateway_calls
    );
    Section::new(title, lines)
}

fn cold_starts_section(cold_starts: &[ColdReport]) -> Option<Section> {
    if cold_starts.is_empty() {
        return None;
    }
    let lines = cold_starts.iter().map(|cold| {
        let [binary, init, over_hello, first, rss] = cold_cells(cold);
        let errors = if cold.errors.is_empty() && cold.failures.is_empty() {
            String::new()
        } else {
            format!("   errors {:?} {:?}", cold.errors, cold.failures)
        };
        format!(
            "{binary:<20} init {init:>6} ms{over_hello}   first invocation {first:>7} ms   peak RSS {rss:>5} MiB{errors}"
        )
    });
    let samples = cold_starts.iter().map(|c| c.samples.len()).max();
    let title = format!(
        "Cold starts (median of {} each; init = process start → first Runtime API poll)",
        samples.unwrap_or_default()
    );
    Some(Section::new(title, lines.collect()))
}

fn peak_rss_section(load: &LoadReport) -> Option<Section> {
    if load.peak_rss_kib.is_empty() {
        return None;
    }
    let line = load
        .peak_rss_kib
        .iter()
        .map(|(f, kib)| {
            let instances = load.instances.get(f).copied().unwrap_or_default();
            format!("{f} {} ({instances} inst.)", mib(*kib))
        })
        .collect::<Vec<_>>()
        .join(", ");
    Some(Section::new(
        "Peak RSS per instance under load (largest, MiB)",
        vec![line],
    ))
}

fn binaries_section(binaries: &[BinaryReport]) -> Option<Section> {
    if binaries.is_empty() {
        return None;
    }
    let lines = binaries.iter().map(|binary| {
        format!(
            "{:<20} {:<6} {:<8} {:>6} MiB  {:<12} built {}",
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
        )
    });
    Some(Section::new("Binaries (bytes on disk)", lines.collect()))
}

fn cost_section(cost: &CostReport) -> Section {
    let bill = &cost.per_million_payments;
    let columns = |item: &str, standard: &dyn fmt::Display, express: &dyn fmt::Display| {
        format!("{item:<58} {standard:>10} {express:>10}")
    };
    let mut lines = vec![columns("", &"STANDARD", &"EXPRESS")];
    lines.extend(
        bill.lines
            .iter()
            .map(|line| columns(&line.item, &line.standard, &line.express)),
    );
    lines.push(columns(
        "total (USD)",
        &bill.standard_total,
        &bill.express_total,
    ));
    let title = format!(
        "AWS cost per 1 million payments ({}, prices of {}, bench/prices.json)",
        cost.region, cost.prices_checked_on
    );
    Section::new(title, lines)
}

fn targets_section(targets: &[TargetCheck]) -> Section {
    let lines = targets.iter().map(|check| {
        let miss = check.miss.as_ref().map(|m| format!(" — {m}"));
        format!(
            "[{}] {:<58} {}{}",
            if check.met { "met " } else { "MISS" },
            check.target,
            check.measured,
            miss.unwrap_or_default()
        )
    });
    Section::new("Targets", lines.collect())
}

/// The README's Performance tables.
pub fn render_markdown(report: &Report) -> String {
    let mut out = format!(
        "Run `{}` on {} × {} ({}), {} UTC, functions built `{}`.\n",
        report.command,
        report.machine.cpu_count,
        report.machine.cpu_model,
        report.machine.os,
        report.started_at,
        report.setup.functions_profile
    );
    let states = report.load.states.iter().map(|s| state_cells(s).into());
    let tables = [
        Some(load_table(report)),
        Some(Table::new(["State", "p50 ms", "p99 ms"], states.collect())),
        cold_starts_table(report),
        report.cost.as_ref().map(cost_table),
        Some(targets_table(&report.targets)),
    ];
    out.extend(tables.iter().flatten().map(Table::to_string));
    out
}

fn load_table(report: &Report) -> Table {
    let setup = &report.setup;
    let load = &report.load;
    let mut rows = vec![
        vec![
            "payments / concurrency / users".into(),
            format!(
                "{} / {} / {}{}",
                setup.payments,
                setup.concurrency,
                setup.users,
                if setup.hot_wallet {
                    " (hot wallet)"
                } else {
                    ""
                }
            ),
        ],
        vec![
            "throughput".into(),
            format!(
                "{} payments/s ({} of {} succeeded)",
                load.throughput_per_second, load.succeeded, load.sent
            ),
        ],
    ];
    if let Some(e2e) = load.end_to_end {
        rows.push(vec![
            "end to end (POST → execution end) p50 / p95 / p99 / max".into(),
            format!(
                "{} / {} / {} / {} ms",
                ms(e2e.p50_us),
                ms(e2e.p95_us),
                ms(e2e.p99_us),
                ms(e2e.max_us)
            ),
        ]);
    }
    if let Some(floor) = &report.floor
        && let Some(f) = floor.end_to_end
    {
        rows.push(vec![
            format!(
                "floor ({} hops, {} DynamoDB requests, {} gateway calls, no orchestration) p50 / p99",
                floor.plan.lambda_hops,
                floor.plan.dynamo_request_count(),
                floor.plan.gateway_calls
            ),
            format!(
                "{} / {} ms (saga p50 = {}× floor)",
                ms(f.p50_us),
                ms(f.p99_us),
                shown_or(floor.saga_over_floor_p50, "?")
            ),
        ]);
    }
    rows.push(per_payment_row(&load.per_payment));
    if let Some(retries) = load.contention.version_conflict_retries_per_payment {
        rows.push(vec![
            "version-conflict retries per payment".into(),
            retries.to_string(),
        ]);
    }
    Table::new(["Load", "value"], rows)
}

fn per_payment_row(per: &PerPayment) -> Vec<String> {
    vec![
        "per payment: Lambda invocations / DynamoDB requests (RRU, WRU) / state transitions / gateway calls".into(),
        format!(
            "{} / {} ({}, {}) / {} / {}",
            per.lambda_invocations,
            shown_or(per.dynamodb_requests, "?"),
            per.read_request_units.unwrap_or_default(),
            per.write_request_units.unwrap_or_default(),
            per.state_transitions,
            per.gateway_calls
        ),
    ]
}

fn cold_starts_table(report: &Report) -> Option<Table> {
    if report.cold_starts.is_empty() {
        return None;
    }
    let size = |binary: &str, kind: &str| {
        let found = report
            .binaries
            .iter()
            .find(|b| b.function == binary && b.kind == kind);
        shown_or(found.map(|b| ratio(b.facts.bytes, MIB, 2)), "–")
    };
    let rows = report.cold_starts.iter().map(|cold| {
        let [binary, init, over_hello, first, rss] = cold_cells(cold);
        let rss_under_load = report.load.peak_rss_kib.get(&binary).copied().map(mib);
        let sizes = format!("{} / {}", size(&binary, "host"), size(&binary, "deploy"));
        vec![
            binary,
            format!("{init}{over_hello}"),
            first,
            format!("{rss} / {}", shown_or(rss_under_load, "–")),
            sizes,
        ]
    });
    let header = [
        "Function",
        "init p50 ms (× hello)",
        "first invocation p50 ms",
        "peak RSS MiB (cold / under load)",
        "stripped size MiB (host / arm64)",
    ];
    Some(Table::new(header, rows.collect()))
}

fn cost_table(cost: &CostReport) -> Table {
    let bill = &cost.per_million_payments;
    let mut rows: Vec<Vec<String>> = bill
        .lines
        .iter()
        .map(|line| {
            vec![
                line.item.clone(),
                format!("${}", line.standard),
                format!("${}", line.express),
            ]
        })
        .collect();
    rows.push(vec![
        "**total**".into(),
        format!("**${}**", bill.standard_total),
        format!("**${}**", bill.express_total),
    ]);
    let title = format!(
        "AWS cost per 1 M payments ({}, prices of {})",
        cost.region, cost.prices_checked_on
    );
    Table::new([title.as_str(), "STANDARD", "EXPRESS"], rows)
}

fn targets_table(targets: &[TargetCheck]) -> Table {
    let rows = targets.iter().map(|check| {
        let verdict = if check.met {
            "met".to_owned()
        } else {
            format!("**missed**: {}", check.miss.clone().unwrap_or_default())
        };
        vec![check.target.clone(), check.measured.clone(), verdict]
    });
    Table::new(["Target", "measured", ""], rows.collect())
}

#[cfg(test)]
mod tests {
    use super::super::cost::CostLine;
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

    fn summary(p50_ms: u64) -> Summary {
        Summary {
            count: 1000,
            p50_us: p50_ms * 1000,
            p95_us: p50_ms * 2000,
            p99_us: p50_ms * 3000,
            max_us: p50_ms * 5000,
            mean_us: p50_ms * 1100,
        }
    }

    fn cold(function: &str, init_us: u64, init_over_hello: Option<Decimal>) -> ColdReport {
        let sample = ColdSample {
            init_us,
            first_invocation_us: init_us * 4,
            peak_rss_kib: Some(9_216),
            error_type: None,
        };
        ColdReport {
            function: function.into(),
            binary: function.into(),
            samples: vec![sample.clone(), sample],
            init_p50_us: init_us,
            first_invocation_p50_us: init_us * 4,
            peak_rss_kib_max: Some(9_216),
            init_over_hello,
            errors: BTreeMap::new(),
            failures: Vec::new(),
        }
    }

    /// Every optional section filled.
    fn full_report() -> Report {
        let mut load = LoadReport {
            sent: 1000,
            succeeded: 1000,
            elapsed_ms: 4_000,
            throughput_per_second: Decimal::from(250),
            end_to_end: Some(summary(42)),
            accept: Some(summary(3)),
            peak_rss_kib: BTreeMap::from([("wallet-service".to_owned(), 12_390)]),
            ..LoadReport::default()
        };
        load.states.push(StateReport {
            state: "ReserveFunds".into(),
            visits: 1000,
            p50_us: 4_200,
            p99_us: 19_900,
        });
        let floor = FloorReport {
            plan: FloorPlan {
                lambda_hops: 4,
                dynamo_requests: vec![("GetItem".into(), 3), ("PutItem".into(), 5)],
                gateway_calls: 2,
            },
            end_to_end: Some(summary(10)),
            saga_over_floor_p50: Some(Decimal::new(420, 2)),
            payments: 500,
            throughput_per_second: Decimal::from(500),
            elapsed_ms: 1_000,
            errors: 0,
            error_examples: Vec::new(),
        };
        let cost = CostReport {
            region: "eu-west-1".into(),
            prices_checked_on: "2025-01-01".into(),
            usage: Usage::default(),
            per_million_payments: Bill {
                lines: vec![CostLine {
                    item: "Step Functions state transitions".into(),
                    standard: Decimal::new(27500, 2),
                    express: Decimal::new(0, 2),
                }],
                standard_total: Decimal::new(27500, 2),
                express_total: Decimal::new(0, 2),
            },
            assumptions: Vec::new(),
        };
        let binary = BinaryReport {
            function: "wallet-service".into(),
            kind: "host".into(),
            facts: BinaryFacts {
                path: "target/release/wallet-service".into(),
                bytes: 5 * MIB,
                stripped: true,
                architecture: "x86_64".into(),
                modified: None,
            },
        };
        let mut report = Report {
            run_id: "20250102-030405".into(),
            started_at: "2025-01-02 03:04:05".into(),
            command: "make bench".into(),
            machine: Machine {
                cpu_count: 8,
                cpu_model: "Some CPU".into(),
                os: "linux".into(),
            },
            setup: Setup {
                payments: 1000,
                concurrency: 32,
                users: 1,
                hot_wallet: true,
                gateway_mode: "approve_all".into(),
                warmup_payments: 20,
                amount: "1.00 USD".into(),
                api_url: "http://127.0.0.1:3000".into(),
                edge_url: "http://127.0.0.1:3001".into(),
                functions_profile: "release".into(),
            },
            load,
            floor: Some(floor),
            cold_starts: vec![
                cold(HELLO, 5_000, None),
                cold("wallet-service", 6_250, Some(Decimal::new(125, 2))),
            ],
            binaries: vec![binary],
            cost: Some(cost),
            targets: Vec::new(),
            notes: vec!["a note".into()],
        };
        report.targets = check_targets(&report);
        report
    }

    fn assert_has_lines(rendered: &str, expected: &[&str]) {
        for line in expected {
            assert!(
                rendered.lines().any(|l| l == *line),
                "{line:?} missing from\n{rendered}"
            );
        }
    }

    #[test]
    fn both_renderings_show_every_section() {
        // GIVEN a report with every section
        let report = full_report();
        // WHEN rendered for the terminal and for the README
        let text = render_text(&report);
        let markdown = render_markdown(&report);
        // THEN the text lines up each section's columns under its title
        let text_lines = [
            "saga bench 20250102-030405 — 1000 payments, concurrency 32, 1 user, gateway approve_all, HOT WALLET",
            "  end to end             p50    42.0 ms   p95    84.0 ms   p99   126.0 ms   max   210.0 ms",
            "  ReserveFunds                 p50     4.2 ms   p99    19.9 ms   (1000 visits)",
            "  floor throughput       500/s; saga p50 / floor p50 = 4.20×",
            "  wallet-service       init    6.2 ms (1.25×)   first invocation    25.0 ms   peak RSS   9.0 MiB",
            "  wallet-service 12.1 (0 inst.)",
            "  wallet-service       host   x86_64     5.00 MiB  stripped     built ?",
            "                                                               STANDARD    EXPRESS",
            "  total (USD)                                                    275.00       0.00",
            "  [MISS] p99 ≤ 100 ms end to end                                    126.0 ms — 26% over",
            "  [met ] wallet-service cold start (init) ≤ 1.5 × hello-world       6.2 ms vs 5.0 ms (1.25×)",
            "note: a note",
        ];
        assert_has_lines(&text, &text_lines);
        // AND the Markdown has a table per section
        let markdown_lines = [
            "| Load | value |",
            "| payments / concurrency / users | 1000 / 32 / 1 (hot wallet) |",
            "| floor (4 hops, 8 DynamoDB requests, 2 gateway calls, no orchestration) p50 / p99 | 10.0 / 30.0 ms (saga p50 = 4.20× floor) |",
            "| ReserveFunds | 4.2 | 19.9 |",
            "| wallet-service | 6.2 (1.25×) | 25.0 | 9.0 / 12.1 | 5.00 / – |",
            "| **total** | **$275.00** | **$0.00** |",
            "| Target | measured | |",
            "|---|---|---|",
            "| p99 ≤ 100 ms end to end | 126.0 ms | **missed**: 26% over |",
        ];
        assert_has_lines(&markdown, &markdown_lines);
        assert!(markdown.starts_with("Run `make bench` on 8 × Some CPU (linux)"));
    }

    #[test]
    fn sections_without_data_are_left_out() {
        // GIVEN a report without floor, cold starts, binaries or cost
        let mut report = full_report();
        report.floor = None;
        report.cold_starts.clear();
        report.binaries.clear();
        report.cost = None;
        // WHEN rendered
        let text = render_text(&report);
        let markdown = render_markdown(&report);
        // THEN neither rendering has their sections
        for title in ["\nFloor", "\nCold starts", "\nBinaries", "\nAWS cost"] {
            assert!(!text.contains(title), "{title:?} in\n{text}");
        }
        for header in ["| Function |", "| AWS cost"] {
            assert!(!markdown.contains(header), "{header:?} in\n{markdown}");
        }
    }
}
