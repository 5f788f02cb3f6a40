//! The local cloud as the benchmark sees it: its functions (Lambda REST API on
//! the edge), its counters (`/_local/lambda/stats`, `/_local/dynamodb/stats`,
//! the mock gateway's `/control/stats`), raw DynamoDB and Lambda calls for the
//! floor, the functions' log files and their processes' memory in `/proc`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::{CliError, CliResult};

/// The mock gateway's key when nobody set one (mock-gateway/README.md).
pub const LOCAL_GATEWAY_API_KEY: &str = "local-gateway-key";

#[derive(Debug, Clone)]
pub struct Cloud {
    http: reqwest::Client,
    pub edge: String,
    pub gateway: String,
    gateway_api_key: String,
}

/// A function as the Lambda API describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionInfo {
    pub name: String,
    /// The binary (`Handler`), e.g. `wallet-service`.
    pub binary: String,
    pub memory_mb: u64,
    /// The template's variables (without the local cloud's extras).
    #[serde(skip)]
    pub environment: BTreeMap<String, String>,
    /// The binary the local cloud runs (`Code.Location`).
    pub program: Option<PathBuf>,
}

/// One function's counters from `/_local/lambda/stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionCounters {
    pub function_name: String,
    pub binary: String,
    pub invocation_count: u64,
    pub cold_start_count: u64,
    #[serde(default)]
    pub function_error_count: u64,
    #[serde(default)]
    pub instances: Vec<InstanceInfo>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceInfo {
    pub pid: u32,
}

/// One DynamoDB operation's counters from `/_local/dynamodb/stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OperationCounters {
    pub request_count: u64,
    pub error_count: u64,
    #[serde(default)]
    pub errors: BTreeMap<String, u64>,
    /// Refused conditions by table (a wallet version conflict shows on the wallets table).
    #[serde(default)]
    pub condition_failures: BTreeMap<String, u64>,
    pub capacity_milli_units: u64,
}

fn counts_since(
    now: &BTreeMap<String, u64>,
    earlier: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    now.iter()
        .map(|(name, count)| {
            let before = earlier.get(name).copied().unwrap_or_default();
            (name.clone(), count.saturating_sub(before))
        })
        .filter(|(_, count)| *count > 0)
        .collect()
}

impl OperationCounters {
    /// `self - earlier`, field by field.
    pub fn since(&self, earlier: &Self) -> Self {
        Self {
            request_count: self.request_count.saturating_sub(earlier.request_count),
            error_count: self.error_count.saturating_sub(earlier.error_count),
            errors: counts_since(&self.errors, &earlier.errors),
            condition_failures: counts_since(&self.condition_failures, &earlier.condition_failures),
            capacity_milli_units: self
                .capacity_milli_units
                .saturating_sub(earlier.capacity_milli_units),
        }
    }
}

/// Per-operation counters between two snapshots.
pub fn operations_since(
    after: &BTreeMap<String, OperationCounters>,
    before: &BTreeMap<String, OperationCounters>,
) -> BTreeMap<String, OperationCounters> {
    after
        .iter()
        .map(|(operation, counters)| {
            let earlier = before.get(operation).cloned().unwrap_or_default();
            (operation.clone(), counters.since(&earlier))
        })
        .filter(|(_, counters)| counters.request_count > 0)
        .collect()
}

/// DynamoDB operations that read (their capacity is read request units).
pub fn is_read(operation: &str) -> bool {
    matches!(
        operation,
        "GetItem" | "Query" | "Scan" | "BatchGetItem" | "TransactGetItems"
    )
}

impl Cloud {
    pub fn new(edge: &str, gateway: &str, gateway_api_key: &str) -> CliResult<Self> {
        let http = crate::api::http_client()?;
        Ok(Self {
            http,
            edge: edge.trim_end_matches('/').to_owned(),
            gateway: gateway.trim_end_matches('/').to_owned(),
            gateway_api_key: gateway_api_key.to_owned(),
        })
    }

    async fn request(
        &self,
        method: Method,
        url: &str,
        what: &'static str,
        flag: &'static str,
        body: Option<&Value>,
    ) -> CliResult<(u16, Value)> {
        let mut request = self.http.request(method, url);
        if let Some(body) = body {
            request = request.json(body);
        }
        let reply = request.send().await.map_err(|err| CliError::Unreachable {
            what,
            url: url.to_owned(),
            flag,
            detail: err.to_string(),
        })?;
        let status = reply.status().as_u16();
        let text = reply
            .text()
            .await
            .map_err(|err| CliError::Protocol(format!("{url}: {err}")))?;
        let value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Ok((status, value))
    }

    async fn edge_get(&self, path: &str) -> CliResult<(u16, Value)> {
        let url = format!("{}{path}", self.edge);
        self.request(Method::GET, &url, "the AWS edge", "endpoint-url", None)
            .await
    }

    async fn gateway_call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> CliResult<(u16, Value)> {
        let url = format!("{}{path}", self.gateway);
        self.request(method, &url, "the mock gateway", "gateway-url", body)
            .await
    }

    /// Both the edge and the gateway answer their health checks.
    pub async fn check(&self) -> CliResult<()> {
        for (status, what) in [
            (self.edge_get("/health").await?.0, "the AWS edge /health"),
            (
                self.gateway_call(Method::GET, "/health", None).await?.0,
                "the mock gateway /health",
            ),
        ] {
            if status != 200 {
                return Err(CliError::Protocol(format!("{what} answered {status}")));
            }
        }
        Ok(())
    }

    /// Every function, with its binary's path.
    pub async fn functions(&self) -> CliResult<Vec<FunctionInfo>> {
        let (status, list) = self.edge_get("/2015-03-31/functions/").await?;
        if status != 200 {
            return Err(CliError::Protocol(format!(
                "ListFunctions answered {status}"
            )));
        }
        let mut functions = Vec::new();
        for config in list["Functions"].as_array().into_iter().flatten() {
            let name = text(config, "FunctionName");
            let (_, detail) = self
                .edge_get(&format!(
                    "/2015-03-31/functions/{}",
                    crate::api::encode(&name)
                ))
                .await?;
            let program = detail["Code"]["Location"].as_str().map(PathBuf::from);
            let environment = config["Environment"]["Variables"]
                .as_object()
                .map(|vars| {
                    vars.iter()
                        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                        .collect()
                })
                .unwrap_or_default();
            functions.push(FunctionInfo {
                binary: text(config, "Handler"),
                memory_mb: config["MemorySize"].as_u64().unwrap_or(128),
                environment,
                program,
                name,
            });
        }
        functions.sort_by(|a, b| a.binary.cmp(&b.binary));
        Ok(functions)
    }

    /// `None` when the local cloud has no stats route (an older build).
    pub async fn lambda_stats(&self) -> CliResult<Option<BTreeMap<String, FunctionCounters>>> {
        #[derive(Deserialize)]
        struct Stats {
            functions: Vec<FunctionCounters>,
        }
        let (status, value) = self.edge_get("/_local/lambda/stats").await?;
        if status != 200 {
            return Ok(None);
        }
        let stats: Stats = serde_json::from_value(value)
            .map_err(|err| CliError::Protocol(format!("/_local/lambda/stats: {err}")))?;
        Ok(Some(
            stats
                .functions
                .into_iter()
                .map(|f| (f.function_name.clone(), f))
                .collect(),
        ))
    }

    /// `None` when the local cloud does not count DynamoDB requests (an older build).
    pub async fn dynamo_stats(&self) -> CliResult<Option<BTreeMap<String, OperationCounters>>> {
        #[derive(Deserialize)]
        struct Stats {
            operations: BTreeMap<String, OperationCounters>,
        }
        let (status, value) = self.edge_get("/_local/dynamodb/stats").await?;
        if status != 200 {
            return Ok(None);
        }
        let stats: Stats = serde_json::from_value(value)
            .map_err(|err| CliError::Protocol(format!("/_local/dynamodb/stats: {err}")))?;
        Ok(Some(stats.operations))
    }

    /// Calls the gateway counted since it started (`/control/stats` `total`).
    pub async fn gateway_call_count(&self) -> CliResult<u64> {
        let (_, stats) = self
            .gateway_call(Method::GET, "/control/stats", None)
            .await?;
        Ok(stats["total"].as_u64().unwrap_or_default())
    }

    /// The gateway's current settings (to put them back afterwards).
    pub async fn gateway_settings(&self) -> CliResult<Value> {
        Ok(self
            .gateway_call(Method::GET, "/control/mode", None)
            .await?
            .1)
    }

    pub async fn set_gateway_settings(&self, settings: &Value) -> CliResult<()> {
        let (status, reply) = self
            .gateway_call(Method::POST, "/control/mode", Some(settings))
            .await?;
        if status != 200 {
            return Err(CliError::Usage(format!(
                "the mock gateway refused {settings}: {reply}"
            )));
        }
        Ok(())
    }

    /// One new charge, as payments-adapter makes it.
    pub async fn gateway_charge(&self, payment_id: &str, amount: &str) -> CliResult<()> {
        let url = format!("{}/v1/payments", self.gateway);
        let body = json!({"paymentId": payment_id, "amount": amount, "currency": "USD"});
        let reply = self
            .http
            .post(&url)
            .header("X-API-Key", &self.gateway_api_key)
            .json(&body)
            .send()
            .await
            .map_err(|err| CliError::Unreachable {
                what: "the mock gateway",
                url: url.clone(),
                flag: "gateway-url",
                detail: err.to_string(),
            })?;
        let status = reply.status();
        let _ = reply.bytes().await;
        if status.is_server_error() || status.as_u16() == 401 {
            return Err(CliError::Protocol(format!("{url}: {status}")));
        }
        Ok(())
    }

    /// One DynamoDB request in the JSON protocol, as the SDKs send it.
    pub async fn dynamo(&self, operation: &str, body: &Value) -> CliResult<Value> {
        let reply = self
            .http
            .post(format!("{}/", self.edge))
            .header("x-amz-target", format!("DynamoDB_20120810.{operation}"))
            .header("content-type", "application/x-amz-json-1.0")
            // The engine wants a SigV4-shaped request; it does not check the signature.
            .header("x-amz-date", "20260101T000000Z")
            .header(
                "authorization",
                "AWS4-HMAC-SHA256 Credential=local/20260101/us-east-1/dynamodb/aws4_request, \
                 SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=0",
            )
            .body(body.to_string())
            .send()
            .await
            .map_err(|err| CliError::Unreachable {
                what: "DynamoDB on the edge",
                url: self.edge.clone(),
                flag: "endpoint-url",
                detail: err.to_string(),
            })?;
        let status = reply.status();
        let value: Value = reply.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            return Err(CliError::Protocol(format!(
                "DynamoDB {operation}: {status} {value}"
            )));
        }
        Ok(value)
    }

    /// Lambda Invoke (RequestResponse) through the edge.
    pub async fn invoke(&self, function: &str, payload: &Value) -> CliResult<Value> {
        let url = format!(
            "{}/2015-03-31/functions/{}/invocations",
            self.edge,
            crate::api::encode(function)
        );
        let reply = self
            .http
            .post(&url)
            .body(payload.to_string())
            .send()
            .await
            .map_err(|err| CliError::Unreachable {
                what: "Lambda on the edge",
                url: url.clone(),
                flag: "endpoint-url",
                detail: err.to_string(),
            })?;
        let status = reply.status();
        let failed = reply.headers().contains_key("x-amz-function-error");
        let value: Value = reply.json().await.unwrap_or(Value::Null);
        if !status.is_success() || failed {
            return Err(CliError::Protocol(format!(
                "Invoke {function}: {status} {value}"
            )));
        }
        Ok(value)
    }
}

fn text(value: &Value, field: &str) -> String {
    value[field].as_str().unwrap_or_default().to_owned()
}

/// Peak resident memory (`VmHWM`) of a live process, in KiB.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status_field_kib(&status, "VmHWM:")
}

fn status_field_kib(status: &str, field: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|number| number.parse().ok())
}

/// One Lambda `REPORT` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvocationReport {
    pub billed_ms: u64,
    /// `Init Duration`, rounded up to whole ms, on cold starts.
    pub init_ms: Option<u64>,
}

/// The `REPORT` lines of a function log (other lines are the function's own).
pub fn parse_reports(log: &str) -> Vec<InvocationReport> {
    log.lines()
        .filter(|line| line.starts_with("REPORT RequestId:"))
        .filter_map(|line| {
            let field = |name: &str| {
                line.split('\t')
                    .find_map(|part| part.trim().strip_prefix(name))
                    .map(|rest| rest.trim_end_matches(" ms").trim().to_owned())
            };
            let billed_ms = field("Billed Duration:")?.parse().ok()?;
            let init_ms = field("Init Duration:").and_then(|text| ceil_decimal_ms(&text));
            Some(InvocationReport { billed_ms, init_ms })
        })
        .collect()
}

/// `"45.67"` → 46 (whole milliseconds, rounded up), from the digits.
fn ceil_decimal_ms(text: &str) -> Option<u64> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let whole: u64 = whole.parse().ok()?;
    let up = fraction.bytes().any(|b| b != b'0');
    Some(if up { whole.saturating_add(1) } else { whole })
}

/// The function logs' sizes now, to read only what a phase appends.
pub fn log_offsets(log_dir: &Path, binaries: &[String]) -> BTreeMap<String, u64> {
    binaries
        .iter()
        .map(|binary| {
            let size = std::fs::metadata(log_dir.join(format!("{binary}.log")))
                .map(|m| m.len())
                .unwrap_or_default();
            (binary.clone(), size)
        })
        .collect()
}

/// The `REPORT` lines appended to `binary`'s log since `offset`; `None` when
/// there is no log directory (a function never invoked has no log yet: none).
pub fn reports_since(log_dir: &Path, binary: &str, offset: u64) -> Option<Vec<InvocationReport>> {
    use std::io::{Read, Seek, SeekFrom};
    if !log_dir.is_dir() {
        return None;
    }
    let Ok(mut file) = std::fs::File::open(log_dir.join(format!("{binary}.log"))) else {
        return Some(Vec::new());
    };
    file.seek(SeekFrom::Start(offset)).ok()?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).ok()?;
    Some(parse_reports(&String::from_utf8_lossy(&bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_lines_give_billed_and_init_durations() {
        let log = "START RequestId: a Version: $LATEST\n\
            {\"level\":\"INFO\",\"message\":\"debited\"}\n\
            END RequestId: a\n\
            REPORT RequestId: a\tDuration: 12.34 ms\tBilled Duration: 13 ms\tMemory Size: 128 MB\tInit Duration: 45.60 ms\n\
            REPORT RequestId: b\tDuration: 1.00 ms\tBilled Duration: 2 ms\tMemory Size: 128 MB\n\
            REPORT RequestId: c\tgarbage\n";
        let reports = parse_reports(log);
        assert_eq!(
            reports,
            vec![
                InvocationReport {
                    billed_ms: 13,
                    init_ms: Some(46)
                },
                InvocationReport {
                    billed_ms: 2,
                    init_ms: None
                },
            ]
        );
        assert_eq!(ceil_decimal_ms("45.00"), Some(45));
        assert_eq!(ceil_decimal_ms("7"), Some(7));
    }

    #[test]
    fn peak_rss_is_read_from_proc_status() {
        let status =
            "Name:\twallet-service\nVmPeak:\t  99999 kB\nVmHWM:\t   11832 kB\nVmRSS:\t 11000 kB\n";
        assert_eq!(status_field_kib(status, "VmHWM:"), Some(11_832));
        assert_eq!(status_field_kib(status, "VmSwap:"), None);
        // AND this very process has one
        assert!(peak_rss_kib(std::process::id()).is_some_and(|kib| kib > 0));
    }

    #[test]
    fn counters_are_differenced_per_operation() {
        let before = BTreeMap::from([(
            "GetItem".to_owned(),
            OperationCounters {
                request_count: 10,
                error_count: 1,
                errors: BTreeMap::from([("X".to_owned(), 1)]),
                condition_failures: BTreeMap::from([("local-wallets".to_owned(), 2)]),
                capacity_milli_units: 5_000,
            },
        )]);
        let after = BTreeMap::from([
            (
                "GetItem".to_owned(),
                OperationCounters {
                    request_count: 15,
                    error_count: 1,
                    errors: BTreeMap::from([("X".to_owned(), 1)]),
                    condition_failures: BTreeMap::from([("local-wallets".to_owned(), 5)]),
                    capacity_milli_units: 7_500,
                },
            ),
            (
                "PutItem".to_owned(),
                OperationCounters {
                    request_count: 3,
                    capacity_milli_units: 3_000,
                    ..OperationCounters::default()
                },
            ),
        ]);
        let delta = operations_since(&after, &before);
        assert_eq!(delta["GetItem"].request_count, 5);
        assert_eq!(delta["GetItem"].capacity_milli_units, 2_500);
        assert!(delta["GetItem"].errors.is_empty());
        assert_eq!(delta["GetItem"].condition_failures["local-wallets"], 3);
        assert_eq!(delta["PutItem"].request_count, 3);
        assert!(is_read("Query") && !is_read("TransactWriteItems"));
    }
}
