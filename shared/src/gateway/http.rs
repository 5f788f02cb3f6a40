//! [`HttpGateway`]: the `PaymentGateway` port over reqwest.
//!
//! Every failure is classified by what it says about the payment:
//! - nothing was sent, or the gateway said it did nothing (connect or DNS
//!   failure, connect timeout, 429, 503) → `Unavailable`, safe to retry;
//! - the request went out but no usable answer came back (timeout or broken
//!   connection after sending, 408/504, any other 5xx, a 409 for a request
//!   still in flight under the same key, an unreadable or unexpected success
//!   answer) → `Ambiguous` for a charge, cancel or refund, which may have
//!   happened;
//! - any other 4xx → `Rejected` with the gateway's error code.
//!
//! A status lookup changes nothing at the gateway, so for it "no usable answer"
//! is simply `Unavailable`: asking again is always safe.

use std::error::Error as _;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Client, RequestBuilder, Response, StatusCode, Url};

use crate::domain::{Money, PaymentId, RefundId, UserId};
use crate::error::GatewayError;
use crate::ports::{GatewayCharge, GatewayRefund, PaymentGateway};

use super::config::{ENV_API_KEY, ENV_URL, GatewayConfig, GatewayConfigError};
use super::wire;

pub const API_KEY_HEADER: &str = "X-API-Key";
pub const IDEMPOTENCY_KEY_HEADER: &str = "Idempotency-Key";
/// Largest answer read; the gateway's bodies are well under 1 KiB.
pub const RESPONSE_BYTES_MAX: u32 = 64 * 1024;
/// Idle connections are dropped after this long. A Lambda sandbox can be
/// frozen for minutes, during which the gateway closes its side; reusing such
/// a connection fails *after* sending, which would look ambiguous.
pub const POOL_IDLE_SECONDS: u64 = 4;
/// One invocation at a time per sandbox: one idle connection is enough.
pub const POOL_IDLE_PER_HOST_MAX: usize = 1;
/// The refund's 409 that is a definite refusal, not a request in flight.
const CODE_PAYMENT_NOT_CAPTURED: &str = "PAYMENT_NOT_CAPTURED";
/// Longest error text carried in a `GatewayError`.
const MESSAGE_LENGTH_MAX: usize = 300;
/// How many `source()` levels of a transport error go into its message.
const ERROR_SOURCE_DEPTH_MAX: u32 = 4;

/// Whether a call can change the gateway's state, which decides whether a
/// lost answer is ambiguous.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    Read,
    Write,
}

impl Effect {
    /// The request may have been processed, but we cannot tell.
    fn uncertain(self, reason: String) -> GatewayError {
        match self {
            Self::Write => GatewayError::Ambiguous(reason),
            Self::Read => GatewayError::Unavailable(reason),
        }
    }
}

pub struct HttpGateway {
    client: Client,
    /// Ends with `/`: `base.join("v1/…")` appends.
    base: Url,
    payments_url: Url,
    refunds_url: Url,
}

impl fmt::Debug for HttpGateway {
    /// Only the URL: the client's default headers hold the API key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpGateway")
            .field("payments_url", &self.payments_url.as_str())
            .finish_non_exhaustive()
    }
}

impl HttpGateway {
    pub fn new(config: &GatewayConfig) -> Result<Self, GatewayConfigError> {
        let base = base_url(&config.base_url)?;
        let join = |path: &str| {
            base.join(path).map_err(|err| GatewayConfigError::Invalid {
                var: ENV_URL,
                reason: err.to_string(),
            })
        };
        let mut api_key = HeaderValue::from_str(config.api_key.expose()).map_err(|_| {
            GatewayConfigError::Invalid {
                var: ENV_API_KEY,
                reason: "not a valid header value".to_owned(),
            }
        })?;
        // Keeps the value out of hyper's and reqwest's debug output.
        api_key.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(API_KEY_HEADER, api_key);
        let client = Client::builder()
            .default_headers(headers)
            .connect_timeout(Duration::from_millis(u64::from(config.connect_timeout_ms)))
            .timeout(Duration::from_millis(u64::from(config.request_timeout_ms)))
            // A redirect is not part of the contract; never re-send a charge elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(POOL_IDLE_SECONDS))
            .pool_max_idle_per_host(POOL_IDLE_PER_HOST_MAX)
            .build()
            .map_err(|err| GatewayConfigError::Invalid {
                var: ENV_URL,
                reason: format!("cannot build the HTTP client: {err}"),
            })?;
        Ok(Self {
            client,
            payments_url: join("v1/payments")?,
            refunds_url: join("v1/refunds")?,
            base,
        })
    }

    /// Sends `request` and reads the answer (bounded). A failure to read the
    /// body is returned next to the status, which may still classify it.
    async fn exchange(
        &self,
        request: RequestBuilder,
        effect: Effect,
    ) -> Result<(StatusCode, Result<Vec<u8>, String>), GatewayError> {
        let response = request
            .send()
            .await
            .map_err(|err| transport_error(&err, effect))?;
        let status = response.status();
        Ok((status, read_body(response).await))
    }
}

#[async_trait]
impl PaymentGateway for HttpGateway {
    async fn charge(
        &self,
        payment_id: &PaymentId,
        user_id: &UserId,
        amount: &Money,
    ) -> Result<GatewayCharge, GatewayError> {
        let payment_id = payment_id.to_string();
        let body = wire::ChargeRequest {
            payment_id: payment_id.clone(),
            amount: amount.amount_text(),
            currency: amount.currency().code(),
            user_id: user_id.as_str(),
        };
        let request = self
            .client
            .post(self.payments_url.clone())
            .header(IDEMPOTENCY_KEY_HEADER, &payment_id)
            .json(&body);
        let (status, body) = self.exchange(request, Effect::Write).await?;
        charge_answer(status, body, &payment_id)
    }

    async fn status(&self, payment_id: &PaymentId) -> Result<Option<GatewayCharge>, GatewayError> {
        let payment_id = payment_id.to_string();
        let url = self
            .base
            .join(&format!("v1/payments/{payment_id}"))
            .map_err(|err| GatewayError::Unavailable(format!("bad status url: {err}")))?;
        let (status, body) = self.exchange(self.client.get(url), Effect::Read).await?;
        status_answer(status, body, &payment_id)
    }

    async fn cancel(&self, payment_id: &PaymentId) -> Result<GatewayCharge, GatewayError> {
        let payment_id = payment_id.to_string();
        let url = self
            .base
            .join(&format!("v1/payments/{payment_id}/cancel"))
            .map_err(|err| GatewayError::Unavailable(format!("bad cancel url: {err}")))?;
        let request = self.client.post(url);
        let (status, body) = self.exchange(request, Effect::Write).await?;
        cancel_answer(status, body, &payment_id)
    }

    async fn refund(
        &self,
        refund_id: &RefundId,
        payment_id: &PaymentId,
        amount: &Money,
    ) -> Result<GatewayRefund, GatewayError> {
        let refund_id = refund_id.to_string();
        let body = wire::RefundRequest {
            refund_id: refund_id.clone(),
            payment_id: payment_id.to_string(),
            amount: amount.amount_text(),
            currency: amount.currency().code(),
        };
        let request = self
            .client
            .post(self.refunds_url.clone())
            .header(IDEMPOTENCY_KEY_HEADER, &refund_id)
            .json(&body);
        let (status, body) = self.exchange(request, Effect::Write).await?;
        refund_answer(status, body, &refund_id)
    }
}

/// What an HTTP answer to a charge means (`body`: the bytes, or why they
/// could not be read). Public so the fault simulator's gateway, which answers
/// with the mock gateway's statuses and bodies, is read by this same code.
pub fn charge_answer(
    status: StatusCode,
    body: Result<Vec<u8>, String>,
    payment_id: &str,
) -> Result<GatewayCharge, GatewayError> {
    let effect = Effect::Write;
    match status.as_u16() {
        // APPROVED, PENDING, DECLINED: the body's status is authoritative.
        200 | 202 | 402 => body
            .and_then(|bytes| wire::parse_charge(&bytes, payment_id))
            .map_err(|reason| effect.uncertain(reason)),
        201 | 203..=299 => Err(effect.uncertain(format!("unexpected {status} answer to a charge"))),
        _ => Err(status_error(status, &body.unwrap_or_default(), effect)),
    }
}

/// What an HTTP answer to a status lookup means (see [`charge_answer`]).
pub fn status_answer(
    status: StatusCode,
    body: Result<Vec<u8>, String>,
    payment_id: &str,
) -> Result<Option<GatewayCharge>, GatewayError> {
    let effect = Effect::Read;
    let body = body.unwrap_or_default();
    match status.as_u16() {
        200 => wire::parse_charge(&body, payment_id)
            .map(Some)
            .map_err(|reason| effect.uncertain(reason)),
        // Only the gateway's own "no such payment" means never charged: a
        // 404 from a wrong base URL must not look like "safe to compensate".
        404 if wire::parse_error(&body).is_some_and(|(code, _)| code == "PAYMENT_NOT_FOUND") => {
            Ok(None)
        }
        201..=299 => Err(effect.uncertain(format!("unexpected {status} answer to a lookup"))),
        _ => Err(status_error(status, &body, effect)),
    }
}

/// What an HTTP answer to a cancel means (see [`charge_answer`]): the
/// charge's final state, in the status lookup's body.
pub fn cancel_answer(
    status: StatusCode,
    body: Result<Vec<u8>, String>,
    payment_id: &str,
) -> Result<GatewayCharge, GatewayError> {
    write_answer(status, body, "cancel", |bytes| {
        wire::parse_charge(bytes, payment_id)
    })
}

/// What an HTTP answer to a refund means (see [`charge_answer`]).
pub fn refund_answer(
    status: StatusCode,
    body: Result<Vec<u8>, String>,
    refund_id: &str,
) -> Result<GatewayRefund, GatewayError> {
    write_answer(status, body, "refund", |bytes| {
        wire::parse_refund(bytes, refund_id)
    })
}

/// A write whose only success is 200 with a body `parse` reads; an
/// unreadable or unexpected success is ambiguous (it may have happened).
fn write_answer<T>(
    status: StatusCode,
    body: Result<Vec<u8>, String>,
    operation: &str,
    parse: impl FnOnce(&[u8]) -> Result<T, String>,
) -> Result<T, GatewayError> {
    let effect = Effect::Write;
    match status.as_u16() {
        200 => body
            .and_then(|bytes| parse(&bytes))
            .map_err(|reason| effect.uncertain(reason)),
        201..=299 => Err(effect.uncertain(format!("unexpected {status} answer to a {operation}"))),
        _ => Err(status_error(status, &body.unwrap_or_default(), effect)),
    }
}

/// A request that got no HTTP answer: `sent` tells whether it left this
/// process (a connect failure did not; a timeout after sending did). A write
/// (`charge`, `refund`) that was sent may have happened; a lookup never matters.
pub fn no_answer(sent: bool, write: bool, reason: String) -> GatewayError {
    let effect = if write { Effect::Write } else { Effect::Read };
    if sent {
        effect.uncertain(reason)
    } else {
        GatewayError::Unavailable(reason)
    }
}

/// `{base}/` with a trailing slash, so `join("v1/…")` appends rather than
/// replacing the last path segment of a prefixed base URL.
fn base_url(text: &str) -> Result<Url, GatewayConfigError> {
    let invalid = |reason: String| GatewayConfigError::Invalid {
        var: ENV_URL,
        reason,
    };
    let mut url = Url::parse(text).map_err(|err| invalid(err.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(invalid(
            "expected http(s)://host[:port][/prefix]".to_owned(),
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("must not have a query or fragment".to_owned()));
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

/// A failed exchange with no HTTP answer.
fn transport_error(err: &reqwest::Error, effect: Effect) -> GatewayError {
    let reason = describe(err);
    // A connect failure (refused, DNS, connect timeout) or a request we could
    // not even build never left this process.
    let sent = !(err.is_connect() || err.is_builder());
    no_answer(sent, effect == Effect::Write, reason)
}

/// An HTTP answer outside the success codes of the call.
fn status_error(status: StatusCode, body: &[u8], effect: Effect) -> GatewayError {
    let (code, message) = wire::parse_error(body).unwrap_or_else(|| {
        let reason = status.canonical_reason().unwrap_or("unknown status");
        (reason.to_uppercase().replace(' ', "_"), String::new())
    });
    let text = format!("{} {code}: {message}", status.as_u16());
    match status.as_u16() {
        // The gateway (or a proxy before it) gave up waiting on the request
        // after it arrived: it may have been processed.
        408 | 504 => effect.uncertain(text),
        // Refused before any processing: rate limited, or the service is down.
        429 | 503 => GatewayError::Unavailable(text),
        // Another request under this idempotency key is being processed
        // (anything but the refund's definite "not captured"): its outcome is
        // not known yet.
        409 if code != CODE_PAYMENT_NOT_CAPTURED => effect.uncertain(text),
        // Any other server error may come after the gateway acted (a crash
        // after capturing): for a write, only asking tells.
        500..=599 => effect.uncertain(text),
        other => GatewayError::Rejected {
            status: other,
            code,
            message,
        },
    }
}

/// The whole body, refusing anything larger than [`RESPONSE_BYTES_MAX`].
async fn read_body(mut response: Response) -> Result<Vec<u8>, String> {
    let limit = usize::try_from(RESPONSE_BYTES_MAX).unwrap_or(usize::MAX);
    if response
        .content_length()
        .is_some_and(|n| n > u64::from(RESPONSE_BYTES_MAX))
    {
        return Err(format!("answer larger than {RESPONSE_BYTES_MAX} bytes"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|err| describe(&err))? {
        if body.len().saturating_add(chunk.len()) > limit {
            return Err(format!("answer larger than {RESPONSE_BYTES_MAX} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// reqwest's message plus its causes ("error sending request" alone says
/// nothing about a refused connection versus a timeout).
fn describe(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    let mut depth = 0;
    while let Some(cause) = source
        && depth < ERROR_SOURCE_DEPTH_MAX
    {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
        depth += 1;
    }
    if err.is_timeout() {
        text.push_str(" (timed out)");
    }
    wire::truncated(&text, MESSAGE_LENGTH_MAX)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::events::ChargeStatus;

    #[test]
    fn base_urls_keep_their_prefix_and_reject_other_forms() {
        let url = base_url("http://127.0.0.1:3000").unwrap();
        assert_eq!(
            url.join("v1/payments").unwrap().as_str(),
            "http://127.0.0.1:3000/v1/payments"
        );
        let url = base_url("https://gw.example/api").unwrap();
        assert_eq!(
            url.join("v1/refunds").unwrap().as_str(),
            "https://gw.example/api/v1/refunds"
        );
        for bad in ["ftp://x", "not a url", "http://x/?a=1", "mailto:a@b"] {
            assert!(base_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn error_statuses_are_classified_by_what_they_say_about_the_charge() {
        let body = br#"{"error":{"code":"UNAUTHORIZED","message":"bad key"}}"#;
        assert_eq!(
            status_error(StatusCode::UNAUTHORIZED, body, Effect::Write),
            GatewayError::Rejected {
                status: 401,
                code: "UNAUTHORIZED".into(),
                message: "bad key".into()
            }
        );
        for status in [429, 503] {
            let status = StatusCode::from_u16(status).unwrap();
            assert!(matches!(
                status_error(status, b"", Effect::Write),
                GatewayError::Unavailable(_)
            ));
        }
        // A 500 may come after a capture: a write cannot tell, a read can retry.
        for status in [500, 502, 507] {
            let status = StatusCode::from_u16(status).unwrap();
            assert!(matches!(
                status_error(status, b"", Effect::Write),
                GatewayError::Ambiguous(_)
            ));
            assert!(matches!(
                status_error(status, b"", Effect::Read),
                GatewayError::Unavailable(_)
            ));
        }
        for status in [StatusCode::REQUEST_TIMEOUT, StatusCode::GATEWAY_TIMEOUT] {
            assert!(matches!(
                status_error(status, b"", Effect::Write),
                GatewayError::Ambiguous(_)
            ));
            assert!(matches!(
                status_error(status, b"", Effect::Read),
                GatewayError::Unavailable(_)
            ));
        }
        // 409: the same key in flight is ambiguous; a refund of an uncaptured
        // payment is a definite refusal.
        assert!(matches!(
            status_error(StatusCode::CONFLICT, b"", Effect::Write),
            GatewayError::Ambiguous(_)
        ));
        let not_captured = br#"{"error":{"code":"PAYMENT_NOT_CAPTURED","message":"x"}}"#;
        let GatewayError::Rejected { code, .. } =
            status_error(StatusCode::CONFLICT, not_captured, Effect::Write)
        else {
            unreachable!()
        };
        assert_eq!(code, "PAYMENT_NOT_CAPTURED");
    }

    #[test]
    fn a_cancel_answer_is_the_final_state_or_ambiguous() {
        let ok = |body: &str| cancel_answer(StatusCode::OK, Ok(body.as_bytes().to_vec()), "pay_c");
        // GIVEN a tombstone (no amount or currency) WHEN read THEN DECLINED, canceled
        let tombstone = r#"{"paymentId":"pay_c","status":"DECLINED","reference":"gwc_1",
            "declineCode":"canceled","message":"m","createdAt":"t","updatedAt":"t"}"#;
        assert_eq!(
            ok(tombstone).unwrap(),
            GatewayCharge {
                status: ChargeStatus::Declined,
                reference: "gwc_1".into(),
                decline_code: Some(crate::ports::DECLINE_CODE_CANCELED.into()),
            }
        );
        // a captured charge stays APPROVED, one in flight PENDING
        let approved = r#"{"paymentId":"pay_c","status":"APPROVED","reference":"gw_1",
            "amount":"5.00","currency":"USD"}"#;
        assert_eq!(ok(approved).unwrap().status, ChargeStatus::Approved);
        let pending = r#"{"paymentId":"pay_c","status":"PENDING","reference":"gw_1"}"#;
        assert_eq!(ok(pending).unwrap().status, ChargeStatus::Pending);
        // a 200 that is not a charge of this payment, another 2xx, a body that
        // could not be read, or a server error: the cancel may have happened
        let other = r#"{"paymentId":"pay_x","status":"DECLINED","reference":"gwc_1"}"#;
        for err in [
            ok(other).unwrap_err(),
            ok("{}").unwrap_err(),
            cancel_answer(StatusCode::OK, Err("connection reset".into()), "pay_c").unwrap_err(),
            cancel_answer(StatusCode::CREATED, Ok(tombstone.into()), "pay_c").unwrap_err(),
            cancel_answer(StatusCode::INTERNAL_SERVER_ERROR, Ok(Vec::new()), "pay_c").unwrap_err(),
            cancel_answer(StatusCode::CONFLICT, Ok(Vec::new()), "pay_c").unwrap_err(),
            cancel_answer(StatusCode::GATEWAY_TIMEOUT, Ok(Vec::new()), "pay_c").unwrap_err(),
        ] {
            assert!(matches!(err, GatewayError::Ambiguous(_)), "{err}");
        }
        // refused before any processing: safe to retry
        for status in [
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::SERVICE_UNAVAILABLE,
        ] {
            let err = cancel_answer(status, Ok(Vec::new()), "pay_c").unwrap_err();
            assert!(matches!(err, GatewayError::Unavailable(_)), "{err}");
        }
        // a bad payment id is a definite refusal
        let bad = br#"{"error":{"code":"INVALID_REQUEST","message":"bad id"}}"#;
        let err = cancel_answer(StatusCode::BAD_REQUEST, Ok(bad.to_vec()), "pay_c").unwrap_err();
        let GatewayError::Rejected { status, code, .. } = err else {
            unreachable!("{err}")
        };
        assert_eq!((status, code.as_str()), (400, "INVALID_REQUEST"));
    }
}
