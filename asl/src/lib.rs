//! An Amazon States Language interpreter, following the
//! AWS documentation for JSONPath states.
//!
//! Implemented:
//! - states: Task, Choice, Wait, Pass, Succeed, Fail;
//! - Task resources: Lambda function ARNs (history: `LambdaFunction*`) and
//!   `arn:aws:states:::lambda:invoke` with FunctionName/Payload (history:
//!   `Task*`, result `{ExecutedVersion, Payload, SdkHttpMetadata,
//!   SdkResponseMetadata, StatusCode}`), TimeoutSeconds → `States.Timeout`;
//! - the callback pattern, `arn:aws:states:::lambda:invoke.waitForTaskToken`
//!   (FunctionName/Payload, Parameters passing `$$.Task.Token`): every
//!   attempt issues a token from the runner's [`TaskTokens`]; history
//!   `TaskScheduled`, `TaskStarted`, `TaskSubmitted` (the Lambda returned),
//!   then `TaskSucceeded` with SendTaskSuccess's output, `TaskFailed` with
//!   SendTaskFailure's error and cause, or `TaskTimedOut`: HeartbeatSeconds
//!   without SendTaskHeartbeat → `States.HeartbeatTimeout`, TimeoutSeconds
//!   → `States.Timeout`. SendTask* to a closed token answers `TaskTimedOut`,
//!   to one never issued `InvalidToken`;
//! - input/output: InputPath, Parameters, ResultSelector, ResultPath (also
//!   `null` and nested paths), OutputPath; `.$` fields with paths, `$$`
//!   context paths and intrinsic functions (see `intrinsic`);
//! - Retry (ErrorEquals, IntervalSeconds, MaxAttempts, BackoffRate,
//!   MaxDelaySeconds, JitterStrategy) and Catch (ErrorEquals, Next,
//!   ResultPath), with `States.ALL` and `States.TaskFailed`;
//! - Choice: every comparison operator and its `…Path` form, StringMatches,
//!   And/Or/Not, IsPresent/IsNull/IsString/IsNumeric/IsBoolean/IsTimestamp,
//!   Default, `States.NoChoiceMatched`;
//! - Wait: Seconds, SecondsPath, Timestamp, TimestampPath (through `Clock`);
//! - execution TimeoutSeconds → `TimedOut`, `CancellationHandle::stop` →
//!   `Aborted`, the 25,000-event history quota and the 256 KiB payload quota;
//! - local only: resuming an execution from its recorded history after a
//!   restart of the local cloud (`resume_point`, `resume_execution`).
//!
//! Refused at load with an error naming the state and field: Parallel and
//! Map states, JSONata, variables (`Assign`), HeartbeatSeconds on any task
//! but a `.waitForTaskToken` one, HeartbeatSecondsPath, TimeoutSecondsPath,
//! Credentials, any other Resource (other `.waitForTaskToken`, `.sync`
//! integrations, activities), lambda:invoke parameters other than
//! FunctionName/Payload, a `.waitForTaskToken` task whose Parameters do not
//! pass `$$.Task.Token`, JSONPath beyond `$`, `.field`,
//! `['field']`, `[index]`, and intrinsic functions not listed in `intrinsic`.

mod callback;
mod choice;
mod clock;
mod definition;
mod error;
mod execution;
mod history;
mod intrinsic;
mod path;
mod payload;
mod retry;

use std::collections::BTreeMap;

use serde_json::Value;

pub use callback::{CallbackError, TaskTokens};
pub use clock::{Clock, FakeClock, SystemClock, TimeScaleError};
pub use error::{AslError, StateFailure, names};
pub use execution::{
    CancellationHandle, CancellationSignal, ExecutionContext, HISTORY_EVENT_COUNT_MAX, Outcome,
    PAYLOAD_BYTES_MAX, Resume, ResumeAt, StopRequest, TaskFailure, TaskRunner, iso_millis,
    resume_execution, resume_point, run_execution,
};
pub use history::{
    DataDetails, ErrorDetails, EventKind, ExecutionStartedEventDetails,
    ExecutionSucceededEventDetails, HistoryEvent, HistorySink, LambdaFunctionScheduledEventDetails,
    LambdaFunctionSucceededEventDetails, MemoryHistory, StateEnteredEventDetails,
    StateExitedEventDetails, StateType, TaskErrorEventDetails, TaskScheduledEventDetails,
    TaskStartedEventDetails, TaskSubmittedEventDetails, TaskSucceededEventDetails, epoch_seconds,
};

use definition::Definition;

/// A parsed and validated state machine definition.
#[derive(Debug, Clone, PartialEq)]
pub struct StateMachine {
    text: String,
    definition: Definition,
}

impl StateMachine {
    /// Applies DefinitionSubstitutions (`${Name}` → value; `${!Name}` is the
    /// literal `${Name}`; an unknown placeholder is an error), then parses and
    /// validates. Anything the interpreter does not implement is refused here
    /// with a message naming the state and field.
    pub fn load(
        definition: &str,
        substitutions: &BTreeMap<String, String>,
    ) -> Result<Self, AslError> {
        let text = substitute(definition, substitutions)?;
        let root: Value = serde_json::from_str(&text).map_err(|e| AslError::Json(e.to_string()))?;
        let definition = definition::parse(&root)?;
        Ok(Self { text, definition })
    }

    /// The execution-level TimeoutSeconds, if the definition sets one.
    pub fn timeout_seconds(&self) -> Option<u64> {
        self.definition.timeout_seconds
    }

    /// The definition after substitution (what DescribeStateMachine returns).
    pub fn definition(&self) -> &str {
        &self.text
    }

    pub fn start_at(&self) -> &str {
        &self.definition.start_at
    }

    /// The state names, sorted.
    pub fn state_names(&self) -> impl Iterator<Item = &str> {
        self.definition.states.keys().map(String::as_str)
    }
}

/// Replaces `${Name}` placeholders the way CloudFormation's DefinitionSubstitutions do.
fn substitute(text: &str, substitutions: &BTreeMap<String, String>) -> Result<String, AslError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        if let Some(literal) = after.strip_prefix('!') {
            out.push_str("${");
            rest = literal;
            continue;
        }
        let offset = text.len() - rest.len() + start;
        let end = after
            .find('}')
            .ok_or(AslError::UnclosedSubstitution(offset))?;
        let name = &after[..end];
        let value = substitutions
            .get(name)
            .ok_or_else(|| AslError::UnknownSubstitution(name.to_owned()))?;
        out.push_str(value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn subs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn substitutions_replace_escape_and_refuse_unknown_names() {
        let map = subs(&[("Fn", "arn:aws:lambda:us-east-1:1:function:f")]);
        assert_eq!(
            substitute("a ${Fn} b", &map).unwrap(),
            "a arn:aws:lambda:us-east-1:1:function:f b"
        );
        assert_eq!(substitute("${!Fn}", &map).unwrap(), "${Fn}");
        assert_eq!(
            substitute("${Other}", &map),
            Err(AslError::UnknownSubstitution("Other".into()))
        );
        assert_eq!(
            substitute("x ${Fn", &map),
            Err(AslError::UnclosedSubstitution(2))
        );
    }
}
