//! One module per resource; each operation validates its input, does one
//! thing through the ports and renders the answer.

pub mod payments;
pub mod refunds;
pub mod wallets;
pub mod webhooks;

use serde_json::json;

use crate::Deps;
use crate::body::JsonObject;
use crate::error::{ApiError, Code};
use crate::http::{BODY_BYTES_MAX, Request, Response};
use crate::router::{self, Matched, Route};

/// Routes a request and runs its operation. Never fails: every problem is a
/// JSON error response.
pub async fn dispatch(deps: &Deps, request: &Request<'_>) -> Response {
    match router::match_route(request.method, request.path) {
        Matched::NotFound => Response::error(ApiError::new(
            Code::RouteNotFound,
            format!("no route {} {}", request.method, request.path),
        )),
        Matched::MethodNotAllowed { resource } => {
            let allow = resource.methods.join(", ");
            let message = format!("{} allows {allow}", resource.template);
            Response::error(ApiError::new(Code::MethodNotAllowed, message))
                .with_header("allow", allow)
        }
        Matched::Route { route, .. } => match run(deps, request, route).await {
            Ok(response) => response,
            Err(err) => Response::error(err),
        },
    }
}

async fn run(deps: &Deps, request: &Request<'_>, route: Route<'_>) -> Result<Response, ApiError> {
    check_query(request, &route)?;
    match route {
        Route::Health => Ok(Response::json(200, &json!({"status": "ok"}))),
        Route::CreatePayment => payments::create(deps, request, &read_body(request)?).await,
        Route::ListPayments => payments::list(deps, request.query).await,
        Route::GetPayment { payment_id } => payments::get(deps, payment_id).await,
        Route::CreateRefund { payment_id } => {
            refunds::create(deps, request, payment_id, &read_body(request)?).await
        }
        Route::GetWallet { user_id } => wallets::get(deps, user_id).await,
        Route::CreditWallet { user_id } => {
            wallets::credit(deps, request, user_id, &read_body(request)?).await
        }
        Route::GatewayWebhook => webhooks::receive(deps, request).await,
    }
}

/// Unknown query parameters are refused like unknown body fields.
fn check_query(request: &Request<'_>, route: &Route<'_>) -> Result<(), ApiError> {
    let Some(allowed) = route.query_params() else {
        return Ok(());
    };
    match request
        .query
        .iter()
        .find(|(name, _)| !allowed.contains(name))
    {
        None => Ok(()),
        Some((name, _)) => Err(ApiError::new(
            Code::UnknownField,
            format!("unknown query parameter `{name}`"),
        )
        .with_param(name)),
    }
}

/// The body as a JSON object: bounded in size, declared as JSON when present.
fn read_body(request: &Request<'_>) -> Result<JsonObject, ApiError> {
    let body = request.body.unwrap_or_default();
    if body.len() > BODY_BYTES_MAX {
        return Err(ApiError::new(
            Code::RequestTooLarge,
            format!("the request body must be at most {BODY_BYTES_MAX} bytes"),
        ));
    }
    if body.trim().is_empty() {
        return Ok(JsonObject::default());
    }
    let content_type = request.header("content-type").unwrap_or_default();
    let media_type = content_type.split(';').next().unwrap_or_default().trim();
    if request.body_base64 || !media_type.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::new(
            Code::UnsupportedMediaType,
            "send the body as JSON text with Content-Type: application/json",
        ));
    }
    JsonObject::parse(body)
}
