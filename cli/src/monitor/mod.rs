//! The live flow monitor: reads a saga execution's history incrementally and
//! prints one line per state as it starts and ends, then a summary.

pub mod flow;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use aws_sdk_sfn::types::HistoryEvent;
use serde::Serialize;
use serde_json::{Value, json};

use crate::api::{Api, Payment};
use crate::args::WatchOptions;
use crate::error::{CliError, CliResult};
use crate::output::{Color, RULE, Style};
use crate::stepfunctions::StepFunctions;
use flow::{Event, Flow, Kind, Line, StateType};

/// Converts an SDK history event into the monitor's view of it.
pub fn event_from(history: &HistoryEvent) -> Event {
    let event_type = history.r#type().as_str();
    let at_ms = history.timestamp().to_millis().unwrap_or_default();
    let error_of = |error: Option<&str>, cause: Option<&str>| Kind::TaskFailed {
        error: error.unwrap_or("error").to_owned(),
        cause: cause.map(str::to_owned),
    };
    let kind = if let Some(state_type) = StateType::from_event_type(event_type) {
        if event_type.ends_with("Entered") {
            Kind::StateEntered {
                state: history
                    .state_entered_event_details()
                    .map(|d| d.name().to_owned())
                    .unwrap_or_default(),
                state_type,
            }
        } else {
            Kind::StateExited {
                state: history
                    .state_exited_event_details()
                    .map(|d| d.name().to_owned())
                    .unwrap_or_default(),
            }
        }
    } else {
        match event_type {
            "ExecutionStarted" => Kind::ExecutionStarted {
                input: history
                    .execution_started_event_details()
                    .and_then(|d| d.input())
                    .map(str::to_owned),
            },
            "LambdaFunctionScheduled" | "TaskScheduled" => Kind::TaskScheduled,
            "LambdaFunctionSucceeded" | "TaskSucceeded" => Kind::TaskSucceeded,
            "LambdaFunctionFailed" => history
                .lambda_function_failed_event_details()
                .map_or_else(|| error_of(None, None), |d| error_of(d.error(), d.cause())),
            "LambdaFunctionTimedOut" => history
                .lambda_function_timed_out_event_details()
                .map_or_else(
                    || error_of(Some("States.Timeout"), None),
                    |d| error_of(d.error().or(Some("States.Timeout")), d.cause()),
                ),
            "LambdaFunctionStartFailed" => history
                .lambda_function_start_failed_event_details()
                .map_or_else(|| error_of(None, None), |d| error_of(d.error(), d.cause())),
            "LambdaFunctionScheduleFailed" => history
                .lambda_function_schedule_failed_event_details()
                .map_or_else(|| error_of(None, None), |d| error_of(d.error(), d.cause())),
            "TaskFailed" => history
                .task_failed_event_details()
                .map_or_else(|| error_of(None, None), |d| error_of(d.error(), d.cause())),
            "TaskTimedOut" => history.task_timed_out_event_details().map_or_else(
                || error_of(Some("States.Timeout"), None),
                |d| error_of(d.error().or(Some("States.Timeout")), d.cause()),
            ),
            "ExecutionSucceeded" => Kind::ExecutionSucceeded,
            "ExecutionFailed" => {
                let d = history.execution_failed_event_details();
                Kind::ExecutionFailed {
                    error: d.and_then(|d| d.error()).unwrap_or("error").to_owned(),
                    cause: d.and_then(|d| d.cause()).map(str::to_owned),
                }
            }
            "ExecutionTimedOut" => {
                let d = history.execution_timed_out_event_details();
                Kind::ExecutionTimedOut {
                    error: d
                        .and_then(|d| d.error())
                        .unwrap_or("States.Timeout")
                        .to_owned(),
                    cause: d.and_then(|d| d.cause()).map(str::to_owned),
                }
            }
            "ExecutionAborted" => {
                let d = history.execution_aborted_event_details();
                Kind::ExecutionAborted {
                    error: d.and_then(|d| d.error()).unwrap_or("Aborted").to_owned(),
                    cause: d.and_then(|d| d.cause()).map(str::to_owned),
                }
            }
            _ => Kind::Other,
        }
    };
    Event {
        id: history.id(),
        at_ms,
        kind,
    }
}

/// What the execution input says about the payment (the saga's `SagaInput`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Details {
    pub payment_id: String,
    pub user_id: String,
    pub amount: String,
    pub currency: String,
    pub order_id: Option<String>,
}

impl Details {
    pub fn from_input(input: &str) -> Option<Self> {
        let value: Value = serde_json::from_str(input).ok()?;
        let text = |v: &Value| v.as_str().map(str::to_owned);
        Some(Self {
            payment_id: text(&value["paymentId"])?,
            user_id: text(&value["userId"])?,
            amount: text(&value["amount"]["amount"]).unwrap_or_default(),
            currency: text(&value["amount"]["currency"]).unwrap_or_default(),
            order_id: text(&value["orderId"]),
        })
    }
}

/// The monitor's final word.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub payment_id: String,
    pub execution_arn: String,
    pub execution_status: String,
    pub status: String,
    pub expected: String,
    pub as_expected: bool,
    pub gateway_reference: Option<String>,
    pub failure_reason: Option<String>,
    pub amount: String,
    pub currency: String,
    pub initial_balance: Option<String>,
    /// `initialBalance` was read before the payment was sent (`pay --watch`);
    /// when false it is the balance the monitor found when it started.
    pub initial_balance_before_payment: bool,
    pub final_balance: Option<String>,
    pub total_ms: i64,
    pub error: Option<String>,
    pub cause: Option<String>,
}

pub struct Monitor<'a> {
    pub api: &'a Api,
    pub sfn: &'a StepFunctions,
    pub style: Style,
    pub json: bool,
    pub options: &'a WatchOptions,
}

/// Where the summary's balance starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartingBalance {
    /// Read before the payment was sent (`pay --watch`); `None`: the user had
    /// no wallet in the payment's currency.
    BeforePayment(Option<String>),
    /// Read when the monitor finds the execution (`saga monitor`).
    WhenTheMonitorStarts,
}

impl Monitor<'_> {
    /// Follows the execution to its end; the summary's balance starts from
    /// `starting`.
    pub async fn watch(
        &self,
        execution_arn: &str,
        starting: StartingBalance,
    ) -> CliResult<ExitCode> {
        let deadline = Instant::now() + Duration::from_secs(self.options.timeout);
        let poll = Duration::from_millis(self.options.poll_ms.max(20));
        let mut flow = Flow::new();
        let mut last_id = 0_i64;
        let mut details: Option<Details> = None;
        let before_payment = matches!(starting, StartingBalance::BeforePayment(_));
        let mut balance_before = match starting {
            StartingBalance::BeforePayment(balance) => balance,
            StartingBalance::WhenTheMonitorStarts => None,
        };
        let mut current_state = String::from("(not started)");
        let mut failure: (Option<String>, Option<String>) = (None, None);
        let mut total_ms = 0;
        loop {
            let events = self.sfn.events_after(execution_arn, last_id).await?;
            for history in &events {
                let event = event_from(history);
                last_id = last_id.max(event.id);
                if let Kind::ExecutionStarted { input } = &event.kind {
                    let found = input.as_deref().and_then(Details::from_input);
                    if !before_payment && let Some(found) = &found {
                        balance_before = self.balance(found).await;
                    }
                    self.banner(
                        execution_arn,
                        found.as_ref(),
                        balance_before.as_deref(),
                        before_payment,
                    );
                    details = found;
                }
                for line in flow.push(&event) {
                    match &line {
                        Line::Running { state, .. } | Line::Waiting { state, .. } => {
                            current_state.clone_from(state);
                        }
                        Line::Finished {
                            error,
                            cause,
                            duration_ms,
                            ..
                        } => {
                            failure = (error.clone(), cause.clone());
                            total_ms = *duration_ms;
                        }
                        _ => {}
                    }
                    self.print_line(&line);
                }
            }
            if flow.finished().is_some() {
                break;
            }
            if Instant::now() >= deadline {
                return Err(CliError::Timeout(format!(
                    "{execution_arn} still running after {} s (in {current_state}); \
                     keep watching with `saga monitor {execution_arn}`",
                    self.options.timeout
                )));
            }
            tokio::time::sleep(poll).await;
        }
        let details = details.unwrap_or_else(|| Details {
            payment_id: execution_arn
                .rsplit(':')
                .next()
                .unwrap_or_default()
                .to_owned(),
            ..Details::default()
        });
        let execution_status = flow.finished().unwrap_or_default().to_owned();
        let payment = self.settled_payment(&details.payment_id).await;
        let status = match &payment {
            Ok(payment) => payment.status.clone(),
            // No API (a deployed stack watched through Step Functions only).
            Err(_) if execution_status == "SUCCEEDED" => "COMPLETED".to_owned(),
            Err(_) => "FAILED".to_owned(),
        };
        let final_balance = self.balance(&details).await;
        let payment = payment.ok();
        let summary = Summary {
            payment_id: details.payment_id.clone(),
            execution_arn: execution_arn.to_owned(),
            execution_status,
            as_expected: status == self.options.expect,
            status,
            expected: self.options.expect.clone(),
            gateway_reference: payment.as_ref().and_then(|p| p.gateway_reference.clone()),
            failure_reason: payment.as_ref().and_then(|p| p.failure_reason.clone()),
            amount: details.amount.clone(),
            currency: details.currency.clone(),
            initial_balance: balance_before,
            initial_balance_before_payment: before_payment,
            final_balance,
            total_ms,
            error: failure.0,
            cause: failure.1,
        };
        self.print_summary(&summary);
        Ok(if summary.as_expected {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        })
    }

    /// Follows a refund saga execution to its end, one line per state (no
    /// payment summary: the caller prints the refund); answers the
    /// execution's final status.
    pub async fn follow_states(&self, execution_arn: &str) -> CliResult<String> {
        let deadline = Instant::now() + Duration::from_secs(self.options.timeout);
        let poll = Duration::from_millis(self.options.poll_ms.max(20));
        let mut flow = Flow::new();
        let mut last_id = 0_i64;
        loop {
            for history in &self.sfn.events_after(execution_arn, last_id).await? {
                let event = event_from(history);
                last_id = last_id.max(event.id);
                for line in flow.push(&event) {
                    self.print_line(&line);
                }
            }
            if let Some(status) = flow.finished() {
                return Ok(status.to_owned());
            }
            if Instant::now() >= deadline {
                return Err(CliError::Timeout(format!(
                    "{execution_arn} still running after {} s; keep watching with \
                     `saga monitor {execution_arn}`",
                    self.options.timeout
                )));
            }
            tokio::time::sleep(poll).await;
        }
    }

    /// The payment once the saga wrote its terminal status (the execution may
    /// end a moment before a read sees the write on an eventually consistent index).
    async fn settled_payment(&self, payment_id: &str) -> CliResult<Payment> {
        let mut payment = self.api.payment(payment_id).await?;
        for _ in 0..10 {
            if payment.is_terminal() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            payment = self.api.payment(payment_id).await?;
        }
        Ok(payment)
    }

    /// The wallet's balance, or `None` when the user has no wallet in the
    /// payment's currency (or it cannot be read).
    async fn balance(&self, details: &Details) -> Option<String> {
        if details.user_id.is_empty() {
            return None;
        }
        match self.api.balance(&details.user_id, &details.currency).await {
            Ok(Some(wallet)) => Some(wallet.balance),
            _ => None,
        }
    }

    fn banner(
        &self,
        execution_arn: &str,
        details: Option<&Details>,
        balance: Option<&str>,
        before_payment: bool,
    ) {
        if self.json {
            let out = json!({
                "event": "started",
                "executionArn": execution_arn,
                "payment": details,
                "initialBalance": balance,
                "initialBalanceBeforePayment": before_payment,
            });
            println!("{out}");
            return;
        }
        let s = self.style;
        println!("🚀 {}", s.paint(Color::Bold, "Starting payment flow..."));
        println!("{}", s.paint(Color::Dim, RULE));
        println!("📋 Payment Details:");
        if let Some(d) = details {
            println!("   Payment ID: {}", d.payment_id);
            println!("   User ID: {}", d.user_id);
            println!("   Amount: {} {}", d.amount, d.currency);
            if let Some(order) = &d.order_id {
                println!("   Order ID: {order}");
            }
        }
        println!("   Execution: {}", s.paint(Color::Dim, execution_arn));
        println!("{}", s.paint(Color::Dim, RULE));
        let currency = details.map(|d| d.currency.as_str()).unwrap_or_default();
        let label = if before_payment {
            "Initial Wallet Balance"
        } else {
            "Wallet Balance (as the monitor starts)"
        };
        match balance {
            Some(balance) => println!("💰 {label}: {balance} {currency}"),
            None => println!("💰 {label}: no {currency} wallet"),
        }
        println!("{}", s.paint(Color::Dim, RULE));
        println!();
    }

    fn print_line(&self, line: &Line) {
        if self.json {
            if let Ok(text) = serde_json::to_string(line) {
                println!("{text}");
            }
            return;
        }
        if let Some(text) = render_line(line, self.style) {
            println!("{text}");
        }
    }

    fn print_summary(&self, summary: &Summary) {
        if self.json {
            let mut value = serde_json::to_value(summary).unwrap_or_default();
            value["event"] = json!("summary");
            println!("{value}");
            return;
        }
        let s = self.style;
        println!();
        println!("{}", s.paint(Color::Dim, RULE));
        let headline = match (summary.status.as_str(), summary.as_expected) {
            ("COMPLETED", true) => s.paint(Color::Green, "✅ Payment completed successfully!"),
            (status, true) => s.paint(
                Color::Green,
                &format!("✅ Payment ended {status}, as expected"),
            ),
            (status, false) => s.paint(
                Color::Red,
                &format!("❌ Payment ended {status}, expected {}", summary.expected),
            ),
        };
        println!("{headline}");
        println!("   Payment ID: {}", summary.payment_id);
        println!("   Status: {}", summary.status);
        if let Some(reference) = &summary.gateway_reference {
            println!("   Gateway Reference: {reference}");
        }
        if let Some(reason) = &summary.failure_reason {
            println!("   Failure Reason: {reason}");
        }
        println!("   Amount: {} {}", summary.amount, summary.currency);
        let currency = &summary.currency;
        let show = |balance: &Option<String>| {
            balance
                .clone()
                .unwrap_or_else(|| format!("no {currency} wallet"))
        };
        let since = if summary.initial_balance_before_payment {
            ""
        } else {
            " (from when the monitor started)"
        };
        match (&summary.initial_balance, &summary.final_balance) {
            (None, None) => println!("   Balance: no {currency} wallet{since}"),
            (before, after) => println!(
                "   Balance: {} → {} {currency}{since}",
                show(before),
                show(after)
            ),
        }
        println!("   Final Balance: {}", show(&summary.final_balance));
        println!("   Total time: {}", seconds(summary.total_ms));
        if let Some(error) = &summary.error {
            println!("   Error: {error}");
        }
        if let Some(cause) = &summary.cause {
            println!("   Cause: {cause}");
        }
        if !summary.as_expected
            && let Some(hint) = hint(summary.failure_reason.as_deref())
        {
            println!("   {} {hint}", s.paint(Color::Yellow, "hint:"));
        }
        println!("{}", s.paint(Color::Dim, RULE));
    }
}

/// What a tester can do about an unexpected failure.
fn hint(failure_reason: Option<&str>) -> Option<&'static str> {
    Some(match failure_reason? {
        "WALLET_NOT_FOUND" => {
            "the user has no wallet in this currency: `make test-curl-wallet-credit USER_ID=…` \
             or `saga wallet credit <user>`"
        }
        "INSUFFICIENT_FUNDS" => "top the wallet up: `saga wallet credit <user> --amount …`",
        "CIRCUIT_OPEN" => {
            "the gateway breaker is open after repeated failures; it probes again after \
             OpenSeconds (30 s locally)"
        }
        "PAYMENT_DECLINED" => "the gateway declined it (mock gateway: amounts ending in .13)",
        "GATEWAY_UNAVAILABLE" => {
            "the gateway kept failing (mock gateway: 999.99, or its mode): `curl localhost:3000/control/mode`"
        }
        _ => return None,
    })
}

fn seconds(ms: i64) -> String {
    format!("{}.{:03} s", ms / 1000, (ms % 1000).abs())
}

/// One monitor line as text, e.g. `+0.012s ✅ [SUCCESS] DebitWallet  (8 ms)`.
pub fn render_line(line: &Line, s: Style) -> Option<String> {
    let at = |offset: i64| s.paint(Color::Dim, &format!("+{:>7}", seconds(offset)));
    let name = |state: &str| format!("{state:<30}");
    let text = match line {
        Line::Running { state, offset_ms } => format!(
            "{} ⏳ {} {}",
            at(*offset_ms),
            s.paint(Color::Blue, "[RUNNING]"),
            name(state)
        ),
        Line::Waiting { state, offset_ms } => format!(
            "{} ⏸  {} {}",
            at(*offset_ms),
            s.paint(Color::Cyan, "[WAITING]"),
            name(state)
        ),
        Line::Retry {
            state,
            attempt,
            error,
            offset_ms,
        } => format!(
            "{} 🔄 {} {} after {error}",
            at(*offset_ms),
            s.paint(Color::Yellow, &format!("[RETRY {attempt}]")),
            name(state)
        ),
        Line::Success {
            state,
            duration_ms,
            offset_ms,
        } => format!(
            "{} ✅ {} {} {}",
            at(*offset_ms),
            s.paint(Color::Green, "[SUCCESS]"),
            name(state),
            s.paint(Color::Dim, &format!("({duration_ms} ms)"))
        ),
        Line::Failed {
            state,
            error,
            duration_ms,
            offset_ms,
            ..
        } => format!(
            "{} ❌ {} {} {error} {}",
            at(*offset_ms),
            s.paint(Color::Red, "[FAILED] "),
            name(state),
            s.paint(Color::Dim, &format!("({duration_ms} ms)"))
        ),
        Line::Choice {
            state,
            next,
            offset_ms,
        } => format!(
            "{} 🔀 {} {} → {next}",
            at(*offset_ms),
            s.paint(Color::Cyan, "[CHOICE] "),
            name(state)
        ),
        Line::Terminal {
            state,
            succeeded,
            offset_ms,
        } => {
            let (icon, label, color) = if *succeeded {
                ("🎉", "[SUCCEED]", Color::Green)
            } else {
                ("🛑", "[FAIL]   ", Color::Red)
            };
            format!(
                "{} {icon} {} {}",
                at(*offset_ms),
                s.paint(color, label),
                name(state).trim_end()
            )
        }
        Line::Finished { .. } => return None,
    };
    Some(text.trim_end().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_execution_input_names_the_payment() {
        let input = r#"{"paymentId":"pay_1","userId":"u1","amount":{"amount":"50.00","currency":"USD"},"orderId":"o1","metadata":{}}"#;
        let details = Details::from_input(input).unwrap_or_default();
        assert_eq!(details.payment_id, "pay_1");
        assert_eq!(details.amount, "50.00");
        assert_eq!(details.currency, "USD");
        assert_eq!(details.order_id.as_deref(), Some("o1"));
        assert_eq!(Details::from_input("not json"), None);
    }

    #[test]
    fn lines_render_without_colour_codes_when_plain() {
        let line = Line::Retry {
            state: "ChargeGateway".into(),
            attempt: 2,
            error: "GatewayUnavailable".into(),
            offset_ms: 1_234,
        };
        let text = render_line(&line, Style::plain()).unwrap_or_default();
        assert!(text.contains("🔄 [RETRY 2] ChargeGateway"), "{text}");
        assert!(text.contains("+1.234 s"), "{text}");
        assert!(!text.contains('\x1b'));
    }

    #[test]
    fn seconds_have_millisecond_precision() {
        assert_eq!(seconds(0), "0.000 s");
        assert_eq!(seconds(12_345), "12.345 s");
    }
}
