//! `api-handler`: the public HTTP API (DESIGN §7) behind API Gateway (REST,
//! proxy integration). It validates every request at the edge (exact amounts,
//! strict bodies), creates payments and starts their saga, reads payments and
//! wallets, runs refunds through refund-service and tops wallets up, with
//! `Idempotency-Key` on every POST.
//!
//! Bad input never fails the invocation: every answer, errors included, is a
//! JSON response with `Content-Type: application/json` and `X-Request-Id`.

pub mod aws;
pub mod body;
pub mod config;
pub mod error;
pub mod http;
pub mod idempotency;
pub mod ports;
pub mod principal;
pub mod requests;
pub mod router;
pub mod routes;
pub mod views;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use aws_lambda_events::apigw::{ApiGatewayProxyRequest, ApiGatewayProxyResponse};
use lambda_runtime::LambdaEvent;
use rust_decimal::Decimal;
use shared::ports::{IdempotencyRepo, PaymentEventRepo, PaymentRepo, RefundRepo, WalletRepo};
use tracing::{Instrument, info, warn};

pub use config::Config;
pub use ports::{
    ReconcileTrigger, RefundInvokeError, RefundInvoker, SagaStartError, SagaStarter, WebhookSecret,
};

pub const FUNCTION_NAME: &str = "api-handler";
/// The operator top-up function: the same crate, its own binary and role.
pub const OPERATOR_FUNCTION_NAME: &str = "operator-api";

pub struct Deps {
    pub payments: Arc<dyn PaymentRepo>,
    pub events: Arc<dyn PaymentEventRepo>,
    pub wallets: Arc<dyn WalletRepo>,
    pub refunds: Arc<dyn RefundRepo>,
    pub idempotency: Arc<dyn IdempotencyRepo>,
    pub saga: Arc<dyn SagaStarter>,
    pub refunder: Arc<dyn RefundInvoker>,
    /// Settles the items of a verified gateway webhook.
    pub reconciler: Arc<dyn ReconcileTrigger>,
    /// What gateway webhooks are signed with; `None`: webhooks are refused
    /// (503) until one is configured.
    pub webhook_secret: Option<WebhookSecret>,
    /// Largest payment or top-up amount (`AMOUNT_MAX`).
    pub amount_max: Decimal,
}

/// What operator-api needs: the wallets it credits and its idempotency keys.
pub struct OperatorDeps {
    pub wallets: Arc<dyn WalletRepo>,
    pub idempotency: Arc<dyn IdempotencyRepo>,
    /// Largest top-up amount (`AMOUNT_MAX`).
    pub amount_max: Decimal,
}

/// One API Gateway request to the client API → one response. Infallible by
/// type: a failure of ours is a 5xx JSON response too, never a failed
/// invocation (which API Gateway would turn into a bare 502 without our
/// request id).
pub async fn handle(
    deps: &Deps,
    event: LambdaEvent<ApiGatewayProxyRequest>,
) -> Result<ApiGatewayProxyResponse, Infallible> {
    serve(Surface::Client(deps), event).await
}

/// One request to operator-api (`POST /wallets/{userId}/credit`).
pub async fn handle_operator(
    deps: &OperatorDeps,
    event: LambdaEvent<ApiGatewayProxyRequest>,
) -> Result<ApiGatewayProxyResponse, Infallible> {
    serve(Surface::Operator(deps), event).await
}

/// Which function is serving: the client API or operator-api.
#[derive(Clone, Copy)]
enum Surface<'d> {
    Client(&'d Deps),
    Operator(&'d OperatorDeps),
}

async fn serve(
    surface: Surface<'_>,
    event: LambdaEvent<ApiGatewayProxyRequest>,
) -> Result<ApiGatewayProxyResponse, Infallible> {
    let started = Instant::now();
    let LambdaEvent { payload, context } = event;
    let request = http::Request::from_proxy(&payload, &context.request_id);
    let path_payment_id = router::payment_id_in_path(request.path).unwrap_or("-");
    let function_name = match surface {
        Surface::Client(_) => FUNCTION_NAME,
        Surface::Operator(_) => OPERATOR_FUNCTION_NAME,
    };
    let span = shared::invocation_span!(function_name, context, path_payment_id);
    async move {
        let response = match surface {
            Surface::Client(deps) => routes::dispatch(deps, &request).await,
            Surface::Operator(deps) => routes::dispatch_operator(deps, &request).await,
        };
        access_log(&request, &response, started);
        Ok(response.into_proxy(&request.request_id))
    }
    .instrument(span)
    .await
}

/// The one log line per request. Paths carry ids, never card data; bodies
/// and headers (API keys) are not logged.
fn access_log(request: &http::Request<'_>, response: &http::Response, started: Instant) {
    let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let route = match router::match_route(request.method, request.path) {
        router::Matched::Route { resource, .. }
        | router::Matched::MethodNotAllowed { resource } => resource.template,
        router::Matched::NotFound => "-",
    };
    let correlation_id = response.correlation_id.as_deref().unwrap_or("-");
    let error_code = response.error_code.unwrap_or("-");
    let detail = response.detail.as_deref().unwrap_or("-");
    if response.status >= 500 {
        warn!(method = request.method, route, status = response.status, latency_ms,
            apiRequestId = %request.request_id, correlationId = correlation_id,
            errorCode = error_code, detail, "request failed");
    } else {
        info!(method = request.method, route, status = response.status, latency_ms,
            apiRequestId = %request.request_id, correlationId = correlation_id,
            errorCode = error_code, "request");
    }
}
