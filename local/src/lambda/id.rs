//! Identifiers and timestamps in the shapes Lambda uses, so that logs and
//! headers read like AWS's: request ids are UUID-shaped, trace ids follow the
//! X-Ray header format, log streams are `YYYY/MM/DD/[$LATEST]<32 hex>`.

use std::time::{SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;
use time::macros::format_description;

/// A UUID-shaped request id (`8476a536-e9f4-11e8-9739-2dfe598c3fcd`), made
/// from a ULID: unique and roughly time-ordered, no extra dependency.
pub(super) fn request_id() -> String {
    let hex = format!("{:032x}", ulid::Ulid::new().0);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// `Root=1-<epoch seconds, 8 hex>-<24 hex>;Parent=<16 hex>;Sampled=0`.
pub(super) fn trace_id() -> String {
    let random = format!("{:032x}", ulid::Ulid::new().random());
    format!(
        "Root=1-{:08x}-{};Parent={};Sampled=0",
        epoch_ms() / 1000,
        &random[8..32],
        &random[16..32]
    )
}

/// The log stream of one instance (execution environment).
pub(super) fn log_stream_name() -> String {
    let now = OffsetDateTime::now_utc();
    let date = now
        .format(format_description!("[year]/[month]/[day]"))
        .unwrap_or_default();
    format!("{date}/[$LATEST]{:032x}", ulid::Ulid::new().0)
}

pub(super) fn epoch_ms() -> u64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX)
}

/// `2024-05-01T12:00:00.123Z`, the timestamp Lambda puts in timeout messages.
pub(super) fn timestamp() -> String {
    OffsetDateTime::now_utc()
        .format(format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        ))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_aws_shapes() {
        let request = request_id();
        assert_eq!(request.len(), 36);
        assert_eq!(request.matches('-').count(), 4);
        assert_ne!(request, request_id());
        let trace = trace_id();
        assert!(trace.starts_with("Root=1-"), "{trace}");
        assert!(trace.ends_with(";Sampled=0"), "{trace}");
        let stream = log_stream_name();
        assert!(stream.contains("/[$LATEST]"), "{stream}");
        assert_eq!(timestamp().len(), 24);
    }
}
