//! Who may move whose money, end to end through the local cloud: the
//! template's authorizer (the real `authorizer` binary), its usage plans and
//! SigV4 route, in front of the real api-handler and operator-api — over HTTP
//! as a client calls them. The cloud runs with small service-client throttles
//! (`ClientRateLimit=1`, `ClientBurstLimit=3`), so throttling shows at once.
//!
//! Needs the binaries: `cargo build --workspace --bins` (make test does it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use local::api_client::{DEMO_MERCHANT_API_KEY, READ_ONLY_CLIENT_API_KEY};
use local::cloud::LocalCloud;
use saga_tests::cloud::{options, runtime};
use serde_json::{Value, json};
use shared::domain::UserId;

const SETTLE_SECONDS_MAX: u64 = 60;

struct Cloud {
    cloud: LocalCloud,
    http: reqwest::Client,
}

fn cloud() -> &'static Cloud {
    static CLOUD: OnceLock<Cloud> = OnceLock::new();
    CLOUD.get_or_init(|| {
        runtime().block_on(async {
            let overrides = BTreeMap::from([
                ("ClientRateLimit".to_owned(), "1".to_owned()),
                ("ClientBurstLimit".to_owned(), "3".to_owned()),
            ]);
            let cloud = LocalCloud::start_with_parameters(options(BTreeMap::new()), overrides)
                .await
                .expect("the local cloud starts");
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap();
            Cloud { cloud, http }
        })
    })
}

/// How a request authenticates.
#[derive(Clone)]
enum As {
    Nobody,
    Token(String),
    Key(&'static str),
}

struct Answer {
    status: u16,
    body: Value,
    retry_after: Option<String>,
}

impl Cloud {
    async fn send(&self, who: &As, method: &str, path: &str, body: Option<Value>) -> Answer {
        let url = format!("{}{path}", self.cloud.endpoints.api);
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self.http.request(method, &url);
        request = match who {
            As::Nobody => request,
            As::Token(token) => request.bearer_auth(token),
            As::Key(key) => request.header("x-api-key", *key),
        };
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = response.text().await.unwrap();
        Answer {
            status,
            body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
            retry_after,
        }
    }

    /// A token from the local issuer, as `saga token` gets it.
    async fn token(&self, user: &str) -> String {
        let url = format!("{}/token", self.cloud.endpoints.issuer);
        let reply: Value = self
            .http
            .post(url.replace("localhost", "127.0.0.1"))
            .json(&json!({"sub": user}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        reply["token"].as_str().unwrap().to_owned()
    }

    /// The operator's top-up: SigV4 with the local credentials.
    async fn credit(&self, user: &str, amount: &str) {
        let url = format!("{}/wallets/{user}/credit", self.cloud.endpoints.api);
        let body = json!({"amount": amount, "currency": "USD"})
            .to_string()
            .into_bytes();
        let mut request = cli::auth::Signer::local("us-east-1")
            .sign(self.http.post(&url), "POST", &url, &body)
            .unwrap()
            .body(body);
        // The top-up route's own throttle (burst 10) is shared by the tests:
        // a 429 did nothing and is tried again.
        for _ in 0..10 {
            let again = request.try_clone().unwrap();
            let response = request.send().await.unwrap();
            if response.status().as_u16() != 429 {
                let status = response.status().as_u16();
                assert_eq!(status, 200, "{:?}", response.text().await);
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            request = again;
        }
        panic!("the top-up stayed throttled");
    }

    async fn settled(&self, who: &As, payment_id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(SETTLE_SECONDS_MAX);
        loop {
            let answer = self
                .send(who, "GET", &format!("/payments/{payment_id}"), None)
                .await;
            assert_eq!(answer.status, 200, "{}", answer.body);
            let status = answer.body["status"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if !matches!(status.as_str(), "PENDING" | "PROCESSING") {
                return answer.body;
            }
            assert!(Instant::now() < deadline, "{payment_id} still {status}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn user(prefix: &str) -> String {
    format!("{prefix}_{}", ulid::Ulid::new().to_string().to_lowercase())
}

fn balance(answer: &Answer) -> String {
    answer.body["wallets"][0]["balance"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn without_credentials_every_route_but_health_is_401() {
    let c = cloud();
    runtime().block_on(async {
        let routes = [
            ("POST", "/payments"),
            ("GET", "/payments?userId=alice"),
            ("GET", "/payments/pay_01JC0000000000000000000000"),
            ("POST", "/payments/pay_01JC0000000000000000000000/refunds"),
            ("GET", "/wallets/alice"),
            ("POST", "/webhooks/gateway"),
        ];
        for (method, path) in routes {
            let answer = c.send(&As::Nobody, method, path, Some(json!({}))).await;
            assert_eq!(answer.status, 401, "{method} {path}: {}", answer.body);
        }
        // The operator route wants a signature: API Gateway's 403.
        let answer = c
            .send(
                &As::Nobody,
                "POST",
                "/wallets/alice/credit",
                Some(json!({})),
            )
            .await;
        assert_eq!(answer.status, 403, "{}", answer.body);
        assert_eq!(answer.body["message"], "Missing Authentication Token");
        let answer = c.send(&As::Nobody, "GET", "/health", None).await;
        assert_eq!(answer.status, 200);
    });
}

#[test]
fn alice_pays_and_reads_her_own_and_nothing_of_bobs() {
    let c = cloud();
    runtime().block_on(async {
        let (alice, bob) = (user("alice"), user("bob"));
        c.credit(&alice, "100").await;
        c.credit(&bob, "100").await;
        let as_alice = As::Token(c.token(&alice).await);
        let as_bob = As::Token(c.token(&bob).await);

        let paid = c
            .send(
                &as_alice,
                "POST",
                "/payments",
                Some(json!({"userId": alice, "amount": "25.00", "currency": "USD"})),
            )
            .await;
        assert_eq!(paid.status, 202, "{}", paid.body);
        let alices = paid.body["paymentId"].as_str().unwrap().to_owned();
        assert_eq!(c.settled(&as_alice, &alices).await["status"], "COMPLETED");
        let bobs_paid = c
            .send(
                &as_bob,
                "POST",
                "/payments",
                Some(json!({"userId": bob, "amount": "10.00", "currency": "USD"})),
            )
            .await;
        let bobs = bobs_paid.body["paymentId"].as_str().unwrap().to_owned();
        assert_eq!(c.settled(&as_bob, &bobs).await["status"], "COMPLETED");
        let bobs_balance = balance(
            &c.send(&as_bob, "GET", &format!("/wallets/{bob}"), None)
                .await,
        );
        assert_eq!(bobs_balance, "90.00");

        // Her own: the payment, the list, the wallet.
        let own = c
            .send(&as_alice, "GET", &format!("/payments/{alices}"), None)
            .await;
        assert_eq!(own.status, 200);
        let listed = c
            .send(&as_alice, "GET", &format!("/payments?userId={alice}"), None)
            .await;
        assert_eq!(listed.body["data"].as_array().unwrap().len(), 1);
        let wallet = c
            .send(&as_alice, "GET", &format!("/wallets/{alice}"), None)
            .await;
        assert_eq!(balance(&wallet), "75.00");

        // bob's payment and wallet do not exist for her; his list is forbidden.
        let theirs = c
            .send(&as_alice, "GET", &format!("/payments/{bobs}"), None)
            .await;
        assert_eq!(
            (theirs.status, theirs.body["error"]["code"].as_str()),
            (404, Some("payment_not_found"))
        );
        let wallet = c
            .send(&as_alice, "GET", &format!("/wallets/{bob}"), None)
            .await;
        assert_eq!(wallet.status, 404);
        let list = c
            .send(&as_alice, "GET", &format!("/payments?userId={bob}"), None)
            .await;
        assert_eq!(list.status, 403);

        // Paying from or refunding bob's money is refused and moves nothing.
        let pay = c
            .send(
                &as_alice,
                "POST",
                "/payments",
                Some(json!({"userId": bob, "amount": "50.00", "currency": "USD"})),
            )
            .await;
        assert_eq!(
            (pay.status, pay.body["error"]["code"].as_str()),
            (403, Some("forbidden"))
        );
        let refund = c
            .send(
                &as_alice,
                "POST",
                &format!("/payments/{bobs}/refunds"),
                Some(json!({})),
            )
            .await;
        assert_eq!(refund.status, 404);
        let after = c
            .send(&as_bob, "GET", &format!("/wallets/{bob}"), None)
            .await;
        assert_eq!(balance(&after), bobs_balance, "bob's balance unchanged");
        let bobs_list = c
            .send(&as_bob, "GET", &format!("/payments?userId={bob}"), None)
            .await;
        assert_eq!(bobs_list.body["data"].as_array().unwrap().len(), 1);
    });
}

/// A token's header and payload, re-encoded with `edit` applied to them.
fn edited(token: &str, edit: impl Fn(&mut Value, &mut Value)) -> (String, String) {
    let parts: Vec<&str> = token.split('.').collect();
    let decode = |part: &str| -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    };
    let (mut header, mut claims) = (decode(parts[0]), decode(parts[1]));
    edit(&mut header, &mut claims);
    let encode = |value: &Value| URL_SAFE_NO_PAD.encode(value.to_string());
    (encode(&header), encode(&claims))
}

#[test]
fn forged_tampered_expired_and_unsigned_tokens_are_401() {
    let c = cloud();
    runtime().block_on(async {
        let victim = user("victim");
        c.credit(&victim, "100").await;
        let path = format!("/wallets/{victim}");
        let genuine = c.token(&user("mallory")).await;
        let signature = genuine.rsplit('.').next().unwrap().to_owned();
        // mallory's signature on a payload claiming to be the victim.
        let (header, claims) = edited(&genuine, |_, claims| claims["sub"] = json!(victim));
        let tampered = format!("{header}.{claims}.{signature}");
        // alg: none, no signature.
        let (header, claims) = edited(&genuine, |header, claims| {
            header["alg"] = json!("none");
            claims["sub"] = json!(victim);
        });
        let unsigned = format!("{header}.{claims}.");
        // Signed by the issuer, but expired an hour ago.
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let expired = c
            .cloud
            .issuer
            .issue(&UserId::parse(&victim).unwrap(), now - 7_200, 3_600)
            .unwrap()
            .token;
        for (what, token) in [
            ("tampered", tampered),
            ("alg none", unsigned),
            ("expired", expired),
            ("garbage", "not.a.jwt".to_owned()),
        ] {
            let answer = c.send(&As::Token(token), "GET", &path, None).await;
            assert_eq!(answer.status, 401, "{what}: {}", answer.body);
        }
        // And the genuine token for the victim works (the test is not vacuous).
        let own = As::Token(c.token(&victim).await);
        assert_eq!(c.send(&own, "GET", &path, None).await.status, 200);
    });
}

#[test]
fn a_client_without_the_scope_is_403_and_over_its_rate_429() {
    let c = cloud();
    runtime().block_on(async {
        let carol = user("carol");
        c.credit(&carol, "100").await;
        let reader = As::Key(READ_ONLY_CLIENT_API_KEY);
        let answer = c
            .send(
                &reader,
                "POST",
                "/payments",
                Some(json!({"userId": carol, "amount": "1.00", "currency": "USD"})),
            )
            .await;
        assert_eq!(answer.status, 403, "{}", answer.body);
        assert_eq!(answer.body["error"]["code"], "missing_scope");
        let unknown = c
            .send(
                &As::Key("sk_not_a_key_of_anyone_0000000"),
                "GET",
                "/health",
                None,
            )
            .await;
        assert_eq!(unknown.status, 200, "health needs no key");
        let unknown = c
            .send(
                &As::Key("sk_not_a_key_of_anyone_0000000"),
                "GET",
                &format!("/wallets/{carol}"),
                None,
            )
            .await;
        assert_eq!(unknown.status, 401);

        // The demo merchant's own plan: rate 1, burst 3 (the overrides above).
        let merchant = As::Key(DEMO_MERCHANT_API_KEY);
        // Eight at once: three fit the burst; the rest land long before the
        // rate has refilled more than one (however slow this machine is, the
        // eight are sent within a second of each other).
        let path = format!("/wallets/{carol}");
        let sent: Vec<_> = (0..8)
            .map(|_| {
                let (merchant, path) = (merchant.clone(), path.clone());
                tokio::spawn(async move { cloud().send(&merchant, "GET", &path, None).await })
            })
            .collect();
        let mut throttled = Vec::new();
        for running in sent {
            let answer = running.await.unwrap();
            match answer.status {
                200 => {}
                429 => throttled.push(answer),
                other => panic!("unexpected {other}: {}", answer.body),
            }
        }
        assert!(throttled.len() >= 3, "{} of 8 throttled", throttled.len());
        for answer in &throttled {
            assert_eq!(answer.retry_after.as_deref(), Some("1"));
            assert_eq!(answer.body["message"], "Too Many Requests");
        }
        // Another client's plan is its own: the reader is not throttled by it.
        let answer = c
            .send(&reader, "GET", &format!("/wallets/{carol}"), None)
            .await;
        assert_ne!(answer.status, 429);
    });
}
