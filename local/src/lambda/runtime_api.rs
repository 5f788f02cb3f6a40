//! The Lambda Runtime API (version 2018-06-01) for one instance, served on
//! its own loopback port so that everything a runtime does — including dying
//! — is attributed to that instance:
//!
//! - `GET  /2018-06-01/runtime/invocation/next` long-polls for the next event
//!   (200, payload body, `Lambda-Runtime-*` headers); the first call ends the
//!   instance's init phase;
//! - `POST /2018-06-01/runtime/invocation/{id}/response` (202);
//! - `POST /2018-06-01/runtime/invocation/{id}/error` (202, body
//!   `{errorType, errorMessage}`);
//! - `POST /2018-06-01/runtime/init/error` (202).
//!
//! An unknown request id gets 400 `InvalidRequestID`; a response over 6 MB
//! gets 413 and fails the invocation with `Function.ResponseSizeTooLarge`.
//!
//! Fault injection (local only): an invocation delivered with `hold_result`
//! has its result (response or error) read and then never delivered, and the
//! runtime's POST is left unanswered until the process exits; the instance
//! reports `result_held`. The function's work is done (its writes are
//! committed) but its caller never hears of it: killing the instance now is
//! the crash between "committed" and "replied" that retries must survive.

use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::{mpsc, oneshot, watch};

use super::PAYLOAD_BYTES_MAX;

/// One invocation handed to an instance.
pub(super) struct Delivery {
    pub(super) request_id: String,
    pub(super) payload: Bytes,
    pub(super) deadline_ms: u64,
    pub(super) trace_id: String,
    pub(super) result: oneshot::Sender<Outcome>,
    /// Read the runtime's result, then hold it back (see the module docs).
    pub(super) hold_result: bool,
}

/// What the runtime reported for an invocation.
#[derive(Debug)]
pub(super) enum Outcome {
    Response(Bytes),
    Error(ErrorBody),
}

/// The runtime's `ErrorRequest` body, also what Invoke returns on an error.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ErrorBody {
    #[serde(default)]
    pub(super) error_type: String,
    #[serde(default)]
    pub(super) error_message: String,
}

/// The life of an instance as its runtime and its process report it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Status {
    /// The runtime asked for its first event: init is over.
    pub(super) ready: bool,
    /// The runtime posted `/runtime/init/error`.
    pub(super) init_error: Option<ErrorBody>,
    /// The process exited and was reaped: `exit status 1`, `signal: killed`.
    pub(super) exit: Option<String>,
    /// The runtime posted a result that is being held back (fault injection).
    pub(super) result_held: bool,
}

#[derive(Clone)]
pub(super) struct RuntimeApi(Arc<Shared>);

struct Shared {
    function_arn: String,
    status: Arc<watch::Sender<Status>>,
    /// Capacity 1: an instance runs one invocation at a time.
    deliveries: tokio::sync::Mutex<mpsc::Receiver<Delivery>>,
    /// The invocation handed out by the last `/next`, until answered.
    in_flight: Mutex<Option<InFlight>>,
}

struct InFlight {
    request_id: String,
    result: oneshot::Sender<Outcome>,
    hold_result: bool,
}

impl RuntimeApi {
    pub(super) fn new(
        function_arn: String,
        status: Arc<watch::Sender<Status>>,
        deliveries: mpsc::Receiver<Delivery>,
    ) -> Self {
        Self(Arc::new(Shared {
            function_arn,
            status,
            deliveries: tokio::sync::Mutex::new(deliveries),
            in_flight: Mutex::new(None),
        }))
    }

    fn take_in_flight(&self, request_id: &str) -> Option<InFlight> {
        let mut in_flight = self
            .0
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match in_flight.take() {
            Some(taken) if taken.request_id == request_id => Some(taken),
            other => {
                *in_flight = other;
                None
            }
        }
    }

    /// Keeps a result from its caller until the process exits (a kill, or
    /// the invocation's timeout, which kills it), then answers the runtime.
    async fn hold(&self, request_id: &str, sender: oneshot::Sender<Outcome>) -> Response {
        tracing::info!(%request_id, "holding the result of an invocation (fault injection)");
        let mut status = self.0.status.subscribe();
        self.0
            .status
            .send_modify(|status| status.result_held = true);
        // An error means the instance is gone: stop waiting either way.
        let _ = status.wait_for(|status| status.exit.is_some()).await;
        drop(sender);
        runtime_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ServiceError",
            "result held back and dropped (fault injection)",
        )
    }
}

pub(super) fn router(api: RuntimeApi) -> Router {
    Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route(
            "/2018-06-01/runtime/invocation/{request_id}/response",
            post(response),
        )
        .route(
            "/2018-06-01/runtime/invocation/{request_id}/error",
            post(invocation_error),
        )
        .route("/2018-06-01/runtime/init/error", post(init_error))
        .with_state(api)
}

/// Long-polls without a deadline, like Lambda: an idle instance waits here
/// until an invocation comes or the instance is killed (its server aborted).
async fn next(State(api): State<RuntimeApi>) -> Response {
    api.0.status.send_if_modified(|status| {
        let first = !status.ready;
        status.ready = true;
        first
    });
    let mut deliveries = api.0.deliveries.lock().await;
    let Some(delivery) = deliveries.recv().await else {
        // The instance is being retired; a runtime exits on a 500.
        return runtime_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ServiceError",
            "instance retired",
        );
    };
    drop(deliveries);
    let headers = [
        ("lambda-runtime-aws-request-id", delivery.request_id.clone()),
        (
            "lambda-runtime-deadline-ms",
            delivery.deadline_ms.to_string(),
        ),
        (
            "lambda-runtime-invoked-function-arn",
            api.0.function_arn.clone(),
        ),
        ("lambda-runtime-trace-id", delivery.trace_id),
        ("content-type", "application/json".to_owned()),
    ];
    *api.0
        .in_flight
        .lock()
        .unwrap_or_else(PoisonError::into_inner) = Some(InFlight {
        request_id: delivery.request_id,
        result: delivery.result,
        hold_result: delivery.hold_result,
    });
    (StatusCode::OK, headers, delivery.payload).into_response()
}

async fn response(
    State(api): State<RuntimeApi>,
    Path(request_id): Path<String>,
    body: Body,
) -> Response {
    let Some(in_flight) = api.take_in_flight(&request_id) else {
        return invalid_request_id();
    };
    let sender = in_flight.result;
    let read = read_limited(body).await;
    if in_flight.hold_result {
        return api.hold(&request_id, sender).await;
    }
    match read {
        Ok(bytes) => {
            // The caller may have gone (timed out): nothing left to tell.
            let _ = sender.send(Outcome::Response(bytes));
            accepted()
        }
        Err(BodyError::TooLarge) => {
            let _ = sender.send(Outcome::Error(ErrorBody {
                error_type: "Function.ResponseSizeTooLarge".into(),
                error_message: format!(
                    "Response payload size exceeded maximum allowed payload size \
                     ({PAYLOAD_BYTES_MAX} bytes)."
                ),
            }));
            runtime_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestEntityTooLarge",
                "response payload too large",
            )
        }
        Err(BodyError::Read(message)) => {
            let _ = sender.send(Outcome::Error(ErrorBody {
                error_type: "Runtime.InvalidResponse".into(),
                error_message: message,
            }));
            runtime_error(
                StatusCode::BAD_REQUEST,
                "InvalidResponse",
                "cannot read the body",
            )
        }
    }
}

async fn invocation_error(
    State(api): State<RuntimeApi>,
    Path(request_id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(in_flight) = api.take_in_flight(&request_id) else {
        return invalid_request_id();
    };
    let error = error_body(&headers, body, "Unhandled").await;
    if in_flight.hold_result {
        return api.hold(&request_id, in_flight.result).await;
    }
    let _ = in_flight.result.send(Outcome::Error(error));
    accepted()
}

async fn init_error(State(api): State<RuntimeApi>, headers: HeaderMap, body: Body) -> Response {
    let error = error_body(&headers, body, "Runtime.InitError").await;
    api.0.status.send_modify(|status| {
        if !status.ready && status.init_error.is_none() {
            status.init_error = Some(error);
        }
    });
    accepted()
}

/// The posted `{errorType, errorMessage}`; the type falls back to the
/// `Lambda-Runtime-Function-Error-Type` header, then to `default_type`.
async fn error_body(headers: &HeaderMap, body: Body, default_type: &str) -> ErrorBody {
    let header_type = headers
        .get("lambda-runtime-function-error-type")
        .and_then(|value| value.to_str().ok())
        .filter(|value| !value.is_empty());
    let bytes = read_limited(body).await.unwrap_or_default();
    let mut error: ErrorBody = serde_json::from_slice(&bytes).unwrap_or_else(|_| ErrorBody {
        error_type: String::new(),
        error_message: String::from_utf8_lossy(&bytes).into_owned(),
    });
    if error.error_type.is_empty() {
        error.error_type = header_type.unwrap_or(default_type).to_owned();
    }
    error
}

enum BodyError {
    TooLarge,
    Read(String),
}

async fn read_limited(body: Body) -> Result<Bytes, BodyError> {
    match Limited::new(body, PAYLOAD_BYTES_MAX).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.is::<LengthLimitError>() => Err(BodyError::TooLarge),
        Err(err) => Err(BodyError::Read(err.to_string())),
    }
}

fn accepted() -> Response {
    (StatusCode::ACCEPTED, axum::Json(json!({"status": "OK"}))).into_response()
}

fn invalid_request_id() -> Response {
    runtime_error(
        StatusCode::BAD_REQUEST,
        "InvalidRequestID",
        "Invalid request ID",
    )
}

fn runtime_error(status: StatusCode, error_type: &str, message: &str) -> Response {
    let body = json!({"errorType": error_type, "errorMessage": message});
    (status, axum::Json(body)).into_response()
}
