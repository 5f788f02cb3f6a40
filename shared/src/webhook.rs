//! Signed gateway webhooks: the gateway reports final outcomes (a charge
//! approved or declined, a refund paid out) by POSTing an event to us, signed
//! the way Stripe signs its events. The `Gateway-Signature` header is
//! `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`, with one `v1`
//! per active secret while a secret is rotated. An event is accepted only
//! when one `v1` matches (compared in constant time) and `t` is within
//! [`TOLERANCE_SECONDS`] of now, so a forged event, a tampered body and an
//! old event replayed are all refused. A fresh event delivered twice is
//! de-duplicated by its `id` by the receiver.
//!
//! The event is a hint, never the truth about money: the receiver asks the
//! gateway again (the reconciler's idempotent steps) before anything moves,
//! so an event out of order or repeated can never move a status backwards or
//! money twice.

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::domain::{PaymentId, RefundId};

/// The request header that carries the signature.
pub const SIGNATURE_HEADER: &str = "Gateway-Signature";
/// Largest difference between an event's signing time and now.
pub const TOLERANCE_SECONDS: i64 = 300;
/// Longest event id we accept (they key the de-duplication record).
pub const EVENT_ID_LENGTH_MAX: usize = 64;

type HmacSha256 = Hmac<Sha256>;

/// Why an event was refused. Every one is a 4xx for the sender and changes
/// nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("no {SIGNATURE_HEADER} header")]
    MissingSignature,
    #[error("{SIGNATURE_HEADER} is not `t=<unix seconds>,v1=<hex>`")]
    MalformedSignature,
    #[error("signed {age_seconds} s away from now, more than the {TOLERANCE_SECONDS} s tolerance")]
    OutsideTolerance { age_seconds: i64 },
    #[error("no signature matches the body")]
    SignatureMismatch,
    #[error("not a gateway event: {0}")]
    MalformedEvent(String),
}

/// `t=…,v1=…` for `body` signed at `timestamp` with `secret`.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    format!(
        "t={timestamp},v1={}",
        hex::encode(tag(secret, timestamp, body))
    )
}

fn mac(secret: &[u8], timestamp: i64, body: &[u8]) -> HmacSha256 {
    // HMAC takes a key of any length; `new_from_slice` cannot fail for it.
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

fn tag(secret: &[u8], timestamp: i64, body: &[u8]) -> Vec<u8> {
    mac(secret, timestamp, body)
        .finalize()
        .into_bytes()
        .to_vec()
}

/// Checks `header` against the raw `body`: the time first (a stale event
/// is refused whatever its signature), then every `v1` in constant time.
pub fn verify(
    header: Option<&str>,
    body: &[u8],
    secret: &[u8],
    now_unix_seconds: i64,
) -> Result<(), WebhookError> {
    let header = header.ok_or(WebhookError::MissingSignature)?;
    let mut timestamp: Option<i64> = None;
    let mut signatures: Vec<Vec<u8>> = Vec::new();
    for part in header.split(',') {
        let (key, value) = part
            .trim()
            .split_once('=')
            .ok_or(WebhookError::MalformedSignature)?;
        match key {
            "t" if timestamp.is_none() => {
                timestamp = Some(
                    value
                        .parse()
                        .map_err(|_| WebhookError::MalformedSignature)?,
                );
            }
            "v1" => {
                signatures.push(hex::decode(value).map_err(|_| WebhookError::MalformedSignature)?);
            }
            // Other schemes (v0, …) are ignored, as Stripe's receivers do.
            _ if key != "t" => {}
            _ => return Err(WebhookError::MalformedSignature),
        }
    }
    let timestamp = timestamp.ok_or(WebhookError::MalformedSignature)?;
    if signatures.is_empty() {
        return Err(WebhookError::MalformedSignature);
    }
    let age_seconds = now_unix_seconds.saturating_sub(timestamp);
    if age_seconds.abs() > TOLERANCE_SECONDS {
        return Err(WebhookError::OutsideTolerance { age_seconds });
    }
    let matches = signatures
        .iter()
        .any(|signature| mac(secret, timestamp, body).verify_slice(signature).is_ok());
    if matches {
        Ok(())
    } else {
        Err(WebhookError::SignatureMismatch)
    }
}

/// What happened, as the gateway names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventType {
    /// A charge reached APPROVED (captured).
    #[serde(rename = "charge.succeeded")]
    ChargeSucceeded,
    /// A charge reached DECLINED.
    #[serde(rename = "charge.failed")]
    ChargeFailed,
    /// A refund was paid out.
    #[serde(rename = "refund.succeeded")]
    RefundSucceeded,
}

/// The ids an event is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventData {
    pub payment_id: PaymentId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_id: Option<RefundId>,
}

/// One gateway event (`{"id":"evt_…","type":"charge.succeeded","created":…,
/// "data":{"paymentId":…}}`); fields we do not use are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayEvent {
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// Unix seconds when the gateway created it.
    pub created: i64,
    pub data: EventData,
}

impl GatewayEvent {
    /// Parses a body whose signature was verified.
    pub fn parse(body: &[u8]) -> Result<Self, WebhookError> {
        let event: GatewayEvent = serde_json::from_slice(body)
            .map_err(|err| WebhookError::MalformedEvent(err.to_string()))?;
        let id_ok = !event.id.is_empty()
            && event.id.len() <= EVENT_ID_LENGTH_MAX
            && event
                .id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !id_ok {
            return Err(WebhookError::MalformedEvent("bad event id".to_owned()));
        }
        if event.event_type == EventType::RefundSucceeded && event.data.refund_id.is_none() {
            return Err(WebhookError::MalformedEvent(
                "refund.succeeded without refundId".to_owned(),
            ));
        }
        Ok(event)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"whsec_test";
    const NOW: i64 = 1_800_000_000;
    const BODY: &[u8] = br#"{"id":"evt_1","type":"charge.succeeded","created":1800000000,"data":{"paymentId":"pay_01J0000000000000000000000A"}}"#;

    #[test]
    fn a_signed_body_verifies_within_the_tolerance() {
        let header = sign(SECRET, NOW, BODY);
        assert!(header.starts_with(&format!("t={NOW},v1=")));
        assert_eq!(verify(Some(&header), BODY, SECRET, NOW), Ok(()));
        assert_eq!(verify(Some(&header), BODY, SECRET, NOW + 300), Ok(()));
        assert_eq!(verify(Some(&header), BODY, SECRET, NOW - 300), Ok(()));
    }

    #[test]
    fn forged_tampered_stale_and_malformed_events_are_refused() {
        let header = sign(SECRET, NOW, BODY);
        // another secret, another body
        let forged = sign(b"not the secret", NOW, BODY);
        assert_eq!(
            verify(Some(&forged), BODY, SECRET, NOW),
            Err(WebhookError::SignatureMismatch)
        );
        let tampered = String::from_utf8(BODY.to_vec())
            .unwrap()
            .replace("evt_1", "evt_2");
        assert_eq!(
            verify(Some(&header), tampered.as_bytes(), SECRET, NOW),
            Err(WebhookError::SignatureMismatch)
        );
        // the same header moved to another time no longer matches
        let moved = header.replace(&format!("t={NOW}"), &format!("t={}", NOW + 1));
        assert_eq!(
            verify(Some(&moved), BODY, SECRET, NOW),
            Err(WebhookError::SignatureMismatch)
        );
        // replayed later than the tolerance, or signed in the future
        assert_eq!(
            verify(Some(&header), BODY, SECRET, NOW + 301),
            Err(WebhookError::OutsideTolerance { age_seconds: 301 })
        );
        assert!(matches!(
            verify(Some(&header), BODY, SECRET, NOW - 301),
            Err(WebhookError::OutsideTolerance { .. })
        ));
        for bad in [
            "",
            "t=1",
            "v1=00",
            "t=x,v1=00",
            "t=1,v1=zz",
            "t=1,t=2,v1=00",
            "garbage",
        ] {
            assert_eq!(
                verify(Some(bad), BODY, SECRET, NOW),
                Err(WebhookError::MalformedSignature),
                "{bad}"
            );
        }
        assert_eq!(
            verify(None, BODY, SECRET, NOW),
            Err(WebhookError::MissingSignature)
        );
    }

    #[test]
    fn any_of_several_signatures_may_match_while_a_secret_rotates() {
        let old = sign(b"old secret", NOW, BODY);
        let new = sign(SECRET, NOW, BODY);
        let v1_of = |header: &str| header.split_once(",v1=").unwrap().1.to_owned();
        let both = format!("t={NOW},v1={},v0=ignored,v1={}", v1_of(&old), v1_of(&new));
        assert_eq!(verify(Some(&both), BODY, SECRET, NOW), Ok(()));
    }

    #[test]
    fn events_parse_with_their_ids() {
        let event = GatewayEvent::parse(BODY).unwrap();
        assert_eq!(event.id, "evt_1");
        assert_eq!(event.event_type, EventType::ChargeSucceeded);
        assert!(GatewayEvent::parse(b"{}").is_err());
        let no_refund = br#"{"id":"evt_2","type":"refund.succeeded","created":1,"data":{"paymentId":"pay_01J0000000000000000000000A"}}"#;
        assert!(GatewayEvent::parse(no_refund).is_err());
        let bad_id = br#"{"id":"evt 3","type":"charge.failed","created":1,"data":{"paymentId":"pay_01J0000000000000000000000A"}}"#;
        assert!(GatewayEvent::parse(bad_id).is_err());
    }
}
