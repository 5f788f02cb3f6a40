//! What every Lambda binary shares, so each `main.rs` is only wiring: JSON
//! logs, the cold-start flag, one AWS SDK configuration per cold start, and
//! errors that leave the function with their taxonomy name as `errorType`
//! (the name the state machine's `ErrorEquals` matches, never a Rust type path).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::timeout::TimeoutConfig;
use lambda_runtime::Diagnostic;

use crate::error::TaskError;

impl From<TaskError> for Diagnostic {
    fn from(err: TaskError) -> Self {
        Diagnostic {
            error_type: err.error_type.as_str().to_owned(),
            error_message: err.message,
        }
    }
}

/// JSON log lines (`timestamp`, `level`, `message`, the invocation span's
/// fields) on stdout, which Lambda ships to CloudWatch. The level comes from
/// `AWS_LAMBDA_LOG_LEVEL`, else `RUST_LOG`, else `info`.
pub fn init_tracing() {
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".to_owned());
    let filter = tracing_subscriber::EnvFilter::try_new(level.to_lowercase())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .with_env_filter(filter)
        .with_writer(std::io::stdout)
        .init();
}

static WARM: AtomicBool = AtomicBool::new(false);

/// True for the first invocation of this sandbox, false afterwards.
pub fn cold_start() -> bool {
    !WARM.swap(true, Ordering::Relaxed)
}

/// The span every invocation runs in: the fields DESIGN §9 asks of each log
/// line. `correlationId` is the payment id the invocation works on.
#[macro_export]
macro_rules! invocation_span {
    ($function:expr, $context:expr, $correlation_id:expr) => {
        ::tracing::info_span!(
            "invocation",
            function = $function,
            requestId = %$context.request_id,
            coldStart = $crate::lambda::cold_start(),
            correlationId = %$correlation_id,
        )
    };
}

/// The AWS SDK configuration, loaded once per cold start. Region, credentials
/// and (locally) `AWS_ENDPOINT_URL` come from the environment; timeouts are
/// explicit rather than the SDK's defaults.
pub async fn sdk_config() -> aws_config::SdkConfig {
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(2))
        .operation_attempt_timeout(Duration::from_secs(5))
        .operation_timeout(Duration::from_secs(12))
        .build();
    aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(timeouts)
        .load()
        .await
}

/// The DynamoDB store of a Lambda, from its environment.
pub async fn dynamo_store() -> Result<crate::dynamo::DynamoStore, crate::dynamo::MissingEnv> {
    let tables = crate::dynamo::TableNames::from_env()?;
    Ok(crate::dynamo::DynamoStore::from_sdk_config(
        &sdk_config().await,
        tables,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorType;

    #[test]
    fn errors_leave_with_their_taxonomy_name() {
        let diagnostic =
            Diagnostic::from(TaskError::new(ErrorType::InsufficientFunds, "balance 1"));
        assert_eq!(diagnostic.error_type, "InsufficientFunds");
        assert_eq!(diagnostic.error_message, "balance 1");
    }

    #[test]
    fn only_the_first_invocation_is_cold() {
        let first = cold_start();
        assert!(!cold_start());
        let _ = first;
    }
}
