//! Step Functions, local edge (default) or a real AWS account: execution
//! lookup and incremental history reads for the flow monitor.

use aws_sdk_sfn::Client;
use aws_sdk_sfn::config::{Credentials, Region};
use aws_sdk_sfn::types::HistoryEvent;

use crate::error::{CliError, CliResult};

pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:4566";

/// Where Step Functions is: the local edge, or AWS with a profile/region.
#[derive(Debug, Clone, Default)]
pub struct Target {
    /// `None` = the real AWS endpoint of the region.
    pub endpoint: Option<String>,
    pub profile: Option<String>,
    pub region: Option<String>,
}

impl Target {
    /// Local unless a profile or region names an AWS account.
    pub fn new(endpoint: Option<String>, profile: Option<String>, region: Option<String>) -> Self {
        let endpoint = match (&endpoint, &profile, &region) {
            (Some(_), _, _) => endpoint,
            (None, None, None) => Some(DEFAULT_ENDPOINT.to_owned()),
            _ => None,
        };
        Self {
            endpoint,
            profile,
            region,
        }
    }

    pub fn is_local(&self) -> bool {
        self.endpoint.is_some() && self.profile.is_none()
    }

    /// The AWS SDK configuration for this target (Step Functions, Lambda).
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(profile) = &self.profile {
            loader = loader.profile_name(profile);
        }
        if let Some(region) = &self.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if self.is_local() {
            // The local edge accepts any signature; never read a real account's keys for it.
            loader = loader
                .credentials_provider(Credentials::new("local", "local", None, None, "local"))
                .region(Region::new(
                    self.region.clone().unwrap_or_else(|| "us-east-1".into()),
                ));
        }
        if let Some(endpoint) = &self.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        loader.load().await
    }
}

#[derive(Debug, Clone)]
pub struct StepFunctions {
    client: Client,
    target: Target,
}

/// What DescribeExecution tells the monitor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Execution {
    pub arn: String,
    pub status: String,
    pub error: Option<String>,
    pub cause: Option<String>,
}

impl StepFunctions {
    pub async fn connect(target: Target) -> Self {
        let config = target.sdk_config().await;
        Self {
            client: Client::new(&config),
            target,
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The saga's state machine ARN.
    pub async fn state_machine_arn(&self) -> CliResult<String> {
        let machines = self
            .client
            .list_state_machines()
            .send()
            .await
            .map_err(|err| self.error(err))?;
        let machine = machines
            .state_machines()
            .iter()
            .find(|m| m.name().contains("payment-saga") || m.name().contains("PaymentSaga"))
            .or_else(|| machines.state_machines().first())
            .ok_or_else(|| CliError::StepFunctions("no state machine is deployed".into()))?;
        Ok(machine.state_machine_arn().to_owned())
    }

    /// The execution that drives `payment_id` (executions are named after payments).
    pub async fn execution_arn_for(&self, payment_id: &str) -> CliResult<String> {
        let machine = self.state_machine_arn().await?;
        machine
            .split_once(":stateMachine:")
            .map(|(prefix, name)| format!("{prefix}:execution:{name}:{payment_id}"))
            .ok_or_else(|| CliError::Protocol(format!("state machine ARN {machine}")))
    }

    /// The most recent executions, newest first, with error and cause for failed ones.
    pub async fn recent_executions(&self, limit: u32) -> CliResult<Vec<Execution>> {
        let machine = self.state_machine_arn().await?;
        let out = self
            .client
            .list_executions()
            .state_machine_arn(&machine)
            .max_results(i32::try_from(limit.clamp(1, 1000)).unwrap_or(1000))
            .send()
            .await
            .map_err(|err| self.error(err))?;
        let mut executions = Vec::new();
        for item in out.executions() {
            let execution =
                if item.status().as_str() == "SUCCEEDED" || item.status().as_str() == "RUNNING" {
                    Execution {
                        arn: item.execution_arn().to_owned(),
                        status: item.status().as_str().to_owned(),
                        error: None,
                        cause: None,
                    }
                } else {
                    self.describe(item.execution_arn()).await?
                };
            executions.push(execution);
        }
        Ok(executions)
    }

    pub async fn describe(&self, execution_arn: &str) -> CliResult<Execution> {
        let out = self
            .client
            .describe_execution()
            .execution_arn(execution_arn)
            .send()
            .await
            .map_err(|err| self.error(err))?;
        Ok(Execution {
            arn: out.execution_arn().to_owned(),
            status: out.status().as_str().to_owned(),
            error: out.error().map(str::to_owned),
            cause: out.cause().map(str::to_owned),
        })
    }

    /// Every event after `after_id`, oldest first (all pages).
    pub async fn events_after(
        &self,
        execution_arn: &str,
        after_id: i64,
    ) -> CliResult<Vec<HistoryEvent>> {
        let mut events = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .client
                .get_execution_history()
                .execution_arn(execution_arn)
                .max_results(1000)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|err| self.error(err))?;
            events.extend(out.events().iter().filter(|e| e.id() > after_id).cloned());
            match out.next_token() {
                Some(next) if !next.is_empty() => token = Some(next.to_owned()),
                _ => return Ok(events),
            }
        }
    }

    fn error<E>(&self, err: aws_sdk_sfn::error::SdkError<E>) -> CliError
    where
        E: aws_sdk_sfn::error::ProvideErrorMetadata + std::error::Error + 'static,
    {
        use aws_sdk_sfn::error::SdkError;
        match &err {
            SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => CliError::Unreachable {
                what: "Step Functions",
                url: self
                    .target
                    .endpoint
                    .clone()
                    .unwrap_or_else(|| "AWS".to_owned()),
                flag: "endpoint-url",
                detail: format!("{}", aws_sdk_sfn::error::DisplayErrorContext(&err)),
            },
            SdkError::ServiceError(service) => {
                let inner = service.err();
                CliError::StepFunctions(format!(
                    "{}: {}",
                    inner.code().unwrap_or("error"),
                    inner.message().unwrap_or_default()
                ))
            }
            _ => CliError::StepFunctions(format!(
                "{}",
                aws_sdk_sfn::error::DisplayErrorContext(&err)
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_is_the_default_and_a_profile_or_region_means_aws() {
        let local = Target::new(None, None, None);
        assert_eq!(local.endpoint.as_deref(), Some(DEFAULT_ENDPOINT));
        assert!(local.is_local());
        let aws = Target::new(None, Some("prod".into()), None);
        assert_eq!(aws.endpoint, None);
        assert!(!aws.is_local());
        let aws = Target::new(None, None, Some("eu-west-1".into()));
        assert!(!aws.is_local());
    }
}
