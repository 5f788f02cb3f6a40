//! The handler with fakes: a scripted gateway that counts its calls, the
//! in-memory breaker store shared by several "instances", and a manual clock
//! (nothing sleeps for the open period).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use lambda_runtime::{Context, Diagnostic, LambdaEvent};
use payments_adapter::{Deps, handle};
use serde_json::{Value, json};
use shared::breaker::{BreakerSettings, CircuitBreaker, ManualClock, RecordedMetrics};
use shared::domain::breaker::{BreakerPolicy, BreakerState};
use shared::domain::{PaymentId, Timestamp};
use shared::events::{ChargeStatus, GatewayCommand, GatewayReply};
use shared::gateway::fake::{ScriptedGateway, approved, declined, pending};
use shared::memory::InMemoryStore;
use shared::{ErrorType, GatewayError, TaskError};

const FAILURE_THRESHOLD: u32 = 3;
const OPEN_SECONDS: i64 = 30;

/// One gateway, one breaker table and one clock, seen by any number of
/// adapter instances (each with its own breaker cache, like Lambda sandboxes).
struct World {
    gateway: Arc<ScriptedGateway>,
    store: Arc<InMemoryStore>,
    clock: Arc<ManualClock>,
    metrics: Arc<RecordedMetrics>,
}

impl World {
    fn new() -> Self {
        Self {
            gateway: Arc::new(ScriptedGateway::new()),
            store: Arc::new(InMemoryStore::new()),
            clock: Arc::new(ManualClock::new(
                Timestamp::from_unix_seconds(1_800_000_000).unwrap(),
            )),
            metrics: Arc::new(RecordedMetrics::default()),
        }
    }

    /// failures 3, open 30 s, successes 2, lease 10 s, cache 1 s.
    fn instance(&self) -> Deps {
        let settings = BreakerSettings {
            service_name: "payment-gateway".into(),
            policy: BreakerPolicy::new(FAILURE_THRESHOLD, 30, 2, 10).unwrap(),
            cache_ttl_ms: 1_000,
        };
        let breaker = CircuitBreaker::new(self.store.clone(), settings, self.clock.clone())
            .with_metrics(self.metrics.clone());
        Deps {
            gateway: self.gateway.clone(),
            breaker,
        }
    }

    async fn breaker_state(&self) -> BreakerState {
        self.instance().breaker.state().await.unwrap().state
    }
}

fn event(value: Value) -> LambdaEvent<GatewayCommand> {
    LambdaEvent::new(serde_json::from_value(value).unwrap(), Context::default())
}

fn charge_json(payment_id: PaymentId) -> Value {
    json!({"action": "CHARGE", "paymentId": payment_id.to_string(), "userId": "user_1",
           "amount": {"amount": "50.00", "currency": "USD"}})
}

fn status_json(payment_id: PaymentId, checks: u32) -> Value {
    json!({"action": "STATUS", "paymentId": payment_id.to_string(), "checks": checks})
}

async fn charge(deps: &Deps) -> Result<GatewayReply, TaskError> {
    handle(deps, event(charge_json(PaymentId::generate()))).await
}

fn unavailable() -> GatewayError {
    GatewayError::Unavailable("503 SERVICE_UNAVAILABLE: down".into())
}

#[tokio::test]
async fn an_approved_charge_replies_with_the_golden_payload() {
    // GIVEN a gateway that approves
    let world = World::new();
    world.gateway.push_charge(Ok(approved("gw_01")));
    // WHEN a charge is handled
    let reply = charge(&world.instance()).await.unwrap();
    // THEN the reply is what the state machine's Choice reads
    assert_eq!(
        serde_json::to_value(&reply).unwrap(),
        json!({"status": "APPROVED", "gatewayReference": "gw_01", "checks": 0})
    );
}

#[tokio::test]
async fn a_pending_charge_is_a_reply_to_wait_on() {
    let world = World::new();
    world.gateway.push_charge(Ok(pending("gw_02")));
    let reply = charge(&world.instance()).await.unwrap();
    assert_eq!(
        serde_json::to_value(&reply).unwrap(),
        json!({"status": "PENDING", "gatewayReference": "gw_02", "checks": 0})
    );
}

#[tokio::test]
async fn a_decline_is_never_a_success() {
    let world = World::new();
    world
        .gateway
        .push_charge(Ok(declined("gw_03", "card_declined")));
    let err = charge(&world.instance()).await.unwrap_err();
    assert_eq!(err.error_type, ErrorType::PaymentDeclined);
    assert!(err.message.contains("card_declined"), "{}", err.message);
    let diagnostic = Diagnostic::from(err);
    assert_eq!(diagnostic.error_type, "PaymentDeclined");
}

#[tokio::test]
async fn gateway_failures_leave_with_their_taxonomy_names() {
    let cases = [
        (unavailable(), "GatewayUnavailable"),
        (
            GatewayError::Ambiguous("timed out".into()),
            "GatewayAmbiguous",
        ),
        (
            GatewayError::Rejected {
                status: 422,
                code: "IDEMPOTENCY_MISMATCH".into(),
                message: "different amount".into(),
            },
            "GatewayRejected",
        ),
    ];
    for (failure, name) in cases {
        let world = World::new();
        world.gateway.push_charge(Err(failure));
        let err = charge(&world.instance()).await.unwrap_err();
        assert_eq!(Diagnostic::from(err).error_type, name);
    }
}

#[tokio::test]
async fn status_reports_the_gateway_view_and_counts_checks() {
    let world = World::new();
    let deps = world.instance();
    let payment_id = PaymentId::generate();
    world.gateway.push_status(Ok(Some(approved("gw_04"))));
    world.gateway.push_status(Ok(None));
    world
        .gateway
        .push_status(Ok(Some(declined("gw_05", "card_declined"))));
    let found = handle(&deps, event(status_json(payment_id, 2)))
        .await
        .unwrap();
    assert_eq!(
        serde_json::to_value(&found).unwrap(),
        json!({"status": "APPROVED", "gatewayReference": "gw_04", "checks": 3})
    );
    let missing = handle(&deps, event(status_json(payment_id, 0)))
        .await
        .unwrap();
    assert_eq!(
        serde_json::to_value(&missing).unwrap(),
        json!({"status": "NOT_FOUND", "checks": 1})
    );
    // a DECLINED status is a reply: the state machine decides what it means
    let declined = handle(&deps, event(status_json(payment_id, 4)))
        .await
        .unwrap();
    assert_eq!(
        serde_json::to_value(&declined).unwrap(),
        json!({"status": "DECLINED", "gatewayReference": "gw_05",
               "declineCode": "card_declined", "checks": 5})
    );
    // checks is optional on input and never overflows
    let absent = json!({"action": "STATUS", "paymentId": payment_id.to_string()});
    assert_eq!(handle(&deps, event(absent)).await.unwrap().checks, 1);
    let at_max = handle(&deps, event(status_json(payment_id, u32::MAX)))
        .await
        .unwrap();
    assert_eq!(at_max.checks, u32::MAX);
    assert_eq!(world.gateway.status_count(), 5);
}

#[tokio::test]
async fn the_breaker_opens_after_the_threshold_and_then_charges_fail_fast_without_calling() {
    // GIVEN a gateway that gives no usable answer (unavailable, then ambiguous)
    let world = World::new();
    let deps = world.instance();
    world.gateway.set_charge_default(Err(unavailable()));
    world
        .gateway
        .push_charge(Err(GatewayError::Ambiguous("timed out".into())));
    // WHEN FAILURE_THRESHOLD charges fail
    for _ in 0..FAILURE_THRESHOLD {
        let err = charge(&deps).await.unwrap_err();
        assert_ne!(err.error_type, ErrorType::CircuitOpen);
    }
    // THEN the circuit is open, counted once as a metric, and further charges
    // fail fast with CircuitOpen: the gateway sees none of them
    assert_eq!(world.breaker_state().await, BreakerState::Open);
    assert_eq!(world.metrics.lines().len(), 1);
    assert!(world.metrics.lines()[0].contains("\"CircuitBreakerOpened\":1"));
    for _ in 0..5 {
        let err = charge(&deps).await.unwrap_err();
        assert_eq!(Diagnostic::from(err).error_type, "CircuitOpen");
    }
    assert_eq!(world.gateway.call_count(), FAILURE_THRESHOLD);
    // and another instance fails fast too (its cache is empty: it reads the table)
    let other = world.instance();
    assert_eq!(
        charge(&other).await.unwrap_err().error_type,
        ErrorType::CircuitOpen
    );
    assert_eq!(world.gateway.charge_count(), FAILURE_THRESHOLD);
}

fn cancel_json(payment_id: PaymentId, checks: u32) -> Value {
    json!({"action": "CANCEL", "paymentId": payment_id.to_string(), "checks": checks})
}

#[tokio::test]
async fn an_open_circuit_still_lets_status_and_cancel_resolve_pending_payments() {
    // GIVEN an open circuit
    let world = World::new();
    open_circuit(&world).await;
    let deps = world.instance();
    let payment_id = PaymentId::generate();
    // WHEN a payment already at the gateway is looked up THEN the gateway answers
    world.gateway.push_status(Ok(Some(approved("gw_s1"))));
    let found = handle(&deps, event(status_json(payment_id, 1)))
        .await
        .unwrap();
    assert_eq!(
        serde_json::to_value(&found).unwrap(),
        json!({"status": "APPROVED", "gatewayReference": "gw_s1", "checks": 2})
    );
    assert_eq!(world.gateway.status_count(), 1);
    // WHEN a payment is cancelled before its debit is given back THEN the
    // gateway is called too, and its DECLINED is a reply
    let closed = handle(&deps, event(cancel_json(payment_id, 0)))
        .await
        .unwrap();
    assert_eq!(
        serde_json::to_value(&closed).unwrap(),
        json!({"status": "DECLINED", "gatewayReference": "gw_fake",
               "declineCode": "canceled", "checks": 1})
    );
    assert_eq!(world.gateway.cancel_count(), 1);
    // AND a charge meanwhile still fails fast, without calling
    let charges = world.gateway.charge_count();
    assert_eq!(
        charge(&deps).await.unwrap_err().error_type,
        ErrorType::CircuitOpen
    );
    assert_eq!(world.gateway.charge_count(), charges);
    assert_eq!(world.breaker_state().await, BreakerState::Open);
}

#[tokio::test]
async fn status_and_cancel_failures_keep_their_names_and_never_open_the_circuit() {
    // GIVEN a closed circuit and a gateway whose lookups and cancels all fail
    let world = World::new();
    let deps = world.instance();
    world.gateway.set_status_default(Err(unavailable()));
    world
        .gateway
        .set_cancel_default(Err(GatewayError::Ambiguous(
            "500 GATEWAY_ERROR: boom".into(),
        )));
    // WHEN more than FAILURE_THRESHOLD of each fail
    for _ in 0..FAILURE_THRESHOLD * 2 {
        let err = handle(&deps, event(status_json(PaymentId::generate(), 0)))
            .await
            .unwrap_err();
        assert_eq!(err.error_type, ErrorType::GatewayUnavailable);
        let err = handle(&deps, event(cancel_json(PaymentId::generate(), 0)))
            .await
            .unwrap_err();
        assert_eq!(Diagnostic::from(err).error_type, "GatewayAmbiguous");
    }
    // THEN the breaker never saw them: it is closed and charges go through
    assert_eq!(world.breaker_state().await, BreakerState::Closed);
    assert!(world.metrics.lines().is_empty());
    charge(&deps).await.unwrap();
    assert_eq!(world.gateway.charge_count(), 1);
}

#[tokio::test]
async fn cancel_replies_with_the_final_state_and_counts_checks() {
    // GIVEN a gateway that answers cancels APPROVED (captured), then PENDING,
    // then with its default (DECLINED, canceled)
    let world = World::new();
    let deps = world.instance();
    let payment_id = PaymentId::generate();
    world.gateway.push_cancel(Ok(approved("gw_c1")));
    world.gateway.push_cancel(Ok(pending("gw_c2")));
    // WHEN the payment is cancelled three times
    let captured = handle(&deps, event(cancel_json(payment_id, 0)))
        .await
        .unwrap();
    let waiting = handle(&deps, event(cancel_json(payment_id, 4)))
        .await
        .unwrap();
    let absent = json!({"action": "CANCEL", "paymentId": payment_id.to_string()});
    let closed = handle(&deps, event(absent)).await.unwrap();
    // THEN each answer is a reply the state machine reads, checks counted up
    assert_eq!(
        serde_json::to_value(&captured).unwrap(),
        json!({"status": "APPROVED", "gatewayReference": "gw_c1", "checks": 1})
    );
    assert_eq!(
        serde_json::to_value(&waiting).unwrap(),
        json!({"status": "PENDING", "gatewayReference": "gw_c2", "checks": 5})
    );
    assert_eq!(closed.status, ChargeStatus::Declined);
    assert_eq!(
        closed.decline_code.as_deref(),
        Some(shared::ports::DECLINE_CODE_CANCELED)
    );
    assert_eq!(closed.checks, 1);
    let at_max = handle(&deps, event(cancel_json(payment_id, u32::MAX)))
        .await
        .unwrap();
    assert_eq!(at_max.checks, u32::MAX);
    assert_eq!(world.gateway.cancel_count(), 4);
    assert_eq!(world.gateway.charge_count(), 0, "a cancel never charges");
}

#[tokio::test]
async fn declines_and_rejections_show_a_healthy_gateway() {
    let world = World::new();
    let deps = world.instance();
    for _ in 0..FAILURE_THRESHOLD * 2 {
        world
            .gateway
            .push_charge(Ok(declined("gw_x", "card_declined")));
        world.gateway.push_charge(Err(GatewayError::Rejected {
            status: 401,
            code: "UNAUTHORIZED".into(),
            message: String::new(),
        }));
    }
    for _ in 0..FAILURE_THRESHOLD * 4 {
        charge(&deps).await.unwrap_err();
    }
    assert_eq!(world.breaker_state().await, BreakerState::Closed);
    assert_eq!(world.gateway.call_count(), FAILURE_THRESHOLD * 4);
}

/// Opens the circuit from one instance with FAILURE_THRESHOLD failures.
async fn open_circuit(world: &World) {
    let deps = world.instance();
    for _ in 0..FAILURE_THRESHOLD {
        world.gateway.push_charge(Err(unavailable()));
        charge(&deps).await.unwrap_err();
    }
    assert_eq!(world.breaker_state().await, BreakerState::Open);
}

#[tokio::test]
async fn after_the_open_period_probes_close_the_circuit_after_the_success_threshold() {
    // GIVEN an open circuit
    let world = World::new();
    open_circuit(&world).await;
    let deps = world.instance();
    // WHEN the open period is not yet over THEN calls still fail fast
    world.clock.advance_seconds(OPEN_SECONDS - 1);
    assert_eq!(
        charge(&deps).await.unwrap_err().error_type,
        ErrorType::CircuitOpen
    );
    let calls = world.gateway.call_count();
    // WHEN it is over THEN one probe goes through and succeeds: HALF_OPEN
    world.clock.advance_seconds(1);
    charge(&deps).await.unwrap();
    assert_eq!(world.gateway.call_count(), calls + 1);
    assert_eq!(world.breaker_state().await, BreakerState::HalfOpen);
    // and the second successful probe (SUCCESS_THRESHOLD = 2) closes it
    charge(&deps).await.unwrap();
    assert_eq!(world.breaker_state().await, BreakerState::Closed);
    for _ in 0..3 {
        charge(&deps).await.unwrap();
    }
    assert_eq!(world.gateway.call_count(), calls + 5);
}

#[tokio::test]
async fn a_failed_probe_reopens_the_circuit_for_another_period() {
    let world = World::new();
    open_circuit(&world).await;
    let deps = world.instance();
    world.clock.advance_seconds(OPEN_SECONDS);
    world.gateway.push_charge(Err(unavailable()));
    assert_eq!(
        charge(&deps).await.unwrap_err().error_type,
        ErrorType::GatewayUnavailable
    );
    assert_eq!(world.breaker_state().await, BreakerState::Open);
    let calls = world.gateway.call_count();
    world.clock.advance_seconds(OPEN_SECONDS - 1);
    assert_eq!(
        charge(&deps).await.unwrap_err().error_type,
        ErrorType::CircuitOpen
    );
    assert_eq!(world.gateway.call_count(), calls);
    assert_eq!(world.metrics.lines().len(), 2, "each opening is counted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_in_half_open_send_only_one_probe() {
    // GIVEN an open circuit whose open period is over, and a gateway that
    // holds every call until released
    let world = World::new();
    open_circuit(&world).await;
    world.clock.advance_seconds(OPEN_SECONDS);
    world.gateway.hold();
    let calls = world.gateway.call_count();
    // WHEN instance A starts a charge (it becomes the probe and waits)
    let a = Arc::new(world.instance());
    let probe = tokio::spawn({
        let a = a.clone();
        async move { charge(&a).await }
    });
    // Bounded wait (at most 2 s) for A to reach the gateway.
    for _ in 0..400 {
        if world.gateway.call_count() > calls {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(
        world.gateway.call_count(),
        calls + 1,
        "the probe reached the gateway"
    );
    // THEN instance B, instance A itself and a fresh instance are refused meanwhile
    for deps in [&world.instance(), a.as_ref(), &world.instance()] {
        assert_eq!(
            charge(deps).await.unwrap_err().error_type,
            ErrorType::CircuitOpen
        );
    }
    // and when the probe's answer comes, only that one call was made
    world.gateway.release();
    probe.await.unwrap().unwrap();
    assert_eq!(world.gateway.call_count(), calls + 1);
    assert_eq!(world.breaker_state().await, BreakerState::HalfOpen);
}
