//! Cold starts, one process at a time, outside the local cloud: this module
//! serves the Lambda Runtime API itself on loopback, starts a function's
//! binary with the environment Lambda would give it, and times
//!
//! - **init**: process start → its first `GET /runtime/invocation/next`;
//! - **first invocation**: that event handed over → its response (or error)
//!   posted back: everything the function does lazily on its first call
//!   (connections, credentials, the first DynamoDB and gateway requests);
//!
//! then reads the process's peak RSS (`VmHWM`) and kills it. The same for a
//! hello-world Lambda built with the same profile, as the baseline.
//! Binary facts (size, stripped or not, architecture) are read from the ELF
//! headers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use tokio::sync::oneshot;

use super::cloud::peak_rss_kib;
use crate::error::{CliError, CliResult};

/// Lambda's limit on the init phase.
const INIT_WAIT: Duration = Duration::from_secs(10);
const INVOCATION_WAIT: Duration = Duration::from_secs(30);

/// One binary to cold-start, with what to send it each time.
#[derive(Debug, Clone)]
pub struct ColdTarget {
    pub name: String,
    pub program: PathBuf,
    pub environment: BTreeMap<String, String>,
    /// One event per sample (fresh ids each time).
    pub events: Vec<serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ColdSample {
    pub init_us: u64,
    pub first_invocation_us: u64,
    pub peak_rss_kib: Option<u64>,
    /// The errorType the function posted, if it failed its first event.
    pub error_type: Option<String>,
}

#[derive(Default)]
struct Slots {
    event: Option<Bytes>,
    polled: Option<oneshot::Sender<Instant>>,
    answered: Option<oneshot::Sender<(Instant, Option<String>)>>,
    init_failed: Option<oneshot::Sender<String>>,
}

type Shared = Arc<Mutex<Slots>>;

fn slots(shared: &Shared) -> std::sync::MutexGuard<'_, Slots> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

const REQUEST_ID: &str = "00000000-0000-4000-8000-000000000001";

async fn next(State(shared): State<Shared>) -> Response {
    let (event, polled) = {
        let mut slots = slots(&shared);
        (slots.event.take(), slots.polled.take())
    };
    let at = Instant::now();
    let Some(event) = event else {
        // The second poll: the instance idles until it is killed, as on Lambda.
        std::future::pending::<()>().await;
        return StatusCode::GONE.into_response();
    };
    if let Some(polled) = polled {
        let _ = polled.send(at);
    }
    let deadline_ms = super::load::epoch_us(std::time::SystemTime::now()) / 1_000 + 30_000;
    let mut headers = HeaderMap::new();
    let pairs = [
        ("lambda-runtime-aws-request-id", REQUEST_ID.to_owned()),
        ("lambda-runtime-deadline-ms", deadline_ms.to_string()),
        (
            "lambda-runtime-invoked-function-arn",
            "arn:aws:lambda:us-east-1:000000000000:function:bench-cold-start".to_owned(),
        ),
        (
            "lambda-runtime-trace-id",
            "Root=1-00000000-000000000000000000000001;Sampled=0".to_owned(),
        ),
        ("content-type", "application/json".to_owned()),
    ];
    for (name, value) in pairs {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
    (StatusCode::OK, headers, event).into_response()
}

async fn response(State(shared): State<Shared>) -> StatusCode {
    let at = Instant::now();
    if let Some(answered) = slots(&shared).answered.take() {
        let _ = answered.send((at, None));
    }
    StatusCode::ACCEPTED
}

async fn error(State(shared): State<Shared>, body: Bytes) -> StatusCode {
    let at = Instant::now();
    let error_type = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["errorType"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "Unknown".to_owned());
    if let Some(answered) = slots(&shared).answered.take() {
        let _ = answered.send((at, Some(error_type)));
    }
    StatusCode::ACCEPTED
}

async fn init_error(State(shared): State<Shared>, body: Bytes) -> StatusCode {
    if let Some(failed) = slots(&shared).init_failed.take() {
        let _ = failed.send(String::from_utf8_lossy(&body).into_owned());
    }
    StatusCode::ACCEPTED
}

/// Cold-starts `target` once per event, one after the other.
pub async fn measure(target: &ColdTarget, log_dir: &Path) -> CliResult<Vec<ColdSample>> {
    std::fs::create_dir_all(log_dir)
        .map_err(|err| CliError::Usage(format!("{}: {err}", log_dir.display())))?;
    let mut samples = Vec::new();
    for event in &target.events {
        samples.push(one(target, event, log_dir).await?);
    }
    Ok(samples)
}

async fn one(
    target: &ColdTarget,
    event: &serde_json::Value,
    log_dir: &Path,
) -> CliResult<ColdSample> {
    // The process runs in its binary's directory, so name it absolutely.
    let program = std::fs::canonicalize(&target.program)
        .map_err(|err| CliError::Usage(format!("{}: {err}", target.program.display())))?;
    let (polled_tx, polled_rx) = oneshot::channel();
    let (answered_tx, answered_rx) = oneshot::channel();
    let (init_failed_tx, init_failed_rx) = oneshot::channel();
    let shared: Shared = Arc::new(Mutex::new(Slots {
        event: Some(Bytes::from(event.to_string())),
        polled: Some(polled_tx),
        answered: Some(answered_tx),
        init_failed: Some(init_failed_tx),
    }));
    let router = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(response),
        )
        .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
        .route("/2018-06-01/runtime/init/error", post(init_error))
        .with_state(shared);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(|err| CliError::Usage(format!("cannot listen on loopback: {err}")))?;
    let address = listener
        .local_addr()
        .map_err(|err| CliError::Usage(err.to_string()))?;
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_dir.join(format!("{}.log", target.name)))
        .map_err(|err| CliError::Usage(format!("{}: {err}", log_dir.display())))?;
    let log_err = log
        .try_clone()
        .map_err(|err| CliError::Usage(err.to_string()))?;
    let mut command = tokio::process::Command::new(&program);
    command
        .env_clear()
        .envs(&target.environment)
        .env("AWS_LAMBDA_RUNTIME_API", address.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err))
        .kill_on_drop(true);
    if let Some(dir) = program.parent() {
        command.current_dir(dir);
    }
    let started = Instant::now();
    let mut child = command.spawn().map_err(|err| {
        server.abort();
        CliError::Usage(format!("cannot start {}: {err}", target.program.display()))
    })?;
    let pid = child.id().unwrap_or_default();
    let outcome = async {
        let polled_at = tokio::select! {
            polled = tokio::time::timeout(INIT_WAIT, polled_rx) => match polled {
                Ok(Ok(at)) => at,
                _ => return Err(format!("no first poll within {} s", INIT_WAIT.as_secs())),
            },
            failed = init_failed_rx => {
                return Err(format!("init error: {}", failed.unwrap_or_default()));
            }
        };
        let answered = tokio::time::timeout(INVOCATION_WAIT, answered_rx).await;
        let (answered_at, error_type) = match answered {
            Ok(Ok(answer)) => answer,
            _ => return Err("no answer to the first event".to_owned()),
        };
        Ok(ColdSample {
            init_us: duration_us(polled_at.saturating_duration_since(started)),
            first_invocation_us: duration_us(answered_at.saturating_duration_since(polled_at)),
            peak_rss_kib: peak_rss_kib(pid),
            error_type,
        })
    }
    .await;
    let _ = child.start_kill();
    let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
    server.abort();
    outcome.map_err(|err| CliError::Outcome(format!("cold start of {}: {err}", target.name)))
}

fn duration_us(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// The environment Lambda gives a function (the reserved variables, the
/// template's, and what the local cloud adds: endpoint, dummy credentials,
/// the gateway).
pub fn environment(
    function_name: &str,
    memory_mb: u64,
    template: &BTreeMap<String, String>,
    extras: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for name in ["PATH", "LANG"] {
        if let Ok(value) = std::env::var(name) {
            env.insert(name.to_owned(), value);
        }
    }
    env.insert("AWS_CONFIG_FILE".to_owned(), "/dev/null".to_owned());
    env.insert(
        "AWS_SHARED_CREDENTIALS_FILE".to_owned(),
        "/dev/null".to_owned(),
    );
    env.extend(template.clone());
    env.extend(extras.clone());
    let reserved = [
        ("AWS_LAMBDA_FUNCTION_NAME", function_name.to_owned()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", memory_mb.to_string()),
        (
            "AWS_LAMBDA_LOG_GROUP_NAME",
            format!("/aws/lambda/{function_name}"),
        ),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "bench/cold-start".to_owned()),
        ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".to_owned()),
        ("AWS_EXECUTION_ENV", "AWS_Lambda_provided.al2023".to_owned()),
        ("TZ", ":UTC".to_owned()),
    ];
    for (name, value) in reserved {
        env.insert(name.to_owned(), value);
    }
    env
}

/// What the ELF headers say about a binary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BinaryFacts {
    pub path: String,
    pub bytes: u64,
    /// No `.symtab` section (what `strip = "symbols"` leaves).
    pub stripped: bool,
    /// `x86_64`, `aarch64`, or the ELF machine number.
    pub architecture: String,
    /// When the file was written (RFC 3339): a deploy artefact may be older
    /// than the sources.
    pub modified: Option<String>,
}

/// Size, stripped-ness and architecture of an ELF64 little-endian binary.
pub fn binary_facts(path: &Path) -> Option<BinaryFacts> {
    let bytes = std::fs::read(path).ok()?;
    let (stripped, architecture) = elf_facts(&bytes)?;
    let modified = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|at| {
            time::OffsetDateTime::from(at)
                .replace_nanosecond(0)
                .ok()?
                .format(&time::format_description::well_known::Rfc3339)
                .ok()
        });
    Some(BinaryFacts {
        path: path.display().to_string(),
        bytes: u64::try_from(bytes.len()).ok()?,
        stripped,
        architecture,
        modified,
    })
}

fn elf_facts(bytes: &[u8]) -> Option<(bool, String)> {
    const SHT_SYMTAB: u32 = 2;
    if bytes.get(..4)? != b"\x7fELF" || bytes.get(4)? != &2 || bytes.get(5)? != &1 {
        return None; // not ELF64 little-endian
    }
    let u16_at = |at: usize| -> Option<u16> {
        Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
    };
    let u32_at = |at: usize| -> Option<u32> {
        Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
    };
    let u64_at = |at: usize| -> Option<u64> {
        Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
    };
    let architecture = match u16_at(0x12)? {
        0x3e => "x86_64".to_owned(),
        0xb7 => "aarch64".to_owned(),
        other => format!("elf-machine-{other}"),
    };
    let section_headers = usize::try_from(u64_at(0x28)?).ok()?;
    let entry_size = usize::from(u16_at(0x3a)?);
    let count = usize::from(u16_at(0x3c)?);
    let has_symtab = (0..count).any(|index| {
        let at = section_headers.saturating_add(index.saturating_mul(entry_size));
        u32_at(at.saturating_add(4)) == Some(SHT_SYMTAB)
    });
    Some((!has_symtab, architecture))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 header with `sections` section headers of the given types.
    fn elf(machine: u16, sections: &[u32]) -> Vec<u8> {
        let mut bytes = vec![0u8; 64];
        bytes[..4].copy_from_slice(b"\x7fELF");
        bytes[4] = 2;
        bytes[5] = 1;
        bytes[0x12..0x14].copy_from_slice(&machine.to_le_bytes());
        bytes[0x28..0x30].copy_from_slice(&64u64.to_le_bytes());
        bytes[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        let count = u16::try_from(sections.len()).unwrap_or_default();
        bytes[0x3c..0x3e].copy_from_slice(&count.to_le_bytes());
        for kind in sections {
            let mut header = vec![0u8; 64];
            header[4..8].copy_from_slice(&kind.to_le_bytes());
            bytes.extend(header);
        }
        bytes
    }

    #[test]
    fn elf_headers_tell_stripped_binaries_and_their_architecture() {
        assert_eq!(
            elf_facts(&elf(0x3e, &[0, 1, 3])),
            Some((true, "x86_64".to_owned()))
        );
        assert_eq!(
            elf_facts(&elf(0xb7, &[0, 1, 2, 3])),
            Some((false, "aarch64".to_owned()))
        );
        assert_eq!(elf_facts(b"#!/bin/sh\n"), None);
        // AND the test binary itself is an ELF file
        let me = std::env::current_exe().ok();
        assert!(me.and_then(|path| binary_facts(&path)).is_some());
    }

    #[test]
    fn the_environment_is_lambdas_with_reserved_names_winning() {
        let template = BTreeMap::from([
            (
                "PAYMENTS_TABLE_NAME".to_owned(),
                "local-payments".to_owned(),
            ),
            ("AWS_LAMBDA_FUNCTION_NAME".to_owned(), "spoofed".to_owned()),
        ]);
        let extras = BTreeMap::from([(
            "AWS_ENDPOINT_URL".to_owned(),
            "http://127.0.0.1:4566".to_owned(),
        )]);
        let env = environment("local-wallet-service", 128, &template, &extras);
        assert_eq!(env["AWS_LAMBDA_FUNCTION_NAME"], "local-wallet-service");
        assert_eq!(env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"], "128");
        assert_eq!(env["PAYMENTS_TABLE_NAME"], "local-payments");
        assert_eq!(env["AWS_ENDPOINT_URL"], "http://127.0.0.1:4566");
        assert!(!env.contains_key("HOME"));
    }
}
