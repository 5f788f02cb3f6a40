//! The Docker-free local cloud: the same Lambda binaries, the same ASL file
//! and the same table definitions as AWS (all read from `template.yml`),
//! behind the same protocols — the Lambda Runtime API, the Step Functions and
//! DynamoDB JSON APIs, API Gateway proxy events.

use async_trait::async_trait;
use serde_json::Value;

pub mod api_client;
pub mod apigw;
/// The ASL interpreter (its own crate, shared with the fault simulator).
pub use ::asl;
pub mod cloud;
pub mod dynamo;
pub mod edge;
pub mod issuer;
pub mod lambda;
pub mod schedule;
pub mod sfn;
pub mod template;

/// The local cloud's one IAM principal: the credentials its functions get
/// and the README's AWS CLI examples use, and the only pair the API's
/// `AWS_IAM` routes accept ([`apigw`]).
pub const LOCAL_ACCESS_KEY_ID: &str = "local";
pub const LOCAL_SECRET_ACCESS_KEY: &str = "local";
/// That principal's IAM user name (`arn:aws:iam::<account>:user/local`).
pub const LOCAL_IAM_USER_NAME: &str = "local";

/// A function invocation failed: the function's own `errorType` and message,
/// or the runtime's (`Sandbox.Timedout`, `Runtime.ExitError`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvokeFailure {
    pub error_type: String,
    pub error_message: String,
}

/// Invokes a function by name or ARN, synchronously (RequestResponse).
#[async_trait]
pub trait FunctionInvoker: Send + Sync {
    async fn invoke_function(&self, function: &str, payload: Value)
    -> Result<Value, InvokeFailure>;
}

/// A JSON answer of the local cloud's own HTTP servers (edge, issuer, API Gateway).
pub(crate) fn json_response(
    status: axum::http::StatusCode,
    body: &Value,
) -> axum::http::Response<axum::body::Body> {
    let mut response = axum::http::Response::new(axum::body::Body::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    response
}
