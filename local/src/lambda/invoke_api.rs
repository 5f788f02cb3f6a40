//! The Lambda REST API (version 2015-03-31) on the edge endpoint, enough for
//! `aws lambda invoke|list-functions|get-function` and aws-sdk-lambda:
//!
//! - `POST /2015-03-31/functions/{name}/invocations` — Invoke,
//!   `RequestResponse` (default) or `DryRun`; a function error is a 200 with
//!   `X-Amz-Function-Error: Unhandled` and `{errorType, errorMessage}`;
//! - `GET /2015-03-31/functions/` — ListFunctions (one page: few functions);
//! - `GET /2015-03-31/functions/{name}` and `.../configuration`.
//!
//! Errors are AWS's: status, `x-amzn-ErrorType` header and a JSON body with
//! `Type` and `message`. `Event` (asynchronous) invocations are queued as on
//! Lambda: answered 202 at once, then run in the background, tried again
//! twice after a failure (1 s, then 2 s later here; about 1 and 2 minutes on
//! AWS), a last failure logged.
//!
//! [`admin_routes`] adds local-only routes for tests, `make status` and
//! operators (the local cloud mounts them on its edge endpoint).

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::Deserialize;
use serde_json::{Value, json};

use super::function::Function;
use super::{InvokeError, LambdaService, PAYLOAD_BYTES_MAX, PayloadMatch};

pub fn invoke_routes(service: Arc<LambdaService>) -> Router {
    Router::new()
        .route("/2015-03-31/functions", get(list_functions))
        .route("/2015-03-31/functions/", get(list_functions))
        .route("/2015-03-31/functions/{name}", get(get_function))
        .route(
            "/2015-03-31/functions/{name}/configuration",
            get(get_function_configuration),
        )
        .route("/2015-03-31/functions/{name}/invocations", post(invoke))
        .with_state(service)
}

/// Local-only routes, `{name}` being a function name or ARN:
///
/// - `GET /_local/lambda/stats` — every function's [`super::FunctionStats`];
/// - `POST /_local/lambda/functions/{name}/kill-busy-instance` — SIGKILL one
///   busy instance (one whose result is held first), as a crash would: its
///   invocation fails with `Runtime.ExitError`; 200 `{"pid": n}`, or 404
///   when none is busy;
/// - `POST /_local/lambda/functions/{name}/hold-next-result` — arm
///   [`LambdaService::hold_next_result`] for the next invocation, or with a
///   body `{"match": {"action": "DEBIT", "userId": "u1"}}` for the next one
///   whose payload has those top-level values; 200 `{"functionName", "match"}`.
///   Then wait for an instance with `resultHeld: true` in the stats and kill
///   it: the function's writes are done, its reply is lost.
pub fn admin_routes(service: Arc<LambdaService>) -> Router {
    Router::new()
        .route("/_local/lambda/stats", get(stats))
        .route(
            "/_local/lambda/functions/{name}/kill-busy-instance",
            post(kill_busy_instance),
        )
        .route(
            "/_local/lambda/functions/{name}/hold-next-result",
            post(hold_next_result),
        )
        .with_state(service)
}

#[derive(Debug, Deserialize)]
struct InvokeQuery {
    #[serde(rename = "Qualifier")]
    qualifier: Option<String>,
}

async fn invoke(
    State(service): State<Arc<LambdaService>>,
    Path(name): Path<String>,
    Query(query): Query<InvokeQuery>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let target = match query.qualifier.as_deref() {
        None => name,
        Some(qualifier) => format!("{name}:{qualifier}"),
    };
    let invocation_type = headers
        .get("x-amz-invocation-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("RequestResponse");
    match invocation_type {
        "RequestResponse" => {}
        "Event" => {
            if let Err(err) = service.resolve(&target) {
                return invoke_error(&err);
            }
            let payload = match read_payload(body).await {
                Ok(payload) => payload,
                Err(response) => return *response,
            };
            let _queued = tokio::spawn(invoke_async(service, target, payload));
            return StatusCode::ACCEPTED.into_response();
        }
        "DryRun" => {
            return match service.resolve(&target) {
                Ok(_) => StatusCode::NO_CONTENT.into_response(),
                Err(err) => invoke_error(&err),
            };
        }
        other => {
            let message = format!(
                "InvocationType {other} is not supported by the local Lambda service \
                 (use RequestResponse or DryRun)"
            );
            return aws_error(
                StatusCode::BAD_REQUEST,
                "InvalidParameterValueException",
                &message,
            );
        }
    }
    let payload = match read_payload(body).await {
        Ok(payload) => payload,
        Err(response) => return *response,
    };
    let (request_id, result) = service.invoke_with_request_id(&target, payload).await;
    match result {
        Ok(value) => invocation_response(&request_id, value.to_string(), false),
        Err(InvokeError::Function {
            error_type,
            error_message,
        }) => {
            let body = json!({"errorType": error_type, "errorMessage": error_message});
            invocation_response(&request_id, body.to_string(), true)
        }
        Err(err) => invoke_error(&err),
    }
}

/// Attempts of an asynchronous invocation, as Lambda makes them.
const ASYNC_ATTEMPT_COUNT_MAX: u32 = 3;

/// An `Event` invocation: run, and run again after a failure, like
/// Lambda's asynchronous queue; the answer goes nowhere.
async fn invoke_async(service: Arc<LambdaService>, target: String, payload: Value) {
    for attempt in 1..=ASYNC_ATTEMPT_COUNT_MAX {
        let (request_id, result) = service
            .invoke_with_request_id(&target, payload.clone())
            .await;
        match result {
            Ok(_) => return,
            Err(err) => {
                tracing::warn!(function = %target, requestId = %request_id, attempt,
                    error = %err, "asynchronous invocation failed");
            }
        }
        tokio::time::sleep(std::time::Duration::from_secs(u64::from(attempt))).await;
    }
}

/// The request body as JSON; an empty body is `{}`, as Lambda delivers it.
async fn read_payload(body: Body) -> Result<Value, Box<Response>> {
    let bytes: Bytes = match Limited::new(body, PAYLOAD_BYTES_MAX).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) if err.is::<LengthLimitError>() => {
            let message = format!(
                "Request must be smaller than {PAYLOAD_BYTES_MAX} bytes \
                 for the InvokeFunction operation"
            );
            let response = aws_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestTooLargeException",
                &message,
            );
            return Err(Box::new(response));
        }
        Err(err) => {
            let message = format!("cannot read the request body: {err}");
            let response = aws_error(
                StatusCode::BAD_REQUEST,
                "InvalidRequestContentException",
                &message,
            );
            return Err(Box::new(response));
        }
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice(&bytes).map_err(|err| {
        let message = format!("Could not parse request body into json: {err}");
        Box::new(aws_error(
            StatusCode::BAD_REQUEST,
            "InvalidRequestContentException",
            &message,
        ))
    })
}

fn invocation_response(request_id: &str, body: String, function_error: bool) -> Response {
    let mut headers = vec![
        ("content-type", "application/json".to_owned()),
        ("x-amz-executed-version", "$LATEST".to_owned()),
        ("x-amzn-requestid", request_id.to_owned()),
    ];
    if function_error {
        headers.push(("x-amz-function-error", "Unhandled".to_owned()));
    }
    let mut response = (StatusCode::OK, body).into_response();
    for (name, value) in headers {
        if let Ok(value) = value.parse() {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

fn invoke_error(err: &InvokeError) -> Response {
    match err {
        InvokeError::NotFound(message) => {
            aws_error(StatusCode::NOT_FOUND, "ResourceNotFoundException", message)
        }
        InvokeError::TooManyRequests(message) => {
            let mut response = aws_error(
                StatusCode::TOO_MANY_REQUESTS,
                "TooManyRequestsException",
                message,
            );
            if let Ok(value) = "ReservedFunctionConcurrentInvocationLimitExceeded".parse() {
                response.headers_mut().insert("x-amzn-reason", value);
            }
            response
        }
        InvokeError::Function {
            error_type,
            error_message,
        } => aws_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ServiceException",
            &format!("{error_type}: {error_message}"),
        ),
    }
}

fn aws_error(status: StatusCode, error_type: &str, message: &str) -> Response {
    let body = json!({"Type": "User", "message": message});
    let mut response = (status, axum::Json(body)).into_response();
    if let Ok(value) = error_type.parse() {
        response.headers_mut().insert("x-amzn-errortype", value);
    }
    response
}

async fn list_functions(State(service): State<Arc<LambdaService>>) -> Response {
    let functions: Vec<Value> = service.functions().map(|f| configuration(f)).collect();
    axum::Json(json!({"Functions": functions})).into_response()
}

async fn get_function(
    State(service): State<Arc<LambdaService>>,
    Path(name): Path<String>,
) -> Response {
    match service.resolve(&name) {
        Ok(function) => axum::Json(json!({
            "Configuration": configuration(function),
            "Code": {
                "RepositoryType": "Local",
                "Location": function.program().display().to_string(),
            },
        }))
        .into_response(),
        Err(err) => invoke_error(&err),
    }
}

async fn get_function_configuration(
    State(service): State<Arc<LambdaService>>,
    Path(name): Path<String>,
) -> Response {
    match service.resolve(&name) {
        Ok(function) => axum::Json(configuration(function)).into_response(),
        Err(err) => invoke_error(&err),
    }
}

/// A `FunctionConfiguration`. Only the template's variables are shown, never
/// the local cloud's extras (they hold credentials).
fn configuration(function: &Function) -> Value {
    let spec = &function.spec;
    json!({
        "FunctionName": spec.function_name,
        "FunctionArn": function.arn,
        "Runtime": "provided.al2023",
        "Role": format!("arn:aws:iam::{}:role/{}", super::ACCOUNT_ID, spec.logical_id),
        "Handler": spec.binary,
        "CodeSize": 0,
        "Description": "",
        "Timeout": spec.timeout_seconds,
        "MemorySize": spec.memory_mb,
        "Version": "$LATEST",
        "Environment": {"Variables": spec.environment},
        "PackageType": "Zip",
        "Architectures": ["x86_64"],
        "State": "Active",
        "LastUpdateStatus": "Successful",
        "TracingConfig": {"Mode": "PassThrough"},
        "LoggingConfig": {
            "LogFormat": "Text",
            "LogGroup": format!("/aws/lambda/{}", spec.function_name),
        },
    })
}

async fn stats(State(service): State<Arc<LambdaService>>) -> Response {
    axum::Json(json!({"functions": service.stats()})).into_response()
}

async fn kill_busy_instance(
    State(service): State<Arc<LambdaService>>,
    Path(name): Path<String>,
) -> Response {
    match service.kill_busy_instance(&name) {
        Some(pid) => axum::Json(json!({"pid": pid})).into_response(),
        None => {
            let body = json!({"message": format!("no busy instance of {name}")});
            (StatusCode::NOT_FOUND, axum::Json(body)).into_response()
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HoldRequest {
    #[serde(default, rename = "match")]
    matching: serde_json::Map<String, Value>,
}

async fn hold_next_result(
    State(service): State<Arc<LambdaService>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let request = if body.iter().all(u8::is_ascii_whitespace) {
        HoldRequest::default()
    } else {
        match serde_json::from_slice::<HoldRequest>(&body) {
            Ok(request) => request,
            Err(err) => {
                let message = format!("expected {{\"match\": {{field: value, ...}}}}: {err}");
                return aws_error(
                    StatusCode::BAD_REQUEST,
                    "InvalidRequestContentException",
                    &message,
                );
            }
        }
    };
    let matching = Value::Object(request.matching.clone());
    match service.hold_next_result(&name, PayloadMatch::fields(request.matching)) {
        Ok(()) => axum::Json(json!({"functionName": name, "match": matching})).into_response(),
        Err(err) => invoke_error(&err),
    }
}
