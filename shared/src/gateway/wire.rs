//! The gateway's JSON, as its README documents it (camelCase, amounts as
//! decimal strings at the currency's scale). Responses are read leniently
//! (unknown fields ignored) but every field we rely on must be there and
//! well-formed; anything else is an unexpected answer.

use serde::{Deserialize, Serialize};

use crate::events::ChargeStatus;
use crate::ports::{GatewayCharge, GatewayRefund};

/// A gateway reference longer than this is not one we store.
pub const REFERENCE_LENGTH_MAX: usize = 128;
/// Longest decline code or error code kept from an answer.
pub const CODE_LENGTH_MAX: usize = 64;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChargeRequest<'a> {
    pub payment_id: String,
    /// Decimal string at the currency's scale (`Money::amount_text`).
    pub amount: String,
    pub currency: &'static str,
    pub user_id: &'a str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RefundRequest {
    pub refund_id: String,
    pub payment_id: String,
    pub amount: String,
    pub currency: &'static str,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
enum WireChargeStatus {
    Approved,
    Pending,
    Declined,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ChargeBody {
    payment_id: String,
    status: WireChargeStatus,
    reference: String,
    #[serde(default)]
    decline_code: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RefundBody {
    refund_id: String,
    payment_id: String,
    reference: String,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Debug, Deserialize)]
struct ErrorDetail {
    code: String,
    #[serde(default)]
    message: String,
}

/// A charge answer about `payment_id`, or why it is not one.
pub fn parse_charge(body: &[u8], payment_id: &str) -> Result<GatewayCharge, String> {
    let wire: ChargeBody =
        serde_json::from_slice(body).map_err(|err| format!("unreadable charge answer: {err}"))?;
    if wire.payment_id != payment_id {
        return Err(format!(
            "charge answer is about another payment ({})",
            truncated(&wire.payment_id, CODE_LENGTH_MAX)
        ));
    }
    let reference = checked_reference(wire.reference)?;
    let status = match wire.status {
        WireChargeStatus::Approved => ChargeStatus::Approved,
        WireChargeStatus::Pending => ChargeStatus::Pending,
        WireChargeStatus::Declined => ChargeStatus::Declined,
    };
    let decline_code = match status {
        ChargeStatus::Declined => wire
            .decline_code
            .map(|code| truncated(&code, CODE_LENGTH_MAX)),
        ChargeStatus::Approved | ChargeStatus::Pending | ChargeStatus::NotFound => None,
    };
    Ok(GatewayCharge {
        status,
        reference,
        decline_code,
    })
}

pub fn parse_refund(body: &[u8], refund_id: &str) -> Result<GatewayRefund, String> {
    let wire: RefundBody =
        serde_json::from_slice(body).map_err(|err| format!("unreadable refund answer: {err}"))?;
    if wire.refund_id != refund_id {
        return Err(format!(
            "refund answer is about another refund ({}, payment {})",
            truncated(&wire.refund_id, CODE_LENGTH_MAX),
            truncated(&wire.payment_id, CODE_LENGTH_MAX)
        ));
    }
    Ok(GatewayRefund {
        reference: checked_reference(wire.reference)?,
    })
}

/// The `{"error":{"code","message"}}` of an error answer, if it has one.
pub fn parse_error(body: &[u8]) -> Option<(String, String)> {
    let wire: ErrorBody = serde_json::from_slice(body).ok()?;
    Some((
        truncated(&wire.error.code, CODE_LENGTH_MAX),
        truncated(&wire.error.message, 256),
    ))
}

fn checked_reference(reference: String) -> Result<String, String> {
    if reference.is_empty() || reference.len() > REFERENCE_LENGTH_MAX {
        return Err(format!(
            "gateway reference must be 1..={REFERENCE_LENGTH_MAX} bytes"
        ));
    }
    Ok(reference)
}

/// At most `max` characters of an untrusted string, for messages and codes.
pub fn truncated(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn charge_answers_are_read_and_checked() {
        let body = br#"{"paymentId":"pay_1","status":"DECLINED","reference":"gw_1",
            "amount":"10.13","currency":"USD","declineCode":"card_declined","message":"x"}"#;
        let charge = parse_charge(body, "pay_1").unwrap();
        assert_eq!(charge.status, ChargeStatus::Declined);
        assert_eq!(charge.decline_code.as_deref(), Some("card_declined"));
        assert!(parse_charge(body, "pay_2").is_err());
        assert!(
            parse_charge(
                br#"{"paymentId":"pay_1","status":"LOST","reference":"r"}"#,
                "pay_1"
            )
            .is_err()
        );
        assert!(
            parse_charge(
                br#"{"paymentId":"pay_1","status":"APPROVED","reference":""}"#,
                "pay_1"
            )
            .is_err()
        );
        assert!(parse_charge(b"<html>", "pay_1").is_err());
    }

    #[test]
    fn error_answers_give_their_code() {
        let body = br#"{"error":{"code":"UNAUTHORIZED","message":"missing key"}}"#;
        assert_eq!(
            parse_error(body),
            Some(("UNAUTHORIZED".into(), "missing key".into()))
        );
        assert_eq!(parse_error(b"nope"), None);
    }
}
