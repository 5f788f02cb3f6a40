//! `invoice-processor`: creates the payment and records each of its status
//! changes. Every change and its PaymentEvents entry are written in one
//! transaction (`PaymentRepo::create` / `transition`), every step is
//! idempotent by `paymentId`, and the allowed transitions are those of
//! `PaymentStatus::can_transition_to` — nothing here re-decides them. It
//! also keeps the task token of the saga's wait for the gateway
//! (`AWAIT_GATEWAY`) with the payment.

use std::sync::Arc;

use lambda_runtime::LambdaEvent;
use shared::domain::{NewPayment, PaymentChange, PaymentStatus, Timestamp, TransitionError};
use shared::events::{InvoiceCommand, InvoiceReply};
use shared::ports::PaymentRepo;
use shared::{ErrorType, StoreError, TaskError, observability};
use tracing::{Instrument, error, info};

pub const FUNCTION_NAME: &str = "invoice-processor";
/// Longest reason code stored on a payment.
pub const REASON_CODE_LENGTH_MAX: u32 = 64;

pub struct Deps {
    pub payments: Arc<dyn PaymentRepo>,
}

pub async fn handle(
    deps: &Deps,
    event: LambdaEvent<InvoiceCommand>,
) -> Result<InvoiceReply, TaskError> {
    let span = shared::invocation_span!(FUNCTION_NAME, event.context, event.payload.payment_id());
    execute(deps.payments.as_ref(), event.payload)
        .instrument(span)
        .await
}

pub async fn execute(
    payments: &dyn PaymentRepo,
    command: InvoiceCommand,
) -> Result<InvoiceReply, TaskError> {
    let now = Timestamp::now();
    let (payment_id, change) = match command {
        InvoiceCommand::Create { payment } => {
            let created = payments.create(NewPayment::from(payment), now).await?;
            let is_new = created.is_new();
            let payment = created.into_inner();
            info!(status = %payment.status, amount = %payment.amount, userId = %payment.user_id,
                created = is_new, "payment created");
            return Ok(InvoiceReply::from(&payment));
        }
        InvoiceCommand::AwaitGateway {
            payment_id,
            task_token,
        } => {
            let payment = payments.keep_wait_token(&payment_id, &task_token).await?;
            let kept = payment.wait_token.as_deref() == Some(task_token.as_str());
            info!(status = %payment.status, kept, "saga waits for the gateway's word");
            return Ok(InvoiceReply::from(&payment));
        }
        InvoiceCommand::MarkProcessing { payment_id } => {
            (payment_id, PaymentChange::to(PaymentStatus::Processing))
        }
        InvoiceCommand::Complete {
            payment_id,
            gateway_reference,
        } => (payment_id, PaymentChange::completed(gateway_reference)),
        InvoiceCommand::Fail {
            payment_id,
            reason,
            cause,
        } => {
            let code = reason_code(&reason);
            info!(reason = %code, cause = cause.as_deref().unwrap_or(""), "payment failing");
            (payment_id, PaymentChange::failed(code))
        }
        InvoiceCommand::MarkReconciliationRequired {
            payment_id,
            reason,
            cause,
        } => {
            let code = reason_code(&reason);
            // The one outcome an operator must look at: alarm on it.
            error!(reason = %code, cause = cause.as_deref().unwrap_or(""),
                "payment needs reconciliation");
            observability::emit_count("ReconciliationRequired", FUNCTION_NAME);
            (payment_id, PaymentChange::reconciliation_required(code))
        }
    };
    let payment = match payments.transition(&payment_id, &change, now).await {
        Ok(payment) => payment,
        Err(err) if change.to == PaymentStatus::Completed && was_completed(&err) => {
            // A replayed COMPLETE (a retried step, a second execution) after
            // the payment was refunded: it completed long ago, nothing to do.
            let payment = payments
                .get(&payment_id)
                .await?
                .ok_or_else(|| StoreError::payment_not_found(payment_id))?;
            info!(status = %payment.status, "payment completed earlier and since refunded");
            return Ok(InvoiceReply::from(&payment));
        }
        Err(err) => return Err(err.into()),
    };
    info!(status = %payment.status, version = payment.version, "payment status recorded");
    Ok(InvoiceReply::from(&payment))
}

/// Whether a refused transition to COMPLETED met a payment that had
/// completed and been refunded since.
fn was_completed(err: &StoreError) -> bool {
    matches!(
        err,
        StoreError::Transition(TransitionError::NotAllowed {
            from: PaymentStatus::Refunded | PaymentStatus::PartiallyRefunded,
            to: PaymentStatus::Completed,
        })
    )
}

/// The stored reason code for an error name or free text: a taxonomy name
/// becomes its code (`InsufficientFunds` → `INSUFFICIENT_FUNDS`); anything else
/// (`States.Timeout`, `GatewayNotProcessed`) is upper-snake-cased the same way
/// and bounded, so a code is always `[A-Z0-9_]{1,64}`.
pub fn reason_code(reason: &str) -> String {
    if let Some(error_type) = ErrorType::from_name(reason) {
        return error_type.reason_code();
    }
    let mut code = String::new();
    let mut previous_lower = false;
    for c in reason.chars() {
        if c.is_ascii_uppercase() && previous_lower {
            code.push('_');
        }
        if c.is_ascii_alphanumeric() {
            code.push(c.to_ascii_uppercase());
        } else if !code.ends_with('_') {
            code.push('_');
        }
        previous_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
    }
    let length_max = usize::try_from(REASON_CODE_LENGTH_MAX).unwrap_or(usize::MAX);
    let code: String = code.trim_matches('_').chars().take(length_max).collect();
    if code.is_empty() {
        "UNKNOWN".to_owned()
    } else {
        code
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use lambda_runtime::Context;
    use serde_json::json;
    use shared::domain::{PaymentId, PaymentStatus};
    use shared::memory::InMemoryStore;
    use shared::ports::PaymentEventRepo;

    use super::*;

    fn deps() -> (Deps, Arc<InMemoryStore>) {
        let store = Arc::new(InMemoryStore::new());
        (
            Deps {
                payments: store.clone(),
            },
            store,
        )
    }

    fn event(value: serde_json::Value) -> LambdaEvent<InvoiceCommand> {
        LambdaEvent::new(serde_json::from_value(value).unwrap(), Context::default())
    }

    fn create_json(payment_id: PaymentId) -> serde_json::Value {
        json!({"action": "CREATE", "payment": {"paymentId": payment_id.to_string(),
               "userId": "user_1", "amount": {"amount": "50.00", "currency": "USD"}, "orderId": "o-1"}})
    }

    async fn run(deps: &Deps, value: serde_json::Value) -> Result<InvoiceReply, TaskError> {
        handle(deps, event(value)).await
    }

    #[tokio::test]
    async fn create_is_idempotent_and_replies_with_the_payment() {
        let (deps, store) = deps();
        let payment_id = PaymentId::generate();
        let first = run(&deps, create_json(payment_id)).await.unwrap();
        let again = run(&deps, create_json(payment_id)).await.unwrap();
        assert_eq!(
            serde_json::to_value(&first).unwrap(),
            json!({"paymentId": payment_id.to_string(), "status": "PENDING", "version": 1})
        );
        assert_eq!(again, first);
        assert_eq!(store.events(&payment_id, 10).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn success_path_records_each_status_with_an_event() {
        let (deps, store) = deps();
        let payment_id = PaymentId::generate();
        run(&deps, create_json(payment_id)).await.unwrap();
        let id = payment_id.to_string();
        run(&deps, json!({"action": "MARK_PROCESSING", "paymentId": id}))
            .await
            .unwrap();
        let done = run(
            &deps,
            json!({"action": "COMPLETE", "paymentId": id, "gatewayReference": "gw_1"}),
        )
        .await
        .unwrap();
        assert_eq!(done.status, PaymentStatus::Completed);
        // A retried COMPLETE writes nothing new.
        let again = run(
            &deps,
            json!({"action": "COMPLETE", "paymentId": id, "gatewayReference": "gw_1"}),
        )
        .await
        .unwrap();
        assert_eq!(again, done);
        assert_eq!(store.events(&payment_id, 10).await.unwrap().len(), 3);
        let payment = store.get(&payment_id).await.unwrap().unwrap();
        assert_eq!(payment.gateway_reference.as_deref(), Some("gw_1"));
    }

    #[tokio::test]
    async fn failure_records_a_reason_code() {
        let (deps, store) = deps();
        let payment_id = PaymentId::generate();
        run(&deps, create_json(payment_id)).await.unwrap();
        let reply = run(
            &deps,
            json!({"action": "FAIL", "paymentId": payment_id.to_string(),
            "reason": "InsufficientFunds", "cause": "balance 10.00 USD"}),
        )
        .await
        .unwrap();
        assert_eq!(reply.status, PaymentStatus::Failed);
        let payment = store.get(&payment_id).await.unwrap().unwrap();
        assert_eq!(
            payment.failure_reason.as_deref(),
            Some("INSUFFICIENT_FUNDS")
        );
    }

    #[tokio::test]
    async fn reconciliation_and_disallowed_transitions() {
        let (deps, _) = deps();
        let payment_id = PaymentId::generate();
        run(&deps, create_json(payment_id)).await.unwrap();
        let id = payment_id.to_string();
        run(&deps, json!({"action": "MARK_PROCESSING", "paymentId": id}))
            .await
            .unwrap();
        let reply = run(
            &deps,
            json!({"action": "MARK_RECONCILIATION_REQUIRED", "paymentId": id,
            "reason": "States.Timeout"}),
        )
        .await
        .unwrap();
        assert_eq!(reply.status, PaymentStatus::ReconciliationRequired);
        let err = run(&deps, json!({"action": "MARK_PROCESSING", "paymentId": id}))
            .await
            .unwrap_err();
        assert_eq!(err.error_type, ErrorType::InvalidTransition);
        let missing = PaymentId::generate().to_string();
        let err = run(
            &deps,
            json!({"action": "MARK_PROCESSING", "paymentId": missing}),
        )
        .await
        .unwrap_err();
        assert_eq!(err.error_type, ErrorType::PaymentNotFound);
    }

    /// A COMPLETED payment of 50.00 USD (`gw_1`), then refunded by `refunded`
    /// (`to`: REFUNDED or PARTIALLY_REFUNDED).
    async fn completed_then_refunded(
        deps: &Deps,
        store: &InMemoryStore,
        refunded: &str,
        to: PaymentStatus,
    ) -> PaymentId {
        let payment_id = PaymentId::generate();
        run(deps, create_json(payment_id)).await.unwrap();
        let id = payment_id.to_string();
        run(deps, json!({"action": "MARK_PROCESSING", "paymentId": id}))
            .await
            .unwrap();
        run(
            deps,
            json!({"action": "COMPLETE", "paymentId": id, "gatewayReference": "gw_1"}),
        )
        .await
        .unwrap();
        let refunded = shared::domain::Money::parse(refunded, "USD").unwrap();
        let refund = PaymentChange {
            refunded_amount: Some(refunded),
            ..PaymentChange::to(to)
        };
        store
            .transition(&payment_id, &refund, Timestamp::now())
            .await
            .unwrap();
        payment_id
    }

    #[tokio::test]
    async fn a_complete_replayed_after_a_refund_answers_the_payment_as_it_is() {
        for (refunded, status) in [
            ("50.00", PaymentStatus::Refunded),
            ("20.00", PaymentStatus::PartiallyRefunded),
        ] {
            // GIVEN a payment completed and since refunded (in full or in part)
            let (deps, store) = deps();
            let payment_id = completed_then_refunded(&deps, &store, refunded, status).await;
            let before = store.get(&payment_id).await.unwrap().unwrap();
            assert_eq!(before.status, status);
            let event_count = store.events(&payment_id, 10).await.unwrap().len();
            // WHEN its COMPLETE step is delivered again (a retried step, a
            // second execution)
            let reply = run(
                &deps,
                json!({"action": "COMPLETE", "paymentId": payment_id.to_string(),
                       "gatewayReference": "gw_1"}),
            )
            .await
            .unwrap();
            // THEN it answers the payment as it is, and nothing is written
            assert_eq!(
                serde_json::to_value(&reply).unwrap(),
                json!({"paymentId": payment_id.to_string(), "status": status.as_str(),
                       "version": before.version}),
                "{refunded}"
            );
            let after = store.get(&payment_id).await.unwrap().unwrap();
            assert_eq!(after, before);
            assert_eq!(
                store.events(&payment_id, 10).await.unwrap().len(),
                event_count
            );
        }
    }

    #[tokio::test]
    async fn only_complete_is_forgiven_on_a_refunded_payment() {
        // GIVEN a refunded payment
        let (deps, store) = deps();
        let payment_id =
            completed_then_refunded(&deps, &store, "50.00", PaymentStatus::Refunded).await;
        let id = payment_id.to_string();
        // WHEN any other step is delivered THEN it is still refused
        for command in [
            json!({"action": "MARK_PROCESSING", "paymentId": id}),
            json!({"action": "FAIL", "paymentId": id, "reason": "PaymentDeclined"}),
        ] {
            let err = run(&deps, command.clone()).await.unwrap_err();
            assert_eq!(err.error_type, ErrorType::InvalidTransition, "{command}");
        }
        // AND a COMPLETE of a payment that FAILED is refused too
        let failed = PaymentId::generate();
        run(&deps, create_json(failed)).await.unwrap();
        run(
            &deps,
            json!({"action": "FAIL", "paymentId": failed.to_string(),
                   "reason": "InsufficientFunds"}),
        )
        .await
        .unwrap();
        let err = run(
            &deps,
            json!({"action": "COMPLETE", "paymentId": failed.to_string(),
                   "gatewayReference": "gw_1"}),
        )
        .await
        .unwrap_err();
        assert_eq!(err.error_type, ErrorType::InvalidTransition);
        assert_eq!(
            store.get(&payment_id).await.unwrap().unwrap().status,
            PaymentStatus::Refunded
        );
    }

    #[test]
    fn reason_codes_are_upper_snake_and_bounded() {
        assert_eq!(reason_code("InsufficientFunds"), "INSUFFICIENT_FUNDS");
        assert_eq!(reason_code("States.Timeout"), "STATES_TIMEOUT");
        assert_eq!(reason_code("GatewayNotProcessed"), "GATEWAY_NOT_PROCESSED");
        assert_eq!(reason_code("SAGA_NOT_STARTED"), "SAGA_NOT_STARTED");
        assert_eq!(
            reason_code("Lambda.ServiceException"),
            "LAMBDA_SERVICE_EXCEPTION"
        );
        assert_eq!(reason_code("!!"), "UNKNOWN");
        assert_eq!(reason_code(&"x".repeat(500)).len(), 64);
    }
}
