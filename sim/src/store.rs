//! Every store port over the in-memory store (whose DynamoDB semantics the
//! contract suite proves), with latency and the store's faults: throttling
//! and conflicting transactions (nothing written), and a write that commits
//! but reports an error.

use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use shared::RepoError;
use shared::domain::{
    BreakerRecord, ClaimOutcome, Currency, IdempotencyRecord, IdempotencyState, LedgerEntry,
    Movement, MovementReceipt, NewPayment, Payment, PaymentChange, PaymentEvent, PaymentId, Refund,
    RefundId, Timestamp, UserId, Wallet, WalletKey,
};
use shared::error::{StoreError, WalletError};
use shared::memory::InMemoryStore;
use shared::ports::{
    BreakerStore, Created, IdempotencyRepo, Page, PaymentEventRepo, PaymentRepo, RefundRepo,
    WalletRepo,
};

use crate::env::Env;
use crate::faults::Fault;

/// One store request's latency, in virtual milliseconds.
const LATENCY_MS: std::ops::RangeInclusive<u64> = 1..=12;

#[derive(Clone)]
pub struct FaultyStore {
    pub inner: Arc<InMemoryStore>,
    env: Env,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Access {
    Read,
    Write,
}

impl FaultyStore {
    pub fn new(inner: Arc<InMemoryStore>, env: Env) -> Self {
        Self { inner, env }
    }

    async fn call<T, E>(
        &self,
        operation: &str,
        subject: &str,
        access: Access,
        work: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E>
    where
        E: From<RepoError>,
    {
        self.env.latency(LATENCY_MS).await;
        if self.env.roll(Fault::StoreThrottle) {
            self.env
                .trace(subject, format!("store {operation}: throttled"));
            return Err(RepoError::Throttled(format!("{operation} throttled (simulated)")).into());
        }
        if access == Access::Write && self.env.roll(Fault::StoreConflict) {
            self.env
                .trace(subject, format!("store {operation}: transaction conflict"));
            let text = format!("{operation} cancelled: TransactionConflict (simulated)");
            return Err(RepoError::Unavailable(text).into());
        }
        let result = work.await;
        if access == Access::Write && result.is_ok() && self.env.roll(Fault::StoreCommitThenError) {
            self.env
                .trace(subject, format!("store {operation}: committed, reply lost"));
            let text = format!("{operation}: no answer after sending (simulated)");
            return Err(RepoError::Unavailable(text).into());
        }
        result
    }
}

#[async_trait]
impl PaymentRepo for FaultyStore {
    async fn create(&self, new: NewPayment, at: Timestamp) -> Result<Created<Payment>, StoreError> {
        let subject = new.payment_id.to_string();
        let work = PaymentRepo::create(self.inner.as_ref(), new, at);
        self.call("payment create", &subject, Access::Write, work)
            .await
    }

    async fn get(&self, payment_id: &PaymentId) -> Result<Option<Payment>, StoreError> {
        let work = PaymentRepo::get(self.inner.as_ref(), payment_id);
        self.call("payment get", &payment_id.to_string(), Access::Read, work)
            .await
    }

    async fn transition(
        &self,
        payment_id: &PaymentId,
        change: &PaymentChange,
        at: Timestamp,
    ) -> Result<Payment, StoreError> {
        let work = self.inner.transition(payment_id, change, at);
        let subject = payment_id.to_string();
        self.call("payment transition", &subject, Access::Write, work)
            .await
    }

    async fn keep_wait_token(
        &self,
        payment_id: &PaymentId,
        token: &str,
    ) -> Result<Payment, StoreError> {
        let work = self.inner.keep_wait_token(payment_id, token);
        let subject = payment_id.to_string();
        self.call("payment wait token", &subject, Access::Write, work)
            .await
    }

    async fn list_by_user(
        &self,
        user_id: &UserId,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<Page<Payment>, StoreError> {
        let work = self.inner.list_by_user(user_id, limit, cursor);
        self.call("payment list", user_id.as_str(), Access::Read, work)
            .await
    }

    async fn open_payments(
        &self,
        shard: u32,
        since: Option<Timestamp>,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<Page<Payment>, StoreError> {
        let work = self.inner.open_payments(shard, since, limit, cursor);
        self.call("open payments", "-", Access::Read, work).await
    }
}

#[async_trait]
impl PaymentEventRepo for FaultyStore {
    async fn append(&self, event: &PaymentEvent) -> Result<(), StoreError> {
        let work = self.inner.append(event);
        self.call("event append", "-", Access::Write, work).await
    }

    async fn events(
        &self,
        payment_id: &PaymentId,
        limit: u32,
    ) -> Result<Vec<PaymentEvent>, StoreError> {
        let work = self.inner.events(payment_id, limit);
        self.call("events", &payment_id.to_string(), Access::Read, work)
            .await
    }
}

#[async_trait]
impl WalletRepo for FaultyStore {
    async fn open(
        &self,
        user_id: &UserId,
        currency: Currency,
        at: Timestamp,
    ) -> Result<Wallet, WalletError> {
        let work = self.inner.open(user_id, currency, at);
        self.call("wallet open", user_id.as_str(), Access::Write, work)
            .await
    }

    async fn get(&self, key: &WalletKey) -> Result<Option<Wallet>, WalletError> {
        let work = WalletRepo::get(self.inner.as_ref(), key);
        self.call("wallet get", key.user_id.as_str(), Access::Read, work)
            .await
    }

    async fn wallets_of(&self, user_id: &UserId) -> Result<Vec<Wallet>, WalletError> {
        let work = self.inner.wallets_of(user_id);
        self.call("wallets", user_id.as_str(), Access::Read, work)
            .await
    }

    async fn apply(
        &self,
        movement: &Movement,
        at: Timestamp,
    ) -> Result<MovementReceipt, WalletError> {
        let subject = movement.tx_id();
        let work = self.inner.apply(movement, at);
        let result = self
            .call("ledger apply", &subject, Access::Write, work)
            .await;
        let outcome = match &result {
            Ok(receipt) if receipt.replayed => "replayed".to_owned(),
            Ok(receipt) => format!("moved {}", receipt.entry.amount),
            Err(err) => format!("refused: {}", err.error_type()),
        };
        self.env
            .trace(&subject, format!("wallet {}: {outcome}", movement.user_id));
        result
    }

    async fn entry(
        &self,
        key: &WalletKey,
        tx_id: &str,
    ) -> Result<Option<LedgerEntry>, WalletError> {
        let work = self.inner.entry(key, tx_id);
        self.call("ledger entry", tx_id, Access::Read, work).await
    }

    async fn ledger(
        &self,
        key: &WalletKey,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<Page<LedgerEntry>, WalletError> {
        let work = self.inner.ledger(key, limit, cursor);
        self.call("ledger", key.user_id.as_str(), Access::Read, work)
            .await
    }
}

#[async_trait]
impl RefundRepo for FaultyStore {
    async fn create(&self, refund: &Refund) -> Result<Created<Refund>, StoreError> {
        let work = RefundRepo::create(self.inner.as_ref(), refund);
        let subject = refund.refund_id.to_string();
        self.call("refund create", &subject, Access::Write, work)
            .await
    }

    async fn get(&self, refund_id: &RefundId) -> Result<Option<Refund>, StoreError> {
        let work = RefundRepo::get(self.inner.as_ref(), refund_id);
        self.call("refund get", &refund_id.to_string(), Access::Read, work)
            .await
    }

    async fn refunds_of(&self, payment_id: &PaymentId) -> Result<Vec<Refund>, StoreError> {
        let work = self.inner.refunds_of(payment_id);
        self.call("refunds", &payment_id.to_string(), Access::Read, work)
            .await
    }

    async fn open_refunds(
        &self,
        shard: u32,
        since: Option<Timestamp>,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<Page<Refund>, StoreError> {
        let work = self.inner.open_refunds(shard, since, limit, cursor);
        self.call("open refunds", "-", Access::Read, work).await
    }

    async fn save(&self, next: &Refund) -> Result<(), StoreError> {
        let work = RefundRepo::save(self.inner.as_ref(), next);
        let subject = next.refund_id.to_string();
        let result = self
            .call("refund save", &subject, Access::Write, work)
            .await;
        if result.is_ok() {
            self.env
                .trace(&subject, format!("refund → {}", next.status.as_str()));
        }
        result
    }

    async fn fail_and_release(
        &self,
        failed: &Refund,
        payment: &Payment,
        at: Timestamp,
    ) -> Result<Payment, StoreError> {
        let work = self.inner.fail_and_release(failed, payment, at);
        let subject = failed.refund_id.to_string();
        let result = self
            .call("refund fail and release", &subject, Access::Write, work)
            .await;
        if let Ok(after) = &result {
            self.env.trace(
                &subject,
                format!(
                    "refund → FAILED, reservation released: payment {} refunded {}",
                    after.status, after.refunded_amount
                ),
            );
        }
        result
    }

    async fn reserve(
        &self,
        refund: &Refund,
        payment: &Payment,
        at: Timestamp,
    ) -> Result<Created<(Refund, Payment)>, StoreError> {
        let work = self.inner.reserve(refund, payment, at);
        let subject = refund.refund_id.to_string();
        self.call("refund reserve", &subject, Access::Write, work)
            .await
    }
}

#[async_trait]
impl IdempotencyRepo for FaultyStore {
    async fn claim(
        &self,
        record: &IdempotencyRecord,
        now: Timestamp,
    ) -> Result<ClaimOutcome, StoreError> {
        let work = self.inner.claim(record, now);
        let subject = record.idempotency_key.clone();
        self.call("idempotency claim", &subject, Access::Write, work)
            .await
    }

    async fn complete(&self, key: &str, state: &IdempotencyState) -> Result<(), StoreError> {
        let work = self.inner.complete(key, state);
        self.call("idempotency complete", key, Access::Write, work)
            .await
    }

    async fn release(&self, key: &str, claimed_at: Timestamp) -> Result<(), StoreError> {
        let work = self.inner.release(key, claimed_at);
        self.call("idempotency release", key, Access::Write, work)
            .await
    }
}

#[async_trait]
impl BreakerStore for FaultyStore {
    async fn load(&self, service_name: &str, now: Timestamp) -> Result<BreakerRecord, StoreError> {
        let work = self.inner.load(service_name, now);
        self.call("breaker load", service_name, Access::Read, work)
            .await
    }

    async fn save(&self, next: &BreakerRecord) -> Result<(), StoreError> {
        let work = BreakerStore::save(self.inner.as_ref(), next);
        let subject = next.service_name.clone();
        self.call("breaker save", &subject, Access::Write, work)
            .await
    }
}
