//! API Gateway (REST API, Lambda proxy integration) on loopback: each HTTP
//! request that matches a route declared in `template.yml` becomes the proxy
//! event API Gateway would send, the function's proxy response becomes the
//! HTTP response. Routes, and how each is authenticated, come from the
//! template only ([`crate::template::ApiRoute`]):
//!
//! - a Lambda REQUEST authorizer route invokes the authorizer function first
//!   ([`authorizer`]); its `principalId` and `context` become
//!   `requestContext.authorizer`;
//! - an `AWS_IAM` route needs a SigV4 signature of the local principal
//!   ([`sigv4`]); its identity becomes `requestContext.identity`. The API's
//!   resource policy (`OperatorRoleArn`) is not evaluated locally: there is one
//!   local principal, and it may call every IAM route;
//! - a route with `ApiKeyRequired` needs a usage plan key (from the
//!   authorizer with `ApiKeySourceType: AUTHORIZER`, else `x-api-key`) that a
//!   plan of this stage holds, and is throttled by that plan ([`throttle`]);
//! - every route is first throttled by the most specific of the stage's
//!   `MethodSettings` for its resource and method (exact over `/*` `*`): one
//!   bucket per route, shared by all clients, taken before the authorizer;
//! - a refusal is API Gateway's own answer, with the template's
//!   `GatewayResponses` ([`response`]); the function is not invoked.
//!
//! Not emulated: the account-level throttle (a stage without method
//! settings is not throttled), authorizer caching (the template asks for
//! none), usage plan quotas.

use crate::json_response;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::State;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use serde_json::{Map, Value, json};

use crate::FunctionInvoker;
use crate::template::{
    ApiKeySource, ApiRoute, FunctionSpec, LOCAL_REST_API_ID, LambdaAuthorizerSpec,
    MethodThrottleSpec, RouteAuth, Template, Throttle, UsageKeySpec,
};

pub mod authorizer;
pub mod response;
pub mod sigv4;
pub mod throttle;

pub use response::{GatewayResponses, Refusal, ResponseType};
pub use throttle::{GatewayClock, SystemGatewayClock, TokenBuckets};

/// API Gateway's payload limit for REST APIs.
pub const BODY_BYTES_MAX: usize = 10 * 1024 * 1024;
/// The stage name when the template declares no `AWS::Serverless::Api`.
pub const STAGE: &str = "local";
/// The header API Gateway reads a key from with `ApiKeySourceType: HEADER`.
pub const API_KEY_HEADER: &str = "x-api-key";
/// The local IAM principal's id (`caller` and `user` of its identity).
pub const LOCAL_PRINCIPAL_ID: &str = "AIDALOCALPRINCIPAL";

/// One declared route: method, path template split into segments, function,
/// authentication.
#[derive(Debug, Clone)]
struct Route {
    method: String,
    template: String,
    segments: Vec<String>,
    function_name: String,
    auth: RouteAuth,
    api_key_required: bool,
    /// The stage's method throttle for this route, if any setting applies.
    method_throttle: Option<Throttle>,
}

/// What the proxy enforces: the routes with their auth, the stage, the usage
/// plan keys, the gateway responses, the clock.
#[derive(Clone)]
pub struct ApiSettings {
    /// (function name, route) for every `Api` event.
    pub routes: Vec<(String, ApiRoute)>,
    pub stage: String,
    pub api_key_source: ApiKeySource,
    pub gateway_responses: GatewayResponses,
    /// Usage plan keys by value: the template's, plus any added
    /// ([`Self::with_usage_keys`], the local service clients).
    pub usage_keys: BTreeMap<String, UsageKeySpec>,
    /// The stage's `MethodSettings` throttles.
    pub method_throttles: Vec<MethodThrottleSpec>,
    pub region: String,
    pub account_id: String,
    pub clock: Arc<dyn GatewayClock>,
}

impl ApiSettings {
    /// Routes of `functions` with no API: open, stage [`STAGE`].
    pub fn open(functions: &[FunctionSpec]) -> Self {
        let context = crate::template::Context::default();
        Self {
            routes: function_routes(functions),
            stage: STAGE.to_owned(),
            api_key_source: ApiKeySource::Header,
            gateway_responses: GatewayResponses::default(),
            usage_keys: BTreeMap::new(),
            method_throttles: Vec::new(),
            region: context.region,
            account_id: context.account_id,
            clock: Arc::new(SystemGatewayClock::default()),
        }
    }

    /// Everything the template says about its API.
    pub fn from_template(template: &Template) -> Self {
        let mut settings = Self::open(&template.functions);
        settings.region = template.context().region.clone();
        settings.account_id = template.context().account_id.clone();
        settings.usage_keys = template.usage_keys.clone();
        if let Some(api) = &template.api {
            settings.stage = api.stage_name.clone();
            settings.api_key_source = api.api_key_source;
            settings.gateway_responses = GatewayResponses::new(api.gateway_responses.clone());
            settings.method_throttles = api.method_throttles.clone();
        }
        settings
    }

    /// These keys too (a key already known keeps its plan).
    pub fn with_usage_keys(
        mut self,
        keys: impl IntoIterator<Item = (String, UsageKeySpec)>,
    ) -> Self {
        for (value, spec) in keys {
            self.usage_keys.entry(value).or_insert(spec);
        }
        self
    }

    pub fn with_clock(mut self, clock: Arc<dyn GatewayClock>) -> Self {
        self.clock = clock;
        self
    }
}

fn function_routes(functions: &[FunctionSpec]) -> Vec<(String, ApiRoute)> {
    functions
        .iter()
        .flat_map(|f| {
            f.api_routes
                .iter()
                .map(|route| (f.function_name.clone(), route.clone()))
        })
        .collect()
}

/// The throttle of the most specific of `settings` for the method `method`
/// of the resource `path`, as API Gateway picks a method's stage settings.
fn method_throttle(settings: &[MethodThrottleSpec], method: &str, path: &str) -> Option<Throttle> {
    settings
        .iter()
        .filter_map(|spec| Some((spec.specificity(method, path)?, spec.throttle)))
        .max_by_key(|(specificity, _)| *specificity)
        .map(|(_, throttle)| throttle)
}

/// The gateway's side of a request: settings, buckets, the invoker.
struct Gateway {
    settings: ApiSettings,
    /// Per (usage plan, key).
    usage_buckets: TokenBuckets,
    /// Per (resource path, method): the stage's method throttles.
    method_buckets: TokenBuckets,
    invoker: Arc<dyn FunctionInvoker>,
}

#[derive(Clone)]
struct ProxyState {
    routes: Arc<Vec<Route>>,
    gateway: Arc<Gateway>,
}

/// The router serving every `Api` event of every function.
pub fn router(settings: ApiSettings, invoker: Arc<dyn FunctionInvoker>) -> Router {
    let routes = settings
        .routes
        .iter()
        .map(|(function_name, route)| Route {
            method: route.method.clone(),
            template: route.path.clone(),
            segments: segments(&route.path),
            function_name: function_name.clone(),
            auth: route.auth.clone(),
            api_key_required: route.api_key_required,
            method_throttle: method_throttle(
                &settings.method_throttles,
                &route.method,
                &route.path,
            ),
        })
        .collect();
    Router::new().fallback(proxy).with_state(ProxyState {
        routes: Arc::new(routes),
        gateway: Arc::new(Gateway {
            settings,
            usage_buckets: TokenBuckets::default(),
            method_buckets: TokenBuckets::default(),
            invoker,
        }),
    })
}

fn segments(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The route for `method path` and its path parameters. A template segment
/// `{name}` matches any one segment. A route of the request's own method
/// wins over an `ANY` route of the same path, as in API Gateway.
fn match_route<'a>(
    routes: &'a [Route],
    method: &str,
    path: &str,
) -> Option<(&'a Route, Map<String, Value>)> {
    let actual = segments(path);
    let matching = |wanted: &str| {
        routes
            .iter()
            .filter(|r| r.method == wanted)
            .find_map(|route| path_parameters(route, &actual).map(|p| (route, p)))
    };
    matching(method).or_else(|| matching("ANY"))
}

/// The path parameters of `actual` under `route`'s template, if it matches.
fn path_parameters(route: &Route, actual: &[String]) -> Option<Map<String, Value>> {
    if route.segments.len() != actual.len() {
        return None;
    }
    let mut parameters = Map::new();
    for (pattern, value) in route.segments.iter().zip(actual) {
        match pattern.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            Some(name) => {
                parameters.insert(name.to_owned(), Value::String(percent_decode(value)));
            }
            None if pattern == value => {}
            None => return None,
        }
    }
    Some(parameters)
}

async fn proxy(State(state): State<ProxyState>, request: Request<Body>) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let gateway = &state.gateway;
    let request_id = ulid::Ulid::new().to_string().to_lowercase();
    let refuse = |refusal: &Refusal| {
        gateway
            .settings
            .gateway_responses
            .render(refusal, &request_id)
    };
    let path = parts.uri.path().to_owned();
    let Some((route, path_parameters)) = match_route(&state.routes, parts.method.as_str(), &path)
    else {
        // What API Gateway answers for a resource or method the API does not declare.
        return refuse(&Refusal::missing_authentication_token());
    };
    // Before the body is read, the authorizer invoked or the key metered.
    if !gateway.admit_method(route) {
        return refuse(&Refusal::throttled());
    }
    let Ok(body) = to_bytes(body, BODY_BYTES_MAX).await else {
        return refuse(&Refusal::request_too_large());
    };
    let mut event = proxy_event(
        &gateway.settings,
        route,
        &parts,
        path_parameters,
        &body,
        &request_id,
    );
    if let Err(refusal) = gateway.admit(route, &parts, &body, &mut event).await {
        return refuse(&refusal);
    }
    match gateway
        .invoker
        .invoke_function(&route.function_name, event)
        .await
    {
        Ok(reply) => proxy_response(&reply, &request_id),
        // API Gateway's answer when the integration fails or returns garbage.
        Err(failure) => {
            eprintln!(
                "apigw: {} {path}: integration failed: {}: {}",
                parts.method, failure.error_type, failure.error_message
            );
            let mut response = json_response(
                StatusCode::BAD_GATEWAY,
                &json!({"message": "Internal server error"}),
            );
            insert_header(response.headers_mut(), "x-amzn-requestid", &request_id);
            response
        }
    }
}

impl Gateway {
    /// Takes a request from the route's method bucket (its resource path
    /// and method, whoever calls); `false` when it is empty.
    fn admit_method(&self, route: &Route) -> bool {
        let Some(throttle) = &route.method_throttle else {
            return true;
        };
        let now_ms = self.settings.clock.monotonic_ms();
        self.method_buckets
            .admit(&route.template, &route.method, throttle, now_ms)
    }

    /// Authenticates the request as the route asks and meters its usage
    /// plan key, writing what API Gateway learnt into the proxy `event`
    /// (`requestContext.authorizer`, `requestContext.identity`).
    async fn admit(
        &self,
        route: &Route,
        parts: &Parts,
        body: &[u8],
        event: &mut Value,
    ) -> Result<(), Refusal> {
        let usage_identifier_key = match &route.auth {
            RouteAuth::None => None,
            RouteAuth::Iam => {
                let access_key = self.verify_signature(parts, body)?;
                let account = &self.settings.account_id;
                let user_arn =
                    format!("arn:aws:iam::{account}:user/{}", crate::LOCAL_IAM_USER_NAME);
                set_identity(event, "accessKey", &access_key);
                set_identity(event, "accountId", account);
                set_identity(event, "caller", LOCAL_PRINCIPAL_ID);
                set_identity(event, "user", LOCAL_PRINCIPAL_ID);
                set_identity(event, "userArn", &user_arn);
                None
            }
            RouteAuth::LambdaAuthorizer(spec) => {
                let (grant, latency_ms) = self.authorize(spec, parts, event).await?;
                let mut authorizer = grant.context;
                authorizer.insert("principalId".to_owned(), Value::String(grant.principal_id));
                authorizer.insert("integrationLatency".to_owned(), json!(latency_ms));
                if let Some(context) = event.get_mut("requestContext") {
                    context["authorizer"] = Value::Object(authorizer);
                }
                grant.usage_identifier_key
            }
        };
        if !route.api_key_required {
            return Ok(());
        }
        let key = match self.settings.api_key_source {
            ApiKeySource::Authorizer => usage_identifier_key,
            ApiKeySource::Header => parts
                .headers
                .get(API_KEY_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        };
        let key = key.ok_or_else(Refusal::invalid_api_key)?;
        let spec = self
            .settings
            .usage_keys
            .get(&key)
            .filter(|spec| {
                spec.enabled && spec.plan.covers(LOCAL_REST_API_ID, &self.settings.stage)
            })
            .ok_or_else(Refusal::invalid_api_key)?;
        if let Some(throttle) = &spec.plan.throttle {
            let now_ms = self.settings.clock.monotonic_ms();
            if !self
                .usage_buckets
                .admit(&spec.plan.logical_id, &key, throttle, now_ms)
            {
                return Err(Refusal::throttled());
            }
        }
        set_identity(event, "apiKey", &key);
        set_identity(event, "apiKeyId", &spec.key_id);
        Ok(())
    }

    fn verify_signature(&self, parts: &Parts, body: &[u8]) -> Result<String, Refusal> {
        let path_and_query = parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.path().to_owned(), |pq| pq.as_str().to_owned());
        let received = sigv4::Received {
            method: parts.method.as_str(),
            path_and_query: &path_and_query,
            headers: &parts.headers,
            body,
        };
        let key = sigv4::SigningKey {
            access_key_id: crate::LOCAL_ACCESS_KEY_ID,
            secret_access_key: crate::LOCAL_SECRET_ACCESS_KEY,
        };
        sigv4::verify(
            &received,
            self.settings.clock.now(),
            &self.settings.region,
            key,
        )
    }

    /// Invokes the authorizer for the request of `event`: its grant and how
    /// long it took (ms).
    async fn authorize(
        &self,
        spec: &LambdaAuthorizerSpec,
        parts: &Parts,
        event: &Value,
    ) -> Result<(authorizer::Grant, u64), Refusal> {
        // API Gateway refuses a request without a declared identity source
        // before invoking anything.
        let query = query_parameters(parts.uri.query()).0;
        let header_missing = spec.identity_headers.iter().any(|name| {
            parts
                .headers
                .get(name.as_str())
                .is_none_or(|value| value.is_empty())
        });
        let query_missing = spec.identity_query_strings.iter().any(|name| {
            query
                .get(name)
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
        });
        if header_missing || query_missing {
            return Err(Refusal::unauthorized());
        }
        let method_arn = self.method_arn(parts);
        let request = authorizer::request_event(event, &method_arn);
        let started_ms = self.settings.clock.monotonic_ms();
        let reply = self
            .invoker
            .invoke_function(&spec.function_name, request)
            .await;
        let latency_ms = self
            .settings
            .clock
            .monotonic_ms()
            .saturating_sub(started_ms);
        Ok((authorizer::interpret(reply, &method_arn)?, latency_ms))
    }

    /// `arn:aws:execute-api:<region>:<account>:<apiId>/<stage>/<METHOD>/<path>`.
    fn method_arn(&self, parts: &Parts) -> String {
        let settings = &self.settings;
        format!(
            "arn:aws:execute-api:{}:{}:{LOCAL_REST_API_ID}/{}/{}/{}",
            settings.region,
            settings.account_id,
            settings.stage,
            parts.method.as_str(),
            parts.uri.path().trim_start_matches('/')
        )
    }
}

fn set_identity(event: &mut Value, field: &str, value: &str) {
    if let Some(identity) = event
        .get_mut("requestContext")
        .and_then(|context| context.get_mut("identity"))
        .and_then(Value::as_object_mut)
    {
        identity.insert(field.to_owned(), Value::String(value.to_owned()));
    }
}

fn proxy_event(
    settings: &ApiSettings,
    route: &Route,
    parts: &Parts,
    path_parameters: Map<String, Value>,
    body: &[u8],
    request_id: &str,
) -> Value {
    let (method, path, query, headers) = (
        &parts.method,
        parts.uri.path(),
        parts.uri.query(),
        &parts.headers,
    );
    let mut single = Map::new();
    let mut multi: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for (name, value) in headers {
        let text = Value::String(String::from_utf8_lossy(value.as_bytes()).into_owned());
        single.insert(name.as_str().to_owned(), text.clone());
        multi
            .entry(name.as_str().to_owned())
            .or_default()
            .push(text);
    }
    let (query_single, query_multi) = query_parameters(query);
    let (body_value, is_base64) = match std::str::from_utf8(body) {
        _ if body.is_empty() => (Value::Null, false),
        Ok(text) => (Value::String(text.to_owned()), false),
        // Binary bodies are not used by this API; pass them as API Gateway would.
        Err(_) => (
            Value::String(String::from_utf8_lossy(body).into_owned()),
            true,
        ),
    };
    let request_time_epoch_ms = settings
        .clock
        .now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or_default();
    let stage = &settings.stage;
    json!({
        "resource": route.template,
        "path": path,
        "httpMethod": method.as_str(),
        "headers": single,
        "multiValueHeaders": multi,
        "queryStringParameters": if query_single.is_empty() { Value::Null } else { Value::Object(query_single) },
        "multiValueQueryStringParameters": if query_multi.is_empty() { Value::Null } else { json!(query_multi) },
        "pathParameters": if path_parameters.is_empty() { Value::Null } else { Value::Object(path_parameters) },
        "stageVariables": Value::Null,
        "requestContext": {
            "accountId": settings.account_id,
            "apiId": LOCAL_REST_API_ID,
            "resourcePath": route.template,
            "httpMethod": method.as_str(),
            "path": format!("/{stage}{path}"),
            "stage": stage,
            "requestId": request_id,
            "requestTimeEpoch": request_time_epoch_ms,
            "protocol": "HTTP/1.1",
            "identity": {"sourceIp": "127.0.0.1", "userAgent": single.get("user-agent").cloned().unwrap_or(Value::Null)},
        },
        "body": body_value,
        "isBase64Encoded": is_base64,
    })
}

fn query_parameters(query: Option<&str>) -> (Map<String, Value>, BTreeMap<String, Vec<String>>) {
    let mut single = Map::new();
    let mut multi: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let (name, value) = (percent_decode(name), percent_decode(value));
        // API Gateway keeps the last value in the single-value map.
        single.insert(name.clone(), Value::String(value.clone()));
        multi.entry(name).or_default().push(value);
    }
    (single, multi)
}

/// Decodes `%XX` escapes and `+` (form encoding) in a query or path segment.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(byte) => {
                        out.push(byte);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            other => {
                out.push(other);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Maps the function's proxy response (`statusCode`, `headers`,
/// `multiValueHeaders`, `body`) to HTTP; anything else is a 502 like API Gateway's.
fn proxy_response(reply: &Value, request_id: &str) -> Response<Body> {
    let status = reply
        .get("statusCode")
        .and_then(Value::as_u64)
        .and_then(|code| u16::try_from(code).ok())
        .and_then(|code| StatusCode::from_u16(code).ok());
    let Some(status) = status else {
        eprintln!("apigw: malformed Lambda proxy response: {reply}");
        return json_response(
            StatusCode::BAD_GATEWAY,
            &json!({"message": "Internal server error"}),
        );
    };
    let body = reply
        .get("body")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    for (name, value) in reply
        .get("headers")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        if let Some(text) = value.as_str() {
            insert_header(headers, name, text);
        }
    }
    for (name, values) in reply
        .get("multiValueHeaders")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        for text in values
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if let (Ok(name), Ok(value)) = (
                HeaderName::try_from(name.as_str()),
                HeaderValue::from_str(text),
            ) {
                headers.append(name, value);
            }
        }
    }
    insert_header(headers, "x-amzn-requestid", request_id);
    response
}

fn insert_header(headers: &mut HeaderMap, name: &str, value: &str) {
    if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::from_str(value)) {
        headers.insert(name, value);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;
    use tower::ServiceExt;

    use super::*;
    use crate::InvokeFailure;

    /// Records the event and answers with a fixed proxy response.
    struct Recorder {
        events: Mutex<Vec<(String, Value)>>,
        reply: Value,
    }

    #[async_trait]
    impl FunctionInvoker for Recorder {
        async fn invoke_function(
            &self,
            function: &str,
            payload: Value,
        ) -> Result<Value, InvokeFailure> {
            self.events
                .lock()
                .unwrap()
                .push((function.to_owned(), payload));
            Ok(self.reply.clone())
        }
    }

    fn spec() -> FunctionSpec {
        FunctionSpec {
            logical_id: "ApiHandlerFunction".into(),
            function_name: "local-api-handler".into(),
            binary: "api-handler".into(),
            timeout_seconds: 20,
            memory_mb: 128,
            environment: BTreeMap::new(),
            api_routes: vec![
                ApiRoute::open("post", "/payments"),
                ApiRoute::open("GET", "/payments/{paymentId}"),
                ApiRoute::open("GET", "/payments"),
            ],
            schedules: Vec::new(),
        }
    }

    fn app(reply: Value) -> (Router, Arc<Recorder>) {
        let recorder = Arc::new(Recorder {
            events: Mutex::new(Vec::new()),
            reply,
        });
        (
            router(ApiSettings::open(&[spec()]), recorder.clone()),
            recorder,
        )
    }

    #[tokio::test]
    async fn a_request_becomes_a_rest_proxy_event() {
        let reply =
            json!({"statusCode": 202, "headers": {"x-request-id": "r1"}, "body": "{\"ok\":true}"});
        let (app, recorder) = app(reply);
        let request = Request::post("/payments?dry=1&tag=a&tag=b%20c")
            .header("content-type", "application/json")
            .body(Body::from(r#"{"amount":50}"#))
            .unwrap();
        let response = app.oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        assert_eq!(response.headers()["x-request-id"], "r1");
        let body = to_bytes(response.into_body(), 1024).await.unwrap();
        assert_eq!(&body[..], br#"{"ok":true}"#);
        let events = recorder.events.lock().unwrap();
        let (function, event) = &events[0];
        assert_eq!(function, "local-api-handler");
        assert_eq!(event["httpMethod"], "POST");
        assert_eq!(event["resource"], "/payments");
        assert_eq!(event["body"], r#"{"amount":50}"#);
        assert_eq!(event["headers"]["content-type"], "application/json");
        assert_eq!(event["queryStringParameters"]["tag"], "b c");
        assert_eq!(
            event["multiValueQueryStringParameters"]["tag"],
            json!(["a", "b c"])
        );
        assert!(
            event["requestContext"]["requestId"]
                .as_str()
                .is_some_and(|id| !id.is_empty())
        );
        assert_eq!(event["pathParameters"], Value::Null);
    }

    #[tokio::test]
    async fn path_parameters_are_extracted() {
        let (app, recorder) = app(json!({"statusCode": 200, "body": "{}"}));
        let request = Request::get("/payments/pay_123")
            .body(Body::empty())
            .unwrap();
        let response = app.oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let events = recorder.events.lock().unwrap();
        assert_eq!(events[0].1["pathParameters"]["paymentId"], "pay_123");
        assert_eq!(events[0].1["resource"], "/payments/{paymentId}");
        assert_eq!(events[0].1["body"], Value::Null);
    }

    #[tokio::test]
    async fn undeclared_routes_get_api_gateways_403() {
        let (app, recorder) = app(json!({"statusCode": 200}));
        let response = app
            .oneshot(Request::delete("/payments").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert!(recorder.events.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_malformed_function_reply_is_a_502() {
        let (app, _) = app(json!({"nope": true}));
        let response = app
            .oneshot(Request::get("/payments").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    }

    #[test]
    fn the_most_specific_method_setting_wins_whatever_its_order() {
        let setting =
            |resource: Option<&str>, method: Option<&str>, burst_requests| MethodThrottleSpec {
                resource_path: resource.map(str::to_owned),
                http_method: method.map(str::to_owned),
                throttle: Throttle {
                    rate_millirequests_per_second: 1_000,
                    burst_requests,
                },
            };
        let burst = |settings: &[MethodThrottleSpec], method, path| {
            method_throttle(settings, method, path).map(|t| t.burst_requests)
        };
        // GIVEN the exact setting first, then the default and the partial ones
        let settings = [
            setting(Some("/health"), Some("GET"), 3),
            setting(None, None, 0),
            setting(None, Some("GET"), 1),
            setting(Some("/health"), None, 2),
        ];
        assert_eq!(burst(&settings, "GET", "/health"), Some(3));
        assert_eq!(burst(&settings, "ANY", "/health"), Some(2));
        assert_eq!(burst(&settings, "GET", "/payments"), Some(1));
        assert_eq!(burst(&settings, "POST", "/payments"), Some(0));
        // AND in reverse order the same
        let mut reversed = settings.clone();
        reversed.reverse();
        assert_eq!(burst(&reversed, "GET", "/health"), Some(3));
        assert_eq!(burst(&reversed, "POST", "/payments"), Some(0));
        // AND without a default, an unnamed method is not throttled
        assert_eq!(burst(&settings[..1], "POST", "/payments"), None);
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b+c"), "a b c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
