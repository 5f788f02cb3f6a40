//! The one error taxonomy. Every error in the system maps to an [`ErrorType`],
//! whose name is the Lambda `errorType` that the state machine matches with
//! `ErrorEquals` and that the API maps to a status code. Transient failures of
//! our own are all `Retryable` and an unavailable gateway is
//! `GatewayUnavailable` (both retried, see [`ErrorType::is_retryable`]); each
//! business failure has its own name.

use std::fmt;

use crate::domain::{
    Currency, IdError, Money, MoneyError, MovementError, TransitionError, WalletKey,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorType {
    /// Store throttling, timeouts and 5xx, version conflicts: try again with
    /// backoff.
    Retryable,
    /// The gateway was unavailable (connection refused, 5xx, 429): the request
    /// was definitely not processed. Retried with backoff like `Retryable`; a
    /// payment that still fails records `GATEWAY_UNAVAILABLE`, which says why.
    GatewayUnavailable,
    ValidationError,
    CurrencyMismatch,
    InsufficientFunds,
    WalletNotFound,
    PaymentNotFound,
    RefundNotFound,
    NotFound,
    /// A create with an existing id but different content.
    AlreadyExists,
    InvalidTransition,
    /// A different movement already holds this ledger `txId`.
    LedgerConflict,
    /// A compensation or refund names a debit that does not exist (or differs).
    DebitNotFound,
    /// A debit of a payment that was already compensated without one: the
    /// compensation closed the payment's debit, so this debit is refused (a
    /// definite, final answer; nothing was taken).
    PaymentCompensated,
    RefundExceedsAmount,
    /// The gateway declined the charge (a definite, final answer).
    PaymentDeclined,
    /// The circuit breaker is open: the gateway was not called.
    CircuitOpen,
    /// The request reached the gateway but no answer came back: it may have
    /// been captured. Resolved by asking the gateway, never by compensating.
    GatewayAmbiguous,
    /// The gateway refused the request without processing it (4xx other than
    /// a decline): a definite failure, nothing was captured.
    GatewayRejected,
    /// A broken invariant or unreadable stored data: not retryable, alarm.
    InternalError,
}

impl ErrorType {
    pub const ALL: [ErrorType; 20] = [
        Self::Retryable,
        Self::GatewayUnavailable,
        Self::ValidationError,
        Self::CurrencyMismatch,
        Self::InsufficientFunds,
        Self::WalletNotFound,
        Self::PaymentNotFound,
        Self::RefundNotFound,
        Self::NotFound,
        Self::AlreadyExists,
        Self::InvalidTransition,
        Self::LedgerConflict,
        Self::DebitNotFound,
        Self::PaymentCompensated,
        Self::RefundExceedsAmount,
        Self::PaymentDeclined,
        Self::CircuitOpen,
        Self::GatewayAmbiguous,
        Self::GatewayRejected,
        Self::InternalError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Retryable => "Retryable",
            Self::GatewayUnavailable => "GatewayUnavailable",
            Self::ValidationError => "ValidationError",
            Self::CurrencyMismatch => "CurrencyMismatch",
            Self::InsufficientFunds => "InsufficientFunds",
            Self::WalletNotFound => "WalletNotFound",
            Self::PaymentNotFound => "PaymentNotFound",
            Self::RefundNotFound => "RefundNotFound",
            Self::NotFound => "NotFound",
            Self::AlreadyExists => "AlreadyExists",
            Self::InvalidTransition => "InvalidTransition",
            Self::LedgerConflict => "LedgerConflict",
            Self::DebitNotFound => "DebitNotFound",
            Self::PaymentCompensated => "PaymentCompensated",
            Self::RefundExceedsAmount => "RefundExceedsAmount",
            Self::PaymentDeclined => "PaymentDeclined",
            Self::CircuitOpen => "CircuitOpen",
            Self::GatewayAmbiguous => "GatewayAmbiguous",
            Self::GatewayRejected => "GatewayRejected",
            Self::InternalError => "InternalError",
        }
    }

    /// Transient: the same request may succeed later. The ASL retries exactly
    /// these names (and AWS's own transient ones) on its idempotent tasks.
    pub fn is_retryable(self) -> bool {
        match self {
            Self::Retryable | Self::GatewayUnavailable => true,
            Self::ValidationError
            | Self::CurrencyMismatch
            | Self::InsufficientFunds
            | Self::WalletNotFound
            | Self::PaymentNotFound
            | Self::RefundNotFound
            | Self::NotFound
            | Self::AlreadyExists
            | Self::InvalidTransition
            | Self::LedgerConflict
            | Self::DebitNotFound
            | Self::PaymentCompensated
            | Self::RefundExceedsAmount
            | Self::PaymentDeclined
            | Self::CircuitOpen
            | Self::GatewayAmbiguous
            | Self::GatewayRejected
            | Self::InternalError => false,
        }
    }

    /// Parses a name produced by [`ErrorType::as_str`].
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == name)
    }

    /// The reason code stored on a failed payment: `InsufficientFunds` →
    /// `INSUFFICIENT_FUNDS`.
    pub fn reason_code(self) -> String {
        let mut code = String::new();
        for (i, c) in self.as_str().chars().enumerate() {
            if c.is_ascii_uppercase() && i > 0 {
                code.push('_');
            }
            code.push(c.to_ascii_uppercase());
        }
        code
    }
}

impl fmt::Display for ErrorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl MoneyError {
    pub fn error_type(&self) -> ErrorType {
        match self {
            Self::CurrencyMismatch { .. } => ErrorType::CurrencyMismatch,
            Self::InvalidAmountFormat { .. }
            | Self::AmountOutOfRange { .. }
            | Self::UnknownCurrency { .. }
            | Self::TooManyDecimals { .. }
            | Self::Negative { .. }
            | Self::NotPositive
            | Self::AboveMaximum { .. }
            | Self::Overflow => ErrorType::ValidationError,
        }
    }
}

impl IdError {
    pub fn error_type(&self) -> ErrorType {
        match self {
            Self::Malformed { .. } | Self::InvalidUserId => ErrorType::ValidationError,
        }
    }
}

impl TransitionError {
    pub fn error_type(&self) -> ErrorType {
        match self {
            Self::NotAllowed { .. }
            | Self::RefundNotAllowed { .. }
            | Self::ReleaseExceedsRefunded { .. } => ErrorType::InvalidTransition,
            Self::RefundExceedsAmount { .. } => ErrorType::RefundExceedsAmount,
        }
    }
}

/// Infrastructure failures of a store, independent of the backend.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RepoError {
    #[error("store throttled the request: {0}")]
    Throttled(String),
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A stored item could not be read back into a domain value.
    #[error("stored item is corrupt: {0}")]
    Corrupt(String),
    /// The store refused the request as malformed: a bug on our side.
    #[error("store rejected the request: {0}")]
    Rejected(String),
}

impl RepoError {
    pub fn error_type(&self) -> ErrorType {
        match self {
            Self::Throttled(_) | Self::Unavailable(_) => ErrorType::Retryable,
            Self::Corrupt(_) | Self::Rejected(_) => ErrorType::InternalError,
        }
    }
}

/// What a stored record is, for error messages and names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entity {
    Payment,
    Refund,
    IdempotencyRecord,
    Breaker,
}

impl fmt::Display for Entity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Payment => "payment",
            Self::Refund => "refund",
            Self::IdempotencyRecord => "idempotency record",
            Self::Breaker => "circuit breaker",
        })
    }
}

/// Errors of the record stores (payments, events, refunds, idempotency, breaker).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("{entity} {id} not found")]
    NotFound { entity: Entity, id: String },
    #[error("{entity} {id} already exists with different content")]
    AlreadyExists { entity: Entity, id: String },
    /// Another writer changed the record since it was read (optimistic lock).
    #[error("{entity} {id} was changed concurrently")]
    StaleVersion { entity: Entity, id: String },
    #[error("cursor `{0}` is not one this listing returned")]
    InvalidCursor(String),
    #[error(transparent)]
    Transition(#[from] TransitionError),
    #[error(transparent)]
    Repo(#[from] RepoError),
}

impl StoreError {
    pub fn payment_not_found(id: impl fmt::Display) -> Self {
        Self::NotFound {
            entity: Entity::Payment,
            id: id.to_string(),
        }
    }

    pub fn error_type(&self) -> ErrorType {
        match self {
            Self::NotFound {
                entity: Entity::Payment,
                ..
            } => ErrorType::PaymentNotFound,
            Self::NotFound {
                entity: Entity::Refund,
                ..
            } => ErrorType::RefundNotFound,
            Self::NotFound {
                entity: Entity::IdempotencyRecord | Entity::Breaker,
                ..
            } => ErrorType::NotFound,
            Self::AlreadyExists { .. } => ErrorType::AlreadyExists,
            Self::StaleVersion { .. } => ErrorType::Retryable,
            Self::InvalidCursor(_) => ErrorType::ValidationError,
            Self::Transition(err) => err.error_type(),
            Self::Repo(err) => err.error_type(),
        }
    }
}

/// Errors of wallet movements and wallet reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WalletError {
    #[error("wallet {0} does not exist")]
    WalletNotFound(WalletKey),
    #[error("insufficient funds: balance {balance}, requested {requested}")]
    InsufficientFunds { balance: Money, requested: Money },
    #[error("wallet is in {wallet}, movement is in {movement}")]
    CurrencyMismatch {
        wallet: Currency,
        movement: Currency,
    },
    #[error("ledger entry {tx_id} already records a different movement")]
    LedgerConflict { tx_id: String },
    #[error("no matching debit {tx_id} to give back")]
    DebitNotFound { tx_id: String },
    /// The payment was compensated before any debit, which closed its debit
    /// (`shared::domain::wallet::DebitClosure`); nothing was taken.
    #[error("debit {tx_id} is closed: its payment was compensated before it was debited")]
    PaymentCompensated { tx_id: String },
    /// Every bounded attempt lost the optimistic-version race; nothing was written.
    #[error("wallet {key} was changed concurrently {attempt_count} times; retry")]
    VersionConflict { key: WalletKey, attempt_count: u32 },
    #[error(transparent)]
    Money(#[from] MoneyError),
    #[error(transparent)]
    Repo(#[from] RepoError),
}

impl From<MovementError> for WalletError {
    fn from(err: MovementError) -> Self {
        match err {
            MovementError::InsufficientFunds { balance, requested } => {
                Self::InsufficientFunds { balance, requested }
            }
            MovementError::CurrencyMismatch { wallet, movement } => {
                Self::CurrencyMismatch { wallet, movement }
            }
            MovementError::Money(err) => Self::Money(err),
        }
    }
}

impl WalletError {
    pub fn error_type(&self) -> ErrorType {
        match self {
            Self::WalletNotFound(_) => ErrorType::WalletNotFound,
            Self::InsufficientFunds { .. } => ErrorType::InsufficientFunds,
            Self::CurrencyMismatch { .. } => ErrorType::CurrencyMismatch,
            Self::LedgerConflict { .. } => ErrorType::LedgerConflict,
            Self::DebitNotFound { .. } => ErrorType::DebitNotFound,
            Self::PaymentCompensated { .. } => ErrorType::PaymentCompensated,
            Self::VersionConflict { .. } => ErrorType::Retryable,
            Self::Money(err) => err.error_type(),
            Self::Repo(err) => err.error_type(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_pascal_case() {
        let mut names: Vec<&str> = ErrorType::ALL.iter().map(|t| t.as_str()).collect();
        for name in &names {
            assert!(
                name.chars().next().is_some_and(|c| c.is_ascii_uppercase()),
                "{name}"
            );
            assert!(name.chars().all(|c| c.is_ascii_alphanumeric()), "{name}");
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ErrorType::ALL.len());
    }

    #[test]
    fn names_parse_back_and_become_reason_codes() {
        for t in ErrorType::ALL {
            assert_eq!(ErrorType::from_name(t.as_str()), Some(t));
        }
        assert_eq!(
            ErrorType::InsufficientFunds.reason_code(),
            "INSUFFICIENT_FUNDS"
        );
        assert_eq!(ErrorType::CircuitOpen.reason_code(), "CIRCUIT_OPEN");
        assert_eq!(
            ErrorType::GatewayUnavailable.reason_code(),
            "GATEWAY_UNAVAILABLE"
        );
        assert_eq!(ErrorType::from_name("States.ALL"), None);
    }

    #[test]
    fn a_debit_of_a_compensated_payment_is_a_final_answer() {
        // GIVEN a debit refused because its payment's debit was closed
        let err = WalletError::PaymentCompensated {
            tx_id: "pay_x#DEBIT".into(),
        };
        // THEN it has its own name, is never retried, and says what happened
        assert_eq!(err.error_type(), ErrorType::PaymentCompensated);
        assert_eq!(err.error_type().as_str(), "PaymentCompensated");
        assert!(!err.error_type().is_retryable());
        assert_eq!(err.error_type().reason_code(), "PAYMENT_COMPENSATED");
        assert!(err.to_string().contains("pay_x#DEBIT"), "{err}");
    }

    #[test]
    fn transient_failures_are_retryable_and_business_ones_are_not() {
        assert!(
            RepoError::Throttled("slow down".into())
                .error_type()
                .is_retryable()
        );
        assert!(
            RepoError::Unavailable("timeout".into())
                .error_type()
                .is_retryable()
        );
        assert!(
            !RepoError::Corrupt("bad item".into())
                .error_type()
                .is_retryable()
        );
        let stale = StoreError::StaleVersion {
            entity: Entity::Payment,
            id: "pay_x".into(),
        };
        assert_eq!(stale.error_type(), ErrorType::Retryable);
        assert_eq!(
            MoneyError::NotPositive.error_type(),
            ErrorType::ValidationError
        );
    }

    #[test]
    fn an_unavailable_gateway_has_its_own_retryable_name() {
        // GIVEN a gateway that definitely did not process the request
        let unavailable = GatewayError::Unavailable("503 SERVICE_UNAVAILABLE".into());
        // THEN it is named for the gateway, not lumped with our own transient failures
        assert_eq!(unavailable.error_type(), ErrorType::GatewayUnavailable);
        assert_eq!(unavailable.error_type().as_str(), "GatewayUnavailable");
        // AND it is still retried, like every transient failure
        assert!(unavailable.error_type().is_retryable());
        // AND an ambiguous or rejected call is not retried blindly
        assert!(
            !GatewayError::Ambiguous("timeout".into())
                .error_type()
                .is_retryable()
        );
        let rejected = GatewayError::Rejected {
            status: 422,
            code: "IDEMPOTENCY_MISMATCH".into(),
            message: String::new(),
        };
        assert!(!rejected.error_type().is_retryable());
    }
}

/// Failures talking to the external payment gateway. A decline is not an
/// error here: it is a charge status the caller turns into `PaymentDeclined`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    /// Definitely not processed: connection refused, 5xx, 503, 429. Safe to retry
    /// (the payment id is the idempotency key).
    #[error("gateway unavailable: {0}")]
    Unavailable(String),
    /// The request may have reached the gateway but no usable answer came back
    /// (timeout after sending, connection reset, unreadable body): it may have
    /// been captured. Resolve with a status check.
    #[error("gateway outcome unknown: {0}")]
    Ambiguous(String),
    /// The gateway refused the request without processing it (4xx).
    #[error("gateway rejected the request ({status} {code}): {message}")]
    Rejected {
        status: u16,
        code: String,
        message: String,
    },
}

impl GatewayError {
    pub fn error_type(&self) -> ErrorType {
        match self {
            Self::Unavailable(_) => ErrorType::GatewayUnavailable,
            Self::Ambiguous(_) => ErrorType::GatewayAmbiguous,
            Self::Rejected { .. } => ErrorType::GatewayRejected,
        }
    }
}

/// Any error as it leaves a Lambda: its taxonomy name and a message. The
/// name becomes the Lambda `errorType` (see `shared::lambda`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error_type}: {message}")]
pub struct TaskError {
    pub error_type: ErrorType,
    pub message: String,
}

impl TaskError {
    pub fn new(error_type: ErrorType, message: impl Into<String>) -> Self {
        Self {
            error_type,
            message: message.into(),
        }
    }
}

macro_rules! task_error_from {
    ($($source:ty),* $(,)?) => {
        $(
            impl From<$source> for TaskError {
                fn from(err: $source) -> Self {
                    Self { error_type: err.error_type(), message: err.to_string() }
                }
            }
        )*
    };
}

task_error_from!(
    MoneyError,
    IdError,
    TransitionError,
    RepoError,
    StoreError,
    WalletError
);
