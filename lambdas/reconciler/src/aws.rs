//! The AWS implementation of [`SagaCallbacks`]: Step Functions
//! `SendTaskSuccess` / `SendTaskHeartbeat`. Only `main.rs` uses it.

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_sfn::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use shared::events::GatewayReply;
use shared::ports::{Callback, SagaCallbacks};

/// What Step Functions answers for a token nothing waits on any more.
const NOT_WAITING_CODES: [&str; 3] = ["TaskTimedOut", "TaskDoesNotExist", "InvalidToken"];

pub struct StepFunctionsCallbacks {
    client: aws_sdk_sfn::Client,
}

impl StepFunctionsCallbacks {
    pub fn new(sdk: &SdkConfig) -> Self {
        Self {
            client: aws_sdk_sfn::Client::new(sdk),
        }
    }
}

fn callback<T, E>(result: Result<T, SdkError<E>>) -> Result<Callback, String>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match result {
        Ok(_) => Ok(Callback::Delivered),
        Err(err)
            if err
                .code()
                .is_some_and(|code| NOT_WAITING_CODES.contains(&code)) =>
        {
            Ok(Callback::NotWaiting)
        }
        Err(err) => Err(DisplayErrorContext(err).to_string()),
    }
}

#[async_trait]
impl SagaCallbacks for StepFunctionsCallbacks {
    async fn answer(&self, token: &str, answer: &GatewayReply) -> Result<Callback, String> {
        let output = serde_json::to_string(answer).map_err(|err| err.to_string())?;
        let result = self
            .client
            .send_task_success()
            .task_token(token)
            .output(output)
            .send()
            .await;
        callback(result)
    }

    async fn heartbeat(&self, token: &str) -> Result<Callback, String> {
        let result = self
            .client
            .send_task_heartbeat()
            .task_token(token)
            .send()
            .await;
        callback(result)
    }
}
