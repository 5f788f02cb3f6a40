//! Configuration of the HTTP gateway adapter, read once per cold start. The
//! API key comes from `GATEWAY_API_KEY` in local runs and from an SSM
//! SecureString parameter on AWS; it is held in a [`Secret`] and never logged.

use std::fmt;

pub const ENV_URL: &str = "GATEWAY_URL";
pub const ENV_CONNECT_TIMEOUT_MS: &str = "GATEWAY_CONNECT_TIMEOUT_MS";
pub const ENV_REQUEST_TIMEOUT_MS: &str = "GATEWAY_TIMEOUT_MS";
pub const ENV_API_KEY: &str = "GATEWAY_API_KEY";
pub const ENV_API_KEY_PARAMETER: &str = "GATEWAY_API_KEY_PARAMETER";

pub const CONNECT_TIMEOUT_MS_DEFAULT: u32 = 1_000;
pub const CONNECT_TIMEOUT_MS_MAX: u32 = 10_000;
pub const REQUEST_TIMEOUT_MS_DEFAULT: u32 = 3_000;
/// Well under any sensible Lambda timeout, so the function can still report
/// an ambiguous outcome instead of being killed mid-call.
pub const REQUEST_TIMEOUT_MS_MAX: u32 = 30_000;
/// The mock gateway accepts keys of up to 256 bytes; so do we.
pub const API_KEY_LENGTH_MAX: u32 = 256;

/// A secret string: `Debug` prints `Secret(***)`, there is no `Display`, and
/// the value is reached only through [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayConfigError {
    #[error("{var} is invalid: {reason}")]
    Invalid { var: &'static str, reason: String },
    #[error("{var} is not set")]
    Missing { var: &'static str },
    #[error("cannot read the gateway API key from SSM parameter {parameter}: {reason}")]
    ApiKeyFetch { parameter: String, reason: String },
}

/// Where the API key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiKeySource {
    /// `GATEWAY_API_KEY` (local runs).
    Value(Secret),
    /// The name of an SSM SecureString parameter (`GATEWAY_API_KEY_PARAMETER`).
    SsmParameter(String),
}

impl ApiKeySource {
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, GatewayConfigError> {
        match (lookup(ENV_API_KEY), lookup(ENV_API_KEY_PARAMETER)) {
            (Some(key), _) if !key.is_empty() => Ok(Self::Value(checked_key(ENV_API_KEY, key)?)),
            (_, Some(name)) if !name.trim().is_empty() => {
                Ok(Self::SsmParameter(name.trim().to_owned()))
            }
            _ => Err(GatewayConfigError::Missing {
                var: ENV_API_KEY_PARAMETER,
            }),
        }
    }
}

/// Checks a key's length and that it fits an HTTP header, without ever
/// putting the key itself into the error.
pub fn checked_key(var: &'static str, key: String) -> Result<Secret, GatewayConfigError> {
    let printable = key.bytes().all(|b| b.is_ascii_graphic());
    let length_ok = u32::try_from(key.len()).is_ok_and(|n| (1..=API_KEY_LENGTH_MAX).contains(&n));
    if printable && length_ok {
        Ok(Secret(key))
    } else {
        Err(GatewayConfigError::Invalid {
            var,
            reason: format!("must be 1..={API_KEY_LENGTH_MAX} printable ASCII characters"),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayConfig {
    /// `http(s)://host[:port][/prefix]`; the API lives under `{base_url}/v1/`.
    pub base_url: String,
    pub api_key: Secret,
    /// Bounds the TCP (and TLS) connect: a connect that times out sent nothing.
    pub connect_timeout_ms: u32,
    /// Bounds the whole exchange, connect included.
    pub request_timeout_ms: u32,
}

impl GatewayConfig {
    /// Reads `GATEWAY_URL` (required), `GATEWAY_CONNECT_TIMEOUT_MS` (default
    /// 1000) and `GATEWAY_TIMEOUT_MS` (default 3000) through `lookup`; the key
    /// is given, already resolved (see [`ApiKeySource`]).
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
        api_key: Secret,
    ) -> Result<Self, GatewayConfigError> {
        let base_url = lookup(ENV_URL)
            .map(|url| url.trim().to_owned())
            .filter(|url| !url.is_empty())
            .ok_or(GatewayConfigError::Missing { var: ENV_URL })?;
        let millis = |var: &'static str, default: u32, max: u32| match lookup(var) {
            None => Ok(default),
            Some(text) => match text.trim().parse::<u32>() {
                Ok(value) if (1..=max).contains(&value) => Ok(value),
                _ => Err(GatewayConfigError::Invalid {
                    var,
                    reason: format!("expected milliseconds 1..={max}"),
                }),
            },
        };
        let config = Self {
            base_url,
            api_key,
            connect_timeout_ms: millis(
                ENV_CONNECT_TIMEOUT_MS,
                CONNECT_TIMEOUT_MS_DEFAULT,
                CONNECT_TIMEOUT_MS_MAX,
            )?,
            request_timeout_ms: millis(
                ENV_REQUEST_TIMEOUT_MS,
                REQUEST_TIMEOUT_MS_DEFAULT,
                REQUEST_TIMEOUT_MS_MAX,
            )?,
        };
        if config.request_timeout_ms < config.connect_timeout_ms {
            // The request timeout includes the connect: a smaller one would
            // silently shorten the connect timeout too.
            return Err(GatewayConfigError::Invalid {
                var: ENV_REQUEST_TIMEOUT_MS,
                reason: format!("must be at least {ENV_CONNECT_TIMEOUT_MS}"),
            });
        }
        Ok(config)
    }

    /// The configuration of a Lambda: the environment, and the key from
    /// `GATEWAY_API_KEY` if set, else from the SSM parameter named by
    /// `GATEWAY_API_KEY_PARAMETER`.
    #[cfg(feature = "lambda")]
    pub async fn from_env(sdk: &aws_config::SdkConfig) -> Result<Self, GatewayConfigError> {
        let lookup = |name: &str| std::env::var(name).ok();
        let api_key = match ApiKeySource::from_lookup(lookup)? {
            ApiKeySource::Value(key) => key,
            ApiKeySource::SsmParameter(name) => fetch_api_key(sdk, &name).await?,
        };
        Self::from_lookup(lookup, api_key)
    }
}

/// Reads a SecureString parameter with `GetParameter` `WithDecryption`. The
/// SDK's own timeouts (`shared::lambda::sdk_config`) bound the call.
#[cfg(feature = "lambda")]
pub async fn fetch_api_key(
    sdk: &aws_config::SdkConfig,
    parameter: &str,
) -> Result<Secret, GatewayConfigError> {
    let fetch_error = |reason: String| GatewayConfigError::ApiKeyFetch {
        parameter: parameter.to_owned(),
        reason,
    };
    let output = aws_sdk_ssm::Client::new(sdk)
        .get_parameter()
        .name(parameter)
        .with_decryption(true)
        .send()
        .await
        .map_err(|err| fetch_error(aws_sdk_ssm::error::DisplayErrorContext(err).to_string()))?;
    let value = output
        .parameter
        .and_then(|p| p.value)
        .ok_or_else(|| fetch_error("the parameter has no value".to_owned()))?;
    checked_key(ENV_API_KEY_PARAMETER, value)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    fn key() -> Secret {
        Secret::new("k")
    }

    #[test]
    fn defaults_apply_and_the_url_is_required() {
        let config =
            GatewayConfig::from_lookup(lookup(&[(ENV_URL, "http://127.0.0.1:3000")]), key())
                .unwrap();
        assert_eq!(config.connect_timeout_ms, 1_000);
        assert_eq!(config.request_timeout_ms, 3_000);
        assert_eq!(
            GatewayConfig::from_lookup(lookup(&[]), key()),
            Err(GatewayConfigError::Missing { var: ENV_URL })
        );
    }

    #[test]
    fn timeouts_are_bounded_and_consistent() {
        for (var, value) in [
            (ENV_CONNECT_TIMEOUT_MS, "0"),
            (ENV_CONNECT_TIMEOUT_MS, "10001"),
            (ENV_REQUEST_TIMEOUT_MS, "abc"),
            (ENV_REQUEST_TIMEOUT_MS, "500"),
        ] {
            let vars = [(ENV_URL, "http://x"), (var, value)];
            assert!(
                GatewayConfig::from_lookup(lookup(&vars), key()).is_err(),
                "{var}={value}"
            );
        }
        let vars = [
            (ENV_URL, "http://x"),
            (ENV_CONNECT_TIMEOUT_MS, "200"),
            (ENV_REQUEST_TIMEOUT_MS, "800"),
        ];
        let config = GatewayConfig::from_lookup(lookup(&vars), key()).unwrap();
        assert_eq!(
            (config.connect_timeout_ms, config.request_timeout_ms),
            (200, 800)
        );
    }

    #[test]
    fn the_key_comes_from_the_environment_before_ssm() {
        let both = [(ENV_API_KEY, "local"), (ENV_API_KEY_PARAMETER, "/saga/key")];
        assert_eq!(
            ApiKeySource::from_lookup(lookup(&both)).unwrap(),
            ApiKeySource::Value(Secret::new("local"))
        );
        assert_eq!(
            ApiKeySource::from_lookup(lookup(&[(ENV_API_KEY_PARAMETER, "/saga/key")])).unwrap(),
            ApiKeySource::SsmParameter("/saga/key".into())
        );
        assert!(ApiKeySource::from_lookup(lookup(&[])).is_err());
        assert!(ApiKeySource::from_lookup(lookup(&[(ENV_API_KEY, "bad key")])).is_err());
    }

    #[test]
    fn the_key_never_shows_in_debug_output_or_errors() {
        let secret = Secret::new("s3cr3t-value");
        let config = GatewayConfig::from_lookup(lookup(&[(ENV_URL, "http://x")]), secret).unwrap();
        assert!(!format!("{config:?}").contains("s3cr3t"));
        let err = checked_key(ENV_API_KEY, "s3cr3t with spaces".into()).unwrap_err();
        assert!(!err.to_string().contains("s3cr3t"));
    }
}
