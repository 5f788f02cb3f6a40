//! The store contract: what every backend must do. Each function is one case,
//! run against the in-memory store and against DynamoDB (tests/store_contract.rs).
//! GIVEN / WHEN / THEN in the comments.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rust_decimal::Decimal;

use shared::domain::{
    BreakerState, ClaimOutcome, Currency, IdempotencyRecord, IdempotencyState, Money, Movement,
    NewPayment, Payment, PaymentChange, PaymentEvent, PaymentEventType, PaymentId, PaymentStatus,
    Refund, RefundId, RefundStatus, Timestamp, TopUpId, UserId, WalletKey,
};
use shared::ports::{
    BreakerStore, Created, OPEN_SHARD_COUNT, PaymentRepo, RefundRepo, WalletRepo, open_shard,
};
use shared::{ErrorType, StoreError, WalletError};

use crate::backend::Store;

pub fn user(name: &str) -> UserId {
    UserId::parse(name).unwrap()
}

pub fn money(amount: &str, currency: &str) -> Money {
    Money::parse(amount, currency).unwrap()
}

pub fn usd(amount: &str) -> Money {
    money(amount, "USD")
}

fn new_payment(user_id: &UserId, amount: Money) -> NewPayment {
    NewPayment {
        payment_id: PaymentId::generate(),
        user_id: user_id.clone(),
        amount,
        order_id: Some("order-1".into()),
        description: Some("two coffees".into()),
        metadata: BTreeMap::from([("channel".to_owned(), "web".to_owned())]),
    }
}

/// Opens a wallet and tops it up through the ledger (the only way money enters).
pub async fn funded_wallet(store: &dyn Store, user_id: &UserId, amount: Money) -> WalletKey {
    store
        .open(user_id, amount.currency(), Timestamp::now())
        .await
        .unwrap();
    if !amount.is_zero() {
        let top_up = Movement::top_up(user_id.clone(), TopUpId::generate(), amount);
        store.apply(&top_up, Timestamp::now()).await.unwrap();
    }
    WalletKey::new(user_id.clone(), amount.currency())
}

async fn balance(store: &dyn Store, key: &WalletKey) -> Money {
    WalletRepo::get(store, key).await.unwrap().unwrap().balance
}

/// Balance = sum of ledger entries; returns the number of entries.
pub async fn assert_balance_matches_ledger(store: &dyn Store, key: &WalletKey) -> usize {
    let mut entries = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = store.ledger(key, 100, cursor.as_deref()).await.unwrap();
        entries.extend(page.items);
        match page.cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
        assert!(entries.len() < 100_000, "ledger listing does not terminate");
    }
    let wallet = WalletRepo::get(store, key).await.unwrap().unwrap();
    assert_eq!(
        shared::domain::wallet::ledger_sum(&entries),
        wallet.balance.amount(),
        "balance = ledger"
    );
    assert!(
        wallet.balance.amount() >= Decimal::ZERO,
        "balance never negative"
    );
    entries.len()
}

// ---------------------------------------------------------------------------------------
// Payments and their events
// ---------------------------------------------------------------------------------------

pub async fn payment_create_is_idempotent(store: Arc<dyn Store>) {
    // GIVEN a new payment
    let new = new_payment(&user("alice"), usd("50.5"));
    // WHEN it is created twice with the same content
    let first = PaymentRepo::create(&*store, new.clone(), Timestamp::now())
        .await
        .unwrap();
    let second = PaymentRepo::create(&*store, new.clone(), Timestamp::now())
        .await
        .unwrap();
    // THEN the second create finds the first, unchanged
    assert!(first.is_new());
    assert_eq!(second, Created::Existing(first.clone().into_inner()));
    let stored = PaymentRepo::get(&*store, &new.payment_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored, first.into_inner());
    assert_eq!(stored.status, PaymentStatus::Pending);
    assert_eq!(stored.amount.amount_text(), "50.50");
    // AND different content under the same id is refused
    let other = NewPayment {
        amount: usd("51"),
        ..new.clone()
    };
    let err = PaymentRepo::create(&*store, other, Timestamp::now())
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), ErrorType::AlreadyExists);
    // AND exactly one PAYMENT_CREATED event was written
    let events = store.events(&new.payment_id, 10).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event_type, PaymentEventType::PaymentCreated);
}

/// The task token of a saga waiting for the gateway is kept only with a
/// PROCESSING payment, replaced by the next one, never a new version, and
/// survives the round trip through the store.
pub async fn a_wait_token_is_kept_only_while_processing(store: Arc<dyn Store>) {
    // GIVEN a PENDING payment
    let new = new_payment(&user("wes"), usd("10"));
    let id = new.payment_id;
    PaymentRepo::create(&*store, new, Timestamp::now())
        .await
        .unwrap();
    // WHEN a token comes before the debit THEN it is not kept
    let pending = store.keep_wait_token(&id, "token-early").await.unwrap();
    assert_eq!(pending.wait_token, None);
    // WHEN the payment is PROCESSING THEN the token is kept, at the same version
    let processing = PaymentChange::to(PaymentStatus::Processing);
    let before = store
        .transition(&id, &processing, Timestamp::now())
        .await
        .unwrap();
    let kept = store.keep_wait_token(&id, "token-1").await.unwrap();
    assert_eq!(kept.wait_token.as_deref(), Some("token-1"));
    assert_eq!(kept.version, before.version);
    // AND the next wait's token replaces it, as read back
    store.keep_wait_token(&id, "token-2").await.unwrap();
    let read = PaymentRepo::get(&*store, &id).await.unwrap().unwrap();
    assert_eq!(read.wait_token.as_deref(), Some("token-2"));
    // AND a settled payment keeps no new token
    let complete = PaymentChange::completed("gw_1".into());
    store
        .transition(&id, &complete, Timestamp::now())
        .await
        .unwrap();
    let settled = store.keep_wait_token(&id, "token-3").await.unwrap();
    assert_eq!(settled.status, PaymentStatus::Completed);
    assert_ne!(settled.wait_token.as_deref(), Some("token-3"));
    // AND an unknown payment is not found
    let missing = store.keep_wait_token(&PaymentId::generate(), "t").await;
    assert!(
        matches!(missing, Err(StoreError::NotFound { .. })),
        "{missing:?}"
    );
}

pub async fn payment_transitions_are_validated_recorded_and_idempotent(store: Arc<dyn Store>) {
    let new = new_payment(&user("bob"), usd("10"));
    let id = new.payment_id;
    PaymentRepo::create(&*store, new, Timestamp::now())
        .await
        .unwrap();
    // WHEN the saga moves it PENDING → PROCESSING → COMPLETED
    let processing = PaymentChange::to(PaymentStatus::Processing);
    let p = store
        .transition(&id, &processing, Timestamp::now())
        .await
        .unwrap();
    assert_eq!((p.status, p.version), (PaymentStatus::Processing, 2));
    let complete = PaymentChange::completed("gw_123".into());
    let p = store
        .transition(&id, &complete, Timestamp::now())
        .await
        .unwrap();
    assert_eq!(p.status, PaymentStatus::Completed);
    assert_eq!(p.gateway_reference.as_deref(), Some("gw_123"));
    // AND a retried step writes nothing
    let again = store
        .transition(&id, &complete, Timestamp::now())
        .await
        .unwrap();
    assert_eq!(again, p);
    // THEN every change has its event, in order
    let events = store.events(&id, 10).await.unwrap();
    let statuses: Vec<_> = events.iter().map(|e| (e.from_status, e.status)).collect();
    assert_eq!(
        statuses,
        vec![
            (None, PaymentStatus::Pending),
            (Some(PaymentStatus::Pending), PaymentStatus::Processing),
            (Some(PaymentStatus::Processing), PaymentStatus::Completed),
        ]
    );
    // AND a terminal payment cannot be failed
    let err = store
        .transition(&id, &PaymentChange::failed("LATE".into()), Timestamp::now())
        .await;
    assert_eq!(err.unwrap_err().error_type(), ErrorType::InvalidTransition);
    let missing = store
        .transition(&PaymentId::generate(), &processing, Timestamp::now())
        .await;
    assert_eq!(
        missing.unwrap_err().error_type(),
        ErrorType::PaymentNotFound
    );
}

pub async fn payments_list_newest_first_in_pages(store: Arc<dyn Store>) {
    let carol = user("carol");
    let mut created = Vec::new();
    for i in 0..5u32 {
        let at = Timestamp::from_unix_seconds(1_700_000_000 + i64::from(i)).unwrap();
        let p = PaymentRepo::create(&*store, new_payment(&carol, usd("1")), at)
            .await
            .unwrap();
        created.push(p.into_inner().payment_id);
    }
    PaymentRepo::create(
        &*store,
        new_payment(&user("dave"), usd("1")),
        Timestamp::now(),
    )
    .await
    .unwrap();
    // WHEN listed two at a time
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..5 {
        let page = store
            .list_by_user(&carol, 2, cursor.as_deref())
            .await
            .unwrap();
        assert!(page.items.len() <= 2);
        seen.extend(page.items.iter().map(|p| p.payment_id));
        cursor = page.cursor;
        if cursor.is_none() {
            break;
        }
    }
    // THEN all five come back newest first, and no one else's
    created.reverse();
    assert_eq!(seen, created);
    let err = store
        .list_by_user(&carol, 2, Some("garbage"))
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), ErrorType::ValidationError);
}

/// A page of payments with large metadata is more than DynamoDB's 1 MB per
/// query: the listing continues past it instead of ending there.
pub async fn a_page_larger_than_one_query_is_listed_whole(store: Arc<dyn Store>) {
    let erin = user("erin");
    // 100 payments × ~12 KiB of metadata: ~1.2 MB, past one query's 1 MB.
    let metadata: BTreeMap<String, String> = (0..24)
        .map(|i| (format!("key{i:02}"), "x".repeat(500)))
        .collect();
    for i in 0..100u32 {
        let at = Timestamp::from_unix_seconds(1_700_000_000 + i64::from(i)).unwrap();
        let mut new = new_payment(&erin, usd("1"));
        new.metadata = metadata.clone();
        PaymentRepo::create(&*store, new, at).await.unwrap();
    }
    let page = store.list_by_user(&erin, 100, None).await.unwrap();
    assert_eq!(
        page.items.len(),
        100,
        "the whole page, not what fit in 1 MB"
    );
    assert_eq!(page.cursor, None, "and nothing after it");
    let page = store.list_by_user(&erin, 60, None).await.unwrap();
    assert_eq!(page.items.len(), 60);
    let rest = store
        .list_by_user(&erin, 60, page.cursor.as_deref())
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 40);
    assert_eq!(rest.cursor, None);
}

pub async fn events_append_is_idempotent(store: Arc<dyn Store>) {
    let created = PaymentRepo::create(
        &*store,
        new_payment(&user("erin"), usd("3")),
        Timestamp::now(),
    )
    .await
    .unwrap()
    .into_inner();
    let mut note = PaymentEvent::created(&created);
    note.event_type = PaymentEventType::StatusChanged;
    note.version = 99;
    note.detail = Some("operator note".into());
    store.append(&note).await.unwrap();
    store.append(&note).await.unwrap();
    let events = store.events(&created.payment_id, 10).await.unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[1], note);
}

// ---------------------------------------------------------------------------------------
// Wallets and the ledger
// ---------------------------------------------------------------------------------------

pub async fn wallets_open_empty_and_never_appear_by_themselves(store: Arc<dyn Store>) {
    let frank = user("frank");
    let usd_currency = Currency::parse("USD").unwrap();
    // GIVEN no wallet: a movement is refused, nothing is created
    let debit = Movement::debit(frank.clone(), PaymentId::generate(), usd("1"));
    let err = store.apply(&debit, Timestamp::now()).await.unwrap_err();
    assert_eq!(err.error_type(), ErrorType::WalletNotFound);
    let top_up = Movement::top_up(frank.clone(), TopUpId::generate(), usd("1"));
    let err = store.apply(&top_up, Timestamp::now()).await.unwrap_err();
    assert_eq!(err.error_type(), ErrorType::WalletNotFound);
    let key = WalletKey::new(frank.clone(), usd_currency);
    assert!(WalletRepo::get(&*store, &key).await.unwrap().is_none());
    // WHEN opened twice THEN one empty wallet
    let first = store
        .open(&frank, usd_currency, Timestamp::now())
        .await
        .unwrap();
    let second = store
        .open(&frank, usd_currency, Timestamp::now())
        .await
        .unwrap();
    assert_eq!(first, second);
    assert!(first.balance.is_zero());
    assert_eq!(first.balance.amount_text(), "0.00");
    store
        .open(&frank, Currency::parse("EUR").unwrap(), Timestamp::now())
        .await
        .unwrap();
    assert_eq!(store.wallets_of(&frank).await.unwrap().len(), 2);
}

pub async fn movements_move_exact_amounts(store: Arc<dyn Store>) {
    let grace = user("grace");
    let key = funded_wallet(&*store, &grace, usd("100")).await;
    let debit = Movement::debit(grace.clone(), PaymentId::generate(), usd("33.33"));
    let receipt = store.apply(&debit, Timestamp::now()).await.unwrap();
    assert!(!receipt.replayed);
    assert_eq!(receipt.entry.balance_after, usd("66.67"));
    assert_eq!(balance(&*store, &key).await, usd("66.67"));
    assert_eq!(
        WalletRepo::get(&*store, &key)
            .await
            .unwrap()
            .unwrap()
            .version,
        2
    );
    let stored = store.entry(&key, &debit.tx_id()).await.unwrap().unwrap();
    assert_eq!(stored, receipt.entry);
    assert_eq!(assert_balance_matches_ledger(&*store, &key).await, 2);
}

pub async fn replaying_each_movement_kind_moves_nothing(store: Arc<dyn Store>) {
    let heidi = user("heidi");
    let key = funded_wallet(&*store, &heidi, usd("10")).await;
    let payment_a = PaymentId::generate();
    let payment_b = PaymentId::generate();
    let movements = [
        Movement::top_up(heidi.clone(), TopUpId::generate(), usd("5")),
        Movement::debit(heidi.clone(), payment_a, usd("15")),
        Movement::compensation(heidi.clone(), payment_a, usd("15")),
        Movement::debit(heidi.clone(), payment_b, usd("12")),
        Movement::refund(heidi.clone(), RefundId::generate(), payment_b, usd("2")),
    ];
    for movement in &movements {
        // WHEN a movement is applied and then delivered again
        let first = store.apply(movement, Timestamp::now()).await.unwrap();
        let balance_after_first = balance(&*store, &key).await;
        let entries_after_first = assert_balance_matches_ledger(&*store, &key).await;
        let replay = store.apply(movement, Timestamp::now()).await.unwrap();
        // THEN the replay returns the first receipt and moves nothing
        assert!(!first.replayed, "{:?}", movement.kind());
        assert!(replay.replayed, "{:?}", movement.kind());
        assert_eq!(replay.entry, first.entry);
        assert_eq!(balance(&*store, &key).await, balance_after_first);
        assert_eq!(
            assert_balance_matches_ledger(&*store, &key).await,
            entries_after_first
        );
    }
    // 10 + 5 − 15 + 15 − 12 + 2
    assert_eq!(balance(&*store, &key).await, usd("5"));
    // AND a debit replayed after the balance fell below its amount is still a replay
    let replay = store.apply(&movements[3], Timestamp::now()).await.unwrap();
    assert!(replay.replayed);
}

pub async fn a_different_movement_under_an_existing_tx_id_conflicts(store: Arc<dyn Store>) {
    let ivan = user("ivan");
    let key = funded_wallet(&*store, &ivan, usd("100")).await;
    let payment_id = PaymentId::generate();
    store
        .apply(
            &Movement::debit(ivan.clone(), payment_id, usd("10")),
            Timestamp::now(),
        )
        .await
        .unwrap();
    let different = Movement::debit(ivan.clone(), payment_id, usd("11"));
    let err = store.apply(&different, Timestamp::now()).await.unwrap_err();
    assert_eq!(err.error_type(), ErrorType::LedgerConflict);
    assert_eq!(balance(&*store, &key).await, usd("90"));
}

pub async fn insufficient_funds_moves_nothing(store: Arc<dyn Store>) {
    let judy = user("judy");
    let key = funded_wallet(&*store, &judy, usd("49.99")).await;
    let debit = Movement::debit(judy.clone(), PaymentId::generate(), usd("50"));
    let err = store.apply(&debit, Timestamp::now()).await.unwrap_err();
    assert!(
        matches!(err, WalletError::InsufficientFunds { .. }),
        "{err:?}"
    );
    assert_eq!(err.error_type(), ErrorType::InsufficientFunds);
    assert_eq!(balance(&*store, &key).await, usd("49.99"));
    assert!(store.entry(&key, &debit.tx_id()).await.unwrap().is_none());
    assert_eq!(assert_balance_matches_ledger(&*store, &key).await, 1);
}

pub async fn money_given_back_must_match_a_debit(store: Arc<dyn Store>) {
    let ken = user("ken");
    let key = funded_wallet(&*store, &ken, usd("100")).await;
    let never_debited = PaymentId::generate();
    // A compensation with no debit before it is refused
    let orphan = Movement::compensation(ken.clone(), never_debited, usd("10"));
    let err = store.apply(&orphan, Timestamp::now()).await.unwrap_err();
    assert_eq!(err.error_type(), ErrorType::DebitNotFound);
    // A compensation must give back exactly the debit
    let paid = PaymentId::generate();
    store
        .apply(
            &Movement::debit(ken.clone(), paid, usd("40")),
            Timestamp::now(),
        )
        .await
        .unwrap();
    let wrong = Movement::compensation(ken.clone(), paid, usd("41"));
    assert_eq!(
        store
            .apply(&wrong, Timestamp::now())
            .await
            .unwrap_err()
            .error_type(),
        ErrorType::DebitNotFound
    );
    // A refund may not exceed the debit
    let too_much = Movement::refund(ken.clone(), RefundId::generate(), paid, usd("40.01"));
    assert_eq!(
        store
            .apply(&too_much, Timestamp::now())
            .await
            .unwrap_err()
            .error_type(),
        ErrorType::DebitNotFound
    );
    assert_eq!(balance(&*store, &key).await, usd("60"));
    // The exact compensation is accepted, once
    store
        .apply(
            &Movement::compensation(ken.clone(), paid, usd("40")),
            Timestamp::now(),
        )
        .await
        .unwrap();
    assert_eq!(balance(&*store, &key).await, usd("100"));
    assert_eq!(assert_balance_matches_ledger(&*store, &key).await, 3);
}

pub async fn movements_in_another_currency_never_touch_the_wallet(store: Arc<dyn Store>) {
    let leo = user("leo");
    let key = funded_wallet(&*store, &leo, usd("100")).await;
    // A JPY debit for a user whose only wallet is USD finds no JPY wallet
    let yen = Movement::debit(leo.clone(), PaymentId::generate(), money("100", "JPY"));
    let err = store.apply(&yen, Timestamp::now()).await.unwrap_err();
    assert_eq!(err.error_type(), ErrorType::WalletNotFound);
    // A compensation in EUR of a USD debit matches no debit in the EUR wallet
    store
        .open(&leo, Currency::parse("EUR").unwrap(), Timestamp::now())
        .await
        .unwrap();
    let paid = PaymentId::generate();
    store
        .apply(
            &Movement::debit(leo.clone(), paid, usd("10")),
            Timestamp::now(),
        )
        .await
        .unwrap();
    let euro_back = Movement::compensation(leo.clone(), paid, money("10", "EUR"));
    let err = store.apply(&euro_back, Timestamp::now()).await.unwrap_err();
    assert_eq!(err.error_type(), ErrorType::DebitNotFound);
    // Money of two currencies never adds up
    let mismatch = usd("1").checked_add(&money("1", "EUR")).unwrap_err();
    assert_eq!(mismatch.error_type(), ErrorType::CurrencyMismatch);
    assert_eq!(balance(&*store, &key).await, usd("90"));
    let eur_key = WalletKey::new(leo.clone(), Currency::parse("EUR").unwrap());
    assert!(balance(&*store, &eur_key).await.is_zero());
}

pub async fn amounts_round_trip_exactly(store: Arc<dyn Store>) {
    let cases = [
        ("0.10", "USD", "0.10"),
        ("12345678901234567890.12", "USD", "12345678901234567890.12"),
        ("5000", "JPY", "5000"),
        ("1.234", "KWD", "1.234"),
        ("7.5", "KWD", "7.500"),
        ("10.00", "EUR", "10.00"),
    ];
    for (i, (text, currency, rendered)) in cases.into_iter().enumerate() {
        let mia = user(&format!("mia_{i}"));
        let amount = money(text, currency);
        let key = funded_wallet(&*store, &mia, amount).await;
        let wallet = WalletRepo::get(&*store, &key).await.unwrap().unwrap();
        assert_eq!(
            wallet.balance.amount_text(),
            rendered,
            "{text} {currency} wallet"
        );
        let entries = store.ledger(&key, 10, None).await.unwrap().items;
        assert_eq!(entries[0].amount.amount_text(), rendered);
        let new = new_payment(&mia, amount);
        PaymentRepo::create(&*store, new.clone(), Timestamp::now())
            .await
            .unwrap();
        let stored = PaymentRepo::get(&*store, &new.payment_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.amount, amount);
        assert_eq!(
            stored.amount.amount_text(),
            rendered,
            "{text} {currency} payment"
        );
        assert_eq!(
            stored.refunded_amount.amount_text(),
            money("0", currency).amount_text()
        );
    }
}

// ---------------------------------------------------------------------------------------
// Debit closures: a compensation that finds no debit closes the payment's debit
// ---------------------------------------------------------------------------------------

/// Applies `movement`, retrying only transient failures (bounded, with jitter),
/// as the state machine does.
async fn apply_retrying_transient(
    store: &dyn Store,
    movement: &Movement,
    jitter_seed: u32,
) -> Result<shared::domain::MovementReceipt, WalletError> {
    const ATTEMPT_COUNT_MAX: u32 = 200;
    for attempt in 0..ATTEMPT_COUNT_MAX {
        match store.apply(movement, Timestamp::now()).await {
            Err(err) if err.error_type().is_retryable() => {
                let jitter_ms = u64::from((jitter_seed * 7 + attempt * 13) % 10);
                tokio::time::sleep(Duration::from_millis(1 + jitter_ms)).await;
            }
            outcome => return outcome,
        }
    }
    panic!("{movement:?} still failing transiently after {ATTEMPT_COUNT_MAX} attempts");
}

pub async fn a_compensation_without_debit_closes_the_debit(store: Arc<dyn Store>) {
    let olga = user("olga");
    let key = funded_wallet(&*store, &olga, usd("100")).await;
    let payment_id = PaymentId::generate();
    let compensation = Movement::compensation(olga.clone(), payment_id, usd("40"));
    // GIVEN a compensation of a payment that was never debited
    let err = store
        .apply(&compensation, Timestamp::now())
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), ErrorType::DebitNotFound);
    // WHEN the payment's debit arrives late
    let debit = Movement::debit(olga.clone(), payment_id, usd("40"));
    let err = store.apply(&debit, Timestamp::now()).await.unwrap_err();
    // THEN it is refused with a final answer and nothing is taken
    assert!(
        matches!(&err, WalletError::PaymentCompensated { tx_id } if *tx_id == debit.tx_id()),
        "{err:?}"
    );
    assert_eq!(err.error_type(), ErrorType::PaymentCompensated);
    assert!(!err.error_type().is_retryable());
    assert_eq!(balance(&*store, &key).await, usd("100"));
    assert!(store.entry(&key, &debit.tx_id()).await.unwrap().is_none());
    // AND so is any debit of it: delivered again, of another amount, beyond the balance
    for late in [
        debit.clone(),
        Movement::debit(olga.clone(), payment_id, usd("1")),
        Movement::debit(olga.clone(), payment_id, usd("1000")),
    ] {
        let err = store.apply(&late, Timestamp::now()).await.unwrap_err();
        assert_eq!(err.error_type(), ErrorType::PaymentCompensated, "{late:?}");
    }
    // AND the closure is idempotent: compensating again (any amount) moves
    // nothing and answers as before
    for again in [
        compensation.clone(),
        Movement::compensation(olga.clone(), payment_id, usd("1")),
    ] {
        let err = store.apply(&again, Timestamp::now()).await.unwrap_err();
        assert_eq!(err.error_type(), ErrorType::DebitNotFound);
    }
    assert!(
        store
            .entry(&key, &compensation.tx_id())
            .await
            .unwrap()
            .is_none()
    );
    // AND the ledger shows only money: the top-up, balance = sum of entries
    assert_eq!(balance(&*store, &key).await, usd("100"));
    assert_eq!(assert_balance_matches_ledger(&*store, &key).await, 1);
    // AND a refund naming a never-debited payment closes nothing
    let refunded = PaymentId::generate();
    let refund = Movement::refund(olga.clone(), RefundId::generate(), refunded, usd("1"));
    let err = store.apply(&refund, Timestamp::now()).await.unwrap_err();
    assert_eq!(err.error_type(), ErrorType::DebitNotFound);
    let debit_after_refund = Movement::debit(olga.clone(), refunded, usd("10"));
    store
        .apply(&debit_after_refund, Timestamp::now())
        .await
        .unwrap();
    assert_eq!(balance(&*store, &key).await, usd("90"));
    assert_eq!(assert_balance_matches_ledger(&*store, &key).await, 2);
}

pub async fn a_compensation_before_the_wallet_exists_closes_the_debit(store: Arc<dyn Store>) {
    let pia = user("pia");
    let payment_id = PaymentId::generate();
    // GIVEN a compensation for a user who has no wallet yet
    let compensation = Movement::compensation(pia.clone(), payment_id, usd("5"));
    let err = store
        .apply(&compensation, Timestamp::now())
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), ErrorType::WalletNotFound);
    let key = WalletKey::new(pia.clone(), Currency::parse("USD").unwrap());
    assert!(WalletRepo::get(&*store, &key).await.unwrap().is_none());
    // WHEN the wallet is opened and funded, and then the late debit arrives
    let key = funded_wallet(&*store, &pia, usd("50")).await;
    let debit = Movement::debit(pia.clone(), payment_id, usd("5"));
    let err = store.apply(&debit, Timestamp::now()).await.unwrap_err();
    // THEN it is refused and the money stays
    assert_eq!(err.error_type(), ErrorType::PaymentCompensated);
    assert_eq!(balance(&*store, &key).await, usd("50"));
    assert_eq!(assert_balance_matches_ledger(&*store, &key).await, 1);
    // AND the compensation, now against the wallet, still finds nothing to give back
    let err = store
        .apply(&compensation, Timestamp::now())
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), ErrorType::DebitNotFound);
    assert_eq!(balance(&*store, &key).await, usd("50"));
}

pub async fn a_debit_then_its_compensation_is_given_back_once(store: Arc<dyn Store>) {
    let quinn = user("quinn");
    let key = funded_wallet(&*store, &quinn, usd("100")).await;
    let payment_id = PaymentId::generate();
    let debit = Movement::debit(quinn.clone(), payment_id, usd("40"));
    store.apply(&debit, Timestamp::now()).await.unwrap();
    // GIVEN a compensation of another amount: refused, and it closes nothing
    let wrong = Movement::compensation(quinn.clone(), payment_id, usd("39"));
    let err = store.apply(&wrong, Timestamp::now()).await.unwrap_err();
    assert_eq!(err.error_type(), ErrorType::DebitNotFound);
    // WHEN the exact compensation is delivered twice
    let compensation = Movement::compensation(quinn.clone(), payment_id, usd("40"));
    let first = store.apply(&compensation, Timestamp::now()).await.unwrap();
    let again = store.apply(&compensation, Timestamp::now()).await.unwrap();
    // THEN the debit is given back exactly once
    assert!(!first.replayed);
    assert!(again.replayed);
    assert_eq!(again.entry, first.entry);
    assert_eq!(first.entry.balance_after, usd("100"));
    assert_eq!(balance(&*store, &key).await, usd("100"));
    // AND the debit delivered again is a replay, not a refusal
    let replay = store.apply(&debit, Timestamp::now()).await.unwrap();
    assert!(replay.replayed);
    assert_eq!(balance(&*store, &key).await, usd("100"));
    assert_eq!(assert_balance_matches_ledger(&*store, &key).await, 3);
}

/// A debit and the compensation of its payment, delivered at the same time,
/// for many payments of one wallet: exactly one order wins for each payment,
/// debit-then-compensation (both entries, money back) or closure-then-refused
/// debit (no entry at all). Never a debit that stays.
pub async fn a_compensation_racing_its_debit_never_leaves_the_debit(store: Arc<dyn Store>) {
    const PAYMENT_COUNT: u32 = 16;
    let rosa = user("rosa");
    let key = funded_wallet(&*store, &rosa, usd("100")).await;
    let mut payments = Vec::new();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..PAYMENT_COUNT {
        let payment_id = PaymentId::generate();
        let debit = Movement::debit(rosa.clone(), payment_id, usd("1"));
        let compensation = Movement::compensation(rosa.clone(), payment_id, usd("1"));
        payments.push((debit.clone(), compensation.clone()));
        // Alternate which one is started first.
        let pair = if i % 2 == 0 {
            [debit, compensation]
        } else {
            [compensation, debit]
        };
        for (j, movement) in pair.into_iter().enumerate() {
            let store = Arc::clone(&store);
            let seed = i * 2 + u32::try_from(j).unwrap();
            tasks.spawn(async move {
                let outcome = apply_retrying_transient(&*store, &movement, seed).await;
                (movement, outcome)
            });
        }
    }
    let mut outcomes = BTreeMap::new();
    while let Some(joined) = tasks.join_next().await {
        let (movement, outcome) = joined.unwrap();
        outcomes.insert(movement.tx_id(), outcome);
    }
    let (mut given_back, mut closed) = (0_usize, 0_usize);
    for (debit, compensation) in &payments {
        let debited = &outcomes[&debit.tx_id()];
        let compensated = &outcomes[&compensation.tx_id()];
        let debit_entry = store.entry(&key, &debit.tx_id()).await.unwrap();
        let compensation_entry = store.entry(&key, &compensation.tx_id()).await.unwrap();
        match (debited, compensated) {
            (Ok(d), Ok(c)) => {
                assert!(!d.replayed && !c.replayed);
                assert!(debit_entry.is_some() && compensation_entry.is_some());
                given_back += 1;
            }
            (
                Err(WalletError::PaymentCompensated { .. }),
                Err(WalletError::DebitNotFound { .. }),
            ) => {
                assert!(debit_entry.is_none() && compensation_entry.is_none());
                closed += 1;
            }
            other => panic!(
                "{}: a debit and its compensation ended {other:?}",
                debit.tx_id()
            ),
        }
        // AND delivering both again changes nothing
        let again = store.apply(debit, Timestamp::now()).await;
        assert!(
            again.as_ref().is_ok_and(|r| r.replayed)
                || again
                    .as_ref()
                    .is_err_and(|e| e.error_type() == ErrorType::PaymentCompensated),
            "{again:?}"
        );
    }
    println!("race: {given_back} debited then given back, {closed} closed then refused");
    assert_eq!(given_back + closed, payments.len());
    assert_eq!(balance(&*store, &key).await, usd("100"));
    assert_eq!(
        assert_balance_matches_ledger(&*store, &key).await,
        1 + 2 * given_back
    );
}

/// Outcome counts of [`concurrent_debits_never_overdraw`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ConcurrencyReport {
    pub succeeded: u32,
    pub insufficient: u32,
    pub retries: u32,
}

/// 100 concurrent debits of 10 on a wallet holding 500: exactly 50 succeed.
/// Version conflicts surface as `Retryable`; each caller retries them like the
/// state machine does (bounded, with jitter), never blindly.
pub async fn concurrent_debits_never_overdraw(store: Arc<dyn Store>) -> ConcurrencyReport {
    const DEBIT_COUNT: u32 = 100;
    const ATTEMPT_COUNT_MAX: u32 = 200;
    let owner = user("hot_wallet");
    let key = funded_wallet(&*store, &owner, usd("500")).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..DEBIT_COUNT {
        let store = Arc::clone(&store);
        let movement = Movement::debit(owner.clone(), PaymentId::generate(), usd("10"));
        tasks.spawn(async move {
            for attempt in 0..ATTEMPT_COUNT_MAX {
                match store.apply(&movement, Timestamp::now()).await {
                    Ok(receipt) => return (Ok(receipt), attempt),
                    Err(err) if err.error_type().is_retryable() => {
                        let jitter_ms = u64::from((i * 7 + attempt * 13) % 10);
                        tokio::time::sleep(Duration::from_millis(1 + jitter_ms)).await;
                    }
                    Err(err) => return (Err(err), attempt),
                }
            }
            panic!("debit {i} still conflicting after {ATTEMPT_COUNT_MAX} attempts");
        });
    }
    let mut report = ConcurrencyReport::default();
    while let Some(joined) = tasks.join_next().await {
        let (outcome, retries) = joined.unwrap();
        report.retries += retries;
        match outcome {
            Ok(receipt) => {
                assert!(!receipt.replayed);
                report.succeeded += 1;
            }
            Err(WalletError::InsufficientFunds { .. }) => report.insufficient += 1,
            Err(other) => panic!("unexpected error {other:?}"),
        }
    }
    assert_eq!(report.succeeded, 50, "{report:?}");
    assert_eq!(report.insufficient, 50, "{report:?}");
    assert!(balance(&*store, &key).await.is_zero());
    assert_eq!(assert_balance_matches_ledger(&*store, &key).await, 51);
    report
}

// ---------------------------------------------------------------------------------------
// Refunds, idempotency records, circuit breaker
// ---------------------------------------------------------------------------------------

pub async fn refunds_are_idempotent_and_versioned(store: Arc<dyn Store>) {
    let payment_id = PaymentId::generate();
    let nina = user("nina");
    let early = Timestamp::from_unix_seconds(1_700_000_000).unwrap();
    let refund = Refund::request(
        RefundId::generate(),
        payment_id,
        nina.clone(),
        usd("5"),
        None,
        early,
    );
    assert!(RefundRepo::create(&*store, &refund).await.unwrap().is_new());
    assert_eq!(
        RefundRepo::create(&*store, &refund).await.unwrap(),
        Created::Existing(refund.clone())
    );
    let conflicting = Refund {
        amount: usd("6"),
        ..refund.clone()
    };
    let err = RefundRepo::create(&*store, &conflicting).await.unwrap_err();
    assert_eq!(err.error_type(), ErrorType::AlreadyExists);
    // WHEN it advances
    let step = refund
        .advance(
            RefundStatus::GatewayRefunded,
            Some("gwr_1".into()),
            None,
            Timestamp::now(),
        )
        .unwrap();
    RefundRepo::save(&*store, &step).await.unwrap();
    // THEN a writer holding the old version loses
    let stale = refund
        .advance(
            RefundStatus::Failed,
            None,
            Some("X".into()),
            Timestamp::now(),
        )
        .unwrap();
    assert!(matches!(
        RefundRepo::save(&*store, &stale).await,
        Err(StoreError::StaleVersion { .. })
    ));
    assert_eq!(
        RefundRepo::get(&*store, &refund.refund_id).await.unwrap(),
        Some(step.clone())
    );
    assert!(
        step.advance(RefundStatus::Requested, None, None, Timestamp::now())
            .is_err()
    );
    let second = Refund::request(
        RefundId::generate(),
        payment_id,
        nina,
        usd("1"),
        Some("late".into()),
        Timestamp::now(),
    );
    RefundRepo::create(&*store, &second).await.unwrap();
    let listed = store.refunds_of(&payment_id).await.unwrap();
    assert_eq!(
        listed.iter().map(|r| r.refund_id).collect::<Vec<_>>(),
        vec![refund.refund_id, second.refund_id]
    );
}

/// Every open payment of every shard created at or after `since`, read a
/// page of `limit` at a time (the cursor is followed to the end).
async fn all_open_payments(store: &dyn Store, since: Timestamp, limit: u32) -> Vec<Payment> {
    let mut found = Vec::new();
    for shard in 0..OPEN_SHARD_COUNT {
        let mut cursor: Option<String> = None;
        loop {
            let page = store
                .open_payments(shard, Some(since), limit, cursor.as_deref())
                .await
                .unwrap();
            for payment in &page.items {
                assert_eq!(open_shard(&payment.payment_id.to_string()), shard);
            }
            found.extend(page.items);
            cursor = page.cursor;
            if cursor.is_none() {
                break;
            }
            assert!(found.len() < 10_000, "open listing does not terminate");
        }
    }
    found
}

pub async fn the_open_index_lists_what_is_not_settled(store: Arc<dyn Store>) {
    // GIVEN payments created far in the future (no other case writes there):
    // one PENDING, one PROCESSING, one FAILED, and one RECONCILIATION_REQUIRED
    let offset = i64::from(open_shard(&PaymentId::generate().to_string()));
    let base = Timestamp::from_unix_seconds(4_000_000_000 + offset * 1_000).unwrap();
    let carol = user("carol");
    let mut ids = Vec::new();
    for (index, to) in [
        None,
        Some(PaymentStatus::Processing),
        Some(PaymentStatus::Failed),
        Some(PaymentStatus::ReconciliationRequired),
    ]
    .into_iter()
    .enumerate()
    {
        let new = new_payment(&carol, usd("3"));
        let at = base.plus_seconds(i64::try_from(index).unwrap());
        PaymentRepo::create(&*store, new.clone(), at).await.unwrap();
        if let Some(to) = to {
            let change = match to {
                PaymentStatus::Failed => PaymentChange::failed("INSUFFICIENT_FUNDS".into()),
                PaymentStatus::ReconciliationRequired => {
                    PaymentChange::reconciliation_required("GATEWAY_TIMEOUT".into())
                }
                _ => PaymentChange::to(to),
            };
            store
                .transition(&new.payment_id, &change, at)
                .await
                .unwrap();
        }
        ids.push(new.payment_id);
    }
    // WHEN every shard is listed a page of one at a time
    let open = all_open_payments(&*store, base, 1).await;
    // THEN exactly the three not settled are there, as stored now
    let mut listed: Vec<PaymentId> = open.iter().map(|p| p.payment_id).collect();
    listed.sort();
    let mut expected = vec![ids[0], ids[1], ids[3]];
    expected.sort();
    assert_eq!(listed, expected);
    let processing = open.iter().find(|p| p.payment_id == ids[1]).unwrap();
    assert_eq!(processing.status, PaymentStatus::Processing);
    // AND `since` leaves out what was created before it
    let later = all_open_payments(&*store, base.plus_seconds(1), 100).await;
    assert!(later.iter().all(|p| p.payment_id != ids[0]));
    assert!(later.iter().any(|p| p.payment_id == ids[1]));
    // AND a payment leaves the index when it settles
    store
        .transition(&ids[1], &PaymentChange::completed("gw_1".into()), base)
        .await
        .unwrap();
    let after = all_open_payments(&*store, base, 100).await;
    assert!(after.iter().all(|p| p.payment_id != ids[1]));
    // AND a cursor that was not made by the store is refused
    let err = store
        .open_payments(0, None, 10, Some("not-a-cursor"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidCursor(_)));

    // GIVEN refunds: one REQUESTED, one COMPLETED, one RECONCILIATION_REQUIRED
    let payment_id = PaymentId::generate();
    let mut refund_ids = Vec::new();
    for (index, path) in [
        vec![],
        vec![RefundStatus::GatewayRefunded, RefundStatus::Completed],
        vec![RefundStatus::ReconciliationRequired],
    ]
    .into_iter()
    .enumerate()
    {
        let at = base.plus_seconds(i64::try_from(index).unwrap());
        let mut refund = Refund::request(
            RefundId::generate(),
            payment_id,
            carol.clone(),
            usd("1"),
            None,
            at,
        );
        RefundRepo::create(&*store, &refund).await.unwrap();
        for to in path {
            refund = refund.advance(to, None, None, at).unwrap();
            RefundRepo::save(&*store, &refund).await.unwrap();
        }
        refund_ids.push(refund.refund_id);
    }
    // WHEN every shard is listed
    let mut open_refunds = Vec::new();
    for shard in 0..OPEN_SHARD_COUNT {
        let mut cursor: Option<String> = None;
        loop {
            let page = store
                .open_refunds(shard, Some(base), 1, cursor.as_deref())
                .await
                .unwrap();
            open_refunds.extend(page.items.iter().map(|r| r.refund_id));
            cursor = page.cursor;
            if cursor.is_none() {
                break;
            }
        }
    }
    // THEN the two not finished are there
    open_refunds.sort();
    let mut expected = vec![refund_ids[0], refund_ids[2]];
    expected.sort();
    assert_eq!(open_refunds, expected);
}

pub async fn idempotency_keys_are_claimed_once(store: Arc<dyn Store>) {
    let now = Timestamp::now();
    let record = IdempotencyRecord::claim("POST /payments#key-1".into(), "hash-a".into(), now);
    assert_eq!(
        store.claim(&record, now).await.unwrap(),
        ClaimOutcome::Claimed
    );
    // A second claim sees the first, in progress
    let again = IdempotencyRecord::claim(record.idempotency_key.clone(), "hash-b".into(), now);
    match store.claim(&again, now).await.unwrap() {
        ClaimOutcome::Existing(existing) => {
            assert_eq!(existing.request_hash, "hash-a");
            assert_eq!(existing.state, IdempotencyState::InProgress);
        }
        other => panic!("expected the existing record, got {other:?}"),
    }
    let done = IdempotencyState::Completed {
        status_code: 202,
        body: r#"{"paymentId":"pay_1"}"#.into(),
    };
    store
        .complete(&record.idempotency_key, &done)
        .await
        .unwrap();
    match store.claim(&again, now).await.unwrap() {
        ClaimOutcome::Existing(existing) => assert_eq!(existing.state, done),
        other => panic!("expected the completed record, got {other:?}"),
    }
    // Completing twice or releasing a completed key changes nothing
    assert!(
        store
            .complete(&record.idempotency_key, &done)
            .await
            .is_err()
    );
    store
        .release(&record.idempotency_key, record.created_at)
        .await
        .unwrap();
    assert!(matches!(
        store.claim(&again, now).await.unwrap(),
        ClaimOutcome::Existing(_)
    ));
    // A released in-progress key can be claimed again
    let other = IdempotencyRecord::claim("POST /payments#key-2".into(), "h".into(), now);
    store.claim(&other, now).await.unwrap();
    // (a release of an earlier claim of that key drops nothing)
    store
        .release(&other.idempotency_key, now.plus_seconds(-5))
        .await
        .unwrap();
    assert!(matches!(
        store.claim(&other, now).await.unwrap(),
        ClaimOutcome::Existing(_)
    ));
    store
        .release(&other.idempotency_key, other.created_at)
        .await
        .unwrap();
    assert_eq!(
        store.claim(&other, now).await.unwrap(),
        ClaimOutcome::Claimed
    );
    // An expired record no longer holds its key
    let later = now.plus_seconds(shared::domain::idempotency::IDEMPOTENCY_TTL_SECONDS + 1);
    let fresh = IdempotencyRecord::claim(record.idempotency_key.clone(), "hash-c".into(), later);
    assert_eq!(
        store.claim(&fresh, later).await.unwrap(),
        ClaimOutcome::Claimed
    );
}

pub async fn breaker_state_is_written_with_optimistic_versions(store: Arc<dyn Store>) {
    let now = Timestamp::now();
    let initial = store.load("payment-gateway", now).await.unwrap();
    assert_eq!((initial.state, initial.version), (BreakerState::Closed, 0));
    let mut opened = initial.clone();
    opened.state = BreakerState::Open;
    opened.consecutive_failures = 5;
    opened.opened_at = Some(now);
    opened.version = 1;
    BreakerStore::save(&*store, &opened).await.unwrap();
    // Another instance that read version 0 loses
    let mut rival = initial.clone();
    rival.consecutive_failures = 1;
    rival.version = 1;
    assert!(matches!(
        BreakerStore::save(&*store, &rival).await,
        Err(StoreError::StaleVersion { .. })
    ));
    assert_eq!(store.load("payment-gateway", now).await.unwrap(), opened);
    let mut half_open = opened.clone();
    half_open.state = BreakerState::HalfOpen;
    half_open.version = 2;
    BreakerStore::save(&*store, &half_open).await.unwrap();
    assert_eq!(
        store.load("payment-gateway", now).await.unwrap().state,
        BreakerState::HalfOpen
    );
}

// ---------------------------------------------------------------------------------------
// Refund reservations: refund + payment + event in one transaction
// ---------------------------------------------------------------------------------------

/// A payment the saga completed (the store does not care about the wallet here).
async fn completed_payment(store: &dyn Store, user_id: &UserId, amount: Money) -> Payment {
    let id = PaymentRepo::create(store, new_payment(user_id, amount), Timestamp::now())
        .await
        .unwrap()
        .into_inner()
        .payment_id;
    store
        .transition(
            &id,
            &PaymentChange::to(PaymentStatus::Processing),
            Timestamp::now(),
        )
        .await
        .unwrap();
    store
        .transition(
            &id,
            &PaymentChange::completed("gw_1".into()),
            Timestamp::now(),
        )
        .await
        .unwrap()
}

fn refund_request(payment: &Payment, amount: Money, reason: Option<&str>) -> Refund {
    Refund::request(
        RefundId::generate(),
        payment.payment_id,
        payment.user_id.clone(),
        amount,
        reason.map(str::to_owned),
        Timestamp::now(),
    )
}

async fn payment_now(store: &dyn Store, payment: &Payment) -> Payment {
    PaymentRepo::get(store, &payment.payment_id)
        .await
        .unwrap()
        .unwrap()
}

pub async fn a_refused_refund_gives_its_reservation_back_atomically(store: Arc<dyn Store>) {
    // GIVEN a completed payment of 100 with 30 and then 70 reserved (REFUNDED)
    let piet = user("piet");
    let payment = completed_payment(&*store, &piet, usd("100")).await;
    let first = refund_request(&payment, usd("30"), None);
    store
        .reserve(&first, &payment, Timestamp::now())
        .await
        .unwrap();
    let partly = payment_now(&*store, &payment).await;
    let second = refund_request(&partly, usd("70"), None);
    store
        .reserve(&second, &partly, Timestamp::now())
        .await
        .unwrap();
    let refunded = payment_now(&*store, &payment).await;
    assert_eq!(refunded.status, PaymentStatus::Refunded);
    // WHEN the gateway refuses the 70: the refund FAILED and its reservation
    // given back, in one write
    let failed = second
        .advance(
            RefundStatus::Failed,
            None,
            Some("GATEWAY_REJECTED".into()),
            Timestamp::now(),
        )
        .unwrap();
    let after = store
        .fail_and_release(&failed, &refunded, Timestamp::now())
        .await
        .unwrap();
    // THEN the payment says what really moved, and its event says why
    assert_eq!(after.status, PaymentStatus::PartiallyRefunded);
    assert_eq!(after.refunded_amount, usd("30"));
    assert_eq!(payment_now(&*store, &payment).await, after);
    assert_eq!(
        RefundRepo::get(&*store, &second.refund_id).await.unwrap(),
        Some(failed.clone())
    );
    let events = store.events(&payment.payment_id, 10).await.unwrap();
    let last = events.last().unwrap();
    assert_eq!(
        (last.from_status, last.status),
        (
            Some(PaymentStatus::Refunded),
            PaymentStatus::PartiallyRefunded
        )
    );
    // AND the same write again (its answer lost) finds the refund moved on
    let again = store
        .fail_and_release(&failed, &refunded, Timestamp::now())
        .await
        .unwrap_err();
    assert!(
        matches!(
            again,
            StoreError::StaleVersion {
                entity: shared::Entity::Refund,
                ..
            }
        ),
        "{again:?}"
    );
    // AND a release decided on a payment read before another change is
    // refused, writing nothing
    let failed_first = first
        .advance(
            RefundStatus::Failed,
            None,
            Some("GATEWAY_REJECTED".into()),
            Timestamp::now(),
        )
        .unwrap();
    let stale = store
        .fail_and_release(&failed_first, &refunded, Timestamp::now())
        .await
        .unwrap_err();
    assert!(
        matches!(
            stale,
            StoreError::StaleVersion {
                entity: shared::Entity::Payment,
                ..
            }
        ),
        "{stale:?}"
    );
    assert_eq!(
        RefundRepo::get(&*store, &first.refund_id).await.unwrap(),
        Some(first.clone())
    );
    // AND released on the payment as it is now, it is COMPLETED again
    let completed = store
        .fail_and_release(&failed_first, &after, Timestamp::now())
        .await
        .unwrap();
    assert_eq!(completed.status, PaymentStatus::Completed);
    assert!(completed.refunded_amount.is_zero());
}

pub async fn refund_reservation_is_atomic_and_idempotent(store: Arc<dyn Store>) {
    // GIVEN a completed payment of 100
    let owen = user("owen");
    let payment = completed_payment(&*store, &owen, usd("100")).await;
    // WHEN 30 is reserved
    let refund = refund_request(&payment, usd("30"), Some("damaged"));
    let reserved = store
        .reserve(&refund, &payment, Timestamp::now())
        .await
        .unwrap();
    // THEN the refund, the payment and its event were written together
    let (stored_refund, after) = match reserved {
        Created::New(pair) => pair,
        Created::Existing(_) => panic!("a new refund must be written"),
    };
    assert_eq!(stored_refund, refund);
    assert_eq!(after.status, PaymentStatus::PartiallyRefunded);
    assert_eq!(after.refunded_amount, usd("30"));
    assert_eq!(after.version, payment.version + 1);
    assert_eq!(payment_now(&*store, &payment).await, after);
    assert_eq!(
        RefundRepo::get(&*store, &refund.refund_id).await.unwrap(),
        Some(refund.clone())
    );
    let events = store.events(&payment.payment_id, 10).await.unwrap();
    let last = events.last().unwrap();
    assert_eq!(events.len(), 4);
    assert_eq!(
        (last.from_status, last.status, last.version),
        (
            Some(PaymentStatus::Completed),
            PaymentStatus::PartiallyRefunded,
            after.version
        )
    );
    // AND the same reservation again (even with the old read) writes nothing
    let again = store
        .reserve(&refund, &payment, Timestamp::now())
        .await
        .unwrap();
    assert_eq!(again, Created::Existing((refund.clone(), after.clone())));
    assert_eq!(payment_now(&*store, &payment).await, after);
    assert_eq!(
        store.events(&payment.payment_id, 10).await.unwrap().len(),
        4
    );
    // AND another refund under the same id conflicts
    let conflicting = Refund {
        amount: usd("31"),
        ..refund.clone()
    };
    let err = store
        .reserve(&conflicting, &after, Timestamp::now())
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), ErrorType::AlreadyExists);
    // AND a reservation decided on a stale read is refused and writes nothing
    let late = refund_request(&payment, usd("10"), None);
    let err = store
        .reserve(&late, &payment, Timestamp::now())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::StaleVersion { .. }), "{err:?}");
    assert_eq!(
        RefundRepo::get(&*store, &late.refund_id).await.unwrap(),
        None
    );
}

pub async fn refund_reservation_refuses_what_cannot_be_refunded(store: Arc<dyn Store>) {
    // GIVEN a payment of 100 with 30 reserved
    let owen = user("owen");
    let payment = completed_payment(&*store, &owen, usd("100")).await;
    let first = refund_request(&payment, usd("30"), None);
    let (_, after) = store
        .reserve(&first, &payment, Timestamp::now())
        .await
        .unwrap()
        .into_inner();
    // WHEN more than is left is asked THEN it is refused, and nothing is written
    let too_much = refund_request(&after, usd("70.01"), None);
    let err = store
        .reserve(&too_much, &after, Timestamp::now())
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), ErrorType::RefundExceedsAmount);
    assert_eq!(
        RefundRepo::get(&*store, &too_much.refund_id).await.unwrap(),
        None
    );
    // WHEN the remaining 70 is reserved THEN the payment is REFUNDED
    let rest = refund_request(&after, usd("70"), None);
    let (_, refunded) = store
        .reserve(&rest, &after, Timestamp::now())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(refunded.status, PaymentStatus::Refunded);
    assert_eq!(refunded.refunded_amount, usd("100"));
    // AND a refunded, a pending or an unknown payment cannot be reserved on
    let one_more = refund_request(&refunded, usd("1"), None);
    let err = store
        .reserve(&one_more, &refunded, Timestamp::now())
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), ErrorType::InvalidTransition);
    let pending = PaymentRepo::create(&*store, new_payment(&owen, usd("5")), Timestamp::now())
        .await
        .unwrap()
        .into_inner();
    let err = store
        .reserve(
            &refund_request(&pending, usd("5"), None),
            &pending,
            Timestamp::now(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), ErrorType::InvalidTransition);
    let ghost = Payment {
        payment_id: PaymentId::generate(),
        ..after.clone()
    };
    let err = store
        .reserve(
            &refund_request(&ghost, usd("1"), None),
            &ghost,
            Timestamp::now(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), ErrorType::PaymentNotFound);
    // THEN the payment lists exactly the two refunds it reserved
    let refunds = store.refunds_of(&payment.payment_id).await.unwrap();
    let ids: Vec<RefundId> = refunds.iter().map(|r| r.refund_id).collect();
    assert_eq!(ids, vec![first.refund_id, rest.refund_id]);
    assert_eq!(payment_now(&*store, &payment).await, refunded);
}

/// Reserves `refund` like refund-service does: read, decide, reserve; a lost
/// race is read again (bounded). `Ok(true)` reserved, `Ok(false)` too much left.
async fn reserve_with_retries(store: &dyn Store, refund: &Refund) -> Result<bool, StoreError> {
    const ATTEMPT_COUNT_MAX: u32 = 50;
    for attempt in 0..ATTEMPT_COUNT_MAX {
        let payment = PaymentRepo::get(store, &refund.payment_id).await?.unwrap();
        match store.reserve(refund, &payment, Timestamp::now()).await {
            Ok(Created::New(_)) => return Ok(true),
            Ok(Created::Existing(_)) => panic!("each refund is reserved once"),
            Err(err) if err.error_type() == ErrorType::RefundExceedsAmount => return Ok(false),
            Err(err) if err.error_type().is_retryable() => {
                tokio::time::sleep(Duration::from_millis(1 + u64::from(attempt % 5))).await;
            }
            Err(err) => return Err(err),
        }
    }
    panic!(
        "refund {} still racing after {ATTEMPT_COUNT_MAX} attempts",
        refund.refund_id
    );
}

/// Runs `count` concurrent reservations of `amount` on `payment`; returns how many succeeded.
async fn race_refunds(store: &Arc<dyn Store>, payment: &Payment, amount: Money, count: u32) -> u32 {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..count {
        let store = Arc::clone(store);
        let refund = refund_request(payment, amount, None);
        tasks.spawn(async move { reserve_with_retries(&*store, &refund).await });
    }
    let mut succeeded = 0;
    while let Some(joined) = tasks.join_next().await {
        if joined.unwrap().unwrap() {
            succeeded += 1;
        }
    }
    succeeded
}

pub async fn concurrent_refunds_never_over_refund(store: Arc<dyn Store>) {
    let pat = user("pat");
    // GIVEN a completed payment of 100 WHEN two refunds of 60 race THEN exactly one wins
    let payment = completed_payment(&*store, &pat, usd("100")).await;
    assert_eq!(race_refunds(&store, &payment, usd("60"), 2).await, 1);
    let after = payment_now(&*store, &payment).await;
    assert_eq!(after.refunded_amount, usd("60"));
    assert_eq!(after.status, PaymentStatus::PartiallyRefunded);
    assert_eq!(
        store.refunds_of(&payment.payment_id).await.unwrap().len(),
        1
    );
    // GIVEN another payment of 100 WHEN eight refunds of 15 race THEN six fit
    let payment = completed_payment(&*store, &pat, usd("100")).await;
    assert_eq!(race_refunds(&store, &payment, usd("15"), 8).await, 6);
    let after = payment_now(&*store, &payment).await;
    assert_eq!(after.refunded_amount, usd("90"));
    let refunds = store.refunds_of(&payment.payment_id).await.unwrap();
    assert_eq!(refunds.len(), 6);
    // AND every reservation has its own event: created, processing, completed, six refunds
    let events = store.events(&payment.payment_id, 20).await.unwrap();
    assert_eq!(events.len(), 9);
    assert_eq!(after.version, 9);
}
