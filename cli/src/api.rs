//! The HTTP API client (`POST /payments`, wallets, refunds), local or deployed.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::args::Global;
use crate::auth::{self, Credential, Signer};
use crate::error::{CliError, CliResult};

pub const DEFAULT_API_URL: &str = "http://127.0.0.1:3001";
/// Attempts at a request API Gateway throttled (429) before reporting it.
const THROTTLED_ATTEMPT_COUNT_MAX: u32 = 5;
/// Longest `Retry-After` honoured between those attempts.
const RETRY_AFTER_MAX: Duration = Duration::from_secs(5);

/// A payment as `GET /payments/{id}` and `POST /payments` return it.
/// How often a refund being waited for is read again.
const REFUND_POLL_INTERVAL: std::time::Duration = std::time::Duration::from_millis(200);

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Payment {
    pub payment_id: String,
    pub user_id: String,
    pub amount: String,
    pub currency: String,
    pub status: String,
    #[serde(default)]
    pub order_id: Option<String>,
    #[serde(default)]
    pub gateway_reference: Option<String>,
    #[serde(default)]
    pub failure_reason: Option<String>,
    #[serde(default)]
    pub refunded_amount: Option<String>,
    #[serde(default)]
    pub execution_arn: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
}

impl Payment {
    /// COMPLETED, FAILED, REFUNDED, … : the saga is done with it.
    pub fn is_terminal(&self) -> bool {
        !matches!(self.status.as_str(), "PENDING" | "PROCESSING")
    }
}

#[derive(Debug, Clone, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct NewPayment {
    pub user_id: String,
    pub amount: String,
    pub currency: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// One currency of `GET /wallets/{userId}`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct WalletBalance {
    pub currency: String,
    pub balance: String,
    pub version: u64,
}

#[derive(Debug, Clone)]
pub struct Api {
    base: String,
    http: reqwest::Client,
    /// What client routes are called with.
    credential: Credential,
    /// SigV4 credentials for the operator top-up; `None`: top-ups unsigned
    /// (refused by the API).
    signer: Option<Signer>,
}

/// The HTTP client of every command: bounded connect and request times, and
/// enough idle connections for `saga bench`'s concurrency.
pub fn http_client() -> CliResult<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(256)
        .build()
        .map_err(|err| CliError::Usage(format!("HTTP client: {err}")))
}

impl Api {
    /// An API client without credentials (only /health answers).
    pub fn new(base: &str) -> CliResult<Self> {
        let http = http_client()?;
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            http,
            credential: Credential::None,
            signer: None,
        })
    }

    /// The API client of every command, with the caller the flags name
    /// (`--token`, `--as`, `--api-key`) or, against the local cloud with none
    /// of them, the local demo merchant; top-ups signed with the environment's
    /// IAM credentials (the local cloud's own locally).
    pub async fn connect(global: &Global) -> CliResult<Self> {
        let mut api = Self::new(&global.api_url)?;
        let local = auth::is_loopback(&global.api_url);
        let issuer = auth::local_issuer(global.endpoint_url.as_deref());
        api.credential = match (&global.token, &global.as_user, &global.api_key) {
            (Some(token), _, _) => Credential::Bearer(token.clone()),
            (None, Some(user), _) => {
                Credential::Bearer(auth::local_token(&api.http, &issuer, user, None).await?)
            }
            (None, None, Some(key)) => Credential::ApiKey(key.clone()),
            // The local demo merchant; a stopped cloud is reported by the
            // first call instead ("cannot reach the payments API").
            (None, None, None) if local => match auth::local_client_key(&api.http, &issuer).await {
                Ok(key) => Credential::ApiKey(key),
                Err(CliError::Unreachable { .. }) => Credential::None,
                Err(err) => return Err(err),
            },
            (None, None, None) => Credential::None,
        };
        api.signer = Signer::from_env(local, global.region.as_deref());
        Ok(api)
    }

    pub fn with_credential(mut self, credential: Credential) -> Self {
        self.credential = credential;
        self
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub async fn health(&self) -> CliResult<Value> {
        self.call(Method::GET, "/health", None, None).await
    }

    pub async fn create_payment(
        &self,
        payment: &NewPayment,
        idempotency_key: Option<&str>,
    ) -> CliResult<Payment> {
        let body = serde_json::to_value(payment).map_err(|err| CliError::Usage(err.to_string()))?;
        let reply = self
            .call(Method::POST, "/payments", Some(body), idempotency_key)
            .await?;
        parse(reply, "POST /payments")
    }

    pub async fn payment(&self, payment_id: &str) -> CliResult<Payment> {
        let reply = self.payment_raw(payment_id).await?;
        parse(reply, "GET /payments/{paymentId}")
    }

    /// The payment with its event timeline and refunds, as the API returns it.
    pub async fn payment_raw(&self, payment_id: &str) -> CliResult<Value> {
        let path = format!("/payments/{}", encode(payment_id));
        self.call(Method::GET, &path, None, None).await
    }

    pub async fn payments(
        &self,
        user_id: &str,
        limit: Option<u32>,
        cursor: Option<&str>,
    ) -> CliResult<Value> {
        let mut path = format!("/payments?userId={}", encode(user_id));
        if let Some(limit) = limit {
            path.push_str(&format!("&limit={limit}"));
        }
        if let Some(cursor) = cursor {
            path.push_str(&format!("&cursor={}", encode(cursor)));
        }
        self.call(Method::GET, &path, None, None).await
    }

    pub async fn wallet_raw(&self, user_id: &str) -> CliResult<Value> {
        let path = format!("/wallets/{}", encode(user_id));
        self.call(Method::GET, &path, None, None).await
    }

    /// The balance in one currency; `None` when the user has no wallet in it.
    pub async fn balance(&self, user_id: &str, currency: &str) -> CliResult<Option<WalletBalance>> {
        let reply = match self.wallet_raw(user_id).await {
            Ok(reply) => reply,
            Err(CliError::Api { status: 404, .. }) => return Ok(None),
            Err(err) => return Err(err),
        };
        let wallets: Vec<WalletBalance> = parse(
            reply.get("wallets").cloned().unwrap_or(Value::Null),
            "GET /wallets/{userId}",
        )?;
        Ok(wallets
            .into_iter()
            .find(|wallet| wallet.currency.eq_ignore_ascii_case(currency)))
    }

    pub async fn credit(
        &self,
        user_id: &str,
        amount: &str,
        currency: &str,
        reference: Option<&str>,
        idempotency_key: Option<&str>,
    ) -> CliResult<Value> {
        let mut body = serde_json::json!({ "amount": amount, "currency": currency });
        if let Some(reference) = reference {
            body["reference"] = Value::from(reference);
        }
        let path = format!("/wallets/{}/credit", encode(user_id));
        let url = format!("{}{}", self.base, path);
        let bytes = body.to_string().into_bytes();
        let mut request = self.http.post(&url);
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        let request = match &self.signer {
            Some(signer) => signer.sign(request, "POST", &url, &bytes)?,
            None => request.header("content-type", "application/json"),
        };
        self.send(request.body(bytes), &url).await
    }

    pub async fn refund(
        &self,
        payment_id: &str,
        amount: Option<&str>,
        reason: Option<&str>,
        idempotency_key: Option<&str>,
    ) -> CliResult<Value> {
        let mut body = serde_json::json!({});
        if let Some(amount) = amount {
            body["amount"] = Value::from(amount);
        }
        if let Some(reason) = reason {
            body["reason"] = Value::from(reason);
        }
        let path = format!("/payments/{}/refunds", encode(payment_id));
        self.call(Method::POST, &path, Some(body), idempotency_key)
            .await
    }

    /// Polls the payment until its refund `refund_id` is settled (COMPLETED,
    /// FAILED or RECONCILIATION_REQUIRED) or `wait` has passed; calls
    /// `on_status` with every status it sees change. Returns the refund as
    /// last seen.
    pub async fn settled_refund(
        &self,
        payment_id: &str,
        refund_id: &str,
        wait: std::time::Duration,
        mut on_status: impl FnMut(&str),
    ) -> CliResult<Value> {
        let deadline = std::time::Instant::now() + wait;
        let mut seen = String::new();
        loop {
            let payment = self.payment_raw(payment_id).await?;
            let refund = payment["refunds"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|r| r["refundId"] == refund_id)
                .cloned()
                .unwrap_or(Value::Null);
            let status = refund["status"].as_str().unwrap_or_default().to_owned();
            if status != seen {
                on_status(&status);
                seen.clone_from(&status);
            }
            let settled = matches!(
                status.as_str(),
                "COMPLETED" | "FAILED" | "RECONCILIATION_REQUIRED"
            );
            if settled || std::time::Instant::now() >= deadline {
                return Ok(refund);
            }
            tokio::time::sleep(REFUND_POLL_INTERVAL).await;
        }
    }

    /// One request; non-2xx answers become [`CliError::Api`] from the JSON error body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        idempotency_key: Option<&str>,
    ) -> CliResult<Value> {
        let url = format!("{}{}", self.base, path);
        let mut request = self.credential.apply(self.http.request(method, &url));
        if let Some(body) = body {
            request = request.json(&body);
        }
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        self.send(request, &url).await
    }

    /// Sends the request; a 429 (the caller's usage plan or the stage's
    /// throttle: nothing was done) is sent again after its `Retry-After`, a
    /// few times, as a careful client does.
    async fn send(&self, mut request: reqwest::RequestBuilder, url: &str) -> CliResult<Value> {
        let mut attempt = 1;
        let response = loop {
            let again = request.try_clone();
            let response = self.send_once(request, url).await?;
            match again {
                Some(next)
                    if response.status() == StatusCode::TOO_MANY_REQUESTS
                        && attempt < THROTTLED_ATTEMPT_COUNT_MAX =>
                {
                    tokio::time::sleep(retry_after(&response)).await;
                    request = next;
                    attempt += 1;
                }
                _ => break response,
            }
        };
        self.read(response, url).await
    }

    async fn send_once(
        &self,
        request: reqwest::RequestBuilder,
        url: &str,
    ) -> CliResult<reqwest::Response> {
        request.send().await.map_err(|err| {
            if err.is_timeout() {
                CliError::Timeout(format!("{url}: no answer in time"))
            } else {
                CliError::Unreachable {
                    what: "the payments API",
                    url: self.base.clone(),
                    flag: "api-url",
                    detail: root_cause(&err),
                }
            }
        })
    }

    async fn read(&self, response: reqwest::Response, url: &str) -> CliResult<Value> {
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|err| CliError::Protocol(format!("{url}: {err}")))?;
        let value: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .map_err(|_| CliError::Protocol(format!("{url}: {status} {text}")))?
        };
        if status.is_success() {
            Ok(value)
        } else {
            Err(api_error(status, &value))
        }
    }
}

/// How long a 429 asks to wait (`Retry-After` seconds, at most
/// [`RETRY_AFTER_MAX`]; 1 s when absent).
fn retry_after(response: &reqwest::Response) -> Duration {
    let seconds = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(1);
    Duration::from_secs(seconds).min(RETRY_AFTER_MAX)
}

fn api_error(status: StatusCode, body: &Value) -> CliError {
    let error = &body["error"];
    let text = |key: &str| error[key].as_str().unwrap_or_default().to_owned();
    // API Gateway's own answers (401 from the authorizer, 403 SigV4, 429
    // throttled) are `{"message": …}`.
    let message = error["message"]
        .as_str()
        .or_else(|| body["message"].as_str())
        .or_else(|| body["Message"].as_str())
        .unwrap_or_default()
        .to_owned();
    CliError::Api {
        status: status.as_u16(),
        error_type: text("type"),
        code: text("code"),
        message,
    }
}

fn parse<T: serde::de::DeserializeOwned>(value: Value, what: &str) -> CliResult<T> {
    serde_json::from_value(value).map_err(|err| CliError::Protocol(format!("{what}: {err}")))
}

/// Percent-encodes a path segment or query value (ids are `[A-Za-z0-9_.-]`,
/// but a user may type anything).
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The innermost error message (reqwest wraps "connection refused" twice).
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut current = err;
    while let Some(source) = current.source() {
        current = source;
    }
    current.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_percent_encoded() {
        assert_eq!(encode("user_1.a-b"), "user_1.a-b");
        assert_eq!(encode("a b/c?"), "a%20b%2Fc%3F");
    }

    #[test]
    fn error_bodies_become_api_errors() {
        let body = serde_json::json!({"error": {"type": "invalid_request", "code": "amount_invalid", "message": "bad"}});
        let err = api_error(StatusCode::BAD_REQUEST, &body);
        assert_eq!(err.to_string(), "400 invalid_request/amount_invalid: bad");
    }
}
