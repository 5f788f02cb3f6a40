//! `authorizer`: the public API's Lambda REQUEST authorizer (API Gateway REST,
//! payload v1). Every request carries exactly one credential:
//!
//! - an end user sends `Authorization: Bearer <jwt>`: an RS256 token of the
//!   user pool (Cognito on AWS, the local cloud's issuer locally), verified
//!   against the issuer's JWKS ([`token`]); the principal is `user:<sub>` and
//!   the usage plan is the end users' shared one ([`Config::end_user_usage_key`]);
//! - a service client sends `x-api-key: <key>`: looked up by its SHA-256 in
//!   the API clients table ([`client`]); the principal is `client:<clientId>`
//!   with its scopes, and the usage plan is the client's own (its key).
//!
//! The answer is an Allow of `execute-api:Invoke` on the whole stage (so a
//! cached answer fits every route) and a context the API handler reads
//! ([`CONTEXT_PRINCIPAL_TYPE`] and friends). Anything else is refused with an
//! error whose message is exactly [`UNAUTHORIZED`], which API Gateway turns
//! into a 401; the reason is logged here, never the token or the key. A
//! failing dependency (the clients table, the JWKS) is a different error, so
//! API Gateway answers 500: closed, and visible. A Deny policy is never
//! returned: it would be a 403 that says more than a 401.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use aws_lambda_events::apigw::{
    ApiGatewayCustomAuthorizerRequestTypeRequest, ApiGatewayCustomAuthorizerResponse,
};
use lambda_runtime::{Diagnostic, LambdaEvent};
use shared::domain::UserId;
use shared::{ErrorType, RepoError};
use tracing::{Instrument, error, info, warn};

mod aws;
pub mod client;
pub mod credential;
pub mod memory;
pub mod policy;
pub mod token;

pub use aws::{DynamoClientDirectory, HttpJwks, api_client_from_item, api_client_item};
pub use client::{ApiClient, ClientDirectory, Scope, key_hash};
pub use credential::Credential;
pub use token::{JwksError, JwksSource, KeyCache, TokenRules};

pub const FUNCTION_NAME: &str = "authorizer";

/// The error message API Gateway maps to 401. Every refusal leaves with it.
pub const UNAUTHORIZED: &str = "Unauthorized";

/// Context keys (string values only, API Gateway's rule) the API handler
/// reads as `requestContext.authorizer.<key>`.
pub const CONTEXT_PRINCIPAL_TYPE: &str = "principalType";
pub const CONTEXT_USER_ID: &str = "userId";
pub const CONTEXT_CLIENT_ID: &str = "clientId";
/// A client's scopes, space-separated and sorted (`payments:read payments:write`).
pub const CONTEXT_SCOPES: &str = "scopes";
pub const PRINCIPAL_TYPE_USER: &str = "user";
pub const PRINCIPAL_TYPE_CLIENT: &str = "client";

/// The environment, as `template.yml` gives it to the function.
pub const ENV_JWT_ISSUER: &str = "JWT_ISSUER";
pub const ENV_JWT_AUDIENCE: &str = "JWT_AUDIENCE";
/// Optional: defaults to `<JWT_ISSUER>/.well-known/jwks.json` (Cognito's).
pub const ENV_JWKS_URL: &str = "JWKS_URL";
pub const ENV_END_USER_USAGE_KEY: &str = "END_USER_USAGE_KEY";
pub const ENV_API_CLIENTS_TABLE_NAME: &str = "API_CLIENTS_TABLE_NAME";

/// The answer API Gateway reads; the context holds strings only.
pub type AuthorizerResponse = ApiGatewayCustomAuthorizerResponse<BTreeMap<String, String>>;

/// The function's settings, read once in `main`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The `iss` every end-user token must carry, exactly.
    pub jwt_issuer: String,
    /// The app client: a token's `aud`, or an access token's `client_id`.
    pub jwt_audience: String,
    pub jwks_url: String,
    /// The end users' usage plan key: a usage identifier, not a secret.
    pub end_user_usage_key: String,
    pub api_clients_table_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {0} is not set")]
    MissingEnv(&'static str),
    #[error("jsonwebtoken has no crypto provider: enable exactly one of its backends")]
    NoCryptoProvider,
}

impl Config {
    /// Reads the settings through `lookup` (usually `std::env::var`); an
    /// empty value counts as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &'static str| {
            lookup(name)
                .filter(|value| !value.trim().is_empty())
                .ok_or(ConfigError::MissingEnv(name))
        };
        let jwt_issuer = get(ENV_JWT_ISSUER)?;
        let jwks_url = get(ENV_JWKS_URL).unwrap_or_else(|_| {
            format!("{}/.well-known/jwks.json", jwt_issuer.trim_end_matches('/'))
        });
        Ok(Self {
            jwt_audience: get(ENV_JWT_AUDIENCE)?,
            end_user_usage_key: get(ENV_END_USER_USAGE_KEY)?,
            api_clients_table_name: get(ENV_API_CLIENTS_TABLE_NAME)?,
            jwt_issuer,
            jwks_url,
        })
    }

    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }
}

/// The authorizer's ports and its settings.
pub struct Deps {
    /// Service clients by key hash.
    pub clients: Arc<dyn ClientDirectory>,
    /// The issuer's signing keys, fetched on first use and cached.
    pub keys: KeyCache,
    /// What a valid end-user token is.
    pub rules: TokenRules,
    pub end_user_usage_key: String,
}

impl Deps {
    /// Builds the ports; nothing is fetched yet (the JWKS comes on first use,
    /// so a cold start stays small).
    pub fn new(
        config: &Config,
        clients: Arc<dyn ClientDirectory>,
        jwks: Arc<dyn JwksSource>,
    ) -> Result<Self, ConfigError> {
        // Fail at init, not on the first token, if the build has no (or two)
        // jsonwebtoken crypto backends: with none it would panic in decode.
        if jsonwebtoken::crypto::CryptoProvider::try_get_default().is_none() {
            return Err(ConfigError::NoCryptoProvider);
        }
        Ok(Self {
            clients,
            keys: KeyCache::new(jwks),
            rules: TokenRules::new(&config.jwt_issuer, &config.jwt_audience),
            end_user_usage_key: config.end_user_usage_key.clone(),
        })
    }
}

/// Why a request was refused. Only logged: every one leaves as
/// [`UNAUTHORIZED`]. None holds the token or the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the method ARN is not an execute-api method ARN")]
    MalformedMethodArn,
    #[error("no credential: neither Authorization nor x-api-key")]
    NoCredential,
    #[error("two credentials: both Authorization and x-api-key")]
    BothCredentials,
    #[error("header {0} is sent more than once")]
    RepeatedHeader(&'static str),
    #[error("header {0} is not visible ASCII")]
    UnreadableHeader(&'static str),
    #[error("header {0} is empty")]
    EmptyCredential(&'static str),
    #[error("header {0} is longer than allowed")]
    CredentialTooLong(&'static str),
    #[error("the Authorization scheme is not Bearer")]
    UnsupportedScheme,
    #[error("the bearer token is not a JWT: {0}")]
    MalformedToken(&'static str),
    #[error("the token's algorithm {0} is not RS256")]
    AlgorithmNotAllowed(String),
    #[error("the token names no key (kid)")]
    MissingKeyId,
    #[error("the token's key (kid) is not in the issuer's key set")]
    UnknownKeyId,
    #[error("the token is refused: {0}")]
    InvalidToken(&'static str),
    #[error("the token is for another audience")]
    WrongAudience,
    #[error("the token has no subject (sub)")]
    MissingSubject,
    #[error("the token's subject is not a valid user id")]
    InvalidSubject,
    /// `key_hash_prefix`: the first characters of the key's SHA-256, enough
    /// to find it, nothing to use it.
    #[error("no API client has this key (hash {key_hash_prefix}…)")]
    UnknownApiKey { key_hash_prefix: String },
    #[error("API client {client_id} is disabled")]
    DisabledApiKey { client_id: String },
}

/// A failed authorization: a refusal (401), or a dependency that failed
/// (500: API Gateway must not read it as a refusal, nor as an Allow).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Always displays as exactly [`UNAUTHORIZED`]: API Gateway matches it.
    #[error("Unauthorized")]
    Unauthorized(Refusal),
    #[error("API clients table: {0}")]
    Directory(RepoError),
    #[error("issuer's key set: {0}")]
    Jwks(JwksError),
}

impl From<Refusal> for AuthError {
    fn from(refusal: Refusal) -> Self {
        Self::Unauthorized(refusal)
    }
}

impl AuthError {
    /// The Lambda `errorType`: `Unauthorized` for refusals, the taxonomy's
    /// name otherwise.
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::Unauthorized(_) => UNAUTHORIZED,
            Self::Directory(err) => err.error_type().as_str(),
            Self::Jwks(_) => ErrorType::Retryable.as_str(),
        }
    }
}

impl From<AuthError> for Diagnostic {
    fn from(err: AuthError) -> Self {
        Diagnostic {
            error_type: err.error_type().to_owned(),
            error_message: err.to_string(),
        }
    }
}

/// Who the caller is, once proven.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    User(UserId),
    Client(ApiClient),
}

impl Principal {
    pub fn principal_id(&self) -> String {
        match self {
            Self::User(user_id) => format!("{PRINCIPAL_TYPE_USER}:{user_id}"),
            Self::Client(client) => format!("{PRINCIPAL_TYPE_CLIENT}:{}", client.client_id),
        }
    }

    pub fn context(&self) -> BTreeMap<String, String> {
        let mut context = BTreeMap::new();
        match self {
            Self::User(user_id) => {
                context.insert(
                    CONTEXT_PRINCIPAL_TYPE.to_owned(),
                    PRINCIPAL_TYPE_USER.to_owned(),
                );
                context.insert(CONTEXT_USER_ID.to_owned(), user_id.to_string());
            }
            Self::Client(client) => {
                context.insert(
                    CONTEXT_PRINCIPAL_TYPE.to_owned(),
                    PRINCIPAL_TYPE_CLIENT.to_owned(),
                );
                context.insert(CONTEXT_CLIENT_ID.to_owned(), client.client_id.clone());
                context.insert(CONTEXT_SCOPES.to_owned(), client.scope_list());
            }
        }
        context
    }
}

pub async fn handle(
    deps: &Deps,
    event: LambdaEvent<ApiGatewayCustomAuthorizerRequestTypeRequest>,
) -> Result<AuthorizerResponse, AuthError> {
    let span = shared::invocation_span!(FUNCTION_NAME, event.context, "-");
    async move {
        let result = authorize(deps, &event.payload, Instant::now()).await;
        match &result {
            Ok(response) => info!(
                principalId = response.principal_id.as_deref().unwrap_or_default(),
                "authorized"
            ),
            Err(AuthError::Unauthorized(refusal)) => warn!(reason = %refusal, "refused"),
            Err(err) => error!(error = %err, "authorizer dependency failed: answering 500"),
        }
        result
    }
    .instrument(span)
    .await
}

/// One authorization, at `now` (the JWKS refetch limit counts from it).
pub async fn authorize(
    deps: &Deps,
    request: &ApiGatewayCustomAuthorizerRequestTypeRequest,
    now: Instant,
) -> Result<AuthorizerResponse, AuthError> {
    let resource = request
        .method_arn
        .as_deref()
        .and_then(policy::stage_resource)
        .ok_or(Refusal::MalformedMethodArn)?;
    let credential = Credential::from_headers(&request.headers, &request.multi_value_headers)?;
    let (principal, usage_key) = match credential {
        Credential::Bearer(token) => {
            let user_id = token::verify(&deps.keys, &deps.rules, token, now).await?;
            (Principal::User(user_id), deps.end_user_usage_key.clone())
        }
        Credential::ApiKey(key) => {
            let client = client::identify(deps.clients.as_ref(), key).await?;
            (Principal::Client(client), key.to_owned())
        }
    };
    let mut response = AuthorizerResponse::default();
    response.principal_id = Some(principal.principal_id());
    response.policy_document = policy::allow(resource);
    response.context = principal.context();
    response.usage_identifier_key = Some(usage_key);
    Ok(response)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests;
