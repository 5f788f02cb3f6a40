//! `refund-service`: refunds all or part of a COMPLETED or PARTIALLY_REFUNDED
//! payment, exactly once per `refundId`. api-handler runs step 1 (`RESERVE`,
//! synchronously) and then starts the refund saga
//! (`state-machine/refund-saga.asl.json`, execution name = refundId), whose
//! tasks run steps 2 and 3 and retry them until they land; each step can be
//! re-run after a crash or a failure at any point:
//!
//! 1. **reserve**: one store transaction writes the REQUESTED refund, the
//!    payment's new refunded amount and status, and the payment's event. It is
//!    conditioned on the payment version that was read (`RefundRepo::reserve`),
//!    so concurrent refunds can never together take more than the payment;
//! 2. **gateway**: `PaymentGateway::refund`, which the gateway makes idempotent
//!    per `refundId` → GATEWAY_REFUNDED with the gateway's reference;
//! 3. **wallet**: the refund credit `ref_Y#REFUND`, applied exactly once because
//!    of its ledger `txId` → COMPLETED.
//!
//! A step run again on a refund past it answers the refund as it is.
//! Transient failures leave the refund where it is and return `Retryable`,
//! `GatewayUnavailable` or `GatewayAmbiguous`, so the saga runs it again; when
//! its retries run out it marks the refund RECONCILIATION_REQUIRED
//! (`MARK_RECONCILIATION_REQUIRED`, metric `RefundReconciliationRequired`).

mod settlement;

pub use settlement::{
    METRIC_REFUND_FAILED, METRIC_REFUND_RECONCILIATION, mark_reconciliation_required, settle,
};

use std::sync::Arc;

use lambda_runtime::LambdaEvent;
use serde::{Deserialize, Serialize};
use shared::domain::RefundId;
use shared::domain::refund::REFUND_REASON_LENGTH_MAX;
use shared::domain::{Money, MoneyError, Payment, PaymentStatus, Refund, Timestamp};
use shared::events::{RefundCommand, RefundTask};
use shared::ports::{
    Created, PaymentGateway, PaymentRepo, RefundRepo, VERSION_ATTEMPT_COUNT_MAX, WalletRepo,
};
use shared::{ErrorType, StoreError, TaskError};
use tracing::{Instrument, info, warn};

pub const FUNCTION_NAME: &str = "refund-service";

/// Reservations that lost the race for the payment's version, each followed by
/// a fresh read and a new decision, before giving up with `Retryable`.
pub const RESERVE_ATTEMPT_COUNT_MAX: u32 = VERSION_ATTEMPT_COUNT_MAX;

pub struct Deps {
    pub payments: Arc<dyn PaymentRepo>,
    pub refunds: Arc<dyn RefundRepo>,
    pub wallets: Arc<dyn WalletRepo>,
    pub gateway: Arc<dyn PaymentGateway>,
}

/// What `refund-service` returns: the refund record (camelCase, money as
/// `{"amount":"5.00","currency":"USD"}`) plus the payment's status and total
/// refunded amount as they are now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefundReply {
    #[serde(flatten)]
    pub refund: Refund,
    pub payment_status: PaymentStatus,
    /// Everything refunded on the payment so far, this refund included. A
    /// refund counts from its reservation, even before it is COMPLETED.
    pub refunded_amount: Money,
}

impl RefundReply {
    pub fn new(refund: Refund, payment: &Payment) -> Self {
        Self {
            refund,
            payment_status: payment.status,
            refunded_amount: payment.refunded_amount,
        }
    }
}

pub async fn handle(deps: &Deps, event: LambdaEvent<RefundTask>) -> Result<RefundReply, TaskError> {
    let span = shared::invocation_span!(FUNCTION_NAME, event.context, event.payload.refund_id());
    execute(deps, event.payload).instrument(span).await
}

pub async fn execute(deps: &Deps, task: RefundTask) -> Result<RefundReply, TaskError> {
    let refund = match task {
        RefundTask::Reserve(command) => reserve_once(deps, &command).await?,
        RefundTask::RefundAtGateway { refund_id } => {
            settlement::at_gateway(deps, stored(deps, refund_id).await?).await?
        }
        RefundTask::CreditWallet { refund_id } => {
            settlement::credit(deps, stored(deps, refund_id).await?).await?
        }
        RefundTask::MarkReconciliationRequired {
            refund_id,
            reason,
            cause,
        } => {
            let refund = stored(deps, refund_id).await?;
            settlement::mark_reconciliation_required(deps, refund, &reason, cause.as_deref())
                .await?
        }
    };
    let payment = deps
        .payments
        .get(&refund.payment_id)
        .await?
        .ok_or_else(|| StoreError::payment_not_found(refund.payment_id))?;
    Ok(RefundReply::new(refund, &payment))
}

/// Step 1, once per refund id: the stored refund if this id was reserved
/// before (whatever its status now), else a new reservation.
async fn reserve_once(deps: &Deps, command: &RefundCommand) -> Result<Refund, TaskError> {
    check_command(command)?;
    match deps.refunds.get(&command.refund_id).await? {
        Some(stored) => {
            check_replay(&stored, command)?;
            info!(refundId = %stored.refund_id, status = stored.status.as_str(),
                "refund already reserved");
            Ok(stored)
        }
        None => reserve(deps, command).await,
    }
}

/// The refund a saga step is about, as stored now; it was reserved before
/// its saga started.
async fn stored(deps: &Deps, refund_id: RefundId) -> Result<Refund, TaskError> {
    deps.refunds.get(&refund_id).await?.ok_or_else(|| {
        StoreError::NotFound {
            entity: shared::Entity::Refund,
            id: refund_id.to_string(),
        }
        .into()
    })
}

/// What can be checked without reading anything: the reason's length and a
/// positive amount.
fn check_command(command: &RefundCommand) -> Result<(), TaskError> {
    if let Some(reason) = &command.reason {
        let length_max = usize::try_from(REFUND_REASON_LENGTH_MAX).unwrap_or(usize::MAX);
        // `nth` stops counting at the limit: a huge reason costs no more.
        if reason.chars().nth(length_max).is_some() {
            return Err(TaskError::new(
                ErrorType::ValidationError,
                format!("reason must be at most {REFUND_REASON_LENGTH_MAX} characters"),
            ));
        }
    }
    if command.amount.is_some_and(|amount| amount.is_zero()) {
        return Err(MoneyError::NotPositive.into());
    }
    Ok(())
}

/// A refund id arriving again must describe the stored refund. An absent
/// amount means "the remaining amount", which the first delivery resolved and
/// stored, so it matches whatever amount was stored.
fn check_replay(stored: &Refund, command: &RefundCommand) -> Result<(), TaskError> {
    let same = stored.payment_id == command.payment_id
        && command.amount.is_none_or(|amount| amount == stored.amount)
        && stored.reason == command.reason;
    if same {
        Ok(())
    } else {
        Err(StoreError::AlreadyExists {
            entity: shared::Entity::Refund,
            id: stored.refund_id.to_string(),
        }
        .into())
    }
}

/// The amount to refund from `payment` as read: the requested one, or all that
/// is left. Only COMPLETED and PARTIALLY_REFUNDED payments are refundable.
fn refund_amount(payment: &Payment, requested: Option<Money>) -> Result<Money, TaskError> {
    if !payment.status.is_refundable() {
        return Err(TaskError::new(
            ErrorType::InvalidTransition,
            format!(
                "payment {} is {}; only COMPLETED or PARTIALLY_REFUNDED payments can be refunded",
                payment.payment_id, payment.status
            ),
        ));
    }
    let remaining = payment.refundable_amount();
    let amount = requested.unwrap_or(remaining);
    if amount.currency() != payment.amount.currency() {
        return Err(TaskError::new(
            ErrorType::ValidationError,
            format!(
                "refund is in {}, payment {} is in {}",
                amount.currency(),
                payment.payment_id,
                payment.amount.currency()
            ),
        ));
    }
    if remaining.is_zero() || amount.amount() > remaining.amount() {
        return Err(TaskError::new(
            ErrorType::RefundExceedsAmount,
            format!(
                "refund of {amount} exceeds the {remaining} left to refund on payment {}",
                payment.payment_id
            ),
        ));
    }
    Ok(amount)
}

/// Step 1: decide on the payment as read and reserve atomically. A lost version
/// race means another refund (or a concurrent delivery of this one) changed
/// the payment: read it again and decide again, a bounded number of times.
async fn reserve(deps: &Deps, command: &RefundCommand) -> Result<Refund, TaskError> {
    for attempt in 1..=RESERVE_ATTEMPT_COUNT_MAX {
        // After a lost race or an unconfirmed write, this refund may be the
        // one that reserved: found, it is the answer.
        if attempt > 1
            && let Some(stored) = deps.refunds.get(&command.refund_id).await?
        {
            check_replay(&stored, command)?;
            return Ok(stored);
        }
        let payment = deps
            .payments
            .get(&command.payment_id)
            .await?
            .ok_or_else(|| StoreError::payment_not_found(command.payment_id))?;
        let amount = refund_amount(&payment, command.amount)?;
        let refund = Refund::request(
            command.refund_id,
            payment.payment_id,
            payment.user_id.clone(),
            amount,
            command.reason.clone(),
            Timestamp::now(),
        );
        match deps
            .refunds
            .reserve(&refund, &payment, Timestamp::now())
            .await
        {
            Ok(Created::New((refund, payment))) => {
                info!(refundId = %refund.refund_id, amount = %refund.amount,
                    paymentStatus = payment.status.as_str(),
                    refundedAmount = %payment.refunded_amount, "refund reserved on the payment");
                return Ok(refund);
            }
            // A concurrent delivery of this refund reserved it first.
            Ok(Created::Existing((refund, _))) => return Ok(refund),
            Err(StoreError::StaleVersion { .. }) => {
                warn!(refundId = %refund.refund_id, attempt,
                    "payment changed concurrently, deciding again");
            }
            // Also a concurrent delivery, which may have resolved a default
            // amount differently: compare with the request, not our decision.
            Err(StoreError::AlreadyExists { .. }) => return stored_replay(deps, command).await,
            // The transaction may have committed before the error: the next
            // pass finds the refund (AlreadyExists) or reserves it now.
            Err(err) if err.error_type().is_retryable() => {
                warn!(refundId = %refund.refund_id, attempt, error = %err,
                    "reservation not confirmed; trying again");
            }
            Err(err) => return Err(err.into()),
        }
    }
    Err(TaskError::new(
        ErrorType::Retryable,
        format!(
            "payment {} changed concurrently {RESERVE_ATTEMPT_COUNT_MAX} times; retry",
            command.payment_id
        ),
    ))
}

async fn stored_replay(deps: &Deps, command: &RefundCommand) -> Result<Refund, TaskError> {
    let stored = deps.refunds.get(&command.refund_id).await?.ok_or_else(|| {
        // Refunds are never deleted: one that collided must still be there.
        TaskError::new(
            ErrorType::InternalError,
            format!("refund {} collided but cannot be read", command.refund_id),
        )
    })?;
    check_replay(&stored, command)?;
    Ok(stored)
}

#[cfg(test)]
mod tests;
