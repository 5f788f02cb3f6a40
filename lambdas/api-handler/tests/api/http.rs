//! Cross-cutting HTTP behaviour: routing errors, content rules, request ids.

use serde_json::json;

use crate::common::{Harness, REQUEST_ID, Req};

#[tokio::test]
async fn health_is_ok() {
    let h = Harness::new();
    let reply = h.send(Req::get("/health")).await;
    assert_eq!(
        (reply.status, reply.body.clone()),
        (200, json!({"status": "ok"}))
    );
}

#[tokio::test]
async fn unknown_routes_are_404_and_wrong_methods_405_in_json() {
    let h = Harness::new();
    let missing = h.send(Req::get("/charges")).await;
    assert_eq!((missing.status, missing.code()), (404, "route_not_found"));
    assert_eq!(missing.body["error"]["type"], "not_found_error");
    let wrong = h.send(Req::new("DELETE", "/payments")).await;
    assert_eq!((wrong.status, wrong.code()), (405, "method_not_allowed"));
    assert_eq!(wrong.header("allow"), Some("GET, POST"));
    let put = h.send(Req::new("PUT", "/wallets/u1/credit")).await;
    assert_eq!((put.status, put.header("allow")), (405, Some("POST")));
}

#[tokio::test]
async fn bodies_must_be_json_and_at_most_64_kib() {
    let h = Harness::new();
    let body = r#"{"userId":"u1","amount":5,"currency":"USD"}"#;
    let form = Req::new("POST", "/payments")
        .raw_body("userId=u1&amount=5")
        .header("Content-Type", "application/x-www-form-urlencoded");
    let reply = h.send(form).await;
    assert_eq!(
        (reply.status, reply.code()),
        (415, "unsupported_media_type")
    );
    let mut untyped = Req::new("POST", "/payments").raw_body(body);
    untyped.headers.clear();
    assert_eq!(h.send(untyped).await.status, 415);
    let charset = Req::new("POST", "/payments")
        .raw_body(body)
        .header("Content-Type", "Application/JSON; charset=utf-8");
    assert_eq!(h.send(charset).await.status, 202);
    let huge = format!(
        r#"{{"userId":"u1","amount":5,"currency":"USD","description":"{}"}}"#,
        "d".repeat(65 * 1024)
    );
    let reply = h.send(Req::new("POST", "/payments").raw_body(&huge)).await;
    assert_eq!((reply.status, reply.code()), (413, "request_too_large"));
}

#[tokio::test]
async fn every_response_carries_the_request_id() {
    let h = Harness::new();
    let requests = [
        Req::get("/health"),
        Req::get("/nope"),
        Req::new("PATCH", "/payments"),
        Req::post("/payments", json!({"amount": 1})),
        Req::get("/payments/pay_bad"),
        Req::get("/wallets/u404"),
    ];
    for req in requests {
        let reply = h.send(req).await;
        assert_eq!(reply.header("x-request-id"), Some(REQUEST_ID));
        assert_eq!(reply.header("cache-control"), Some("no-store"));
    }
    // Without API Gateway's id, the Lambda request id is used.
    let mut bare = Req::get("/health");
    bare.request_id = None;
    let reply = h.send(bare).await;
    assert_eq!(reply.header("x-request-id"), Some("lambda-request-1"));
}

#[tokio::test]
async fn malformed_idempotency_keys_are_400() {
    let h = Harness::new();
    let body = json!({"userId": "u1", "amount": 5, "currency": "USD"});
    for key in ["k".repeat(256), "tab\tkey".to_owned(), String::new()] {
        let reply = h.send(Req::post("/payments", body.clone()).key(&key)).await;
        assert_eq!(
            (reply.status, reply.code()),
            (400, "invalid_idempotency_key"),
            "{key:?}"
        );
        assert_eq!(reply.param(), Some("Idempotency-Key"));
    }
    let longest = h
        .send(Req::post("/payments", body).key(&"k".repeat(255)))
        .await;
    assert_eq!(longest.status, 202);
    assert_eq!(h.saga.start_count(), 1);
}
