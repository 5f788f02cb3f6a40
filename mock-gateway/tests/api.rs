//! HTTP contract tests: `app(state)` driven with `tower::ServiceExt::oneshot`, no sockets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use mock_gateway::{
    ApiKey, AppState, GatewayConfig, Limits, MAX_BODY_BYTES, ManualClock, ModeSettings, app,
};
use serde_json::{Value, json};
use time::macros::datetime;
use tower::ServiceExt;

const KEY: &str = "test-key";

struct Gw {
    app: Router,
    clock: Arc<ManualClock>,
}

fn gateway() -> Gw {
    gateway_with(ModeSettings::default(), Limits::default())
}

fn gateway_with(settings: ModeSettings, limits: Limits) -> Gw {
    let clock = Arc::new(ManualClock::new(datetime!(2026-01-02 03:04:05.678 UTC)));
    let config = GatewayConfig {
        api_key: ApiKey::new(KEY).unwrap(),
        settings,
    };
    let state = AppState::with_clock(config, clock.clone()).with_limits(limits);
    Gw {
        app: app(state),
        clock,
    }
}

fn request(method: &str, uri: &str, key: Option<&str>, body: Option<&str>) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri(uri);
    if let Some(key) = key {
        builder = builder.header("X-API-Key", key);
    }
    match body {
        Some(body) => builder
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_owned()))
            .unwrap(),
        None => builder.body(Body::empty()).unwrap(),
    }
}

impl Gw {
    async fn send(&self, request: Request<Body>) -> (StatusCode, Value) {
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned());
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(
            content_type.as_deref(),
            Some("application/json"),
            "every response is JSON ({status})"
        );
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    async fn post(&self, uri: &str, body: &str) -> (StatusCode, Value) {
        self.send(request("POST", uri, Some(KEY), Some(body))).await
    }

    async fn get(&self, uri: &str) -> (StatusCode, Value) {
        self.send(request("GET", uri, Some(KEY), None)).await
    }

    async fn charge(&self, payment_id: &str, amount: &str) -> (StatusCode, Value) {
        self.charge_in(payment_id, amount, "USD").await
    }

    async fn charge_in(&self, payment_id: &str, amount: &str, ccy: &str) -> (StatusCode, Value) {
        let body = json!({"paymentId": payment_id, "amount": amount, "currency": ccy});
        self.post("/v1/payments", &body.to_string()).await
    }

    async fn status_of(&self, payment_id: &str) -> (StatusCode, Value) {
        self.get(&format!("/v1/payments/{payment_id}")).await
    }

    async fn cancel(&self, payment_id: &str) -> (StatusCode, Value) {
        let uri = format!("/v1/payments/{payment_id}/cancel");
        self.send(request("POST", &uri, Some(KEY), None)).await
    }

    async fn refund(&self, refund_id: &str, payment_id: &str, amount: &str) -> (StatusCode, Value) {
        let body = json!({"refundId": refund_id, "paymentId": payment_id, "amount": amount, "currency": "USD"});
        self.post("/v1/refunds", &body.to_string()).await
    }

    async fn control(&self, body: Value) -> (StatusCode, Value) {
        self.send(request(
            "POST",
            "/control/mode",
            None,
            Some(&body.to_string()),
        ))
        .await
    }

    async fn stats(&self) -> Value {
        let (status, body) = self
            .send(request("GET", "/control/stats", None, None))
            .await;
        assert_eq!(status, StatusCode::OK);
        body
    }
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap()
}

// ---------------------------------------------------------------- auth, health, routing

#[tokio::test]
async fn charges_without_or_with_a_wrong_api_key_are_unauthorized() {
    // GIVEN a gateway
    let gw = gateway();
    let body = r#"{"paymentId":"pay_1","amount":"50.00","currency":"USD"}"#;
    for key in [None, Some("wrong-key"), Some("")] {
        // WHEN a charge is sent without the right key
        let (status, json) = gw
            .send(request("POST", "/v1/payments", key, Some(body)))
            .await;
        // THEN 401 UNAUTHORIZED with a message
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{key:?}");
        assert_eq!(code(&json), "UNAUTHORIZED");
        assert!(json["error"]["message"].as_str().unwrap().len() > 5);
    }
    // AND the status and refund routes are guarded too
    let (status, _) = gw
        .send(request("GET", "/v1/payments/pay_1", None, None))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = gw
        .send(request("POST", "/v1/refunds", Some("nope"), Some("{}")))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // AND nothing was charged
    assert_eq!(gw.status_of("pay_1").await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn health_needs_no_key_and_reports_the_mode() {
    let gw = gateway();
    let (status, body) = gw.send(request("GET", "/health", None, None)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"status": "ok", "mode": "normal"}));
}

#[tokio::test]
async fn unknown_routes_and_methods_get_json_errors() {
    let gw = gateway();
    let (status, body) = gw.get("/v2/nothing").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(code(&body), "NOT_FOUND");
    let (status, body) = gw
        .send(request("DELETE", "/v1/payments", Some(KEY), None))
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(code(&body), "METHOD_NOT_ALLOWED");
}

// ---------------------------------------------------------------- charges in normal mode

#[tokio::test]
async fn an_ordinary_amount_is_approved() {
    // GIVEN a gateway in normal mode
    let gw = gateway();
    // WHEN 50.00 USD is charged
    let (status, body) = gw.charge("pay_ok", "50.00").await;
    // THEN 200 APPROVED with the full body
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["paymentId"], "pay_ok");
    assert_eq!(body["status"], "APPROVED");
    assert_eq!(body["amount"], "50.00");
    assert_eq!(body["currency"], "USD");
    assert_eq!(body["createdAt"], "2026-01-02T03:04:05.678Z");
    assert_eq!(body["updatedAt"], body["createdAt"]);
    assert!(body["reference"].as_str().unwrap().starts_with("gw_"));
    assert!(body["message"].is_string());
    assert!(body.get("declineCode").is_none());
    // AND the status lookup shows the same charge
    let (status, looked_up) = gw.status_of("pay_ok").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(looked_up, body);
}

#[tokio::test]
async fn amounts_are_rendered_at_the_currency_scale() {
    let gw = gateway();
    assert_eq!(gw.charge("pay_a", "50").await.1["amount"], "50.00");
    assert_eq!(gw.charge_in("pay_b", "500", "JPY").await.1["amount"], "500");
    assert_eq!(
        gw.charge_in("pay_c", "1.5", "KWD").await.1["amount"],
        "1.500"
    );
}

#[tokio::test]
async fn cents_13_are_declined() {
    let gw = gateway();
    // WHEN 10.13 is charged
    let (status, body) = gw.charge("pay_dec", "10.13").await;
    // THEN 402 DECLINED with a decline code
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(body["status"], "DECLINED");
    assert_eq!(body["declineCode"], "card_declined");
    assert!(body["reference"].as_str().unwrap().starts_with("gw_"));
    // AND the lookup answers 200 with the DECLINED status
    let (status, looked_up) = gw.status_of("pay_dec").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(looked_up["status"], "DECLINED");
}

#[tokio::test]
async fn amount_999_99_is_a_gateway_error_and_nothing_is_recorded() {
    let gw = gateway();
    // WHEN 999.99 is charged
    let (status, body) = gw.charge("pay_err", "999.99").await;
    // THEN 500 GATEWAY_ERROR
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(code(&body), "GATEWAY_ERROR");
    // AND the payment is unknown afterwards
    let (status, body) = gw.status_of("pay_err").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(code(&body), "PAYMENT_NOT_FOUND");
    // AND a retry with the same id can succeed (no idempotency record was kept)
    let (status, body) = gw.charge("pay_err", "50.00").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "APPROVED");
}

#[tokio::test]
async fn cents_77_are_pending_then_approved_after_the_delay() {
    // GIVEN a pending delay of 2 s on a manual clock
    let gw = gateway();
    // WHEN 10.77 is charged
    let (status, body) = gw.charge("pay_pend", "10.77").await;
    // THEN 202 PENDING
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(body["status"], "PENDING");
    let reference = body["reference"].clone();
    // AND it is still pending just before the delay
    gw.clock.advance(time::Duration::milliseconds(1999));
    assert_eq!(gw.status_of("pay_pend").await.1["status"], "PENDING");
    // AND approved once the delay has elapsed, updatedAt = createdAt + delay
    gw.clock.advance(time::Duration::milliseconds(1));
    let (status, body) = gw.status_of("pay_pend").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "APPROVED");
    assert_eq!(body["reference"], reference);
    assert_eq!(body["createdAt"], "2026-01-02T03:04:05.678Z");
    assert_eq!(body["updatedAt"], "2026-01-02T03:04:07.678Z");
    // AND a replay of the charge now answers 200 APPROVED
    let (status, body) = gw.charge("pay_pend", "10.77").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "APPROVED");
    assert_eq!(body["reference"], reference);
}

#[tokio::test]
async fn pending_delay_set_to_zero_via_control_approves_at_once() {
    let gw = gateway();
    let (status, _) = gw
        .control(json!({"mode": "normal", "pendingDelayMs": 0}))
        .await;
    assert_eq!(status, StatusCode::OK);
    // WHEN a .77 amount is charged THEN the charge itself still answers PENDING
    let (status, body) = gw.charge("pay_p0", "1.77").await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(body["status"], "PENDING");
    // AND the very next lookup, with no time passing, is APPROVED
    let (status, body) = gw.status_of("pay_p0").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "APPROVED");
}

// ---------------------------------------------------------------- idempotency

#[tokio::test]
async fn a_repeated_charge_replays_the_stored_result() {
    let gw = gateway();
    // GIVEN an approved charge
    let (_, first) = gw.charge("pay_idem", "25.00").await;
    // WHEN the same request is sent again (also as "25" which is the same amount)
    let (status, second) = gw.charge("pay_idem", "25.00").await;
    let (_, third) = gw.charge("pay_idem", "25").await;
    // THEN the same result comes back with the same reference
    assert_eq!(status, StatusCode::OK);
    assert_eq!(second, first);
    assert_eq!(third["reference"], first["reference"]);
    // AND the stats count one charge and two replays
    let stats = gw.stats().await;
    assert_eq!(stats["byOutcome"]["APPROVED"], 1);
    assert_eq!(stats["byOutcome"]["REPLAY"], 2);
}

#[tokio::test]
async fn a_declined_charge_replays_as_declined() {
    let gw = gateway();
    let (_, first) = gw.charge("pay_d", "3.13").await;
    let (status, second) = gw.charge("pay_d", "3.13").await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(second, first);
}

#[tokio::test]
async fn the_same_payment_id_with_another_amount_or_currency_is_a_mismatch() {
    let gw = gateway();
    gw.charge("pay_mm", "25.00").await;
    let (status, body) = gw.charge("pay_mm", "26.00").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(code(&body), "IDEMPOTENCY_MISMATCH");
    let (status, body) = gw.charge_in("pay_mm", "25.00", "EUR").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(code(&body), "IDEMPOTENCY_MISMATCH");
}

// ---------------------------------------------------------------- validation

#[tokio::test]
async fn a_json_number_amount_is_rejected() {
    let gw = gateway();
    let (status, body) = gw
        .post(
            "/v1/payments",
            r#"{"paymentId":"pay_n","amount":50.00,"currency":"USD"}"#,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(code(&body), "INVALID_AMOUNT");
    assert_eq!(gw.status_of("pay_n").await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn malformed_requests_are_400_with_a_json_error() {
    let gw = gateway();
    let cases = [
        (
            r#"{"paymentId":"p1","amount":"abc","currency":"USD"}"#,
            "INVALID_AMOUNT",
        ),
        (
            r#"{"paymentId":"p1","amount":"10.001","currency":"USD"}"#,
            "INVALID_AMOUNT",
        ),
        (
            r#"{"paymentId":"p1","amount":"0.00","currency":"USD"}"#,
            "INVALID_AMOUNT",
        ),
        (
            r#"{"paymentId":"p1","amount":"-5","currency":"USD"}"#,
            "INVALID_AMOUNT",
        ),
        (
            r#"{"paymentId":"p1","amount":"5","currency":"XYZ"}"#,
            "INVALID_CURRENCY",
        ),
        (
            r#"{"paymentId":"bad id","amount":"5","currency":"USD"}"#,
            "INVALID_REQUEST",
        ),
        (r#"{"amount":"5","currency":"USD"}"#, "INVALID_REQUEST"),
        (r#"{"paymentId":"p1","amount":"5""#, "INVALID_JSON"),
        ("not json", "INVALID_JSON"),
    ];
    for (body, expected) in cases {
        let (status, json) = gw.post("/v1/payments", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(code(&json), expected, "{body}");
    }
}

#[tokio::test]
async fn a_body_over_64_kib_is_rejected() {
    let gw = gateway();
    let description = "x".repeat(MAX_BODY_BYTES);
    let body = json!({"paymentId": "pay_big", "amount": "1.00", "currency": "USD", "description": description});
    let (status, json) = gw.post("/v1/payments", &body.to_string()).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(code(&json), "PAYLOAD_TOO_LARGE");
}

#[tokio::test]
async fn a_body_without_json_content_type_is_rejected() {
    let gw = gateway();
    let request = Request::builder()
        .method("POST")
        .uri("/v1/payments")
        .header("X-API-Key", KEY)
        .body(Body::from(
            r#"{"paymentId":"p","amount":"1.00","currency":"USD"}"#,
        ))
        .unwrap();
    let (status, json) = gw.send(request).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(code(&json), "UNSUPPORTED_MEDIA_TYPE");
}

#[tokio::test]
async fn storage_is_bounded() {
    // GIVEN room for one charge
    let gw = gateway_with(
        ModeSettings::default(),
        Limits {
            max_charges: 1,
            max_refunds: 1,
        },
    );
    assert_eq!(gw.charge("pay_1", "1.00").await.0, StatusCode::OK);
    // WHEN a second charge arrives THEN 507 STORAGE_FULL
    let (status, body) = gw.charge("pay_2", "1.00").await;
    assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE);
    assert_eq!(code(&body), "STORAGE_FULL");
    // AND replays of the stored one still work
    assert_eq!(gw.charge("pay_1", "1.00").await.0, StatusCode::OK);
    // AND refunds are bounded the same way
    assert_eq!(gw.refund("ref_1", "pay_1", "0.10").await.0, StatusCode::OK);
    let (status, body) = gw.refund("ref_2", "pay_1", "0.10").await;
    assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE);
    assert_eq!(code(&body), "STORAGE_FULL");
}

// ---------------------------------------------------------------- refunds

#[tokio::test]
async fn a_full_refund_succeeds() {
    let gw = gateway();
    gw.charge("pay_r", "40.00").await;
    // WHEN the whole amount is refunded
    let (status, body) = gw.refund("ref_full", "pay_r", "40.00").await;
    // THEN 200 REFUNDED
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["refundId"], "ref_full");
    assert_eq!(body["paymentId"], "pay_r");
    assert_eq!(body["status"], "REFUNDED");
    assert_eq!(body["amount"], "40.00");
    assert_eq!(body["currency"], "USD");
    assert!(body["reference"].as_str().unwrap().starts_with("gwr_"));
    assert_eq!(body["createdAt"], "2026-01-02T03:04:05.678Z");
    // AND nothing more can be refunded
    let (status, body) = gw.refund("ref_more", "pay_r", "0.01").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(code(&body), "REFUND_EXCEEDS_CAPTURE");
}

#[tokio::test]
async fn partial_refunds_add_up_and_an_over_refund_is_rejected() {
    let gw = gateway();
    gw.charge("pay_p", "100.00").await;
    assert_eq!(gw.refund("ref_a", "pay_p", "30.00").await.0, StatusCode::OK);
    assert_eq!(gw.refund("ref_b", "pay_p", "50").await.0, StatusCode::OK);
    // WHEN 20.01 more is asked (80 already refunded of 100)
    let (status, body) = gw.refund("ref_c", "pay_p", "20.01").await;
    // THEN 422 and the over-refund is not recorded
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(code(&body), "REFUND_EXCEEDS_CAPTURE");
    // AND exactly the remainder still fits
    assert_eq!(
        gw.refund("ref_c2", "pay_p", "20.00").await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn refunds_are_idempotent_per_refund_id() {
    let gw = gateway();
    gw.charge("pay_ri", "10.00").await;
    let (_, first) = gw.refund("ref_i", "pay_ri", "10.00").await;
    // WHEN the same refund is sent again THEN the same result (not an over-refund)
    let (status, second) = gw.refund("ref_i", "pay_ri", "10.00").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(second, first);
    // WHEN the same refundId comes with a different amount THEN 422 mismatch
    let (status, body) = gw.refund("ref_i", "pay_ri", "5.00").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(code(&body), "IDEMPOTENCY_MISMATCH");
    let stats = gw.stats().await;
    assert_eq!(stats["byOutcome"]["REFUNDED"], 1);
    assert_eq!(stats["byOutcome"]["REPLAY"], 1);
}

#[tokio::test]
async fn refunds_need_a_known_approved_payment_in_the_same_currency() {
    let gw = gateway();
    // unknown payment → 404
    let (status, body) = gw.refund("ref_x", "pay_missing", "1.00").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(code(&body), "PAYMENT_NOT_FOUND");
    // declined payment → 409
    gw.charge("pay_dec", "1.13").await;
    let (status, body) = gw.refund("ref_d", "pay_dec", "1.00").await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(code(&body), "PAYMENT_NOT_CAPTURED");
    // pending payment → 409, then allowed once approved
    gw.charge("pay_pen", "5.77").await;
    assert_eq!(
        gw.refund("ref_p", "pay_pen", "1.00").await.0,
        StatusCode::CONFLICT
    );
    gw.clock.advance(time::Duration::seconds(2));
    assert_eq!(
        gw.refund("ref_p", "pay_pen", "1.00").await.0,
        StatusCode::OK
    );
    // currency mismatch → 422
    gw.charge("pay_usd", "9.00").await;
    let body =
        json!({"refundId": "ref_eur", "paymentId": "pay_usd", "amount": "1.00", "currency": "EUR"});
    let (status, json) = gw.post("/v1/refunds", &body.to_string()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(code(&json), "CURRENCY_MISMATCH");
    // JSON number amount → 400
    let (status, json) = gw
        .post(
            "/v1/refunds",
            r#"{"refundId":"r","paymentId":"pay_usd","amount":1,"currency":"USD"}"#,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(code(&json), "INVALID_AMOUNT");
}

// ---------------------------------------------------------------- cancels

#[tokio::test]
async fn a_cancel_of_an_unknown_payment_declines_it_for_good() {
    // GIVEN a gateway that has never seen pay_c
    let gw = gateway();
    // WHEN pay_c is cancelled
    let (status, cancel) = gw.cancel("pay_c").await;
    // THEN 200 DECLINED with declineCode "canceled" and no amount
    assert_eq!(status, StatusCode::OK);
    assert_eq!(cancel["paymentId"], "pay_c");
    assert_eq!(cancel["status"], "DECLINED");
    assert_eq!(cancel["declineCode"], "canceled");
    assert!(cancel["reference"].as_str().unwrap().starts_with("gwc_"));
    assert!(cancel["message"].is_string());
    assert_eq!(cancel["createdAt"], "2026-01-02T03:04:05.678Z");
    assert_eq!(cancel["updatedAt"], cancel["createdAt"]);
    assert!(cancel.get("amount").is_none());
    assert!(cancel.get("currency").is_none());
    // AND a later charge, whatever its amount or currency, replays the tombstone as 402
    for (amount, ccy) in [("50.00", "USD"), ("10.77", "USD"), ("500", "JPY")] {
        let (status, body) = gw.charge_in("pay_c", amount, ccy).await;
        assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{amount} {ccy}");
        assert_eq!(body, cancel, "{amount} {ccy}");
    }
    // AND the status lookup shows DECLINED / canceled
    let (status, looked_up) = gw.status_of("pay_c").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(looked_up, cancel);
    // AND the stats count one tombstone and three charge replays
    let stats = gw.stats().await;
    assert_eq!(stats["byRoute"]["POST /v1/payments/{paymentId}/cancel"], 1);
    assert_eq!(stats["byOutcome"]["CANCELED"], 1);
    assert_eq!(stats["byOutcome"]["REPLAY"], 3);
    assert_eq!(stats["byOutcome"]["APPROVED"], 0);
}

#[tokio::test]
async fn a_cancel_never_undoes_a_capture() {
    // GIVEN an approved charge
    let gw = gateway();
    let (_, charged) = gw.charge("pay_ca", "50.00").await;
    // WHEN it is cancelled
    let (status, body) = gw.cancel("pay_ca").await;
    // THEN 200 APPROVED, the charge unchanged
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, charged);
    // AND a replay of the charge still answers 200 APPROVED
    let (status, replayed) = gw.charge("pay_ca", "50.00").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(replayed, charged);
    // AND it can still be refunded
    assert_eq!(
        gw.refund("ref_ca", "pay_ca", "50.00").await.0,
        StatusCode::OK
    );
    let stats = gw.stats().await;
    assert_eq!(stats["byOutcome"]["APPROVED"], 2);
    assert_eq!(stats["byOutcome"]["CANCELED"], 0);
}

#[tokio::test]
async fn a_cancel_of_a_pending_charge_changes_nothing() {
    // GIVEN a pending charge (approved after 2 s)
    let gw = gateway();
    let (_, charged) = gw.charge("pay_cp", "10.77").await;
    // WHEN it is cancelled before the delay
    let (status, body) = gw.cancel("pay_cp").await;
    // THEN 200 PENDING: the caller asks again later
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, charged);
    assert_eq!(body["status"], "PENDING");
    // AND the charge still turns APPROVED, which a later cancel then reports
    gw.clock.advance(time::Duration::seconds(2));
    let (status, body) = gw.cancel("pay_cp").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "APPROVED");
    assert_eq!(body["reference"], charged["reference"]);
    assert_eq!(gw.status_of("pay_cp").await.1, body);
}

#[tokio::test]
async fn cancels_are_idempotent() {
    let gw = gateway();
    // GIVEN a cancelled unknown payment WHEN it is cancelled again THEN the same answer
    let (_, first) = gw.cancel("pay_twice").await;
    let (status, second) = gw.cancel("pay_twice").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(second, first);
    // AND a declined charge stays as it was, with its own decline code
    let (_, declined) = gw.charge("pay_cd", "1.13").await;
    for _ in 0..2 {
        let (status, body) = gw.cancel("pay_cd").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, declined);
        assert_eq!(body["declineCode"], "card_declined");
    }
    // AND only the first cancel recorded a tombstone; the others count like lookups
    let stats = gw.stats().await;
    assert_eq!(stats["byOutcome"]["CANCELED"], 1);
    assert_eq!(stats["byOutcome"]["DECLINED"], 4);
}

#[tokio::test]
async fn a_cancel_in_down_or_flaky_mode_records_nothing_and_works_in_error_mode() {
    let gw = gateway();
    // down: 503, with or without a key
    gw.control(json!({"mode": "down"})).await;
    let (status, body) = gw.cancel("pay_cm").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(code(&body), "SERVICE_UNAVAILABLE");
    let (status, _) = gw
        .send(request("POST", "/v1/payments/pay_cm/cancel", None, None))
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    // error: charges fail, but a cancel works like a status lookup
    gw.control(json!({"mode": "error"})).await;
    let (status, body) = gw.cancel("pay_ce").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["declineCode"], "canceled");
    // flaky with errorRate 1: 500 every time
    gw.control(json!({"mode": "flaky", "errorRate": 1})).await;
    let (status, body) = gw.cancel("pay_cm").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(code(&body), "GATEWAY_ERROR");
    // back to normal: no tombstone, so the payment is unknown and can be charged
    gw.control(json!({"mode": "normal"})).await;
    assert_eq!(gw.status_of("pay_cm").await.0, StatusCode::NOT_FOUND);
    let (status, body) = gw.charge("pay_cm", "5.00").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "APPROVED");
    let stats = gw.stats().await;
    assert_eq!(stats["byOutcome"]["CANCELED"], 1);
    assert_eq!(stats["byOutcome"]["UNAVAILABLE"], 2);
    assert_eq!(stats["byOutcome"]["ERROR"], 1);
}

#[tokio::test]
async fn a_cancel_in_slow_mode_waits_first() {
    let gw = gateway();
    gw.control(json!({"mode": "slow", "latencyMs": 20})).await;
    let started = std::time::Instant::now();
    let (status, body) = gw.cancel("pay_cs").await;
    assert!(started.elapsed() >= std::time::Duration::from_millis(20));
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["declineCode"], "canceled");
}

#[tokio::test]
async fn a_cancel_without_or_with_a_wrong_api_key_is_unauthorized() {
    let gw = gateway();
    for key in [None, Some("wrong-key"), Some("")] {
        let (status, body) = gw
            .send(request("POST", "/v1/payments/pay_ck/cancel", key, None))
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{key:?}");
        assert_eq!(code(&body), "UNAUTHORIZED");
    }
    // AND nothing was recorded
    assert_eq!(gw.status_of("pay_ck").await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_refund_of_a_cancelled_payment_is_not_captured() {
    let gw = gateway();
    gw.cancel("pay_cr").await;
    let (status, body) = gw.refund("ref_cr", "pay_cr", "1.00").await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(code(&body), "PAYMENT_NOT_CAPTURED");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("DECLINED")
    );
}

#[tokio::test]
async fn a_cancel_ignores_its_body_and_validates_the_payment_id() {
    let gw = gateway();
    // a JSON body, and a text body without a content type, are both ignored
    let (status, body) = gw.post("/v1/payments/pay_cb1/cancel", "{}").await;
    assert_eq!(
        (status, body["declineCode"].as_str()),
        (StatusCode::OK, Some("canceled"))
    );
    let request = Request::builder()
        .method("POST")
        .uri("/v1/payments/pay_cb2/cancel")
        .header("X-API-Key", KEY)
        .body(Body::from("not json"))
        .unwrap();
    let (status, body) = gw.send(request).await;
    assert_eq!(
        (status, body["declineCode"].as_str()),
        (StatusCode::OK, Some("canceled"))
    );
    // an id a charge would refuse is refused here too, and not recorded
    let (status, body) = gw.cancel("bad%20id").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(code(&body), "INVALID_REQUEST");
    assert_eq!(gw.status_of("bad%20id").await.0, StatusCode::NOT_FOUND);
    // only POST is allowed
    let (status, body) = gw.get("/v1/payments/pay_cb1/cancel").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(code(&body), "METHOD_NOT_ALLOWED");
}

#[tokio::test]
async fn tombstones_count_towards_the_charge_limit() {
    // GIVEN room for one charge, taken by a tombstone
    let gw = gateway_with(
        ModeSettings::default(),
        Limits {
            max_charges: 1,
            max_refunds: 1,
        },
    );
    assert_eq!(gw.cancel("pay_t1").await.0, StatusCode::OK);
    // WHEN another payment is cancelled or charged THEN 507
    let (status, body) = gw.cancel("pay_t2").await;
    assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE);
    assert_eq!(code(&body), "STORAGE_FULL");
    assert_eq!(
        gw.charge("pay_t2", "1.00").await.0,
        StatusCode::INSUFFICIENT_STORAGE
    );
    // AND the tombstone itself still answers
    assert_eq!(gw.cancel("pay_t1").await.0, StatusCode::OK);
}

// ---------------------------------------------------------------- control modes

#[tokio::test]
async fn control_routes_refuse_browsers_and_change_nothing() {
    // GIVEN a request as a web page's form POST sends it (with Origin)
    let gw = gateway();
    let mut flip = request("POST", "/control/mode", None, Some(r#"{"mode":"down"}"#));
    let origin = axum::http::HeaderValue::from_static("https://example.com");
    flip.headers_mut()
        .insert(axum::http::header::ORIGIN, origin);
    // WHEN it reaches /control THEN it is refused
    let (status, body) = gw.send(flip).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"]["code"], "browser_refused");
    // AND the mode is unchanged
    let (_, mode) = gw.send(request("GET", "/control/mode", None, None)).await;
    assert_eq!(mode["mode"], "normal");
}

#[tokio::test]
async fn control_mode_reports_and_changes_the_settings() {
    let gw = gateway();
    let (status, body) = gw.send(request("GET", "/control/mode", None, None)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"mode": "normal", "latencyMs": 1000, "errorRate": "0.5", "seed": 42, "pendingDelayMs": 2000})
    );
    let (status, body) = gw
        .control(json!({"mode": "flaky", "errorRate": "0.25", "seed": 9}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"mode": "flaky", "latencyMs": 1000, "errorRate": "0.25", "seed": 9, "pendingDelayMs": 2000})
    );
    let (_, health) = gw.send(request("GET", "/health", None, None)).await;
    assert_eq!(health["mode"], "flaky");
}

#[tokio::test]
async fn invalid_modes_and_parameters_are_rejected() {
    let gw = gateway();
    let (status, body) = gw.control(json!({"mode": "sideways"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(code(&body), "INVALID_MODE");
    for bad in [
        json!({"mode": "flaky", "errorRate": "1.5"}),
        json!({"mode": "flaky", "errorRate": -0.1}),
        json!({"mode": "flaky", "errorRate": "abc"}),
        json!({"mode": "slow", "latencyMs": 3_600_000}),
        json!({"mode": "slow", "latencyMs": -1}),
        json!({"mode": "normal", "pendingDelayMs": 99_999_999}),
        json!({"mode": "normal", "surprise": true}),
        json!({}),
    ] {
        let (status, body) = gw.control(bad.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(code(&body).starts_with("INVALID_"), "{bad}");
    }
    // AND the mode did not change
    let (_, body) = gw.send(request("GET", "/health", None, None)).await;
    assert_eq!(body["mode"], "normal");
}

#[tokio::test]
async fn down_mode_answers_503_on_every_v1_route() {
    let gw = gateway();
    gw.charge("pay_before", "5.00").await;
    gw.control(json!({"mode": "down"})).await;
    let (status, body) = gw.charge("pay_dn", "5.00").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(code(&body), "SERVICE_UNAVAILABLE");
    assert_eq!(
        gw.status_of("pay_before").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        gw.refund("ref_dn", "pay_before", "1.00").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    // even without a key: the service is unreachable
    let (status, _) = gw
        .send(request("GET", "/v1/payments/pay_before", None, None))
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    // health and control still answer
    let (status, body) = gw.send(request("GET", "/health", None, None)).await;
    assert_eq!(
        (status, body["mode"].as_str()),
        (StatusCode::OK, Some("down"))
    );
    let stats = gw.stats().await;
    assert_eq!(stats["byOutcome"]["UNAVAILABLE"], 4);
}

#[tokio::test]
async fn error_mode_fails_charges_and_refunds_without_recording() {
    let gw = gateway();
    gw.charge("pay_e0", "5.00").await;
    gw.control(json!({"mode": "error"})).await;
    let (status, body) = gw.charge("pay_e1", "5.00").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(code(&body), "GATEWAY_ERROR");
    let (status, body) = gw.refund("ref_e", "pay_e0", "1.00").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(code(&body), "GATEWAY_ERROR");
    // back to normal: nothing was recorded
    gw.control(json!({"mode": "normal"})).await;
    assert_eq!(gw.status_of("pay_e1").await.0, StatusCode::NOT_FOUND);
    assert_eq!(gw.refund("ref_e", "pay_e0", "5.00").await.0, StatusCode::OK);
}

#[tokio::test]
async fn flaky_mode_with_error_rate_1_always_fails_and_0_never_fails() {
    let gw = gateway();
    // errorRate as a JSON number
    gw.control(json!({"mode": "flaky", "errorRate": 1})).await;
    for i in 0..5 {
        let (status, body) = gw.charge(&format!("pay_f{i}"), "5.00").await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(code(&body), "GATEWAY_ERROR");
    }
    // errorRate as a decimal string
    gw.control(json!({"mode": "flaky", "errorRate": "0"})).await;
    for i in 0..5 {
        let (status, body) = gw.charge(&format!("pay_f{i}"), "5.00").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["status"], "APPROVED");
    }
    // flaky otherwise behaves as normal
    assert_eq!(
        gw.charge("pay_f_dec", "5.13").await.0,
        StatusCode::PAYMENT_REQUIRED
    );
}

#[tokio::test]
async fn flaky_mode_is_reproducible_for_a_seed() {
    async fn run() -> Vec<StatusCode> {
        let gw = gateway();
        gw.control(json!({"mode": "flaky", "errorRate": "0.5", "seed": 1234}))
            .await;
        let mut seen = Vec::new();
        for i in 0..20 {
            seen.push(gw.charge(&format!("pay_{i}"), "5.00").await.0);
        }
        seen
    }
    let first = run().await;
    assert_eq!(first, run().await);
    assert!(first.contains(&StatusCode::OK));
    assert!(first.contains(&StatusCode::INTERNAL_SERVER_ERROR));
}

#[tokio::test]
async fn random_mode_is_reproducible_with_the_same_seed() {
    async fn outcomes(seed: u64) -> Vec<String> {
        let gw = gateway();
        gw.control(json!({"mode": "random", "seed": seed})).await;
        let mut seen = Vec::new();
        for i in 0..40 {
            let (status, body) = gw.charge(&format!("pay_{i}"), "5.00").await;
            let outcome = match status {
                StatusCode::INTERNAL_SERVER_ERROR => "ERROR".to_owned(),
                _ => body["status"].as_str().unwrap().to_owned(),
            };
            seen.push(outcome);
        }
        seen
    }
    // GIVEN two fresh gateways with the same seed WHEN 40 charges each
    let a = outcomes(7).await;
    let b = outcomes(7).await;
    // THEN the same sequence, with more than one kind of outcome
    assert_eq!(a, b);
    assert!(a.iter().any(|o| o == "APPROVED"));
    assert!(a.iter().any(|o| o != "APPROVED"));
    // AND the start-up seed gives a reproducible sequence too
    let settings = ModeSettings {
        mode: mock_gateway::Mode::Random,
        seed: 99,
        ..ModeSettings::default()
    };
    let mut runs = Vec::new();
    for _ in 0..2 {
        let gw = gateway_with(settings, Limits::default());
        let mut seen = Vec::new();
        for i in 0..20 {
            seen.push(gw.charge(&format!("pay_{i}"), "5.00").await.0);
        }
        runs.push(seen);
    }
    assert_eq!(runs[0], runs[1]);
}

#[tokio::test]
async fn approve_all_decline_all_and_pending_then_approve_ignore_the_amount() {
    let gw = gateway();
    gw.control(json!({"mode": "decline_all"})).await;
    let (status, body) = gw.charge("pay_da", "50.00").await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(body["status"], "DECLINED");
    assert_eq!(body["declineCode"], "card_declined");

    gw.control(json!({"mode": "approve_all"})).await;
    let (status, body) = gw.charge("pay_aa", "999.99").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "APPROVED");

    gw.control(json!({"mode": "pending_then_approve", "pendingDelayMs": 50}))
        .await;
    let (status, body) = gw.charge("pay_pta", "50.00").await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(body["status"], "PENDING");
    gw.clock.advance(time::Duration::milliseconds(50));
    assert_eq!(gw.status_of("pay_pta").await.1["status"], "APPROVED");
}

#[tokio::test]
async fn slow_mode_waits_then_behaves_as_normal() {
    let gw = gateway();
    gw.control(json!({"mode": "slow", "latencyMs": 20})).await;
    let started = std::time::Instant::now();
    let (status, body) = gw.charge("pay_slow", "5.13").await;
    assert!(started.elapsed() >= std::time::Duration::from_millis(20));
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(body["status"], "DECLINED");
}

#[tokio::test]
async fn reset_clears_everything_and_returns_to_normal() {
    let gw = gateway();
    gw.charge("pay_x", "5.00").await;
    gw.control(json!({"mode": "decline_all", "pendingDelayMs": 5}))
        .await;
    let (status, body) = gw.send(request("POST", "/control/reset", None, None)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["mode"], "normal");
    assert_eq!(body["pendingDelayMs"], 2000);
    assert_eq!(gw.status_of("pay_x").await.0, StatusCode::NOT_FOUND);
    let stats = gw.stats().await;
    // only the lookup just above
    assert_eq!(stats["total"], 1);
}

// ---------------------------------------------------------------- stats

#[tokio::test]
async fn stats_count_every_v1_call_by_route_and_outcome() {
    let gw = gateway();
    // GIVEN a mix of calls
    gw.charge("pay_1", "5.00").await; // APPROVED
    gw.charge("pay_2", "5.13").await; // DECLINED
    gw.charge("pay_3", "5.77").await; // PENDING
    gw.charge("pay_4", "999.99").await; // ERROR
    gw.charge("pay_1", "5.00").await; // REPLAY
    gw.status_of("pay_1").await; // APPROVED
    gw.status_of("pay_nope").await; // NOT_FOUND
    gw.refund("ref_1", "pay_1", "1.00").await; // REFUNDED
    gw.send(request("POST", "/v1/payments", None, Some("{}")))
        .await; // UNAUTHORIZED
    // control and health calls are not counted
    gw.send(request("GET", "/health", None, None)).await;
    gw.control(json!({"mode": "down"})).await;
    gw.charge("pay_5", "5.00").await; // UNAVAILABLE

    // WHEN the stats are read
    let stats = gw.stats().await;
    // THEN every /v1 call is counted once
    assert_eq!(stats["total"], 10);
    assert_eq!(stats["byRoute"]["POST /v1/payments"], 7);
    assert_eq!(stats["byRoute"]["GET /v1/payments/{paymentId}"], 2);
    assert_eq!(stats["byRoute"]["POST /v1/refunds"], 1);
    let by_outcome = &stats["byOutcome"];
    assert_eq!(by_outcome["APPROVED"], 2);
    assert_eq!(by_outcome["DECLINED"], 1);
    assert_eq!(by_outcome["PENDING"], 1);
    assert_eq!(by_outcome["ERROR"], 1);
    assert_eq!(by_outcome["REPLAY"], 1);
    assert_eq!(by_outcome["NOT_FOUND"], 1);
    assert_eq!(by_outcome["REFUNDED"], 1);
    assert_eq!(by_outcome["UNAUTHORIZED"], 1);
    assert_eq!(by_outcome["UNAVAILABLE"], 1);
}

#[tokio::test]
async fn stats_start_at_zero() {
    let gw = gateway();
    let stats = gw.stats().await;
    assert_eq!(stats["total"], 0);
    assert_eq!(stats["byRoute"]["POST /v1/payments"], 0);
    assert_eq!(stats["byOutcome"]["APPROVED"], 0);
}
