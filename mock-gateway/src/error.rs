//! The one error type of the gateway and the JSON extractor whose rejections
//! become it. Every error body is `{"error":{"code":"SCREAMING_CODE","message":"..."}}`.

use axum::extract::FromRequest;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// `axum::Json` with rejections turned into [`AppError`] (400/413/415, JSON body).
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(AppError))]
pub struct AppJson<T>(pub T);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppError {
    #[error("missing or invalid X-API-Key header")]
    Unauthorized,
    #[error("{0}")]
    InvalidJson(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    InvalidAmount(String),
    #[error("{0}")]
    InvalidCurrency(String),
    #[error("{0}")]
    InvalidMode(String),
    #[error("request body must be JSON with Content-Type: application/json")]
    UnsupportedMediaType,
    #[error("request body is larger than the limit")]
    PayloadTooLarge,
    #[error("payment {0:?} not found")]
    PaymentNotFound(String),
    #[error("{0}")]
    IdempotencyMismatch(String),
    #[error("payment {payment_id:?} is {status}, only APPROVED payments can be refunded")]
    PaymentNotCaptured {
        payment_id: String,
        status: &'static str,
    },
    #[error("refund would bring the refunded total to {requested}, above the captured {captured}")]
    RefundExceedsCapture { requested: String, captured: String },
    #[error("refund currency {refund} does not match payment currency {payment}")]
    CurrencyMismatch {
        refund: &'static str,
        payment: &'static str,
    },
    #[error("the gateway failed to process the request; it was not recorded and may be retried")]
    GatewayError,
    #[error("the gateway is unavailable")]
    Unavailable,
    #[error("the gateway holds the maximum of {0} {1}; POST /control/reset to clear")]
    StorageFull(usize, &'static str),
    #[error("no such route")]
    RouteNotFound,
    #[error("method not allowed on this route")]
    MethodNotAllowed,
    #[error("the request took too long")]
    Timeout,
    #[error("internal error")]
    Internal,
}

impl AppError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::InvalidJson(_)
            | Self::InvalidRequest(_)
            | Self::InvalidAmount(_)
            | Self::InvalidCurrency(_)
            | Self::InvalidMode(_) => StatusCode::BAD_REQUEST,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::PaymentNotFound(_) | Self::RouteNotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Timeout => StatusCode::REQUEST_TIMEOUT,
            Self::PaymentNotCaptured { .. } => StatusCode::CONFLICT,
            Self::IdempotencyMismatch(_)
            | Self::RefundExceedsCapture { .. }
            | Self::CurrencyMismatch { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::GatewayError | Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::StorageFull(..) => StatusCode::INSUFFICIENT_STORAGE,
        }
    }

    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthorized => "UNAUTHORIZED",
            Self::InvalidJson(_) => "INVALID_JSON",
            Self::InvalidRequest(_) => "INVALID_REQUEST",
            Self::InvalidAmount(_) => "INVALID_AMOUNT",
            Self::InvalidCurrency(_) => "INVALID_CURRENCY",
            Self::InvalidMode(_) => "INVALID_MODE",
            Self::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            Self::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            Self::PaymentNotFound(_) => "PAYMENT_NOT_FOUND",
            Self::IdempotencyMismatch(_) => "IDEMPOTENCY_MISMATCH",
            Self::PaymentNotCaptured { .. } => "PAYMENT_NOT_CAPTURED",
            Self::RefundExceedsCapture { .. } => "REFUND_EXCEEDS_CAPTURE",
            Self::CurrencyMismatch { .. } => "CURRENCY_MISMATCH",
            Self::GatewayError => "GATEWAY_ERROR",
            Self::Unavailable => "SERVICE_UNAVAILABLE",
            Self::StorageFull(..) => "STORAGE_FULL",
            Self::RouteNotFound => "NOT_FOUND",
            Self::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            Self::Timeout => "TIMEOUT",
            Self::Internal => "INTERNAL",
        }
    }

    /// The `byOutcome` key in `/control/stats` and the `outcome` log field.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::GatewayError => "ERROR",
            Self::Unavailable => "UNAVAILABLE",
            Self::InvalidJson(_)
            | Self::InvalidRequest(_)
            | Self::InvalidAmount(_)
            | Self::InvalidCurrency(_)
            | Self::InvalidMode(_)
            | Self::UnsupportedMediaType
            | Self::PayloadTooLarge => "BAD_REQUEST",
            Self::PaymentNotFound(_) | Self::RouteNotFound => "NOT_FOUND",
            Self::IdempotencyMismatch(_) => "MISMATCH",
            other => other.code(),
        }
    }
}

/// Which outcome a response stands for; read by the logging/stats middleware.
#[derive(Debug, Clone, Copy)]
pub struct Outcome(pub &'static str);

/// The payment a response is about; read by the logging middleware.
#[derive(Debug, Clone)]
pub struct LoggedPaymentId(pub String);

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: &'a str,
}

/// Builds the standard error response.
pub fn error_response(
    status: StatusCode,
    code: &'static str,
    message: &str,
    outcome: &'static str,
) -> Response {
    let body = ErrorBody {
        error: ErrorDetail { code, message },
    };
    let mut response = (status, axum::Json(body)).into_response();
    response.extensions_mut().insert(Outcome(outcome));
    response
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        error_response(
            self.status(),
            self.code(),
            &self.to_string(),
            self.outcome(),
        )
    }
}

impl From<JsonRejection> for AppError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::JsonSyntaxError(e) => Self::InvalidJson(e.body_text()),
            JsonRejection::JsonDataError(e) => Self::InvalidRequest(e.body_text()),
            JsonRejection::MissingJsonContentType(_) => Self::UnsupportedMediaType,
            JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Self::PayloadTooLarge
            }
            other => Self::InvalidRequest(other.body_text()),
        }
    }
}
