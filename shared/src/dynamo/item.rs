//! Typed building and reading of DynamoDB items: the one place where domain
//! values become attribute values and back. A missing or malformed attribute
//! is a typed `RepoError::Corrupt`, never a panic or a silent default.

use std::collections::HashMap;
use std::fmt::Display;
use std::str::FromStr;

use aws_sdk_dynamodb::types::AttributeValue;
use rust_decimal::Decimal;

use crate::domain::{Currency, Money, Timestamp};
use crate::error::RepoError;

pub type Attributes = HashMap<String, AttributeValue>;

/// Builds an item attribute by attribute.
#[derive(Default)]
pub struct ItemBuilder(Attributes);

impl ItemBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn s(mut self, name: &str, value: impl Display) -> Self {
        self.0
            .insert(name.to_owned(), AttributeValue::S(value.to_string()));
        self
    }

    pub fn opt_s(self, name: &str, value: Option<impl Display>) -> Self {
        match value {
            Some(value) => self.s(name, value),
            None => self,
        }
    }

    /// A Number. DynamoDB numbers are exact decimals (38 digits), so amounts
    /// are written from their decimal text and never through a float.
    pub fn n(mut self, name: &str, value: impl Display) -> Self {
        self.0
            .insert(name.to_owned(), AttributeValue::N(value.to_string()));
        self
    }

    pub fn string_map(
        mut self,
        name: &str,
        map: &std::collections::BTreeMap<String, String>,
    ) -> Self {
        if !map.is_empty() {
            let values = map
                .iter()
                .map(|(k, v)| (k.clone(), AttributeValue::S(v.clone())))
                .collect();
            self.0.insert(name.to_owned(), AttributeValue::M(values));
        }
        self
    }

    pub fn build(self) -> Attributes {
        self.0
    }
}

/// Reads typed attributes out of an item of table `table`.
pub struct ItemReader<'a> {
    item: &'a Attributes,
    table: &'static str,
}

impl<'a> ItemReader<'a> {
    pub fn new(item: &'a Attributes, table: &'static str) -> Self {
        Self { item, table }
    }

    fn corrupt(&self, name: &str, problem: &str) -> RepoError {
        RepoError::Corrupt(format!("{} item: attribute `{name}` {problem}", self.table))
    }

    pub fn s(&self, name: &str) -> Result<&'a str, RepoError> {
        self.opt_s(name)?
            .ok_or_else(|| self.corrupt(name, "is missing"))
    }

    pub fn opt_s(&self, name: &str) -> Result<Option<&'a str>, RepoError> {
        match self.item.get(name) {
            None => Ok(None),
            Some(AttributeValue::S(value)) => Ok(Some(value.as_str())),
            Some(_) => Err(self.corrupt(name, "is not a string")),
        }
    }

    fn n_text(&self, name: &str) -> Result<&'a str, RepoError> {
        match self.item.get(name) {
            Some(AttributeValue::N(value)) => Ok(value.as_str()),
            Some(_) => Err(self.corrupt(name, "is not a number")),
            None => Err(self.corrupt(name, "is missing")),
        }
    }

    /// A string attribute parsed into a domain type (ids, statuses, timestamps).
    pub fn parse<T: FromStr>(&self, name: &str) -> Result<T, RepoError> {
        self.s(name)?
            .parse()
            .map_err(|_| self.corrupt(name, "does not parse"))
    }

    pub fn opt_parse<T: FromStr>(&self, name: &str) -> Result<Option<T>, RepoError> {
        self.opt_s(name)?
            .map(|text| {
                text.parse()
                    .map_err(|_| self.corrupt(name, "does not parse"))
            })
            .transpose()
    }

    pub fn timestamp(&self, name: &str) -> Result<Timestamp, RepoError> {
        Timestamp::parse(self.s(name)?).map_err(|_| self.corrupt(name, "is not a timestamp"))
    }

    pub fn opt_timestamp(&self, name: &str) -> Result<Option<Timestamp>, RepoError> {
        self.opt_s(name)?
            .map(|text| {
                Timestamp::parse(text).map_err(|_| self.corrupt(name, "is not a timestamp"))
            })
            .transpose()
    }

    /// An integer Number (versions, counters, epoch seconds).
    pub fn int<T: FromStr>(&self, name: &str) -> Result<T, RepoError> {
        self.n_text(name)?
            .parse()
            .map_err(|_| self.corrupt(name, "is not an integer in range"))
    }

    pub fn opt_int<T: FromStr>(&self, name: &str) -> Result<Option<T>, RepoError> {
        if self.item.contains_key(name) {
            self.int(name).map(Some)
        } else {
            Ok(None)
        }
    }

    pub fn decimal(&self, name: &str) -> Result<Decimal, RepoError> {
        Decimal::from_str_exact(self.n_text(name)?).map_err(|_| self.corrupt(name, "is not exact"))
    }

    /// An amount Number with the item's currency.
    pub fn money(&self, amount: &str, currency: Currency) -> Result<Money, RepoError> {
        Money::new(self.decimal(amount)?, currency)
            .map_err(|err| self.corrupt(amount, &err.to_string()))
    }

    pub fn currency(&self, name: &str) -> Result<Currency, RepoError> {
        Currency::parse(self.s(name)?).map_err(|_| self.corrupt(name, "is not a currency"))
    }

    pub fn string_map(
        &self,
        name: &str,
    ) -> Result<std::collections::BTreeMap<String, String>, RepoError> {
        match self.item.get(name) {
            None => Ok(Default::default()),
            Some(AttributeValue::M(map)) => map
                .iter()
                .map(|(k, v)| match v {
                    AttributeValue::S(v) => Ok((k.clone(), v.clone())),
                    _ => Err(self.corrupt(name, "holds a non-string value")),
                })
                .collect(),
            Some(_) => Err(self.corrupt(name, "is not a map")),
        }
    }
}
