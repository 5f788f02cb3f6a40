//! Start-up configuration (environment) and the run-time mode settings that
//! `POST /control/mode` changes.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::Serialize;

/// Longest `latencyMs` the `slow` mode accepts; kept well under the server's request timeout.
pub const MAX_LATENCY_MS: u64 = 20_000;
/// Longest `pendingDelayMs`: one hour.
pub const MAX_PENDING_DELAY_MS: u64 = 3_600_000;
/// `errorRate` is kept in basis points: at most four decimals.
const ERROR_RATE_SCALE: u32 = 4;
const ERROR_RATE_BPS_MAX: u16 = 10_000;

pub const DEFAULT_PORT: u16 = 3000;
pub const DEFAULT_API_KEY: &str = "local-gateway-key";
pub const DEFAULT_PENDING_DELAY_MS: u64 = 2000;
pub const DEFAULT_SEED: u64 = 42;
pub const DEFAULT_LATENCY_MS: u64 = 1000;
/// Default `errorRate` for the `flaky` mode: 0.5.
pub const DEFAULT_ERROR_RATE_BPS: u16 = 5000;

/// How the gateway picks outcomes. Wire form is snake_case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// The amount picks the outcome (999.99 error, .13 declined, .77 pending, else approved).
    Normal,
    ApproveAll,
    DeclineAll,
    PendingThenApprove,
    /// Every charge and refund fails with 500 `GATEWAY_ERROR`.
    Error,
    /// Every `/v1` route answers 503 `SERVICE_UNAVAILABLE`.
    Down,
    /// Sleep `latencyMs`, then behave as `normal`.
    Slow,
    /// Each `/v1` request fails with 500 with probability `errorRate`, else `normal`.
    Flaky,
    /// Each new charge: approved/pending/declined/error with weights 70/15/10/5 (seeded).
    Random,
}

impl Mode {
    pub const ALL: [Mode; 9] = [
        Mode::Normal,
        Mode::ApproveAll,
        Mode::DeclineAll,
        Mode::PendingThenApprove,
        Mode::Error,
        Mode::Down,
        Mode::Slow,
        Mode::Flaky,
        Mode::Random,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Normal => "normal",
            Mode::ApproveAll => "approve_all",
            Mode::DeclineAll => "decline_all",
            Mode::PendingThenApprove => "pending_then_approve",
            Mode::Error => "error",
            Mode::Down => "down",
            Mode::Slow => "slow",
            Mode::Flaky => "flaky",
            Mode::Random => "random",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown mode {given:?}; expected one of: normal, approve_all, decline_all, pending_then_approve, error, down, slow, flaky, random"
)]
pub struct UnknownMode {
    given: String,
}

impl FromStr for Mode {
    type Err = UnknownMode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Mode::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| UnknownMode {
                given: s.chars().take(40).collect(),
            })
    }
}

/// Probability in [0, 1] with at most four decimals, held as basis points (no floats).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorRate {
    bps: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("errorRate must be a decimal between 0 and 1 with at most 4 decimals, got {given:?}")]
pub struct InvalidErrorRate {
    given: String,
}

impl ErrorRate {
    pub const ZERO: ErrorRate = ErrorRate { bps: 0 };
    pub const ONE: ErrorRate = ErrorRate {
        bps: ERROR_RATE_BPS_MAX,
    };

    pub fn from_bps(bps: u16) -> Option<Self> {
        (bps <= ERROR_RATE_BPS_MAX).then_some(Self { bps })
    }

    /// Parses the digits of a decimal such as `0.25` or `1` (no exponent, no sign).
    pub fn parse(text: &str) -> Result<Self, InvalidErrorRate> {
        let invalid = || InvalidErrorRate {
            given: text.chars().take(40).collect(),
        };
        if !is_plain_decimal(text) {
            return Err(invalid());
        }
        let value = Decimal::from_str(text).map_err(|_| invalid())?;
        if value.scale() > ERROR_RATE_SCALE || value > Decimal::ONE {
            return Err(invalid());
        }
        let bps = value
            .checked_mul(Decimal::from(ERROR_RATE_BPS_MAX))
            .and_then(|v| u16::try_from(v.normalize().mantissa()).ok())
            .ok_or_else(invalid)?;
        Self::from_bps(bps).ok_or_else(invalid)
    }

    /// Basis points, 0..=10_000.
    pub fn bps(self) -> u16 {
        self.bps
    }

    pub fn as_decimal(self) -> Decimal {
        Decimal::new(i64::from(self.bps), ERROR_RATE_SCALE).normalize()
    }
}

impl fmt::Display for ErrorRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.as_decimal(), f)
    }
}

/// `digits[.digits]`, nothing else: no sign, exponent, underscore or whitespace.
pub(crate) fn is_plain_decimal(text: &str) -> bool {
    let (int, frac) = match text.split_once('.') {
        Some((int, frac)) => (int, Some(frac)),
        None => (text, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    text.len() <= 40 && digits(int) && frac.is_none_or(digits)
}

/// The settings `POST /control/mode` can change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModeSettings {
    pub mode: Mode,
    pub latency_ms: u64,
    pub error_rate: ErrorRate,
    pub seed: u64,
    pub pending_delay_ms: u64,
}

impl Default for ModeSettings {
    fn default() -> Self {
        Self {
            mode: Mode::Normal,
            latency_ms: DEFAULT_LATENCY_MS,
            error_rate: ErrorRate {
                bps: DEFAULT_ERROR_RATE_BPS,
            },
            seed: DEFAULT_SEED,
            pending_delay_ms: DEFAULT_PENDING_DELAY_MS,
        }
    }
}

/// The API key clients must send in `X-API-Key`. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: impl Into<String>) -> Option<Self> {
        let key = key.into();
        (!key.is_empty() && key.len() <= 256).then_some(Self(key))
    }

    /// Compares without stopping at the first differing byte.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        let expected = self.0.as_bytes();
        expected.len() == candidate.len()
            && expected
                .iter()
                .zip(candidate)
                .fold(0_u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

impl Default for ApiKey {
    fn default() -> Self {
        Self(DEFAULT_API_KEY.to_owned())
    }
}

/// Everything an [`crate::AppState`] starts from.
#[derive(Debug, Clone, Default)]
pub struct GatewayConfig {
    pub api_key: ApiKey,
    pub settings: ModeSettings,
}

/// Process configuration: [`GatewayConfig`] plus the port to listen on (127.0.0.1 only).
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub port: u16,
    pub gateway: GatewayConfig,
    /// `WEBHOOK_URL` (and `WEBHOOK_SECRET`): where signed events go; none
    /// when unset.
    pub webhook: Option<WebhookConfig>,
}

/// Where the gateway sends its webhooks and the secret it signs them with.
#[derive(Clone)]
pub struct WebhookConfig {
    pub url: String,
    pub secret: String,
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// The development secret webhooks are signed with when `WEBHOOK_SECRET`
/// is unset (the local cloud's api-handler verifies with the same one).
pub const DEFAULT_WEBHOOK_SECRET: &str = "whsec_local_development";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{var} is invalid: {reason}")]
    Invalid { var: &'static str, reason: String },
}

impl ServerConfig {
    /// Reads `PORT`, `GATEWAY_API_KEY`, `PENDING_DELAY_MS`, `GATEWAY_MODE`, `RANDOM_SEED`,
    /// `LATENCY_MS` and `ERROR_RATE`; unset variables take their defaults.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Same as [`Self::from_env`] with an injectable lookup (tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |var: &'static str| lookup(var).filter(|v| !v.trim().is_empty());
        let invalid = |var: &'static str, reason: String| ConfigError::Invalid { var, reason };
        let number = |var: &'static str, default: u64, max: u64| -> Result<u64, ConfigError> {
            match get(var) {
                None => Ok(default),
                Some(v) => match v.trim().parse::<u64>() {
                    Ok(n) if n <= max => Ok(n),
                    _ => Err(invalid(var, format!("expected an integer 0..={max}"))),
                },
            }
        };

        let port = match get("PORT") {
            None => DEFAULT_PORT,
            Some(v) => v
                .trim()
                .parse::<u16>()
                .map_err(|e| invalid("PORT", e.to_string()))?,
        };
        let api_key = match lookup("GATEWAY_API_KEY") {
            None => ApiKey::default(),
            Some(v) => ApiKey::new(v)
                .ok_or_else(|| invalid("GATEWAY_API_KEY", "must be 1..=256 bytes".to_owned()))?,
        };
        let mode = match get("GATEWAY_MODE") {
            None => Mode::Normal,
            Some(v) => v
                .trim()
                .parse::<Mode>()
                .map_err(|e| invalid("GATEWAY_MODE", e.to_string()))?,
        };
        let error_rate = match get("ERROR_RATE") {
            None => ModeSettings::default().error_rate,
            Some(v) => {
                ErrorRate::parse(v.trim()).map_err(|e| invalid("ERROR_RATE", e.to_string()))?
            }
        };
        let settings = ModeSettings {
            mode,
            latency_ms: number("LATENCY_MS", DEFAULT_LATENCY_MS, MAX_LATENCY_MS)?,
            error_rate,
            seed: number("RANDOM_SEED", DEFAULT_SEED, u64::MAX)?,
            pending_delay_ms: number(
                "PENDING_DELAY_MS",
                DEFAULT_PENDING_DELAY_MS,
                MAX_PENDING_DELAY_MS,
            )?,
        };
        let webhook = get("WEBHOOK_URL").map(|url| WebhookConfig {
            url: url.trim().to_owned(),
            secret: get("WEBHOOK_SECRET").unwrap_or_else(|| DEFAULT_WEBHOOK_SECRET.to_owned()),
        });
        Ok(Self {
            port,
            gateway: GatewayConfig { api_key, settings },
            webhook,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        // GIVEN an empty environment WHEN config is read
        let config = ServerConfig::from_lookup(lookup(&[])).unwrap();
        // THEN every documented default applies
        assert_eq!(config.port, 3000);
        assert!(config.gateway.api_key.matches(b"local-gateway-key"));
        assert_eq!(config.gateway.settings, ModeSettings::default());
        assert_eq!(config.gateway.settings.pending_delay_ms, 2000);
        assert_eq!(config.gateway.settings.seed, 42);
        assert_eq!(config.gateway.settings.mode, Mode::Normal);
    }

    #[test]
    fn environment_overrides_defaults() {
        // GIVEN every variable set
        let config = ServerConfig::from_lookup(lookup(&[
            ("PORT", "3100"),
            ("GATEWAY_API_KEY", "k1"),
            ("PENDING_DELAY_MS", "5"),
            ("GATEWAY_MODE", "pending_then_approve"),
            ("RANDOM_SEED", "7"),
            ("ERROR_RATE", "0.25"),
            ("LATENCY_MS", "10"),
        ]))
        .unwrap();
        // THEN each is honoured
        assert_eq!(config.port, 3100);
        assert!(config.gateway.api_key.matches(b"k1"));
        let s = config.gateway.settings;
        assert_eq!(s.mode, Mode::PendingThenApprove);
        assert_eq!((s.pending_delay_ms, s.seed, s.latency_ms), (5, 7, 10));
        assert_eq!(s.error_rate.bps(), 2500);
    }

    #[test]
    fn invalid_values_are_rejected() {
        for vars in [
            [("PORT", "70000")],
            [("GATEWAY_MODE", "sideways")],
            [("PENDING_DELAY_MS", "-1")],
            [("GATEWAY_API_KEY", "")],
            [("ERROR_RATE", "2")],
        ] {
            assert!(
                ServerConfig::from_lookup(lookup(&vars)).is_err(),
                "{vars:?}"
            );
        }
    }

    #[test]
    fn error_rate_parses_exact_decimals() {
        assert_eq!(ErrorRate::parse("0").unwrap(), ErrorRate::ZERO);
        assert_eq!(ErrorRate::parse("1").unwrap(), ErrorRate::ONE);
        assert_eq!(ErrorRate::parse("1.0000").unwrap(), ErrorRate::ONE);
        assert_eq!(ErrorRate::parse("0.0001").unwrap().bps(), 1);
        assert_eq!(ErrorRate::parse("0.5").unwrap().to_string(), "0.5");
        for bad in [
            "1.0001", "0.00001", "-0.1", "1e-1", ".5", "5.", " 0.5", "abc", "",
        ] {
            assert!(ErrorRate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn modes_round_trip_and_reject_unknown_names() {
        for mode in Mode::ALL {
            assert_eq!(mode.as_str().parse::<Mode>().unwrap(), mode);
        }
        assert!("approve-all".parse::<Mode>().is_err());
        assert!("NORMAL".parse::<Mode>().is_err());
    }

    #[test]
    fn api_key_is_masked_in_debug_output() {
        let key = ApiKey::new("super-secret").unwrap();
        assert_eq!(format!("{key:?}"), "ApiKey(***)");
        assert!(key.matches(b"super-secret"));
        assert!(!key.matches(b"super-secreT"));
        assert!(!key.matches(b"super"));
    }
}
