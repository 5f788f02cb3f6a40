//! Turns execution history events into monitor lines. Pure: the runner feeds
//! every event exactly once, in id order, so a state that started and ended
//! between two polls still gets both of its lines.

use serde::Serialize;

/// The part of a history event the monitor needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub id: i64,
    /// Milliseconds since the Unix epoch.
    pub at_ms: i64,
    pub kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    ExecutionStarted {
        input: Option<String>,
    },
    StateEntered {
        state: String,
        state_type: StateType,
    },
    StateExited {
        state: String,
    },
    /// A Task's work was scheduled (first attempt or a retry).
    TaskScheduled,
    TaskSucceeded,
    /// A Task attempt failed or timed out.
    TaskFailed {
        error: String,
        cause: Option<String>,
    },
    ExecutionSucceeded,
    ExecutionFailed {
        error: String,
        cause: Option<String>,
    },
    ExecutionTimedOut {
        error: String,
        cause: Option<String>,
    },
    ExecutionAborted {
        error: String,
        cause: Option<String>,
    },
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum StateType {
    Task,
    Choice,
    Wait,
    Pass,
    Succeed,
    Fail,
    Parallel,
    Map,
}

impl StateType {
    /// From a history event type name such as `ChoiceStateEntered`.
    pub fn from_event_type(name: &str) -> Option<Self> {
        let prefix = name
            .strip_suffix("StateEntered")
            .or_else(|| name.strip_suffix("StateExited"))?;
        Some(match prefix {
            "Task" => Self::Task,
            "Choice" => Self::Choice,
            "Wait" => Self::Wait,
            "Pass" => Self::Pass,
            "Succeed" => Self::Succeed,
            "Fail" => Self::Fail,
            "Parallel" => Self::Parallel,
            "Map" => Self::Map,
            _ => return None,
        })
    }
}

/// One monitor line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "camelCase")]
pub enum Line {
    /// A Task or Pass state started.
    #[serde(rename_all = "camelCase")]
    Running { state: String, offset_ms: i64 },
    /// A Wait state started.
    #[serde(rename_all = "camelCase")]
    Waiting { state: String, offset_ms: i64 },
    /// A Task attempt failed and Step Functions retries it.
    #[serde(rename_all = "camelCase")]
    Retry {
        state: String,
        attempt: u32,
        error: String,
        offset_ms: i64,
    },
    /// A state ended normally.
    #[serde(rename_all = "camelCase")]
    Success {
        state: String,
        duration_ms: i64,
        offset_ms: i64,
    },
    /// A state ended with an error (caught by a Catch, or ending the execution).
    #[serde(rename_all = "camelCase")]
    Failed {
        state: String,
        error: String,
        cause: Option<String>,
        duration_ms: i64,
        offset_ms: i64,
    },
    /// A Choice state picked its next state.
    #[serde(rename_all = "camelCase")]
    Choice {
        state: String,
        next: String,
        offset_ms: i64,
    },
    /// A Succeed or Fail state was reached.
    #[serde(rename_all = "camelCase")]
    Terminal {
        state: String,
        succeeded: bool,
        offset_ms: i64,
    },
    /// The execution ended.
    #[serde(rename_all = "camelCase")]
    Finished {
        status: String,
        error: Option<String>,
        cause: Option<String>,
        duration_ms: i64,
    },
}

#[derive(Debug, Clone)]
struct Open {
    state: String,
    state_type: StateType,
    entered_ms: i64,
    attempts: u32,
    last_error: Option<(String, Option<String>)>,
    /// The last attempt failed (no success after it).
    failing: bool,
}

/// Reads events one by one and says what happened, state by state.
#[derive(Debug, Default)]
pub struct Flow {
    started_ms: Option<i64>,
    open: Option<Open>,
    /// A Choice that exited; its next state is named by the next StateEntered.
    choice_exited: Option<String>,
    finished: Option<String>,
    input: Option<String>,
}

impl Flow {
    pub fn new() -> Self {
        Self::default()
    }

    /// `SUCCEEDED`, `FAILED`, `TIMED_OUT`, `ABORTED` once the execution ended.
    pub fn finished(&self) -> Option<&str> {
        self.finished.as_deref()
    }

    /// The execution input (from ExecutionStarted).
    pub fn input(&self) -> Option<&str> {
        self.input.as_deref()
    }

    pub fn started_ms(&self) -> Option<i64> {
        self.started_ms
    }

    pub fn push(&mut self, event: &Event) -> Vec<Line> {
        let start = *self.started_ms.get_or_insert(event.at_ms);
        let offset_ms = event.at_ms - start;
        let mut lines = Vec::new();
        match &event.kind {
            Kind::ExecutionStarted { input } => {
                self.started_ms = Some(event.at_ms);
                self.input.clone_from(input);
            }
            Kind::StateEntered { state, state_type } => {
                if let Some(choice) = self.choice_exited.take() {
                    lines.push(Line::Choice {
                        state: choice,
                        next: state.clone(),
                        offset_ms,
                    });
                }
                // A caught error moves on without a StateExited event.
                lines.extend(self.close(event.at_ms, offset_ms));
                match state_type {
                    StateType::Choice => {}
                    StateType::Wait => lines.push(Line::Waiting {
                        state: state.clone(),
                        offset_ms,
                    }),
                    StateType::Succeed | StateType::Fail => lines.push(Line::Terminal {
                        state: state.clone(),
                        succeeded: *state_type == StateType::Succeed,
                        offset_ms,
                    }),
                    _ => lines.push(Line::Running {
                        state: state.clone(),
                        offset_ms,
                    }),
                }
                self.open = Some(Open {
                    state: state.clone(),
                    state_type: *state_type,
                    entered_ms: event.at_ms,
                    attempts: 0,
                    last_error: None,
                    failing: false,
                });
            }
            Kind::TaskScheduled => {
                if let Some(open) = self.open.as_mut() {
                    open.attempts += 1;
                    if open.attempts > 1 {
                        let error = open
                            .last_error
                            .as_ref()
                            .map_or_else(|| "error".to_owned(), |(error, _)| error.clone());
                        lines.push(Line::Retry {
                            state: open.state.clone(),
                            attempt: open.attempts - 1,
                            error,
                            offset_ms,
                        });
                    }
                    open.failing = false;
                }
            }
            Kind::TaskSucceeded => {
                if let Some(open) = self.open.as_mut() {
                    open.failing = false;
                }
            }
            Kind::TaskFailed { error, cause } => {
                if let Some(open) = self.open.as_mut() {
                    open.last_error = Some((error.clone(), cause.clone()));
                    open.failing = true;
                }
            }
            Kind::StateExited { state } => {
                let is_choice = self.open.as_ref().is_some_and(|open| {
                    open.state == *state && open.state_type == StateType::Choice
                });
                if is_choice {
                    self.open = None;
                    self.choice_exited = Some(state.clone());
                } else {
                    lines.extend(self.close(event.at_ms, offset_ms));
                }
            }
            Kind::ExecutionSucceeded => {
                lines.extend(self.finish(event.at_ms, offset_ms, "SUCCEEDED", None));
            }
            Kind::ExecutionFailed { error, cause } => {
                let failure = Some((error.clone(), cause.clone()));
                lines.extend(self.finish(event.at_ms, offset_ms, "FAILED", failure));
            }
            Kind::ExecutionTimedOut { error, cause } => {
                let failure = Some((error.clone(), cause.clone()));
                lines.extend(self.finish(event.at_ms, offset_ms, "TIMED_OUT", failure));
            }
            Kind::ExecutionAborted { error, cause } => {
                let failure = Some((error.clone(), cause.clone()));
                lines.extend(self.finish(event.at_ms, offset_ms, "ABORTED", failure));
            }
            Kind::Other => {}
        }
        lines
    }

    /// Ends the open state: a success, or a failure if its last attempt failed.
    fn close(&mut self, at_ms: i64, offset_ms: i64) -> Option<Line> {
        let open = self.open.take()?;
        if matches!(open.state_type, StateType::Succeed | StateType::Fail) {
            return None;
        }
        let duration_ms = at_ms - open.entered_ms;
        Some(match (open.failing, open.last_error) {
            (true, Some((error, cause))) => Line::Failed {
                state: open.state,
                error,
                cause,
                duration_ms,
                offset_ms,
            },
            _ => Line::Success {
                state: open.state,
                duration_ms,
                offset_ms,
            },
        })
    }

    fn finish(
        &mut self,
        at_ms: i64,
        offset_ms: i64,
        status: &str,
        failure: Option<(String, Option<String>)>,
    ) -> Vec<Line> {
        let mut lines = Vec::new();
        if let Some(choice) = self.choice_exited.take() {
            lines.push(Line::Choice {
                state: choice,
                next: "(end)".into(),
                offset_ms,
            });
        }
        // An execution that ends inside a Task (an uncaught error) fails that state.
        if let Some(open) = self.open.as_mut()
            && failure.is_some()
            && open.last_error.is_none()
            && !matches!(open.state_type, StateType::Succeed | StateType::Fail)
        {
            open.last_error.clone_from(&failure);
            open.failing = true;
        }
        lines.extend(self.close(at_ms, offset_ms));
        self.finished = Some(status.to_owned());
        let (error, cause) = failure.map_or((None, None), |(e, c)| (Some(e), c));
        lines.push(Line::Finished {
            status: status.to_owned(),
            error,
            cause,
            duration_ms: at_ms - self.started_ms.unwrap_or(at_ms),
        });
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(id: i64, at_ms: i64, kind: Kind) -> Event {
        Event { id, at_ms, kind }
    }

    fn entered(state: &str, state_type: StateType) -> Kind {
        Kind::StateEntered {
            state: state.into(),
            state_type,
        }
    }

    fn exited(state: &str) -> Kind {
        Kind::StateExited {
            state: state.into(),
        }
    }

    fn failed(error: &str) -> Kind {
        Kind::TaskFailed {
            error: error.into(),
            cause: Some("why".into()),
        }
    }

    fn run(events: Vec<Kind>) -> (Flow, Vec<Line>) {
        let mut flow = Flow::new();
        let mut lines = Vec::new();
        for (i, kind) in events.into_iter().enumerate() {
            let id = i64::try_from(i).unwrap_or_default() + 1;
            lines.extend(flow.push(&ev(id, 1000 + id * 10, kind)));
        }
        (flow, lines)
    }

    fn names(lines: &[Line]) -> Vec<String> {
        lines
            .iter()
            .map(|line| match line {
                Line::Running { state, .. } => format!("RUNNING {state}"),
                Line::Waiting { state, .. } => format!("WAITING {state}"),
                Line::Retry {
                    state,
                    attempt,
                    error,
                    ..
                } => format!("RETRY {attempt} {state} {error}"),
                Line::Success { state, .. } => format!("SUCCESS {state}"),
                Line::Failed { state, error, .. } => format!("FAILED {state} {error}"),
                Line::Choice { state, next, .. } => format!("CHOICE {state} -> {next}"),
                Line::Terminal {
                    state, succeeded, ..
                } => format!("TERMINAL {state} {succeeded}"),
                Line::Finished { status, error, .. } => format!("FINISHED {status} {error:?}"),
            })
            .collect()
    }

    #[test]
    fn every_state_gets_its_start_and_end_even_when_read_in_one_batch() {
        let (flow, lines) = run(vec![
            Kind::ExecutionStarted {
                input: Some("{}".into()),
            },
            entered("CreatePayment", StateType::Task),
            Kind::TaskScheduled,
            Kind::TaskSucceeded,
            exited("CreatePayment"),
            entered("IsPending", StateType::Choice),
            exited("IsPending"),
            entered("WaitForGateway", StateType::Wait),
            exited("WaitForGateway"),
            entered("PaymentCompleted", StateType::Succeed),
            exited("PaymentCompleted"),
            Kind::ExecutionSucceeded,
        ]);
        assert_eq!(
            names(&lines),
            [
                "RUNNING CreatePayment",
                "SUCCESS CreatePayment",
                "CHOICE IsPending -> WaitForGateway",
                "WAITING WaitForGateway",
                "SUCCESS WaitForGateway",
                "TERMINAL PaymentCompleted true",
                "FINISHED SUCCEEDED None",
            ]
        );
        assert_eq!(flow.finished(), Some("SUCCEEDED"));
        assert_eq!(flow.input(), Some("{}"));
    }

    #[test]
    fn retries_are_counted_and_a_caught_failure_ends_the_state_as_failed() {
        let (_, lines) = run(vec![
            Kind::ExecutionStarted { input: None },
            entered("ChargeGateway", StateType::Task),
            Kind::TaskScheduled,
            failed("GatewayUnavailable"),
            Kind::TaskScheduled,
            failed("GatewayUnavailable"),
            Kind::TaskScheduled,
            failed("GatewayUnavailable"),
            // Caught: the next state starts without a TaskStateExited.
            entered("CompensateWallet", StateType::Task),
            Kind::TaskScheduled,
            Kind::TaskSucceeded,
            exited("CompensateWallet"),
            entered("PaymentFailed", StateType::Fail),
            Kind::ExecutionFailed {
                error: "PaymentFailed".into(),
                cause: Some("gateway".into()),
            },
        ]);
        assert_eq!(
            names(&lines),
            [
                "RUNNING ChargeGateway",
                "RETRY 1 ChargeGateway GatewayUnavailable",
                "RETRY 2 ChargeGateway GatewayUnavailable",
                "FAILED ChargeGateway GatewayUnavailable",
                "RUNNING CompensateWallet",
                "SUCCESS CompensateWallet",
                "TERMINAL PaymentFailed false",
                "FINISHED FAILED Some(\"PaymentFailed\")",
            ]
        );
    }

    #[test]
    fn a_retry_that_succeeds_ends_the_state_as_a_success() {
        let (_, lines) = run(vec![
            entered("DebitWallet", StateType::Task),
            Kind::TaskScheduled,
            failed("Runtime.ExitError"),
            Kind::TaskScheduled,
            Kind::TaskSucceeded,
            exited("DebitWallet"),
        ]);
        assert_eq!(
            names(&lines),
            [
                "RUNNING DebitWallet",
                "RETRY 1 DebitWallet Runtime.ExitError",
                "SUCCESS DebitWallet",
            ]
        );
    }

    #[test]
    fn an_uncaught_error_fails_the_open_state_and_the_execution() {
        let (flow, lines) = run(vec![
            entered("DebitWallet", StateType::Task),
            Kind::TaskScheduled,
            Kind::ExecutionTimedOut {
                error: "States.Timeout".into(),
                cause: None,
            },
        ]);
        assert_eq!(
            names(&lines),
            [
                "RUNNING DebitWallet",
                "FAILED DebitWallet States.Timeout",
                "FINISHED TIMED_OUT Some(\"States.Timeout\")",
            ]
        );
        assert_eq!(flow.finished(), Some("TIMED_OUT"));
    }

    #[test]
    fn durations_and_offsets_come_from_event_timestamps() {
        let mut flow = Flow::new();
        flow.push(&ev(1, 5_000, Kind::ExecutionStarted { input: None }));
        flow.push(&ev(2, 5_010, entered("Wait", StateType::Wait)));
        let lines = flow.push(&ev(3, 7_010, exited("Wait")));
        assert_eq!(
            lines,
            [Line::Success {
                state: "Wait".into(),
                duration_ms: 2_000,
                offset_ms: 2_010
            }]
        );
    }

    #[test]
    fn state_types_come_from_event_type_names() {
        assert_eq!(
            StateType::from_event_type("ChoiceStateEntered"),
            Some(StateType::Choice)
        );
        assert_eq!(
            StateType::from_event_type("TaskStateExited"),
            Some(StateType::Task)
        );
        assert_eq!(StateType::from_event_type("ExecutionStarted"), None);
    }
}
