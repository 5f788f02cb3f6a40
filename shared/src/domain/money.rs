//! Exact money: a `rust_decimal::Decimal` amount with its ISO 4217 currency.
//!
//! Amounts are never rounded and never pass through a float. A value with more
//! decimals than its currency allows is rejected. Every `Money` is held at its
//! currency's minor-unit scale, so rendering is always `"50.50"` for USD,
//! `"500"` for JPY and `"1.250"` for KWD.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest amount text we even try to parse (sign, 28 digits, point, slack).
/// Anything longer is rejected before it reaches the decimal parser.
pub const AMOUNT_TEXT_LENGTH_MAX: u32 = 40;

/// Default largest single payment/top-up amount, in major units of any currency.
pub const AMOUNT_MAX_DEFAULT: Decimal = Decimal::from_parts(1_000_000, 0, 0, false, 0);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("amount `{text}` is not a plain decimal number (digits with an optional `.`)")]
    InvalidAmountFormat { text: String },
    #[error("amount `{text}` has more significant digits than can be represented exactly")]
    AmountOutOfRange { text: String },
    #[error("currency `{code}` is not an active ISO 4217 currency with a minor unit")]
    UnknownCurrency { code: String },
    #[error("{currency} allows at most {scale_max} decimal places, got {amount}")]
    TooManyDecimals {
        amount: Decimal,
        currency: Currency,
        scale_max: u32,
    },
    #[error("amount must not be negative, got {amount}")]
    Negative { amount: Decimal },
    #[error("amount must be greater than zero")]
    NotPositive,
    #[error("amount {amount} {currency} exceeds the maximum of {amount_max} {currency}")]
    AboveMaximum {
        amount: Decimal,
        currency: Currency,
        amount_max: Decimal,
    },
    #[error("currency mismatch: {left} vs {right}")]
    CurrencyMismatch { left: Currency, right: Currency },
    #[error("arithmetic overflow")]
    Overflow,
}

/// An active ISO 4217 currency and its minor-unit scale (USD 2, JPY 0, KWD 3, CLF 4).
///
/// The data comes from the `iso_currency` crate (generated from the ISO 4217
/// list); superseded codes and codes without a minor unit (XAU, XXX, ...) are
/// not accepted.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency {
    code: &'static str,
    scale: u32,
}

impl Currency {
    /// Parses an upper-case three-letter code. Lower-case is rejected: codes on
    /// the wire are canonical, so stored keys (`userId#USD`) never diverge.
    pub fn parse(code: &str) -> Result<Self, MoneyError> {
        let unknown = || MoneyError::UnknownCurrency {
            code: code.to_owned(),
        };
        let iso = iso_currency::Currency::from_code(code).ok_or_else(unknown)?;
        if iso.is_superseded().is_some() {
            return Err(unknown());
        }
        let scale = iso.exponent().ok_or_else(unknown)?;
        Ok(Self {
            code: iso.code(),
            scale: u32::from(scale),
        })
    }

    pub fn code(&self) -> &'static str {
        self.code
    }

    /// Every currency [`Currency::parse`] accepts, by code (what
    /// `api/openapi.yaml` lists, checked by its contract test).
    pub fn all() -> Vec<Self> {
        use iso_currency::IntoEnumIterator;
        let mut all: Vec<Self> = iso_currency::Currency::iter()
            .filter_map(|iso| Self::parse(iso.code()).ok())
            .collect();
        all.sort_by_key(|currency| currency.code);
        all.dedup();
        all
    }

    /// Number of decimal places of the minor unit.
    pub fn scale(&self) -> u32 {
        self.scale
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code)
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Currency({})", self.code)
    }
}

impl FromStr for Currency {
    type Err = MoneyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code)
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let code = String::deserialize(d)?;
        Self::parse(&code).map_err(serde::de::Error::custom)
    }
}

/// Parses amount text exactly: optional `-`, digits, optionally `.` and digits.
/// No exponent, no `+`, no spaces, no `_`: what a JSON number or a decimal string
/// carries. This is the only entry point from text to an amount.
pub fn parse_amount(text: &str) -> Result<Decimal, MoneyError> {
    let invalid = || MoneyError::InvalidAmountFormat {
        text: truncated(text),
    };
    if text.is_empty() || text.len() > usize_from(AMOUNT_TEXT_LENGTH_MAX) {
        return Err(invalid());
    }
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    let (whole, fraction) = match unsigned.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (unsigned, None),
    };
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(whole) || !fraction.is_none_or(all_digits) {
        return Err(invalid());
    }
    // from_str_exact refuses to round when there are more digits than fit.
    Decimal::from_str_exact(text).map_err(|_| MoneyError::AmountOutOfRange {
        text: truncated(text),
    })
}

fn truncated(text: &str) -> String {
    text.chars().take(48).collect()
}

fn usize_from(n: u32) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// A non-negative exact amount in one currency, held at the currency's scale.
///
/// Fields are private: every `Money` went through [`Money::new`], so its scale
/// fits its currency and it is never negative. Balances use it as well as
/// payment amounts; [`Money::check_chargeable`] adds the > 0 and ≤ maximum rules.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Money {
    amount: Decimal,
    currency: Currency,
}

impl Money {
    pub fn new(amount: Decimal, currency: Currency) -> Result<Self, MoneyError> {
        if amount.is_sign_negative() && !amount.is_zero() {
            return Err(MoneyError::Negative { amount });
        }
        // Trailing zeros are not precision: "50.500" USD is 50.50. Anything
        // beyond the currency's scale after that is rejected, never rounded.
        let normalized = amount.normalize();
        if normalized.scale() > currency.scale() {
            return Err(MoneyError::TooManyDecimals {
                amount,
                currency,
                scale_max: currency.scale(),
            });
        }
        let mut at_scale = normalized;
        at_scale.rescale(currency.scale());
        // rescale only pads zeros here; when the 96-bit mantissa cannot hold them
        // rust_decimal keeps a smaller scale instead, which must not pass silently.
        if at_scale.scale() != currency.scale() {
            return Err(MoneyError::Overflow);
        }
        Ok(Self {
            amount: at_scale,
            currency,
        })
    }

    /// Parses decimal text and a currency code (the API's `"1250.50"`, `"USD"`).
    pub fn parse(amount: &str, currency: &str) -> Result<Self, MoneyError> {
        let currency = Currency::parse(currency)?;
        Self::new(parse_amount(amount)?, currency)
    }

    pub fn zero(currency: Currency) -> Self {
        let mut amount = Decimal::ZERO;
        amount.rescale(currency.scale());
        Self { amount, currency }
    }

    pub fn amount(&self) -> Decimal {
        self.amount
    }

    pub fn currency(&self) -> Currency {
        self.currency
    }

    pub fn is_zero(&self) -> bool {
        self.amount.is_zero()
    }

    /// The rules for an amount that moves money: > 0 and ≤ `amount_max`.
    pub fn check_chargeable(&self, amount_max: Decimal) -> Result<(), MoneyError> {
        if self.amount <= Decimal::ZERO {
            return Err(MoneyError::NotPositive);
        }
        if self.amount > amount_max {
            return Err(MoneyError::AboveMaximum {
                amount: self.amount,
                currency: self.currency,
                amount_max,
            });
        }
        Ok(())
    }

    pub fn checked_add(&self, other: &Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let sum = self
            .amount
            .checked_add(other.amount)
            .ok_or(MoneyError::Overflow)?;
        Money::new(sum, self.currency)
    }

    /// Subtraction that refuses to go below zero (`Negative`) or overflow.
    pub fn checked_sub(&self, other: &Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let difference = self
            .amount
            .checked_sub(other.amount)
            .ok_or(MoneyError::Overflow)?;
        Money::new(difference, self.currency)
    }

    fn same_currency(&self, other: &Money) -> Result<(), MoneyError> {
        if self.currency != other.currency {
            return Err(MoneyError::CurrencyMismatch {
                left: self.currency,
                right: other.currency,
            });
        }
        Ok(())
    }

    /// The amount rendered at the currency's scale: `"50.50"`, `"500"`, `"1.250"`.
    pub fn amount_text(&self) -> String {
        self.amount.to_string()
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.amount, self.currency)
    }
}

impl fmt::Debug for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Money({} {})", self.amount, self.currency)
    }
}

/// Inside the system money travels as `{"amount":"10.50","currency":"EUR"}`:
/// the amount is a string, so no JSON reader ever sees it as a float.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct MoneyWire {
    amount: String,
    currency: String,
}

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        MoneyWire {
            amount: self.amount_text(),
            currency: self.currency.code().to_owned(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let wire = MoneyWire::deserialize(d)?;
        Money::parse(&wire.amount, &wire.currency).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {

    #[test]
    fn all_lists_exactly_the_accepted_currencies() {
        let all = Currency::all();
        let codes: Vec<&str> = all.iter().map(Currency::code).collect();
        for accepted in ["USD", "EUR", "JPY", "KWD", "CLF"] {
            assert!(codes.contains(&accepted), "{accepted}");
        }
        for refused in ["XAU", "XXX"] {
            assert!(!codes.contains(&refused), "{refused}");
            assert!(Currency::parse(refused).is_err());
        }
        assert!(
            codes.windows(2).all(|pair| pair[0] < pair[1]),
            "sorted, once each"
        );
    }

    use super::*;

    fn money(amount: &str, currency: &str) -> Result<Money, MoneyError> {
        Money::parse(amount, currency)
    }

    #[test]
    fn renders_at_the_currency_scale() {
        assert_eq!(money("50", "USD").unwrap().amount_text(), "50.00");
        assert_eq!(money("50.5", "USD").unwrap().amount_text(), "50.50");
        assert_eq!(money("0.10", "USD").unwrap().amount_text(), "0.10");
        assert_eq!(money("500", "JPY").unwrap().amount_text(), "500");
        assert_eq!(money("1.25", "KWD").unwrap().amount_text(), "1.250");
        assert_eq!(money("1.2345", "CLF").unwrap().amount_text(), "1.2345");
    }

    #[test]
    fn keeps_twenty_two_significant_digits_exactly() {
        let m = money("12345678901234567890.12", "USD").unwrap();
        assert_eq!(m.amount_text(), "12345678901234567890.12");
    }

    #[test]
    fn rejects_more_decimals_than_the_currency_allows_instead_of_rounding() {
        assert!(matches!(
            money("10.001", "USD"),
            Err(MoneyError::TooManyDecimals { .. })
        ));
        assert!(matches!(
            money("1.5", "JPY"),
            Err(MoneyError::TooManyDecimals { .. })
        ));
        assert!(matches!(
            money("1.2345", "KWD"),
            Err(MoneyError::TooManyDecimals { .. })
        ));
        // Trailing zeros carry no precision and are accepted.
        assert_eq!(money("10.500", "USD").unwrap().amount_text(), "10.50");
        assert_eq!(money("7.000", "JPY").unwrap().amount_text(), "7");
    }

    #[test]
    fn rejects_text_that_is_not_a_plain_decimal() {
        for text in [
            "", "1e3", "+5", " 5", "5 ", "1_000", "1,00", ".5", "5.", "0x10", "NaN", "--1",
        ] {
            assert!(
                matches!(
                    parse_amount(text),
                    Err(MoneyError::InvalidAmountFormat { .. })
                ),
                "{text:?} must be rejected"
            );
        }
        assert!(matches!(
            parse_amount("1234567890123456789012345678901234567"),
            Err(MoneyError::AmountOutOfRange { .. })
        ));
    }

    #[test]
    fn rejects_negative_and_unknown_currencies() {
        assert!(matches!(
            money("-1", "USD"),
            Err(MoneyError::Negative { .. })
        ));
        for code in ["usd", "XXX", "XAU", "ABC", "SLL", "US"] {
            assert!(
                matches!(
                    Currency::parse(code),
                    Err(MoneyError::UnknownCurrency { .. })
                ),
                "{code}"
            );
        }
    }

    #[test]
    fn knows_the_minor_units_of_active_currencies() {
        let scales = [
            ("USD", 2),
            ("EUR", 2),
            ("JPY", 0),
            ("KWD", 3),
            ("BHD", 3),
            ("CLF", 4),
        ];
        for (code, scale) in scales {
            assert_eq!(Currency::parse(code).unwrap().scale(), scale, "{code}");
        }
        assert_eq!(Currency::parse("SLE").unwrap().scale(), 2);
    }

    #[test]
    fn chargeable_amounts_are_positive_and_bounded() {
        let max = AMOUNT_MAX_DEFAULT;
        assert_eq!(
            money("0", "USD").unwrap().check_chargeable(max),
            Err(MoneyError::NotPositive)
        );
        assert!(money("0.01", "USD").unwrap().check_chargeable(max).is_ok());
        assert!(
            money("1000000", "USD")
                .unwrap()
                .check_chargeable(max)
                .is_ok()
        );
        assert!(matches!(
            money("1000000.01", "USD").unwrap().check_chargeable(max),
            Err(MoneyError::AboveMaximum { .. })
        ));
    }

    #[test]
    fn arithmetic_is_checked() {
        let ten = money("10", "USD").unwrap();
        let three = money("3.33", "USD").unwrap();
        assert_eq!(ten.checked_sub(&three).unwrap().amount_text(), "6.67");
        assert_eq!(ten.checked_add(&three).unwrap().amount_text(), "13.33");
        assert!(matches!(
            three.checked_sub(&ten),
            Err(MoneyError::Negative { .. })
        ));
        let yen = money("10", "JPY").unwrap();
        assert!(matches!(
            ten.checked_add(&yen),
            Err(MoneyError::CurrencyMismatch { .. })
        ));
        let huge = Money::new(Decimal::MAX, Currency::parse("JPY").unwrap()).unwrap();
        assert_eq!(huge.checked_add(&yen), Err(MoneyError::Overflow));
    }

    #[test]
    fn serializes_amount_as_string_and_round_trips() {
        let m = money("1250.5", "USD").unwrap();
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(json, r#"{"amount":"1250.50","currency":"USD"}"#);
        assert_eq!(serde_json::from_str::<Money>(&json).unwrap(), m);
        // A float on the internal wire is refused, not converted.
        assert!(serde_json::from_str::<Money>(r#"{"amount":12.5,"currency":"USD"}"#).is_err());
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        const CODES: [&str; 8] = ["USD", "EUR", "JPY", "KWD", "BHD", "ISK", "CLF", "UYW"];

        /// Amount text with at most the currency's decimals, e.g. ("KWD", "12.305").
        fn amount_text() -> impl Strategy<Value = (String, String)> {
            (
                0..CODES.len(),
                0u64..=999_999_999_999_999_999,
                0u32..=4,
                0u64..10_000,
            )
                .prop_map(|(index, whole, places, fraction)| {
                    let code = CODES[index];
                    let scale = Currency::parse(code).map_or(0, |c| c.scale());
                    let places = places.min(scale);
                    let text = if places == 0 {
                        whole.to_string()
                    } else {
                        let digits = format!("{:04}", fraction % 10_000);
                        format!(
                            "{whole}.{}",
                            &digits[..usize::try_from(places).unwrap_or(0)]
                        )
                    };
                    (code.to_owned(), text)
                })
        }

        proptest! {
            #[test]
            fn parse_render_parse_is_the_identity((code, text) in amount_text()) {
                let money = Money::parse(&text, &code).unwrap();
                let rendered = money.amount_text();
                // Rendered at exactly the currency's scale, same value as the input.
                let scale = money.currency().scale();
                let decimals = rendered.split_once('.').map_or(0, |(_, f)| f.len());
                prop_assert_eq!(u32::try_from(decimals).unwrap(), scale);
                prop_assert_eq!(money.amount(), parse_amount(&text).unwrap());
                prop_assert_eq!(Money::parse(&rendered, &code).unwrap(), money);
                let json = serde_json::to_string(&money).unwrap();
                prop_assert_eq!(serde_json::from_str::<Money>(&json).unwrap(), money);
            }

            #[test]
            fn adding_then_subtracting_is_the_identity(
                (code, a) in amount_text(),
                b in 0u64..=999_999_999_999_999,
            ) {
                let a = Money::parse(&a, &code).unwrap();
                let b = Money::parse(&b.to_string(), &code).unwrap();
                prop_assert_eq!(a.checked_add(&b).unwrap().checked_sub(&b).unwrap(), a);
            }

            #[test]
            fn extra_decimals_are_rejected_never_rounded(
                (code, text) in amount_text(),
                extra in 1u32..=3,
                last in 1u8..=9,
            ) {
                let scale = Currency::parse(&code).unwrap().scale();
                let (whole, fraction) = text.split_once('.').unwrap_or((&text, ""));
                let width = usize::try_from(scale + extra).unwrap();
                let mut digits = format!("{fraction:0<width$}");
                digits.pop();
                digits.push(char::from(b'0' + last));
                let too_precise = format!("{whole}.{digits}");
                let rejected = matches!(
                    Money::parse(&too_precise, &code),
                    Err(MoneyError::TooManyDecimals { .. })
                );
                prop_assert!(rejected, "{} {} was accepted", too_precise, code);
            }
        }
    }
}
