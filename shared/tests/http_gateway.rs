//! `HttpGateway` against the real mock gateway (`mock_gateway::app`) served on
//! an ephemeral loopback port inside the test, plus a few hand-made answers
//! the mock never gives (to pin the classification of odd responses).
#![cfg(feature = "http-gateway")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};

use axum::Json;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use mock_gateway::{ApiKey, AppState, ErrorRate, Mode, ModeSettings, app};
use serde_json::{Value, json};
use shared::GatewayError;
use shared::domain::{Money, PaymentId, RefundId, UserId};
use shared::events::ChargeStatus;
use shared::gateway::{GatewayConfig, HttpGateway, Secret};
use shared::ports::{DECLINE_CODE_CANCELED, PaymentGateway};

const KEY: &str = "test-key";

async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}")
}

async fn mock_with(settings: ModeSettings) -> String {
    let config = mock_gateway::GatewayConfig {
        api_key: ApiKey::new(KEY).unwrap(),
        settings,
    };
    serve(app(AppState::new(config))).await
}

async fn mock() -> String {
    mock_with(ModeSettings::default()).await
}

fn client(url: &str, key: &str, request_timeout_ms: u32) -> HttpGateway {
    HttpGateway::new(&GatewayConfig {
        base_url: url.to_owned(),
        api_key: Secret::new(key),
        connect_timeout_ms: 200,
        request_timeout_ms,
    })
    .unwrap()
}

fn usd(amount: &str) -> Money {
    Money::parse(amount, "USD").unwrap()
}

fn user() -> UserId {
    UserId::parse("user_1").unwrap()
}

async fn charge(
    gateway: &HttpGateway,
    amount: &str,
) -> Result<shared::ports::GatewayCharge, GatewayError> {
    gateway
        .charge(&PaymentId::generate(), &user(), &usd(amount))
        .await
}

/// The status and code of a `Rejected`, for compact assertions.
fn rejection(err: &GatewayError) -> Option<(u16, &str)> {
    match err {
        GatewayError::Rejected { status, code, .. } => Some((*status, code.as_str())),
        GatewayError::Unavailable(_) | GatewayError::Ambiguous(_) => None,
    }
}

#[tokio::test]
async fn an_approved_charge_is_found_by_its_status_with_the_same_reference() {
    // GIVEN the mock in normal mode
    let gateway = client(&mock().await, KEY, 2_000);
    let payment_id = PaymentId::generate();
    // WHEN 50.00 is charged, twice (a retried step), and then looked up
    let first = gateway
        .charge(&payment_id, &user(), &usd("50.00"))
        .await
        .unwrap();
    let again = gateway
        .charge(&payment_id, &user(), &usd("50.00"))
        .await
        .unwrap();
    let found = gateway.status(&payment_id).await.unwrap().unwrap();
    // THEN it is approved once, under one reference
    assert_eq!(first.status, ChargeStatus::Approved);
    assert!(first.reference.starts_with("gw_"), "{}", first.reference);
    assert_eq!(first.decline_code, None);
    assert_eq!(again, first);
    assert_eq!(found, first);
}

#[tokio::test]
async fn cents_pick_pending_and_declined() {
    let gateway = client(&mock().await, KEY, 2_000);
    assert_eq!(
        charge(&gateway, "10.77").await.unwrap().status,
        ChargeStatus::Pending
    );
    let declined = charge(&gateway, "10.13").await.unwrap();
    assert_eq!(declined.status, ChargeStatus::Declined);
    assert_eq!(declined.decline_code.as_deref(), Some("card_declined"));
}

#[tokio::test]
async fn a_gateway_error_is_ambiguous_for_a_charge_and_records_nothing() {
    // GIVEN the mock, which fails 999.99 with 500 GATEWAY_ERROR
    let gateway = client(&mock().await, KEY, 2_000);
    let payment_id = PaymentId::generate();
    // WHEN it is charged
    let err = gateway
        .charge(&payment_id, &user(), &usd("999.99"))
        .await
        .unwrap_err();
    // THEN a 500 may have come after a capture: only asking tells
    assert!(
        matches!(err, GatewayError::Ambiguous(ref m) if m.contains("GATEWAY_ERROR")),
        "{err}"
    );
    // AND asking tells: the mock recorded nothing
    assert_eq!(gateway.status(&payment_id).await.unwrap(), None);
}

#[tokio::test]
async fn a_cancel_of_a_payment_never_charged_declines_it_for_good() {
    // GIVEN a payment whose charge failed with 500 (nothing recorded)
    let gateway = client(&mock().await, KEY, 2_000);
    let payment_id = PaymentId::generate();
    let err = gateway
        .charge(&payment_id, &user(), &usd("999.99"))
        .await
        .unwrap_err();
    assert!(matches!(err, GatewayError::Ambiguous(_)), "{err}");
    // WHEN it is cancelled, twice (a retried step)
    let closed = gateway.cancel(&payment_id).await.unwrap();
    let again = gateway.cancel(&payment_id).await.unwrap();
    // THEN it is DECLINED (canceled) under a tombstone reference, the same both times
    assert_eq!(closed.status, ChargeStatus::Declined);
    assert_eq!(closed.decline_code.as_deref(), Some(DECLINE_CODE_CANCELED));
    assert!(closed.reference.starts_with("gwc_"), "{}", closed.reference);
    assert_eq!(again, closed);
    // AND a lookup shows the same, a later charge (any amount) is declined by
    // it, and a refund finds nothing captured
    assert_eq!(
        gateway.status(&payment_id).await.unwrap(),
        Some(closed.clone())
    );
    for amount in ["999.99", "50.00"] {
        let late = gateway
            .charge(&payment_id, &user(), &usd(amount))
            .await
            .unwrap();
        assert_eq!(late, closed, "{amount}");
    }
    let err = gateway
        .refund(&RefundId::generate(), &payment_id, &usd("1.00"))
        .await
        .unwrap_err();
    assert_eq!(
        rejection(&err),
        Some((409, "PAYMENT_NOT_CAPTURED")),
        "{err}"
    );
}

#[tokio::test]
async fn a_cancel_never_changes_a_charge_that_exists() {
    let gateway = client(&mock().await, KEY, 2_000);
    // GIVEN an approved, a declined and a pending charge
    let mut charged = Vec::new();
    for amount in ["20.00", "10.13", "10.77"] {
        let payment_id = PaymentId::generate();
        let charge = gateway
            .charge(&payment_id, &user(), &usd(amount))
            .await
            .unwrap();
        charged.push((payment_id, charge));
    }
    // WHEN each is cancelled THEN each answers its charge as it is: a capture
    // stays APPROVED, a decline keeps its code, a pending charge is still PENDING
    for (payment_id, charge) in &charged {
        assert_eq!(gateway.cancel(payment_id).await.unwrap(), *charge);
    }
    let statuses: Vec<_> = charged.iter().map(|(_, charge)| charge.status).collect();
    assert_eq!(
        statuses,
        [
            ChargeStatus::Approved,
            ChargeStatus::Declined,
            ChargeStatus::Pending
        ]
    );
    assert_eq!(charged[1].1.decline_code.as_deref(), Some("card_declined"));
    // AND the captured one can still be refunded
    let refund = gateway
        .refund(&RefundId::generate(), &charged[0].0, &usd("20.00"))
        .await
        .unwrap();
    assert!(refund.reference.starts_with("gwr_"), "{}", refund.reference);
}

#[tokio::test]
async fn a_failed_cancel_is_ambiguous_and_a_refused_one_unavailable() {
    // GIVEN the mock flaky at a rate of 1 (500 on every request)
    let error = ModeSettings {
        mode: Mode::Flaky,
        error_rate: ErrorRate::ONE,
        ..ModeSettings::default()
    };
    let gateway = client(&mock_with(error).await, KEY, 2_000);
    let payment_id = PaymentId::generate();
    // WHEN a cancel gets 500 THEN it may have happened, so it is not "declined"
    let err = gateway.cancel(&payment_id).await.unwrap_err();
    assert!(
        matches!(err, GatewayError::Ambiguous(ref m) if m.contains("GATEWAY_ERROR")),
        "{err}"
    );
    // GIVEN the mock down WHEN a cancel gets 503 THEN nothing happened: retry
    let down = ModeSettings {
        mode: Mode::Down,
        ..ModeSettings::default()
    };
    let gateway = client(&mock_with(down).await, KEY, 2_000);
    let err = gateway.cancel(&payment_id).await.unwrap_err();
    assert!(
        matches!(err, GatewayError::Unavailable(ref m) if m.starts_with("503")),
        "{err}"
    );
    // AND a wrong key is refused before anything
    let gateway = client(&mock().await, "not-the-key", 2_000);
    let err = gateway.cancel(&payment_id).await.unwrap_err();
    assert_eq!(rejection(&err), Some((401, "UNAUTHORIZED")), "{err}");
}

#[tokio::test]
async fn a_refund_of_a_captured_charge_gets_a_refund_reference() {
    let gateway = client(&mock().await, KEY, 2_000);
    let payment_id = PaymentId::generate();
    gateway
        .charge(&payment_id, &user(), &usd("20.00"))
        .await
        .unwrap();
    let refund = gateway
        .refund(&RefundId::generate(), &payment_id, &usd("5.00"))
        .await
        .unwrap();
    assert!(refund.reference.starts_with("gwr_"), "{}", refund.reference);
    let err = gateway
        .refund(&RefundId::generate(), &PaymentId::generate(), &usd("5.00"))
        .await
        .unwrap_err();
    assert_eq!(rejection(&err), Some((404, "PAYMENT_NOT_FOUND")), "{err}");
}

#[tokio::test]
async fn a_wrong_key_is_rejected_with_401() {
    let gateway = client(&mock().await, "not-the-key", 2_000);
    let err = charge(&gateway, "1.00").await.unwrap_err();
    assert_eq!(rejection(&err), Some((401, "UNAUTHORIZED")), "{err}");
    assert!(!format!("{gateway:?}").contains("not-the-key"));
}

#[tokio::test]
async fn a_timeout_after_sending_is_ambiguous_for_a_charge_but_not_for_a_lookup() {
    // GIVEN a gateway slower (400 ms) than our request timeout (150 ms)
    let slow = ModeSettings {
        mode: Mode::Slow,
        latency_ms: 400,
        ..ModeSettings::default()
    };
    let gateway = client(&mock_with(slow).await, KEY, 150);
    // WHEN a charge times out THEN it may have been captured
    let err = charge(&gateway, "1.00").await.unwrap_err();
    assert!(
        matches!(err, GatewayError::Ambiguous(ref m) if m.contains("timed out")),
        "{err}"
    );
    // and a lookup that times out is merely unavailable (it changed nothing)
    let err = gateway.status(&PaymentId::generate()).await.unwrap_err();
    assert!(matches!(err, GatewayError::Unavailable(_)), "{err}");
}

#[tokio::test]
async fn a_gateway_that_is_down_or_not_listening_is_unavailable() {
    let down = ModeSettings {
        mode: Mode::Down,
        ..ModeSettings::default()
    };
    let gateway = client(&mock_with(down).await, KEY, 2_000);
    let err = charge(&gateway, "1.00").await.unwrap_err();
    assert!(
        matches!(err, GatewayError::Unavailable(ref m) if m.starts_with("503")),
        "{err}"
    );
    // a port nobody listens on: the connection is refused, nothing was sent
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let err = charge(&client(&url, KEY, 2_000), "1.00").await.unwrap_err();
    assert!(matches!(err, GatewayError::Unavailable(_)), "{err}");
    // a host that never answers (TEST-NET-1): the connect timeout (200 ms), or
    // an unreachable network, fires before anything is sent
    let err = charge(&client("http://192.0.2.1:9", KEY, 2_000), "1.00")
        .await
        .unwrap_err();
    assert!(matches!(err, GatewayError::Unavailable(_)), "{err}");
}

type Seen = Arc<Mutex<Vec<(HeaderMap, Value)>>>;

/// A gateway that records what it receives and answers 200 with a body that
/// is not a charge, 504 to refunds, the router's own 404 to lookups and 409
/// (a request in flight) to cancels.
async fn odd_gateway() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let record = seen.clone();
    let record_cancel = seen.clone();
    let router = axum::Router::new()
        .route(
            "/v1/payments",
            post(
                move |headers: HeaderMap, Json(body): Json<Value>| async move {
                    record.lock().unwrap().push((headers, body));
                    (StatusCode::OK, Json(json!({"ok": true})))
                },
            ),
        )
        .route(
            "/v1/refunds",
            post(|| async { StatusCode::GATEWAY_TIMEOUT }),
        )
        .route(
            "/v1/payments/{id}",
            get(|| async {
                let body = json!({"error": {"code": "NOT_FOUND", "message": "no route"}});
                (StatusCode::NOT_FOUND, Json(body))
            }),
        )
        .route(
            "/v1/payments/{id}/cancel",
            post(move |headers: HeaderMap, body: String| async move {
                record_cancel.lock().unwrap().push((headers, json!(body)));
                let body = json!({"error": {"code": "REQUEST_IN_PROGRESS", "message": "busy"}});
                (StatusCode::CONFLICT, Json(body))
            }),
        );
    (serve(router).await, seen)
}

#[tokio::test]
async fn requests_follow_the_contract_and_odd_answers_are_classified() {
    let (url, seen) = odd_gateway().await;
    let gateway = client(&format!("{url}/"), KEY, 2_000);
    let payment_id = PaymentId::generate();
    let eur = Money::parse("10.5", "EUR").unwrap();
    // a 200 that is not a charge: the charge may have happened
    let err = gateway
        .charge(&payment_id, &user(), &eur)
        .await
        .unwrap_err();
    assert!(matches!(err, GatewayError::Ambiguous(_)), "{err}");
    let (headers, body) = seen.lock().unwrap().pop().unwrap();
    assert_eq!(headers["x-api-key"], KEY);
    assert_eq!(headers["idempotency-key"], payment_id.to_string().as_str());
    assert_eq!(
        body,
        json!({"paymentId": payment_id.to_string(), "amount": "10.50", "currency": "EUR",
               "userId": "user_1"})
    );
    // a 404 that is not the gateway's PAYMENT_NOT_FOUND is not "never charged"
    let err = gateway.status(&payment_id).await.unwrap_err();
    assert!(
        matches!(err, GatewayError::Rejected { status: 404, .. }),
        "{err}"
    );
    // a 504 from a proxy: the refund may have happened
    let err = gateway
        .refund(&RefundId::generate(), &payment_id, &eur)
        .await
        .unwrap_err();
    assert!(matches!(err, GatewayError::Ambiguous(_)), "{err}");
    // a cancel is a bodiless POST to the payment's cancel path; a 409 means
    // another request under this payment is in flight: the outcome is unknown
    let err = gateway.cancel(&payment_id).await.unwrap_err();
    assert!(
        matches!(err, GatewayError::Ambiguous(ref m) if m.contains("REQUEST_IN_PROGRESS")),
        "{err}"
    );
    let (headers, body) = seen.lock().unwrap().pop().unwrap();
    assert_eq!(headers["x-api-key"], KEY);
    assert_eq!(body, json!(""));
}
