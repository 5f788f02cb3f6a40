//! The two ports only this Lambda uses: starting the sagas and reserving a
//! refund. Their AWS implementations are in [`crate::aws`]; tests use fakes.

use async_trait::async_trait;
use shared::TaskError;
use shared::domain::Refund;
use shared::events::{ReconcileRequest, RefundCommand, RefundSagaInput, SagaInput};

/// Why the saga could not be started, by what it says about the execution.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SagaStartError {
    /// Step Functions throttled us (after the SDK's own retries): nothing
    /// started.
    #[error("step functions throttled the start: {0}")]
    Throttled(String),
    /// Step Functions answered that it started nothing (execution limit
    /// exceeded).
    #[error("step functions unavailable: {0}")]
    Unavailable(String),
    /// No answer (timeout, connection lost after sending) or a 5xx: the
    /// execution may have started. Never treated as "not started".
    #[error("step functions did not confirm the start: {0}")]
    Ambiguous(String),
    /// Refused as malformed or misconfigured (no such state machine, bad
    /// input): our bug, not retryable; nothing started.
    #[error("step functions refused the start: {0}")]
    Rejected(String),
}

impl SagaStartError {
    /// Whether the execution may exist despite the error.
    pub fn may_have_started(&self) -> bool {
        matches!(self, Self::Ambiguous(_))
    }
}

#[async_trait]
pub trait SagaStarter: Send + Sync {
    /// Starts the payment saga with `input` as execution input and
    /// `input.payment_id` as execution name; returns the execution ARN.
    /// Starting the same name with the same input again returns the existing
    /// execution (Step Functions STANDARD de-duplicates by name), so a retried
    /// request never starts a second saga.
    async fn start(&self, input: &SagaInput) -> Result<String, SagaStartError>;

    /// Starts the refund saga of a reserved refund, `input.refund_id` as
    /// execution name (de-duplicated the same way); returns the execution ARN.
    async fn start_refund(&self, input: &RefundSagaInput) -> Result<String, SagaStartError>;
}

/// Why a refund invocation did not return a refund.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefundInvokeError {
    /// refund-service ran and failed with a named error of the taxonomy.
    #[error("refund-service refused: {0}")]
    Refused(TaskError),
    /// Lambda throttled the invoke: refund-service did not run.
    #[error("refund-service invoke throttled: {0}")]
    Throttled(String),
    /// No usable answer (timeout, crash, unreadable reply): the refund may
    /// have run. Invoking again with the same refund id is safe.
    #[error("refund-service outcome unknown: {0}")]
    Unknown(String),
}

#[async_trait]
pub trait RefundInvoker: Send + Sync {
    /// Reserves the refund through refund-service (`RESERVE`, synchronously).
    /// Idempotent by `command.refund_id`: a reserved refund comes back as it
    /// is now.
    async fn reserve(&self, command: &RefundCommand) -> Result<Refund, RefundInvokeError>;
}

/// Asks the reconciler to settle the items a verified gateway webhook is
/// about, now. Asynchronous: the webhook is answered without waiting for the
/// run (whose steps ask the gateway again before anything moves).
#[async_trait]
pub trait ReconcileTrigger: Send + Sync {
    /// `Err`: the request did not reach the reconciler (the sender should
    /// deliver the event again).
    async fn reconcile(&self, request: &ReconcileRequest) -> Result<(), String>;
}

/// The shared secret gateway webhooks are signed with. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(pub Vec<u8>);

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(<redacted>)")
    }
}
