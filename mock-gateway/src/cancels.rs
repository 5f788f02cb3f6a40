//! Cancels: a definite "this payment will never be captured" before the caller
//! gives the money back. A cancel never changes a charge; where there is none
//! it leaves a tombstone that declines every later charge for the paymentId.

use time::OffsetDateTime;

use crate::charges::{ChargeStatus, PaymentView, rfc3339, validate_id};
use crate::error::AppError;
use crate::state::{ChargeRecord, Gateway, Limits};

/// `declineCode` of a tombstone and of every charge it declines.
pub const CANCELED_DECLINE_CODE: &str = "canceled";
const CANCELED_MESSAGE: &str =
    "Payment was canceled before it was charged and will never be captured";

/// What a cancel records for a paymentId the gateway has no charge for. It has
/// no amount or currency: nothing was ever asked for.
#[derive(Debug, Clone)]
pub struct Tombstone {
    pub payment_id: String,
    pub reference: String,
    pub created_at: OffsetDateTime,
}

impl Tombstone {
    /// Always DECLINED: a tombstone never resolves to anything else.
    pub fn status(&self) -> ChargeStatus {
        ChargeStatus::Declined
    }

    /// The body of the cancel, of the status lookup and of any later charge.
    pub fn view(&self) -> Result<PaymentView, AppError> {
        let at = rfc3339(self.created_at)?;
        Ok(PaymentView {
            payment_id: self.payment_id.clone(),
            status: self.status(),
            reference: self.reference.clone(),
            amount: None,
            currency: None,
            decline_code: Some(CANCELED_DECLINE_CODE),
            message: CANCELED_MESSAGE,
            created_at: at.clone(),
            updated_at: at,
        })
    }
}

/// What a cancel request produced.
#[derive(Debug)]
pub struct CancelProcessed {
    pub view: PaymentView,
    /// True when this request recorded the tombstone (counted as `CANCELED`).
    pub tombstoned: bool,
}

/// Answers the current status, recording a tombstone when there is no charge.
/// Runs entirely under the lock, so a concurrent charge and cancel for the same
/// paymentId are ordered: whichever comes first decides.
pub fn process(
    gateway: &mut Gateway,
    limits: Limits,
    now: OffsetDateTime,
    payment_id: String,
) -> Result<CancelProcessed, AppError> {
    validate_id("paymentId", &payment_id)?;
    // `error` mode fails charges and refunds; like status lookups, cancels
    // keep working, so a saga can close what it could not charge.
    if let Some(record) = gateway.charges.get(&payment_id) {
        // APPROVED stays approved (only a refund undoes a capture), PENDING
        // stays pending (ask again later), DECLINED is already final.
        return Ok(CancelProcessed {
            view: record.view(now)?,
            tombstoned: false,
        });
    }
    if gateway.charges.len() >= limits.max_charges {
        return Err(AppError::StorageFull(limits.max_charges, "charges"));
    }
    let tombstone = Tombstone {
        payment_id,
        reference: format!("gwc_{}", ulid::Ulid::new()),
        created_at: now,
    };
    let view = tombstone.view()?;
    gateway.charges.insert(
        tombstone.payment_id.clone(),
        ChargeRecord::Canceled(tombstone),
    );
    Ok(CancelProcessed {
        view,
        tombstoned: true,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn a_tombstone_renders_as_declined_canceled_without_an_amount() {
        // GIVEN a tombstone
        let tombstone = Tombstone {
            payment_id: "pay_t".to_owned(),
            reference: "gwc_1".to_owned(),
            created_at: datetime!(2026-01-02 03:04:05.678 UTC),
        };
        // WHEN it is rendered
        let json = serde_json::to_value(tombstone.view().unwrap()).unwrap();
        // THEN the status-lookup shape, DECLINED / canceled, with no amount or currency
        assert_eq!(
            json,
            serde_json::json!({
                "paymentId": "pay_t",
                "status": "DECLINED",
                "reference": "gwc_1",
                "declineCode": "canceled",
                "message": CANCELED_MESSAGE,
                "createdAt": "2026-01-02T03:04:05.678Z",
                "updatedAt": "2026-01-02T03:04:05.678Z",
            })
        );
        assert_eq!(tombstone.status(), ChargeStatus::Declined);
    }
}
