//! What can go wrong in a command, and the exit code each maps to:
//! 1 for an unexpected outcome or a failed operation, 2 for usage errors and timeouts.

use std::process::ExitCode;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Nothing answers at the URL (the local cloud is not running, or a wrong URL).
    #[error(
        "cannot reach {what} at {url}: {detail}\n  is the local cloud running? start it with `make start-local` (or pass --{flag})"
    )]
    Unreachable {
        what: &'static str,
        url: String,
        flag: &'static str,
        detail: String,
    },
    /// The API answered with its JSON error body.
    #[error("{status} {error_type}/{code}: {message}")]
    Api {
        status: u16,
        error_type: String,
        code: String,
        message: String,
    },
    /// Step Functions (local edge or AWS) refused a call.
    #[error("Step Functions: {0}")]
    StepFunctions(String),
    /// An answer that is not what the API documents.
    #[error("unexpected answer from {0}")]
    Protocol(String),
    #[error("{0}")]
    Usage(String),
    #[error("timed out: {0}")]
    Timeout(String),
    /// The command ran, but the outcome is not the expected one (already reported).
    #[error("{0}")]
    Outcome(String),
}

impl CliError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Self::Usage(_) | Self::Timeout(_) => ExitCode::from(2),
            _ => ExitCode::from(1),
        }
    }
}

pub type CliResult<T> = Result<T, CliError>;
