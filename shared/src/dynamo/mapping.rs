//! Domain records ⇄ DynamoDB items, both directions in one place.

use crate::domain::{
    BreakerRecord, IdempotencyRecord, IdempotencyState, LedgerEntry, MovementKind, MovementRef,
    Payment, PaymentEvent, Refund, Wallet,
};
use crate::error::RepoError;
use crate::ports;

use super::attr;
use super::item::{Attributes, ItemBuilder, ItemReader};

pub fn payment_to_item(p: &Payment) -> Attributes {
    ItemBuilder::new()
        .s(attr::PAYMENT_ID, p.payment_id)
        .s(attr::USER_ID, &p.user_id)
        .n(attr::AMOUNT, p.amount.amount())
        .s(attr::CURRENCY, p.amount.currency())
        .s(attr::STATUS, p.status)
        .opt_s(attr::ORDER_ID, p.order_id.as_ref())
        .opt_s(attr::DESCRIPTION, p.description.as_ref())
        .string_map(attr::METADATA, &p.metadata)
        .opt_s(attr::GATEWAY_REFERENCE, p.gateway_reference.as_ref())
        .opt_s(attr::FAILURE_REASON, p.failure_reason.as_ref())
        .n(attr::REFUNDED_AMOUNT, p.refunded_amount.amount())
        .opt_s(attr::WAIT_TOKEN, p.wait_token.as_ref())
        .s(attr::CREATED_AT, p.created_at)
        .s(attr::UPDATED_AT, p.updated_at)
        .n(attr::VERSION, p.version)
        .opt_s(
            attr::OPEN_SHARD,
            p.is_open()
                .then(|| ports::open_shard(&p.payment_id.to_string())),
        )
        .build()
}

pub fn payment_from_item(item: &Attributes) -> Result<Payment, RepoError> {
    let r = ItemReader::new(item, "Payments");
    let currency = r.currency(attr::CURRENCY)?;
    Ok(Payment {
        payment_id: r.parse(attr::PAYMENT_ID)?,
        user_id: r.parse_user(attr::USER_ID)?,
        amount: r.money(attr::AMOUNT, currency)?,
        status: r.parse(attr::STATUS)?,
        order_id: r.opt_s(attr::ORDER_ID)?.map(str::to_owned),
        description: r.opt_s(attr::DESCRIPTION)?.map(str::to_owned),
        metadata: r.string_map(attr::METADATA)?,
        gateway_reference: r.opt_s(attr::GATEWAY_REFERENCE)?.map(str::to_owned),
        failure_reason: r.opt_s(attr::FAILURE_REASON)?.map(str::to_owned),
        refunded_amount: r.money(attr::REFUNDED_AMOUNT, currency)?,
        wait_token: r.opt_s(attr::WAIT_TOKEN)?.map(str::to_owned),
        created_at: r.timestamp(attr::CREATED_AT)?,
        updated_at: r.timestamp(attr::UPDATED_AT)?,
        version: r.int(attr::VERSION)?,
    })
}

pub fn event_to_item(e: &PaymentEvent) -> Attributes {
    ItemBuilder::new()
        .s(attr::PAYMENT_ID, e.payment_id)
        .s(attr::SORT_KEY, e.sort_key())
        .s(attr::USER_ID, &e.user_id)
        .s(attr::EVENT_TYPE, enum_text(&e.event_type))
        .opt_s(attr::FROM_STATUS, e.from_status)
        .s(attr::STATUS, e.status)
        .opt_s(attr::DETAIL, e.detail.as_ref())
        .s(attr::AT, e.at)
        .n(attr::VERSION, e.version)
        .build()
}

pub fn event_from_item(item: &Attributes) -> Result<PaymentEvent, RepoError> {
    let r = ItemReader::new(item, "PaymentEvents");
    Ok(PaymentEvent {
        payment_id: r.parse(attr::PAYMENT_ID)?,
        user_id: r.parse_user(attr::USER_ID)?,
        event_type: r.parse_enum(attr::EVENT_TYPE)?,
        from_status: r.opt_parse(attr::FROM_STATUS)?,
        status: r.parse(attr::STATUS)?,
        detail: r.opt_s(attr::DETAIL)?.map(str::to_owned),
        at: r.timestamp(attr::AT)?,
        version: r.int(attr::VERSION)?,
    })
}

pub fn wallet_to_item(w: &Wallet) -> Attributes {
    ItemBuilder::new()
        .s(attr::USER_ID, &w.user_id)
        .s(attr::CURRENCY, w.currency())
        .n(attr::BALANCE, w.balance.amount())
        .n(attr::VERSION, w.version)
        .s(attr::CREATED_AT, w.created_at)
        .s(attr::UPDATED_AT, w.updated_at)
        .build()
}

pub fn wallet_from_item(item: &Attributes) -> Result<Wallet, RepoError> {
    let r = ItemReader::new(item, "Wallets");
    let currency = r.currency(attr::CURRENCY)?;
    Ok(Wallet {
        user_id: r.parse_user(attr::USER_ID)?,
        balance: r.money(attr::BALANCE, currency)?,
        version: r.int(attr::VERSION)?,
        created_at: r.timestamp(attr::CREATED_AT)?,
        updated_at: r.timestamp(attr::UPDATED_AT)?,
    })
}

pub fn ledger_to_item(e: &LedgerEntry) -> Attributes {
    let (payment_id, refund_id, top_up_id) = match e.reference {
        MovementRef::Debit { payment_id } | MovementRef::Compensation { payment_id } => {
            (Some(payment_id), None, None)
        }
        MovementRef::Refund {
            refund_id,
            payment_id,
        } => (Some(payment_id), Some(refund_id), None),
        MovementRef::TopUp { top_up_id } => (None, None, Some(top_up_id)),
    };
    ItemBuilder::new()
        .s(attr::WALLET_KEY, e.wallet_key())
        .s(attr::TX_ID, &e.tx_id)
        .s(attr::USER_ID, &e.user_id)
        .s(attr::CURRENCY, e.amount.currency())
        .s(attr::ENTRY_ID, e.entry_id)
        .s(attr::KIND, e.kind.as_str())
        .n(attr::AMOUNT, e.amount.amount())
        .n(attr::BALANCE_AFTER, e.balance_after.amount())
        .opt_s(attr::PAYMENT_ID, payment_id)
        .opt_s(attr::REFUND_ID, refund_id)
        .opt_s(attr::TOP_UP_ID, top_up_id)
        .s(attr::CREATED_AT, e.created_at)
        .build()
}

pub fn ledger_from_item(item: &Attributes) -> Result<LedgerEntry, RepoError> {
    let r = ItemReader::new(item, "WalletTransactions");
    let currency = r.currency(attr::CURRENCY)?;
    let kind: MovementKind = r.parse_enum(attr::KIND)?;
    let reference = match kind {
        MovementKind::Debit => MovementRef::Debit {
            payment_id: r.parse(attr::PAYMENT_ID)?,
        },
        MovementKind::Compensation => MovementRef::Compensation {
            payment_id: r.parse(attr::PAYMENT_ID)?,
        },
        MovementKind::Refund => MovementRef::Refund {
            refund_id: r.parse(attr::REFUND_ID)?,
            payment_id: r.parse(attr::PAYMENT_ID)?,
        },
        MovementKind::TopUp => MovementRef::TopUp {
            top_up_id: r.parse(attr::TOP_UP_ID)?,
        },
    };
    Ok(LedgerEntry {
        user_id: r.parse_user(attr::USER_ID)?,
        tx_id: r.s(attr::TX_ID)?.to_owned(),
        entry_id: r.parse(attr::ENTRY_ID)?,
        kind,
        amount: r.money(attr::AMOUNT, currency)?,
        balance_after: r.money(attr::BALANCE_AFTER, currency)?,
        reference,
        created_at: r.timestamp(attr::CREATED_AT)?,
    })
}

pub fn refund_to_item(f: &Refund) -> Attributes {
    ItemBuilder::new()
        .s(attr::REFUND_ID, f.refund_id)
        .s(attr::PAYMENT_ID, f.payment_id)
        .s(attr::USER_ID, &f.user_id)
        .n(attr::AMOUNT, f.amount.amount())
        .s(attr::CURRENCY, f.amount.currency())
        .opt_s(attr::REASON, f.reason.as_ref())
        .s(attr::STATUS, f.status.as_str())
        .opt_s(attr::GATEWAY_REFERENCE, f.gateway_reference.as_ref())
        .opt_s(attr::FAILURE_REASON, f.failure_reason.as_ref())
        .s(attr::CREATED_AT, f.created_at)
        .s(attr::UPDATED_AT, f.updated_at)
        .n(attr::VERSION, f.version)
        .opt_s(
            attr::OPEN_SHARD,
            f.is_open()
                .then(|| ports::open_shard(&f.refund_id.to_string())),
        )
        .build()
}

pub fn refund_from_item(item: &Attributes) -> Result<Refund, RepoError> {
    let r = ItemReader::new(item, "Refunds");
    let currency = r.currency(attr::CURRENCY)?;
    Ok(Refund {
        refund_id: r.parse(attr::REFUND_ID)?,
        payment_id: r.parse(attr::PAYMENT_ID)?,
        user_id: r.parse_user(attr::USER_ID)?,
        amount: r.money(attr::AMOUNT, currency)?,
        reason: r.opt_s(attr::REASON)?.map(str::to_owned),
        status: r.parse_enum(attr::STATUS)?,
        gateway_reference: r.opt_s(attr::GATEWAY_REFERENCE)?.map(str::to_owned),
        failure_reason: r.opt_s(attr::FAILURE_REASON)?.map(str::to_owned),
        created_at: r.timestamp(attr::CREATED_AT)?,
        updated_at: r.timestamp(attr::UPDATED_AT)?,
        version: r.int(attr::VERSION)?,
    })
}

pub fn idempotency_to_item(rec: &IdempotencyRecord) -> Attributes {
    let builder = ItemBuilder::new()
        .s(attr::IDEMPOTENCY_KEY, &rec.idempotency_key)
        .s(attr::REQUEST_HASH, &rec.request_hash)
        .s(attr::CREATED_AT, rec.created_at)
        .n(attr::EXPIRES_AT, rec.expires_at);
    let builder = match &rec.state {
        IdempotencyState::InProgress => builder.s(attr::STATE, attr::STATE_IN_PROGRESS),
        IdempotencyState::Completed { status_code, body } => builder
            .s(attr::STATE, attr::STATE_COMPLETED)
            .n(attr::STATUS_CODE, status_code)
            .s(attr::BODY, body),
    };
    builder.build()
}

pub fn idempotency_from_item(item: &Attributes) -> Result<IdempotencyRecord, RepoError> {
    let r = ItemReader::new(item, "Idempotency");
    let state = match r.s(attr::STATE)? {
        attr::STATE_IN_PROGRESS => IdempotencyState::InProgress,
        attr::STATE_COMPLETED => IdempotencyState::Completed {
            status_code: r.int(attr::STATUS_CODE)?,
            body: r.s(attr::BODY)?.to_owned(),
        },
        other => {
            return Err(RepoError::Corrupt(format!(
                "Idempotency item: unknown state `{other}`"
            )));
        }
    };
    Ok(IdempotencyRecord {
        idempotency_key: r.s(attr::IDEMPOTENCY_KEY)?.to_owned(),
        request_hash: r.s(attr::REQUEST_HASH)?.to_owned(),
        state,
        created_at: r.timestamp(attr::CREATED_AT)?,
        expires_at: r.int(attr::EXPIRES_AT)?,
    })
}

pub fn breaker_to_item(b: &BreakerRecord) -> Attributes {
    ItemBuilder::new()
        .s(attr::SERVICE_NAME, &b.service_name)
        .s(attr::STATE, enum_text(&b.state))
        .n(attr::CONSECUTIVE_FAILURES, b.consecutive_failures)
        .n(attr::CONSECUTIVE_SUCCESSES, b.consecutive_successes)
        .opt_s(attr::OPENED_AT, b.opened_at)
        .opt_s(attr::PROBE_LEASE_UNTIL, b.probe_lease_until)
        .s(attr::UPDATED_AT, b.updated_at)
        .n(attr::VERSION, b.version)
        .build()
}

pub fn breaker_from_item(item: &Attributes) -> Result<BreakerRecord, RepoError> {
    let r = ItemReader::new(item, "CircuitBreaker");
    Ok(BreakerRecord {
        service_name: r.s(attr::SERVICE_NAME)?.to_owned(),
        state: r.parse_enum(attr::STATE)?,
        consecutive_failures: r.int(attr::CONSECUTIVE_FAILURES)?,
        consecutive_successes: r.int(attr::CONSECUTIVE_SUCCESSES)?,
        opened_at: r.opt_timestamp(attr::OPENED_AT)?,
        probe_lease_until: r.opt_timestamp(attr::PROBE_LEASE_UNTIL)?,
        updated_at: r.timestamp(attr::UPDATED_AT)?,
        version: r.int(attr::VERSION)?,
    })
}

/// The wire name of a unit enum (its serde `SCREAMING_SNAKE_CASE` name).
fn enum_text<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(text)) => text,
        // Only unit enums are passed here; they always serialize to a string.
        _ => String::new(),
    }
}

impl ItemReader<'_> {
    fn parse_user(&self, name: &str) -> Result<crate::domain::UserId, RepoError> {
        crate::domain::UserId::parse(self.s(name)?)
            .map_err(|_| RepoError::Corrupt(format!("attribute `{name}` is not a user id")))
    }

    /// A unit enum stored under its serde name.
    fn parse_enum<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<T, RepoError> {
        let text = self.s(name)?;
        serde_json::from_value(serde_json::Value::String(text.to_owned())).map_err(|_| {
            RepoError::Corrupt(format!("attribute `{name}` has unknown value `{text}`"))
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeMap;

    use aws_sdk_dynamodb::types::AttributeValue;

    use super::*;
    use crate::domain::{
        BreakerState, Movement, NewPayment, PaymentChange, PaymentId, PaymentStatus, RefundId,
        Timestamp, TopUpId, UserId,
    };
    use crate::domain::{Currency, Money};

    fn user() -> UserId {
        UserId::parse("user.1").unwrap()
    }

    fn payment() -> Payment {
        let new = NewPayment {
            payment_id: PaymentId::generate(),
            user_id: user(),
            amount: Money::parse("12345678901234567890.12", "USD").unwrap(),
            order_id: Some("order-1".into()),
            description: None,
            metadata: BTreeMap::from([("channel".to_owned(), "web".to_owned())]),
        };
        Payment::create(new, Timestamp::now())
    }

    #[test]
    fn payment_round_trips() {
        let p = payment();
        let item = payment_to_item(&p);
        assert_eq!(
            item[attr::AMOUNT],
            AttributeValue::N("12345678901234567890.12".into())
        );
        assert_eq!(payment_from_item(&item).unwrap(), p);
        let done = PaymentChange::to(PaymentStatus::Processing)
            .apply(&p, Timestamp::now())
            .unwrap();
        assert_eq!(payment_from_item(&payment_to_item(&done)).unwrap(), done);
    }

    #[test]
    fn a_number_normalised_by_the_store_reads_back_at_currency_scale() {
        let mut item = payment_to_item(&payment());
        // DynamoDB returns 10.10 as "10.1" and 10.00 as "10".
        item.insert(attr::AMOUNT.into(), AttributeValue::N("10.1".into()));
        item.insert(attr::REFUNDED_AMOUNT.into(), AttributeValue::N("0".into()));
        let p = payment_from_item(&item).unwrap();
        assert_eq!(p.amount.amount_text(), "10.10");
        assert_eq!(p.refunded_amount.amount_text(), "0.00");
    }

    #[test]
    fn missing_or_malformed_attributes_are_corrupt_not_panics() {
        let mut item = payment_to_item(&payment());
        item.remove(attr::STATUS);
        assert!(matches!(
            payment_from_item(&item),
            Err(RepoError::Corrupt(_))
        ));
        let mut item = payment_to_item(&payment());
        item.insert(attr::AMOUNT.into(), AttributeValue::S("10".into()));
        assert!(matches!(
            payment_from_item(&item),
            Err(RepoError::Corrupt(_))
        ));
        let mut item = payment_to_item(&payment());
        item.insert(attr::AMOUNT.into(), AttributeValue::N("10.001".into()));
        assert!(matches!(
            payment_from_item(&item),
            Err(RepoError::Corrupt(_))
        ));
    }

    #[test]
    fn event_wallet_ledger_refund_records_round_trip() {
        let p = payment();
        let event = PaymentEvent::created(&p);
        assert_eq!(event_from_item(&event_to_item(&event)).unwrap(), event);

        let kwd = Currency::parse("KWD").unwrap();
        let wallet = Wallet::open(user(), kwd, Timestamp::now());
        assert_eq!(wallet_from_item(&wallet_to_item(&wallet)).unwrap(), wallet);
        let amount = Money::parse("1.234", "KWD").unwrap();
        let top_up = Movement::top_up(user(), TopUpId::generate(), amount);
        let (wallet, entry) = wallet.apply(&top_up, Timestamp::now()).unwrap();
        assert_eq!(wallet_from_item(&wallet_to_item(&wallet)).unwrap(), wallet);
        assert_eq!(ledger_from_item(&ledger_to_item(&entry)).unwrap(), entry);
        let refund_movement = Movement::refund(user(), RefundId::generate(), p.payment_id, amount);
        let (_, refund_entry) = wallet.apply(&refund_movement, Timestamp::now()).unwrap();
        assert_eq!(
            ledger_from_item(&ledger_to_item(&refund_entry)).unwrap(),
            refund_entry
        );

        let refund = Refund::request(
            RefundId::generate(),
            p.payment_id,
            user(),
            Money::parse("1", "JPY").unwrap(),
            Some("damaged".into()),
            Timestamp::now(),
        );
        assert_eq!(refund_from_item(&refund_to_item(&refund)).unwrap(), refund);
    }

    #[test]
    fn idempotency_and_breaker_records_round_trip() {
        let mut rec =
            IdempotencyRecord::claim("POST /payments#k1".into(), "h".into(), Timestamp::now());
        assert_eq!(
            idempotency_from_item(&idempotency_to_item(&rec)).unwrap(),
            rec
        );
        rec.state = IdempotencyState::Completed {
            status_code: 202,
            body: "{}".into(),
        };
        assert_eq!(
            idempotency_from_item(&idempotency_to_item(&rec)).unwrap(),
            rec
        );

        let mut breaker = BreakerRecord::closed("gateway".into(), Timestamp::now());
        breaker.state = BreakerState::HalfOpen;
        breaker.opened_at = Some(Timestamp::now());
        assert_eq!(
            breaker_from_item(&breaker_to_item(&breaker)).unwrap(),
            breaker
        );
    }
}
