//! One module per resource; each operation validates its input, does one
//! thing through the ports and renders the answer.

pub mod payments;
pub mod refunds;
pub mod wallets;
pub mod webhooks;

use serde_json::json;

use crate::body::JsonObject;
use crate::error::{ApiError, Code};
use crate::http::{BODY_BYTES_MAX, Request, Response};
use crate::principal::{Principal, Scope};
use crate::router::{self, Matched, Route};
use crate::{Deps, OperatorDeps};

/// Routes a request to the client API and runs its operation. Never fails:
/// every problem is a JSON error response.
pub async fn dispatch(deps: &Deps, request: &Request<'_>) -> Response {
    match router::match_route(request.method, request.path) {
        Matched::Route { route, .. } => respond(run(deps, request, route).await),
        other => unmatched(request, &other),
    }
}

/// Routes a request to operator-api, which serves the top-up alone.
pub async fn dispatch_operator(deps: &OperatorDeps, request: &Request<'_>) -> Response {
    match router::match_route(request.method, request.path) {
        Matched::Route {
            route: Route::CreditWallet { user_id },
            ..
        } => respond(run_operator(deps, request, user_id).await),
        Matched::Route { .. } => not_served(request),
        other => unmatched(request, &other),
    }
}

fn respond(result: Result<Response, ApiError>) -> Response {
    result.unwrap_or_else(Response::error)
}

fn unmatched(request: &Request<'_>, matched: &Matched<'_>) -> Response {
    match matched {
        Matched::MethodNotAllowed { resource } => {
            let allow = resource.methods.join(", ");
            let message = format!("{} allows {allow}", resource.template);
            Response::error(ApiError::new(Code::MethodNotAllowed, message))
                .with_header("allow", allow)
        }
        Matched::NotFound | Matched::Route { .. } => not_served(request),
    }
}

fn not_served(request: &Request<'_>) -> Response {
    Response::error(ApiError::new(
        Code::RouteNotFound,
        format!("no route {} {}", request.method, request.path),
    ))
}

async fn run(deps: &Deps, request: &Request<'_>, route: Route<'_>) -> Result<Response, ApiError> {
    check_query(request, &route)?;
    match route {
        Route::Health => Ok(Response::json(200, &json!({"status": "ok"}))),
        Route::GatewayWebhook => webhooks::receive(deps, request).await,
        Route::CreatePayment => {
            let principal = client(request, Scope::PaymentsWrite)?;
            payments::create(deps, request, principal, &read_body(request)?).await
        }
        Route::ListPayments => {
            let principal = client(request, Scope::PaymentsRead)?;
            payments::list(deps, principal, request.query).await
        }
        Route::GetPayment { payment_id } => {
            let principal = client(request, Scope::PaymentsRead)?;
            payments::get(deps, principal, payment_id).await
        }
        Route::CreateRefund { payment_id } => {
            let principal = client(request, Scope::RefundsWrite)?;
            refunds::create(deps, request, principal, payment_id, &read_body(request)?).await
        }
        Route::GetWallet { user_id } => {
            let principal = client(request, Scope::WalletsRead)?;
            wallets::get(deps, principal, user_id).await
        }
        // operator-api's, behind IAM auth: never this function's.
        Route::CreditWallet { .. } => Ok(not_served(request)),
    }
}

/// The principal of a client route, allowed `scope` (401 without one).
fn client<'r>(request: &'r Request<'_>, scope: Scope) -> Result<&'r Principal, ApiError> {
    let principal = request.principal()?;
    principal.require(scope)?;
    Ok(principal)
}

async fn run_operator(
    deps: &OperatorDeps,
    request: &Request<'_>,
    user_id: &str,
) -> Result<Response, ApiError> {
    check_query(request, &Route::CreditWallet { user_id })?;
    match request.principal()? {
        Principal::Operator { .. } => {}
        Principal::User(_) | Principal::Client { .. } => {
            return Err(ApiError::new(
                Code::Forbidden,
                "top-ups are for operators (SigV4-signed IAM requests) only",
            ));
        }
    }
    wallets::credit(deps, request, user_id, &read_body(request)?).await
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
