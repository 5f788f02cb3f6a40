//! Steps 2 and 3 of a reserved refund, the refund saga's tasks: money back at
//! the gateway, then the refund credit in the wallet. Each step is idempotent
//! on its own (the gateway per `refundId`, the ledger per `txId`) and is
//! recorded on the refund before the next one starts, so a re-run repeats at
//! most the step that was cut off; run on a refund past it, a step answers
//! the refund as it is.

use shared::domain::{Movement, Refund, RefundStatus, Timestamp};
use shared::ports::VERSION_ATTEMPT_COUNT_MAX;
use shared::{Entity, ErrorType, GatewayError, StoreError, TaskError};
use tracing::{error, info, warn};

use crate::{Deps, FUNCTION_NAME};

/// Metric (namespace `PaymentSaga`, dimension `Service`) of a refund the
/// gateway refused (the customer got nothing back) or whose credit the
/// wallet refused after the gateway paid out: a person looks at it.
pub const METRIC_REFUND_FAILED: &str = "RefundFailed";
/// Metric of a refund its saga could not finish (RECONCILIATION_REQUIRED).
pub const METRIC_REFUND_RECONCILIATION: &str = "RefundReconciliationRequired";

/// Longest gateway error code we keep in a refund's failure reason.
const GATEWAY_CODE_LENGTH_MAX: usize = 64;

/// The saga's `RefundAtGateway`: REQUESTED → GATEWAY_REFUNDED, or FAILED
/// with its reservation given back on the payment (answered as
/// `GatewayRejected`, on this run and every re-run).
pub async fn at_gateway(deps: &Deps, refund: Refund) -> Result<Refund, TaskError> {
    let refund = match refund.status {
        RefundStatus::Requested => refund_at_gateway(deps, &refund).await?,
        _ => refund,
    };
    match refund.status {
        RefundStatus::Failed => {
            refused(&refund);
            Err(failed(&refund))
        }
        _ => Ok(refund),
    }
}

/// The saga's `CreditWallet`: GATEWAY_REFUNDED → COMPLETED.
pub async fn credit(deps: &Deps, refund: Refund) -> Result<Refund, TaskError> {
    match refund.status {
        RefundStatus::GatewayRefunded => credit_wallet(deps, &refund).await,
        RefundStatus::Failed => Err(failed(&refund)),
        RefundStatus::Requested => Err(TaskError::new(
            ErrorType::InvalidTransition,
            format!(
                "refund {} is not refunded at the gateway yet",
                refund.refund_id
            ),
        )),
        RefundStatus::Completed | RefundStatus::ReconciliationRequired => Ok(refund),
    }
}

/// What the reconciler runs on a refund its saga did not finish (REQUESTED
/// or GATEWAY_REFUNDED long after its saga should have moved it, or
/// RECONCILIATION_REQUIRED): steps 2 and 3 from wherever it stands. A
/// RECONCILIATION_REQUIRED refund is asked of the gateway again, which is
/// idempotent per `refundId` (one already paid out answers its first
/// reference), so it finishes, or fails on a definite refusal, like any
/// other. Never moves a refund backwards; a settled one is answered as it is.
pub async fn settle(deps: &Deps, refund: Refund) -> Result<Refund, TaskError> {
    let refund = match refund.status {
        RefundStatus::Requested | RefundStatus::ReconciliationRequired => {
            refund_at_gateway(deps, &refund).await?
        }
        RefundStatus::GatewayRefunded | RefundStatus::Completed | RefundStatus::Failed => refund,
    };
    match refund.status {
        RefundStatus::GatewayRefunded => credit_wallet(deps, &refund).await,
        RefundStatus::Failed => {
            refused(&refund);
            Ok(refund)
        }
        _ => Ok(refund),
    }
}

/// The saga's retries ran out: a refund still under way becomes
/// RECONCILIATION_REQUIRED with the error that led here; a settled one is
/// answered as it is.
pub async fn mark_reconciliation_required(
    deps: &Deps,
    refund: Refund,
    reason: &str,
    cause: Option<&str>,
) -> Result<Refund, TaskError> {
    if refund.status.is_settled() {
        return Ok(refund);
    }
    let reason: String = reason.chars().take(GATEWAY_CODE_LENGTH_MAX).collect();
    let next = refund.advance(
        RefundStatus::ReconciliationRequired,
        None,
        Some(reason),
        Timestamp::now(),
    )?;
    let saved = save_step(deps, next).await?;
    if saved.status == RefundStatus::ReconciliationRequired {
        error!(refundId = %saved.refund_id, paymentId = %saved.payment_id, amount = %saved.amount,
            failureReason = saved.failure_reason.as_deref(), cause,
            "refund saga gave up; reconciliation required");
        shared::observability::emit_count(METRIC_REFUND_RECONCILIATION, FUNCTION_NAME);
    }
    Ok(saved)
}

/// Step 2. The gateway deduplicates by `refundId`, so calling it again after a
/// crash returns the first refund's reference instead of paying out twice.
async fn refund_at_gateway(deps: &Deps, refund: &Refund) -> Result<Refund, TaskError> {
    let answer = deps
        .gateway
        .refund(&refund.refund_id, &refund.payment_id, &refund.amount)
        .await;
    match answer {
        Ok(gateway_refund) => {
            info!(refundId = %refund.refund_id, gatewayReference = %gateway_refund.reference,
                "refunded at the gateway");
            let next = refund.advance(
                RefundStatus::GatewayRefunded,
                Some(gateway_refund.reference),
                None,
                Timestamp::now(),
            )?;
            save_step(deps, next).await
        }
        Err(GatewayError::Rejected { status, code, .. }) => {
            let code: String = code.chars().take(GATEWAY_CODE_LENGTH_MAX).collect();
            let reason = format!(
                "{} ({status} {code})",
                ErrorType::GatewayRejected.reason_code()
            );
            let next =
                refund.advance(RefundStatus::Failed, None, Some(reason), Timestamp::now())?;
            fail_and_release(deps, next).await
        }
        // Unavailable (retryable) or ambiguous: the refund may or may not exist
        // at the gateway. It stays REQUESTED and a re-run asks again with the
        // same refund id, which settles it either way.
        Err(err) => {
            warn!(refundId = %refund.refund_id, errorType = %err.error_type(), error = %err,
                "gateway refund not confirmed; the refund stays REQUESTED");
            Err(TaskError::new(err.error_type(), err.to_string()))
        }
    }
}

/// Step 3. The ledger holds at most one entry per `txId` (`ref_Y#REFUND`), so
/// a re-run after a crash finds its entry and credits nothing twice.
async fn credit_wallet(deps: &Deps, refund: &Refund) -> Result<Refund, TaskError> {
    let movement = Movement::refund(
        refund.user_id.clone(),
        refund.refund_id,
        refund.payment_id,
        refund.amount,
    );
    match deps.wallets.apply(&movement, Timestamp::now()).await {
        Ok(receipt) => {
            info!(refundId = %refund.refund_id, txId = %receipt.entry.tx_id,
                balanceAfter = %receipt.entry.balance_after, replayed = receipt.replayed,
                "wallet credited");
            let next = refund.advance(RefundStatus::Completed, None, None, Timestamp::now())?;
            save_step(deps, next).await
        }
        Err(err) if err.error_type().is_retryable() => {
            warn!(refundId = %refund.refund_id, error = %err,
                "wallet credit not applied; the refund stays GATEWAY_REFUNDED");
            Err(err.into())
        }
        Err(err) => {
            // The gateway has paid out but the ledger refuses the credit (no
            // matching debit, no wallet): retrying will not change that, and a
            // GATEWAY_REFUNDED refund cannot be failed. Leave it for an operator.
            needs_reconciliation(refund, "wallet refused the refund credit");
            Err(err.into())
        }
    }
}

/// Stores the FAILED refund and gives its reservation back on its payment in
/// one transaction. A payment that changed since it was read (another
/// refund) is read again; a refund that moved on (another invocation stored
/// a step, or this very write whose answer was lost) is answered as stored.
async fn fail_and_release(deps: &Deps, failed: Refund) -> Result<Refund, TaskError> {
    for _ in 0..VERSION_ATTEMPT_COUNT_MAX {
        let payment = deps
            .payments
            .get(&failed.payment_id)
            .await?
            .ok_or_else(|| StoreError::payment_not_found(failed.payment_id))?;
        match deps
            .refunds
            .fail_and_release(&failed, &payment, Timestamp::now())
            .await
        {
            Ok(_) => return Ok(failed),
            Err(StoreError::StaleVersion {
                entity: Entity::Refund,
                ..
            }) => return crate::stored(deps, failed.refund_id).await,
            Err(StoreError::StaleVersion { .. }) => continue,
            Err(err) => return Err(err.into()),
        }
    }
    Err(TaskError::new(
        ErrorType::Retryable,
        format!(
            "refund {}: its payment kept changing while its reservation was released",
            failed.refund_id
        ),
    ))
}

/// Stores the next step. Losing the version race means a concurrent invocation
/// of this refund stored a step first: continue from what it stored.
async fn save_step(deps: &Deps, next: Refund) -> Result<Refund, TaskError> {
    match deps.refunds.save(&next).await {
        Ok(()) => Ok(next),
        Err(StoreError::StaleVersion { .. }) => crate::stored(deps, next.refund_id).await,
        Err(err) => Err(err.into()),
    }
}

/// Says that the gateway refused `refund` (log and the alarmed
/// `RefundFailed` metric), every time a run answers it FAILED: at least
/// once, even when the run that failed it lost its answer after the write.
fn refused(refund: &Refund) {
    warn!(refundId = %refund.refund_id, paymentId = %refund.payment_id, amount = %refund.amount,
        failureReason = refund.failure_reason.as_deref(),
        "gateway refused the refund: FAILED, its reservation given back on the payment");
    shared::observability::emit_count(METRIC_REFUND_FAILED, FUNCTION_NAME);
}

/// The error a FAILED refund answers with, on its first run and on every re-run.
fn failed(refund: &Refund) -> TaskError {
    TaskError::new(
        ErrorType::GatewayRejected,
        format!(
            "refund {} failed: {}",
            refund.refund_id,
            refund
                .failure_reason
                .as_deref()
                .unwrap_or("no reason recorded")
        ),
    )
}

/// The gateway paid out but the wallet refuses the credit: the refund's
/// amount stays reserved on the payment (the money did leave the gateway), for
/// a person to settle with the gateway's and the ledger's records at hand.
/// The error log and the `RefundFailed` metric (alarmed) say so.
fn needs_reconciliation(refund: &Refund, what: &str) {
    error!(refundId = %refund.refund_id, paymentId = %refund.payment_id, amount = %refund.amount,
        status = refund.status.as_str(), failureReason = refund.failure_reason.as_deref(),
        "{what}: the refunded amount stays reserved on the payment; reconciliation required");
    shared::observability::emit_count(METRIC_REFUND_FAILED, FUNCTION_NAME);
}
