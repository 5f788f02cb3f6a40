//! `POST /payments/{paymentId}/refunds`: reserves the refund through
//! refund-service (synchronously), then starts its refund saga, which
//! refunds at the gateway and credits the wallet on its own: 202.

use std::time::Duration;

use tokio::time::Instant;

use shared::domain::{Money, Payment, PaymentId, Refund, RefundId};
use shared::events::{RefundCommand, RefundSagaInput};
use tracing::{info, warn};
use ulid::Ulid;

use crate::body::JsonObject;
use crate::error::{ApiError, Code};
use crate::http::{Request, Response};
use crate::idempotency::{self, Outcome};
use crate::ports::{RefundInvokeError, SagaStartError};
use crate::principal::Principal;
use crate::requests::{CreateRefund, parse_payment_id};
use crate::routes::payments::visible_payment;
use crate::{Deps, views};

/// Reservations tried while their outcome is unknown.
const RESERVE_ATTEMPT_COUNT_MAX: u32 = 3;
const RESERVE_BACKOFF_MS: u64 = 100;
/// Starts of the refund saga tried while Step Functions refuses or does not
/// confirm them: the amount is reserved, so unlike a payment's start there is
/// nothing to fence — the start itself must land. Doubling from 100 ms.
const START_ATTEMPT_COUNT_MAX: u32 = 6;
const START_BACKOFF_MS: u64 = 100;
/// No new attempt (reservation or start) begins later than this after the
/// request came in, so the answer comes well inside the function's 20 s.
const RETRY_BUDGET: Duration = Duration::from_secs(12);

pub async fn create(
    deps: &Deps,
    request: &Request<'_>,
    principal: &Principal,
    raw_payment_id: &str,
    body: &JsonObject,
) -> Result<Response, ApiError> {
    let payment_id = parse_payment_id(raw_payment_id)?;
    let command = CreateRefund::parse(body)?;
    let key = idempotency::key(request, &command.canonical())?;
    let work = |seed| async move {
        let response = match refund(deps, principal, payment_id, &command, seed).await {
            Ok(response) => response,
            Err(err) => Response::error(err),
        };
        // 2xx is kept and replayed; a refusal (4xx, incl. a throttled invoke
        // that never ran) is released; an unknown outcome (5xx, incl. a
        // reserved refund whose saga did not start) is resumed later under
        // the same refund id.
        Outcome::by_status(response.with_correlation(payment_id))
    };
    Ok(idempotency::run(deps.idempotency.as_ref(), key, work).await)
}

async fn refund(
    deps: &Deps,
    principal: &Principal,
    payment_id: PaymentId,
    command: &CreateRefund,
    seed: Ulid,
) -> Result<Response, ApiError> {
    let refund_id = idempotency::id_from_seed(RefundId::PREFIX, seed, RefundId::parse)?;
    // Another user's payment is not found: nothing is reserved (a 4xx
    // releases the key's claim).
    let payment = visible_payment(deps, principal, payment_id).await?;
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
    let deadline = Instant::now() + RETRY_BUDGET;
    let refund = reserve(deps, &call, deadline).await.map_err(invoke_error)?;
    info!(paymentId = %payment_id, refundId = %refund.refund_id, amount = %refund.amount,
        status = refund.status.as_str(), "refund reserved");
    if refund.status.is_settled() {
        // A resumed request whose refund has already finished.
        return Ok(Response::json(200, &views::refund(&refund)));
    }
    let input = RefundSagaInput {
        refund_id: refund.refund_id,
        payment_id,
        amount: refund.amount,
    };
    match start_refund_saga(deps, &input, deadline).await {
        Ok(execution_arn) => {
            info!(paymentId = %payment_id, refundId = %refund.refund_id, executionArn = %execution_arn,
                "refund saga started");
            Ok(Response::json(
                202,
                &views::created_refund(&refund, &execution_arn),
            ))
        }
        Err(err) => Err(saga_not_started(&refund, &err)),
    }
}

/// Reserves through refund-service; an invoke whose outcome is unknown (a
/// timeout, a lost reply) is tried again — RESERVE is idempotent by refund
/// id, so a reservation that did land comes back as it is — so a reserved
/// refund is not left without its saga because one answer was lost.
async fn reserve(
    deps: &Deps,
    call: &RefundCommand,
    deadline: Instant,
) -> Result<Refund, RefundInvokeError> {
    let mut attempt = 1;
    loop {
        match deps.refunder.reserve(call).await {
            Err(err)
                if may_have_reserved(&err)
                    && attempt < RESERVE_ATTEMPT_COUNT_MAX
                    && Instant::now() < deadline =>
            {
                let detail = err.to_string();
                warn!(refundId = %call.refund_id, attempt, detail, "refund reservation not confirmed; asking again");
                let backoff_ms = RESERVE_BACKOFF_MS * u64::from(attempt);
                tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// Whether a failed reservation may have landed anyway: no answer, or a
/// transient failure refund-service reported (its write may have committed).
fn may_have_reserved(err: &RefundInvokeError) -> bool {
    match err {
        RefundInvokeError::Unknown(_) => true,
        RefundInvokeError::Refused(task) => task.error_type.is_retryable(),
        RefundInvokeError::Throttled(_) => false,
    }
}

/// Starts the refund saga (named by the refund id: a start that did happen
/// is found again), trying again while Step Functions refuses (throttling,
/// limits) or does not confirm; only a malformed start stops at once.
async fn start_refund_saga(
    deps: &Deps,
    input: &RefundSagaInput,
    deadline: Instant,
) -> Result<String, SagaStartError> {
    let mut attempt = 1;
    loop {
        match deps.saga.start_refund(input).await {
            Err(SagaStartError::Rejected(detail)) => return Err(SagaStartError::Rejected(detail)),
            Err(err) if attempt < START_ATTEMPT_COUNT_MAX && Instant::now() < deadline => {
                warn!(refundId = %input.refund_id, attempt, error = %err,
                    "refund saga not started; trying again");
                let backoff_ms = START_BACKOFF_MS << (attempt - 1);
                tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// The refund is reserved but nothing drives it yet: the client retries the
/// same Idempotency-Key, which finds the reservation and starts the saga.
fn saga_not_started(refund: &Refund, err: &SagaStartError) -> ApiError {
    warn!(refundId = %refund.refund_id, error = %err, "refund saga not started");
    let message = format!(
        "refund {} of payment {} is reserved but its processing did not start. Retry with \
         the same Idempotency-Key to start it; do not request it again with another key.",
        refund.refund_id, refund.payment_id
    );
    ApiError {
        detail: Some(err.to_string()),
        ..ApiError::new(Code::ServiceUnavailable, message)
    }
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
