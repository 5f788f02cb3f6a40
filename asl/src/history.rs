//! Execution history in the shape `GetExecutionHistory` returns it:
//! `{timestamp, type, id, previousEventId, <type>EventDetails}` with camelCase
//! fields, JSON payloads as strings, and the timestamp as epoch seconds with a
//! millisecond fraction (what the AWS JSON 1.0 protocol sends).

use std::sync::{Mutex, PoisonError};

use serde::de::Error as _;
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use time::OffsetDateTime;

/// The state types that have Entered/Exited events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateType {
    Task,
    Choice,
    Wait,
    Pass,
    Succeed,
    Fail,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataDetails {
    pub truncated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionStartedEventDetails {
    pub input: String,
    pub input_details: DataDetails,
    pub role_arn: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionSucceededEventDetails {
    pub output: String,
    pub output_details: DataDetails,
}

/// `error`/`cause` of ExecutionFailed/Aborted/TimedOut and LambdaFunctionFailed/TimedOut.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorDetails {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub cause: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StateEnteredEventDetails {
    pub name: String,
    pub input: String,
    pub input_details: DataDetails,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StateExitedEventDetails {
    pub name: String,
    pub output: String,
    pub output_details: DataDetails,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LambdaFunctionScheduledEventDetails {
    pub resource: String,
    pub input: String,
    pub input_details: DataDetails,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub timeout_in_seconds: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LambdaFunctionSucceededEventDetails {
    pub output: String,
    pub output_details: DataDetails,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskScheduledEventDetails {
    pub resource_type: String,
    pub resource: String,
    pub region: String,
    /// The evaluated `Parameters` as JSON text.
    pub parameters: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub timeout_in_seconds: Option<u64>,
    /// A callback task's HeartbeatSeconds.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub heartbeat_in_seconds: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskStartedEventDetails {
    pub resource_type: String,
    pub resource: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskSucceededEventDetails {
    pub resource_type: String,
    pub resource: String,
    pub output: String,
    pub output_details: DataDetails,
}

/// A callback task's resource returned (`.waitForTaskToken`): the task now
/// waits for its token's callback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskSubmittedEventDetails {
    pub resource_type: String,
    pub resource: String,
    pub output: String,
    pub output_details: DataDetails,
}

/// TaskFailed and TaskTimedOut.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskErrorEventDetails {
    pub resource_type: String,
    pub resource: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub cause: Option<String>,
}

/// An event's type together with its details.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    ExecutionStarted(ExecutionStartedEventDetails),
    ExecutionSucceeded(ExecutionSucceededEventDetails),
    ExecutionFailed(ErrorDetails),
    ExecutionAborted(ErrorDetails),
    ExecutionTimedOut(ErrorDetails),
    StateEntered(StateType, StateEnteredEventDetails),
    StateExited(StateType, StateExitedEventDetails),
    LambdaFunctionScheduled(LambdaFunctionScheduledEventDetails),
    LambdaFunctionStarted,
    LambdaFunctionSucceeded(LambdaFunctionSucceededEventDetails),
    LambdaFunctionFailed(ErrorDetails),
    LambdaFunctionTimedOut(ErrorDetails),
    TaskScheduled(TaskScheduledEventDetails),
    TaskStarted(TaskStartedEventDetails),
    TaskSubmitted(TaskSubmittedEventDetails),
    TaskSucceeded(TaskSucceededEventDetails),
    TaskFailed(TaskErrorEventDetails),
    TaskTimedOut(TaskErrorEventDetails),
}

/// One event of an execution's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEvent {
    pub id: u64,
    pub previous_event_id: u64,
    pub timestamp: OffsetDateTime,
    pub kind: EventKind,
}

impl StateType {
    fn entered(self) -> &'static str {
        match self {
            Self::Task => "TaskStateEntered",
            Self::Choice => "ChoiceStateEntered",
            Self::Wait => "WaitStateEntered",
            Self::Pass => "PassStateEntered",
            Self::Succeed => "SucceedStateEntered",
            Self::Fail => "FailStateEntered",
        }
    }

    fn exited(self) -> &'static str {
        match self {
            Self::Task => "TaskStateExited",
            Self::Choice => "ChoiceStateExited",
            Self::Wait => "WaitStateExited",
            Self::Pass => "PassStateExited",
            Self::Succeed => "SucceedStateExited",
            // A Fail state never exits; AWS has no FailStateExited event.
            Self::Fail => "FailStateExited",
        }
    }

    const ALL: [Self; 6] = [
        Self::Task,
        Self::Choice,
        Self::Wait,
        Self::Pass,
        Self::Succeed,
        Self::Fail,
    ];
}

impl HistoryEvent {
    /// The `type` field, e.g. `TaskStateEntered`.
    pub fn event_type(&self) -> &'static str {
        match &self.kind {
            EventKind::ExecutionStarted(_) => "ExecutionStarted",
            EventKind::ExecutionSucceeded(_) => "ExecutionSucceeded",
            EventKind::ExecutionFailed(_) => "ExecutionFailed",
            EventKind::ExecutionAborted(_) => "ExecutionAborted",
            EventKind::ExecutionTimedOut(_) => "ExecutionTimedOut",
            EventKind::StateEntered(state_type, _) => state_type.entered(),
            EventKind::StateExited(state_type, _) => state_type.exited(),
            EventKind::LambdaFunctionScheduled(_) => "LambdaFunctionScheduled",
            EventKind::LambdaFunctionStarted => "LambdaFunctionStarted",
            EventKind::LambdaFunctionSucceeded(_) => "LambdaFunctionSucceeded",
            EventKind::LambdaFunctionFailed(_) => "LambdaFunctionFailed",
            EventKind::LambdaFunctionTimedOut(_) => "LambdaFunctionTimedOut",
            EventKind::TaskScheduled(_) => "TaskScheduled",
            EventKind::TaskStarted(_) => "TaskStarted",
            EventKind::TaskSubmitted(_) => "TaskSubmitted",
            EventKind::TaskSucceeded(_) => "TaskSucceeded",
            EventKind::TaskFailed(_) => "TaskFailed",
            EventKind::TaskTimedOut(_) => "TaskTimedOut",
        }
    }

    /// Reads an event from its `GetExecutionHistory` JSON.
    pub fn from_value(value: &Value) -> Result<Self, serde_json::Error> {
        Self::deserialize(value)
    }

    /// The name of the state this event enters, if it is a `…StateEntered`.
    pub fn entered_state(&self) -> Option<&str> {
        match &self.kind {
            EventKind::StateEntered(_, details) => Some(&details.name),
            _ => None,
        }
    }

    fn details(&self) -> Result<Option<(&'static str, Value)>, serde_json::Error> {
        let pair = |key: &'static str, details: Result<Value, serde_json::Error>| {
            details.map(|value| Some((key, value)))
        };
        match &self.kind {
            EventKind::ExecutionStarted(d) => {
                pair("executionStartedEventDetails", serde_json::to_value(d))
            }
            EventKind::ExecutionSucceeded(d) => {
                pair("executionSucceededEventDetails", serde_json::to_value(d))
            }
            EventKind::ExecutionFailed(d) => {
                pair("executionFailedEventDetails", serde_json::to_value(d))
            }
            EventKind::ExecutionAborted(d) => {
                pair("executionAbortedEventDetails", serde_json::to_value(d))
            }
            EventKind::ExecutionTimedOut(d) => {
                pair("executionTimedOutEventDetails", serde_json::to_value(d))
            }
            EventKind::StateEntered(_, d) => {
                pair("stateEnteredEventDetails", serde_json::to_value(d))
            }
            EventKind::StateExited(_, d) => {
                pair("stateExitedEventDetails", serde_json::to_value(d))
            }
            EventKind::LambdaFunctionScheduled(d) => pair(
                "lambdaFunctionScheduledEventDetails",
                serde_json::to_value(d),
            ),
            EventKind::LambdaFunctionStarted => Ok(None),
            EventKind::LambdaFunctionSucceeded(d) => pair(
                "lambdaFunctionSucceededEventDetails",
                serde_json::to_value(d),
            ),
            EventKind::LambdaFunctionFailed(d) => {
                pair("lambdaFunctionFailedEventDetails", serde_json::to_value(d))
            }
            EventKind::LambdaFunctionTimedOut(d) => pair(
                "lambdaFunctionTimedOutEventDetails",
                serde_json::to_value(d),
            ),
            EventKind::TaskScheduled(d) => {
                pair("taskScheduledEventDetails", serde_json::to_value(d))
            }
            EventKind::TaskStarted(d) => pair("taskStartedEventDetails", serde_json::to_value(d)),
            EventKind::TaskSubmitted(d) => {
                pair("taskSubmittedEventDetails", serde_json::to_value(d))
            }
            EventKind::TaskSucceeded(d) => {
                pair("taskSucceededEventDetails", serde_json::to_value(d))
            }
            EventKind::TaskFailed(d) => pair("taskFailedEventDetails", serde_json::to_value(d)),
            EventKind::TaskTimedOut(d) => pair("taskTimedOutEventDetails", serde_json::to_value(d)),
        }
    }
}

/// Epoch seconds with a millisecond fraction, as the AWS JSON protocol sends
/// timestamps. Built from the decimal digits, so no float arithmetic.
pub fn epoch_seconds(timestamp: OffsetDateTime) -> f64 {
    let millis = timestamp.unix_timestamp_nanos().div_euclid(1_000_000);
    let text = format!("{}.{:03}", millis.div_euclid(1000), millis.rem_euclid(1000));
    text.parse().unwrap_or_default()
}

fn from_epoch_seconds(seconds: f64) -> Option<OffsetDateTime> {
    let text = format!("{seconds:.3}");
    let (whole, fraction) = text.split_once('.')?;
    let whole: i128 = whole.parse().ok()?;
    let fraction: i128 = fraction.parse().ok()?;
    let sign = if text.starts_with('-') { -1 } else { 1 };
    let nanos = whole.checked_mul(1_000_000_000)? + sign * fraction * 1_000_000;
    OffsetDateTime::from_unix_timestamp_nanos(nanos).ok()
}

impl Serialize for HistoryEvent {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let details = self.details().map_err(serde::ser::Error::custom)?;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("timestamp", &epoch_seconds(self.timestamp))?;
        map.serialize_entry("type", self.event_type())?;
        map.serialize_entry("id", &self.id)?;
        map.serialize_entry("previousEventId", &self.previous_event_id)?;
        if let Some((key, value)) = details {
            map.serialize_entry(key, &value)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for HistoryEvent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        let field = |name: &str| {
            value
                .get(name)
                .ok_or_else(|| D::Error::custom(format!("missing field {name}")))
        };
        let event_type = field("type")?
            .as_str()
            .ok_or_else(|| D::Error::custom("type is not a string"))?;
        let id = field("id")?
            .as_u64()
            .ok_or_else(|| D::Error::custom("id is not an integer"))?;
        let previous_event_id = value
            .get("previousEventId")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let timestamp = field("timestamp")?
            .as_f64()
            .and_then(from_epoch_seconds)
            .ok_or_else(|| D::Error::custom("timestamp is not epoch seconds"))?;
        let kind = kind_from_json(event_type, &value).map_err(D::Error::custom)?;
        Ok(Self {
            id,
            previous_event_id,
            timestamp,
            kind,
        })
    }
}

fn kind_from_json(event_type: &str, value: &Value) -> Result<EventKind, String> {
    fn details<T: serde::de::DeserializeOwned>(value: &Value, key: &str) -> Result<T, String> {
        let details = value
            .get(key)
            .cloned()
            .unwrap_or(Value::Object(Default::default()));
        serde_json::from_value(details).map_err(|e| format!("{key}: {e}"))
    }
    for state_type in StateType::ALL {
        if event_type == state_type.entered() {
            return Ok(EventKind::StateEntered(
                state_type,
                details(value, "stateEnteredEventDetails")?,
            ));
        }
        if event_type == state_type.exited() {
            return Ok(EventKind::StateExited(
                state_type,
                details(value, "stateExitedEventDetails")?,
            ));
        }
    }
    Ok(match event_type {
        "ExecutionStarted" => {
            EventKind::ExecutionStarted(details(value, "executionStartedEventDetails")?)
        }
        "ExecutionSucceeded" => {
            EventKind::ExecutionSucceeded(details(value, "executionSucceededEventDetails")?)
        }
        "ExecutionFailed" => {
            EventKind::ExecutionFailed(details(value, "executionFailedEventDetails")?)
        }
        "ExecutionAborted" => {
            EventKind::ExecutionAborted(details(value, "executionAbortedEventDetails")?)
        }
        "ExecutionTimedOut" => {
            EventKind::ExecutionTimedOut(details(value, "executionTimedOutEventDetails")?)
        }
        "LambdaFunctionScheduled" => EventKind::LambdaFunctionScheduled(details(
            value,
            "lambdaFunctionScheduledEventDetails",
        )?),
        "LambdaFunctionStarted" => EventKind::LambdaFunctionStarted,
        "LambdaFunctionSucceeded" => EventKind::LambdaFunctionSucceeded(details(
            value,
            "lambdaFunctionSucceededEventDetails",
        )?),
        "LambdaFunctionFailed" => {
            EventKind::LambdaFunctionFailed(details(value, "lambdaFunctionFailedEventDetails")?)
        }
        "LambdaFunctionTimedOut" => {
            EventKind::LambdaFunctionTimedOut(details(value, "lambdaFunctionTimedOutEventDetails")?)
        }
        "TaskScheduled" => EventKind::TaskScheduled(details(value, "taskScheduledEventDetails")?),
        "TaskStarted" => EventKind::TaskStarted(details(value, "taskStartedEventDetails")?),
        "TaskSubmitted" => EventKind::TaskSubmitted(details(value, "taskSubmittedEventDetails")?),
        "TaskSucceeded" => EventKind::TaskSucceeded(details(value, "taskSucceededEventDetails")?),
        "TaskFailed" => EventKind::TaskFailed(details(value, "taskFailedEventDetails")?),
        "TaskTimedOut" => EventKind::TaskTimedOut(details(value, "taskTimedOutEventDetails")?),
        other => return Err(format!("unknown history event type {other}")),
    })
}

/// Where an execution's events go, in order, as they happen.
pub trait HistorySink: Send + Sync {
    fn record(&self, event: HistoryEvent);
}

/// Keeps the events in memory.
#[derive(Debug, Default)]
pub struct MemoryHistory {
    events: Mutex<Vec<HistoryEvent>>,
}

impl MemoryHistory {
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the events (e.g. with a history read back after a restart).
    pub fn restore(&self, events: impl IntoIterator<Item = HistoryEvent>) {
        *self.events.lock().unwrap_or_else(PoisonError::into_inner) = events.into_iter().collect();
    }

    pub fn events(&self) -> Vec<HistoryEvent> {
        self.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The names of the states entered, in order.
    pub fn entered_states(&self) -> Vec<String> {
        self.events()
            .iter()
            .filter_map(|event| event.entered_state().map(str::to_owned))
            .collect()
    }

    /// The `type` of every event, in order.
    pub fn event_types(&self) -> Vec<&'static str> {
        self.events().iter().map(HistoryEvent::event_type).collect()
    }
}

impl HistorySink for MemoryHistory {
    fn record(&self, event: HistoryEvent) {
        self.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(event);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::macros::datetime;

    #[test]
    fn serializes_like_get_execution_history_and_round_trips() {
        // GIVEN a TaskStateEntered event
        let event = HistoryEvent {
            id: 2,
            previous_event_id: 1,
            timestamp: datetime!(2024-05-01 10:00:00.123 UTC),
            kind: EventKind::StateEntered(
                StateType::Task,
                StateEnteredEventDetails {
                    name: "DebitWallet".into(),
                    input: "{\"a\":1}".into(),
                    input_details: DataDetails::default(),
                },
            ),
        };
        // WHEN it is serialized THEN it has AWS's field names and epoch seconds
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(
            json,
            json!({
                "timestamp": 1714557600.123,
                "type": "TaskStateEntered",
                "id": 2,
                "previousEventId": 1,
                "stateEnteredEventDetails": {
                    "name": "DebitWallet",
                    "input": "{\"a\":1}",
                    "inputDetails": {"truncated": false}
                }
            })
        );
        // AND it reads back unchanged
        let back: HistoryEvent = serde_json::from_value(json).unwrap();
        assert_eq!(back, event);
    }

    #[test]
    fn events_without_details_and_with_optional_fields() {
        let started = HistoryEvent {
            id: 4,
            previous_event_id: 3,
            timestamp: datetime!(2024-05-01 10:00:00 UTC),
            kind: EventKind::LambdaFunctionStarted,
        };
        let json = serde_json::to_value(&started).unwrap();
        assert_eq!(
            json,
            json!({
                "timestamp": 1714557600.0,
                "type": "LambdaFunctionStarted",
                "id": 4,
                "previousEventId": 3
            })
        );
        let failed = HistoryEvent {
            kind: EventKind::ExecutionFailed(ErrorDetails {
                error: Some("E".into()),
                cause: None,
            }),
            ..started
        };
        let json = serde_json::to_value(&failed).unwrap();
        assert_eq!(json["executionFailedEventDetails"], json!({"error": "E"}));
        assert_eq!(
            serde_json::from_value::<HistoryEvent>(json).unwrap(),
            failed
        );
    }
}
