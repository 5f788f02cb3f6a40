//! Charges: outcome selection, idempotent recording and the current-status view.

use axum::http::StatusCode;
use rand::Rng;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::config::Mode;
use crate::error::AppError;
use crate::money::Money;
use crate::state::{ChargeRecord, Gateway, Limits};

pub const DECLINE_CODE: &str = "card_declined";

/// Amount that fails with `GATEWAY_ERROR` in normal mode.
const ERROR_AMOUNT: Decimal = Decimal::from_parts(99_999, 0, 0, false, 2);
/// Fractional part that declines in normal mode.
const DECLINE_CENTS: Decimal = Decimal::from_parts(13, 0, 0, false, 2);
/// Fractional part that goes pending in normal mode.
const PENDING_CENTS: Decimal = Decimal::from_parts(77, 0, 0, false, 2);

/// `POST /v1/payments` body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChargeRequest {
    pub payment_id: String,
    pub amount: Box<RawValue>,
    pub currency: String,
    pub user_id: Option<String>,
    pub description: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ChargeStatus {
    Approved,
    Pending,
    Declined,
}

impl ChargeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approved => "APPROVED",
            Self::Pending => "PENDING",
            Self::Declined => "DECLINED",
        }
    }

    /// 200 approved, 202 pending, 402 declined.
    pub fn http_status(self) -> StatusCode {
        match self {
            Self::Approved => StatusCode::OK,
            Self::Pending => StatusCode::ACCEPTED,
            Self::Declined => StatusCode::PAYMENT_REQUIRED,
        }
    }

    fn message(self) -> &'static str {
        match self {
            Self::Approved => "Payment approved",
            Self::Pending => "Payment is pending and will be approved shortly",
            Self::Declined => "Payment declined by the issuer",
        }
    }
}

/// What the gateway decides for a new charge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Approve,
    Pend,
    Decline,
    Fail,
}

/// A recorded charge (approved, pending or declined; failures are never recorded).
#[derive(Debug, Clone)]
pub struct Charge {
    pub payment_id: String,
    pub money: Money,
    pub reference: String,
    pub initial: ChargeStatus,
    pub created_at: OffsetDateTime,
    /// For a pending charge: when it turns approved.
    pub approve_at: Option<OffsetDateTime>,
    /// Sum of refunds so far, at the currency's scale.
    pub refunded: Decimal,
}

impl Charge {
    /// Status at `now`: a pending charge is approved once its delay has passed.
    pub fn status_at(&self, now: OffsetDateTime) -> (ChargeStatus, OffsetDateTime) {
        match (self.initial, self.approve_at) {
            (ChargeStatus::Pending, Some(at)) if now >= at => (ChargeStatus::Approved, at),
            (status, _) => (status, self.created_at),
        }
    }

    /// The body at `now`, with the current status.
    pub fn view(&self, now: OffsetDateTime) -> Result<PaymentView, AppError> {
        let (status, updated_at) = self.status_at(now);
        self.render(status, updated_at)
    }

    /// The body as first answered: a new pending charge answers PENDING even
    /// with a zero delay, so callers always see the pending path.
    fn first_view(&self) -> Result<PaymentView, AppError> {
        self.render(self.initial, self.created_at)
    }

    fn render(
        &self,
        status: ChargeStatus,
        updated_at: OffsetDateTime,
    ) -> Result<PaymentView, AppError> {
        Ok(PaymentView {
            payment_id: self.payment_id.clone(),
            status,
            reference: self.reference.clone(),
            amount: Some(self.money.amount_string()),
            currency: Some(self.money.ccy.code()),
            decline_code: (status == ChargeStatus::Declined).then_some(DECLINE_CODE),
            message: status.message(),
            created_at: rfc3339(self.created_at)?,
            updated_at: rfc3339(updated_at)?,
        })
    }
}

/// Response body of every processed charge, of the status lookup and of a cancel.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentView {
    pub payment_id: String,
    pub status: ChargeStatus,
    pub reference: String,
    /// Absent only on a cancel tombstone, which was never charged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decline_code: Option<&'static str>,
    pub message: &'static str,
    pub created_at: String,
    pub updated_at: String,
}

pub fn rfc3339(at: OffsetDateTime) -> Result<String, AppError> {
    at.format(&Rfc3339).map_err(|_| AppError::Internal)
}

/// Ids: 1..=128 characters of `[A-Za-z0-9_.:-]`.
pub fn validate_id(field: &str, id: &str) -> Result<(), AppError> {
    let ok = (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'));
    if ok {
        Ok(())
    } else {
        Err(AppError::InvalidRequest(format!(
            "{field} must be 1 to 128 characters of [A-Za-z0-9_.:-]"
        )))
    }
}

fn validate_optional_text(field: &str, value: Option<&String>, max: usize) -> Result<(), AppError> {
    match value {
        Some(v) if v.chars().count() > max => Err(AppError::InvalidRequest(format!(
            "{field} must be at most {max} characters"
        ))),
        _ => Ok(()),
    }
}

/// Outcome in `normal` (and `slow`/`flaky`) mode, picked by the amount.
pub fn decide_by_amount(amount: Decimal) -> Decision {
    if amount == ERROR_AMOUNT {
        Decision::Fail
    } else if amount.fract() == DECLINE_CENTS {
        Decision::Decline
    } else if amount.fract() == PENDING_CENTS {
        Decision::Pend
    } else {
        Decision::Approve
    }
}

/// Outcome of a new charge in `random` mode: weights 70/15/10/5.
pub fn decide_random(rng: &mut impl Rng) -> Decision {
    match rng.random_range(0_u32..100) {
        0..70 => Decision::Approve,
        70..85 => Decision::Pend,
        85..95 => Decision::Decline,
        _ => Decision::Fail,
    }
}

/// What a processed charge request produced.
#[derive(Debug)]
pub struct Processed {
    pub view: PaymentView,
    pub replay: bool,
}

/// Validates, then records or replays a charge. Runs entirely under the lock.
pub fn process(
    gateway: &mut Gateway,
    limits: Limits,
    now: OffsetDateTime,
    request: ChargeRequest,
) -> Result<Processed, AppError> {
    validate_id("paymentId", &request.payment_id)?;
    validate_optional_text("userId", request.user_id.as_ref(), 64)?;
    validate_optional_text("description", request.description.as_ref(), 256)?;
    let money = Money::from_wire(&request.amount, &request.currency)?;
    let settings = gateway.settings;
    if settings.mode == Mode::Error {
        return Err(AppError::GatewayError);
    }

    match gateway.charges.get(&request.payment_id) {
        Some(ChargeRecord::Charged(existing)) => {
            if !existing.money.same_as(&money) {
                return Err(AppError::IdempotencyMismatch(format!(
                    "payment {:?} was already processed with amount {} {}",
                    existing.payment_id,
                    existing.money.amount_string(),
                    existing.money.ccy.code()
                )));
            }
            return Ok(Processed {
                view: existing.view(now)?,
                replay: true,
            });
        }
        // A cancelled paymentId stays declined whatever the amount: the caller
        // was promised that this payment will never be captured.
        Some(ChargeRecord::Canceled(tombstone)) => {
            return Ok(Processed {
                view: tombstone.view()?,
                replay: true,
            });
        }
        None => {}
    }
    if gateway.charges.len() >= limits.max_charges {
        return Err(AppError::StorageFull(limits.max_charges, "charges"));
    }

    let decision = match settings.mode {
        Mode::Normal | Mode::Slow | Mode::Flaky => decide_by_amount(money.amount),
        Mode::ApproveAll => Decision::Approve,
        Mode::DeclineAll => Decision::Decline,
        Mode::PendingThenApprove => Decision::Pend,
        Mode::Random => decide_random(&mut gateway.rng),
        Mode::Error | Mode::Down => Decision::Fail,
    };
    let (initial, approve_at) = match decision {
        Decision::Fail => return Err(AppError::GatewayError),
        Decision::Approve => (ChargeStatus::Approved, None),
        Decision::Decline => (ChargeStatus::Declined, None),
        Decision::Pend => {
            let delay = i64::try_from(settings.pending_delay_ms).map_err(|_| AppError::Internal)?;
            let at = now
                .checked_add(time::Duration::milliseconds(delay))
                .ok_or(AppError::Internal)?;
            (ChargeStatus::Pending, Some(at))
        }
    };
    let charge = Charge {
        payment_id: request.payment_id,
        money,
        reference: format!("gw_{}", ulid::Ulid::new()),
        initial,
        created_at: now,
        approve_at,
        refunded: Decimal::ZERO,
    };
    let view = charge.first_view()?;
    gateway
        .charges
        .insert(charge.payment_id.clone(), ChargeRecord::Charged(charge));
    Ok(Processed {
        view,
        replay: false,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn amount_picks_the_normal_mode_outcome() {
        assert_eq!(decide_by_amount(d("999.99")), Decision::Fail);
        assert_eq!(decide_by_amount(d("999.990")), Decision::Fail);
        assert_eq!(decide_by_amount(d("10.13")), Decision::Decline);
        assert_eq!(decide_by_amount(d("0.13")), Decision::Decline);
        assert_eq!(decide_by_amount(d("10.77")), Decision::Pend);
        assert_eq!(decide_by_amount(d("50.00")), Decision::Approve);
        assert_eq!(decide_by_amount(d("1099.99")), Decision::Approve);
        assert_eq!(decide_by_amount(d("10.130")), Decision::Decline);
        assert_eq!(decide_by_amount(d("10.1")), Decision::Approve);
    }

    #[test]
    fn random_outcomes_follow_the_70_15_10_5_weights() {
        // GIVEN a seeded RNG WHEN 10_000 charges are drawn
        let mut rng = StdRng::seed_from_u64(42);
        let mut counts = [0_u32; 4];
        for _ in 0..10_000 {
            let i = match decide_random(&mut rng) {
                Decision::Approve => 0,
                Decision::Pend => 1,
                Decision::Decline => 2,
                Decision::Fail => 3,
            };
            counts[i] += 1;
        }
        // THEN each share is within 1.5 percentage points of its weight
        for (count, weight) in counts.into_iter().zip([7000_u32, 1500, 1000, 500]) {
            assert!(count.abs_diff(weight) < 150, "{counts:?}");
        }
    }

    #[test]
    fn ids_are_validated() {
        assert!(validate_id("paymentId", "pay_01HZX.a-b:c").is_ok());
        for bad in ["", "has space", "ünï", &"x".repeat(129)] {
            assert!(validate_id("paymentId", bad).is_err(), "{bad}");
        }
    }
}
