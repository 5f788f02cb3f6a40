//! Payments (with their audit events), refunds, idempotency records and
//! circuit-breaker state on DynamoDB.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, Put, ReturnValue, TransactWriteItem};

use crate::domain::{
    BreakerRecord, ClaimOutcome, IdempotencyRecord, IdempotencyState, NewPayment, Payment,
    PaymentChange, PaymentEvent, PaymentId, PaymentStatus, Refund, RefundId, Timestamp, UserId,
};
use crate::error::{Entity, RepoError, StoreError};
use crate::ports::{
    self, BreakerStore, Created, IdempotencyRepo, PAGE_LIMIT_MAX, Page, PaymentEventRepo,
    PaymentRepo, RefundRepo, VERSION_ATTEMPT_COUNT_MAX,
};

use super::item::Attributes;
use super::{
    DynamoStore, TransactOutcome, attr, failed_condition, is_condition_failed, mapping, repo_error,
    transact_outcome,
};

pub(crate) fn s(value: impl ToString) -> AttributeValue {
    AttributeValue::S(value.to_string())
}

pub(crate) fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub(crate) fn key(pairs: &[(&str, AttributeValue)]) -> Attributes {
    pairs
        .iter()
        .map(|(name, value)| ((*name).to_owned(), value.clone()))
        .collect()
}

/// `#name` → attribute name, for every name an expression uses.
pub(crate) fn names(list: &[&str]) -> HashMap<String, String> {
    list.iter()
        .map(|name| (format!("#{name}"), (*name).to_owned()))
        .collect()
}

/// A conditional `Put` for a transaction.
pub(crate) fn conditional_put(
    table: &str,
    item: Attributes,
    condition: &str,
    attribute_names: &[&str],
    values: Option<Attributes>,
) -> Result<TransactWriteItem, RepoError> {
    let put = Put::builder()
        .table_name(table)
        .set_item(Some(item))
        .condition_expression(condition)
        .set_expression_attribute_names(Some(names(attribute_names)))
        .set_expression_attribute_values(values)
        .build()
        .map_err(|err| RepoError::Rejected(err.to_string()))?;
    Ok(TransactWriteItem::builder().put(put).build())
}

fn limit_i32(limit: u32) -> i32 {
    i32::try_from(limit).unwrap_or(i32::MAX)
}

/// Where an open-index page starts: after the cursor's item, or at `since`.
struct OpenQuery<'a> {
    table: &'a str,
    shard: u32,
    since: Option<Timestamp>,
    limit: u32,
    /// The table's key attribute (`paymentId`, `refundId`).
    id_name: &'static str,
    /// The last item's (createdAt, id), from the cursor.
    after: Option<(Timestamp, String)>,
}

impl DynamoStore {
    /// One page of the sparse open index of `query.table`, oldest first:
    /// each item's (createdAt, id) and whether more follow (one extra key is
    /// read to tell). The index projects keys only: callers read each item
    /// again, consistently, which they must do anyway since an index lags.
    async fn open_keys(
        &self,
        query: OpenQuery<'_>,
    ) -> Result<(Vec<(Timestamp, String)>, bool), RepoError> {
        let shard = query.shard.to_string();
        let start = query.after.map(|(created_at, id)| {
            key(&[
                (attr::OPEN_SHARD, s(&shard)),
                (attr::CREATED_AT, s(created_at)),
                (query.id_name, s(id)),
            ])
        });
        let mut request = self
            .client
            .query()
            .table_name(query.table)
            .index_name(attr::INDEX_OPEN)
            .expression_attribute_values(":shard", s(&shard))
            .scan_index_forward(true)
            .limit(limit_i32(query.limit.saturating_add(1)))
            .set_exclusive_start_key(start);
        request = match query.since {
            Some(since) => request
                .key_condition_expression("#openShard = :shard AND #createdAt >= :since")
                .set_expression_attribute_names(Some(names(&[attr::OPEN_SHARD, attr::CREATED_AT])))
                .expression_attribute_values(":since", s(since)),
            None => request
                .key_condition_expression("#openShard = :shard")
                .set_expression_attribute_names(Some(names(&[attr::OPEN_SHARD]))),
        };
        let output = request.send().await.map_err(repo_error)?;
        let mut keys = output
            .items()
            .iter()
            .map(|item| {
                let reader = super::item::ItemReader::new(item, query.id_name);
                Ok((
                    reader.timestamp(attr::CREATED_AT)?,
                    reader.s(query.id_name)?.to_owned(),
                ))
            })
            .collect::<Result<Vec<_>, RepoError>>()?;
        let limit = usize::try_from(query.limit).unwrap_or(usize::MAX);
        let more = keys.len() > limit;
        keys.truncate(limit);
        Ok((keys, more))
    }

    async fn get_item(
        &self,
        table: &str,
        key: Attributes,
    ) -> Result<Option<Attributes>, RepoError> {
        let output = self
            .client
            .get_item()
            .table_name(table)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(repo_error)?;
        Ok(output.item)
    }

    pub(super) async fn get_payment(
        &self,
        payment_id: &PaymentId,
    ) -> Result<Option<Payment>, RepoError> {
        let item = self
            .get_item(
                &self.tables.payments,
                key(&[(attr::PAYMENT_ID, s(payment_id))]),
            )
            .await?;
        item.as_ref().map(mapping::payment_from_item).transpose()
    }

    /// The payment item and an event item, written together or not at all.
    async fn write_payment_with_event(
        &self,
        payment: &Payment,
        event: &PaymentEvent,
        expected_version: Option<u64>,
    ) -> Result<TransactOutcome, RepoError> {
        let payment_put = match expected_version {
            None => conditional_put(
                &self.tables.payments,
                mapping::payment_to_item(payment),
                "attribute_not_exists(#paymentId)",
                &[attr::PAYMENT_ID],
                None,
            )?,
            Some(version) => conditional_put(
                &self.tables.payments,
                mapping::payment_to_item(payment),
                "#version = :expected",
                &[attr::VERSION],
                Some(key(&[(":expected", n(version))])),
            )?,
        };
        let event_put = conditional_put(
            &self.tables.payment_events,
            mapping::event_to_item(event),
            "attribute_not_exists(#sk)",
            &[attr::SORT_KEY],
            None,
        )?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(payment_put)
            .transact_items(event_put)
            .send()
            .await
            .map(|_| ());
        transact_outcome(result)
    }
}

#[async_trait]
impl PaymentRepo for DynamoStore {
    async fn create(&self, new: NewPayment, at: Timestamp) -> Result<Created<Payment>, StoreError> {
        let payment = Payment::create(new.clone(), at);
        let event = PaymentEvent::created(&payment);
        match self
            .write_payment_with_event(&payment, &event, None)
            .await?
        {
            TransactOutcome::Committed => Ok(Created::New(payment)),
            TransactOutcome::Cancelled(reasons) if failed_condition(&reasons, 0) => {
                let existing = self.get_payment(&new.payment_id).await?;
                match existing {
                    Some(existing) if existing.matches(&new) => Ok(Created::Existing(existing)),
                    _ => Err(StoreError::AlreadyExists {
                        entity: Entity::Payment,
                        id: new.payment_id.to_string(),
                    }),
                }
            }
            TransactOutcome::Cancelled(_) => Err(RepoError::Throttled(
                "payment create transaction cancelled by a concurrent write".into(),
            )
            .into()),
        }
    }

    async fn get(&self, payment_id: &PaymentId) -> Result<Option<Payment>, StoreError> {
        Ok(self.get_payment(payment_id).await?)
    }

    async fn transition(
        &self,
        payment_id: &PaymentId,
        change: &PaymentChange,
        at: Timestamp,
    ) -> Result<Payment, StoreError> {
        for _ in 0..VERSION_ATTEMPT_COUNT_MAX {
            let current = self
                .get_payment(payment_id)
                .await?
                .ok_or_else(|| StoreError::payment_not_found(payment_id))?;
            if change.is_applied_to(&current) {
                return Ok(current);
            }
            let next = change.apply(&current, at)?;
            let event = PaymentEvent::status_changed(&current, &next);
            match self
                .write_payment_with_event(&next, &event, Some(current.version))
                .await?
            {
                TransactOutcome::Committed => return Ok(next),
                // Another writer got there first: read again and re-decide.
                TransactOutcome::Cancelled(_) => continue,
            }
        }
        Err(StoreError::StaleVersion {
            entity: Entity::Payment,
            id: payment_id.to_string(),
        })
    }

    async fn keep_wait_token(
        &self,
        payment_id: &PaymentId,
        token: &str,
    ) -> Result<Payment, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.tables.payments)
            .set_key(Some(key(&[(attr::PAYMENT_ID, s(payment_id))])))
            .update_expression("SET #waitToken = :token")
            .condition_expression("#status = :processing")
            .set_expression_attribute_names(Some(names(&[attr::WAIT_TOKEN, attr::STATUS])))
            .expression_attribute_values(":token", s(token))
            .expression_attribute_values(":processing", s(PaymentStatus::Processing))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match result {
            Ok(output) => match output.attributes() {
                Some(item) => Ok(mapping::payment_from_item(item)?),
                None => Err(RepoError::Unavailable("UpdateItem returned no item".into()).into()),
            },
            // Absent, or no longer PROCESSING: answer it as it is.
            Err(err) if is_condition_failed(&err) => self
                .get_payment(payment_id)
                .await?
                .ok_or_else(|| StoreError::payment_not_found(payment_id)),
            Err(err) => Err(repo_error(err).into()),
        }
    }

    async fn list_by_user(
        &self,
        user_id: &UserId,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<Page<Payment>, StoreError> {
        let start = match cursor {
            None => None,
            Some(text) => {
                let (created_at, payment_id) = ports::parse_payment_cursor(text)
                    .ok_or_else(|| StoreError::InvalidCursor(text.chars().take(80).collect()))?;
                Some(key(&[
                    (attr::USER_ID, s(user_id)),
                    (attr::CREATED_AT, s(created_at)),
                    (attr::PAYMENT_ID, s(payment_id)),
                ]))
            }
        };
        let limit = ports::page_limit(limit);
        let wanted = usize::try_from(limit)
            .unwrap_or(usize::MAX)
            .saturating_add(1);
        // One extra item tells whether another page exists, so the cursor is
        // only returned when there is more (DynamoDB's LastEvaluatedKey is not).
        // A query also stops at 1 MB (a page of payments with large metadata):
        // then it is continued from its LastEvaluatedKey, never taken as the end.
        let mut items = Vec::new();
        let mut start = start;
        loop {
            let missing = u32::try_from(wanted - items.len()).unwrap_or(u32::MAX);
            let output = self
                .client
                .query()
                .table_name(&self.tables.payments)
                .index_name(attr::INDEX_PAYMENTS_BY_USER)
                .key_condition_expression("#userId = :user")
                .set_expression_attribute_names(Some(names(&[attr::USER_ID])))
                .expression_attribute_values(":user", s(user_id))
                .scan_index_forward(false)
                .limit(limit_i32(missing))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(repo_error)?;
            for item in output.items() {
                items.push(mapping::payment_from_item(item)?);
            }
            start = output.last_evaluated_key;
            if items.len() >= wanted || start.is_none() {
                break;
            }
        }
        let more = items.len() > usize::try_from(limit).unwrap_or(usize::MAX);
        items.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
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
                    .map(|(at, id)| (at, id.to_string()))
                    .ok_or_else(|| StoreError::InvalidCursor(text.chars().take(80).collect()))
            })
            .transpose()?;
        let query = OpenQuery {
            table: &self.tables.payments,
            shard,
            since,
            limit: ports::page_limit(limit),
            id_name: attr::PAYMENT_ID,
            after,
        };
        let (keys, more) = self.open_keys(query).await?;
        let mut items = Vec::with_capacity(keys.len());
        for (_, id) in &keys {
            let payment_id = PaymentId::parse(id)
                .map_err(|err| RepoError::Corrupt(format!("Payments open index: {err}")))?;
            items.extend(
                self.get_payment(&payment_id)
                    .await?
                    .filter(Payment::is_open),
            );
        }
        let cursor = more
            .then(|| keys.last().map(|(at, id)| format!("{at}~{id}")))
            .flatten();
        Ok(Page { items, cursor })
    }
}

#[async_trait]
impl PaymentEventRepo for DynamoStore {
    async fn append(&self, event: &PaymentEvent) -> Result<(), StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.tables.payment_events)
            .set_item(Some(mapping::event_to_item(event)))
            .condition_expression("attribute_not_exists(#sk)")
            .set_expression_attribute_names(Some(names(&[attr::SORT_KEY])))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) if is_condition_failed(&err) => Ok(()),
            Err(err) => Err(repo_error(err).into()),
        }
    }

    async fn events(
        &self,
        payment_id: &PaymentId,
        limit: u32,
    ) -> Result<Vec<PaymentEvent>, StoreError> {
        let output = self
            .client
            .query()
            .table_name(&self.tables.payment_events)
            .key_condition_expression("#paymentId = :payment")
            .set_expression_attribute_names(Some(names(&[attr::PAYMENT_ID])))
            .expression_attribute_values(":payment", s(payment_id))
            .scan_index_forward(true)
            .consistent_read(true)
            .limit(limit_i32(ports::page_limit(limit)))
            .send()
            .await
            .map_err(repo_error)?;
        Ok(output
            .items()
            .iter()
            .map(mapping::event_from_item)
            .collect::<Result<_, _>>()?)
    }
}

#[async_trait]
impl RefundRepo for DynamoStore {
    async fn create(&self, refund: &Refund) -> Result<Created<Refund>, StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.tables.refunds)
            .set_item(Some(mapping::refund_to_item(refund)))
            .condition_expression("attribute_not_exists(#refundId)")
            .set_expression_attribute_names(Some(names(&[attr::REFUND_ID])))
            .send()
            .await;
        match result {
            Ok(_) => Ok(Created::New(refund.clone())),
            Err(err) if is_condition_failed(&err) => match RefundRepo::get(self, &refund.refund_id)
                .await?
            {
                Some(existing) if existing.same_request(refund) => Ok(Created::Existing(existing)),
                _ => Err(StoreError::AlreadyExists {
                    entity: Entity::Refund,
                    id: refund.refund_id.to_string(),
                }),
            },
            Err(err) => Err(repo_error(err).into()),
        }
    }

    async fn get(&self, refund_id: &RefundId) -> Result<Option<Refund>, StoreError> {
        let item = self
            .get_item(
                &self.tables.refunds,
                key(&[(attr::REFUND_ID, s(refund_id))]),
            )
            .await?;
        Ok(item.as_ref().map(mapping::refund_from_item).transpose()?)
    }

    async fn refunds_of(&self, payment_id: &PaymentId) -> Result<Vec<Refund>, StoreError> {
        let output = self
            .client
            .query()
            .table_name(&self.tables.refunds)
            .index_name(attr::INDEX_REFUNDS_BY_PAYMENT)
            .key_condition_expression("#paymentId = :payment")
            .set_expression_attribute_names(Some(names(&[attr::PAYMENT_ID])))
            .expression_attribute_values(":payment", s(payment_id))
            .scan_index_forward(true)
            .limit(limit_i32(PAGE_LIMIT_MAX))
            .send()
            .await
            .map_err(repo_error)?;
        let mut refunds: Vec<Refund> = output
            .items()
            .iter()
            .map(mapping::refund_from_item)
            .collect::<Result<_, _>>()?;
        refunds.sort_by_key(|r| (r.created_at, r.refund_id));
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
                    .map(|(at, id)| (at, id.to_string()))
                    .ok_or_else(|| StoreError::InvalidCursor(text.chars().take(80).collect()))
            })
            .transpose()?;
        let query = OpenQuery {
            table: &self.tables.refunds,
            shard,
            since,
            limit: ports::page_limit(limit),
            id_name: attr::REFUND_ID,
            after,
        };
        let (keys, more) = self.open_keys(query).await?;
        let mut items = Vec::with_capacity(keys.len());
        for (_, id) in &keys {
            let refund_id = RefundId::parse(id)
                .map_err(|err| RepoError::Corrupt(format!("Refunds open index: {err}")))?;
            let refund = RefundRepo::get(self, &refund_id).await?;
            items.extend(refund.filter(Refund::is_open));
        }
        let cursor = more
            .then(|| keys.last().map(|(at, id)| format!("{at}~{id}")))
            .flatten();
        Ok(Page { items, cursor })
    }

    async fn save(&self, next: &Refund) -> Result<(), StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.tables.refunds)
            .set_item(Some(mapping::refund_to_item(next)))
            .condition_expression("#version = :expected")
            .set_expression_attribute_names(Some(names(&[attr::VERSION])))
            .expression_attribute_values(":expected", n(next.version.saturating_sub(1)))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) if is_condition_failed(&err) => {
                let id = next.refund_id.to_string();
                match RefundRepo::get(self, &next.refund_id).await? {
                    None => Err(StoreError::NotFound {
                        entity: Entity::Refund,
                        id,
                    }),
                    Some(_) => Err(StoreError::StaleVersion {
                        entity: Entity::Refund,
                        id,
                    }),
                }
            }
            Err(err) => Err(repo_error(err).into()),
        }
    }

    async fn fail_and_release(
        &self,
        failed: &Refund,
        payment: &Payment,
        at: Timestamp,
    ) -> Result<Payment, StoreError> {
        self.fail_and_release_refund(failed, payment, at).await
    }

    async fn reserve(
        &self,
        refund: &Refund,
        payment: &Payment,
        at: Timestamp,
    ) -> Result<Created<(Refund, Payment)>, StoreError> {
        self.reserve_refund(refund, payment, at).await
    }
}

#[async_trait]
impl IdempotencyRepo for DynamoStore {
    async fn claim(
        &self,
        record: &IdempotencyRecord,
        now: Timestamp,
    ) -> Result<ClaimOutcome, StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.tables.idempotency)
            .set_item(Some(mapping::idempotency_to_item(record)))
            // An expired record may linger until the TTL sweep: it does not hold the key.
            .condition_expression("attribute_not_exists(#idempotencyKey) OR #expiresAt <= :now")
            .set_expression_attribute_names(Some(names(&[attr::IDEMPOTENCY_KEY, attr::EXPIRES_AT])))
            .expression_attribute_values(":now", n(now.unix_seconds()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(ClaimOutcome::Claimed),
            Err(err) if is_condition_failed(&err) => {
                let item = self
                    .get_item(
                        &self.tables.idempotency,
                        key(&[(attr::IDEMPOTENCY_KEY, s(&record.idempotency_key))]),
                    )
                    .await?;
                match item
                    .as_ref()
                    .map(mapping::idempotency_from_item)
                    .transpose()?
                {
                    Some(existing) => Ok(ClaimOutcome::Existing(existing)),
                    // Released between our write and our read: the client may retry.
                    None => Err(RepoError::Throttled(
                        "idempotency key released concurrently".into(),
                    )
                    .into()),
                }
            }
            Err(err) => Err(repo_error(err).into()),
        }
    }

    async fn complete(&self, key_text: &str, state: &IdempotencyState) -> Result<(), StoreError> {
        let mut values = key(&[(":inProgress", s(attr::STATE_IN_PROGRESS))]);
        let (update, attribute_names) = match state {
            IdempotencyState::InProgress => {
                values.insert(":state".into(), s(attr::STATE_IN_PROGRESS));
                ("SET #state = :state", vec![attr::STATE])
            }
            IdempotencyState::Completed { status_code, body } => {
                values.insert(":state".into(), s(attr::STATE_COMPLETED));
                values.insert(":statusCode".into(), n(status_code));
                values.insert(":body".into(), s(body));
                (
                    "SET #state = :state, #statusCode = :statusCode, #body = :body",
                    vec![attr::STATE, attr::STATUS_CODE, attr::BODY],
                )
            }
        };
        let result = self
            .client
            .update_item()
            .table_name(&self.tables.idempotency)
            .set_key(Some(key(&[(attr::IDEMPOTENCY_KEY, s(key_text))])))
            .update_expression(update)
            .condition_expression("#state = :inProgress")
            .set_expression_attribute_names(Some(names(&attribute_names)))
            .set_expression_attribute_values(Some(values))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) if is_condition_failed(&err) => Err(StoreError::NotFound {
                entity: Entity::IdempotencyRecord,
                id: key_text.to_owned(),
            }),
            Err(err) => Err(repo_error(err).into()),
        }
    }

    async fn release(&self, key_text: &str, claimed_at: Timestamp) -> Result<(), StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.tables.idempotency)
            .set_key(Some(key(&[(attr::IDEMPOTENCY_KEY, s(key_text))])))
            .condition_expression("#state = :inProgress AND #createdAt = :claimedAt")
            .set_expression_attribute_names(Some(names(&[attr::STATE, attr::CREATED_AT])))
            .expression_attribute_values(":inProgress", s(attr::STATE_IN_PROGRESS))
            .expression_attribute_values(":claimedAt", s(claimed_at))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // Absent, completed, or another request's claim: nothing of ours
            // to release.
            Err(err) if is_condition_failed(&err) => Ok(()),
            Err(err) => Err(repo_error(err).into()),
        }
    }
}

#[async_trait]
impl BreakerStore for DynamoStore {
    async fn load(&self, service_name: &str, now: Timestamp) -> Result<BreakerRecord, StoreError> {
        let item = self
            .get_item(
                &self.tables.circuit_breaker,
                key(&[(attr::SERVICE_NAME, s(service_name))]),
            )
            .await?;
        Ok(match item {
            Some(item) => mapping::breaker_from_item(&item)?,
            None => BreakerRecord::closed(service_name.to_owned(), now),
        })
    }

    async fn save(&self, next: &BreakerRecord) -> Result<(), StoreError> {
        let request = self
            .client
            .put_item()
            .table_name(&self.tables.circuit_breaker)
            .set_item(Some(mapping::breaker_to_item(next)));
        let request = if next.version <= 1 {
            request
                .condition_expression("attribute_not_exists(#serviceName)")
                .set_expression_attribute_names(Some(names(&[attr::SERVICE_NAME])))
        } else {
            request
                .condition_expression("#version = :expected")
                .set_expression_attribute_names(Some(names(&[attr::VERSION])))
                .expression_attribute_values(":expected", n(next.version.saturating_sub(1)))
        };
        match request.send().await {
            Ok(_) => Ok(()),
            Err(err) if is_condition_failed(&err) => Err(StoreError::StaleVersion {
                entity: Entity::Breaker,
                id: next.service_name.clone(),
            }),
            Err(err) => Err(repo_error(err).into()),
        }
    }
}
