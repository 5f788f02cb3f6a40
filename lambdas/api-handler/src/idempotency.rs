//! `Idempotency-Key` (DESIGN §7): the first response to a key is kept for 24 h
//! and replayed for the same request; the same key with another request is
//! refused (422); a key whose request is still running is busy (409).
//!
//! Ids created under a key are DERIVED from the key's record (its scoped key
//! and claim time), not random. A request whose first attempt ended without a
//! definite answer (a crash, a 5xx) is therefore resumed — after
//! [`IN_PROGRESS_STALE_SECONDS`] — with the same payment, refund or top-up id,
//! and every step it repeats is idempotent by that id: nothing happens twice.

use std::future::Future;

use shared::domain::idempotency::IDEMPOTENCY_KEY_LENGTH_MAX;
use shared::domain::{ClaimOutcome, IdempotencyRecord, IdempotencyState, Timestamp};
use shared::ports::IdempotencyRepo;
use tracing::{info, warn};
use ulid::Ulid;

use crate::error::{ApiError, Code};
use crate::http::{self, HEADER_IDEMPOTENCY_KEY, HEADER_REPLAYED, Request, Response};

/// An in-progress record older than this is a request that died (API
/// Gateway gives up after 29 s; this Lambda's timeout is 20 s): a retry
/// resumes it instead of waiting out the 24 h TTL.
pub const IN_PROGRESS_STALE_SECONDS: i64 = 30;

/// A client key scoped by method, path and caller, and the request's hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub scoped: String,
    pub request_hash: String,
}

/// The request's `Idempotency-Key`, if any, scoped to this route and caller.
/// `canonical_body` is the validated request in canonical form.
pub fn key(request: &Request<'_>, canonical_body: &str) -> Result<Option<Key>, ApiError> {
    let Some(value) = request.headers.get(HEADER_IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let invalid = || {
        ApiError::new(
            Code::InvalidIdempotencyKey,
            format!(
                "Idempotency-Key must be 1-{IDEMPOTENCY_KEY_LENGTH_MAX} printable ASCII characters"
            ),
        )
        .with_param("Idempotency-Key")
    };
    let bytes = value.as_bytes();
    let length_ok = !bytes.is_empty()
        && bytes.len() <= usize::try_from(IDEMPOTENCY_KEY_LENGTH_MAX).unwrap_or(0);
    if !length_ok || !bytes.iter().all(|b| (0x20..=0x7e).contains(b)) {
        return Err(invalid());
    }
    let client_key = value.to_str().map_err(|_| invalid())?;
    let (method, path) = (request.method, request.path);
    let hashed = format!("{method}\n{path}\n{canonical_body}");
    Ok(Some(Key {
        scoped: format!("{method} {path}#{}#{client_key}", request.caller()),
        request_hash: http::sha256_hex(hashed.as_bytes()),
    }))
}

/// What to do with the key once the work has answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// A definite answer: store it and replay it for 24 h.
    Complete,
    /// Nothing happened: drop the claim so the client may retry the key.
    Release,
    /// The outcome is unknown (5xx): keep the claim, so a retry after
    /// [`IN_PROGRESS_STALE_SECONDS`] resumes with the same derived ids.
    Keep,
}

#[derive(Debug)]
pub struct Outcome {
    pub response: Response,
    pub disposition: Disposition,
    /// Sent instead of `response` when a [`Disposition::Release`] could not
    /// be written: for answers that are only true if a retry of the key
    /// cannot resume the request with the same ids.
    pub unreleased: Option<Response>,
}

impl Outcome {
    /// 2xx is stored, 4xx released (refused before any effect), 5xx kept.
    pub fn by_status(response: Response) -> Self {
        let disposition = match response.status {
            200..=299 => Disposition::Complete,
            400..=499 => Disposition::Release,
            _ => Disposition::Keep,
        };
        Self::with(response, disposition)
    }

    pub fn with(response: Response, disposition: Disposition) -> Self {
        Self {
            response,
            disposition,
            unreleased: None,
        }
    }

    /// Release the key and answer `response`; if the release cannot be
    /// written (the key stays claimed and a retry resumes), answer
    /// `unreleased` instead.
    pub fn released_or(response: Response, unreleased: Response) -> Self {
        Self {
            unreleased: Some(unreleased),
            ..Self::with(response, Disposition::Release)
        }
    }
}

/// Attempts at releasing or completing a key before leaving it claimed.
const FINISH_ATTEMPT_COUNT_MAX: u32 = 3;
const FINISH_BACKOFF_MS: u64 = 50;

/// Runs `work` under `key` (or plainly without one). `work` receives the
/// ULID to build its new id from: random without a key, derived with one.
pub async fn run<F, Fut>(repo: &dyn IdempotencyRepo, key: Option<Key>, work: F) -> Response
where
    F: FnOnce(Ulid) -> Fut,
    Fut: Future<Output = Outcome>,
{
    let Some(key) = key else {
        return work(shared::domain::source::ulid()).await.response;
    };
    let claim = match begin(repo, &key).await {
        Ok(claim) => claim,
        Err(answer) => return answer,
    };
    let outcome = work(derived_seed(&key.scoped, claim)).await;
    finish(repo, &key, claim, outcome).await
}

/// Claims the key (or resumes a dead request's claim); returns the claim's
/// time, which the request's ids are derived from.
async fn begin(repo: &dyn IdempotencyRepo, key: &Key) -> Result<Timestamp, Response> {
    let now = Timestamp::now();
    let record = IdempotencyRecord::claim(key.scoped.clone(), key.request_hash.clone(), now);
    match repo.claim(&record, now).await {
        Ok(ClaimOutcome::Claimed) => Ok(now),
        Ok(ClaimOutcome::Existing(existing)) => earlier_use(key, &existing, now),
        Err(err) => Err(Response::error(err.into())),
    }
}

/// The key was used before: replay, refuse, wait, or resume a dead request.
fn earlier_use(
    key: &Key,
    existing: &IdempotencyRecord,
    now: Timestamp,
) -> Result<Timestamp, Response> {
    if existing.request_hash != key.request_hash {
        let err = ApiError::new(
            Code::IdempotencyKeyReused,
            "this Idempotency-Key was already used with a different request; use a new key",
        );
        return Err(Response::error(err.with_param("Idempotency-Key")));
    }
    match &existing.state {
        IdempotencyState::Completed { status_code, body } => {
            let replay = Response {
                status: *status_code,
                body: body.clone(),
                ..Response::json(*status_code, &serde_json::Value::Null)
            };
            Err(replay.with_header(HEADER_REPLAYED, "true"))
        }
        IdempotencyState::InProgress => {
            let stale_at = existing.created_at.plus_seconds(IN_PROGRESS_STALE_SECONDS);
            if now >= stale_at {
                info!(idempotencyKey = %key.scoped, "resuming a request that never finished");
                return Ok(existing.created_at);
            }
            let wait_seconds = stale_at
                .unix_seconds()
                .saturating_sub(now.unix_seconds())
                .max(1);
            let err = ApiError::new(
                Code::IdempotencyKeyInUse,
                "a request with this Idempotency-Key is in progress; retry shortly",
            )
            .with_param("Idempotency-Key");
            Err(Response::error(err).with_header("retry-after", wait_seconds.to_string()))
        }
    }
}

/// Records the outcome under the key (a few tries: a key left claimed is
/// resumed later with the same ids) and returns the answer to send.
async fn finish(
    repo: &dyn IdempotencyRepo,
    key: &Key,
    claimed_at: Timestamp,
    outcome: Outcome,
) -> Response {
    let mut result = Ok(());
    for attempt in 1..=FINISH_ATTEMPT_COUNT_MAX {
        if attempt > 1 {
            let backoff = FINISH_BACKOFF_MS * u64::from(attempt - 1);
            tokio::time::sleep(std::time::Duration::from_millis(backoff)).await;
        }
        result = match outcome.disposition {
            Disposition::Complete => {
                let state = IdempotencyState::Completed {
                    status_code: outcome.response.status,
                    body: outcome.response.body.clone(),
                };
                repo.complete(&key.scoped, &state).await
            }
            Disposition::Release => repo.release(&key.scoped, claimed_at).await,
            Disposition::Keep => Ok(()),
        };
        match &result {
            Err(err) if err.error_type().is_retryable() => {}
            _ => break,
        }
    }
    let Err(err) = result else {
        return outcome.response;
    };
    // A record left in progress is resumed later with the same ids: worth a
    // warning, and for an answer only true once released, another answer.
    warn!(idempotencyKey = %key.scoped, disposition = ?outcome.disposition, error = %err,
        "idempotency record not updated");
    match (outcome.disposition, outcome.unreleased) {
        (Disposition::Release, Some(unreleased)) => unreleased,
        _ => outcome.response,
    }
}

/// The ULID of the id made under a key: the claim's time in ms (ids stay
/// time-sortable) and 80 bits of the hash of the scoped key and the claim's
/// time in µs, so a key released and claimed again gets a new id.
pub fn derived_seed(scoped_key: &str, claimed_at: Timestamp) -> Ulid {
    let digest = http::sha256_hex(format!("{scoped_key}\n{claimed_at}").as_bytes());
    // 20 hex digits = 80 bits, the random part of a ULID.
    let random = u128::from_str_radix(digest.get(..20).unwrap_or("0"), 16).unwrap_or(0);
    let millis = u64::try_from(claimed_at.unix_millis()).unwrap_or(0);
    Ulid::from_parts(millis, random)
}

/// Builds a prefixed id (`pay_…`, `ref_…`, `top_…`) from a seed.
pub fn id_from_seed<T>(
    prefix: &str,
    seed: Ulid,
    parse: impl Fn(&str) -> Result<T, shared::domain::IdError>,
) -> Result<T, ApiError> {
    parse(&format!("{prefix}{seed}"))
        .map_err(|err| ApiError::internal(Code::InternalError, format!("derived id: {err}")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use shared::domain::PaymentId;

    use super::*;

    #[test]
    fn derived_ids_depend_only_on_key_and_claim_time() {
        let at = Timestamp::now();
        let a = derived_seed("POST /payments#anonymous#k1", at);
        assert_eq!(a, derived_seed("POST /payments#anonymous#k1", at));
        assert_ne!(a, derived_seed("POST /payments#anonymous#k2", at));
        assert_ne!(
            a,
            derived_seed("POST /payments#anonymous#k1", at.plus_seconds(1))
        );
        let id = id_from_seed(PaymentId::PREFIX, a, PaymentId::parse).unwrap();
        assert!(id.to_string().starts_with("pay_"));
    }
}
