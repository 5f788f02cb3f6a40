//! What one saga execution's history says about its cost and its time: how
//! long each state took, how many state transitions Step Functions bills
//! (states entered plus retries), how many Lambda invocations it made and
//! which failed with what error.
//!
//! SDK events are parsed once, at the edge ([`event_from`]), into [`Event`];
//! everything after that is pure and unit-tested.

use std::collections::BTreeMap;

use aws_sdk_sfn::types::HistoryEvent;

/// How an execution ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Succeeded,
    Failed,
    TimedOut,
    Aborted,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    ExecutionStarted,
    ExecutionEnded(Ending),
    StateEntered {
        name: String,
    },
    StateExited {
        name: String,
    },
    /// A Lambda invocation was scheduled (LambdaFunctionScheduled, or
    /// TaskScheduled for the `lambda:invoke` integration), with its input.
    TaskScheduled {
        resource: String,
        input: String,
    },
    TaskSucceeded,
    /// Failed or timed out, with the error name (`Retryable`, `States.Timeout`…).
    TaskFailed {
        error: String,
    },
    /// Anything the benchmark does not need.
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub timestamp_us: u64,
    pub kind: EventKind,
}

/// Parses an SDK history event (the edge: past here nothing matches on strings).
pub fn event_from(history: &HistoryEvent) -> Event {
    let timestamp = history.timestamp();
    let timestamp_us = u64::try_from(timestamp.secs())
        .unwrap_or_default()
        .saturating_mul(1_000_000)
        .saturating_add(u64::from(timestamp.subsec_nanos() / 1_000));
    let event_type = history.r#type().as_str();
    let failed = |error: Option<&str>| EventKind::TaskFailed {
        error: error.unwrap_or("error").to_owned(),
    };
    let kind = match event_type {
        "ExecutionStarted" => EventKind::ExecutionStarted,
        "ExecutionSucceeded" => EventKind::ExecutionEnded(Ending::Succeeded),
        "ExecutionFailed" => EventKind::ExecutionEnded(Ending::Failed),
        "ExecutionTimedOut" => EventKind::ExecutionEnded(Ending::TimedOut),
        "ExecutionAborted" => EventKind::ExecutionEnded(Ending::Aborted),
        "LambdaFunctionScheduled" => {
            history
                .lambda_function_scheduled_event_details()
                .map_or(EventKind::Other, |d| EventKind::TaskScheduled {
                    resource: d.resource().to_owned(),
                    input: d.input().unwrap_or_default().to_owned(),
                })
        }
        "TaskScheduled" => history
            .task_scheduled_event_details()
            .map_or(EventKind::Other, |d| EventKind::TaskScheduled {
                resource: d.resource().to_owned(),
                input: d.parameters().to_owned(),
            }),
        "LambdaFunctionSucceeded" | "TaskSucceeded" => EventKind::TaskSucceeded,
        "LambdaFunctionFailed" => failed(
            history
                .lambda_function_failed_event_details()
                .and_then(|d| d.error()),
        ),
        "LambdaFunctionTimedOut" => failed(
            history
                .lambda_function_timed_out_event_details()
                .and_then(|d| d.error())
                .or(Some("States.Timeout")),
        ),
        "TaskFailed" => failed(history.task_failed_event_details().and_then(|d| d.error())),
        "TaskTimedOut" => failed(
            history
                .task_timed_out_event_details()
                .and_then(|d| d.error())
                .or(Some("States.Timeout")),
        ),
        other if other.ends_with("StateEntered") => EventKind::StateEntered {
            name: history
                .state_entered_event_details()
                .map(|d| d.name().to_owned())
                .unwrap_or_default(),
        },
        other if other.ends_with("StateExited") => EventKind::StateExited {
            name: history
                .state_exited_event_details()
                .map(|d| d.name().to_owned())
                .unwrap_or_default(),
        },
        _ => EventKind::Other,
    };
    Event { timestamp_us, kind }
}

/// One execution, summarised.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecutionSummary {
    pub ending: Option<Ending>,
    pub started_us: u64,
    pub stopped_us: Option<u64>,
    /// Each state visit in order: (state name, entered → exited).
    pub state_visits: Vec<(String, u64)>,
    /// What Step Functions Standard bills: every state entered, plus every
    /// retry of a task ("each retry will be charged as an additional state
    /// transition", aws.amazon.com/step-functions/pricing).
    pub transition_count: u64,
    /// Lambda invocations the state machine made (retries included).
    pub task_count: u64,
    pub retry_count: u64,
    /// Failed task attempts by error name.
    pub task_errors: BTreeMap<String, u64>,
    /// Each task attempt: (resource, scheduled → succeeded or failed).
    pub task_durations: Vec<(String, u64)>,
}

impl ExecutionSummary {
    pub fn duration_us(&self) -> Option<u64> {
        self.stopped_us
            .map(|stopped| stopped.saturating_sub(self.started_us))
    }
}

/// Summarises a history given oldest first.
pub fn summarise(events: &[Event]) -> ExecutionSummary {
    let mut summary = ExecutionSummary::default();
    let mut entered: BTreeMap<&str, u64> = BTreeMap::new();
    let mut attempts_in_state: u64 = 0;
    let mut scheduled: Option<(&str, u64)> = None;
    for event in events {
        let at = event.timestamp_us;
        match &event.kind {
            EventKind::ExecutionStarted => summary.started_us = at,
            EventKind::ExecutionEnded(ending) => {
                summary.ending = Some(*ending);
                summary.stopped_us = Some(at);
            }
            EventKind::StateEntered { name } => {
                summary.transition_count += 1;
                attempts_in_state = 0;
                entered.insert(name, at);
            }
            EventKind::StateExited { name } => {
                if let Some(since) = entered.remove(name.as_str()) {
                    summary
                        .state_visits
                        .push((name.clone(), at.saturating_sub(since)));
                }
            }
            EventKind::TaskScheduled { resource, .. } => {
                summary.task_count += 1;
                attempts_in_state += 1;
                if attempts_in_state > 1 {
                    summary.retry_count += 1;
                    summary.transition_count += 1;
                }
                scheduled = Some((resource, at));
            }
            EventKind::TaskSucceeded => {
                if let Some((resource, since)) = scheduled.take() {
                    summary
                        .task_durations
                        .push((resource.to_owned(), at.saturating_sub(since)));
                }
            }
            EventKind::TaskFailed { error } => {
                *summary.task_errors.entry(error.clone()).or_default() += 1;
                if let Some((resource, since)) = scheduled.take() {
                    summary
                        .task_durations
                        .push((resource.to_owned(), at.saturating_sub(since)));
                }
            }
            EventKind::Other => {}
        }
    }
    summary
}

/// The first input each resource (function ARN) was invoked with: replayable
/// events for the cold-start measurements.
pub fn first_inputs(events: &[Event]) -> BTreeMap<String, String> {
    let mut inputs = BTreeMap::new();
    for event in events {
        if let EventKind::TaskScheduled { resource, input } = &event.kind {
            inputs
                .entry(resource.clone())
                .or_insert_with(|| input.clone());
        }
    }
    inputs
}

/// The function name in a Lambda ARN (`arn:aws:lambda:r:a:function:NAME[:q]`),
/// or the resource itself when it is a bare name.
pub fn function_name(resource: &str) -> &str {
    match resource.split(':').collect::<Vec<_>>().as_slice() {
        [.., "function", name] | [.., "function", name, _] => name,
        _ => resource,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64, kind: EventKind) -> Event {
        Event {
            timestamp_us: ms * 1_000,
            kind,
        }
    }

    fn entered(ms: u64, name: &str) -> Event {
        at(
            ms,
            EventKind::StateEntered {
                name: name.to_owned(),
            },
        )
    }

    fn exited(ms: u64, name: &str) -> Event {
        at(
            ms,
            EventKind::StateExited {
                name: name.to_owned(),
            },
        )
    }

    fn scheduled(ms: u64, function: &str, input: &str) -> Event {
        at(
            ms,
            EventKind::TaskScheduled {
                resource: format!("arn:aws:lambda:us-east-1:000000000000:function:{function}"),
                input: input.to_owned(),
            },
        )
    }

    /// CreateInvoice, a DebitWallet that is retried once, a Choice, Succeed.
    fn happy_path_with_a_retry() -> Vec<Event> {
        vec![
            at(0, EventKind::ExecutionStarted),
            entered(1, "CreateInvoice"),
            scheduled(1, "local-invoice-processor", r#"{"action":"CREATE"}"#),
            at(9, EventKind::TaskSucceeded),
            exited(10, "CreateInvoice"),
            entered(10, "DebitWallet"),
            scheduled(10, "local-wallet-service", r#"{"action":"DEBIT"}"#),
            at(
                15,
                EventKind::TaskFailed {
                    error: "Retryable".into(),
                },
            ),
            scheduled(
                40,
                "local-wallet-service",
                r#"{"action":"DEBIT","retry":1}"#,
            ),
            at(46, EventKind::TaskSucceeded),
            exited(46, "DebitWallet"),
            entered(46, "IsPaymentApproved"),
            exited(47, "IsPaymentApproved"),
            entered(47, "PaymentSuccess"),
            exited(47, "PaymentSuccess"),
            at(48, EventKind::ExecutionEnded(Ending::Succeeded)),
        ]
    }

    #[test]
    fn a_history_gives_state_times_transitions_and_invocations() {
        // GIVEN a history with one retried task
        let summary = summarise(&happy_path_with_a_retry());
        // THEN every state visit is timed, entered → exited
        assert_eq!(
            summary.state_visits,
            vec![
                ("CreateInvoice".to_owned(), 9_000),
                ("DebitWallet".to_owned(), 36_000),
                ("IsPaymentApproved".to_owned(), 1_000),
                ("PaymentSuccess".to_owned(), 0),
            ]
        );
        // AND the retry is one more billed transition and one more invocation
        assert_eq!(summary.transition_count, 5);
        assert_eq!(summary.task_count, 3);
        assert_eq!(summary.retry_count, 1);
        assert_eq!(summary.task_errors.get("Retryable"), Some(&1));
        // AND each attempt is timed for its function
        assert_eq!(summary.task_durations.len(), 3);
        assert_eq!(summary.task_durations[1].1, 5_000);
        // AND the execution ran 48 ms and succeeded
        assert_eq!(summary.duration_us(), Some(48_000));
        assert_eq!(summary.ending, Some(Ending::Succeeded));
    }

    #[test]
    fn a_state_visited_twice_is_timed_twice() {
        let events = vec![
            at(0, EventKind::ExecutionStarted),
            entered(0, "CheckPaymentStatus"),
            scheduled(0, "local-payments-adapter", "{}"),
            at(3, EventKind::TaskSucceeded),
            exited(3, "CheckPaymentStatus"),
            entered(3, "WaitForPaymentConfirmation"),
            exited(1_003, "WaitForPaymentConfirmation"),
            entered(1_003, "CheckPaymentStatus"),
            scheduled(1_003, "local-payments-adapter", "{}"),
            at(1_005, EventKind::TaskSucceeded),
            exited(1_005, "CheckPaymentStatus"),
        ];
        let summary = summarise(&events);
        let checks: Vec<u64> = summary
            .state_visits
            .iter()
            .filter(|(name, _)| name == "CheckPaymentStatus")
            .map(|(_, us)| *us)
            .collect();
        assert_eq!(checks, vec![3_000, 2_000]);
        // a second visit is a new state, not a retry
        assert_eq!(summary.retry_count, 0);
        assert_eq!(summary.transition_count, 3);
        assert_eq!(summary.ending, None);
        assert_eq!(summary.duration_us(), None);
    }

    #[test]
    fn first_inputs_are_kept_per_function() {
        let inputs = first_inputs(&happy_path_with_a_retry());
        assert_eq!(inputs.len(), 2);
        let wallet = "arn:aws:lambda:us-east-1:000000000000:function:local-wallet-service";
        assert_eq!(inputs[wallet], r#"{"action":"DEBIT"}"#);
    }

    #[test]
    fn function_names_come_out_of_arns() {
        assert_eq!(
            function_name("arn:aws:lambda:us-east-1:1:function:local-api-handler"),
            "local-api-handler"
        );
        assert_eq!(
            function_name("arn:aws:lambda:us-east-1:1:function:f:$LATEST"),
            "f"
        );
        assert_eq!(function_name("plain-name"), "plain-name");
    }
}
