//! What the DynamoDB requests through the edge cost: per operation, how many,
//! which failed and with what error, and the capacity units the embedded engine
//! charged for them. Served at `GET /_local/dynamodb/stats` for `saga bench`
//! (DynamoDB requests and read/write request units per payment, the inputs of
//! its AWS cost model).
//!
//! A refused conditional write is counted per table whose condition failed
//! (for a cancelled transaction, from its `CancellationReasons`), so that a
//! wallet version conflict can be told from an idempotent replay.
//!
//! To learn the capacity of a request, the edge asks for it: a data-plane
//! request without `ReturnConsumedCapacity` gets `"TOTAL"`, and the
//! `ConsumedCapacity` it did not ask for is taken out of the reply again
//! ([`take_capacity`]), so a client sees what DynamoDB would send it. The
//! engine accounts capacity the way DynamoDB does: 4 KB read units, 1 KB write
//! units, 2x in transactions, index writes included.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use serde::{Deserialize, Serialize};

/// The operations that accept `ReturnConsumedCapacity`.
const CAPACITY_OPERATIONS: [&str; 10] = [
    "GetItem",
    "PutItem",
    "UpdateItem",
    "DeleteItem",
    "Query",
    "Scan",
    "BatchGetItem",
    "BatchWriteItem",
    "TransactGetItems",
    "TransactWriteItems",
];

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OperationStats {
    pub request_count: u64,
    /// Replies other than 2xx, by the short name of their `__type`.
    pub error_count: u64,
    pub errors: BTreeMap<String, u64>,
    /// Conditions that failed, by table (`ConditionalCheckFailedException`, or
    /// a cancelled transaction's items with `ConditionalCheckFailed`).
    pub condition_failures: BTreeMap<String, u64>,
    /// Capacity units in thousandths (an eventually consistent read of a
    /// small item is 500).
    pub capacity_milli_units: u64,
}

#[derive(Debug, Default)]
pub struct DynamoStats {
    operations: Mutex<BTreeMap<String, OperationStats>>,
}

impl DynamoStats {
    pub fn snapshot(&self) -> BTreeMap<String, OperationStats> {
        self.operations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Counts one request of `operation`, the capacity its reply said it
    /// cost ([`take_capacity`]) and, for a failure, the error it names.
    pub fn record(
        &self,
        operation: &str,
        success: bool,
        request: &[u8],
        reply: &[u8],
        capacity_milli_units: u64,
    ) {
        let (capacity, error) = if success {
            (capacity_milli_units, None)
        } else {
            (0, Some(error_name(reply)))
        };
        let failed_tables = match error.as_deref() {
            Some("ConditionalCheckFailedException" | "TransactionCanceledException") => {
                condition_failed_tables(request, reply)
            }
            _ => Vec::new(),
        };
        let mut operations = self
            .operations
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let stats = operations.entry(operation.to_owned()).or_default();
        stats.request_count = stats.request_count.saturating_add(1);
        stats.capacity_milli_units = stats.capacity_milli_units.saturating_add(capacity);
        if let Some(error) = error {
            stats.error_count = stats.error_count.saturating_add(1);
            let count = stats.errors.entry(error).or_default();
            *count = count.saturating_add(1);
        }
        for table in failed_tables {
            let count = stats.condition_failures.entry(table).or_default();
            *count = count.saturating_add(1);
        }
    }
}

/// The tables whose condition failed: the request's `TableName`, or in a
/// transaction the items whose cancellation reason is `ConditionalCheckFailed`.
fn condition_failed_tables(request: &[u8], reply: &[u8]) -> Vec<String> {
    let Ok(request) = serde_json::from_slice::<serde_json::Value>(request) else {
        return Vec::new();
    };
    if let Some(table) = request.get("TableName").and_then(|t| t.as_str()) {
        return vec![table.to_owned()];
    }
    let Ok(reply) = serde_json::from_slice::<serde_json::Value>(reply) else {
        return Vec::new();
    };
    let items = request["TransactItems"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let reasons = reply["CancellationReasons"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    items
        .iter()
        .zip(&reasons)
        .filter(|(_, reason)| reason["Code"] == "ConditionalCheckFailed")
        .filter_map(|(item, _)| {
            let action = item.as_object()?.values().next()?;
            Some(action.get("TableName")?.as_str()?.to_owned())
        })
        .collect()
}

/// A request body and whether the edge asked for its capacity on the
/// client's behalf (then the reply's `ConsumedCapacity` is the edge's own).
pub struct CapacityRequest {
    pub body: Vec<u8>,
    pub added: bool,
}

/// The request body with `"ReturnConsumedCapacity":"TOTAL"` added when the
/// operation accepts it and the client did not choose; otherwise unchanged.
pub fn with_capacity_request(operation: &str, body: Vec<u8>) -> CapacityRequest {
    const FIELD: &[u8] = b"\"ReturnConsumedCapacity\"";
    let unchanged = |body| CapacityRequest { body, added: false };
    if !CAPACITY_OPERATIONS.contains(&operation) || contains(&body, FIELD) {
        return unchanged(body);
    }
    let Some(open) = body.iter().position(|b| !b.is_ascii_whitespace()) else {
        return unchanged(body);
    };
    if body[open] != b'{' {
        return unchanged(body);
    }
    let rest = &body[open + 1..];
    let empty = rest
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'}');
    let insert: &[u8] = if empty {
        b"\"ReturnConsumedCapacity\":\"TOTAL\""
    } else {
        b"\"ReturnConsumedCapacity\":\"TOTAL\","
    };
    let mut out = Vec::with_capacity(body.len() + insert.len());
    out.extend_from_slice(&body[..=open]);
    out.extend_from_slice(insert);
    out.extend_from_slice(rest);
    CapacityRequest {
        body: out,
        added: true,
    }
}

/// What a successful reply says it cost, in thousandths of a unit, read in
/// one parse of the reply; with `strip` (the edge asked on the client's
/// behalf) also the reply without its top-level `ConsumedCapacity`. The reply
/// is `None` when it goes to the client as it is: nothing to strip, or not a
/// JSON object.
pub fn take_capacity(reply: &[u8], strip: bool) -> (u64, Option<Vec<u8>>) {
    if !strip {
        let consumed = serde_json::from_slice::<Reply>(reply)
            .ok()
            .and_then(|reply| reply.consumed);
        return (consumed.map_or(0, Consumed::milli_units), None);
    }
    let Ok(mut object) =
        serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(reply)
    else {
        return (0, None);
    };
    let Some(consumed) = object.remove("ConsumedCapacity") else {
        return (0, None);
    };
    let capacity = serde_json::from_value::<Consumed>(consumed).map_or(0, Consumed::milli_units);
    (capacity, serde_json::to_vec(&object).ok())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

#[derive(Deserialize)]
struct Reply {
    #[serde(rename = "ConsumedCapacity")]
    consumed: Option<Consumed>,
}

/// One table's capacity (single-item operations, Query, Scan) or one per
/// table (batches and transactions).
#[derive(Deserialize)]
#[serde(untagged)]
enum Consumed {
    One(Capacity),
    Many(Vec<Capacity>),
}

#[derive(Deserialize)]
struct Capacity {
    #[serde(rename = "CapacityUnits")]
    units: Option<serde_json::Number>,
}

impl Consumed {
    fn milli_units(self) -> u64 {
        let capacities = match self {
            Self::One(one) => vec![one],
            Self::Many(many) => many,
        };
        capacities
            .iter()
            .filter_map(|capacity| capacity.units.as_ref().and_then(milli_units))
            .fold(0, u64::saturating_add)
    }
}

/// `2.5` → 2500, read from the number's digits (no float arithmetic).
/// Units come in halves, so an exponent form never appears; it counts as 0.
fn milli_units(number: &serde_json::Number) -> Option<u64> {
    if let Some(whole) = number.as_u64() {
        return whole.checked_mul(1000);
    }
    let text = number.to_string();
    let (whole, fraction) = text.split_once('.')?;
    if fraction.len() > 9 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole: u64 = whole.parse().ok()?;
    let thousandths: u64 = format!("{fraction:0<3}").get(..3)?.parse().ok()?;
    whole.checked_mul(1000)?.checked_add(thousandths)
}

/// `com.amazonaws.dynamodb.v20120810#TransactionCanceledException` →
/// `TransactionCanceledException`.
fn error_name(reply: &[u8]) -> String {
    #[derive(Deserialize)]
    struct ErrorReply {
        #[serde(rename = "__type")]
        error_type: Option<String>,
    }
    serde_json::from_slice::<ErrorReply>(reply)
        .ok()
        .and_then(|reply| reply.error_type)
        .map(|name| name.rsplit('#').next().unwrap_or_default().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "Unknown".to_owned())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn data_plane_requests_ask_for_their_capacity() {
        // GIVEN requests with and without a choice of their own
        let put = with_capacity_request("PutItem", br#"{"TableName":"t"}"#.to_vec());
        let empty = with_capacity_request("Query", b" { } ".to_vec());
        let chosen = br#"{"TableName":"t","ReturnConsumedCapacity":"NONE"}"#.to_vec();
        // THEN TOTAL is added only where the client did not choose, and the JSON stays valid
        assert!(put.added && empty.added);
        let put: serde_json::Value = serde_json::from_slice(&put.body).unwrap();
        assert_eq!(put["ReturnConsumedCapacity"], "TOTAL");
        assert_eq!(put["TableName"], "t");
        let empty: serde_json::Value = serde_json::from_slice(&empty.body).unwrap();
        assert_eq!(empty["ReturnConsumedCapacity"], "TOTAL");
        let kept = with_capacity_request("GetItem", chosen.clone());
        assert!(!kept.added);
        assert_eq!(kept.body, chosen);
        // AND control-plane operations are left alone
        let control = with_capacity_request("ListTables", b"{}".to_vec());
        assert!(!control.added);
        assert_eq!(control.body, b"{}");
    }

    #[test]
    fn capacity_the_client_did_not_ask_for_leaves_the_reply() {
        // GIVEN a reply carrying the capacity the edge asked for
        let reply = br#"{"Items":[{"k":{"S":"v"}}],"Count":1,"ScannedCount":1,"ConsumedCapacity":{"TableName":"t","CapacityUnits":0.5}}"#;
        // WHEN it is stripped
        let (capacity, stripped) = take_capacity(reply, true);
        let stripped: serde_json::Value = serde_json::from_slice(&stripped.unwrap()).unwrap();
        // THEN everything but ConsumedCapacity is as the engine sent it
        assert_eq!(
            stripped,
            serde_json::json!({"Items":[{"k":{"S":"v"}}],"Count":1,"ScannedCount":1})
        );
        // AND the capacity is counted as when the client had asked for it
        assert_eq!(capacity, 500);
        assert_eq!(take_capacity(reply, false), (500, None));
        // AND replies without it, and error replies, are passed on untouched
        assert_eq!(
            take_capacity(br#"{"Item":{"k":{"S":"v"}}}"#, true),
            (0, None)
        );
        assert_eq!(take_capacity(b"not json", true), (0, None));
    }

    #[test]
    fn replies_are_counted_with_their_capacity_and_errors() {
        let stats = DynamoStats::default();
        let succeeded = |operation: &str, request: &[u8], reply: &[u8]| {
            let (capacity, _) = take_capacity(reply, false);
            stats.record(operation, true, request, reply, capacity);
        };
        let transaction = br#"{"TransactItems":[{"Update":{"TableName":"wallets"}},{"Put":{"TableName":"ledger"}}]}"#;
        succeeded(
            "TransactWriteItems",
            transaction,
            br#"{"ConsumedCapacity":[{"TableName":"a","CapacityUnits":4.0},{"TableName":"b","CapacityUnits":2.0}]}"#,
        );
        succeeded(
            "GetItem",
            b"{}",
            br#"{"Item":{"k":{"S":"v"}},"ConsumedCapacity":{"TableName":"a","CapacityUnits":0.5}}"#,
        );
        succeeded("GetItem", b"{}", b"{}");
        stats.record(
            "TransactWriteItems",
            false,
            transaction,
            br#"{"__type":"com.amazonaws.dynamodb.v20120810#TransactionCanceledException","message":"x","CancellationReasons":[{"Code":"ConditionalCheckFailed"},{"Code":"None"}]}"#,
            0,
        );
        stats.record(
            "PutItem",
            false,
            br#"{"TableName":"payments","Item":{}}"#,
            br#"{"__type":"com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException"}"#,
            0,
        );
        let snapshot = stats.snapshot();
        let transact = &snapshot["TransactWriteItems"];
        assert_eq!(transact.request_count, 2);
        assert_eq!(transact.capacity_milli_units, 6000);
        assert_eq!(transact.error_count, 1);
        assert_eq!(transact.errors["TransactionCanceledException"], 1);
        // AND the condition that failed is the wallet's, not the ledger's
        assert_eq!(
            transact.condition_failures,
            BTreeMap::from([("wallets".to_owned(), 1)])
        );
        assert_eq!(snapshot["PutItem"].condition_failures["payments"], 1);
        let get = &snapshot["GetItem"];
        assert_eq!((get.request_count, get.capacity_milli_units), (2, 500));
    }

    #[test]
    fn capacity_units_are_read_from_their_digits() {
        let number = |text: &str| serde_json::from_str::<serde_json::Number>(text).unwrap();
        assert_eq!(milli_units(&number("3")), Some(3000));
        assert_eq!(milli_units(&number("0.5")), Some(500));
        assert_eq!(milli_units(&number("12.25")), Some(12_250));
        assert_eq!(milli_units(&number("1e-7")), None);
    }
}
