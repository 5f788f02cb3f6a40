//! Conformance tests for the ASL interpreter, on examples that follow the AWS
//! Step Functions documentation, with a fake clock (nothing really waits) and
//! a scripted task runner. The last module runs the project's own state
//! machine, state-machine/payment-saga.asl.json, end to end.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support {
    use std::collections::{BTreeMap, HashMap, VecDeque};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use asl::{
        CancellationSignal, Clock, ExecutionContext, FakeClock, MemoryHistory, Outcome,
        StateMachine, TaskFailure, TaskRunner, TaskTokens, run_execution,
    };
    use async_trait::async_trait;
    use serde_json::{Value, json};
    use time::OffsetDateTime;
    use time::macros::datetime;

    pub const FUNCTION: &str = "arn:aws:lambda:us-east-1:123456789012:function:HelloFunction";

    /// What the scripted runner answers to one call.
    #[derive(Debug, Clone)]
    pub enum Reply {
        Value(Value),
        /// A payments-adapter STATUS answer: counts one more check.
        Status(&'static str),
        Fail(&'static str, &'static str),
        /// Never answers (the task times out or the execution is stopped).
        Hang,
        /// A callback task's Lambda that answers its own token at once
        /// (SendTaskSuccess with this output, the token read from the
        /// payload's `taskToken`), then returns `{"submitted": true}`.
        AnswerToken(Value),
    }

    #[derive(Debug, Clone)]
    pub struct Call {
        pub resource: String,
        pub input: Value,
        pub timeout: Option<Duration>,
    }

    /// Answers by script, keyed by the input's `action` field, else the resource.
    #[derive(Default)]
    pub struct ScriptedRunner {
        queues: Mutex<HashMap<String, VecDeque<Reply>>>,
        fallbacks: HashMap<String, Reply>,
        calls: Mutex<Vec<Call>>,
        task_tokens: Option<Arc<TaskTokens>>,
    }

    impl ScriptedRunner {
        /// A runner with its own task token registry.
        pub fn new() -> Self {
            Self {
                task_tokens: Some(Arc::new(TaskTokens::new())),
                ..Self::default()
            }
        }

        /// A runner that cannot wait for callbacks.
        pub fn without_task_tokens(mut self) -> Self {
            self.task_tokens = None;
            self
        }

        /// The registry SendTask* calls go to.
        pub fn tokens(&self) -> &TaskTokens {
            self.task_tokens
                .as_deref()
                .expect("a runner with task tokens")
        }

        pub fn script(self, key: &str, replies: impl IntoIterator<Item = Reply>) -> Self {
            self.queues
                .lock()
                .unwrap()
                .entry(key.to_owned())
                .or_default()
                .extend(replies);
            self
        }

        /// The answer once the script for `key` is used up.
        pub fn always(mut self, key: &str, reply: Reply) -> Self {
            self.fallbacks.insert(key.to_owned(), reply);
            self
        }

        pub fn calls(&self) -> Vec<Call> {
            self.calls.lock().unwrap().clone()
        }

        pub fn calls_for(&self, key: &str) -> Vec<Call> {
            self.calls()
                .into_iter()
                .filter(|call| key_of(&call.resource, &call.input) == key)
                .collect()
        }
    }

    fn key_of(resource: &str, input: &Value) -> String {
        input
            .get("action")
            .and_then(Value::as_str)
            .unwrap_or(resource)
            .to_owned()
    }

    #[async_trait]
    impl TaskRunner for ScriptedRunner {
        async fn run(
            &self,
            resource: &str,
            input: Value,
            timeout: Option<Duration>,
        ) -> Result<Value, TaskFailure> {
            let key = key_of(resource, &input);
            let reply = {
                let mut queues = self.queues.lock().unwrap();
                let scripted = queues.get_mut(&key).and_then(VecDeque::pop_front);
                scripted
                    .or_else(|| self.fallbacks.get(&key).cloned())
                    .unwrap_or_else(|| Reply::Value(json!({"ok": true})))
            };
            self.calls.lock().unwrap().push(Call {
                resource: resource.to_owned(),
                input: input.clone(),
                timeout,
            });
            match reply {
                Reply::Value(value) => Ok(value),
                Reply::Status(status) => {
                    let checks = input["checks"].as_u64().unwrap() + 1;
                    let mut reply = json!({"status": status, "checks": checks});
                    if status == "APPROVED" {
                        reply["gatewayReference"] = json!("gw-ref-1");
                    }
                    Ok(reply)
                }
                Reply::Fail(error, cause) => Err(TaskFailure {
                    error: error.to_owned(),
                    cause: cause.to_owned(),
                }),
                Reply::Hang => std::future::pending().await,
                Reply::AnswerToken(output) => {
                    let token = input["taskToken"].as_str().expect("a taskToken");
                    self.tokens().send_success(token, output).unwrap();
                    Ok(json!({"submitted": true}))
                }
            }
        }

        fn task_tokens(&self) -> Option<&TaskTokens> {
            self.task_tokens.as_deref()
        }
    }

    pub fn start_time() -> OffsetDateTime {
        datetime!(2024-01-01 0:00 UTC)
    }

    pub fn context(input: Value) -> ExecutionContext {
        ExecutionContext {
            execution_arn: "arn:aws:states:us-east-1:123456789012:execution:Saga:run-1".into(),
            name: "run-1".into(),
            state_machine_arn: "arn:aws:states:us-east-1:123456789012:stateMachine:Saga".into(),
            state_machine_name: "Saga".into(),
            role_arn: "arn:aws:iam::123456789012:role/StatesRole".into(),
            start_time: start_time(),
            input,
            rng_seed: None,
        }
    }

    pub fn load(definition: Value) -> StateMachine {
        StateMachine::load(&definition.to_string(), &BTreeMap::new()).unwrap()
    }

    /// A one-state machine around `state`, named `S`.
    pub fn single(state: Value) -> StateMachine {
        load(json!({"StartAt": "S", "States": {"S": state}}))
    }

    pub struct Finished {
        pub outcome: Outcome,
        pub history: MemoryHistory,
        pub clock: FakeClock,
    }

    impl Finished {
        pub fn output(&self) -> Value {
            match &self.outcome {
                Outcome::Succeeded { output } => output.clone(),
                other => panic!("expected success, got {other:?}"),
            }
        }

        pub fn failure(&self) -> (String, String) {
            match &self.outcome {
                Outcome::Failed { error, cause } => (error.clone(), cause.clone()),
                other => panic!("expected failure, got {other:?}"),
            }
        }

        pub fn sleeps_seconds(&self) -> Vec<f64> {
            self.clock
                .sleeps()
                .iter()
                .map(Duration::as_secs_f64)
                .collect()
        }
    }

    pub async fn execute(
        machine: &StateMachine,
        input: Value,
        runner: &ScriptedRunner,
    ) -> Finished {
        execute_with(machine, input, runner, CancellationSignal::never()).await
    }

    /// Runs with the caller's clock and history, so that a test can act
    /// while the execution runs (e.g. answer a task token).
    pub async fn run_on(
        machine: &StateMachine,
        input: Value,
        runner: &ScriptedRunner,
        clock: &dyn Clock,
        history: &MemoryHistory,
    ) -> Outcome {
        let cancel = CancellationSignal::never();
        run_execution(machine, context(input), runner, clock, history, cancel).await
    }

    /// Time for tests on a paused tokio runtime (`start_paused = true`):
    /// waits and timeouts are tokio sleeps, which a paused runtime skips
    /// through in order, and `now` follows them, so heartbeats sent every
    /// few virtual seconds race the interpreter's timers deterministically.
    pub struct PausedClock {
        start: OffsetDateTime,
        base: tokio::time::Instant,
    }

    impl PausedClock {
        pub fn new() -> Self {
            Self {
                start: start_time(),
                base: tokio::time::Instant::now(),
            }
        }

        pub fn elapsed(&self) -> Duration {
            self.base.elapsed()
        }
    }

    #[async_trait]
    impl Clock for PausedClock {
        fn now(&self) -> OffsetDateTime {
            self.start + self.base.elapsed()
        }

        async fn sleep(&self, duration: Duration) {
            tokio::time::sleep(duration).await;
        }

        async fn timeout(&self, duration: Duration) {
            tokio::time::sleep(duration).await;
        }
    }

    pub async fn execute_with(
        machine: &StateMachine,
        input: Value,
        runner: &ScriptedRunner,
        cancel: CancellationSignal,
    ) -> Finished {
        let clock = FakeClock::new(start_time());
        let history = MemoryHistory::new();
        let outcome =
            run_execution(machine, context(input), runner, &clock, &history, cancel).await;
        Finished {
            outcome,
            history,
            clock,
        }
    }
}

mod path_processing {
    use asl::{EventKind, HistoryEvent};
    use serde_json::{Value, json};

    use super::support::*;

    #[tokio::test]
    async fn aws_input_result_output_path_example() {
        // GIVEN the "InputPath, ResultPath and OutputPath Example" of the AWS guide
        let machine = single(json!({
            "Type": "Task", "Resource": FUNCTION,
            "InputPath": "$.lambda", "ResultPath": "$.data.lambdaresult", "OutputPath": "$.data",
            "End": true
        }));
        let runner = ScriptedRunner::new().script(
            FUNCTION,
            [Reply::Value(json!("Hello, AWS Step Functions!"))],
        );
        let input = json!({
            "comment": "An input comment.",
            "data": {"val1": 23, "val2": 17},
            "extra": "foo",
            "lambda": {"who": "AWS Step Functions"}
        });
        // WHEN it runs
        let done = execute(&machine, input, &runner).await;
        // THEN the function saw only the lambda node
        // AND the output is the data node with the result
        assert_eq!(
            runner.calls()[0].input,
            json!({"who": "AWS Step Functions"})
        );
        assert_eq!(
            done.output(),
            json!({"val1": 23, "val2": 17, "lambdaresult": "Hello, AWS Step Functions!"})
        );
    }

    #[tokio::test]
    async fn aws_result_selector_example() {
        // GIVEN the ResultSelector example of the AWS guide (an EMR createCluster result)
        let machine = single(json!({
            "Type": "Task", "Resource": FUNCTION,
            "ResultSelector": {"ClusterId.$": "$.output.ClusterId", "ResourceType.$": "$.resourceType"},
            "ResultPath": "$.EMROutput",
            "End": true
        }));
        let result = json!({
            "resourceType": "elasticmapreduce",
            "resource": "createCluster.sync",
            "output": {
                "SdkHttpMetadata": {"HttpStatusCode": 200},
                "SdkResponseMetadata": {"RequestId": "1234"},
                "ClusterId": "AKIAIOSFODNN7EXAMPLE"
            }
        });
        let runner = ScriptedRunner::new().script(FUNCTION, [Reply::Value(result)]);
        let done = execute(&machine, json!({"cluster": "mine"}), &runner).await;
        assert_eq!(
            done.output(),
            json!({
                "cluster": "mine",
                "EMROutput": {"ClusterId": "AKIAIOSFODNN7EXAMPLE", "ResourceType": "elasticmapreduce"}
            })
        );
    }

    #[tokio::test]
    async fn aws_result_path_examples() {
        let input = json!({
            "comment": "This is a test of the input and output of a Task state.",
            "details": "Default example",
            "who": "AWS Step Functions"
        });
        let hello = || {
            ScriptedRunner::new()
                .always(FUNCTION, Reply::Value(json!("Hello, AWS Step Functions!")))
        };
        let with = |result_path: Value| {
            single(
                json!({"Type": "Task", "Resource": FUNCTION, "ResultPath": result_path, "End": true}),
            )
        };
        // the default ($) replaces the input with the result
        let machine = single(json!({"Type": "Task", "Resource": FUNCTION, "End": true}));
        assert_eq!(
            execute(&machine, input.clone(), &hello()).await.output(),
            json!("Hello, AWS Step Functions!")
        );
        // a new field includes the result with the input
        let out = execute(&with(json!("$.taskresult")), input.clone(), &hello())
            .await
            .output();
        assert_eq!(out["taskresult"], json!("Hello, AWS Step Functions!"));
        assert_eq!(out["who"], json!("AWS Step Functions"));
        // an existing field is updated
        let out = execute(&with(json!("$.comment")), input.clone(), &hello())
            .await
            .output();
        assert_eq!(out["comment"], json!("Hello, AWS Step Functions!"));
        // a deeper path creates the objects on the way
        let out = execute(&with(json!("$.a.b.c")), input.clone(), &hello())
            .await
            .output();
        assert_eq!(out["a"], json!({"b": {"c": "Hello, AWS Step Functions!"}}));
        // null discards the result and passes the input through
        assert_eq!(
            execute(&with(Value::Null), input.clone(), &hello())
                .await
                .output(),
            input
        );
    }

    #[tokio::test]
    async fn null_input_and_output_paths_give_an_empty_object() {
        let machine = load(json!({"StartAt": "P", "States": {
            "P": {"Type": "Pass", "InputPath": null, "Next": "Q"},
            "Q": {"Type": "Pass", "Result": {"x": 1}, "OutputPath": null, "End": true}
        }}));
        let done = execute(&machine, json!({"a": 1}), &ScriptedRunner::new()).await;
        assert_eq!(done.output(), json!({}));
        let outputs: Vec<String> = done
            .history
            .events()
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::StateExited(_, details) => Some(details.output.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(outputs, vec!["{}".to_owned(), "{}".to_owned()]);
    }

    #[tokio::test]
    async fn parameters_read_the_context_object() {
        let machine = single(json!({
            "Type": "Pass",
            "Parameters": {
                "id.$": "$$.Execution.Id", "name.$": "$$.Execution.Name",
                "started.$": "$$.Execution.StartTime", "input.$": "$$.Execution.Input",
                "state.$": "$$.State.Name", "entered.$": "$$.State.EnteredTime",
                "retries.$": "$$.State.RetryCount",
                "machine.$": "$$.StateMachine.Id", "machineName.$": "$$.StateMachine.Name",
                "static": [1, {"nested.$": "$.a"}]
            },
            "End": true
        }));
        let done = execute(&machine, json!({"a": 7}), &ScriptedRunner::new()).await;
        assert_eq!(
            done.output(),
            json!({
                "id": "arn:aws:states:us-east-1:123456789012:execution:Saga:run-1",
                "name": "run-1",
                "started": "2024-01-01T00:00:00.000Z",
                "input": {"a": 7},
                "state": "S",
                "entered": "2024-01-01T00:00:00.000Z",
                "retries": 0,
                "machine": "arn:aws:states:us-east-1:123456789012:stateMachine:Saga",
                "machineName": "Saga",
                "static": [1, {"nested": 7}]
            })
        );
    }

    #[tokio::test]
    async fn retry_count_reaches_the_task_parameters() {
        let machine = single(json!({
            "Type": "Task", "Resource": FUNCTION,
            "Parameters": {"attempt.$": "$$.State.RetryCount"},
            "Retry": [{"ErrorEquals": ["Retryable"]}],
            "End": true
        }));
        let runner = ScriptedRunner::new().script(
            FUNCTION,
            [Reply::Fail("Retryable", "x"), Reply::Fail("Retryable", "y")],
        );
        execute(&machine, json!({}), &runner).await.output();
        let attempts: Vec<Value> = runner
            .calls()
            .iter()
            .map(|c| c.input["attempt"].clone())
            .collect();
        assert_eq!(attempts, vec![json!(0), json!(1), json!(2)]);
    }

    #[tokio::test]
    async fn numbers_keep_their_exact_json_form() {
        let machine = load(json!({"StartAt": "P", "States": {
            "P": {
                "Type": "Pass",
                "Parameters": {"big.$": "$.big", "ten.$": "$.ten", "neg.$": "$.neg", "half.$": "$.half"},
                "Next": "T"
            },
            "T": {"Type": "Task", "Resource": FUNCTION, "ResultPath": "$.echo", "End": true}
        }}));
        let runner =
            ScriptedRunner::new().always(FUNCTION, Reply::Value(json!(18446744073709551615_u64)));
        let input = json!({
            "big": 12345678901234567890_u64, "ten": 10, "neg": -9007199254740993_i64, "half": 0.5
        });
        let done = execute(&machine, input, &runner).await;
        let text = serde_json::to_string(&done.output()).unwrap();
        assert_eq!(
            text,
            concat!(
                r#"{"big":12345678901234567890,"echo":18446744073709551615,"#,
                r#""half":0.5,"neg":-9007199254740993,"ten":10}"#
            )
        );
        assert_eq!(runner.calls()[0].input["ten"], json!(10));
        assert!(runner.calls()[0].input["ten"].is_u64());
    }

    #[tokio::test]
    async fn a_path_that_does_not_resolve_fails_the_execution_with_states_runtime() {
        // GIVEN a task whose Parameters name a missing field, and a catch-all catcher
        let machine = load(json!({"StartAt": "Glue StartJobRun", "States": {
            "Glue StartJobRun": {
                "Type": "Task", "Resource": FUNCTION,
                "Parameters": {"JobName.$": "$.JobName"},
                "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Caught"}],
                "End": true
            },
            "Caught": {"Type": "Succeed"}
        }}));
        let runner = ScriptedRunner::new();
        let done = execute(&machine, json!({}), &runner).await;
        // THEN States.ALL does not catch it, nothing ran, and the cause reads like AWS's
        let (error, cause) = done.failure();
        assert_eq!(error, "States.Runtime");
        assert_eq!(
            cause,
            "An error occurred while executing the state 'Glue StartJobRun' \
             (entered at the event id #2). The JSONPath '$.JobName' specified for the field \
             'JobName.$' could not be found in the input '{}'"
        );
        assert!(runner.calls().is_empty());
        assert_eq!(
            done.history.event_types(),
            vec!["ExecutionStarted", "TaskStateEntered", "ExecutionFailed"]
        );
    }

    #[tokio::test]
    async fn missing_input_output_and_result_paths_are_runtime_errors() {
        let cases = [
            (
                json!({"Type": "Pass", "InputPath": "$.nope", "End": true}),
                "Invalid path '$.nope' : No results for path: $['nope']",
            ),
            (
                json!({"Type": "Pass", "OutputPath": "$.nope", "End": true}),
                "Invalid path '$.nope'",
            ),
            (
                json!({"Type": "Pass", "Result": 1, "ResultPath": "$.s.x", "End": true}),
                "Unable to apply ReferencePath $.s.x",
            ),
        ];
        for (state, expected) in cases {
            let done = execute(&single(state), json!({"s": "text"}), &ScriptedRunner::new()).await;
            let (error, cause) = done.failure();
            assert_eq!(error, "States.Runtime");
            assert!(cause.contains(expected), "{cause}");
        }
    }

    #[tokio::test]
    async fn lambda_invoke_wraps_the_payload_and_records_task_events() {
        // GIVEN the lambda:invoke integration with FunctionName and Payload
        let machine = single(json!({
            "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName": "my-function", "Payload": {"who.$": "$.who"}},
            "TimeoutSeconds": 30,
            "End": true
        }));
        let runner =
            ScriptedRunner::new().always("my-function", Reply::Value(json!({"hello": "world"})));
        let done = execute(&machine, json!({"who": "me"}), &runner).await;
        // THEN the runner got the function name and the payload
        let call = &runner.calls()[0];
        assert_eq!(call.resource, "my-function");
        assert_eq!(call.input, json!({"who": "me"}));
        assert_eq!(call.timeout, Some(std::time::Duration::from_secs(30)));
        // AND the result has the Lambda Invoke response shape
        let output = done.output();
        assert_eq!(output["Payload"], json!({"hello": "world"}));
        assert_eq!(output["StatusCode"], json!(200));
        assert_eq!(output["ExecutedVersion"], json!("$LATEST"));
        assert_eq!(output["SdkHttpMetadata"]["HttpStatusCode"], json!(200));
        let request_id = output["SdkResponseMetadata"]["RequestId"].as_str().unwrap();
        assert_eq!(
            output["SdkHttpMetadata"]["HttpHeaders"]["x-amzn-RequestId"],
            json!(request_id)
        );
        // AND the history uses the Task* events with AWS's details
        assert_eq!(
            done.history.event_types(),
            vec![
                "ExecutionStarted",
                "TaskStateEntered",
                "TaskScheduled",
                "TaskStarted",
                "TaskSucceeded",
                "TaskStateExited",
                "ExecutionSucceeded"
            ]
        );
        let scheduled = serde_json::to_value(&done.history.events()[2]).unwrap();
        let details = &scheduled["taskScheduledEventDetails"];
        assert_eq!(details["resourceType"], json!("lambda"));
        assert_eq!(details["resource"], json!("invoke"));
        assert_eq!(details["region"], json!("us-east-1"));
        assert_eq!(details["timeoutInSeconds"], json!(30));
        let parameters: Value =
            serde_json::from_str(details["parameters"].as_str().unwrap()).unwrap();
        assert_eq!(
            parameters,
            json!({"FunctionName": "my-function", "Payload": {"who": "me"}})
        );
    }

    #[tokio::test]
    async fn history_has_aws_shapes_ids_and_lambda_function_events() {
        let machine = single(
            json!({"Type": "Task", "Resource": FUNCTION, "TimeoutSeconds": 15, "End": true}),
        );
        let runner = ScriptedRunner::new().always(FUNCTION, Reply::Value(json!({"r": 1})));
        let done = execute(&machine, json!({"in": true}), &runner).await;
        let events = done.history.events();
        assert_eq!(
            done.history.event_types(),
            vec![
                "ExecutionStarted",
                "TaskStateEntered",
                "LambdaFunctionScheduled",
                "LambdaFunctionStarted",
                "LambdaFunctionSucceeded",
                "TaskStateExited",
                "ExecutionSucceeded"
            ]
        );
        for (index, event) in events.iter().enumerate() {
            let id = u64::try_from(index).unwrap() + 1;
            assert_eq!((event.id, event.previous_event_id), (id, id - 1));
        }
        let json: Vec<Value> = events
            .iter()
            .map(|e| serde_json::to_value(e).unwrap())
            .collect();
        assert_eq!(
            json[0],
            json!({
                "timestamp": 1704067200.0, "type": "ExecutionStarted", "id": 1, "previousEventId": 0,
                "executionStartedEventDetails": {
                    "input": "{\"in\":true}", "inputDetails": {"truncated": false},
                    "roleArn": "arn:aws:iam::123456789012:role/StatesRole"
                }
            })
        );
        assert_eq!(
            json[2]["lambdaFunctionScheduledEventDetails"],
            json!({
                "resource": FUNCTION, "input": "{\"in\":true}",
                "inputDetails": {"truncated": false}, "timeoutInSeconds": 15
            })
        );
        assert_eq!(json[3].get("lambdaFunctionStartedEventDetails"), None);
        assert_eq!(
            json[4]["lambdaFunctionSucceededEventDetails"]["output"],
            json!("{\"r\":1}")
        );
        assert_eq!(json[5]["stateExitedEventDetails"]["name"], json!("S"));
        assert_eq!(
            json[6]["executionSucceededEventDetails"]["output"],
            json!("{\"r\":1}")
        );
        let back: Vec<HistoryEvent> = json
            .iter()
            .map(|v| HistoryEvent::from_value(v).unwrap())
            .collect();
        assert_eq!(back, events);
    }
}

mod retry_and_catch {
    use std::time::Duration;

    use serde_json::json;

    use super::support::*;

    fn flaky(retry: serde_json::Value) -> asl::StateMachine {
        single(json!({"Type": "Task", "Resource": FUNCTION, "Retry": retry, "End": true}))
    }

    #[tokio::test]
    async fn intervals_grow_by_the_backoff_rate_up_to_max_delay() {
        // GIVEN IntervalSeconds 1, BackoffRate 2, MaxAttempts 4, MaxDelaySeconds 3
        let machine = flaky(json!([{
            "ErrorEquals": ["Retryable"], "IntervalSeconds": 1, "BackoffRate": 2,
            "MaxAttempts": 4, "MaxDelaySeconds": 3
        }]));
        let failing = || std::iter::repeat_n(Reply::Fail("Retryable", "busy"), 4);
        // WHEN the task fails four times, then succeeds
        let runner = ScriptedRunner::new()
            .script(FUNCTION, failing())
            .always(FUNCTION, Reply::Value(json!("ok")));
        let done = execute(&machine, json!({}), &runner).await;
        // THEN it waited 1, 2, 3, 3 seconds and succeeded
        assert_eq!(done.sleeps_seconds(), vec![1.0, 2.0, 3.0, 3.0]);
        assert_eq!(done.output(), json!("ok"));
        // AND a fifth failure is not retried
        let runner = ScriptedRunner::new().always(FUNCTION, Reply::Fail("Retryable", "busy"));
        let done = execute(&machine, json!({}), &runner).await;
        assert_eq!(done.failure(), ("Retryable".to_owned(), "busy".to_owned()));
        assert_eq!(runner.calls().len(), 5);
    }

    #[tokio::test]
    async fn defaults_and_fractional_backoff() {
        // Defaults: IntervalSeconds 1, MaxAttempts 3, BackoffRate 2.0
        let runner = ScriptedRunner::new().always(FUNCTION, Reply::Fail("E", ""));
        let done = execute(&flaky(json!([{"ErrorEquals": ["E"]}])), json!({}), &runner).await;
        assert_eq!(done.sleeps_seconds(), vec![1.0, 2.0, 4.0]);
        // AWS example: IntervalSeconds 3, MaxAttempts 2, BackoffRate 1.5 -> 3 and 4.5 seconds
        let machine = flaky(
            json!([{"ErrorEquals": ["States.Timeout"], "IntervalSeconds": 3, "MaxAttempts": 2, "BackoffRate": 1.5}]),
        );
        let runner = ScriptedRunner::new().always(FUNCTION, Reply::Fail("States.Timeout", ""));
        assert_eq!(
            execute(&machine, json!({}), &runner).await.sleeps_seconds(),
            vec![3.0, 4.5]
        );
    }

    #[tokio::test]
    async fn aws_complex_retry_scenario_counts_attempts_per_retrier() {
        // GIVEN the "Complex retry scenarios" example of the AWS guide
        let machine = load(json!({"StartAt": "X", "States": {
            "X": {
                "Type": "Task", "Resource": FUNCTION, "Next": "Y",
                "Retry": [
                    {"ErrorEquals": ["ErrorA", "ErrorB"], "IntervalSeconds": 1, "BackoffRate": 2.0, "MaxAttempts": 2},
                    {"ErrorEquals": ["ErrorC"], "IntervalSeconds": 5}
                ],
                "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Z"}]
            },
            "Y": {"Type": "Succeed"},
            "Z": {"Type": "Pass", "Result": "caught", "End": true}
        }}));
        // WHEN the task fails with ErrorA, ErrorB, ErrorC, ErrorB
        let runner = ScriptedRunner::new().script(
            FUNCTION,
            ["ErrorA", "ErrorB", "ErrorC", "ErrorB"].map(|e| Reply::Fail(e, "")),
        );
        let done = execute(&machine, json!({}), &runner).await;
        // THEN it waits 1, 2 (first retrier), 5 (second), and the fourth error goes to Z
        assert_eq!(done.sleeps_seconds(), vec![1.0, 2.0, 5.0]);
        assert_eq!(done.output(), json!("caught"));
        assert_eq!(done.history.entered_states(), vec!["X", "Z"]);
    }

    #[tokio::test]
    async fn max_attempts_zero_never_retries_and_the_first_matching_retrier_decides() {
        let machine = flaky(json!([
            {"ErrorEquals": ["States.Timeout"], "MaxAttempts": 0},
            {"ErrorEquals": ["States.ALL"]}
        ]));
        let runner = ScriptedRunner::new().always(FUNCTION, Reply::Fail("States.Timeout", ""));
        let done = execute(&machine, json!({}), &runner).await;
        assert_eq!(done.failure().0, "States.Timeout");
        assert!(done.sleeps_seconds().is_empty());
        let runner = ScriptedRunner::new().script(FUNCTION, [Reply::Fail("Other", "")]);
        assert_eq!(
            execute(&machine, json!({}), &runner).await.sleeps_seconds(),
            vec![1.0]
        );
    }

    #[tokio::test]
    async fn full_jitter_waits_between_zero_and_the_backoff() {
        let machine = flaky(json!([{
            "ErrorEquals": ["E"], "IntervalSeconds": 2, "BackoffRate": 2, "MaxAttempts": 3, "JitterStrategy": "FULL"
        }]));
        for _ in 0..20 {
            let runner = ScriptedRunner::new()
                .script(FUNCTION, std::iter::repeat_n(Reply::Fail("E", ""), 3));
            let done = execute(&machine, json!({}), &runner).await;
            let sleeps = done.clock.sleeps();
            assert_eq!(sleeps.len(), 3);
            for (sleep, ceiling) in sleeps.iter().zip([2, 4, 8]) {
                assert!(
                    *sleep <= Duration::from_secs(ceiling),
                    "{sleep:?} > {ceiling}s"
                );
            }
        }
    }

    fn catching() -> asl::StateMachine {
        load(json!({"StartAt": "T", "States": {
            "T": {
                "Type": "Task", "Resource": FUNCTION, "TimeoutSeconds": 5, "Next": "Done",
                "Catch": [
                    {"ErrorEquals": ["ErrorA"], "ResultPath": "$.error", "Next": "OnA"},
                    {"ErrorEquals": ["ErrorA", "States.TaskFailed"], "Next": "OnTaskFailed"},
                    {"ErrorEquals": ["States.ALL"], "ResultPath": "$.all", "Next": "OnAll"}
                ]
            },
            "Done": {"Type": "Succeed"},
            "OnA": {"Type": "Succeed"},
            "OnTaskFailed": {"Type": "Succeed"},
            "OnAll": {"Type": "Succeed"}
        }}))
    }

    #[tokio::test]
    async fn the_first_matching_catcher_wins() {
        let input = json!({"foo": "bar"});
        // ErrorA matches the first catcher, which keeps the input and adds the error output
        let runner = ScriptedRunner::new().always(FUNCTION, Reply::Fail("ErrorA", "Error here"));
        let done = execute(&catching(), input.clone(), &runner).await;
        assert_eq!(done.history.entered_states(), vec!["T", "OnA"]);
        assert_eq!(
            done.output(),
            json!({"foo": "bar", "error": {"Error": "ErrorA", "Cause": "Error here"}})
        );
        // any other task error matches States.TaskFailed; the default ResultPath replaces the input
        let runner = ScriptedRunner::new().always(FUNCTION, Reply::Fail("Lambda.Unknown", "boom"));
        let done = execute(&catching(), input.clone(), &runner).await;
        assert_eq!(done.history.entered_states(), vec!["T", "OnTaskFailed"]);
        assert_eq!(
            done.output(),
            json!({"Error": "Lambda.Unknown", "Cause": "boom"})
        );
        // States.TaskFailed does not match States.Timeout; States.ALL does
        let runner = ScriptedRunner::new().always(FUNCTION, Reply::Hang);
        let done = execute(&catching(), input, &runner).await;
        assert_eq!(done.history.entered_states(), vec!["T", "OnAll"]);
        assert_eq!(done.output()["all"]["Error"], json!("States.Timeout"));
        assert_eq!(done.clock.fired_timeouts(), vec![Duration::from_secs(5)]);
        assert!(
            done.history
                .event_types()
                .contains(&"LambdaFunctionTimedOut")
        );
    }

    #[tokio::test]
    async fn an_uncaught_error_fails_the_execution_with_its_name_and_cause() {
        let machine = single(json!({"Type": "Task", "Resource": FUNCTION, "End": true}));
        let cause = r#"{"errorMessage":"not enough","errorType":"InsufficientFunds"}"#;
        let runner =
            ScriptedRunner::new().always(FUNCTION, Reply::Fail("InsufficientFunds", cause));
        let done = execute(&machine, json!({}), &runner).await;
        assert_eq!(
            done.failure(),
            ("InsufficientFunds".to_owned(), cause.to_owned())
        );
        assert_eq!(
            done.history.event_types(),
            vec![
                "ExecutionStarted",
                "TaskStateEntered",
                "LambdaFunctionScheduled",
                "LambdaFunctionStarted",
                "LambdaFunctionFailed",
                "ExecutionFailed"
            ]
        );
    }
}

mod choice_rules {
    use serde_json::{Value, json};

    use super::support::*;

    fn router() -> asl::StateMachine {
        load(json!({"StartAt": "Route", "States": {
            "Route": {
                "Type": "Choice",
                "InputPath": "$.order",
                "Choices": [
                    {"Not": {"Variable": "$.type", "StringEquals": "Private"}, "Next": "Public"},
                    {"And": [
                        {"Variable": "$.value", "IsPresent": true},
                        {"Variable": "$.value", "IsNumeric": true},
                        {"Variable": "$.value", "NumericGreaterThanEquals": 20},
                        {"Variable": "$.value", "NumericLessThan": 30}
                    ], "Next": "ValueInTwenties"},
                    {"Or": [
                        {"Variable": "$.placed", "TimestampLessThan": "2020-01-01T00:00:00Z"},
                        {"Variable": "$.placed", "TimestampGreaterThanEqualsPath": "$.deadline"}
                    ], "Next": "OutOfWindow"},
                    {"Variable": "$.code", "StringMatches": "VIP-*", "Next": "Vip"},
                    {"Variable": "$.flag", "IsNull": true, "Next": "NullFlag"}
                ],
                "Default": "Other"
            },
            "Public": {"Type": "Succeed"}, "ValueInTwenties": {"Type": "Succeed"},
            "OutOfWindow": {"Type": "Succeed"}, "Vip": {"Type": "Succeed"},
            "NullFlag": {"Type": "Succeed"}, "Other": {"Type": "Succeed"}
        }}))
    }

    async fn route(order: Value) -> String {
        let done = execute(&router(), json!({"order": order}), &ScriptedRunner::new()).await;
        done.history.entered_states()[1].clone()
    }

    #[tokio::test]
    async fn rules_are_tried_in_order() {
        let private = |extra: Value| {
            let mut order = json!({
                "type": "Private", "placed": "2024-06-01T00:00:00Z",
                "deadline": "2025-01-01T00:00:00Z", "code": "REG-1", "flag": false
            });
            for (key, value) in extra.as_object().unwrap() {
                order[key] = value.clone();
            }
            order
        };
        assert_eq!(route(json!({"type": "Public"})).await, "Public");
        assert_eq!(
            route(private(json!({"value": 25}))).await,
            "ValueInTwenties"
        );
        assert_eq!(route(private(json!({"value": 30}))).await, "Other");
        assert_eq!(route(private(json!({"value": "25"}))).await, "Other");
        assert_eq!(
            route(private(json!({"placed": "2019-12-31T23:59:59Z"}))).await,
            "OutOfWindow"
        );
        assert_eq!(
            route(private(json!({"placed": "2025-01-01T01:00:00+01:00"}))).await,
            "OutOfWindow"
        );
        assert_eq!(route(private(json!({"code": "VIP-42"}))).await, "Vip");
        assert_eq!(route(private(json!({"flag": null}))).await, "NullFlag");
    }

    #[tokio::test]
    async fn choice_records_its_events_and_applies_output_path() {
        let machine = load(json!({"StartAt": "C", "States": {
            "C": {"Type": "Choice", "OutputPath": "$.keep",
                  "Choices": [{"Variable": "$.n", "NumericEquals": 1, "Next": "End"}]},
            "End": {"Type": "Succeed"}
        }}));
        let done = execute(
            &machine,
            json!({"n": 1, "keep": {"k": true}}),
            &ScriptedRunner::new(),
        )
        .await;
        assert_eq!(done.output(), json!({"k": true}));
        assert_eq!(
            done.history.event_types(),
            vec![
                "ExecutionStarted",
                "ChoiceStateEntered",
                "ChoiceStateExited",
                "SucceedStateEntered",
                "SucceedStateExited",
                "ExecutionSucceeded"
            ]
        );
    }

    #[tokio::test]
    async fn no_match_without_default_is_states_no_choice_matched() {
        let machine = load(json!({"StartAt": "C", "States": {
            "C": {"Type": "Choice", "Choices": [{"Variable": "$.n", "NumericEquals": 1, "Next": "End"}]},
            "End": {"Type": "Succeed"}
        }}));
        let done = execute(&machine, json!({"n": 2}), &ScriptedRunner::new()).await;
        assert_eq!(done.failure().0, "States.NoChoiceMatched");
        let done = execute(&machine, json!({}), &ScriptedRunner::new()).await;
        let (error, cause) = done.failure();
        assert_eq!(error, "States.Runtime");
        assert!(cause.contains("Invalid path '$.n'"), "{cause}");
    }
}

mod wait_and_timeouts {
    use std::time::Duration;

    use asl::{CancellationHandle, Outcome, StopRequest, SystemClock};
    use serde_json::json;

    use super::support::*;

    #[tokio::test]
    async fn wait_forms_go_through_the_clock() {
        let machine = load(json!({"StartAt": "A", "States": {
            "A": {"Type": "Wait", "Seconds": 3, "Next": "B"},
            "B": {"Type": "Wait", "SecondsPath": "$.delay", "Next": "C"},
            "C": {"Type": "Wait", "Timestamp": "2024-01-01T00:01:00Z", "Next": "D"},
            "D": {"Type": "Wait", "TimestampPath": "$.until", "End": true}
        }}));
        let input = json!({"delay": 7, "until": "2023-12-31T00:00:00Z"});
        let done = execute(&machine, input.clone(), &ScriptedRunner::new()).await;
        // 3 s, 7 s, then until 00:01:00 (10 s of fake time have passed), then a past timestamp
        assert_eq!(done.sleeps_seconds(), vec![3.0, 7.0, 50.0, 0.0]);
        assert_eq!(done.output(), input);
        assert_eq!(
            done.history
                .event_types()
                .iter()
                .filter(|t| **t == "WaitStateExited")
                .count(),
            4
        );
    }

    #[tokio::test]
    async fn a_bad_seconds_path_is_a_runtime_error() {
        let machine = single(json!({"Type": "Wait", "SecondsPath": "$.delay", "End": true}));
        for input in [json!({"delay": "7"}), json!({"delay": -1}), json!({})] {
            let done = execute(&machine, input, &ScriptedRunner::new()).await;
            assert_eq!(done.failure().0, "States.Runtime");
        }
    }

    #[tokio::test]
    async fn the_time_scale_compresses_waits() {
        let machine = single(json!({"Type": "Wait", "Seconds": 30, "End": true}));
        let clock = SystemClock::with_time_scale(0.001).unwrap();
        let history = asl::MemoryHistory::new();
        let started = std::time::Instant::now();
        let outcome = asl::run_execution(
            &machine,
            context(json!({})),
            &ScriptedRunner::new(),
            &clock,
            &history,
            asl::CancellationSignal::never(),
        )
        .await;
        assert!(matches!(outcome, Outcome::Succeeded { .. }));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn task_timeout_seconds_raises_states_timeout() {
        let machine =
            single(json!({"Type": "Task", "Resource": FUNCTION, "TimeoutSeconds": 2, "End": true}));
        let runner = ScriptedRunner::new().always(FUNCTION, Reply::Hang);
        let done = execute(&machine, json!({}), &runner).await;
        assert_eq!(done.failure().0, "States.Timeout");
        assert_eq!(runner.calls()[0].timeout, Some(Duration::from_secs(2)));
        assert_eq!(done.clock.fired_timeouts(), vec![Duration::from_secs(2)]);
        let timed_out = serde_json::to_value(&done.history.events()[4]).unwrap();
        assert_eq!(timed_out["type"], json!("LambdaFunctionTimedOut"));
        assert_eq!(
            timed_out["lambdaFunctionTimedOutEventDetails"]["error"],
            json!("States.Timeout")
        );
    }

    #[tokio::test]
    async fn execution_timeout_seconds_times_the_execution_out() {
        // a Wait longer than the execution's TimeoutSeconds
        let machine = load(json!({"StartAt": "W", "TimeoutSeconds": 10, "States": {
            "W": {"Type": "Wait", "Seconds": 20, "End": true}
        }}));
        let done = execute(&machine, json!({}), &ScriptedRunner::new()).await;
        assert_eq!(done.outcome, Outcome::TimedOut);
        assert_eq!(done.sleeps_seconds(), vec![10.0]);
        assert_eq!(
            done.history.event_types().last(),
            Some(&"ExecutionTimedOut")
        );
        // a task that never answers, with a task timeout longer than the execution's
        let machine = load(json!({"StartAt": "T", "TimeoutSeconds": 5, "States": {
            "T": {"Type": "Task", "Resource": FUNCTION, "TimeoutSeconds": 60, "End": true,
                  "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Never"}]},
            "Never": {"Type": "Succeed"}
        }}));
        let runner = ScriptedRunner::new().always(FUNCTION, Reply::Hang);
        let done = execute(&machine, json!({}), &runner).await;
        assert_eq!(done.outcome, Outcome::TimedOut);
        assert_eq!(done.clock.fired_timeouts(), vec![Duration::from_secs(5)]);
    }

    #[tokio::test]
    async fn stop_aborts_a_running_execution() {
        let machine = single(json!({"Type": "Task", "Resource": FUNCTION, "End": true}));
        let runner = ScriptedRunner::new().always(FUNCTION, Reply::Hang);
        let handle = CancellationHandle::new();
        let stop = async {
            tokio::task::yield_now().await;
            handle.stop(StopRequest {
                error: Some("Operator".into()),
                cause: Some("stopped by hand".into()),
            });
        };
        let (done, ()) = tokio::join!(
            execute_with(&machine, json!({}), &runner, handle.signal()),
            stop
        );
        assert_eq!(done.outcome, Outcome::Aborted);
        let aborted = serde_json::to_value(done.history.events().last().unwrap()).unwrap();
        assert_eq!(aborted["type"], json!("ExecutionAborted"));
        assert_eq!(
            aborted["executionAbortedEventDetails"],
            json!({"error": "Operator", "cause": "stopped by hand"})
        );
        // a plain watch::Receiver<bool> works as a signal too
        let (flag, receiver) = tokio::sync::watch::channel(false);
        let stop = async {
            tokio::task::yield_now().await;
            flag.send_replace(true);
        };
        let run = execute_with(&machine, json!({}), &runner, receiver.into());
        let (done, ()) = tokio::join!(run, stop);
        assert_eq!(done.outcome, Outcome::Aborted);
        // a stop before the first state aborts at once
        let handle = CancellationHandle::new();
        handle.stop(StopRequest::default());
        let done = execute_with(&machine, json!({}), &runner, handle.signal()).await;
        assert_eq!(done.outcome, Outcome::Aborted);
        assert_eq!(
            done.history.event_types(),
            vec!["ExecutionStarted", "ExecutionAborted"]
        );
    }
}

mod pass_fail_and_intrinsics {
    use asl::Outcome;
    use serde_json::json;

    use super::support::*;

    #[tokio::test]
    async fn math_add_counts_like_the_saga_does() {
        let machine = single(json!({
            "Type": "Pass",
            "Parameters": {"status": "UNKNOWN", "checks.$": "States.MathAdd($.charge.checks, 1)"},
            "ResultPath": "$.charge",
            "End": true
        }));
        let done = execute(
            &machine,
            json!({"charge": {"checks": 3}, "id": "p"}),
            &ScriptedRunner::new(),
        )
        .await;
        assert_eq!(
            done.output(),
            json!({"charge": {"status": "UNKNOWN", "checks": 4}, "id": "p"})
        );
        assert!(done.output()["charge"]["checks"].is_i64());
    }

    #[tokio::test]
    async fn other_intrinsics_in_parameters() {
        let machine = single(json!({
            "Type": "Pass",
            "Parameters": {
                "greeting.$": "States.Format('Hello, my name is {}.', $.name)",
                "parsed.$": "States.StringToJson($.escaped)",
                "text.$": "States.JsonToString($.raw)",
                "ids.$": "States.Array($.Id, $$.Execution.Name)",
                "uuid.$": "States.UUID()"
            },
            "End": true
        }));
        let input = json!({"name": "Arnav", "escaped": "{\"foo\": \"bar\"}", "raw": {"foo": "bar"}, "Id": 123456});
        let output = execute(&machine, input, &ScriptedRunner::new())
            .await
            .output();
        assert_eq!(output["greeting"], json!("Hello, my name is Arnav."));
        assert_eq!(output["parsed"], json!({"foo": "bar"}));
        assert_eq!(output["text"], json!("{\"foo\":\"bar\"}"));
        assert_eq!(output["ids"], json!([123456, "run-1"]));
        assert_eq!(output["uuid"].as_str().unwrap().len(), 36);
    }

    #[tokio::test]
    async fn pass_result_and_fail_with_paths() {
        let machine = load(json!({"StartAt": "P", "States": {
            "P": {
                "Type": "Pass", "Result": {"Error": "Declined", "Cause": "card"},
                "ResultPath": "$.error", "Next": "F"
            },
            "F": {
                "Type": "Fail", "ErrorPath": "$.error.Error",
                "CausePath": "States.Format('because {}', $.error.Cause)"
            }
        }}));
        let done = execute(&machine, json!({}), &ScriptedRunner::new()).await;
        assert_eq!(
            done.failure(),
            ("Declined".to_owned(), "because card".to_owned())
        );
        assert_eq!(
            done.history.event_types(),
            vec![
                "ExecutionStarted",
                "PassStateEntered",
                "PassStateExited",
                "FailStateEntered",
                "ExecutionFailed"
            ]
        );
        // a Fail state without Error/Cause leaves them out of the event
        let done = execute(
            &single(json!({"Type": "Fail"})),
            json!({}),
            &ScriptedRunner::new(),
        )
        .await;
        assert_eq!(
            done.outcome,
            Outcome::Failed {
                error: String::new(),
                cause: String::new()
            }
        );
        let failed = serde_json::to_value(done.history.events().last().unwrap()).unwrap();
        assert_eq!(failed["executionFailedEventDetails"], json!({}));
    }
}

mod callback_pattern {
    use std::time::Duration;

    use asl::{
        CallbackError, CancellationHandle, EventKind, ExecutionContext, FakeClock, HistoryEvent,
        MemoryHistory, Outcome, StateMachine, StopRequest, TaskTokens,
    };
    use serde_json::{Value, json};

    use super::support::*;

    const CALLBACK: &str = "arn:aws:states:::lambda:invoke.waitForTaskToken";

    /// A callback task `S` around `extra` fields, its Lambda `notify` given
    /// the token and the order; `Done` follows it, and `Handled` (for a
    /// Catch) follows `Done`.
    fn callback_machine(extra: Value) -> StateMachine {
        let mut task = json!({
            "Type": "Task", "Resource": CALLBACK,
            "Parameters": {
                "FunctionName": "notify",
                "Payload": {"taskToken.$": "$$.Task.Token", "order.$": "$.order"}
            },
            "ResultPath": "$.answer",
            "Next": "Done"
        });
        for (key, value) in extra.as_object().unwrap() {
            task[key] = value.clone();
        }
        load(json!({"StartAt": "S", "States": {
            "S": task,
            "Done": {"Type": "Pass", "Next": "Handled"},
            "Handled": {"Type": "Succeed"}
        }}))
    }

    /// The history of `callback_machine` when the task succeeds.
    const SUCCEEDED_EVENTS: [&str; 12] = [
        "ExecutionStarted",
        "TaskStateEntered",
        "TaskScheduled",
        "TaskStarted",
        "TaskSubmitted",
        "TaskSucceeded",
        "TaskStateExited",
        "PassStateEntered",
        "PassStateExited",
        "SucceedStateEntered",
        "SucceedStateExited",
        "ExecutionSucceeded",
    ];

    fn order() -> Value {
        json!({"order": "o-1"})
    }

    /// The token handed to the `index`-th call of the Lambda.
    fn token_of(runner: &ScriptedRunner, index: usize) -> String {
        runner.calls()[index].input["taskToken"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Waits (yielding, so a FakeClock's timers stay put) until the task has
    /// submitted its Lambda call, then answers with the attempt's token.
    async fn when_submitted(
        history: &MemoryHistory,
        runner: &ScriptedRunner,
        answer: impl FnOnce(&TaskTokens, &str),
    ) {
        for _ in 0..1_000 {
            if history.event_types().contains(&"TaskSubmitted") {
                let calls = runner.calls().len();
                answer(runner.tokens(), &token_of(runner, calls - 1));
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("the task never submitted: {:?}", history.event_types());
    }

    /// Runs `machine` on a Lambda that only hands its token on, and
    /// `answer`s the token once the task waits (TaskSubmitted).
    async fn answered_once_submitted(
        machine: &StateMachine,
        answer: impl FnOnce(&TaskTokens, &str),
    ) -> (Outcome, MemoryHistory) {
        let runner = ScriptedRunner::new();
        let (clock, history) = (FakeClock::new(start_time()), MemoryHistory::new());
        let (outcome, ()) = tokio::join!(
            run_on(machine, order(), &runner, &clock, &history),
            when_submitted(&history, &runner, answer)
        );
        (outcome, history)
    }

    fn event_json(history: &MemoryHistory, event_type: &str) -> Value {
        let event = history
            .events()
            .into_iter()
            .find(|event| event.event_type() == event_type)
            .unwrap_or_else(|| panic!("no {event_type}"));
        serde_json::to_value(event).unwrap()
    }

    #[tokio::test]
    async fn a_callback_sent_from_inside_the_lambda_is_the_result_with_aws_history() {
        // GIVEN a Lambda that calls SendTaskSuccess itself before returning
        let machine = callback_machine(json!({"HeartbeatSeconds": 5, "TimeoutSeconds": 60}));
        let runner =
            ScriptedRunner::new().always("notify", Reply::AnswerToken(json!({"approved": true})));
        // WHEN it runs
        let done = execute(&machine, order(), &runner).await;
        // THEN the callback's output, not the Lambda's, is the task's result
        assert_eq!(
            done.output(),
            json!({"order": "o-1", "answer": {"approved": true}})
        );
        // AND the Lambda got the payload with the token ("{sequence}-{uuid}")
        let token = token_of(&runner, 0);
        assert_eq!(runner.calls()[0].input["order"], json!("o-1"));
        assert!(token.starts_with("1-") && token.len() == 2 + 36, "{token}");
        // AND the history is AWS's callback sequence
        assert_eq!(done.history.event_types(), SUCCEEDED_EVENTS);
        let scheduled = &event_json(&done.history, "TaskScheduled")["taskScheduledEventDetails"];
        assert_eq!(scheduled["resourceType"], json!("lambda"));
        assert_eq!(scheduled["resource"], json!("invoke.waitForTaskToken"));
        assert_eq!(scheduled["heartbeatInSeconds"], json!(5));
        assert_eq!(scheduled["timeoutInSeconds"], json!(60));
        let parameters: Value =
            serde_json::from_str(scheduled["parameters"].as_str().unwrap()).unwrap();
        assert_eq!(parameters["Payload"]["taskToken"], json!(token));
        let started = &event_json(&done.history, "TaskStarted")["taskStartedEventDetails"];
        assert_eq!(started["resource"], json!("invoke.waitForTaskToken"));
        let submitted = &event_json(&done.history, "TaskSubmitted")["taskSubmittedEventDetails"];
        assert_eq!(submitted["resourceType"], json!("lambda"));
        assert_eq!(submitted["resource"], json!("invoke.waitForTaskToken"));
        assert_eq!(submitted["outputDetails"], json!({"truncated": false}));
        let invoked: Value = serde_json::from_str(submitted["output"].as_str().unwrap()).unwrap();
        assert_eq!(invoked["Payload"], json!({"submitted": true}));
        assert_eq!(invoked["StatusCode"], json!(200));
        let succeeded = &event_json(&done.history, "TaskSucceeded")["taskSucceededEventDetails"];
        assert_eq!(succeeded["output"], json!("{\"approved\":true}"));
        // AND every event reads back from its JSON
        for event in done.history.events() {
            let json = serde_json::to_value(&event).unwrap();
            assert_eq!(HistoryEvent::from_value(&json).unwrap(), event);
        }
        // AND the ended task's token is closed
        assert_eq!(
            runner.tokens().send_success(&token, json!(1)),
            Err(CallbackError::TaskTimedOut)
        );
    }

    #[tokio::test]
    async fn a_callback_sent_after_task_submitted_is_the_result() {
        // GIVEN a Lambda that only hands the token on
        let machine = callback_machine(json!({}));
        // WHEN someone answers once the task waits
        let (outcome, history) = answered_once_submitted(&machine, |tokens, token| {
            tokens.send_success(token, json!("approved")).unwrap();
        })
        .await;
        // THEN that answer is the result
        assert_eq!(
            outcome,
            Outcome::Succeeded {
                output: json!({"order": "o-1", "answer": "approved"})
            }
        );
        let submitted = history
            .events()
            .iter()
            .position(|e| matches!(e.kind, EventKind::TaskSubmitted(_)));
        assert_eq!(submitted, Some(4));
    }

    #[tokio::test]
    async fn send_failure_fails_the_task_and_catch_sees_its_error_and_cause() {
        let machine = callback_machine(json!({
            "Catch": [{"ErrorEquals": ["Declined"], "ResultPath": "$.error", "Next": "Handled"},
                      {"ErrorEquals": ["States.ALL"], "ResultPath": "$.other", "Next": "Handled"}]
        }));
        // GIVEN a failure with an error and a cause
        let (outcome, history) = answered_once_submitted(&machine, |tokens, token| {
            let (error, cause) = (Some("Declined".into()), Some("card".into()));
            tokens.send_failure(token, error, cause).unwrap();
        })
        .await;
        // THEN the Catch on its error takes it
        assert_eq!(
            outcome,
            Outcome::Succeeded {
                output: json!({"order": "o-1", "error": {"Error": "Declined", "Cause": "card"}})
            }
        );
        assert_eq!(
            event_json(&history, "TaskFailed")["taskFailedEventDetails"],
            json!({"resourceType": "lambda", "resource": "invoke.waitForTaskToken",
                   "error": "Declined", "cause": "card"})
        );
        // GIVEN a failure with neither: AWS records TaskFailed without an error
        let (outcome, history) = answered_once_submitted(&machine, |tokens, token| {
            tokens.send_failure(token, None, None).unwrap();
        })
        .await;
        assert_eq!(
            outcome,
            Outcome::Succeeded {
                output: json!({"order": "o-1", "other": {"Error": "", "Cause": ""}})
            }
        );
        assert_eq!(
            event_json(&history, "TaskFailed")["taskFailedEventDetails"],
            json!({"resourceType": "lambda", "resource": "invoke.waitForTaskToken"})
        );
    }

    #[tokio::test]
    async fn a_failing_lambda_fails_the_attempt_and_closes_its_token() {
        let machine = callback_machine(json!({}));
        let runner = ScriptedRunner::new().always("notify", Reply::Fail("Boom", "{}"));
        let done = execute(&machine, order(), &runner).await;
        assert_eq!(done.failure(), ("Boom".to_owned(), "{}".to_owned()));
        let types = done.history.event_types();
        assert!(!types.contains(&"TaskSubmitted"), "{types:?}");
        assert!(types.contains(&"TaskFailed"), "{types:?}");
        assert_eq!(
            runner.tokens().send_heartbeat(&token_of(&runner, 0)),
            Err(CallbackError::TaskTimedOut)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn heartbeats_keep_a_task_alive_past_heartbeat_seconds() {
        // GIVEN HeartbeatSeconds 5 and a worker that beats every 4 s for 16 s
        let machine = callback_machine(json!({"HeartbeatSeconds": 5, "TimeoutSeconds": 60}));
        let runner = ScriptedRunner::new();
        let (clock, history) = (PausedClock::new(), MemoryHistory::new());
        let worker = async {
            when_submitted(&history, &runner, |_, _| {}).await;
            let token = token_of(&runner, 0);
            for _ in 0..4 {
                tokio::time::sleep(Duration::from_secs(4)).await;
                runner.tokens().send_heartbeat(&token).unwrap();
            }
            runner.tokens().send_success(&token, json!("done")).unwrap();
        };
        let (outcome, ()) =
            tokio::join!(run_on(&machine, order(), &runner, &clock, &history), worker);
        // THEN the task outlives its HeartbeatSeconds three times over and succeeds
        assert_eq!(
            outcome,
            Outcome::Succeeded {
                output: json!({"order": "o-1", "answer": "done"})
            }
        );
        assert_eq!(clock.elapsed(), Duration::from_secs(16));
        // AND heartbeats leave no history events (as on AWS)
        assert_eq!(history.event_types(), SUCCEEDED_EVENTS);
    }

    #[tokio::test]
    async fn no_heartbeat_within_heartbeat_seconds_is_states_heartbeat_timeout() {
        // GIVEN a retry, then a catch, on States.HeartbeatTimeout, and nobody answering
        let machine = callback_machine(json!({
            "HeartbeatSeconds": 5, "TimeoutSeconds": 60,
            "Retry": [{"ErrorEquals": ["States.HeartbeatTimeout"], "MaxAttempts": 1}],
            "Catch": [{"ErrorEquals": ["States.HeartbeatTimeout"], "ResultPath": "$.error",
                       "Next": "Handled"}]
        }));
        let runner = ScriptedRunner::new();
        let done = execute(&machine, order(), &runner).await;
        // THEN both attempts time out after 5 s and the catcher takes the error
        assert_eq!(
            done.output()["error"],
            json!({"Error": "States.HeartbeatTimeout", "Cause": ""})
        );
        assert_eq!(
            done.clock.fired_timeouts(),
            vec![Duration::from_secs(5), Duration::from_secs(5)]
        );
        let timed_out = &event_json(&done.history, "TaskTimedOut")["taskTimedOutEventDetails"];
        assert_eq!(timed_out["error"], json!("States.HeartbeatTimeout"));
        // AND each attempt had its own token, closed when it ended
        let (first, second) = (token_of(&runner, 0), token_of(&runner, 1));
        assert_ne!(first, second);
        for token in [first, second] {
            assert_eq!(
                runner.tokens().send_success(&token, json!(1)),
                Err(CallbackError::TaskTimedOut)
            );
        }
    }

    #[tokio::test]
    async fn timeout_seconds_counts_from_task_started_the_lambda_included() {
        let machine = callback_machine(json!({"TimeoutSeconds": 10}));
        // GIVEN nobody answering THEN the task times out after TimeoutSeconds
        let runner = ScriptedRunner::new();
        let done = execute(&machine, order(), &runner).await;
        assert_eq!(done.failure().0, "States.Timeout");
        assert_eq!(done.clock.fired_timeouts(), vec![Duration::from_secs(10)]);
        let timed_out = &event_json(&done.history, "TaskTimedOut")["taskTimedOutEventDetails"];
        assert_eq!(timed_out["error"], json!("States.Timeout"));
        // GIVEN a Lambda that never returns THEN the same timer ends it, before TaskSubmitted
        let runner = ScriptedRunner::new().always("notify", Reply::Hang);
        let done = execute(&machine, order(), &runner).await;
        assert_eq!(done.failure().0, "States.Timeout");
        assert_eq!(runner.calls()[0].timeout, Some(Duration::from_secs(10)));
        assert!(!done.history.event_types().contains(&"TaskSubmitted"));
    }

    #[tokio::test(start_paused = true)]
    async fn heartbeats_do_not_extend_timeout_seconds() {
        // GIVEN a worker that beats every 3 s and never answers
        let machine = callback_machine(json!({"HeartbeatSeconds": 5, "TimeoutSeconds": 12}));
        let runner = ScriptedRunner::new();
        let (clock, history) = (PausedClock::new(), MemoryHistory::new());
        let worker = async {
            when_submitted(&history, &runner, |_, _| {}).await;
            let token = token_of(&runner, 0);
            for _ in 0..10 {
                tokio::time::sleep(Duration::from_secs(3)).await;
                if runner.tokens().send_heartbeat(&token).is_err() {
                    return;
                }
            }
        };
        let (outcome, ()) =
            tokio::join!(run_on(&machine, order(), &runner, &clock, &history), worker);
        // THEN TimeoutSeconds, counted from TaskStarted, still ends the task
        assert!(
            matches!(&outcome, Outcome::Failed { error, .. } if error == "States.Timeout"),
            "{outcome:?}"
        );
        let timed_out = history
            .events()
            .into_iter()
            .find(|event| event.event_type() == "TaskTimedOut")
            .unwrap();
        assert_eq!(timed_out.timestamp - start_time(), Duration::from_secs(12));
    }

    #[tokio::test]
    async fn the_execution_timeout_and_stop_still_win_and_close_the_token() {
        // GIVEN an execution TimeoutSeconds shorter than the task's
        let machine = load(
            json!({"StartAt": "S", "TimeoutSeconds": 5, "States": {"S": {
            "Type": "Task", "Resource": CALLBACK, "TimeoutSeconds": 60, "HeartbeatSeconds": 30,
            "Parameters": {"FunctionName": "notify", "Payload": {"taskToken.$": "$$.Task.Token"}},
            "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Never"}],
            "Next": "Never"
        }, "Never": {"Type": "Succeed"}}}),
        );
        let runner = ScriptedRunner::new();
        let done = execute(&machine, json!({}), &runner).await;
        assert_eq!(done.outcome, Outcome::TimedOut);
        assert_eq!(done.clock.fired_timeouts(), vec![Duration::from_secs(5)]);
        assert_eq!(
            runner
                .tokens()
                .send_success(&token_of(&runner, 0), json!(1)),
            Err(CallbackError::TaskTimedOut)
        );
        // GIVEN a stop while the task waits
        let machine = callback_machine(json!({}));
        let runner = ScriptedRunner::new();
        let handle = CancellationHandle::new();
        let history = MemoryHistory::new();
        let stop = async {
            when_submitted(&history, &runner, |_, _| {}).await;
            handle.stop(StopRequest::default());
        };
        let clock = FakeClock::new(start_time());
        let run = asl::run_execution(
            &machine,
            context(order()),
            &runner,
            &clock,
            &history,
            handle.signal(),
        );
        let (outcome, ()) = tokio::join!(run, stop);
        assert_eq!(outcome, Outcome::Aborted);
        assert_eq!(
            runner
                .tokens()
                .send_success(&token_of(&runner, 0), json!(1)),
            Err(CallbackError::TaskTimedOut)
        );
    }

    #[tokio::test]
    async fn tokens_are_unique_across_equally_seeded_executions_and_unknown_ones_are_invalid() {
        let machine = callback_machine(json!({}));
        let runner = ScriptedRunner::new().always("notify", Reply::AnswerToken(json!(1)));
        for _ in 0..2 {
            let ctx = ExecutionContext {
                rng_seed: Some(7),
                ..context(order())
            };
            let clock = FakeClock::new(start_time());
            let history = MemoryHistory::new();
            let never = asl::CancellationSignal::never();
            let outcome = asl::run_execution(&machine, ctx, &runner, &clock, &history, never).await;
            assert!(matches!(outcome, Outcome::Succeeded { .. }), "{outcome:?}");
        }
        let (first, second) = (token_of(&runner, 0), token_of(&runner, 1));
        assert_ne!(first, second);
        // the same seed draws the same uuid: only the sequence tells them apart
        assert_eq!(
            first.split_once('-').unwrap().1,
            second.split_once('-').unwrap().1
        );
        let tokens = runner.tokens();
        assert_eq!(
            tokens.send_heartbeat("not-a-token"),
            Err(CallbackError::InvalidToken)
        );
        assert_eq!(
            tokens.send_failure(&first, None, None),
            Err(CallbackError::TaskTimedOut)
        );
        assert_eq!(CallbackError::InvalidToken.aws_error_code(), "InvalidToken");
        assert_eq!(CallbackError::TaskTimedOut.aws_error_code(), "TaskTimedOut");
    }

    #[test]
    fn an_execution_waiting_for_a_callback_can_move_between_threads() {
        // The local cloud spawns executions on a multi-threaded runtime.
        fn assert_send<T: Send>(_: &T) {}
        let machine = callback_machine(json!({"HeartbeatSeconds": 5}));
        let (runner, clock, history) = (
            ScriptedRunner::new(),
            FakeClock::new(start_time()),
            MemoryHistory::new(),
        );
        let run = run_on(&machine, order(), &runner, &clock, &history);
        assert_send(&run);
    }

    #[tokio::test]
    async fn a_runner_without_task_tokens_fails_with_states_runtime() {
        let machine = callback_machine(json!({
            "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Handled"}]
        }));
        let runner = ScriptedRunner::new().without_task_tokens();
        let done = execute(&machine, order(), &runner).await;
        let (error, cause) = done.failure();
        assert_eq!(error, "States.Runtime");
        assert!(
            cause.contains("'S'") && cause.contains("task tokens"),
            "{cause}"
        );
        assert!(runner.calls().is_empty());
        assert!(!done.history.event_types().contains(&"TaskScheduled"));
    }
}

mod load_rejections {
    use std::collections::BTreeMap;

    use asl::{AslError, StateMachine};
    use serde_json::{Value, json};

    fn refusal(definition: Value) -> AslError {
        StateMachine::load(&definition.to_string(), &BTreeMap::new()).unwrap_err()
    }

    fn refusal_of(state: Value) -> String {
        refusal(json!({"StartAt": "S", "States": {"S": state, "End": {"Type": "Succeed"}}}))
            .to_string()
    }

    /// A valid callback task, with `extra` fields.
    fn callback(extra: Value) -> Value {
        let mut state = task(json!({
            "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
            "Parameters": {"FunctionName": "f", "Payload": {"token.$": "$$.Task.Token"}}
        }));
        for (key, value) in extra.as_object().unwrap() {
            state[key] = value.clone();
        }
        state
    }

    fn task(extra: Value) -> Value {
        let mut state = json!({"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:1:function:f", "Next": "End"});
        for (key, value) in extra.as_object().unwrap() {
            state[key] = value.clone();
        }
        state
    }

    #[test]
    fn unsupported_features_are_named_with_their_state_and_field() {
        let cases = [
            (
                json!({"Type": "Parallel", "Branches": [], "Next": "End"}),
                "Type",
            ),
            (
                json!({"Type": "Map", "ItemProcessor": {}, "Next": "End"}),
                "Type",
            ),
            (task(json!({"HeartbeatSeconds": 5})), "HeartbeatSeconds"),
            (
                task(json!({"TimeoutSecondsPath": "$.t"})),
                "TimeoutSecondsPath",
            ),
            (task(json!({"Assign": {"x": 1}})), "Assign"),
            (task(json!({"QueryLanguage": "JSONata"})), "QueryLanguage"),
            (
                task(json!({"Resource": "arn:aws:states:::sqs:sendMessage"})),
                "Resource",
            ),
            (
                task(json!({"Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken"})),
                "Resource",
            ),
            (
                task(json!({
                    "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
                    "Parameters": {"FunctionName": "f", "Qualifier": "1",
                                   "Payload": {"t.$": "$$.Task.Token"}}
                })),
                "Parameters.Qualifier",
            ),
            (
                callback(json!({"HeartbeatSecondsPath": "$.h"})),
                "HeartbeatSecondsPath",
            ),
            (
                task(
                    json!({"Resource": "arn:aws:states:::lambda:invoke", "Parameters": {"FunctionName": "f", "Qualifier": "1"}}),
                ),
                "Parameters.Qualifier",
            ),
            (
                task(json!({"Parameters": {"h.$": "States.Hash($.a, 'SHA-256')"}})),
                "Parameters.h.$",
            ),
            (
                task(json!({"InputPath": "$$.Execution.Input"})),
                "InputPath",
            ),
            (task(json!({"OutputPath": "$..deep"})), "OutputPath"),
        ];
        for (state, field) in cases {
            let message = refusal_of(state.clone());
            assert!(message.contains("state 'S'"), "{state}: {message}");
            assert!(message.contains(field), "{state}: {message}");
        }
        assert!(
            refusal_of(task(json!({"HeartbeatSeconds": 5})))
                .contains("not supported by the local interpreter")
        );
    }

    #[test]
    fn callback_tasks_must_pass_their_token_and_beat_faster_than_they_time_out() {
        // GIVEN callback tasks that break a rule THEN each is refused, naming the field
        let cases = [
            (
                callback(json!({"Parameters": {"FunctionName": "f", "Payload": {"id.$": "$.id"}}})),
                "Parameters",
                "$$.Task.Token",
            ),
            (
                callback(json!({"Parameters": {"FunctionName": "f",
                                               "Payload": {"token": "$$.Task.Token"}}})),
                "Parameters",
                "$$.Task.Token",
            ),
            (
                callback(json!({"HeartbeatSeconds": 60, "TimeoutSeconds": 60})),
                "HeartbeatSeconds",
                "smaller than TimeoutSeconds",
            ),
            (
                callback(json!({"HeartbeatSeconds": 0})),
                "HeartbeatSeconds",
                "integer",
            ),
            (
                task(json!({"HeartbeatSeconds": 5, "TimeoutSeconds": 60})),
                "HeartbeatSeconds",
                "waitForTaskToken",
            ),
        ];
        for (state, field, reason) in cases {
            let message = refusal_of(state.clone());
            assert!(
                message.contains("state 'S'")
                    && message.contains(field)
                    && message.contains(reason),
                "{state}: {message}"
            );
        }
        // AND the token may sit deep in the Parameters or inside an intrinsic
        for parameters in [
            json!({"FunctionName": "f", "Payload": {"a": [{"t.$": "$$.Task.Token"}]}}),
            json!({"FunctionName": "f", "Payload": {"t.$": "States.Format('t={}', $$.Task.Token)"}}),
        ] {
            let state = callback(json!({"Parameters": parameters, "HeartbeatSeconds": 5}));
            let definition =
                json!({"StartAt": "S", "States": {"S": state, "End": {"Type": "Succeed"}}});
            assert!(
                StateMachine::load(&definition.to_string(), &BTreeMap::new()).is_ok(),
                "{definition}"
            );
        }
    }

    #[test]
    fn invalid_definitions_are_refused() {
        let cases = [
            (task(json!({"Foo": 1})), "Foo"),
            (task(json!({"Next": "Nowhere"})), "Nowhere"),
            (task(json!({"End": true})), "Next"),
            (
                task(json!({"Retry": [{"ErrorEquals": ["States.ALL"]}, {"ErrorEquals": ["E"]}]})),
                "Retry[0].ErrorEquals",
            ),
            (
                task(json!({"Catch": [{"ErrorEquals": ["States.ALL", "E"], "Next": "End"}]})),
                "Catch[0].ErrorEquals",
            ),
            (
                task(json!({"Retry": [{"ErrorEquals": ["E"], "BackoffRate": 0.5}]})),
                "BackoffRate",
            ),
            (
                task(json!({"Retry": [{"ErrorEquals": ["E"], "IntervalSeconds": 1.5}]})),
                "IntervalSeconds",
            ),
            (
                task(json!({"Retry": [{"ErrorEquals": ["E"], "MaxDelaySeconds": 0}]})),
                "MaxDelaySeconds",
            ),
            (
                task(json!({"Retry": [{"ErrorEquals": ["E"], "JitterStrategy": "HALF"}]})),
                "JitterStrategy",
            ),
            (task(json!({"Retry": [{"ErrorEquals": []}]})), "ErrorEquals"),
            (task(json!({"TimeoutSeconds": 0})), "TimeoutSeconds"),
            (
                json!({"Type": "Wait", "Seconds": 1, "SecondsPath": "$.s", "Next": "End"}),
                "Seconds",
            ),
            (
                json!({"Type": "Choice", "Choices": [{"Variable": "$.a", "StringEquals": 1, "Next": "End"}]}),
                "StringEquals",
            ),
            (
                json!({"Type": "Fail", "Error": "E", "ErrorPath": "$.e"}),
                "ErrorPath",
            ),
            (json!({"Type": "Nope"}), "Type"),
        ];
        for (state, field) in cases {
            let message = refusal_of(state.clone());
            assert!(
                message.contains("'S'") && message.contains(field),
                "{state}: {message}"
            );
        }
        let unreachable = refusal(
            json!({"StartAt": "A", "States": {"A": {"Type": "Succeed"}, "B": {"Type": "Succeed"}}}),
        );
        assert!(unreachable.to_string().contains("'B'"), "{unreachable}");
        let missing_start = refusal(json!({"StartAt": "Z", "States": {"A": {"Type": "Succeed"}}}));
        assert!(
            missing_start.to_string().contains("StartAt"),
            "{missing_start}"
        );
        assert!(matches!(
            StateMachine::load("{\"StartAt\": ", &BTreeMap::new()),
            Err(AslError::Json(_))
        ));
    }

    #[test]
    fn substitutions_must_all_be_known() {
        let text = r#"{"StartAt": "S", "States": {"S": {"Type": "Task", "Resource": "${Fn}", "End": true}}}"#;
        assert_eq!(
            StateMachine::load(text, &BTreeMap::new()).unwrap_err(),
            AslError::UnknownSubstitution("Fn".into())
        );
        let subs = BTreeMap::from([(
            "Fn".to_owned(),
            "arn:aws:lambda:us-east-1:1:function:f".to_owned(),
        )]);
        let machine = StateMachine::load(text, &subs).unwrap();
        assert!(machine.definition().contains("function:f"));
        assert_eq!(machine.timeout_seconds(), None);
    }
}

mod payment_saga {
    use std::collections::BTreeMap;
    use std::path::Path;
    use std::time::Duration;

    use asl::{EventKind, StateMachine};
    use serde_json::{Value, json};

    use super::support::*;

    const INVOICE: &str = "arn:aws:lambda:us-east-1:000000000000:function:local-invoice-processor";
    const WALLET: &str = "arn:aws:lambda:us-east-1:000000000000:function:local-wallet-service";
    const ADAPTER: &str = "arn:aws:lambda:us-east-1:000000000000:function:local-payments-adapter";

    fn saga() -> StateMachine {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../state-machine/payment-saga.asl.json");
        let text = std::fs::read_to_string(path).unwrap();
        let substitutions = BTreeMap::from([
            ("InvoiceProcessorFunctionArn".to_owned(), INVOICE.to_owned()),
            ("WalletServiceFunctionArn".to_owned(), WALLET.to_owned()),
            ("PaymentsAdapterFunctionArn".to_owned(), ADAPTER.to_owned()),
        ]);
        StateMachine::load(&text, &substitutions).unwrap()
    }

    fn payment() -> Value {
        json!({
            "paymentId": "pay_01HZX",
            "userId": "user_1",
            "amount": {"amount": "50.00", "currency": "USD"}
        })
    }

    /// An invoice-processor reply: the payment's status after the command.
    fn invoice(status: &str) -> Reply {
        Reply::Value(json!({"paymentId": "pay_01HZX", "status": status, "version": 1}))
    }

    /// A runner whose CREATE answers a new, PENDING payment (as
    /// invoice-processor does), so `IsPaymentUnderway` lets the saga go on.
    fn saga_runner() -> ScriptedRunner {
        ScriptedRunner::new().always("CREATE", invoice("PENDING"))
    }

    fn charged(status: &str) -> Reply {
        let mut reply = json!({"status": status, "checks": 0});
        if status == "APPROVED" {
            reply["gatewayReference"] = json!("gw-ref-1");
        }
        Reply::Value(reply)
    }

    /// A payments-adapter CANCEL answer. The state machine passes no
    /// `checks`, so the adapter counts this call as the first.
    fn closed(status: &str) -> Reply {
        let mut reply = json!({"status": status, "checks": 1, "gatewayReference": "gw-ref-1"});
        if status == "DECLINED" {
            // a tombstone: the gateway had no charge and now never will
            reply["gatewayReference"] = json!("gwc-ref-1");
            reply["declineCode"] = json!("canceled");
        }
        Reply::Value(reply)
    }

    /// A wallet-service COMPENSATE answer for a payment that was never debited.
    fn nothing_to_compensate() -> Reply {
        Reply::Value(json!({"moved": false, "replayed": false}))
    }

    const HEAD: [&str; 5] = [
        "CreateInvoice",
        "IsPaymentUnderway",
        "DebitWallet",
        "UpdatePaymentProcessing",
        "ProcessPayment",
    ];
    const CLOSE: [&str; 2] = ["CancelCharge", "IsPaymentClosed"];
    const COMPENSATED: [&str; 3] = ["RefundWallet", "UpdatePaymentFailed", "PaymentFailed"];

    fn states(parts: &[&[&str]]) -> Vec<String> {
        parts
            .iter()
            .flat_map(|p| p.iter())
            .map(|s| (*s).to_owned())
            .collect()
    }

    /// The position of the first call for `key` among all calls.
    fn first_call(runner: &ScriptedRunner, key: &str) -> usize {
        runner
            .calls()
            .iter()
            .position(|call| call.input["action"] == key)
            .unwrap_or_else(|| panic!("no {key} call"))
    }

    #[tokio::test]
    async fn loads_with_its_substitutions_and_timeout() {
        let machine = saga();
        assert_eq!(machine.start_at(), "CreateInvoice");
        assert_eq!(machine.timeout_seconds(), Some(1800));
        assert_eq!(machine.state_names().count(), 28);
    }

    #[tokio::test]
    async fn happy_path_completes_the_payment() {
        let runner = saga_runner().script("CHARGE", [charged("APPROVED")]);
        let done = execute(&saga(), payment(), &runner).await;
        assert_eq!(
            done.history.entered_states(),
            states(&[
                &HEAD,
                &[
                    "IsPaymentApproved",
                    "UpdatePaymentSuccess",
                    "PaymentSuccess"
                ]
            ])
        );
        let output = done.output();
        assert_eq!(output["charge"]["gatewayReference"], json!("gw-ref-1"));
        assert_eq!(output["paymentId"], json!("pay_01HZX"));
        let create = &runner.calls_for("CREATE")[0];
        assert_eq!(create.resource, INVOICE);
        assert_eq!(
            create.input,
            json!({"action": "CREATE", "payment": payment()})
        );
        assert_eq!(create.timeout, Some(Duration::from_secs(15)));
        let debit = &runner.calls_for("DEBIT")[0];
        assert_eq!(debit.resource, WALLET);
        assert_eq!(
            debit.input["amount"],
            json!({"amount": "50.00", "currency": "USD"})
        );
        assert_eq!(
            runner.calls_for("COMPLETE")[0].input["gatewayReference"],
            json!("gw-ref-1")
        );
        assert!(runner.calls_for("CANCEL").is_empty());
        assert!(done.clock.sleeps().is_empty());
    }

    #[tokio::test]
    async fn a_duplicate_execution_of_an_ended_payment_touches_nothing() {
        for status in [
            "COMPLETED",
            "FAILED",
            "REFUNDED",
            "PARTIALLY_REFUNDED",
            "RECONCILIATION_REQUIRED",
        ] {
            // GIVEN a second execution of a payment that has already ended
            let runner = ScriptedRunner::new().always("CREATE", invoice(status));
            // WHEN the saga runs
            let done = execute(&saga(), payment(), &runner).await;
            // THEN it stops after reading the payment: no debit, no charge,
            // no cancel, no compensation, no status written
            assert_eq!(
                done.history.entered_states(),
                states(&[&[
                    "CreateInvoice",
                    "IsPaymentUnderway",
                    "PaymentAlreadySettled"
                ]]),
                "{status}"
            );
            assert_eq!(runner.calls().len(), 1, "{status}");
            assert_eq!(done.output()["invoice"]["status"], json!(status));
        }
    }

    #[tokio::test]
    async fn a_duplicate_execution_of_a_payment_under_way_carries_on() {
        // GIVEN a second execution that finds the payment PROCESSING (the
        // first one debited it; debit and charge are idempotent by paymentId)
        let runner = ScriptedRunner::new()
            .always("CREATE", invoice("PROCESSING"))
            .script("CHARGE", [charged("APPROVED")]);
        let done = execute(&saga(), payment(), &runner).await;
        assert_eq!(
            done.history.entered_states(),
            states(&[
                &HEAD,
                &[
                    "IsPaymentApproved",
                    "UpdatePaymentSuccess",
                    "PaymentSuccess"
                ]
            ])
        );
    }

    #[tokio::test]
    async fn insufficient_funds_closes_the_payment_then_fails_it_compensating_nothing() {
        // GIVEN a refused debit, and a gateway that has no charge for the payment
        let runner = saga_runner()
            .script(
                "DEBIT",
                [Reply::Fail("InsufficientFunds", "balance 10.00 < 50.00")],
            )
            .script("CANCEL", [closed("DECLINED")])
            .script("COMPENSATE", [nothing_to_compensate()]);
        // WHEN the saga runs
        let done = execute(&saga(), payment(), &runner).await;
        // THEN the payment is closed at the gateway (another execution could
        // have debited and charged), and only its DECLINED answer lets the
        // compensation run; here it moves nothing
        assert_eq!(
            done.history.entered_states(),
            states(&[
                &["CreateInvoice", "IsPaymentUnderway", "DebitWallet"],
                &CLOSE,
                &COMPENSATED
            ])
        );
        assert_eq!(done.failure().0, "PaymentFailed");
        let cancel = &runner.calls_for("CANCEL")[0];
        assert_eq!(cancel.resource, ADAPTER);
        assert_eq!(
            cancel.input,
            json!({"action": "CANCEL", "paymentId": "pay_01HZX"})
        );
        assert_eq!(cancel.timeout, Some(Duration::from_secs(15)));
        assert_eq!(runner.calls_for("COMPENSATE").len(), 1);
        assert!(first_call(&runner, "CANCEL") < first_call(&runner, "COMPENSATE"));
        let fail = &runner.calls_for("FAIL")[0].input;
        assert_eq!(
            (fail["reason"].clone(), fail["cause"].clone()),
            (json!("InsufficientFunds"), json!("balance 10.00 < 50.00"))
        );
        assert!(runner.calls_for("CHARGE").is_empty());
    }

    #[tokio::test]
    async fn a_declined_charge_is_compensated_without_cancelling() {
        let runner =
            saga_runner().script("CHARGE", [Reply::Fail("PaymentDeclined", "card declined")]);
        let done = execute(&saga(), payment(), &runner).await;
        assert_eq!(
            done.history.entered_states(),
            states(&[&HEAD, &COMPENSATED])
        );
        assert_eq!(runner.calls_for("COMPENSATE").len(), 1);
        assert!(runner.calls_for("CANCEL").is_empty());
        assert_eq!(
            runner.calls_for("FAIL")[0].input["reason"],
            json!("PaymentDeclined")
        );
        assert_eq!(done.failure().0, "PaymentFailed");
    }

    #[tokio::test]
    async fn an_open_circuit_closes_the_payment_before_compensating() {
        // GIVEN a charge refused by the open breaker (this attempt charged
        // nothing, an earlier one might have)
        let runner = saga_runner()
            .script("CHARGE", [Reply::Fail("CircuitOpen", "breaker open")])
            .script("CANCEL", [closed("DECLINED")]);
        let done = execute(&saga(), payment(), &runner).await;
        // THEN it is not retried, the gateway closes the payment, and only then
        // is the debit given back
        assert_eq!(
            done.history.entered_states(),
            states(&[&HEAD, &CLOSE, &COMPENSATED])
        );
        assert_eq!(runner.calls_for("CHARGE").len(), 1);
        assert_eq!(runner.calls_for("CANCEL").len(), 1);
        assert_eq!(runner.calls_for("COMPENSATE").len(), 1);
        assert!(first_call(&runner, "CANCEL") < first_call(&runner, "COMPENSATE"));
        assert_eq!(
            runner.calls_for("FAIL")[0].input["reason"],
            json!("CircuitOpen")
        );
    }

    #[tokio::test]
    async fn a_cancel_answering_approved_completes_the_payment() {
        // GIVEN a gateway that stays unavailable for every charge attempt, but
        // had captured an earlier one: the cancel answers APPROVED
        let runner = saga_runner()
            .always(
                "CHARGE",
                Reply::Fail("GatewayUnavailable", "503 from the gateway"),
            )
            .script("CANCEL", [closed("APPROVED")]);
        let done = execute(&saga(), payment(), &runner).await;
        // THEN the charge is retried 3 times, then the payment completes with
        // the captured charge's reference and nothing is given back
        assert_eq!(
            done.history.entered_states(),
            states(&[&HEAD, &CLOSE, &["UpdatePaymentSuccess", "PaymentSuccess"]])
        );
        assert_eq!(runner.calls_for("CHARGE").len(), 4);
        assert!(runner.calls_for("COMPENSATE").is_empty());
        assert!(runner.calls_for("FAIL").is_empty());
        assert_eq!(
            runner.calls_for("COMPLETE")[0].input["gatewayReference"],
            json!("gw-ref-1")
        );
        assert_eq!(done.output()["charge"]["status"], json!("APPROVED"));
    }

    #[tokio::test]
    async fn a_cancel_answering_pending_waits_for_the_final_status() {
        // GIVEN a failed MARK_PROCESSING and a charge (of another execution)
        // still PENDING at the gateway
        let runner = saga_runner()
            .script(
                "MARK_PROCESSING",
                [Reply::Fail("InvalidTransition", "COMPLETED -> PROCESSING")],
            )
            .script("CANCEL", [closed("PENDING")])
            .script("STATUS", [Reply::Status("APPROVED")]);
        let done = execute(&saga(), payment(), &runner).await;
        // THEN the saga waits, asks the status, and completes
        assert_eq!(
            done.history.entered_states(),
            states(&[
                &HEAD[..4],
                &CLOSE,
                &[
                    "AwaitGatewayWebhook",
                    "CheckPaymentStatus",
                    "EvaluatePaymentStatus",
                    "UpdatePaymentSuccess",
                    "PaymentSuccess"
                ]
            ])
        );
        assert!(runner.calls_for("CHARGE").is_empty());
        assert!(runner.calls_for("COMPENSATE").is_empty());
        // the cancel counted as one check
        assert_eq!(runner.calls_for("STATUS")[0].input["checks"], json!(1));
        // no word came for the token: its 10 s heartbeat ran out
        assert!(done.sleeps_seconds().is_empty());
        assert_eq!(done.clock.fired_timeouts(), vec![Duration::from_secs(10)]);
    }

    #[tokio::test]
    async fn a_cancel_that_never_answers_goes_to_reconciliation_without_compensating() {
        // GIVEN a refused debit and a gateway that cannot be reached to close the payment
        let runner = saga_runner()
            .script("DEBIT", [Reply::Fail("WalletNotFound", "no wallet user_1")])
            .always(
                "CANCEL",
                Reply::Fail("GatewayUnavailable", "503 from the gateway"),
            );
        let done = execute(&saga(), payment(), &runner).await;
        // THEN the cancel is tried 7 times (6 retries, FULL jitter up to 8 s),
        // then an operator decides: nothing is given back, nothing is failed
        assert_eq!(
            done.history.entered_states(),
            states(&[
                &["CreateInvoice", "IsPaymentUnderway", "DebitWallet"],
                &[
                    "CancelCharge",
                    "MarkReconciliationRequired",
                    "PaymentNeedsReconciliation"
                ]
            ])
        );
        assert_eq!(done.failure().0, "ReconciliationRequired");
        assert_eq!(runner.calls_for("CANCEL").len(), 7);
        assert!(runner.calls_for("COMPENSATE").is_empty());
        assert!(runner.calls_for("FAIL").is_empty());
        assert_eq!(
            runner.calls_for("MARK_RECONCILIATION_REQUIRED")[0].input["reason"],
            json!("GatewayUnavailable")
        );
        let sleeps = done.clock.sleeps();
        assert_eq!(sleeps.len(), 6);
        for (sleep, ceiling) in sleeps.iter().zip([1, 2, 4, 8, 8, 8]) {
            assert!(*sleep <= Duration::from_secs(ceiling), "{sleep:?}");
        }
    }

    #[tokio::test]
    async fn a_pending_charge_completes_with_the_gateways_answer_to_its_token() {
        // GIVEN a charge the gateway leaves PENDING, and the gateway's final
        // answer sent to the saga's task token (the reconciler, woken by the
        // webhook) while it waits
        let answer = json!({"status": "APPROVED", "gatewayReference": "gw-late", "checks": 0});
        let runner = saga_runner()
            .script("CHARGE", [charged("PENDING")])
            .script("AWAIT_GATEWAY", [Reply::AnswerToken(answer)]);
        // WHEN the saga runs
        let done = execute(&saga(), payment(), &runner).await;
        // THEN it completes from the answer, without a single status check
        assert_eq!(
            done.history.entered_states(),
            states(&[
                &HEAD,
                &[
                    "IsPaymentApproved",
                    "AwaitGatewayWebhook",
                    "IsGatewayAnswerFinal"
                ],
                &[
                    "AdoptGatewayApproval",
                    "UpdatePaymentSuccess",
                    "PaymentSuccess"
                ]
            ])
        );
        assert!(runner.calls_for("STATUS").is_empty());
        let kept = &runner.calls_for("AWAIT_GATEWAY")[0].input;
        assert_eq!(kept["paymentId"], payment()["paymentId"]);
        assert!(kept["taskToken"].as_str().is_some_and(|t| !t.is_empty()));
        assert_eq!(
            runner.calls_for("COMPLETE")[0].input["gatewayReference"],
            json!("gw-late")
        );
        assert_eq!(
            done.output()["charge"],
            json!({"status": "APPROVED", "checks": 0, "gatewayReference": "gw-late"})
        );
    }

    #[tokio::test]
    async fn a_non_final_answer_to_the_token_counts_as_an_unanswered_check() {
        // GIVEN a pending charge whose token gets a PENDING answer, then the
        // status check says APPROVED
        let runner = saga_runner()
            .script("CHARGE", [charged("PENDING")])
            .script(
                "AWAIT_GATEWAY",
                [Reply::AnswerToken(
                    json!({"status": "PENDING", "checks": 0}),
                )],
            )
            .script("STATUS", [Reply::Status("APPROVED")]);
        // WHEN the saga runs
        let done = execute(&saga(), payment(), &runner).await;
        // THEN the answer only counted one check (the loop stays bounded)
        let entered = done.history.entered_states();
        let position = entered
            .iter()
            .position(|s| s == "IsGatewayAnswerFinal")
            .unwrap();
        assert_eq!(entered[position + 1], "CountUnansweredCheck");
        assert_eq!(runner.calls_for("STATUS")[0].input["checks"], json!(1));
        assert_eq!(done.output()["charge"]["status"], json!("APPROVED"));
    }

    #[tokio::test]
    async fn pending_twice_then_approved_goes_through_the_wait_loop() {
        let runner = saga_runner().script("CHARGE", [charged("PENDING")]).script(
            "STATUS",
            [Reply::Status("PENDING"), Reply::Status("APPROVED")],
        );
        let done = execute(&saga(), payment(), &runner).await;
        let check = [
            "AwaitGatewayWebhook",
            "CheckPaymentStatus",
            "EvaluatePaymentStatus",
        ];
        assert_eq!(
            done.history.entered_states(),
            states(&[
                &HEAD,
                &["IsPaymentApproved"],
                &check,
                &check,
                &["UpdatePaymentSuccess", "PaymentSuccess"]
            ])
        );
        assert!(done.sleeps_seconds().is_empty());
        assert_eq!(
            done.clock.fired_timeouts(),
            vec![Duration::from_secs(10); 2]
        );
        let checks: Vec<Value> = runner
            .calls_for("STATUS")
            .iter()
            .map(|c| c.input["checks"].clone())
            .collect();
        assert_eq!(checks, vec![json!(0), json!(1)]);
        assert_eq!(
            done.output()["charge"],
            json!({"status": "APPROVED", "checks": 2, "gatewayReference": "gw-ref-1"})
        );
    }

    #[tokio::test]
    async fn an_ambiguous_charge_is_resolved_by_status_checks() {
        let runner = saga_runner()
            .script(
                "CHARGE",
                [Reply::Fail("GatewayAmbiguous", "timeout after send")],
            )
            .script(
                "STATUS",
                [Reply::Status("PENDING"), Reply::Status("APPROVED")],
            );
        let done = execute(&saga(), payment(), &runner).await;
        assert_eq!(
            done.history.entered_states(),
            states(&[
                &HEAD,
                &[
                    "ResolveAmbiguousCharge",
                    "CheckPaymentStatus",
                    "EvaluatePaymentStatus"
                ],
                &[
                    "AwaitGatewayWebhook",
                    "CheckPaymentStatus",
                    "EvaluatePaymentStatus"
                ],
                &["UpdatePaymentSuccess", "PaymentSuccess"],
            ])
        );
        // the catcher kept the error next to the input; the Pass state reset the charge
        assert_eq!(runner.calls_for("STATUS")[0].input["checks"], json!(0));
        assert!(runner.calls_for("COMPENSATE").is_empty());
        assert!(runner.calls_for("CANCEL").is_empty());
        assert_eq!(done.output()["error"]["Error"], json!("GatewayAmbiguous"));
    }

    #[tokio::test]
    async fn a_charge_the_gateway_never_saw_is_closed_then_compensated() {
        // GIVEN an ambiguous charge the gateway answers NOT_FOUND for (a late
        // attempt could still arrive), then DECLINED when asked to close it
        let runner = saga_runner()
            .script(
                "CHARGE",
                [Reply::Fail("GatewayAmbiguous", "timeout after send")],
            )
            .script("STATUS", [Reply::Status("NOT_FOUND")])
            .script("CANCEL", [closed("DECLINED")]);
        let done = execute(&saga(), payment(), &runner).await;
        // THEN one NOT_FOUND is enough to close the payment, and only the
        // cancel's DECLINED lets the debit be given back
        assert_eq!(
            done.history.entered_states(),
            states(&[
                &HEAD,
                &[
                    "ResolveAmbiguousCharge",
                    "CheckPaymentStatus",
                    "EvaluatePaymentStatus",
                    "GatewayNotProcessed"
                ],
                &CLOSE,
                &COMPENSATED
            ])
        );
        assert_eq!(runner.calls_for("STATUS").len(), 1);
        assert_eq!(runner.calls_for("CHARGE").len(), 1);
        assert_eq!(runner.calls_for("COMPENSATE").len(), 1);
        assert!(first_call(&runner, "CANCEL") < first_call(&runner, "COMPENSATE"));
        assert_eq!(
            runner.calls_for("FAIL")[0].input["reason"],
            json!("GatewayNotProcessed")
        );
        assert!(done.clock.sleeps().is_empty());
    }

    #[tokio::test]
    async fn a_status_check_that_never_answers_ends_after_ten_checks_in_reconciliation() {
        // GIVEN an ambiguous charge and a gateway whose status endpoint never answers
        let runner = saga_runner()
            .script(
                "CHARGE",
                [Reply::Fail("GatewayAmbiguous", "timeout after send")],
            )
            .always("STATUS", Reply::Hang);
        // WHEN the saga runs
        let done = execute(&saga(), payment(), &runner).await;
        // THEN each check times out 4 times (3 retries), counts one unanswered check,
        // and after 10 checks the payment goes to reconciliation
        let unanswered = [
            "CheckPaymentStatus",
            "CountUnansweredCheck",
            "EvaluatePaymentStatus",
        ];
        let mut expected = states(&[&HEAD, &["ResolveAmbiguousCharge"]]);
        for round in 0..10 {
            if round > 0 {
                expected.push("AwaitGatewayWebhook".to_owned());
            }
            expected.extend(unanswered.map(str::to_owned));
        }
        expected.extend(
            [
                "GatewayOutcomeUnknown",
                "MarkReconciliationRequired",
                "PaymentNeedsReconciliation",
            ]
            .map(str::to_owned),
        );
        assert_eq!(done.history.entered_states(), expected);
        assert_eq!(done.failure().0, "ReconciliationRequired");
        assert_eq!(runner.calls_for("STATUS").len(), 40);
        assert!(runner.calls_for("COMPENSATE").is_empty());
        // each check timed out 4 times (15 s), and between checks the wait for
        // the gateway's word ran out its 10 s heartbeat
        let mut timeouts = Vec::new();
        for check in 0..10 {
            if check > 0 {
                timeouts.push(Duration::from_secs(10));
            }
            timeouts.extend([Duration::from_secs(15); 4]);
        }
        assert_eq!(done.clock.fired_timeouts(), timeouts);
        let reconcile = &runner.calls_for("MARK_RECONCILIATION_REQUIRED")[0].input;
        assert_eq!(reconcile["reason"], json!("GatewayOutcomeUnknown"));
        // AND the counter stayed an integer, 1 to 10
        let counts: Vec<Value> = done
            .history
            .events()
            .iter()
            .filter_map(|event| match &event.kind {
                EventKind::StateExited(_, details) if details.name == "CountUnansweredCheck" => {
                    let output: Value = serde_json::from_str(&details.output).unwrap();
                    Some(output["charge"]["checks"].clone())
                }
                _ => None,
            })
            .collect();
        assert_eq!(counts, (1..=10).map(|n| json!(n)).collect::<Vec<_>>());
        // AND every retry interval stayed within its FULL-jitter ceiling (1, 2, 4 s)
        let retry_sleeps: Vec<Duration> = done
            .clock
            .sleeps()
            .into_iter()
            .filter(|s| *s != Duration::from_secs(3))
            .collect();
        assert_eq!(retry_sleeps.len(), 30);
        for (index, sleep) in retry_sleeps.iter().enumerate() {
            let ceiling = [1, 2, 4][index % 3];
            assert!(*sleep <= Duration::from_secs(ceiling), "{sleep:?}");
        }
        // AND the whole history serializes in AWS's shape
        for event in done.history.events() {
            let json = serde_json::to_value(&event).unwrap();
            assert!(json["type"].is_string() && json["timestamp"].is_f64());
        }
    }

    #[tokio::test]
    async fn a_failing_compensation_goes_to_reconciliation() {
        let runner = saga_runner()
            .script("CHARGE", [Reply::Fail("PaymentDeclined", "card declined")])
            .always("COMPENSATE", Reply::Fail("Retryable", "throttled"));
        let done = execute(&saga(), payment(), &runner).await;
        assert_eq!(
            done.history.entered_states(),
            states(&[
                &HEAD,
                &[
                    "RefundWallet",
                    "MarkReconciliationRequired",
                    "PaymentNeedsReconciliation"
                ]
            ])
        );
        assert_eq!(runner.calls_for("COMPENSATE").len(), 7);
        assert!(runner.calls_for("FAIL").is_empty());
        assert_eq!(done.clock.sleeps().len(), 6);
    }
}
