//! The local API Gateway enforces the repository template's authentication:
//! the PrincipalAuthorizer (Lambda REQUEST) with usage plan keys from the
//! authorizer on client routes, SigV4 on the operator's credit route, nothing
//! on the open routes; and its stage method throttles (`MethodSettings`) on
//! every route. Functions are fakes (the authorizer's answer is
//! scripted, every other function records its event); the clock is manual.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_credential_types::Credentials;
use aws_lambda_events::apigw::{
    ApiGatewayCustomAuthorizerRequestTypeRequest, ApiGatewayProxyRequest,
};
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use axum::Router;
use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode};
use local::apigw::{ApiSettings, GatewayClock, router};
use local::template::{Context, Template};
use local::{FunctionInvoker, InvokeFailure, api_client};
use serde_json::{Value, json};
use tower::ServiceExt;

const AUTHORIZER: &str = "local-authorizer";
const API_HANDLER: &str = "local-api-handler";
const OPERATOR_API: &str = "local-operator-api";
const END_USER_KEY: &str = "end-users-local-usage-key";
const HOST: &str = "127.0.0.1:3001";

type Answer = Box<dyn Fn(&Value) -> Result<Value, InvokeFailure> + Send + Sync>;

/// The authorizer answers as scripted; every other function records its
/// event and answers 200.
struct Functions {
    calls: Mutex<Vec<(String, Value)>>,
    authorizer: Answer,
}

#[async_trait]
impl FunctionInvoker for Functions {
    async fn invoke_function(
        &self,
        function: &str,
        payload: Value,
    ) -> Result<Value, InvokeFailure> {
        self.calls
            .lock()
            .unwrap()
            .push((function.to_owned(), payload.clone()));
        if function == AUTHORIZER {
            return (self.authorizer)(&payload);
        }
        Ok(json!({"statusCode": 200, "body": "{\"ok\":true}"}))
    }
}

impl Functions {
    fn calls_of(&self, function: &str) -> Vec<Value> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|(name, _)| name == function)
            .map(|(_, event)| event.clone())
            .collect()
    }
}

/// Wall-clock and monotonic time that move only when told.
struct ManualClock {
    start: SystemTime,
    elapsed_ms: AtomicU64,
}

impl ManualClock {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            start: SystemTime::now(),
            elapsed_ms: AtomicU64::new(0),
        })
    }

    fn advance(&self, duration: Duration) {
        let ms = u64::try_from(duration.as_millis()).unwrap();
        self.elapsed_ms.fetch_add(ms, Ordering::SeqCst);
    }
}

impl GatewayClock for ManualClock {
    fn now(&self) -> SystemTime {
        self.start + Duration::from_millis(self.elapsed_ms.load(Ordering::SeqCst))
    }

    fn monotonic_ms(&self) -> u64 {
        self.elapsed_ms.load(Ordering::SeqCst)
    }
}

fn repo_template(overrides: &[(&str, &str)]) -> Template {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../template.yml");
    let context = Context::default().with_parameters(
        overrides
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned())),
    );
    Template::load(&path, context).unwrap()
}

struct Api {
    app: Router,
    functions: Arc<Functions>,
    clock: Arc<ManualClock>,
}

fn api(overrides: &[(&str, &str)], authorizer: Answer) -> Api {
    let template = repo_template(overrides);
    let functions = Arc::new(Functions {
        calls: Mutex::new(Vec::new()),
        authorizer,
    });
    let clock = ManualClock::new();
    let settings = ApiSettings::from_template(&template)
        .with_usage_keys(api_client::usage_keys(&template).unwrap())
        .with_clock(clock.clone());
    Api {
        app: router(settings, functions.clone()),
        functions,
        clock,
    }
}

/// An Allow of the whole stage, as the authorizer answers, with `key`.
fn allow(key: Option<&str>) -> Answer {
    let key = key.map(str::to_owned);
    Box::new(move |_| {
        Ok(json!({
            "principalId": "user:alice",
            "policyDocument": {"Version": "2012-10-17", "Statement": [{
                "Action": "execute-api:Invoke", "Effect": "Allow",
                "Resource": "arn:aws:execute-api:us-east-1:000000000000:local/dev/*"}]},
            "context": {"principalType": "user", "userId": "alice"},
            "usageIdentifierKey": key,
        }))
    })
}

fn failing(error_type: &str, message: &str) -> Answer {
    let failure = InvokeFailure {
        error_type: error_type.to_owned(),
        error_message: message.to_owned(),
    };
    Box::new(move |_| Err(failure.clone()))
}

async fn send(app: &Router, request: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Value) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = to_bytes(response.into_body(), 1 << 20).await.unwrap();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, headers, body)
}

fn create_payment() -> Request<Body> {
    Request::post("/payments")
        .header("host", HOST)
        .header("content-type", "application/json")
        .header("authorization", "Bearer token")
        .body(Body::from(
            r#"{"userId":"alice","amount":"5","currency":"USD"}"#,
        ))
        .unwrap()
}

#[tokio::test]
async fn an_unauthorized_request_is_a_401_and_the_route_is_not_invoked() {
    // GIVEN an authorizer that refuses (error message exactly "Unauthorized")
    let api = api(&[], failing("Error", "Unauthorized"));
    // WHEN a client route is called
    let (status, headers, body) = send(&api.app, create_payment()).await;
    // THEN API Gateway's 401, and api-handler never ran
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body, json!({"message": "Unauthorized"}));
    assert_eq!(headers["x-amzn-errortype"], "UnauthorizedException");
    assert!(api.functions.calls_of(API_HANDLER).is_empty());
    // AND the authorizer got a REST REQUEST authorizer event for this method
    let events = api.functions.calls_of(AUTHORIZER);
    assert_eq!(events.len(), 1);
    let event = &events[0];
    assert_eq!(event["type"], "REQUEST");
    assert_eq!(
        event["methodArn"],
        "arn:aws:execute-api:us-east-1:000000000000:local/dev/POST/payments"
    );
    assert_eq!(event["headers"]["authorization"], "Bearer token");
    assert_eq!(event["requestContext"]["stage"], "dev");
    assert!(event.get("body").is_none());
    let typed: ApiGatewayCustomAuthorizerRequestTypeRequest =
        serde_json::from_value(event.clone()).unwrap();
    assert_eq!(typed.type_.as_deref(), Some("REQUEST"));
    assert_eq!(typed.resource.as_deref(), Some("/payments"));
    assert_eq!(typed.path.as_deref(), Some("/payments"));
    assert_eq!(typed.headers["authorization"], "Bearer token");
}

#[tokio::test]
async fn an_allowed_request_carries_the_authorizers_principal_and_usage_key() {
    // GIVEN an authorizer that allows alice with the end users' usage key
    let api = api(&[], allow(Some(END_USER_KEY)));
    // WHEN she gets a payment
    let request = Request::get("/payments/pay_1?expand=events")
        .header("host", HOST)
        .header("authorization", "Bearer token")
        .body(Body::empty())
        .unwrap();
    let (status, _, body) = send(&api.app, request).await;
    // THEN api-handler answers
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"ok": true}));
    // AND its event holds the context and principalId (REST v1, flat, strings)
    let events = api.functions.calls_of(API_HANDLER);
    let event = &events[0];
    let authorizer = &event["requestContext"]["authorizer"];
    assert_eq!(authorizer["principalId"], "user:alice");
    assert_eq!(authorizer["principalType"], "user");
    assert_eq!(authorizer["userId"], "alice");
    assert!(authorizer["integrationLatency"].is_u64());
    // AND the usage key API Gateway metered it under
    let identity = &event["requestContext"]["identity"];
    assert_eq!(identity["apiKey"], END_USER_KEY);
    assert_eq!(identity["apiKeyId"], "EndUserUsageKey");
    // AND the authorizer saw the real path in its methodArn
    assert_eq!(
        api.functions.calls_of(AUTHORIZER)[0]["methodArn"],
        "arn:aws:execute-api:us-east-1:000000000000:local/dev/GET/payments/pay_1"
    );
    // AND api-handler's event type reads it all
    let typed: ApiGatewayProxyRequest = serde_json::from_value(event.clone()).unwrap();
    let fields = &typed.request_context.authorizer.fields;
    assert_eq!(fields["userId"], "alice");
    assert_eq!(
        typed.request_context.identity.api_key.as_deref(),
        Some(END_USER_KEY)
    );
    assert_eq!(typed.path_parameters["paymentId"], "pay_1");
}

#[tokio::test]
async fn an_authorizer_failure_is_a_500_and_the_route_is_not_invoked() {
    let malformed: Answer = Box::new(|_| Ok(json!({"principalId": "x"})));
    for answer in [
        failing("Runtime.ExitError", "exit status 101"),
        failing("Sandbox.Timedout", "Task timed out after 5.00 seconds"),
        malformed,
    ] {
        let api = api(&[], answer);
        let (status, headers, body) = send(&api.app, create_payment()).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body, json!({"message": null}));
        assert_eq!(
            headers["x-amzn-errortype"],
            "AuthorizerConfigurationException"
        );
        assert!(api.functions.calls_of(API_HANDLER).is_empty());
    }
}

#[tokio::test]
async fn a_policy_without_this_method_is_a_403() {
    let deny: Answer = Box::new(|_| {
        Ok(
            json!({"principalId": "user:alice", "policyDocument": {"Statement": [
            {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": "*"},
            {"Action": "execute-api:Invoke", "Effect": "Deny",
             "Resource": "arn:aws:execute-api:*:*:local/dev/POST/payments"}]},
            "usageIdentifierKey": END_USER_KEY}),
        )
    });
    let api = api(&[], deny);
    let (status, _, body) = send(&api.app, create_payment()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        body,
        json!({"Message": "User is not authorized to access this resource with an explicit deny"})
    );
    assert!(api.functions.calls_of(API_HANDLER).is_empty());
}

#[tokio::test]
async fn a_usage_key_no_plan_holds_is_a_403() {
    for key in [Some("not-a-key"), None] {
        // GIVEN an authorizer that allows, with an unknown key or none
        let api = api(&[], allow(key));
        // WHEN a client route (ApiKeyRequired) is called THEN 403 Forbidden
        let (status, headers, body) = send(&api.app, create_payment()).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{key:?}");
        assert_eq!(body, json!({"message": "Forbidden"}));
        assert_eq!(headers["x-amzn-errortype"], "ForbiddenException");
        assert!(api.functions.calls_of(API_HANDLER).is_empty());
    }
}

#[tokio::test]
async fn an_exhausted_burst_is_the_templates_429_until_the_rate_refills() {
    // GIVEN the end users' plan at 1/s, burst 2
    let api = api(
        &[("EndUserRateLimit", "1"), ("EndUserBurstLimit", "2")],
        allow(Some(END_USER_KEY)),
    );
    // WHEN three requests come at once THEN two pass
    for _ in 0..2 {
        let (status, _, _) = send(&api.app, create_payment()).await;
        assert_eq!(status, StatusCode::OK);
    }
    // AND the third gets the template's THROTTLED response, unforwarded
    let (status, headers, body) = send(&api.app, create_payment()).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(body, json!({"message": "Too Many Requests"}));
    assert_eq!(api.functions.calls_of(API_HANDLER).len(), 2);
    // WHEN 999 ms pass THEN still throttled; at 1 s one more passes
    api.clock.advance(Duration::from_millis(999));
    assert_eq!(
        send(&api.app, create_payment()).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    api.clock.advance(Duration::from_millis(1));
    assert_eq!(send(&api.app, create_payment()).await.0, StatusCode::OK);
    assert_eq!(api.functions.calls_of(API_HANDLER).len(), 3);
}

#[tokio::test]
async fn each_service_client_has_its_own_bucket_from_the_client_parameters() {
    // GIVEN clients' plans at burst 1; the authorizer names the demo merchant's key
    let api = api(
        &[("ClientRateLimit", "1"), ("ClientBurstLimit", "1")],
        allow(Some(api_client::DEMO_MERCHANT_API_KEY)),
    );
    assert_eq!(send(&api.app, create_payment()).await.0, StatusCode::OK);
    assert_eq!(
        send(&api.app, create_payment()).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    let events = api.functions.calls_of(API_HANDLER);
    assert_eq!(
        events[0]["requestContext"]["identity"]["apiKeyId"],
        "local-key-demo-merchant"
    );
}

/// A request to the credit route, signed with aws-sigv4 as the AWS SDKs sign.
fn signed_credit(
    body: &str,
    secret: &str,
    access_key: &str,
    signed_at: SystemTime,
    session_token: Option<&str>,
) -> Request<Body> {
    let uri = format!("http://{HOST}/wallets/alice/credit?note=top%20up");
    let identity = Credentials::new(
        access_key,
        secret,
        session_token.map(str::to_owned),
        None,
        "test",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("execute-api")
        .time(signed_at)
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let headers = [("host", HOST), ("content-type", "application/json")];
    let signable = SignableRequest::new(
        "POST",
        uri.as_str(),
        headers.into_iter(),
        SignableBody::Bytes(body.as_bytes()),
    )
    .unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    let mut request = Request::post("/wallets/alice/credit?note=top%20up")
        .header("host", HOST)
        .header("content-type", "application/json");
    for (name, value) in instructions.headers() {
        request = request.header(name, value);
    }
    request.body(Body::from(body.to_owned())).unwrap()
}

const CREDIT: &str = r#"{"amount":"100","currency":"USD"}"#;

#[tokio::test]
async fn a_sigv4_signed_credit_passes_with_the_local_iam_identity() {
    let api = api(&[], failing("Error", "the authorizer must not run"));
    let now = api.clock.now();
    for token in [None, Some("session-token")] {
        let request = signed_credit(CREDIT, "local", "local", now, token);
        let (status, _, _) = send(&api.app, request).await;
        assert_eq!(status, StatusCode::OK, "{token:?}");
    }
    let events = api.functions.calls_of(OPERATOR_API);
    assert_eq!(events.len(), 2);
    let identity = &events[0]["requestContext"]["identity"];
    assert_eq!(identity["userArn"], "arn:aws:iam::000000000000:user/local");
    assert_eq!(identity["accessKey"], "local");
    assert_eq!(identity["accountId"], "000000000000");
    assert!(identity["caller"].as_str().is_some_and(|c| !c.is_empty()));
    assert_eq!(events[0]["body"], CREDIT);
    assert!(api.functions.calls_of(AUTHORIZER).is_empty());
    let typed: ApiGatewayProxyRequest = serde_json::from_value(events[0].clone()).unwrap();
    assert_eq!(
        typed.request_context.identity.user_arn.as_deref(),
        Some("arn:aws:iam::000000000000:user/local")
    );
}

#[tokio::test]
async fn an_unsigned_tampered_or_stale_credit_is_a_403() {
    let api = api(&[], failing("Error", "the authorizer must not run"));
    let now = api.clock.now();
    // No signature at all.
    let unsigned = Request::post("/wallets/alice/credit")
        .header("host", HOST)
        .body(Body::from(CREDIT))
        .unwrap();
    let (status, _, body) = send(&api.app, unsigned).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body, json!({"message": "Missing Authentication Token"}));
    // A body other than the one signed.
    let signed = signed_credit(CREDIT, "local", "local", now, None);
    let (parts, _) = signed.into_parts();
    let tampered =
        Request::from_parts(parts, Body::from(r#"{"amount":"100000","currency":"USD"}"#));
    let (status, headers, body) = send(&api.app, tampered).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(headers["x-amzn-errortype"], "InvalidSignatureException");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.starts_with("The request signature we calculated does not match"),
        "{message}"
    );
    // A signature changed in one character.
    let signed = signed_credit(CREDIT, "local", "local", now, None);
    let (mut parts, body_bytes) = signed.into_parts();
    let authorization = parts.headers["authorization"].to_str().unwrap().to_owned();
    let last = authorization.chars().last().unwrap();
    let flipped = format!(
        "{}{}",
        &authorization[..authorization.len() - 1],
        if last == '0' { '1' } else { '0' }
    );
    parts
        .headers
        .insert("authorization", flipped.parse().unwrap());
    let (status, _, body) = send(&api.app, Request::from_parts(parts, body_bytes)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body["message"].as_str().unwrap().contains("does not match"));
    // Signed with another secret, or by another access key.
    let (status, _, body) =
        send(&api.app, signed_credit(CREDIT, "guess", "local", now, None)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body["message"].as_str().unwrap().contains("does not match"));
    let (status, headers, _) = send(
        &api.app,
        signed_credit(CREDIT, "local", "AKIDSTRANGER", now, None),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(headers["x-amzn-errortype"], "UnrecognizedClientException");
    // Signed 6 minutes ago, or 6 minutes ahead.
    let stale = now - Duration::from_secs(360);
    let (status, _, body) = send(
        &api.app,
        signed_credit(CREDIT, "local", "local", stale, None),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("Signature expired"),
        "{body}"
    );
    let ahead = now + Duration::from_secs(360);
    let (status, _, body) = send(
        &api.app,
        signed_credit(CREDIT, "local", "local", ahead, None),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("Signature not yet current"),
        "{body}"
    );
    // 4 minutes old is within the skew API Gateway allows.
    let recent = now - Duration::from_secs(240);
    let (status, _, _) = send(
        &api.app,
        signed_credit(CREDIT, "local", "local", recent, None),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(api.functions.calls_of(OPERATOR_API).len(), 1);
    // A bearer token is no signature.
    let bearer = Request::post("/wallets/alice/credit")
        .header("host", HOST)
        .header("authorization", "Bearer token")
        .body(Body::from(CREDIT))
        .unwrap();
    let (status, headers, _) = send(&api.app, bearer).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(headers["x-amzn-errortype"], "IncompleteSignatureException");
    assert_eq!(api.functions.calls_of(OPERATOR_API).len(), 1);
}

#[tokio::test]
async fn open_routes_pass_untouched() {
    let api = api(&[], failing("Error", "the authorizer must not run"));
    for request in [
        Request::get("/health").body(Body::empty()).unwrap(),
        Request::post("/webhooks/gateway")
            .header("content-type", "application/json")
            .body(Body::from("{}"))
            .unwrap(),
    ] {
        let (status, _, _) = send(&api.app, request).await;
        assert_eq!(status, StatusCode::OK);
    }
    assert!(api.functions.calls_of(AUTHORIZER).is_empty());
    let events = api.functions.calls_of(API_HANDLER);
    assert_eq!(events.len(), 2);
    for event in &events {
        assert!(event["requestContext"].get("authorizer").is_none());
        assert!(event["requestContext"]["identity"].get("apiKey").is_none());
    }
    // Another method of a declared path goes to the path's ANY route (api-handler, no
    // authorizer: it answers 405); an undeclared path is still API Gateway's 403.
    let (status, _, _) = send(
        &api.app,
        Request::delete("/health").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "the fake function answers 200");
    assert!(api.functions.calls_of(AUTHORIZER).is_empty());
    assert_eq!(api.functions.calls_of(API_HANDLER).len(), 3);
    let (status, _, body) = send(
        &api.app,
        Request::get("/nowhere").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body, json!({"message": "Missing Authentication Token"}));
}

/// The repository template's stage method setting for `method` on
/// `resource` (`None`: the `/*` `*` default).
fn method_setting(resource: Option<&str>, method: Option<&str>) -> local::template::Throttle {
    let api = repo_template(&[]).api.unwrap();
    api.method_throttles
        .into_iter()
        .find(|s| s.resource_path.as_deref() == resource && s.http_method.as_deref() == method)
        .unwrap()
        .throttle
}

fn health_check() -> Request<Body> {
    Request::get("/health").body(Body::empty()).unwrap()
}

#[tokio::test]
async fn the_health_methods_burst_is_exhausted_then_429_and_other_routes_are_unaffected() {
    // GIVEN the template's GET /health method setting: 10/s, burst 20
    let health = method_setting(Some("/health"), Some("GET"));
    assert_eq!(health.burst_requests, 20);
    assert_eq!(health.rate_millirequests_per_second, 10_000);
    let api = api(&[], allow(Some(END_USER_KEY)));
    // WHEN its burst is spent at one instant THEN every one of them passed
    for _ in 0..health.burst_requests {
        assert_eq!(send(&api.app, health_check()).await.0, StatusCode::OK);
    }
    // AND the next gets the template's THROTTLED response, and nothing ran
    let (status, headers, body) = send(&api.app, health_check()).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(headers["x-amzn-errortype"], "TooManyRequestsException");
    assert_eq!(body, json!({"message": "Too Many Requests"}));
    let burst = usize::try_from(health.burst_requests).unwrap();
    assert_eq!(api.functions.calls_of(API_HANDLER).len(), burst);
    // AND other routes are not throttled by it: another method of /health (its
    // ANY route), a client route
    let other_method = Request::delete("/health").body(Body::empty()).unwrap();
    assert_eq!(send(&api.app, other_method).await.0, StatusCode::OK);
    assert_eq!(send(&api.app, create_payment()).await.0, StatusCode::OK);
    assert_eq!(api.functions.calls_of(API_HANDLER).len(), burst + 2);
    // WHEN 100 ms pass (one request at 10/s) THEN exactly one more health check
    api.clock.advance(Duration::from_millis(99));
    assert_eq!(
        send(&api.app, health_check()).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    api.clock.advance(Duration::from_millis(1));
    assert_eq!(send(&api.app, health_check()).await.0, StatusCode::OK);
    assert_eq!(
        send(&api.app, health_check()).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn a_route_without_its_own_method_setting_gets_the_stage_default_before_the_authorizer() {
    // GIVEN the template's `/*` `*` default (burst 200) and a usage plan that
    // would allow more, so only the method bucket can refuse
    let default = method_setting(None, None);
    assert_eq!(default.burst_requests, 200);
    let api = api(
        &[("EndUserRateLimit", "1"), ("EndUserBurstLimit", "1000")],
        allow(Some(END_USER_KEY)),
    );
    // WHEN POST /payments (no setting of its own) spends the default's burst
    for _ in 0..default.burst_requests {
        assert_eq!(send(&api.app, create_payment()).await.0, StatusCode::OK);
    }
    // THEN the next is throttled before the authorizer or api-handler runs
    let (status, headers, _) = send(&api.app, create_payment()).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(headers["retry-after"], "1");
    let burst = usize::try_from(default.burst_requests).unwrap();
    assert_eq!(api.functions.calls_of(AUTHORIZER).len(), burst);
    assert_eq!(api.functions.calls_of(API_HANDLER).len(), burst);
    // AND the default is a bucket per method, not one for the stage: GET
    // /payments/{paymentId} still passes
    let get = Request::get("/payments/pay_1")
        .header("host", HOST)
        .header("authorization", "Bearer token")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&api.app, get).await.0, StatusCode::OK);
}
