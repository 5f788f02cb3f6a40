//! Reconciler tests with the in-memory store and the scripted gateway,
//! GIVEN / WHEN / THEN. Every run gets its `now` explicitly, so an item's age
//! (and with it the threshold decision) does not depend on the clock.

use std::sync::Arc;

use serde_json::json;
use shared::domain::wallet::ledger_sum;
use shared::domain::{
    Currency, LedgerEntry, MovementKind, NewPayment, PaymentChange, PaymentId, RefundId, TopUpId,
    UserId, WalletKey,
};
use shared::gateway::fake::{ScriptedGateway, approved, declined, pending};
use shared::memory::InMemoryStore;
use shared::ports::{PaymentRepo, RefundRepo, WalletRepo};

use super::*;

// ---------------------------------------------------------------------------------------
// Set-up
// ---------------------------------------------------------------------------------------

/// When every payment and refund of these tests was created.
const CREATED_AT: &str = "2026-01-05T09:00:00.000000Z";
/// What the user's wallet is topped up with before anything is paid.
const TOP_UP: &str = "100";
/// What every payment of these tests is for.
const PAYMENT_AMOUNT: &str = "40";

struct World {
    store: Arc<InMemoryStore>,
    gateway: Arc<ScriptedGateway>,
    sagas: Arc<RecordingCallbacks>,
    deps: Deps,
}

/// What the reconciler sent to waiting sagas, in order; every token waits.
#[derive(Debug, Default)]
struct RecordingCallbacks {
    sent: std::sync::Mutex<Vec<(String, Option<GatewayReply>)>>,
}

impl RecordingCallbacks {
    fn sent(&self) -> Vec<(String, Option<GatewayReply>)> {
        self.sent.lock().unwrap().clone()
    }
}

#[async_trait::async_trait]
impl SagaCallbacks for RecordingCallbacks {
    async fn answer(&self, token: &str, answer: &GatewayReply) -> Result<Callback, String> {
        let sent = (token.to_owned(), Some(answer.clone()));
        self.sent.lock().unwrap().push(sent);
        Ok(Callback::Delivered)
    }

    async fn heartbeat(&self, token: &str) -> Result<Callback, String> {
        self.sent.lock().unwrap().push((token.to_owned(), None));
        Ok(Callback::Delivered)
    }
}

impl World {
    /// A user whose USD wallet holds [`TOP_UP`].
    async fn new() -> Self {
        let store = Arc::new(InMemoryStore::new());
        let gateway = Arc::new(ScriptedGateway::new());
        let sagas = Arc::new(RecordingCallbacks::default());
        let deps = Deps {
            ports: refund_service::Deps {
                payments: store.clone(),
                refunds: store.clone(),
                wallets: store.clone(),
                gateway: gateway.clone(),
            },
            sagas: sagas.clone(),
        };
        store
            .open(&user(), usd_currency(), created_at())
            .await
            .unwrap();
        let top_up = Movement::top_up(user(), TopUpId::generate(), usd(TOP_UP));
        store.apply(&top_up, created_at()).await.unwrap();
        Self {
            store,
            gateway,
            sagas,
            deps,
        }
    }

    /// A payment of [`PAYMENT_AMOUNT`] created at [`CREATED_AT`], its wallet
    /// debited when `debited`, then moved through `changes` like a saga would.
    async fn payment(&self, debited: bool, changes: &[PaymentChange]) -> Payment {
        let new = NewPayment {
            payment_id: PaymentId::generate(),
            user_id: user(),
            amount: usd(PAYMENT_AMOUNT),
            order_id: None,
            description: None,
            metadata: Default::default(),
        };
        let mut payment = PaymentRepo::create(&*self.store, new, created_at())
            .await
            .unwrap()
            .into_inner();
        if debited {
            let debit = Movement::debit(user(), payment.payment_id, payment.amount);
            self.store.apply(&debit, created_at()).await.unwrap();
        }
        for change in changes {
            payment = self
                .store
                .transition(&payment.payment_id, change, created_at())
                .await
                .unwrap();
        }
        payment
    }

    async fn reconcile(&self, request: &ReconcileRequest, now: Timestamp) -> ReconcileReport {
        reconcile(&self.deps, request, now).await.unwrap()
    }

    async fn stored(&self, payment_id: &PaymentId) -> Payment {
        PaymentRepo::get(&*self.store, payment_id)
            .await
            .unwrap()
            .unwrap()
    }

    async fn stored_refund(&self, refund_id: &RefundId) -> Refund {
        RefundRepo::get(&*self.store, refund_id)
            .await
            .unwrap()
            .unwrap()
    }

    /// The wallet balance, after checking it equals the sum of its ledger,
    /// and the ledger itself.
    async fn balance(&self) -> (Money, Vec<LedgerEntry>) {
        let key = WalletKey::new(user(), usd_currency());
        let wallet = WalletRepo::get(&*self.store, &key).await.unwrap().unwrap();
        let entries = self.store.ledger(&key, 100, None).await.unwrap().items;
        assert_eq!(
            ledger_sum(&entries),
            wallet.balance.amount(),
            "balance = ledger"
        );
        (wallet.balance, entries)
    }
}

fn user() -> UserId {
    UserId::parse("user_1").unwrap()
}

fn usd_currency() -> Currency {
    Currency::parse("USD").unwrap()
}

fn usd(text: &str) -> Money {
    Money::parse(text, "USD").unwrap()
}

fn created_at() -> Timestamp {
    Timestamp::parse(CREATED_AT).unwrap()
}

/// A minute past the payment threshold: every payment counts as abandoned.
fn payment_age_passed() -> Timestamp {
    created_at().plus_seconds(i64::from(PAYMENT_AGE_MIN_SECONDS_DEFAULT) + 60)
}

/// A minute past the refund threshold (long before the payment one).
fn refund_age_passed(refund_created_at: Timestamp) -> Timestamp {
    refund_created_at.plus_seconds(i64::from(REFUND_AGE_MIN_SECONDS_DEFAULT) + 60)
}

fn processing() -> PaymentChange {
    PaymentChange::to(PaymentStatus::Processing)
}

fn reconciliation_required() -> PaymentChange {
    PaymentChange::reconciliation_required("GATEWAY_TIMEOUT".to_owned())
}

fn entries_of(entries: &[LedgerEntry], kind: MovementKind) -> usize {
    entries.iter().filter(|entry| entry.kind == kind).count()
}

// ---------------------------------------------------------------------------------------
// Payments
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn reconciliation_required_payment_the_gateway_captured_completes() {
    // GIVEN a RECONCILIATION_REQUIRED payment whose wallet holds its debit
    let world = World::new().await;
    let payment = world
        .payment(true, &[processing(), reconciliation_required()])
        .await;
    let (balance_before, _) = world.balance().await;
    assert_eq!(balance_before, usd("60"));
    // AND a gateway that answers the cancel with the capture
    world.gateway.push_cancel(Ok(approved("gw_captured")));
    // WHEN the reconciler runs
    let report = world
        .reconcile(&ReconcileRequest::default(), payment_age_passed())
        .await;
    // THEN the payment is COMPLETED with the gateway's reference
    let stored = world.stored(&payment.payment_id).await;
    assert_eq!(stored.status, PaymentStatus::Completed);
    assert_eq!(stored.gateway_reference.as_deref(), Some("gw_captured"));
    // AND the report says so
    assert_eq!(report.findings.len(), 1);
    let finding = &report.findings[0];
    assert_eq!(finding.kind, Kind::Payment);
    assert_eq!(finding.id, payment.payment_id.to_string());
    assert_eq!(finding.status, "RECONCILIATION_REQUIRED");
    assert_eq!(finding.outcome, Outcome::Resolved);
    assert_eq!(finding.now.as_deref(), Some("COMPLETED"));
    assert_eq!(report.counts, BTreeMap::from([(Outcome::Resolved, 1)]));
    assert_eq!(report.left_count(), 0);
    // AND the debit stays taken: the gateway kept the money
    let (balance, entries) = world.balance().await;
    assert_eq!(balance, balance_before);
    assert_eq!(entries_of(&entries, MovementKind::Compensation), 0);
    assert_eq!(world.gateway.cancel_count(), 1);
}

#[tokio::test]
async fn old_processing_payment_never_charged_gets_its_debit_back_once_and_fails() {
    // GIVEN a PROCESSING payment older than the threshold, its wallet debited
    let world = World::new().await;
    let payment = world.payment(true, &[processing()]).await;
    assert_eq!(world.balance().await.0, usd("60"));
    // AND a gateway that closes it uncharged
    world
        .gateway
        .push_cancel(Ok(declined("gw_x", DECLINE_CODE_CANCELED)));
    // WHEN the reconciler runs
    let now = payment_age_passed();
    let report = world.reconcile(&ReconcileRequest::default(), now).await;
    // THEN the debit is given back, once
    let (balance, entries) = world.balance().await;
    assert_eq!(balance, usd(TOP_UP));
    assert_eq!(entries_of(&entries, MovementKind::Compensation), 1);
    // AND the payment is FAILED as never charged
    let stored = world.stored(&payment.payment_id).await;
    assert_eq!(stored.status, PaymentStatus::Failed);
    assert_eq!(
        stored.failure_reason.as_deref(),
        Some("RECONCILED_NOT_CHARGED")
    );
    assert_eq!(report.findings.len(), 1);
    assert_eq!(report.findings[0].outcome, Outcome::Resolved);
    assert_eq!(report.findings[0].status, "PROCESSING");
    assert_eq!(report.findings[0].now.as_deref(), Some("FAILED"));
    // WHEN it runs again
    let again = world.reconcile(&ReconcileRequest::default(), now).await;
    // THEN it finds nothing open and moves no money
    assert!(again.findings.is_empty());
    assert!(again.counts.is_empty());
    let (balance_again, entries_again) = world.balance().await;
    assert_eq!(balance_again, usd(TOP_UP));
    assert_eq!(entries_again, entries);
    assert_eq!(world.gateway.cancel_count(), 1);
}

#[tokio::test]
async fn young_pending_payment_is_left_to_its_saga_without_asking_the_gateway() {
    // GIVEN a PENDING payment ten seconds old
    let world = World::new().await;
    let payment = world.payment(false, &[]).await;
    // WHEN the reconciler runs
    let report = world
        .reconcile(&ReconcileRequest::default(), created_at().plus_seconds(10))
        .await;
    // THEN it is in flight, the gateway is never called, the payment untouched
    assert_eq!(report.findings.len(), 1);
    assert_eq!(report.findings[0].outcome, Outcome::InFlight);
    assert_eq!(report.findings[0].status, "PENDING");
    assert_eq!(report.findings[0].now, None);
    assert_eq!(report.left_count(), 0);
    assert_eq!(world.gateway.call_count(), 0);
    assert_eq!(world.stored(&payment.payment_id).await, payment);
}

/// A young PROCESSING payment whose saga waits for the gateway's word.
async fn waiting_payment(world: &World) -> Payment {
    let payment = world.payment(true, &[processing()]).await;
    world
        .store
        .keep_wait_token(&payment.payment_id, "token-1")
        .await
        .unwrap()
}

#[tokio::test]
async fn a_waiting_saga_is_woken_with_the_gateways_final_answer_asked_again() {
    // GIVEN a young PROCESSING payment whose saga waits on token-1
    let world = World::new().await;
    let payment = waiting_payment(&world).await;
    assert_eq!(payment.wait_token.as_deref(), Some("token-1"));
    // AND a gateway that now answers the capture
    world.gateway.push_status(Ok(Some(approved("gw_late"))));
    // WHEN a webhook's targeted run looks at it
    let request = ReconcileRequest::targeted(vec![payment.payment_id], Vec::new());
    let report = world
        .reconcile(&request, created_at().plus_seconds(5))
        .await;
    // THEN the saga gets the gateway's answer (asked again, not the webhook's)
    let answer = GatewayReply {
        status: ChargeStatus::Approved,
        gateway_reference: Some("gw_late".to_owned()),
        decline_code: None,
        checks: 0,
    };
    assert_eq!(
        world.sagas.sent(),
        vec![("token-1".to_owned(), Some(answer))]
    );
    assert_eq!(world.gateway.status_count(), 1);
    // AND the reconciler itself moved nothing: the woken saga completes it
    assert_eq!(report.findings[0].outcome, Outcome::InFlight);
    assert!(
        report.findings[0].detail.contains("its saga woken"),
        "{report:?}"
    );
    assert_eq!(world.stored(&payment.payment_id).await, payment);
    assert_eq!(world.gateway.cancel_count(), 0);
}

#[tokio::test]
async fn a_waiting_saga_gets_a_heartbeat_while_the_gateway_has_it_pending() {
    // GIVEN a waiting saga and a gateway that still has the charge pending
    let world = World::new().await;
    let payment = waiting_payment(&world).await;
    world.gateway.push_status(Ok(Some(pending("gw_1"))));
    // WHEN the reconciler runs
    let report = world
        .reconcile(&ReconcileRequest::default(), created_at().plus_seconds(5))
        .await;
    // THEN the saga's wait is kept alive, and nothing else changes
    assert_eq!(world.sagas.sent(), vec![("token-1".to_owned(), None)]);
    assert_eq!(report.findings[0].outcome, Outcome::InFlight);
    assert_eq!(world.stored(&payment.payment_id).await, payment);
}

#[tokio::test]
async fn a_dry_run_wakes_no_saga() {
    // GIVEN a waiting saga
    let world = World::new().await;
    waiting_payment(&world).await;
    // WHEN a dry run looks at it
    let request = ReconcileRequest {
        dry_run: true,
        ..ReconcileRequest::default()
    };
    world
        .reconcile(&request, created_at().plus_seconds(5))
        .await;
    // THEN nobody is asked or woken
    assert_eq!(world.sagas.sent(), Vec::new());
    assert_eq!(world.gateway.call_count(), 0);
}

#[tokio::test]
async fn payment_the_gateway_still_has_pending_is_left_open_and_counted() {
    // GIVEN an old PROCESSING payment with its debit
    let world = World::new().await;
    let payment = world.payment(true, &[processing()]).await;
    let (balance_before, entries_before) = world.balance().await;
    // AND a gateway that cannot close it yet
    world.gateway.push_cancel(Ok(pending("gw_pending")));
    // WHEN the reconciler runs
    let report = world
        .reconcile(&ReconcileRequest::default(), payment_age_passed())
        .await;
    // THEN the payment is left as unknown, for the next run
    assert_eq!(report.findings.len(), 1);
    assert_eq!(report.findings[0].outcome, Outcome::Unknown);
    assert_eq!(report.findings[0].now, None);
    assert_eq!(report.left_count(), 1);
    // AND nothing changed: not the payment, not the wallet
    assert_eq!(world.stored(&payment.payment_id).await, payment);
    let (balance, entries) = world.balance().await;
    assert_eq!(balance, balance_before);
    assert_eq!(entries, entries_before);
}

#[tokio::test]
async fn captured_payment_whose_wallet_holds_no_debit_is_a_mismatch() {
    // GIVEN a RECONCILIATION_REQUIRED payment that was never debited
    let world = World::new().await;
    let payment = world.payment(false, &[reconciliation_required()]).await;
    let (balance_before, entries_before) = world.balance().await;
    // AND a gateway that says it captured it
    world.gateway.push_cancel(Ok(approved("gw_captured")));
    // WHEN the reconciler runs
    let report = world
        .reconcile(&ReconcileRequest::default(), payment_age_passed())
        .await;
    // THEN the books disagree: left for a person
    assert_eq!(report.findings.len(), 1);
    assert_eq!(report.findings[0].outcome, Outcome::Mismatch);
    assert_eq!(report.findings[0].now, None);
    assert_eq!(report.left_count(), 1);
    // AND the payment is still RECONCILIATION_REQUIRED, the wallet untouched
    let stored = world.stored(&payment.payment_id).await;
    assert_eq!(stored.status, PaymentStatus::ReconciliationRequired);
    assert_eq!(stored, payment);
    let (balance, entries) = world.balance().await;
    assert_eq!(balance, balance_before);
    assert_eq!(entries, entries_before);
}

#[tokio::test]
async fn dry_run_predicts_a_completion_without_cancelling_or_writing() {
    // GIVEN an old PROCESSING payment the gateway has captured
    let world = World::new().await;
    let payment = world.payment(true, &[processing()]).await;
    let (balance_before, entries_before) = world.balance().await;
    world.gateway.push_status(Ok(Some(approved("gw_captured"))));
    // WHEN the reconciler runs dry
    let request = ReconcileRequest {
        dry_run: true,
        ..ReconcileRequest::default()
    };
    let report = world.reconcile(&request, payment_age_passed()).await;
    // THEN it says it would resolve it, having only asked the status
    assert!(report.dry_run);
    assert_eq!(report.findings.len(), 1);
    assert_eq!(report.findings[0].outcome, Outcome::WouldResolve);
    assert_eq!(report.findings[0].now, None);
    assert_eq!(world.gateway.status_count(), 1);
    assert_eq!(world.gateway.cancel_count(), 0);
    // AND nothing changed
    assert_eq!(world.stored(&payment.payment_id).await, payment);
    let (balance, entries) = world.balance().await;
    assert_eq!(balance, balance_before);
    assert_eq!(entries, entries_before);
}

// ---------------------------------------------------------------------------------------
// Refunds
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn old_requested_refund_is_refunded_and_credited_once() {
    // GIVEN a COMPLETED payment that took its debit
    let world = World::new().await;
    let payment = world
        .payment(
            true,
            &[processing(), PaymentChange::completed("gw_1".into())],
        )
        .await;
    // AND a REQUESTED refund of all of it whose saga never ran
    let refund_created_at = created_at().plus_seconds(60);
    let refund = Refund::request(
        RefundId::generate(),
        payment.payment_id,
        user(),
        payment.amount,
        Some("damaged".into()),
        refund_created_at,
    );
    world
        .store
        .reserve(&refund, &payment, refund_created_at)
        .await
        .unwrap();
    let (balance_before, _) = world.balance().await;
    assert_eq!(balance_before, usd("60"));
    // WHEN the reconciler runs past the refund threshold
    let now = refund_age_passed(refund_created_at);
    let report = world.reconcile(&ReconcileRequest::default(), now).await;
    // THEN the refund is COMPLETED
    let stored = world.stored_refund(&refund.refund_id).await;
    assert_eq!(stored.status, RefundStatus::Completed);
    assert_eq!(stored.gateway_reference.as_deref(), Some("gwr_fake"));
    // AND the report lists only it, resolved
    assert_eq!(report.findings.len(), 1);
    let finding = &report.findings[0];
    assert_eq!(finding.kind, Kind::Refund);
    assert_eq!(finding.id, refund.refund_id.to_string());
    let payment_id = payment.payment_id.to_string();
    assert_eq!(finding.payment_id.as_deref(), Some(payment_id.as_str()));
    assert_eq!(finding.status, "REQUESTED");
    assert_eq!(finding.outcome, Outcome::Resolved);
    assert_eq!(finding.now.as_deref(), Some("COMPLETED"));
    // AND the wallet is credited with the refund, once
    let (balance, entries) = world.balance().await;
    assert_eq!(balance, balance_before.checked_add(&refund.amount).unwrap());
    assert_eq!(entries_of(&entries, MovementKind::Refund), 1);
    // WHEN it runs again
    let again = world.reconcile(&ReconcileRequest::default(), now).await;
    // THEN it finds nothing, and neither pays out nor credits again
    assert!(again.findings.is_empty());
    let (balance_again, entries_again) = world.balance().await;
    assert_eq!(balance_again, balance);
    assert_eq!(entries_again, entries);
    assert_eq!(world.gateway.refund_count(), 1);
}

// ---------------------------------------------------------------------------------------
// The wire
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn report_serializes_camel_case_with_screaming_snake_outcomes() {
    // GIVEN a young PENDING payment
    let world = World::new().await;
    let payment = world.payment(false, &[]).await;
    let now = created_at().plus_seconds(10);
    // WHEN the reconciler runs and its report is serialized
    let report = world.reconcile(&ReconcileRequest::default(), now).await;
    let wire = serde_json::to_value(&report).unwrap();
    // THEN one finding's outcome reads IN_FLIGHT
    assert_eq!(wire["findings"][0]["outcome"], json!("IN_FLIGHT"));
    // AND the whole report is the golden camelCase payload (absent options left out)
    assert_eq!(
        wire,
        json!({
            "startedAt": serde_json::to_value(now).unwrap(),
            "finishedAt": serde_json::to_value(report.finished_at).unwrap(),
            "dryRun": false,
            "counts": {"IN_FLIGHT": 1},
            "findings": [{
                "kind": "PAYMENT",
                "id": payment.payment_id.to_string(),
                "amount": {"amount": "40.00", "currency": "USD"},
                "status": "PENDING",
                "outcome": "IN_FLIGHT",
                "detail": "10 s old: left to its saga",
            }],
            "truncated": false,
        })
    );
    // AND it reads back as the same report
    let back: ReconcileReport = serde_json::from_value(wire).unwrap();
    assert_eq!(back, report);
}

#[test]
fn request_from_the_schedule_takes_every_default() {
    // GIVEN the schedule's `{}`, and an EventBridge event with fields of its own
    let empty = json!({});
    let event = json!({"source": "aws.events", "detail-type": "Scheduled Event", "dryRun": true});
    // WHEN they are read as requests
    let from_empty: ReconcileRequest = serde_json::from_value(empty).unwrap();
    let from_event: ReconcileRequest = serde_json::from_value(event).unwrap();
    // THEN the first is all defaults and the second ignores what is not its own
    assert_eq!(from_empty, ReconcileRequest::default());
    assert_eq!(
        from_event,
        ReconcileRequest {
            dry_run: true,
            ..ReconcileRequest::default()
        }
    );
}

#[test]
fn the_saga_timeouts_are_the_state_machines_own() {
    // The age thresholds stand on these: no execution runs longer.
    let timeout = |asl: &str| -> u64 {
        let definition: serde_json::Value = serde_json::from_str(asl).unwrap();
        definition["TimeoutSeconds"].as_u64().unwrap()
    };
    let payment_saga = include_str!("../../../state-machine/payment-saga.asl.json");
    let refund_saga = include_str!("../../../state-machine/refund-saga.asl.json");
    assert_eq!(
        timeout(payment_saga),
        u64::from(crate::PAYMENT_SAGA_TIMEOUT_SECONDS)
    );
    assert_eq!(
        timeout(refund_saga),
        u64::from(crate::REFUND_SAGA_TIMEOUT_SECONDS)
    );
}
