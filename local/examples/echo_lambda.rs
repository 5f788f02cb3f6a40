//! A tiny function for the Lambda emulation's tests, speaking the Runtime API
//! through lambda_runtime like the real functions do. Its input picks what
//! it does, in this order (all fields optional):
//!
//! - `"sleepMs": n` — sleep first (to test timeouts, concurrency and kills);
//! - `"touch": path` — create that file (a side effect a test can look for);
//! - `"error": {"type": t, "message": m}` — fail with that errorType;
//! - `"exit": code` — exit the process mid-invocation (a crash);
//! - `"panic": message` — panic in the handler;
//! - `"env": "NAME"` — answer `{"env": value-or-null}`;
//! - `"context": true` — answer the invocation context and the pid;
//! - otherwise echo the input back.
//!
//! With `ECHO_INIT_FAIL` set, it fails before polling for its first event.

use std::time::Duration;

use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use serde_json::{Value, json};

async fn handle(event: LambdaEvent<Value>) -> Result<Value, Diagnostic> {
    let (input, context) = event.into_parts();
    if let Some(sleep_ms) = input.get("sleepMs").and_then(Value::as_u64) {
        tokio::time::sleep(Duration::from_millis(sleep_ms)).await;
    }
    if let Some(path) = input.get("touch").and_then(Value::as_str) {
        std::fs::write(path, context.request_id.as_bytes())?;
    }
    if let Some(error) = input.get("error") {
        let text = |field: &str| error.get(field).and_then(Value::as_str).unwrap_or_default();
        return Err(Diagnostic {
            error_type: text("type").to_owned(),
            error_message: text("message").to_owned(),
        });
    }
    if let Some(code) = input.get("exit").and_then(Value::as_i64) {
        std::process::exit(i32::try_from(code).unwrap_or(1));
    }
    if let Some(message) = input.get("panic").and_then(Value::as_str) {
        #[allow(clippy::panic)] // on purpose: tests a panicking handler
        {
            panic!("{message}");
        }
    }
    if let Some(name) = input.get("env").and_then(Value::as_str) {
        return Ok(json!({"env": std::env::var(name).ok()}));
    }
    if input.get("context").is_some() {
        return Ok(json!({
            "requestId": context.request_id,
            "deadlineMs": context.deadline,
            "functionArn": context.invoked_function_arn,
            "traceId": context.xray_trace_id,
            "pid": std::process::id(),
        }));
    }
    Ok(input)
}

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    if std::env::var_os("ECHO_INIT_FAIL").is_some() {
        return Err("init failed on purpose (ECHO_INIT_FAIL)".into());
    }
    lambda_runtime::run(service_fn(handle)).await
}
