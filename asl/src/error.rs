//! Errors of the interpreter: `AslError` when a definition is loaded (bad or
//! unsupported ASL), `StateFailure` while an execution runs (an AWS error name
//! and its cause, the shape Step Functions reports).

/// Why a definition was refused by `StateMachine::load`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AslError {
    #[error("definition is not valid JSON after substitution: {0}")]
    Json(String),
    #[error("DefinitionSubstitutions: placeholder ${{{0}}} has no value")]
    UnknownSubstitution(String),
    #[error("DefinitionSubstitutions: unclosed ${{ at byte {0}")]
    UnclosedSubstitution(usize),
    /// The definition breaks a rule of the Amazon States Language.
    #[error("{location}: field {field}: {message}")]
    Invalid {
        location: String,
        field: String,
        message: String,
    },
    /// Valid ASL that the local interpreter does not implement; refused so
    /// that nothing is silently ignored.
    #[error("{location}: field {field} is not supported by the local interpreter: {message}")]
    Unsupported {
        location: String,
        field: String,
        message: String,
    },
}

impl AslError {
    pub(crate) fn invalid(
        location: impl Into<String>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self::Invalid {
            location: location.into(),
            field: field.into(),
            message: message.into(),
        }
    }

    pub(crate) fn unsupported(
        location: impl Into<String>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self::Unsupported {
            location: location.into(),
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The names Step Functions itself gives to errors (`States.*`).
pub mod names {
    pub const ALL: &str = "States.ALL";
    pub const TASK_FAILED: &str = "States.TaskFailed";
    pub const TIMEOUT: &str = "States.Timeout";
    /// A callback task went longer than its HeartbeatSeconds without a heartbeat.
    pub const HEARTBEAT_TIMEOUT: &str = "States.HeartbeatTimeout";
    pub const RUNTIME: &str = "States.Runtime";
    pub const NO_CHOICE_MATCHED: &str = "States.NoChoiceMatched";
    pub const DATA_LIMIT_EXCEEDED: &str = "States.DataLimitExceeded";
}

/// A failure while running a state, named the way Step Functions names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateFailure {
    pub error: String,
    pub cause: String,
}

impl StateFailure {
    pub fn new(error: impl Into<String>, cause: impl Into<String>) -> Self {
        Self {
            error: error.into(),
            cause: cause.into(),
        }
    }

    /// `States.Runtime`: bad data met at run time (a path that does not
    /// resolve, an intrinsic given the wrong type). It can be neither retried
    /// nor caught, not even by `States.ALL`; the execution fails.
    pub fn runtime(cause: impl Into<String>) -> Self {
        Self::new(names::RUNTIME, cause)
    }

    /// Errors that `Retry`/`Catch` never see (AWS: "A retry or catch on
    /// States.ALL won't catch States.Runtime errors").
    pub fn is_terminal(&self) -> bool {
        self.error == names::RUNTIME || self.error == names::DATA_LIMIT_EXCEEDED
    }
}
