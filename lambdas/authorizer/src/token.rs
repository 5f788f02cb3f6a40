//! End users' bearer tokens: RS256 JWTs of the user pool, verified against
//! the issuer's JWKS.
//!
//! - The algorithm is RS256 and nothing else: `alg` is checked before any key
//!   is looked up, and the validation allows RS256 only, so `none`, HS256
//!   (even keyed with the RSA public key) and every other family are refused.
//!   A key embedded in the token (`jwk`, `jku`) is never used.
//! - The key comes from the JWKS by `kid`. The set is fetched on first use,
//!   its RSA signing keys decoded once into `DecodingKey`s and kept; an
//!   unknown `kid` refetches it (key rotation) at most once per
//!   [`JWKS_REFETCH_INTERVAL_SECONDS`], so a flood of made-up `kid`s cannot
//!   turn into a flood of fetches.
//! - Claims: `iss` exactly the issuer; `exp` required and `nbf` if present,
//!   each with at most [`CLOCK_SKEW_SECONDS_MAX`] of leeway; the audience is
//!   `aud`, or for a Cognito access token (`token_use: access`, which has no
//!   `aud`) its `client_id`; `sub` a valid [`UserId`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use shared::domain::UserId;
use tracing::{info, warn};

use crate::{AuthError, Refusal};

/// Leeway on `exp` and `nbf` for clocks that disagree.
pub const CLOCK_SKEW_SECONDS_MAX: u64 = 30;
/// An unknown `kid` refetches the JWKS at most this often.
pub const JWKS_REFETCH_INTERVAL_SECONDS: u64 = 60;
/// Keys kept from one JWKS, at most (Cognito publishes two).
pub const JWKS_KEY_COUNT_MAX: usize = 16;
/// Cognito's `token_use` of an access token.
pub const TOKEN_USE_ACCESS: &str = "access";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    #[error("fetch failed: {0}")]
    Fetch(String),
    #[error("answered HTTP {0}")]
    Status(u16),
    #[error("larger than {0} bytes")]
    TooLarge(usize),
    #[error("not a JSON Web Key Set: {0}")]
    Malformed(String),
}

/// Where the issuer's key set comes from: HTTP on AWS and locally
/// ([`crate::HttpJwks`]), a fixed set in tests ([`crate::memory::InMemoryJwks`]).
#[async_trait]
pub trait JwksSource: Send + Sync {
    async fn fetch(&self) -> Result<JwkSet, JwksError>;
}

/// The issuer's signing keys by `kid`, decoded once per fetch.
pub struct KeyCache {
    source: Arc<dyn JwksSource>,
    state: tokio::sync::Mutex<KeyState>,
}

#[derive(Default)]
struct KeyState {
    keys: HashMap<String, Arc<DecodingKey>>,
    /// A fetch has succeeded: from then on, fetches are rate-limited.
    loaded: bool,
    last_fetch_at: Option<Instant>,
}

impl KeyState {
    /// Until a first set is loaded every lookup may fetch (a failed fetch at
    /// a cold start must not lock users out for a minute); after that, at
    /// most one fetch per interval, failed or not.
    fn may_fetch(&self, now: Instant) -> bool {
        let interval = Duration::from_secs(JWKS_REFETCH_INTERVAL_SECONDS);
        !self.loaded
            || self
                .last_fetch_at
                .is_none_or(|at| now.saturating_duration_since(at) >= interval)
    }
}

impl KeyCache {
    pub fn new(source: Arc<dyn JwksSource>) -> Self {
        Self {
            source,
            state: tokio::sync::Mutex::new(KeyState::default()),
        }
    }

    /// The key `kid` names, fetching the set if it is not known yet and the
    /// rate limit allows. `Ok(None)`: no such key.
    pub async fn key(
        &self,
        kid: &str,
        now: Instant,
    ) -> Result<Option<Arc<DecodingKey>>, JwksError> {
        // Held across the fetch: concurrent lookups wait for one fetch
        // rather than each starting their own.
        let mut state = self.state.lock().await;
        if let Some(key) = state.keys.get(kid) {
            return Ok(Some(Arc::clone(key)));
        }
        if !state.may_fetch(now) {
            return Ok(None);
        }
        state.last_fetch_at = Some(now);
        let set = self.source.fetch().await?;
        state.keys = decoding_keys(&set);
        state.loaded = true;
        info!(keyCount = state.keys.len(), "JWKS loaded");
        Ok(state.keys.get(kid).map(Arc::clone))
    }
}

/// The RS256 signing keys of `set`, by `kid`. Keys for anything else
/// (encryption, other algorithms or families, no `kid`) are left out.
fn decoding_keys(set: &JwkSet) -> HashMap<String, Arc<DecodingKey>> {
    let mut keys = HashMap::new();
    for jwk in &set.keys {
        let Some(kid) = jwk.common.key_id.as_deref() else {
            warn!("JWKS key without kid ignored");
            continue;
        };
        let for_signing = jwk
            .common
            .public_key_use
            .as_ref()
            .is_none_or(|key_use| *key_use == PublicKeyUse::Signature);
        let for_rs256 = jwk
            .common
            .key_algorithm
            .is_none_or(|alg| alg == KeyAlgorithm::RS256);
        let AlgorithmParameters::RSA(rsa) = &jwk.algorithm else {
            info!(kid, "JWKS key ignored: not RSA");
            continue;
        };
        if !(for_signing && for_rs256) {
            info!(kid, "JWKS key ignored: not an RS256 signing key");
            continue;
        }
        if keys.len() >= JWKS_KEY_COUNT_MAX {
            warn!(
                kid,
                keyCountMax = JWKS_KEY_COUNT_MAX,
                "JWKS key ignored: too many keys"
            );
            continue;
        }
        match DecodingKey::from_rsa_components(&rsa.n, &rsa.e) {
            Ok(key) => {
                keys.insert(kid.to_owned(), Arc::new(key));
            }
            Err(err) => warn!(kid, error = %err, "JWKS key ignored: unreadable"),
        }
    }
    keys
}

/// What a valid token is: built once, used for every request.
pub struct TokenRules {
    audience: String,
    validation: Validation,
}

impl TokenRules {
    pub fn new(issuer: &str, audience: &str) -> Self {
        let mut validation = Validation::new(Algorithm::RS256);
        validation.algorithms = vec![Algorithm::RS256];
        validation.leeway = CLOCK_SKEW_SECONDS_MAX;
        validation.reject_tokens_expiring_in_less_than = 0;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        // Checked below: Cognito's access tokens carry `client_id`, not `aud`.
        validation.validate_aud = false;
        validation.set_issuer(&[issuer]);
        validation.set_required_spec_claims(&["exp", "iss"]);
        Self {
            audience: audience.to_owned(),
            validation,
        }
    }

    fn is_audience(&self, claims: &Claims) -> bool {
        let by_aud = match &claims.aud {
            Some(Audience::One(aud)) => *aud == self.audience,
            Some(Audience::Many(auds)) => auds.contains(&self.audience),
            None => false,
        };
        let by_client_id = claims.token_use.as_deref() == Some(TOKEN_USE_ACCESS)
            && claims.client_id.as_deref() == Some(self.audience.as_str());
        by_aud || by_client_id
    }
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

/// The claims read beyond those `Validation` checks (`exp`, `nbf`, `iss`).
#[derive(Debug, Deserialize)]
struct Claims {
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    aud: Option<Audience>,
    #[serde(default)]
    token_use: Option<String>,
    #[serde(default)]
    client_id: Option<String>,
}

/// The user a valid token is for.
pub async fn verify(
    keys: &KeyCache,
    rules: &TokenRules,
    token: &str,
    now: Instant,
) -> Result<UserId, AuthError> {
    let header = jsonwebtoken::decode_header(token)
        .map_err(|err| Refusal::MalformedToken(reason(err.kind())))?;
    if header.alg != Algorithm::RS256 {
        return Err(Refusal::AlgorithmNotAllowed(format!("{:?}", header.alg)).into());
    }
    let kid = header.kid.ok_or(Refusal::MissingKeyId)?;
    let key = keys
        .key(&kid, now)
        .await
        .map_err(AuthError::Jwks)?
        .ok_or(Refusal::UnknownKeyId)?;
    let claims = jsonwebtoken::decode::<Claims>(token, &key, &rules.validation)
        .map_err(|err| Refusal::InvalidToken(reason(err.kind())))?
        .claims;
    if !rules.is_audience(&claims) {
        return Err(Refusal::WrongAudience.into());
    }
    let sub = claims.sub.ok_or(Refusal::MissingSubject)?;
    Ok(UserId::parse(&sub).map_err(|_| Refusal::InvalidSubject)?)
}

/// A fixed description of why jsonwebtoken refused: its own messages can
/// quote parts of the token.
fn reason(kind: &ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidSignature => "bad signature",
        ErrorKind::ExpiredSignature => "expired",
        ErrorKind::ImmatureSignature => "not valid yet (nbf)",
        ErrorKind::InvalidIssuer => "wrong issuer",
        ErrorKind::InvalidAudience => "wrong audience",
        ErrorKind::InvalidSubject => "wrong subject",
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => "algorithm not allowed",
        ErrorKind::MissingRequiredClaim(_) => "a required claim (exp, iss) is missing",
        ErrorKind::InvalidClaimFormat(_) => "a claim has the wrong type",
        ErrorKind::InvalidToken => "not three base64url parts",
        ErrorKind::Base64(_) => "not base64url",
        ErrorKind::Json(_) | ErrorKind::Utf8(_) => "not JSON",
        ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidEddsaKey
        | ErrorKind::InvalidKeyFormat
        | ErrorKind::RsaFailedSigning
        | ErrorKind::Signing(_)
        | ErrorKind::InvalidAlgorithmName
        | ErrorKind::UnsupportedAlgorithm
        | ErrorKind::Provider(_) => "key or algorithm unusable",
        _ => "invalid",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn only_rs256_signing_keys_with_a_kid_are_kept() {
        let rsa = |extra: serde_json::Value| {
            let mut key = serde_json::json!({ "kty": "RSA", "n": "sXch", "e": "AQAB" });
            for (name, value) in extra.as_object().unwrap() {
                key[name] = value.clone();
            }
            key
        };
        let set: JwkSet = serde_json::from_value(serde_json::json!({ "keys": [
            rsa(serde_json::json!({ "kid": "kept", "use": "sig", "alg": "RS256" })),
            rsa(serde_json::json!({ "kid": "bare" })),
            rsa(serde_json::json!({ "kid": "encryption", "use": "enc" })),
            rsa(serde_json::json!({ "kid": "rs384", "alg": "RS384" })),
            rsa(serde_json::json!({ "use": "sig", "alg": "RS256" })),
            { "kty": "oct", "kid": "hmac", "k": "c2VjcmV0" },
            { "kty": "EC", "kid": "ec", "crv": "P-256", "x": "AQ", "y": "AQ" },
        ]}))
        .unwrap();
        let mut kids: Vec<String> = decoding_keys(&set).into_keys().collect();
        kids.sort_unstable();
        assert_eq!(kids, ["bare", "kept"]);
    }
}
