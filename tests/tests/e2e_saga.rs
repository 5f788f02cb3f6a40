//! End-to-end sagas through the local cloud: the real Lambda binaries as child
//! processes, the real ASL file, the tables of `template.yml`, the mock
//! gateway — driven over HTTP like a client would. Each test uses its own
//! users; scenarios that change the gateway's mode get a cloud of their own.
//!
//! Needs the binaries: `cargo build --workspace --bins` (make test does it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use local::cloud::{LocalCloud, Options};
use saga_tests::backend::repo_root;
use serde_json::{Value, json};

/// Waits and retry intervals run 20x faster than real time.
const TIME_SCALE: f64 = 0.05;
/// The longest a payment may take to settle in these tests.
const SETTLE_SECONDS_MAX: u64 = 60;

fn bin_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| repo_root().join("target"), PathBuf::from);
    let dir = target.join("debug");
    for binary in [
        "local",
        "mock-gateway",
        "api-handler",
        "invoice-processor",
        "wallet-service",
        "payments-adapter",
        "refund-service",
    ] {
        assert!(
            dir.join(binary).exists(),
            "{binary} is not built: run `cargo build --workspace --bins` first"
        );
    }
    dir
}

fn options(function_env: BTreeMap<String, String>) -> Options {
    let data_dir = std::env::temp_dir().join(format!("saga-e2e-{}", ulid::Ulid::new()));
    Options {
        root: repo_root(),
        data_dir,
        in_memory: true,
        bin_dir: bin_dir(),
        edge_port: 0,
        api_port: 0,
        gateway_port: 0,
        time_scale: TIME_SCALE,
        instance_count_max: 6,
        gateway_pending_delay_ms: 300,
        function_env,
    }
}

/// One runtime and one cloud shared by the scenarios that leave the gateway
/// in its normal mode (the cloud lives as long as the test process).
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    })
}

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
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        key: Option<&str>,
    ) -> (u16, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.api));
        if let Some(body) = body {
            request = request.json(&body);
        }
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
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

    async fn gateway(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self.http.request(method, format!("{}{path}", self.gateway));
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.unwrap().json().await.unwrap()
    }
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
fn a_gateway_error_is_retried_then_compensated() {
    let client = shared_cloud();
    runtime().block_on(async {
        let dave = user("dave");
        client.credit(&dave, "2000").await;
        let payment = client.settled(&client.pay(&dave, "999.99").await).await;
        assert_eq!(payment["status"], "FAILED", "{payment}");
        assert_eq!(payment["failureReason"], "RETRYABLE");
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
        assert_eq!(status, 201, "{refund}");
        assert_eq!(
            client.payment(&payment_id).await["status"],
            "PARTIALLY_REFUNDED"
        );
        assert_eq!(client.balance(&heidi).await, "60.00");
        let (status, refund) = client
            .send(reqwest::Method::POST, &path, Some(json!({})), None)
            .await;
        assert_eq!(status, 201, "{refund}");
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
        // Enough failing charges to open the circuit (each is retried by the saga).
        let payment = client.settled(&client.pay(&ivan, "10").await).await;
        assert_eq!(payment["status"], "FAILED");
        let calls_when_open = client
            .gateway(reqwest::Method::GET, "/control/stats", None)
            .await["total"]
            .clone();
        let payment = client.settled(&client.pay(&ivan, "10").await).await;
        assert_eq!(payment["status"], "FAILED");
        assert_eq!(payment["failureReason"], "CIRCUIT_OPEN", "{payment}");
        let calls_after = client
            .gateway(reqwest::Method::GET, "/control/stats", None)
            .await["total"]
            .clone();
        assert_eq!(
            calls_when_open, calls_after,
            "an open circuit makes no gateway call"
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
