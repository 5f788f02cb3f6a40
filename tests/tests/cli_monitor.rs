//! The `saga` CLI and its flow monitor against an in-process local cloud: what
//! a tester sees, and the exit codes scripts rely on (0 expected outcome,
//! 1 another outcome or a failed call, 2 usage errors and timeouts).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::process::Output;
use std::sync::OnceLock;

use local::cloud::LocalCloud;
use saga_tests::cloud::{bin_dir, options, runtime};
use serde_json::Value;

struct Cloud {
    _cloud: LocalCloud,
    api: String,
    edge: String,
}

fn cloud() -> &'static Cloud {
    static CLOUD: OnceLock<Cloud> = OnceLock::new();
    CLOUD.get_or_init(|| {
        runtime().block_on(async {
            let cloud = LocalCloud::start(options(BTreeMap::new()))
                .await
                .expect("the local cloud starts");
            Cloud {
                api: cloud.endpoints.api.clone(),
                edge: cloud.endpoints.edge.clone(),
                _cloud: cloud,
            }
        })
    })
}

/// Runs `saga <args>` against the test cloud, without colours.
fn saga(args: &[&str]) -> Output {
    let cloud = cloud();
    std::process::Command::new(bin_dir(&["saga"]).join("saga"))
        .args(args)
        .env("API_URL", &cloud.api)
        .env("SFN_ENDPOINT_URL", &cloud.edge)
        .env("NO_COLOR", "1")
        .env_remove("AWS_PROFILE")
        .output()
        .expect("saga runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn user(name: &str) -> String {
    format!(
        "cli_{name}_{}",
        ulid::Ulid::new().to_string().to_lowercase()
    )
}

fn credit(user: &str, amount: &str) {
    let out = saga(&["wallet", "credit", user, "--amount", amount]);
    assert!(out.status.success(), "credit: {}", stderr(&out));
}

/// Asserts that `needles` appear in `text` in this order.
fn assert_in_order(text: &str, needles: &[&str]) {
    let mut rest = text;
    for needle in needles {
        match rest.find(needle) {
            Some(at) => rest = &rest[at + needle.len()..],
            None => panic!("`{needle}` missing (or out of order) in:\n{text}"),
        }
    }
}

#[test]
fn pay_watch_shows_every_state_and_the_balance_and_exits_zero() {
    let user = user("ok");
    credit(&user, "1000");
    let out = saga(&[
        "pay",
        "--user",
        &user,
        "--amount",
        "50",
        "--order-id",
        "o-1",
        "--watch",
    ]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    assert_in_order(
        &text,
        &[
            "Payment Details:",
            &format!("User ID: {user}"),
            "Amount: 50.00 USD",
            "Order ID: o-1",
            "Initial Wallet Balance: 1000.00 USD",
            "⏳ [RUNNING] CreateInvoice",
            "✅ [SUCCESS] CreateInvoice",
            "⏳ [RUNNING] DebitWallet",
            "✅ [SUCCESS] DebitWallet",
            "⏳ [RUNNING] UpdatePaymentProcessing",
            "✅ [SUCCESS] UpdatePaymentProcessing",
            "⏳ [RUNNING] ProcessPayment",
            "✅ [SUCCESS] ProcessPayment",
            "🔀 [CHOICE]  IsPaymentApproved",
            "→ UpdatePaymentSuccess",
            "⏳ [RUNNING] UpdatePaymentSuccess",
            "✅ [SUCCESS] UpdatePaymentSuccess",
            "🎉 [SUCCEED] PaymentSuccess",
            "Payment completed successfully!",
            "Status: COMPLETED",
            "Gateway Reference: gw_",
            "Balance: 1000.00 → 950.00 USD",
            "Total time:",
        ],
    );
    assert!(!text.contains('\x1b'), "NO_COLOR output has escape codes");
}

#[test]
fn the_json_monitor_shows_the_wait_for_the_gateways_word_on_a_pending_charge() {
    let user = user("pending");
    credit(&user, "100");
    let out = saga(&[
        "--json", "pay", "--user", &user, "--amount", "10.77", "--watch",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let lines: Vec<Value> = stdout(&out)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}")))
        .collect();
    let events: Vec<(String, String)> = lines
        .iter()
        .map(|l| {
            (
                l["event"].as_str().unwrap_or_default().to_owned(),
                l["state"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let has = |event: &str, state: &str| events.iter().any(|(e, s)| e == event && s == state);
    assert!(has("started", ""), "{events:?}");
    // The saga waits on its task token; the gateway's webhook (300 ms later
    // here) has the reconciler send it the approval. Had the webhook come
    // before the token was kept, the wait would end in the status check.
    assert!(has("running", "AwaitGatewayWebhook"), "{events:?}");
    let woken = has("choice", "IsGatewayAnswerFinal") && has("success", "AdoptGatewayApproval");
    let checked = has("success", "CheckPaymentStatus") && has("choice", "EvaluatePaymentStatus");
    assert!(woken || checked, "{events:?}");
    let summary = lines.last().unwrap();
    assert_eq!(summary["event"], "summary");
    assert_eq!(summary["status"], "COMPLETED");
    assert_eq!(summary["asExpected"], true);
    assert_eq!(summary["initialBalance"], "100.00");
    assert_eq!(summary["finalBalance"], "89.23");
}

#[test]
fn an_expected_failure_exits_zero_and_an_unexpected_one_exits_one() {
    let user = user("poor");
    credit(&user, "1000");
    let expected = saga(&[
        "pay", "--user", &user, "--amount", "5000", "--watch", "--expect", "FAILED",
    ]);
    let text = stdout(&expected);
    assert_eq!(expected.status.code(), Some(0), "{text}");
    assert_in_order(
        &text,
        &[
            "❌ [FAILED]  DebitWallet",
            "InsufficientFunds",
            "🛑 [FAIL]    PaymentFailed",
            "Payment ended FAILED, as expected",
            "Failure Reason: INSUFFICIENT_FUNDS",
            "Balance: 1000.00 → 1000.00 USD",
            "Error: PaymentFailed",
        ],
    );
    let unexpected = saga(&["pay", "--user", &user, "--amount", "5000", "--watch"]);
    assert_eq!(unexpected.status.code(), Some(1), "{}", stdout(&unexpected));
    assert!(stdout(&unexpected).contains("Payment ended FAILED, expected COMPLETED"));
}

#[test]
fn a_user_without_a_wallet_is_told_so_with_a_hint() {
    // GIVEN a user who never had a USD wallet
    let user = user("nowallet");
    // WHEN a payment is sent and watched
    let out = saga(&["pay", "--user", &user, "--amount", "5", "--watch"]);
    let text = stdout(&out);
    // THEN it fails with WALLET_NOT_FOUND, says there is no wallet (not a zero
    // balance) and tells the tester how to create one
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert_in_order(
        &text,
        &[
            "Initial Wallet Balance: no USD wallet",
            "WalletNotFound",
            "Payment ended FAILED, expected COMPLETED",
            "Failure Reason: WALLET_NOT_FOUND",
            "Balance: no USD wallet",
            "Final Balance: no USD wallet",
            "hint: the user has no wallet in this currency",
        ],
    );
}

#[test]
fn monitor_replays_a_finished_payment_from_its_history() {
    let user = user("replay");
    credit(&user, "100");
    let created = saga(&["--json", "pay", "--user", &user, "--amount", "20.13"]);
    assert!(created.status.success(), "{}", stderr(&created));
    let payment: Value = serde_json::from_slice(&created.stdout).unwrap();
    let id = payment["paymentId"].as_str().unwrap();
    let out = saga(&["monitor", id, "--expect", "FAILED"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    assert_in_order(
        &text,
        &[
            "Wallet Balance (as the monitor starts)",
            "⏳ [RUNNING] CreateInvoice",
            "⏳ [RUNNING] ProcessPayment",
            "❌ [FAILED]  ProcessPayment",
            "PaymentDeclined",
            "⏳ [RUNNING] RefundWallet",
            "✅ [SUCCESS] RefundWallet",
            "Failure Reason: PAYMENT_DECLINED",
            // The monitor may start mid-saga: its first balance is not "initial".
            "→ 100.00 USD",
        ],
    );
}

#[test]
fn a_stopped_cloud_is_a_clear_error_and_usage_errors_exit_two() {
    let down = std::process::Command::new(bin_dir(&["saga"]).join("saga"))
        .args([
            "--api-url",
            "http://127.0.0.1:9",
            "wallet",
            "show",
            "someone",
        ])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert_eq!(down.status.code(), Some(1));
    let err = stderr(&down);
    assert!(
        err.contains("cannot reach the payments API at http://127.0.0.1:9"),
        "{err}"
    );
    assert!(err.contains("make start-local"), "{err}");

    let bad_target = saga(&["monitor", "not-a-payment"]);
    assert_eq!(bad_target.status.code(), Some(2));
    assert!(stderr(&bad_target).contains("neither a payment id"));
    let missing_amount = saga(&["pay", "--user", "x"]);
    assert_eq!(missing_amount.status.code(), Some(2));
    assert!(stderr(&missing_amount).contains("--amount"));
}

#[test]
fn api_errors_are_reported_with_their_code_and_exit_one() {
    let out = saga(&["pay", "--user", "u", "--amount", "10.001"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("400"), "{err}");
    assert!(err.contains("amount"), "{err}");
}
