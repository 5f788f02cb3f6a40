//! DynamoDB attribute and index names. The only place these strings appear;
//! `template.yml` declares the key attributes with the same names.

pub const PAYMENT_ID: &str = "paymentId";
pub const USER_ID: &str = "userId";
pub const AMOUNT: &str = "amount";
pub const CURRENCY: &str = "currency";
pub const STATUS: &str = "status";
pub const ORDER_ID: &str = "orderId";
pub const DESCRIPTION: &str = "description";
pub const METADATA: &str = "metadata";
pub const GATEWAY_REFERENCE: &str = "gatewayReference";
pub const WAIT_TOKEN: &str = "waitToken";
pub const FAILURE_REASON: &str = "failureReason";
pub const REFUNDED_AMOUNT: &str = "refundedAmount";
pub const CREATED_AT: &str = "createdAt";
pub const UPDATED_AT: &str = "updatedAt";
pub const VERSION: &str = "version";
/// The open-index shard (`ports::open_shard`) of a payment or refund that is
/// not settled yet; absent once it is, which keeps the index sparse.
pub const OPEN_SHARD: &str = "openShard";

pub const SORT_KEY: &str = "sk";
pub const EVENT_TYPE: &str = "eventType";
pub const FROM_STATUS: &str = "fromStatus";
pub const DETAIL: &str = "detail";
pub const AT: &str = "at";

pub const BALANCE: &str = "balance";
pub const WALLET_KEY: &str = "walletKey";
pub const TX_ID: &str = "txId";
pub const ENTRY_ID: &str = "entryId";
pub const KIND: &str = "kind";
pub const BALANCE_AFTER: &str = "balanceAfter";
pub const REFUND_ID: &str = "refundId";
pub const TOP_UP_ID: &str = "topUpId";
pub const REASON: &str = "reason";

pub const IDEMPOTENCY_KEY: &str = "idempotencyKey";
pub const REQUEST_HASH: &str = "requestHash";
pub const STATE: &str = "state";
pub const STATUS_CODE: &str = "statusCode";
pub const BODY: &str = "body";
pub const EXPIRES_AT: &str = "expiresAt";

pub const SERVICE_NAME: &str = "serviceName";
pub const CONSECUTIVE_FAILURES: &str = "consecutiveFailures";
pub const CONSECUTIVE_SUCCESSES: &str = "consecutiveSuccesses";
pub const OPENED_AT: &str = "openedAt";
pub const PROBE_LEASE_UNTIL: &str = "probeLeaseUntil";

/// Payments by user, newest first (`userId`, `createdAt`).
pub const INDEX_PAYMENTS_BY_USER: &str = "UserIndex";
/// Refunds of a payment (`paymentId`, `createdAt`).
pub const INDEX_REFUNDS_BY_PAYMENT: &str = "PaymentIndex";
/// Open payments, and open refunds, by shard, oldest first (`openShard`,
/// `createdAt`): sparse, on both tables.
pub const INDEX_OPEN: &str = "OpenIndex";

/// Values of the idempotency record's `state` attribute.
pub const STATE_IN_PROGRESS: &str = "IN_PROGRESS";
pub const STATE_COMPLETED: &str = "COMPLETED";

// The API clients table (service clients' keys), read by the authorizer and
// seeded by the local cloud; `STATUS` above is its status attribute.
/// Partition key: lowercase hex SHA-256 of the API key.
pub const API_CLIENT_KEY_HASH: &str = "keyHash";
pub const API_CLIENT_ID: &str = "clientId";
/// A list of scope names (`L` of `S`).
pub const API_CLIENT_SCOPES: &str = "scopes";
pub const API_CLIENT_ACTIVE: &str = "ACTIVE";
pub const API_CLIENT_DISABLED: &str = "DISABLED";
