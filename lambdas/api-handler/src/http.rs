//! The HTTP view of an API Gateway REST proxy event, and responses that always
//! carry `Content-Type: application/json` and the request id.

use aws_lambda_events::apigw::{ApiGatewayProxyRequest, ApiGatewayProxyResponse};
use aws_lambda_events::encodings::Body;
use aws_lambda_events::http::{HeaderMap, HeaderName, HeaderValue};
use aws_lambda_events::query_map::QueryMap;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::{ApiError, Code};
use crate::principal::{self, Principal};

/// Largest request body we read (64 KiB): far above any valid request (the
/// biggest is a payment with full metadata, ~15 KiB) and far below Lambda's
/// 6 MB payload limit, so parsing cost stays bounded.
pub const BODY_BYTES_MAX: usize = 64 * 1024;
/// A caller identity longer than this is hashed before it scopes a key, so
/// idempotency keys stay far below DynamoDB's 2048-byte key limit.
const CALLER_LENGTH_MAX: usize = 128;

pub const HEADER_REQUEST_ID: &str = "x-request-id";
pub const HEADER_IDEMPOTENCY_KEY: &str = "idempotency-key";
pub const HEADER_REPLAYED: &str = "idempotent-replayed";

/// What the handler needs from a proxy event.
#[derive(Debug)]
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub headers: &'a HeaderMap,
    pub query: &'a QueryMap,
    pub body: Option<&'a str>,
    pub body_base64: bool,
    /// API Gateway's request id (else the Lambda one): the `X-Request-Id`.
    pub request_id: String,
    /// Who API Gateway authenticated; `None` on the open routes (health,
    /// the signed webhook) — and on any route whose authorizer let nothing
    /// through, which then answers 401.
    pub principal: Option<Principal>,
}

impl<'a> Request<'a> {
    pub fn from_proxy(event: &'a ApiGatewayProxyRequest, lambda_request_id: &str) -> Self {
        let context = &event.request_context;
        let request_id = context
            .request_id
            .clone()
            .filter(|id| !id.is_empty())
            .unwrap_or_else(|| lambda_request_id.to_owned());
        Self {
            method: event.http_method.as_str(),
            path: event.path.as_deref().unwrap_or("/"),
            headers: &event.headers,
            query: &event.query_string_parameters,
            body: event.body.as_deref(),
            body_base64: event.is_base64_encoded,
            request_id,
            principal: Principal::from_proxy(event),
        }
    }

    /// A header's value; a value that is not visible ASCII counts as absent.
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The authenticated principal, or the 401 a client route answers
    /// without one.
    pub fn principal(&self) -> Result<&Principal, ApiError> {
        self.principal
            .as_ref()
            .ok_or_else(principal::unauthenticated)
    }

    /// Who is calling, to scope idempotency keys: the principal, hashed when
    /// long, so keys stay far below DynamoDB's 2048-byte key limit.
    pub fn caller(&self) -> String {
        let caller = self
            .principal
            .as_ref()
            .map_or_else(|| "anonymous".to_owned(), Principal::scope_key);
        if caller.len() > CALLER_LENGTH_MAX {
            format!("sha256:{}", sha256_hex(caller.as_bytes()))
        } else {
            caller
        }
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A response before it becomes the proxy response: status, JSON body, extra
/// headers, and what the access log should say about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: String,
    pub headers: Vec<(&'static str, String)>,
    /// Stable error code for the log (None for successes).
    pub error_code: Option<&'static str>,
    /// Internal detail of an error, for the log only.
    pub detail: Option<String>,
    /// The payment this request concerned, once known (log `correlationId`).
    pub correlation_id: Option<String>,
}

impl Response {
    pub fn json(status: u16, body: &Value) -> Self {
        Self {
            status,
            body: body.to_string(),
            headers: Vec::new(),
            error_code: None,
            detail: None,
            correlation_id: None,
        }
    }

    pub fn error(err: ApiError) -> Self {
        let mut response = Self::json(err.status(), &err.body());
        response.error_code = Some(err.code.as_str());
        // Transient failures tell the client when to come back.
        if matches!(err.code, Code::ServiceUnavailable | Code::RateLimited) {
            response = response.with_header("retry-after", "1");
        }
        response.detail = err.detail;
        response
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn with_correlation(mut self, payment_id: impl ToString) -> Self {
        self.correlation_id = Some(payment_id.to_string());
        self
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub fn into_proxy(self, request_id: &str) -> ApiGatewayProxyResponse {
        let mut headers = HeaderMap::new();
        let fixed = [
            ("content-type", "application/json"),
            // Payment data is per user and changes: never cache it.
            ("cache-control", "no-store"),
            (HEADER_REQUEST_ID, request_id),
        ];
        let extra = self.headers.iter().map(|(n, v)| (*n, v.as_str()));
        for (name, value) in fixed.into_iter().chain(extra) {
            // Every name here is a static lowercase token; a value that is not
            // a valid header (never for ours) is dropped rather than failing.
            if let Ok(value) = HeaderValue::from_str(value) {
                headers.insert(HeaderName::from_static(name), value);
            }
        }
        let mut response = ApiGatewayProxyResponse::default();
        response.status_code = i64::from(self.status);
        response.headers = headers;
        response.body = Some(Body::Text(self.body));
        response.is_base64_encoded = false;
        response
    }
}
