//! The simulated platform: Lambda (the real handlers, called through their
//! library entry points with the runtime's JSON in and out), Step Functions
//! (the real ASL files — the payment saga and the refund saga — through the
//! real interpreter) and the two ports api-handler uses to reach them. The
//! platform's faults are injected here.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use api_handler::{RefundInvokeError, RefundInvoker, SagaStartError, SagaStarter};
use asl::{
    CancellationSignal, EventKind, ExecutionContext, HistoryEvent, HistorySink, Outcome,
    StateMachine, TaskFailure, TaskRunner, TaskTokens,
};
use async_trait::async_trait;
use lambda_runtime::{Context, LambdaEvent};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use shared::TaskError;
use shared::domain::Refund;
use shared::events::{GatewayReply, RefundCommand, RefundSagaInput, RefundTask, SagaInput};
use shared::ports::{Callback, SagaCallbacks};

use crate::env::{Env, SimClock};
use crate::faults::Fault;

pub const INVOICE_ARN: &str =
    "arn:aws:lambda:us-east-1:000000000000:function:sim-invoice-processor";
pub const WALLET_ARN: &str = "arn:aws:lambda:us-east-1:000000000000:function:sim-wallet-service";
pub const ADAPTER_ARN: &str = "arn:aws:lambda:us-east-1:000000000000:function:sim-payments-adapter";
pub const REFUND_ARN: &str = "arn:aws:lambda:us-east-1:000000000000:function:sim-refund-service";
/// Warm invocation overhead, and the rarer cold start, in virtual ms.
const WARM_MS: std::ops::RangeInclusive<u64> = 1..=20;
const COLD_MS: std::ops::RangeInclusive<u64> = 300..=1_500;

/// The saga's Lambda functions, as the interpreter's task runner.
#[derive(Clone)]
pub struct Functions {
    pub env: Env,
    pub invoice: Arc<invoice_processor::Deps>,
    pub wallet: Arc<wallet_service::Deps>,
    /// Several warm instances, each with its own breaker cache.
    pub adapters: Arc<Vec<payments_adapter::Deps>>,
    pub refund: Arc<refund_service::Deps>,
    /// The task tokens of `.waitForTaskToken` tasks, shared by both sagas.
    pub tokens: Arc<TaskTokens>,
}

#[derive(Debug, Clone, Copy)]
enum Function {
    Invoice,
    Wallet,
    Adapter,
    Refund,
}

impl Function {
    fn from_arn(arn: &str) -> Option<Self> {
        match arn {
            INVOICE_ARN => Some(Self::Invoice),
            WALLET_ARN => Some(Self::Wallet),
            ADAPTER_ARN => Some(Self::Adapter),
            REFUND_ARN => Some(Self::Refund),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Invoice => invoice_processor::FUNCTION_NAME,
            Self::Wallet => wallet_service::FUNCTION_NAME,
            Self::Adapter => payments_adapter::FUNCTION_NAME,
            Self::Refund => refund_service::FUNCTION_NAME,
        }
    }
}

fn failure(error: &str, message: &str) -> TaskFailure {
    TaskFailure {
        error: error.to_owned(),
        cause: json!({"errorType": error, "errorMessage": message}).to_string(),
    }
}

fn task_failure(err: &TaskError) -> TaskFailure {
    failure(err.error_type.as_str(), &err.message)
}

/// What the Lambda runtime does around a handler: JSON in, JSON or an
/// `{errorType, errorMessage}` failure out.
async fn through_runtime<C, R, F>(
    input: Value,
    handler: impl FnOnce(LambdaEvent<C>) -> F,
) -> Result<Value, TaskFailure>
where
    C: DeserializeOwned,
    R: Serialize,
    F: std::future::Future<Output = Result<R, TaskError>>,
{
    let command: C = serde_json::from_value(input)
        .map_err(|err| failure("Runtime.UnmarshalError", &err.to_string()))?;
    match handler(LambdaEvent::new(command, Context::default())).await {
        Ok(reply) => serde_json::to_value(reply)
            .map_err(|err| failure("Runtime.MarshalError", &err.to_string())),
        Err(err) => Err(task_failure(&err)),
    }
}

fn subject_of(input: &Value) -> String {
    input
        .get("refundId")
        .or_else(|| input.get("paymentId"))
        .or_else(|| input.get("payment").and_then(|p| p.get("paymentId")))
        .and_then(Value::as_str)
        .unwrap_or("-")
        .to_owned()
}

impl Functions {
    async fn invoke(self, function: Function, input: Value) -> Result<Value, TaskFailure> {
        let cold = self.env.chance(1, 50);
        self.env.latency(if cold { COLD_MS } else { WARM_MS }).await;
        match function {
            Function::Invoice => {
                let deps = self.invoice.clone();
                through_runtime(input, |event| async move {
                    invoice_processor::handle(&deps, event).await
                })
                .await
            }
            Function::Wallet => {
                let deps = self.wallet.clone();
                through_runtime(input, |event| async move {
                    wallet_service::handle(&deps, event).await
                })
                .await
            }
            Function::Refund => {
                let deps = self.refund.clone();
                through_runtime(input, |event| async move {
                    refund_service::handle(&deps, event).await
                })
                .await
            }
            Function::Adapter => {
                let count = u64::try_from(self.adapters.len()).unwrap_or(1);
                let index =
                    usize::try_from(self.env.range(0..=count.saturating_sub(1))).unwrap_or(0);
                let adapters = self.adapters.clone();
                through_runtime(input, |event| async move {
                    match adapters.get(index) {
                        Some(deps) => payments_adapter::handle(deps, event).await,
                        None => Err(TaskError::new(
                            shared::ErrorType::InternalError,
                            "no adapter",
                        )),
                    }
                })
                .await
            }
        }
    }
}

fn describe(result: &Result<Value, TaskFailure>) -> String {
    match result {
        Ok(value) => {
            let status = value.get("status").and_then(Value::as_str).unwrap_or("ok");
            format!("→ {status}")
        }
        Err(failure) => format!("→ {}", failure.error),
    }
}

#[async_trait]
impl TaskRunner for Functions {
    fn task_tokens(&self) -> Option<&TaskTokens> {
        Some(&self.tokens)
    }

    async fn run(
        &self,
        resource: &str,
        input: Value,
        timeout: Option<Duration>,
    ) -> Result<Value, TaskFailure> {
        let Some(function) = Function::from_arn(resource) else {
            return Err(failure("Lambda.ResourceNotFoundException", resource));
        };
        let env = &self.env;
        let subject = subject_of(&input);
        let action = input
            .get("action")
            .and_then(Value::as_str)
            .unwrap_or("-")
            .to_owned();
        let label = format!("{} {action}", function.name());
        if env.roll(Fault::CrashBeforeWrites) {
            env.latency(WARM_MS).await;
            env.trace(&subject, format!("{label}: crashed before doing anything"));
            return Err(failure(
                "Runtime.ExitError",
                "simulated crash before any write",
            ));
        }
        if env.roll(Fault::DuplicateDelivery) {
            let (copy, copy_input, copy_env) = (self.clone(), input.clone(), env.clone());
            let (copy_subject, copy_label) = (subject.clone(), label.clone());
            let _detached = env.spawn(async move {
                copy_env.latency(0..=2_000).await;
                let result = copy.invoke(function, copy_input).await;
                copy_env.trace(
                    &copy_subject,
                    format!("{copy_label} (duplicate delivery) {}", describe(&result)),
                );
            });
        }
        let overrun = timeout.filter(|_| env.roll(Fault::TaskOverrun));
        let reply_lost = env.roll(Fault::ReplyLost);
        let (this, task_env) = (self.clone(), env.clone());
        let running = env.spawn(async move {
            if let Some(limit) = overrun {
                // Still initialising when Step Functions stops waiting.
                let extra = Duration::from_millis(task_env.range(1..=10_000));
                tokio::time::sleep(limit + extra).await;
            }
            this.invoke(function, input).await
        });
        let result = running
            .await
            .unwrap_or_else(|_| Err(failure("Lambda.Unknown", "invocation task vanished")));
        if overrun.is_some() {
            env.trace(
                &subject,
                format!(
                    "{label} (finished after its task timed out) {}",
                    describe(&result)
                ),
            );
        }
        if reply_lost {
            env.trace(
                &subject,
                format!("{label} {}, reply lost", describe(&result)),
            );
            return Err(failure(
                "Sandbox.Timedout",
                "simulated: the reply never reached Step Functions",
            ));
        }
        env.trace(&subject, format!("{label} {}", describe(&result)));
        result
    }
}

/// History events as trace lines: the states each execution enters.
struct TraceHistory {
    env: Env,
    subject: String,
    execution: String,
}

impl HistorySink for TraceHistory {
    fn record(&self, event: HistoryEvent) {
        if let EventKind::StateEntered(_, details) = &event.kind {
            let line = format!("{} enters {}", self.execution, details.name);
            self.env.trace(&self.subject, line);
        }
    }
}

/// Step Functions: executions of one state machine by name.
pub struct StepFunctions {
    env: Env,
    /// The state machine's name (`sim-payment-saga`, `sim-refund-saga`).
    machine_name: &'static str,
    machine: Arc<StateMachine>,
    functions: Functions,
    clock: Arc<SimClock>,
    /// Executions started per name (payment id), and how they ended.
    runs: Mutex<BTreeMap<String, Vec<String>>>,
    outcomes: Arc<Mutex<BTreeMap<String, u64>>>,
}

impl StepFunctions {
    pub fn new(
        env: Env,
        machine_name: &'static str,
        machine: StateMachine,
        functions: Functions,
    ) -> Self {
        Self {
            clock: Arc::new(SimClock { env: env.clone() }),
            env,
            machine_name,
            machine: Arc::new(machine),
            functions,
            runs: Mutex::new(BTreeMap::new()),
            outcomes: Arc::new(Mutex::new(BTreeMap::new())),
        }
    }

    fn runs(&self) -> MutexGuard<'_, BTreeMap<String, Vec<String>>> {
        self.runs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The names executions were started under.
    pub fn started_names(&self) -> std::collections::BTreeSet<String> {
        self.runs().keys().cloned().collect()
    }

    /// Execution outcomes, by name (`Succeeded`, or the error of a failed one).
    pub fn outcomes(&self) -> BTreeMap<String, u64> {
        self.outcomes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Starts one execution; returns its ARN.
    fn launch(&self, name: &str, input: Value, delay_ms: u64) -> String {
        let number = {
            let mut runs = self.runs();
            let list = runs.entry(name.to_owned()).or_default();
            list.push(String::new());
            list.len()
        };
        let machine_name = self.machine_name;
        let execution_arn = format!(
            "arn:aws:states:us-east-1:000000000000:execution:{machine_name}:{name}:{number}"
        );
        let ctx = ExecutionContext {
            execution_arn: execution_arn.clone(),
            name: name.to_owned(),
            state_machine_arn: format!(
                "arn:aws:states:us-east-1:000000000000:stateMachine:{machine_name}"
            ),
            state_machine_name: machine_name.to_owned(),
            role_arn: "arn:aws:iam::000000000000:role/sim".to_owned(),
            start_time: self.env.now(),
            input,
            rng_seed: Some(self.env.random_u64()),
        };
        let (machine, functions, clock) = (
            self.machine.clone(),
            self.functions.clone(),
            self.clock.clone(),
        );
        let (env, outcomes, subject) = (self.env.clone(), self.outcomes.clone(), name.to_owned());
        let history = TraceHistory {
            env: env.clone(),
            subject: subject.clone(),
            execution: format!("execution #{number}"),
        };
        let _detached = self.env.spawn(async move {
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            let outcome = asl::run_execution(
                &machine,
                ctx,
                &functions,
                clock.as_ref(),
                &history,
                CancellationSignal::never(),
            )
            .await;
            let label = match outcome {
                Outcome::Succeeded { .. } => "Succeeded".to_owned(),
                Outcome::Failed { error, .. } => error,
                Outcome::TimedOut => "TimedOut".to_owned(),
                Outcome::Aborted => "Aborted".to_owned(),
            };
            env.trace(&subject, format!("execution #{number} ended: {label}"));
            *outcomes
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(label)
                .or_default() += 1;
        });
        execution_arn
    }
}

impl StepFunctions {
    /// StartExecution of `name`, with STANDARD's de-duplication by name and
    /// the start's faults (and, as Express would, sometimes a second
    /// execution).
    async fn start(&self, name: &str, value: Value) -> Result<String, SagaStartError> {
        let env = &self.env;
        env.latency(5..=60).await;
        if env.roll(Fault::StartRefused) {
            env.trace(name, "StartExecution throttled, nothing started");
            return Err(SagaStartError::Throttled("simulated throttling".to_owned()));
        }
        let ambiguous = env.roll(Fault::StartAmbiguous);
        if ambiguous && env.chance(1, 2) {
            env.trace(
                name,
                "StartExecution timed out before Step Functions got it",
            );
            return Err(SagaStartError::Ambiguous(
                "simulated timeout, nothing started".to_owned(),
            ));
        }
        let existing = self.runs().get(name).map(Vec::len).unwrap_or(0);
        let arn = if existing > 0 {
            // STANDARD: the same name and input is the same execution.
            env.trace(name, "StartExecution: already started, same execution");
            format!(
                "arn:aws:states:us-east-1:000000000000:execution:{}:{name}:1",
                self.machine_name
            )
        } else {
            env.trace(name, "StartExecution");
            self.launch(name, value.clone(), 0)
        };
        if env.roll(Fault::DuplicateExecution) {
            let delay_ms = env.range(0..=5_000);
            env.trace(name, "a second execution of this name (no de-duplication)");
            self.launch(name, value, delay_ms);
        }
        if ambiguous {
            env.trace(
                name,
                "StartExecution answered 5xx although the execution started",
            );
            return Err(SagaStartError::Ambiguous(
                "simulated timeout after sending".to_owned(),
            ));
        }
        Ok(arn)
    }
}

/// api-handler's `SagaStarter`: StartExecution of the payment saga and of
/// the refund saga.
pub struct SimSaga {
    pub payments: Arc<StepFunctions>,
    pub refunds: Arc<StepFunctions>,
}

#[async_trait]
impl SagaStarter for SimSaga {
    async fn start(&self, input: &SagaInput) -> Result<String, SagaStartError> {
        let value =
            serde_json::to_value(input).map_err(|err| SagaStartError::Rejected(err.to_string()))?;
        self.payments
            .start(&input.payment_id.to_string(), value)
            .await
    }

    async fn start_refund(&self, input: &RefundSagaInput) -> Result<String, SagaStartError> {
        let value =
            serde_json::to_value(input).map_err(|err| SagaStartError::Rejected(err.to_string()))?;
        self.refunds
            .start(&input.refund_id.to_string(), value)
            .await
    }
}

/// api-handler's `RefundInvoker`: a synchronous Lambda invoke of
/// refund-service's RESERVE.
#[derive(Clone)]
pub struct SimRefunder {
    pub env: Env,
    pub deps: Arc<refund_service::Deps>,
}

#[async_trait]
impl RefundInvoker for SimRefunder {
    async fn reserve(&self, command: &RefundCommand) -> Result<Refund, RefundInvokeError> {
        let env = &self.env;
        let subject = command.refund_id.to_string();
        if env.roll(Fault::CrashBeforeWrites) {
            env.latency(WARM_MS).await;
            env.trace(&subject, "refund-service crashed before doing anything");
            return Err(RefundInvokeError::Unknown(
                "Runtime.ExitError (simulated)".to_owned(),
            ));
        }
        let reply_lost = env.roll(Fault::RefundReplyLost);
        let (deps, task_env) = (self.deps.clone(), env.clone());
        let input = RefundTask::Reserve(command.clone());
        let running = env.spawn(async move {
            task_env.latency(WARM_MS).await;
            let event = LambdaEvent::new(input, Context::default());
            refund_service::handle(&deps, event).await
        });
        let result = running
            .await
            .map_err(|_| RefundInvokeError::Unknown("vanished".to_owned()))?;
        let outcome = match &result {
            Ok(reply) => reply.refund.status.as_str().to_owned(),
            Err(err) => err.error_type.as_str().to_owned(),
        };
        if reply_lost {
            env.trace(&subject, format!("refund-service → {outcome}, reply lost"));
            return Err(RefundInvokeError::Unknown(
                "Sandbox.Timedout (simulated)".to_owned(),
            ));
        }
        env.trace(&subject, format!("refund-service → {outcome}"));
        // The Invoke answer as api-handler reads it from Lambda.
        let (function_error, payload) = match &result {
            Ok(reply) => (None, serde_json::to_vec(reply)),
            Err(err) => (
                Some("Unhandled"),
                serde_json::to_vec(
                    &json!({"errorType": err.error_type.as_str(), "errorMessage": err.message}),
                ),
            ),
        };
        let payload = payload.map_err(|err| RefundInvokeError::Unknown(err.to_string()))?;
        api_handler::aws::read_reply(function_error, &payload)
    }
}

/// Step Functions' SendTaskSuccess / SendTaskHeartbeat, as the reconciler
/// reaches them: a little latency, and sometimes the answer is lost after
/// it was applied (the reconciler then takes the saga for not woken).
pub struct SimCallbacks {
    pub env: Env,
    pub tokens: Arc<TaskTokens>,
}

impl SimCallbacks {
    async fn send(
        &self,
        token: &str,
        label: &str,
        sent: impl FnOnce(&TaskTokens) -> Result<(), asl::CallbackError>,
    ) -> Result<Callback, String> {
        self.env.latency(WARM_MS).await;
        let callback = match sent(&self.tokens) {
            Ok(()) => Callback::Delivered,
            Err(_) => Callback::NotWaiting,
        };
        self.env.trace(token, format!("{label} → {callback:?}"));
        if self.env.roll(Fault::ReplyLost) {
            self.env.trace(token, format!("{label}: reply lost"));
            return Err("simulated: no answer from Step Functions".to_owned());
        }
        Ok(callback)
    }
}

#[async_trait]
impl SagaCallbacks for SimCallbacks {
    async fn answer(&self, token: &str, answer: &GatewayReply) -> Result<Callback, String> {
        let output = serde_json::to_value(answer).map_err(|err| err.to_string())?;
        let label = format!("SendTaskSuccess {}", answer.status.as_str());
        self.send(token, &label, |tokens| tokens.send_success(token, output))
            .await
    }

    async fn heartbeat(&self, token: &str) -> Result<Callback, String> {
        self.send(token, "SendTaskHeartbeat", |tokens| {
            tokens.send_heartbeat(token)
        })
        .await
    }
}
