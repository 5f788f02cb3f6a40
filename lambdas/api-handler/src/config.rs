//! The function's configuration, read once per cold start from the
//! environment that `template.yml` declares.

use rust_decimal::Decimal;
use shared::domain::money::{AMOUNT_MAX_DEFAULT, parse_amount};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `STATE_MACHINE_ARN`: the payment saga.
    pub state_machine_arn: String,
    /// `REFUND_STATE_MACHINE_ARN`: the refund saga.
    pub refund_state_machine_arn: String,
    /// `REFUND_FUNCTION_NAME`: refund-service, invoked synchronously.
    pub refund_function_name: String,
    /// `AMOUNT_MAX` (default 1000000): largest payment or top-up, in major units.
    pub amount_max: Decimal,
    /// `RECONCILER_FUNCTION_NAME`: the reconciler, invoked asynchronously for
    /// each verified gateway webhook.
    pub reconciler_function_name: Option<String>,
    /// Where the gateway webhook secret is; webhooks are refused without one.
    pub webhook_secret: WebhookSecretSource,
}

/// `WEBHOOK_SECRET` (the value itself: the local cloud's fixed development
/// secret) or `WEBHOOK_SECRET_PARAMETER` (an SSM SecureString's name: AWS).
#[derive(Clone, PartialEq, Eq)]
pub enum WebhookSecretSource {
    Value(String),
    Parameter(String),
    None,
}

impl std::fmt::Debug for WebhookSecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Value(_) => f.write_str("Value(<redacted>)"),
            Self::Parameter(name) => write!(f, "Parameter({name})"),
            Self::None => f.write_str("None"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {0} is not set")]
    Missing(&'static str),
    #[error("AMOUNT_MAX must be a positive decimal, got `{0}`")]
    AmountMax(String),
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let required = |name: &'static str| {
            lookup(name)
                .filter(|v| !v.is_empty())
                .ok_or(ConfigError::Missing(name))
        };
        let amount_max = amount_max(&lookup)?;
        let optional = |name: &str| lookup(name).filter(|v| !v.is_empty());
        let webhook_secret = match (
            optional("WEBHOOK_SECRET"),
            optional("WEBHOOK_SECRET_PARAMETER"),
        ) {
            (Some(value), _) => WebhookSecretSource::Value(value),
            (None, Some(name)) => WebhookSecretSource::Parameter(name),
            (None, None) => WebhookSecretSource::None,
        };
        Ok(Self {
            state_machine_arn: required("STATE_MACHINE_ARN")?,
            refund_state_machine_arn: required("REFUND_STATE_MACHINE_ARN")?,
            refund_function_name: required("REFUND_FUNCTION_NAME")?,
            amount_max,
            reconciler_function_name: optional("RECONCILER_FUNCTION_NAME"),
            webhook_secret,
        })
    }
}

/// `AMOUNT_MAX` (default 1000000): largest payment or top-up, in major
/// units. operator-api reads only this.
pub fn amount_max(lookup: impl Fn(&str) -> Option<String>) -> Result<Decimal, ConfigError> {
    match lookup("AMOUNT_MAX").filter(|v| !v.is_empty()) {
        None => Ok(AMOUNT_MAX_DEFAULT),
        Some(text) => parse_amount(&text)
            .ok()
            .filter(|max| *max > Decimal::ZERO)
            .ok_or(ConfigError::AmountMax(text)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reads_names_and_defaults_the_maximum() {
        let env = |name: &str| match name {
            "STATE_MACHINE_ARN" => Some("arn:aws:states:eu-west-1:1:stateMachine:s".to_owned()),
            "REFUND_STATE_MACHINE_ARN" => {
                Some("arn:aws:states:eu-west-1:1:stateMachine:r".to_owned())
            }
            "REFUND_FUNCTION_NAME" => Some("refund".to_owned()),
            _ => None,
        };
        let config = Config::from_lookup(env).unwrap();
        assert_eq!(config.amount_max, AMOUNT_MAX_DEFAULT);
        assert!(config.refund_state_machine_arn.ends_with(":r"));
        let with_max = |name: &str| match name {
            "AMOUNT_MAX" => Some("2500.50".to_owned()),
            other => env(other),
        };
        assert_eq!(
            Config::from_lookup(with_max)
                .unwrap()
                .amount_max
                .to_string(),
            "2500.50"
        );
        let bad_max = |name: &str| match name {
            "AMOUNT_MAX" => Some("0".to_owned()),
            other => env(other),
        };
        assert!(matches!(
            Config::from_lookup(bad_max),
            Err(ConfigError::AmountMax(_))
        ));
        assert_eq!(
            Config::from_lookup(|_| None),
            Err(ConfigError::Missing("STATE_MACHINE_ARN"))
        );
    }
}
