//! Circuit-breaker state as stored in the CircuitBreaker table, shared by all
//! payments-adapter instances. The transition rules arrive with the adapter.

use serde::{Deserialize, Serialize};

use super::timestamp::Timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BreakerRecord {
    pub service_name: String,
    pub state: BreakerState,
    pub consecutive_failures: u32,
    pub consecutive_successes: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opened_at: Option<Timestamp>,
    /// While HALF_OPEN, the single probe in flight holds this lease until it expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_lease_until: Option<Timestamp>,
    pub updated_at: Timestamp,
    /// 0 = never written; writes are conditioned on the version read.
    pub version: u64,
}

impl BreakerRecord {
    pub fn closed(service_name: String, at: Timestamp) -> Self {
        Self {
            service_name,
            state: BreakerState::Closed,
            consecutive_failures: 0,
            consecutive_successes: 0,
            opened_at: None,
            probe_lease_until: None,
            updated_at: at,
            version: 0,
        }
    }
}
