//! The local issuer of end users' tokens, standing in for the Cognito user
//! pool (which is not emulated): one RSA-2048 key pair and a random `kid` per
//! start, its JWKS, and RS256 ID tokens for any valid user id. The edge
//! serves it (loopback developer tooling, like the AWS endpoints there):
//!
//! ```text
//! curl -s localhost:4566/local-issuer/.well-known/jwks.json
//! curl -s -XPOST localhost:4566/local-issuer/token -d '{"sub":"alice"}'   # {"token":"eyJ…","expiresAt":…}
//! curl -s localhost:4566/local-issuer/clients                             # the local service clients' keys
//! ```
//!
//! The authorizer function verifies these tokens as it verifies Cognito's on
//! AWS: the local cloud points its `JWT_ISSUER` and `JWKS_URL` here
//! ([`crate::cloud`]); the audience is [`LOCAL_AUDIENCE`], which the template
//! gets as `UserPoolClientId` ([`crate::template::LOCAL_PARAMETER_OVERRIDES`]).

use crate::json_response;
use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{Response, StatusCode};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::{Value, json};
use shared::domain::UserId;

/// Every issuer route is under this prefix of the edge.
pub const ISSUER_PATH: &str = "/local-issuer";
pub const JWKS_PATH: &str = "/local-issuer/.well-known/jwks.json";
pub const TOKEN_PATH: &str = "/local-issuer/token";
/// The local service clients and their API keys ([`crate::api_client`]).
pub const CLIENTS_PATH: &str = "/local-issuer/clients";
/// The "user pool" id the template gets locally (`UserPoolId`).
pub const LOCAL_USER_POOL_ID: &str = "local-pool";
/// The tokens' `aud` (the template's `UserPoolClientId` locally).
pub const LOCAL_AUDIENCE: &str = "payment-saga-local";
pub const TOKEN_LIFETIME_SECONDS_DEFAULT: u64 = 3_600;
pub const TOKEN_LIFETIME_SECONDS_MAX: u64 = 86_400;
/// Cognito's `token_use` of an ID token.
pub const TOKEN_USE_ID: &str = "id";
/// The authorizer's variables the local cloud points at this issuer.
pub const ENV_JWT_ISSUER: &str = "JWT_ISSUER";
pub const ENV_JWKS_URL: &str = "JWKS_URL";
/// Bytes of randomness in a `kid`.
const KEY_ID_BYTES: usize = 16;

/// The issuer URL (`iss`) for an edge on `edge_port`.
pub fn issuer_url(edge_port: u16) -> String {
    format!("http://localhost:{edge_port}{ISSUER_PATH}")
}

/// Where the authorizer fetches the JWKS (by address: `localhost` may
/// resolve to `::1`, and the edge listens on 127.0.0.1 only).
pub fn jwks_url(edge_port: u16) -> String {
    format!("http://127.0.0.1:{edge_port}{JWKS_PATH}")
}

#[derive(Debug, thiserror::Error)]
pub enum IssuerError {
    #[error("cannot generate the issuer's key pair")]
    KeyGeneration,
    #[error("cannot sign a token")]
    Signing,
    #[error("the token's expiry is out of range")]
    Expiry,
}

/// An issued token and when it expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    pub token: String,
    pub expires_at_epoch_seconds: u64,
}

/// The signing key and its public half, per start of the local cloud.
pub struct Issuer {
    key_pair: KeyPair,
    key_id: String,
    url: String,
    audience: String,
}

/// The key pair stays out of logs.
impl fmt::Debug for Issuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issuer")
            .field("key_id", &self.key_id)
            .field("url", &self.url)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl Issuer {
    /// A fresh RSA-2048 key pair and a random `kid`, issuing as `url` for
    /// [`LOCAL_AUDIENCE`].
    pub fn generate(url: impl Into<String>) -> Result<Self, IssuerError> {
        let key_pair =
            KeyPair::generate(KeySize::Rsa2048).map_err(|_| IssuerError::KeyGeneration)?;
        let mut random = [0_u8; KEY_ID_BYTES];
        SystemRandom::new()
            .fill(&mut random)
            .map_err(|_| IssuerError::KeyGeneration)?;
        Ok(Self {
            key_pair,
            key_id: hex::encode(random),
            url: url.into(),
            audience: LOCAL_AUDIENCE.to_owned(),
        })
    }

    /// The `iss` of every token.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn audience(&self) -> &str {
        &self.audience
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The JWKS: the one signing key, RS256.
    pub fn jwks(&self) -> Value {
        let public = self.key_pair.public_key();
        let encode = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
        json!({"keys": [{
            "kty": "RSA",
            "alg": "RS256",
            "use": "sig",
            "kid": self.key_id,
            "n": encode(public.modulus().big_endian_without_leading_zero()),
            "e": encode(public.exponent().big_endian_without_leading_zero()),
        }]})
    }

    /// An ID token for `subject`, issued at `issued_at_epoch_seconds`, valid
    /// for `lifetime_seconds`.
    pub fn issue(
        &self,
        subject: &UserId,
        issued_at_epoch_seconds: u64,
        lifetime_seconds: u64,
    ) -> Result<IssuedToken, IssuerError> {
        let expires_at = issued_at_epoch_seconds
            .checked_add(lifetime_seconds)
            .ok_or(IssuerError::Expiry)?;
        let header = json!({"alg": "RS256", "typ": "JWT", "kid": self.key_id});
        let claims = json!({
            "iss": self.url,
            "aud": self.audience,
            "sub": subject.as_str(),
            "iat": issued_at_epoch_seconds,
            "exp": expires_at,
            "token_use": TOKEN_USE_ID,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut signature = vec![0_u8; self.key_pair.public_modulus_len()];
        self.key_pair
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                signing_input.as_bytes(),
                &mut signature,
            )
            .map_err(|_| IssuerError::Signing)?;
        Ok(IssuedToken {
            token: format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature)),
            expires_at_epoch_seconds: expires_at,
        })
    }
}

/// `POST /local-issuer/token`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TokenRequest {
    sub: String,
    expires_in_seconds: Option<u64>,
}

#[derive(Clone)]
struct IssuerState {
    issuer: Arc<Issuer>,
    clients: Arc<Value>,
}

/// The issuer's routes on the edge; `clients` is what [`CLIENTS_PATH`]
/// answers ([`crate::api_client::listing`]).
pub fn routes(issuer: Arc<Issuer>, clients: Value) -> Router {
    Router::new()
        .route(JWKS_PATH, get(jwks))
        .route(TOKEN_PATH, post(token))
        .route(CLIENTS_PATH, get(clients_listing))
        .with_state(IssuerState {
            issuer,
            clients: Arc::new(clients),
        })
}

async fn jwks(State(state): State<IssuerState>) -> Response<Body> {
    json_response(StatusCode::OK, &state.issuer.jwks())
}

async fn clients_listing(State(state): State<IssuerState>) -> Response<Body> {
    json_response(StatusCode::OK, &state.clients)
}

async fn token(State(state): State<IssuerState>, body: Bytes) -> Response<Body> {
    let request: TokenRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(err) => {
            return bad_request(
                "invalid_json",
                &format!("expected {{\"sub\": \"<user id>\", \"expiresInSeconds\"?: n}}: {err}"),
            );
        }
    };
    let Ok(subject) = UserId::parse(&request.sub) else {
        return bad_request(
            "invalid_user_id",
            "sub must be a user id: 1-64 characters of [A-Za-z0-9_.-]",
        );
    };
    let lifetime_seconds = request
        .expires_in_seconds
        .unwrap_or(TOKEN_LIFETIME_SECONDS_DEFAULT);
    if !(1..=TOKEN_LIFETIME_SECONDS_MAX).contains(&lifetime_seconds) {
        return bad_request(
            "invalid_expiry",
            &format!("expiresInSeconds must be 1 to {TOKEN_LIFETIME_SECONDS_MAX}"),
        );
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or_default();
    match state.issuer.issue(&subject, now, lifetime_seconds) {
        Ok(issued) => json_response(
            StatusCode::OK,
            &json!({"token": issued.token, "expiresAt": issued.expires_at_epoch_seconds}),
        ),
        Err(err) => json_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            &json!({"error": {"type": "api_error", "code": "internal_error", "message": err.to_string()}}),
        ),
    }
}

fn bad_request(code: &str, message: &str) -> Response<Body> {
    json_response(
        StatusCode::BAD_REQUEST,
        &json!({"error": {"type": "invalid_request_error", "code": code, "message": message}}),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use axum::body::to_bytes;
    use axum::http::Request;
    use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
    use tower::ServiceExt;

    use super::*;

    const URL: &str = "http://localhost:4566/local-issuer";

    fn app() -> (Router, Arc<Issuer>) {
        let issuer = Arc::new(Issuer::generate(URL).unwrap());
        (routes(Arc::clone(&issuer), json!([])), issuer)
    }

    async fn call(app: Router, request: Request<Body>) -> (StatusCode, Value) {
        let response = app.oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    fn token_request(body: &str) -> Request<Body> {
        Request::post(TOKEN_PATH)
            .header("content-type", "application/json")
            .body(Body::from(body.to_owned()))
            .unwrap()
    }

    #[tokio::test]
    async fn the_jwks_holds_one_rs256_signing_key() {
        // GIVEN an issuer WHEN its JWKS is fetched
        let (app, issuer) = app();
        let (status, jwks) = call(app, Request::get(JWKS_PATH).body(Body::empty()).unwrap()).await;
        // THEN it is one RSA signature key under the issuer's kid
        assert_eq!(status, StatusCode::OK);
        let keys = jwks["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 1);
        let key = &keys[0];
        assert_eq!(key["kty"], "RSA");
        assert_eq!(key["alg"], "RS256");
        assert_eq!(key["use"], "sig");
        assert_eq!(key["kid"], issuer.key_id());
        assert_eq!(issuer.key_id().len(), 2 * KEY_ID_BYTES);
        // AND the modulus is 2048 bits, the exponent 65537 (AQAB), base64url
        let modulus = URL_SAFE_NO_PAD.decode(key["n"].as_str().unwrap()).unwrap();
        assert_eq!(modulus.len(), 256);
        assert_eq!(key["e"], "AQAB");
        // AND every start has its own key
        let other = Issuer::generate(URL).unwrap();
        assert_ne!(other.key_id(), issuer.key_id());
        assert_ne!(other.jwks()["keys"][0]["n"], key["n"]);
    }

    #[tokio::test]
    async fn a_token_verifies_against_the_jwks() {
        // GIVEN an issuer WHEN a token is asked for alice
        let (app, issuer) = app();
        let (status, body) = call(
            app,
            token_request(r#"{"sub":"alice","expiresInSeconds":600}"#),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let token = body["token"].as_str().unwrap();
        // THEN jsonwebtoken verifies it with the JWKS key its kid names
        let header = decode_header(token).unwrap();
        assert_eq!(header.alg, Algorithm::RS256);
        assert_eq!(header.kid.as_deref(), Some(issuer.key_id()));
        let jwk = &issuer.jwks()["keys"][0];
        let key = DecodingKey::from_rsa_components(
            jwk["n"].as_str().unwrap(),
            jwk["e"].as_str().unwrap(),
        )
        .unwrap();
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[URL]);
        validation.set_audience(&[LOCAL_AUDIENCE]);
        let claims = decode::<Value>(token, &key, &validation).unwrap().claims;
        // AND it carries the claims of a Cognito ID token
        assert_eq!(claims["sub"], "alice");
        assert_eq!(claims["token_use"], "id");
        let issued_at = claims["iat"].as_u64().unwrap();
        assert_eq!(claims["exp"].as_u64().unwrap(), issued_at + 600);
        assert_eq!(body["expiresAt"], claims["exp"]);
        // AND another issuer's key does not verify it
        let stranger = Issuer::generate(URL).unwrap().jwks();
        let stranger = &stranger["keys"][0];
        let wrong = DecodingKey::from_rsa_components(
            stranger["n"].as_str().unwrap(),
            stranger["e"].as_str().unwrap(),
        )
        .unwrap();
        assert!(decode::<Value>(token, &wrong, &validation).is_err());
    }

    #[tokio::test]
    async fn the_lifetime_defaults_to_an_hour_and_is_bounded() {
        let (app, _) = app();
        let (status, body) = call(app.clone(), token_request(r#"{"sub":"bob"}"#)).await;
        assert_eq!(status, StatusCode::OK);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let expires_at = body["expiresAt"].as_u64().unwrap();
        assert!(
            (now + 3_590..=now + 3_610).contains(&expires_at),
            "{expires_at} vs {now}"
        );
        for lifetime in ["0", "86401"] {
            let request =
                token_request(&format!(r#"{{"sub":"bob","expiresInSeconds":{lifetime}}}"#));
            let (status, body) = call(app.clone(), request).await;
            assert_eq!(status, StatusCode::BAD_REQUEST);
            assert_eq!(body["error"]["code"], "invalid_expiry");
        }
    }

    #[tokio::test]
    async fn a_bad_body_or_subject_is_a_400() {
        let (app, _) = app();
        for (body, code) in [
            (r#"{"sub":"not a user id"}"#, "invalid_user_id"),
            (r#"{"sub":""}"#, "invalid_user_id"),
            (r#"{"subject":"alice"}"#, "invalid_json"),
            (r#"{"sub":42}"#, "invalid_json"),
            ("not json", "invalid_json"),
        ] {
            let (status, answer) = call(app.clone(), token_request(body)).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
            assert_eq!(answer["error"]["code"], code, "{body}");
        }
    }
}
