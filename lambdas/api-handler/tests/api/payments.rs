//! `POST /payments`, `GET /payments/{paymentId}`, `GET /payments?userId=…`.

use std::sync::Arc;

use api_handler::SagaStartError;
use api_handler::http::Request;
use api_handler::idempotency;
use api_handler::requests::CreatePayment;
use rust_decimal::Decimal;
use serde_json::json;
use shared::domain::{IdempotencyRecord, PaymentId, PaymentStatus, Timestamp};
use shared::ports::{IdempotencyRepo, PaymentEventRepo, PaymentRepo};
use shared::{RepoError, StoreError};

use crate::common::{CreateFailure, Harness, Reply, Req, StartAnswer, golden};

fn pay(body: serde_json::Value) -> Req {
    Req::post("/payments", body)
}

#[tokio::test]
async fn create_payment_answers_202_and_starts_its_saga() {
    // GIVEN an empty system
    let h = Harness::new();
    // WHEN a client creates a payment with a number amount and metadata
    let reply = h
        .send(pay(
            json!({"userId": "user_1", "amount": 50, "currency": "USD",
                         "orderId": "order-7", "description": "Coffee beans",
                         "metadata": {"channel": "web"}}),
        ))
        .await;
    // THEN 202 with the golden body, amounts as strings at the currency's scale
    assert_eq!(reply.status, 202);
    let payment_id = reply.text("paymentId");
    assert_eq!(
        golden(&reply.body, &["paymentId", "createdAt", "updatedAt"]),
        json!({
            "paymentId": "<paymentId>", "status": "PENDING",
            "executionArn": format!("arn:aws:states:us-east-1:123456789012:execution:payment-saga:{payment_id}"),
            "userId": "user_1", "amount": "50.00", "currency": "USD", "orderId": "order-7",
            "description": "Coffee beans", "metadata": {"channel": "web"},
            "gatewayReference": null, "failureReason": null, "refundedAmount": "0.00",
            "createdAt": "<createdAt>", "updatedAt": "<updatedAt>"
        })
    );
    assert!(payment_id.starts_with("pay_"));
    // AND the saga was started once, named by the payment, with the exact input
    let starts = h.saga.starts.lock().unwrap().clone();
    assert_eq!(starts.len(), 1);
    assert_eq!(
        serde_json::to_value(&starts[0]).unwrap(),
        json!({"paymentId": payment_id, "userId": "user_1",
               "amount": {"amount": "50.00", "currency": "USD"}, "orderId": "order-7",
               "description": "Coffee beans", "metadata": {"channel": "web"}})
    );
    // AND the PENDING payment is readable at once
    let stored = h.payment(&PaymentId::parse(&payment_id).unwrap()).await;
    assert_eq!(stored.status, PaymentStatus::Pending);
}

#[tokio::test]
async fn amounts_are_parsed_exactly_from_numbers_and_strings() {
    let h = Harness::with_amount_max(Decimal::MAX);
    let cases = [
        ("12345678901234567890.12", "USD", "12345678901234567890.12"),
        ("50.5", "USD", "50.50"),
        ("\"1250.50\"", "USD", "1250.50"),
        ("\"10.500\"", "USD", "10.50"),
        ("1500", "JPY", "1500"),
        ("1.25", "KWD", "1.250"),
    ];
    for (amount, currency, expected) in cases {
        // GIVEN the amount written into the JSON text exactly as given
        let body = format!(r#"{{"userId":"u1","amount":{amount},"currency":"{currency}"}}"#);
        // WHEN it is posted
        let reply = h.send(Req::new("POST", "/payments").raw_body(&body)).await;
        // THEN every digit survives, in the response and in the saga input
        assert_eq!(reply.status, 202, "{amount}: {}", reply.body);
        assert_eq!(reply.text("amount"), expected, "{amount}");
        let last = h.saga.starts.lock().unwrap().last().unwrap().clone();
        assert_eq!(last.amount.amount_text(), expected);
    }
}

#[tokio::test]
async fn bad_amounts_and_currencies_are_400_with_their_code() {
    let h = Harness::new();
    let cases = [
        (json!(10.001), "USD", "amount_too_precise", "amount"),
        (json!("10.001"), "USD", "amount_too_precise", "amount"),
        (json!(1.5), "JPY", "amount_too_precise", "amount"),
        (json!(1.2345), "KWD", "amount_too_precise", "amount"),
        (json!(0), "USD", "invalid_amount", "amount"),
        (json!("0.00"), "USD", "invalid_amount", "amount"),
        (json!(-5), "USD", "invalid_amount", "amount"),
        (json!(true), "USD", "invalid_amount", "amount"),
        (json!(null), "USD", "invalid_amount", "amount"),
        (json!({"amount": "5"}), "USD", "invalid_amount", "amount"),
        (json!("5 USD"), "USD", "invalid_amount", "amount"),
        (json!(1000000.01), "USD", "amount_too_large", "amount"),
        (json!(5), "usd", "invalid_currency", "currency"),
        (json!(5), "XXX", "invalid_currency", "currency"),
        (json!(5), "DOLLARS", "invalid_currency", "currency"),
    ];
    for (amount, currency, code, param) in cases {
        let reply = h
            .send(pay(
                json!({"userId": "u1", "amount": amount, "currency": currency}),
            ))
            .await;
        assert_eq!(reply.status, 400, "{amount} {currency}");
        assert_eq!(reply.code(), code, "{amount} {currency}: {}", reply.body);
        assert_eq!(reply.param(), Some(param));
        assert_eq!(reply.body["error"]["type"], "invalid_request_error");
    }
    // An exponent is not a plain decimal, even when it is valid JSON.
    let reply = h
        .send(
            Req::new("POST", "/payments")
                .raw_body(r#"{"userId":"u1","amount":1e3,"currency":"USD"}"#),
        )
        .await;
    assert_eq!((reply.status, reply.code()), (400, "invalid_amount"));
    assert_eq!(h.saga.start_count(), 0, "nothing invalid reaches the saga");
}

/// A valid body with `field` removed (value `None`) or set.
fn body_with(field: &str, value: Option<serde_json::Value>) -> serde_json::Value {
    let mut body = json!({"userId": "u1", "amount": 5, "currency": "USD"});
    let map = body.as_object_mut().unwrap();
    match value {
        Some(value) => map.insert(field.to_owned(), value),
        None => map.remove(field),
    };
    body
}

#[tokio::test]
async fn missing_unknown_and_malformed_fields_are_400_naming_the_field() {
    let h = Harness::new();
    let many: serde_json::Map<_, _> = (0..21).map(|i| (format!("k{i}"), json!("v"))).collect();
    let cases = [
        ("userId", None, "missing_field"),
        ("amount", None, "missing_field"),
        ("currency", None, "missing_field"),
        ("ammount", Some(json!(5)), "unknown_field"),
        ("userId", Some(json!("a b")), "invalid_user_id"),
        ("userId", Some(json!(42)), "invalid_user_id"),
        ("orderId", Some(json!("o".repeat(129))), "field_too_long"),
        ("orderId", Some(json!(7)), "invalid_field"),
        ("orderId", Some(json!(null)), "invalid_field"),
        (
            "description",
            Some(json!("d".repeat(513))),
            "field_too_long",
        ),
        ("metadata", Some(json!("x")), "invalid_metadata"),
        ("metadata", Some(json!({"k": 1})), "invalid_metadata"),
        (
            "metadata",
            Some(json!({"k".repeat(41): "v"})),
            "invalid_metadata",
        ),
        (
            "metadata",
            Some(json!({"k": "v".repeat(501)})),
            "invalid_metadata",
        ),
        ("metadata", Some(json!(many)), "invalid_metadata"),
    ];
    for (field, value, code) in cases {
        // GIVEN a body with one bad field WHEN posted THEN 400 naming it
        let body = body_with(field, value);
        let reply = h.send(pay(body.clone())).await;
        assert_eq!(
            (reply.status, reply.code()),
            (400, code),
            "{body}: {}",
            reply.body
        );
        assert_eq!(reply.param(), Some(field), "{body}");
    }
    assert_eq!(h.saga.start_count(), 0);
}

#[tokio::test]
async fn bodies_that_are_not_one_json_object_are_invalid_json() {
    let h = Harness::new();
    let texts = [
        r#"{"userId": "u1","#,
        "not json",
        "[1, 2]",
        r#"{"userId":"u1","userId":"u2","amount":5,"currency":"USD"}"#,
    ];
    for text in texts {
        let reply = h.send(Req::new("POST", "/payments").raw_body(text)).await;
        assert_eq!(
            (reply.status, reply.code()),
            (400, "invalid_json"),
            "{text}"
        );
    }
    // An empty body is an empty object: the first required field is named.
    let reply = h.send(Req::new("POST", "/payments")).await;
    assert_eq!(
        (reply.code(), reply.param()),
        ("missing_field", Some("userId"))
    );
}

#[tokio::test]
async fn idempotency_key_replays_the_first_response_and_starts_one_saga() {
    // GIVEN a payment created with an Idempotency-Key
    let h = Harness::new();
    let body = json!({"userId": "u1", "amount": 50, "currency": "USD"});
    let first = h.send(pay(body).key("order-42-attempt")).await;
    assert_eq!(first.status, 202);
    assert_eq!(first.header("idempotent-replayed"), None);
    // WHEN the client retries the same request, written differently
    let same = json!({"currency": "USD", "amount": "50.00", "userId": "u1"});
    let again = h.send(pay(same).key("order-42-attempt")).await;
    // THEN the first response is replayed exactly and the saga started once
    assert_eq!(again.status, 202);
    assert_eq!(again.body, first.body);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(h.saga.start_count(), 1);
    // AND the same key with another body is refused
    let other = json!({"userId": "u1", "amount": 51, "currency": "USD"});
    let reused = h.send(pay(other).key("order-42-attempt")).await;
    assert_eq!(
        (reused.status, reused.code()),
        (422, "idempotency_key_reused")
    );
    assert_eq!(reused.param(), Some("Idempotency-Key"));
    // AND a new key is a new payment
    let fresh = h
        .send(pay(json!({"userId": "u1", "amount": 50, "currency": "USD"})).key("another"))
        .await;
    assert_ne!(fresh.body["paymentId"], first.body["paymentId"]);
}

#[tokio::test]
async fn a_key_in_use_by_a_running_request_is_409() {
    // GIVEN a first request held inside the saga start
    let h = Arc::new(Harness::new());
    let (entered, release) = h.saga.hold_next_start();
    let body = json!({"userId": "u1", "amount": 5, "currency": "USD"});
    let first = {
        let (h, req) = (h.clone(), pay(body.clone()).key("k-busy"));
        tokio::spawn(async move { h.send(req).await })
    };
    entered.notified().await;
    // WHEN the same key arrives meanwhile
    let second = h.send(pay(body.clone()).key("k-busy")).await;
    // THEN it is told to come back shortly
    assert_eq!(
        (second.status, second.code()),
        (409, "idempotency_key_in_use")
    );
    assert!(second.header("retry-after").is_some());
    release.notify_one();
    let first = first.await.unwrap();
    assert_eq!(first.status, 202);
    // AND afterwards the key replays the first response
    let third = h.send(pay(body).key("k-busy")).await;
    assert_eq!(third.body, first.body);
}

#[tokio::test]
async fn a_request_that_died_midway_is_resumed_with_the_same_payment() {
    // GIVEN a request that claimed its key 60 s ago and died right after
    // writing its PENDING payment (no saga started, no response stored)
    let h = Harness::new();
    let body = json!({"userId": "u1", "amount": 5, "currency": "USD"});
    let req = pay(body.clone()).key("k-crash");
    let event = req.event();
    let request = Request::from_proxy(&event, "lambda-1");
    let parsed = api_handler::body::JsonObject::parse(&body.to_string()).unwrap();
    let command = CreatePayment::parse(&parsed, Decimal::MAX).unwrap();
    let key = idempotency::key(&request, &command.canonical())
        .unwrap()
        .unwrap();
    let claimed_at = Timestamp::now().plus_seconds(-60);
    let record = IdempotencyRecord::claim(key.scoped.clone(), key.request_hash.clone(), claimed_at);
    let claim = h.store.claim(&record, claimed_at).await.unwrap();
    assert_eq!(claim, shared::domain::ClaimOutcome::Claimed);
    let seed = idempotency::derived_seed(&key.scoped, claimed_at);
    let crashed_id = PaymentId::parse(&format!("pay_{seed}")).unwrap();
    PaymentRepo::create(
        h.store.as_ref(),
        command.new_payment(crashed_id),
        claimed_at,
    )
    .await
    .unwrap();
    // WHEN the client retries
    let first = h.send(req.clone()).await;
    // THEN the request is resumed (not refused as in use) with the SAME
    // payment, whose saga starts now; no second payment exists
    assert_eq!(first.status, 202, "{}", first.body);
    assert_eq!(first.text("paymentId"), crashed_id.to_string());
    assert_eq!(h.saga.start_count(), 1);
    let list = h.send(Req::get("/payments").query("userId", "u1")).await;
    assert_eq!(list.body["data"].as_array().unwrap().len(), 1);
    // AND a further retry replays the answer
    let second = h.send(req).await;
    assert_eq!(second.body, first.body);
    assert_eq!(second.header("idempotent-replayed"), Some("true"));
}

#[tokio::test]
async fn a_saga_that_cannot_start_fails_the_payment_and_answers_503() {
    // GIVEN Step Functions throttling every start
    let h = Harness::new();
    h.saga
        .fail_with(Some(SagaStartError::Throttled("Rate exceeded".into())));
    // WHEN a payment is created with a key
    let body = json!({"userId": "u1", "amount": 5, "currency": "USD"});
    let reply = h.send(pay(body.clone()).key("k-saga")).await;
    // THEN 503, retryable, the internal cause not leaked
    assert_eq!((reply.status, reply.code()), (503, "service_unavailable"));
    assert_eq!(reply.body["error"]["type"], "api_error");
    assert_eq!(reply.header("retry-after"), Some("1"));
    assert!(!reply.body.to_string().contains("Rate exceeded"));
    // AND a throttled start (nothing started) is not tried again
    assert_eq!(h.saga.attempt_count(), 1);
    // AND the payment it created is FAILED with SAGA_NOT_STARTED, never left PENDING
    let message = reply.body["error"]["message"].as_str().unwrap();
    let failed_id = message.split_whitespace().nth(1).unwrap();
    let failed = h.payment(&PaymentId::parse(failed_id).unwrap()).await;
    assert_eq!(failed.status, PaymentStatus::Failed);
    assert_eq!(failed.failure_reason.as_deref(), Some("SAGA_NOT_STARTED"));
    // WHEN Step Functions recovers and the client retries with the same key
    h.saga.fail_with(None);
    let retry = h.send(pay(body).key("k-saga")).await;
    // THEN a new payment is created and started
    assert_eq!(retry.status, 202);
    assert_ne!(retry.text("paymentId"), failed_id);
    assert_eq!(h.saga.start_count(), 1);
}

fn ambiguous() -> SagaStartError {
    SagaStartError::Ambiguous("dispatch failure: timed out".into())
}

/// The payment named in an error message ("payment pay_… …").
fn named_payment(reply: &Reply) -> PaymentId {
    let message = reply.body["error"]["message"].as_str().unwrap();
    PaymentId::parse(message.split_whitespace().nth(1).unwrap()).unwrap()
}

#[tokio::test]
async fn an_unconfirmed_start_is_tried_again_and_answers_202_with_one_saga() {
    for first in [
        // the first attempt never reached Step Functions
        StartAnswer::NotStarted(ambiguous()),
        // the first attempt started the execution but its answer was lost:
        // the retry finds it by name
        StartAnswer::Lost(ambiguous()),
    ] {
        // GIVEN a start whose first answer is lost, then answered
        let h = Harness::new();
        h.saga.script([first.clone(), StartAnswer::Started]);
        // WHEN a payment is created
        let reply = h
            .send(pay(json!({"userId": "u1", "amount": 5, "currency": "USD"})).key("k-amb"))
            .await;
        // THEN 202 as usual, with exactly one execution behind two attempts
        assert_eq!(reply.status, 202, "{first:?}: {}", reply.body);
        assert_eq!(h.saga.attempt_count(), 2, "{first:?}");
        assert_eq!(h.saga.start_count(), 1, "{first:?}");
        let payment_id = PaymentId::parse(&reply.text("paymentId")).unwrap();
        assert!(
            reply
                .text("executionArn")
                .ends_with(&payment_id.to_string())
        );
        assert_eq!(h.payment(&payment_id).await.status, PaymentStatus::Pending);
    }
}

#[tokio::test]
async fn a_start_never_confirmed_fails_the_payment_while_it_is_still_pending() {
    // GIVEN Step Functions that never confirms a start (and none happened)
    let h = Harness::new();
    h.saga.fail_with(Some(ambiguous()));
    // WHEN a payment is created with a key
    let body = json!({"userId": "u1", "amount": 5, "currency": "USD"});
    let reply = h.send(pay(body.clone()).key("k-never")).await;
    // THEN the start was tried a bounded number of times, then given up
    assert_eq!(h.saga.attempt_count(), 3);
    assert_eq!(h.saga.start_count(), 0);
    // AND 503 says it was not charged, without leaking the cause
    assert_eq!((reply.status, reply.code()), (503, "service_unavailable"));
    let message = reply.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("was not charged"), "{message}");
    assert!(!reply.body.to_string().contains("dispatch failure"));
    // AND the payment is FAILED with SAGA_NOT_STARTED, never left PENDING
    let payment = h.payment(&named_payment(&reply)).await;
    assert_eq!(payment.status, PaymentStatus::Failed);
    assert_eq!(payment.failure_reason.as_deref(), Some("SAGA_NOT_STARTED"));
    // AND the key was released: a retry creates and starts a new payment
    h.saga.fail_with(None);
    let retry = h.send(pay(body).key("k-never")).await;
    assert_eq!(retry.status, 202, "{}", retry.body);
    assert_ne!(retry.text("paymentId"), payment.payment_id.to_string());
    assert_eq!(h.saga.start_count(), 1);
}

#[tokio::test]
async fn a_payment_its_saga_moved_on_is_not_failed_by_an_unconfirmed_start() {
    // GIVEN a start that did happen (the saga debited and marked the payment
    // PROCESSING) but whose answer, and every retry's, was lost
    let h = Harness::new();
    h.saga
        .script([StartAnswer::LostAfterProcessing(ambiguous())]);
    h.saga.fail_with(Some(ambiguous()));
    // WHEN a payment is created with a key
    let body = json!({"userId": "u1", "amount": 5, "currency": "USD"});
    let reply = h.send(pay(body.clone()).key("k-moved")).await;
    // THEN 503 says it is being processed and must not be paid again
    assert_eq!((reply.status, reply.code()), (503, "service_unavailable"));
    let message = reply.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("is being processed"), "{message}");
    assert!(message.contains("do not pay again"), "{message}");
    assert!(!message.contains("not charged"), "{message}");
    // AND the payment is left to its saga: still PROCESSING, no failure
    let payment = h.payment(&named_payment(&reply)).await;
    assert_eq!(payment.status, PaymentStatus::Processing);
    assert_eq!(payment.failure_reason, None);
    assert_eq!(h.saga.start_count(), 1);
    // AND the key is kept (the same payment comes back on a later retry), so
    // a retry now is told to wait rather than creating a second payment
    let retry = h.send(pay(body).key("k-moved")).await;
    assert_eq!(
        (retry.status, retry.code()),
        (409, "idempotency_key_in_use")
    );
    let list = h.send(Req::get("/payments").query("userId", "u1")).await;
    assert_eq!(list.body["data"].as_array().unwrap().len(), 1);
}

fn store_down() -> StoreError {
    StoreError::Repo(RepoError::Unavailable("connection reset".into()))
}

#[tokio::test]
async fn a_create_that_committed_despite_its_error_is_found_by_the_retry() {
    // GIVEN a store whose first create commits but answers an error
    let (h, creates) = Harness::new().with_flaky_payments();
    creates.fail([CreateFailure::After(store_down())]);
    // WHEN a payment is created
    let reply = h
        .send(pay(json!({"userId": "u1", "amount": 5, "currency": "USD"})))
        .await;
    // THEN the retry finds the payment written the first time: 202, one
    // payment with one creation event, one saga
    assert_eq!(reply.status, 202, "{}", reply.body);
    assert_eq!(creates.attempt_count(), 2);
    let payment_id = PaymentId::parse(&reply.text("paymentId")).unwrap();
    assert_eq!(h.payment(&payment_id).await.status, PaymentStatus::Pending);
    let events = PaymentEventRepo::events(h.store.as_ref(), &payment_id, 10)
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    let list = h.send(Req::get("/payments").query("userId", "u1")).await;
    assert_eq!(list.body["data"].as_array().unwrap().len(), 1);
    assert_eq!(h.saga.start_count(), 1);
}

#[tokio::test]
async fn a_payment_the_store_never_recorded_is_left_to_its_saga() {
    // GIVEN a store that fails every create attempt, writing nothing
    let (h, creates) = Harness::new().with_flaky_payments();
    creates.fail([store_down(), store_down(), store_down()].map(CreateFailure::Before));
    // WHEN a payment is created
    let reply = h
        .send(pay(json!({"userId": "u1", "amount": 5, "currency": "USD"})))
        .await;
    // THEN after bounded attempts its saga is started anyway (its first
    // step creates the payment from the same input): 202
    assert_eq!(reply.status, 202, "{}", reply.body);
    assert_eq!(creates.attempt_count(), 3);
    let starts = h.saga.starts.lock().unwrap().clone();
    assert_eq!(starts.len(), 1);
    assert_eq!(starts[0].payment_id.to_string(), reply.text("paymentId"));
    // WHEN that also happens while Step Functions refuses the start
    creates.fail([store_down(), store_down(), store_down()].map(CreateFailure::Before));
    h.saga
        .fail_with(Some(SagaStartError::Throttled("Rate exceeded".into())));
    let reply = h
        .send(pay(json!({"userId": "u2", "amount": 5, "currency": "USD"})))
        .await;
    // THEN nothing exists and nothing runs: 503 "not charged"
    assert_eq!((reply.status, reply.code()), (503, "service_unavailable"));
    let message = reply.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("was not charged"), "{message}");
    let missing = PaymentRepo::get(h.store.as_ref(), &named_payment(&reply))
        .await
        .unwrap();
    assert_eq!(missing, None);
    assert_eq!(h.saga.start_count(), 1);
}

#[tokio::test]
async fn a_create_the_store_refuses_is_not_retried_and_starts_nothing() {
    // GIVEN a store that refuses the create as malformed (our bug)
    let (h, creates) = Harness::new().with_flaky_payments();
    creates.fail([CreateFailure::Before(StoreError::Repo(
        RepoError::Rejected("ValidationException".into()),
    ))]);
    // WHEN a payment is created THEN 500 at once, and no saga
    let reply = h
        .send(pay(json!({"userId": "u1", "amount": 5, "currency": "USD"})))
        .await;
    assert_eq!(reply.status, 500, "{}", reply.body);
    assert_eq!(creates.attempt_count(), 1);
    assert_eq!(h.saga.attempt_count(), 0);
}

#[tokio::test]
async fn get_payment_shows_status_timeline_and_refunds() {
    // GIVEN a completed payment
    let h = Harness::new();
    let payment_id = h.completed_payment("u1", "80.00").await;
    // WHEN it is read
    let reply = h.send(Req::get(format!("/payments/{payment_id}"))).await;
    // THEN its fields, its timeline oldest first, and no refunds yet
    assert_eq!(reply.status, 200);
    let body = golden(&reply.body, &["createdAt", "updatedAt"]);
    assert_eq!(body["paymentId"], payment_id.to_string());
    assert_eq!(body["status"], "COMPLETED");
    assert_eq!(body["amount"], "80.00");
    assert_eq!(body["gatewayReference"], "gw_ref_1");
    assert_eq!(body["refundedAmount"], "0.00");
    assert_eq!(body["refunds"], json!([]));
    let timeline: Vec<_> = reply.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["type"].clone(),
                e["fromStatus"].clone(),
                e["status"].clone(),
            )
        })
        .collect();
    assert_eq!(
        timeline,
        vec![
            (json!("PAYMENT_CREATED"), json!(null), json!("PENDING")),
            (
                json!("STATUS_CHANGED"),
                json!("PENDING"),
                json!("PROCESSING")
            ),
            (
                json!("STATUS_CHANGED"),
                json!("PROCESSING"),
                json!("COMPLETED")
            ),
        ]
    );
}

#[tokio::test]
async fn unknown_and_malformed_payment_ids() {
    let h = Harness::new();
    let missing = h
        .send(Req::get(format!("/payments/{}", PaymentId::generate())))
        .await;
    assert_eq!((missing.status, missing.code()), (404, "payment_not_found"));
    assert_eq!(missing.body["error"]["type"], "not_found_error");
    let refund_id = shared::domain::RefundId::generate().to_string();
    for bad in ["pay_123", "42", refund_id.as_str()] {
        let reply = h.send(Req::get(format!("/payments/{bad}"))).await;
        assert_eq!(
            (reply.status, reply.code()),
            (400, "invalid_payment_id"),
            "{bad}"
        );
        assert_eq!(reply.param(), Some("paymentId"));
    }
}

#[tokio::test]
async fn list_pages_a_users_payments_newest_first() {
    // GIVEN three payments of u1 and one of u2
    let h = Harness::new();
    let mut mine = Vec::new();
    for amount in ["1", "2", "3"] {
        mine.push(h.create_payment("u1", amount).await.to_string());
    }
    h.create_payment("u2", "9").await;
    // WHEN u1's payments are listed two at a time
    let page1 = h
        .send(
            Req::get("/payments")
                .query("userId", "u1")
                .query("limit", "2"),
        )
        .await;
    assert_eq!(page1.status, 200);
    let ids = |reply: &crate::common::Reply| -> Vec<String> {
        reply.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["paymentId"].as_str().unwrap().to_owned())
            .collect()
    };
    // THEN newest first, with a cursor to the rest
    assert_eq!(ids(&page1), vec![mine[2].clone(), mine[1].clone()]);
    let cursor = page1.text("nextCursor");
    let page2 = h
        .send(
            Req::get("/payments")
                .query("userId", "u1")
                .query("limit", "2")
                .query("cursor", &cursor),
        )
        .await;
    assert_eq!(ids(&page2), vec![mine[0].clone()]);
    assert_eq!(page2.body["nextCursor"], json!(null));
    // AND the default page holds all three
    let all = h.send(Req::get("/payments").query("userId", "u1")).await;
    assert_eq!(ids(&all).len(), 3);
    assert_eq!(all.body["data"][0]["amount"], "3.00");
}

#[tokio::test]
async fn list_validates_its_query() {
    let h = Harness::new();
    let list = || Req::get("/payments");
    let cases = [
        (list(), "missing_field", "userId"),
        (list().query("userId", "a b"), "invalid_user_id", "userId"),
        (
            list().query("userId", "u1").query("limit", "0"),
            "invalid_limit",
            "limit",
        ),
        (
            list().query("userId", "u1").query("limit", "101"),
            "invalid_limit",
            "limit",
        ),
        (
            list().query("userId", "u1").query("limit", "ten"),
            "invalid_limit",
            "limit",
        ),
        (
            list().query("userId", "u1").query("cursor", "garbage"),
            "invalid_cursor",
            "cursor",
        ),
        (
            list().query("userId", "u1").query("sort", "asc"),
            "unknown_field",
            "sort",
        ),
    ];
    for (req, code, param) in cases {
        let reply = h.send(req).await;
        assert_eq!((reply.status, reply.code()), (400, code), "{}", reply.body);
        assert_eq!(reply.param(), Some(param));
    }
    let max = h
        .send(list().query("userId", "u1").query("limit", "100"))
        .await;
    assert_eq!(max.status, 200);
    assert_eq!(max.body, json!({"data": [], "nextCursor": null}));
}

#[tokio::test]
async fn a_refused_start_whose_failure_cannot_be_recorded_is_started_again() {
    // GIVEN Step Functions refusing the first start, and a store that
    // throttles the first write of the payment's FAILED fence
    let (h, payments) = Harness::new().with_flaky_payments();
    payments.throttle_transitions(1);
    h.saga
        .script([StartAnswer::NotStarted(SagaStartError::Throttled(
            "Rate exceeded".into(),
        ))]);
    // WHEN a payment is created
    let reply = h
        .send(pay(json!({"userId": "u1", "amount": 5, "currency": "USD"})).key("k-refused"))
        .await;
    // THEN the start tried again while the fence could not land got through:
    // 202, one saga, the payment PENDING and not left without one
    assert_eq!(reply.status, 202, "{}", reply.body);
    assert_eq!(h.saga.attempt_count(), 2);
    assert_eq!(h.saga.start_count(), 1);
    let payment_id = PaymentId::parse(&reply.text("paymentId")).unwrap();
    assert_eq!(h.payment(&payment_id).await.status, PaymentStatus::Pending);
}

#[tokio::test]
async fn not_charged_is_said_only_once_the_key_cannot_resume_that_payment() {
    // GIVEN a payment never recorded, a refused start, and a key the store
    // cannot release (a retry of it would resume this very payment id)
    let (h, creates) = Harness::new()
        .with_unreleasable_keys()
        .with_flaky_payments();
    creates.fail([store_down(), store_down(), store_down()].map(CreateFailure::Before));
    h.saga
        .fail_with(Some(SagaStartError::Throttled("Rate exceeded".into())));
    // WHEN the payment is created with a key
    let body = json!({"userId": "u1", "amount": 5, "currency": "USD"});
    let reply = h.send(pay(body.clone()).key("k-kept")).await;
    // THEN 503 without "not charged": the payment has not started yet and a
    // retry of the key starts it
    assert_eq!((reply.status, reply.code()), (503, "service_unavailable"));
    let message = reply.body["error"]["message"].as_str().unwrap();
    assert!(!message.contains("not charged"), "{message}");
    assert!(message.contains("has not started yet"), "{message}");
    let missing = PaymentRepo::get(h.store.as_ref(), &named_payment(&reply))
        .await
        .unwrap();
    assert_eq!(missing, None);
    // AND the key stays claimed, so a retry resumes that same payment (once
    // the request counts as dead) instead of making a second one
    h.saga.fail_with(None);
    let retry = h.send(pay(body).key("k-kept")).await;
    assert_eq!(
        (retry.status, retry.code()),
        (409, "idempotency_key_in_use")
    );
    assert_eq!(h.saga.start_count(), 0);
}
