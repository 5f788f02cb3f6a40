//! Amounts and currencies at the HTTP edge: exact decimals parsed from their
//! string digits, never through a float.

use std::str::FromStr;

use iso_currency::Currency;
use rust_decimal::Decimal;
use serde_json::value::RawValue;

use crate::config::is_plain_decimal;
use crate::error::AppError;

/// Largest amount the gateway accepts for any currency.
pub const MAX_AMOUNT: Decimal = Decimal::from_parts(1_000_000_000, 0, 0, false, 0);

/// An ISO 4217 currency with a minor-unit scale (funds and metals are refused).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ccy {
    currency: Currency,
    scale: u32,
}

impl Ccy {
    pub fn parse(code: &str) -> Result<Self, AppError> {
        let invalid = || {
            AppError::InvalidCurrency(format!(
                "currency must be an ISO 4217 code such as \"USD\", got {:?}",
                code.chars().take(16).collect::<String>()
            ))
        };
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(invalid());
        }
        let currency = Currency::from_code(code).ok_or_else(invalid)?;
        let scale = currency.exponent().map(u32::from).ok_or_else(invalid)?;
        Ok(Self { currency, scale })
    }

    pub fn code(self) -> &'static str {
        self.currency.code()
    }

    pub fn scale(self) -> u32 {
        self.scale
    }
}

/// A positive amount in a currency, held at the currency's scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Money {
    pub amount: Decimal,
    pub ccy: Ccy,
}

impl Money {
    /// Parses `amount` (raw JSON, must be a string) and `currency`.
    pub fn from_wire(amount: &RawValue, currency: &str) -> Result<Self, AppError> {
        let ccy = Ccy::parse(currency)?;
        let text = amount_text(amount)?;
        let amount = parse_amount(&text, ccy)?;
        Ok(Self { amount, ccy })
    }

    /// Renders at the currency's scale, e.g. `"50.00"`, `"500"` (JPY), `"1.250"` (KWD).
    pub fn amount_string(&self) -> String {
        self.amount.to_string()
    }

    /// Same value and currency (`"50"` and `"50.00"` are the same amount).
    pub fn same_as(&self, other: &Money) -> bool {
        self.ccy == other.ccy && self.amount == other.amount
    }
}

/// The amount must be a JSON string: a JSON number would have to pass through a float.
fn amount_text(raw: &RawValue) -> Result<String, AppError> {
    let json = raw.get();
    if json.starts_with('"') {
        serde_json::from_str::<String>(json)
            .map_err(|_| AppError::InvalidAmount("amount is not a valid JSON string".to_owned()))
    } else {
        Err(AppError::InvalidAmount(
            "amount must be a decimal string such as \"50.00\", not a JSON number".to_owned(),
        ))
    }
}

fn parse_amount(text: &str, ccy: Ccy) -> Result<Decimal, AppError> {
    let shown: String = text.chars().take(40).collect();
    if !is_plain_decimal(text) {
        return Err(AppError::InvalidAmount(format!(
            "amount must be digits with an optional decimal point, such as \"50.00\", got {shown:?}"
        )));
    }
    let mut amount = Decimal::from_str(text)
        .map_err(|_| AppError::InvalidAmount(format!("amount {shown:?} is not a decimal")))?;
    if amount.scale() > ccy.scale() {
        // Reject rather than round; trailing zeros beyond the scale are still exact.
        let normalized = amount.normalize();
        if normalized.scale() > ccy.scale() {
            return Err(AppError::InvalidAmount(format!(
                "amount {shown:?} has more decimals than {} allows ({})",
                ccy.code(),
                ccy.scale()
            )));
        }
    }
    if amount <= Decimal::ZERO || amount > MAX_AMOUNT {
        return Err(AppError::InvalidAmount(format!(
            "amount must be greater than 0 and at most {MAX_AMOUNT}, got {shown:?}"
        )));
    }
    amount.rescale(ccy.scale());
    Ok(amount)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn raw(json: &str) -> Box<RawValue> {
        RawValue::from_string(json.to_owned()).unwrap()
    }

    fn money(amount_json: &str, ccy: &str) -> Result<Money, AppError> {
        Money::from_wire(&raw(amount_json), ccy)
    }

    #[test]
    fn renders_at_the_currency_scale() {
        assert_eq!(money(r#""50""#, "USD").unwrap().amount_string(), "50.00");
        assert_eq!(money(r#""50.5""#, "EUR").unwrap().amount_string(), "50.50");
        assert_eq!(money(r#""500""#, "JPY").unwrap().amount_string(), "500");
        assert_eq!(money(r#""1.25""#, "KWD").unwrap().amount_string(), "1.250");
        assert_eq!(
            money(r#""10.130""#, "USD").unwrap().amount_string(),
            "10.13"
        );
    }

    #[test]
    fn rejects_json_numbers_and_malformed_text() {
        for amount in [
            "50.00",
            "50",
            r#""""#,
            r#""abc""#,
            r#""-5.00""#,
            r#""+5""#,
            r#""1e3""#,
            r#"" 5""#,
            r#""5.""#,
            r#"".5""#,
            r#""1_000""#,
            r#""0""#,
            r#""0.00""#,
            r#""1000000000.01""#,
            "null",
            "true",
        ] {
            let err = money(amount, "USD").unwrap_err();
            assert!(
                matches!(err, AppError::InvalidAmount(_)),
                "{amount}: {err:?}"
            );
        }
    }

    #[test]
    fn rejects_more_decimals_than_the_currency_allows() {
        assert!(money(r#""10.001""#, "USD").is_err());
        assert!(money(r#""500.5""#, "JPY").is_err());
        assert!(money(r#""1.2345""#, "KWD").is_err());
    }

    #[test]
    fn rejects_unknown_or_scaleless_currencies() {
        for ccy in ["usd", "US", "USDX", "ZZZ", "XAU", ""] {
            let err = money(r#""1.00""#, ccy).unwrap_err();
            assert!(
                matches!(err, AppError::InvalidCurrency(_)),
                "{ccy}: {err:?}"
            );
        }
    }

    #[test]
    fn equal_values_at_different_scales_are_the_same_amount() {
        let a = money(r#""50""#, "USD").unwrap();
        let b = money(r#""50.00""#, "USD").unwrap();
        let c = money(r#""50.00""#, "EUR").unwrap();
        assert!(a.same_as(&b));
        assert!(!a.same_as(&c));
    }
}
