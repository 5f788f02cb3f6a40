//! Typed identifiers. A `PaymentId` cannot be passed where a `RefundId` is
//! expected, and every id is validated where it enters the system.
//!
//! Generated ids are a prefix plus a ULID (`pay_01J9Z3…`): unique without
//! coordination and sortable by creation time.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use ulid::Ulid;

/// User ids are client-supplied: 1–64 characters of `[A-Za-z0-9_.-]`.
pub const USER_ID_LENGTH_MAX: u32 = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("`{text}` is not a valid {kind} (expected `{prefix}` followed by a ULID)")]
    Malformed {
        kind: &'static str,
        prefix: &'static str,
        text: String,
    },
    #[error("userId must be 1-64 characters of A-Z a-z 0-9 _ . -")]
    InvalidUserId,
}

macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Ulid);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// A new id for the current instant.
            pub fn generate() -> Self {
                Self(super::source::ulid())
            }

            pub fn parse(text: &str) -> Result<Self, IdError> {
                let malformed = || IdError::Malformed {
                    kind: $kind,
                    prefix: $prefix,
                    text: text.chars().take(64).collect(),
                };
                let rest = text.strip_prefix($prefix).ok_or_else(malformed)?;
                // ULID parsing is case-insensitive; we only accept the canonical
                // upper-case form so one id has exactly one spelling (it is a key).
                if rest.len() != 26 || rest.bytes().any(|b| b.is_ascii_lowercase()) {
                    return Err(malformed());
                }
                Ulid::from_string(rest).map(Self).map_err(|_| malformed())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}{}", $prefix, self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                Self::parse(&text).map_err(serde::de::Error::custom)
            }
        }
    };
}

prefixed_id!(
    /// A payment, and the name of its saga execution.
    PaymentId, "pay_", "paymentId"
);
prefixed_id!(
    /// A customer refund of (part of) a completed payment.
    RefundId, "ref_", "refundId"
);
prefixed_id!(
    /// A wallet top-up (operator credit).
    TopUpId, "top_", "topUpId"
);
prefixed_id!(
    /// One ledger entry, as shown to clients.
    TxnId, "txn_", "transactionId"
);

/// A client-supplied user identifier.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct UserId(String);

impl UserId {
    pub fn parse(text: &str) -> Result<Self, IdError> {
        let length_ok = !text.is_empty() && text.len() <= 64;
        let charset_ok = text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !(length_ok && charset_ok) {
            return Err(IdError::InvalidUserId);
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserId({})", self.0)
    }
}

impl<'de> Deserialize<'de> for UserId {
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
    fn generated_ids_carry_their_prefix_and_parse_back() {
        let id = PaymentId::generate();
        let text = id.to_string();
        assert!(text.starts_with("pay_"));
        assert_eq!(text.len(), 4 + 26);
        assert_eq!(PaymentId::parse(&text).unwrap(), id);
        assert!(RefundId::generate().to_string().starts_with("ref_"));
        assert!(TopUpId::generate().to_string().starts_with("top_"));
        assert!(TxnId::generate().to_string().starts_with("txn_"));
    }

    #[test]
    fn ids_sort_by_creation_time() {
        let first = PaymentId::generate();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let second = PaymentId::generate();
        assert!(first.to_string() < second.to_string());
    }

    #[test]
    fn rejects_wrong_prefix_and_garbage() {
        let refund = RefundId::generate().to_string();
        assert!(PaymentId::parse(&refund).is_err());
        assert!(PaymentId::parse("pay_").is_err());
        assert!(PaymentId::parse("pay_not-a-ulid").is_err());
        let lower = PaymentId::generate().to_string().to_lowercase();
        assert!(PaymentId::parse(&lower).is_err());
    }

    #[test]
    fn user_ids_are_validated() {
        for good in ["u", "user_test_001", "a.b-c_D9", &"x".repeat(64)] {
            assert!(UserId::parse(good).is_ok(), "{good}");
        }
        for bad in ["", &"x".repeat(65), "a b", "a#b", "ü", "a/b"] {
            assert_eq!(UserId::parse(bad), Err(IdError::InvalidUserId), "{bad}");
        }
    }
}
