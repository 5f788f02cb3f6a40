//! API idempotency records: the first response to an `Idempotency-Key` is kept
//! for 24 hours and replayed for the same request.

use serde::{Deserialize, Serialize};

use super::timestamp::Timestamp;

/// How long a key is remembered (DESIGN §7).
pub const IDEMPOTENCY_TTL_SECONDS: i64 = 24 * 60 * 60;
/// Client keys longer than this are rejected.
pub const IDEMPOTENCY_KEY_LENGTH_MAX: u32 = 255;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "state",
    rename_all = "SCREAMING_SNAKE_CASE",
    rename_all_fields = "camelCase"
)]
pub enum IdempotencyState {
    /// Claimed by a request that has not finished; a concurrent use is a 409.
    InProgress,
    /// Finished: this response is replayed.
    Completed { status_code: u16, body: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdempotencyRecord {
    /// Scoped by route and caller, e.g. `POST /payments#<client key>`.
    pub idempotency_key: String,
    /// Hash of the request (method, path, body) that first used the key.
    pub request_hash: String,
    pub state: IdempotencyState,
    pub created_at: Timestamp,
    /// DynamoDB TTL attribute (epoch seconds).
    pub expires_at: i64,
}

impl IdempotencyRecord {
    pub fn claim(idempotency_key: String, request_hash: String, at: Timestamp) -> Self {
        Self {
            idempotency_key,
            request_hash,
            state: IdempotencyState::InProgress,
            created_at: at,
            expires_at: at.unix_seconds().saturating_add(IDEMPOTENCY_TTL_SECONDS),
        }
    }

    /// Expired records may linger until DynamoDB's TTL sweep removes them;
    /// readers treat them as absent.
    pub fn is_expired(&self, now: Timestamp) -> bool {
        now.unix_seconds() >= self.expires_at
    }
}

/// What claiming a key found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// The key is ours; do the work, then complete the record.
    Claimed,
    /// The key was used before (possibly still in progress).
    Existing(IdempotencyRecord),
}
