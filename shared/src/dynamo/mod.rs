//! DynamoDB adapters for every store port. The only module that imports
//! `aws_sdk_dynamodb`. Money moves with `TransactWriteItems`; every other
//! write is conditional; nothing is read-then-blindly-written.

pub mod attr;
pub mod item;
pub mod mapping;
mod records;
mod refunds;
mod wallets;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::CancellationReason;

use crate::error::RepoError;

/// The physical table names, read once from the environment that
/// `template.yml` gives each function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableNames {
    pub payments: String,
    pub payment_events: String,
    pub wallets: String,
    pub wallet_transactions: String,
    pub refunds: String,
    pub idempotency: String,
    pub circuit_breaker: String,
}

/// Environment variable per table, as declared in `template.yml`.
pub const TABLE_ENV_VARS: [&str; 7] = [
    "PAYMENTS_TABLE_NAME",
    "PAYMENT_EVENTS_TABLE_NAME",
    "WALLETS_TABLE_NAME",
    "WALLET_TRANSACTIONS_TABLE_NAME",
    "REFUNDS_TABLE_NAME",
    "IDEMPOTENCY_TABLE_NAME",
    "CIRCUIT_BREAKER_TABLE_NAME",
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("environment variable {0} is not set")]
pub struct MissingEnv(pub &'static str);

impl TableNames {
    /// Reads the table names through `lookup` (usually `std::env::var`).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, MissingEnv> {
        let get = |name: &'static str| {
            lookup(name)
                .filter(|v| !v.is_empty())
                .ok_or(MissingEnv(name))
        };
        let [
            payments,
            payment_events,
            wallets,
            wallet_transactions,
            refunds,
            idempotency,
            breaker,
        ] = TABLE_ENV_VARS;
        Ok(Self {
            payments: get(payments)?,
            payment_events: get(payment_events)?,
            wallets: get(wallets)?,
            wallet_transactions: get(wallet_transactions)?,
            refunds: get(refunds)?,
            idempotency: get(idempotency)?,
            circuit_breaker: get(breaker)?,
        })
    }

    pub fn from_env() -> Result<Self, MissingEnv> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }
}

/// One client and the table names; implements every store port.
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    tables: TableNames,
}

impl DynamoStore {
    pub fn new(client: Client, tables: TableNames) -> Self {
        Self { client, tables }
    }

    /// The store a Lambda uses: the SDK configuration of its cold start and the
    /// table names `template.yml` put in its environment.
    #[cfg(feature = "lambda")]
    pub fn from_sdk_config(config: &aws_config::SdkConfig, tables: TableNames) -> Self {
        Self::new(Client::new(config), tables)
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn tables(&self) -> &TableNames {
        &self.tables
    }
}

/// Throttling and transient server errors are retryable; a malformed request
/// is our bug; anything that never got an answer is "unavailable".
pub(crate) fn repo_error<E, R>(err: SdkError<E, R>) -> RepoError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match &err {
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or("Unknown");
            let message = format!("{code}: {}", service.err().message().unwrap_or_default());
            match code {
                "ProvisionedThroughputExceededException"
                | "ThrottlingException"
                | "RequestLimitExceeded"
                | "TransactionInProgressException"
                | "TransactionConflictException" => RepoError::Throttled(message),
                "InternalServerError" | "ServiceUnavailable" | "InternalFailure" => {
                    RepoError::Unavailable(message)
                }
                _ => RepoError::Rejected(message),
            }
        }
        _ => RepoError::Unavailable(DisplayErrorContext(&err).to_string()),
    }
}

/// Whether a single-item write failed on its condition expression.
pub(crate) fn is_condition_failed<E, R>(err: &SdkError<E, R>) -> bool
where
    E: ProvideErrorMetadata,
{
    err.as_service_error().and_then(ProvideErrorMetadata::code)
        == Some("ConditionalCheckFailedException")
}

/// The outcome of a `TransactWriteItems` call.
pub(crate) enum TransactOutcome {
    Committed,
    /// Cancelled; one reason per item, in request order.
    Cancelled(Vec<CancellationReason>),
}

pub(crate) fn transact_outcome<R: std::fmt::Debug>(
    result: Result<(), SdkError<TransactWriteItemsError, R>>,
) -> Result<TransactOutcome, RepoError> {
    match result {
        Ok(()) => Ok(TransactOutcome::Committed),
        Err(err) => match err.as_service_error() {
            Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) => Ok(
                TransactOutcome::Cancelled(cancelled.cancellation_reasons().to_vec()),
            ),
            _ => Err(repo_error(err)),
        },
    }
}

/// Whether item `index` of a cancelled transaction failed its condition.
pub(crate) fn failed_condition(reasons: &[CancellationReason], index: usize) -> bool {
    reasons.get(index).and_then(CancellationReason::code) == Some("ConditionalCheckFailed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_come_from_the_template_environment() {
        let names = TableNames::from_lookup(|name| Some(format!("t-{name}"))).ok();
        assert_eq!(
            names.map(|n| n.payments),
            Some("t-PAYMENTS_TABLE_NAME".to_owned())
        );
        let missing =
            TableNames::from_lookup(|name| (name != "REFUNDS_TABLE_NAME").then(|| name.to_owned()));
        assert_eq!(missing, Err(MissingEnv("REFUNDS_TABLE_NAME")));
    }
}
