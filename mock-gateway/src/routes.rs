//! Handlers for `/v1`, `/health` and `/control`.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::time::Duration;

use crate::cancels;
use crate::charges::{self, ChargeRequest};
use crate::config::{ErrorRate, MAX_LATENCY_MS, MAX_PENDING_DELAY_MS, Mode, ModeSettings};
use crate::error::{AppError, AppJson, LoggedPaymentId, Outcome};
use crate::refunds::{self, RefundRequest};
use crate::state::{AppState, Stats};

/// Tags a response with the payment it concerns (for the access log).
fn tagged(mut response: Response, payment_id: String) -> Response {
    response
        .extensions_mut()
        .insert(LoggedPaymentId(payment_id));
    response
}

fn with_outcome(mut response: Response, outcome: &'static str) -> Response {
    response.extensions_mut().insert(Outcome(outcome));
    response
}

/// `POST /v1/payments`
pub async fn create_payment(
    State(state): State<AppState>,
    AppJson(request): AppJson<ChargeRequest>,
) -> Response {
    let payment_id = request.payment_id.clone();
    let now = state.now();
    let result = charges::process(&mut state.lock(), state.limits, now, request);
    let response = match result {
        Ok(done) => {
            let status = done.view.status;
            if !done.replay {
                announce_charge(&state, &payment_id, status);
            }
            let outcome = if done.replay {
                "REPLAY"
            } else {
                status.as_str()
            };
            with_outcome(
                (status.http_status(), Json(done.view)).into_response(),
                outcome,
            )
        }
        Err(e) => e.into_response(),
    };
    tagged(response, payment_id)
}

/// The webhook a new charge's outcome sends: at once for an approval or a
/// decline, when it is approved for a pending one.
fn announce_charge(state: &AppState, payment_id: &str, status: charges::ChargeStatus) {
    let Some(webhooks) = &state.webhooks else {
        return;
    };
    let (event_type, delay) = match status {
        charges::ChargeStatus::Approved => ("charge.succeeded", Duration::ZERO),
        charges::ChargeStatus::Declined => ("charge.failed", Duration::ZERO),
        charges::ChargeStatus::Pending => (
            "charge.succeeded",
            Duration::from_millis(state.settings().pending_delay_ms),
        ),
    };
    webhooks.send_later(event_type, payment_id.to_owned(), None, delay);
}

/// `GET /v1/payments/{paymentId}`: always 200 with the current status.
pub async fn get_payment(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    let Ok(Path(payment_id)) = path else {
        return AppError::InvalidRequest("invalid paymentId in path".to_owned()).into_response();
    };
    let now = state.now();
    let view = state
        .lock()
        .charges
        .get(&payment_id)
        .map(|charge| charge.view(now));
    let response = match view {
        Some(Ok(view)) => {
            let outcome = view.status.as_str();
            with_outcome((StatusCode::OK, Json(view)).into_response(), outcome)
        }
        Some(Err(e)) => e.into_response(),
        None => AppError::PaymentNotFound(payment_id.clone()).into_response(),
    };
    tagged(response, payment_id)
}

/// `POST /v1/payments/{paymentId}/cancel`: always 200 with the status that now
/// holds. No body is read, so any body (or none, with any content type) is ignored.
pub async fn cancel_payment(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    let Ok(Path(payment_id)) = path else {
        return AppError::InvalidRequest("invalid paymentId in path".to_owned()).into_response();
    };
    let now = state.now();
    let result = cancels::process(&mut state.lock(), state.limits, now, payment_id.clone());
    let response = match result {
        Ok(done) => {
            let outcome = if done.tombstoned {
                "CANCELED"
            } else {
                done.view.status.as_str()
            };
            with_outcome((StatusCode::OK, Json(done.view)).into_response(), outcome)
        }
        Err(e) => e.into_response(),
    };
    tagged(response, payment_id)
}

/// `POST /v1/refunds`
pub async fn create_refund(
    State(state): State<AppState>,
    AppJson(request): AppJson<RefundRequest>,
) -> Response {
    let payment_id = request.payment_id.clone();
    let now = state.now();
    let result = refunds::process(&mut state.lock(), state.limits, now, request);
    let response = match result {
        Ok(done) => {
            if let (false, Some(webhooks)) = (done.replay, &state.webhooks) {
                webhooks.send_later(
                    "refund.succeeded",
                    payment_id.clone(),
                    Some(done.view.refund_id.clone()),
                    Duration::ZERO,
                );
            }
            let outcome = if done.replay { "REPLAY" } else { "REFUNDED" };
            with_outcome((StatusCode::OK, Json(done.view)).into_response(), outcome)
        }
        Err(e) => e.into_response(),
    };
    tagged(response, payment_id)
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    mode: Mode,
}

/// `GET /health`: no API key, answers even in `down` mode.
pub async fn health(State(state): State<AppState>) -> Response {
    let mode = state.settings().mode;
    Json(Health { status: "ok", mode }).into_response()
}

/// Settings as shown by `/control/mode`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SettingsView {
    mode: Mode,
    latency_ms: u64,
    error_rate: String,
    seed: u64,
    pending_delay_ms: u64,
}

impl From<ModeSettings> for SettingsView {
    fn from(s: ModeSettings) -> Self {
        Self {
            mode: s.mode,
            latency_ms: s.latency_ms,
            error_rate: s.error_rate.to_string(),
            seed: s.seed,
            pending_delay_ms: s.pending_delay_ms,
        }
    }
}

/// `POST /control/mode` body. Omitted fields keep their current value.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ModeRequest {
    mode: String,
    latency_ms: Option<u64>,
    error_rate: Option<Box<RawValue>>,
    seed: Option<u64>,
    pending_delay_ms: Option<u64>,
}

/// `errorRate` may be a decimal string (`"0.25"`) or a JSON number (`0.25`); both
/// are read from their digits.
fn parse_error_rate(raw: &RawValue) -> Result<ErrorRate, AppError> {
    let json = raw.get();
    let text = if json.starts_with('"') {
        serde_json::from_str::<String>(json)
            .map_err(|_| AppError::InvalidRequest("errorRate is not a valid string".to_owned()))?
    } else {
        json.to_owned()
    };
    ErrorRate::parse(&text).map_err(|e| AppError::InvalidRequest(e.to_string()))
}

fn bounded(field: &str, value: u64, max: u64) -> Result<u64, AppError> {
    if value <= max {
        Ok(value)
    } else {
        Err(AppError::InvalidRequest(format!(
            "{field} must be between 0 and {max}"
        )))
    }
}

/// `GET /control/mode`
pub async fn get_mode(State(state): State<AppState>) -> Json<SettingsView> {
    Json(state.settings().into())
}

/// `POST /control/mode`
pub async fn set_mode(
    State(state): State<AppState>,
    AppJson(request): AppJson<ModeRequest>,
) -> Result<Json<SettingsView>, AppError> {
    let current = state.settings();
    let mode = request
        .mode
        .parse::<Mode>()
        .map_err(|e| AppError::InvalidMode(e.to_string()))?;
    let settings = ModeSettings {
        mode,
        latency_ms: match request.latency_ms {
            Some(v) => bounded("latencyMs", v, MAX_LATENCY_MS)?,
            None => current.latency_ms,
        },
        error_rate: match request.error_rate.as_deref() {
            Some(raw) => parse_error_rate(raw)?,
            None => current.error_rate,
        },
        seed: request.seed.unwrap_or(current.seed),
        pending_delay_ms: match request.pending_delay_ms {
            Some(v) => bounded("pendingDelayMs", v, MAX_PENDING_DELAY_MS)?,
            None => current.pending_delay_ms,
        },
    };
    let applied = state.apply_settings(settings, request.seed.is_some());
    tracing::info!(mode = %applied.mode, latency_ms = applied.latency_ms,
        error_rate = %applied.error_rate, seed = applied.seed,
        pending_delay_ms = applied.pending_delay_ms, "mode changed");
    Ok(Json(applied.into()))
}

/// `POST /control/reset`
pub async fn reset(State(state): State<AppState>) -> Json<SettingsView> {
    let settings = state.reset();
    tracing::info!("gateway reset");
    Json(settings.into())
}

/// `GET /control/stats`
pub async fn stats(State(state): State<AppState>) -> Json<Stats> {
    Json(state.stats())
}

/// Unknown routes.
pub async fn not_found() -> AppError {
    AppError::RouteNotFound
}
