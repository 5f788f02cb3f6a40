//! In-memory implementation of every store port, with the semantics DynamoDB
//! gives the real adapter: conditional writes, multi-item transactions (one
//! lock over all tables), idempotent creates. Tests can inject a failure into
//! the next write with [`InMemoryStore::fail_next_write`].

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;

use crate::domain::wallet::DebitClosure;
use crate::domain::{
    BreakerRecord, ClaimOutcome, Currency, IdempotencyRecord, IdempotencyState, LedgerEntry,
    Movement, MovementReceipt, NewPayment, Payment, PaymentChange, PaymentEvent, PaymentId,
    PaymentStatus, Refund, RefundId, Timestamp, UserId, Wallet, WalletKey,
};
use crate::error::{Entity, RepoError, StoreError, WalletError};
use crate::ports::{
    self, BreakerStore, Created, IdempotencyRepo, PAGE_LIMIT_MAX, Page, PaymentEventRepo,
    PaymentRepo, RefundRepo, WALLET_COUNT_PER_USER_MAX, WalletRepo,
};

#[derive(Default)]
struct Tables {
    payments: HashMap<PaymentId, Payment>,
    events: BTreeMap<(PaymentId, String), PaymentEvent>,
    wallets: BTreeMap<WalletKey, Wallet>,
    ledger: BTreeMap<(WalletKey, String), LedgerEntry>,
    /// Closed debits, by wallet and the closed debit's `txId`: beside the
    /// ledger, never in it (a closure moves no money; see [`DebitClosure`]).
    debit_closures: BTreeMap<(WalletKey, String), DebitClosure>,
    refunds: HashMap<RefundId, Refund>,
    idempotency: HashMap<String, IdempotencyRecord>,
    breakers: HashMap<String, BreakerRecord>,
    fail_next_write: Option<RepoError>,
}

impl Tables {
    /// Consumes an injected failure, as if the write reached a failing store.
    fn injected_failure(&mut self) -> Result<(), RepoError> {
        self.fail_next_write.take().map_or(Ok(()), Err)
    }
}

/// One page of an open-index listing, as the index orders it: oldest first
/// by `(createdAt, id)`, created at or after `since`, after the cursor's key.
fn open_page<'a, T: Clone + 'a, K: Ord + Copy>(
    open: impl Iterator<Item = &'a T>,
    index_key: impl Fn(&T) -> (Timestamp, K),
    since: Option<Timestamp>,
    after: Option<(Timestamp, K)>,
    limit: u32,
    cursor_of: impl Fn(&T) -> String,
) -> Page<T> {
    let mut items: Vec<&T> = open
        .filter(|item| since.is_none_or(|since| index_key(item).0 >= since))
        .filter(|item| after.is_none_or(|after| index_key(item) > after))
        .collect();
    items.sort_by_key(|item| index_key(item));
    let limit = usize::try_from(ports::page_limit(limit)).unwrap_or(usize::MAX);
    let more = items.len() > limit;
    let items: Vec<T> = items.into_iter().take(limit).cloned().collect();
    let cursor = if more {
        items.last().map(cursor_of)
    } else {
        None
    };
    Page { items, cursor }
}

#[derive(Default)]
pub struct InMemoryStore {
    tables: Mutex<Tables>,
}

impl InMemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// The next write of any kind fails with `error` and changes nothing.
    pub fn fail_next_write(&self, error: RepoError) {
        self.lock().fail_next_write = Some(error);
    }

    fn lock(&self) -> MutexGuard<'_, Tables> {
        // A panic while holding the lock cannot leave a half-applied write:
        // every operation validates before it mutates.
        self.tables.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl PaymentRepo for InMemoryStore {
    async fn create(&self, new: NewPayment, at: Timestamp) -> Result<Created<Payment>, StoreError> {
        let mut tables = self.lock();
        if let Some(existing) = tables.payments.get(&new.payment_id) {
            if existing.matches(&new) {
                return Ok(Created::Existing(existing.clone()));
            }
            let id = new.payment_id.to_string();
            return Err(StoreError::AlreadyExists {
                entity: Entity::Payment,
                id,
            });
        }
        tables.injected_failure()?;
        let payment = Payment::create(new, at);
        let event = PaymentEvent::created(&payment);
        tables
            .events
            .insert((payment.payment_id, event.sort_key()), event);
        tables.payments.insert(payment.payment_id, payment.clone());
        Ok(Created::New(payment))
    }

    async fn get(&self, payment_id: &PaymentId) -> Result<Option<Payment>, StoreError> {
        Ok(self.lock().payments.get(payment_id).cloned())
    }

    async fn transition(
        &self,
        payment_id: &PaymentId,
        change: &PaymentChange,
        at: Timestamp,
    ) -> Result<Payment, StoreError> {
        let mut tables = self.lock();
        let current = tables
            .payments
            .get(payment_id)
            .cloned()
            .ok_or_else(|| StoreError::payment_not_found(payment_id))?;
        if change.is_applied_to(&current) {
            return Ok(current);
        }
        let next = change.apply(&current, at)?;
        tables.injected_failure()?;
        let event = PaymentEvent::status_changed(&current, &next);
        tables
            .events
            .insert((next.payment_id, event.sort_key()), event);
        tables.payments.insert(next.payment_id, next.clone());
        Ok(next)
    }

    async fn keep_wait_token(
        &self,
        payment_id: &PaymentId,
        token: &str,
    ) -> Result<Payment, StoreError> {
        let mut tables = self.lock();
        let payment = tables
            .payments
            .get_mut(payment_id)
            .ok_or_else(|| StoreError::payment_not_found(payment_id))?;
        if payment.status == PaymentStatus::Processing {
            payment.wait_token = Some(token.to_owned());
        }
        Ok(payment.clone())
    }

    async fn list_by_user(
        &self,
        user_id: &UserId,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<Page<Payment>, StoreError> {
        let after = match cursor {
            Some(text) => Some(
                ports::parse_payment_cursor(text)
                    .ok_or_else(|| StoreError::InvalidCursor(text.chars().take(80).collect()))?,
            ),
            None => None,
        };
        let tables = self.lock();
        let mut mine: Vec<&Payment> = tables
            .payments
            .values()
            .filter(|p| &p.user_id == user_id)
            .filter(|p| after.is_none_or(|(at, id)| (p.created_at, p.payment_id) < (at, id)))
            .collect();
        // Newest first, ties by id like the index's (createdAt, paymentId) order.
        mine.sort_by_key(|p| std::cmp::Reverse((p.created_at, p.payment_id)));
        let limit = usize::try_from(ports::page_limit(limit)).unwrap_or(usize::MAX);
        let more = mine.len() > limit;
        let items: Vec<Payment> = mine.into_iter().take(limit).cloned().collect();
        let cursor = if more {
            items.last().map(ports::payment_cursor)
        } else {
            None
        };
        Ok(Page { items, cursor })
    }

    async fn open_payments(
        &self,
        shard: u32,
        since: Option<Timestamp>,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<Page<Payment>, StoreError> {
        let after = cursor
            .map(|text| {
                ports::parse_payment_cursor(text)
                    .ok_or_else(|| StoreError::InvalidCursor(text.chars().take(80).collect()))
            })
            .transpose()?;
        let tables = self.lock();
        let open = tables
            .payments
            .values()
            .filter(|p| p.is_open() && ports::open_shard(&p.payment_id.to_string()) == shard);
        Ok(open_page(
            open,
            |p| (p.created_at, p.payment_id),
            since,
            after,
            limit,
            ports::payment_cursor,
        ))
    }
}

#[async_trait]
impl PaymentEventRepo for InMemoryStore {
    async fn append(&self, event: &PaymentEvent) -> Result<(), StoreError> {
        let mut tables = self.lock();
        let key = (event.payment_id, event.sort_key());
        if tables.events.contains_key(&key) {
            return Ok(());
        }
        tables.injected_failure()?;
        tables.events.insert(key, event.clone());
        Ok(())
    }

    async fn events(
        &self,
        payment_id: &PaymentId,
        limit: u32,
    ) -> Result<Vec<PaymentEvent>, StoreError> {
        let limit = usize::try_from(ports::page_limit(limit)).unwrap_or(usize::MAX);
        let tables = self.lock();
        let range = tables.events.range((*payment_id, String::new())..);
        Ok(range
            .take_while(|((id, _), _)| id == payment_id)
            .take(limit)
            .map(|(_, event)| event.clone())
            .collect())
    }
}

#[async_trait]
impl WalletRepo for InMemoryStore {
    async fn open(
        &self,
        user_id: &UserId,
        currency: Currency,
        at: Timestamp,
    ) -> Result<Wallet, WalletError> {
        let mut tables = self.lock();
        let key = WalletKey::new(user_id.clone(), currency);
        if let Some(wallet) = tables.wallets.get(&key) {
            return Ok(wallet.clone());
        }
        tables.injected_failure()?;
        let wallet = Wallet::open(user_id.clone(), currency, at);
        tables.wallets.insert(key, wallet.clone());
        Ok(wallet)
    }

    async fn get(&self, key: &WalletKey) -> Result<Option<Wallet>, WalletError> {
        Ok(self.lock().wallets.get(key).cloned())
    }

    async fn wallets_of(&self, user_id: &UserId) -> Result<Vec<Wallet>, WalletError> {
        let cap = usize::try_from(WALLET_COUNT_PER_USER_MAX).unwrap_or(usize::MAX);
        let tables = self.lock();
        Ok(tables
            .wallets
            .values()
            .filter(|w| &w.user_id == user_id)
            .take(cap)
            .cloned()
            .collect())
    }

    async fn apply(
        &self,
        movement: &Movement,
        at: Timestamp,
    ) -> Result<MovementReceipt, WalletError> {
        let mut tables = self.lock();
        let key = movement.wallet_key();
        let Some(wallet) = tables.wallets.get(&key).cloned() else {
            // No wallet, so no debit: a compensation closes it all the same,
            // since a wallet opened later would give a late debit money to take.
            close_debit(&mut tables, movement, at)?;
            return Err(WalletError::WalletNotFound(key));
        };
        let tx_id = movement.tx_id();
        if let Some(existing) = tables.ledger.get(&(key.clone(), tx_id.clone())) {
            return ports::replay_or_conflict(existing, movement);
        }
        if let Some(own_tx_id) = movement.closable_tx_id()
            && tables
                .debit_closures
                .contains_key(&(key.clone(), own_tx_id.clone()))
        {
            return Err(WalletError::PaymentCompensated { tx_id: own_tx_id });
        }
        if let Some(debit_tx_id) = movement.debit_tx_id() {
            let debit = tables.ledger.get(&(key.clone(), debit_tx_id.clone()));
            if !debit.is_some_and(|debit| debit.is_returnable_by(movement)) {
                if debit.is_none() {
                    close_debit(&mut tables, movement, at)?;
                }
                return Err(WalletError::DebitNotFound { tx_id: debit_tx_id });
            }
        }
        let (next, entry) = wallet.apply(movement, at)?;
        tables.injected_failure()?;
        tables.wallets.insert(key.clone(), next);
        tables.ledger.insert((key, tx_id), entry.clone());
        Ok(MovementReceipt {
            entry,
            replayed: false,
        })
    }

    async fn entry(
        &self,
        key: &WalletKey,
        tx_id: &str,
    ) -> Result<Option<LedgerEntry>, WalletError> {
        Ok(self
            .lock()
            .ledger
            .get(&(key.clone(), tx_id.to_owned()))
            .cloned())
    }

    async fn ledger(
        &self,
        key: &WalletKey,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<Page<LedgerEntry>, WalletError> {
        let limit = usize::try_from(ports::page_limit(limit)).unwrap_or(usize::MAX);
        let tables = self.lock();
        let mut entries = tables
            .ledger
            .range((key.clone(), cursor.unwrap_or_default().to_owned())..)
            .take_while(|((k, _), _)| k == key)
            .filter(|((_, tx_id), _)| cursor.is_none_or(|after| tx_id.as_str() > after))
            .map(|(_, entry)| entry.clone());
        let items: Vec<LedgerEntry> = entries.by_ref().take(limit).collect();
        let more = entries.next().is_some();
        let cursor = if more {
            items.last().map(|entry| entry.tx_id.clone())
        } else {
            None
        };
        Ok(Page { items, cursor })
    }
}

/// A compensation that found no debit closes the payment's debit, once; the
/// same lock as every debit makes check and write one step, as the DynamoDB
/// transaction does. Other movements close nothing.
fn close_debit(tables: &mut Tables, movement: &Movement, at: Timestamp) -> Result<(), RepoError> {
    let Some(closure) = DebitClosure::by(movement, at) else {
        return Ok(());
    };
    let closure_key = (closure.wallet_key(), closure.debit_tx_id());
    if tables.debit_closures.contains_key(&closure_key) {
        return Ok(());
    }
    tables.injected_failure()?;
    tables.debit_closures.insert(closure_key, closure);
    Ok(())
}

#[async_trait]
impl RefundRepo for InMemoryStore {
    async fn create(&self, refund: &Refund) -> Result<Created<Refund>, StoreError> {
        let mut tables = self.lock();
        if let Some(existing) = tables.refunds.get(&refund.refund_id) {
            if existing.same_request(refund) {
                return Ok(Created::Existing(existing.clone()));
            }
            let id = refund.refund_id.to_string();
            return Err(StoreError::AlreadyExists {
                entity: Entity::Refund,
                id,
            });
        }
        tables.injected_failure()?;
        tables.refunds.insert(refund.refund_id, refund.clone());
        Ok(Created::New(refund.clone()))
    }

    async fn get(&self, refund_id: &RefundId) -> Result<Option<Refund>, StoreError> {
        Ok(self.lock().refunds.get(refund_id).cloned())
    }

    async fn refunds_of(&self, payment_id: &PaymentId) -> Result<Vec<Refund>, StoreError> {
        let cap = usize::try_from(PAGE_LIMIT_MAX).unwrap_or(usize::MAX);
        let tables = self.lock();
        let mut refunds: Vec<Refund> = tables
            .refunds
            .values()
            .filter(|r| &r.payment_id == payment_id)
            .cloned()
            .collect();
        refunds.sort_by_key(|r| (r.created_at, r.refund_id));
        refunds.truncate(cap);
        Ok(refunds)
    }

    async fn open_refunds(
        &self,
        shard: u32,
        since: Option<Timestamp>,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<Page<Refund>, StoreError> {
        let after = cursor
            .map(|text| {
                ports::parse_refund_cursor(text)
                    .ok_or_else(|| StoreError::InvalidCursor(text.chars().take(80).collect()))
            })
            .transpose()?;
        let tables = self.lock();
        let open = tables
            .refunds
            .values()
            .filter(|r| r.is_open() && ports::open_shard(&r.refund_id.to_string()) == shard);
        Ok(open_page(
            open,
            |r| (r.created_at, r.refund_id),
            since,
            after,
            limit,
            ports::refund_cursor,
        ))
    }

    async fn save(&self, next: &Refund) -> Result<(), StoreError> {
        let mut tables = self.lock();
        let id = next.refund_id.to_string();
        let current = tables
            .refunds
            .get(&next.refund_id)
            .ok_or_else(|| StoreError::NotFound {
                entity: Entity::Refund,
                id: id.clone(),
            })?;
        if current.version.saturating_add(1) != next.version {
            return Err(StoreError::StaleVersion {
                entity: Entity::Refund,
                id,
            });
        }
        tables.injected_failure()?;
        tables.refunds.insert(next.refund_id, next.clone());
        Ok(())
    }

    async fn fail_and_release(
        &self,
        failed: &Refund,
        payment: &Payment,
        at: Timestamp,
    ) -> Result<Payment, StoreError> {
        let mut tables = self.lock();
        let stale = |entity: Entity, id: String| StoreError::StaleVersion { entity, id };
        let stored_refund =
            tables
                .refunds
                .get(&failed.refund_id)
                .ok_or_else(|| StoreError::NotFound {
                    entity: Entity::Refund,
                    id: failed.refund_id.to_string(),
                })?;
        if stored_refund.version.saturating_add(1) != failed.version {
            return Err(stale(Entity::Refund, failed.refund_id.to_string()));
        }
        let stored_payment = tables
            .payments
            .get(&payment.payment_id)
            .ok_or_else(|| StoreError::payment_not_found(payment.payment_id))?;
        if stored_payment.version != payment.version {
            return Err(stale(Entity::Payment, payment.payment_id.to_string()));
        }
        let (after, event) = failed.release_on(payment, at)?;
        tables.injected_failure()?;
        tables
            .events
            .insert((after.payment_id, event.sort_key()), event);
        tables.payments.insert(after.payment_id, after.clone());
        tables.refunds.insert(failed.refund_id, failed.clone());
        Ok(after)
    }

    async fn reserve(
        &self,
        refund: &Refund,
        payment: &Payment,
        at: Timestamp,
    ) -> Result<Created<(Refund, Payment)>, StoreError> {
        // One lock over all tables: the refund, the payment and the event are
        // written together or not at all, like the DynamoDB transaction.
        let mut tables = self.lock();
        if let Some(existing) = tables.refunds.get(&refund.refund_id) {
            if !existing.same_request(refund) {
                let id = refund.refund_id.to_string();
                return Err(StoreError::AlreadyExists {
                    entity: Entity::Refund,
                    id,
                });
            }
            let existing = existing.clone();
            let current = tables
                .payments
                .get(&existing.payment_id)
                .cloned()
                .ok_or_else(|| StoreError::payment_not_found(existing.payment_id))?;
            return Ok(Created::Existing((existing, current)));
        }
        let (after, event) = refund.reserve_on(payment, at)?;
        let stored_version = tables
            .payments
            .get(&payment.payment_id)
            .map(|stored| stored.version)
            .ok_or_else(|| StoreError::payment_not_found(payment.payment_id))?;
        if stored_version != payment.version {
            let id = payment.payment_id.to_string();
            return Err(StoreError::StaleVersion {
                entity: Entity::Payment,
                id,
            });
        }
        tables.injected_failure()?;
        tables.refunds.insert(refund.refund_id, refund.clone());
        tables
            .events
            .insert((after.payment_id, event.sort_key()), event);
        tables.payments.insert(after.payment_id, after.clone());
        Ok(Created::New((refund.clone(), after)))
    }
}

#[async_trait]
impl IdempotencyRepo for InMemoryStore {
    async fn claim(
        &self,
        record: &IdempotencyRecord,
        now: Timestamp,
    ) -> Result<ClaimOutcome, StoreError> {
        let mut tables = self.lock();
        if let Some(existing) = tables.idempotency.get(&record.idempotency_key)
            && !existing.is_expired(now)
        {
            return Ok(ClaimOutcome::Existing(existing.clone()));
        }
        tables.injected_failure()?;
        tables
            .idempotency
            .insert(record.idempotency_key.clone(), record.clone());
        Ok(ClaimOutcome::Claimed)
    }

    async fn complete(&self, key: &str, state: &IdempotencyState) -> Result<(), StoreError> {
        let mut tables = self.lock();
        let not_found = || StoreError::NotFound {
            entity: Entity::IdempotencyRecord,
            id: key.to_owned(),
        };
        let in_progress = tables
            .idempotency
            .get(key)
            .is_some_and(|record| record.state == IdempotencyState::InProgress);
        if !in_progress {
            return Err(not_found());
        }
        tables.injected_failure()?;
        let record = tables.idempotency.get_mut(key).ok_or_else(not_found)?;
        record.state = state.clone();
        Ok(())
    }

    async fn release(&self, key: &str, claimed_at: Timestamp) -> Result<(), StoreError> {
        let mut tables = self.lock();
        tables.injected_failure()?;
        let in_progress = tables.idempotency.get(key).is_some_and(|record| {
            record.state == IdempotencyState::InProgress && record.created_at == claimed_at
        });
        if in_progress {
            tables.idempotency.remove(key);
        }
        Ok(())
    }
}

#[async_trait]
impl BreakerStore for InMemoryStore {
    async fn load(&self, service_name: &str, now: Timestamp) -> Result<BreakerRecord, StoreError> {
        let tables = self.lock();
        Ok(tables
            .breakers
            .get(service_name)
            .cloned()
            .unwrap_or_else(|| BreakerRecord::closed(service_name.to_owned(), now)))
    }

    async fn save(&self, next: &BreakerRecord) -> Result<(), StoreError> {
        let mut tables = self.lock();
        let stored_version = tables
            .breakers
            .get(&next.service_name)
            .map_or(0, |r| r.version);
        if stored_version.saturating_add(1) != next.version {
            let id = next.service_name.clone();
            return Err(StoreError::StaleVersion {
                entity: Entity::Breaker,
                id,
            });
        }
        tables.injected_failure()?;
        tables
            .breakers
            .insert(next.service_name.clone(), next.clone());
        Ok(())
    }
}
