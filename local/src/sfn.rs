//! Step Functions on loopback: the state machines of `template.yml` (their
//! ASL files with the template's DefinitionSubstitutions), executions run by
//! the interpreter in `crate::asl`, and the AWS JSON 1.0 API the SDKs and the
//! aws CLI speak: StartExecution, StartSyncExecution, DescribeExecution,
//! GetExecutionHistory, ListExecutions, StopExecution, DescribeStateMachine,
//! ListStateMachines.
//!
//! Executions are written to `<data dir>/executions/`: `<name>.json` when
//! they start and end, and while one runs, each history event is appended to
//! `<name>.events.jsonl` as it is recorded. After a restart, finished
//! executions are listed as before, and an execution that was running keeps
//! its history and resumes: the last state it entered is entered again with
//! the input recorded then (its events follow the earlier ones, ids
//! continuing, without a second `ExecutionStarted`), so its history reads
//! "…TaskStateEntered DebitWallet, LambdaFunctionScheduled, [restart]
//! TaskStateEntered DebitWallet, …". Running that state's task again is safe
//! because every task of the saga is idempotent by paymentId: a debit whose
//! reply was lost in the restart is found in the ledger, not taken twice.
//! Its TimeoutSeconds counts again from the restart (see
//! [`crate::asl::resume_execution`]). A history that cannot be read back is
//! skipped with a warning, as is a torn last line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::sync::watch;

use crate::asl::{
    CancellationSignal, Clock, ExecutionContext, HistoryEvent, HistorySink, MemoryHistory, Outcome,
    Resume, ResumeAt, StateMachine, TaskFailure, TaskRunner, TaskTokens, resume_execution,
    resume_point, run_execution,
};
use crate::edge::{ApiError, JsonService};
use crate::template::{StateMachineSpec, Template};
use crate::{FunctionInvoker, InvokeFailure};

/// The role executions report (nothing checks it locally).
pub const LOCAL_ROLE_ARN: &str = "arn:aws:iam::000000000000:role/local-state-machine";
/// Executions kept in memory (oldest finished ones are dropped beyond this).
pub const EXECUTION_COUNT_MAX: usize = 20_000;
/// Largest page of ListExecutions / GetExecutionHistory.
pub const PAGE_SIZE_MAX: usize = 1_000;
/// Longest StartSyncExecution wait (EXPRESS workflows run at most 5 minutes).
pub const SYNC_EXECUTION_SECONDS_MAX: u64 = 300;

/// Runs Task resources (Lambda ARNs) through the local Lambda service, and
/// holds the task tokens of `.waitForTaskToken` tasks for SendTask*.
pub struct LambdaTaskRunner {
    pub invoker: Arc<dyn FunctionInvoker>,
    pub tokens: TaskTokens,
}

#[async_trait]
impl TaskRunner for LambdaTaskRunner {
    fn task_tokens(&self) -> Option<&TaskTokens> {
        Some(&self.tokens)
    }

    async fn run(
        &self,
        resource: &str,
        input: Value,
        timeout: Option<Duration>,
    ) -> Result<Value, TaskFailure> {
        let call = self.invoker.invoke_function(resource, input);
        let result = match timeout {
            Some(limit) => match tokio::time::timeout(limit, call).await {
                Ok(result) => result,
                Err(_) => {
                    return Err(TaskFailure {
                        error: "States.Timeout".into(),
                        cause: format!("task timed out after {} seconds", limit.as_secs()),
                    });
                }
            },
            None => call.await,
        };
        result.map_err(
            |InvokeFailure {
                 error_type,
                 error_message,
             }| TaskFailure {
                // What Step Functions reports for a failed Lambda: the errorType as
                // the error, the function's error JSON as the cause.
                cause: json!({"errorType": error_type, "errorMessage": error_message}).to_string(),
                error: error_type,
            },
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ExecutionStatus {
    Running,
    Succeeded,
    Failed,
    TimedOut,
    Aborted,
}

/// What is persisted of an execution (and what Describe returns).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExecutionRecord {
    execution_arn: String,
    state_machine_arn: String,
    name: String,
    status: ExecutionStatus,
    input: String,
    #[serde(with = "time::serde::rfc3339")]
    start_date: OffsetDateTime,
    #[serde(default, with = "time::serde::rfc3339::option")]
    stop_date: Option<OffsetDateTime>,
    #[serde(default)]
    output: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    cause: Option<String>,
    #[serde(default)]
    history: Vec<Value>,
}

struct Execution {
    record: Mutex<ExecutionRecord>,
    history: Arc<ExecutionHistory>,
    stop: watch::Sender<bool>,
    done: watch::Sender<bool>,
    /// The task running it, while it runs ([`StepFunctions::shutdown`]).
    task: Mutex<Option<tokio::task::AbortHandle>>,
}

/// An execution's history: in memory, and while the execution runs (with a
/// store), appended event by event to its journal, so that a restart loses
/// nothing already recorded.
struct ExecutionHistory {
    events: MemoryHistory,
    journal: Mutex<Option<PathBuf>>,
}

impl ExecutionHistory {
    fn new(journal: Option<PathBuf>) -> Self {
        Self {
            events: MemoryHistory::new(),
            journal: Mutex::new(journal),
        }
    }

    fn events(&self) -> Vec<HistoryEvent> {
        self.events.events()
    }

    /// The execution ended and its record holds the whole history: the
    /// journal is no longer needed.
    fn close_journal(&self) {
        if let Some(path) = lock(&self.journal).take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl HistorySink for ExecutionHistory {
    fn record(&self, event: HistoryEvent) {
        if let Some(path) = lock(&self.journal).as_ref() {
            // Opened per event rather than kept open: thousands of executions
            // may run at once, and that would be thousands of descriptors.
            let appended = serde_json::to_vec(&event)
                .map_err(std::io::Error::other)
                .and_then(|mut line| {
                    line.push(b'\n');
                    let mut file = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)?;
                    std::io::Write::write_all(&mut file, &line)
                });
            if let Err(err) = appended {
                tracing::error!(path = %path.display(), error = %err, "cannot journal a history event");
            }
        }
        self.events.record(event);
    }
}

/// Replaces a journal with `events` (written aside, then renamed).
fn rewrite_journal(path: &Path, events: &[HistoryEvent]) {
    let mut text = Vec::new();
    for event in events {
        if let Ok(line) = serde_json::to_vec(event) {
            text.extend_from_slice(&line);
            text.push(b'\n');
        }
    }
    let temporary = path.with_extension("jsonl.tmp");
    let written = std::fs::write(&temporary, text).and_then(|()| std::fs::rename(&temporary, path));
    if let Err(err) = written {
        tracing::error!(path = %path.display(), error = %err, "cannot rewrite a history journal");
    }
}

/// Reads a journal back; a line that does not parse (the last one, torn by
/// a crash) ends it.
fn read_journal(path: &Path) -> Vec<HistoryEvent> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let mut events = Vec::new();
    for line in text.lines().filter(|line| !line.trim().is_empty()) {
        match serde_json::from_str::<Value>(line)
            .ok()
            .and_then(|value| HistoryEvent::from_value(&value).ok())
        {
            Some(event) => events.push(event),
            None => {
                tracing::warn!(path = %path.display(), "ignoring an unreadable journal line and what follows");
                break;
            }
        }
    }
    events
}

struct Machine {
    arn: String,
    spec: StateMachineSpec,
    definition: String,
    machine: Arc<StateMachine>,
    created: OffsetDateTime,
}

pub struct StepFunctions {
    machines: Vec<Machine>,
    executions: Mutex<BTreeMap<String, Arc<Execution>>>,
    runner: Arc<dyn TaskRunner>,
    clock: Arc<dyn Clock>,
    store_dir: Option<PathBuf>,
    /// Set by [`StepFunctions::shutdown`]: nothing starts or runs any more.
    frozen: AtomicBool,
}

#[derive(Debug, thiserror::Error)]
pub enum SfnError {
    #[error("cannot read state machine {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("state machine {name}: {message}")]
    Definition { name: String, message: String },
    #[error("cannot use the executions directory {path}: {source}")]
    Store {
        path: String,
        source: std::io::Error,
    },
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl StepFunctions {
    /// Loads every state machine of the template (an unsupported ASL feature
    /// is an error here, at start-up) and the executions saved in `store_dir`.
    pub fn start(
        template: &Template,
        root: &Path,
        runner: Arc<dyn TaskRunner>,
        clock: Arc<dyn Clock>,
        store_dir: Option<PathBuf>,
    ) -> Result<Arc<Self>, SfnError> {
        let mut machines = Vec::new();
        for spec in &template.state_machines {
            let path = root.join(&spec.definition_uri);
            let definition = std::fs::read_to_string(&path).map_err(|source| SfnError::Read {
                path: path.display().to_string(),
                source,
            })?;
            let machine = StateMachine::load(&definition, &spec.substitutions).map_err(|err| {
                SfnError::Definition {
                    name: spec.name.clone(),
                    message: err.to_string(),
                }
            })?;
            machines.push(Machine {
                arn: template.state_machine_arn(&spec.name),
                spec: spec.clone(),
                definition,
                machine: Arc::new(machine),
                created: clock.now(),
            });
        }
        let service = Arc::new(Self {
            machines,
            executions: Mutex::new(BTreeMap::new()),
            runner,
            clock,
            store_dir,
            frozen: AtomicBool::new(false),
        });
        service.restore()?;
        Ok(service)
    }

    /// Freezes every running execution where it is, before the local cloud
    /// stops: their tasks are dropped at their next await point and record
    /// nothing more, so their saved records stay RUNNING with their history
    /// journals, and the next start resumes them. Call it before the Lambda
    /// service goes down, or executions would run on and record its
    /// shutdown errors as their own (burning their retries, compensating,
    /// failing). Later StartExecution calls are refused.
    pub fn shutdown(&self) {
        self.frozen.store(true, Ordering::SeqCst);
        let executions: Vec<Arc<Execution>> = lock(&self.executions).values().cloned().collect();
        for execution in executions {
            if let Some(task) = lock(&execution.task).take() {
                task.abort();
            }
        }
    }

    pub fn state_machine_arns(&self) -> Vec<String> {
        self.machines.iter().map(|m| m.arn.clone()).collect()
    }

    fn machine(&self, arn: &str) -> Result<&Machine, ApiError> {
        self.machines.iter().find(|m| m.arn == arn).ok_or_else(|| {
            ApiError::client(
                "StateMachineDoesNotExist",
                format!("State Machine Does Not Exist: '{arn}'"),
            )
        })
    }

    fn execution(&self, arn: &str) -> Result<Arc<Execution>, ApiError> {
        lock(&self.executions).get(arn).cloned().ok_or_else(|| {
            ApiError::client(
                "ExecutionDoesNotExist",
                format!("Execution Does Not Exist: '{arn}'"),
            )
        })
    }

    /// Starts an execution; the same name with the same input returns the
    /// existing one (the saga's idempotent start), a different input is
    /// `ExecutionAlreadyExists`.
    fn start_execution(
        self: &Arc<Self>,
        machine_arn: &str,
        name: Option<&str>,
        input: &str,
    ) -> Result<Arc<Execution>, ApiError> {
        if self.frozen.load(Ordering::SeqCst) {
            return Err(ApiError {
                status: 503,
                error_type: "ServiceUnavailable".into(),
                message: "the local Step Functions is shutting down".into(),
            });
        }
        let machine = self.machine(machine_arn)?;
        let name = name.map_or_else(
            || ulid::Ulid::new().to_string().to_lowercase(),
            str::to_owned,
        );
        validate_name(&name)?;
        let input_value: Value = serde_json::from_str(input).map_err(|err| {
            ApiError::client(
                "InvalidExecutionInput",
                format!("Invalid execution input: {err}"),
            )
        })?;
        let arn = format!(
            "{}:{name}",
            machine.arn.replace(":stateMachine:", ":execution:")
        );
        let mut executions = lock(&self.executions);
        if let Some(existing) = executions.get(&arn) {
            let same_input = serde_json::from_str::<Value>(&lock(&existing.record).input).ok()
                == Some(input_value);
            return if same_input {
                Ok(Arc::clone(existing))
            } else {
                Err(ApiError::client(
                    "ExecutionAlreadyExists",
                    format!("Execution Already Exists: '{arn}'"),
                ))
            };
        }
        let record = ExecutionRecord {
            execution_arn: arn.clone(),
            state_machine_arn: machine.arn.clone(),
            name,
            status: ExecutionStatus::Running,
            input: input.to_owned(),
            start_date: self.clock.now(),
            stop_date: None,
            output: None,
            error: None,
            cause: None,
            history: Vec::new(),
        };
        let journal = self.journal_path(&arn);
        if let Some(path) = &journal {
            // A journal left by an earlier execution of this name is stale.
            let _ = std::fs::remove_file(path);
        }
        let execution = Arc::new(new_execution(record, journal));
        prune(&mut executions);
        executions.insert(arn, Arc::clone(&execution));
        drop(executions);
        self.persist(&execution);
        self.spawn(Arc::clone(&execution), None);
        Ok(execution)
    }

    /// Runs a new execution (`resume` None) or resumes a restored one.
    fn spawn(self: &Arc<Self>, execution: Arc<Execution>, resume: Option<Resume>) {
        // Under the task lock, so that `shutdown` (which sets `frozen` first,
        // then takes each lock) either aborts this task or prevents it.
        let mut task = lock(&execution.task);
        if self.frozen.load(Ordering::SeqCst) {
            return;
        }
        let service = Arc::clone(self);
        let running = Arc::clone(&execution);
        let handle = tokio::spawn(async move {
            let outcome = match resume {
                Some(Resume::Ended(outcome)) => outcome,
                Some(Resume::At(at)) => service.run(&running, Some(at)).await,
                None => service.run(&running, None).await,
            };
            service.finish(&running, outcome);
        });
        *task = Some(handle.abort_handle());
    }

    fn journal_path(&self, execution_arn: &str) -> Option<PathBuf> {
        let dir = self.store_dir.as_ref()?;
        Some(dir.join(format!("{}.events.jsonl", file_name(execution_arn))))
    }

    async fn run(&self, execution: &Execution, resume: Option<ResumeAt>) -> Outcome {
        let record = lock(&execution.record).clone();
        let Ok(machine) = self.machine(&record.state_machine_arn) else {
            return Outcome::Failed {
                error: "States.Runtime".into(),
                cause: "state machine no longer exists".into(),
            };
        };
        let input = serde_json::from_str(&record.input).unwrap_or(Value::Null);
        let context = ExecutionContext {
            execution_arn: record.execution_arn.clone(),
            name: record.name.clone(),
            state_machine_arn: record.state_machine_arn.clone(),
            state_machine_name: machine.spec.name.clone(),
            role_arn: LOCAL_ROLE_ARN.to_owned(),
            start_time: record.start_date,
            input,
            rng_seed: None,
        };
        let sink: &dyn HistorySink = execution.history.as_ref();
        let (runner, clock) = (self.runner.as_ref(), self.clock.as_ref());
        let cancel = CancellationSignal::from(execution.stop.subscribe());
        match resume {
            Some(at) => {
                resume_execution(&machine.machine, context, runner, clock, sink, cancel, at).await
            }
            None => run_execution(&machine.machine, context, runner, clock, sink, cancel).await,
        }
    }

    fn finish(&self, execution: &Execution, outcome: Outcome) {
        {
            let mut record = lock(&execution.record);
            if record.status == ExecutionStatus::Running {
                record.stop_date = Some(self.clock.now());
                match outcome {
                    Outcome::Succeeded { output } => {
                        record.status = ExecutionStatus::Succeeded;
                        record.output = Some(output.to_string());
                    }
                    Outcome::Failed { error, cause } => {
                        record.status = ExecutionStatus::Failed;
                        record.error = Some(error);
                        record.cause = Some(cause);
                    }
                    Outcome::TimedOut => record.status = ExecutionStatus::TimedOut,
                    Outcome::Aborted => record.status = ExecutionStatus::Aborted,
                }
            }
        }
        self.persist(execution);
        execution.history.close_journal();
        lock(&execution.task).take();
        let _ = execution.done.send(true);
    }

    /// Writes the execution (with its history so far) to the store, if any.
    fn persist(&self, execution: &Execution) {
        let Some(dir) = &self.store_dir else { return };
        let mut record = lock(&execution.record).clone();
        record.history = execution
            .history
            .events()
            .iter()
            .filter_map(|e| serde_json::to_value(e).ok())
            .collect();
        let path = dir.join(format!("{}.json", file_name(&record.execution_arn)));
        let written = serde_json::to_vec(&record)
            .map_err(std::io::Error::other)
            .and_then(|bytes| {
                let temporary = path.with_extension("json.tmp");
                std::fs::write(&temporary, bytes)?;
                std::fs::rename(&temporary, &path)
            });
        if let Err(err) = written {
            tracing::error!(path = %path.display(), error = %err, "cannot persist execution");
        }
    }

    /// Loads saved executions; those that were running are started again.
    fn restore(self: &Arc<Self>) -> Result<(), SfnError> {
        let Some(dir) = &self.store_dir else {
            return Ok(());
        };
        let store_error = |source| SfnError::Store {
            path: dir.display().to_string(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(store_error)?;
        let mut resumed = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(store_error)?.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let Some(execution) = self.load_saved(&path) else {
                tracing::warn!(path = %path.display(), "skipping an unreadable saved execution");
                continue;
            };
            let (arn, running) = {
                let record = lock(&execution.record);
                let running = record.status == ExecutionStatus::Running;
                (record.execution_arn.clone(), running)
            };
            lock(&self.executions).insert(arn, Arc::clone(&execution));
            if running {
                resumed.push(execution);
            }
        }
        for execution in resumed {
            self.resume_restored(execution);
        }
        Ok(())
    }

    /// A saved execution with its history: for one that was running, what
    /// its journal holds; for one that ended, what its record holds.
    fn load_saved(&self, path: &Path) -> Option<Arc<Execution>> {
        let bytes = std::fs::read(path).ok()?;
        let mut record = serde_json::from_slice::<ExecutionRecord>(&bytes).ok()?;
        let saved: Vec<HistoryEvent> = std::mem::take(&mut record.history)
            .iter()
            .filter_map(|e| HistoryEvent::from_value(e).ok())
            .collect();
        let running = record.status == ExecutionStatus::Running;
        let (history, journal) = match self.journal_path(&record.execution_arn) {
            Some(journal) if running => {
                let journaled = read_journal(&journal);
                // Without a torn last line, so that new events follow good ones.
                rewrite_journal(&journal, &journaled);
                let history = if journaled.is_empty() {
                    saved
                } else {
                    journaled
                };
                (history, Some(journal))
            }
            journal => {
                if let Some(stale) = journal {
                    let _ = std::fs::remove_file(stale);
                }
                (saved, None)
            }
        };
        let execution = Arc::new(new_execution(record, journal));
        execution.history.events.restore(history);
        Some(execution)
    }

    fn resume_restored(self: &Arc<Self>, execution: Arc<Execution>) {
        let resume = self.resume_of(&execution);
        let arn = lock(&execution.record).execution_arn.clone();
        let how = match &resume {
            Some(Resume::At(at)) if at.last_event_id == 0 => "from the start".to_owned(),
            Some(Resume::At(at)) => format!("entering {} again", at.state),
            Some(Resume::Ended(_)) => "recording the end its history has".to_owned(),
            None => "its state machine is gone: failing it".to_owned(),
        };
        tracing::warn!(execution = %arn,
            "resuming an execution interrupted by a restart: {how} (every task is idempotent)");
        let _ = execution.done.send(false);
        self.spawn(execution, resume);
    }

    /// None when its state machine is no longer in the template: `run`
    /// then fails it with a clear cause.
    fn resume_of(&self, execution: &Execution) -> Option<Resume> {
        let record = lock(&execution.record).clone();
        let machine = self.machine(&record.state_machine_arn).ok()?;
        let input = serde_json::from_str(&record.input).unwrap_or(Value::Null);
        Some(resume_point(
            &machine.machine,
            &execution.history.events(),
            &input,
        ))
    }
}

fn new_execution(record: ExecutionRecord, journal: Option<PathBuf>) -> Execution {
    Execution {
        record: Mutex::new(record),
        history: Arc::new(ExecutionHistory::new(journal)),
        stop: watch::channel(false).0,
        done: watch::channel(false).0,
        task: Mutex::new(None),
    }
}

/// Drops the oldest finished executions beyond [`EXECUTION_COUNT_MAX`].
fn prune(executions: &mut BTreeMap<String, Arc<Execution>>) {
    if executions.len() < EXECUTION_COUNT_MAX {
        return;
    }
    let mut finished: Vec<(OffsetDateTime, String)> = executions
        .iter()
        .filter_map(|(arn, e)| {
            let record = lock(&e.record);
            record.stop_date.map(|stop| (stop, arn.clone()))
        })
        .collect();
    finished.sort();
    let excess = executions.len() + 1 - EXECUTION_COUNT_MAX;
    for (_, arn) in finished.into_iter().take(excess) {
        executions.remove(&arn);
    }
}

/// Execution names: 1–80 characters, no whitespace, brackets, wildcards or
/// control characters (AWS's rule).
fn validate_name(name: &str) -> Result<(), ApiError> {
    let forbidden =
        |c: char| c.is_whitespace() || c.is_control() || "<>{}[]?*\"#%\\^|~`$&,;:/".contains(c);
    if name.is_empty() || name.chars().count() > 80 || name.chars().any(forbidden) {
        return Err(ApiError::client(
            "InvalidName",
            format!("Invalid Name: '{name}'"),
        ));
    }
    Ok(())
}

fn file_name(arn: &str) -> String {
    arn.rsplit(':')
        .take(2)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join("__")
}

fn epoch(at: OffsetDateTime) -> Value {
    json!(crate::asl::epoch_seconds(at))
}

fn describe(record: &ExecutionRecord) -> Value {
    let mut out = json!({
        "executionArn": record.execution_arn,
        "stateMachineArn": record.state_machine_arn,
        "name": record.name,
        "status": record.status,
        "startDate": epoch(record.start_date),
        "input": record.input,
        "inputDetails": {"included": true},
    });
    if let Some(stop) = record.stop_date {
        out["stopDate"] = epoch(stop);
    }
    if let Some(output) = &record.output {
        out["output"] = json!(output);
        out["outputDetails"] = json!({"included": true});
    }
    if let Some(error) = &record.error {
        out["error"] = json!(error);
    }
    if let Some(cause) = &record.cause {
        out["cause"] = json!(cause);
    }
    out
}

fn text_field<'a>(input: &'a Value, field: &str) -> Result<&'a str, ApiError> {
    input.get(field).and_then(Value::as_str).ok_or_else(|| {
        ApiError::client(
            "ValidationException",
            format!("1 validation error detected: '{field}' is required"),
        )
    })
}

fn page_bounds(input: &Value, total: usize) -> Result<(usize, usize), ApiError> {
    let start = match input.get("nextToken").and_then(Value::as_str) {
        Some(token) => token
            .parse::<usize>()
            .map_err(|_| ApiError::client("InvalidToken", "Invalid Token"))?,
        None => 0,
    };
    let size = input
        .get("maxResults")
        .and_then(Value::as_u64)
        .filter(|n| *n > 0)
        .map_or(100, |n| usize::try_from(n).unwrap_or(PAGE_SIZE_MAX))
        .min(PAGE_SIZE_MAX);
    Ok((start.min(total), size))
}

fn with_next_token(mut out: Value, end: usize, total: usize) -> Value {
    if end < total {
        out["nextToken"] = json!(end.to_string());
    }
    out
}

impl StepFunctions {
    fn api_start(self: &Arc<Self>, input: &Value) -> Result<Arc<Execution>, ApiError> {
        let machine_arn = text_field(input, "stateMachineArn")?;
        let execution_input = input.get("input").and_then(Value::as_str).unwrap_or("{}");
        self.start_execution(
            machine_arn,
            input.get("name").and_then(Value::as_str),
            execution_input,
        )
    }

    async fn api_start_sync(self: &Arc<Self>, input: &Value) -> Result<Value, ApiError> {
        let execution = self.api_start(input)?;
        let mut done = execution.done.subscribe();
        let wait = done.wait_for(|finished| *finished);
        let limit = Duration::from_secs(SYNC_EXECUTION_SECONDS_MAX);
        if tokio::time::timeout(limit, wait).await.is_err() {
            let _ = execution.stop.send(true);
        }
        let mut out = describe(&lock(&execution.record));
        if let Some(object) = out.as_object_mut() {
            object.remove("inputDetails");
        }
        Ok(out)
    }

    fn api_history(&self, input: &Value) -> Result<Value, ApiError> {
        let execution = self.execution(text_field(input, "executionArn")?)?;
        let mut events: Vec<Value> = execution
            .history
            .events()
            .iter()
            .filter_map(|e| serde_json::to_value(e).ok())
            .collect();
        if input.get("reverseOrder").and_then(Value::as_bool) == Some(true) {
            events.reverse();
        }
        let (start, size) = page_bounds(input, events.len())?;
        let end = (start + size).min(events.len());
        Ok(with_next_token(
            json!({"events": events[start..end]}),
            end,
            events.len(),
        ))
    }

    fn api_list(&self, input: &Value) -> Result<Value, ApiError> {
        let machine_arn = text_field(input, "stateMachineArn")?;
        self.machine(machine_arn)?;
        let filter = input.get("statusFilter").and_then(Value::as_str);
        let mut records: Vec<ExecutionRecord> = lock(&self.executions)
            .values()
            .map(|e| lock(&e.record).clone())
            .filter(|r| r.state_machine_arn == machine_arn)
            .filter(|r| {
                filter.is_none_or(|f| serde_json::to_value(r.status).ok() == Some(json!(f)))
            })
            .collect();
        // Newest first, like the real API.
        records.sort_by(|a, b| {
            b.start_date
                .cmp(&a.start_date)
                .then_with(|| b.name.cmp(&a.name))
        });
        let (start, size) = page_bounds(input, records.len())?;
        let end = (start + size).min(records.len());
        let executions: Vec<Value> = records[start..end]
            .iter()
            .map(|r| {
                let mut item = json!({"executionArn": r.execution_arn, "stateMachineArn": r.state_machine_arn,
                    "name": r.name, "status": r.status, "startDate": epoch(r.start_date)});
                if let Some(stop) = r.stop_date {
                    item["stopDate"] = epoch(stop);
                }
                item
            })
            .collect();
        Ok(with_next_token(
            json!({"executions": executions}),
            end,
            records.len(),
        ))
    }

    fn api_stop(&self, input: &Value) -> Result<Value, ApiError> {
        let execution = self.execution(text_field(input, "executionArn")?)?;
        let now = self.clock.now();
        {
            let mut record = lock(&execution.record);
            if record.status == ExecutionStatus::Running {
                record.status = ExecutionStatus::Aborted;
                record.stop_date = Some(now);
                record.error = input
                    .get("error")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                record.cause = input
                    .get("cause")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
            }
        }
        let _ = execution.stop.send(true);
        self.persist(&execution);
        Ok(json!({"stopDate": epoch(now)}))
    }

    /// SendTaskSuccess, SendTaskFailure and SendTaskHeartbeat: the answer to
    /// a `.waitForTaskToken` task. `output` must be JSON text, as on AWS.
    fn api_task_callback(&self, operation: &str, input: &Value) -> Result<Value, ApiError> {
        let tokens = self
            .runner
            .task_tokens()
            .ok_or_else(|| ApiError::client("InvalidToken", "this runner issues no task tokens"))?;
        let token = text_field(input, "taskToken")?;
        let optional = |field: &str| input.get(field).and_then(Value::as_str).map(str::to_owned);
        let sent = match operation {
            "SendTaskSuccess" => {
                let output = text_field(input, "output")?;
                let output: Value = serde_json::from_str(output).map_err(|err| {
                    ApiError::client("InvalidOutput", format!("output is not JSON: {err}"))
                })?;
                tokens.send_success(token, output)
            }
            "SendTaskFailure" => tokens.send_failure(token, optional("error"), optional("cause")),
            _ => tokens.send_heartbeat(token),
        };
        sent.map_err(|err| ApiError::client(err.aws_error_code(), err.to_string()))?;
        Ok(json!({}))
    }

    fn api_describe_machine(&self, input: &Value) -> Result<Value, ApiError> {
        let machine = self.machine(text_field(input, "stateMachineArn")?)?;
        Ok(json!({
            "stateMachineArn": machine.arn,
            "name": machine.spec.name,
            "status": "ACTIVE",
            "definition": machine.definition,
            "roleArn": LOCAL_ROLE_ARN,
            "type": machine.spec.workflow_type,
            "creationDate": epoch(machine.created),
        }))
    }

    fn api_list_machines(&self) -> Value {
        let machines: Vec<Value> = self
            .machines
            .iter()
            .map(|m| {
                json!({"stateMachineArn": m.arn, "name": m.spec.name, "type": m.spec.workflow_type,
                "creationDate": epoch(m.created)})
            })
            .collect();
        json!({"stateMachines": machines})
    }
}

/// The Step Functions JSON API, served on the edge endpoint.
pub struct StepFunctionsApi(pub Arc<StepFunctions>);

#[async_trait]
impl JsonService for StepFunctionsApi {
    async fn call(&self, operation: &str, input: Value) -> Result<Value, ApiError> {
        let service = &self.0;
        match operation {
            "StartExecution" => {
                let execution = service.api_start(&input)?;
                let record = lock(&execution.record);
                Ok(
                    json!({"executionArn": record.execution_arn, "startDate": epoch(record.start_date)}),
                )
            }
            "StartSyncExecution" => service.api_start_sync(&input).await,
            "DescribeExecution" => {
                let execution = service.execution(text_field(&input, "executionArn")?)?;
                Ok(describe(&lock(&execution.record)))
            }
            "GetExecutionHistory" => service.api_history(&input),
            "ListExecutions" => service.api_list(&input),
            "StopExecution" => service.api_stop(&input),
            "SendTaskSuccess" | "SendTaskFailure" | "SendTaskHeartbeat" => {
                service.api_task_callback(operation, &input)
            }
            "DescribeStateMachine" => service.api_describe_machine(&input),
            "ListStateMachines" => Ok(service.api_list_machines()),
            other => Err(ApiError::client(
                "UnknownOperationException",
                format!("{other} is not implemented by the local Step Functions"),
            )),
        }
    }
}
