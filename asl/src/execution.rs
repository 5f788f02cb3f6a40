//! Runs one execution of a loaded state machine: input/output processing,
//! Task (with Retry and Catch, and the `.waitForTaskToken` callback pattern),
//! Choice, Wait, Pass, Succeed, Fail, the execution TimeoutSeconds and
//! StopExecution, recording AWS-shaped history.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash, Hasher};
use std::time::Duration;

use async_trait::async_trait;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::sync::watch;

use super::StateMachine;
use super::callback::{Callback, Heartbeats, OpenToken, TaskTokens};
use super::clock::Clock;
use super::definition::{
    ChoiceState, DataPath, FailState, FailText, PassState, Resource, ResultPath, State, StateKind,
    TaskState, Transition, WaitFor, WaitState,
};
use super::error::{StateFailure, names};
use super::history::{
    DataDetails, ErrorDetails, EventKind, ExecutionStartedEventDetails,
    ExecutionSucceededEventDetails, HistoryEvent, HistorySink, LambdaFunctionScheduledEventDetails,
    LambdaFunctionSucceededEventDetails, StateEnteredEventDetails, StateExitedEventDetails,
    StateType, TaskErrorEventDetails, TaskScheduledEventDetails, TaskStartedEventDetails,
    TaskSubmittedEventDetails, TaskSucceededEventDetails,
};
use super::intrinsic::uuid_v4;
use super::payload::{Payload, Scope};
use super::retry::{backoff_delay, error_matches, jittered};

/// AWS fails an execution whose history reaches 25,000 events; every loop of
/// the interpreter records events, so this also bounds every loop.
pub const HISTORY_EVENT_COUNT_MAX: u64 = 25_000;
/// AWS's payload quota for a state's input or output (256 KiB).
pub const PAYLOAD_BYTES_MAX: usize = 262_144;

/// A Task's failure as the runner reports it: the AWS error name (the
/// Lambda's `errorType`, `States.Timeout`, `Sandbox.Timedout`, …) and cause
/// (for a Lambda error, AWS puts the error payload JSON text here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskFailure {
    pub error: String,
    pub cause: String,
}

/// Runs the resource of a Task state.
#[async_trait]
pub trait TaskRunner: Send + Sync {
    /// `resource` is the Lambda function ARN of a Task, or the `FunctionName`
    /// of a `lambda:invoke` Task; `input` is the payload; `timeout` is the
    /// state's TimeoutSeconds. Returns the function's result payload.
    async fn run(
        &self,
        resource: &str,
        input: Value,
        timeout: Option<Duration>,
    ) -> Result<Value, TaskFailure>;

    /// The registry `.waitForTaskToken` tasks issue their tokens from;
    /// `None`: the runner cannot wait for callbacks (such a task fails with
    /// States.Runtime).
    fn task_tokens(&self) -> Option<&TaskTokens> {
        None
    }
}

/// What StartExecution knows about the execution.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionContext {
    pub execution_arn: String,
    pub name: String,
    pub state_machine_arn: String,
    /// `$$.StateMachine.Name`.
    pub state_machine_name: String,
    /// ExecutionStarted's `roleArn` and `$$.Execution.RoleArn`.
    pub role_arn: String,
    pub start_time: OffsetDateTime,
    pub input: Value,
    /// Seeds the randomness of retry jitter and `States.UUID`. `None` (what
    /// the local cloud uses) seeds from the execution's identity and a random
    /// key; the fault simulator passes its own so a run replays exactly.
    pub rng_seed: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Succeeded { output: Value },
    Failed { error: String, cause: String },
    TimedOut,
    Aborted,
}

/// StopExecution's optional error and cause.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StopRequest {
    pub error: Option<String>,
    pub cause: Option<String>,
}

/// Stops executions: keep it, hand `signal()` to `run_execution`.
#[derive(Debug)]
pub struct CancellationHandle {
    sender: watch::Sender<Option<StopRequest>>,
}

/// The execution's side of a `CancellationHandle`, or of a plain
/// `watch::Receiver<bool>` (true = stop, without error or cause).
#[derive(Debug, Clone)]
pub struct CancellationSignal {
    source: StopSource,
}

#[derive(Debug, Clone)]
enum StopSource {
    Request(watch::Receiver<Option<StopRequest>>),
    Flag(watch::Receiver<bool>),
}

impl From<watch::Receiver<bool>> for CancellationSignal {
    fn from(receiver: watch::Receiver<bool>) -> Self {
        Self {
            source: StopSource::Flag(receiver),
        }
    }
}

impl CancellationHandle {
    pub fn new() -> Self {
        Self {
            sender: watch::Sender::new(None),
        }
    }

    pub fn signal(&self) -> CancellationSignal {
        CancellationSignal {
            source: StopSource::Request(self.sender.subscribe()),
        }
    }

    /// Aborts the execution at its next await point (a task, a wait, a retry
    /// interval) or state transition.
    pub fn stop(&self, request: StopRequest) {
        self.sender.send_replace(Some(request));
    }
}

impl Default for CancellationHandle {
    fn default() -> Self {
        Self::new()
    }
}

impl CancellationSignal {
    /// A signal that never fires (its handle is gone).
    pub fn never() -> Self {
        CancellationHandle::new().signal()
    }

    fn requested(&self) -> Option<StopRequest> {
        match &self.source {
            StopSource::Request(receiver) => receiver.borrow().clone(),
            StopSource::Flag(receiver) => (*receiver.borrow()).then(StopRequest::default),
        }
    }

    /// Resolves when a stop is requested; never, once the handle is gone.
    async fn stopped(&mut self) -> StopRequest {
        let stopped = match &mut self.source {
            StopSource::Request(receiver) => receiver
                .wait_for(Option::is_some)
                .await
                .map(|request| request.clone().unwrap_or_default()),
            StopSource::Flag(receiver) => receiver
                .wait_for(|stop| *stop)
                .await
                .map(|_| StopRequest::default()),
        };
        match stopped {
            Ok(request) => request,
            Err(_) => std::future::pending().await,
        }
    }
}

/// Why an execution stops before reaching an end state.
#[derive(Debug)]
enum Halt {
    Failed(StateFailure),
    FailState {
        error: Option<String>,
        cause: Option<String>,
    },
    TimedOut,
    Aborted(StopRequest),
    HistoryFull,
}

enum Step {
    Next { state: String, input: Value },
    End(Value),
}

/// The end of one Task attempt.
enum Attempt {
    Succeeded(Value),
    Failed(StateFailure),
}

/// Which clock a raced await's limit runs on.
#[derive(Debug, Clone, Copy)]
enum Limit {
    /// A task's or the execution's TimeoutSeconds (`Clock::timeout`).
    Task,
    /// A callback task's wait (`Clock::callback_timeout`).
    Callback,
}

/// How a raced await ended.
enum Raced<T> {
    Done(T),
    LimitReached,
    Stopped(StopRequest),
}

/// Runs the execution to its end and returns how it ended. The history goes
/// to `history` as it happens.
pub async fn run_execution(
    machine: &StateMachine,
    ctx: ExecutionContext,
    runner: &dyn TaskRunner,
    clock: &dyn Clock,
    history: &dyn HistorySink,
    cancel: CancellationSignal,
) -> Outcome {
    let deadline = deadline(machine, ctx.start_time);
    let mut run = Run::new(machine, ctx, runner, clock, history, cancel, deadline);
    run.execute().await
}

/// Where an execution interrupted by a restart of the local cloud picks up,
/// from the events it recorded before (see [`resume_point`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Resume {
    /// Enter a state again ([`resume_execution`]).
    At(ResumeAt),
    /// The history already ends with this outcome: nothing left to run.
    Ended(Outcome),
}

/// The state to enter again, with its raw input as recorded when it was
/// entered, and the id of the last event recorded before the interruption
/// (0: nothing was recorded, the execution starts as it would have).
#[derive(Debug, Clone, PartialEq)]
pub struct ResumeAt {
    pub state: String,
    pub input: Value,
    pub last_event_id: u64,
}

/// How to resume an execution from its `events` so far: the last state it
/// entered is entered again with the same input (that state's work may be
/// done or not; every Task of the saga is idempotent, so doing it again is
/// safe); before any state, StartAt with the execution input.
pub fn resume_point(machine: &StateMachine, events: &[HistoryEvent], input: &Value) -> Resume {
    let last_event_id = events.last().map_or(0, |last| last.id);
    if let Some(outcome) = events.last().and_then(|last| terminal_outcome(&last.kind)) {
        return Resume::Ended(outcome);
    }
    let entered = events.iter().rev().find_map(|event| match &event.kind {
        EventKind::StateEntered(_, details) => Some(details),
        _ => None,
    });
    let (state, input) = match entered {
        None => (machine.definition.start_at.clone(), input.clone()),
        Some(details) => match serde_json::from_str(&details.input) {
            Ok(input) => (details.name.clone(), input),
            Err(err) => {
                return Resume::Ended(Outcome::Failed {
                    error: names::RUNTIME.to_owned(),
                    cause: format!(
                        "cannot resume after a restart: the recorded input of '{}' \
                         is not JSON: {err}",
                        details.name
                    ),
                });
            }
        },
    };
    Resume::At(ResumeAt {
        state,
        input,
        last_event_id,
    })
}

fn terminal_outcome(kind: &EventKind) -> Option<Outcome> {
    let text = |text: &Option<String>| text.clone().unwrap_or_default();
    Some(match kind {
        EventKind::ExecutionSucceeded(details) => Outcome::Succeeded {
            output: serde_json::from_str(&details.output).unwrap_or(Value::Null),
        },
        EventKind::ExecutionFailed(details) => Outcome::Failed {
            error: text(&details.error),
            cause: text(&details.cause),
        },
        EventKind::ExecutionTimedOut(_) => Outcome::TimedOut,
        EventKind::ExecutionAborted(_) => Outcome::Aborted,
        _ => return None,
    })
}

/// Continues an execution from a [`ResumeAt`]: its events are numbered after
/// the earlier ones (no second `ExecutionStarted`), and the first is the
/// resumed state's `…StateEntered` (an execution that recorded nothing
/// starts with `ExecutionStarted`, as it would have). The execution's TimeoutSeconds counts
/// again from now: an execution that waited out a long stop of the local
/// cloud still runs to a final state (compensating if it must) instead of
/// timing out with money half-moved.
pub async fn resume_execution(
    machine: &StateMachine,
    ctx: ExecutionContext,
    runner: &dyn TaskRunner,
    clock: &dyn Clock,
    history: &dyn HistorySink,
    cancel: CancellationSignal,
    at: ResumeAt,
) -> Outcome {
    let deadline = deadline(machine, clock.now());
    let mut run = Run::new(machine, ctx, runner, clock, history, cancel, deadline);
    if at.last_event_id == 0 {
        return run.execute().await;
    }
    run.last_event_id = at.last_event_id;
    run.run_from(at.state, at.input).await
}

fn deadline(machine: &StateMachine, from: OffsetDateTime) -> Option<OffsetDateTime> {
    machine
        .timeout_seconds()
        .map(|seconds| from.saturating_add(time::Duration::seconds(clamp_i64(seconds))))
}

fn clamp_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn arn_part(arn: &str, index: usize) -> Option<&str> {
    arn.split(':').nth(index).filter(|part| !part.is_empty())
}

/// Jitter and States.UUID need randomness, not secrecy: std's randomly
/// keyed hasher mixed with the execution's identity is enough.
fn seed(ctx: &ExecutionContext) -> u64 {
    if let Some(seed) = ctx.rng_seed {
        return seed;
    }
    let mut hasher = RandomState::new().build_hasher();
    ctx.execution_arn.hash(&mut hasher);
    ctx.start_time.unix_timestamp_nanos().hash(&mut hasher);
    hasher.finish()
}

struct Run<'a> {
    machine: &'a StateMachine,
    ctx: ExecutionContext,
    runner: &'a dyn TaskRunner,
    clock: &'a dyn Clock,
    history: &'a dyn HistorySink,
    cancel: CancellationSignal,
    deadline: Option<OffsetDateTime>,
    region: String,
    rng: StdRng,
    last_event_id: u64,
}

/// JSON text as history events carry it.
fn to_text(value: &Value) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// `2019-03-26T20:14:13.192Z`, the form of `$$` timestamps.
pub fn iso_millis(timestamp: OffsetDateTime) -> String {
    let t = timestamp.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

impl<'a> Run<'a> {
    fn new(
        machine: &'a StateMachine,
        ctx: ExecutionContext,
        runner: &'a dyn TaskRunner,
        clock: &'a dyn Clock,
        history: &'a dyn HistorySink,
        cancel: CancellationSignal,
        deadline: Option<OffsetDateTime>,
    ) -> Self {
        Self {
            machine,
            region: arn_part(&ctx.state_machine_arn, 3)
                .unwrap_or("us-east-1")
                .to_owned(),
            rng: StdRng::seed_from_u64(seed(&ctx)),
            ctx,
            runner,
            clock,
            history,
            cancel,
            deadline,
            last_event_id: 0,
        }
    }
}

impl Run<'_> {
    async fn execute(&mut self) -> Outcome {
        let started = EventKind::ExecutionStarted(ExecutionStartedEventDetails {
            input: to_text(&self.ctx.input),
            input_details: DataDetails::default(),
            role_arn: self.ctx.role_arn.clone(),
        });
        self.record_final(started);
        let start_at = self.machine.definition.start_at.clone();
        let input = self.ctx.input.clone();
        self.run_from(start_at, input).await
    }

    /// Runs states from `name` until the execution ends.
    async fn run_from(&mut self, mut name: String, mut input: Value) -> Outcome {
        // Each state records at least one event, so the history bound also
        // bounds this loop; HISTORY_EVENT_COUNT_MAX iterations is a backstop.
        for _ in 0..HISTORY_EVENT_COUNT_MAX {
            let step = match self.check_interrupts() {
                Ok(()) => self.run_state(&name, input).await,
                Err(halt) => Err(halt),
            };
            match step {
                Ok(Step::Next { state, input: next }) => {
                    name = state;
                    input = next;
                }
                Ok(Step::End(output)) => return self.succeed(output),
                Err(halt) => return self.halt(halt),
            }
        }
        self.halt(Halt::HistoryFull)
    }

    fn succeed(&mut self, output: Value) -> Outcome {
        self.record_final(EventKind::ExecutionSucceeded(
            ExecutionSucceededEventDetails {
                output: to_text(&output),
                output_details: DataDetails::default(),
            },
        ));
        Outcome::Succeeded { output }
    }

    fn halt(&mut self, halt: Halt) -> Outcome {
        let (kind, outcome) = match halt {
            Halt::Failed(failure) => (
                EventKind::ExecutionFailed(ErrorDetails {
                    error: Some(failure.error.clone()),
                    cause: Some(failure.cause.clone()),
                }),
                Outcome::Failed {
                    error: failure.error,
                    cause: failure.cause,
                },
            ),
            Halt::FailState { error, cause } => (
                EventKind::ExecutionFailed(ErrorDetails {
                    error: error.clone(),
                    cause: cause.clone(),
                }),
                Outcome::Failed {
                    error: error.unwrap_or_default(),
                    cause: cause.unwrap_or_default(),
                },
            ),
            Halt::TimedOut => (
                EventKind::ExecutionTimedOut(ErrorDetails {
                    error: Some(names::TIMEOUT.to_owned()),
                    cause: Some(format!(
                        "The execution ran longer than its TimeoutSeconds ({} s).",
                        self.machine.timeout_seconds().unwrap_or_default()
                    )),
                }),
                Outcome::TimedOut,
            ),
            Halt::Aborted(request) => (
                EventKind::ExecutionAborted(ErrorDetails {
                    error: request.error,
                    cause: request.cause,
                }),
                Outcome::Aborted,
            ),
            Halt::HistoryFull => {
                let cause = format!(
                    "The execution reached the limit of {HISTORY_EVENT_COUNT_MAX} history events."
                );
                return self.halt(Halt::Failed(StateFailure::runtime(cause)));
            }
        };
        self.record_final(kind);
        outcome
    }

    /// Records an event; refuses once the history is full.
    fn record(&mut self, kind: EventKind) -> Result<u64, Halt> {
        // Keep one slot for the terminal event.
        if self.last_event_id + 1 >= HISTORY_EVENT_COUNT_MAX {
            return Err(Halt::HistoryFull);
        }
        Ok(self.record_final(kind))
    }

    fn record_final(&mut self, kind: EventKind) -> u64 {
        let id = self.last_event_id + 1;
        self.history.record(HistoryEvent {
            id,
            previous_event_id: self.last_event_id,
            timestamp: self.clock.now(),
            kind,
        });
        self.last_event_id = id;
        id
    }

    fn check_interrupts(&self) -> Result<(), Halt> {
        if let Some(request) = self.cancel.requested() {
            return Err(Halt::Aborted(request));
        }
        self.remaining().map(|_| ())
    }

    /// Time left before the execution's TimeoutSeconds; `TimedOut` if none.
    fn remaining(&self) -> Result<Option<Duration>, Halt> {
        let Some(deadline) = self.deadline else {
            return Ok(None);
        };
        let left = deadline - self.clock.now();
        match Duration::try_from(left) {
            Ok(left) if !left.is_zero() => Ok(Some(left)),
            _ => Err(Halt::TimedOut),
        }
    }

    /// Awaits `work`, unless the execution is stopped or `limit` passes first
    /// (a task timeout: `Clock::timeout`).
    async fn race<T>(&self, work: impl Future<Output = T>, limit: Option<Duration>) -> Raced<T> {
        self.race_on(work, limit, Limit::Task).await
    }

    async fn race_on<T>(
        &self,
        work: impl Future<Output = T>,
        limit: Option<Duration>,
        kind: Limit,
    ) -> Raced<T> {
        let mut cancel = self.cancel.clone();
        let clock = self.clock;
        let timer = async move {
            match (limit, kind) {
                (Some(limit), Limit::Task) => clock.timeout(limit).await,
                (Some(limit), Limit::Callback) => clock.callback_timeout(limit).await,
                (None, _) => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            request = cancel.stopped() => Raced::Stopped(request),
            done = work => Raced::Done(done),
            () = timer => Raced::LimitReached,
        }
    }

    /// A Wait or a retry interval, cut short by the execution's deadline.
    async fn sleep(&self, duration: Duration) -> Result<(), Halt> {
        let remaining = self.remaining()?;
        let overruns = remaining.is_some_and(|left| left < duration);
        let nap = remaining.filter(|_| overruns).unwrap_or(duration);
        let mut cancel = self.cancel.clone();
        tokio::select! {
            biased;
            request = cancel.stopped() => Err(Halt::Aborted(request)),
            () = self.clock.sleep(nap) => {
                if overruns { Err(Halt::TimedOut) } else { Ok(()) }
            }
        }
    }

    fn context_object(&self, state: &str, entered: OffsetDateTime, retry_count: u32) -> Value {
        let machine_arn = &self.ctx.state_machine_arn;
        json!({
            "Execution": {
                "Id": self.ctx.execution_arn,
                "Name": self.ctx.name,
                "StartTime": iso_millis(self.ctx.start_time),
                "Input": self.ctx.input,
                "RoleArn": self.ctx.role_arn,
            },
            "StateMachine": {
                "Id": machine_arn,
                "Name": self.ctx.state_machine_name,
            },
            "State": {
                "Name": state,
                "EnteredTime": iso_millis(entered),
                "RetryCount": retry_count,
            },
        })
    }
}

/// What one state needs while it runs.
struct StateRun<'s> {
    state: &'s State,
    entered_id: u64,
    entered: OffsetDateTime,
    raw_input: Value,
}

impl StateRun<'_> {
    /// `States.Runtime` with AWS's prefix naming the state.
    fn runtime(&self, cause: impl std::fmt::Display) -> Halt {
        Halt::Failed(StateFailure::runtime(format!(
            "An error occurred while executing the state '{}' \
             (entered at the event id #{}). {cause}",
            self.state.name, self.entered_id
        )))
    }

    fn input_path(&self) -> Result<Value, Halt> {
        select_data(&self.state.input_path, &self.raw_input).map_err(|e| self.runtime(e))
    }

    fn output_path(&self, data: &Value) -> Result<Value, Halt> {
        select_data(&self.state.output_path, data).map_err(|e| self.runtime(e))
    }

    fn result_path(&self, result_path: &ResultPath, result: Value) -> Result<Value, Halt> {
        match result_path {
            ResultPath::Discard => Ok(self.raw_input.clone()),
            ResultPath::Insert(path) => {
                let mut combined = self.raw_input.clone();
                path.insert(&mut combined, result).map_err(|_| {
                    self.runtime(format!(
                        "Unable to apply ReferencePath {path} to input {}",
                        to_text(&self.raw_input)
                    ))
                })?;
                Ok(combined)
            }
        }
    }

    fn next(&self, transition: &Transition, output: Value) -> Step {
        match transition {
            Transition::Next(state) => Step::Next {
                state: state.clone(),
                input: output,
            },
            Transition::End => Step::End(output),
        }
    }
}

fn select_data(data_path: &DataPath, data: &Value) -> Result<Value, String> {
    match data_path {
        DataPath::Null => Ok(json!({})),
        DataPath::Select(path) => path.select(data).cloned().ok_or_else(|| {
            format!(
                "Invalid path '{path}' : No results for path: {}",
                path.normalized()
            )
        }),
    }
}

fn state_type(kind: &StateKind) -> StateType {
    match kind {
        StateKind::Pass(_) => StateType::Pass,
        StateKind::Task(_) => StateType::Task,
        StateKind::Choice(_) => StateType::Choice,
        StateKind::Wait(_) => StateType::Wait,
        StateKind::Succeed => StateType::Succeed,
        StateKind::Fail(_) => StateType::Fail,
    }
}

impl Run<'_> {
    async fn run_state(&mut self, name: &str, raw_input: Value) -> Result<Step, Halt> {
        let machine = self.machine;
        let state = machine.definition.states.get(name).ok_or_else(|| {
            Halt::Failed(StateFailure::runtime(format!("no state named '{name}'")))
        })?;
        let entered_id = self.record(EventKind::StateEntered(
            state_type(&state.kind),
            StateEnteredEventDetails {
                name: name.to_owned(),
                input: to_text(&raw_input),
                input_details: DataDetails::default(),
            },
        ))?;
        let run = StateRun {
            state,
            entered_id,
            entered: self.clock.now(),
            raw_input,
        };
        match &state.kind {
            StateKind::Pass(pass) => self.pass(&run, pass),
            StateKind::Task(task) => self.task(&run, task).await,
            StateKind::Choice(choice) => self.choice(&run, choice),
            StateKind::Wait(wait) => self.wait(&run, wait).await,
            StateKind::Succeed => {
                let effective = run.input_path()?;
                let output = run.output_path(&effective)?;
                self.exit(&run, output).map(Step::End)
            }
            StateKind::Fail(fail) => Err(self.fail(&run, fail)),
        }
    }

    /// Records `…StateExited`, refusing an output over the payload quota.
    fn exit(&mut self, run: &StateRun<'_>, output: Value) -> Result<Value, Halt> {
        let text = to_text(&output);
        if text.len() > PAYLOAD_BYTES_MAX {
            return Err(Halt::Failed(StateFailure::new(
                names::DATA_LIMIT_EXCEEDED,
                format!(
                    "The state/task '{}' returned a result with a size exceeding \
                     the maximum number of bytes service limit.",
                    run.state.name
                ),
            )));
        }
        self.record(EventKind::StateExited(
            state_type(&run.state.kind),
            StateExitedEventDetails {
                name: run.state.name.clone(),
                output: text,
                output_details: DataDetails::default(),
            },
        ))?;
        Ok(output)
    }

    fn evaluate(
        &mut self,
        run: &StateRun<'_>,
        payload: &Payload,
        data: &Value,
        retry_count: u32,
    ) -> Result<Value, Halt> {
        let context = self.context_object(&run.state.name, run.entered, retry_count);
        self.evaluate_in(run, payload, data, &context)
    }

    fn evaluate_in(
        &mut self,
        run: &StateRun<'_>,
        payload: &Payload,
        data: &Value,
        context: &Value,
    ) -> Result<Value, Halt> {
        let mut scope = Scope::new(data, context, &mut self.rng);
        payload.evaluate(&mut scope).map_err(|e| run.runtime(e))
    }

    fn pass(&mut self, run: &StateRun<'_>, pass: &PassState) -> Result<Step, Halt> {
        let effective = run.input_path()?;
        let result = match (&pass.result, &pass.parameters) {
            (Some(result), _) => result.clone(),
            (None, Some(parameters)) => self.evaluate(run, parameters, &effective, 0)?,
            (None, None) => effective,
        };
        let combined = run.result_path(&pass.result_path, result)?;
        let output = run.output_path(&combined)?;
        let output = self.exit(run, output)?;
        Ok(run.next(&pass.transition, output))
    }

    fn choice(&mut self, run: &StateRun<'_>, choice: &ChoiceState) -> Result<Step, Halt> {
        let effective = run.input_path()?;
        let context = self.context_object(&run.state.name, run.entered, 0);
        let mut next = None;
        for rule in &choice.choices {
            if rule
                .rule
                .evaluate(&effective, &context)
                .map_err(|e| run.runtime(e))?
            {
                next = Some(rule.next.clone());
                break;
            }
        }
        let Some(next) = next.or_else(|| choice.default.clone()) else {
            return Err(Halt::Failed(StateFailure::new(
                names::NO_CHOICE_MATCHED,
                format!(
                    "An error occurred while executing the state '{}' \
                     (entered at the event id #{}). No Choice rule matched the input \
                     and the state has no Default.",
                    run.state.name, run.entered_id
                ),
            )));
        };
        let output = run.output_path(&effective)?;
        let output = self.exit(run, output)?;
        Ok(Step::Next {
            state: next,
            input: output,
        })
    }

    async fn wait(&mut self, run: &StateRun<'_>, wait: &WaitState) -> Result<Step, Halt> {
        let effective = run.input_path()?;
        let until = |timestamp: OffsetDateTime| {
            Duration::try_from(timestamp - self.clock.now()).unwrap_or(Duration::ZERO)
        };
        let duration = match &wait.wait {
            WaitFor::Seconds(seconds) => Duration::from_secs(*seconds),
            WaitFor::Timestamp(timestamp) => until(*timestamp),
            WaitFor::SecondsPath(path) => path
                .select(&effective)
                .and_then(Value::as_u64)
                .map(Duration::from_secs)
                .ok_or_else(|| {
                    run.runtime(format!(
                        "The SecondsPath parameter does not reference \
                         a valid non-negative integer: '{path}'"
                    ))
                })?,
            WaitFor::TimestampPath(path) => path
                .select(&effective)
                .and_then(Value::as_str)
                .and_then(super::choice::parse_timestamp)
                .map(until)
                .ok_or_else(|| {
                    run.runtime(format!(
                        "The TimestampPath parameter does not reference \
                         a valid ISO-8601 timestamp: '{path}'"
                    ))
                })?,
        };
        self.sleep(duration).await?;
        let output = run.output_path(&effective)?;
        let output = self.exit(run, output)?;
        Ok(run.next(&wait.transition, output))
    }

    fn fail(&mut self, run: &StateRun<'_>, fail: &FailState) -> Halt {
        let context = self.context_object(&run.state.name, run.entered, 0);
        let mut text = |source: &Option<FailText>, field: &str| -> Result<Option<String>, Halt> {
            match source {
                None => Ok(None),
                Some(FailText::Literal(text)) => Ok(Some(text.clone())),
                Some(FailText::Dynamic(expression)) => {
                    let mut scope = Scope::new(&run.raw_input, &context, &mut self.rng);
                    match expression.evaluate(&mut scope) {
                        Ok(Some(Value::String(text))) => Ok(Some(text)),
                        Ok(_) => Err(run.runtime(format!(
                            "The {field} '{}' does not select a string",
                            expression.text()
                        ))),
                        Err(e) => Err(run.runtime(e)),
                    }
                }
            }
        };
        let error = match text(&fail.error, "ErrorPath") {
            Ok(error) => error,
            Err(halt) => return halt,
        };
        match text(&fail.cause, "CausePath") {
            Ok(cause) => Halt::FailState { error, cause },
            Err(halt) => halt,
        }
    }
}

impl Run<'_> {
    async fn task(&mut self, run: &StateRun<'_>, task: &TaskState) -> Result<Step, Halt> {
        let effective = run.input_path()?;
        let mut retries_done = vec![0_u32; task.retry.len()];
        let mut retry_count = 0_u32;
        // Bounded by MaxAttempts of each retrier and by the history limit:
        // every attempt records at least two events.
        loop {
            let failure = match self.attempt(run, task, &effective, retry_count).await? {
                Attempt::Succeeded(result) => {
                    return self.task_succeeded(run, task, result, retry_count);
                }
                Attempt::Failed(failure) => failure,
            };
            if failure.is_terminal() {
                return Err(Halt::Failed(failure));
            }
            let retrier = task
                .retry
                .iter()
                .position(|r| error_matches(&r.error_equals, &failure.error));
            if let Some(index) = retrier {
                let spec = &task.retry[index];
                if retries_done[index] < spec.max_attempts {
                    let delay = jittered(
                        backoff_delay(spec, retries_done[index]),
                        spec.jitter,
                        &mut self.rng,
                    );
                    retries_done[index] += 1;
                    retry_count += 1;
                    self.sleep(delay).await?;
                    continue;
                }
            }
            return self.task_caught(run, task, failure);
        }
    }

    fn task_succeeded(
        &mut self,
        run: &StateRun<'_>,
        task: &TaskState,
        result: Value,
        retry_count: u32,
    ) -> Result<Step, Halt> {
        let selected = match &task.result_selector {
            Some(selector) => self.evaluate(run, selector, &result, retry_count)?,
            None => result,
        };
        let combined = run.result_path(&task.result_path, selected)?;
        let output = run.output_path(&combined)?;
        let output = self.exit(run, output)?;
        Ok(run.next(&task.transition, output))
    }

    /// The first catcher whose ErrorEquals matches; its ResultPath applies to
    /// the state's raw input and OutputPath does not apply.
    fn task_caught(
        &mut self,
        run: &StateRun<'_>,
        task: &TaskState,
        failure: StateFailure,
    ) -> Result<Step, Halt> {
        let Some(catcher) = task
            .catch
            .iter()
            .find(|c| error_matches(&c.error_equals, &failure.error))
        else {
            return Err(Halt::Failed(failure));
        };
        let error_output = json!({"Error": failure.error, "Cause": failure.cause});
        let output = run.result_path(&catcher.result_path, error_output)?;
        let output = self.exit(run, output)?;
        Ok(Step::Next {
            state: catcher.next.clone(),
            input: output,
        })
    }

    /// One call of the task's resource, with its history events. A callback
    /// task's token is issued first: its Parameters read it at `$$.Task.Token`.
    async fn attempt(
        &mut self,
        run: &StateRun<'_>,
        task: &TaskState,
        effective: &Value,
        retry_count: u32,
    ) -> Result<Attempt, Halt> {
        let mut context = self.context_object(&run.state.name, run.entered, retry_count);
        let token = self.issue_token(run, task)?;
        if let Some(token) = &token {
            context["Task"] = json!({"Token": token.text()});
        }
        let parameters = match &task.parameters {
            Some(parameters) => self.evaluate_in(run, parameters, effective, &context)?,
            None => effective.clone(),
        };
        match &task.resource {
            Resource::LambdaFunction(arn) => self.attempt_function(task, arn, parameters).await,
            Resource::LambdaInvoke => {
                let function = function_name(run, &parameters)?;
                self.attempt_invoke(task, &function, parameters).await
            }
            Resource::WaitForTaskToken => {
                let function = function_name(run, &parameters)?;
                let token = token.ok_or_else(|| run.runtime(NO_TASK_TOKENS))?;
                self.attempt_callback(task, &function, parameters, token)
                    .await
            }
        }
    }

    async fn call(
        &self,
        resource: &str,
        input: Value,
        timeout_seconds: Option<u64>,
    ) -> Result<Result<Value, TaskFailure>, Halt> {
        let task_limit = timeout_seconds.map(Duration::from_secs);
        let execution_limit = self.remaining()?;
        let execution_first = match (task_limit, execution_limit) {
            (Some(task), Some(execution)) => execution < task,
            (None, Some(_)) => true,
            _ => false,
        };
        let limit = if execution_first {
            execution_limit
        } else {
            task_limit
        };
        let runner = self.runner;
        match self
            .race(runner.run(resource, input, task_limit), limit)
            .await
        {
            Raced::Done(result) => Ok(result),
            Raced::Stopped(request) => Err(Halt::Aborted(request)),
            Raced::LimitReached if execution_first => Err(Halt::TimedOut),
            Raced::LimitReached => Ok(Err(TaskFailure {
                error: names::TIMEOUT.to_owned(),
                cause: String::new(),
            })),
        }
    }

    async fn attempt_function(
        &mut self,
        task: &TaskState,
        arn: &str,
        input: Value,
    ) -> Result<Attempt, Halt> {
        self.record(EventKind::LambdaFunctionScheduled(
            LambdaFunctionScheduledEventDetails {
                resource: arn.to_owned(),
                input: to_text(&input),
                input_details: DataDetails::default(),
                timeout_in_seconds: task.timeout_seconds,
            },
        ))?;
        self.record(EventKind::LambdaFunctionStarted)?;
        match self.call(arn, input, task.timeout_seconds).await? {
            Ok(output) => {
                self.record(EventKind::LambdaFunctionSucceeded(
                    LambdaFunctionSucceededEventDetails {
                        output: to_text(&output),
                        output_details: DataDetails::default(),
                    },
                ))?;
                Ok(Attempt::Succeeded(output))
            }
            Err(failure) => {
                let details = ErrorDetails {
                    error: Some(failure.error.clone()),
                    cause: Some(failure.cause.clone()).filter(|c| !c.is_empty()),
                };
                self.record(if failure.error == names::TIMEOUT {
                    EventKind::LambdaFunctionTimedOut(details)
                } else {
                    EventKind::LambdaFunctionFailed(details)
                })?;
                Ok(Attempt::Failed(StateFailure::new(
                    failure.error,
                    failure.cause,
                )))
            }
        }
    }

    async fn attempt_invoke(
        &mut self,
        task: &TaskState,
        function: &str,
        parameters: Value,
    ) -> Result<Attempt, Halt> {
        self.record_task_start(&INVOKE, task, &parameters)?;
        let payload = invoke_payload(&parameters);
        let called = self.call(function, payload, task.timeout_seconds).await?;
        let ended = called.map(|result| self.invoke_result(result));
        self.task_ended(&INVOKE, ended)
    }

    /// TaskScheduled and TaskStarted of a `lambda:invoke` attempt.
    fn record_task_start(
        &mut self,
        resource: &TaskResource,
        task: &TaskState,
        parameters: &Value,
    ) -> Result<(), Halt> {
        self.record(EventKind::TaskScheduled(TaskScheduledEventDetails {
            resource_type: resource.resource_type.to_owned(),
            resource: resource.resource.to_owned(),
            region: self.region.clone(),
            parameters: to_text(parameters),
            timeout_in_seconds: task.timeout_seconds,
            heartbeat_in_seconds: task.heartbeat_seconds,
        }))?;
        self.record(EventKind::TaskStarted(TaskStartedEventDetails {
            resource_type: resource.resource_type.to_owned(),
            resource: resource.resource.to_owned(),
        }))?;
        Ok(())
    }

    /// The function's payload wrapped in the Lambda Invoke response, with a
    /// request id from the execution's random source.
    fn invoke_result(&mut self, payload: Value) -> Value {
        let request_id = uuid_v4(rand::Rng::random(&mut self.rng));
        invoke_output(payload, &request_id)
    }

    /// TaskSucceeded, or TaskFailed / TaskTimedOut, ending an attempt.
    fn task_ended(
        &mut self,
        resource: &TaskResource,
        ended: Result<Value, TaskFailure>,
    ) -> Result<Attempt, Halt> {
        let (resource_type, resource) = (
            resource.resource_type.to_owned(),
            resource.resource.to_owned(),
        );
        match ended {
            Ok(output) => {
                self.record(EventKind::TaskSucceeded(TaskSucceededEventDetails {
                    resource_type,
                    resource,
                    output: to_text(&output),
                    output_details: DataDetails::default(),
                }))?;
                Ok(Attempt::Succeeded(output))
            }
            Err(failure) => {
                let details = TaskErrorEventDetails {
                    resource_type,
                    resource,
                    error: Some(failure.error.clone()).filter(|e| !e.is_empty()),
                    cause: Some(failure.cause.clone()).filter(|c| !c.is_empty()),
                };
                let timed_out =
                    failure.error == names::TIMEOUT || failure.error == names::HEARTBEAT_TIMEOUT;
                self.record(if timed_out {
                    EventKind::TaskTimedOut(details)
                } else {
                    EventKind::TaskFailed(details)
                })?;
                Ok(Attempt::Failed(StateFailure::new(
                    failure.error,
                    failure.cause,
                )))
            }
        }
    }
}

/// Why a `.waitForTaskToken` task cannot run on this runner.
const NO_TASK_TOKENS: &str = "The task runner issues no task tokens, so a .waitForTaskToken task cannot wait for its callback.";

/// `resourceType` and `resource` of the Task* events.
struct TaskResource {
    resource_type: &'static str,
    resource: &'static str,
}

const INVOKE: TaskResource = TaskResource {
    resource_type: "lambda",
    resource: "invoke",
};

const INVOKE_WAIT_FOR_TASK_TOKEN: TaskResource = TaskResource {
    resource_type: "lambda",
    resource: "invoke.waitForTaskToken",
};

fn function_name(run: &StateRun<'_>, parameters: &Value) -> Result<String, Halt> {
    match parameters.get("FunctionName") {
        Some(Value::String(function)) => Ok(function.clone()),
        _ => Err(run.runtime("lambda:invoke needs a string FunctionName")),
    }
}

/// The `Payload` parameter of `lambda:invoke`, `{}` when absent.
fn invoke_payload(parameters: &Value) -> Value {
    parameters
        .get("Payload")
        .cloned()
        .unwrap_or_else(|| json!({}))
}

/// The callback pattern (`lambda:invoke.waitForTaskToken`).
impl<'a> Run<'a> {
    /// A fresh token for an attempt of a callback task; `None` for other tasks.
    fn issue_token(
        &mut self,
        run: &StateRun<'_>,
        task: &TaskState,
    ) -> Result<Option<OpenToken<'a>>, Halt> {
        if task.resource != Resource::WaitForTaskToken {
            return Ok(None);
        }
        let runner: &'a dyn TaskRunner = self.runner;
        let tokens = runner
            .task_tokens()
            .ok_or_else(|| run.runtime(NO_TASK_TOKENS))?;
        let uuid = uuid_v4(rand::Rng::random(&mut self.rng));
        Ok(Some(tokens.issue(&uuid)))
    }

    /// One attempt: TaskScheduled, TaskStarted, the Lambda invoked with the
    /// Payload (its failure fails the attempt), TaskSubmitted with its
    /// result, then the token's callback: SendTaskSuccess's output is the
    /// task's result. The token is registered before the Lambda runs, so a
    /// callback sent from inside it is kept and applied.
    async fn attempt_callback(
        &mut self,
        task: &TaskState,
        function: &str,
        parameters: Value,
        mut token: OpenToken<'_>,
    ) -> Result<Attempt, Halt> {
        let resource = &INVOKE_WAIT_FOR_TASK_TOKEN;
        self.record_task_start(resource, task, &parameters)?;
        let mut timers = CallbackTimers::new(self.clock.now(), task);
        let runner = self.runner;
        let invoke = runner.run(
            function,
            invoke_payload(&parameters),
            task.timeout_seconds.map(Duration::from_secs),
        );
        let invoked = self
            .with_callback_timers(invoke, &mut token.heartbeats, &mut timers)
            .await?;
        let result = match invoked.and_then(|result| result) {
            Ok(result) => self.invoke_result(result),
            Err(failure) => {
                token.close();
                return self.task_ended(resource, Err(failure));
            }
        };
        self.record(EventKind::TaskSubmitted(TaskSubmittedEventDetails {
            resource_type: resource.resource_type.to_owned(),
            resource: resource.resource.to_owned(),
            output: to_text(&result),
            output_details: DataDetails::default(),
        }))?;
        let waited = self
            .with_callback_timers(token.callbacks.next(), &mut token.heartbeats, &mut timers)
            .await?;
        // A callback accepted just before a timer fired still wins: its
        // sender was told it was applied.
        let ended = match (waited, token.close()) {
            (Ok(callback), _) | (Err(_), Some(callback)) => callback_result(callback),
            (Err(failure), None) => Err(failure),
        };
        self.task_ended(resource, ended)
    }

    /// Awaits `work` of a callback attempt against the execution's stop and
    /// TimeoutSeconds and the task's TimeoutSeconds and HeartbeatSeconds;
    /// every heartbeat restarts the HeartbeatSeconds timer. The inner `Err`
    /// is the task's `States.Timeout` or `States.HeartbeatTimeout`.
    async fn with_callback_timers<T>(
        &self,
        work: impl Future<Output = T>,
        heartbeats: &mut Heartbeats,
        timers: &mut CallbackTimers,
    ) -> Result<Result<T, TaskFailure>, Halt> {
        let mut work = std::pin::pin!(work);
        // One turn per heartbeat. As on AWS, only the TimeoutSeconds of the
        // task and of the execution bound how many heartbeats come.
        loop {
            let limit = timers.next_limit(self.clock.now(), self.remaining()?);
            let step = async {
                tokio::select! {
                    biased;
                    done = &mut work => Some(done),
                    () = heartbeats.next() => None,
                }
            };
            let left = limit.map(|(left, _)| left);
            match self.race_on(step, left, Limit::Callback).await {
                Raced::Done(Some(done)) => return Ok(Ok(done)),
                Raced::Done(None) => timers.heartbeat_at(self.clock.now()),
                Raced::Stopped(request) => return Err(Halt::Aborted(request)),
                Raced::LimitReached => {
                    let error = match limit.map(|(_, timer)| timer) {
                        Some(CallbackTimer::Task) => names::TIMEOUT,
                        Some(CallbackTimer::Heartbeat) => names::HEARTBEAT_TIMEOUT,
                        // Without a limit nothing fires.
                        Some(CallbackTimer::Execution) | None => return Err(Halt::TimedOut),
                    };
                    return Ok(Err(TaskFailure {
                        error: error.to_owned(),
                        cause: String::new(),
                    }));
                }
            }
        }
    }
}

/// A callback as the attempt's end: SendTaskFailure's error may be absent
/// (AWS records the TaskFailed event without one).
fn callback_result(callback: Callback) -> Result<Value, TaskFailure> {
    match callback {
        Callback::Succeeded(output) => Ok(output),
        Callback::Failed { error, cause } => Err(TaskFailure {
            error: error.unwrap_or_default(),
            cause: cause.unwrap_or_default(),
        }),
    }
}

/// The timer of a callback attempt that fires first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallbackTimer {
    /// The task's TimeoutSeconds: `States.Timeout`.
    Task,
    /// HeartbeatSeconds without a heartbeat: `States.HeartbeatTimeout`.
    Heartbeat,
    /// The execution's TimeoutSeconds: the execution times out.
    Execution,
}

/// The task timers of one callback attempt, both counted from TaskStarted
/// (the Lambda call included); a heartbeat restarts HeartbeatSeconds.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CallbackTimers {
    started: OffsetDateTime,
    last_heartbeat: OffsetDateTime,
    timeout: Option<Duration>,
    heartbeat: Option<Duration>,
}

impl CallbackTimers {
    fn new(started: OffsetDateTime, task: &TaskState) -> Self {
        Self {
            started,
            last_heartbeat: started,
            timeout: task.timeout_seconds.map(Duration::from_secs),
            heartbeat: task.heartbeat_seconds.map(Duration::from_secs),
        }
    }

    fn heartbeat_at(&mut self, now: OffsetDateTime) {
        self.last_heartbeat = now;
    }

    /// The timer that fires first and the time left on it. On a tie the
    /// task's TimeoutSeconds wins, then HeartbeatSeconds (like `call`, the
    /// execution's deadline wins only when it is strictly earlier).
    fn next_limit(
        &self,
        now: OffsetDateTime,
        execution_left: Option<Duration>,
    ) -> Option<(Duration, CallbackTimer)> {
        let left = |from: OffsetDateTime, length: Duration| {
            length.saturating_sub(Duration::try_from(now - from).unwrap_or(Duration::ZERO))
        };
        [
            self.timeout
                .map(|timeout| (left(self.started, timeout), CallbackTimer::Task)),
            self.heartbeat.map(|heartbeat| {
                (
                    left(self.last_heartbeat, heartbeat),
                    CallbackTimer::Heartbeat,
                )
            }),
            execution_left.map(|left| (left, CallbackTimer::Execution)),
        ]
        .into_iter()
        .flatten()
        .min_by_key(|(left, _)| *left)
    }
}

/// The result of the `lambda:invoke` integration: the function's payload
/// wrapped in the Lambda Invoke response.
fn invoke_output(payload: Value, request_id: &str) -> Value {
    let length = to_text(&payload).len().to_string();
    let headers = [
        ("Connection", "keep-alive"),
        ("Content-Length", length.as_str()),
        ("Content-Type", "application/json"),
        ("X-Amz-Executed-Version", "$LATEST"),
        ("x-amzn-Remapped-Content-Length", "0"),
        ("x-amzn-RequestId", request_id),
    ];
    let all: serde_json::Map<String, Value> = headers
        .iter()
        .map(|(name, value)| ((*name).to_owned(), json!([value])))
        .collect();
    let single: serde_json::Map<String, Value> = headers
        .iter()
        .map(|(name, value)| ((*name).to_owned(), json!(value)))
        .collect();
    json!({
        "ExecutedVersion": "$LATEST",
        "Payload": payload,
        "SdkHttpMetadata": {
            "AllHttpHeaders": all,
            "HttpHeaders": single,
            "HttpStatusCode": 200,
        },
        "SdkResponseMetadata": {"RequestId": request_id},
        "StatusCode": 200,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn timers(timeout: Option<u64>, heartbeat: Option<u64>) -> CallbackTimers {
        let started = datetime!(2024-01-01 0:00 UTC);
        CallbackTimers {
            started,
            last_heartbeat: started,
            timeout: timeout.map(Duration::from_secs),
            heartbeat: heartbeat.map(Duration::from_secs),
        }
    }

    #[test]
    fn the_first_callback_timer_to_fire_is_chosen_and_heartbeats_restart_only_theirs() {
        let at = |seconds: i64| datetime!(2024-01-01 0:00 UTC) + time::Duration::seconds(seconds);
        let secs = Duration::from_secs;
        // GIVEN TimeoutSeconds 12 and HeartbeatSeconds 5, just started
        let mut timers = timers(Some(12), Some(5));
        assert_eq!(
            timers.next_limit(at(0), None),
            Some((secs(5), CallbackTimer::Heartbeat))
        );
        // WHEN heartbeats come at 4 s and 8 s THEN the heartbeat timer restarts
        timers.heartbeat_at(at(4));
        assert_eq!(
            timers.next_limit(at(4), None),
            Some((secs(5), CallbackTimer::Heartbeat))
        );
        timers.heartbeat_at(at(8));
        // AND the task's TimeoutSeconds, counted from the start, comes first
        assert_eq!(
            timers.next_limit(at(8), None),
            Some((secs(4), CallbackTimer::Task))
        );
        // AND the execution's deadline wins only when strictly earlier
        assert_eq!(
            timers.next_limit(at(8), Some(secs(4))),
            Some((secs(4), CallbackTimer::Task))
        );
        assert_eq!(
            timers.next_limit(at(8), Some(secs(3))),
            Some((secs(3), CallbackTimer::Execution))
        );
        // AND a timer already past has nothing left; no timers, no limit
        assert_eq!(
            timers.next_limit(at(30), None),
            Some((Duration::ZERO, CallbackTimer::Task))
        );
        let idle = CallbackTimers {
            timeout: None,
            heartbeat: None,
            ..timers
        };
        assert_eq!(idle.next_limit(at(0), None), None);
    }
}
