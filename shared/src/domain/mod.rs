//! The payment domain: pure types and rules. No AWS SDK, no HTTP, no async runtime.

pub mod breaker;
pub mod id;
pub mod idempotency;
pub mod money;
pub mod payment;
pub mod refund;
pub mod source;
pub mod timestamp;
pub mod wallet;

pub use breaker::{BreakerRecord, BreakerState};
pub use id::{IdError, PaymentId, RefundId, TopUpId, TxnId, UserId};
pub use idempotency::{ClaimOutcome, IdempotencyRecord, IdempotencyState};
pub use money::{Currency, Money, MoneyError};
pub use payment::{
    NewPayment, Payment, PaymentChange, PaymentEvent, PaymentEventType, PaymentStatus,
    TransitionError,
};
pub use refund::{Refund, RefundStatus};
pub use timestamp::Timestamp;
pub use wallet::{
    LedgerEntry, Movement, MovementError, MovementKind, MovementReceipt, MovementRef, Wallet,
    WalletKey,
};
