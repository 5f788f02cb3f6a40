//! Customer refunds of completed payments.

use serde::{Deserialize, Serialize};

use super::id::{PaymentId, RefundId, UserId};
use super::money::Money;
use super::payment::TransitionError;
use super::timestamp::Timestamp;

/// Longest free-text refund reason we store.
pub const REFUND_REASON_LENGTH_MAX: u32 = 256;

/// A refund advances step by step so that a crash at any point can be resumed:
/// `REQUESTED` (recorded) → `GATEWAY_REFUNDED` (money back at the gateway) →
/// `COMPLETED` (wallet credited, payment's refunded amount updated).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RefundStatus {
    Requested,
    GatewayRefunded,
    Completed,
    Failed,
}

impl RefundStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "REQUESTED",
            Self::GatewayRefunded => "GATEWAY_REFUNDED",
            Self::Completed => "COMPLETED",
            Self::Failed => "FAILED",
        }
    }

    pub fn can_transition_to(self, to: RefundStatus) -> bool {
        use RefundStatus::*;
        match self {
            Requested => matches!(to, GatewayRefunded | Failed),
            GatewayRefunded => matches!(to, Completed),
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

    /// Whether `other` is the same refund request (a retried create).
    pub fn same_request(&self, other: &Refund) -> bool {
        self.refund_id == other.refund_id
            && self.payment_id == other.payment_id
            && self.user_id == other.user_id
            && self.amount == other.amount
            && self.reason == other.reason
    }
}

#[cfg(test)]
mod tests {
    use super::RefundStatus::*;

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
