//! API Gateway (REST API, Lambda proxy integration) on loopback: each HTTP
//! request that matches a route declared in `template.yml` becomes the proxy
//! event API Gateway would send, the function's proxy response becomes the
//! HTTP response. Routes come from the template only.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use serde_json::{Map, Value, json};

use crate::FunctionInvoker;
use crate::template::FunctionSpec;

/// API Gateway's payload limit for REST APIs.
pub const BODY_BYTES_MAX: usize = 10 * 1024 * 1024;
/// The stage name shown in `requestContext.stage`.
pub const STAGE: &str = "local";

/// One declared route: method, path template split into segments, function.
#[derive(Debug, Clone)]
struct Route {
    method: String,
    template: String,
    segments: Vec<String>,
    function_name: String,
}

#[derive(Clone)]
struct ProxyState {
    routes: Arc<Vec<Route>>,
    invoker: Arc<dyn FunctionInvoker>,
}

/// The router serving every `Api` event of every function.
pub fn router(functions: &[FunctionSpec], invoker: Arc<dyn FunctionInvoker>) -> Router {
    let routes = functions
        .iter()
        .flat_map(|f| {
            f.api_routes.iter().map(|(method, path)| Route {
                method: method.clone(),
                template: path.clone(),
                segments: segments(path),
                function_name: f.function_name.clone(),
            })
        })
        .collect();
    Router::new().fallback(proxy).with_state(ProxyState {
        routes: Arc::new(routes),
        invoker,
    })
}

fn segments(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The route for `method path` and its path parameters. A template segment
/// `{name}` matches any one segment.
fn match_route<'a>(
    routes: &'a [Route],
    method: &str,
    path: &str,
) -> Option<(&'a Route, Map<String, Value>)> {
    let actual = segments(path);
    routes
        .iter()
        .filter(|r| r.method == method || r.method == "ANY")
        .find_map(|route| {
            if route.segments.len() != actual.len() {
                return None;
            }
            let mut parameters = Map::new();
            for (pattern, value) in route.segments.iter().zip(&actual) {
                match pattern.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                    Some(name) => {
                        parameters.insert(name.to_owned(), Value::String(percent_decode(value)));
                    }
                    None if pattern == value => {}
                    None => return None,
                }
            }
            Some((route, parameters))
        })
}

async fn proxy(State(state): State<ProxyState>, request: Request<Body>) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    let Some((route, path_parameters)) = match_route(&state.routes, parts.method.as_str(), &path)
    else {
        // What API Gateway answers for a resource or method the API does not declare.
        return json_response(
            StatusCode::FORBIDDEN,
            &json!({"message": "Missing Authentication Token"}),
        );
    };
    let Ok(body) = to_bytes(body, BODY_BYTES_MAX).await else {
        return json_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            &json!({"message": "Request Too Long"}),
        );
    };
    let request_id = ulid::Ulid::new().to_string().to_lowercase();
    let event = proxy_event(
        route,
        &parts.method,
        &path,
        parts.uri.query(),
        &parts.headers,
        path_parameters,
        &body,
        &request_id,
    );
    match state
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

#[allow(clippy::too_many_arguments)]
fn proxy_event(
    route: &Route,
    method: &Method,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    path_parameters: Map<String, Value>,
    body: &[u8],
    request_id: &str,
) -> Value {
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
    let now = time::OffsetDateTime::now_utc();
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
            "accountId": "000000000000",
            "apiId": "local",
            "resourcePath": route.template,
            "httpMethod": method.as_str(),
            "path": format!("/{STAGE}{path}"),
            "stage": STAGE,
            "requestId": request_id,
            "requestTimeEpoch": now.unix_timestamp() * 1000 + i64::from(now.millisecond()),
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

fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    insert_header(response.headers_mut(), "content-type", "application/json");
    response
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
                ("POST".into(), "/payments".into()),
                ("GET".into(), "/payments/{paymentId}".into()),
                ("GET".into(), "/payments".into()),
            ],
            schedules: Vec::new(),
        }
    }

    fn app(reply: Value) -> (Router, Arc<Recorder>) {
        let recorder = Arc::new(Recorder {
            events: Mutex::new(Vec::new()),
            reply,
        });
        (router(&[spec()], recorder.clone()), recorder)
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
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b+c"), "a b c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
