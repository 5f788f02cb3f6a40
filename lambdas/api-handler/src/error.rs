//! The API's error catalogue and the ONE mapping from the system's error
//! taxonomy ([`shared::ErrorType`]) to an HTTP status, an error `type` and a
//! stable `code`. Clients branch on `code`; `message` is for humans.
//!
//! Messages of 5xx errors are fixed texts: what went wrong inside (a store or
//! SDK error) is logged with the request id, never sent to the client.

use serde_json::{Value, json};
use shared::ErrorType;
use shared::domain::MoneyError;

/// The error `type`: the broad class a client can handle generically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The request itself is wrong (400, 405, 413, 415, 422 key reuse).
    InvalidRequest,
    /// Who sent it could not be verified (401: no or a bad credential, a
    /// gateway webhook's signature).
    Authentication,
    /// Verified, but not allowed to do this (403: a missing scope, another
    /// user's wallet to pay from).
    Permission,
    NotFound,
    /// Conflicts with a concurrent or earlier request (409).
    Conflict,
    /// Well-formed, but the state of the money or payment forbids it (422).
    BusinessRule,
    RateLimit,
    /// Our failure (5xx): safe to retry with the same Idempotency-Key.
    Api,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request_error",
            Self::Authentication => "authentication_error",
            Self::Permission => "permission_error",
            Self::NotFound => "not_found_error",
            Self::Conflict => "conflict_error",
            Self::BusinessRule => "business_rule_error",
            Self::RateLimit => "rate_limit_error",
            Self::Api => "api_error",
        }
    }
}

macro_rules! codes {
    ($($variant:ident = ($status:literal, $kind:ident, $name:literal)),+ $(,)?) => {
        /// Every error code the API emits. `api/openapi.yaml` lists exactly
        /// these (checked by the contract test).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Code { $($variant),+ }

        impl Code {
            pub const ALL: &'static [Code] = &[$(Code::$variant),+];

            pub fn status(self) -> u16 {
                match self { $(Self::$variant => $status),+ }
            }

            pub fn kind(self) -> ErrorKind {
                match self { $(Self::$variant => ErrorKind::$kind),+ }
            }

            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $name),+ }
            }
        }
    };
}

codes! {
    InvalidJson = (400, InvalidRequest, "invalid_json"),
    MissingField = (400, InvalidRequest, "missing_field"),
    UnknownField = (400, InvalidRequest, "unknown_field"),
    InvalidField = (400, InvalidRequest, "invalid_field"),
    FieldTooLong = (400, InvalidRequest, "field_too_long"),
    InvalidAmount = (400, InvalidRequest, "invalid_amount"),
    AmountTooPrecise = (400, InvalidRequest, "amount_too_precise"),
    AmountTooLarge = (400, InvalidRequest, "amount_too_large"),
    InvalidCurrency = (400, InvalidRequest, "invalid_currency"),
    InvalidUserId = (400, InvalidRequest, "invalid_user_id"),
    InvalidPaymentId = (400, InvalidRequest, "invalid_payment_id"),
    InvalidMetadata = (400, InvalidRequest, "invalid_metadata"),
    InvalidLimit = (400, InvalidRequest, "invalid_limit"),
    InvalidCursor = (400, InvalidRequest, "invalid_cursor"),
    InvalidIdempotencyKey = (400, InvalidRequest, "invalid_idempotency_key"),
    InvalidRequest = (400, InvalidRequest, "invalid_request"),
    Unauthenticated = (401, Authentication, "unauthenticated"),
    InvalidSignature = (401, Authentication, "invalid_signature"),
    MissingScope = (403, Permission, "missing_scope"),
    Forbidden = (403, Permission, "forbidden"),
    RouteNotFound = (404, NotFound, "route_not_found"),
    PaymentNotFound = (404, NotFound, "payment_not_found"),
    WalletNotFound = (404, NotFound, "wallet_not_found"),
    RefundNotFound = (404, NotFound, "refund_not_found"),
    ResourceNotFound = (404, NotFound, "resource_not_found"),
    MethodNotAllowed = (405, InvalidRequest, "method_not_allowed"),
    IdempotencyKeyInUse = (409, Conflict, "idempotency_key_in_use"),
    ResourceConflict = (409, Conflict, "resource_conflict"),
    RequestTooLarge = (413, InvalidRequest, "request_too_large"),
    UnsupportedMediaType = (415, InvalidRequest, "unsupported_media_type"),
    IdempotencyKeyReused = (422, InvalidRequest, "idempotency_key_reused"),
    InsufficientFunds = (422, BusinessRule, "insufficient_funds"),
    CurrencyMismatch = (422, BusinessRule, "currency_mismatch"),
    RefundExceedsAmount = (422, BusinessRule, "refund_exceeds_amount"),
    PaymentNotRefundable = (422, BusinessRule, "payment_not_refundable"),
    PaymentDeclined = (422, BusinessRule, "payment_declined"),
    RefundRefused = (422, BusinessRule, "refund_refused"),
    RateLimited = (429, RateLimit, "rate_limited"),
    InternalError = (500, Api, "internal_error"),
    GatewayError = (502, Api, "gateway_error"),
    ServiceUnavailable = (503, Api, "service_unavailable"),
}

impl From<ErrorType> for Code {
    /// THE mapping from the system's error names (the Lambda `errorType`s) to
    /// API codes. Exhaustive on purpose: a new `ErrorType` forces a decision.
    fn from(error_type: ErrorType) -> Self {
        match error_type {
            // Throttling, version races, timeouts: ours, transient.
            ErrorType::Retryable | ErrorType::CircuitOpen => Self::ServiceUnavailable,
            ErrorType::ValidationError => Self::InvalidRequest,
            ErrorType::CurrencyMismatch => Self::CurrencyMismatch,
            ErrorType::InsufficientFunds => Self::InsufficientFunds,
            ErrorType::WalletNotFound => Self::WalletNotFound,
            ErrorType::PaymentNotFound => Self::PaymentNotFound,
            ErrorType::RefundNotFound => Self::RefundNotFound,
            ErrorType::NotFound => Self::ResourceNotFound,
            ErrorType::AlreadyExists | ErrorType::LedgerConflict => Self::ResourceConflict,
            // A saga-internal refusal (a debit after its compensation closed the
            // payment); no route returns it.
            ErrorType::PaymentCompensated => Self::ResourceConflict,
            // Refunds are the only status change a client can ask for, so a
            // refused transition means the payment is not (or no longer) refundable.
            ErrorType::InvalidTransition => Self::PaymentNotRefundable,
            ErrorType::RefundExceedsAmount => Self::RefundExceedsAmount,
            ErrorType::PaymentDeclined => Self::PaymentDeclined,
            // The gateway, not us: down (retry later) or no answer.
            ErrorType::GatewayUnavailable | ErrorType::GatewayAmbiguous => Self::GatewayError,
            // The gateway refused it for good (a refund it will not make): a
            // business answer, not a failure to retry.
            ErrorType::GatewayRejected => Self::RefundRefused,
            // A completed payment without its debit is a broken invariant.
            ErrorType::DebitNotFound | ErrorType::InternalError => Self::InternalError,
        }
    }
}

/// An error response: its code, a message for humans, the offending field or
/// parameter, and (never sent) the internal detail for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: Code,
    pub message: String,
    pub param: Option<String>,
    /// What actually went wrong inside; logged with the request id only.
    pub detail: Option<String>,
}

impl ApiError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            param: None,
            detail: None,
        }
    }

    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    /// A failure of ours: a fixed message for the client, `detail` for the log.
    pub fn internal(code: Code, detail: impl Into<String>) -> Self {
        Self {
            detail: Some(detail.into()),
            ..Self::new(code, server_message(code))
        }
    }

    /// Any error of the system taxonomy. Client-caused (4xx) errors keep their
    /// domain message, which talks about the client's own data; 5xx do not.
    pub fn from_error_type(error_type: ErrorType, message: impl Into<String>) -> Self {
        let code = Code::from(error_type);
        let message = message.into();
        if code.status() >= 500 {
            Self::internal(code, format!("{error_type}: {message}"))
        } else {
            Self::new(code, message)
        }
    }

    pub fn status(&self) -> u16 {
        self.code.status()
    }

    pub fn body(&self) -> Value {
        let mut error = json!({
            "type": self.code.kind().as_str(),
            "code": self.code.as_str(),
            "message": self.message,
        });
        if let (Some(param), Some(map)) = (&self.param, error.as_object_mut()) {
            map.insert("param".to_owned(), Value::String(param.clone()));
        }
        json!({ "error": error })
    }
}

/// Store and wallet errors become API errors through their taxonomy name.
impl From<shared::StoreError> for ApiError {
    fn from(err: shared::StoreError) -> Self {
        Self::from_error_type(err.error_type(), err.to_string())
    }
}

impl From<shared::WalletError> for ApiError {
    fn from(err: shared::WalletError) -> Self {
        Self::from_error_type(err.error_type(), err.to_string())
    }
}

impl From<shared::TaskError> for ApiError {
    fn from(err: shared::TaskError) -> Self {
        Self::from_error_type(err.error_type, err.message)
    }
}

/// An invalid amount or currency in a request field, reported on `param`
/// (`amount` or `currency`). Finer than `ErrorType::ValidationError`, so a
/// client can tell "too many decimals" from "not a number".
pub fn money_error(err: &MoneyError, amount_param: &str, currency_param: &str) -> ApiError {
    let (code, param) = match err {
        MoneyError::TooManyDecimals { .. } => (Code::AmountTooPrecise, amount_param),
        MoneyError::AboveMaximum { .. } => (Code::AmountTooLarge, amount_param),
        MoneyError::UnknownCurrency { .. } => (Code::InvalidCurrency, currency_param),
        MoneyError::CurrencyMismatch { .. } => (Code::CurrencyMismatch, currency_param),
        MoneyError::InvalidAmountFormat { .. }
        | MoneyError::AmountOutOfRange { .. }
        | MoneyError::Negative { .. }
        | MoneyError::NotPositive
        | MoneyError::Overflow => (Code::InvalidAmount, amount_param),
    };
    let message = match err {
        MoneyError::InvalidAmountFormat { .. } => format!(
            "{err}; send a JSON number like 50.5 or a decimal string like \"50.50\", no exponent"
        ),
        _ => err.to_string(),
    };
    ApiError::new(code, message).with_param(param)
}

fn server_message(code: Code) -> &'static str {
    match code {
        Code::ServiceUnavailable => {
            "The service is temporarily unavailable. Retry with exponential backoff, reusing the \
             same Idempotency-Key."
        }
        Code::GatewayError => {
            "The payment gateway was unavailable or did not give a usable answer. Retry with \
             the same Idempotency-Key; the request is never applied twice."
        }
        Code::RateLimited => "Too many requests right now. Retry with exponential backoff.",
        _ => "An internal error occurred. It has been logged with this request's X-Request-Id.",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn codes_are_unique_snake_case_with_a_consistent_status_and_type() {
        let mut seen = HashSet::new();
        for code in Code::ALL {
            let name = code.as_str();
            assert!(seen.insert(name), "{name} twice");
            assert!(name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
            let kind = code.kind();
            match code.status() {
                400 | 405 | 413 | 415 => assert_eq!(kind, ErrorKind::InvalidRequest, "{name}"),
                401 => assert_eq!(kind, ErrorKind::Authentication, "{name}"),
                403 => assert_eq!(kind, ErrorKind::Permission, "{name}"),
                404 => assert_eq!(kind, ErrorKind::NotFound, "{name}"),
                409 => assert_eq!(kind, ErrorKind::Conflict, "{name}"),
                422 => assert!(
                    matches!(kind, ErrorKind::BusinessRule | ErrorKind::InvalidRequest),
                    "{name}"
                ),
                429 => assert_eq!(kind, ErrorKind::RateLimit, "{name}"),
                500..=599 => assert_eq!(kind, ErrorKind::Api, "{name}"),
                other => panic!("{name}: unexpected status {other}"),
            }
        }
    }

    #[test]
    fn every_error_type_maps_and_only_our_failures_are_5xx() {
        // GIVEN every name of the taxonomy WHEN mapped THEN 5xx only for ours
        for error_type in ErrorType::ALL {
            let status = Code::from(error_type).status();
            let ours = matches!(
                error_type,
                ErrorType::Retryable
                    | ErrorType::CircuitOpen
                    | ErrorType::GatewayUnavailable
                    | ErrorType::GatewayAmbiguous
                    | ErrorType::DebitNotFound
                    | ErrorType::InternalError
            );
            assert_eq!(status >= 500, ours, "{error_type} -> {status}");
        }
        assert_eq!(
            Code::from(ErrorType::RefundExceedsAmount).as_str(),
            "refund_exceeds_amount"
        );
        assert_eq!(
            Code::from(ErrorType::GatewayUnavailable),
            Code::GatewayError
        );
    }

    #[test]
    fn server_errors_hide_internal_messages() {
        let err = ApiError::from_error_type(ErrorType::Retryable, "table payments-dev throttled");
        assert_eq!(err.status(), 503);
        assert!(!err.message.contains("payments-dev"));
        assert!(err.detail.unwrap().contains("payments-dev"));
        let body = ApiError::new(Code::MissingField, "userId is required")
            .with_param("userId")
            .body();
        assert_eq!(
            body,
            json!({"error": {"type": "invalid_request_error", "code": "missing_field",
                             "message": "userId is required", "param": "userId"}})
        );
    }
}
