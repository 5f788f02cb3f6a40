//! Wallets and their ledger on DynamoDB: every movement is ONE
//! `TransactWriteItems` of the wallet update (conditioned on its version, and
//! on the balance for a debit) and the ledger put (conditioned on a new `txId`),
//! plus, for money given back, a condition check on the debit it returns.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{ConditionCheck, TransactWriteItem, Update};

use crate::domain::{
    Currency, LedgerEntry, Movement, MovementKind, MovementReceipt, Timestamp, UserId, Wallet,
    WalletKey,
};
use crate::error::{RepoError, WalletError};
use crate::ports::{self, Page, VERSION_ATTEMPT_COUNT_MAX, WALLET_COUNT_PER_USER_MAX, WalletRepo};

use super::item::Attributes;
use super::records::{conditional_put, key, n, names, s};
use super::{DynamoStore, TransactOutcome};
use super::{attr, failed_condition, is_condition_failed, mapping, repo_error, transact_outcome};

/// Positions of the items in a movement transaction (the wallet update is 0).
const LEDGER_ITEM: usize = 1;
const DEBIT_CHECK_ITEM: usize = 2;

fn wallet_key_attrs(key_value: &WalletKey) -> Attributes {
    key(&[
        (attr::USER_ID, s(&key_value.user_id)),
        (attr::CURRENCY, s(key_value.currency)),
    ])
}

fn ledger_key_attrs(key_value: &WalletKey, tx_id: &str) -> Attributes {
    key(&[(attr::WALLET_KEY, s(key_value)), (attr::TX_ID, s(tx_id))])
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
    /// earlier identical one (a retried debit after the balance dropped).
    async fn refused(
        &self,
        movement: &Movement,
        reason: WalletError,
    ) -> Result<MovementReceipt, WalletError> {
        match self
            .read_entry(&movement.wallet_key(), &movement.tx_id())
            .await?
        {
            Some(existing) => ports::replay_or_conflict(&existing, movement),
            None => Err(reason),
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
        if let Some(debit_tx_id) =
            debit_tx_id.filter(|_| failed_condition(&reasons, DEBIT_CHECK_ITEM))
        {
            return Err(WalletError::DebitNotFound { tx_id: debit_tx_id });
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
            let wallet = self
                .read_wallet(&key_value)
                .await?
                .ok_or_else(|| WalletError::WalletNotFound(key_value.clone()))?;
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
