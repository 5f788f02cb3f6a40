//! Handler tests with the in-memory store and a fake gateway, GIVEN / WHEN / THEN.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use lambda_runtime::{Context, Diagnostic};
use serde_json::json;
use shared::domain::RefundStatus;
use shared::domain::wallet::ledger_sum;
use shared::domain::{
    Currency, LedgerEntry, Movement, MovementReceipt, NewPayment, PaymentChange, PaymentId,
    RefundId, TopUpId, UserId, Wallet, WalletKey,
};
use shared::memory::InMemoryStore;
use shared::ports::{GatewayCharge, GatewayRefund, Page};
use shared::{GatewayError, RepoError, WalletError};

use super::*;

// ---------------------------------------------------------------------------------------
// Fakes
// ---------------------------------------------------------------------------------------

/// The gateway as far as refunds go: idempotent per refund id like the real
/// one (a repeated refund returns the first reference and pays nothing more),
/// counting every call, failing on demand.
#[derive(Default)]
struct FakeGateway {
    state: Mutex<GatewayState>,
}

#[derive(Default)]
struct GatewayState {
    calls: u32,
    /// What the gateway has paid out, by refund id.
    paid: HashMap<RefundId, (Money, GatewayRefund)>,
    /// Answers for the next calls: the error, and whether the refund was
    /// processed before the answer got lost (an ambiguous outcome).
    failures: VecDeque<(GatewayError, bool)>,
    /// After the next successful refund, the store's next write fails: a crash
    /// between the gateway's answer and recording it.
    crash_after_success: Option<Arc<InMemoryStore>>,
}

impl FakeGateway {
    fn fail_next(&self, error: GatewayError, processed: bool) {
        self.state
            .lock()
            .unwrap()
            .failures
            .push_back((error, processed));
    }

    fn crash_store_after_next_refund(&self, store: &Arc<InMemoryStore>) {
        self.state.lock().unwrap().crash_after_success = Some(Arc::clone(store));
    }

    fn calls(&self) -> u32 {
        self.state.lock().unwrap().calls
    }

    /// Distinct refunds paid out, and their total.
    fn paid(&self) -> (usize, Vec<Money>) {
        let state = self.state.lock().unwrap();
        let amounts = state.paid.values().map(|(amount, _)| *amount).collect();
        (state.paid.len(), amounts)
    }
}

#[async_trait]
impl PaymentGateway for FakeGateway {
    async fn charge(
        &self,
        _: &PaymentId,
        _: &UserId,
        _: &Money,
    ) -> Result<GatewayCharge, GatewayError> {
        Err(GatewayError::Unavailable(
            "charges are not refund-service's".into(),
        ))
    }

    async fn status(&self, _: &PaymentId) -> Result<Option<GatewayCharge>, GatewayError> {
        Err(GatewayError::Unavailable(
            "status is not refund-service's".into(),
        ))
    }

    async fn cancel(&self, _: &PaymentId) -> Result<GatewayCharge, GatewayError> {
        Err(GatewayError::Unavailable(
            "cancels are not refund-service's".into(),
        ))
    }

    async fn refund(
        &self,
        refund_id: &RefundId,
        _: &PaymentId,
        amount: &Money,
    ) -> Result<GatewayRefund, GatewayError> {
        let mut state = self.state.lock().unwrap();
        state.calls += 1;
        let next_reference = format!("gwr_{}", state.paid.len() + 1);
        let failure = state.failures.pop_front();
        if let Some((error, false)) = failure {
            return Err(error);
        }
        let (paid_amount, refund) = state
            .paid
            .entry(*refund_id)
            .or_insert_with(|| {
                let reference = next_reference;
                (*amount, GatewayRefund { reference })
            })
            .clone();
        assert_eq!(paid_amount, *amount, "same refund id, different amount");
        if let Some((error, true)) = failure {
            return Err(error);
        }
        if let Some(store) = state.crash_after_success.take() {
            store.fail_next_write(RepoError::Unavailable("crash after the gateway".into()));
        }
        Ok(refund)
    }
}

#[derive(Clone, Copy)]
enum WalletCrash {
    BeforeCredit,
    AfterCredit,
}

/// The in-memory wallets, with a crash injected around the next movement.
struct CrashingWallets {
    store: Arc<InMemoryStore>,
    crash: Mutex<Option<WalletCrash>>,
}

#[async_trait]
impl WalletRepo for CrashingWallets {
    async fn open(&self, u: &UserId, c: Currency, at: Timestamp) -> Result<Wallet, WalletError> {
        self.store.open(u, c, at).await
    }

    async fn get(&self, key: &WalletKey) -> Result<Option<Wallet>, WalletError> {
        WalletRepo::get(&*self.store, key).await
    }

    async fn wallets_of(&self, user_id: &UserId) -> Result<Vec<Wallet>, WalletError> {
        self.store.wallets_of(user_id).await
    }

    async fn apply(&self, m: &Movement, at: Timestamp) -> Result<MovementReceipt, WalletError> {
        let crash = self.crash.lock().unwrap().take();
        let failure = || RepoError::Unavailable("crash at the wallet".into());
        if let Some(WalletCrash::BeforeCredit) = crash {
            self.store.fail_next_write(failure());
        }
        let receipt = self.store.apply(m, at).await;
        if let Some(WalletCrash::AfterCredit) = crash {
            self.store.fail_next_write(failure());
        }
        receipt
    }

    async fn entry(&self, k: &WalletKey, tx: &str) -> Result<Option<LedgerEntry>, WalletError> {
        self.store.entry(k, tx).await
    }

    async fn ledger(
        &self,
        k: &WalletKey,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<Page<LedgerEntry>, WalletError> {
        self.store.ledger(k, limit, cursor).await
    }
}

/// How the payment reads of a test behave.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reads {
    /// Yield after each read, so concurrent handlers interleave between their
    /// read and their reservation (the in-memory store never yields itself).
    Yielding,
    /// Every read is one version behind: every reservation loses its race.
    AlwaysStale,
}

struct RacingPayments {
    store: Arc<InMemoryStore>,
    reads: Reads,
    read_count: Arc<AtomicU32>,
}

#[async_trait]
impl PaymentRepo for RacingPayments {
    async fn create(&self, new: NewPayment, at: Timestamp) -> Result<Created<Payment>, StoreError> {
        PaymentRepo::create(&*self.store, new, at).await
    }

    async fn get(&self, payment_id: &PaymentId) -> Result<Option<Payment>, StoreError> {
        let mut payment = PaymentRepo::get(&*self.store, payment_id).await?;
        self.read_count.fetch_add(1, Ordering::SeqCst);
        match self.reads {
            Reads::Yielding => tokio::task::yield_now().await,
            Reads::AlwaysStale => {
                if let Some(p) = payment.as_mut() {
                    p.version -= 1;
                }
            }
        }
        Ok(payment)
    }

    async fn transition(
        &self,
        id: &PaymentId,
        change: &PaymentChange,
        at: Timestamp,
    ) -> Result<Payment, StoreError> {
        self.store.transition(id, change, at).await
    }

    async fn keep_wait_token(
        &self,
        payment_id: &PaymentId,
        token: &str,
    ) -> Result<Payment, StoreError> {
        PaymentRepo::keep_wait_token(&*self.store, payment_id, token).await
    }

    async fn list_by_user(
        &self,
        user_id: &UserId,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<Page<Payment>, StoreError> {
        self.store.list_by_user(user_id, limit, cursor).await
    }

    async fn open_payments(
        &self,
        shard: u32,
        since: Option<Timestamp>,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<Page<Payment>, StoreError> {
        self.store.open_payments(shard, since, limit, cursor).await
    }
}

// ---------------------------------------------------------------------------------------
// Set-up
// ---------------------------------------------------------------------------------------

struct World {
    store: Arc<InMemoryStore>,
    gateway: Arc<FakeGateway>,
    deps: Deps,
}

impl World {
    fn new() -> Self {
        let store = Arc::new(InMemoryStore::new());
        let gateway = Arc::new(FakeGateway::default());
        let deps = Deps {
            payments: store.clone(),
            refunds: store.clone(),
            wallets: store.clone(),
            gateway: gateway.clone(),
        };
        Self {
            store,
            gateway,
            deps,
        }
    }

    fn with_wallet_crash(mut self, crash: WalletCrash) -> Self {
        self.deps.wallets = Arc::new(CrashingWallets {
            store: self.store.clone(),
            crash: Mutex::new(Some(crash)),
        });
        self
    }

    /// Payment reads through [`RacingPayments`]; returns their counter too.
    fn with_reads(mut self, reads: Reads) -> (Self, Arc<AtomicU32>) {
        let read_count = Arc::new(AtomicU32::new(0));
        self.deps.payments = Arc::new(RacingPayments {
            store: self.store.clone(),
            reads,
            read_count: read_count.clone(),
        });
        (self, read_count)
    }

    /// A PENDING payment of `amount` USD by a user whose wallet was topped up
    /// with exactly that much.
    async fn pending_payment(&self, amount: &str) -> Payment {
        let user_id = user();
        let usd_currency = Currency::parse("USD").unwrap();
        self.store
            .open(&user_id, usd_currency, Timestamp::now())
            .await
            .unwrap();
        let top_up = Movement::top_up(user_id.clone(), TopUpId::generate(), usd(amount));
        self.store.apply(&top_up, Timestamp::now()).await.unwrap();
        let new = NewPayment {
            payment_id: PaymentId::generate(),
            user_id,
            amount: usd(amount),
            order_id: None,
            description: None,
            metadata: Default::default(),
        };
        PaymentRepo::create(&*self.store, new, Timestamp::now())
            .await
            .unwrap()
            .into_inner()
    }

    /// A COMPLETED payment the way the saga makes one: created, wallet
    /// debited, PROCESSING, COMPLETED.
    async fn completed_payment(&self, amount: &str) -> Payment {
        let payment = self.pending_payment(amount).await;
        let debit = Movement::debit(payment.user_id.clone(), payment.payment_id, payment.amount);
        self.store.apply(&debit, Timestamp::now()).await.unwrap();
        self.transition(&payment, PaymentChange::to(PaymentStatus::Processing))
            .await;
        self.transition(&payment, PaymentChange::completed("gw_1".into()))
            .await
    }

    async fn transition(&self, payment: &Payment, change: PaymentChange) -> Payment {
        self.store
            .transition(&payment.payment_id, &change, Timestamp::now())
            .await
            .unwrap()
    }

    async fn task(&self, task: RefundTask) -> Result<RefundReply, TaskError> {
        handle(&self.deps, LambdaEvent::new(task, Context::default())).await
    }

    /// What api-handler and the refund saga do on the way to COMPLETED:
    /// reserve, refund at the gateway, credit the wallet, stopping at the
    /// first error (which the saga would retry or catch).
    async fn run(&self, command: RefundCommand) -> Result<RefundReply, TaskError> {
        let refund_id = command.refund_id;
        self.task(RefundTask::Reserve(command)).await?;
        self.task(RefundTask::RefundAtGateway { refund_id }).await?;
        self.task(RefundTask::CreditWallet { refund_id }).await
    }

    async fn payment(&self, payment_id: &PaymentId) -> Payment {
        PaymentRepo::get(&*self.store, payment_id)
            .await
            .unwrap()
            .unwrap()
    }

    async fn refund(&self, refund_id: &RefundId) -> Option<Refund> {
        RefundRepo::get(&*self.store, refund_id).await.unwrap()
    }

    /// The wallet balance, after checking it equals the sum of its ledger, and
    /// the ledger's refund credits.
    async fn balance(&self) -> (Money, Vec<LedgerEntry>) {
        let key = WalletKey::new(user(), Currency::parse("USD").unwrap());
        let wallet = WalletRepo::get(&*self.store, &key).await.unwrap().unwrap();
        let entries = self.store.ledger(&key, 100, None).await.unwrap().items;
        assert_eq!(
            ledger_sum(&entries),
            wallet.balance.amount(),
            "balance = ledger"
        );
        let refunds = entries
            .into_iter()
            .filter(|e| e.kind == shared::domain::MovementKind::Refund)
            .collect();
        (wallet.balance, refunds)
    }
}

fn user() -> UserId {
    UserId::parse("user_1").unwrap()
}

fn usd(text: &str) -> Money {
    Money::parse(text, "USD").unwrap()
}

/// A command as api-handler sends it (camelCase JSON).
fn command(payment: &Payment, amount: Option<&str>, reason: Option<&str>) -> RefundCommand {
    let mut value = json!({
        "refundId": RefundId::generate().to_string(),
        "paymentId": payment.payment_id.to_string(),
    });
    if let Some(amount) = amount {
        value["amount"] = json!({"amount": amount, "currency": "USD"});
    }
    if let Some(reason) = reason {
        value["reason"] = json!(reason);
    }
    serde_json::from_value(value).unwrap()
}

// ---------------------------------------------------------------------------------------
// The happy paths
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn full_refund_refunds_the_payment_and_credits_the_wallet_once() {
    // GIVEN a completed payment of 100 (the wallet is empty after it)
    let world = World::new();
    let payment = world.completed_payment("100").await;
    assert!(world.balance().await.0.is_zero());
    // WHEN it is refunded without an amount
    let cmd = command(&payment, None, Some("damaged"));
    let reply = world.run(cmd.clone()).await.unwrap();
    // THEN the reply is the COMPLETED refund of everything, as golden camelCase JSON
    let refund = &reply.refund;
    assert_eq!(
        serde_json::to_value(&reply).unwrap(),
        json!({
            "refundId": cmd.refund_id.to_string(),
            "paymentId": payment.payment_id.to_string(),
            "userId": "user_1",
            "amount": {"amount": "100.00", "currency": "USD"},
            "reason": "damaged",
            "status": "COMPLETED",
            "gatewayReference": "gwr_1",
            "createdAt": serde_json::to_value(refund.created_at).unwrap(),
            "updatedAt": serde_json::to_value(refund.updated_at).unwrap(),
            "version": 3,
            "paymentStatus": "REFUNDED",
            "refundedAmount": {"amount": "100.00", "currency": "USD"},
        })
    );
    // AND it reads back as a reply, and as a plain refund record
    let wire = serde_json::to_value(&reply).unwrap();
    let back: RefundReply = serde_json::from_value(wire.clone()).unwrap();
    assert_eq!(back, reply);
    let record: Refund = serde_json::from_value(wire).unwrap();
    assert_eq!(&record, refund);
    // AND the payment is REFUNDED, the wallet credited once, the ledger balanced
    let stored = world.payment(&payment.payment_id).await;
    assert_eq!(stored.status, PaymentStatus::Refunded);
    assert_eq!(stored.refunded_amount, usd("100"));
    let (balance, credits) = world.balance().await;
    assert_eq!(balance, usd("100"));
    assert_eq!(credits.len(), 1);
    assert_eq!(credits[0].tx_id, format!("{}#REFUND", cmd.refund_id));
    assert_eq!(world.gateway.paid(), (1, vec![usd("100")]));
    assert_eq!(world.refund(&cmd.refund_id).await.as_ref(), Some(refund));
    // AND the payment's timeline records the refund
    let events = shared::ports::PaymentEventRepo::events(&*world.store, &payment.payment_id, 10)
        .await
        .unwrap();
    let last = events.last().unwrap();
    assert_eq!(last.status, PaymentStatus::Refunded);
    assert!(last.detail.as_deref().unwrap().contains("100.00 USD"));
}

#[tokio::test]
async fn two_partial_refunds_make_the_payment_partially_then_fully_refunded() {
    let world = World::new();
    let payment = world.completed_payment("100").await;
    // WHEN 30 is refunded
    let first = world
        .run(command(&payment, Some("30"), None))
        .await
        .unwrap();
    // THEN the payment is PARTIALLY_REFUNDED with 30 refunded
    assert_eq!(first.payment_status, PaymentStatus::PartiallyRefunded);
    assert_eq!(first.refunded_amount, usd("30"));
    assert_eq!(first.refund.status, RefundStatus::Completed);
    // WHEN the rest is refunded (no amount: the remaining 70)
    let second = world.run(command(&payment, None, None)).await.unwrap();
    // THEN it is REFUNDED, and the wallet got both credits back
    assert_eq!(second.refund.amount, usd("70"));
    assert_eq!(second.payment_status, PaymentStatus::Refunded);
    assert_eq!(second.refunded_amount, usd("100"));
    let (balance, credits) = world.balance().await;
    assert_eq!(balance, usd("100"));
    assert_eq!(credits.len(), 2);
    assert_eq!(world.gateway.calls(), 2);
    // AND nothing more can be refunded
    let err = world.run(command(&payment, None, None)).await.unwrap_err();
    assert_eq!(err.error_type, ErrorType::InvalidTransition);
}

// ---------------------------------------------------------------------------------------
// Refused requests move nothing
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn over_refund_is_refused_and_nothing_moves() {
    let world = World::new();
    let payment = world.completed_payment("100").await;
    let cmd = command(&payment, Some("100.01"), None);
    let err = world.run(cmd.clone()).await.unwrap_err();
    assert_eq!(err.error_type, ErrorType::RefundExceedsAmount);
    assert_eq!(Diagnostic::from(err).error_type, "RefundExceedsAmount");
    // AND after a partial refund of 60, 40.01 is too much as well
    world
        .run(command(&payment, Some("60"), None))
        .await
        .unwrap();
    let before = world.payment(&payment.payment_id).await;
    let (balance_before, _) = world.balance().await;
    let too_much = command(&payment, Some("40.01"), None);
    let err = world.run(too_much.clone()).await.unwrap_err();
    assert_eq!(err.error_type, ErrorType::RefundExceedsAmount);
    // THEN no refund record, no payment change, no gateway call, no credit
    assert_eq!(world.refund(&cmd.refund_id).await, None);
    assert_eq!(world.refund(&too_much.refund_id).await, None);
    assert_eq!(world.payment(&payment.payment_id).await, before);
    assert_eq!(world.balance().await.0, balance_before);
    assert_eq!(world.gateway.calls(), 1);
}

#[tokio::test]
async fn payments_that_are_not_completed_cannot_be_refunded() {
    let world = World::new();
    let pending = world.pending_payment("10").await;
    let failed = world.pending_payment("10").await;
    world
        .transition(&failed, PaymentChange::failed("INSUFFICIENT_FUNDS".into()))
        .await;
    let processing = world.pending_payment("10").await;
    world
        .transition(&processing, PaymentChange::to(PaymentStatus::Processing))
        .await;
    for payment in [&pending, &failed, &processing] {
        let cmd = command(payment, None, None);
        let err = world.run(cmd.clone()).await.unwrap_err();
        assert_eq!(err.error_type, ErrorType::InvalidTransition, "{err}");
        assert_eq!(world.refund(&cmd.refund_id).await, None);
    }
    assert_eq!(world.gateway.calls(), 0);
}

#[tokio::test]
async fn an_unknown_payment_is_payment_not_found() {
    let world = World::new();
    let mut ghost = world.pending_payment("10").await;
    ghost.payment_id = PaymentId::generate();
    let err = world.run(command(&ghost, None, None)).await.unwrap_err();
    assert_eq!(err.error_type, ErrorType::PaymentNotFound);
    assert_eq!(Diagnostic::from(err).error_type, "PaymentNotFound");
}

#[tokio::test]
async fn invalid_requests_are_validation_errors() {
    let world = World::new();
    let payment = world.completed_payment("100").await;
    let long_reason = "x".repeat(257);
    let mut in_euros = command(&payment, None, None);
    in_euros.amount = Some(Money::parse("10", "EUR").unwrap());
    for cmd in [
        command(&payment, Some("0"), None),
        command(&payment, Some("10"), Some(&long_reason)),
        in_euros,
    ] {
        let err = world.run(cmd.clone()).await.unwrap_err();
        assert_eq!(err.error_type, ErrorType::ValidationError, "{err}");
        assert_eq!(world.refund(&cmd.refund_id).await, None);
    }
    // A reason of exactly the maximum length is fine
    let longest = "é".repeat(256);
    let reply = world
        .run(command(&payment, Some("1"), Some(&longest)))
        .await
        .unwrap();
    assert_eq!(reply.refund.reason.as_deref(), Some(longest.as_str()));
}

// ---------------------------------------------------------------------------------------
// Exactly once
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn the_same_refund_id_twice_refunds_and_credits_once() {
    let world = World::new();
    let payment = world.completed_payment("100").await;
    let cmd = command(&payment, Some("25"), Some("late delivery"));
    // WHEN the same command is delivered twice
    let first = world.run(cmd.clone()).await.unwrap();
    let second = world.run(cmd.clone()).await.unwrap();
    // THEN the second answers with the first refund, and nothing moved twice
    assert_eq!(second, first);
    assert_eq!(world.gateway.calls(), 1);
    let (balance, credits) = world.balance().await;
    assert_eq!((balance, credits.len()), (usd("25"), 1));
    assert_eq!(
        world.payment(&payment.payment_id).await.refunded_amount,
        usd("25")
    );
    // AND a replay without the amount is the same request
    let without_amount = RefundCommand {
        amount: None,
        ..cmd.clone()
    };
    assert_eq!(world.run(without_amount).await.unwrap(), first);
    // BUT the same id with another amount, reason or payment is a conflict
    let other_payment = world.completed_payment("5").await;
    for conflicting in [
        RefundCommand {
            amount: Some(usd("26")),
            ..cmd.clone()
        },
        RefundCommand {
            reason: None,
            ..cmd.clone()
        },
        RefundCommand {
            payment_id: other_payment.payment_id,
            ..cmd.clone()
        },
    ] {
        let err = world.run(conflicting).await.unwrap_err();
        assert_eq!(err.error_type, ErrorType::AlreadyExists);
    }
    assert_eq!(world.gateway.calls(), 1);
}

#[tokio::test]
async fn a_gateway_outage_leaves_the_refund_requested_and_a_rerun_completes_it() {
    let world = World::new();
    let payment = world.completed_payment("100").await;
    world
        .gateway
        .fail_next(GatewayError::Unavailable("503".into()), false);
    let cmd = command(&payment, Some("40"), None);
    // WHEN the gateway is down
    let err = world.run(cmd.clone()).await.unwrap_err();
    // THEN the error names the gateway and is retryable, the refund REQUESTED,
    // its amount reserved, no credit
    assert_eq!(err.error_type, ErrorType::GatewayUnavailable);
    assert!(err.error_type.is_retryable());
    let refund = world.refund(&cmd.refund_id).await.unwrap();
    assert_eq!(refund.status, RefundStatus::Requested);
    let reserved = world.payment(&payment.payment_id).await;
    assert_eq!(reserved.refunded_amount, usd("40"));
    assert_eq!(reserved.status, PaymentStatus::PartiallyRefunded);
    assert!(world.balance().await.1.is_empty());
    // WHEN it is run again THEN it completes, once
    let reply = world.run(cmd).await.unwrap();
    assert_eq!(reply.refund.status, RefundStatus::Completed);
    assert_eq!(reply.refunded_amount, usd("40"));
    assert_eq!(world.gateway.paid(), (1, vec![usd("40")]));
    let (balance, credits) = world.balance().await;
    assert_eq!((balance, credits.len()), (usd("40"), 1));
}

#[tokio::test]
async fn an_ambiguous_gateway_answer_is_settled_by_asking_again_with_the_same_id() {
    let world = World::new();
    let payment = world.completed_payment("100").await;
    // GIVEN the gateway refunds but its answer is lost
    world
        .gateway
        .fail_next(GatewayError::Ambiguous("timeout".into()), true);
    let cmd = command(&payment, None, None);
    let err = world.run(cmd.clone()).await.unwrap_err();
    assert_eq!(err.error_type, ErrorType::GatewayAmbiguous);
    assert_eq!(
        world.refund(&cmd.refund_id).await.unwrap().status,
        RefundStatus::Requested
    );
    // WHEN it is run again THEN the gateway pays nothing more and the wallet is credited once
    let reply = world.run(cmd).await.unwrap();
    assert_eq!(reply.refund.status, RefundStatus::Completed);
    assert_eq!(world.gateway.calls(), 2);
    assert_eq!(world.gateway.paid(), (1, vec![usd("100")]));
    let (balance, credits) = world.balance().await;
    assert_eq!((balance, credits.len()), (usd("100"), 1));
}

#[tokio::test]
async fn a_crash_after_the_gateway_refund_is_resumed_without_paying_twice() {
    let world = World::new();
    let payment = world.completed_payment("100").await;
    // GIVEN the store fails right after the gateway refunded (the step is not recorded)
    world.gateway.crash_store_after_next_refund(&world.store);
    let cmd = command(&payment, Some("10"), None);
    let err = world.run(cmd.clone()).await.unwrap_err();
    assert_eq!(err.error_type, ErrorType::Retryable);
    assert_eq!(
        world.refund(&cmd.refund_id).await.unwrap().status,
        RefundStatus::Requested
    );
    // WHEN run again THEN the gateway answers with its first refund
    let reply = world.run(cmd).await.unwrap();
    assert_eq!(reply.refund.gateway_reference.as_deref(), Some("gwr_1"));
    assert_eq!(world.gateway.calls(), 2);
    assert_eq!(world.gateway.paid(), (1, vec![usd("10")]));
    let (balance, credits) = world.balance().await;
    assert_eq!((balance, credits.len()), (usd("10"), 1));
}

#[tokio::test]
async fn a_crash_at_the_wallet_step_is_resumed_without_calling_the_gateway_again() {
    let world = World::new().with_wallet_crash(WalletCrash::BeforeCredit);
    let payment = world.completed_payment("100").await;
    let cmd = command(&payment, Some("60"), None);
    // WHEN the wallet credit fails
    let err = world.run(cmd.clone()).await.unwrap_err();
    // THEN the refund is GATEWAY_REFUNDED and nothing was credited
    assert_eq!(err.error_type, ErrorType::Retryable);
    let refund = world.refund(&cmd.refund_id).await.unwrap();
    assert_eq!(refund.status, RefundStatus::GatewayRefunded);
    assert_eq!(refund.gateway_reference.as_deref(), Some("gwr_1"));
    assert!(world.balance().await.1.is_empty());
    // WHEN run again THEN only the wallet step runs, once
    let reply = world.run(cmd).await.unwrap();
    assert_eq!(reply.refund.status, RefundStatus::Completed);
    assert_eq!(world.gateway.calls(), 1);
    let (balance, credits) = world.balance().await;
    assert_eq!((balance, credits.len()), (usd("60"), 1));
}

#[tokio::test]
async fn a_crash_after_the_wallet_credit_is_resumed_without_crediting_twice() {
    let world = World::new().with_wallet_crash(WalletCrash::AfterCredit);
    let payment = world.completed_payment("100").await;
    let cmd = command(&payment, Some("60"), None);
    // WHEN the credit is applied but COMPLETED cannot be recorded
    let err = world.run(cmd.clone()).await.unwrap_err();
    assert_eq!(err.error_type, ErrorType::Retryable);
    assert_eq!(
        world.refund(&cmd.refund_id).await.unwrap().status,
        RefundStatus::GatewayRefunded
    );
    assert_eq!(world.balance().await.1.len(), 1);
    // WHEN run again THEN the ledger finds its entry and the refund completes
    let reply = world.run(cmd).await.unwrap();
    assert_eq!(reply.refund.status, RefundStatus::Completed);
    assert_eq!(world.gateway.calls(), 1);
    let (balance, credits) = world.balance().await;
    assert_eq!((balance, credits.len()), (usd("60"), 1));
}

#[tokio::test]
async fn a_gateway_rejection_fails_the_refund_and_releases_its_reservation() {
    let world = World::new();
    let payment = world.completed_payment("100").await;
    world.gateway.fail_next(
        GatewayError::Rejected {
            status: 422,
            code: "REFUND_NOT_ALLOWED".into(),
            message: "charge is too old".into(),
        },
        false,
    );
    let cmd = command(&payment, Some("20"), None);
    // WHEN the gateway refuses the refund
    let err = world.run(cmd.clone()).await.unwrap_err();
    // THEN the refund is FAILED with the reason and nothing was credited
    assert_eq!(err.error_type, ErrorType::GatewayRejected);
    assert_eq!(Diagnostic::from(err).error_type, "GatewayRejected");
    let refund = world.refund(&cmd.refund_id).await.unwrap();
    assert_eq!(refund.status, RefundStatus::Failed);
    assert_eq!(
        refund.failure_reason.as_deref(),
        Some("GATEWAY_REJECTED (422 REFUND_NOT_ALLOWED)")
    );
    assert!(world.balance().await.1.is_empty());
    // AND the payment no longer claims money that never moved: its
    // reservation is given back, and it is COMPLETED again
    let stored = world.payment(&payment.payment_id).await;
    assert_eq!(stored.refunded_amount, usd("0"));
    assert_eq!(stored.status, PaymentStatus::Completed);
    // AND a re-run gives the same answer without calling the gateway again
    let again = world.run(cmd).await.unwrap_err();
    assert_eq!(again.error_type, ErrorType::GatewayRejected);
    assert_eq!(world.gateway.calls(), 1);
}

// ---------------------------------------------------------------------------------------
// Concurrency
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn two_concurrent_refunds_of_60_on_100_exactly_one_succeeds() {
    // GIVEN two refunds that both read the payment before either reserves
    let (world, read_count) = World::new().with_reads(Reads::Yielding);
    let payment = world.completed_payment("100").await;
    let (a, b) = (
        command(&payment, Some("60"), None),
        command(&payment, Some("60"), None),
    );
    // WHEN they run concurrently
    let (first, second) = tokio::join!(world.run(a), world.run(b));
    // THEN the loser re-read the payment and found only 40 left
    let outcomes = [first, second];
    let succeeded = outcomes.iter().filter(|o| o.is_ok()).count();
    let exceeded = outcomes
        .iter()
        .filter(|o| {
            o.as_ref()
                .is_err_and(|e| e.error_type == ErrorType::RefundExceedsAmount)
        })
        .count();
    assert_eq!((succeeded, exceeded), (1, 1));
    // (each read once, the winner again for the reply of each of its three
    // tasks, the loser again after losing the race)
    assert_eq!(read_count.load(Ordering::SeqCst), 6);
    let stored = world.payment(&payment.payment_id).await;
    assert_eq!(stored.refunded_amount, usd("60"));
    assert_eq!(stored.status, PaymentStatus::PartiallyRefunded);
    assert_eq!(world.gateway.paid(), (1, vec![usd("60")]));
    let (balance, credits) = world.balance().await;
    assert_eq!((balance, credits.len()), (usd("60"), 1));
}

#[tokio::test]
async fn a_reservation_that_keeps_losing_its_race_is_retryable() {
    let (world, read_count) = World::new().with_reads(Reads::AlwaysStale);
    let payment = world.completed_payment("100").await;
    let cmd = command(&payment, Some("10"), None);
    let err = world.run(cmd.clone()).await.unwrap_err();
    assert_eq!(err.error_type, ErrorType::Retryable);
    assert_eq!(world.refund(&cmd.refund_id).await, None);
    assert_eq!(
        world.payment(&payment.payment_id).await.refunded_amount,
        usd("0")
    );
    assert_eq!(read_count.load(Ordering::SeqCst), RESERVE_ATTEMPT_COUNT_MAX);
}

#[tokio::test]
async fn exhausted_retries_mark_a_refund_under_way_for_reconciliation_and_nothing_else() {
    // GIVEN a reserved refund whose gateway step never landed
    let world = World::new();
    let payment = world.completed_payment("100").await;
    world
        .gateway
        .fail_next(GatewayError::Unavailable("503".into()), false);
    let cmd = command(&payment, Some("40"), None);
    let refund_id = cmd.refund_id;
    assert!(world.run(cmd.clone()).await.is_err());
    // WHEN the saga gives up on it
    let mark = || RefundTask::MarkReconciliationRequired {
        refund_id,
        reason: "GatewayUnavailable".into(),
        cause: Some("gateway down".into()),
    };
    let reply = world.task(mark()).await.unwrap();
    // THEN it is RECONCILIATION_REQUIRED with the reason, and nothing moved
    assert_eq!(reply.refund.status, RefundStatus::ReconciliationRequired);
    assert_eq!(
        reply.refund.failure_reason.as_deref(),
        Some("GatewayUnavailable")
    );
    assert!(world.balance().await.1.is_empty());
    // AND a late step of the saga does not move it on by itself
    let late = world
        .task(RefundTask::CreditWallet { refund_id })
        .await
        .unwrap();
    assert_eq!(late.refund.status, RefundStatus::ReconciliationRequired);
    assert!(world.balance().await.1.is_empty());
    // AND marking a completed refund changes nothing
    let done = command(&payment, Some("10"), None);
    let done_id = done.refund_id;
    world.run(done).await.unwrap();
    let reply = world
        .task(RefundTask::MarkReconciliationRequired {
            refund_id: done_id,
            reason: "States.Timeout".into(),
            cause: None,
        })
        .await
        .unwrap();
    assert_eq!(reply.refund.status, RefundStatus::Completed);
}

#[tokio::test]
async fn the_wallet_step_before_the_gateway_step_is_refused() {
    // GIVEN a refund only reserved
    let world = World::new();
    let payment = world.completed_payment("100").await;
    let cmd = command(&payment, Some("40"), None);
    let refund_id = cmd.refund_id;
    world.task(RefundTask::Reserve(cmd)).await.unwrap();
    // WHEN its wallet step arrives first THEN it is refused, nothing credited
    let err = world
        .task(RefundTask::CreditWallet { refund_id })
        .await
        .unwrap_err();
    assert_eq!(err.error_type, ErrorType::InvalidTransition);
    assert!(world.balance().await.1.is_empty());
}
