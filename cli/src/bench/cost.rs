//! The AWS bill for 1 million payments, from what a run measured (state
//! transitions, Lambda invocations and billed durations, DynamoDB capacity
//! units, API requests) and the list prices in `bench/prices.json`. Exact
//! decimals throughout.

use std::path::Path;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::error::{CliError, CliResult};

/// Where the prices live (relative to the repository root).
pub const PRICES_PATH: &str = "bench/prices.json";

const MILLION: u64 = 1_000_000;

/// The prices, parsed from their decimal strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prices {
    pub region: String,
    pub checked_on: String,
    pub standard_per_million_transitions: Decimal,
    pub express_per_million_requests: Decimal,
    pub express_per_gb_second: Decimal,
    pub express_memory_mb: u64,
    pub express_duration_increment_ms: u64,
    pub lambda_per_million_requests: Decimal,
    pub lambda_per_gb_second: Decimal,
    pub lambda_duration_increment_ms: u64,
    pub dynamodb_per_million_write_units: Decimal,
    pub dynamodb_per_million_read_units: Decimal,
    pub api_per_million_requests: Decimal,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PricesFile {
    region: String,
    checked_on: String,
    step_functions: StepFunctionsPrices,
    lambda: LambdaPrices,
    dynamodb: DynamoPrices,
    api_gateway: ApiPrices,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StepFunctionsPrices {
    standard_per_million_state_transitions: String,
    express_per_million_requests: String,
    express_per_gb_second: String,
    express_memory_mb: u64,
    express_duration_increment_ms: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LambdaPrices {
    per_million_requests: String,
    per_gb_second: String,
    duration_increment_ms: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DynamoPrices {
    per_million_write_request_units: String,
    per_million_read_request_units: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApiPrices {
    per_million_requests: String,
}

impl Prices {
    pub fn load(path: &Path) -> CliResult<Self> {
        let text = std::fs::read_to_string(path).map_err(|err| {
            CliError::Usage(format!(
                "cannot read the prices file {}: {err} (run from the repository root or pass --prices)",
                path.display()
            ))
        })?;
        Self::parse(&text).map_err(|err| CliError::Usage(format!("{}: {err}", path.display())))
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let file: PricesFile = serde_json::from_str(text).map_err(|err| err.to_string())?;
        let price = |name: &str, text: &str| -> Result<Decimal, String> {
            let value = Decimal::from_str(text.trim())
                .map_err(|err| format!("{name}: {text:?} is not a decimal price: {err}"))?;
            if value.is_sign_negative() {
                return Err(format!("{name}: a price cannot be negative"));
            }
            Ok(value)
        };
        let positive = |name: &str, value: u64| -> Result<u64, String> {
            if value == 0 {
                Err(format!("{name} must be at least 1"))
            } else {
                Ok(value)
            }
        };
        let sfn = &file.step_functions;
        Ok(Self {
            region: file.region,
            checked_on: file.checked_on,
            standard_per_million_transitions: price(
                "stepFunctions.standardPerMillionStateTransitions",
                &sfn.standard_per_million_state_transitions,
            )?,
            express_per_million_requests: price(
                "stepFunctions.expressPerMillionRequests",
                &sfn.express_per_million_requests,
            )?,
            express_per_gb_second: price(
                "stepFunctions.expressPerGbSecond",
                &sfn.express_per_gb_second,
            )?,
            express_memory_mb: positive("stepFunctions.expressMemoryMb", sfn.express_memory_mb)?,
            express_duration_increment_ms: positive(
                "stepFunctions.expressDurationIncrementMs",
                sfn.express_duration_increment_ms,
            )?,
            lambda_per_million_requests: price(
                "lambda.perMillionRequests",
                &file.lambda.per_million_requests,
            )?,
            lambda_per_gb_second: price("lambda.perGbSecond", &file.lambda.per_gb_second)?,
            lambda_duration_increment_ms: positive(
                "lambda.durationIncrementMs",
                file.lambda.duration_increment_ms,
            )?,
            dynamodb_per_million_write_units: price(
                "dynamodb.perMillionWriteRequestUnits",
                &file.dynamodb.per_million_write_request_units,
            )?,
            dynamodb_per_million_read_units: price(
                "dynamodb.perMillionReadRequestUnits",
                &file.dynamodb.per_million_read_request_units,
            )?,
            api_per_million_requests: price(
                "apiGateway.perMillionRequests",
                &file.api_gateway.per_million_requests,
            )?,
        })
    }
}

/// One function's share of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionUsage {
    pub name: String,
    pub memory_mb: u64,
    pub invocation_count: u64,
    /// Σ billed duration of the invocations, init included (provided.al2023
    /// bills its init phase).
    pub billed_ms: u64,
}

/// What a run of `payment_count` payments used, in total.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    pub payment_count: u64,
    pub state_transition_count: u64,
    /// Σ over executions of their duration, rounded up per execution to the
    /// Express increment.
    pub express_billed_ms: u64,
    pub functions: Vec<FunctionUsage>,
    pub read_milli_units: u64,
    pub write_milli_units: u64,
    pub api_request_count: u64,
}

/// One line of the bill, per 1 million payments, in the prices' currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CostLine {
    pub item: String,
    #[serde(serialize_with = "super::stats::decimal")]
    pub standard: Decimal,
    #[serde(serialize_with = "super::stats::decimal")]
    pub express: Decimal,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Bill {
    pub lines: Vec<CostLine>,
    #[serde(serialize_with = "super::stats::decimal")]
    pub standard_total: Decimal,
    #[serde(serialize_with = "super::stats::decimal")]
    pub express_total: Decimal,
}

/// `duration_ms` rounded up to a multiple of `increment_ms`, at least one increment.
pub fn billed(duration_ms: u64, increment_ms: u64) -> u64 {
    let increment = increment_ms.max(1);
    duration_ms
        .div_ceil(increment)
        .max(1)
        .saturating_mul(increment)
}

/// Microseconds to whole milliseconds, rounded up.
pub fn ceil_ms(us: u64) -> u64 {
    us.div_ceil(1_000)
}

fn dec(value: u64) -> Decimal {
    Decimal::from(value)
}

/// `total` over the run's payments, scaled to 1 million payments.
fn per_million_payments(total: Decimal, payment_count: u64) -> Decimal {
    if payment_count == 0 {
        return Decimal::ZERO;
    }
    total
        .checked_mul(dec(MILLION))
        .and_then(|t| t.checked_div(dec(payment_count)))
        .unwrap_or_default()
}

/// GB-seconds of `billed_ms` at `memory_mb` (1 GB = 1024 MB, as AWS bills).
fn gb_seconds(billed_ms: u64, memory_mb: u64) -> Decimal {
    dec(billed_ms)
        .checked_mul(dec(memory_mb))
        .and_then(|t| t.checked_div(dec(1_000 * 1_024)))
        .unwrap_or_default()
}

fn times(a: Decimal, b: Decimal) -> Decimal {
    a.checked_mul(b).unwrap_or_default()
}

fn per_unit(per_million: Decimal) -> Decimal {
    per_million.checked_div(dec(MILLION)).unwrap_or_default()
}

/// The bill for 1 million payments, STANDARD and EXPRESS side by side (they
/// differ only in the Step Functions line).
pub fn bill(usage: &Usage, prices: &Prices) -> Bill {
    let n = usage.payment_count;
    let scaled = |total: Decimal| per_million_payments(total, n);
    let standard_sfn = scaled(times(
        dec(usage.state_transition_count),
        per_unit(prices.standard_per_million_transitions),
    ));
    let express_requests = scaled(times(dec(n), per_unit(prices.express_per_million_requests)));
    let express_duration = scaled(times(
        gb_seconds(usage.express_billed_ms, prices.express_memory_mb),
        prices.express_per_gb_second,
    ));
    let invocations: u64 = usage.functions.iter().map(|f| f.invocation_count).sum();
    let lambda_requests = scaled(times(
        dec(invocations),
        per_unit(prices.lambda_per_million_requests),
    ));
    let lambda_gb_seconds = usage
        .functions
        .iter()
        .map(|f| gb_seconds(f.billed_ms, f.memory_mb))
        .fold(Decimal::ZERO, |a, b| a.checked_add(b).unwrap_or(a));
    let lambda_duration = scaled(times(lambda_gb_seconds, prices.lambda_per_gb_second));
    let milli = |units: u64| dec(units).checked_div(dec(1_000)).unwrap_or_default();
    let reads = scaled(times(
        milli(usage.read_milli_units),
        per_unit(prices.dynamodb_per_million_read_units),
    ));
    let writes = scaled(times(
        milli(usage.write_milli_units),
        per_unit(prices.dynamodb_per_million_write_units),
    ));
    let api = scaled(times(
        dec(usage.api_request_count),
        per_unit(prices.api_per_million_requests),
    ));
    let same = |item: &str, cost: Decimal| CostLine {
        item: item.to_owned(),
        standard: cost,
        express: cost,
    };
    let lines = vec![
        CostLine {
            item: "Step Functions (Standard: transitions; Express: requests)".into(),
            standard: standard_sfn,
            express: express_requests,
        },
        CostLine {
            item: "Step Functions Express duration".into(),
            standard: Decimal::ZERO,
            express: express_duration,
        },
        same("Lambda requests", lambda_requests),
        same("Lambda duration (GB-s, arm64)", lambda_duration),
        same("DynamoDB reads (RRU)", reads),
        same("DynamoDB writes (WRU)", writes),
        same("API Gateway (REST) requests", api),
    ];
    let total = |pick: fn(&CostLine) -> Decimal| {
        lines
            .iter()
            .map(pick)
            .fold(Decimal::ZERO, |a, b| a.checked_add(b).unwrap_or(a))
    };
    let standard_total = total(|line| line.standard);
    let express_total = total(|line| line.express);
    Bill {
        lines: lines
            .into_iter()
            .map(|line| CostLine {
                standard: line.standard.round_dp(2),
                express: line.express.round_dp(2),
                ..line
            })
            .collect(),
        standard_total: standard_total.round_dp(2),
        express_total: express_total.round_dp(2),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prices() -> Prices {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../bench/prices.json"))
                .unwrap_or_default();
        match Prices::parse(&text) {
            Ok(prices) => prices,
            Err(err) => unreachable!("bench/prices.json: {err}"),
        }
    }

    fn d(text: &str) -> Decimal {
        Decimal::from_str(text).unwrap_or_default()
    }

    #[test]
    fn the_prices_file_parses_exactly() {
        let prices = prices();
        assert_eq!(prices.standard_per_million_transitions, d("25.00"));
        assert_eq!(prices.lambda_per_gb_second, d("0.0000133334"));
        assert_eq!(prices.express_memory_mb, 64);
        assert_eq!(prices.region, "us-east-1");
    }

    #[test]
    fn bad_prices_are_refused() {
        let good =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../bench/prices.json"))
                .unwrap_or_default();
        let negative = good.replace("\"0.625\"", "\"-0.625\"");
        assert!(Prices::parse(&negative).is_err());
        let not_a_number = good.replace("\"25.00\"", "\"twenty-five\"");
        assert!(Prices::parse(&not_a_number).is_err());
    }

    #[test]
    fn durations_round_up_to_their_increment() {
        assert_eq!(billed(1, 100), 100);
        assert_eq!(billed(100, 100), 100);
        assert_eq!(billed(101, 100), 200);
        assert_eq!(billed(0, 100), 100);
        assert_eq!(billed(7, 1), 7);
        assert_eq!(ceil_ms(1_001), 2);
        assert_eq!(ceil_ms(1_000), 1);
    }

    #[test]
    fn a_million_payments_cost_what_their_counts_say() {
        // GIVEN 1000 payments, each: 7 transitions, 100 ms of Express duration,
        // 6 invocations of 10 ms at 128 MB, 4 RRU, 10 WRU, 1 API request
        let usage = Usage {
            payment_count: 1_000,
            state_transition_count: 7_000,
            express_billed_ms: 100_000,
            functions: vec![FunctionUsage {
                name: "f".into(),
                memory_mb: 128,
                invocation_count: 6_000,
                billed_ms: 60_000,
            }],
            read_milli_units: 4_000_000,
            write_milli_units: 10_000_000,
            api_request_count: 1_000,
        };
        // WHEN billed
        let bill = bill(&usage, &prices());
        let line = |item: &str| {
            bill.lines
                .iter()
                .find(|line| line.item.starts_with(item))
                .cloned()
        };
        // THEN Standard pays 7 M transitions × $25/M = $175
        let sfn = line("Step Functions (").map(|l| (l.standard, l.express));
        assert_eq!(sfn, Some((d("175.00"), d("1.00"))));
        // AND Express pays 1 M × 0.1 s × 64/1024 GB × $0.00001667 = $0.104… → $0.10
        let express = line("Step Functions Express").map(|l| (l.standard, l.express));
        assert_eq!(express, Some((d("0"), d("0.10"))));
        // AND Lambda: 6 M requests × $0.20/M = $1.20; 6 M × 0.01 s × 0.125 GB × $0.0000133334 = $0.10
        assert_eq!(line("Lambda requests").map(|l| l.standard), Some(d("1.20")));
        assert_eq!(line("Lambda duration").map(|l| l.express), Some(d("0.10")));
        // AND DynamoDB: 4 M RRU × $0.125/M, 10 M WRU × $0.625/M; API: 1 M × $3.50/M
        assert_eq!(line("DynamoDB reads").map(|l| l.standard), Some(d("0.50")));
        assert_eq!(line("DynamoDB writes").map(|l| l.standard), Some(d("6.25")));
        assert_eq!(line("API Gateway").map(|l| l.standard), Some(d("3.50")));
        // AND the totals add up before rounding
        assert_eq!(bill.standard_total, d("186.55"));
        assert_eq!(bill.express_total, d("12.65"));
    }

    #[test]
    fn no_payments_cost_nothing() {
        let bill = bill(&Usage::default(), &prices());
        assert_eq!(bill.standard_total, Decimal::ZERO);
        assert_eq!(bill.express_total, Decimal::ZERO);
    }
}
