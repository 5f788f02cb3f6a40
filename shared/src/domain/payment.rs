//! Payments, their statuses and the one place where status transitions are decided.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::id::{PaymentId, UserId};
use super::money::Money;
use super::timestamp::Timestamp;

/// Client-supplied text fields are bounded so one payment item stays far below
/// DynamoDB's 400 KB item limit.
pub const ORDER_ID_LENGTH_MAX: u32 = 128;
pub const DESCRIPTION_LENGTH_MAX: u32 = 512;
pub const METADATA_ENTRY_COUNT_MAX: u32 = 20;
pub const METADATA_KEY_LENGTH_MAX: u32 = 40;
pub const METADATA_VALUE_LENGTH_MAX: u32 = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PaymentStatus {
    Pending,
    Processing,
    Completed,
    Failed,
    PartiallyRefunded,
    Refunded,
    ReconciliationRequired,
}

impl PaymentStatus {
    pub const ALL: [PaymentStatus; 7] = [
        Self::Pending,
        Self::Processing,
        Self::Completed,
        Self::Failed,
        Self::PartiallyRefunded,
        Self::Refunded,
        Self::ReconciliationRequired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Processing => "PROCESSING",
            Self::Completed => "COMPLETED",
            Self::Failed => "FAILED",
            Self::PartiallyRefunded => "PARTIALLY_REFUNDED",
            Self::Refunded => "REFUNDED",
            Self::ReconciliationRequired => "RECONCILIATION_REQUIRED",
        }
    }

    /// The saga is over for this payment (refunds may still follow a completion).
    pub fn is_terminal(self) -> bool {
        match self {
            Self::Completed | Self::Failed | Self::PartiallyRefunded | Self::Refunded => true,
            Self::Pending | Self::Processing | Self::ReconciliationRequired => false,
        }
    }

    /// Whether `self → to` is allowed. This is the only definition of the
    /// payment lifecycle (DESIGN §5); every writer goes through it.
    ///
    /// - `PENDING → PROCESSING` once the wallet is debited; `PENDING → FAILED` when
    ///   the debit is refused;
    /// - `PROCESSING → COMPLETED | FAILED`;
    /// - either in-flight status → `RECONCILIATION_REQUIRED` when compensation
    ///   cannot be completed; an operator (or the reconciler) resolves that to
    ///   `COMPLETED | FAILED`;
    /// - `FAILED → RECONCILIATION_REQUIRED` too: a payment api-handler failed
    ///   because its saga seemed not to start (`SAGA_NOT_STARTED`), whose saga
    ///   did start and debited it, and could then not close it at the gateway
    ///   and give the debit back. FAILED would hide money held; the reconciler
    ///   settles it (found by the simulator, seed 93169);
    /// - `COMPLETED → PARTIALLY_REFUNDED → … → REFUNDED` (refunds only).
    pub fn can_transition_to(self, to: PaymentStatus) -> bool {
        use PaymentStatus::*;
        match self {
            Pending => matches!(to, Processing | Failed | ReconciliationRequired),
            Processing => matches!(to, Completed | Failed | ReconciliationRequired),
            ReconciliationRequired => matches!(to, Completed | Failed),
            Completed => matches!(to, PartiallyRefunded | Refunded),
            PartiallyRefunded => matches!(to, PartiallyRefunded | Refunded),
            Failed => matches!(to, ReconciliationRequired),
            Refunded => false,
        }
    }

    /// Whether a refund may be taken from a payment in this status.
    pub fn is_refundable(self) -> bool {
        match self {
            Self::Completed | Self::PartiallyRefunded => true,
            Self::Pending
            | Self::Processing
            | Self::Failed
            | Self::Refunded
            | Self::ReconciliationRequired => false,
        }
    }
}

impl fmt::Display for PaymentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown payment status `{0}`")]
pub struct UnknownStatus(pub String);

impl FromStr for PaymentStatus {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.chars().take(40).collect()))
    }
}

/// One payment. `version` increments on every change (optimistic concurrency).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Payment {
    pub payment_id: PaymentId,
    pub user_id: UserId,
    pub amount: Money,
    pub status: PaymentStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_reference: Option<String>,
    /// Machine-readable reason for FAILED / RECONCILIATION_REQUIRED (e.g. `INSUFFICIENT_FUNDS`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    pub refunded_amount: Money,
    /// The task token of the saga's wait for the gateway's word
    /// (`AwaitGatewayWebhook`, STANDARD only): whoever hears the gateway's
    /// final answer first (the reconciler, woken by a webhook) sends it to
    /// the waiting saga with it. Not a status: stored beside the version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_token: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub version: u64,
}

/// The client-controlled part of a new payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPayment {
    pub payment_id: PaymentId,
    pub user_id: UserId,
    pub amount: Money,
    pub order_id: Option<String>,
    pub description: Option<String>,
    pub metadata: BTreeMap<String, String>,
}

impl Payment {
    pub fn create(new: NewPayment, at: Timestamp) -> Self {
        let currency = new.amount.currency();
        Self {
            payment_id: new.payment_id,
            user_id: new.user_id,
            amount: new.amount,
            status: PaymentStatus::Pending,
            order_id: new.order_id,
            description: new.description,
            metadata: new.metadata,
            gateway_reference: None,
            failure_reason: None,
            refunded_amount: Money::zero(currency),
            wait_token: None,
            created_at: at,
            updated_at: at,
            version: 1,
        }
    }

    /// Whether `new` describes this payment (a retried create is then a no-op;
    /// anything else under the same id is a conflict).
    pub fn matches(&self, new: &NewPayment) -> bool {
        self.payment_id == new.payment_id
            && self.user_id == new.user_id
            && self.amount == new.amount
            && self.order_id == new.order_id
            && self.description == new.description
            && self.metadata == new.metadata
    }

    /// Not settled yet: its saga is under way or ended without settling it
    /// (RECONCILIATION_REQUIRED). The open index holds exactly these, and the
    /// reconciler sweeps them.
    pub fn is_open(&self) -> bool {
        !self.status.is_terminal()
    }

    /// What is left to refund.
    pub fn refundable_amount(&self) -> Money {
        // refunded ≤ amount is kept by every writer (see `PaymentChange::refund`).
        self.amount
            .checked_sub(&self.refunded_amount)
            .unwrap_or(Money::zero(self.amount.currency()))
    }
}

/// A status change with the data that comes with it. Pure: `apply` computes the
/// next payment; stores write it with a condition on the current `version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentChange {
    pub to: PaymentStatus,
    pub gateway_reference: Option<String>,
    pub failure_reason: Option<String>,
    /// For refunds: the new total refunded.
    pub refunded_amount: Option<Money>,
    /// Applies only to a payment in this status (a fence: api-handler fails
    /// a payment whose saga did not start only while it is still PENDING,
    /// never one a running saga has moved on).
    pub only_from: Option<PaymentStatus>,
    /// A refund the gateway refused gives its reservation back: the refunded
    /// total goes down (`refunded_amount`), and a REFUNDED or
    /// PARTIALLY_REFUNDED payment goes back to PARTIALLY_REFUNDED or
    /// COMPLETED. Only this change may move a payment that way.
    pub release: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    #[error("payment cannot go from {from} to {to}")]
    NotAllowed {
        from: PaymentStatus,
        to: PaymentStatus,
    },
    #[error("refund cannot go from {from:?} to {to:?}")]
    RefundNotAllowed {
        from: super::refund::RefundStatus,
        to: super::refund::RefundStatus,
    },
    #[error("refunded amount {refunded} would exceed the payment amount {amount}")]
    RefundExceedsAmount { refunded: Money, amount: Money },
    #[error("cannot release {released}: only {refunded} is refunded")]
    ReleaseExceedsRefunded { released: Money, refunded: Money },
}

impl PaymentChange {
    pub fn to(to: PaymentStatus) -> Self {
        Self {
            to,
            gateway_reference: None,
            failure_reason: None,
            refunded_amount: None,
            only_from: None,
            release: false,
        }
    }

    /// This change, allowed only from `from`.
    pub fn only_from(self, from: PaymentStatus) -> Self {
        Self {
            only_from: Some(from),
            ..self
        }
    }

    pub fn completed(gateway_reference: String) -> Self {
        Self {
            gateway_reference: Some(gateway_reference),
            ..Self::to(PaymentStatus::Completed)
        }
    }

    pub fn failed(reason: String) -> Self {
        Self {
            failure_reason: Some(reason),
            ..Self::to(PaymentStatus::Failed)
        }
    }

    pub fn reconciliation_required(reason: String) -> Self {
        Self {
            failure_reason: Some(reason),
            ..Self::to(PaymentStatus::ReconciliationRequired)
        }
    }

    /// Whether `payment` already reflects this change (a retried step).
    pub fn is_applied_to(&self, payment: &Payment) -> bool {
        let status_same = payment.status == self.to;
        let reference_same =
            self.gateway_reference.is_none() || payment.gateway_reference == self.gateway_reference;
        let refunded_same = self
            .refunded_amount
            .is_none_or(|refunded| payment.refunded_amount == refunded);
        // A fenced change is applied only if it was this change (the same
        // reason), not another writer's move to the same status.
        let fence_same = self.only_from.is_none() || payment.failure_reason == self.failure_reason;
        status_same && reference_same && refunded_same && fence_same
    }

    /// Whether this is a release the payment allows: from a refunded status
    /// back to one with less refunded, the total going down.
    fn is_release_of(&self, payment: &Payment) -> bool {
        use PaymentStatus::*;
        let back = matches!(
            (payment.status, self.to),
            (PartiallyRefunded | Refunded, PartiallyRefunded | Completed)
        );
        let less = self.refunded_amount.is_some_and(|refunded| {
            refunded.currency() == payment.refunded_amount.currency()
                && refunded.amount() < payment.refunded_amount.amount()
                && (refunded.is_zero() == (self.to == Completed))
        });
        self.release && back && less
    }

    /// The payment after this change, or why it is not allowed.
    pub fn apply(&self, payment: &Payment, at: Timestamp) -> Result<Payment, TransitionError> {
        let fenced = self.only_from.is_some_and(|from| payment.status != from);
        let allowed = if self.release {
            self.is_release_of(payment)
        } else {
            payment.status.can_transition_to(self.to)
        };
        if fenced || !allowed {
            return Err(TransitionError::NotAllowed {
                from: payment.status,
                to: self.to,
            });
        }
        let mut next = payment.clone();
        if let Some(refunded) = self.refunded_amount {
            if refunded.currency() != payment.amount.currency()
                || refunded.amount() > payment.amount.amount()
            {
                return Err(TransitionError::RefundExceedsAmount {
                    refunded,
                    amount: payment.amount,
                });
            }
            next.refunded_amount = refunded;
        }
        next.status = self.to;
        if self.gateway_reference.is_some() {
            next.gateway_reference.clone_from(&self.gateway_reference);
        }
        if self.failure_reason.is_some() {
            next.failure_reason.clone_from(&self.failure_reason);
        }
        if self.to == PaymentStatus::Completed {
            // Completed from RECONCILIATION_REQUIRED: it has not failed (the
            // reason it needed reconciling stays in its event trail).
            next.failure_reason = None;
        }
        next.updated_at = at;
        next.version = payment.version.saturating_add(1);
        Ok(next)
    }
}

/// What an audit entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PaymentEventType {
    PaymentCreated,
    StatusChanged,
}

/// One entry in a payment's audit trail (PaymentEvents table). Written in the
/// same transaction as the change it records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentEvent {
    pub payment_id: PaymentId,
    pub user_id: UserId,
    pub event_type: PaymentEventType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_status: Option<PaymentStatus>,
    pub status: PaymentStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    pub at: Timestamp,
    /// The payment's version after the change; makes the sort key unique.
    pub version: u64,
}

impl PaymentEvent {
    pub fn created(payment: &Payment) -> Self {
        Self {
            payment_id: payment.payment_id,
            user_id: payment.user_id.clone(),
            event_type: PaymentEventType::PaymentCreated,
            from_status: None,
            status: payment.status,
            detail: None,
            at: payment.created_at,
            version: payment.version,
        }
    }

    pub fn status_changed(before: &Payment, after: &Payment) -> Self {
        Self {
            payment_id: after.payment_id,
            user_id: after.user_id.clone(),
            event_type: PaymentEventType::StatusChanged,
            from_status: Some(before.status),
            status: after.status,
            detail: after
                .failure_reason
                .clone()
                .filter(|_| after.status != before.status),
            at: after.updated_at,
            version: after.version,
        }
    }

    /// Sort key `time#version`: time order, unique per payment.
    pub fn sort_key(&self) -> String {
        format!("{}#{:010}", self.at, self.version)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn payment(status: PaymentStatus) -> Payment {
        let new = NewPayment {
            payment_id: PaymentId::generate(),
            user_id: UserId::parse("user_1").unwrap(),
            amount: Money::parse("50", "USD").unwrap(),
            order_id: None,
            description: None,
            metadata: BTreeMap::new(),
        };
        Payment {
            status,
            ..Payment::create(new, Timestamp::now())
        }
    }

    #[test]
    fn lifecycle_follows_the_design() {
        use PaymentStatus::*;
        let allowed = [
            (Pending, Processing),
            (Pending, Failed),
            (Pending, ReconciliationRequired),
            (Processing, Completed),
            (Processing, Failed),
            (Processing, ReconciliationRequired),
            (ReconciliationRequired, Completed),
            (ReconciliationRequired, Failed),
            (Failed, ReconciliationRequired),
            (Completed, PartiallyRefunded),
            (Completed, Refunded),
            (PartiallyRefunded, PartiallyRefunded),
            (PartiallyRefunded, Refunded),
        ];
        for from in PaymentStatus::ALL {
            for to in PaymentStatus::ALL {
                let expected = allowed.contains(&(from, to));
                assert_eq!(from.can_transition_to(to), expected, "{from} -> {to}");
            }
        }
    }

    #[test]
    fn a_payment_completed_after_reconciliation_no_longer_shows_a_failure_reason() {
        let flagged = PaymentChange::reconciliation_required("GATEWAY_OUTCOME_UNKNOWN".into())
            .apply(&payment(PaymentStatus::Processing), Timestamp::now())
            .unwrap();
        assert_eq!(
            flagged.failure_reason.as_deref(),
            Some("GATEWAY_OUTCOME_UNKNOWN")
        );
        let completed = PaymentChange::completed("gw_1".into())
            .apply(&flagged, Timestamp::now())
            .unwrap();
        assert_eq!(completed.status, PaymentStatus::Completed);
        assert_eq!(completed.failure_reason, None);
        assert_eq!(completed.gateway_reference.as_deref(), Some("gw_1"));
    }

    #[test]
    fn terminal_payments_change_only_by_refund_or_to_be_reconciled() {
        for from in PaymentStatus::ALL.into_iter().filter(|s| s.is_terminal()) {
            for to in PaymentStatus::ALL {
                if from.can_transition_to(to) {
                    let reconciled = (from, to)
                        == (PaymentStatus::Failed, PaymentStatus::ReconciliationRequired);
                    assert!(
                        reconciled
                            || matches!(
                                to,
                                PaymentStatus::PartiallyRefunded | PaymentStatus::Refunded
                            ),
                        "{from} -> {to}"
                    );
                }
            }
        }
    }

    #[test]
    fn apply_bumps_version_and_records_reference() {
        let before = payment(PaymentStatus::Processing);
        let change = PaymentChange::completed("gw_1".into());
        let after = change.apply(&before, Timestamp::now()).unwrap();
        assert_eq!(after.status, PaymentStatus::Completed);
        assert_eq!(after.gateway_reference.as_deref(), Some("gw_1"));
        assert_eq!(after.version, before.version + 1);
        assert!(change.is_applied_to(&after));
        assert!(!change.is_applied_to(&before));
    }

    #[test]
    fn apply_refuses_disallowed_transitions_and_over_refunds() {
        let failed = payment(PaymentStatus::Failed);
        let err = PaymentChange::completed("gw".into()).apply(&failed, Timestamp::now());
        assert!(matches!(err, Err(TransitionError::NotAllowed { .. })));
        let completed = payment(PaymentStatus::Completed);
        let over = PaymentChange {
            refunded_amount: Some(Money::parse("50.01", "USD").unwrap()),
            ..PaymentChange::to(PaymentStatus::Refunded)
        };
        let err = over.apply(&completed, Timestamp::now());
        assert!(matches!(
            err,
            Err(TransitionError::RefundExceedsAmount { .. })
        ));
    }

    #[test]
    fn statuses_parse_from_their_wire_names() {
        for status in PaymentStatus::ALL {
            assert_eq!(status.as_str().parse::<PaymentStatus>().unwrap(), status);
            let json = serde_json::to_string(&status).unwrap();
            assert_eq!(json, format!("\"{}\"", status.as_str()));
        }
        assert!("COMPLETE".parse::<PaymentStatus>().is_err());
    }
}
