//! What clients see. Amounts are strings at the currency's scale (`"50.50"`)
//! next to their currency; absent optional values are `null`, so every
//! documented key is always present.

use serde_json::{Value, json};
use shared::domain::{
    LedgerEntry, Money, Payment, PaymentEvent, Refund, RefundStatus, TopUpId, Wallet,
};

pub fn payment(payment: &Payment) -> Value {
    json!({
        "paymentId": payment.payment_id,
        "userId": payment.user_id,
        "amount": payment.amount.amount_text(),
        "currency": payment.amount.currency(),
        "status": payment.status,
        "orderId": payment.order_id,
        "description": payment.description,
        "metadata": payment.metadata,
        "gatewayReference": payment.gateway_reference,
        "failureReason": payment.failure_reason,
        "refundedAmount": payment.refunded_amount.amount_text(),
        "createdAt": payment.created_at,
        "updatedAt": payment.updated_at,
    })
}

/// A payment in a `GET /payments` page: without its metadata (up to 15 KiB
/// each), so a page of 100 stays small; `GET /payments/{id}` has it.
pub fn payment_in_list(payment: &Payment) -> Value {
    let mut view = self::payment(payment);
    if let Some(map) = view.as_object_mut() {
        map.remove("metadata");
    }
    view
}

/// `POST /payments` answer: the payment and the saga execution driving it.
pub fn created_payment(created: &Payment, execution_arn: &str) -> Value {
    with_execution_arn(payment(created), execution_arn)
}

/// A view with the Step Functions execution that drives it.
fn with_execution_arn(mut view: Value, execution_arn: &str) -> Value {
    if let Some(map) = view.as_object_mut() {
        map.insert("executionArn".to_owned(), json!(execution_arn));
    }
    view
}

/// `GET /payments/{paymentId}`: the payment, its timeline and its refunds,
/// with what its refunds have really paid back apart from what is still on
/// its way (the payment's `refundedAmount` counts both).
pub fn payment_detail(found: &Payment, events: &[PaymentEvent], refunds: &[Refund]) -> Value {
    let total = |wanted: fn(RefundStatus) -> bool| {
        refunds
            .iter()
            .filter(|refund| wanted(refund.status))
            .try_fold(Money::zero(found.amount.currency()), |sum, refund| {
                sum.checked_add(&refund.amount)
            })
            .map_or_else(|_| "-".to_owned(), |sum| sum.amount_text())
    };
    let completed = total(|status| status == RefundStatus::Completed);
    let pending = total(|status| {
        matches!(
            status,
            RefundStatus::Requested
                | RefundStatus::GatewayRefunded
                | RefundStatus::ReconciliationRequired
        )
    });
    let mut view = payment(found);
    if let Some(map) = view.as_object_mut() {
        map.insert("events".to_owned(), events.iter().map(event).collect());
        map.insert("refunds".to_owned(), refunds.iter().map(refund).collect());
        map.insert("refundsCompletedAmount".to_owned(), json!(completed));
        map.insert("refundsPendingAmount".to_owned(), json!(pending));
    }
    view
}

pub fn event(event: &PaymentEvent) -> Value {
    json!({
        "type": event.event_type,
        "fromStatus": event.from_status,
        "status": event.status,
        "detail": event.detail,
        "at": event.at,
    })
}

pub fn refund(refund: &Refund) -> Value {
    json!({
        "refundId": refund.refund_id,
        "paymentId": refund.payment_id,
        "amount": refund.amount.amount_text(),
        "currency": refund.amount.currency(),
        "status": refund.status,
        "reason": refund.reason,
        "gatewayReference": refund.gateway_reference,
        "failureReason": refund.failure_reason,
        "createdAt": refund.created_at,
        "updatedAt": refund.updated_at,
    })
}

/// `POST /payments/{id}/refunds` answer: the reserved refund and the refund
/// saga execution finishing it.
pub fn created_refund(reserved: &Refund, execution_arn: &str) -> Value {
    with_execution_arn(refund(reserved), execution_arn)
}

pub fn wallet(wallet: &Wallet) -> Value {
    json!({
        "currency": wallet.currency(),
        "balance": wallet.balance.amount_text(),
        "version": wallet.version,
        "updatedAt": wallet.updated_at,
    })
}

/// `POST /wallets/{userId}/credit` answer, from the ledger entry of the top-up.
pub fn credit(entry: &LedgerEntry, top_up_id: TopUpId, reference: Option<&str>) -> Value {
    json!({
        "userId": entry.user_id,
        "currency": entry.amount.currency(),
        "amount": entry.amount.amount_text(),
        "balance": entry.balance_after.amount_text(),
        "transactionId": entry.entry_id,
        "ledgerTxId": entry.tx_id,
        "topUpId": top_up_id,
        "reference": reference,
        "createdAt": entry.created_at,
    })
}
