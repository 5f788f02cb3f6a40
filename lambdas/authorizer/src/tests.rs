//! The handler against in-memory ports: end users' tokens signed in the test
//! with a test-only RSA key (`tests/fixtures/`), service clients in an
//! in-memory directory. No network.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lambda_events::apigw::ApiGatewayCustomAuthorizerRequestTypeRequest;
use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode, get_current_timestamp};
use lambda_runtime::{Context, Diagnostic, LambdaEvent};
use serde_json::{Value, json};
use shared::RepoError;

use super::*;
use crate::memory::{InMemoryClientDirectory, InMemoryJwks};

/// Test-only keys (see tests/fixtures/README.md): the one the JWKS publishes,
/// its public half as PEM text, and one it does not publish.
const SIGNING_KEY_DER: &[u8] =
    include_bytes!("../tests/fixtures/TEST-ONLY-signing-rsa2048-private.pkcs1.der");
const SIGNING_PUBLIC_KEY_PEM: &[u8] =
    include_bytes!("../tests/fixtures/TEST-ONLY-signing-rsa2048-public.spki.pem");
const OTHER_KEY_DER: &[u8] =
    include_bytes!("../tests/fixtures/TEST-ONLY-other-rsa2048-private.pkcs1.der");

const ISSUER: &str = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_TestPool";
const AUDIENCE: &str = "test-app-client";
const KID: &str = "test-key-1";
const OTHER_KID: &str = "test-key-2";
const USER: &str = "0f4c2b8e-7d1a-4e5b-9c3f-2a6d8e1b4c70";
const END_USER_USAGE_KEY: &str = "end-users-test-usage-key";
const METHOD_ARN: &str = "arn:aws:execute-api:us-east-1:123456789012:abc123/prod/POST/payments";
const STAGE_RESOURCE: &str = "arn:aws:execute-api:us-east-1:123456789012:abc123/prod/*/*";
const CLIENT_KEY: &str = "test-client-key-0123456789abcdef";

struct World {
    deps: Deps,
    jwks: Arc<InMemoryJwks>,
    clients: Arc<InMemoryClientDirectory>,
}

fn jwk(der: &[u8], kid: &str) -> Jwk {
    let mut jwk =
        Jwk::from_encoding_key(&EncodingKey::from_rsa_der(der), Algorithm::RS256).unwrap();
    jwk.common.key_id = Some(kid.to_owned());
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    jwk
}

fn config() -> Config {
    Config {
        jwt_issuer: ISSUER.to_owned(),
        jwt_audience: AUDIENCE.to_owned(),
        jwks_url: format!("{ISSUER}/.well-known/jwks.json"),
        end_user_usage_key: END_USER_USAGE_KEY.to_owned(),
        api_clients_table_name: "api-clients".to_owned(),
    }
}

fn world() -> World {
    let jwks = Arc::new(InMemoryJwks::new(JwkSet {
        keys: vec![jwk(SIGNING_KEY_DER, KID)],
    }));
    let clients = Arc::new(InMemoryClientDirectory::new());
    let deps = Deps::new(&config(), clients.clone(), jwks.clone()).unwrap();
    World {
        deps,
        jwks,
        clients,
    }
}

fn now_seconds() -> i64 {
    i64::try_from(get_current_timestamp()).unwrap()
}

/// A Cognito ID token's claims, valid for ten minutes.
fn claims() -> Value {
    let now = now_seconds();
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": USER,
        "token_use": "id",
        "iat": now,
        "exp": now + 600,
    })
}

fn with(mut claims: Value, name: &str, value: Value) -> Value {
    claims[name] = value;
    claims
}

fn without(mut claims: Value, name: &str) -> Value {
    claims.as_object_mut().unwrap().remove(name);
    claims
}

fn sign_with(claims: &Value, der: &[u8], kid: &str) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_owned());
    encode(&header, claims, &EncodingKey::from_rsa_der(der)).unwrap()
}

fn sign(claims: &Value) -> String {
    sign_with(claims, SIGNING_KEY_DER, KID)
}

/// Unpadded base64url (RFC 4648 §5), for hand-made token parts.
fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let byte = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let bits = (byte(0) << 16) | (byte(1) << 8) | byte(2);
        for i in 0..=chunk.len() {
            let index = (bits >> (18 - 6 * i)) & 0x3f;
            out.push(char::from(ALPHABET[usize::try_from(index).unwrap()]));
        }
    }
    out
}

fn request_to(
    method_arn: Option<&str>,
    headers: &[(&str, &str)],
) -> ApiGatewayCustomAuthorizerRequestTypeRequest {
    let single: serde_json::Map<String, Value> = headers
        .iter()
        .map(|(name, value)| ((*name).to_owned(), json!(value)))
        .collect();
    let multi: serde_json::Map<String, Value> = headers
        .iter()
        .map(|(name, value)| ((*name).to_owned(), json!([value])))
        .collect();
    serde_json::from_value(json!({
        "type": "REQUEST",
        "methodArn": method_arn,
        "resource": "/payments",
        "path": "/payments",
        "httpMethod": "POST",
        "headers": single,
        "multiValueHeaders": multi,
        "queryStringParameters": {},
        "multiValueQueryStringParameters": {},
        "pathParameters": {},
        "stageVariables": {},
        "requestContext": {
            "path": "/prod/payments",
            "accountId": "123456789012",
            "resourceId": "r1",
            "stage": "prod",
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
            "resourcePath": "/payments",
            "httpMethod": "POST",
            "apiId": "abc123"
        }
    }))
    .unwrap()
}

fn request(headers: &[(&str, &str)]) -> ApiGatewayCustomAuthorizerRequestTypeRequest {
    request_to(Some(METHOD_ARN), headers)
}

fn bearer_request(token: &str) -> ApiGatewayCustomAuthorizerRequestTypeRequest {
    request(&[("Authorization", &format!("Bearer {token}"))])
}

async fn authorize_now(
    world: &World,
    request: &ApiGatewayCustomAuthorizerRequestTypeRequest,
) -> Result<AuthorizerResponse, AuthError> {
    authorize(&world.deps, request, Instant::now()).await
}

/// The token of `claims`, presented as a bearer token.
async fn authorize_token(world: &World, token: &str) -> Result<AuthorizerResponse, AuthError> {
    authorize_now(world, &bearer_request(token)).await
}

fn refused(result: Result<AuthorizerResponse, AuthError>) -> Refusal {
    match result {
        Err(AuthError::Unauthorized(refusal)) => refusal,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn allowed_user(response: &AuthorizerResponse) {
    assert_eq!(
        response.principal_id.as_deref(),
        Some(&*format!("user:{USER}"))
    );
    assert_eq!(
        response.context.get(CONTEXT_USER_ID).map(String::as_str),
        Some(USER)
    );
}

fn secs(count: u64) -> Duration {
    Duration::from_secs(count)
}

// ---------------------------------------------------------------------------------------
// End users
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_valid_user_token_is_allowed_with_the_user_context_and_the_end_user_usage_key() {
    // GIVEN a token the pool signed for this app client
    let world = world();
    let event = LambdaEvent::new(bearer_request(&sign(&claims())), Context::default());
    // WHEN API Gateway asks
    let response = handle(&world.deps, event).await.unwrap();
    // THEN the whole stage is allowed for user:<sub>, on the end users' usage plan
    assert_eq!(
        serde_json::to_value(&response).unwrap(),
        json!({
            "principalId": format!("user:{USER}"),
            "policyDocument": {
                "Version": "2012-10-17",
                "Statement": [{
                    "Action": ["execute-api:Invoke"],
                    "Effect": "Allow",
                    "Resource": [STAGE_RESOURCE]
                }]
            },
            "context": { "principalType": "user", "userId": USER },
            "usageIdentifierKey": END_USER_USAGE_KEY
        })
    );
    assert_eq!(world.jwks.fetch_count(), 1);
}

#[tokio::test]
async fn header_names_and_the_bearer_scheme_are_case_insensitive() {
    let world = world();
    let token = sign(&claims());
    let response = authorize_now(
        &world,
        &request(&[("AUTHORIZATION", &format!("bEaReR {token}"))]),
    )
    .await;
    allowed_user(&response.unwrap());
}

#[tokio::test]
async fn an_expired_token_is_unauthorized() {
    let world = world();
    let token = sign(&with(claims(), "exp", json!(now_seconds() - 60)));
    assert_eq!(
        refused(authorize_token(&world, &token).await),
        Refusal::InvalidToken("expired")
    );
}

#[tokio::test]
async fn a_token_expired_within_the_clock_leeway_is_allowed() {
    let world = world();
    let token = sign(&with(claims(), "exp", json!(now_seconds() - 10)));
    allowed_user(&authorize_token(&world, &token).await.unwrap());
}

#[tokio::test]
async fn a_token_without_exp_is_unauthorized() {
    let world = world();
    let token = sign(&without(claims(), "exp"));
    assert!(matches!(
        refused(authorize_token(&world, &token).await),
        Refusal::InvalidToken(_)
    ));
}

#[tokio::test]
async fn a_not_yet_valid_token_is_unauthorized() {
    let world = world();
    let token = sign(&with(claims(), "nbf", json!(now_seconds() + 120)));
    assert_eq!(
        refused(authorize_token(&world, &token).await),
        Refusal::InvalidToken("not valid yet (nbf)")
    );
}

#[tokio::test]
async fn a_wrong_issuer_is_unauthorized() {
    let world = world();
    for issuer in [
        "https://issuer.example",
        "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_TestPool/",
    ] {
        let token = sign(&with(claims(), "iss", json!(issuer)));
        assert_eq!(
            refused(authorize_token(&world, &token).await),
            Refusal::InvalidToken("wrong issuer"),
            "{issuer}"
        );
    }
    let token = sign(&without(claims(), "iss"));
    assert!(matches!(
        refused(authorize_token(&world, &token).await),
        Refusal::InvalidToken(_)
    ));
}

#[tokio::test]
async fn a_wrong_audience_is_unauthorized() {
    let world = world();
    let token = sign(&with(claims(), "aud", json!("another-app-client")));
    assert_eq!(
        refused(authorize_token(&world, &token).await),
        Refusal::WrongAudience
    );
    let token = sign(&without(claims(), "aud"));
    assert_eq!(
        refused(authorize_token(&world, &token).await),
        Refusal::WrongAudience
    );
}

#[tokio::test]
async fn a_cognito_access_token_for_the_app_client_is_allowed() {
    // Cognito access tokens have no aud: the app client is `client_id`.
    let world = world();
    let access = with(
        with(without(claims(), "aud"), "token_use", json!("access")),
        "client_id",
        json!(AUDIENCE),
    );
    allowed_user(&authorize_token(&world, &sign(&access)).await.unwrap());
}

#[tokio::test]
async fn a_client_id_counts_only_on_an_access_token_of_the_app_client() {
    let world = world();
    let access = with(without(claims(), "aud"), "token_use", json!("access"));
    let other_client = with(access.clone(), "client_id", json!("another-app-client"));
    assert_eq!(
        refused(authorize_token(&world, &sign(&other_client)).await),
        Refusal::WrongAudience
    );
    let id_token = with(without(claims(), "aud"), "client_id", json!(AUDIENCE));
    assert_eq!(
        refused(authorize_token(&world, &sign(&id_token)).await),
        Refusal::WrongAudience
    );
}

#[tokio::test]
async fn an_alg_none_token_is_unauthorized() {
    let world = world();
    assert_eq!(base64url(b"{\"alg\":\"none\"}"), "eyJhbGciOiJub25lIn0");
    let payload = base64url(claims().to_string().as_bytes());
    for alg in ["none", "None", "NONE"] {
        let header = json!({ "alg": alg, "kid": KID, "typ": "JWT" }).to_string();
        let unsigned = format!("{}.{payload}", base64url(header.as_bytes()));
        for token in [format!("{unsigned}."), unsigned.clone()] {
            assert!(matches!(
                refused(authorize_token(&world, &token).await),
                Refusal::MalformedToken(_)
            ));
        }
    }
    assert_eq!(world.jwks.fetch_count(), 0);
}

#[tokio::test]
async fn an_hs256_token_keyed_with_the_rsa_public_key_is_unauthorized() {
    // The classic key confusion: the published key used as an HMAC secret.
    let world = world();
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(KID.to_owned());
    let public_jwk = serde_json::to_vec(&jwk(SIGNING_KEY_DER, KID)).unwrap();
    for secret in [SIGNING_PUBLIC_KEY_PEM, public_jwk.as_slice()] {
        let token = encode(
            &header,
            &claims(),
            &EncodingKey::from_secret(secret).unwrap(),
        )
        .unwrap();
        assert_eq!(
            refused(authorize_token(&world, &token).await),
            Refusal::AlgorithmNotAllowed("HS256".to_owned())
        );
    }
    // Refused on its header: no key was even looked up.
    assert_eq!(world.jwks.fetch_count(), 0);
}

#[tokio::test]
async fn a_tampered_payload_is_unauthorized() {
    // GIVEN the signature of one payload on another (a different sub)
    let world = world();
    let genuine = sign(&claims());
    let forged = sign(&with(claims(), "sub", json!("mallory")));
    let parts: Vec<&str> = genuine.split('.').collect();
    let forged_parts: Vec<&str> = forged.split('.').collect();
    let tampered = format!("{}.{}.{}", parts[0], forged_parts[1], parts[2]);
    // THEN the signature does not verify
    assert_eq!(
        refused(authorize_token(&world, &tampered).await),
        Refusal::InvalidToken("bad signature")
    );
    // AND a flipped signature does not either
    let mut signature = parts[2].to_owned();
    let last = if signature.ends_with('A') { "B" } else { "A" };
    signature.replace_range(signature.len() - 1.., last);
    let flipped = format!("{}.{}.{signature}", parts[0], parts[1]);
    assert!(matches!(
        refused(authorize_token(&world, &flipped).await),
        Refusal::InvalidToken(_)
    ));
    allowed_user(&authorize_token(&world, &genuine).await.unwrap());
}

#[tokio::test]
async fn a_token_signed_by_another_key_under_a_published_kid_is_unauthorized() {
    let world = world();
    let token = sign_with(&claims(), OTHER_KEY_DER, KID);
    assert_eq!(
        refused(authorize_token(&world, &token).await),
        Refusal::InvalidToken("bad signature")
    );
}

#[tokio::test]
async fn a_key_embedded_in_the_token_header_is_not_trusted() {
    let world = world();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(OTHER_KID.to_owned());
    header.jwk = Some(jwk(OTHER_KEY_DER, OTHER_KID));
    let token = encode(
        &header,
        &claims(),
        &EncodingKey::from_rsa_der(OTHER_KEY_DER),
    )
    .unwrap();
    assert_eq!(
        refused(authorize_token(&world, &token).await),
        Refusal::UnknownKeyId
    );
}

#[tokio::test]
async fn a_token_without_kid_is_unauthorized() {
    let world = world();
    let token = encode(
        &Header::new(Algorithm::RS256),
        &claims(),
        &EncodingKey::from_rsa_der(SIGNING_KEY_DER),
    )
    .unwrap();
    assert_eq!(
        refused(authorize_token(&world, &token).await),
        Refusal::MissingKeyId
    );
}

#[tokio::test]
async fn an_unknown_kid_is_unauthorized_and_refetches_the_jwks_at_most_once_a_minute() {
    // GIVEN the key set loaded by a first, valid token
    let world = world();
    let t0 = Instant::now();
    let valid = bearer_request(&sign(&claims()));
    authorize(&world.deps, &valid, t0).await.unwrap();
    assert_eq!(world.jwks.fetch_count(), 1);
    let unknown = bearer_request(&sign_with(&claims(), OTHER_KEY_DER, OTHER_KID));
    // WHEN tokens with an unknown kid keep coming within the minute
    for at in [0, 1, 30, 59] {
        let result = authorize(&world.deps, &unknown, t0 + secs(at)).await;
        // THEN each is refused without a fetch
        assert_eq!(refused(result), Refusal::UnknownKeyId);
    }
    assert_eq!(world.jwks.fetch_count(), 1);
    // AND a minute on, one refetch, then none again for a minute
    for at in [60, 61, 90, 119] {
        let result = authorize(&world.deps, &unknown, t0 + secs(at)).await;
        assert_eq!(refused(result), Refusal::UnknownKeyId);
    }
    assert_eq!(world.jwks.fetch_count(), 2);
    assert_eq!(
        refused(authorize(&world.deps, &unknown, t0 + secs(120)).await),
        Refusal::UnknownKeyId
    );
    assert_eq!(world.jwks.fetch_count(), 3);
    // AND known keys never needed a fetch
    authorize(&world.deps, &valid, t0 + secs(121))
        .await
        .unwrap();
    assert_eq!(world.jwks.fetch_count(), 3);
}

#[tokio::test]
async fn a_rotated_key_is_found_by_the_refetch() {
    let world = world();
    let t0 = Instant::now();
    authorize(&world.deps, &bearer_request(&sign(&claims())), t0)
        .await
        .unwrap();
    // GIVEN the pool rotated to a new key
    world.jwks.replace(JwkSet {
        keys: vec![jwk(SIGNING_KEY_DER, KID), jwk(OTHER_KEY_DER, OTHER_KID)],
    });
    let rotated = bearer_request(&sign_with(&claims(), OTHER_KEY_DER, OTHER_KID));
    // THEN its tokens are let in once the refetch is allowed
    assert_eq!(
        refused(authorize(&world.deps, &rotated, t0 + secs(10)).await),
        Refusal::UnknownKeyId
    );
    authorize(&world.deps, &rotated, t0 + secs(60))
        .await
        .unwrap();
    assert_eq!(world.jwks.fetch_count(), 2);
}

#[tokio::test]
async fn a_jwks_failure_is_an_error_not_unauthorized_and_is_retried() {
    let world = world();
    world.jwks.fail_with(Some(JwksError::Status(503)));
    let request = bearer_request(&sign(&claims()));
    let err = authorize_now(&world, &request).await.unwrap_err();
    assert_eq!(err, AuthError::Jwks(JwksError::Status(503)));
    let diagnostic = Diagnostic::from(err);
    assert_ne!(diagnostic.error_message, UNAUTHORIZED);
    assert_eq!(diagnostic.error_type, "Retryable");
    // No set was ever loaded: the next request tries again at once.
    world.jwks.fail_with(None);
    allowed_user(&authorize_now(&world, &request).await.unwrap());
    assert_eq!(world.jwks.fetch_count(), 2);
}

#[tokio::test]
async fn a_missing_sub_is_unauthorized() {
    let world = world();
    let token = sign(&without(claims(), "sub"));
    assert_eq!(
        refused(authorize_token(&world, &token).await),
        Refusal::MissingSubject
    );
}

#[tokio::test]
async fn an_invalid_sub_is_unauthorized() {
    let world = world();
    let too_long = "a".repeat(65);
    for sub in ["", "alice/admin", "alice bob", "ünïcode", too_long.as_str()] {
        let token = sign(&with(claims(), "sub", json!(sub)));
        assert_eq!(
            refused(authorize_token(&world, &token).await),
            Refusal::InvalidSubject,
            "{sub}"
        );
    }
    let token = sign(&with(claims(), "sub", json!(42)));
    assert!(matches!(
        refused(authorize_token(&world, &token).await),
        Refusal::InvalidToken(_)
    ));
}

#[tokio::test]
async fn garbage_bearer_tokens_are_unauthorized() {
    let world = world();
    for token in ["abc", "a.b", "a.b.c", "....", "eyJ.eyJ.sig"] {
        assert!(matches!(
            refused(authorize_token(&world, token).await),
            Refusal::MalformedToken(_)
        ));
    }
}

// ---------------------------------------------------------------------------------------
// Credentials
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn both_credentials_are_unauthorized() {
    let world = world();
    world.clients.insert(CLIENT_KEY, active_client());
    let token = format!("Bearer {}", sign(&claims()));
    let request = request(&[("Authorization", &token), ("x-api-key", CLIENT_KEY)]);
    assert_eq!(
        refused(authorize_now(&world, &request).await),
        Refusal::BothCredentials
    );
}

#[tokio::test]
async fn no_credential_is_unauthorized() {
    let world = world();
    let request = request(&[("Accept", "application/json")]);
    assert_eq!(
        refused(authorize_now(&world, &request).await),
        Refusal::NoCredential
    );
}

#[tokio::test]
async fn the_basic_scheme_is_unauthorized() {
    let world = world();
    let request = request(&[("Authorization", "Basic dXNlcjpwYXNzd29yZA==")]);
    assert_eq!(
        refused(authorize_now(&world, &request).await),
        Refusal::UnsupportedScheme
    );
}

#[tokio::test]
async fn empty_credentials_are_unauthorized() {
    let world = world();
    for (name, value) in [("Authorization", "Bearer "), ("x-api-key", "")] {
        let request = request(&[(name, value)]);
        assert!(matches!(
            refused(authorize_now(&world, &request).await),
            Refusal::EmptyCredential(_)
        ));
    }
}

// ---------------------------------------------------------------------------------------
// Service clients
// ---------------------------------------------------------------------------------------

fn active_client() -> ApiClient {
    ApiClient {
        client_id: "merchant-1".to_owned(),
        scopes: [Scope::PaymentsWrite, Scope::PaymentsRead].into(),
        active: true,
    }
}

#[tokio::test]
async fn a_valid_client_key_is_allowed_with_its_sorted_scopes_and_its_key_as_usage_key() {
    let world = world();
    world.clients.insert(CLIENT_KEY, active_client());
    let event = LambdaEvent::new(request(&[("X-Api-Key", CLIENT_KEY)]), Context::default());
    let response = handle(&world.deps, event).await.unwrap();
    assert_eq!(
        serde_json::to_value(&response).unwrap(),
        json!({
            "principalId": "client:merchant-1",
            "policyDocument": {
                "Version": "2012-10-17",
                "Statement": [{
                    "Action": ["execute-api:Invoke"],
                    "Effect": "Allow",
                    "Resource": [STAGE_RESOURCE]
                }]
            },
            "context": {
                "principalType": "client",
                "clientId": "merchant-1",
                "scopes": "payments:read payments:write"
            },
            "usageIdentifierKey": CLIENT_KEY
        })
    );
    // Keys are not JWTs: the key set was never fetched.
    assert_eq!(world.jwks.fetch_count(), 0);
}

#[tokio::test]
async fn an_unknown_key_is_unauthorized() {
    let world = world();
    world.clients.insert(CLIENT_KEY, active_client());
    let request = request(&[("x-api-key", "test-some-other-key")]);
    assert!(matches!(
        refused(authorize_now(&world, &request).await),
        Refusal::UnknownApiKey { .. }
    ));
}

#[tokio::test]
async fn a_disabled_key_is_unauthorized() {
    let world = world();
    let disabled = ApiClient {
        active: false,
        ..active_client()
    };
    world.clients.insert(CLIENT_KEY, disabled);
    let request = request(&[("x-api-key", CLIENT_KEY)]);
    assert_eq!(
        refused(authorize_now(&world, &request).await),
        Refusal::DisabledApiKey {
            client_id: "merchant-1".to_owned()
        }
    );
}

#[tokio::test]
async fn a_directory_error_is_an_error_not_unauthorized() {
    // GIVEN the clients table fails
    let world = world();
    world.clients.insert(CLIENT_KEY, active_client());
    let failure = RepoError::Unavailable("connection reset".to_owned());
    world.clients.fail_with(Some(failure.clone()));
    let event = LambdaEvent::new(request(&[("x-api-key", CLIENT_KEY)]), Context::default());
    // WHEN a client calls
    let err = handle(&world.deps, event).await.unwrap_err();
    // THEN the invocation fails with something API Gateway answers 500 for
    assert_eq!(err, AuthError::Directory(failure));
    let diagnostic = Diagnostic::from(err);
    assert_ne!(diagnostic.error_message, UNAUTHORIZED);
    assert_eq!(diagnostic.error_type, "Retryable");
}

// ---------------------------------------------------------------------------------------
// The request itself, and what leaves the function
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_malformed_method_arn_is_unauthorized() {
    let world = world();
    world.clients.insert(CLIENT_KEY, active_client());
    let token = format!("Bearer {}", sign(&claims()));
    for arn in [
        None,
        Some(""),
        Some("arn:aws:execute-api:us-east-1:123456789012:abc123"),
    ] {
        for headers in [
            [("Authorization", token.as_str())],
            [("x-api-key", CLIENT_KEY)],
        ] {
            let request = request_to(arn, &headers);
            assert_eq!(
                refused(authorize_now(&world, &request).await),
                Refusal::MalformedMethodArn,
                "{arn:?}"
            );
        }
    }
}

#[tokio::test]
async fn every_refusal_leaves_with_the_message_unauthorized() {
    let world = world();
    let event = LambdaEvent::new(request(&[]), Context::default());
    let err = handle(&world.deps, event).await.unwrap_err();
    assert_eq!(err.to_string(), "Unauthorized");
    let diagnostic = Diagnostic::from(err);
    assert_eq!(diagnostic.error_message, "Unauthorized");
    assert_eq!(diagnostic.error_type, "Unauthorized");
    for refusal in [
        Refusal::UnknownKeyId,
        Refusal::DisabledApiKey {
            client_id: "m".to_owned(),
        },
        Refusal::InvalidToken("expired"),
    ] {
        assert_eq!(AuthError::from(refusal).to_string(), UNAUTHORIZED);
    }
}

#[test]
fn the_config_defaults_the_jwks_url_to_the_issuers() {
    let env = |name: &str| match name {
        ENV_JWT_ISSUER => Some(format!("{ISSUER}/")),
        ENV_JWT_AUDIENCE => Some(AUDIENCE.to_owned()),
        ENV_END_USER_USAGE_KEY => Some(END_USER_USAGE_KEY.to_owned()),
        ENV_API_CLIENTS_TABLE_NAME => Some("api-clients".to_owned()),
        _ => None,
    };
    let config = Config::from_lookup(env).unwrap();
    assert_eq!(config.jwks_url, format!("{ISSUER}/.well-known/jwks.json"));
    assert_eq!(config.jwt_issuer, format!("{ISSUER}/"));
    let with_url = Config::from_lookup(|name| match name {
        ENV_JWKS_URL => Some("http://127.0.0.1:4566/jwks".to_owned()),
        other => env(other),
    })
    .unwrap();
    assert_eq!(with_url.jwks_url, "http://127.0.0.1:4566/jwks");
}

#[test]
fn the_config_requires_issuer_audience_usage_key_and_table() {
    for missing in [
        ENV_JWT_ISSUER,
        ENV_JWT_AUDIENCE,
        ENV_END_USER_USAGE_KEY,
        ENV_API_CLIENTS_TABLE_NAME,
    ] {
        let result = Config::from_lookup(|name| (name != missing).then(|| "x".to_owned()));
        assert_eq!(result, Err(ConfigError::MissingEnv(missing)));
    }
}
