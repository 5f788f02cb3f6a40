//! The Lambda service, locally: every function of `template.yml` runs as child
//! processes of its real binary, speaking the Lambda Runtime API
//! (`/2018-06-01/runtime/...`) served here on loopback, the way Lambda runs a
//! custom runtime (`provided.al2023`). What AWS does and this module copies:
//!
//! - an instance (execution environment) handles one invocation at a time;
//!   warm instances are reused, more start for concurrent invocations, up to
//!   `instance_count_max` per function; beyond that an invocation waits for an
//!   idle instance (at most one function timeout), else `TooManyRequests`;
//! - nothing starts before the first invocation (the first call of a function
//!   is a cold start, as on AWS); [`LambdaService::prewarm`] starts one
//!   instance per function on demand, e.g. before a benchmark;
//! - a function error is the `errorType`/`errorMessage` the runtime posted;
//!   an invocation over `timeout_seconds` kills the instance and fails with
//!   `Sandbox.Timedout`; a process that exits during an invocation fails it
//!   with `Runtime.ExitError`; a process that exits (or posts
//!   `/runtime/init/error`) before its first `/next` fails with
//!   `Runtime.InitError` (or the posted type); a broken instance is never
//!   reused, the next invocation starts a fresh one;
//! - each instance gets only the environment Lambda would give it (template
//!   variables, the local endpoints, the reserved `AWS_LAMBDA_*` ones), built
//!   from scratch so nothing from the developer's shell can point it at real
//!   AWS; its stdout and stderr, plus Lambda's `START`/`END`/`REPORT` lines,
//!   go to `log_dir/<binary>.log`.
//!
//! Fault injection, local only (also on the edge: see [`admin_routes`]):
//! [`LambdaService::kill_busy_instance`] SIGKILLs an instance mid-invocation,
//! and [`LambdaService::hold_next_result`] makes the next matching invocation
//! run to its end but keeps its result from the caller, so that a kill lands
//! deterministically after the function's writes and before its reply: the
//! lost reply that Step Functions answers with a retry.
//!
//! Not emulated: memory limits (`AWS_LAMBDA_FUNCTION_MEMORY_SIZE` is only
//! reported), versions and aliases other than `$LATEST`, asynchronous
//! (`Event`) invocations, response streaming, idle-instance reclaiming.

mod function;
mod id;
mod instance;
mod invoke_api;
mod log;
mod runtime_api;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;
use serde_json::Value;

use crate::template::FunctionSpec;
use function::Function;

pub use invoke_api::{admin_routes, invoke_routes};

/// Instances per function when the caller has no opinion.
pub const INSTANCE_COUNT_MAX_DEFAULT: u32 = 8;
/// Hard cap on `instance_count_max`: each instance is a process and a port.
pub const INSTANCE_COUNT_LIMIT: u32 = 64;
/// Lambda's cap on a synchronous request or response payload (6 MB).
pub const PAYLOAD_BYTES_MAX: usize = 6 * 1024 * 1024;
/// The account every local ARN names (the template reader's default too).
pub const ACCOUNT_ID: &str = "000000000000";
/// The region when `extra_env` does not set `AWS_REGION`.
pub const REGION_DEFAULT: &str = "us-east-1";

#[derive(Debug, Clone)]
pub struct LambdaConfig {
    /// Where the function binaries are, e.g. `target/debug`.
    pub bin_dir: PathBuf,
    /// `.local/logs`: one `<binary>.log` per function (created if missing).
    pub log_dir: PathBuf,
    /// Added to every function's environment after the template's variables:
    /// `AWS_ENDPOINT_URL`, `GATEWAY_URL`, `AWS_REGION`, credentials, ...
    pub extra_env: BTreeMap<String, String>,
    /// Instances per function at most (1..=[`INSTANCE_COUNT_LIMIT`]).
    pub instance_count_max: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum LambdaError {
    #[error(
        "function {function}: binary {} not found; build it with `cargo build -p {binary}`",
        path.display()
    )]
    BinaryMissing {
        function: String,
        binary: String,
        path: PathBuf,
    },
    #[error("cannot create the log directory {}: {source}", path.display())]
    LogDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("function name {0} is declared twice")]
    DuplicateFunction(String),
    #[error("instance_count_max must be between 1 and {INSTANCE_COUNT_LIMIT}, not {0}")]
    InstanceCountMax(u32),
    #[error(
        "function {function}: timeout_seconds must be between 1 and 900, not {timeout_seconds}"
    )]
    Timeout {
        function: String,
        timeout_seconds: u32,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvokeError {
    /// The function returned an error, or its instance failed the way Lambda
    /// reports it (`Sandbox.Timedout`, `Runtime.ExitError`, `Runtime.InitError`,
    /// `Lambda.ServiceException` while the service shuts down).
    #[error("{error_type}: {error_message}")]
    Function {
        error_type: String,
        error_message: String,
    },
    /// No such function (the message names its ARN, like AWS).
    #[error("{0}")]
    NotFound(String),
    /// Every instance stayed busy for as long as an invocation may wait.
    #[error("{0}")]
    TooManyRequests(String),
}

impl InvokeError {
    fn function(error_type: &str, error_message: impl Into<String>) -> Self {
        Self::Function {
            error_type: error_type.to_owned(),
            error_message: error_message.into(),
        }
    }
}

/// Which invocation a fault applies to: one whose payload is a JSON object
/// with each of these top-level fields equal to the given value; no field
/// matches every invocation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PayloadMatch(serde_json::Map<String, Value>);

impl PayloadMatch {
    pub fn any() -> Self {
        Self::default()
    }

    pub fn fields(fields: serde_json::Map<String, Value>) -> Self {
        Self(fields)
    }

    fn matches(&self, payload: &[u8]) -> bool {
        if self.0.is_empty() {
            return true;
        }
        match serde_json::from_slice::<Value>(payload) {
            Ok(Value::Object(payload)) => self
                .0
                .iter()
                .all(|(field, value)| payload.get(field) == Some(value)),
            _ => false,
        }
    }
}

/// One instance of a function, for tests and `make status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceStats {
    pub pid: u32,
    pub busy: bool,
    pub invocation_count: u64,
    pub log_stream: String,
    /// Its runtime posted a result that is held back
    /// ([`LambdaService::hold_next_result`]); only a kill or the timeout ends it.
    pub result_held: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionStats {
    pub function_name: String,
    pub binary: String,
    pub instance_count_alive: u32,
    pub instance_count_busy: u32,
    pub invocation_count: u64,
    pub cold_start_count: u64,
    /// Errors the function itself reported (`/invocation/{id}/error`).
    pub function_error_count: u64,
    /// Instances that exited during an invocation.
    pub crash_count: u64,
    pub timeout_count: u64,
    pub init_error_count: u64,
    /// A result hold is armed and waits for its invocation.
    pub result_hold_armed: bool,
    /// The live instances; their pids let a test kill one from outside.
    pub instances: Vec<InstanceStats>,
}

pub struct LambdaService {
    /// By function name (the physical name, e.g. `local-wallet-service`).
    functions: BTreeMap<String, Arc<Function>>,
    region: String,
    shutting_down: Arc<AtomicBool>,
}

impl LambdaService {
    /// Checks every binary exists and the log directory can be created.
    /// Starts no process: each function's first invocation is a cold start.
    pub async fn start(
        functions: &[FunctionSpec],
        config: LambdaConfig,
    ) -> Result<Arc<Self>, LambdaError> {
        if !(1..=INSTANCE_COUNT_LIMIT).contains(&config.instance_count_max) {
            return Err(LambdaError::InstanceCountMax(config.instance_count_max));
        }
        std::fs::create_dir_all(&config.log_dir).map_err(|source| LambdaError::LogDir {
            path: config.log_dir.clone(),
            source,
        })?;
        let region = config
            .extra_env
            .get("AWS_REGION")
            .cloned()
            .unwrap_or_else(|| REGION_DEFAULT.to_owned());
        let shutting_down = Arc::new(AtomicBool::new(false));
        let mut by_name = BTreeMap::new();
        for spec in functions {
            check_spec(spec, &config)?;
            let arn = function_arn(&region, &spec.function_name);
            let function = Function::new(spec, arn, &config, &region, &shutting_down);
            if by_name
                .insert(spec.function_name.clone(), Arc::new(function))
                .is_some()
            {
                return Err(LambdaError::DuplicateFunction(spec.function_name.clone()));
            }
        }
        Ok(Arc::new(Self {
            functions: by_name,
            region,
            shutting_down,
        }))
    }

    /// Invokes synchronously (RequestResponse), like `lambda:Invoke`.
    /// `function` is a name, `name:$LATEST`, or a full or partial ARN.
    pub async fn invoke(&self, function: &str, payload: Value) -> Result<Value, InvokeError> {
        self.invoke_with_request_id(function, payload).await.1
    }

    /// [`Self::invoke`], also returning the request id given to the function.
    pub async fn invoke_with_request_id(
        &self,
        function: &str,
        payload: Value,
    ) -> (String, Result<Value, InvokeError>) {
        let request_id = id::request_id();
        let result = match self.resolve(function) {
            Ok(function) => {
                let bytes = payload.to_string().into_bytes();
                Arc::clone(function)
                    .invoke_detached(request_id.clone(), bytes.into())
                    .await
                    .map(|body| response_value(&body))
            }
            Err(err) => Err(err),
        };
        (request_id, result)
    }

    pub fn stats(&self) -> Vec<FunctionStats> {
        self.functions.values().map(|f| f.stats()).collect()
    }

    /// Kills (SIGKILL) one instance of `function` that is running an
    /// invocation, as a crash would; returns its pid, or `None` when no
    /// instance is busy. The invocation fails with `Runtime.ExitError`.
    pub fn kill_busy_instance(&self, function: &str) -> Option<u32> {
        self.resolve(function).ok()?.kill_busy_instance()
    }

    /// Arms a fault: the next invocation of `function` whose payload matches
    /// runs to its end, but its result (response or error) is held back, so
    /// that its instance shows `result_held` and stays busy until it is
    /// killed ([`Self::kill_busy_instance`]: `Runtime.ExitError`) or times
    /// out (`Sandbox.Timedout`). One invocation only; arming again replaces a
    /// hold not yet taken.
    pub fn hold_next_result(
        &self,
        function: &str,
        matching: PayloadMatch,
    ) -> Result<(), InvokeError> {
        self.resolve(function)?.hold_next_result(matching);
        Ok(())
    }

    /// Starts one instance of every function that has none, and waits until
    /// each has initialised (bounded by the init phase limit).
    pub async fn prewarm(&self) -> Result<(), InvokeError> {
        for function in self.functions.values() {
            Arc::clone(function).prewarm().await?;
        }
        Ok(())
    }

    /// Kills every instance and waits until each process is reaped; later
    /// invocations fail with `Lambda.ServiceException`.
    pub async fn shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        for function in self.functions.values() {
            function.shutdown().await;
        }
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    fn functions(&self) -> impl Iterator<Item = &Arc<Function>> {
        self.functions.values()
    }

    fn resolve(&self, function: &str) -> Result<&Arc<Function>, InvokeError> {
        let not_found = || {
            let arn = if function.starts_with("arn:") {
                function.to_owned()
            } else {
                function_arn(&self.region, function)
            };
            InvokeError::NotFound(format!("Function not found: {arn}"))
        };
        let name = function_name_of(function).ok_or_else(not_found)?;
        self.functions.get(name).ok_or_else(not_found)
    }
}

fn check_spec(spec: &FunctionSpec, config: &LambdaConfig) -> Result<(), LambdaError> {
    let path = config.bin_dir.join(&spec.binary);
    if !path.is_file() {
        return Err(LambdaError::BinaryMissing {
            function: spec.function_name.clone(),
            binary: spec.binary.clone(),
            path,
        });
    }
    // Lambda's own bounds; they also bound every wait on an invocation.
    if !(1..=900).contains(&spec.timeout_seconds) {
        return Err(LambdaError::Timeout {
            function: spec.function_name.clone(),
            timeout_seconds: spec.timeout_seconds,
        });
    }
    Ok(())
}

pub fn function_arn(region: &str, function_name: &str) -> String {
    format!("arn:aws:lambda:{region}:{ACCOUNT_ID}:function:{function_name}")
}

/// The function name in what Invoke accepts as `FunctionName`: `name`,
/// `name:$LATEST`, `123456789012:function:name[:$LATEST]` or
/// `arn:aws:lambda:region:account:function:name[:$LATEST]`. Any other
/// qualifier names a version or alias that does not exist locally.
fn function_name_of(function: &str) -> Option<&str> {
    let parts: Vec<&str> = function.split(':').collect();
    let (name, qualifier) = match parts.as_slice() {
        [name] => (*name, None),
        [name, qualifier] => (*name, Some(*qualifier)),
        [_, "function", name] => (*name, None),
        [_, "function", name, qualifier] => (*name, Some(*qualifier)),
        ["arn", _, "lambda", _, _, "function", name] => (*name, None),
        ["arn", _, "lambda", _, _, "function", name, qualifier] => (*name, Some(*qualifier)),
        _ => return None,
    };
    match qualifier {
        None | Some("$LATEST") if !name.is_empty() => Some(name),
        _ => None,
    }
}

/// A runtime posts bytes; lambda_runtime always posts JSON. Anything else is
/// kept as a string rather than lost.
fn response_value(body: &[u8]) -> Value {
    if body.is_empty() {
        return Value::Null;
    }
    serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_names_resolve_from_names_and_arns() {
        // GIVEN every form Invoke accepts, WHEN parsed, THEN the name comes out
        assert_eq!(function_name_of("echo"), Some("echo"));
        assert_eq!(function_name_of("echo:$LATEST"), Some("echo"));
        assert_eq!(function_name_of("000000000000:function:echo"), Some("echo"));
        assert_eq!(
            function_name_of("arn:aws:lambda:us-east-1:000000000000:function:echo"),
            Some("echo")
        );
        assert_eq!(
            function_name_of("arn:aws:lambda:eu-west-1:1:function:echo:$LATEST"),
            Some("echo")
        );
        // AND versions, aliases and malformed names resolve to nothing
        assert_eq!(function_name_of("echo:3"), None);
        assert_eq!(
            function_name_of("arn:aws:lambda:r:1:function:echo:live"),
            None
        );
        assert_eq!(function_name_of("arn:aws:s3:::bucket"), None);
        assert_eq!(function_name_of(""), None);
    }

    #[test]
    fn payload_matches_compare_top_level_fields() {
        // GIVEN a match on two fields
        let matching = PayloadMatch::fields(serde_json::Map::from_iter([
            ("action".to_owned(), Value::from("DEBIT")),
            ("userId".to_owned(), Value::from("u1")),
        ]));
        // THEN only payloads with both values match, whatever else they hold
        assert!(matching.matches(br#"{"action":"DEBIT","userId":"u1","amount":{}}"#));
        assert!(!matching.matches(br#"{"action":"COMPENSATE","userId":"u1"}"#));
        assert!(!matching.matches(br#"{"action":"DEBIT"}"#));
        assert!(!matching.matches(b"[1,2]"));
        assert!(!matching.matches(b"not json"));
        // AND an empty match takes any invocation
        assert!(PayloadMatch::any().matches(b"not json"));
    }

    #[test]
    fn response_bodies_become_json_values() {
        assert_eq!(response_value(b"{\"a\":1}"), serde_json::json!({"a": 1}));
        assert_eq!(response_value(b""), Value::Null);
        assert_eq!(
            response_value(b"not json"),
            Value::String("not json".into())
        );
    }
}
