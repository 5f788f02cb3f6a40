//! The local Step Functions service through its API: executions in flight
//! across a restart of the local cloud (the history recorded before the
//! restart is kept, and the execution resumes in the state it was in,
//! instead of starting over with an empty history), and the answers to a
//! `.waitForTaskToken` task (SendTaskSuccess / Failure / Heartbeat).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use local::asl::{Clock, SystemClock, TaskFailure, TaskRunner, TaskTokens};
use local::edge::JsonService;
use local::sfn::{StepFunctions, StepFunctionsApi};
use local::template::{Context, Template};
use serde_json::{Value, json};

const FIRST: &str = "arn:aws:lambda:us-east-1:000000000000:function:first";
const SECOND: &str = "arn:aws:lambda:us-east-1:000000000000:function:second";

/// Answers `{"from": resource}`, except that it never answers the resources
/// in `hang_on` (an invocation cut short by the restart); records every call.
#[derive(Default)]
struct Runner {
    hang_on: Vec<&'static str>,
    calls: Mutex<Vec<(String, Value)>>,
    tokens: TaskTokens,
}

#[async_trait]
impl TaskRunner for Runner {
    fn task_tokens(&self) -> Option<&TaskTokens> {
        Some(&self.tokens)
    }

    async fn run(
        &self,
        resource: &str,
        input: Value,
        _timeout: Option<Duration>,
    ) -> Result<Value, TaskFailure> {
        self.calls
            .lock()
            .unwrap()
            .push((resource.to_owned(), input));
        if self.hang_on.contains(&resource) {
            std::future::pending::<()>().await;
        }
        Ok(json!({"from": resource}))
    }
}

impl Runner {
    fn calls(&self) -> Vec<(String, Value)> {
        self.calls.lock().unwrap().clone()
    }
}

/// A root with a template holding one two-task state machine.
fn root() -> PathBuf {
    root_with(json!({
        "StartAt": "First",
        "TimeoutSeconds": 60,
        "States": {
            "First": {"Type": "Task", "Resource": FIRST, "ResultPath": "$.first", "Next": "Second"},
            "Second": {"Type": "Task", "Resource": SECOND, "ResultPath": "$.second", "End": true}
        }
    }))
}

/// A root with a template holding one state machine, `flow`.
fn root_with(definition: Value) -> PathBuf {
    let root = std::env::temp_dir().join(format!("sfn-restart-{}", ulid::Ulid::new()));
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("flow.asl.json"), definition.to_string()).unwrap();
    let template = "Resources:\n  Flow:\n    Type: AWS::Serverless::StateMachine\n    \
                    Properties:\n      Name: flow\n      DefinitionUri: flow.asl.json\n";
    std::fs::write(root.join("template.yml"), template).unwrap();
    root
}

/// Starts Step Functions over the executions saved in `root/executions`,
/// as the local cloud does at start-up.
fn start(root: &Path, runner: Arc<Runner>) -> (Arc<StepFunctions>, StepFunctionsApi) {
    let template = Template::load(&root.join("template.yml"), Context::default()).unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock::with_time_scale(1.0).unwrap());
    let store = Some(root.join("executions"));
    let service = StepFunctions::start(&template, root, runner, clock, store).unwrap();
    (Arc::clone(&service), StepFunctionsApi(service))
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn finished(api: &StepFunctionsApi, execution_arn: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let input = json!({"executionArn": execution_arn});
        let execution = api.call("DescribeExecution", input).await.unwrap();
        if execution["status"] != "RUNNING" {
            return execution;
        }
        assert!(Instant::now() < deadline, "{execution_arn} still running");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn history(api: &StepFunctionsApi, execution_arn: &str) -> Vec<Value> {
    let input = json!({"executionArn": execution_arn, "maxResults": 1000});
    let history = api.call("GetExecutionHistory", input).await.unwrap();
    history["events"].as_array().unwrap().clone()
}

fn types(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_running_execution_keeps_its_history_and_resumes_in_its_state() {
    let root = root();
    // GIVEN an execution whose second task is in flight when the cloud stops
    let before = Arc::new(Runner {
        hang_on: vec![SECOND],
        ..Runner::default()
    });
    let (service, api) = start(&root, Arc::clone(&before));
    let machine_arn = service.state_machine_arns()[0].clone();
    let input = json!({"stateMachineArn": machine_arn, "name": "pay_1", "input": "{\"n\":1}"});
    let started = api.call("StartExecution", input).await.unwrap();
    let execution_arn = started["executionArn"].as_str().unwrap().to_owned();
    wait_until("the second task", || before.calls().len() == 2).await;
    let interrupted = history(&api, &execution_arn).await;
    assert_eq!(interrupted.len(), 9, "{:?}", types(&interrupted));
    // WHEN the cloud stops (its executions are frozen where they are) and
    // starts again over the same data
    service.shutdown();
    let refused = json!({"stateMachineArn": machine_arn, "name": "pay_9", "input": "{}"});
    let refused = api.call("StartExecution", refused).await.unwrap_err();
    assert_eq!(refused.error_type, "ServiceUnavailable");
    let after = Arc::new(Runner::default());
    let (_, api) = start(&root, Arc::clone(&after));
    // THEN the execution completes, running only the task that was in flight
    let execution = finished(&api, &execution_arn).await;
    assert_eq!(execution["status"], "SUCCEEDED", "{execution}");
    let output: Value = serde_json::from_str(execution["output"].as_str().unwrap()).unwrap();
    assert_eq!(
        output,
        json!({"n": 1, "first": {"from": FIRST}, "second": {"from": SECOND}})
    );
    let calls = after.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].0, SECOND);
    assert_eq!(calls[0].1, json!({"n": 1, "first": {"from": FIRST}}));
    // AND its history is the earlier events, then the resumed state's, one
    // numbering throughout
    let events = history(&api, &execution_arn).await;
    assert_eq!(&events[..9], &interrupted[..]);
    assert_eq!(
        types(&events),
        [
            "ExecutionStarted",
            "TaskStateEntered",
            "LambdaFunctionScheduled",
            "LambdaFunctionStarted",
            "LambdaFunctionSucceeded",
            "TaskStateExited",
            "TaskStateEntered",
            "LambdaFunctionScheduled",
            "LambdaFunctionStarted",
            // the restart: Second is entered again with the same input
            "TaskStateEntered",
            "LambdaFunctionScheduled",
            "LambdaFunctionStarted",
            "LambdaFunctionSucceeded",
            "TaskStateExited",
            "ExecutionSucceeded",
        ]
    );
    for (index, event) in events.iter().enumerate() {
        let id = u64::try_from(index).unwrap() + 1;
        assert_eq!(
            (event["id"].as_u64(), event["previousEventId"].as_u64()),
            (Some(id), Some(id - 1))
        );
    }
    assert_eq!(
        events[9]["stateEnteredEventDetails"],
        events[6]["stateEnteredEventDetails"]
    );
    // AND once it ended, its record holds the whole history (no journal left)
    let saved: Vec<PathBuf> = std::fs::read_dir(root.join("executions"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    assert_eq!(saved.len(), 1, "{saved:?}");
    // WHEN the cloud restarts once more THEN nothing runs and the history stays
    let again = Arc::new(Runner::default());
    let (_, api) = start(&root, Arc::clone(&again));
    assert_eq!(finished(&api, &execution_arn).await["status"], "SUCCEEDED");
    assert_eq!(history(&api, &execution_arn).await, events);
    assert!(again.calls().is_empty());
    let _ = std::fs::remove_dir_all(&root);
}

#[tokio::test]
async fn an_execution_interrupted_before_its_first_event_starts_fresh() {
    let root = root();
    // GIVEN a saved running execution with no history and no journal (the
    // cloud stopped right after StartExecution saved it)
    let record = json!({
        "executionArn": "arn:aws:states:us-east-1:000000000000:execution:flow:pay_2",
        "stateMachineArn": "arn:aws:states:us-east-1:000000000000:stateMachine:flow",
        "name": "pay_2",
        "status": "RUNNING",
        "input": "{\"n\":2}",
        "startDate": "2024-05-01T10:00:00Z",
    });
    std::fs::create_dir_all(root.join("executions")).unwrap();
    std::fs::write(root.join("executions/flow__pay_2.json"), record.to_string()).unwrap();
    // WHEN the cloud starts
    let runner = Arc::new(Runner::default());
    let (_, api) = start(&root, Arc::clone(&runner));
    // THEN it runs from the start, with one ExecutionStarted
    let arn = record["executionArn"].as_str().unwrap();
    assert_eq!(finished(&api, arn).await["status"], "SUCCEEDED");
    let events = history(&api, arn).await;
    assert_eq!(types(&events)[0], "ExecutionStarted");
    assert_eq!(
        types(&events)
            .iter()
            .filter(|t| *t == "ExecutionStarted")
            .count(),
        1
    );
    assert_eq!(runner.calls().len(), 2);
    let _ = std::fs::remove_dir_all(&root);
}

#[tokio::test]
async fn a_torn_journal_line_is_dropped_and_later_events_still_read_back() {
    let root = root();
    let hanging = || {
        Arc::new(Runner {
            hang_on: vec![SECOND],
            ..Runner::default()
        })
    };
    // GIVEN an execution stopped in its second task, whose journal's last
    // line was torn by the crash
    let first = hanging();
    let (service, api) = start(&root, Arc::clone(&first));
    let machine_arn = service.state_machine_arns()[0].clone();
    let input = json!({"stateMachineArn": machine_arn, "name": "pay_3", "input": "{}"});
    let started = api.call("StartExecution", input).await.unwrap();
    let arn = started["executionArn"].as_str().unwrap().to_owned();
    wait_until("the second task", || first.calls().len() == 2).await;
    service.shutdown();
    let journal = root.join("executions/flow__pay_3.events.jsonl");
    let mut text = std::fs::read_to_string(&journal).unwrap();
    text.push_str("{\"timestamp\": 17");
    std::fs::write(&journal, text).unwrap();
    // WHEN it is resumed, stopped again in the same task, and resumed again
    let second = hanging();
    let (service, _) = start(&root, Arc::clone(&second));
    wait_until("the resumed task", || second.calls().len() == 1).await;
    service.shutdown();
    let (_, api) = start(&root, Arc::new(Runner::default()));
    // THEN it completes with every event read back, numbered without a gap
    assert_eq!(finished(&api, &arn).await["status"], "SUCCEEDED");
    let events = history(&api, &arn).await;
    let entered_second = events
        .iter()
        .filter(|e| e["stateEnteredEventDetails"]["name"] == "Second")
        .count();
    assert_eq!(entered_second, 3, "{:?}", types(&events));
    for (index, event) in events.iter().enumerate() {
        assert_eq!(
            event["id"].as_u64(),
            Some(u64::try_from(index).unwrap() + 1)
        );
    }
    let _ = std::fs::remove_dir_all(&root);
}

/// `flow`: one task that hands its token to FIRST and waits for the answer.
fn callback_root() -> PathBuf {
    root_with(json!({
        "StartAt": "Wait",
        "States": {
            "Wait": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
                "Parameters": {"FunctionName": FIRST, "Payload": {"token.$": "$$.Task.Token"}},
                "HeartbeatSeconds": 5,
                "TimeoutSeconds": 10,
                "Catch": [{"ErrorEquals": ["Refused"], "ResultPath": "$.error", "Next": "Refused"}],
                "End": true
            },
            "Refused": {"Type": "Pass", "End": true}
        }
    }))
}

/// Starts one `flow` execution and waits until its task has its token.
async fn waiting_execution(api: &StepFunctionsApi, runner: &Runner) -> (String, String) {
    let machine = api.call("ListStateMachines", json!({})).await.unwrap();
    let arn = machine["stateMachines"][0]["stateMachineArn"].clone();
    let started = api
        .call(
            "StartExecution",
            json!({"stateMachineArn": arn, "input": "{}"}),
        )
        .await
        .unwrap();
    let execution_arn = started["executionArn"].as_str().unwrap().to_owned();
    wait_until("the token", || !runner.calls().is_empty()).await;
    let token = runner.calls()[0].1["token"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !types(&history(api, &execution_arn).await).contains(&"TaskSubmitted".to_owned()) {
        assert!(
            Instant::now() < deadline,
            "{execution_arn}: no TaskSubmitted"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (execution_arn, token)
}

#[tokio::test]
async fn send_task_success_answers_a_waiting_task_once() {
    // GIVEN an execution waiting on its task token
    let runner = Arc::new(Runner::default());
    let (_service, api) = start(&callback_root(), runner.clone());
    let (execution_arn, token) = waiting_execution(&api, &runner).await;
    // AND a heartbeat keeps it waiting
    let beat = json!({"taskToken": token});
    assert_eq!(
        api.call("SendTaskHeartbeat", beat).await.unwrap(),
        json!({})
    );
    // WHEN SendTaskSuccess answers it (`output` is JSON text, as on AWS)
    let answer = json!({"taskToken": token, "output": "{\"status\":\"APPROVED\"}"});
    api.call("SendTaskSuccess", answer.clone()).await.unwrap();
    // THEN the execution succeeds with that output
    let done = finished(&api, &execution_arn).await;
    assert_eq!(done["status"], "SUCCEEDED", "{done}");
    assert_eq!(done["output"], "{\"status\":\"APPROVED\"}");
    let events = history(&api, &execution_arn).await;
    let task_events: Vec<String> = types(&events)
        .into_iter()
        .filter(|t| t.starts_with("Task") && !t.starts_with("TaskState"))
        .collect();
    assert_eq!(
        task_events,
        [
            "TaskScheduled",
            "TaskStarted",
            "TaskSubmitted",
            "TaskSucceeded"
        ]
    );
    // AND the token answers nothing more: TaskTimedOut, as AWS says
    let again = api.call("SendTaskSuccess", answer).await.unwrap_err();
    assert_eq!(again.error_type, "TaskTimedOut");
    let unknown = json!({"taskToken": "no-such-token", "output": "{}"});
    let unknown = api.call("SendTaskSuccess", unknown).await.unwrap_err();
    assert_eq!(unknown.error_type, "InvalidToken");
}

#[tokio::test]
async fn send_task_failure_fails_the_task_into_its_catch_and_bad_output_is_refused() {
    // GIVEN an execution waiting on its task token
    let runner = Arc::new(Runner::default());
    let (_service, api) = start(&callback_root(), runner.clone());
    let (execution_arn, token) = waiting_execution(&api, &runner).await;
    // WHEN an answer's output is not JSON THEN it is refused and changes nothing
    let bad = json!({"taskToken": token, "output": "not json"});
    assert_eq!(
        api.call("SendTaskSuccess", bad)
            .await
            .unwrap_err()
            .error_type,
        "InvalidOutput"
    );
    // WHEN SendTaskFailure answers it
    let failure = json!({"taskToken": token, "error": "Refused", "cause": "no"});
    api.call("SendTaskFailure", failure).await.unwrap();
    // THEN the Catch takes the error
    let done = finished(&api, &execution_arn).await;
    assert_eq!(done["status"], "SUCCEEDED", "{done}");
    let output: Value = serde_json::from_str(done["output"].as_str().unwrap()).unwrap();
    assert_eq!(output["error"], json!({"Error": "Refused", "Cause": "no"}));
}
