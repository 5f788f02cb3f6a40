//! UTC timestamps with one fixed-width text form, so that string order is time
//! order (DynamoDB sort keys and GSI range keys compare strings).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::format_description::FormatItem;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

/// `2026-11-23T08:07:05.123456Z`: always microseconds, always `Z`.
const FORMAT: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(OffsetDateTime);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not a UTC timestamp like 2026-01-31T12:00:00.000000Z")]
pub struct TimestampError {
    text: String,
}

impl Timestamp {
    pub fn now() -> Self {
        Self::from_datetime(super::source::now())
    }

    /// Truncates to microseconds, the precision of the text form, so a value
    /// read back from storage compares equal to the one written.
    pub fn from_datetime(at: OffsetDateTime) -> Self {
        let at = at.to_offset(UtcOffset::UTC);
        let micros = at.microsecond();
        Self(at.replace_microsecond(micros).unwrap_or(at))
    }

    pub fn from_unix_seconds(seconds: i64) -> Option<Self> {
        OffsetDateTime::from_unix_timestamp(seconds).ok().map(Self)
    }

    pub fn parse(text: &str) -> Result<Self, TimestampError> {
        PrimitiveDateTime::parse(text, FORMAT)
            .map(|at| Self(at.assume_utc()))
            .map_err(|_| TimestampError {
                text: text.chars().take(64).collect(),
            })
    }

    pub fn unix_seconds(&self) -> i64 {
        self.0.unix_timestamp()
    }

    pub fn unix_millis(&self) -> i128 {
        self.0.unix_timestamp_nanos() / 1_000_000
    }

    pub fn plus_seconds(&self, seconds: i64) -> Self {
        Self(self.0.saturating_add(time::Duration::seconds(seconds)))
    }

    pub fn datetime(&self) -> OffsetDateTime {
        self.0
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.0.format(FORMAT).map_err(|_| fmt::Error)?;
        f.write_str(&text)
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({self})")
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn text_form_is_fixed_width_and_round_trips() {
        let at = Timestamp::now();
        let text = at.to_string();
        assert_eq!(text.len(), "2026-11-23T08:07:05.123456Z".len());
        assert!(text.ends_with('Z'));
        assert_eq!(Timestamp::parse(&text).unwrap(), at);
    }

    #[test]
    fn string_order_is_time_order() {
        let early = Timestamp::from_unix_seconds(9).unwrap();
        let late = Timestamp::from_unix_seconds(10).unwrap();
        assert!(early < late);
        assert!(early.to_string() < late.to_string());
    }

    #[test]
    fn rejects_other_forms() {
        assert!(Timestamp::parse("2026-11-23T08:07:05Z").is_err());
        assert!(Timestamp::parse("yesterday").is_err());
    }
}
