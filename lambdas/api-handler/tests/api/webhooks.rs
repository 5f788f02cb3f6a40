//! `POST /webhooks/gateway`: signed gateway events, verified, de-duplicated,
//! handed to the reconciler; anything forged, stale or malformed gets a 4xx
//! and changes nothing.

use std::sync::atomic::Ordering;

use serde_json::json;
use shared::domain::{PaymentId, Timestamp};
use shared::webhook::{SIGNATURE_HEADER, sign};

use crate::common::{Harness, Req, WEBHOOK_SECRET};

const PATH: &str = "/webhooks/gateway";

fn event(id: &str, event_type: &str, payment_id: PaymentId) -> String {
    json!({"id": id, "type": event_type, "created": Timestamp::now().unix_seconds(),
           "data": {"paymentId": payment_id.to_string(), "status": "APPROVED"}})
    .to_string()
}

fn signed(body: &str, secret: &[u8], at: i64) -> Req {
    Req::new("POST", PATH)
        .raw_body(body)
        .header(SIGNATURE_HEADER, &sign(secret, at, body.as_bytes()))
}

fn now() -> i64 {
    Timestamp::now().unix_seconds()
}

#[tokio::test]
async fn a_signed_event_is_handed_to_the_reconciler_once() {
    let h = Harness::new();
    let payment_id = PaymentId::generate();
    let body = event("evt_1", "charge.succeeded", payment_id);
    // WHEN the gateway delivers a signed event
    let first = h.send(signed(&body, WEBHOOK_SECRET, now())).await;
    // THEN it is accepted and the reconciler asked about its payment only
    assert_eq!(first.status, 202, "{}", first.body);
    assert_eq!(first.body["eventId"], "evt_1");
    assert_eq!(first.body["duplicate"], false);
    let requests = h.reconciler.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].payment_ids, vec![payment_id]);
    assert!(requests[0].refund_ids.is_empty());
    // AND the same event again (a redelivery) changes nothing
    let again = h.send(signed(&body, WEBHOOK_SECRET, now())).await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.body["duplicate"], true);
    assert_eq!(h.reconciler.requests.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn forged_tampered_stale_and_unsigned_events_are_refused_with_no_effect() {
    let h = Harness::new();
    let body = event("evt_2", "charge.failed", PaymentId::generate());
    let cases = [
        ("forged", signed(&body, b"someone else's secret", now())),
        (
            "tampered",
            Req::new("POST", PATH)
                .raw_body(&body.replace("evt_2", "evt_3"))
                .header(
                    SIGNATURE_HEADER,
                    &sign(WEBHOOK_SECRET, now(), body.as_bytes()),
                ),
        ),
        (
            "replayed after 5 minutes",
            signed(&body, WEBHOOK_SECRET, now() - 301),
        ),
        ("unsigned", Req::new("POST", PATH).raw_body(&body)),
        (
            "malformed signature",
            Req::new("POST", PATH)
                .raw_body(&body)
                .header(SIGNATURE_HEADER, "v1=abc"),
        ),
    ];
    for (what, request) in cases {
        let reply = h.send(request).await;
        assert_eq!(reply.status, 401, "{what}: {}", reply.body);
        assert_eq!(reply.body["error"]["code"], "invalid_signature", "{what}");
    }
    assert!(h.reconciler.requests.lock().unwrap().is_empty());
    // AND the event, once properly signed, is still new (nothing recorded it)
    let reply = h.send(signed(&body, WEBHOOK_SECRET, now())).await;
    assert_eq!(reply.status, 202, "{}", reply.body);
}

#[tokio::test]
async fn a_signed_body_that_is_not_an_event_is_a_400() {
    let h = Harness::new();
    let body = json!({"id": "evt_4", "type": "charge.exploded", "created": now()}).to_string();
    let reply = h.send(signed(&body, WEBHOOK_SECRET, now())).await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(h.reconciler.requests.lock().unwrap().is_empty());
}

#[tokio::test]
async fn an_event_not_handed_over_is_taken_again_on_its_next_delivery() {
    let h = Harness::new();
    let body = event("evt_5", "charge.succeeded", PaymentId::generate());
    h.reconciler.failing.store(true, Ordering::SeqCst);
    let reply = h.send(signed(&body, WEBHOOK_SECRET, now())).await;
    assert_eq!(reply.status, 503, "{}", reply.body);
    h.reconciler.failing.store(false, Ordering::SeqCst);
    let reply = h.send(signed(&body, WEBHOOK_SECRET, now())).await;
    assert_eq!(reply.status, 202, "{}", reply.body);
    assert_eq!(h.reconciler.requests.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn without_a_secret_webhooks_are_refused() {
    let mut h = Harness::new();
    h.deps.webhook_secret = None;
    let body = event("evt_6", "charge.succeeded", PaymentId::generate());
    let reply = h.send(signed(&body, WEBHOOK_SECRET, now())).await;
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert!(h.reconciler.requests.lock().unwrap().is_empty());
}
