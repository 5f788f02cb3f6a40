//! Wallets and their ledger on DynamoDB: every movement is ONE
//! `TransactWriteItems` of the wallet update (conditioned on its version, and
//! on the balance for a debit) and the ledger put (conditioned on a new `txId`),
//! plus, for money given back, a condition check on the debit it returns, and,
//! for a debit, a condition check that its payment's debit is not closed.
//!
//! Debit closures ([`DebitClosure`]) live in the ledger table but outside
//! every ledger partition: partition key `{walletKey}#CLOSED`, sort key the
//! closed debit's `txId` (`pay_X#DEBIT`). A wallet key holds exactly one `#`
//! (`#` cannot occur in a user id), so the closure partition never is a wallet
//! key, and a ledger Query by wallet key never returns a closure. The item
//! carries `kind = DEBIT_CLOSED`, which no `MovementKind` parses, and no
//! amount, so nothing can mistake it for money. A compensation that finds no
//! debit writes the closure in one transaction with a check that the debit is
//! still absent; the debit's transaction checks that the closure is absent.
//! DynamoDB serializes the two, so exactly one of them commits.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{ConditionCheck, TransactWriteItem, Update};

use crate::domain::wallet::DebitClosure;
use crate::domain::{
    Currency, LedgerEntry, Movement, MovementKind, MovementReceipt, Timestamp, UserId, Wallet,
    WalletKey,
};
use crate::error::{RepoError, WalletError};
use crate::ports::{self, Page, VERSION_ATTEMPT_COUNT_MAX, WALLET_COUNT_PER_USER_MAX, WalletRepo};

use super::item::{Attributes, ItemBuilder};
use super::records::{conditional_put, key, n, names, s};
use super::{DynamoStore, TransactOutcome};
use super::{attr, failed_condition, is_condition_failed, mapping, repo_error, transact_outcome};

/// Positions of the items in a movement transaction (the wallet update is 0).
const LEDGER_ITEM: usize = 1;
/// Money given back: the check on the debit it returns.
const DEBIT_CHECK_ITEM: usize = 2;
/// A debit: the check that its payment's debit is not closed.
const CLOSURE_CHECK_ITEM: usize = 2;

/// Position of the closure put in a closure transaction (the check that the
/// debit is absent is 1).
const CLOSURE_ITEM: usize = 0;

/// Appended to a wallet key to make the partition of its debit closures.
const CLOSURE_PARTITION_SUFFIX: &str = "#CLOSED";
/// The `kind` of a closure item: deliberately not a `MovementKind`.
const KIND_DEBIT_CLOSED: &str = "DEBIT_CLOSED";

fn wallet_key_attrs(key_value: &WalletKey) -> Attributes {
    key(&[
        (attr::USER_ID, s(&key_value.user_id)),
        (attr::CURRENCY, s(key_value.currency)),
    ])
}

fn ledger_key_attrs(key_value: &WalletKey, tx_id: &str) -> Attributes {
    key(&[(attr::WALLET_KEY, s(key_value)), (attr::TX_ID, s(tx_id))])
}

fn closure_key_attrs(key_value: &WalletKey, debit_tx_id: &str) -> Attributes {
    key(&[
        (
            attr::WALLET_KEY,
            s(format!("{key_value}{CLOSURE_PARTITION_SUFFIX}")),
        ),
        (attr::TX_ID, s(debit_tx_id)),
    ])
}

/// The closure item: its key, and what closed which debit when. Only ever
/// written and checked for existence, never read back into a value.
fn closure_to_item(closure: &DebitClosure) -> Attributes {
    let mut item = closure_key_attrs(&closure.wallet_key(), &closure.debit_tx_id());
    item.extend(
        ItemBuilder::new()
            .s(attr::USER_ID, &closure.user_id)
            .s(attr::CURRENCY, closure.currency)
            .s(attr::PAYMENT_ID, closure.payment_id)
            .s(attr::KIND, KIND_DEBIT_CLOSED)
            .s(attr::CREATED_AT, closure.created_at)
            .build(),
    );
    item
}

fn rejected(err: impl std::fmt::Display) -> RepoError {
    RepoError::Rejected(err.to_string())
}

impl DynamoStore {
    async fn read_wallet(&self, key_value: &WalletKey) -> Result<Option<Wallet>, RepoError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.tables.wallets)
            .set_key(Some(wallet_key_attrs(key_value)))
            .consistent_read(true)
            .send()
            .await
            .map_err(repo_error)?;
        output
            .item
            .as_ref()
            .map(mapping::wallet_from_item)
            .transpose()
    }

    async fn read_entry(
        &self,
        key_value: &WalletKey,
        tx_id: &str,
    ) -> Result<Option<LedgerEntry>, RepoError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.tables.wallet_transactions)
            .set_key(Some(ledger_key_attrs(key_value, tx_id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(repo_error)?;
        output
            .item
            .as_ref()
            .map(mapping::ledger_from_item)
            .transpose()
    }

    /// Whether `debit_tx_id` of this wallet is closed (strongly consistent).
    async fn is_closed(&self, key_value: &WalletKey, debit_tx_id: &str) -> Result<bool, RepoError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.tables.wallet_transactions)
            .set_key(Some(closure_key_attrs(key_value, debit_tx_id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(repo_error)?;
        Ok(output.item.is_some())
    }

    /// A condition check that the ledger-table item at `item_key` does not exist.
    fn absent_check(&self, item_key: Attributes) -> Result<TransactWriteItem, RepoError> {
        let check = ConditionCheck::builder()
            .table_name(&self.tables.wallet_transactions)
            .set_key(Some(item_key))
            .condition_expression("attribute_not_exists(#txId)")
            .set_expression_attribute_names(Some(names(&[attr::TX_ID])))
            .build()
            .map_err(rejected)?;
        Ok(TransactWriteItem::builder().condition_check(check).build())
    }

    /// Closes the payment's debit: the closure put (once) and a check that the
    /// debit is still absent, in one transaction. `true` when the debit is
    /// closed, now or earlier; `false` when it is not (a debit committed
    /// meanwhile, or a concurrent transaction interfered): the caller reads
    /// again and re-decides.
    async fn close_debit(&self, closure: &DebitClosure) -> Result<bool, RepoError> {
        let debit_key = ledger_key_attrs(&closure.wallet_key(), &closure.debit_tx_id());
        let request = self
            .client
            .transact_write_items()
            .transact_items(conditional_put(
                &self.tables.wallet_transactions,
                closure_to_item(closure),
                "attribute_not_exists(#txId)",
                &[attr::TX_ID],
                None,
            )?)
            .transact_items(self.absent_check(debit_key)?);
        match transact_outcome(request.send().await.map(|_| ()))? {
            TransactOutcome::Committed => Ok(true),
            // Closed before: a closed debit can never have been taken since.
            TransactOutcome::Cancelled(reasons) if failed_condition(&reasons, CLOSURE_ITEM) => {
                Ok(true)
            }
            // The debit is there now (item 1 failed), or another
            // transaction held one of the items: nothing was written.
            TransactOutcome::Cancelled(_) => Ok(false),
        }
    }

    /// A compensation or refund whose debit check failed. A debit of another
    /// amount stays `DebitNotFound`. No debit at all: a compensation closes
    /// it first (so no debit can follow) and then answers `DebitNotFound`.
    async fn debit_not_found(
        &self,
        movement: &Movement,
        debit_tx_id: String,
        at: Timestamp,
    ) -> Result<Option<MovementReceipt>, WalletError> {
        match self
            .read_entry(&movement.wallet_key(), &debit_tx_id)
            .await?
        {
            // Committed after our transaction was evaluated: try again.
            Some(debit) if debit.is_returnable_by(movement) => Ok(None),
            Some(_) => Err(WalletError::DebitNotFound { tx_id: debit_tx_id }),
            None => match DebitClosure::by(movement, at) {
                Some(closure) if !self.close_debit(&closure).await? => Ok(None),
                Some(_) | None => Err(WalletError::DebitNotFound { tx_id: debit_tx_id }),
            },
        }
    }

    /// The wallet update: DynamoDB does the arithmetic on the exact Number;
    /// the version condition makes it the update we computed `next` from.
    fn wallet_update(
        &self,
        wallet: &Wallet,
        next: &Wallet,
        movement: &Movement,
    ) -> Result<TransactWriteItem, RepoError> {
        let is_debit = movement.kind() == MovementKind::Debit;
        let (update, condition) = if is_debit {
            (
                "SET #balance = #balance - :amount, #version = :next, #updatedAt = :now",
                "#version = :expected AND #balance >= :amount",
            )
        } else {
            (
                "SET #balance = #balance + :amount, #version = :next, #updatedAt = :now",
                "#version = :expected",
            )
        };
        let values = key(&[
            (":amount", n(movement.amount.amount())),
            (":next", n(next.version)),
            (":expected", n(wallet.version)),
            (":now", s(next.updated_at)),
        ]);
        let update = Update::builder()
            .table_name(&self.tables.wallets)
            .set_key(Some(wallet_key_attrs(&wallet.key())))
            .update_expression(update)
            .condition_expression(condition)
            .set_expression_attribute_names(Some(names(&[
                attr::BALANCE,
                attr::VERSION,
                attr::UPDATED_AT,
            ])))
            .set_expression_attribute_values(Some(values))
            .build()
            .map_err(rejected)?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// Money given back must have left through this payment's debit: exactly
    /// its amount for a compensation, at most its amount for a refund.
    fn debit_check(
        &self,
        movement: &Movement,
        debit_tx_id: &str,
    ) -> Result<TransactWriteItem, RepoError> {
        let amount_rule = match movement.kind() {
            MovementKind::Refund => "#amount >= :amount",
            MovementKind::Compensation | MovementKind::Debit | MovementKind::TopUp => {
                "#amount = :amount"
            }
        };
        let check = ConditionCheck::builder()
            .table_name(&self.tables.wallet_transactions)
            .set_key(Some(ledger_key_attrs(&movement.wallet_key(), debit_tx_id)))
            .condition_expression(format!(
                "attribute_exists(#txId) AND #kind = :debit AND {amount_rule}"
            ))
            .set_expression_attribute_names(Some(names(&[attr::TX_ID, attr::KIND, attr::AMOUNT])))
            .set_expression_attribute_values(Some(key(&[
                (":debit", s(MovementKind::Debit.as_str())),
                (":amount", n(movement.amount.amount())),
            ])))
            .build()
            .map_err(rejected)?;
        Ok(TransactWriteItem::builder().condition_check(check).build())
    }

    /// A movement that will not be written: it may still be a replay of an
    /// earlier identical one (a retried debit after the balance dropped). A
    /// debit whose payment's debit is closed is refused for that first, as
    /// the in-memory store does. Reads only: nothing is written on refusal.
    async fn refused(
        &self,
        movement: &Movement,
        reason: WalletError,
    ) -> Result<MovementReceipt, WalletError> {
        let key_value = movement.wallet_key();
        if let Some(existing) = self.read_entry(&key_value, &movement.tx_id()).await? {
            return ports::replay_or_conflict(&existing, movement);
        }
        match movement.closable_tx_id() {
            Some(own_tx_id) if self.is_closed(&key_value, &own_tx_id).await? => {
                Err(WalletError::PaymentCompensated { tx_id: own_tx_id })
            }
            Some(_) | None => Err(reason),
        }
    }

    async fn try_apply(
        &self,
        wallet: &Wallet,
        movement: &Movement,
        at: Timestamp,
    ) -> Result<Option<MovementReceipt>, WalletError> {
        let (next, entry) = match wallet.apply(movement, at) {
            Ok(applied) => applied,
            Err(err) => return self.refused(movement, err.into()).await.map(Some),
        };
        let mut request = self
            .client
            .transact_write_items()
            .transact_items(self.wallet_update(wallet, &next, movement)?)
            .transact_items(conditional_put(
                &self.tables.wallet_transactions,
                mapping::ledger_to_item(&entry),
                "attribute_not_exists(#txId)",
                &[attr::TX_ID],
                None,
            )?);
        let debit_tx_id = movement.debit_tx_id();
        if let Some(debit_tx_id) = &debit_tx_id {
            request = request.transact_items(self.debit_check(movement, debit_tx_id)?);
        }
        let own_tx_id = movement.closable_tx_id();
        if let Some(own_tx_id) = &own_tx_id {
            // In the debit's own transaction, never a read before it: a
            // closure committed at any moment before this debit refuses it.
            let closure_key = closure_key_attrs(&movement.wallet_key(), own_tx_id);
            request = request.transact_items(self.absent_check(closure_key)?);
        }
        let reasons = match transact_outcome(request.send().await.map(|_| ()))? {
            TransactOutcome::Committed => {
                return Ok(Some(MovementReceipt {
                    entry,
                    replayed: false,
                }));
            }
            TransactOutcome::Cancelled(reasons) => reasons,
        };
        if failed_condition(&reasons, LEDGER_ITEM) {
            let existing = self
                .read_entry(&movement.wallet_key(), &movement.tx_id())
                .await?;
            return match existing {
                Some(existing) => ports::replay_or_conflict(&existing, movement).map(Some),
                // Seen taken, then gone: ledger entries are never deleted.
                None => Err(RepoError::Corrupt(format!(
                    "ledger entry {} vanished",
                    movement.tx_id()
                ))
                .into()),
            };
        }
        if let Some(own_tx_id) =
            own_tx_id.filter(|_| failed_condition(&reasons, CLOSURE_CHECK_ITEM))
        {
            return Err(WalletError::PaymentCompensated { tx_id: own_tx_id });
        }
        if let Some(debit_tx_id) =
            debit_tx_id.filter(|_| failed_condition(&reasons, DEBIT_CHECK_ITEM))
        {
            return self.debit_not_found(movement, debit_tx_id, at).await;
        }
        // The wallet moved on since we read it (or a concurrent transaction
        // touched it): the caller reads again and re-decides.
        Ok(None)
    }
}

#[async_trait]
impl WalletRepo for DynamoStore {
    async fn open(
        &self,
        user_id: &UserId,
        currency: Currency,
        at: Timestamp,
    ) -> Result<Wallet, WalletError> {
        let wallet = Wallet::open(user_id.clone(), currency, at);
        let result = self
            .client
            .put_item()
            .table_name(&self.tables.wallets)
            .set_item(Some(mapping::wallet_to_item(&wallet)))
            .condition_expression("attribute_not_exists(#userId)")
            .set_expression_attribute_names(Some(names(&[attr::USER_ID])))
            .send()
            .await;
        match result {
            Ok(_) => Ok(wallet),
            Err(err) if is_condition_failed(&err) => {
                let key_value = wallet.key();
                self.read_wallet(&key_value)
                    .await?
                    .ok_or(WalletError::WalletNotFound(key_value))
            }
            Err(err) => Err(repo_error(err).into()),
        }
    }

    async fn get(&self, key_value: &WalletKey) -> Result<Option<Wallet>, WalletError> {
        Ok(self.read_wallet(key_value).await?)
    }

    async fn wallets_of(&self, user_id: &UserId) -> Result<Vec<Wallet>, WalletError> {
        let output = self
            .client
            .query()
            .table_name(&self.tables.wallets)
            .key_condition_expression("#userId = :user")
            .set_expression_attribute_names(Some(names(&[attr::USER_ID])))
            .expression_attribute_values(":user", s(user_id))
            .consistent_read(true)
            .limit(i32::try_from(WALLET_COUNT_PER_USER_MAX).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(repo_error)?;
        Ok(output
            .items()
            .iter()
            .map(mapping::wallet_from_item)
            .collect::<Result<_, _>>()?)
    }

    async fn apply(
        &self,
        movement: &Movement,
        at: Timestamp,
    ) -> Result<MovementReceipt, WalletError> {
        let key_value = movement.wallet_key();
        for _ in 0..VERSION_ATTEMPT_COUNT_MAX {
            let Some(wallet) = self.read_wallet(&key_value).await? else {
                // No wallet, so no debit: a compensation closes it all the
                // same, since a wallet opened later would give a late debit
                // money to take.
                match DebitClosure::by(movement, at) {
                    Some(closure) if !self.close_debit(&closure).await? => continue,
                    Some(_) | None => return Err(WalletError::WalletNotFound(key_value)),
                }
            };
            if let Some(receipt) = self.try_apply(&wallet, movement, at).await? {
                return Ok(receipt);
            }
        }
        Err(WalletError::VersionConflict {
            key: key_value,
            attempt_count: VERSION_ATTEMPT_COUNT_MAX,
        })
    }

    async fn entry(
        &self,
        key_value: &WalletKey,
        tx_id: &str,
    ) -> Result<Option<LedgerEntry>, WalletError> {
        Ok(self.read_entry(key_value, tx_id).await?)
    }

    async fn ledger(
        &self,
        key_value: &WalletKey,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<Page<LedgerEntry>, WalletError> {
        let limit = ports::page_limit(limit);
        let start = cursor.map(|tx_id| ledger_key_attrs(key_value, tx_id));
        let output = self
            .client
            .query()
            .table_name(&self.tables.wallet_transactions)
            .key_condition_expression("#walletKey = :wallet")
            .set_expression_attribute_names(Some(names(&[attr::WALLET_KEY])))
            .expression_attribute_values(":wallet", s(key_value))
            .consistent_read(true)
            .limit(i32::try_from(limit.saturating_add(1)).unwrap_or(i32::MAX))
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(repo_error)?;
        let mut items: Vec<LedgerEntry> = output
            .items()
            .iter()
            .map(mapping::ledger_from_item)
            .collect::<Result<_, _>>()?;
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let more = items.len() > limit;
        items.truncate(limit);
        let cursor = if more {
            items.last().map(|entry| entry.tx_id.clone())
        } else {
            None
        };
        Ok(Page { items, cursor })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use aws_sdk_dynamodb::types::AttributeValue;

    use super::*;
    use crate::domain::{Money, PaymentId};

    #[test]
    fn a_closure_lives_outside_every_ledger_partition_and_is_no_entry() {
        // GIVEN the closure a compensation leaves when it finds no debit
        let user_id = UserId::parse("user_1").unwrap();
        let payment_id = PaymentId::generate();
        let amount = Money::parse("10", "USD").unwrap();
        let compensation = Movement::compensation(user_id, payment_id, amount);
        let closure = DebitClosure::by(&compensation, Timestamp::now()).unwrap();
        // WHEN it becomes an item
        let item = closure_to_item(&closure);
        // THEN its partition is not the wallet's ledger partition
        let ledger_partition = s(compensation.wallet_key());
        let partition = item.get(attr::WALLET_KEY).unwrap();
        assert_ne!(partition, &ledger_partition);
        assert_eq!(
            partition,
            &AttributeValue::S(format!("{}#CLOSED", compensation.wallet_key()))
        );
        // AND it is keyed by the debit it closes
        assert_eq!(
            item.get(attr::TX_ID).unwrap(),
            &s(format!("{payment_id}#DEBIT"))
        );
        // AND nothing can read it as money
        assert!(!item.contains_key(attr::AMOUNT));
        assert!(mapping::ledger_from_item(&item).is_err());
    }
}
