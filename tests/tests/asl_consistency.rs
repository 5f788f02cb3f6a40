//! The state machine and the code agree: every error name the ASL matches is
//! one the code produces (or an AWS-defined one), no step retries a business
//! error or `States.ALL`, every failure is routed where the saga rules say
//! (through CancelCharge, the gateway's close, unless the gateway already
//! declined), money is given back only after a DECLINED answer, a duplicate
//! execution of an ended payment touches nothing, the waiting loop is bounded,
//! every task from the debit on ends in a completion, a compensation or a
//! reconciliation, and every task's `Parameters` produce a command its Lambda
//! accepts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};

use saga_tests::backend::repo_root;
use serde_json::{Value, json};
use shared::ErrorType;
use shared::domain::PaymentStatus;
use shared::events::{GatewayCommand, InvoiceCommand, WalletCommand};

/// Names AWS itself raises (Lambda service, runtime timeouts and crashes, States.*).
const AWS_NAMES: [&str; 10] = [
    "States.ALL",
    "States.Timeout",
    "States.TaskFailed",
    "Sandbox.Timedout",
    "Runtime.ExitError",
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
    "Lambda.Unknown",
];

/// Errors that mean "not done, safe to try again" for an idempotent task.
/// `GatewayUnavailable`: the gateway definitely did not process the request.
/// A timeout or a crash (`Runtime.ExitError`, or `Lambda.Unknown` when AWS
/// reports an unhandled failure that way: the instance died mid-invocation)
/// may hide a committed write; retrying is still safe because the write is
/// idempotent, and only for that reason.
const TRANSIENT: [&str; 10] = [
    "Retryable",
    "GatewayUnavailable",
    "Sandbox.Timedout",
    "Runtime.ExitError",
    "Lambda.Unknown",
    "States.Timeout",
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
];

/// Business errors: final answers, never retried.
const BUSINESS: [ErrorType; 14] = [
    ErrorType::ValidationError,
    ErrorType::CurrencyMismatch,
    ErrorType::InsufficientFunds,
    ErrorType::WalletNotFound,
    ErrorType::PaymentNotFound,
    ErrorType::AlreadyExists,
    ErrorType::InvalidTransition,
    ErrorType::LedgerConflict,
    ErrorType::DebitNotFound,
    ErrorType::PaymentCompensated,
    ErrorType::PaymentDeclined,
    ErrorType::CircuitOpen,
    ErrorType::GatewayRejected,
    ErrorType::InternalError,
];

/// The callback pattern: STANDARD only.
const CALLBACK_RESOURCE: &str = "arn:aws:states:::lambda:invoke.waitForTaskToken";
/// The EXPRESS definition (what `template.yml` deploys for `WorkflowType=EXPRESS`).
const EXPRESS_ASL: &str = "state-machine/payment-saga.express.asl.json";
/// The wait for the gateway's webhook, and what stands in for it in EXPRESS.
const CALLBACK_STATE: &str = "AwaitGatewayWebhook";
const POLL_STATE: &str = "WaitForPaymentConfirmation";
/// The EXPRESS definition's pause between two status checks.
const POLL_INTERVAL_SECONDS: u64 = 3;

fn asl() -> Value {
    read_asl("state-machine/payment-saga.asl.json")
}

fn read_asl(path: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(repo_root().join(path)).unwrap()).unwrap()
}

/// Both definitions the template can deploy.
fn both_asl() -> [(&'static str, Value); 2] {
    [("STANDARD", asl()), ("EXPRESS", read_asl(EXPRESS_ASL))]
}

fn states(asl: &Value) -> &serde_json::Map<String, Value> {
    asl["States"].as_object().unwrap()
}

fn names(rule: &Value) -> Vec<String> {
    rule["ErrorEquals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_owned())
        .collect()
}

fn rules<'a>(state: &'a Value, field: &str) -> Vec<&'a Value> {
    state
        .get(field)
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

/// Where an error of `name` raised by `state` goes: its Catch target, if any.
fn catch_target(state: &Value, name: &str) -> Option<String> {
    rules(state, "Catch")
        .into_iter()
        .find(|rule| names(rule).iter().any(|n| n == name || n == "States.ALL"))
        .map(|rule| rule["Next"].as_str().unwrap().to_owned())
}

/// Why a transition is taken.
#[derive(Debug, Clone, PartialEq)]
enum Via {
    Next,
    Default,
    /// A `Choices` rule, as written.
    Choice(Value),
    /// A `Catch` rule's `ErrorEquals`.
    Catch(Vec<String>),
}

/// Every transition out of `state`, with its reason.
fn edges(state: &Value) -> Vec<(Via, String)> {
    let target = |v: &Value| v.as_str().unwrap().to_owned();
    let mut out = Vec::new();
    if let Some(next) = state.get("Next") {
        out.push((Via::Next, target(next)));
    }
    if let Some(default) = state.get("Default") {
        out.push((Via::Default, target(default)));
    }
    for choice in rules(state, "Choices") {
        out.push((Via::Choice(choice.clone()), target(&choice["Next"])));
    }
    for rule in rules(state, "Catch") {
        out.push((Via::Catch(names(rule)), target(&rule["Next"])));
    }
    out
}

fn successors(state: &Value) -> Vec<String> {
    edges(state).into_iter().map(|(_, to)| to).collect()
}

/// Every transition into `target`: (from, why).
fn edges_into(asl: &Value, target: &str) -> Vec<(String, Via)> {
    let mut into = Vec::new();
    for (from, state) in states(asl) {
        for (via, to) in edges(state) {
            if to == target {
                into.push((from.clone(), via));
            }
        }
    }
    into
}

/// A `Choice` rule taken when the gateway answered DECLINED.
fn is_declined_answer(via: &Via) -> bool {
    match via {
        // The gateway's answer: to a status check or a close (`$.charge`), or
        // sent to the waiting saga, asked again by the reconciler (`$.webhook`).
        Via::Choice(rule) => {
            (rule["Variable"] == "$.charge.status" || rule["Variable"] == "$.webhook.status")
                && rule["StringEquals"] == "DECLINED"
        }
        Via::Next | Via::Default | Via::Catch(_) => false,
    }
}

/// Where `state`'s Choice rule `variable == value` goes.
fn choice_target(state: &Value, variable: &str, value: &str) -> Option<String> {
    rules(state, "Choices")
        .into_iter()
        .find(|rule| rule["Variable"] == variable && rule["StringEquals"] == value)
        .map(|rule| rule["Next"].as_str().unwrap().to_owned())
}

/// The states reachable from `from` (itself included) without taking a
/// transition `cut` refuses.
fn reachable(asl: &Value, from: &str, cut: impl Fn(&str, &Via) -> bool) -> BTreeSet<String> {
    let s = states(asl);
    let mut seen = BTreeSet::new();
    let mut stack = vec![from.to_owned()];
    while let Some(name) = stack.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        for (via, to) in edges(&s[&name]) {
            if !cut(&name, &via) {
                stack.push(to);
            }
        }
    }
    seen
}

#[test]
fn every_matched_name_is_produced_by_the_code_or_aws() {
    let asl = asl();
    let mut used = BTreeSet::new();
    for state in states(&asl).values() {
        for rule in rules(state, "Retry")
            .into_iter()
            .chain(rules(state, "Catch"))
        {
            used.extend(names(rule));
        }
    }
    for name in &used {
        let known = ErrorType::from_name(name).is_some() || AWS_NAMES.contains(&name.as_str());
        assert!(known, "the ASL matches `{name}`, which no code produces");
    }
    // And every gateway error and invoice refusal the code produces is named
    // somewhere, or the saga would route it only by the catch-all. The
    // wallet's refusals (InsufficientFunds, WalletNotFound, ...) are not: the
    // debit's catch-all sends them to CancelCharge on purpose (checked in
    // `a_failure_before_the_charge_closes_the_payment_at_the_gateway_first`).
    for business in [
        ErrorType::AlreadyExists,
        ErrorType::ValidationError,
        ErrorType::PaymentDeclined,
        ErrorType::CircuitOpen,
        ErrorType::GatewayRejected,
        ErrorType::GatewayAmbiguous,
        ErrorType::GatewayUnavailable,
    ] {
        assert!(
            used.contains(business.as_str()),
            "{business} is not handled by name"
        );
    }
}

#[test]
fn retries_only_transient_errors_with_bounded_jittered_backoff() {
    // The code and the ASL agree on which of our names are transient.
    for error_type in ErrorType::ALL {
        assert_eq!(
            error_type.is_retryable(),
            TRANSIENT.contains(&error_type.as_str()),
            "{error_type}"
        );
    }
    let asl = asl();
    for (name, state) in states(&asl) {
        for rule in rules(state, "Retry") {
            for error in names(rule) {
                assert!(
                    error != "States.ALL" && error != "States.TaskFailed",
                    "{name} retries {error}"
                );
                let business = BUSINESS.iter().any(|b| b.as_str() == error);
                assert!(!business, "{name} retries the business error {error}");
                // A lookup, and a close the gateway answers the same way however
                // often it is asked, are safe to repeat on an ambiguous outcome.
                let repeatable = matches!(name.as_str(), "CheckPaymentStatus" | "CancelCharge")
                    && error == "GatewayAmbiguous";
                assert!(
                    TRANSIENT.contains(&error.as_str()) || repeatable,
                    "{name} retries {error}"
                );
            }
            assert_eq!(rule["JitterStrategy"], "FULL", "{name}");
            assert!(rule["BackoffRate"].as_f64().unwrap() >= 1.0, "{name}");
            assert!(rule["MaxDelaySeconds"].as_u64().unwrap() <= 60, "{name}");
            assert!(
                (1..=10).contains(&rule["MaxAttempts"].as_u64().unwrap()),
                "{name}"
            );
        }
        if state["Type"] == "Task" {
            assert!(
                state["TimeoutSeconds"].as_u64().is_some(),
                "{name} has no TimeoutSeconds"
            );
        }
    }
    // The charge is not repeated on an ambiguous outcome: that is resolved by a status check.
    let process = &states(&asl)["ProcessPayment"];
    for rule in rules(process, "Retry") {
        for error in names(rule) {
            assert!(
                ![
                    "GatewayAmbiguous",
                    "States.Timeout",
                    "Sandbox.Timedout",
                    "Runtime.ExitError",
                    "Lambda.Unknown"
                ]
                .contains(&error.as_str()),
                "ProcessPayment retries {error}"
            );
        }
    }
    assert!(
        asl["TimeoutSeconds"]
            .as_u64()
            .is_some_and(|t| t > 0 && t <= 3600)
    );
}

/// A crashed instance (`Runtime.ExitError`, which AWS may also report as
/// `Lambda.Unknown`) leaves the same doubt as a timed out one: the work may be
/// done, the reply is lost. So every state treats them alike: an idempotent
/// task retries them all (the debit retried after a crash is a no-op: its txId
/// is already in the ledger), the charge retries none, and a catcher that
/// names one names the others.
#[test]
fn a_crash_is_handled_like_a_timeout() {
    let asl = asl();
    let crash_names = ["Runtime.ExitError", "Lambda.Unknown"];
    for (name, state) in states(&asl) {
        for field in ["Retry", "Catch"] {
            for rule in rules(state, field) {
                let listed = names(rule);
                let timeout = listed.iter().any(|n| n == "Sandbox.Timedout");
                for crash_name in crash_names {
                    let crash = listed.iter().any(|n| n == crash_name);
                    assert_eq!(timeout, crash, "{name}.{field}: {listed:?}");
                }
            }
        }
        // A callback task is not retried: any failure of its wait (a crash of
        // the Lambda keeping the token included) falls back to the status check.
        let callback = state["Resource"] == CALLBACK_RESOURCE;
        if state["Type"] == "Task" && name != "ProcessPayment" && !callback {
            for crash_name in crash_names {
                let retried = rules(state, "Retry")
                    .into_iter()
                    .any(|rule| names(rule).iter().any(|n| n == crash_name));
                assert!(
                    retried,
                    "{name} does not retry a crashed instance ({crash_name})"
                );
            }
        }
    }
}

/// An unavailable gateway is a transient failure with its own name: wherever
/// a gateway-calling task retries or catches `Retryable`, it does the same
/// with `GatewayUnavailable`, so the name changes what a failed payment
/// records and nothing else.
#[test]
fn an_unavailable_gateway_is_handled_like_any_transient_failure() {
    let asl = asl();
    let s = states(&asl);
    for task in ["ProcessPayment", "CheckPaymentStatus", "CancelCharge"] {
        for field in ["Retry", "Catch"] {
            for rule in rules(&s[task], field) {
                let listed = names(rule);
                let retryable = listed.iter().any(|n| n == "Retryable");
                let unavailable = listed.iter().any(|n| n == "GatewayUnavailable");
                assert_eq!(retryable, unavailable, "{task}.{field}: {listed:?}");
            }
        }
        let retried = rules(&s[task], "Retry")
            .into_iter()
            .any(|rule| names(rule).iter().any(|n| n == "GatewayUnavailable"));
        assert!(retried, "{task} does not retry an unavailable gateway");
    }
}

/// Closing the payment is what makes a compensation safe, so the saga keeps
/// asking while the gateway cannot answer, at least as long as it would try to
/// give the money back, and hands an unanswered close to an operator.
#[test]
fn closing_the_payment_retries_until_the_gateway_answers() {
    let asl = asl();
    let s = states(&asl);
    let cancel = &s["CancelCharge"];
    assert_eq!(cancel["Parameters"]["action"], "CANCEL");
    let retried: BTreeSet<String> = rules(cancel, "Retry").into_iter().flat_map(names).collect();
    for transient in ["GatewayAmbiguous", "GatewayUnavailable", "Retryable"] {
        assert!(
            retried.contains(transient),
            "CancelCharge does not retry {transient}"
        );
    }
    let attempts_max = |state: &Value| {
        rules(state, "Retry")
            .into_iter()
            .map(|rule| rule["MaxAttempts"].as_u64().unwrap())
            .max()
            .unwrap_or(0)
    };
    assert!(attempts_max(cancel) >= attempts_max(&s["RefundWallet"]));
    let catches = rules(cancel, "Catch");
    assert_eq!(catches.len(), 1, "CancelCharge: {catches:?}");
    assert_eq!(names(catches[0]), ["States.ALL"]);
    assert_eq!(catches[0]["Next"], "MarkReconciliationRequired");
    assert_eq!(cancel["Next"], "IsPaymentClosed");
}

#[test]
fn a_failure_before_the_charge_closes_the_payment_at_the_gateway_first() {
    let asl = asl();
    let s = states(&asl);
    let target = |state: &str, name: &str| catch_target(&s[state], name);
    let cancel = Some("CancelCharge".to_owned());
    // An input that is no payment stops before anything moves.
    for rejected in ["AlreadyExists", "ValidationError"] {
        assert_eq!(
            target("CreateInvoice", rejected).as_deref(),
            Some("InvoiceRejected")
        );
    }
    assert_eq!(target("CreateInvoice", "Retryable"), cancel);
    // Any debit failure, a refusal included: another execution of the same
    // payment may have debited and charged, and only the gateway can say.
    let debit_catches = rules(&s["DebitWallet"], "Catch");
    assert_eq!(debit_catches.len(), 1, "DebitWallet: {debit_catches:?}");
    assert_eq!(names(debit_catches[0]), ["States.ALL"]);
    for refused in [
        "InsufficientFunds",
        "WalletNotFound",
        "CurrencyMismatch",
        "PaymentCompensated",
        "ValidationError",
        "Retryable",
    ] {
        assert_eq!(target("DebitWallet", refused), cancel, "{refused}");
    }
    assert_eq!(target("UpdatePaymentProcessing", "States.ALL"), cancel);
}

#[test]
fn a_failed_charge_is_closed_at_the_gateway_unless_it_was_declined() {
    let asl = asl();
    let s = states(&asl);
    let target = |state: &str, name: &str| catch_target(&s[state], name);
    let cancel = Some("CancelCharge".to_owned());
    // Declined: final for this paymentId (checked with the other ways into
    // RefundWallet in `money_is_given_back_only_after_the_gateway_declined`).
    assert_eq!(
        target("ProcessPayment", "PaymentDeclined").as_deref(),
        Some("RefundWallet")
    );
    // Not charged by this attempt, maybe by an earlier one: close first.
    for not_charged_now in [
        "CircuitOpen",
        "GatewayRejected",
        "GatewayUnavailable",
        "Retryable",
    ] {
        assert_eq!(
            target("ProcessPayment", not_charged_now),
            cancel,
            "{not_charged_now}"
        );
    }
    // Maybe captured: ask the status, never straight to compensation.
    for ambiguous in [
        "GatewayAmbiguous",
        "States.Timeout",
        "Sandbox.Timedout",
        "Runtime.ExitError",
        "Lambda.Unknown",
    ] {
        assert_eq!(
            target("ProcessPayment", ambiguous).as_deref(),
            Some("ResolveAmbiguousCharge"),
            "{ambiguous}"
        );
    }
    // NOT_FOUND is not final (a late attempt may still arrive): close it, on
    // the first NOT_FOUND, whatever the count of checks.
    let evaluate = &s["EvaluatePaymentStatus"];
    assert_eq!(
        choice_target(evaluate, "$.charge.status", "NOT_FOUND").as_deref(),
        Some("GatewayNotProcessed")
    );
    assert_eq!(s["GatewayNotProcessed"]["Next"], "CancelCharge");
    // The gateway's final word decides.
    let closed = &s["IsPaymentClosed"];
    for (answer, next) in [
        ("DECLINED", "RefundWallet"),
        ("APPROVED", "UpdatePaymentSuccess"),
        ("PENDING", "AwaitGatewayWebhook"),
    ] {
        assert_eq!(
            choice_target(closed, "$.charge.status", answer).as_deref(),
            Some(next),
            "{answer}"
        );
    }
    assert_eq!(closed["Default"], "GatewayOutcomeUnknown");
}

/// A settling step that cannot finish goes to an operator, and a payment is
/// failed only by way of its compensation (which moves nothing when nothing
/// was debited).
#[test]
fn settling_failures_reconcile_and_failing_follows_compensation() {
    let asl = asl();
    let s = states(&asl);
    // Failed compensation or a captured charge that cannot be recorded: reconciliation.
    for state in [
        "RefundWallet",
        "UpdatePaymentSuccess",
        "UpdatePaymentFailed",
    ] {
        assert_eq!(
            catch_target(&s[state], "States.ALL").as_deref(),
            Some("MarkReconciliationRequired")
        );
    }
    let into_failed: Vec<String> = edges_into(&asl, "UpdatePaymentFailed")
        .into_iter()
        .map(|(from, _)| from)
        .collect();
    assert_eq!(into_failed, ["RefundWallet"]);
}

/// The money comes back only after the gateway said DECLINED: a charge's
/// `PaymentDeclined`, a status check's DECLINED (`GatewayDeclined`) or the
/// close's DECLINED. No other catcher, default or state leads into it.
#[test]
fn money_is_given_back_only_after_the_gateway_declined() {
    let asl = asl();
    let s = states(&asl);
    let mut into_refund = edges_into(&asl, "RefundWallet");
    into_refund.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(into_refund.len(), 3, "{into_refund:?}");
    for (from, via) in &into_refund {
        match from.as_str() {
            "ProcessPayment" => assert_eq!(
                via,
                &Via::Catch(vec!["PaymentDeclined".to_owned()]),
                "only PaymentDeclined may be caught into RefundWallet"
            ),
            "GatewayDeclined" => assert_eq!(via, &Via::Next),
            "IsPaymentClosed" => assert!(is_declined_answer(via), "{via:?}"),
            other => panic!("{other} leads into RefundWallet by {via:?}"),
        }
    }
    // GatewayDeclined is only ever entered on a DECLINED status answer.
    let mut into_declined = edges_into(&asl, "GatewayDeclined");
    into_declined.sort_by(|a, b| a.0.cmp(&b.0));
    let from: Vec<&str> = into_declined
        .iter()
        .map(|(from, _)| from.as_str())
        .collect();
    assert_eq!(from, ["EvaluatePaymentStatus", "IsGatewayAnswerFinal"]);
    assert!(into_declined.iter().all(|(_, via)| is_declined_answer(via)));
    assert_eq!(s["GatewayDeclined"]["Type"], "Pass");
    // So with every DECLINED transition taken away, nothing reaches the
    // compensation: not from the start, and not once the gateway is being
    // asked (a status check or a close), where the charge is never repeated.
    let declined = |from: &str, via: &Via| {
        is_declined_answer(via)
            || (from == "ProcessPayment" && via == &Via::Catch(vec!["PaymentDeclined".to_owned()]))
    };
    let start = asl["StartAt"].as_str().unwrap();
    assert!(!reachable(&asl, start, declined).contains("RefundWallet"));
    for asking in ["CheckPaymentStatus", "CancelCharge"] {
        let after = reachable(&asl, asking, |_, via| is_declined_answer(via));
        assert!(
            !after.contains("RefundWallet"),
            "{asking} leads to RefundWallet without a DECLINED answer"
        );
        let all = reachable(&asl, asking, |_, _| false);
        assert!(
            all.contains("RefundWallet"),
            "{asking} can never compensate"
        );
        assert!(!all.contains("ProcessPayment"), "{asking} charges again");
    }
}

/// A second execution of a payment (a duplicate start) goes on only while the
/// payment is under way; one that already ended (completed, failed, refunded
/// or handed to an operator) stops after reading it, touching nothing.
#[test]
fn a_duplicate_execution_of_an_ended_payment_touches_nothing() {
    let asl = asl();
    let s = states(&asl);
    assert_eq!(asl["StartAt"], "CreateInvoice");
    assert_eq!(s["CreateInvoice"]["ResultPath"], "$.invoice");
    assert_eq!(s["CreateInvoice"]["Next"], "IsPaymentUnderway");
    let underway = &s["IsPaymentUnderway"];
    for rule in rules(underway, "Choices") {
        assert_eq!(rule["Variable"], "$.invoice.status", "{rule}");
    }
    let settled = underway["Default"].as_str().unwrap();
    assert_eq!(s[settled]["Type"], "Succeed");
    for status in PaymentStatus::ALL {
        let goes_on = match status {
            PaymentStatus::Pending | PaymentStatus::Processing => true,
            PaymentStatus::Completed
            | PaymentStatus::Failed
            | PaymentStatus::PartiallyRefunded
            | PaymentStatus::Refunded
            | PaymentStatus::ReconciliationRequired => false,
        };
        let next = choice_target(underway, "$.invoice.status", status.as_str())
            .unwrap_or_else(|| settled.to_owned());
        let expected = if goes_on { "DebitWallet" } else { settled };
        assert_eq!(next, expected, "{}", status.as_str());
    }
}

#[test]
fn every_state_is_reachable_and_every_target_exists() {
    for (workflow, asl) in both_asl() {
        assert_eq!(
            reachable_states(&asl),
            all_states(&asl),
            "{workflow}: unreachable states"
        );
    }
}

fn all_states(asl: &Value) -> BTreeSet<String> {
    states(asl).keys().cloned().collect()
}

fn reachable_states(asl: &Value) -> BTreeSet<String> {
    let s = states(asl);
    let mut seen = BTreeSet::new();
    let mut stack = vec![asl["StartAt"].as_str().unwrap().to_owned()];
    while let Some(name) = stack.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        let state = s
            .get(&name)
            .unwrap_or_else(|| panic!("missing state {name}"));
        stack.extend(successors(state));
    }
    seen
}

/// EXPRESS workflows cannot wait for a task token, so their definition is
/// this one with the wait for the gateway's webhook replaced by a Wait of
/// POLL_INTERVAL_SECONDS before the status check (the state the callback
/// falls back to), and the states only the callback led to removed. Run
/// with `UPDATE_EXPRESS_ASL=1` (`make asl-express`) to write it again after
/// changing the STANDARD definition.
fn express_variant(standard: &Value) -> Value {
    let mut express = standard.clone();
    let s = express["States"].as_object_mut().unwrap();
    let callback = s.remove(CALLBACK_STATE).unwrap();
    let fallback = catch_target(&callback, "States.Timeout").unwrap();
    s.insert(
        POLL_STATE.to_owned(),
        json!({
            "Type": "Wait",
            "Comment": "The gateway said PENDING: wait a little, then ask it again \
                        (EXPRESS cannot wait for the gateway's webhook).",
            "Seconds": POLL_INTERVAL_SECONDS,
            "Next": fallback,
        }),
    );
    rename_targets(&mut express["States"], CALLBACK_STATE, POLL_STATE);
    let keep = reachable_states(&express);
    let s = express["States"].as_object_mut().unwrap();
    s.retain(|name, _| keep.contains(name));
    let comment = standard["Comment"].as_str().unwrap();
    express["Comment"] = json!(format!(
        "{comment} EXPRESS variant, derived from payment-saga.asl.json by \
         tests/tests/asl_consistency.rs (make asl-express): do not edit."
    ));
    express
}

fn rename_targets(value: &mut Value, from: &str, to: &str) {
    match value {
        Value::Object(map) => {
            for (key, field) in map.iter_mut() {
                if (key == "Next" || key == "Default") && field == from {
                    *field = json!(to);
                } else {
                    rename_targets(field, from, to);
                }
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|item| rename_targets(item, from, to)),
        _ => {}
    }
}

/// The wait for the gateway's webhook only shortens the status checks: any
/// end of it but the gateway's final answer leads back to them, and it
/// gives up on a silent gateway sooner than it waits in all.
#[test]
fn the_wait_for_the_webhook_falls_back_to_the_status_check() {
    let asl = asl();
    let s = states(&asl);
    let callbacks: Vec<&String> = s
        .iter()
        .filter(|(_, state)| state["Resource"] == CALLBACK_RESOURCE)
        .map(|(name, _)| name)
        .collect();
    assert_eq!(callbacks, [CALLBACK_STATE]);
    let wait = &s[CALLBACK_STATE];
    assert_eq!(
        catch_target(wait, "States.HeartbeatTimeout").as_deref(),
        Some("CheckPaymentStatus")
    );
    assert_eq!(
        catch_target(wait, "Lambda.Unknown").as_deref(),
        Some("CheckPaymentStatus")
    );
    assert!(rules(wait, "Retry").is_empty());
    let (heartbeat, timeout) = (
        wait["HeartbeatSeconds"].as_u64(),
        wait["TimeoutSeconds"].as_u64(),
    );
    assert!(heartbeat.unwrap() < timeout.unwrap());
    assert_eq!(
        wait["Parameters"]["Payload"]["taskToken.$"],
        "$$.Task.Token"
    );
    // The answer keeps the count of checks, and a non-final one counts one.
    let answer = &s[wait["Next"].as_str().unwrap()];
    assert_eq!(answer["Default"], "CountUnansweredCheck");
    let adopted = &s["AdoptGatewayApproval"];
    assert_eq!(adopted["Parameters"]["checks.$"], "$.charge.checks");
    assert_eq!(adopted["Next"], "UpdatePaymentSuccess");
}

#[test]
fn the_express_definition_is_the_standard_one_polling() {
    let derived = express_variant(&asl());
    if std::env::var_os("UPDATE_EXPRESS_ASL").is_some() {
        let text = serde_json::to_string_pretty(&derived).unwrap() + "\n";
        std::fs::write(repo_root().join(EXPRESS_ASL), text).unwrap();
    }
    let express = read_asl(EXPRESS_ASL);
    assert!(
        express == derived,
        "{EXPRESS_ASL} is not derived from payment-saga.asl.json: run `make asl-express`"
    );
    let text = serde_json::to_string(&express).unwrap();
    assert!(
        !text.contains(".waitForTaskToken"),
        "EXPRESS cannot wait for a task token"
    );
    assert!(!text.contains("$$.Task.Token"));
}

#[test]
fn the_only_loop_is_the_bounded_status_check() {
    let asl = asl();
    let s = states(&asl);
    // Every cycle must pass through EvaluatePaymentStatus, whose rules leave the
    // loop once `$.charge.checks` reaches a bound that each check increments.
    let graph: BTreeMap<&str, Vec<String>> =
        s.iter().map(|(k, v)| (k.as_str(), successors(v))).collect();
    for start in graph.keys() {
        let mut stack: Vec<(String, Vec<String>)> = vec![(start.to_string(), vec![])];
        let mut visited = BTreeSet::new();
        while let Some((node, path)) = stack.pop() {
            if path.len() > 1 && node == *start {
                assert!(
                    path.iter().any(|p| p == "EvaluatePaymentStatus"),
                    "unbounded loop via {path:?}"
                );
                continue;
            }
            if !visited.insert(node.clone()) {
                continue;
            }
            for next in &graph[node.as_str()] {
                let mut p = path.clone();
                p.push(node.clone());
                stack.push((next.clone(), p));
            }
        }
    }
    let evaluate = &s["EvaluatePaymentStatus"];
    let bounded = rules(evaluate, "Choices").iter().any(|c| {
        c["Variable"] == "$.charge.checks"
            && c["NumericGreaterThanEquals"]
                .as_u64()
                .is_some_and(|n| n <= 20)
    });
    assert!(
        bounded,
        "EvaluatePaymentStatus must leave the loop after a bounded number of checks"
    );
    assert_eq!(
        s["CheckPaymentStatus"]["Parameters"]["checks.$"],
        "$.charge.checks"
    );
    assert_eq!(
        s["CountUnansweredCheck"]["Parameters"]["checks.$"],
        "States.MathAdd($.charge.checks, 1)"
    );
}

#[test]
fn every_task_from_the_debit_on_completes_compensates_or_reconciles() {
    let asl = asl();
    let s = states(&asl);
    let settled = [
        "RefundWallet",
        "UpdatePaymentSuccess",
        "MarkReconciliationRequired",
    ];
    // From any state, can we reach a terminal state without passing a settling step?
    let escapes = |from: &str| -> Option<Vec<String>> {
        let mut stack = vec![(from.to_owned(), vec![from.to_owned()])];
        let mut visited = BTreeSet::new();
        while let Some((name, path)) = stack.pop() {
            if settled.contains(&name.as_str()) || !visited.insert(name.clone()) {
                continue;
            }
            let state = &s[&name];
            if matches!(state["Type"].as_str(), Some("Succeed" | "Fail")) {
                return Some(path);
            }
            for next in successors(state) {
                let mut p = path.clone();
                p.push(next.clone());
                stack.push((next, p));
            }
        }
        None
    };
    let after_debit = [
        "DebitWallet",
        "UpdatePaymentProcessing",
        "ProcessPayment",
        "CheckPaymentStatus",
        "CancelCharge",
    ];
    for task in after_debit {
        for rule in rules(&s[task], "Catch") {
            let target = rule["Next"].as_str().unwrap();
            assert_eq!(
                escapes(target),
                None,
                "{task} can end without settling the debit"
            );
        }
        for next in successors(&s[task]) {
            assert_eq!(
                escapes(&next),
                None,
                "{task} can end without settling the debit"
            );
        }
    }
}

/// Resolves `$`, `$.a.b` against `state`; intrinsic functions are skipped.
fn resolve(path: &str, state: &Value) -> Option<Value> {
    if path.starts_with("States.") {
        return None;
    }
    let mut current = state;
    for part in path
        .trim_start_matches('$')
        .split('.')
        .filter(|p| !p.is_empty())
    {
        current = current.get(part)?;
    }
    Some(current.clone())
}

fn fill(parameters: &Value, state: &Value) -> Value {
    let mut out = serde_json::Map::new();
    for (key, value) in parameters.as_object().unwrap() {
        match key.strip_suffix(".$") {
            Some(name) => {
                let path = value.as_str().unwrap();
                let resolved = resolve(path, state)
                    .unwrap_or_else(|| panic!("{path} not in the sample state"));
                out.insert(name.to_owned(), resolved);
            }
            None => {
                out.insert(key.clone(), value.clone());
            }
        }
    }
    Value::Object(out)
}

#[test]
fn every_task_builds_a_command_its_lambda_accepts() {
    let asl = asl();
    let input = json!({
        "paymentId": "pay_01JAAAAAAAAAAAAAAAAAAAAAAA",
        "userId": "user_1",
        "amount": {"amount": "50.00", "currency": "USD"},
        "orderId": "o-1",
        "metadata": {}
    });
    let mut state = input.clone();
    state["charge"] = json!({"status": "APPROVED", "gatewayReference": "gw_1", "checks": 0});
    state["error"] = json!({"Error": "PaymentDeclined", "Cause": "declined"});
    state["reconciliation"] = json!({"Error": "States.Timeout", "Cause": "timed out"});
    for (name, task) in states(&asl).iter().filter(|(_, s)| s["Type"] == "Task") {
        // CreateInvoice runs on the execution input alone.
        let scope = if name == "CreateInvoice" {
            &input
        } else {
            &state
        };
        let (command, resource) = if task["Resource"] == CALLBACK_RESOURCE {
            // `$$.Task.Token` resolves against a sample context.
            let mut scope = scope.clone();
            scope["Task"] = json!({"Token": "token-1"});
            let parameters = &task["Parameters"];
            let function = parameters["FunctionName"].as_str().unwrap();
            (fill(&parameters["Payload"], &scope), function)
        } else {
            (
                fill(&task["Parameters"], scope),
                task["Resource"].as_str().unwrap(),
            )
        };
        let parsed = match resource {
            "${InvoiceProcessorFunctionArn}" => {
                serde_json::from_value::<InvoiceCommand>(command).err()
            }
            "${WalletServiceFunctionArn}" => serde_json::from_value::<WalletCommand>(command).err(),
            "${PaymentsAdapterFunctionArn}" => {
                serde_json::from_value::<GatewayCommand>(command).err()
            }
            other => panic!("{name}: unknown resource {other}"),
        };
        assert!(parsed.is_none(), "{name}: {parsed:?}");
    }
}

#[test]
fn the_template_provides_every_substitution_the_asl_uses() {
    let text =
        std::fs::read_to_string(repo_root().join("state-machine/payment-saga.asl.json")).unwrap();
    let template = std::fs::read_to_string(repo_root().join("template.yml")).unwrap();
    let mut rest = text.as_str();
    let mut placeholders = BTreeSet::new();
    while let Some(start) = rest.find("${") {
        let end = rest[start..].find('}').unwrap();
        placeholders.insert(rest[start + 2..start + end].to_owned());
        rest = &rest[start + end..];
    }
    assert!(!placeholders.is_empty());
    for placeholder in placeholders {
        assert!(
            template.contains(&format!("{placeholder}:")),
            "template.yml does not substitute {placeholder}"
        );
    }
}

fn refund_asl() -> Value {
    let path = repo_root().join("state-machine/refund-saga.asl.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The refund saga: every task is refund-service's, builds a command it
/// accepts, retries only transient errors (and, because the gateway refunds
/// idempotently by refund id, an ambiguous gateway answer, which a retry asks
/// about again), bounded and jittered; a refusal fails the refund; anything
/// else that runs out goes to reconciliation; every placeholder is
/// substituted by the template.
#[test]
fn the_refund_saga_retries_transients_fails_refusals_and_reconciles_the_rest() {
    let asl = refund_asl();
    let s = states(&asl);
    let state = json!({
        "refundId": "ref_01JAAAAAAAAAAAAAAAAAAAAAAA",
        "paymentId": "pay_01JAAAAAAAAAAAAAAAAAAAAAAA",
        "amount": {"amount": "5.00", "currency": "USD"},
        "reconciliation": {"Error": "States.Timeout", "Cause": "timed out"}
    });
    let template = std::fs::read_to_string(repo_root().join("template.yml")).unwrap();
    for (name, task) in s.iter().filter(|(_, s)| s["Type"] == "Task") {
        assert_eq!(task["Resource"], "${RefundServiceFunctionArn}", "{name}");
        let command = fill(&task["Parameters"], &state);
        let parsed = serde_json::from_value::<shared::events::RefundTask>(command);
        assert!(parsed.is_ok(), "{name}: {parsed:?}");
        assert!(task["TimeoutSeconds"].as_u64().is_some(), "{name}");
        for rule in rules(task, "Retry") {
            for error in names(rule) {
                let ambiguous_refund = name == "RefundAtGateway" && error == "GatewayAmbiguous";
                assert!(
                    TRANSIENT.contains(&error.as_str()) || ambiguous_refund,
                    "{name} retries {error}"
                );
            }
            assert_eq!(rule["JitterStrategy"], "FULL", "{name}");
            assert!(rule["MaxDelaySeconds"].as_u64().unwrap() <= 60, "{name}");
            assert!(
                (1..=10).contains(&rule["MaxAttempts"].as_u64().unwrap()),
                "{name}"
            );
        }
        if name != "MarkRefundReconciliationRequired" {
            assert_eq!(
                catch_target(task, "States.Timeout").as_deref(),
                Some("MarkRefundReconciliationRequired"),
                "{name}"
            );
        }
    }
    assert_eq!(
        catch_target(&s["RefundAtGateway"], "GatewayRejected").as_deref(),
        Some("RefundRefused")
    );
    // The wallet credit is never failed: the gateway has paid out.
    assert_eq!(
        catch_target(&s["CreditWallet"], "GatewayRejected").as_deref(),
        Some("MarkRefundReconciliationRequired")
    );
    assert!(template.contains("DefinitionUri: state-machine/refund-saga.asl.json"));
    assert!(template.contains("RefundServiceFunctionArn:"));
    assert!(template.contains("REFUND_STATE_MACHINE_ARN: !Ref RefundSagaStateMachine"));
}
