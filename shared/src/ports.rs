//! Store ports: one small trait per capability. Each has a DynamoDB adapter
//! (`crate::dynamo`) and an in-memory one (`crate::memory`) with the same
//! semantics, held to it by one contract suite run against both.

use async_trait::async_trait;

use crate::domain::{
    BreakerRecord, ClaimOutcome, Currency, IdempotencyRecord, IdempotencyState, LedgerEntry,
    Movement, MovementReceipt, NewPayment, Payment, PaymentChange, PaymentEvent, PaymentId, Refund,
    RefundId, Timestamp, UserId, Wallet, WalletKey,
};
use crate::error::{GatewayError, StoreError, WalletError};
use crate::events::{ChargeStatus, GatewayReply};

/// Largest page any list operation returns.
pub const PAGE_LIMIT_MAX: u32 = 100;
/// Most currencies one user may hold wallets in (bounds `wallets_of`).
pub const WALLET_COUNT_PER_USER_MAX: u32 = 50;
/// Attempts at a read-modify-write before a version race is surfaced as retryable.
pub const VERSION_ATTEMPT_COUNT_MAX: u32 = 5;
/// Partitions of the open index (payments and refunds not settled yet), so
/// its writes never concentrate on one DynamoDB partition; see [`open_shard`].
pub const OPEN_SHARD_COUNT: u32 = 8;

/// One page of a listing, newest or lowest first as the operation documents.
/// `cursor` is opaque to callers and present when more items may follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub cursor: Option<String>,
}

/// Whether a create wrote something or found the identical record already there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created<T> {
    New(T),
    Existing(T),
}

impl<T> Created<T> {
    pub fn into_inner(self) -> T {
        match self {
            Self::New(value) | Self::Existing(value) => value,
        }
    }

    pub fn is_new(&self) -> bool {
        matches!(self, Self::New(_))
    }
}

#[async_trait]
pub trait PaymentRepo: Send + Sync {
    /// Writes a PENDING payment and its `PAYMENT_CREATED` event atomically.
    /// Idempotent by `paymentId`: the same request again returns `Existing`;
    /// different content under the same id is `AlreadyExists`.
    async fn create(&self, new: NewPayment, at: Timestamp) -> Result<Created<Payment>, StoreError>;

    async fn get(&self, payment_id: &PaymentId) -> Result<Option<Payment>, StoreError>;

    /// Applies `change` and writes its `STATUS_CHANGED` event in one
    /// transaction, conditioned on the version read. A change that is already
    /// applied returns the payment as it is (a retried step writes nothing).
    async fn transition(
        &self,
        payment_id: &PaymentId,
        change: &PaymentChange,
        at: Timestamp,
    ) -> Result<Payment, StoreError>;

    /// Keeps `token` as the payment's `wait_token` while it is PROCESSING
    /// (its saga waits for the gateway's word), without a status change, an
    /// event or a new version; the last token kept wins. Answers the payment
    /// as stored now: one no longer PROCESSING comes back unchanged (its saga
    /// has moved on, nothing will wait on the token).
    async fn keep_wait_token(
        &self,
        payment_id: &PaymentId,
        token: &str,
    ) -> Result<Payment, StoreError>;

    /// A user's payments, newest first. `limit` is capped at [`PAGE_LIMIT_MAX`].
    async fn list_by_user(
        &self,
        user_id: &UserId,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<Page<Payment>, StoreError>;

    /// The open payments (PENDING, PROCESSING, RECONCILIATION_REQUIRED: see
    /// [`Payment::is_open`]) of one shard of the open index, oldest first,
    /// created at or after `since`. What the reconciler sweeps. The index is
    /// sparse and follows the status, so a payment leaves it when it settles;
    /// it may lag a write (read the payment again before acting on it).
    async fn open_payments(
        &self,
        shard: u32,
        since: Option<Timestamp>,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<Page<Payment>, StoreError>;
}

#[async_trait]
pub trait PaymentEventRepo: Send + Sync {
    /// Records an audit entry that is not a status change. Idempotent per
    /// (payment, sort key).
    async fn append(&self, event: &PaymentEvent) -> Result<(), StoreError>;

    /// A payment's audit trail, oldest first, at most `limit` entries (capped).
    async fn events(
        &self,
        payment_id: &PaymentId,
        limit: u32,
    ) -> Result<Vec<PaymentEvent>, StoreError>;
}

#[async_trait]
pub trait WalletRepo: Send + Sync {
    /// Opens an empty wallet, or returns the existing one. Never sets a balance:
    /// money only enters through a ledger entry.
    async fn open(
        &self,
        user_id: &UserId,
        currency: Currency,
        at: Timestamp,
    ) -> Result<Wallet, WalletError>;

    async fn get(&self, key: &WalletKey) -> Result<Option<Wallet>, WalletError>;

    /// All wallets of a user (one per currency), at most [`WALLET_COUNT_PER_USER_MAX`].
    async fn wallets_of(&self, user_id: &UserId) -> Result<Vec<Wallet>, WalletError>;

    /// Moves money exactly once: the wallet update (conditioned on its version,
    /// and on the balance for a debit) and the ledger entry (conditioned on its
    /// `txId` being new) are one transaction. Repeating the same movement returns
    /// the first receipt with `replayed = true`; a different movement under the
    /// same `txId` is `LedgerConflict`. Compensations and refunds require the
    /// payment's debit in the same wallet (and a compensation its exact amount).
    ///
    /// A compensation that finds no debit at all (or no wallet) moves nothing,
    /// but first closes the payment's debit (`domain::wallet::DebitClosure`,
    /// idempotent, atomic with a check that the debit is still absent), then
    /// answers `DebitNotFound` (or `WalletNotFound`). A debit whose payment's
    /// debit is closed is refused with `PaymentCompensated`, checked inside the
    /// debit's own transaction; a replay of a debit already taken is still a
    /// replay. So a debit and a compensation racing for one payment end either
    /// debited then given back, or closed then refused, never debited alone.
    async fn apply(
        &self,
        movement: &Movement,
        at: Timestamp,
    ) -> Result<MovementReceipt, WalletError>;

    async fn entry(&self, key: &WalletKey, tx_id: &str)
    -> Result<Option<LedgerEntry>, WalletError>;

    /// Ledger entries of a wallet in `txId` order, at most `limit` (capped).
    async fn ledger(
        &self,
        key: &WalletKey,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<Page<LedgerEntry>, WalletError>;
}

#[async_trait]
pub trait RefundRepo: Send + Sync {
    /// Idempotent by `refundId` like [`PaymentRepo::create`].
    async fn create(&self, refund: &Refund) -> Result<Created<Refund>, StoreError>;

    async fn get(&self, refund_id: &RefundId) -> Result<Option<Refund>, StoreError>;

    /// A payment's refunds, oldest first, at most [`PAGE_LIMIT_MAX`].
    async fn refunds_of(&self, payment_id: &PaymentId) -> Result<Vec<Refund>, StoreError>;

    /// The open refunds (REQUESTED, GATEWAY_REFUNDED, RECONCILIATION_REQUIRED:
    /// see [`Refund::is_open`]) of one shard, like
    /// [`PaymentRepo::open_payments`].
    async fn open_refunds(
        &self,
        shard: u32,
        since: Option<Timestamp>,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<Page<Refund>, StoreError>;

    /// Stores `next` (made by `Refund::advance`), which must be `version + 1`
    /// of the stored refund. A lost race is `StaleVersion`.
    async fn save(&self, next: &Refund) -> Result<(), StoreError>;

    /// The gateway refused the refund: stores `failed` (FAILED, `version + 1`
    /// of the stored refund) AND gives its reservation back on `payment`
    /// ([`Refund::release_on`]: the refunded total down by its amount, the
    /// status back to PARTIALLY_REFUNDED or COMPLETED) with that change's
    /// `STATUS_CHANGED` event, in ONE transaction conditioned on both
    /// versions as read. Answers the payment after it.
    ///
    /// - the refund moved on since it was read (another invocation stored a
    ///   step, this very write included when its answer was lost):
    ///   `StaleVersion` of the refund; read it again;
    /// - the payment changed since it was read: `StaleVersion` of the
    ///   payment (read it again and re-decide); nothing was written either way.
    async fn fail_and_release(
        &self,
        failed: &Refund,
        payment: &Payment,
        at: Timestamp,
    ) -> Result<Payment, StoreError>;

    /// Records the new REQUESTED `refund` AND reserves its amount on `payment`
    /// in ONE transaction: the refund (its id must be new), the payment after
    /// [`Refund::reserve_on`] (conditioned on `payment.version`, the version the
    /// caller read and decided on) and that change's `STATUS_CHANGED` event.
    /// Concurrent refunds of one payment can therefore never over-refund it.
    ///
    /// - the same refund again (a retried step): `Existing((stored refund,
    ///   current payment))`, nothing written;
    /// - a different refund under this id: `AlreadyExists`;
    /// - the payment changed since it was read: `StaleVersion` (read it again
    ///   and re-decide; nothing was written);
    /// - the payment is gone: `NotFound`; not refundable or the total above its
    ///   amount: `Transition` (`InvalidTransition` / `RefundExceedsAmount`).
    async fn reserve(
        &self,
        refund: &Refund,
        payment: &Payment,
        at: Timestamp,
    ) -> Result<Created<(Refund, Payment)>, StoreError>;
}

#[async_trait]
pub trait IdempotencyRepo: Send + Sync {
    /// Claims `record.idempotency_key` unless a live (unexpired) record holds it.
    async fn claim(
        &self,
        record: &IdempotencyRecord,
        now: Timestamp,
    ) -> Result<ClaimOutcome, StoreError>;

    /// Replaces the in-progress state of a key we hold with its final response.
    async fn complete(&self, key: &str, state: &IdempotencyState) -> Result<(), StoreError>;

    /// Drops an in-progress claim (the request failed before any effect), so
    /// the client may retry with the same key. Only the claim made at
    /// `claimed_at` is dropped: a release retried after its first try
    /// committed never drops the claim of the request that came next.
    async fn release(&self, key: &str, claimed_at: Timestamp) -> Result<(), StoreError>;
}

#[async_trait]
pub trait BreakerStore: Send + Sync {
    /// The stored state, or a fresh CLOSED record with version 0.
    async fn load(&self, service_name: &str, now: Timestamp) -> Result<BreakerRecord, StoreError>;

    /// Stores `next` if the stored version is still `next.version - 1`
    /// (absent counts as 0); otherwise `StaleVersion`.
    async fn save(&self, next: &BreakerRecord) -> Result<(), StoreError>;
}

/// The decline code of a payment closed by [`PaymentGateway::cancel`]
/// before the gateway charged it.
pub const DECLINE_CODE_CANCELED: &str = "canceled";

/// A charge as the gateway reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayCharge {
    /// `Approved`, `Pending` or `Declined` (never `NotFound`: that is `None`).
    pub status: ChargeStatus,
    /// The gateway's own id for the charge (`gw_…`).
    pub reference: String,
    pub decline_code: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayRefund {
    /// The gateway's own id for the refund (`gwr_…`).
    pub reference: String,
}

/// The external payment gateway. Every call carries the payment (or refund)
/// id as its idempotency key, so a retried call never charges twice.
#[async_trait]
pub trait PaymentGateway: Send + Sync {
    async fn charge(
        &self,
        payment_id: &PaymentId,
        user_id: &UserId,
        amount: &crate::domain::Money,
    ) -> Result<GatewayCharge, GatewayError>;

    /// `None` when the gateway has no charge for this payment.
    async fn status(&self, payment_id: &PaymentId) -> Result<Option<GatewayCharge>, GatewayError>;

    /// Makes sure the payment is never captured from now on, unless it
    /// already was, and answers its final state: DECLINED (never charged, or
    /// declined, and a later charge under this id is declined too), APPROVED
    /// (captured: only a refund gives it back) or PENDING (ask again).
    /// Idempotent. The only answer that allows giving a debit back.
    async fn cancel(&self, payment_id: &PaymentId) -> Result<GatewayCharge, GatewayError>;

    async fn refund(
        &self,
        refund_id: &RefundId,
        payment_id: &PaymentId,
        amount: &crate::domain::Money,
    ) -> Result<GatewayRefund, GatewayError>;
}

/// How a task token's wait took a callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Callback {
    /// The waiting task took it.
    Delivered,
    /// Nothing waits on the token any more (its wait ended: answered, timed
    /// out, the execution stopped): Step Functions answers TaskTimedOut,
    /// TaskDoesNotExist or InvalidToken. Harmless: the saga went on without
    /// it.
    NotWaiting,
}

/// Step Functions' side of a saga waiting on a task token (the payment
/// saga's `AwaitGatewayWebhook`): SendTaskSuccess and SendTaskHeartbeat.
#[async_trait]
pub trait SagaCallbacks: Send + Sync {
    /// Ends the wait with the gateway's final answer as the task's result.
    /// `Err`: no answer from Step Functions (the wait goes on, and falls back
    /// to the saga's status check).
    async fn answer(&self, token: &str, answer: &GatewayReply) -> Result<Callback, String>;

    /// Keeps the wait going (the gateway still has the charge pending).
    async fn heartbeat(&self, token: &str) -> Result<Callback, String>;
}

/// Clamps a caller's page size to `1..=PAGE_LIMIT_MAX`.
pub fn page_limit(limit: u32) -> u32 {
    limit.clamp(1, PAGE_LIMIT_MAX)
}

/// Cursor of a user's payment listing: the last item's index key.
pub fn payment_cursor(payment: &Payment) -> String {
    format!("{}~{}", payment.created_at, payment.payment_id)
}

/// Parses a cursor made by [`payment_cursor`].
pub fn parse_payment_cursor(cursor: &str) -> Option<(Timestamp, PaymentId)> {
    let (created_at, payment_id) = cursor.split_once('~')?;
    Some((
        Timestamp::parse(created_at).ok()?,
        PaymentId::parse(payment_id).ok()?,
    ))
}

/// Cursor of an open-refund listing: the last item's index key.
pub fn refund_cursor(refund: &Refund) -> String {
    format!("{}~{}", refund.created_at, refund.refund_id)
}

/// Parses a cursor made by [`refund_cursor`].
pub fn parse_refund_cursor(cursor: &str) -> Option<(Timestamp, RefundId)> {
    let (created_at, refund_id) = cursor.split_once('~')?;
    Some((
        Timestamp::parse(created_at).ok()?,
        RefundId::parse(refund_id).ok()?,
    ))
}

/// The open-index shard of a payment or refund id, in `0..OPEN_SHARD_COUNT`:
/// FNV-1a of the id's text, stable across builds and platforms (it is stored).
pub fn open_shard(id: &str) -> u32 {
    const FNV_OFFSET_BASIS: u32 = 0x811c_9dc5;
    const FNV_PRIME: u32 = 0x0100_0193;
    let hash = id.bytes().fold(FNV_OFFSET_BASIS, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(FNV_PRIME)
    });
    hash % OPEN_SHARD_COUNT
}

/// The stored entry under a movement's `txId`: the same movement again is a
/// replay (nothing moves, the first receipt returns); anything else collides.
pub fn replay_or_conflict(
    existing: &LedgerEntry,
    movement: &Movement,
) -> Result<MovementReceipt, WalletError> {
    if existing.records(movement) {
        Ok(MovementReceipt {
            entry: existing.clone(),
            replayed: true,
        })
    } else {
        Err(WalletError::LedgerConflict {
            tx_id: existing.tx_id.clone(),
        })
    }
}
