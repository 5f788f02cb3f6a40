//! End-to-end sagas through the local cloud: the real Lambda binaries as child
//! processes, the real ASL file, the tables of `template.yml`, the mock
//! gateway — driven over HTTP like a client would. Each test uses its own
//! users; scenarios that change the gateway's mode get a cloud of their own.
//!
//! Needs the binaries: `cargo build --workspace --bins` (make test does it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use local::cloud::LocalCloud;
use local::template::{Context, Template};
use saga_tests::backend::repo_root;
use saga_tests::cloud::{options, runtime};
use serde_json::{Value, json};
use shared::domain::{Currency, LedgerEntry, UserId, WalletKey};
use shared::dynamo::{DynamoStore, TableNames};
use shared::ports::WalletRepo;

/// The longest a payment may take to settle in these tests.
const SETTLE_SECONDS_MAX: u64 = 60;

/// One cloud shared by the scenarios that leave the gateway in its normal
/// mode (it lives as long as the test process).
fn shared_cloud() -> &'static Client {
    static CLOUD: OnceLock<(LocalCloud, Client)> = OnceLock::new();
    &CLOUD
        .get_or_init(|| {
            runtime().block_on(async {
                let cloud = LocalCloud::start(options(BTreeMap::new()))
                    .await
                    .expect("the local cloud starts");
                let client = Client::new(&cloud);
                (cloud, client)
            })
        })
        .1
}

#[derive(Clone)]
struct Client {
    http: reqwest::Client,
    api: String,
    gateway: String,
    /// The AWS edge endpoint (DynamoDB, Step Functions, Lambda, `/_local/`).
    edge: String,
}

impl Client {
    fn new(cloud: &LocalCloud) -> Self {
        Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            api: cloud.endpoints.api.clone(),
            gateway: cloud.endpoints.gateway.clone(),
            edge: cloud.endpoints.edge.clone(),
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        key: Option<&str>,
    ) -> (u16, Value) {
        let url = format!("{}{path}", self.api);
        let operator = method == reqwest::Method::POST && path.ends_with("/credit");
        let mut request = self.http.request(method.clone(), &url);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        if operator {
            // Top-ups are the operator's: SigV4 with the local credentials.
            let bytes = body.map(|b| b.to_string()).unwrap_or_default().into_bytes();
            request = cli::auth::Signer::local("us-east-1")
                .sign(request, method.as_str(), &url, &bytes)
                .unwrap()
                .body(bytes);
        } else {
            // Everything else as the local demo merchant (every scope).
            request = request.header("x-api-key", local::api_client::DEMO_MERCHANT_API_KEY);
            if let Some(body) = body {
                request = request.json(&body);
            }
        }
        // The API is throttled like API Gateway: the tests share one cloud.
        exchange(request, true).await
    }

    async fn credit(&self, user: &str, amount: &str) {
        let body = json!({"amount": amount, "currency": "USD"});
        let (status, reply) = self
            .send(
                reqwest::Method::POST,
                &format!("/wallets/{user}/credit"),
                Some(body),
                None,
            )
            .await;
        assert_eq!(status, 200, "{reply}");
    }

    async fn balance(&self, user: &str) -> String {
        let (status, reply) = self
            .send(
                reqwest::Method::GET,
                &format!("/wallets/{user}"),
                None,
                None,
            )
            .await;
        assert_eq!(status, 200, "{reply}");
        reply["wallets"][0]["balance"].as_str().unwrap().to_owned()
    }

    async fn pay(&self, user: &str, amount: &str) -> String {
        let body = json!({"userId": user, "amount": amount, "currency": "USD"});
        let (status, reply) = self
            .send(reqwest::Method::POST, "/payments", Some(body), None)
            .await;
        assert_eq!(status, 202, "{reply}");
        reply["paymentId"].as_str().unwrap().to_owned()
    }

    async fn payment(&self, payment_id: &str) -> Value {
        let (status, reply) = self
            .send(
                reqwest::Method::GET,
                &format!("/payments/{payment_id}"),
                None,
                None,
            )
            .await;
        assert_eq!(status, 200, "{reply}");
        reply
    }

    /// Polls until the payment reaches a status the saga leaves it in.
    async fn settled(&self, payment_id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(SETTLE_SECONDS_MAX);
        loop {
            let payment = self.payment(payment_id).await;
            let status = payment["status"].as_str().unwrap_or_default();
            if [
                "COMPLETED",
                "FAILED",
                "RECONCILIATION_REQUIRED",
                "REFUNDED",
                "PARTIALLY_REFUNDED",
            ]
            .contains(&status)
            {
                return payment;
            }
            assert!(
                Instant::now() < deadline,
                "payment {payment_id} still {status} after {SETTLE_SECONDS_MAX} s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls until the refund saga has settled `refund` (an answer of
    /// `POST …/refunds`); returns the refund as the payment shows it.
    async fn refund_settled(&self, payment_id: &str, refund: &Value) -> Value {
        let deadline = Instant::now() + Duration::from_secs(SETTLE_SECONDS_MAX);
        loop {
            let payment = self.payment(payment_id).await;
            let found = payment["refunds"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|r| r["refundId"] == refund["refundId"])
                .cloned()
                .unwrap_or(Value::Null);
            let status = found["status"].as_str().unwrap_or_default();
            if ["COMPLETED", "FAILED", "RECONCILIATION_REQUIRED"].contains(&status) {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "refund {} still {status} after {SETTLE_SECONDS_MAX} s",
                refund["refundId"]
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A local-only admin route of the edge (`/_local/...`).
    async fn edge_admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.edge));
        if let Some(body) = body {
            request = request.json(&body);
        }
        exchange(request, false).await
    }

    /// One Step Functions operation over the AWS JSON 1.0 protocol, as the
    /// SDKs and the aws CLI send it.
    async fn step_functions(&self, operation: &str, input: Value) -> Value {
        let response = self
            .http
            .post(format!("{}/", self.edge))
            .header("x-amz-target", format!("AWSStepFunctions.{operation}"))
            .header("content-type", "application/x-amz-json-1.0")
            .body(input.to_string())
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, 200, "{operation}: {body}");
        body
    }

    /// The payment's execution (named by its paymentId) once it has ended.
    async fn finished_execution(&self, payment_id: &str) -> (Value, Vec<Value>) {
        let machines = self.step_functions("ListStateMachines", json!({})).await;
        let machine_arn = machines["stateMachines"][0]["stateMachineArn"]
            .as_str()
            .unwrap();
        let execution_arn = format!(
            "{}:{payment_id}",
            machine_arn.replace(":stateMachine:", ":execution:")
        );
        let input = json!({"executionArn": execution_arn});
        let deadline = Instant::now() + Duration::from_secs(SETTLE_SECONDS_MAX);
        let execution = loop {
            let execution = self
                .step_functions("DescribeExecution", input.clone())
                .await;
            if execution["status"] != "RUNNING" {
                break execution;
            }
            assert!(Instant::now() < deadline, "{execution_arn} still running");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let history = self
            .step_functions(
                "GetExecutionHistory",
                json!({"executionArn": execution_arn, "maxResults": 1000}),
            )
            .await;
        (execution, history["events"].as_array().unwrap().clone())
    }

    async fn gateway(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self.http.request(method, format!("{}{path}", self.gateway));
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.unwrap().json().await.unwrap()
    }
}

/// Sends the request and reads its status and JSON body (the text when not
/// JSON). `retry_throttled`: a 429 (nothing was done) is sent again after a
/// second, up to 10 times, as a careful client does.
async fn exchange(mut request: reqwest::RequestBuilder, retry_throttled: bool) -> (u16, Value) {
    let mut attempt = 1;
    let response = loop {
        let again = request.try_clone().unwrap();
        let response = request.send().await.unwrap();
        let throttled = response.status() == reqwest::StatusCode::TOO_MANY_REQUESTS;
        if !(retry_throttled && throttled) || attempt == 10 {
            break response;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        request = again;
        attempt += 1;
    };
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn user(prefix: &str) -> String {
    format!("{prefix}_{}", ulid::Ulid::new().to_string().to_lowercase())
}

fn statuses(payment: &Value) -> Vec<String> {
    payment["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["status"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_payment_completes_and_debits_exactly_its_amount() {
    let client = shared_cloud();
    runtime().block_on(async {
        let alice = user("alice");
        client.credit(&alice, "1000").await;
        let payment_id = client.pay(&alice, "50").await;
        let payment = client.settled(&payment_id).await;
        assert_eq!(payment["status"], "COMPLETED", "{payment}");
        assert!(
            payment["gatewayReference"]
                .as_str()
                .is_some_and(|r| r.starts_with("gw_"))
        );
        assert_eq!(statuses(&payment), ["PENDING", "PROCESSING", "COMPLETED"]);
        assert_eq!(client.balance(&alice).await, "950.00");
    });
}

#[test]
fn insufficient_funds_fails_and_debits_nothing() {
    let client = shared_cloud();
    runtime().block_on(async {
        let bob = user("bob");
        client.credit(&bob, "100").await;
        let payment = client.settled(&client.pay(&bob, "5000").await).await;
        assert_eq!(payment["status"], "FAILED");
        assert_eq!(payment["failureReason"], "INSUFFICIENT_FUNDS");
        assert_eq!(statuses(&payment), ["PENDING", "FAILED"]);
        assert_eq!(client.balance(&bob).await, "100.00");
    });
}

#[test]
fn a_declined_charge_is_compensated() {
    let client = shared_cloud();
    runtime().block_on(async {
        let carol = user("carol");
        client.credit(&carol, "100").await;
        let payment = client.settled(&client.pay(&carol, "10.13").await).await;
        assert_eq!(payment["status"], "FAILED");
        assert_eq!(payment["failureReason"], "PAYMENT_DECLINED");
        assert_eq!(statuses(&payment), ["PENDING", "PROCESSING", "FAILED"]);
        assert_eq!(
            client.balance(&carol).await,
            "100.00",
            "the debit was given back"
        );
    });
}

#[test]
fn a_gateway_error_is_resolved_closed_then_compensated() {
    let client = shared_cloud();
    runtime().block_on(async {
        let dave = user("dave");
        client.credit(&dave, "2000").await;
        // 999.99 gets a 500: for a charge that may come after a capture, so the
        // saga asks, finds nothing, closes the payment at the gateway, and
        // only then gives the debit back.
        let payment = client.settled(&client.pay(&dave, "999.99").await).await;
        assert_eq!(payment["status"], "FAILED", "{payment}");
        assert_eq!(
            payment["failureReason"], "GATEWAY_NOT_PROCESSED",
            "{payment}"
        );
        assert_eq!(client.balance(&dave).await, "2000.00");
    });
}

#[test]
fn a_pending_charge_is_approved_through_the_wait_loop() {
    let client = shared_cloud();
    runtime().block_on(async {
        let erin = user("erin");
        client.credit(&erin, "100").await;
        let payment = client.settled(&client.pay(&erin, "20.77").await).await;
        assert_eq!(payment["status"], "COMPLETED", "{payment}");
        assert_eq!(client.balance(&erin).await, "79.23");
    });
}

#[test]
fn an_idempotency_key_replays_and_refuses_a_different_body() {
    let client = shared_cloud();
    runtime().block_on(async {
        let frank = user("frank");
        client.credit(&frank, "100").await;
        let key = format!("order-{}", ulid::Ulid::new());
        let body = json!({"userId": frank, "amount": "30", "currency": "USD"});
        let (first_status, first) = client
            .send(
                reqwest::Method::POST,
                "/payments",
                Some(body.clone()),
                Some(&key),
            )
            .await;
        let (second_status, second) = client
            .send(reqwest::Method::POST, "/payments", Some(body), Some(&key))
            .await;
        assert_eq!((first_status, second_status), (202, 202));
        assert_eq!(first["paymentId"], second["paymentId"]);
        let other = json!({"userId": frank, "amount": "31", "currency": "USD"});
        let (status, reply) = client
            .send(reqwest::Method::POST, "/payments", Some(other), Some(&key))
            .await;
        assert_eq!(status, 422, "{reply}");
        assert_eq!(reply["error"]["code"], "idempotency_key_reused");
        client.settled(first["paymentId"].as_str().unwrap()).await;
        assert_eq!(
            client.balance(&frank).await,
            "70.00",
            "one payment, one debit"
        );
    });
}

#[test]
fn forty_concurrent_payments_on_a_wallet_that_affords_twenty_five() {
    let client = shared_cloud();
    runtime().block_on(async {
        let grace = user("grace");
        client.credit(&grace, "250").await;
        let mut payments = tokio::task::JoinSet::new();
        for _ in 0..40 {
            let client = client.clone();
            let grace = grace.clone();
            payments.spawn(async move {
                let payment_id = client.pay(&grace, "10").await;
                client.settled(&payment_id).await
            });
        }
        let mut by_status: BTreeMap<String, u32> = BTreeMap::new();
        while let Some(payment) = payments.join_next().await {
            *by_status
                .entry(payment.unwrap()["status"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
        println!("40 concurrent payments of 10 on 250: {by_status:?}");
        assert_eq!(by_status.get("COMPLETED"), Some(&25), "{by_status:?}");
        assert_eq!(by_status.get("FAILED"), Some(&15), "{by_status:?}");
        assert_eq!(client.balance(&grace).await, "0.00");
    });
}

#[test]
fn full_and_partial_refunds_credit_the_wallet_back() {
    let client = shared_cloud();
    runtime().block_on(async {
        let heidi = user("heidi");
        client.credit(&heidi, "100").await;
        let payment_id = client.pay(&heidi, "60").await;
        assert_eq!(client.settled(&payment_id).await["status"], "COMPLETED");
        let path = format!("/payments/{payment_id}/refunds");
        let (status, refund) = client
            .send(
                reqwest::Method::POST,
                &path,
                Some(json!({"amount": "20"})),
                None,
            )
            .await;
        assert_eq!(status, 202, "{refund}");
        assert_eq!(refund["status"], "REQUESTED", "{refund}");
        assert_eq!(
            client.refund_settled(&payment_id, &refund).await["status"],
            "COMPLETED"
        );
        assert_eq!(
            client.payment(&payment_id).await["status"],
            "PARTIALLY_REFUNDED"
        );
        assert_eq!(client.balance(&heidi).await, "60.00");
        let (status, refund) = client
            .send(reqwest::Method::POST, &path, Some(json!({})), None)
            .await;
        assert_eq!(status, 202, "{refund}");
        assert_eq!(
            client.refund_settled(&payment_id, &refund).await["status"],
            "COMPLETED"
        );
        let payment = client.payment(&payment_id).await;
        assert_eq!(payment["status"], "REFUNDED");
        assert_eq!(payment["refundedAmount"], "60.00");
        assert_eq!(client.balance(&heidi).await, "100.00");
        let (status, reply) = client
            .send(
                reqwest::Method::POST,
                &path,
                Some(json!({"amount": "1"})),
                None,
            )
            .await;
        assert_eq!(
            status, 422,
            "a refunded payment cannot be refunded again: {reply}"
        );
    });
}

/// The physical name of the function built from `binary`, from the local
/// Lambda service's stats.
async fn function_name(client: &Client, binary: &str) -> String {
    let (status, stats) = client
        .edge_admin(reqwest::Method::GET, "/_local/lambda/stats", None)
        .await;
    assert_eq!(status, 200, "{stats}");
    stats["functions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["binary"] == binary)
        .and_then(|f| f["functionName"].as_str())
        .unwrap_or_else(|| panic!("no function runs {binary}: {stats}"))
        .to_owned()
}

/// Waits (bounded) until an instance of `function` holds its result back;
/// returns its pid.
async fn held_instance(client: &Client, function: &str) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(SETTLE_SECONDS_MAX);
    loop {
        let (_, stats) = client
            .edge_admin(reqwest::Method::GET, "/_local/lambda/stats", None)
            .await;
        let held = stats["functions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["functionName"] == function)
            .flat_map(|f| f["instances"].as_array().unwrap().iter())
            .find(|i| i["resultHeld"] == true)
            .and_then(|i| i["pid"].as_u64());
        if let Some(pid) = held {
            return pid;
        }
        assert!(
            Instant::now() < deadline,
            "no instance of {function} held a result"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The wallet's ledger, read straight from the tables (through the edge,
/// like any DynamoDB client).
async fn ledger(client: &Client, user_id: &str) -> Vec<LedgerEntry> {
    let template = Template::load(&repo_root().join("template.yml"), Context::default()).unwrap();
    let environment = template.global_environment().unwrap();
    let tables = TableNames::from_lookup(|name| environment.get(name).cloned()).unwrap();
    let store = DynamoStore::new(local::dynamo::client(&client.edge), tables);
    let key = WalletKey::new(
        UserId::parse(user_id).unwrap(),
        Currency::parse("USD").unwrap(),
    );
    let page = store.ledger(&key, 100, None).await.unwrap();
    assert!(page.cursor.is_none(), "one page holds this ledger");
    page.items
}

fn event_types(history: &[Value]) -> Vec<&str> {
    history
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect()
}

fn entered(history: &[Value], state: &str) -> usize {
    history
        .iter()
        .filter(|e| e["stateEnteredEventDetails"]["name"] == state)
        .count()
}

/// A Lambda instance killed in the middle of the debit: the wallet-service
/// has committed the debit (its result is held back by the local Lambda
/// service), then its instance is SIGKILLed, so the reply is lost. Step
/// Functions sees `Runtime.ExitError` and retries DebitWallet; the retry finds
/// the debit's txId (`<paymentId>#DEBIT`) in the ledger and moves nothing.
#[test]
fn a_wallet_instance_killed_mid_debit_does_not_debit_twice() {
    let client = shared_cloud();
    runtime().block_on(async {
        let kim = user("kim");
        client.credit(&kim, "100").await;
        let wallet_service = function_name(client, "wallet-service").await;
        // GIVEN the result of this user's next debit will be held back
        // (matched on the payload, so other tests' debits are not held)
        let hold = json!({"match": {"action": "DEBIT", "userId": kim}});
        let (status, armed) = client
            .edge_admin(
                reqwest::Method::POST,
                &format!("/_local/lambda/functions/{wallet_service}/hold-next-result"),
                Some(hold),
            )
            .await;
        assert_eq!(status, 200, "{armed}");
        // WHEN the payment starts and the debit has run
        let payment_id = client.pay(&kim, "30").await;
        let pid = held_instance(client, &wallet_service).await;
        assert_eq!(
            client.balance(&kim).await,
            "70.00",
            "the debit is committed, its reply not yet sent"
        );
        // AND the instance is killed before it can reply
        let (status, killed) = client
            .edge_admin(
                reqwest::Method::POST,
                &format!("/_local/lambda/functions/{wallet_service}/kill-busy-instance"),
                None,
            )
            .await;
        assert_eq!((status, killed["pid"].as_u64()), (200, Some(pid)));
        // THEN the payment completes, debited once
        let payment = client.settled(&payment_id).await;
        assert_eq!(payment["status"], "COMPLETED", "{payment}");
        assert_eq!(statuses(&payment), ["PENDING", "PROCESSING", "COMPLETED"]);
        assert_eq!(client.balance(&kim).await, "70.00");
        let entries = ledger(client, &kim).await;
        let kinds: Vec<String> = entries.iter().map(|e| e.kind.as_str().to_owned()).collect();
        assert_eq!(kinds.len(), 2, "one top-up and one debit: {kinds:?}");
        let debits: Vec<&LedgerEntry> = entries
            .iter()
            .filter(|e| e.tx_id == format!("{payment_id}#DEBIT"))
            .collect();
        assert_eq!(debits.len(), 1, "{kinds:?}");
        assert_eq!(debits[0].amount.amount().to_string(), "30.00");
        assert_eq!(debits[0].balance_after.amount().to_string(), "70.00");
        // AND the history shows the crash and the retry of DebitWallet
        let (execution, history) = client.finished_execution(&payment_id).await;
        assert_eq!(execution["status"], "SUCCEEDED", "{execution}");
        assert_debit_retried_once_after_a_crash(&history, &payment_id);
    });
}

/// DebitWallet ran twice in one state: a `Runtime.ExitError`, then a retry
/// that found its txId already in the ledger; no compensation.
fn assert_debit_retried_once_after_a_crash(history: &[Value], payment_id: &str) {
    assert_eq!(entered(history, "DebitWallet"), 1);
    assert_eq!(entered(history, "RefundWallet"), 0);
    let debit_from = history
        .iter()
        .position(|e| e["stateEnteredEventDetails"]["name"] == "DebitWallet")
        .unwrap();
    let debit_to = history
        .iter()
        .position(|e| e["stateExitedEventDetails"]["name"] == "DebitWallet")
        .unwrap();
    assert_eq!(
        event_types(&history[debit_from..=debit_to]),
        [
            "TaskStateEntered",
            "LambdaFunctionScheduled",
            "LambdaFunctionStarted",
            "LambdaFunctionFailed",
            "LambdaFunctionScheduled",
            "LambdaFunctionStarted",
            "LambdaFunctionSucceeded",
            "TaskStateExited",
        ]
    );
    let failed = &history[debit_from + 3]["lambdaFunctionFailedEventDetails"];
    assert_eq!(failed["error"], "Runtime.ExitError", "{failed}");
    let retried = &history[debit_from + 6]["lambdaFunctionSucceededEventDetails"];
    let reply: Value = serde_json::from_str(retried["output"].as_str().unwrap()).unwrap();
    assert_eq!(reply["replayed"], true, "the retry moved nothing: {reply}");
    assert_eq!(reply["txId"], format!("{payment_id}#DEBIT"));
}

/// A payment in flight when the local cloud stops: its debit is committed
/// but its reply held back when the cloud shuts down. The next start over
/// the same data resumes the execution in DebitWallet with the history it
/// had; the debit is found in the ledger, and the payment completes.
#[test]
fn a_payment_in_flight_across_a_restart_completes_debited_once() {
    runtime().block_on(async {
        let mut persistent = options(BTreeMap::new());
        persistent.in_memory = false;
        let cloud = LocalCloud::start(persistent.clone())
            .await
            .expect("the local cloud starts");
        let client = Client::new(&cloud);
        let lee = user("lee");
        client.credit(&lee, "100").await;
        let wallet_service = function_name(&client, "wallet-service").await;
        let hold = json!({"match": {"action": "DEBIT", "userId": lee}});
        let path = format!("/_local/lambda/functions/{wallet_service}/hold-next-result");
        let (status, armed) = client
            .edge_admin(reqwest::Method::POST, &path, Some(hold))
            .await;
        assert_eq!(status, 200, "{armed}");
        let payment_id = client.pay(&lee, "40").await;
        held_instance(&client, &wallet_service).await;
        // WHEN the cloud stops with the debit's reply still held, and starts again
        cloud.shutdown().await;
        let cloud = LocalCloud::start(persistent.clone())
            .await
            .expect("the local cloud starts again");
        let client = Client::new(&cloud);
        // THEN the payment completes, debited once
        let payment = client.settled(&payment_id).await;
        assert_eq!(payment["status"], "COMPLETED", "{payment}");
        assert_eq!(client.balance(&lee).await, "60.00");
        let debits = ledger(&client, &lee)
            .await
            .into_iter()
            .filter(|e| e.tx_id == format!("{payment_id}#DEBIT"))
            .count();
        assert_eq!(debits, 1);
        // AND the history kept the events from before the restart: one
        // ExecutionStarted, DebitWallet entered before and after it
        let (execution, history) = client.finished_execution(&payment_id).await;
        assert_eq!(execution["status"], "SUCCEEDED", "{execution}");
        let types = event_types(&history);
        assert_eq!(
            types.iter().filter(|t| **t == "ExecutionStarted").count(),
            1
        );
        assert_eq!(entered(&history, "CreateInvoice"), 1);
        assert_eq!(entered(&history, "DebitWallet"), 2, "{types:?}");
        assert_eq!(entered(&history, "RefundWallet"), 0);
        for (index, event) in history.iter().enumerate() {
            assert_eq!(
                event["id"].as_u64(),
                Some(u64::try_from(index).unwrap() + 1)
            );
        }
        cloud.shutdown().await;
        let _ = std::fs::remove_dir_all(&persistent.data_dir);
    });
}

/// The breaker opens after FAILURE_THRESHOLD failures: payments then fail
/// fast and are compensated while the gateway sees no more calls; after
/// OPEN_SECONDS a probe succeeds and payments complete again.
#[test]
fn the_circuit_breaker_opens_stops_calls_and_recovers() {
    runtime().block_on(async {
        let function_env = BTreeMap::from([
            ("FAILURE_THRESHOLD".to_owned(), "3".to_owned()),
            ("OPEN_SECONDS".to_owned(), "2".to_owned()),
            ("SUCCESS_THRESHOLD".to_owned(), "1".to_owned()),
            ("BREAKER_CACHE_TTL_MS".to_owned(), "0".to_owned()),
        ]);
        let cloud = LocalCloud::start(options(function_env))
            .await
            .expect("the local cloud starts");
        let client = Client::new(&cloud);
        let ivan = user("ivan");
        client.credit(&ivan, "1000").await;
        client
            .gateway(
                reqwest::Method::POST,
                "/control/mode",
                Some(json!({"mode": "error"})),
            )
            .await;
        // Enough failing charges to open the circuit: each 500 counts one
        // failure, and each payment is resolved (status, cancel) and failed.
        for _ in 0..3 {
            let payment = client.settled(&client.pay(&ivan, "10").await).await;
            assert_eq!(payment["status"], "FAILED", "{payment}");
        }
        let stats_when_open = client
            .gateway(reqwest::Method::GET, "/control/stats", None)
            .await;
        let payment = client.settled(&client.pay(&ivan, "10").await).await;
        assert_eq!(payment["status"], "FAILED");
        assert_eq!(payment["failureReason"], "CIRCUIT_OPEN", "{payment}");
        let stats_after = client
            .gateway(reqwest::Method::GET, "/control/stats", None)
            .await;
        // An open circuit sends no charge; the saga only closes the payment
        // at the gateway (a cancel, which bypasses the breaker) before
        // giving the debit back.
        assert_eq!(
            stats_when_open["byOutcome"]["ERROR"], stats_after["byOutcome"]["ERROR"],
            "an open circuit sends no charge"
        );
        let canceled = |stats: &serde_json::Value| stats["byOutcome"]["CANCELED"].as_u64();
        assert_eq!(
            canceled(&stats_after),
            canceled(&stats_when_open).map(|n| n + 1)
        );
        assert_eq!(
            client.balance(&ivan).await,
            "1000.00",
            "every failed payment was compensated"
        );
        // Recovery: the gateway heals, the open period passes, a probe closes the circuit.
        client
            .gateway(
                reqwest::Method::POST,
                "/control/mode",
                Some(json!({"mode": "normal"})),
            )
            .await;
        tokio::time::sleep(Duration::from_millis(2_200)).await;
        let payment = client.settled(&client.pay(&ivan, "10").await).await;
        assert_eq!(payment["status"], "COMPLETED", "{payment}");
        assert_eq!(client.balance(&ivan).await, "990.00");
        cloud.shutdown().await;
    });
}

#[test]
fn the_reconciler_completes_a_payment_the_gateway_captured_after_the_saga_gave_up() {
    runtime().block_on(async {
        let cloud = LocalCloud::start(options(BTreeMap::new()))
            .await
            .expect("the local cloud starts");
        let client = Client::new(&cloud);
        let rosa = user("rosa");
        client.credit(&rosa, "100").await;
        // GIVEN a charge that stays PENDING longer than the saga polls (10
        // checks, compressed by the time scale), so the saga gives up
        client
            .gateway(
                reqwest::Method::POST,
                "/control/mode",
                Some(json!({"mode": "pending_then_approve", "pendingDelayMs": 15_000})),
            )
            .await;
        let payment_id = client.pay(&rosa, "40").await;
        let flagged = client.settled(&payment_id).await;
        assert_eq!(flagged["status"], "RECONCILIATION_REQUIRED", "{flagged}");
        assert_eq!(client.balance(&rosa).await, "60.00");
        // AND the gateway captures it afterwards
        let deadline = Instant::now() + Duration::from_secs(SETTLE_SECONDS_MAX);
        loop {
            let charge = client
                .http
                .get(format!("{}/v1/payments/{payment_id}", client.gateway))
                .header("X-API-Key", local::cloud::LOCAL_GATEWAY_API_KEY)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap();
            if charge["status"] == "APPROVED" {
                break;
            }
            assert!(Instant::now() < deadline, "never captured: {charge}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // WHEN the reconciler runs (as its schedule would)
        let invoke = async || -> Value {
            let path = "/2015-03-31/functions/local-reconciler/invocations";
            let (status, report) = client
                .edge_admin(reqwest::Method::POST, path, Some(json!({})))
                .await;
            assert_eq!(status, 200, "{report}");
            report
        };
        let report = invoke().await;
        // THEN the payment is COMPLETED, its debit kept once, and it says so
        // (unless the gateway's own webhook, through the reconciler too, got
        // there first: then this run finds it settled)
        if let Some(finding) = report["findings"].as_array().and_then(|all| all.first()) {
            assert_eq!(finding["id"], payment_id.as_str(), "{report}");
            assert_eq!(finding["outcome"], "RESOLVED", "{report}");
            assert_eq!(finding["now"], "COMPLETED", "{report}");
        }
        let payment = client.payment(&payment_id).await;
        assert_eq!(payment["status"], "COMPLETED", "{payment}");
        assert!(payment["failureReason"].is_null(), "{payment}");
        assert_eq!(client.balance(&rosa).await, "60.00");
        // AND a second run finds nothing open
        let again = invoke().await;
        assert_eq!(again["findings"], json!([]), "{again}");
        cloud.shutdown().await;
    });
}
