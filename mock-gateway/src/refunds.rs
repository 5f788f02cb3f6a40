//! Refunds against approved charges, idempotent per `refundId`.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use time::OffsetDateTime;

use crate::charges::{ChargeStatus, rfc3339, validate_id};
use crate::config::Mode;
use crate::error::AppError;
use crate::money::Money;
use crate::state::{ChargeRecord, Gateway, Limits};

/// `POST /v1/refunds` body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefundRequest {
    pub refund_id: String,
    pub payment_id: String,
    pub amount: Box<RawValue>,
    pub currency: String,
}

#[derive(Debug, Clone)]
pub struct Refund {
    pub refund_id: String,
    pub payment_id: String,
    pub money: Money,
    pub reference: String,
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RefundStatus {
    Refunded,
}

/// Response body of `POST /v1/refunds`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RefundView {
    pub refund_id: String,
    pub payment_id: String,
    pub status: RefundStatus,
    pub amount: String,
    pub currency: &'static str,
    pub reference: String,
    pub created_at: String,
}

impl Refund {
    fn view(&self) -> Result<RefundView, AppError> {
        Ok(RefundView {
            refund_id: self.refund_id.clone(),
            payment_id: self.payment_id.clone(),
            status: RefundStatus::Refunded,
            amount: self.money.amount_string(),
            currency: self.money.ccy.code(),
            reference: self.reference.clone(),
            created_at: rfc3339(self.created_at)?,
        })
    }
}

#[derive(Debug)]
pub struct RefundProcessed {
    pub view: RefundView,
    pub replay: bool,
}

/// Validates, then records or replays a refund. Runs entirely under the lock.
pub fn process(
    gateway: &mut Gateway,
    limits: Limits,
    now: OffsetDateTime,
    request: RefundRequest,
) -> Result<RefundProcessed, AppError> {
    validate_id("refundId", &request.refund_id)?;
    validate_id("paymentId", &request.payment_id)?;
    let money = Money::from_wire(&request.amount, &request.currency)?;
    if gateway.settings.mode == Mode::Error {
        return Err(AppError::GatewayError);
    }

    if let Some(existing) = gateway.refunds.get(&request.refund_id) {
        if existing.payment_id != request.payment_id || !existing.money.same_as(&money) {
            return Err(AppError::IdempotencyMismatch(format!(
                "refund {:?} was already processed for payment {:?} with amount {} {}",
                existing.refund_id,
                existing.payment_id,
                existing.money.amount_string(),
                existing.money.ccy.code()
            )));
        }
        return Ok(RefundProcessed {
            view: existing.view()?,
            replay: true,
        });
    }

    let refunds_full = gateway.refunds.len() >= limits.max_refunds;
    let record = gateway
        .charges
        .get_mut(&request.payment_id)
        .ok_or_else(|| AppError::PaymentNotFound(request.payment_id.clone()))?;
    let charge = match record {
        ChargeRecord::Charged(charge) => charge,
        // Never charged, so nothing was captured: refused like a declined charge.
        ChargeRecord::Canceled(tombstone) => {
            return Err(AppError::PaymentNotCaptured {
                payment_id: request.payment_id,
                status: tombstone.status().as_str(),
            });
        }
    };
    let (status, _) = charge.status_at(now);
    if status != ChargeStatus::Approved {
        return Err(AppError::PaymentNotCaptured {
            payment_id: request.payment_id,
            status: status.as_str(),
        });
    }
    if charge.money.ccy != money.ccy {
        return Err(AppError::CurrencyMismatch {
            refund: money.ccy.code(),
            payment: charge.money.ccy.code(),
        });
    }
    let refunded = charge
        .refunded
        .checked_add(money.amount)
        .filter(|total| *total <= charge.money.amount)
        .ok_or_else(|| AppError::RefundExceedsCapture {
            requested: format!(
                "{} {}",
                charge.refunded.saturating_add(money.amount),
                money.ccy.code()
            ),
            captured: format!("{} {}", charge.money.amount_string(), money.ccy.code()),
        })?;
    if refunds_full {
        return Err(AppError::StorageFull(limits.max_refunds, "refunds"));
    }
    let refund = Refund {
        refund_id: request.refund_id,
        payment_id: request.payment_id,
        money,
        reference: format!("gwr_{}", ulid::Ulid::new()),
        created_at: now,
    };
    let view = refund.view()?;
    charge.refunded = refunded;
    gateway.refunds.insert(refund.refund_id.clone(), refund);
    Ok(RefundProcessed {
        view,
        replay: false,
    })
}
