//! The state machine and the code agree: every error name the ASL matches is
//! one the code produces (or an AWS-defined one), no step retries a business
//! error or `States.ALL`, every business error is routed where the saga rules
//! say, the waiting loop is bounded, every task after the debit ends in a
//! completion, a compensation or a reconciliation, and every task's
//! `Parameters` produce a command its Lambda accepts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};

use saga_tests::backend::repo_root;
use serde_json::{Value, json};
use shared::ErrorType;
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
const BUSINESS: [ErrorType; 13] = [
    ErrorType::ValidationError,
    ErrorType::CurrencyMismatch,
    ErrorType::InsufficientFunds,
    ErrorType::WalletNotFound,
    ErrorType::PaymentNotFound,
    ErrorType::AlreadyExists,
    ErrorType::InvalidTransition,
    ErrorType::LedgerConflict,
    ErrorType::DebitNotFound,
    ErrorType::PaymentDeclined,
    ErrorType::CircuitOpen,
    ErrorType::GatewayRejected,
    ErrorType::InternalError,
];

fn asl() -> Value {
    let path = repo_root().join("state-machine/payment-saga.asl.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
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

fn successors(state: &Value) -> Vec<String> {
    let mut next: Vec<String> = Vec::new();
    for key in ["Next", "Default"] {
        if let Some(target) = state.get(key).and_then(Value::as_str) {
            next.push(target.to_owned());
        }
    }
    for choice in rules(state, "Choices") {
        next.push(choice["Next"].as_str().unwrap().to_owned());
    }
    for rule in rules(state, "Catch") {
        next.push(rule["Next"].as_str().unwrap().to_owned());
    }
    next
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
    // And every business or gateway error the code produces is named
    // somewhere, or the saga would route it only by the catch-all.
    for business in [
        ErrorType::InsufficientFunds,
        ErrorType::WalletNotFound,
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
                let read_only = name == "CheckPaymentStatus" && error == "GatewayAmbiguous";
                assert!(
                    TRANSIENT.contains(&error.as_str()) || read_only,
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
        if state["Type"] == "Task" && name != "ProcessPayment" {
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
    for task in ["ProcessPayment", "CheckPaymentStatus"] {
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

#[test]
fn business_errors_are_routed_by_the_saga_rules() {
    let asl = asl();
    let s = states(&asl);
    // A refused debit moved nothing: fail without compensating.
    for refused in ["InsufficientFunds", "WalletNotFound"] {
        assert_eq!(
            catch_target(&s["DebitWallet"], refused).as_deref(),
            Some("UpdatePaymentFailed")
        );
    }
    // An unknown debit outcome is compensated (compensation gives back only a debit that exists).
    assert_eq!(
        catch_target(&s["DebitWallet"], "Retryable").as_deref(),
        Some("RefundWallet")
    );
    // Definitely not captured: compensate.
    for definite in [
        "PaymentDeclined",
        "CircuitOpen",
        "GatewayRejected",
        "GatewayUnavailable",
        "Retryable",
    ] {
        assert_eq!(
            catch_target(&s["ProcessPayment"], definite).as_deref(),
            Some("RefundWallet"),
            "{definite}"
        );
    }
    // Maybe captured: never straight to compensation.
    for ambiguous in [
        "GatewayAmbiguous",
        "States.Timeout",
        "Sandbox.Timedout",
        "Runtime.ExitError",
        "Lambda.Unknown",
    ] {
        assert_eq!(
            catch_target(&s["ProcessPayment"], ambiguous).as_deref(),
            Some("ResolveAmbiguousCharge"),
            "{ambiguous}"
        );
    }
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
}

#[test]
fn every_state_is_reachable_and_every_target_exists() {
    let asl = asl();
    let s = states(&asl);
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
    let all: BTreeSet<String> = s.keys().cloned().collect();
    assert_eq!(seen, all, "unreachable states");
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
fn every_task_after_the_debit_completes_compensates_or_reconciles() {
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
        "UpdatePaymentProcessing",
        "ProcessPayment",
        "CheckPaymentStatus",
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
        let command = fill(&task["Parameters"], scope);
        let resource = task["Resource"].as_str().unwrap();
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
