//! Customer refunds of completed payments.

use serde::{Deserialize, Serialize};

use super::id::{PaymentId, RefundId, UserId};
use super::money::Money;
use super::payment::{Payment, PaymentChange, PaymentEvent, PaymentStatus, TransitionError};
use super::timestamp::Timestamp;

/// Longest free-text refund reason we store.
pub const REFUND_REASON_LENGTH_MAX: u32 = 256;

/// A refund advances step by step so that a crash at any point can be resumed:
/// `REQUESTED` (recorded, and its amount reserved on the payment — refunded
/// amount and status — in the same transaction, see [`Refund::reserve_on`]) →
/// `GATEWAY_REFUNDED` (money back at the gateway) → `COMPLETED` (wallet credited).
/// `FAILED`: the gateway definitely refused the refund; its reservation is
/// given back in the same transaction ([`Refund::release_on`]), so the
/// payment never claims money that did not move.
/// `RECONCILIATION_REQUIRED`: the refund saga ran out of retries before the
/// refund finished (metric and alarm); a person or the reconciler settles it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RefundStatus {
    Requested,
    GatewayRefunded,
    Completed,
    Failed,
    ReconciliationRequired,
}

impl RefundStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "REQUESTED",
            Self::GatewayRefunded => "GATEWAY_REFUNDED",
            Self::Completed => "COMPLETED",
            Self::Failed => "FAILED",
            Self::ReconciliationRequired => "RECONCILIATION_REQUIRED",
        }
    }

    /// Whether the refund saga is done with it (nothing moves it on its own).
    pub fn is_settled(self) -> bool {
        matches!(
            self,
            Self::Completed | Self::Failed | Self::ReconciliationRequired
        )
    }

    pub fn can_transition_to(self, to: RefundStatus) -> bool {
        use RefundStatus::*;
        match self {
            Requested => matches!(to, GatewayRefunded | Failed | ReconciliationRequired),
            GatewayRefunded => matches!(to, Completed | ReconciliationRequired),
            // A person (or the reconciler) may still finish what the saga
            // could not.
            ReconciliationRequired => matches!(to, GatewayRefunded | Completed | Failed),
            Completed | Failed => false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Refund {
    pub refund_id: RefundId,
    pub payment_id: PaymentId,
    pub user_id: UserId,
    pub amount: Money,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub status: RefundStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_reference: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub version: u64,
}

impl Refund {
    pub fn request(
        refund_id: RefundId,
        payment_id: PaymentId,
        user_id: UserId,
        amount: Money,
        reason: Option<String>,
        at: Timestamp,
    ) -> Self {
        Self {
            refund_id,
            payment_id,
            user_id,
            amount,
            reason,
            status: RefundStatus::Requested,
            gateway_reference: None,
            failure_reason: None,
            created_at: at,
            updated_at: at,
            version: 1,
        }
    }

    /// The refund moved on to `to`, with the gateway's reference or a failure
    /// reason where given; `version` + 1. Only forward steps are allowed.
    pub fn advance(
        &self,
        to: RefundStatus,
        gateway_reference: Option<String>,
        failure_reason: Option<String>,
        at: Timestamp,
    ) -> Result<Refund, TransitionError> {
        if !self.status.can_transition_to(to) {
            return Err(TransitionError::RefundNotAllowed {
                from: self.status,
                to,
            });
        }
        Ok(Refund {
            status: to,
            gateway_reference: gateway_reference.or_else(|| self.gateway_reference.clone()),
            failure_reason: failure_reason.or_else(|| self.failure_reason.clone()),
            updated_at: at,
            version: self.version.saturating_add(1),
            ..self.clone()
        })
    }

    /// Not finished yet: REQUESTED or GATEWAY_REFUNDED (its saga is under way,
    /// or never started), or RECONCILIATION_REQUIRED (its saga gave up). The
    /// open index holds exactly these, and the reconciler sweeps them.
    pub fn is_open(&self) -> bool {
        !matches!(self.status, RefundStatus::Completed | RefundStatus::Failed)
    }

    /// The change that reserves this refund's amount on `payment`: the refunded
    /// total grows by `amount`, and the payment becomes `REFUNDED` when nothing
    /// is left, else `PARTIALLY_REFUNDED`. [`PaymentChange::apply`] then refuses
    /// a payment that is not refundable and a total above the payment amount.
    pub fn reservation(&self, payment: &Payment) -> Result<PaymentChange, TransitionError> {
        // Another currency cannot be added to the total; it exceeds it by definition.
        let refunded = payment
            .refunded_amount
            .checked_add(&self.amount)
            .map_err(|_| TransitionError::RefundExceedsAmount {
                refunded: self.amount,
                amount: payment.amount,
            })?;
        Ok(PaymentChange {
            refunded_amount: Some(refunded),
            ..PaymentChange::to(refunded_status(payment, &refunded))
        })
    }

    /// The payment after reserving this refund on it (as read, `version` + 1)
    /// and the audit event of that change. Pure: both stores call this, then
    /// write the refund, the payment (conditioned on `payment.version`) and the
    /// event in one transaction, so concurrent refunds can never over-refund.
    pub fn reserve_on(
        &self,
        payment: &Payment,
        at: Timestamp,
    ) -> Result<(Payment, PaymentEvent), TransitionError> {
        // A refund reaching another payment or a later step here is a caller bug.
        assert_eq!(
            self.payment_id, payment.payment_id,
            "refund of another payment"
        );
        assert_eq!(self.user_id, payment.user_id, "refund for another user");
        assert_eq!(
            self.status,
            RefundStatus::Requested,
            "refund already under way"
        );
        assert!(!self.amount.is_zero(), "refund of nothing");
        self.changed(&self.reservation(payment)?, payment, at, "REFUND")
    }

    /// The change that gives this refund's reservation back on `payment`
    /// (the gateway refused it): the refunded total drops by `amount`, and
    /// the payment is COMPLETED again when nothing is left refunded, else
    /// PARTIALLY_REFUNDED.
    pub fn release(&self, payment: &Payment) -> Result<PaymentChange, TransitionError> {
        let refunded = payment
            .refunded_amount
            .checked_sub(&self.amount)
            .ok()
            .filter(|_| self.amount.amount() <= payment.refunded_amount.amount())
            .ok_or(TransitionError::ReleaseExceedsRefunded {
                released: self.amount,
                refunded: payment.refunded_amount,
            })?;
        Ok(PaymentChange {
            refunded_amount: Some(refunded),
            release: true,
            ..PaymentChange::to(refunded_status(payment, &refunded))
        })
    }

    /// The payment after releasing this (refused) refund's reservation on it
    /// (as read, `version` + 1) and that change's audit event: what both
    /// stores write with the FAILED refund in one transaction.
    pub fn release_on(
        &self,
        payment: &Payment,
        at: Timestamp,
    ) -> Result<(Payment, PaymentEvent), TransitionError> {
        assert_eq!(
            self.payment_id, payment.payment_id,
            "refund of another payment"
        );
        self.changed(&self.release(payment)?, payment, at, "REFUND_RELEASED")
    }

    /// `payment` after `change`, and its audit event naming this refund
    /// (`<what> <refundId> <amount>`).
    fn changed(
        &self,
        change: &PaymentChange,
        payment: &Payment,
        at: Timestamp,
        what: &str,
    ) -> Result<(Payment, PaymentEvent), TransitionError> {
        let after = change.apply(payment, at)?;
        let mut event = PaymentEvent::status_changed(payment, &after);
        event.detail = Some(format!("{what} {} {}", self.refund_id, self.amount));
        Ok((after, event))
    }

    /// Whether `other` is the same refund request (a retried create).
    pub fn same_request(&self, other: &Refund) -> bool {
        self.refund_id == other.refund_id
            && self.payment_id == other.payment_id
            && self.user_id == other.user_id
            && self.amount == other.amount
            && self.reason == other.reason
    }
}

/// The status a payment has with `refunded` of it refunded (reserved):
/// COMPLETED with nothing, REFUNDED with all of it, else PARTIALLY_REFUNDED.
fn refunded_status(payment: &Payment, refunded: &Money) -> PaymentStatus {
    if refunded.is_zero() {
        PaymentStatus::Completed
    } else if *refunded == payment.amount {
        PaymentStatus::Refunded
    } else {
        PaymentStatus::PartiallyRefunded
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeMap;

    use super::RefundStatus::*;
    use super::*;
    use crate::domain::NewPayment;

    fn usd(text: &str) -> Money {
        Money::parse(text, "USD").unwrap()
    }

    fn payment(status: PaymentStatus, refunded: &str) -> Payment {
        let new = NewPayment {
            payment_id: PaymentId::generate(),
            user_id: UserId::parse("user_1").unwrap(),
            amount: usd("100"),
            order_id: None,
            description: None,
            metadata: BTreeMap::new(),
        };
        Payment {
            status,
            refunded_amount: usd(refunded),
            ..Payment::create(new, Timestamp::now())
        }
    }

    fn refund_of(payment: &Payment, amount: &str) -> Refund {
        Refund::request(
            RefundId::generate(),
            payment.payment_id,
            payment.user_id.clone(),
            usd(amount),
            None,
            Timestamp::now(),
        )
    }

    #[test]
    fn a_refused_refund_releases_exactly_its_amount_and_nothing_else_can() {
        let refunded = payment(PaymentStatus::Refunded, "100");
        let refund = refund_of(&refunded, "40");
        let (after, event) = refund.release_on(&refunded, Timestamp::now()).unwrap();
        assert_eq!(after.status, PaymentStatus::PartiallyRefunded);
        assert_eq!(after.refunded_amount, usd("60"));
        assert_eq!(
            event
                .detail
                .as_deref()
                .map(|d| d.starts_with("REFUND_RELEASED")),
            Some(true)
        );
        let whole = refund_of(&after, "60");
        let (back, _) = whole.release_on(&after, Timestamp::now()).unwrap();
        assert_eq!(back.status, PaymentStatus::Completed);
        assert!(back.refunded_amount.is_zero());
        // more than is refunded cannot be released
        let too_much = refund_of(&after, "60.01");
        assert!(matches!(
            too_much.release_on(&after, Timestamp::now()),
            Err(TransitionError::ReleaseExceedsRefunded { .. })
        ));
        // and no other change takes a refunded payment back (a replayed
        // COMPLETE stays refused)
        let replay = PaymentChange::completed("gw_1".into());
        assert!(replay.apply(&refunded, Timestamp::now()).is_err());
        let unmarked = PaymentChange {
            refunded_amount: Some(usd("60")),
            ..PaymentChange::to(PaymentStatus::PartiallyRefunded)
        };
        assert!(unmarked.apply(&refunded, Timestamp::now()).is_err());
    }

    #[test]
    fn reserving_adds_to_the_refunded_total_and_picks_the_status() {
        // GIVEN a completed payment of 100
        let completed = payment(PaymentStatus::Completed, "0");
        // WHEN 40 is reserved THEN it is partially refunded, with its event
        let refund = refund_of(&completed, "40");
        let (after, event) = refund.reserve_on(&completed, Timestamp::now()).unwrap();
        assert_eq!(after.status, PaymentStatus::PartiallyRefunded);
        assert_eq!(after.refunded_amount, usd("40"));
        assert_eq!(after.version, completed.version + 1);
        assert_eq!(event.from_status, Some(PaymentStatus::Completed));
        assert_eq!(event.version, after.version);
        assert!(
            event
                .detail
                .unwrap()
                .contains(&refund.refund_id.to_string())
        );
        // AND the remaining 60 makes it refunded
        let (last, _) = refund_of(&after, "60")
            .reserve_on(&after, Timestamp::now())
            .unwrap();
        assert_eq!(last.status, PaymentStatus::Refunded);
        assert_eq!(last.refunded_amount, usd("100"));
    }

    #[test]
    fn reserving_refuses_over_refunds_and_unrefundable_payments() {
        let partial = payment(PaymentStatus::PartiallyRefunded, "50");
        let err = refund_of(&partial, "50.01").reserve_on(&partial, Timestamp::now());
        assert!(matches!(
            err,
            Err(TransitionError::RefundExceedsAmount { .. })
        ));
        for status in [
            PaymentStatus::Pending,
            PaymentStatus::Processing,
            PaymentStatus::Failed,
            PaymentStatus::Refunded,
            PaymentStatus::ReconciliationRequired,
        ] {
            let unrefundable = payment(status, "0");
            let err = refund_of(&unrefundable, "1").reserve_on(&unrefundable, Timestamp::now());
            assert!(
                matches!(err, Err(TransitionError::NotAllowed { .. })),
                "{status}"
            );
        }
        let yen = Refund {
            amount: Money::parse("1", "JPY").unwrap(),
            ..refund_of(&partial, "1")
        };
        assert!(matches!(
            yen.reservation(&partial),
            Err(TransitionError::RefundExceedsAmount { .. })
        ));
    }

    #[test]
    fn refund_steps_only_move_forward() {
        assert!(Requested.can_transition_to(GatewayRefunded));
        assert!(GatewayRefunded.can_transition_to(Completed));
        assert!(Requested.can_transition_to(Failed));
        assert!(!GatewayRefunded.can_transition_to(Failed));
        assert!(!Completed.can_transition_to(Requested));
        assert!(!Failed.can_transition_to(Completed));
    }
}
