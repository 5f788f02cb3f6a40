//! The validated requests. Each is parsed from the body with every limit
//! checked, and has a canonical form: the same request written differently
//! (`50` vs `"50.00"`, fields reordered) hashes the same for Idempotency-Key.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde_json::json;
use shared::domain::payment::{
    DESCRIPTION_LENGTH_MAX, METADATA_ENTRY_COUNT_MAX, METADATA_KEY_LENGTH_MAX,
    METADATA_VALUE_LENGTH_MAX, ORDER_ID_LENGTH_MAX,
};
use shared::domain::refund::REFUND_REASON_LENGTH_MAX;
use shared::domain::{Currency, Money, NewPayment, PaymentId, UserId};

use crate::body::{self, JsonObject};
use crate::error::{ApiError, Code, money_error};

/// Longest operator reference on a wallet credit (a ticket or transfer id).
pub const CREDIT_REFERENCE_LENGTH_MAX: u32 = 128;
/// Longest currency text we look at (codes are three letters).
const CURRENCY_LENGTH_MAX: u32 = 3;

/// `POST /payments`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatePayment {
    pub user_id: UserId,
    pub amount: Money,
    pub order_id: Option<String>,
    pub description: Option<String>,
    pub metadata: BTreeMap<String, String>,
}

impl CreatePayment {
    pub const FIELDS: [&'static str; 6] = [
        "userId",
        "amount",
        "currency",
        "orderId",
        "description",
        "metadata",
    ];

    pub fn parse(object: &JsonObject, amount_max: Decimal) -> Result<Self, ApiError> {
        object.only(&Self::FIELDS)?;
        let user_id = user_id_field(object)?;
        let amount = chargeable_money(object, amount_max)?;
        let order_id = object.string("orderId", ORDER_ID_LENGTH_MAX)?;
        if order_id.as_deref() == Some("") {
            return Err(
                ApiError::new(Code::InvalidField, "`orderId` must not be empty")
                    .with_param("orderId"),
            );
        }
        let description = object.string("description", DESCRIPTION_LENGTH_MAX)?;
        let metadata = match object.get("metadata") {
            Some(raw) => metadata(raw.get())?,
            None => BTreeMap::new(),
        };
        Ok(Self {
            user_id,
            amount,
            order_id,
            description,
            metadata,
        })
    }

    pub fn canonical(&self) -> String {
        json!({
            "userId": self.user_id,
            "amount": self.amount,
            "orderId": self.order_id,
            "description": self.description,
            "metadata": self.metadata,
        })
        .to_string()
    }

    pub fn new_payment(&self, payment_id: PaymentId) -> NewPayment {
        NewPayment {
            payment_id,
            user_id: self.user_id.clone(),
            amount: self.amount,
            order_id: self.order_id.clone(),
            description: self.description.clone(),
            metadata: self.metadata.clone(),
        }
    }
}

/// `POST /payments/{paymentId}/refunds`. The amount's currency is the
/// payment's, so it is checked against that scale once the payment is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateRefund {
    pub amount: Option<Decimal>,
    pub reason: Option<String>,
}

impl CreateRefund {
    pub const FIELDS: [&'static str; 2] = ["amount", "reason"];

    pub fn parse(object: &JsonObject) -> Result<Self, ApiError> {
        object.only(&Self::FIELDS)?;
        let amount = object
            .get("amount")
            .map(|raw| body::amount_value("amount", raw))
            .transpose()?;
        let reason = object.string("reason", REFUND_REASON_LENGTH_MAX)?;
        Ok(Self { amount, reason })
    }

    pub fn canonical(&self) -> String {
        // normalize(): 10 and 10.00 are the same refund.
        let amount = self.amount.map(|a| a.normalize().to_string());
        json!({ "amount": amount, "reason": self.reason }).to_string()
    }

    /// The amount as money of the payment's currency: > 0, at its scale.
    pub fn money(&self, currency: Currency) -> Result<Option<Money>, ApiError> {
        let Some(amount) = self.amount else {
            return Ok(None);
        };
        let money =
            Money::new(amount, currency).map_err(|e| money_error(&e, "amount", "amount"))?;
        if money.is_zero() {
            let err = shared::domain::MoneyError::NotPositive;
            return Err(money_error(&err, "amount", "amount"));
        }
        Ok(Some(money))
    }
}

/// `POST /wallets/{userId}/credit` (the user comes from the path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreditWallet {
    pub amount: Money,
    pub reference: Option<String>,
}

impl CreditWallet {
    pub const FIELDS: [&'static str; 3] = ["amount", "currency", "reference"];

    pub fn parse(object: &JsonObject, amount_max: Decimal) -> Result<Self, ApiError> {
        object.only(&Self::FIELDS)?;
        let amount = chargeable_money(object, amount_max)?;
        let reference = object.string("reference", CREDIT_REFERENCE_LENGTH_MAX)?;
        if reference.as_deref() == Some("") {
            return Err(
                ApiError::new(Code::InvalidField, "`reference` must not be empty")
                    .with_param("reference"),
            );
        }
        Ok(Self { amount, reference })
    }

    pub fn canonical(&self) -> String {
        json!({ "amount": self.amount, "reference": self.reference }).to_string()
    }
}

pub fn parse_user_id(text: &str, param: &str) -> Result<UserId, ApiError> {
    UserId::parse(text)
        .map_err(|err| ApiError::new(Code::InvalidUserId, err.to_string()).with_param(param))
}

pub fn parse_payment_id(text: &str) -> Result<PaymentId, ApiError> {
    PaymentId::parse(text).map_err(|err| {
        ApiError::new(Code::InvalidPaymentId, err.to_string()).with_param("paymentId")
    })
}

fn user_id_field(object: &JsonObject) -> Result<UserId, ApiError> {
    let raw = object.required("userId")?;
    let text = body::string_value("userId", raw, shared::domain::id::USER_ID_LENGTH_MAX).map_err(
        |err| ApiError {
            code: Code::InvalidUserId,
            ..err
        },
    )?;
    parse_user_id(&text, "userId")
}

/// `amount` + `currency`: exact, at the currency's scale, > 0 and ≤ the maximum.
fn chargeable_money(object: &JsonObject, amount_max: Decimal) -> Result<Money, ApiError> {
    let amount = body::amount_value("amount", object.required("amount")?)?;
    let code = body::string_value(
        "currency",
        object.required("currency")?,
        CURRENCY_LENGTH_MAX,
    )
    .map_err(|err| ApiError {
        code: Code::InvalidCurrency,
        ..err
    })?;
    let currency = Currency::parse(&code).map_err(|e| money_error(&e, "amount", "currency"))?;
    let money = Money::new(amount, currency).map_err(|e| money_error(&e, "amount", "currency"))?;
    money
        .check_chargeable(amount_max)
        .map_err(|e| money_error(&e, "amount", "currency"))?;
    Ok(money)
}

/// `metadata`: an object of at most 20 string → string entries with bounded
/// keys and values (they are stored on the payment item).
fn metadata(text: &str) -> Result<BTreeMap<String, String>, ApiError> {
    let invalid =
        |message: String| ApiError::new(Code::InvalidMetadata, message).with_param("metadata");
    let object = JsonObject::parse(text)
        .map_err(|_| invalid("`metadata` must be an object of string values".to_owned()))?;
    if object.len() > usize::try_from(METADATA_ENTRY_COUNT_MAX).unwrap_or(usize::MAX) {
        return Err(invalid(format!(
            "`metadata` may have at most {METADATA_ENTRY_COUNT_MAX} entries"
        )));
    }
    let mut entries = BTreeMap::new();
    for (key, raw) in object.members() {
        let key_length = key.chars().count();
        if key_length == 0 || key_length > usize::try_from(METADATA_KEY_LENGTH_MAX).unwrap_or(0) {
            return Err(invalid(format!(
                "metadata keys must be 1-{METADATA_KEY_LENGTH_MAX} characters"
            )));
        }
        let value: String = serde_json::from_str(raw.get())
            .map_err(|_| invalid(format!("metadata value of `{key}` must be a string")))?;
        if value.chars().count() > usize::try_from(METADATA_VALUE_LENGTH_MAX).unwrap_or(0) {
            return Err(invalid(format!(
                "metadata values must be at most {METADATA_VALUE_LENGTH_MAX} characters (`{key}`)"
            )));
        }
        entries.insert(key.to_owned(), value);
    }
    Ok(entries)
}
