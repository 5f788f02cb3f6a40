//! `saga bench`: the performance baseline of issue 6, against the running local
//! cloud (`make bench` builds it in release mode and starts one of its own).
//!
//! One run, in order:
//! 1. **load** — funds the users' wallets, warms the functions up, then sends N
//!    payments at concurrency C through the API and waits for each execution to
//!    end; throughput, end-to-end latency, per-state latency (from the
//!    histories), Lambda invocations, DynamoDB requests and capacity units,
//!    state transitions, gateway calls and version-conflict retries per payment;
//! 2. **floor** — the same hops and requests per payment without orchestration;
//! 3. **cold starts** — each function binary and a hello-world Lambda started
//!    cold ≥ 10 times under a Runtime API served here; peak RSS; binary sizes;
//! 4. **cost** — the AWS bill per 1 million payments, STANDARD and EXPRESS, from
//!    the counts above and `bench/prices.json`.
//!
//! Prints a table (or the JSON with `--json`) and writes
//! `target/bench/bench-<time>.json`, `latest.json` and `latest.md`.

mod cloud;
mod coldstart;
mod cost;
mod floor;
mod history;
mod load;
mod progress;
mod report;
mod stats;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use clap::Args;
use serde_json::{Value, json};

use crate::api::Api;
use crate::args::Global;
use crate::error::{CliError, CliResult};
use crate::stepfunctions::{DEFAULT_ENDPOINT, StepFunctions, Target};
use cloud::{Cloud, FunctionInfo, LOCAL_GATEWAY_API_KEY};
use coldstart::{ColdTarget, binary_facts};
use cost::{FunctionUsage, Prices, Usage};
use history::ExecutionSummary;
use load::{Load, Outcome, Sample};
use report::{
    BinaryReport, ColdReport, Contention, CostReport, FloorReport, HELLO, LoadReport, Machine,
    PerPayment, Report, Setup, StateReport,
};
use stats::{Summary, median, per_second, ratio};

/// Every payment is this much, in USD: any approved amount does (in the
/// gateway's `normal` mode, x.13 declines and x.77 goes pending first).
const AMOUNT: &str = "1.00";
const CURRENCY: &str = "USD";

#[derive(Debug, Args, Clone)]
pub struct BenchArgs {
    /// Number of payments.
    #[arg(long, short = 'n', default_value_t = 2000)]
    pub payments: u32,
    /// Payments in flight at once.
    #[arg(long, short = 'c', default_value_t = 32)]
    pub concurrency: u32,
    /// Distinct users (wallets funded first).
    #[arg(long, short = 'u', default_value_t = 200)]
    pub users: u32,
    /// Mock gateway mode for the run (approve_all, normal, random, …); put back afterwards.
    #[arg(long, default_value = "approve_all")]
    pub gateway_mode: String,
    /// All payments on one wallet: shows version-conflict retries and the
    /// throughput ceiling of a single wallet.
    #[arg(long)]
    pub hot_wallet: bool,
    /// Payments sent before measuring, so every function has warm instances.
    #[arg(long, default_value_t = 64)]
    pub warmup: u32,
    /// Payments of the floor run (0: no floor); the same as --payments by default.
    #[arg(long)]
    pub floor_payments: Option<u32>,
    /// Cold starts per function (0: none); the issue asks for a median of ≥ 10.
    #[arg(long, default_value_t = 10)]
    pub cold_starts: u32,
    /// The hello-world Lambda binary (default: `hello-lambda` next to the
    /// functions' binaries, else local's `examples/echo_lambda`).
    #[arg(long)]
    pub hello_bin: Option<PathBuf>,
    /// The mock gateway of the local cloud.
    #[arg(
        long,
        env = "BENCH_GATEWAY_URL",
        default_value = "http://127.0.0.1:3000"
    )]
    pub gateway_url: String,
    /// The key the mock gateway expects (the local cloud's default).
    #[arg(long, env = "BENCH_GATEWAY_API_KEY", default_value = LOCAL_GATEWAY_API_KEY, hide_env_values = true)]
    pub gateway_api_key: String,
    /// The local cloud's data directory (its `logs/` hold the Lambda REPORT lines).
    #[arg(long, default_value = ".local")]
    pub local_dir: PathBuf,
    /// The prices of the cost model.
    #[arg(long, default_value = cost::PRICES_PATH)]
    pub prices: PathBuf,
    /// Where the JSON and Markdown results go.
    #[arg(long, default_value_os_t = crate::args::default_bench_dir())]
    pub out_dir: PathBuf,
    /// The arm64 deploy artefacts (`make build-all`), sized when present.
    #[arg(long, default_value = "target/lambda")]
    pub deploy_dir: PathBuf,
    /// Give up on a payment after this many seconds.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
    /// How the run was started, for the report (e.g. `make bench`).
    #[arg(long)]
    pub command: Option<String>,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
}

pub async fn run(global: &Global, args: &BenchArgs) -> CliResult<ExitCode> {
    check_args(args)?;
    let target = Target::new(
        global.endpoint_url.clone(),
        global.profile.clone(),
        global.region.clone(),
    );
    if !target.is_local() {
        return Err(CliError::Usage(
            "bench measures the local cloud only (no --profile/--region)".into(),
        ));
    }
    let prices = Prices::load(&args.prices)?;
    let edge = target
        .endpoint
        .clone()
        .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned());
    let api = Api::connect(global).await?;
    api.health().await?;
    let cloud = Cloud::new(&edge, &args.gateway_url, &args.gateway_api_key)?;
    cloud.check().await?;
    let sfn = StepFunctions::connect(target).await;
    let functions = cloud.functions().await?;
    if functions.is_empty() {
        return Err(CliError::Protocol(
            "the local cloud lists no function".into(),
        ));
    }
    let previous = cloud.gateway_settings().await?;
    let mode = args.gateway_mode.replace('-', "_");
    cloud.set_gateway_settings(&json!({ "mode": mode })).await?;
    let bench = Bench {
        global,
        args,
        api,
        cloud: cloud.clone(),
        sfn,
        functions,
        prices,
        edge,
        mode,
    };
    let outcome = bench.run().await;
    if let Some(previous_mode) = previous.get("mode").and_then(Value::as_str) {
        let _ = cloud
            .set_gateway_settings(&json!({ "mode": previous_mode }))
            .await;
    }
    outcome
}

fn check_args(args: &BenchArgs) -> CliResult<()> {
    let bounded = |name: &str, value: u32, max: u32| {
        if (1..=max).contains(&value) {
            Ok(())
        } else {
            Err(CliError::Usage(format!(
                "--{name} must be between 1 and {max}, not {value}"
            )))
        }
    };
    bounded("payments", args.payments, 100_000)?;
    bounded("concurrency", args.concurrency, 512)?;
    bounded("users", args.users, 10_000)?;
    if args.cold_starts > 100 || args.warmup > 10_000 || args.timeout == 0 || args.timeout > 900 {
        return Err(CliError::Usage(
            "--cold-starts ≤ 100, --warmup ≤ 10000 and 1 ≤ --timeout ≤ 900".into(),
        ));
    }
    if args.floor_payments.is_some_and(|n| n > 100_000) {
        return Err(CliError::Usage("--floor-payments ≤ 100000".into()));
    }
    Ok(())
}

struct Bench<'a> {
    global: &'a Global,
    args: &'a BenchArgs,
    api: Api,
    cloud: Cloud,
    sfn: StepFunctions,
    functions: Vec<FunctionInfo>,
    prices: Prices,
    edge: String,
    mode: String,
}

/// What the measured phase leaves for the later ones.
struct Measured {
    report: LoadReport,
    samples: Vec<Sample>,
    /// Task inputs by resource, and the payment they were for.
    replay: Option<(String, BTreeMap<String, String>)>,
    lambda_invocations: u64,
    dynamo_ops: Option<BTreeMap<String, cloud::OperationCounters>>,
    gateway_calls: u64,
    usage: Usage,
}

impl Bench<'_> {
    async fn run(&self) -> CliResult<ExitCode> {
        let args = self.args;
        let started_at = now_rfc3339();
        let run_id = run_id();
        let quiet = args.quiet || self.global.json;
        let mut notes = Vec::new();
        let users: Vec<String> = if args.hot_wallet {
            vec![format!("bench_{run_id}_hot")]
        } else {
            (0..args.users)
                .map(|i| format!("bench_{run_id}_{i:05}"))
                .collect()
        };
        let profile = functions_profile(&self.functions);
        if profile != "release" {
            notes.push(format!(
                "the functions run from a `{profile}` build: figures are not representative (make bench builds release)"
            ));
        }
        self.fund(&users, quiet).await?;
        let load = Arc::new(Load::new(
            self.api.clone(),
            self.sfn.clone(),
            self.sfn.execution_arn_for("").await?,
            users.clone(),
            AMOUNT.to_owned(),
            CURRENCY.to_owned(),
            run_id.clone(),
            Duration::from_secs(args.timeout),
        ));
        let n = u64::from(args.payments);
        if args.warmup > 0 {
            if !quiet {
                eprintln!(
                    "warm-up: {} payments (not measured) so every function has warm instances",
                    args.warmup
                );
            }
            let warm = load
                .run("warmup", n, u64::from(args.warmup), args.concurrency, quiet)
                .await;
            if let Some(failed) = warm.samples.iter().find(|s| !s.succeeded()) {
                return Err(CliError::Outcome(format!(
                    "a warm-up payment did not succeed ({:?}); is the gateway mode right?",
                    failed.outcome
                )));
            }
        }
        let measured = self.measure(&load, quiet, &mut notes).await?;
        let floor = self
            .floor(&measured, &users, &run_id, quiet, &mut notes)
            .await;
        let cold_starts = self.cold_starts(&measured, &mut notes).await;
        let binaries = self.binaries(&cold_starts);
        let bill = cost::bill(&measured.usage, &self.prices);
        let cost = Some(CostReport {
            region: self.prices.region.clone(),
            prices_checked_on: self.prices.checked_on.clone(),
            usage: measured.usage.clone(),
            per_million_payments: bill,
            assumptions: vec![
                "counts per payment are the measured ones; Lambda durations are this machine's (REPORT billed ms, init included), not Graviton's at 128 MB".into(),
                "Express duration: each execution's measured duration rounded up to 100 ms, at the 64 MB minimum".into(),
                "one API Gateway request per payment (POST /payments); clients' status polls not included".into(),
            ],
        });
        let mut report = Report {
            run_id,
            started_at,
            command: args.command.clone().unwrap_or_else(|| self.command()),
            machine: machine(),
            setup: Setup {
                payments: n,
                concurrency: args.concurrency,
                users: u64::try_from(users.len()).unwrap_or_default(),
                hot_wallet: args.hot_wallet,
                gateway_mode: self.mode.clone(),
                warmup_payments: u64::from(args.warmup),
                amount: format!("{AMOUNT} {CURRENCY}"),
                api_url: self.api.base().to_owned(),
                edge_url: self.edge.clone(),
                functions_profile: profile,
            },
            load: measured.report,
            floor,
            cold_starts,
            binaries,
            cost,
            targets: Vec::new(),
            notes,
        };
        report.targets = report::check_targets(&report);
        let paths = write_results(&report, &args.out_dir)?;
        if self.global.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&report).unwrap_or_default()
            );
        } else {
            print!("{}", report::render_text(&report));
            println!("\nresults: {paths}");
        }
        let clean = report.load.errors == 0 && report.load.ended_otherwise.is_empty();
        let expect_all_succeed = self.mode == "approve_all";
        Ok(if clean || !expect_all_succeed {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        })
    }

    fn command(&self) -> String {
        let args = self.args;
        format!(
            "saga bench -n {} -c {} -u {} --gateway-mode {}{}",
            args.payments,
            args.concurrency,
            args.users,
            self.mode,
            if args.hot_wallet { " --hot-wallet" } else { "" }
        )
    }

    /// Credits every user with enough for all their payments.
    async fn fund(&self, users: &[String], quiet: bool) -> CliResult<()> {
        let args = self.args;
        let payments = u64::from(args.payments)
            + u64::from(args.warmup)
            + u64::from(args.cold_starts) * 2
            + 20;
        let user_count = u64::try_from(users.len()).unwrap_or(1).max(1);
        let per_user = payments.div_ceil(user_count) + 10;
        let amount = per_user.to_string();
        if !quiet {
            eprintln!(
                "funding {} wallets with {amount} {CURRENCY} each",
                users.len()
            );
        }
        let users = Arc::new(users.to_vec());
        let next = Arc::new(AtomicUsize::new(0));
        let workers: Vec<_> = (0..args.concurrency.clamp(1, 16))
            .map(|_| {
                let api = self.api.clone();
                let users = Arc::clone(&users);
                let next = Arc::clone(&next);
                let amount = amount.clone();
                tokio::spawn(async move {
                    loop {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        let Some(user) = users.get(index) else {
                            return Ok::<(), CliError>(());
                        };
                        api.credit(user, &amount, CURRENCY, Some("saga bench"), None)
                            .await?;
                    }
                })
            })
            .collect();
        for worker in workers {
            worker
                .await
                .map_err(|err| CliError::Outcome(format!("funding: {err}")))??;
        }
        Ok(())
    }

    async fn measure(
        &self,
        load: &Arc<Load>,
        quiet: bool,
        notes: &mut Vec<String>,
    ) -> CliResult<Measured> {
        let args = self.args;
        let n = u64::from(args.payments);
        let log_dir = args.local_dir.join("logs");
        let binaries: Vec<String> = self.functions.iter().map(|f| f.binary.clone()).collect();
        let lambda_before = self.cloud.lambda_stats().await?;
        let dynamo_before = self.cloud.dynamo_stats().await?;
        let gateway_before = self.cloud.gateway_call_count().await?;
        let offsets = cloud::log_offsets(&log_dir, &binaries);
        let run = load.run("load", 0, n, args.concurrency, quiet).await;
        let lambda_after = self.cloud.lambda_stats().await?;
        let dynamo_after = self.cloud.dynamo_stats().await?;
        let gateway_calls = self
            .cloud
            .gateway_call_count()
            .await?
            .saturating_sub(gateway_before);

        let (summaries, replay) = self.histories(&run.samples, quiet).await;
        let ended: Vec<&Sample> = run
            .samples
            .iter()
            .filter(|s| matches!(s.outcome, Outcome::Ended(_)))
            .collect();
        let succeeded =
            u64::try_from(run.samples.iter().filter(|s| s.succeeded()).count()).unwrap_or_default();
        let mut ended_otherwise: BTreeMap<String, u64> = BTreeMap::new();
        let mut errors = Vec::new();
        for sample in &run.samples {
            match &sample.outcome {
                Outcome::Ended(status) if status == "SUCCEEDED" => {}
                Outcome::Ended(status) => *ended_otherwise.entry(status.clone()).or_default() += 1,
                Outcome::Error(error) => errors.push(error.clone()),
            }
        }
        let e2e: Vec<u64> = ended.iter().map(|s| s.e2e_us).collect();
        let accept: Vec<u64> = run.samples.iter().map(|s| s.post_us).collect();
        let elapsed_us = u64::try_from(run.elapsed.as_micros()).unwrap_or(u64::MAX);

        // Lambda invocations: the local cloud's counters, else the histories.
        let by_function_name: BTreeMap<&str, &FunctionInfo> = self
            .functions
            .iter()
            .map(|f| (f.name.as_str(), f))
            .collect();
        let mut invocations: BTreeMap<String, u64> = BTreeMap::new();
        let source = match (&lambda_before, &lambda_after) {
            (Some(before), Some(after)) => {
                for (name, counters) in after {
                    let earlier = before.get(name).map(|c| c.invocation_count).unwrap_or(0);
                    let binary = by_function_name
                        .get(name.as_str())
                        .map(|f| f.binary.clone())
                        .unwrap_or_else(|| counters.binary.clone());
                    invocations.insert(binary, counters.invocation_count.saturating_sub(earlier));
                }
                "local cloud counters"
            }
            _ => {
                for summary in &summaries {
                    for (resource, _) in &summary.task_durations {
                        let name = history::function_name(resource);
                        let binary = by_function_name
                            .get(name)
                            .map(|f| f.binary.clone())
                            .unwrap_or_else(|| name.to_owned());
                        *invocations.entry(binary).or_default() += 1;
                    }
                }
                if let Some(api) = self.functions.iter().find(|f| f.binary == "api-handler") {
                    *invocations.entry(api.binary.clone()).or_default() += n;
                }
                notes.push("Lambda invocations counted from the histories + 1 api-handler call per POST (this local cloud has no /_local/lambda/stats)".into());
                "histories"
            }
        };
        let lambda_invocations: u64 = invocations.values().sum();
        let cold_starts_during_run = match (&lambda_before, &lambda_after) {
            (Some(before), Some(after)) => Some(
                after
                    .iter()
                    .map(|(name, c)| {
                        c.cold_start_count.saturating_sub(
                            before.get(name).map(|b| b.cold_start_count).unwrap_or(0),
                        )
                    })
                    .sum(),
            ),
            _ => None,
        };
        let mut peak_rss_kib = BTreeMap::new();
        let mut instances = BTreeMap::new();
        for counters in lambda_after.iter().flat_map(|after| after.values()) {
            let kib = counters
                .instances
                .iter()
                .filter_map(|instance| cloud::peak_rss_kib(instance.pid))
                .max();
            if let Some(kib) = kib {
                peak_rss_kib.insert(counters.binary.clone(), kib);
            }
            instances.insert(
                counters.binary.clone(),
                u64::try_from(counters.instances.len()).unwrap_or_default(),
            );
        }

        let dynamo_ops = match (&dynamo_before, &dynamo_after) {
            (Some(before), Some(after)) => Some(cloud::operations_since(after, before)),
            _ => {
                notes.push("DynamoDB requests not counted: this local cloud has no /_local/dynamodb/stats (rebuild it)".into());
                None
            }
        };
        let per_payment_of = |total: u64| ratio(total, n, 2);
        let (read_milli, write_milli) =
            dynamo_ops
                .iter()
                .flat_map(|ops| ops.iter())
                .fold((0u64, 0u64), |(r, w), (op, c)| {
                    if cloud::is_read(op) {
                        (r + c.capacity_milli_units, w)
                    } else {
                        (r, w + c.capacity_milli_units)
                    }
                });
        let summary_count = u64::try_from(summaries.len()).unwrap_or_default();
        let transitions: u64 = summaries.iter().map(|s| s.transition_count).sum();
        let retries: u64 = summaries.iter().map(|s| s.retry_count).sum();
        let mut task_errors: BTreeMap<String, u64> = BTreeMap::new();
        for summary in &summaries {
            for (error, count) in &summary.task_errors {
                *task_errors.entry(error.clone()).or_default() += count;
            }
        }
        let mut condition_failures: BTreeMap<String, u64> = BTreeMap::new();
        for counters in dynamo_ops.iter().flat_map(|ops| ops.values()) {
            for (table, count) in &counters.condition_failures {
                *condition_failures.entry(table.clone()).or_default() += count;
            }
        }
        let version_conflicts = dynamo_ops.as_ref().map(|_| {
            condition_failures
                .iter()
                .filter(|(table, _)| table.ends_with("-wallets"))
                .map(|(_, count)| count)
                .sum::<u64>()
        });

        // Billed Lambda time: REPORT lines (init included), else the histories.
        let mut billed_ms: BTreeMap<String, u64> = BTreeMap::new();
        let mut reports_found = true;
        for binary in &binaries {
            let offset = offsets.get(binary).copied().unwrap_or_default();
            match cloud::reports_since(&log_dir, binary, offset) {
                Some(reports) => {
                    let total = reports
                        .iter()
                        .map(|r| r.billed_ms + r.init_ms.unwrap_or_default())
                        .sum();
                    billed_ms.insert(binary.clone(), total);
                }
                None => reports_found = false,
            }
        }
        if !reports_found {
            notes.push(format!(
                "no Lambda logs under {}: billed durations estimated from the histories (pass --local-dir)",
                log_dir.display()
            ));
            billed_ms.clear();
            for summary in &summaries {
                for (resource, us) in &summary.task_durations {
                    let name = history::function_name(resource);
                    if let Some(function) = by_function_name.get(name) {
                        *billed_ms.entry(function.binary.clone()).or_default() +=
                            cost::ceil_ms(*us);
                    }
                }
            }
            let api_ms: u64 = accept.iter().map(|us| cost::ceil_ms(*us)).sum();
            billed_ms.insert("api-handler".into(), api_ms);
        }
        let scale = |total: u64| {
            total
                .saturating_mul(n)
                .checked_div(summary_count)
                .unwrap_or_default()
        };
        let express_ms: u64 = summaries
            .iter()
            .filter_map(ExecutionSummary::duration_us)
            .map(|us| cost::billed(cost::ceil_ms(us), self.prices.express_duration_increment_ms))
            .sum();
        let usage = Usage {
            payment_count: n,
            state_transition_count: scale(transitions),
            express_billed_ms: scale(express_ms),
            functions: self
                .functions
                .iter()
                .map(|f| FunctionUsage {
                    name: f.binary.clone(),
                    memory_mb: f.memory_mb,
                    invocation_count: invocations.get(&f.binary).copied().unwrap_or_default(),
                    billed_ms: billed_ms.get(&f.binary).copied().unwrap_or_default(),
                })
                .collect(),
            read_milli_units: read_milli,
            write_milli_units: write_milli,
            api_request_count: n,
        };

        let report = LoadReport {
            sent: n,
            succeeded,
            ended_otherwise,
            errors: u64::try_from(errors.len()).unwrap_or_default(),
            error_examples: errors.iter().take(3).cloned().collect(),
            elapsed_ms: elapsed_us / 1_000,
            throughput_per_second: per_second(succeeded, elapsed_us),
            end_to_end: Summary::of(&e2e),
            accept: Summary::of(&accept),
            states: state_reports(&summaries),
            per_payment: PerPayment {
                lambda_invocations: per_payment_of(lambda_invocations),
                lambda_invocations_by_function: invocations
                    .iter()
                    .map(|(f, count)| (f.clone(), per_payment_of(*count)))
                    .collect(),
                lambda_invocations_source: source.to_owned(),
                dynamodb_requests: dynamo_ops
                    .as_ref()
                    .map(|ops| per_payment_of(ops.values().map(|c| c.request_count).sum())),
                dynamodb_requests_by_operation: dynamo_ops
                    .iter()
                    .flat_map(|ops| ops.iter())
                    .map(|(op, c)| (op.clone(), per_payment_of(c.request_count)))
                    .collect(),
                read_request_units: dynamo_ops
                    .as_ref()
                    .map(|_| ratio(read_milli, n.saturating_mul(1_000), 2)),
                write_request_units: dynamo_ops
                    .as_ref()
                    .map(|_| ratio(write_milli, n.saturating_mul(1_000), 2)),
                state_transitions: ratio(transitions, summary_count, 2),
                gateway_calls: per_payment_of(gateway_calls),
            },
            contention: Contention {
                version_conflict_retries: version_conflicts,
                version_conflict_retries_per_payment: version_conflicts.map(per_payment_of),
                step_function_retries: retries,
                task_errors,
                condition_failures_per_payment: condition_failures
                    .iter()
                    .map(|(table, count)| (table.clone(), per_payment_of(*count)))
                    .collect(),
            },
            cold_starts_during_run,
            peak_rss_kib,
            instances,
        };
        Ok(Measured {
            report,
            samples: run.samples,
            replay,
            lambda_invocations,
            dynamo_ops,
            gateway_calls,
            usage,
        })
    }

    /// Every ended execution's history, summarised (8 reads in flight); and the
    /// task inputs of the first successful one, to replay in cold starts.
    async fn histories(
        &self,
        samples: &[Sample],
        quiet: bool,
    ) -> (
        Vec<ExecutionSummary>,
        Option<(String, BTreeMap<String, String>)>,
    ) {
        let arns: Arc<Vec<(String, String, bool)>> = Arc::new(
            samples
                .iter()
                .filter(|s| matches!(s.outcome, Outcome::Ended(_)))
                .map(|s| (s.execution_arn.clone(), s.payment_id.clone(), s.succeeded()))
                .collect(),
        );
        let total = u64::try_from(arns.len()).unwrap_or_default();
        let counters = Arc::new(progress::Counters::default());
        let bar = progress::Progress::start("history", total, Arc::clone(&counters), quiet);
        let next = Arc::new(AtomicUsize::new(0));
        let workers: Vec<_> = (0..8)
            .map(|_| {
                let sfn = self.sfn.clone();
                let arns = Arc::clone(&arns);
                let next = Arc::clone(&next);
                let counters = Arc::clone(&counters);
                tokio::spawn(async move {
                    let mut out = Vec::new();
                    loop {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        let Some((arn, payment_id, succeeded)) = arns.get(index) else {
                            return out;
                        };
                        let events = sfn.events_after(arn, 0).await;
                        counters.finish(0, events.is_ok());
                        if let Ok(events) = events {
                            let events: Vec<history::Event> =
                                events.iter().map(history::event_from).collect();
                            let inputs = (*succeeded && index < 8)
                                .then(|| (payment_id.clone(), history::first_inputs(&events)));
                            out.push((index, history::summarise(&events), inputs));
                        }
                    }
                })
            })
            .collect();
        let mut results = Vec::new();
        for worker in workers {
            if let Ok(mut done) = worker.await {
                results.append(&mut done);
            }
        }
        bar.finish().await;
        results.sort_by_key(|(index, _, _)| *index);
        let replay = results.iter().find_map(|(_, _, inputs)| inputs.clone());
        (
            results.into_iter().map(|(_, summary, _)| summary).collect(),
            replay,
        )
    }

    async fn floor(
        &self,
        measured: &Measured,
        users: &[String],
        run_id: &str,
        quiet: bool,
        notes: &mut Vec<String>,
    ) -> Option<FloorReport> {
        let count = self.args.floor_payments.unwrap_or(self.args.payments);
        if count == 0 {
            return None;
        }
        let Some(dynamo_ops) = &measured.dynamo_ops else {
            notes.push("no floor: the DynamoDB mix per payment is unknown".into());
            return None;
        };
        let plan = floor::plan(
            u64::from(self.args.payments),
            measured.lambda_invocations,
            dynamo_ops,
            measured.gateway_calls,
        );
        let tables = match floor::tables(&self.cloud).await {
            Ok(tables) => tables,
            Err(err) => {
                notes.push(format!("no floor: {err}"));
                return None;
            }
        };
        let Some(api_function) = self.functions.iter().find(|f| f.binary == "api-handler") else {
            notes.push("no floor: no api-handler function".into());
            return None;
        };
        let floor = Arc::new(floor::Floor {
            api: self.api.clone(),
            cloud: self.cloud.clone(),
            plan: plan.clone(),
            tables,
            api_function: api_function.name.clone(),
            users: users.to_vec(),
            run_id: run_id.to_owned(),
        });
        let run = floor
            .run(u64::from(count), self.args.concurrency, quiet)
            .await;
        let end_to_end = Summary::of(&run.latencies_us);
        let elapsed_us = u64::try_from(run.elapsed.as_micros()).unwrap_or(u64::MAX);
        let saga_over_floor_p50 = match (measured.report.end_to_end, end_to_end) {
            (Some(saga), Some(floor)) => Some(ratio(saga.p50_us, floor.p50_us, 2)),
            _ => None,
        };
        Some(FloorReport {
            plan,
            payments: u64::from(count),
            errors: u64::try_from(run.errors.len()).unwrap_or_default(),
            error_examples: run.errors.iter().take(3).cloned().collect(),
            elapsed_ms: elapsed_us / 1_000,
            throughput_per_second: per_second(
                u64::try_from(run.latencies_us.len()).unwrap_or_default(),
                elapsed_us,
            ),
            end_to_end,
            saga_over_floor_p50,
        })
    }

    /// The events each function's cold starts get: its first saga task input
    /// with a fresh payment id (so each one does real work, not a replay), a
    /// GET of a payment for api-handler, a 0.01 refund for refund-service.
    fn cold_events(&self, function: &FunctionInfo, measured: &Measured) -> Vec<Value> {
        let count = usize::try_from(self.args.cold_starts).unwrap_or_default();
        let succeeded: Vec<&Sample> = measured.samples.iter().filter(|s| s.succeeded()).collect();
        let paid = |i: usize| {
            succeeded
                .get(i % succeeded.len().max(1))
                .map(|s| s.payment_id.clone())
                .unwrap_or_default()
        };
        (0..count)
            .map(|i| match function.binary.as_str() {
                "api-handler" => {
                    let id = paid(i);
                    floor::proxy_event(
                        "GET",
                        "/payments/{paymentId}",
                        &format!("/payments/{id}"),
                        Some(json!({ "paymentId": id })),
                    )
                }
                "refund-service" => json!({
                    "action": "RESERVE",
                    "refundId": format!("ref_{}", ulid::Ulid::new()),
                    "paymentId": paid(i),
                    "amount": {"amount": "0.01", "currency": CURRENCY},
                    "reason": "saga bench cold start",
                }),
                _ => {
                    let replayed = measured.replay.as_ref().and_then(|(payment_id, inputs)| {
                        inputs
                            .iter()
                            .find(|(resource, _)| history::function_name(resource) == function.name)
                            .map(|(_, input)| {
                                let fresh = format!("pay_{}", ulid::Ulid::new());
                                input.replace(payment_id.as_str(), &fresh)
                            })
                    });
                    replayed
                        .and_then(|text| serde_json::from_str(&text).ok())
                        .unwrap_or_else(|| json!({}))
                }
            })
            .collect()
    }

    async fn cold_starts(&self, measured: &Measured, notes: &mut Vec<String>) -> Vec<ColdReport> {
        let args = self.args;
        if args.cold_starts == 0 {
            return Vec::new();
        }
        if args.cold_starts < 10 {
            notes.push(format!(
                "cold starts: median of {} (the issue asks for ≥ 10)",
                args.cold_starts
            ));
        }
        let extras = BTreeMap::from([
            ("AWS_ENDPOINT_URL".to_owned(), self.edge.clone()),
            ("AWS_REGION".to_owned(), "us-east-1".to_owned()),
            ("AWS_DEFAULT_REGION".to_owned(), "us-east-1".to_owned()),
            ("AWS_ACCESS_KEY_ID".to_owned(), "local".to_owned()),
            ("AWS_SECRET_ACCESS_KEY".to_owned(), "local".to_owned()),
            ("GATEWAY_URL".to_owned(), self.cloud.gateway.clone()),
            ("GATEWAY_API_KEY".to_owned(), args.gateway_api_key.clone()),
        ]);
        let mut targets = Vec::new();
        match self.hello_program() {
            Some(program) => targets.push((
                HELLO.to_owned(),
                "hello-world".to_owned(),
                ColdTarget {
                    name: HELLO.to_owned(),
                    program,
                    environment: coldstart::environment(
                        "hello-world",
                        128,
                        &BTreeMap::new(),
                        &BTreeMap::new(),
                    ),
                    events: vec![json!({}); usize::try_from(args.cold_starts).unwrap_or(10)],
                },
            )),
            None => notes.push(
                "no hello-world Lambda found (build bench/hello-lambda or pass --hello-bin): no baseline".into(),
            ),
        }
        for function in &self.functions {
            let Some(program) = &function.program else {
                continue;
            };
            targets.push((
                function.name.clone(),
                function.binary.clone(),
                ColdTarget {
                    name: function.binary.clone(),
                    program: program.clone(),
                    environment: coldstart::environment(
                        &function.name,
                        function.memory_mb,
                        &function.environment,
                        &extras,
                    ),
                    events: self.cold_events(function, measured),
                },
            ));
        }
        let log_dir = args.out_dir.join("cold-start");
        let mut reports = Vec::new();
        for (function, binary, target) in targets {
            if !args.quiet && !self.global.json {
                eprintln!(
                    "cold starts: {binary} × {} ({})",
                    target.events.len(),
                    target.program.display()
                );
            }
            let samples = match coldstart::measure(&target, &log_dir).await {
                Ok(samples) => samples,
                Err(err) => {
                    reports.push(ColdReport {
                        function: if binary == HELLO {
                            HELLO.into()
                        } else {
                            function
                        },
                        binary,
                        samples: Vec::new(),
                        init_p50_us: 0,
                        first_invocation_p50_us: 0,
                        peak_rss_kib_max: None,
                        init_over_hello: None,
                        errors: BTreeMap::new(),
                        failures: vec![err.to_string()],
                    });
                    continue;
                }
            };
            let mut errors = BTreeMap::new();
            for sample in &samples {
                if let Some(error) = &sample.error_type {
                    *errors.entry(error.clone()).or_default() += 1;
                }
            }
            reports.push(ColdReport {
                function: if binary == HELLO {
                    HELLO.into()
                } else {
                    function
                },
                init_p50_us: median(&samples.iter().map(|s| s.init_us).collect::<Vec<_>>()),
                first_invocation_p50_us: median(
                    &samples
                        .iter()
                        .map(|s| s.first_invocation_us)
                        .collect::<Vec<_>>(),
                ),
                peak_rss_kib_max: samples.iter().filter_map(|s| s.peak_rss_kib).max(),
                init_over_hello: None,
                errors,
                failures: Vec::new(),
                binary,
                samples,
            });
        }
        let hello = reports
            .iter()
            .find(|r| r.function == HELLO && !r.samples.is_empty())
            .map(|r| r.init_p50_us);
        if let Some(hello) = hello {
            for report in &mut reports {
                report.init_over_hello = Some(ratio(report.init_p50_us, hello, 2));
            }
        }
        reports
    }

    fn hello_program(&self) -> Option<PathBuf> {
        if let Some(path) = &self.args.hello_bin {
            return Some(path.clone());
        }
        let dir = self
            .functions
            .iter()
            .find_map(|f| f.program.as_ref()?.parent().map(Path::to_path_buf))?;
        [
            dir.join("hello-lambda"),
            dir.join("examples").join("echo_lambda"),
        ]
        .into_iter()
        .find(|path| path.is_file())
    }

    fn binaries(&self, cold_starts: &[ColdReport]) -> Vec<BinaryReport> {
        let mut binaries = Vec::new();
        let hello = cold_starts
            .iter()
            .find(|c| c.function == HELLO)
            .and(self.hello_program())
            .map(|path| ("hello-world".to_owned(), path));
        let hosts = self
            .functions
            .iter()
            .filter_map(|f| Some((f.binary.clone(), f.program.clone()?)))
            .chain(hello);
        for (name, path) in hosts {
            let path = std::fs::canonicalize(&path).unwrap_or(path);
            if let Some(facts) = binary_facts(&path) {
                binaries.push(BinaryReport {
                    function: name,
                    kind: "host".into(),
                    facts,
                });
            }
        }
        for function in &self.functions {
            let path = self
                .args
                .deploy_dir
                .join(&function.binary)
                .join("bootstrap");
            if let Some(facts) = binary_facts(&path) {
                binaries.push(BinaryReport {
                    function: function.binary.clone(),
                    kind: "deploy".into(),
                    facts,
                });
            }
        }
        binaries
    }
}

/// p50/p99 per state, in the order states first appear.
fn state_reports(summaries: &[ExecutionSummary]) -> Vec<StateReport> {
    let mut order: Vec<String> = Vec::new();
    let mut durations: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for summary in summaries {
        for (state, us) in &summary.state_visits {
            if !durations.contains_key(state) {
                order.push(state.clone());
            }
            durations.entry(state.clone()).or_default().push(*us);
        }
    }
    order
        .into_iter()
        .filter_map(|state| {
            let summary = Summary::of(durations.get(&state)?)?;
            Some(StateReport {
                state,
                visits: summary.count,
                p50_us: summary.p50_us,
                p99_us: summary.p99_us,
            })
        })
        .collect()
}

/// `release` when the functions' binaries are under `target/release`, etc.
fn functions_profile(functions: &[FunctionInfo]) -> String {
    let Some(program) = functions.iter().find_map(|f| f.program.clone()) else {
        return "unknown".into();
    };
    let program = std::fs::canonicalize(&program).unwrap_or(program);
    program
        .parent()
        .and_then(Path::file_name)
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| "unknown".into())
}

fn machine() -> Machine {
    let cpu_count = std::thread::available_parallelism()
        .ok()
        .and_then(|n| u64::try_from(n.get()).ok())
        .unwrap_or_default();
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|line| line.strip_prefix("model name"))
                .and_then(|rest| rest.split_once(':'))
                .map(|(_, model)| model.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let os = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|release| format!("{} {}", std::env::consts::OS, release.trim()))
        .unwrap_or_else(|_| std::env::consts::OS.to_owned());
    Machine {
        cpu_count,
        cpu_model,
        os,
    }
}

fn run_id() -> String {
    let ulid = ulid::Ulid::new().to_string().to_lowercase();
    ulid.get(ulid.len().saturating_sub(8)..)
        .unwrap_or_default()
        .to_owned()
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .ok()
        .and_then(|now| {
            now.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// Writes `bench-<time>.json`, `latest.json` and `latest.md`; returns where.
fn write_results(report: &Report, dir: &Path) -> CliResult<String> {
    let fail = |err: std::io::Error| CliError::Usage(format!("{}: {err}", dir.display()));
    std::fs::create_dir_all(dir).map_err(fail)?;
    let json =
        serde_json::to_string_pretty(report).map_err(|err| CliError::Protocol(err.to_string()))?;
    let stamp: String = report
        .started_at
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    let suffix = if report.setup.hot_wallet { "-hot" } else { "" };
    let file = dir.join(format!(
        "bench-{stamp}-n{}-c{}{suffix}.json",
        report.setup.payments, report.setup.concurrency
    ));
    std::fs::write(&file, format!("{json}\n")).map_err(fail)?;
    std::fs::write(dir.join("latest.json"), format!("{json}\n")).map_err(fail)?;
    std::fs::write(dir.join("latest.md"), report::render_markdown(report)).map_err(fail)?;
    Ok(format!("{} (and latest.json, latest.md)", file.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_are_reported_in_the_order_they_first_ran() {
        let summary = |visits: &[(&str, u64)]| ExecutionSummary {
            state_visits: visits
                .iter()
                .map(|(s, us)| ((*s).to_owned(), *us))
                .collect(),
            ..ExecutionSummary::default()
        };
        let reports = state_reports(&[
            summary(&[("CreateInvoice", 10), ("DebitWallet", 30)]),
            summary(&[
                ("CreateInvoice", 20),
                ("DebitWallet", 50),
                ("PaymentSuccess", 0),
            ]),
        ]);
        let names: Vec<&str> = reports.iter().map(|r| r.state.as_str()).collect();
        assert_eq!(names, ["CreateInvoice", "DebitWallet", "PaymentSuccess"]);
        assert_eq!(
            (reports[1].p50_us, reports[1].p99_us, reports[1].visits),
            (30, 50, 2)
        );
    }

    #[test]
    fn run_ids_are_short_and_fit_user_ids() {
        let id = run_id();
        assert_eq!(id.len(), 8);
        assert!(id.bytes().all(|b| b.is_ascii_alphanumeric()));
    }

    #[test]
    fn decimals_go_to_json_as_exact_strings() {
        let report = PerPayment {
            lambda_invocations: rust_decimal::Decimal::new(6125, 3),
            ..PerPayment::default()
        };
        let json = serde_json::to_value(&report).unwrap_or_default();
        assert_eq!(json["lambdaInvocations"], "6.125");
        assert_eq!(json["dynamodbRequests"], serde_json::Value::Null);
    }
}
