//! The single AWS endpoint on loopback (default port 4566), like the real
//! service endpoints behind one URL: DynamoDB and Step Functions speak the AWS
//! JSON 1.0 protocol (`X-Amz-Target` names the operation), the Lambda Invoke
//! API is REST. `aws --endpoint-url http://127.0.0.1:4566 …` and the AWS SDKs
//! work against it unchanged.
//!
//! Besides the AWS APIs, the local cloud mounts here (under `/_local/`, a
//! prefix no AWS API uses) the Lambda service's admin routes, for tests and
//! operators — see [`crate::lambda::admin_routes`]:
//!
//! ```text
//! curl -s localhost:4566/_local/lambda/stats
//! curl -s -XPOST localhost:4566/_local/lambda/functions/local-wallet-service/hold-next-result \
//!      -d '{"match":{"action":"DEBIT","userId":"demo_user"}}'
//! curl -s -XPOST localhost:4566/_local/lambda/functions/local-wallet-service/kill-busy-instance
//! ```
//!
//! and the local issuer of end users' tokens, with the local service
//! clients' keys, under `/local-issuer/` ([`crate::issuer`]).

use crate::json_response;
use std::sync::Arc;

use async_trait::async_trait;
use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use axum::routing::get;
use serde_json::{Value, json};

mod dynamo_stats;

pub use dynamo_stats::{DynamoStats, OperationStats};

/// DynamoDB accepts request bodies up to 16 MB.
pub const BODY_BYTES_MAX: usize = 16 * 1024 * 1024;
const DYNAMODB_PREFIX: &str = "DynamoDB_20120810.";
const STEP_FUNCTIONS_PREFIX: &str = "AWSStepFunctions.";

/// An AWS JSON-protocol error: `{"__type": …, "message": …}` with a status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub error_type: String,
    pub message: String,
}

impl ApiError {
    pub fn client(error_type: &str, message: impl Into<String>) -> Self {
        Self {
            status: 400,
            error_type: error_type.to_owned(),
            message: message.into(),
        }
    }
}

/// A service speaking the AWS JSON 1.0 protocol: one operation, one JSON body.
#[async_trait]
pub trait JsonService: Send + Sync {
    async fn call(&self, operation: &str, input: Value) -> Result<Value, ApiError>;
}

#[derive(Clone)]
struct EdgeState {
    dynamo_endpoint: Arc<str>,
    http: reqwest::Client,
    step_functions: Arc<dyn JsonService>,
    dynamo_stats: Arc<DynamoStats>,
}

/// The edge router; `routes` carries the other services' (the Lambda REST
/// API, the local issuer). Browsers are refused on every route.
pub fn router(
    dynamo_endpoint: &str,
    step_functions: Arc<dyn JsonService>,
    routes: Router,
) -> Router {
    let state = EdgeState {
        dynamo_endpoint: Arc::from(dynamo_endpoint),
        http: reqwest::Client::new(),
        step_functions,
        dynamo_stats: Arc::new(DynamoStats::default()),
    };
    let json_protocol = Router::new()
        .route("/", axum::routing::post(json_protocol).get(health))
        .route("/health", get(health))
        .route("/_local/dynamodb/stats", get(dynamo_stats))
        .with_state(state);
    json_protocol
        .merge(routes)
        .layer(axum::middleware::from_fn(refuse_browsers))
}

/// The edge answers the developer's tools (the AWS CLI and SDKs, `saga`,
/// the Lambdas), which send no `Origin`. Browsers send it with every
/// cross-origin request and every POST: refusing those keeps a web page the
/// developer happens to open from invoking a function (a `text/plain` POST
/// needs no CORS preflight) to credit a wallet.
async fn refuse_browsers(request: Request<Body>, next: axum::middleware::Next) -> Response<Body> {
    if request.headers().contains_key(axum::http::header::ORIGIN) {
        return json_response(
            StatusCode::FORBIDDEN,
            &json!({"__type": "AccessDeniedException",
                    "message": "the local cloud's edge does not answer browsers (a request with Origin)"}),
        );
    }
    next.run(request).await
}

async fn health() -> Response<Body> {
    json_response(
        StatusCode::OK,
        &json!({"status": "ok", "services": ["dynamodb", "stepfunctions", "lambda"]}),
    )
}

async fn json_protocol(State(state): State<EdgeState>, request: Request<Body>) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let target = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let Ok(body) = to_bytes(body, BODY_BYTES_MAX).await else {
        return error_response(&ApiError {
            status: 413,
            error_type: "RequestEntityTooLarge".into(),
            message: "request body too large".into(),
        });
    };
    if let Some(operation) = target.strip_prefix(DYNAMODB_PREFIX) {
        return forward_to_dynamo(&state, operation, &parts.headers, body.to_vec()).await;
    }
    if let Some(operation) = target.strip_prefix(STEP_FUNCTIONS_PREFIX) {
        let input: Value = if body.is_empty() {
            json!({})
        } else {
            match serde_json::from_slice(&body) {
                Ok(value) => value,
                Err(err) => {
                    return error_response(&ApiError::client(
                        "SerializationException",
                        err.to_string(),
                    ));
                }
            }
        };
        return match state.step_functions.call(operation, input).await {
            Ok(output) => amz_json_response(StatusCode::OK, &output),
            Err(err) => error_response(&err),
        };
    }
    error_response(&ApiError::client(
        "UnknownOperationException",
        format!("X-Amz-Target `{target}` is not served here (DynamoDB and Step Functions are)"),
    ))
}

/// `GET /_local/dynamodb/stats`: requests, errors and capacity units per
/// DynamoDB operation since the start (see [`DynamoStats`]).
async fn dynamo_stats(State(state): State<EdgeState>) -> Response<Body> {
    json_response(
        StatusCode::OK,
        &json!({"operations": state.dynamo_stats.snapshot()}),
    )
}

/// DynamoDB requests go to the embedded engine unchanged, except that they ask
/// for their consumed capacity (counted in [`DynamoStats`]); a client that did
/// not ask for it does not see it.
async fn forward_to_dynamo(
    state: &EdgeState,
    operation: &str,
    headers: &HeaderMap,
    body: Vec<u8>,
) -> Response<Body> {
    let request_body = dynamo_stats::with_capacity_request(operation, body);
    let added_capacity = request_body.added;
    let body = axum::body::Bytes::from(request_body.body);
    let mut request = state.http.post(&*state.dynamo_endpoint).body(body.clone());
    for name in [
        "x-amz-target",
        "content-type",
        "authorization",
        "x-amz-date",
        "amz-sdk-invocation-id",
    ] {
        if let Some(value) = headers.get(name) {
            request = request.header(name, value.as_bytes());
        }
    }
    let reply = match request.send().await {
        Ok(reply) => reply,
        Err(err) => {
            let error = ApiError {
                status: 503,
                error_type: "ServiceUnavailable".into(),
                message: err.to_string(),
            };
            return error_response(&error);
        }
    };
    let status = StatusCode::from_u16(reply.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut forwarded = HeaderMap::new();
    for name in ["content-type", "x-amzn-requestid", "x-amz-crc32"] {
        if let Some(value) = reply
            .headers()
            .get(name)
            .and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok())
        {
            forwarded.insert(name, value);
        }
    }
    let bytes = reply.bytes().await.unwrap_or_default();
    let (capacity, stripped) = if status.is_success() {
        dynamo_stats::take_capacity(&bytes, added_capacity)
    } else {
        (0, None)
    };
    state
        .dynamo_stats
        .record(operation, status.is_success(), &body, &bytes, capacity);
    let bytes = match stripped {
        Some(stripped) => {
            // The engine's checksum was of the body with the capacity in it.
            forwarded.remove("x-amz-crc32");
            axum::body::Bytes::from(stripped)
        }
        None => bytes,
    };
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    *response.headers_mut() = forwarded;
    response
}

fn amz_json_response(status: StatusCode, body: &Value) -> Response<Body> {
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        "content-type",
        HeaderValue::from_static("application/x-amz-json-1.0"),
    );
    if let Ok(id) = HeaderValue::from_str(&ulid::Ulid::new().to_string().to_lowercase()) {
        headers.insert("x-amzn-requestid", id);
    }
    response
}

fn error_response(error: &ApiError) -> Response<Body> {
    let status = StatusCode::from_u16(error.status).unwrap_or(StatusCode::BAD_REQUEST);
    amz_json_response(
        status,
        &json!({"__type": error.error_type, "message": error.message}),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use tower::ServiceExt;

    use super::*;

    struct Echo;

    #[async_trait]
    impl JsonService for Echo {
        async fn call(&self, operation: &str, input: Value) -> Result<Value, ApiError> {
            match operation {
                "DescribeExecution" => Ok(json!({"operation": operation, "input": input})),
                _ => Err(ApiError::client(
                    "UnknownOperationException",
                    operation.to_owned(),
                )),
            }
        }
    }

    fn app() -> Router {
        router("http://127.0.0.1:9", Arc::new(Echo), Router::new())
    }

    async fn call(target: &str, body: &str) -> (StatusCode, Value) {
        let request = Request::post("/")
            .header("x-amz-target", target)
            .header("content-type", "application/x-amz-json-1.0")
            .body(Body::from(body.to_owned()))
            .unwrap();
        let response = app().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn a_browser_request_is_refused_before_any_service() {
        // GIVEN a request with Origin, as a web page sends it
        let request = Request::post("/2015-03-31/functions/api-handler/invocations")
            .header("origin", "https://example.com")
            .header("content-type", "text/plain")
            .body(Body::from("{}"))
            .unwrap();
        // WHEN it reaches the edge THEN it is refused
        let response = app().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        let bytes = to_bytes(response.into_body(), 1 << 20).await.unwrap();
        let body: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(body["__type"], "AccessDeniedException");
        // AND the same without Origin gets through to the services
        let (status, _) = call("AWSStepFunctions.DescribeExecution", "{}").await;
        assert_eq!(status, StatusCode::OK);
    }

    #[tokio::test]
    async fn the_issuer_serves_tools_and_refuses_browsers_too() {
        // GIVEN the edge with the local issuer's routes
        let issuer = crate::issuer::Issuer::generate("http://localhost:4566/local-issuer").unwrap();
        let routes = crate::issuer::routes(Arc::new(issuer), crate::api_client::listing());
        let app = router("http://127.0.0.1:9", Arc::new(Echo), routes);
        let token = |origin: Option<&str>| {
            let mut request = Request::post(crate::issuer::TOKEN_PATH);
            if let Some(origin) = origin {
                request = request.header("origin", origin);
            }
            request.body(Body::from(r#"{"sub":"alice"}"#)).unwrap()
        };
        // WHEN a page asks for a token THEN it is refused
        let response = app
            .clone()
            .oneshot(token(Some("https://example.com")))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        // AND a tool gets one, the JWKS and the clients
        let response = app.clone().oneshot(token(None)).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        for path in [crate::issuer::JWKS_PATH, crate::issuer::CLIENTS_PATH] {
            let response = app
                .clone()
                .oneshot(Request::get(path).body(Body::empty()).unwrap())
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{path}");
        }
        let request = Request::get(crate::issuer::CLIENTS_PATH)
            .header("origin", "https://example.com")
            .body(Body::empty())
            .unwrap();
        let response = app.oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
    }

    #[tokio::test]
    async fn step_functions_operations_are_dispatched_by_target() {
        let (status, body) = call(
            "AWSStepFunctions.DescribeExecution",
            r#"{"executionArn":"x"}"#,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["input"]["executionArn"], "x");
        let (status, body) = call("AWSStepFunctions.Nope", "{}").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["__type"], "UnknownOperationException");
    }

    #[tokio::test]
    async fn unknown_targets_and_bad_json_are_aws_style_errors() {
        let (status, body) = call("Kinesis_20131202.PutRecord", "{}").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["__type"], "UnknownOperationException");
        let (status, body) = call("AWSStepFunctions.DescribeExecution", "{not json").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["__type"], "SerializationException");
    }

    #[tokio::test]
    async fn dynamodb_down_is_a_503() {
        let (status, body) = call("DynamoDB_20120810.ListTables", "{}").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["__type"], "ServiceUnavailable");
    }
}
