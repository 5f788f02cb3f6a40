//! One function: its pool of instances and its counters. A semaphore with
//! `instance_count_max` permits bounds the invocations in progress, and so
//! the instances: an invocation holding a permit takes an idle instance or,
//! when none is idle, starts one (a cold start); its permit is returned only
//! after its instance is back in the idle list or retired.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::instance::{self, InitFailure, Instance, Launch, RunOutcome};
use super::log::LogSink;
use super::runtime_api::ErrorBody;
use super::{FunctionStats, InstanceStats, InvokeError, LambdaConfig, PayloadMatch, id};
use crate::template::FunctionSpec;

/// Lambda's limit on the init phase of an on-demand function.
pub(super) const INIT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Counters {
    invocation: AtomicU64,
    cold_start: AtomicU64,
    function_error: AtomicU64,
    crash: AtomicU64,
    timeout: AtomicU64,
    init_error: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

pub(super) struct Function {
    pub(super) spec: FunctionSpec,
    pub(super) arn: String,
    launch: Launch,
    permits: Arc<Semaphore>,
    instance_count_max: u32,
    /// Ready instances waiting for work, most recently used last.
    idle: Mutex<Vec<Arc<Instance>>>,
    /// Every instance not yet reaped (idle, busy or dying).
    live: Mutex<Vec<Arc<Instance>>>,
    counters: Counters,
    shutting_down: Arc<AtomicBool>,
    /// Armed by [`Function::hold_next_result`]: the next invocation whose
    /// payload matches has its result held back. Taken (disarmed) by it.
    result_hold: Mutex<Option<PayloadMatch>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while holding these locks; a poisoned one is still sound.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Function {
    pub(super) fn new(
        spec: &FunctionSpec,
        arn: String,
        config: &LambdaConfig,
        region: &str,
        shutting_down: &Arc<AtomicBool>,
    ) -> Self {
        let log_path = config.log_dir.join(format!("{}.log", spec.binary));
        let launch = Launch {
            function_arn: arn.clone(),
            program: config.bin_dir.join(&spec.binary),
            working_dir: config.bin_dir.clone(),
            environment: instance::environment(spec, &config.extra_env, region, &config.bin_dir),
            log: LogSink::new(log_path),
        };
        let permits = usize::try_from(config.instance_count_max).unwrap_or(1);
        Self {
            spec: spec.clone(),
            arn,
            launch,
            permits: Arc::new(Semaphore::new(permits)),
            instance_count_max: config.instance_count_max,
            idle: Mutex::new(Vec::new()),
            live: Mutex::new(Vec::new()),
            counters: Counters::default(),
            shutting_down: Arc::clone(shutting_down),
            result_hold: Mutex::new(None),
        }
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(u64::from(self.spec.timeout_seconds))
    }

    /// Runs the invocation in its own task: once accepted, an invocation runs
    /// to completion even if the caller goes away (as on AWS), and its
    /// instance is returned to the pool or retired either way.
    pub(super) async fn invoke_detached(
        self: Arc<Self>,
        request_id: String,
        payload: Bytes,
    ) -> Result<Bytes, InvokeError> {
        let task = tokio::spawn(async move { self.invoke(&request_id, payload).await });
        task.await.unwrap_or_else(|err| {
            Err(InvokeError::function(
                "Lambda.ServiceException",
                format!("invocation task failed: {err}"),
            ))
        })
    }

    async fn invoke(&self, request_id: &str, payload: Bytes) -> Result<Bytes, InvokeError> {
        let _permit = self.acquire_permit().await?;
        bump(&self.counters.invocation);
        let (instance, init_duration) = match self.take_idle() {
            Some(instance) => (instance, None),
            None => {
                let (instance, init) = self.cold_start(request_id).await?;
                (instance, Some(init))
            }
        };
        self.launch
            .log
            .line(&format!("START RequestId: {request_id} Version: $LATEST"));
        // Taken only once an instance is ready: a failed init leaves it armed.
        let hold_result = self.take_result_hold(&payload);
        let started = Instant::now();
        let outcome = instance
            .run(request_id, payload, self.timeout(), hold_result)
            .await;
        let duration = started.elapsed();
        let (result, reusable) = self.judge(request_id, outcome);
        // END/REPORT before the instance can take another invocation.
        self.log_end(request_id, duration, init_duration);
        if reusable {
            self.release(&instance);
        } else {
            self.retire(&instance).await;
        }
        result
    }

    /// Waits for a free slot at most one function timeout: every busy
    /// instance is freed within that, so a longer wait means overload.
    async fn acquire_permit(&self) -> Result<OwnedSemaphorePermit, InvokeError> {
        if self.shutting_down.load(Ordering::SeqCst) {
            return Err(shutting_down());
        }
        let acquire = Arc::clone(&self.permits).acquire_owned();
        match tokio::time::timeout(self.timeout(), acquire).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_closed)) => Err(shutting_down()),
            Err(_elapsed) => Err(InvokeError::TooManyRequests(format!(
                "Rate Exceeded: all {} instances of {} stayed busy",
                self.instance_count_max, self.spec.function_name
            ))),
        }
    }

    fn take_idle(&self) -> Option<Arc<Instance>> {
        let mut idle = lock(&self.idle);
        while let Some(instance) = idle.pop() {
            if instance.is_alive() {
                instance.set_busy(true);
                return Some(instance);
            }
        }
        None
    }

    /// Starts an instance and waits for its init phase; a failed init
    /// retires it and fails the invocation.
    async fn cold_start(&self, request_id: &str) -> Result<(Arc<Instance>, Duration), InvokeError> {
        bump(&self.counters.cold_start);
        let instance = self.spawn_instance()?;
        match instance.wait_ready(INIT_TIMEOUT).await {
            Ok(init_duration) => Ok((instance, init_duration)),
            Err(failure) => {
                bump(&self.counters.init_error);
                self.retire(&instance).await;
                let error = init_error(request_id, failure);
                self.launch.log.line(&format!(
                    "INIT_REPORT RequestId: {request_id} Status: error Error Type: {}",
                    error.0
                ));
                Err(InvokeError::function(&error.0, error.1))
            }
        }
    }

    /// Under the `live` lock, so that shutdown (which sets its flag before
    /// taking the lock) either kills this instance or prevents it.
    fn spawn_instance(&self) -> Result<Arc<Instance>, InvokeError> {
        let mut live = lock(&self.live);
        if self.shutting_down.load(Ordering::SeqCst) {
            return Err(shutting_down());
        }
        live.retain(|instance| instance.is_alive());
        let instance = Instance::spawn(&self.launch).map_err(|err| {
            InvokeError::function(
                "Runtime.InitError",
                format!("cannot start {}: {err}", self.launch.program.display()),
            )
        })?;
        live.push(Arc::clone(&instance));
        Ok(instance)
    }

    /// The invocation's result, and whether its instance may be reused
    /// (not after a crash or a timeout).
    fn judge(&self, request_id: &str, outcome: RunOutcome) -> (Result<Bytes, InvokeError>, bool) {
        match outcome {
            RunOutcome::Response(body) => (Ok(body), true),
            RunOutcome::Error(ErrorBody {
                error_type,
                error_message,
            }) => {
                bump(&self.counters.function_error);
                let error = InvokeError::Function {
                    error_type,
                    error_message,
                };
                (Err(error), true)
            }
            RunOutcome::Exited(exit) => {
                bump(&self.counters.crash);
                let message =
                    format!("RequestId: {request_id} Error: Runtime exited with error: {exit}");
                (
                    Err(InvokeError::function("Runtime.ExitError", message)),
                    false,
                )
            }
            RunOutcome::TimedOut => {
                bump(&self.counters.timeout);
                let message = format!(
                    "{} {request_id} Task timed out after {}.00 seconds",
                    id::timestamp(),
                    self.spec.timeout_seconds
                );
                self.launch.log.line(&message);
                (
                    Err(InvokeError::function("Sandbox.Timedout", message)),
                    false,
                )
            }
        }
    }

    fn release(&self, instance: &Arc<Instance>) {
        instance.set_busy(false);
        if instance.is_alive() && !self.shutting_down.load(Ordering::SeqCst) {
            lock(&self.idle).push(Arc::clone(instance));
        }
    }

    /// Kills and reaps the instance, then forgets it; the next invocation
    /// that finds no idle instance starts a fresh one.
    async fn retire(&self, instance: &Arc<Instance>) {
        instance.kill_and_reap().await;
        instance.set_busy(false);
        lock(&self.idle).retain(|other| !Arc::ptr_eq(other, instance));
        lock(&self.live).retain(|other| !Arc::ptr_eq(other, instance));
    }

    fn log_end(&self, request_id: &str, duration: Duration, init_duration: Option<Duration>) {
        let log = &self.launch.log;
        log.line(&format!("END RequestId: {request_id}"));
        let millis =
            |d: Duration| format!("{}.{:02}", d.as_millis(), d.subsec_micros() % 1000 / 10);
        let billed = duration.as_millis().saturating_add(1);
        let memory_mb = self.spec.memory_mb;
        let mut report = format!(
            "REPORT RequestId: {request_id}\tDuration: {} ms\tBilled Duration: {billed} ms\t\
             Memory Size: {memory_mb} MB",
            millis(duration),
        );
        if let Some(init) = init_duration {
            report.push_str(&format!("\tInit Duration: {} ms", millis(init)));
        }
        log.line(&report);
    }

    /// Arms the result hold for the next invocation whose payload matches
    /// (replacing any hold armed before and not yet taken).
    pub(super) fn hold_next_result(&self, matching: PayloadMatch) {
        *lock(&self.result_hold) = Some(matching);
    }

    /// Whether this invocation's result is held back; disarms the hold if so.
    fn take_result_hold(&self, payload: &[u8]) -> bool {
        let mut hold = lock(&self.result_hold);
        let taken = hold
            .as_ref()
            .is_some_and(|matching| matching.matches(payload));
        if taken {
            *hold = None;
        }
        taken
    }

    /// Kills a busy instance, preferring one whose result is held back (the
    /// one a test or an operator is waiting to kill).
    pub(super) fn kill_busy_instance(&self) -> Option<u32> {
        let live = lock(&self.live);
        let busy = |instance: &&Arc<Instance>| instance.is_busy() && instance.is_alive();
        let instance = live
            .iter()
            .filter(busy)
            .find(|instance| instance.is_result_held())
            .or_else(|| live.iter().find(busy))?;
        let function = &self.spec.function_name;
        tracing::info!(pid = instance.pid(), %function, "killing a busy instance");
        instance.kill();
        Some(instance.pid())
    }

    /// Starts one instance when none is alive, and parks it idle once ready.
    pub(super) async fn prewarm(self: Arc<Self>) -> Result<(), InvokeError> {
        if lock(&self.live).iter().any(|instance| instance.is_alive()) {
            return Ok(());
        }
        let _permit = self.acquire_permit().await?;
        let (instance, _) = self.cold_start("prewarm").await?;
        self.release(&instance);
        Ok(())
    }

    /// Closes the pool (waiters fail at once) and kills and reaps every
    /// instance. The caller set `shutting_down` first, so no new one starts.
    pub(super) async fn shutdown(&self) {
        self.permits.close();
        lock(&self.idle).clear();
        let instances: Vec<Arc<Instance>> = lock(&self.live).clone();
        for instance in &instances {
            instance.kill();
        }
        for instance in &instances {
            instance.kill_and_reap().await;
        }
        lock(&self.live).retain(|instance| instance.is_alive());
    }

    pub(super) fn stats(&self) -> FunctionStats {
        let instances: Vec<InstanceStats> = lock(&self.live)
            .iter()
            .filter(|instance| instance.is_alive())
            .map(|instance| InstanceStats {
                pid: instance.pid(),
                busy: instance.is_busy(),
                invocation_count: instance.invocation_count(),
                log_stream: instance.log_stream().to_owned(),
                result_held: instance.is_result_held(),
            })
            .collect();
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        FunctionStats {
            function_name: self.spec.function_name.clone(),
            binary: self.spec.binary.clone(),
            instance_count_alive: count(instances.len()),
            instance_count_busy: count(instances.iter().filter(|i| i.busy).count()),
            invocation_count: load(&self.counters.invocation),
            cold_start_count: load(&self.counters.cold_start),
            function_error_count: load(&self.counters.function_error),
            crash_count: load(&self.counters.crash),
            timeout_count: load(&self.counters.timeout),
            init_error_count: load(&self.counters.init_error),
            result_hold_armed: lock(&self.result_hold).is_some(),
            instances,
        }
    }

    pub(super) fn program(&self) -> &std::path::Path {
        &self.launch.program
    }
}

fn shutting_down() -> InvokeError {
    InvokeError::function(
        "Lambda.ServiceException",
        "the local Lambda service is shutting down",
    )
}

/// (errorType, errorMessage) for an instance that never became ready.
fn init_error(request_id: &str, failure: InitFailure) -> (String, String) {
    match failure {
        InitFailure::Error(ErrorBody {
            error_type,
            error_message,
        }) => (error_type, error_message),
        InitFailure::Exited(exit) => (
            "Runtime.InitError".to_owned(),
            format!("RequestId: {request_id} Error: Runtime exited during init with error: {exit}"),
        ),
        InitFailure::TimedOut => (
            "Sandbox.Timedout".to_owned(),
            format!(
                "RequestId: {request_id} Error: init did not complete within {} seconds",
                INIT_TIMEOUT.as_secs()
            ),
        ),
    }
}
