//! The floor: what a payment costs without orchestration. The same number of
//! Lambda hops, DynamoDB requests (operation by operation) and gateway calls
//! that the saga made per payment, measured in the same run, issued one after
//! the other by the client: API Gateway → a Lambda that does nothing (the first
//! hop), Lambda Invoke of the same for the other hops, small items on the same
//! tables, new charges at the gateway. The saga's latency over the floor's is
//! what Step Functions, the Runtime API hand-offs and the functions' own work add.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Value, json};

use super::cloud::{Cloud, OperationCounters};
use super::load::elapsed_us;
use super::progress::{Counters, Progress};
use crate::api::Api;
use crate::error::{CliError, CliResult};

/// Per payment: what the floor issues.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FloorPlan {
    pub lambda_hops: u64,
    /// (operation, requests), as the saga's mix.
    pub dynamo_requests: Vec<(String, u64)>,
    pub gateway_calls: u64,
}

impl FloorPlan {
    pub fn dynamo_request_count(&self) -> u64 {
        self.dynamo_requests.iter().map(|(_, count)| count).sum()
    }
}

/// `total / count`, rounded half up.
fn per_payment(total: u64, count: u64) -> u64 {
    if count == 0 {
        return 0;
    }
    total
        .saturating_mul(2)
        .saturating_add(count)
        .checked_div(count.saturating_mul(2))
        .unwrap_or_default()
}

/// The plan from what `payment_count` saga payments made.
pub fn plan(
    payment_count: u64,
    lambda_invocations: u64,
    dynamo: &BTreeMap<String, OperationCounters>,
    gateway_calls: u64,
) -> FloorPlan {
    FloorPlan {
        lambda_hops: per_payment(lambda_invocations, payment_count),
        dynamo_requests: dynamo
            .iter()
            .map(|(operation, counters)| {
                (
                    operation.clone(),
                    per_payment(counters.request_count, payment_count),
                )
            })
            .filter(|(_, count)| *count > 0)
            .collect(),
        gateway_calls: per_payment(gateway_calls, payment_count),
    }
}

/// The saga's tables, found by the suffixes template.yml gives them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tables {
    pub payments: String,
    pub payment_events: String,
    pub wallets: String,
    pub wallet_transactions: String,
    pub idempotency: String,
}

impl Tables {
    pub fn find(names: &[String]) -> Option<Self> {
        let with = |suffix: &str| names.iter().find(|name| name.ends_with(suffix)).cloned();
        Some(Self {
            payments: with("-payments")?,
            payment_events: with("-payment-events")?,
            wallets: with("-wallets")?,
            wallet_transactions: with("-wallet-transactions")?,
            idempotency: with("-idempotency")?,
        })
    }
}

fn s(text: &str) -> Value {
    json!({ "S": text })
}

/// One request standing for one of the saga's: same operation, a small item
/// on the table the saga uses it on most. Operations the saga does not use
/// here become a GetItem.
pub fn dynamo_request(
    operation: &str,
    tables: &Tables,
    id: &str,
    step: u64,
    user: &str,
) -> (&'static str, Value) {
    let now = "2026-01-01T00:00:00.000Z";
    match operation {
        "PutItem" => (
            "PutItem",
            json!({
                "TableName": tables.payment_events,
                "Item": {
                    "paymentId": s(id), "sk": s(&format!("{now}#{step:04}")),
                    "userId": s(user), "type": s("FLOOR"), "createdAt": s(now),
                    "detail": s("the floor writes an event of the saga's size"),
                },
            }),
        ),
        "UpdateItem" => (
            "UpdateItem",
            json!({
                "TableName": tables.payments,
                "Key": {"paymentId": s(id)},
                "UpdateExpression": "SET #s = :s, #u = :u, #c = :c, #t = :t ADD #v :one",
                "ExpressionAttributeNames": {"#s": "status", "#u": "userId", "#c": "createdAt", "#t": "updatedAt", "#v": "version"},
                "ExpressionAttributeValues": {":s": s("PROCESSING"), ":u": s(user), ":c": s(now), ":t": s(now), ":one": {"N": "1"}},
            }),
        ),
        "DeleteItem" => (
            "DeleteItem",
            json!({"TableName": tables.idempotency, "Key": {"idempotencyKey": s(id)}}),
        ),
        "Query" => (
            "Query",
            json!({
                "TableName": tables.payment_events,
                "KeyConditionExpression": "#p = :p",
                "ExpressionAttributeNames": {"#p": "paymentId"},
                "ExpressionAttributeValues": {":p": s(id)},
                "ConsistentRead": true,
                "Limit": 50,
            }),
        ),
        "TransactWriteItems" => (
            "TransactWriteItems",
            json!({"TransactItems": [
                {"Update": {
                    "TableName": tables.wallets,
                    "Key": {"userId": s(user), "currency": s("USD")},
                    "UpdateExpression": "SET #t = :t ADD #b :delta, #v :one",
                    "ExpressionAttributeNames": {"#t": "updatedAt", "#b": "balance", "#v": "version"},
                    "ExpressionAttributeValues": {":t": s(now), ":delta": {"N": "-1.00"}, ":one": {"N": "1"}},
                }},
                {"Put": {
                    "TableName": tables.wallet_transactions,
                    "Item": {
                        "walletKey": s(&format!("{user}#USD")), "txId": s(&format!("{id}#{step}")),
                        "kind": s("DEBIT"), "amount": {"N": "1.00"}, "currency": s("USD"), "createdAt": s(now),
                    },
                    "ConditionExpression": "attribute_not_exists(#x)",
                    "ExpressionAttributeNames": {"#x": "txId"},
                }},
            ]}),
        ),
        _ => (
            "GetItem",
            json!({"TableName": tables.payments, "Key": {"paymentId": s(id)}, "ConsistentRead": true}),
        ),
    }
}

/// An API Gateway (REST, proxy) event, as the local cloud builds them.
pub fn proxy_event(method: &str, resource: &str, path: &str, parameters: Option<Value>) -> Value {
    json!({
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": {"accept": "application/json"},
        "multiValueHeaders": {"accept": ["application/json"]},
        "queryStringParameters": null,
        "multiValueQueryStringParameters": null,
        "pathParameters": parameters,
        "stageVariables": null,
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "local",
            "resourcePath": resource,
            "httpMethod": method,
            "path": format!("/local{path}"),
            "stage": "local",
            "requestId": ulid::Ulid::new().to_string(),
            "requestTimeEpoch": 0,
            "protocol": "HTTP/1.1",
            "identity": {"sourceIp": "127.0.0.1", "userAgent": "saga-bench"},
        },
        "body": null,
        "isBase64Encoded": false,
    })
}

pub struct Floor {
    pub api: Api,
    pub cloud: Cloud,
    pub plan: FloorPlan,
    pub tables: Tables,
    /// The function behind the API (its `/health` is the empty hop).
    pub api_function: String,
    pub users: Vec<String>,
    pub run_id: String,
}

pub struct FloorRun {
    pub latencies_us: Vec<u64>,
    pub errors: Vec<String>,
    pub elapsed: Duration,
}

impl Floor {
    pub async fn run(self: &Arc<Self>, count: u64, concurrency: u32, quiet: bool) -> FloorRun {
        let next = Arc::new(AtomicU64::new(0));
        let counters = Arc::new(Counters::default());
        let progress = Progress::start("floor", count, Arc::clone(&counters), quiet);
        let started = Instant::now();
        let workers: Vec<_> = (0..concurrency.max(1))
            .map(|_| {
                let floor = Arc::clone(self);
                let next = Arc::clone(&next);
                let counters = Arc::clone(&counters);
                tokio::spawn(async move {
                    let mut latencies = Vec::new();
                    let mut errors = Vec::new();
                    loop {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        if index >= count {
                            return (latencies, errors);
                        }
                        let started = Instant::now();
                        let result = floor.one(index).await;
                        let us = elapsed_us(started);
                        counters.finish(us, result.is_ok());
                        match result {
                            Ok(()) => latencies.push(us),
                            Err(err) => errors.push(err.to_string()),
                        }
                    }
                })
            })
            .collect();
        let mut run = FloorRun {
            latencies_us: Vec::new(),
            errors: Vec::new(),
            elapsed: Duration::ZERO,
        };
        for worker in workers {
            if let Ok((mut latencies, mut errors)) = worker.await {
                run.latencies_us.append(&mut latencies);
                run.errors.append(&mut errors);
            }
        }
        run.elapsed = started.elapsed();
        progress.finish().await;
        run
    }

    async fn one(&self, index: u64) -> CliResult<()> {
        let id = format!("floor_{}_{index:06}", self.run_id);
        let user_count = u64::try_from(self.users.len()).unwrap_or(1).max(1);
        let user = usize::try_from(index % user_count)
            .ok()
            .and_then(|i| self.users.get(i))
            .map(|user| format!("floor_{user}"))
            .unwrap_or_default();
        if self.plan.lambda_hops > 0 {
            self.api.health().await?;
        }
        let health = proxy_event("GET", "/health", "/health", None);
        for _ in 1..self.plan.lambda_hops {
            self.cloud.invoke(&self.api_function, &health).await?;
        }
        let mut step = 0;
        for (operation, count) in &self.plan.dynamo_requests {
            for _ in 0..*count {
                let (sent, body) = dynamo_request(operation, &self.tables, &id, step, &user);
                self.cloud.dynamo(sent, &body).await?;
                step += 1;
            }
        }
        for call in 0..self.plan.gateway_calls {
            self.cloud
                .gateway_charge(&format!("{id}_{call}"), "1.00")
                .await?;
        }
        Ok(())
    }
}

/// The saga's tables, from ListTables on the edge.
pub async fn tables(cloud: &Cloud) -> CliResult<Tables> {
    let reply = cloud.dynamo("ListTables", &json!({"Limit": 100})).await?;
    let names: Vec<String> = reply["TableNames"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|name| name.as_str().map(str::to_owned))
        .collect();
    Tables::find(&names).ok_or_else(|| {
        CliError::Protocol(format!(
            "the saga's tables are not all there (found {names:?})"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ops(pairs: &[(&str, u64)]) -> BTreeMap<String, OperationCounters> {
        pairs
            .iter()
            .map(|(op, count)| {
                (
                    (*op).to_owned(),
                    OperationCounters {
                        request_count: *count,
                        ..OperationCounters::default()
                    },
                )
            })
            .collect()
    }

    #[test]
    fn the_plan_is_the_saga_mix_per_payment_rounded() {
        // GIVEN 100 payments that made 600 invocations, 1 049 GetItem, 150 PutItem,
        // 20 Query and 100 gateway calls
        let dynamo = ops(&[
            ("GetItem", 1_049),
            ("PutItem", 150),
            ("Query", 20),
            ("UpdateItem", 0),
        ]);
        let plan = plan(100, 600, &dynamo, 100);
        // THEN each payment of the floor makes 6 hops, 10 + 2 requests, 1 call
        assert_eq!(plan.lambda_hops, 6);
        assert_eq!(
            plan.dynamo_requests,
            vec![("GetItem".to_owned(), 10), ("PutItem".to_owned(), 2)]
        );
        assert_eq!(plan.dynamo_request_count(), 12);
        assert_eq!(plan.gateway_calls, 1);
        assert_eq!(super::plan(0, 5, &dynamo, 5), FloorPlan::default());
    }

    #[test]
    fn tables_are_found_by_their_suffix() {
        let names: Vec<String> = [
            "local-circuit-breaker",
            "local-idempotency",
            "local-payment-events",
            "local-payments",
            "local-refunds",
            "local-wallet-transactions",
            "local-wallets",
        ]
        .map(str::to_owned)
        .to_vec();
        let tables = Tables::find(&names);
        assert_eq!(
            tables.as_ref().map(|t| t.payments.as_str()),
            Some("local-payments")
        );
        assert_eq!(
            tables.as_ref().map(|t| t.wallet_transactions.as_str()),
            Some("local-wallet-transactions")
        );
        assert_eq!(Tables::find(&names[..3]), None);
    }

    #[test]
    fn unknown_operations_stand_in_as_reads() {
        let tables = Tables::find(
            &[
                "a-idempotency",
                "a-payment-events",
                "a-payments",
                "a-wallet-transactions",
                "a-wallets",
            ]
            .map(str::to_owned),
        );
        let Some(tables) = tables else {
            unreachable!("all five tables are there");
        };
        let (sent, body) = dynamo_request("BatchGetItem", &tables, "floor_1", 0, "u");
        assert_eq!(sent, "GetItem");
        assert_eq!(body["TableName"], "a-payments");
        let (sent, body) = dynamo_request("TransactWriteItems", &tables, "floor_1", 3, "u");
        assert_eq!(sent, "TransactWriteItems");
        assert_eq!(
            body["TransactItems"][1]["Put"]["Item"]["txId"]["S"],
            "floor_1#3"
        );
    }
}
