//! Clients of the public API, calling api-handler's real `handle` with API
//! Gateway proxy events: top-ups, payments with and without an
//! Idempotency-Key (sometimes the same request twice at once), retries of
//! 5xx answers with the same key, reads, and refunds (full, partial, and two
//! racing under different keys). What each client is told is recorded, for
//! the invariants to hold against the books.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use aws_lambda_events::apigw::ApiGatewayProxyRequest;
use aws_lambda_events::encodings::Body;
use lambda_runtime::{Context, LambdaEvent};
use rust_decimal::Decimal;
use serde_json::{Value, json};

use crate::env::Env;

/// Retries of a 5xx (or "key in use") answer with the same key, with
/// exponential backoff, as a careful client does: long enough to outlast the
/// API's stale-claim time, so a request that died is resumed.
const RETRY_COUNT_MAX: u32 = 6;
const RETRY_BACKOFF_MS_MAX: u64 = 16_000;
/// How long a client watches a payment before giving up on it.
const WATCH_MS_MAX: u64 = 240_000;

/// What the clients were told.
#[derive(Debug, Default, Clone)]
pub struct Told {
    /// Idempotency-Key → the payment ids its answers named.
    pub payments_by_key: BTreeMap<String, BTreeSet<String>>,
    /// Payments an answer said were not charged.
    pub not_charged: BTreeSet<String>,
    /// Forged or stale gateway webhooks api-handler did not refuse with 401.
    pub bad_webhooks_accepted: Vec<String>,
    /// Requests of one user against another's payment or wallet that were
    /// not refused (403 paying from it, 404 reading it).
    pub intrusions_accepted: Vec<String>,
    /// Requests sent, by route and status.
    pub answers: BTreeMap<String, u64>,
}

/// Who a simulated client is to API Gateway's authorizer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A merchant's backend: an API key with every scope, for any user.
    Merchant,
    /// An end user's bearer token.
    User(String),
}

/// The simulated operator's role (top-ups are SigV4, on operator-api).
const OPERATOR_ARN: &str = "arn:aws:iam::000000000000:role/sim-operator";

#[derive(Clone)]
pub struct Api {
    pub env: Env,
    pub deps: Arc<api_handler::Deps>,
    pub operator: Arc<api_handler::OperatorDeps>,
    pub told: Arc<Mutex<Told>>,
    pub caller: Caller,
}

#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl Reply {
    fn payment_id(&self) -> Option<String> {
        self.body
            .get("paymentId")
            .and_then(Value::as_str)
            .map(str::to_owned)
    }
}

/// `pay_` and a 26-character ULID inside a message.
fn payment_id_in(text: &str) -> Option<String> {
    let start = text.find("pay_")?;
    let id: String = text.get(start..)?.chars().take(30).collect();
    (id.len() == 30).then_some(id)
}

impl Api {
    fn told(&self) -> MutexGuard<'_, Told> {
        self.told.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A forged or stale webhook that was not refused.
    pub fn told_bad_webhook(&self, what: String) {
        self.told().bad_webhooks_accepted.push(what);
    }

    /// The same API, called as `caller`.
    pub fn as_caller(&self, caller: Caller) -> Self {
        Self {
            caller,
            ..self.clone()
        }
    }

    /// `requestContext.authorizer` and `identity` of this caller's requests
    /// (an operator's on the top-up route, which operator-api serves).
    fn auth(&self, operator_route: bool) -> (Value, Value) {
        if operator_route {
            return (
                Value::Null,
                json!({"sourceIp": "127.0.0.1", "userArn": OPERATOR_ARN}),
            );
        }
        match &self.caller {
            Caller::Merchant => (
                json!({"principalId": "client:sim-merchant", "principalType": "client",
                    "clientId": "sim-merchant",
                    "scopes": "payments:read payments:write refunds:write wallets:read"}),
                json!({"sourceIp": "127.0.0.1"}),
            ),
            Caller::User(user) => (
                json!({"principalId": format!("user:{user}"), "principalType": "user",
                    "userId": user}),
                json!({"sourceIp": "127.0.0.1"}),
            ),
        }
    }

    pub async fn send(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let extra: Vec<(&str, &str)> = key
            .map(|key| ("Idempotency-Key", key))
            .into_iter()
            .collect();
        let body = body.map(|body| body.to_string());
        self.send_raw(method, path, &extra, body).await
    }

    /// A request with these extra headers and this exact body text (what a
    /// signature is computed over).
    pub async fn send_raw(
        &self,
        method: &str,
        path: &str,
        extra_headers: &[(&str, &str)],
        body: Option<String>,
    ) -> Reply {
        self.env.latency(1..=30).await;
        let mut headers = serde_json::Map::new();
        headers.insert("Content-Type".into(), json!("application/json"));
        for (name, value) in extra_headers {
            headers.insert((*name).to_owned(), json!(value));
        }
        let request_id = format!("req-{:016x}", self.env.random_u64());
        let operator_route = method == "POST" && path.ends_with("/credit");
        let (authorizer, identity) = self.auth(operator_route);
        let event: Result<ApiGatewayProxyRequest, _> = serde_json::from_value(json!({
            "resource": "/{proxy+}",
            "path": path,
            "httpMethod": method,
            "headers": headers,
            "multiValueHeaders": {},
            "queryStringParameters": null,
            "multiValueQueryStringParameters": null,
            "pathParameters": null,
            "stageVariables": null,
            "requestContext": {
                "accountId": "000000000000", "resourceId": "sim", "stage": "sim",
                "requestId": request_id,
                "identity": identity, "authorizer": authorizer,
                "resourcePath": "/{proxy+}", "httpMethod": method, "apiId": "sim"
            },
            "body": body,
            "isBase64Encoded": false
        }));
        let Ok(event) = event else {
            return Reply {
                status: 0,
                body: Value::Null,
            };
        };
        let (deps, operator) = (self.deps.clone(), self.operator.clone());
        let running = self.env.spawn(async move {
            let event = LambdaEvent::new(event, Context::default());
            if operator_route {
                api_handler::handle_operator(&operator, event).await
            } else {
                api_handler::handle(&deps, event).await
            }
        });
        let reply = match running.await {
            Ok(Ok(response)) => {
                let text = match response.body {
                    Some(Body::Text(text)) => text,
                    _ => String::new(),
                };
                Reply {
                    status: u16::try_from(response.status_code).unwrap_or(0),
                    body: serde_json::from_str(&text).unwrap_or(Value::Null),
                }
            }
            _ => Reply {
                status: 0,
                body: Value::Null,
            },
        };
        let route = path.split('/').nth(1).unwrap_or("-");
        let route = if path.ends_with("/refunds") {
            "refunds"
        } else if path.ends_with("/credit") {
            "credit"
        } else {
            route
        };
        *self
            .told()
            .answers
            .entry(format!("{method} {route} {}", reply.status))
            .or_default() += 1;
        reply
    }

    /// POST with retries of 5xx answers under the same key.
    async fn post(&self, subject: &str, path: &str, key: Option<&str>, body: Value) -> Vec<Reply> {
        let mut replies = Vec::new();
        for attempt in 0..=RETRY_COUNT_MAX {
            let reply = self.send("POST", path, key, Some(body.clone())).await;
            self.env.trace(
                subject,
                format!(
                    "client POST {path} → {} {}",
                    reply.status,
                    short(&reply.body)
                ),
            );
            let busy =
                reply.status == 409 && reply.body["error"]["code"] == "idempotency_key_in_use";
            let retry = (reply.status >= 500 || busy) && key.is_some() && attempt < RETRY_COUNT_MAX;
            replies.push(reply);
            if !retry {
                break;
            }
            let backoff_ms = (1_000u64 << attempt).min(RETRY_BACKOFF_MS_MAX);
            self.env.latency(backoff_ms / 2..=backoff_ms).await;
        }
        replies
    }

    fn record_payment_answers(&self, key: Option<&str>, replies: &[Reply]) {
        let mut told = self.told();
        for reply in replies {
            let message = reply.body["error"]["message"].as_str().unwrap_or("");
            if message.contains("was not charged")
                && let Some(id) = payment_id_in(message)
            {
                told.not_charged.insert(id);
            }
            if let (Some(key), Some(id)) = (key, reply.payment_id()) {
                told.payments_by_key
                    .entry(key.to_owned())
                    .or_default()
                    .insert(id);
            }
        }
    }
}

fn short(body: &Value) -> String {
    if let Some(code) = body["error"]["code"].as_str() {
        return code.to_owned();
    }
    let status = body.get("status").and_then(Value::as_str).unwrap_or("");
    let id = body
        .get("refundId")
        .or_else(|| body.get("paymentId"))
        .and_then(Value::as_str)
        .unwrap_or("");
    format!("{status} {id}").trim().to_owned()
}

fn dollars(cents: u64) -> String {
    let cents = i64::try_from(cents).unwrap_or(0);
    Decimal::new(cents, 2).to_string()
}

/// One user's session: a top-up, then payments, watching some and refunding
/// some of those that complete.
pub async fn user_session(api: Api, user: String, payment_count: u32) {
    let env = api.env.clone();
    // Half the users pay through the merchant's backend, half with their own
    // token (the same caller for the whole session: its keys are its own).
    let api = if env.chance(1, 2) {
        api.as_caller(Caller::User(user.clone()))
    } else {
        api
    };
    top_up(&api, &user, "t0").await;
    for number in 0..payment_count {
        env.latency(0..=4_000).await;
        if env.chance(1, 8) {
            top_up(&api, &user, &format!("t{}", number + 1)).await;
        }
        if env.chance(1, 6) {
            let reply = api
                .send("GET", &format!("/wallets/{user}"), None, None)
                .await;
            env.trace(&user, format!("client GET wallet → {}", reply.status));
        }
        let payment = pay(&api, &user, number).await;
        if let Some(payment_id) = payment
            && env.chance(2, 3)
        {
            let api = api.clone();
            let _detached = env.spawn(async move { watch_and_refund(api, payment_id).await });
        }
    }
}

async fn top_up(api: &Api, user: &str, tag: &str) {
    let cents = api.env.range(5_000..=80_000);
    let body = json!({"amount": dollars(cents), "currency": "USD", "reference": tag});
    let key = format!("{user}-{tag}");
    let replies = api
        .post(user, &format!("/wallets/{user}/credit"), Some(&key), body)
        .await;
    drop(replies);
}

async fn pay(api: &Api, user: &str, number: u32) -> Option<String> {
    let env = &api.env;
    let cents = env.range(100..=40_000);
    let currency = if env.chance(1, 25) { "EUR" } else { "USD" };
    let body = json!({"userId": user, "amount": dollars(cents), "currency": currency,
        "orderId": format!("order-{user}-{number}")});
    let key = env.chance(3, 4).then(|| format!("{user}-p{number}"));
    let replies = if key.is_some() && env.chance(1, 5) {
        // The same request twice at once (a double click, a client retry race).
        let (a, b) = (api.clone(), api.clone());
        let (key_a, key_b) = (key.clone(), key.clone());
        let (body_a, body_b) = (body.clone(), body.clone());
        let user_a = user.to_owned();
        let user_b = user.to_owned();
        let first =
            env.spawn(async move { a.post(&user_a, "/payments", key_a.as_deref(), body_a).await });
        let second =
            env.spawn(async move { b.post(&user_b, "/payments", key_b.as_deref(), body_b).await });
        let mut replies = first.await.unwrap_or_default();
        replies.extend(second.await.unwrap_or_default());
        replies
    } else {
        api.post(user, "/payments", key.as_deref(), body.clone())
            .await
    };
    api.record_payment_answers(key.as_deref(), &replies);
    let payment_id = replies.iter().rev().find_map(Reply::payment_id);
    if env.chance(1, 10) {
        intrude(api, user, &body, payment_id.as_deref()).await;
    }
    payment_id
}

/// Another user tries this user's wallet and payment with their own token:
/// paying from it must be refused (403) and reading it must find nothing
/// (404). Anything else is an intrusion the invariants report.
async fn intrude(api: &Api, victim: &str, body: &Value, payment_id: Option<&str>) {
    let intruder = api.as_caller(Caller::User(format!("{victim}-intruder")));
    let reply = intruder
        .send(
            "POST",
            "/payments",
            Some("intruder-key"),
            Some(body.clone()),
        )
        .await;
    // A 5xx is an injected fault that revealed nothing; any other answer but
    // the refusal (a 202, or a 422 that judged the victim's balance) is not.
    let refused = |status: u16, expected: u16| status == expected || status >= 500;
    let mut accepted = Vec::new();
    if !refused(reply.status, 403) {
        accepted.push(format!("POST /payments as another user → {}", reply.status));
    }
    let mut reads = vec![format!("/wallets/{victim}")];
    reads.extend(payment_id.map(|id| format!("/payments/{id}")));
    for path in reads {
        let reply = intruder.send("GET", &path, None, None).await;
        if !refused(reply.status, 404) {
            accepted.push(format!("GET {path} as another user → {}", reply.status));
        }
    }
    api.env
        .trace(victim, format!("intruder refused: {}", accepted.is_empty()));
    api.told().intrusions_accepted.extend(accepted);
}

/// Polls the payment until it is over, then maybe refunds it.
async fn watch_and_refund(api: Api, payment_id: String) {
    let env = api.env.clone();
    let started = env.now_ms();
    let mut status = String::new();
    while env.now_ms().saturating_sub(started) < WATCH_MS_MAX {
        tokio::time::sleep(Duration::from_millis(env.range(1_000..=5_000))).await;
        let reply = api
            .send("GET", &format!("/payments/{payment_id}"), None, None)
            .await;
        status = reply.body["status"].as_str().unwrap_or("").to_owned();
        if matches!(
            status.as_str(),
            "COMPLETED" | "FAILED" | "RECONCILIATION_REQUIRED"
        ) {
            break;
        }
    }
    env.trace(&payment_id, format!("client sees {status}"));
    if status != "COMPLETED" || env.chance(1, 3) {
        return;
    }
    let path = format!("/payments/{payment_id}/refunds");
    match env.range(0..=2) {
        0 => {
            let key = format!("{payment_id}-full");
            api.post(&payment_id, &path, Some(&key), json!({"reason": "full"}))
                .await;
        }
        1 => {
            let key = format!("{payment_id}-part");
            api.post(&payment_id, &path, Some(&key), json!({"amount": "1.00"}))
                .await;
        }
        _ => {
            // Two refunds racing under different keys.
            let (a, b) = (api.clone(), api.clone());
            let (path_a, path_b) = (path.clone(), path.clone());
            let (id_a, id_b) = (payment_id.clone(), payment_id.clone());
            let first = env.spawn(async move {
                let key = format!("{id_a}-race-a");
                a.post(&id_a, &path_a, Some(&key), json!({"amount": "0.50"}))
                    .await
            });
            let second = env.spawn(async move {
                let key = format!("{id_b}-race-b");
                b.post(&id_b, &path_b, Some(&key), json!({})).await
            });
            let _ignored = (first.await, second.await);
        }
    }
}
