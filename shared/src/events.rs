//! Wire types of the saga: the execution input and each Lambda task's input
//! (a command tagged by `action`) and output. camelCase JSON; money as
//! `{"amount":"10.50","currency":"EUR"}`. The state machine
//! (`state-machine/payment-saga.asl.json`) builds these with `Parameters`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::domain::{
    LedgerEntry, Money, MovementReceipt, NewPayment, Payment, PaymentId, PaymentStatus, RefundId,
    Timestamp, UserId,
};

/// The execution input `api-handler` starts the saga with; the execution
/// name is the `paymentId`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SagaInput {
    pub payment_id: PaymentId,
    pub user_id: UserId,
    pub amount: Money,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

impl From<&NewPayment> for SagaInput {
    fn from(new: &NewPayment) -> Self {
        Self {
            payment_id: new.payment_id,
            user_id: new.user_id.clone(),
            amount: new.amount,
            order_id: new.order_id.clone(),
            description: new.description.clone(),
            metadata: new.metadata.clone(),
        }
    }
}

impl From<SagaInput> for NewPayment {
    fn from(input: SagaInput) -> Self {
        Self {
            payment_id: input.payment_id,
            user_id: input.user_id,
            amount: input.amount,
            order_id: input.order_id,
            description: input.description,
            metadata: input.metadata,
        }
    }
}

/// `invoice-processor`: every status change of a payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "action",
    rename_all = "SCREAMING_SNAKE_CASE",
    rename_all_fields = "camelCase"
)]
pub enum InvoiceCommand {
    /// Create the PENDING payment (idempotent by `paymentId`). The state
    /// machine passes the execution input as `payment`.
    Create { payment: SagaInput },
    /// The wallet was debited: PENDING → PROCESSING.
    MarkProcessing { payment_id: PaymentId },
    /// The saga waits for the gateway's final word (`AwaitGatewayWebhook`,
    /// `lambda:invoke.waitForTaskToken`): keep its task token with the
    /// PROCESSING payment, for the reconciler to wake it with. No status
    /// change.
    AwaitGateway {
        payment_id: PaymentId,
        task_token: String,
    },
    /// The gateway captured the charge: → COMPLETED.
    Complete {
        payment_id: PaymentId,
        gateway_reference: String,
    },
    /// → FAILED with a reason code derived from the error name that led here.
    Fail {
        payment_id: PaymentId,
        /// An error name (`InsufficientFunds`, `States.Timeout`, …) or a reason code.
        reason: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cause: Option<String>,
    },
    /// Compensation could not be completed or the outcome is unknown: alarm.
    MarkReconciliationRequired {
        payment_id: PaymentId,
        reason: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cause: Option<String>,
    },
}

impl InvoiceCommand {
    pub fn payment_id(&self) -> PaymentId {
        match self {
            Self::Create { payment } => payment.payment_id,
            Self::MarkProcessing { payment_id }
            | Self::AwaitGateway { payment_id, .. }
            | Self::Complete { payment_id, .. }
            | Self::Fail { payment_id, .. }
            | Self::MarkReconciliationRequired { payment_id, .. } => *payment_id,
        }
    }
}

/// What `invoice-processor` returns: the payment after the change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InvoiceReply {
    pub payment_id: PaymentId,
    pub status: PaymentStatus,
    pub version: u64,
}

impl From<&Payment> for InvoiceReply {
    fn from(payment: &Payment) -> Self {
        Self {
            payment_id: payment.payment_id,
            status: payment.status,
            version: payment.version,
        }
    }
}

/// `wallet-service`: the saga's wallet movements.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "action",
    rename_all = "SCREAMING_SNAKE_CASE",
    rename_all_fields = "camelCase"
)]
pub enum WalletCommand {
    /// Take the payment's amount (exactly once per payment).
    Debit {
        payment_id: PaymentId,
        user_id: UserId,
        amount: Money,
    },
    /// Give the payment's debit back (exactly once; nothing if never debited).
    Compensate {
        payment_id: PaymentId,
        user_id: UserId,
        amount: Money,
    },
}

impl WalletCommand {
    pub fn payment_id(&self) -> PaymentId {
        match self {
            Self::Debit { payment_id, .. } | Self::Compensate { payment_id, .. } => *payment_id,
        }
    }
}

/// What `wallet-service` returns for a movement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WalletReply {
    /// False only for a compensation of a payment that was never debited.
    pub moved: bool,
    /// True when this delivery repeated an earlier one and moved nothing now.
    pub replayed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tx_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balance_after: Option<Money>,
}

impl WalletReply {
    pub fn moved(receipt: &MovementReceipt) -> Self {
        let LedgerEntry {
            tx_id,
            balance_after,
            ..
        } = &receipt.entry;
        Self {
            moved: true,
            replayed: receipt.replayed,
            tx_id: Some(tx_id.clone()),
            balance_after: Some(*balance_after),
        }
    }

    pub fn nothing_to_compensate() -> Self {
        Self {
            moved: false,
            replayed: false,
            tx_id: None,
            balance_after: None,
        }
    }
}

/// `payments-adapter`: calls to the external gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "action",
    rename_all = "SCREAMING_SNAKE_CASE",
    rename_all_fields = "camelCase"
)]
pub enum GatewayCommand {
    /// Charge the payment (the `paymentId` is the gateway idempotency key).
    /// A decline is the `PaymentDeclined` error, never a reply.
    Charge {
        payment_id: PaymentId,
        user_id: UserId,
        amount: Money,
    },
    /// Ask the gateway what became of the charge. `checks` counts earlier
    /// status checks, so the state machine can bound its waiting loop.
    Status {
        payment_id: PaymentId,
        #[serde(default)]
        checks: u32,
    },
    /// Close the payment at the gateway before its money is given back: the
    /// answer is final (DECLINED: it never was and never will be captured;
    /// APPROVED: it was captured and can only be refunded; PENDING: ask
    /// again later). `checks` is carried like `Status`'s.
    Cancel {
        payment_id: PaymentId,
        #[serde(default)]
        checks: u32,
    },
}

impl GatewayCommand {
    pub fn payment_id(&self) -> PaymentId {
        match self {
            Self::Charge { payment_id, .. }
            | Self::Status { payment_id, .. }
            | Self::Cancel { payment_id, .. } => *payment_id,
        }
    }
}

/// The gateway's view of a charge, as the state machine's `Choice` reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ChargeStatus {
    Approved,
    Pending,
    Declined,
    /// The gateway has no charge for this payment: it was never processed.
    NotFound,
}

impl ChargeStatus {
    /// The wire name the state machine's `Choice` rules compare against.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approved => "APPROVED",
            Self::Pending => "PENDING",
            Self::Declined => "DECLINED",
            Self::NotFound => "NOT_FOUND",
        }
    }
}

/// What `payments-adapter` returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayReply {
    pub status: ChargeStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_reference: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decline_code: Option<String>,
    /// Status checks made so far (0 after a charge).
    pub checks: u32,
}

/// `refund-service`: reserve a refund (api-handler, synchronously), then the
/// steps of the refund saga (`state-machine/refund-saga.asl.json`). Every
/// action is idempotent by `refundId` and a no-op on a refund past its step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "action",
    rename_all = "SCREAMING_SNAKE_CASE",
    rename_all_fields = "camelCase"
)]
pub enum RefundTask {
    /// Record the REQUESTED refund and reserve its amount on the payment.
    Reserve(RefundCommand),
    /// Money back at the gateway (idempotent there per `refundId`):
    /// REQUESTED → GATEWAY_REFUNDED, or FAILED if the gateway refuses.
    RefundAtGateway { refund_id: RefundId },
    /// The refund credit in the wallet: GATEWAY_REFUNDED → COMPLETED.
    CreditWallet { refund_id: RefundId },
    /// Retries ran out: → RECONCILIATION_REQUIRED (metric and alarm).
    MarkReconciliationRequired {
        refund_id: RefundId,
        /// The error name that led here.
        reason: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cause: Option<String>,
    },
}

impl RefundTask {
    pub fn refund_id(&self) -> RefundId {
        match self {
            Self::Reserve(command) => command.refund_id,
            Self::RefundAtGateway { refund_id }
            | Self::CreditWallet { refund_id }
            | Self::MarkReconciliationRequired { refund_id, .. } => *refund_id,
        }
    }
}

/// The execution input of the refund saga; the execution name is the
/// `refundId`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefundSagaInput {
    pub refund_id: RefundId,
    pub payment_id: PaymentId,
    pub amount: Money,
}

/// A refund to reserve on a completed payment (part of it, or all that is
/// left).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefundCommand {
    pub refund_id: RefundId,
    pub payment_id: PaymentId,
    /// The full remaining amount when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<Money>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What the reconciler is asked (`lambdas/reconciler`): its schedule sends
/// `{}` (every default), `saga reconcile` its options, api-handler the items
/// of a verified gateway webhook. Unknown fields (an EventBridge event's own) are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReconcileRequest {
    /// Ask the gateway, change nothing, say what would be done.
    #[serde(default)]
    pub dry_run: bool,
    /// Only items created at or after this instant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_age_min_seconds: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_age_min_seconds: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_count_max: Option<u32>,
    /// Only these payments (and `refundIds`), at any age: what a verified
    /// gateway webhook asks for (the gateway says the outcome is final; the
    /// run still asks it again before anything moves). The open index is not
    /// read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub payment_ids: Vec<PaymentId>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refund_ids: Vec<RefundId>,
}

impl ReconcileRequest {
    /// The request for the items one gateway event is about.
    pub fn targeted(payment_ids: Vec<PaymentId>, refund_ids: Vec<RefundId>) -> Self {
        Self {
            payment_ids,
            refund_ids,
            ..Self::default()
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn commands_are_tagged_by_action_in_camel_case() {
        let payment_id = PaymentId::generate();
        let command: WalletCommand = serde_json::from_value(json!({
            "action": "DEBIT",
            "paymentId": payment_id.to_string(),
            "userId": "user_1",
            "amount": {"amount": "50.00", "currency": "USD"}
        }))
        .unwrap();
        assert_eq!(command.payment_id(), payment_id);
        let create = json!({
            "action": "CREATE",
            "payment": {
                "paymentId": payment_id.to_string(),
                "userId": "user_1",
                "amount": {"amount": "50.00", "currency": "USD"},
                "orderId": "o-1"
            }
        });
        let command: InvoiceCommand = serde_json::from_value(create).unwrap();
        assert!(
            matches!(command, InvoiceCommand::Create { ref payment } if payment.order_id.as_deref() == Some("o-1"))
        );
        let status: GatewayCommand = serde_json::from_value(
            json!({"action": "STATUS", "paymentId": payment_id.to_string()}),
        )
        .unwrap();
        assert_eq!(
            status,
            GatewayCommand::Status {
                payment_id,
                checks: 0
            }
        );
    }

    #[test]
    fn charge_status_names_are_its_wire_names() {
        use ChargeStatus::*;
        for status in [Approved, Pending, Declined, NotFound] {
            assert_eq!(
                serde_json::to_value(status).unwrap(),
                json!(status.as_str())
            );
        }
    }

    #[test]
    fn replies_serialize_for_choice_rules() {
        let reply = GatewayReply {
            status: ChargeStatus::NotFound,
            gateway_reference: None,
            decline_code: None,
            checks: 3,
        };
        assert_eq!(
            serde_json::to_value(&reply).unwrap(),
            json!({"status": "NOT_FOUND", "checks": 3})
        );
    }
}
