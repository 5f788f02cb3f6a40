//! One execution environment: a child process of the function's binary, the
//! Runtime API server it talks to, and a watcher task that owns the process,
//! kills it on request and reports its exit once it is reaped.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::AbortHandle;

use super::id;
use super::log::LogSink;
use super::runtime_api::{self, Delivery, ErrorBody, Outcome, RuntimeApi, Status};

/// How long a killed process may take to be reaped before we stop waiting
/// (SIGKILL cannot be caught; this only guards against a stuck kernel).
pub(super) const REAP_WAIT: Duration = Duration::from_secs(5);
/// How long to wait for the exit status once a runtime dropped an invocation.
const EXIT_STATUS_WAIT: Duration = Duration::from_secs(1);
/// Variables taken from the local cloud's own environment; nothing else is
/// inherited, so no developer credential or profile can reach a function.
const INHERITED_VARIABLES: [&str; 5] = ["PATH", "LANG", "TMPDIR", "RUST_LOG", "RUST_BACKTRACE"];
const PATH_DEFAULT: &str = "/usr/local/bin:/usr/bin:/bin";

/// Everything needed to start an instance of one function.
pub(super) struct Launch {
    pub(super) function_arn: String,
    pub(super) program: PathBuf,
    pub(super) working_dir: PathBuf,
    /// The whole environment except the per-instance variables.
    pub(super) environment: BTreeMap<String, String>,
    pub(super) log: LogSink,
}

/// The environment Lambda gives a function: basics, the template's
/// variables, the local cloud's extras, then the reserved variables, which
/// (as on AWS) neither the template nor the extras can override.
pub(super) fn environment(
    spec: &crate::template::FunctionSpec,
    extra_env: &BTreeMap<String, String>,
    region: &str,
    task_root: &std::path::Path,
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for name in INHERITED_VARIABLES {
        if let Ok(value) = std::env::var(name) {
            env.insert(name.to_owned(), value);
        }
    }
    env.entry("PATH".to_owned())
        .or_insert_with(|| PATH_DEFAULT.to_owned());
    // Without these, the AWS SDK would read ~/.aws of whoever runs us.
    env.insert("AWS_CONFIG_FILE".to_owned(), "/dev/null".to_owned());
    env.insert(
        "AWS_SHARED_CREDENTIALS_FILE".to_owned(),
        "/dev/null".to_owned(),
    );
    env.extend(spec.environment.clone());
    env.extend(extra_env.clone());
    let task_root = task_root.display().to_string();
    let reserved = [
        ("AWS_LAMBDA_FUNCTION_NAME", spec.function_name.clone()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
        (
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
            spec.memory_mb.to_string(),
        ),
        (
            "AWS_LAMBDA_LOG_GROUP_NAME",
            format!("/aws/lambda/{}", spec.function_name),
        ),
        ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".to_owned()),
        ("AWS_EXECUTION_ENV", "AWS_Lambda_provided.al2023".to_owned()),
        ("AWS_REGION", region.to_owned()),
        ("AWS_DEFAULT_REGION", region.to_owned()),
        ("LAMBDA_TASK_ROOT", task_root.clone()),
        ("LAMBDA_RUNTIME_DIR", task_root),
        ("_HANDLER", spec.binary.clone()),
        ("TZ", ":UTC".to_owned()),
    ];
    for (name, value) in reserved {
        env.insert(name.to_owned(), value);
    }
    env
}

pub(super) struct Instance {
    pid: u32,
    log_stream: String,
    started_at: Instant,
    status: Arc<watch::Sender<Status>>,
    deliveries: mpsc::Sender<Delivery>,
    /// `true` asks the watcher to kill; dropping it (the instance is gone) too.
    kill: watch::Sender<bool>,
    busy: AtomicBool,
    invocation_count: AtomicU64,
}

/// How an invocation on an instance ended.
#[derive(Debug)]
pub(super) enum RunOutcome {
    Response(Bytes),
    Error(ErrorBody),
    /// The process exited (description: `exit status 1`, `signal: killed`).
    Exited(String),
    TimedOut,
}

/// Why an instance never became ready.
#[derive(Debug)]
pub(super) enum InitFailure {
    Error(ErrorBody),
    Exited(String),
    TimedOut,
}

impl Instance {
    /// Starts the Runtime API server and the process. Synchronous on purpose:
    /// the caller holds the function's instance list lock, so that shutdown
    /// either sees the new instance or prevents it from starting.
    pub(super) fn spawn(launch: &Launch) -> std::io::Result<Arc<Self>> {
        let listener = std::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
        listener.set_nonblocking(true)?;
        let address = listener.local_addr()?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let status = Arc::new(watch::channel(Status::default()).0);
        let (deliveries, receiver) = mpsc::channel(1);
        let api = RuntimeApi::new(launch.function_arn.clone(), Arc::clone(&status), receiver);
        let router = runtime_api::router(api);
        let server = tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, router).await {
                tracing::warn!(%err, "runtime API server stopped");
            }
        });
        let log_stream = id::log_stream_name();
        let child = match command(launch, address, &log_stream).and_then(|mut c| c.spawn()) {
            Ok(child) => child,
            Err(err) => {
                server.abort();
                return Err(err);
            }
        };
        let pid = child.id().unwrap_or_default();
        let (kill, kill_requests) = watch::channel(false);
        tokio::spawn(watch_process(
            child,
            kill_requests,
            Arc::clone(&status),
            server.abort_handle(),
        ));
        launch.log.line(&format!(
            "INIT_START Runtime Version: provided.al2023 Pid: {pid} Log Stream: {log_stream}"
        ));
        Ok(Arc::new(Self {
            pid,
            log_stream,
            started_at: Instant::now(),
            status,
            deliveries,
            kill,
            busy: AtomicBool::new(true),
            invocation_count: AtomicU64::new(0),
        }))
    }

    pub(super) fn pid(&self) -> u32 {
        self.pid
    }

    pub(super) fn log_stream(&self) -> &str {
        &self.log_stream
    }

    pub(super) fn is_alive(&self) -> bool {
        self.status.borrow().exit.is_none()
    }

    pub(super) fn is_busy(&self) -> bool {
        self.busy.load(Ordering::SeqCst)
    }

    pub(super) fn set_busy(&self, busy: bool) {
        self.busy.store(busy, Ordering::SeqCst);
    }

    /// The runtime posted a result that is held back (fault injection).
    pub(super) fn is_result_held(&self) -> bool {
        self.status.borrow().result_held
    }

    pub(super) fn invocation_count(&self) -> u64 {
        self.invocation_count.load(Ordering::Relaxed)
    }

    /// Waits (at most `bound`) until the runtime asks for its first event.
    pub(super) async fn wait_ready(&self, bound: Duration) -> Result<Duration, InitFailure> {
        let mut status = self.status.subscribe();
        let settled = status.wait_for(|s| s.ready || s.init_error.is_some() || s.exit.is_some());
        let status = match tokio::time::timeout(bound, settled).await {
            Err(_) => return Err(InitFailure::TimedOut),
            // The sender lives as long as `self`: this cannot happen.
            Ok(Err(_)) => return Err(InitFailure::Exited("unknown".into())),
            Ok(Ok(status)) => status.clone(),
        };
        match status {
            Status {
                init_error: Some(error),
                ..
            } => Err(InitFailure::Error(error)),
            Status { ready: true, .. } => Ok(self.started_at.elapsed()),
            Status { exit, .. } => Err(InitFailure::Exited(exit.unwrap_or_default())),
        }
    }

    /// Hands one invocation to the runtime and waits for its answer, the
    /// process's exit or the timeout, whichever comes first. With
    /// `hold_result` the answer is held back (see `runtime_api`), so only the
    /// exit or the timeout can end the invocation.
    pub(super) async fn run(
        &self,
        request_id: &str,
        payload: Bytes,
        timeout: Duration,
        hold_result: bool,
    ) -> RunOutcome {
        self.invocation_count.fetch_add(1, Ordering::Relaxed);
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let (result, answer) = oneshot::channel();
        let delivery = Delivery {
            request_id: request_id.to_owned(),
            payload,
            deadline_ms: id::epoch_ms().saturating_add(timeout_ms),
            trace_id: id::trace_id(),
            result,
            hold_result,
        };
        if self.deliveries.try_send(delivery).is_err() {
            return RunOutcome::Exited(self.exit_description().await);
        }
        let mut status = self.status.subscribe();
        tokio::select! {
            biased;
            outcome = answer => match outcome {
                Ok(Outcome::Response(body)) => RunOutcome::Response(body),
                Ok(Outcome::Error(error)) => RunOutcome::Error(error),
                // The runtime moved on without answering: it is dying.
                Err(_) => RunOutcome::Exited(self.exit_description().await),
            },
            exit = wait_exit(&mut status) => RunOutcome::Exited(exit),
            () = tokio::time::sleep(timeout) => RunOutcome::TimedOut,
        }
    }

    /// Asks for SIGKILL without waiting.
    pub(super) fn kill(&self) {
        self.kill.send_replace(true);
    }

    /// Kills the process and waits (bounded) until it is reaped.
    pub(super) async fn kill_and_reap(&self) {
        self.kill();
        let mut status = self.status.subscribe();
        let reaped = status.wait_for(|s| s.exit.is_some());
        if tokio::time::timeout(REAP_WAIT, reaped).await.is_err() {
            tracing::error!(pid = self.pid, "instance not reaped after SIGKILL");
        }
    }

    async fn exit_description(&self) -> String {
        let mut status = self.status.subscribe();
        let exited = status.wait_for(|s| s.exit.is_some());
        match tokio::time::timeout(EXIT_STATUS_WAIT, exited).await {
            Ok(Ok(status)) => status.exit.clone().unwrap_or_default(),
            _ => "Runtime exited without providing a reason".to_owned(),
        }
    }
}

fn command(launch: &Launch, address: SocketAddr, log_stream: &str) -> std::io::Result<Command> {
    let (stdout, stderr) = launch.log.child_stdio()?;
    let mut command = Command::new(&launch.program);
    command
        .env_clear()
        .envs(&launch.environment)
        .env("AWS_LAMBDA_RUNTIME_API", address.to_string())
        .env("AWS_LAMBDA_LOG_STREAM_NAME", log_stream)
        .current_dir(&launch.working_dir)
        .stdin(std::process::Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        // A safety net: should the watcher task be dropped, the process dies.
        .kill_on_drop(true);
    Ok(command)
}

/// Owns the process until it is reaped; then stops the Runtime API server
/// (ending any long-poll) and publishes the exit.
async fn watch_process(
    mut child: Child,
    mut kill_requests: watch::Receiver<bool>,
    status: Arc<watch::Sender<Status>>,
    server: AbortHandle,
) {
    let waited = tokio::select! {
        waited = child.wait() => waited,
        // A kill request, or the instance was dropped: kill either way.
        () = wait_kill(&mut kill_requests) => {
            if let Err(err) = child.start_kill() {
                tracing::warn!(%err, "cannot kill an instance");
            }
            child.wait().await
        }
    };
    server.abort();
    let description = match waited {
        Ok(exit) => describe_exit(exit),
        Err(err) => format!("wait failed: {err}"),
    };
    status.send_modify(|s| s.exit = Some(description));
}

/// The exit description once the process is reaped. Returns owned data so
/// no `watch` borrow is held across an await.
async fn wait_exit(status: &mut watch::Receiver<Status>) -> String {
    match status.wait_for(|s| s.exit.is_some()).await {
        Ok(status) => status.exit.clone().unwrap_or_default(),
        Err(_) => "unknown".to_owned(),
    }
}

/// Returns on a kill request, or when the instance is dropped.
async fn wait_kill(kill_requests: &mut watch::Receiver<bool>) {
    let _ = kill_requests.wait_for(|kill| *kill).await;
}

/// Go's `os.ProcessState` wording, which Lambda's messages use.
fn describe_exit(exit: ExitStatus) -> String {
    if let Some(code) = exit.code() {
        return format!("exit status {code}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = exit.signal() {
            let name = match signal {
                6 => "aborted",
                9 => "killed",
                11 => "segmentation fault",
                15 => "terminated",
                _ => return format!("signal: {signal}"),
            };
            return format!("signal: {name}");
        }
    }
    exit.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::FunctionSpec;

    fn spec() -> FunctionSpec {
        FunctionSpec {
            logical_id: "EchoFunction".into(),
            function_name: "local-echo".into(),
            binary: "echo_lambda".into(),
            timeout_seconds: 3,
            memory_mb: 256,
            environment: BTreeMap::from([
                ("TABLE_NAME".to_owned(), "local-t".to_owned()),
                ("AWS_LAMBDA_FUNCTION_NAME".to_owned(), "spoofed".to_owned()),
            ]),
            api_routes: Vec::new(),
            schedules: Vec::new(),
        }
    }

    #[test]
    fn environment_is_built_from_scratch() {
        // GIVEN a template environment that tries to override a reserved name
        let extra = BTreeMap::from([
            (
                "AWS_ENDPOINT_URL".to_owned(),
                "http://127.0.0.1:4566".to_owned(),
            ),
            ("TABLE_NAME".to_owned(), "from-extra".to_owned()),
        ]);
        // WHEN the environment is built
        let env = environment(&spec(), &extra, "eu-west-1", std::path::Path::new("/bin"));
        // THEN reserved names win, extras override the template, nothing else leaks
        assert_eq!(env["AWS_LAMBDA_FUNCTION_NAME"], "local-echo");
        assert_eq!(env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"], "256");
        assert_eq!(env["AWS_LAMBDA_FUNCTION_VERSION"], "$LATEST");
        assert_eq!(env["AWS_LAMBDA_LOG_GROUP_NAME"], "/aws/lambda/local-echo");
        assert_eq!(env["AWS_REGION"], "eu-west-1");
        assert_eq!(env["AWS_DEFAULT_REGION"], "eu-west-1");
        assert_eq!(env["TABLE_NAME"], "from-extra");
        assert_eq!(env["AWS_ENDPOINT_URL"], "http://127.0.0.1:4566");
        assert_eq!(env["AWS_SHARED_CREDENTIALS_FILE"], "/dev/null");
        assert!(env.contains_key("PATH"));
        assert!(!env.contains_key("HOME"));
        assert!(!env.contains_key("CARGO_MANIFEST_DIR"));
    }

    #[cfg(unix)]
    #[test]
    fn exits_are_described_like_lambda() {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(describe_exit(ExitStatus::from_raw(1 << 8)), "exit status 1");
        assert_eq!(describe_exit(ExitStatus::from_raw(9)), "signal: killed");
        assert_eq!(describe_exit(ExitStatus::from_raw(6)), "signal: aborted");
    }
}
