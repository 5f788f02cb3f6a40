//! The AWS implementations of this Lambda's ports: Step Functions
//! `StartExecution` and Lambda `Invoke`. Only `main.rs` uses this module.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_lambda::config::timeout::TimeoutConfig;
use aws_sdk_lambda::error::{DisplayErrorContext, SdkError};
use aws_sdk_lambda::operation::invoke::InvokeError;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;
use aws_sdk_sfn::error::ProvideErrorMetadata;
use aws_sdk_sfn::operation::start_execution::StartExecutionError;
use serde::Deserialize;
use shared::domain::Refund;
use shared::events::{ReconcileRequest, RefundCommand, RefundSagaInput, RefundTask, SagaInput};
use shared::ports::{IdempotencyRepo, PaymentEventRepo, PaymentRepo, RefundRepo, WalletRepo};
use shared::{ErrorType, TaskError};
use tracing::info;

use crate::Deps;
use crate::config::{Config, WebhookSecretSource};
use crate::ports::{
    ReconcileTrigger, RefundInvokeError, RefundInvoker, SagaStartError, SagaStarter, WebhookSecret,
};

/// refund-service may run up to its 15 s timeout; one attempt waits a little
/// longer than that, and the whole call stays under this function's 20 s.
const REFUND_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(16);
const REFUND_OPERATION_TIMEOUT: Duration = Duration::from_secs(17);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How much of an unreadable reply goes into the log.
const REPLY_EXCERPT_LENGTH_MAX: usize = 200;

/// Every dependency of the handler, built once per cold start.
pub fn deps<S>(
    config: &Config,
    sdk: &SdkConfig,
    store: Arc<S>,
    webhook_secret: Option<WebhookSecret>,
) -> Deps
where
    S: PaymentRepo + PaymentEventRepo + WalletRepo + RefundRepo + IdempotencyRepo + 'static,
{
    Deps {
        payments: store.clone(),
        events: store.clone(),
        wallets: store.clone(),
        refunds: store.clone(),
        idempotency: store,
        saga: Arc::new(SfnSagaStarter {
            client: aws_sdk_sfn::Client::new(sdk),
            state_machine_arn: config.state_machine_arn.clone(),
            refund_state_machine_arn: config.refund_state_machine_arn.clone(),
        }),
        refunder: Arc::new(LambdaRefundInvoker::new(sdk, &config.refund_function_name)),
        reconciler: Arc::new(LambdaReconcileTrigger {
            client: aws_sdk_lambda::Client::new(sdk),
            function_name: config.reconciler_function_name.clone(),
        }),
        webhook_secret,
        amount_max: config.amount_max,
    }
}

/// The webhook secret, read once per cold start: the value itself, or the
/// SSM SecureString it is kept in.
pub async fn webhook_secret(
    config: &Config,
    sdk: &SdkConfig,
) -> Result<Option<WebhookSecret>, String> {
    match &config.webhook_secret {
        WebhookSecretSource::None => Ok(None),
        WebhookSecretSource::Value(value) => Ok(Some(WebhookSecret(value.as_bytes().to_vec()))),
        WebhookSecretSource::Parameter(name) => {
            let output = aws_sdk_ssm::Client::new(sdk)
                .get_parameter()
                .name(name)
                .with_decryption(true)
                .send()
                .await
                .map_err(|err| {
                    format!(
                        "webhook secret {name}: {}",
                        aws_sdk_ssm::error::DisplayErrorContext(err)
                    )
                })?;
            let value = output
                .parameter
                .and_then(|parameter| parameter.value)
                .filter(|value| !value.is_empty())
                .ok_or_else(|| format!("webhook secret {name}: the parameter has no value"))?;
            Ok(Some(WebhookSecret(value.into_bytes())))
        }
    }
}

/// The reconciler, invoked asynchronously (`InvocationType::Event`: Lambda
/// queues it and retries it on its own).
pub struct LambdaReconcileTrigger {
    client: aws_sdk_lambda::Client,
    function_name: Option<String>,
}

#[async_trait]
impl ReconcileTrigger for LambdaReconcileTrigger {
    async fn reconcile(&self, request: &ReconcileRequest) -> Result<(), String> {
        let function_name = self
            .function_name
            .as_deref()
            .ok_or("RECONCILER_FUNCTION_NAME is not set")?;
        let payload = serde_json::to_vec(request).map_err(|err| err.to_string())?;
        self.client
            .invoke()
            .function_name(function_name)
            .invocation_type(InvocationType::Event)
            .payload(Blob::new(payload))
            .send()
            .await
            .map(|_| ())
            .map_err(|err| DisplayErrorContext(err).to_string())
    }
}

pub struct SfnSagaStarter {
    client: aws_sdk_sfn::Client,
    state_machine_arn: String,
    refund_state_machine_arn: String,
}

impl SfnSagaStarter {
    async fn start_named<T: serde::Serialize>(
        &self,
        state_machine_arn: &str,
        name: &str,
        input: &T,
    ) -> Result<String, SagaStartError> {
        let body = serde_json::to_string(input)
            .map_err(|err| SagaStartError::Rejected(err.to_string()))?;
        let result = self
            .client
            .start_execution()
            .state_machine_arn(state_machine_arn)
            .name(name)
            .input(body)
            .send()
            .await;
        match result {
            Ok(output) => Ok(output.execution_arn().to_owned()),
            Err(err) => {
                let detail = aws_sdk_sfn::error::DisplayErrorContext(&err).to_string();
                let status = err.raw_response().map(|r| r.status().as_u16());
                match err.as_service_error() {
                    Some(service) => {
                        start_refusal(service, status, detail, state_machine_arn, name)
                    }
                    // Timeout, connection or unreadable response: the
                    // request may have reached Step Functions.
                    None => Err(SagaStartError::Ambiguous(detail)),
                }
            }
        }
    }
}

#[async_trait]
impl SagaStarter for SfnSagaStarter {
    async fn start(&self, input: &SagaInput) -> Result<String, SagaStartError> {
        let name = input.payment_id.to_string();
        self.start_named(&self.state_machine_arn, &name, input)
            .await
    }

    async fn start_refund(&self, input: &RefundSagaInput) -> Result<String, SagaStartError> {
        let name = input.refund_id.to_string();
        self.start_named(&self.refund_state_machine_arn, &name, input)
            .await
    }
}

fn start_refusal(
    err: &StartExecutionError,
    status: Option<u16>,
    detail: String,
    state_machine_arn: &str,
    name: &str,
) -> Result<String, SagaStartError> {
    match err {
        // An execution with this name exists (a closed one, or another input):
        // the saga of this payment was started before. Its ARN follows from
        // the name, so this is the duplicate start it looks like.
        StartExecutionError::ExecutionAlreadyExists(_) => {
            info!(executionName = name, "saga already started");
            execution_arn(state_machine_arn, name).ok_or(SagaStartError::Rejected(detail))
        }
        StartExecutionError::KmsThrottlingException(_) => Err(SagaStartError::Throttled(detail)),
        _ if err.code() == Some("ThrottlingException") => Err(SagaStartError::Throttled(detail)),
        StartExecutionError::ExecutionLimitExceeded(_) => Err(SagaStartError::Unavailable(detail)),
        _ if status.is_some_and(|s| s >= 500) => Err(SagaStartError::Ambiguous(detail)),
        _ => Err(SagaStartError::Rejected(detail)),
    }
}

/// `arn:…:stateMachine:Name` + execution `name` → `arn:…:execution:Name:name`.
pub fn execution_arn(state_machine_arn: &str, name: &str) -> Option<String> {
    let (head, machine) = state_machine_arn.split_once(":stateMachine:")?;
    Some(format!("{head}:execution:{machine}:{name}"))
}

pub struct LambdaRefundInvoker {
    client: aws_sdk_lambda::Client,
    function_name: String,
}

impl LambdaRefundInvoker {
    pub fn new(sdk: &SdkConfig, function_name: &str) -> Self {
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .operation_attempt_timeout(REFUND_ATTEMPT_TIMEOUT)
            .operation_timeout(REFUND_OPERATION_TIMEOUT)
            .build();
        let config = aws_sdk_lambda::config::Builder::from(sdk)
            .timeout_config(timeouts)
            .build();
        Self {
            client: aws_sdk_lambda::Client::from_conf(config),
            function_name: function_name.to_owned(),
        }
    }
}

#[async_trait]
impl RefundInvoker for LambdaRefundInvoker {
    async fn reserve(&self, command: &RefundCommand) -> Result<Refund, RefundInvokeError> {
        let payload = serde_json::to_vec(&RefundTask::Reserve(command.clone()))
            .map_err(|err| RefundInvokeError::Unknown(format!("refund command: {err}")))?;
        let result = self
            .client
            .invoke()
            .function_name(&self.function_name)
            .invocation_type(InvocationType::RequestResponse)
            .payload(Blob::new(payload))
            .send()
            .await;
        match result {
            Ok(output) => read_reply(
                output.function_error(),
                output.payload().map(Blob::as_ref).unwrap_or_default(),
            ),
            Err(err) => Err(invoke_failure(&err)),
        }
    }
}

fn invoke_failure<R: std::fmt::Debug>(err: &SdkError<InvokeError, R>) -> RefundInvokeError {
    let detail = DisplayErrorContext(err).to_string();
    match err.as_service_error() {
        // Lambda refused to run it now: nothing happened.
        Some(InvokeError::TooManyRequestsException(_)) => RefundInvokeError::Throttled(detail),
        _ => RefundInvokeError::Unknown(detail),
    }
}

/// The error payload of a failed invocation: `{"errorType", "errorMessage"}`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FunctionFailure {
    error_type: String,
    #[serde(default)]
    error_message: String,
}

/// Reads an Invoke answer. With `FunctionError` set the payload names the
/// error: one of our taxonomy is a definite refusal; anything else (a crash,
/// `Sandbox.Timedout`) leaves the outcome unknown.
pub fn read_reply(
    function_error: Option<&str>,
    payload: &[u8],
) -> Result<Refund, RefundInvokeError> {
    let excerpt = || {
        String::from_utf8_lossy(payload)
            .chars()
            .take(REPLY_EXCERPT_LENGTH_MAX)
            .collect::<String>()
    };
    if function_error.is_some() {
        let failure: Option<FunctionFailure> = serde_json::from_slice(payload).ok();
        let named = failure.and_then(|f| {
            ErrorType::from_name(&f.error_type).map(|t| TaskError::new(t, f.error_message))
        });
        return Err(match named {
            Some(task) => RefundInvokeError::Refused(task),
            None => RefundInvokeError::Unknown(format!("refund-service failed: {}", excerpt())),
        });
    }
    serde_json::from_slice(payload).map_err(|err| {
        RefundInvokeError::Unknown(format!(
            "unreadable refund-service reply ({err}): {}",
            excerpt()
        ))
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;
    use shared::domain::{Money, PaymentId, RefundId, RefundStatus, Timestamp, UserId};

    use super::*;

    #[test]
    fn execution_arn_follows_from_the_state_machine_and_name() {
        assert_eq!(
            execution_arn(
                "arn:aws:states:eu-west-1:123:stateMachine:saga-dev",
                "pay_1"
            )
            .unwrap(),
            "arn:aws:states:eu-west-1:123:execution:saga-dev:pay_1"
        );
        assert_eq!(execution_arn("not-an-arn", "pay_1"), None);
    }

    #[test]
    fn function_errors_of_the_taxonomy_are_refusals_others_unknown() {
        // GIVEN refund-service failing with a named error
        let payload = json!({"errorType": "RefundExceedsAmount", "errorMessage": "too much"});
        let err = read_reply(Some("Unhandled"), payload.to_string().as_bytes()).unwrap_err();
        assert_eq!(
            err,
            RefundInvokeError::Refused(TaskError::new(ErrorType::RefundExceedsAmount, "too much"))
        );
        // AND with a runtime failure that says nothing about the refund
        let crash = json!({"errorType": "Sandbox.Timedout", "errorMessage": "timed out"});
        let err = read_reply(Some("Unhandled"), crash.to_string().as_bytes()).unwrap_err();
        assert!(matches!(err, RefundInvokeError::Unknown(_)));
        assert!(matches!(
            read_reply(Some("Unhandled"), b"not json"),
            Err(RefundInvokeError::Unknown(_))
        ));
    }

    #[test]
    fn a_successful_reply_is_the_refund() {
        let refund = shared::domain::Refund::request(
            RefundId::generate(),
            PaymentId::generate(),
            UserId::parse("u1").unwrap(),
            Money::parse("5", "USD").unwrap(),
            None,
            Timestamp::now(),
        );
        let payload = serde_json::to_vec(&refund).unwrap();
        let back = read_reply(None, &payload).unwrap();
        assert_eq!(back, refund);
        assert_eq!(back.status, RefundStatus::Requested);
        assert!(matches!(
            read_reply(None, b"{}"),
            Err(RefundInvokeError::Unknown(_))
        ));
    }

    #[test]
    fn a_start_refusal_is_named_by_what_it_says_about_the_execution() {
        use aws_sdk_sfn::error::ErrorMetadata;
        use aws_sdk_sfn::types::error::{ExecutionAlreadyExists, ExecutionLimitExceeded};
        let machine = "arn:aws:states:eu-west-1:123:stateMachine:saga-dev";
        let refusal = |err: StartExecutionError, status: Option<u16>| {
            start_refusal(&err, status, "detail".to_owned(), machine, "pay_1")
        };
        let generic =
            |code: &str| StartExecutionError::generic(ErrorMetadata::builder().code(code).build());
        // GIVEN a 5xx from Step Functions THEN the execution may have started
        let err = refusal(generic("InternalFailure"), Some(500)).unwrap_err();
        assert_eq!(err, SagaStartError::Ambiguous("detail".into()));
        assert!(err.may_have_started());
        // GIVEN a definite refusal THEN nothing started
        let limit = ExecutionLimitExceeded::builder()
            .message("too many")
            .build();
        let cases = [
            (
                refusal(generic("ThrottlingException"), Some(400)),
                SagaStartError::Throttled("detail".into()),
            ),
            (
                refusal(
                    StartExecutionError::ExecutionLimitExceeded(limit),
                    Some(400),
                ),
                SagaStartError::Unavailable("detail".into()),
            ),
            (
                refusal(generic("ValidationException"), Some(400)),
                SagaStartError::Rejected("detail".into()),
            ),
        ];
        for (got, expected) in cases {
            let got = got.unwrap_err();
            assert_eq!(got, expected);
            assert!(!got.may_have_started(), "{got}");
        }
        // GIVEN the execution exists already THEN that is the start
        let exists = ExecutionAlreadyExists::builder().message("exists").build();
        assert_eq!(
            refusal(
                StartExecutionError::ExecutionAlreadyExists(exists),
                Some(400)
            )
            .unwrap(),
            "arn:aws:states:eu-west-1:123:execution:saga-dev:pay_1"
        );
    }
}
