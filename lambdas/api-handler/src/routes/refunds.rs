//! `POST /payments/{paymentId}/refunds`: runs refund-service synchronously.

use shared::domain::{Money, Payment, PaymentId, RefundId};
use shared::events::RefundCommand;
use tracing::info;
use ulid::Ulid;

use crate::body::JsonObject;
use crate::error::{ApiError, Code};
use crate::http::{Request, Response};
use crate::idempotency::{self, Outcome};
use crate::ports::RefundInvokeError;
use crate::requests::{CreateRefund, parse_payment_id};
use crate::routes::payments::payment_not_found;
use crate::{Deps, views};

pub async fn create(
    deps: &Deps,
    request: &Request<'_>,
    raw_payment_id: &str,
    body: &JsonObject,
) -> Result<Response, ApiError> {
    let payment_id = parse_payment_id(raw_payment_id)?;
    let command = CreateRefund::parse(body)?;
    let key = idempotency::key(request, &command.canonical())?;
    let work = |seed| async move {
        let response = match refund(deps, payment_id, &command, seed).await {
            Ok(response) => response,
            Err(err) => Response::error(err),
        };
        // 201 is kept and replayed; a refusal (4xx, incl. a throttled invoke
        // that never ran) is released; an unknown outcome (5xx) is resumed
        // later under the same refund id.
        Outcome::by_status(response.with_correlation(payment_id))
    };
    Ok(idempotency::run(deps.idempotency.as_ref(), key, work).await)
}

async fn refund(
    deps: &Deps,
    payment_id: PaymentId,
    command: &CreateRefund,
    seed: Ulid,
) -> Result<Response, ApiError> {
    let refund_id = idempotency::id_from_seed(RefundId::PREFIX, seed, RefundId::parse)?;
    let payment = deps
        .payments
        .get(&payment_id)
        .await?
        .ok_or_else(|| payment_not_found(payment_id))?;
    let amount = command.money(payment.amount.currency())?;
    // A refund already recorded under this id is a resumed request:
    // refund-service finishes it whatever the payment's status is by now.
    if deps.refunds.get(&refund_id).await?.is_none() {
        check_refundable(&payment, amount.as_ref())?;
    }
    let call = RefundCommand {
        refund_id,
        payment_id,
        amount,
        reason: command.reason.clone(),
    };
    let refund = deps.refunder.refund(&call).await.map_err(invoke_error)?;
    info!(paymentId = %payment_id, refundId = %refund.refund_id, amount = %refund.amount,
        status = refund.status.as_str(), "refund answered");
    Ok(Response::json(201, &views::refund(&refund)))
}

/// Fast, clear refusals before invoking refund-service (which checks the
/// same rules again, atomically, so a concurrent refund cannot slip through).
fn check_refundable(payment: &Payment, amount: Option<&Money>) -> Result<(), ApiError> {
    if !payment.status.is_refundable() {
        let message = format!(
            "payment {} is {}; only COMPLETED or PARTIALLY_REFUNDED payments can be refunded",
            payment.payment_id, payment.status
        );
        return Err(ApiError::new(Code::PaymentNotRefundable, message));
    }
    let refundable = payment.refundable_amount();
    if let Some(amount) = amount
        && amount.amount() > refundable.amount()
    {
        let message = format!("refund of {amount} exceeds the {refundable} left to refund");
        return Err(ApiError::new(Code::RefundExceedsAmount, message).with_param("amount"));
    }
    Ok(())
}

fn invoke_error(err: RefundInvokeError) -> ApiError {
    match err {
        RefundInvokeError::Refused(task) => ApiError::from(task),
        RefundInvokeError::Throttled(detail) => ApiError::internal(Code::RateLimited, detail),
        RefundInvokeError::Unknown(detail) => ApiError::internal(Code::ServiceUnavailable, detail),
    }
}
