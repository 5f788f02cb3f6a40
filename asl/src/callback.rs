//! Task tokens of the callback pattern (`.waitForTaskToken`): the registry a
//! runner shares between its executions and whoever answers
//! SendTaskSuccess, SendTaskFailure and SendTaskHeartbeat.
//!
//! Each attempt of a callback task issues one token and closes it when the
//! attempt ends, however it ends. A callback that arrives before the task
//! waits for it (even before the Lambda returns) is kept and applied.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde_json::Value;
use tokio::sync::watch;

/// Why SendTask* refused a token; `aws_error_code` is the name AWS answers with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallbackError {
    /// Not a token this registry ever issued (malformed or unknown).
    #[error("the task token is not valid")]
    InvalidToken,
    /// Issued, but its task has ended (succeeded, failed, timed out,
    /// execution stopped): AWS answers TaskTimedOut.
    #[error("the task of this token has already been closed")]
    TaskTimedOut,
}

impl CallbackError {
    pub fn aws_error_code(&self) -> &'static str {
        match self {
            Self::InvalidToken => "InvalidToken",
            Self::TaskTimedOut => "TaskTimedOut",
        }
    }
}

/// The answer a callback task waits for.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Callback {
    /// SendTaskSuccess: `output` is the task's result.
    Succeeded(Value),
    /// SendTaskFailure: both are optional, as in the API.
    Failed {
        error: Option<String>,
        cause: Option<String>,
    },
}

/// What the task's side of a token watches.
#[derive(Debug, Clone, Default)]
struct TokenState {
    heartbeat_count: u64,
    /// Set once; a token with a callback refuses every later call.
    callback: Option<Callback>,
}

#[derive(Debug, Default)]
struct Registry {
    issued_count: u64,
    open: HashMap<String, watch::Sender<TokenState>>,
    /// Tokens whose task has ended, so that a late call answers TaskTimedOut
    /// rather than InvalidToken. Kept for the registry's lifetime.
    closed: HashSet<String>,
}

/// The task tokens of every execution that shares this registry (by `Arc`).
#[derive(Debug, Default)]
pub struct TaskTokens {
    registry: Mutex<Registry>,
}

impl TaskTokens {
    pub fn new() -> Self {
        Self::default()
    }

    /// SendTaskSuccess: `output` becomes the task's result.
    pub fn send_success(&self, token: &str, output: Value) -> Result<(), CallbackError> {
        self.answer(token, Callback::Succeeded(output))
    }

    /// SendTaskFailure.
    pub fn send_failure(
        &self,
        token: &str,
        error: Option<String>,
        cause: Option<String>,
    ) -> Result<(), CallbackError> {
        self.answer(token, Callback::Failed { error, cause })
    }

    /// SendTaskHeartbeat: restarts the task's HeartbeatSeconds timer.
    pub fn send_heartbeat(&self, token: &str) -> Result<(), CallbackError> {
        self.update(token, |state| {
            state.heartbeat_count = state.heartbeat_count.saturating_add(1);
        })
    }

    fn answer(&self, token: &str, callback: Callback) -> Result<(), CallbackError> {
        self.update(token, |state| state.callback = Some(callback))
    }

    /// Applies `change` to an open token that has no callback yet.
    fn update(
        &self,
        token: &str,
        change: impl FnOnce(&mut TokenState),
    ) -> Result<(), CallbackError> {
        let registry = self.lock();
        let Some(sender) = registry.open.get(token) else {
            return Err(if registry.closed.contains(token) {
                CallbackError::TaskTimedOut
            } else {
                CallbackError::InvalidToken
            });
        };
        if sender.borrow().callback.is_some() {
            return Err(CallbackError::TaskTimedOut);
        }
        sender.send_modify(change);
        Ok(())
    }

    /// Issues a token: `{sequence}-{uuid}`. The sequence (1, 2, …) makes it
    /// unique in this registry even when two executions draw the same
    /// `uuid` from equally seeded random sources.
    pub(crate) fn issue(&self, uuid: &str) -> OpenToken<'_> {
        let mut registry = self.lock();
        registry.issued_count = registry.issued_count.saturating_add(1);
        let text = format!("{}-{uuid}", registry.issued_count);
        let (sender, receiver) = watch::channel(TokenState::default());
        let replaced = registry.open.insert(text.clone(), sender);
        assert!(replaced.is_none(), "task token {text} issued twice");
        OpenToken {
            tokens: self,
            text,
            heartbeats: Heartbeats {
                receiver: receiver.clone(),
                seen: 0,
            },
            callbacks: Callbacks { receiver },
        }
    }

    /// Closes `token`; returns a callback that was accepted but not yet
    /// taken by the task.
    fn close(&self, token: &str) -> Option<Callback> {
        let mut registry = self.lock();
        let sender = registry.open.remove(token)?;
        registry.closed.insert(token.to_owned());
        sender.borrow().callback.clone()
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A token issued to one task attempt; closed when dropped.
#[derive(Debug)]
pub(crate) struct OpenToken<'r> {
    tokens: &'r TaskTokens,
    text: String,
    pub heartbeats: Heartbeats,
    pub callbacks: Callbacks,
}

impl OpenToken<'_> {
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Closes the token now (later calls answer TaskTimedOut) and returns
    /// a callback accepted just before, if the task had not taken it yet.
    pub fn close(self) -> Option<Callback> {
        self.tokens.close(&self.text)
    }
}

impl Drop for OpenToken<'_> {
    fn drop(&mut self) {
        // Also reached when the execution stops or times out mid-task.
        self.tokens.close(&self.text);
    }
}

/// The heartbeats of one token.
#[derive(Debug)]
pub(crate) struct Heartbeats {
    receiver: watch::Receiver<TokenState>,
    seen: u64,
}

impl Heartbeats {
    /// Resolves at the next heartbeat not seen yet.
    pub async fn next(&mut self) {
        loop {
            let count = self.receiver.borrow_and_update().heartbeat_count;
            if count > self.seen {
                self.seen = count;
                return;
            }
            // The sender lives until the token closes, and the token's owner
            // is the one awaiting: an error cannot happen while it waits.
            if self.receiver.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }
}

/// The callback of one token.
#[derive(Debug)]
pub(crate) struct Callbacks {
    receiver: watch::Receiver<TokenState>,
}

impl Callbacks {
    /// Resolves with the callback, at once if it has already arrived.
    pub async fn next(&mut self) -> Callback {
        // Clone before any other await: the watch guard is not Send, and the
        // execution's future must be.
        let callback = match self
            .receiver
            .wait_for(|state| state.callback.is_some())
            .await
        {
            Ok(state) => state.callback.clone(),
            Err(_) => None,
        };
        match callback {
            Some(callback) => callback,
            // The sender lives until the token closes (see `Heartbeats::next`).
            None => std::future::pending().await,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn a_callback_before_the_wait_is_kept_and_the_token_then_refuses_calls() {
        // GIVEN an issued token
        let tokens = TaskTokens::new();
        let mut token = tokens.issue("u");
        let text = token.text().to_owned();
        assert_eq!(text, "1-u");
        // WHEN a success arrives before anyone waits
        tokens.send_success(&text, json!({"ok": 1})).unwrap();
        // THEN the wait gets it, and every later call is TaskTimedOut
        assert_eq!(
            token.callbacks.next().await,
            Callback::Succeeded(json!({"ok": 1}))
        );
        assert_eq!(
            tokens.send_failure(&text, None, None),
            Err(CallbackError::TaskTimedOut)
        );
        assert_eq!(
            tokens.send_heartbeat(&text),
            Err(CallbackError::TaskTimedOut)
        );
        drop(token);
        assert_eq!(
            tokens.send_success(&text, json!(1)),
            Err(CallbackError::TaskTimedOut)
        );
        assert_eq!(
            tokens.send_success("nope", json!(1)),
            Err(CallbackError::InvalidToken)
        );
        assert_eq!(CallbackError::InvalidToken.aws_error_code(), "InvalidToken");
        assert_eq!(CallbackError::TaskTimedOut.aws_error_code(), "TaskTimedOut");
    }

    #[tokio::test]
    async fn tokens_are_unique_for_equal_uuids_and_heartbeats_are_counted_once() {
        let tokens = TaskTokens::new();
        let first = tokens.issue("same");
        let mut second = tokens.issue("same");
        assert_ne!(first.text(), second.text());
        tokens.send_heartbeat(second.text()).unwrap();
        tokens.send_heartbeat(second.text()).unwrap();
        // two heartbeats before the task looks: one wake-up, then it waits
        second.heartbeats.next().await;
        let waited = tokio::time::timeout(
            std::time::Duration::from_millis(10),
            second.heartbeats.next(),
        )
        .await;
        assert!(waited.is_err());
        // closing returns an accepted callback the task never took
        tokens
            .send_failure(first.text(), Some("E".into()), None)
            .unwrap();
        assert_eq!(
            first.close(),
            Some(Callback::Failed {
                error: Some("E".into()),
                cause: None
            })
        );
    }
}
