//! `POST /payments/{paymentId}/refunds`.

use api_handler::{RefundInvokeError, SagaStartError};
use serde_json::json;
use shared::domain::PaymentId;
use shared::{ErrorType, TaskError};

use crate::common::{Harness, Req, golden};

fn refund(payment_id: &PaymentId, body: serde_json::Value) -> Req {
    Req::post(format!("/payments/{payment_id}/refunds"), body)
}

#[tokio::test]
async fn a_full_refund_answers_202_and_its_saga_is_started() {
    // GIVEN a completed payment of 80.00
    let h = Harness::new();
    let payment_id = h.completed_payment("u1", "80").await;
    // WHEN it is refunded without an amount
    let reply = h
        .send(refund(&payment_id, json!({"reason": "damaged"})))
        .await;
    // THEN 202 with the reserved refund, for the whole amount, and the
    // refund saga execution that finishes it
    assert_eq!(reply.status, 202, "{}", reply.body);
    assert_eq!(
        golden(
            &reply.body,
            &["refundId", "createdAt", "updatedAt", "executionArn"]
        ),
        json!({"refundId": "<refundId>", "paymentId": payment_id.to_string(),
               "amount": "80.00", "currency": "USD", "status": "REQUESTED",
               "reason": "damaged", "gatewayReference": null, "failureReason": null,
               "createdAt": "<createdAt>", "updatedAt": "<updatedAt>",
               "executionArn": "<executionArn>"})
    );
    let refund_id = reply.text("refundId");
    assert!(refund_id.starts_with("ref_"));
    assert!(
        reply
            .text("executionArn")
            .ends_with(&format!(":refund-saga:{refund_id}"))
    );
    let starts = h.saga.refund_starts.lock().unwrap().clone();
    assert_eq!(starts.len(), 1);
    assert_eq!(starts[0].refund_id.to_string(), refund_id);
    assert_eq!(starts[0].amount.amount_text(), "80.00");
    // AND refund-service got the full-refund command
    let calls = h.refunder.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].amount, None);
    assert_eq!(calls[0].reason.as_deref(), Some("damaged"));
    // AND the payment shows the refund, reserved but not paid back yet
    let payment = h.send(Req::get(format!("/payments/{payment_id}"))).await;
    assert_eq!(payment.body["status"], "REFUNDED");
    assert_eq!(payment.body["refundedAmount"], "80.00");
    assert_eq!(payment.body["refundsPendingAmount"], "80.00");
    assert_eq!(payment.body["refundsCompletedAmount"], "0.00");
    assert_eq!(
        payment.body["refunds"][0]["refundId"],
        reply.body["refundId"]
    );
}

#[tokio::test]
async fn a_partial_refund_carries_its_amount_at_the_payment_scale() {
    let h = Harness::new();
    let payment_id = h.completed_payment("u1", "80").await;
    let reply = h.send(refund(&payment_id, json!({"amount": 20.5}))).await;
    assert_eq!(reply.status, 202);
    assert_eq!(reply.body["amount"], "20.50");
    let calls = h.refunder.calls.lock().unwrap().clone();
    assert_eq!(calls[0].amount.unwrap().amount_text(), "20.50");
    let payment = h.payment(&payment_id).await;
    assert_eq!(payment.refunded_amount.amount_text(), "20.50");
    // An empty body (no Content-Type needed) refunds what is left.
    let rest = h
        .send(Req::new("POST", format!("/payments/{payment_id}/refunds")))
        .await;
    assert_eq!(
        (rest.status, rest.text("amount")),
        (202, "59.50".to_owned())
    );
}

#[tokio::test]
async fn a_refund_replayed_with_its_key_is_the_same_refund() {
    // GIVEN a refund made with an Idempotency-Key
    let h = Harness::new();
    let payment_id = h.completed_payment("u1", "80").await;
    let body = json!({"amount": "10"});
    let first = h.send(refund(&payment_id, body).key("refund-1")).await;
    assert_eq!(first.status, 202);
    // WHEN retried with the same key and an equal body
    let again = h
        .send(refund(&payment_id, json!({"amount": 10.00})).key("refund-1"))
        .await;
    // THEN the same refund, and refund-service ran once
    assert_eq!(again.body, first.body);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(h.refunder.call_count(), 1);
    assert_eq!(
        h.payment(&payment_id).await.refunded_amount.amount_text(),
        "10.00"
    );
}

#[tokio::test]
async fn refund_service_errors_map_to_statuses_and_codes() {
    let cases = [
        (
            ErrorType::RefundExceedsAmount,
            422,
            "refund_exceeds_amount",
            "business_rule_error",
        ),
        (
            ErrorType::PaymentNotFound,
            404,
            "payment_not_found",
            "not_found_error",
        ),
        (
            ErrorType::InvalidTransition,
            422,
            "payment_not_refundable",
            "business_rule_error",
        ),
        (
            ErrorType::ValidationError,
            400,
            "invalid_request",
            "invalid_request_error",
        ),
        (
            ErrorType::Retryable,
            503,
            "service_unavailable",
            "api_error",
        ),
        (
            ErrorType::GatewayUnavailable,
            502,
            "gateway_error",
            "api_error",
        ),
        (
            ErrorType::GatewayAmbiguous,
            502,
            "gateway_error",
            "api_error",
        ),
        // The gateway refused this refund for good: a business answer.
        (
            ErrorType::GatewayRejected,
            422,
            "refund_refused",
            "business_rule_error",
        ),
        (ErrorType::InternalError, 500, "internal_error", "api_error"),
    ];
    for (error_type, status, code, kind) in cases {
        // GIVEN refund-service failing with a named error
        let h = Harness::new();
        let payment_id = h.completed_payment("u1", "80").await;
        let task = TaskError::new(error_type, "refund-service says no (table refunds-dev)");
        h.refunder.fail_with(Some(RefundInvokeError::Refused(task)));
        // WHEN a refund is asked for
        let reply = h.send(refund(&payment_id, json!({"amount": 5}))).await;
        // THEN the taxonomy name decides status, code and type
        assert_eq!((reply.status, reply.code()), (status, code), "{error_type}");
        assert_eq!(reply.body["error"]["type"], kind, "{error_type}");
        let leaks = reply.body.to_string().contains("refunds-dev");
        assert_eq!(leaks, status < 500, "only client errors carry the message");
    }
}

#[tokio::test]
async fn a_throttled_invoke_is_429_and_an_unknown_outcome_keeps_the_key() {
    // GIVEN Lambda throttling the invoke (refund-service did not run)
    let h = Harness::new();
    let payment_id = h.completed_payment("u1", "80").await;
    h.refunder
        .fail_with(Some(RefundInvokeError::Throttled("TooManyRequests".into())));
    let throttled = h.send(refund(&payment_id, json!({})).key("r-429")).await;
    assert_eq!((throttled.status, throttled.code()), (429, "rate_limited"));
    assert_eq!(throttled.body["error"]["type"], "rate_limit_error");
    // THEN the key was released: the retry runs (and now times out, every
    // time it is asked again)
    h.refunder
        .fail_with(Some(RefundInvokeError::Unknown("Sandbox.Timedout".into())));
    let unknown = h.send(refund(&payment_id, json!({})).key("r-429")).await;
    assert_eq!(
        (unknown.status, unknown.code()),
        (503, "service_unavailable")
    );
    // AND after an unknown outcome the key stays claimed, so a quick retry
    // cannot start a second refund under a new id
    h.refunder.fail_with(None);
    let busy = h.send(refund(&payment_id, json!({})).key("r-429")).await;
    assert_eq!((busy.status, busy.code()), (409, "idempotency_key_in_use"));
    // (the throttled call was not repeated; the unknown one was asked again,
    // 3 times in all: a reservation is idempotent by refund id)
    assert_eq!(h.refunder.call_count(), 1 + 3);
}

#[tokio::test]
async fn business_rules_are_checked_before_refund_service_runs() {
    // GIVEN a pending and a completed payment of 80.00
    let h = Harness::new();
    let pending = h.create_payment("u1", "80").await;
    let completed = h.completed_payment("u1", "80").await;
    let cases = [
        (
            refund(&pending, json!({})),
            422,
            "payment_not_refundable",
            None,
        ),
        (
            refund(&completed, json!({"amount": 80.01})),
            422,
            "refund_exceeds_amount",
            Some("amount"),
        ),
        (
            refund(&PaymentId::generate(), json!({})),
            404,
            "payment_not_found",
            Some("paymentId"),
        ),
    ];
    for (req, status, code, param) in cases {
        // WHEN a refund breaks a rule THEN it is refused before refund-service runs
        let reply = h.send(req).await;
        assert_eq!(
            (reply.status, reply.code()),
            (status, code),
            "{}",
            reply.body
        );
        assert_eq!(reply.param(), param, "{code}");
    }
    assert_eq!(h.refunder.call_count(), 0);
}

#[tokio::test]
async fn refund_requests_are_validated() {
    let h = Harness::new();
    let paid = h.completed_payment("u1", "80").await;
    let cases = [
        (json!({"amount": 10.001}), "amount_too_precise", "amount"),
        (json!({"amount": 0}), "invalid_amount", "amount"),
        (json!({"amount": -1}), "invalid_amount", "amount"),
        (json!({"amount": "x"}), "invalid_amount", "amount"),
        (
            json!({"reason": "r".repeat(257)}),
            "field_too_long",
            "reason",
        ),
        (json!({"currency": "USD"}), "unknown_field", "currency"),
    ];
    for (body, code, param) in cases {
        let reply = h.send(refund(&paid, body.clone())).await;
        assert_eq!((reply.status, reply.code()), (400, code), "{body}");
        assert_eq!(reply.param(), Some(param), "{body}");
    }
    let bad_id = h
        .send(Req::post("/payments/pay_x/refunds", json!({})))
        .await;
    assert_eq!(
        (bad_id.code(), bad_id.param()),
        ("invalid_payment_id", Some("paymentId"))
    );
    assert_eq!(h.refunder.call_count(), 0);
}

#[tokio::test]
async fn a_reserved_refund_whose_saga_cannot_start_is_resumed_by_its_key() {
    // GIVEN Step Functions refusing to start the refund saga
    let h = Harness::new();
    let payment_id = h.completed_payment("u1", "80").await;
    *h.saga.refund_failure.lock().unwrap() =
        Some(SagaStartError::Throttled("Rate exceeded".into()));
    // WHEN a refund is requested with a key
    let first = h
        .send(refund(&payment_id, json!({"amount": "10"})).key("r-start"))
        .await;
    // THEN 503 says it is reserved and must be resumed with the same key
    assert_eq!((first.status, first.code()), (503, "service_unavailable"));
    let message = first.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("is reserved"), "{message}");
    assert!(message.contains("same Idempotency-Key"), "{message}");
    // AND the key stays claimed: no second refund under a new id
    *h.saga.refund_failure.lock().unwrap() = None;
    let busy = h
        .send(refund(&payment_id, json!({"amount": "10"})).key("r-start"))
        .await;
    assert_eq!((busy.status, busy.code()), (409, "idempotency_key_in_use"));
    assert_eq!(h.saga.refund_starts.lock().unwrap().len(), 0);
    assert_eq!(
        h.payment(&payment_id).await.refunded_amount.amount_text(),
        "10.00"
    );
}
