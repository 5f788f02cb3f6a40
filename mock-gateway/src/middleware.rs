//! Middleware: the `/v1` gate (down, API key, slow, flaky) and the outer
//! observer (one access-log line per request, `/v1` stats, JSON error bodies).

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::config::Mode;
use crate::error::{AppError, LoggedPaymentId, Outcome, error_response};
use crate::state::{AppState, ROUTE_CANCEL, ROUTE_CHARGE, ROUTE_OTHER, ROUTE_REFUND, ROUTE_STATUS};

pub const API_KEY_HEADER: &str = "x-api-key";

/// `/control` is for the developer's tools (curl, the tests, `saga`), which
/// send no `Origin`; browsers send it with every cross-origin request and
/// every POST. Refusing those keeps a web page the developer happens to open
/// from flipping the gateway's mode (a form POST needs no CORS preflight).
pub async fn refuse_browsers(request: Request, next: Next) -> Response {
    if request.headers().contains_key(header::ORIGIN) {
        let body = serde_json::json!({"error": {"code": "browser_refused",
            "message": "the control routes do not answer browsers (a request with Origin)"}});
        return (StatusCode::FORBIDDEN, axum::Json(body)).into_response();
    }
    next.run(request).await
}

/// Runs before every `/v1` handler, in this order: `down` → 503, bad key → 401,
/// `slow` → sleep, `flaky` → 500 with probability `errorRate`.
pub async fn gate(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let settings = state.settings();
    if settings.mode == Mode::Down {
        return AppError::Unavailable.into_response();
    }
    let authorized = request
        .headers()
        .get(API_KEY_HEADER)
        .is_some_and(|v| state.api_key.matches(v.as_bytes()));
    if !authorized {
        return AppError::Unauthorized.into_response();
    }
    if settings.mode == Mode::Slow && settings.latency_ms > 0 {
        // No lock is held here.
        tokio::time::sleep(Duration::from_millis(settings.latency_ms)).await;
    }
    if settings.mode == Mode::Flaky && state.roll_failure() {
        return AppError::GatewayError.into_response();
    }
    next.run(request).await
}

/// Outermost layer: gives every error a JSON body, counts `/v1` calls and logs.
pub async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path: String = request.uri().path().chars().take(128).collect();
    let matched = request
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());

    let response = json_error_body(next.run(request).await);

    let status = response.status();
    let outcome = response
        .extensions()
        .get::<Outcome>()
        .map_or_else(|| default_outcome(status), |o| o.0);
    let payment_id = response
        .extensions()
        .get::<LoggedPaymentId>()
        .map(|p| p.0.clone());
    if path == "/v1" || path.starts_with("/v1/") {
        state.record(route_label(&method, matched.as_deref()), outcome);
    }
    let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    tracing::info!(
        method = %method,
        route = matched.as_deref().unwrap_or(&path),
        payment_id = payment_id.as_deref(),
        outcome,
        status = status.as_u16(),
        elapsed_ms,
        "request"
    );
    response
}

fn route_label(method: &Method, matched: Option<&str>) -> &'static str {
    match (method.as_str(), matched) {
        ("POST", Some("/v1/payments")) => ROUTE_CHARGE,
        ("GET", Some("/v1/payments/{paymentId}")) => ROUTE_STATUS,
        ("POST", Some("/v1/payments/{paymentId}/cancel")) => ROUTE_CANCEL,
        ("POST", Some("/v1/refunds")) => ROUTE_REFUND,
        _ => ROUTE_OTHER,
    }
}

fn default_outcome(status: StatusCode) -> &'static str {
    if status.is_success() {
        "OK"
    } else {
        "HTTP_ERROR"
    }
}

/// Errors produced outside our handlers (405 from the router, 408 from the
/// timeout layer, 413 from the body limit) get the standard JSON error body.
fn json_error_body(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let error = match status {
        StatusCode::NOT_FOUND => AppError::RouteNotFound,
        StatusCode::METHOD_NOT_ALLOWED => AppError::MethodNotAllowed,
        StatusCode::REQUEST_TIMEOUT => AppError::Timeout,
        StatusCode::PAYLOAD_TOO_LARGE => AppError::PayloadTooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => AppError::UnsupportedMediaType,
        other => {
            let reason = other.canonical_reason().unwrap_or("error");
            return error_response(other, "HTTP_ERROR", reason, "HTTP_ERROR");
        }
    };
    error.into_response()
}
