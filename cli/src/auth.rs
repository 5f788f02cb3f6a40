//! Who `saga` calls the API as (docs/auth.md): an end user's bearer token,
//! a service client's API key, and — for top-ups only — SigV4-signed IAM
//! credentials. Against the local cloud every one of them is found without
//! typing: `--as <userId>` asks the local issuer for that user's token, and
//! with nothing given the local demo merchant's key is used, so every tester
//! target keeps working unchanged.

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use serde::Deserialize;
use serde_json::json;

use crate::error::{CliError, CliResult};
use crate::stepfunctions::DEFAULT_ENDPOINT;

/// The local cloud's issuer and developer endpoints, under the edge.
pub const LOCAL_ISSUER_PATH: &str = "/local-issuer";
/// The local service client with every scope (seeded by the local cloud).
pub const LOCAL_DEMO_CLIENT: &str = "demo-merchant";
/// The local cloud's IAM credentials (what its edge verifies SigV4 against).
const LOCAL_ACCESS_KEY_ID: &str = "local";
const LOCAL_SECRET_ACCESS_KEY: &str = "local";
const DEFAULT_REGION: &str = "us-east-1";

/// The credential client routes are called with.
#[derive(Clone, Default)]
pub enum Credential {
    /// None: every client route answers 401.
    #[default]
    None,
    Bearer(String),
    ApiKey(String),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::None => "None",
            Self::Bearer(_) => "Bearer(<redacted>)",
            Self::ApiKey(_) => "ApiKey(<redacted>)",
        })
    }
}

impl Credential {
    pub fn apply(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self {
            Self::None => request,
            Self::Bearer(token) => request.bearer_auth(token),
            Self::ApiKey(key) => request.header("x-api-key", key),
        }
    }
}

/// IAM credentials for the operator route (SigV4, service `execute-api`).
#[derive(Clone)]
pub struct Signer {
    credentials: Credentials,
    region: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer({}, <redacted>)", self.region)
    }
}

impl Signer {
    /// Against the local cloud, its own credentials (whatever the environment
    /// holds: real AWS keys would not verify there); else `AWS_ACCESS_KEY_ID` /
    /// `AWS_SECRET_ACCESS_KEY` (`AWS_SESSION_TOKEN`).
    pub fn from_env(local: bool, region: Option<&str>) -> Option<Self> {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let region = region
            .map(str::to_owned)
            .or_else(|| env("AWS_REGION"))
            .or_else(|| env("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| DEFAULT_REGION.to_owned());
        if local {
            return Some(Self::local(&region));
        }
        let access_key = env("AWS_ACCESS_KEY_ID")?;
        let secret = env("AWS_SECRET_ACCESS_KEY")?;
        Some(Self {
            credentials: Credentials::new(
                access_key,
                secret,
                env("AWS_SESSION_TOKEN"),
                None,
                "saga",
            ),
            region,
        })
    }

    /// The local cloud's credentials.
    pub fn local(region: &str) -> Self {
        Self {
            credentials: Credentials::new(
                LOCAL_ACCESS_KEY_ID,
                LOCAL_SECRET_ACCESS_KEY,
                None,
                None,
                "saga-local",
            ),
            region: region.to_owned(),
        }
    }

    /// The request with its SigV4 headers (`authorization`, `x-amz-date`, …).
    pub fn sign(
        &self,
        request: reqwest::RequestBuilder,
        method: &str,
        url: &str,
        body: &[u8],
    ) -> CliResult<reqwest::RequestBuilder> {
        let identity = self.credentials.clone().into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("execute-api")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|err| CliError::Usage(format!("SigV4: {err}")))?
            .into();
        let headers = [("content-type", "application/json")];
        let signable =
            SignableRequest::new(method, url, headers.into_iter(), SignableBody::Bytes(body))
                .map_err(|err| CliError::Usage(format!("SigV4: {err}")))?;
        let (instructions, _signature) = sign(signable, &params)
            .map_err(|err| CliError::Usage(format!("SigV4: {err}")))?
            .into_parts();
        let mut request = request.header("content-type", "application/json");
        for (name, value) in instructions.headers() {
            request = request.header(name, value);
        }
        Ok(request)
    }
}

/// Whether a URL names this machine (the local cloud).
pub fn is_loopback(url: &str) -> bool {
    let rest = url
        .split_once("://")
        .map_or(url, |(_, rest)| rest)
        .split(['/', '?'])
        .next()
        .unwrap_or_default();
    let host = rest.rsplit_once(':').map_or(rest, |(host, _)| host);
    matches!(host, "127.0.0.1" | "localhost" | "[::1]")
}

/// The local issuer's base URL under the edge (`--endpoint-url` or 4566).
pub fn local_issuer(edge: Option<&str>) -> String {
    let edge = edge.unwrap_or(DEFAULT_ENDPOINT).trim_end_matches('/');
    format!("{edge}{LOCAL_ISSUER_PATH}")
}

/// A bearer token for `user_id` from the local cloud's issuer.
pub async fn local_token(
    http: &reqwest::Client,
    issuer: &str,
    user_id: &str,
    expires_in_seconds: Option<u64>,
) -> CliResult<String> {
    #[derive(Deserialize)]
    struct Issued {
        token: String,
    }
    let mut body = json!({ "sub": user_id });
    if let Some(seconds) = expires_in_seconds {
        body["expiresInSeconds"] = json!(seconds);
    }
    let url = format!("{issuer}/token");
    let response = http
        .post(&url)
        .json(&body)
        .send()
        .await
        .map_err(|err| unreachable_issuer(issuer, &err))?;
    let status = response.status();
    let text = response
        .text()
        .await
        .map_err(|err| CliError::Protocol(format!("{url}: {err}")))?;
    if !status.is_success() {
        return Err(CliError::Usage(format!(
            "the local issuer refused a token for `{user_id}`: {status} {text}"
        )));
    }
    let issued: Issued = serde_json::from_str(&text)
        .map_err(|err| CliError::Protocol(format!("{url}: {err}: {text}")))?;
    Ok(issued.token)
}

/// The local demo merchant's API key, from the local cloud's client list.
pub async fn local_client_key(http: &reqwest::Client, issuer: &str) -> CliResult<String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct LocalClient {
        client_id: String,
        api_key: String,
    }
    let url = format!("{issuer}/clients");
    let response = http
        .get(&url)
        .send()
        .await
        .map_err(|err| unreachable_issuer(issuer, &err))?;
    let clients: Vec<LocalClient> = response
        .json()
        .await
        .map_err(|err| CliError::Protocol(format!("{url}: {err}")))?;
    clients
        .into_iter()
        .find(|client| client.client_id == LOCAL_DEMO_CLIENT)
        .map(|client| client.api_key)
        .ok_or_else(|| CliError::Protocol(format!("{url}: no client {LOCAL_DEMO_CLIENT}")))
}

fn unreachable_issuer(issuer: &str, err: &reqwest::Error) -> CliError {
    CliError::Unreachable {
        what: "the local cloud's issuer",
        url: issuer.to_owned(),
        flag: "endpoint-url",
        detail: err.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_urls_are_the_local_cloud() {
        for url in [
            "http://127.0.0.1:3001",
            "http://localhost:3001/",
            "http://[::1]:3001",
        ] {
            assert!(is_loopback(url), "{url}");
        }
        for url in [
            "https://abc.execute-api.us-east-1.amazonaws.com/dev",
            "http://10.0.0.1:3001",
        ] {
            assert!(!is_loopback(url), "{url}");
        }
        assert_eq!(local_issuer(None), "http://127.0.0.1:4566/local-issuer");
    }

    #[test]
    fn credentials_never_print() {
        let shown = format!("{:?}", Credential::ApiKey("secret-key".into()));
        assert!(!shown.contains("secret-key"));
        let signer = Signer::from_env(true, Some("eu-west-1"));
        assert!(!format!("{signer:?}").contains("local\""));
    }
}
