//! `payments-adapter`: the saga's calls to the external payment gateway, charges
//! behind the circuit breaker shared by every instance (DESIGN §6).
//!
//! - CHARGE: APPROVED or PENDING is a reply; DECLINED is the `PaymentDeclined`
//!   error (a decline is never a success).
//! - STATUS: the gateway's view of the charge (NOT_FOUND when it has none),
//!   with `checks` counted up so the state machine can bound its waiting loop.
//! - CANCEL: closes the payment at the gateway and answers its final state
//!   (DECLINED, APPROVED or PENDING); the saga gives a debit back only after
//!   a DECLINED answer, from a charge or from here.
//!
//! CHARGE goes through the circuit breaker; STATUS and CANCEL do not (they
//! resolve money already moving and add no load worth shedding).
//!
//! Gateway failures keep their names (`GatewayUnavailable`, `GatewayAmbiguous`,
//! `GatewayRejected`); an open circuit is `CircuitOpen` and the gateway is not
//! called. The `paymentId` is the gateway's idempotency key, so a retried
//! step never charges twice.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use lambda_runtime::LambdaEvent;
use shared::breaker::{
    BreakerError, BreakerSettings, CACHE_TTL_MS_DEFAULT, CACHE_TTL_MS_MAX, CircuitBreaker,
    SERVICE_NAME_DEFAULT, SERVICE_NAME_LENGTH_MAX, SystemClock,
};
use shared::domain::breaker::{
    BREAKER_THRESHOLD_MAX, BreakerPolicy, CallOutcome, OPEN_SECONDS_MAX, PROBE_LEASE_SECONDS_MAX,
};
use shared::domain::{Money, PaymentId, UserId};
use shared::events::{ChargeStatus, GatewayCommand, GatewayReply};
use shared::ports::{BreakerStore, GatewayCharge, PaymentGateway};
use shared::{ErrorType, GatewayError, TaskError};
use tracing::{Instrument, info, warn};

pub const FUNCTION_NAME: &str = "payments-adapter";

pub const ENV_FAILURE_THRESHOLD: &str = "FAILURE_THRESHOLD";
pub const ENV_OPEN_SECONDS: &str = "OPEN_SECONDS";
pub const ENV_SUCCESS_THRESHOLD: &str = "SUCCESS_THRESHOLD";
pub const ENV_PROBE_LEASE_SECONDS: &str = "PROBE_LEASE_SECONDS";
pub const ENV_CACHE_TTL_MS: &str = "BREAKER_CACHE_TTL_MS";
pub const ENV_SERVICE_NAME: &str = "BREAKER_SERVICE_NAME";

pub const FAILURE_THRESHOLD_DEFAULT: u32 = 5;
pub const OPEN_SECONDS_DEFAULT: u32 = 30;
pub const SUCCESS_THRESHOLD_DEFAULT: u32 = 2;
/// Longer than the gateway request timeout (3 s by default), so a probe's
/// lease does not run out while the probe is still waiting for its answer.
pub const PROBE_LEASE_SECONDS_DEFAULT: u32 = 10;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{var} is invalid: {reason}")]
pub struct ConfigError {
    pub var: &'static str,
    pub reason: String,
}

/// The adapter's own settings (the gateway's are `shared::gateway::GatewayConfig`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub breaker: BreakerSettings,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads `FAILURE_THRESHOLD` (default 5), `OPEN_SECONDS` (30),
    /// `SUCCESS_THRESHOLD` (2), `PROBE_LEASE_SECONDS` (10),
    /// `BREAKER_CACHE_TTL_MS` (1000, 0 = no cache) and `BREAKER_SERVICE_NAME`
    /// (`payment-gateway`) through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |var: &str| lookup(var).filter(|value| !value.trim().is_empty());
        let number = |var: &'static str, default: u32, min: u32, max: u32| match get(var) {
            None => Ok(default),
            Some(text) => match text.trim().parse::<u32>() {
                Ok(value) if (min..=max).contains(&value) => Ok(value),
                _ => Err(ConfigError {
                    var,
                    reason: format!("expected a whole number {min}..={max}"),
                }),
            },
        };
        let policy = BreakerPolicy::new(
            number(
                ENV_FAILURE_THRESHOLD,
                FAILURE_THRESHOLD_DEFAULT,
                1,
                BREAKER_THRESHOLD_MAX,
            )?,
            number(ENV_OPEN_SECONDS, OPEN_SECONDS_DEFAULT, 1, OPEN_SECONDS_MAX)?,
            number(
                ENV_SUCCESS_THRESHOLD,
                SUCCESS_THRESHOLD_DEFAULT,
                1,
                BREAKER_THRESHOLD_MAX,
            )?,
            number(
                ENV_PROBE_LEASE_SECONDS,
                PROBE_LEASE_SECONDS_DEFAULT,
                1,
                PROBE_LEASE_SECONDS_MAX,
            )?,
        )
        .map_err(|err| ConfigError {
            var: "breaker policy",
            reason: err.to_string(),
        })?;
        let service_name = get(ENV_SERVICE_NAME)
            .map(|name| name.trim().to_owned())
            .unwrap_or_else(|| SERVICE_NAME_DEFAULT.to_owned());
        let name_ok = u32::try_from(service_name.len())
            .is_ok_and(|n| (1..=SERVICE_NAME_LENGTH_MAX).contains(&n))
            && service_name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !name_ok {
            return Err(ConfigError {
                var: ENV_SERVICE_NAME,
                reason: format!("expected 1..={SERVICE_NAME_LENGTH_MAX} of A-Z a-z 0-9 - _ ."),
            });
        }
        Ok(Self {
            breaker: BreakerSettings {
                service_name,
                policy,
                cache_ttl_ms: number(ENV_CACHE_TTL_MS, CACHE_TTL_MS_DEFAULT, 0, CACHE_TTL_MS_MAX)?,
            },
        })
    }
}

pub struct Deps {
    pub gateway: Arc<dyn PaymentGateway>,
    pub breaker: CircuitBreaker,
}

impl Deps {
    /// The production wiring: wall-clock time, EMF metrics on stdout.
    pub fn new(
        config: Config,
        gateway: Arc<dyn PaymentGateway>,
        store: Arc<dyn BreakerStore>,
    ) -> Self {
        Self {
            gateway,
            breaker: CircuitBreaker::new(store, config.breaker, Arc::new(SystemClock)),
        }
    }
}

pub async fn handle(
    deps: &Deps,
    event: LambdaEvent<GatewayCommand>,
) -> Result<GatewayReply, TaskError> {
    let span = shared::invocation_span!(FUNCTION_NAME, event.context, event.payload.payment_id());
    execute(deps, event.payload).instrument(span).await
}

pub async fn execute(deps: &Deps, command: GatewayCommand) -> Result<GatewayReply, TaskError> {
    match command {
        GatewayCommand::Charge {
            payment_id,
            user_id,
            amount,
        } => charge(deps, payment_id, &user_id, &amount).await,
        GatewayCommand::Status { payment_id, checks } => status(deps, payment_id, checks).await,
        GatewayCommand::Cancel { payment_id, checks } => cancel(deps, payment_id, checks).await,
    }
}

async fn charge(
    deps: &Deps,
    payment_id: PaymentId,
    user_id: &UserId,
    amount: &Money,
) -> Result<GatewayReply, TaskError> {
    let call = observed(
        "CHARGE",
        payment_id,
        deps.gateway.charge(&payment_id, user_id, amount),
        |charge: &GatewayCharge| ChargeStatus::as_str(charge.status),
    );
    let charge = guarded(deps, call).await?;
    match charge.status {
        ChargeStatus::Approved | ChargeStatus::Pending => Ok(GatewayReply {
            status: charge.status,
            gateway_reference: Some(charge.reference),
            decline_code: None,
            checks: 0,
        }),
        ChargeStatus::Declined => {
            let code = charge.decline_code.as_deref().unwrap_or("no decline code");
            Err(TaskError::new(
                ErrorType::PaymentDeclined,
                format!("payment {payment_id} declined by the gateway: {code}"),
            ))
        }
        // A charge answered with "no such charge" breaks the gateway's contract;
        // whether it charged is unknown, so the saga must ask before compensating.
        ChargeStatus::NotFound => Err(TaskError::new(
            ErrorType::GatewayAmbiguous,
            format!("gateway answered the charge of {payment_id} with NOT_FOUND"),
        )),
    }
}

async fn status(
    deps: &Deps,
    payment_id: PaymentId,
    checks: u32,
) -> Result<GatewayReply, TaskError> {
    let call = observed(
        "STATUS",
        payment_id,
        deps.gateway.status(&payment_id),
        |found: &Option<GatewayCharge>| {
            found
                .as_ref()
                .map_or("NOT_FOUND", |c| ChargeStatus::as_str(c.status))
        },
    );
    // Not through the breaker: a lookup adds no load worth shedding, and it is
    // how a payment already at the gateway gets its answer while the circuit
    // is open (an open circuit must not strand every pending payment).
    let found = call.await.map_err(task_error)?;
    let checks = checks.saturating_add(1);
    Ok(match found {
        Some(charge) => answered(charge, checks),
        None => GatewayReply {
            status: ChargeStatus::NotFound,
            gateway_reference: None,
            decline_code: None,
            checks,
        },
    })
}

/// Closes the payment at the gateway before the saga gives its debit back.
/// Like a status lookup it bypasses the breaker: it resolves money already
/// moving. DECLINED is a reply here (the answer that allows compensating).
async fn cancel(
    deps: &Deps,
    payment_id: PaymentId,
    checks: u32,
) -> Result<GatewayReply, TaskError> {
    let call = observed(
        "CANCEL",
        payment_id,
        deps.gateway.cancel(&payment_id),
        |charge: &GatewayCharge| ChargeStatus::as_str(charge.status),
    );
    let charge = call.await.map_err(task_error)?;
    Ok(answered(charge, checks.saturating_add(1)))
}

/// The gateway's view of a charge, as the state machine's Choice reads it.
fn answered(charge: GatewayCharge, checks: u32) -> GatewayReply {
    GatewayReply {
        status: charge.status,
        gateway_reference: Some(charge.reference),
        decline_code: charge.decline_code,
        checks,
    }
}

fn task_error(err: GatewayError) -> TaskError {
    TaskError::new(err.error_type(), err.to_string())
}

/// Runs a gateway call through the breaker and names its failure.
async fn guarded<T>(
    deps: &Deps,
    call: impl Future<Output = Result<T, GatewayError>>,
) -> Result<T, TaskError> {
    match deps.breaker.call(call, breaker_outcome).await {
        Ok(result) => result.map_err(task_error),
        Err(err) => {
            if let BreakerError::Open { .. } = err {
                warn!(errorType = %err.error_type(), "gateway not called: the circuit is open");
            } else {
                warn!(errorType = %err.error_type(), error = %err, "circuit breaker unavailable");
            }
            Err(err.into())
        }
    }
}

/// Whether the gateway answered. A decline or a 4xx rejection is the gateway
/// working as intended; only "no usable answer" counts against it.
fn breaker_outcome<T>(result: &Result<T, GatewayError>) -> CallOutcome {
    match result {
        Ok(_) | Err(GatewayError::Rejected { .. }) => CallOutcome::Success,
        Err(GatewayError::Unavailable(_) | GatewayError::Ambiguous(_)) => CallOutcome::Failure,
    }
}

/// Logs one gateway call: what, for which payment, how it went, how long.
async fn observed<T>(
    operation: &'static str,
    payment_id: PaymentId,
    call: impl Future<Output = Result<T, GatewayError>>,
    outcome: impl FnOnce(&T) -> &'static str,
) -> Result<T, GatewayError> {
    let started = Instant::now();
    let result = call.await;
    let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    match &result {
        Ok(value) => info!(operation, paymentId = %payment_id, outcome = outcome(value),
            latency_ms, "gateway call"),
        Err(err) => warn!(operation, paymentId = %payment_id, outcome = %err.error_type(),
            latency_ms, error = %err, "gateway call failed"),
    }
    result
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

    #[test]
    fn config_defaults_follow_the_design() {
        let config = Config::from_lookup(lookup(&[])).unwrap();
        let policy = config.breaker.policy;
        assert_eq!(policy.failure_threshold(), 5);
        assert_eq!(policy.open_seconds(), 30);
        assert_eq!(policy.success_threshold(), 2);
        assert_eq!(policy.probe_lease_seconds(), 10);
        assert_eq!(config.breaker.cache_ttl_ms, 1_000);
        assert_eq!(config.breaker.service_name, "payment-gateway");
    }

    #[test]
    fn config_reads_the_environment() {
        let config = Config::from_lookup(lookup(&[
            (ENV_FAILURE_THRESHOLD, "3"),
            (ENV_OPEN_SECONDS, " 60 "),
            (ENV_SUCCESS_THRESHOLD, "1"),
            (ENV_PROBE_LEASE_SECONDS, "20"),
            (ENV_CACHE_TTL_MS, "0"),
            (ENV_SERVICE_NAME, "gw-eu"),
        ]))
        .unwrap();
        let policy = config.breaker.policy;
        assert_eq!(
            (
                policy.failure_threshold(),
                policy.open_seconds(),
                policy.success_threshold()
            ),
            (3, 60, 1)
        );
        assert_eq!(config.breaker.cache_ttl_ms, 0);
        assert_eq!(config.breaker.service_name, "gw-eu");
    }

    #[test]
    fn bad_values_are_startup_errors_naming_the_variable() {
        for (var, value) in [
            (ENV_FAILURE_THRESHOLD, "0"),
            (ENV_FAILURE_THRESHOLD, "five"),
            (ENV_OPEN_SECONDS, "-1"),
            (ENV_OPEN_SECONDS, "86401"),
            (ENV_SUCCESS_THRESHOLD, "1001"),
            (ENV_PROBE_LEASE_SECONDS, "0"),
            (ENV_CACHE_TTL_MS, "60001"),
            (ENV_SERVICE_NAME, "a b"),
        ] {
            let err = Config::from_lookup(lookup(&[(var, value)])).unwrap_err();
            assert_eq!(err.var, var, "{var}={value}");
            assert!(err.to_string().starts_with(var));
        }
    }

    #[test]
    fn only_missing_answers_count_against_the_gateway() {
        let rejected: Result<(), _> = Err(GatewayError::Rejected {
            status: 401,
            code: "UNAUTHORIZED".into(),
            message: String::new(),
        });
        assert_eq!(breaker_outcome(&rejected), CallOutcome::Success);
        assert_eq!(
            breaker_outcome(&Ok::<(), GatewayError>(())),
            CallOutcome::Success
        );
        for err in [
            GatewayError::Unavailable("503".into()),
            GatewayError::Ambiguous("timeout".into()),
        ] {
            assert_eq!(breaker_outcome(&Err::<(), _>(err)), CallOutcome::Failure);
        }
    }
}
