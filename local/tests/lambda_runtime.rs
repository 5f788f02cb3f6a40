//! The Lambda emulation against a real lambda_runtime function
//! (`examples/echo_lambda.rs`, built into target/debug/examples by
//! `cargo build --examples`, which scripts/test.sh runs first).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use local::lambda::{InvokeError, LambdaConfig, LambdaService, PayloadMatch, invoke_routes};
use local::template::FunctionSpec;
use serde_json::{Value, json};
use tower::ServiceExt;

const FUNCTION: &str = "local-echo";

/// target/debug/examples, next to target/debug/deps where this test runs.
fn examples_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().join("examples");
    assert!(
        dir.join("echo_lambda").is_file(),
        "{}/echo_lambda missing: run `cargo build -p local --examples` (scripts/test.sh does)",
        dir.display()
    );
    dir
}

fn spec(timeout_seconds: u32, environment: &[(&str, &str)]) -> FunctionSpec {
    FunctionSpec {
        logical_id: "EchoFunction".into(),
        function_name: FUNCTION.into(),
        binary: "echo_lambda".into(),
        timeout_seconds,
        memory_mb: 128,
        environment: environment
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        api_routes: Vec::new(),
        schedules: Vec::new(),
    }
}

struct Fixture {
    service: Arc<LambdaService>,
    log_dir: PathBuf,
}

impl Fixture {
    async fn start(spec: FunctionSpec, instance_count_max: u32) -> Self {
        let log_dir = std::env::temp_dir().join(format!("lambda-test-{}", ulid::Ulid::new()));
        let config = LambdaConfig {
            bin_dir: examples_dir(),
            log_dir: log_dir.clone(),
            extra_env: BTreeMap::from([
                ("AWS_REGION".to_owned(), "eu-west-1".to_owned()),
                (
                    "AWS_ENDPOINT_URL".to_owned(),
                    "http://127.0.0.1:1".to_owned(),
                ),
            ]),
            instance_count_max,
        };
        let service = LambdaService::start(&[spec], config).await.unwrap();
        Self { service, log_dir }
    }

    fn stats(&self) -> local::lambda::FunctionStats {
        self.service.stats().into_iter().next().unwrap()
    }

    fn pids(&self) -> Vec<u32> {
        self.stats().instances.iter().map(|i| i.pid).collect()
    }

    async fn stop(self) {
        let pids = self.pids();
        self.service.shutdown().await;
        for pid in pids {
            assert!(!process_exists(pid), "pid {pid} survived shutdown");
        }
        let _ = std::fs::remove_dir_all(&self.log_dir);
    }
}

fn process_exists(pid: u32) -> bool {
    PathBuf::from(format!("/proc/{pid}")).exists()
}

fn function_error(result: Result<Value, InvokeError>) -> (String, String) {
    match result {
        Err(InvokeError::Function {
            error_type,
            error_message,
        }) => (error_type, error_message),
        other => panic!("expected a function error, got {other:?}"),
    }
}

async fn wait_until_busy(fixture: &Fixture) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while fixture.stats().instance_count_busy == 0 || !started(fixture) {
        assert!(Instant::now() < deadline, "no instance became busy");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The busy instance finished init and is running the handler.
fn started(fixture: &Fixture) -> bool {
    fixture
        .stats()
        .instances
        .iter()
        .any(|i| i.busy && i.invocation_count > 0)
}

#[tokio::test]
async fn invoke_returns_the_payload_and_reuses_the_warm_instance() {
    let fixture = Fixture::start(spec(3, &[]), 4).await;
    // WHEN the function is invoked three times in a row
    for n in 0..3 {
        let out = fixture
            .service
            .invoke(FUNCTION, json!({"n": n, "nested": {"a": [1, 2]}}))
            .await
            .unwrap();
        // THEN each call returns its payload
        assert_eq!(out, json!({"n": n, "nested": {"a": [1, 2]}}));
    }
    // AND one instance served them all, after one cold start
    let stats = fixture.stats();
    assert_eq!(stats.cold_start_count, 1);
    assert_eq!(stats.invocation_count, 3);
    assert_eq!(stats.instance_count_alive, 1);
    assert_eq!(stats.instance_count_busy, 0);
    assert_eq!(stats.instances[0].invocation_count, 3);
    // AND the log has the function's START/END/REPORT lines
    let log = std::fs::read_to_string(fixture.log_dir.join("echo_lambda.log")).unwrap();
    assert_eq!(log.matches("START RequestId:").count(), 3, "{log}");
    assert_eq!(log.matches("Init Duration").count(), 1, "{log}");
    fixture.stop().await;
}

#[tokio::test]
async fn the_runtime_gets_lambda_context_and_environment() {
    let fixture = Fixture::start(spec(3, &[("TABLE_NAME", "local-t")]), 2).await;
    let service = &fixture.service;
    // WHEN invoked by ARN
    let arn = "arn:aws:lambda:eu-west-1:000000000000:function:local-echo";
    let context = service.invoke(arn, json!({"context": true})).await.unwrap();
    // THEN the runtime saw Lambda's headers
    assert_eq!(context["functionArn"], arn);
    assert_eq!(context["requestId"].as_str().unwrap().len(), 36);
    let deadline = context["deadlineMs"].as_u64().unwrap();
    let now_ms = u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap();
    assert!(
        deadline > now_ms && deadline <= now_ms + 3_000,
        "{deadline} vs {now_ms}"
    );
    assert!(context["traceId"].as_str().unwrap().starts_with("Root=1-"));
    // AND its environment is Lambda's: template, extras, reserved names
    let env = |name: &'static str| async move {
        let out = service
            .invoke(FUNCTION, json!({"env": name}))
            .await
            .unwrap();
        out["env"].clone()
    };
    assert_eq!(env("TABLE_NAME").await, json!("local-t"));
    assert_eq!(env("AWS_ENDPOINT_URL").await, json!("http://127.0.0.1:1"));
    assert_eq!(env("AWS_LAMBDA_FUNCTION_NAME").await, json!(FUNCTION));
    assert_eq!(env("AWS_LAMBDA_FUNCTION_VERSION").await, json!("$LATEST"));
    assert_eq!(env("AWS_REGION").await, json!("eu-west-1"));
    assert!(
        env("AWS_LAMBDA_RUNTIME_API")
            .await
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );
    // AND nothing of the test process leaks in
    assert_eq!(env("CARGO_MANIFEST_DIR").await, Value::Null);
    assert_eq!(env("HOME").await, Value::Null);
    fixture.stop().await;
}

#[tokio::test]
async fn unknown_functions_and_qualifiers_are_not_found() {
    let fixture = Fixture::start(spec(3, &[]), 1).await;
    for name in [
        "nope",
        "local-echo:7",
        "arn:aws:lambda:eu-west-1:000000000000:function:nope",
    ] {
        match fixture.service.invoke(name, json!({})).await {
            Err(InvokeError::NotFound(message)) => {
                assert!(
                    message.starts_with("Function not found: arn:aws:lambda:"),
                    "{message}"
                );
            }
            other => panic!("{name}: expected NotFound, got {other:?}"),
        }
    }
    fixture.stop().await;
}

#[tokio::test]
async fn a_function_error_carries_its_error_type_and_the_instance_stays_warm() {
    let fixture = Fixture::start(spec(3, &[]), 2).await;
    // WHEN the function returns an error
    let failed = fixture
        .service
        .invoke(
            FUNCTION,
            json!({"error": {"type": "InsufficientFunds", "message": "balance 5 < 10"}}),
        )
        .await;
    // THEN the invocation fails with its errorType and message
    assert_eq!(
        function_error(failed),
        ("InsufficientFunds".to_owned(), "balance 5 < 10".to_owned())
    );
    // AND a panic is a function error too, not a crash
    let (error_type, _) = function_error(
        fixture
            .service
            .invoke(FUNCTION, json!({"panic": "boom"}))
            .await,
    );
    assert!(!error_type.is_empty());
    // AND the same instance serves the next call
    assert_eq!(
        fixture
            .service
            .invoke(FUNCTION, json!({"ok": 1}))
            .await
            .unwrap(),
        json!({"ok": 1})
    );
    let stats = fixture.stats();
    assert_eq!(
        (
            stats.cold_start_count,
            stats.function_error_count,
            stats.crash_count
        ),
        (1, 2, 0)
    );
    fixture.stop().await;
}

#[tokio::test]
async fn concurrent_invocations_start_instances_up_to_the_maximum() {
    let fixture = Fixture::start(spec(3, &[]), 3).await;
    // WHEN five invocations of 400 ms run at once with at most three instances
    let calls = (0..5).map(|n| {
        let service = Arc::clone(&fixture.service);
        tokio::spawn(async move {
            service
                .invoke(FUNCTION, json!({"sleepMs": 400, "n": n}))
                .await
        })
    });
    let results = futures_join(calls.collect()).await;
    // THEN all succeed, three instances started, two invocations waited for one
    for (n, result) in results.into_iter().enumerate() {
        assert_eq!(result.unwrap()["n"], json!(n));
    }
    let stats = fixture.stats();
    assert_eq!(stats.cold_start_count, 3);
    assert_eq!(stats.instance_count_alive, 3);
    assert_eq!(stats.invocation_count, 5);
    fixture.stop().await;
}

#[tokio::test]
async fn beyond_the_maximum_an_invocation_waits_one_timeout_then_is_throttled() {
    let fixture = Fixture::start(spec(1, &[]), 1).await;
    let call = |payload: Value| {
        let service = Arc::clone(&fixture.service);
        tokio::spawn(async move { service.invoke(FUNCTION, payload).await })
    };
    // GIVEN the only instance busy for 900 ms, and another 900 ms call queued behind it
    let busy = call(json!({"sleepMs": 900}));
    wait_until_busy(&fixture).await;
    let queued = call(json!({"sleepMs": 900}));
    tokio::time::sleep(Duration::from_millis(50)).await;
    // WHEN a third call comes, which would have to wait about 1.8 s
    let started = Instant::now();
    let throttled = fixture.service.invoke(FUNCTION, json!({})).await;
    // THEN it waited one timeout (1 s) and got TooManyRequests
    assert!(
        matches!(throttled, Err(InvokeError::TooManyRequests(_))),
        "{throttled:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(900));
    // AND the other two ran, one after the other, on the one instance
    assert!(busy.await.unwrap().is_ok());
    assert!(queued.await.unwrap().is_ok());
    assert_eq!(fixture.stats().cold_start_count, 1);
    fixture.stop().await;
}

#[tokio::test]
async fn a_timeout_kills_the_instance_and_the_next_call_gets_a_new_one() {
    let fixture = Fixture::start(spec(1, &[]), 2).await;
    let first = fixture
        .service
        .invoke(FUNCTION, json!({"context": true}))
        .await
        .unwrap();
    let old_pid = u32::try_from(first["pid"].as_u64().unwrap()).unwrap();
    // WHEN an invocation runs past the 1 s timeout
    let started = Instant::now();
    let (error_type, message) = function_error(
        fixture
            .service
            .invoke(FUNCTION, json!({"sleepMs": 5000}))
            .await,
    );
    // THEN it fails like Lambda, after about a second
    assert_eq!(error_type, "Sandbox.Timedout");
    assert!(
        message.ends_with("Task timed out after 1.00 seconds"),
        "{message}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    // AND the instance is gone
    assert!(!process_exists(old_pid));
    assert_eq!(fixture.stats().instance_count_alive, 0);
    // AND the next call starts a fresh instance and works
    let next = fixture
        .service
        .invoke(FUNCTION, json!({"context": true}))
        .await
        .unwrap();
    assert_ne!(next["pid"], first["pid"]);
    let stats = fixture.stats();
    assert_eq!((stats.timeout_count, stats.cold_start_count), (1, 2));
    fixture.stop().await;
}

#[tokio::test]
async fn a_crash_fails_the_invocation_with_exit_error_and_the_next_call_works() {
    let fixture = Fixture::start(spec(3, &[]), 2).await;
    // WHEN the process exits in the middle of an invocation
    let (error_type, message) =
        function_error(fixture.service.invoke(FUNCTION, json!({"exit": 3})).await);
    // THEN the invocation fails with Runtime.ExitError
    assert_eq!(error_type, "Runtime.ExitError");
    assert!(
        message.ends_with("Runtime exited with error: exit status 3"),
        "{message}"
    );
    // AND the next call gets a new instance
    assert_eq!(
        fixture
            .service
            .invoke(FUNCTION, json!({"a": 1}))
            .await
            .unwrap(),
        json!({"a": 1})
    );
    let stats = fixture.stats();
    assert_eq!(
        (
            stats.crash_count,
            stats.cold_start_count,
            stats.instance_count_alive
        ),
        (1, 2, 1)
    );
    fixture.stop().await;
}

#[tokio::test]
async fn a_busy_instance_can_be_killed_from_outside() {
    let fixture = Fixture::start(spec(3, &[]), 2).await;
    assert_eq!(fixture.service.kill_busy_instance(FUNCTION), None);
    let service = Arc::clone(&fixture.service);
    let call =
        tokio::spawn(async move { service.invoke(FUNCTION, json!({"sleepMs": 2000})).await });
    wait_until_busy(&fixture).await;
    // WHEN the busy instance is killed mid-invocation
    let pid = fixture.service.kill_busy_instance(FUNCTION).unwrap();
    // THEN the invocation fails as a crash, and the process is gone
    let (error_type, message) = function_error(call.await.unwrap());
    assert_eq!(error_type, "Runtime.ExitError");
    assert!(message.ends_with("signal: killed"), "{message}");
    assert!(!process_exists(pid));
    // AND a retry works on a new instance
    let retry = fixture
        .service
        .invoke(FUNCTION, json!({"context": true}))
        .await
        .unwrap();
    assert_ne!(retry["pid"], json!(pid));
    fixture.stop().await;
}

#[tokio::test]
async fn a_failing_init_is_an_init_error_and_is_retried_on_the_next_call() {
    let fixture = Fixture::start(spec(3, &[("ECHO_INIT_FAIL", "1")]), 2).await;
    for _ in 0..2 {
        let (error_type, message) =
            function_error(fixture.service.invoke(FUNCTION, json!({})).await);
        assert_eq!(error_type, "Runtime.InitError");
        assert!(
            message.contains("exited during init with error: exit status 1"),
            "{message}"
        );
    }
    let stats = fixture.stats();
    assert_eq!(
        (
            stats.init_error_count,
            stats.cold_start_count,
            stats.instance_count_alive
        ),
        (2, 2, 0)
    );
    fixture.stop().await;
}

#[tokio::test]
async fn shutdown_kills_every_instance_and_refuses_new_invocations() {
    let fixture = Fixture::start(spec(3, &[]), 3).await;
    fixture.service.prewarm().await.unwrap();
    let service = Arc::clone(&fixture.service);
    let busy =
        tokio::spawn(async move { service.invoke(FUNCTION, json!({"sleepMs": 3000})).await });
    let other = Arc::clone(&fixture.service);
    let warm = tokio::spawn(async move { other.invoke(FUNCTION, json!({"sleepMs": 3000})).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pids = fixture.pids();
    assert_eq!(pids.len(), 2);
    // WHEN the service shuts down with two invocations in flight
    let started = Instant::now();
    fixture.service.shutdown().await;
    // THEN it returns promptly, every process is gone, the calls failed
    assert!(started.elapsed() < Duration::from_secs(2));
    for pid in pids {
        assert!(!process_exists(pid), "pid {pid} survived shutdown");
    }
    assert!(busy.await.unwrap().is_err());
    assert!(warm.await.unwrap().is_err());
    let (error_type, _) = function_error(fixture.service.invoke(FUNCTION, json!({})).await);
    assert_eq!(error_type, "Lambda.ServiceException");
    fixture.stop().await;
}

#[tokio::test]
async fn start_names_a_missing_binary() {
    let mut missing = spec(3, &[]);
    missing.binary = "no-such-function".into();
    let config = LambdaConfig {
        bin_dir: examples_dir(),
        log_dir: std::env::temp_dir().join(format!("lambda-test-{}", ulid::Ulid::new())),
        extra_env: BTreeMap::new(),
        instance_count_max: 8,
    };
    let log_dir = config.log_dir.clone();
    let err = LambdaService::start(&[missing], config)
        .await
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("cargo build -p no-such-function"),
        "{err}"
    );
    let _ = std::fs::remove_dir(log_dir);
}

async fn send(
    router: &axum::Router,
    request: Request<Body>,
) -> (StatusCode, axum::http::HeaderMap, Value) {
    let response = router.clone().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    let value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    (parts.status, parts.headers, value)
}

fn invoke_request(name: &str, body: &str) -> Request<Body> {
    Request::post(format!("/2015-03-31/functions/{name}/invocations"))
        .body(Body::from(body.to_owned()))
        .unwrap()
}

#[tokio::test]
async fn the_invoke_rest_api_speaks_aws() {
    let fixture = Fixture::start(spec(3, &[("TABLE_NAME", "local-t")]), 2).await;
    let router = invoke_routes(Arc::clone(&fixture.service));
    // Invoke: the payload back, with Lambda's headers
    let (status, headers, body) = send(&router, invoke_request(FUNCTION, r#"{"a":1}"#)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"a": 1}));
    assert_eq!(headers["x-amz-executed-version"], "$LATEST");
    assert!(headers.get("x-amz-function-error").is_none());
    // an empty body is {}
    let (_, _, body) = send(&router, invoke_request(FUNCTION, "")).await;
    assert_eq!(body, json!({}));
    // a URL-encoded ARN works
    let arn = "arn%3Aaws%3Alambda%3Aeu-west-1%3A000000000000%3Afunction%3Alocal-echo";
    let (status, _, _) = send(&router, invoke_request(arn, "{}")).await;
    assert_eq!(status, StatusCode::OK);
    // a function error: 200, X-Amz-Function-Error, {errorType, errorMessage}
    let failing = r#"{"error":{"type":"Declined","message":"card declined"}}"#;
    let (status, headers, body) = send(&router, invoke_request(FUNCTION, failing)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["x-amz-function-error"], "Unhandled");
    assert_eq!(
        body,
        json!({"errorType": "Declined", "errorMessage": "card declined"})
    );
    // unknown function: 404 ResourceNotFoundException
    let (status, headers, body) = send(&router, invoke_request("nope", "{}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(headers["x-amzn-errortype"], "ResourceNotFoundException");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("Function not found: arn:aws:lambda:eu-west-1:")
    );
    // invalid JSON: 400 InvalidRequestContentException
    let (status, headers, _) = send(&router, invoke_request(FUNCTION, "{nope")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        headers["x-amzn-errortype"],
        "InvalidRequestContentException"
    );
    // Event invocations are queued (202) for a function that exists, refused
    // for one that does not; DryRun checks the function
    let event = Request::post(format!("/2015-03-31/functions/{FUNCTION}/invocations"))
        .header("X-Amz-Invocation-Type", "Event")
        .body(Body::from("{}"))
        .unwrap();
    assert_eq!(send(&router, event).await.0, StatusCode::ACCEPTED);
    let unknown = Request::post("/2015-03-31/functions/no-such-function/invocations")
        .header("X-Amz-Invocation-Type", "Event")
        .body(Body::from("{}"))
        .unwrap();
    assert_eq!(send(&router, unknown).await.0, StatusCode::NOT_FOUND);
    let dry = Request::post(format!("/2015-03-31/functions/{FUNCTION}/invocations"))
        .header("X-Amz-Invocation-Type", "DryRun")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&router, dry).await.0, StatusCode::NO_CONTENT);
    fixture.stop().await;
}

#[tokio::test]
async fn list_and_get_function_show_the_template_configuration() {
    let fixture = Fixture::start(spec(3, &[("TABLE_NAME", "local-t")]), 2).await;
    let router = invoke_routes(Arc::clone(&fixture.service));
    let list = Request::get("/2015-03-31/functions/")
        .body(Body::empty())
        .unwrap();
    let (status, _, body) = send(&router, list).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["Functions"][0]["FunctionName"], FUNCTION);
    assert_eq!(body["Functions"][0]["Timeout"], 3);
    assert_eq!(
        body["Functions"][0]["Environment"]["Variables"]["TABLE_NAME"],
        "local-t"
    );
    // the local cloud's extras (credentials) are never shown
    assert!(
        body["Functions"][0]["Environment"]["Variables"]
            .get("AWS_ENDPOINT_URL")
            .is_none()
    );
    let get = Request::get(format!("/2015-03-31/functions/{FUNCTION}"))
        .body(Body::empty())
        .unwrap();
    let (status, _, body) = send(&router, get).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body["Configuration"]["FunctionArn"],
        "arn:aws:lambda:eu-west-1:000000000000:function:local-echo"
    );
    fixture.stop().await;
}

#[tokio::test]
async fn the_admin_routes_show_stats_and_kill_a_busy_instance() {
    let fixture = Fixture::start(spec(3, &[]), 2).await;
    let router = local::lambda::admin_routes(Arc::clone(&fixture.service));
    let service = Arc::clone(&fixture.service);
    let call =
        tokio::spawn(async move { service.invoke(FUNCTION, json!({"sleepMs": 2000})).await });
    wait_until_busy(&fixture).await;
    let stats = Request::get("/_local/lambda/stats")
        .body(Body::empty())
        .unwrap();
    let (_, _, body) = send(&router, stats).await;
    assert_eq!(body["functions"][0]["instanceCountBusy"], 1);
    let kill = Request::post(format!(
        "/_local/lambda/functions/{FUNCTION}/kill-busy-instance"
    ))
    .body(Body::empty())
    .unwrap();
    let (status, _, body) = send(&router, kill).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body["pid"].as_u64().is_some());
    assert!(call.await.unwrap().is_err());
    fixture.stop().await;
}

/// Waits (bounded) until an instance holds a result back; returns its pid.
async fn wait_until_result_held(fixture: &Fixture) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(held) = fixture.stats().instances.iter().find(|i| i.result_held) {
            return held.pid;
        }
        assert!(Instant::now() < deadline, "no result was held");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn tag(value: &str) -> PayloadMatch {
    PayloadMatch::fields(serde_json::Map::from_iter([(
        "tag".to_owned(),
        json!(value),
    )]))
}

#[tokio::test]
async fn a_held_result_is_lost_when_the_instance_is_killed_after_its_work() {
    let fixture = Fixture::start(spec(3, &[]), 2).await;
    let marker = fixture.log_dir.join("work-done");
    // GIVEN a hold armed for the next invocation tagged "x"
    fixture
        .service
        .hold_next_result(FUNCTION, tag("x"))
        .unwrap();
    assert!(fixture.stats().result_hold_armed);
    // WHEN another invocation comes first THEN it is not held
    let other = fixture.service.invoke(FUNCTION, json!({"tag": "y"})).await;
    assert_eq!(other.unwrap(), json!({"tag": "y"}));
    assert!(fixture.stats().result_hold_armed);
    // WHEN the tagged invocation runs
    let service = Arc::clone(&fixture.service);
    let payload = json!({"tag": "x", "touch": marker.display().to_string()});
    let call = tokio::spawn(async move { service.invoke(FUNCTION, payload).await });
    // THEN its instance finished the work but holds the result back
    let held_pid = wait_until_result_held(&fixture).await;
    assert!(marker.is_file(), "the function ran to its end");
    assert!(!fixture.stats().result_hold_armed, "one invocation only");
    assert!(!call.is_finished());
    // WHEN that instance is killed THEN the caller sees a crash, not the result
    assert_eq!(fixture.service.kill_busy_instance(FUNCTION), Some(held_pid));
    let (error_type, message) = function_error(call.await.unwrap());
    assert_eq!(error_type, "Runtime.ExitError");
    assert!(message.ends_with("signal: killed"), "{message}");
    assert!(!process_exists(held_pid));
    // AND the same invocation again gets its result from a fresh instance
    let again = fixture.service.invoke(FUNCTION, json!({"tag": "x"})).await;
    assert_eq!(again.unwrap(), json!({"tag": "x"}));
    assert_eq!(fixture.stats().crash_count, 1);
    fixture.stop().await;
}

#[tokio::test]
async fn a_held_result_nobody_kills_ends_in_the_function_timeout() {
    let fixture = Fixture::start(spec(1, &[]), 2).await;
    fixture
        .service
        .hold_next_result(FUNCTION, PayloadMatch::any())
        .unwrap();
    let started = Instant::now();
    let (error_type, _) = function_error(fixture.service.invoke(FUNCTION, json!({})).await);
    assert_eq!(error_type, "Sandbox.Timedout");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(fixture.stats().instance_count_alive, 0);
    fixture.stop().await;
}

#[tokio::test]
async fn the_admin_route_arms_a_result_hold() {
    let fixture = Fixture::start(spec(3, &[]), 2).await;
    let router = local::lambda::admin_routes(Arc::clone(&fixture.service));
    let hold = |name: &str, body: &str| {
        Request::post(format!("/_local/lambda/functions/{name}/hold-next-result"))
            .body(Body::from(body.to_owned()))
            .unwrap()
    };
    let (status, _, body) = send(&router, hold(FUNCTION, r#"{"match":{"tag":"x"}}"#)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["match"], json!({"tag": "x"}));
    assert!(fixture.stats().result_hold_armed);
    let (status, _, _) = send(&router, hold(FUNCTION, r#"{"matches":{}}"#)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, headers, _) = send(&router, hold("nope", "")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(headers["x-amzn-errortype"], "ResourceNotFoundException");
    let (status, _, body) = send(&router, hold(FUNCTION, "")).await;
    assert_eq!((status, &body["match"]), (StatusCode::OK, &json!({})));
    fixture.stop().await;
}

async fn futures_join<T>(handles: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        out.push(handle.await.unwrap());
    }
    out
}
