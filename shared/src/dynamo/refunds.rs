//! Refund reservation on DynamoDB: the new refund, the payment's refunded
//! amount and status, and the payment's audit event are ONE
//! `TransactWriteItems`, so two refunds racing on one payment can never take
//! more than its amount between them.

use aws_sdk_dynamodb::types::TransactWriteItem;

use crate::domain::{Payment, PaymentEvent, Refund, Timestamp};
use crate::error::{Entity, StoreError};
use crate::ports::{Created, RefundRepo};

use super::records::{conditional_put, key, n};
use super::{DynamoStore, TransactOutcome, attr, failed_condition, mapping, transact_outcome};

/// Positions of the items in a reservation transaction.
const REFUND_ITEM: usize = 0;
const PAYMENT_ITEM: usize = 1;

impl DynamoStore {
    /// One transaction: `refund_put` (at [`REFUND_ITEM`]), the payment
    /// `after` conditioned on `expected_version` (at [`PAYMENT_ITEM`]) and
    /// its event: how a refund and the payment it changes are written
    /// together.
    async fn write_with_payment(
        &self,
        refund_put: TransactWriteItem,
        after: &Payment,
        expected_version: u64,
        event: &PaymentEvent,
    ) -> Result<TransactOutcome, StoreError> {
        let items = [
            refund_put,
            conditional_put(
                &self.tables.payments,
                mapping::payment_to_item(after),
                "#version = :expected",
                &[attr::VERSION],
                Some(key(&[(":expected", n(expected_version))])),
            )?,
            conditional_put(
                &self.tables.payment_events,
                mapping::event_to_item(event),
                "attribute_not_exists(#sk)",
                &[attr::SORT_KEY],
                None,
            )?,
        ];
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items.to_vec()))
            .send()
            .await
            .map(|_| ());
        Ok(transact_outcome(result)?)
    }

    /// See [`RefundRepo::reserve`].
    pub(super) async fn reserve_refund(
        &self,
        refund: &Refund,
        payment: &Payment,
        at: Timestamp,
    ) -> Result<Created<(Refund, Payment)>, StoreError> {
        let (after, event) = match refund.reserve_on(payment, at) {
            Ok(reserved) => reserved,
            // A retried reservation may find the payment already changed by
            // this very refund: that is a replay, not a refusal.
            Err(err) => return self.existing_refund(refund, err.into()).await,
        };
        let refund_put = conditional_put(
            &self.tables.refunds,
            mapping::refund_to_item(refund),
            "attribute_not_exists(#refundId)",
            &[attr::REFUND_ID],
            None,
        )?;
        let reasons = match self
            .write_with_payment(refund_put, &after, payment.version, &event)
            .await?
        {
            TransactOutcome::Committed => return Ok(Created::New((refund.clone(), after))),
            TransactOutcome::Cancelled(reasons) => reasons,
        };
        let stale = StoreError::StaleVersion {
            entity: Entity::Payment,
            id: payment.payment_id.to_string(),
        };
        if failed_condition(&reasons, REFUND_ITEM) {
            return self.existing_refund(refund, stale).await;
        }
        if failed_condition(&reasons, PAYMENT_ITEM)
            && self.get_payment(&payment.payment_id).await?.is_none()
        {
            return Err(StoreError::payment_not_found(payment.payment_id));
        }
        // The payment's version moved on, or a concurrent transaction held one
        // of the items (`TransactionConflict`): nothing was written either way,
        // and the caller reads again and re-decides.
        Err(stale)
    }

    /// [`RefundRepo::fail_and_release`]: the FAILED refund, the payment
    /// with its reservation given back and its event, in one transaction.
    pub(super) async fn fail_and_release_refund(
        &self,
        failed: &Refund,
        payment: &Payment,
        at: Timestamp,
    ) -> Result<Payment, StoreError> {
        let (after, event) = failed.release_on(payment, at)?;
        let refund_put = conditional_put(
            &self.tables.refunds,
            mapping::refund_to_item(failed),
            "#version = :expected",
            &[attr::VERSION],
            Some(key(&[(":expected", n(failed.version.saturating_sub(1)))])),
        )?;
        let reasons = match self
            .write_with_payment(refund_put, &after, payment.version, &event)
            .await?
        {
            TransactOutcome::Committed => return Ok(after),
            TransactOutcome::Cancelled(reasons) => reasons,
        };
        if failed_condition(&reasons, REFUND_ITEM) {
            return Err(StoreError::StaleVersion {
                entity: Entity::Refund,
                id: failed.refund_id.to_string(),
            });
        }
        // The payment's version moved on, or a concurrent transaction held an
        // item: nothing was written; the caller reads again and re-decides.
        Err(StoreError::StaleVersion {
            entity: Entity::Payment,
            id: payment.payment_id.to_string(),
        })
    }

    /// The refund stored under `refund`'s id: the same request is a replay
    /// (with the payment as it is now); a different one conflicts; none at all
    /// means `otherwise` is the real answer.
    async fn existing_refund(
        &self,
        refund: &Refund,
        otherwise: StoreError,
    ) -> Result<Created<(Refund, Payment)>, StoreError> {
        match RefundRepo::get(self, &refund.refund_id).await? {
            None => Err(otherwise),
            Some(existing) if existing.same_request(refund) => {
                let current = self
                    .get_payment(&existing.payment_id)
                    .await?
                    .ok_or_else(|| StoreError::payment_not_found(existing.payment_id))?;
                Ok(Created::Existing((existing, current)))
            }
            Some(_) => Err(StoreError::AlreadyExists {
                entity: Entity::Refund,
                id: refund.refund_id.to_string(),
            }),
        }
    }
}
