//! API Gateway's own answers — a refused or failed request never reaches the
//! function: the response type's default status and body, or the
//! template's `GatewayResponses` entry for that type (else for
//! `DEFAULT_4XX` / `DEFAULT_5XX`), as API Gateway picks them.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use serde_json::{Value, json};

use crate::template::GatewayResponseSpec;

/// The gateway response types the local API Gateway answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseType {
    AccessDenied,
    AuthorizerConfigurationError,
    AuthorizerFailure,
    InvalidApiKey,
    InvalidSignature,
    MissingAuthenticationToken,
    RequestTooLarge,
    Throttled,
    Unauthorized,
}

impl ResponseType {
    /// Its name in `GatewayResponses`.
    pub fn name(self) -> &'static str {
        match self {
            Self::AccessDenied => "ACCESS_DENIED",
            Self::AuthorizerConfigurationError => "AUTHORIZER_CONFIGURATION_ERROR",
            Self::AuthorizerFailure => "AUTHORIZER_FAILURE",
            Self::InvalidApiKey => "INVALID_API_KEY",
            Self::InvalidSignature => "INVALID_SIGNATURE",
            Self::MissingAuthenticationToken => "MISSING_AUTHENTICATION_TOKEN",
            Self::RequestTooLarge => "REQUEST_TOO_LARGE",
            Self::Throttled => "THROTTLED",
            Self::Unauthorized => "UNAUTHORIZED",
        }
    }

    pub fn default_status(self) -> StatusCode {
        match self {
            Self::AccessDenied
            | Self::InvalidApiKey
            | Self::InvalidSignature
            | Self::MissingAuthenticationToken => StatusCode::FORBIDDEN,
            Self::AuthorizerConfigurationError | Self::AuthorizerFailure => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            Self::RequestTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Throttled => StatusCode::TOO_MANY_REQUESTS,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
        }
    }

    /// The key of the default body: API Gateway's `ACCESS_DENIED` template
    /// says `Message`, every other one `message`.
    fn message_key(self) -> &'static str {
        match self {
            Self::AccessDenied => "Message",
            Self::AuthorizerConfigurationError
            | Self::AuthorizerFailure
            | Self::InvalidApiKey
            | Self::InvalidSignature
            | Self::MissingAuthenticationToken
            | Self::RequestTooLarge
            | Self::Throttled
            | Self::Unauthorized => "message",
        }
    }
}

/// Why API Gateway answers a request itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub kind: ResponseType,
    /// `$context.error.message`; `None` renders as `null` (an authorizer
    /// failure's `{"message": null}`).
    pub message: Option<String>,
    /// The `x-amzn-ErrorType` header.
    pub error_type: &'static str,
}

impl Refusal {
    fn new(kind: ResponseType, message: &str, error_type: &'static str) -> Self {
        Self {
            kind,
            message: Some(message.to_owned()),
            error_type,
        }
    }

    /// An undeclared route, or an `AWS_IAM` route without a signature.
    pub fn missing_authentication_token() -> Self {
        Self::new(
            ResponseType::MissingAuthenticationToken,
            "Missing Authentication Token",
            "MissingAuthenticationTokenException",
        )
    }

    /// The authorizer refused (`Unauthorized`), or an identity source is missing.
    pub fn unauthorized() -> Self {
        Self::new(
            ResponseType::Unauthorized,
            "Unauthorized",
            "UnauthorizedException",
        )
    }

    /// The authorizer's policy does not allow the method.
    pub fn access_denied(explicit: bool) -> Self {
        let message = if explicit {
            "User is not authorized to access this resource with an explicit deny"
        } else {
            "User is not authorized to access this resource"
        };
        Self::new(ResponseType::AccessDenied, message, "AccessDeniedException")
    }

    /// The authorizer failed (crashed, timed out, another error).
    pub fn authorizer_failure() -> Self {
        Self {
            kind: ResponseType::AuthorizerFailure,
            message: None,
            error_type: "AuthorizerConfigurationException",
        }
    }

    /// The authorizer answered something that is not a valid policy.
    pub fn authorizer_configuration_error() -> Self {
        Self {
            kind: ResponseType::AuthorizerConfigurationError,
            message: None,
            error_type: "AuthorizerConfigurationException",
        }
    }

    /// No usage plan key, or one no plan of this stage holds.
    pub fn invalid_api_key() -> Self {
        Self::new(
            ResponseType::InvalidApiKey,
            "Forbidden",
            "ForbiddenException",
        )
    }

    /// Over the rate or burst of the usage plan or of the method's stage setting.
    pub fn throttled() -> Self {
        Self::new(
            ResponseType::Throttled,
            "Too Many Requests",
            "TooManyRequestsException",
        )
    }

    /// A SigV4 signature that is incomplete, wrong, expired or of an
    /// unknown key; `error_type` says which.
    pub fn signature(message: &str, error_type: &'static str) -> Self {
        Self::new(ResponseType::InvalidSignature, message, error_type)
    }

    pub fn request_too_large() -> Self {
        Self::new(
            ResponseType::RequestTooLarge,
            "Request Too Long",
            "RequestTooLongException",
        )
    }
}

/// The template's `GatewayResponses`, applied over API Gateway's defaults.
#[derive(Debug, Clone, Default)]
pub struct GatewayResponses {
    specs: BTreeMap<String, GatewayResponseSpec>,
}

impl GatewayResponses {
    pub fn new(specs: BTreeMap<String, GatewayResponseSpec>) -> Self {
        Self { specs }
    }

    /// The response for `refusal`, as API Gateway would send it.
    pub fn render(&self, refusal: &Refusal, request_id: &str) -> Response<Body> {
        let default_status = refusal.kind.default_status();
        let family = if default_status.is_server_error() {
            "DEFAULT_5XX"
        } else {
            "DEFAULT_4XX"
        };
        let spec = self
            .specs
            .get(refusal.kind.name())
            .or_else(|| self.specs.get(family));
        let status = spec
            .and_then(|s| s.status_code)
            .and_then(|code| StatusCode::from_u16(code).ok())
            .unwrap_or(default_status);
        let message_string = refusal
            .message
            .as_ref()
            .map_or(Value::Null, |m| Value::String(m.clone()))
            .to_string();
        let body = match spec.and_then(|s| s.json_template.as_deref()) {
            Some(template) => template
                .replace("$context.error.messageString", &message_string)
                .replace(
                    "$context.error.message",
                    refusal.message.as_deref().unwrap_or_default(),
                )
                .replace("$context.requestId", request_id),
            None => json!({ refusal.kind.message_key(): refusal.message }).to_string(),
        };
        let mut response = Response::new(Body::from(body));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        insert(headers, "content-type", "application/json");
        insert(headers, "x-amzn-errortype", refusal.error_type);
        insert(headers, "x-amzn-requestid", request_id);
        for (name, value) in spec.map(|s| s.headers.as_slice()).unwrap_or_default() {
            insert(headers, name, value);
        }
        response
    }
}

fn insert(headers: &mut HeaderMap, name: &str, value: &str) {
    if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::from_str(value)) {
        headers.insert(name, value);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use axum::body::to_bytes;

    use super::*;

    async fn body(response: Response<Body>) -> String {
        let bytes = to_bytes(response.into_body(), 1 << 16).await.unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn defaults_are_api_gateways() {
        let responses = GatewayResponses::default();
        let response = responses.render(&Refusal::authorizer_failure(), "r1");
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body(response).await, r#"{"message":null}"#);
        let response = responses.render(&Refusal::access_denied(true), "r1");
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            response.headers()["x-amzn-errortype"],
            "AccessDeniedException"
        );
        assert_eq!(
            body(response).await,
            r#"{"Message":"User is not authorized to access this resource with an explicit deny"}"#
        );
    }

    #[tokio::test]
    async fn the_template_overrides_its_type_then_its_family() {
        let responses = GatewayResponses::new(BTreeMap::from([
            (
                "THROTTLED".to_owned(),
                GatewayResponseSpec {
                    status_code: Some(429),
                    headers: vec![("Retry-After".to_owned(), "1".to_owned())],
                    json_template: Some(r#"{"message": "Too Many Requests"}"#.to_owned()),
                },
            ),
            (
                "DEFAULT_4XX".to_owned(),
                GatewayResponseSpec {
                    status_code: None,
                    headers: Vec::new(),
                    json_template: Some(
                        r#"{"error":$context.error.messageString,"id":"$context.requestId"}"#
                            .to_owned(),
                    ),
                },
            ),
        ]));
        let response = responses.render(&Refusal::throttled(), "r1");
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()["retry-after"], "1");
        assert_eq!(body(response).await, r#"{"message": "Too Many Requests"}"#);
        let response = responses.render(&Refusal::unauthorized(), "r2");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            body(response).await,
            r#"{"error":"Unauthorized","id":"r2"}"#
        );
        // A 5xx is not a DEFAULT_4XX.
        let response = responses.render(&Refusal::authorizer_failure(), "r3");
        assert_eq!(body(response).await, r#"{"message":null}"#);
    }
}
