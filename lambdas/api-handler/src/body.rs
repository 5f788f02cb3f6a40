//! Reading a JSON request body field by field, so every problem is reported
//! with the field it concerns (`param`): malformed JSON, a body that is not an
//! object, duplicate, unknown, missing or mistyped fields. Amounts are read
//! from their digits (a JSON number or a decimal string), never through f64.

use std::fmt;

use rust_decimal::Decimal;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use shared::domain::money::parse_amount;

use crate::error::{ApiError, Code, money_error};

/// A JSON object with its members kept as raw JSON text, in order.
#[derive(Debug, Default)]
pub struct JsonObject {
    fields: Vec<(String, Box<RawValue>)>,
    /// The first member name that appeared twice: ambiguous, so refused
    /// (which `amount` would count?).
    duplicate: Option<String>,
}

impl JsonObject {
    /// Parses `text` (an empty body is the empty object, so `{}`-only
    /// requests may omit the body).
    pub fn parse(text: &str) -> Result<Self, ApiError> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        let object: Self = serde_json::from_str(text).map_err(|err| {
            let message = if err.is_data() {
                "the request body must be a JSON object".to_owned()
            } else {
                format!("the request body is not valid JSON ({err})")
            };
            ApiError::new(Code::InvalidJson, message)
        })?;
        if let Some(name) = &object.duplicate {
            return Err(
                ApiError::new(Code::InvalidJson, format!("field `{name}` appears twice"))
                    .with_param(name.clone()),
            );
        }
        Ok(object)
    }

    /// Refuses members other than `allowed` (strict bodies catch typos like
    /// `ammount` before they silently change meaning).
    pub fn only(&self, allowed: &[&str]) -> Result<(), ApiError> {
        match self.names().find(|name| !allowed.contains(name)) {
            None => Ok(()),
            Some(name) => Err(ApiError::new(
                Code::UnknownField,
                format!(
                    "unknown field `{name}`; allowed fields: {}",
                    allowed.join(", ")
                ),
            )
            .with_param(name)),
        }
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.fields.iter().map(|(name, _)| name.as_str())
    }

    pub fn get(&self, name: &str) -> Option<&RawValue> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, raw)| raw.as_ref())
    }

    pub fn required(&self, name: &str) -> Result<&RawValue, ApiError> {
        self.get(name).ok_or_else(|| {
            ApiError::new(Code::MissingField, format!("`{name}` is required")).with_param(name)
        })
    }

    /// An optional string of at most `length_max` characters. `null` is not a
    /// string: omit the field instead.
    pub fn string(&self, name: &str, length_max: u32) -> Result<Option<String>, ApiError> {
        self.get(name)
            .map(|raw| string_value(name, raw, length_max))
            .transpose()
    }

    pub fn required_string(&self, name: &str, length_max: u32) -> Result<String, ApiError> {
        string_value(name, self.required(name)?, length_max)
    }

    /// The raw text of each member, for nested objects (`metadata`).
    pub fn members(&self) -> impl Iterator<Item = (&str, &RawValue)> {
        self.fields
            .iter()
            .map(|(n, raw)| (n.as_str(), raw.as_ref()))
    }

    pub fn len(&self) -> usize {
        self.fields.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }
}

pub fn string_value(name: &str, raw: &RawValue, length_max: u32) -> Result<String, ApiError> {
    let text: String = serde_json::from_str(raw.get()).map_err(|_| {
        ApiError::new(Code::InvalidField, format!("`{name}` must be a string")).with_param(name)
    })?;
    check_length(name, &text, length_max)?;
    Ok(text)
}

pub fn check_length(name: &str, text: &str, length_max: u32) -> Result<(), ApiError> {
    if text.chars().count() > usize::try_from(length_max).unwrap_or(usize::MAX) {
        return Err(ApiError::new(
            Code::FieldTooLong,
            format!("`{name}` must be at most {length_max} characters"),
        )
        .with_param(name));
    }
    Ok(())
}

/// The exact decimal value of an amount given as a JSON number (`50`, `50.5`)
/// or a decimal string (`"1250.50"`). The number's own digits are parsed, so
/// `12345678901234567890.12` stays exact; exponents, booleans, null, objects
/// and arrays are refused.
pub fn amount_value(name: &str, raw: &RawValue) -> Result<Decimal, ApiError> {
    let text = raw.get();
    let digits = match text.as_bytes().first() {
        Some(b'"') => serde_json::from_str::<String>(text).map_err(|_| not_an_amount(name))?,
        Some(b'-' | b'0'..=b'9') => text.to_owned(),
        _ => return Err(not_an_amount(name)),
    };
    parse_amount(&digits).map_err(|err| money_error(&err, name, "currency"))
}

fn not_an_amount(name: &str) -> ApiError {
    ApiError::new(
        Code::InvalidAmount,
        format!("`{name}` must be a JSON number like 50.5 or a decimal string like \"50.50\""),
    )
    .with_param(name)
}

impl<'de> serde::Deserialize<'de> for JsonObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(ObjectVisitor)
    }
}

struct ObjectVisitor;

impl<'de> Visitor<'de> for ObjectVisitor {
    type Value = JsonObject;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<JsonObject, A::Error> {
        let mut object = JsonObject::default();
        // The body is at most 64 KiB, which bounds the member count.
        while let Some((name, value)) = map.next_entry::<String, Box<RawValue>>()? {
            if object.duplicate.is_none() && object.get(&name).is_some() {
                object.duplicate = Some(name.clone());
            }
            object.fields.push((name, value));
        }
        Ok(object)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn amount(json: &str) -> Result<Decimal, ApiError> {
        let object = JsonObject::parse(&format!(r#"{{"amount": {json}}}"#)).unwrap();
        amount_value("amount", object.get("amount").unwrap())
    }

    #[test]
    fn amounts_keep_every_digit_of_numbers_and_strings() {
        assert_eq!(amount("50").unwrap().to_string(), "50");
        assert_eq!(amount("50.5").unwrap().to_string(), "50.5");
        assert_eq!(
            amount("12345678901234567890.12").unwrap().to_string(),
            "12345678901234567890.12"
        );
        assert_eq!(amount(r#""1250.50""#).unwrap().to_string(), "1250.50");
        // An escaped digit in a string is still that digit.
        assert_eq!(amount(r#""\u0031.5""#).unwrap().to_string(), "1.5");
    }

    #[test]
    fn non_decimal_amounts_are_invalid_amount() {
        for json in [
            "true", "null", "{}", "[1]", "1e3", r#""1e3""#, r#""""#, r#"" 5""#,
        ] {
            let err = amount(json).unwrap_err();
            assert_eq!(err.code, Code::InvalidAmount, "{json}");
            assert_eq!(err.param.as_deref(), Some("amount"));
        }
    }

    #[test]
    fn bodies_must_be_one_object_without_duplicates() {
        assert_eq!(JsonObject::parse("{").unwrap_err().code, Code::InvalidJson);
        assert_eq!(
            JsonObject::parse("[1]").unwrap_err().code,
            Code::InvalidJson
        );
        let dup = JsonObject::parse(r#"{"amount": 1, "amount": 1000}"#).unwrap_err();
        assert_eq!(dup.param.as_deref(), Some("amount"));
        assert!(JsonObject::parse("").unwrap().is_empty());
        let object = JsonObject::parse(r#"{"a": "x", "b": 1}"#).unwrap();
        assert_eq!(object.only(&["a"]).unwrap_err().param.as_deref(), Some("b"));
        assert_eq!(object.string("b", 10).unwrap_err().code, Code::InvalidField);
        assert_eq!(object.string("a", 0).unwrap_err().code, Code::FieldTooLong);
        assert_eq!(object.required("c").unwrap_err().code, Code::MissingField);
    }
}
