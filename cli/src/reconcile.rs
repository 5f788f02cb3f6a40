//! `saga reconcile`: runs the reconciler function now (the template also
//! runs it every five minutes), prints its report as a table and saves it
//! as JSON. Works against the local edge and, with --profile/--region and
//! --function-name, against a deployed stack.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use aws_sdk_lambda::primitives::Blob;
use clap::Args;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::macros::format_description;

use crate::args::Global;
use crate::error::{CliError, CliResult};
use crate::output::{Color, Style};
use crate::stepfunctions::Target;

/// The local cloud's reconciler (`${AWS::StackName}-reconciler`, stack `local`).
pub const LOCAL_FUNCTION_NAME: &str = "local-reconciler";
/// Longest detail shown per row (the JSON report has all of it).
const DETAIL_LENGTH_MAX: usize = 90;

#[derive(Debug, Args, Clone)]
pub struct ReconcileArgs {
    /// Only items created at or after this: an age (`30m`, `2h`, `7d`) or an
    /// RFC 3339 instant (`2026-12-03T09:00:00Z`).
    #[arg(long)]
    pub since: Option<String>,
    /// Ask the gateway, change nothing, say what would be done.
    #[arg(long)]
    pub dry_run: bool,
    /// Leave PENDING/PROCESSING payments younger than this to their saga
    /// (default: the saga's worst case, 31 minutes).
    #[arg(long)]
    pub payment_age_min_seconds: Option<u32>,
    /// Leave REQUESTED/GATEWAY_REFUNDED refunds younger than this to their
    /// saga (default: 15 minutes).
    #[arg(long)]
    pub refund_age_min_seconds: Option<u32>,
    /// Items one run looks at, at most.
    #[arg(long)]
    pub item_count_max: Option<u32>,
    /// The reconciler function (on AWS: `<stack>-reconciler`).
    #[arg(long, default_value = LOCAL_FUNCTION_NAME)]
    pub function_name: String,
    /// Where the JSON report is saved.
    #[arg(long, default_value = ".local/reports")]
    pub report_dir: PathBuf,
}

pub async fn run(global: &Global, args: &ReconcileArgs) -> CliResult<ExitCode> {
    let request = request(args, OffsetDateTime::now_utc())?;
    let target = Target::new(
        global.endpoint_url.clone(),
        global.profile.clone(),
        global.region.clone(),
    );
    let where_ = target
        .endpoint
        .clone()
        .unwrap_or_else(|| "AWS Lambda".to_owned());
    if !global.json {
        let mode = if args.dry_run { " (dry run)" } else { "" };
        eprintln!(
            "🔎 reconciling{mode}: invoking {} at {where_}…",
            args.function_name
        );
    }
    let report = invoke(&target, &args.function_name, &request, &where_).await?;
    let path = save(&args.report_dir, &report)?;
    if global.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        print_table(&report, &Style::detect());
        println!("report: {}", path.display());
    }
    Ok(if left_count(&report) == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The reconciler's request (its `ReconcileRequest`, camelCase).
fn request(args: &ReconcileArgs, now: OffsetDateTime) -> CliResult<Value> {
    let mut request = json!({"dryRun": args.dry_run});
    if let Some(since) = &args.since {
        request["since"] = json!(since_timestamp(since, now)?);
    }
    for (field, value) in [
        ("paymentAgeMinSeconds", args.payment_age_min_seconds),
        ("refundAgeMinSeconds", args.refund_age_min_seconds),
        ("itemCountMax", args.item_count_max),
    ] {
        if let Some(value) = value {
            request[field] = json!(value);
        }
    }
    Ok(request)
}

/// `--since` as the stores' timestamp text (UTC, microseconds).
fn since_timestamp(text: &str, now: OffsetDateTime) -> CliResult<String> {
    let usage = || {
        CliError::Usage(format!(
            "--since `{text}`: give an age like 30m, 2h or 7d, or an RFC 3339 instant"
        ))
    };
    let at = match age(text) {
        Some(age) => now
            .checked_sub(time::Duration::try_from(age).map_err(|_| usage())?)
            .ok_or_else(usage)?,
        None => OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
            .map_err(|_| usage())?,
    };
    let format =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");
    at.to_offset(time::UtcOffset::UTC)
        .format(&format)
        .map_err(|_| usage())
}

/// `30m`, `2h`, `7d`, `90s`.
fn age(text: &str) -> Option<Duration> {
    let split = text.len().checked_sub(1)?;
    let (count, unit) = text.split_at_checked(split)?;
    let count: u64 = count.parse().ok()?;
    let unit_seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return None,
    };
    Some(Duration::from_secs(count.checked_mul(unit_seconds)?))
}

async fn invoke(
    target: &Target,
    function: &str,
    request: &Value,
    where_: &str,
) -> CliResult<Value> {
    let config = target.sdk_config().await;
    let client = aws_sdk_lambda::Client::new(&config);
    let output = client
        .invoke()
        .function_name(function)
        .payload(Blob::new(request.to_string()))
        .send()
        .await
        .map_err(|err| CliError::Unreachable {
            what: "the reconciler",
            url: where_.to_owned(),
            flag: "endpoint-url",
            detail: aws_sdk_lambda::error::DisplayErrorContext(err).to_string(),
        })?;
    let payload = output.payload.map(Blob::into_inner).unwrap_or_default();
    let answer: Value = serde_json::from_slice(&payload)
        .map_err(|_| CliError::Protocol(format!("{function}: not JSON")))?;
    if output.function_error.is_some() {
        return Err(CliError::Outcome(format!(
            "the reconciler failed: {}: {}",
            answer["errorType"].as_str().unwrap_or("-"),
            answer["errorMessage"].as_str().unwrap_or("-")
        )));
    }
    if !answer["findings"].is_array() {
        return Err(CliError::Protocol(format!("{function}: not a report")));
    }
    Ok(answer)
}

fn save(dir: &std::path::Path, report: &Value) -> CliResult<PathBuf> {
    let stamp = OffsetDateTime::now_utc().unix_timestamp();
    let path = dir.join(format!("reconcile-{stamp}.json"));
    let text = serde_json::to_string_pretty(report).unwrap_or_default();
    std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(&path, format!("{text}\n")))
        .map_err(|err| CliError::Outcome(format!("cannot save {}: {err}", path.display())))?;
    Ok(path)
}

/// Items left for the next run or a person (UNKNOWN, MISMATCH) and shards
/// of the open index not read.
fn left_count(report: &Value) -> u64 {
    let count = |outcome: &str| report["counts"][outcome].as_u64().unwrap_or(0);
    let unread = report["unread"].as_array().map_or(0, Vec::len);
    count("UNKNOWN") + count("MISMATCH") + u64::try_from(unread).unwrap_or(u64::MAX)
}

fn print_table(report: &Value, style: &Style) {
    let text = |value: &Value| value.as_str().unwrap_or("-").to_owned();
    let findings = report["findings"].as_array().cloned().unwrap_or_default();
    if findings.is_empty() {
        println!("nothing open: every payment and refund is settled");
    } else {
        println!(
            "{:<8} {:<31} {:>12} {:<34} {:<14} DETAIL",
            "KIND", "ID", "AMOUNT", "STATUS", "OUTCOME"
        );
    }
    for finding in &findings {
        let outcome = text(&finding["outcome"]);
        let color = match outcome.as_str() {
            "RESOLVED" | "SETTLED" => Color::Green,
            "MISMATCH" => Color::Red,
            _ => Color::Yellow,
        };
        let status = match finding["now"].as_str() {
            Some(now) => format!("{} → {now}", text(&finding["status"])),
            None => text(&finding["status"]),
        };
        let amount = format!(
            "{} {}",
            text(&finding["amount"]["amount"]),
            text(&finding["amount"]["currency"])
        );
        let detail: String = text(&finding["detail"])
            .chars()
            .take(DETAIL_LENGTH_MAX)
            .collect();
        println!(
            "{:<8} {:<31} {:>12} {:<34} {} {detail}",
            text(&finding["kind"]),
            text(&finding["id"]),
            amount,
            status,
            style.paint(color, &format!("{outcome:<14}"))
        );
    }
    for unread in report["unread"].as_array().into_iter().flatten() {
        println!("{} {}", style.paint(Color::Red, "not read:"), text(unread));
    }
    let counts = report["counts"]
        .as_object()
        .map(|counts| {
            counts
                .iter()
                .map(|(outcome, count)| format!("{outcome} {count}"))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    let truncated = if report["truncated"] == true {
        " (the item budget ran out: the next run continues)"
    } else {
        ""
    };
    println!(
        "{} items: {}{truncated}; left for the next run or a person: {}",
        findings.len(),
        if counts.is_empty() {
            "-".to_owned()
        } else {
            counts
        },
        left_count(report)
    );
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_an_age_or_an_instant_and_refuses_anything_else() {
        let now = OffsetDateTime::parse(
            "2026-12-03T12:00:00Z",
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        assert_eq!(
            since_timestamp("30m", now).unwrap(),
            "2026-12-03T11:30:00.000000Z"
        );
        assert_eq!(
            since_timestamp("2d", now).unwrap(),
            "2026-12-01T12:00:00.000000Z"
        );
        assert_eq!(
            since_timestamp("2026-12-03T09:00:00+01:00", now).unwrap(),
            "2026-12-03T08:00:00.000000Z"
        );
        for bad in ["", "m", "30x", "yesterday", "-5m"] {
            assert!(
                matches!(since_timestamp(bad, now), Err(CliError::Usage(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn left_counts_unknown_mismatch_and_unread_shards() {
        let report = json!({
            "counts": {"RESOLVED": 3, "UNKNOWN": 1, "MISMATCH": 2, "IN_FLIGHT": 4},
            "unread": ["Payment shard 3: throttled"],
            "findings": []
        });
        assert_eq!(left_count(&report), 4);
        assert_eq!(left_count(&json!({"counts": {}, "findings": []})), 0);
    }
}
