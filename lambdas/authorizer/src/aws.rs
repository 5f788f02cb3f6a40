//! The adapters `main.rs` wires in: the API clients table on DynamoDB
//! ([`DynamoClientDirectory`]) and the issuer's JWKS over HTTPS
//! ([`HttpJwks`]).

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::AttributeValue;
use jsonwebtoken::jwk::JwkSet;
use shared::RepoError;
use tracing::warn;

use crate::client::{ApiClient, ClientDirectory, Scope};
use crate::token::{JwksError, JwksSource};

/// Attributes of an API clients item (written by `scripts/create-client.sh`);
/// their one home is `shared::dynamo::attr`.
pub mod attr {
    pub use shared::dynamo::attr::{
        API_CLIENT_ACTIVE as STATUS_ACTIVE, API_CLIENT_DISABLED as STATUS_DISABLED,
        API_CLIENT_ID as CLIENT_ID, API_CLIENT_KEY_HASH as KEY_HASH, API_CLIENT_SCOPES as SCOPES,
        STATUS,
    };
}

pub type Attributes = HashMap<String, AttributeValue>;

/// Scope names one item may list, at most.
const SCOPE_COUNT_MAX: usize = 32;

fn corrupt(problem: &str) -> RepoError {
    RepoError::Corrupt(format!("api-clients item: {problem}"))
}

fn string<'a>(item: &'a Attributes, name: &str) -> Result<&'a str, RepoError> {
    match item.get(name) {
        Some(AttributeValue::S(value)) => Ok(value),
        Some(_) => Err(corrupt(&format!("attribute `{name}` is not a string"))),
        None => Err(corrupt(&format!("attribute `{name}` is missing"))),
    }
}

/// An API clients item as an [`ApiClient`]. Scope names this authorizer
/// does not know are left out, with a warning; a status other than ACTIVE
/// or DISABLED makes the item corrupt (refused as a failure, not a guess).
pub fn api_client_from_item(item: &Attributes) -> Result<ApiClient, RepoError> {
    let client_id = string(item, attr::CLIENT_ID)?.to_owned();
    let active = match string(item, attr::STATUS)? {
        attr::STATUS_ACTIVE => true,
        attr::STATUS_DISABLED => false,
        _ => return Err(corrupt("attribute `status` is neither ACTIVE nor DISABLED")),
    };
    let names = match item.get(attr::SCOPES) {
        Some(AttributeValue::L(values)) => values.as_slice(),
        None => &[],
        Some(_) => return Err(corrupt("attribute `scopes` is not a list")),
    };
    if names.len() > SCOPE_COUNT_MAX {
        return Err(corrupt("attribute `scopes` lists too many scopes"));
    }
    let mut scopes = BTreeSet::new();
    for value in names {
        let AttributeValue::S(name) = value else {
            return Err(corrupt("attribute `scopes` holds a non-string"));
        };
        match name.parse::<Scope>() {
            Ok(scope) => {
                scopes.insert(scope);
            }
            Err(_) => warn!(clientId = %client_id, scope = %name, "unknown scope ignored"),
        }
    }
    Ok(ApiClient {
        client_id,
        scopes,
        active,
    })
}

/// The item for `client` under `key_hash` (for seeding the table).
pub fn api_client_item(key_hash: &str, client: &ApiClient) -> Attributes {
    let scopes = client
        .scopes
        .iter()
        .map(|scope| AttributeValue::S(scope.as_str().to_owned()))
        .collect();
    let status = if client.active {
        attr::STATUS_ACTIVE
    } else {
        attr::STATUS_DISABLED
    };
    HashMap::from([
        (
            attr::KEY_HASH.to_owned(),
            AttributeValue::S(key_hash.to_owned()),
        ),
        (
            attr::CLIENT_ID.to_owned(),
            AttributeValue::S(client.client_id.clone()),
        ),
        (attr::SCOPES.to_owned(), AttributeValue::L(scopes)),
        (
            attr::STATUS.to_owned(),
            AttributeValue::S(status.to_owned()),
        ),
    ])
}

fn repo_error<E, R>(err: SdkError<E, R>) -> RepoError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let message = DisplayErrorContext(&err).to_string();
    match err.code() {
        Some(
            "ProvisionedThroughputExceededException"
            | "ThrottlingException"
            | "RequestLimitExceeded",
        ) => RepoError::Throttled(message),
        Some("ResourceNotFoundException" | "ValidationException" | "AccessDeniedException") => {
            RepoError::Rejected(message)
        }
        _ => RepoError::Unavailable(message),
    }
}

/// The API clients table (`API_CLIENTS_TABLE_NAME`).
pub struct DynamoClientDirectory {
    client: aws_sdk_dynamodb::Client,
    table_name: String,
}

impl DynamoClientDirectory {
    pub fn new(sdk: &SdkConfig, table_name: String) -> Self {
        Self {
            client: aws_sdk_dynamodb::Client::new(sdk),
            table_name,
        }
    }
}

#[async_trait]
impl ClientDirectory for DynamoClientDirectory {
    async fn client(&self, key_hash: &str) -> Result<Option<ApiClient>, RepoError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table_name)
            .key(attr::KEY_HASH, AttributeValue::S(key_hash.to_owned()))
            // A key created or disabled a moment ago may be seen a moment
            // late; half the read cost on every request is worth it.
            .consistent_read(false)
            .send()
            .await
            .map_err(repo_error)?;
        output.item.as_ref().map(api_client_from_item).transpose()
    }
}

/// Bound on one fetch of the JWKS, connection included.
pub const JWKS_FETCH_TIMEOUT_MS: u64 = 3_000;
pub const JWKS_CONNECT_TIMEOUT_MS: u64 = 1_000;
/// A key set is a few KiB; anything larger is not one.
pub const JWKS_BYTES_MAX: usize = 64 * 1024;

/// The issuer's JWKS over HTTP(S). The client is built on the first fetch,
/// not at cold start.
pub struct HttpJwks {
    url: String,
    http: tokio::sync::OnceCell<reqwest::Client>,
}

impl HttpJwks {
    pub fn new(url: String) -> Self {
        Self {
            url,
            http: tokio::sync::OnceCell::new(),
        }
    }

    async fn http(&self) -> Result<&reqwest::Client, JwksError> {
        self.http
            .get_or_try_init(|| async {
                reqwest::Client::builder()
                    .timeout(Duration::from_millis(JWKS_FETCH_TIMEOUT_MS))
                    .connect_timeout(Duration::from_millis(JWKS_CONNECT_TIMEOUT_MS))
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .map_err(|err| JwksError::Fetch(err.to_string()))
            })
            .await
    }
}

#[async_trait]
impl JwksSource for HttpJwks {
    async fn fetch(&self) -> Result<JwkSet, JwksError> {
        let fetch_error = |err: reqwest::Error| JwksError::Fetch(err.to_string());
        let mut response = self
            .http()
            .await?
            .get(&self.url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(fetch_error)?;
        if !response.status().is_success() {
            return Err(JwksError::Status(response.status().as_u16()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(fetch_error)? {
            if body.len().saturating_add(chunk.len()) > JWKS_BYTES_MAX {
                return Err(JwksError::TooLarge(JWKS_BYTES_MAX));
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|err| JwksError::Malformed(err.to_string()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn s(text: &str) -> AttributeValue {
        AttributeValue::S(text.to_owned())
    }

    fn item(pairs: &[(&str, AttributeValue)]) -> Attributes {
        pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), value.clone()))
            .collect()
    }

    #[test]
    fn an_item_round_trips() {
        let client = ApiClient {
            client_id: "merchant-1".to_owned(),
            scopes: [Scope::PaymentsWrite, Scope::RefundsWrite].into(),
            active: false,
        };
        let item = api_client_item("ab12", &client);
        assert_eq!(item.get(attr::KEY_HASH), Some(&s("ab12")));
        assert_eq!(item.get(attr::STATUS), Some(&s("DISABLED")));
        assert_eq!(api_client_from_item(&item).unwrap(), client);
    }

    #[test]
    fn unknown_scopes_are_ignored() {
        let item = item(&[
            (attr::CLIENT_ID, s("merchant-1")),
            (attr::STATUS, s("ACTIVE")),
            (
                attr::SCOPES,
                AttributeValue::L(vec![
                    s("payments:write"),
                    s("payments:admin"),
                    s("payments:read"),
                ]),
            ),
        ]);
        let client = api_client_from_item(&item).unwrap();
        assert!(client.active);
        assert_eq!(
            client.scopes,
            [Scope::PaymentsRead, Scope::PaymentsWrite].into()
        );
    }

    #[test]
    fn an_item_without_scopes_has_none() {
        let item = item(&[(attr::CLIENT_ID, s("m")), (attr::STATUS, s("ACTIVE"))]);
        assert!(api_client_from_item(&item).unwrap().scopes.is_empty());
    }

    /// Answers one HTTP request on a loopback port with `status` and `body`;
    /// the URL to ask.
    fn serve_once(status: &'static str, body: Vec<u8>) -> String {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!(
            "http://{}/.well-known/jwks.json",
            listener.local_addr().unwrap()
        );
        std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream);
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap() > 2 {
                line.clear();
            }
            let mut stream = reader.into_inner();
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            stream.write_all(head.as_bytes()).unwrap();
            // The client may hang up early (a body too large): not an error here.
            let _ = stream.write_all(&body);
        });
        url
    }

    #[tokio::test]
    async fn the_http_key_set_is_fetched_and_parsed() {
        let body = br#"{"keys":[{"kty":"RSA","kid":"k1","use":"sig","alg":"RS256","n":"sXch","e":"AQAB"}]}"#;
        let jwks = HttpJwks::new(serve_once("200 OK", body.to_vec()));
        let set = jwks.fetch().await.unwrap();
        assert_eq!(set.keys.len(), 1);
        assert_eq!(set.keys[0].common.key_id.as_deref(), Some("k1"));
    }

    #[tokio::test]
    async fn an_http_key_set_that_is_an_error_too_large_or_not_json_is_refused() {
        let failing = HttpJwks::new(serve_once("503 Service Unavailable", b"{}".to_vec()));
        assert_eq!(failing.fetch().await, Err(JwksError::Status(503)));
        let huge = HttpJwks::new(serve_once("200 OK", vec![b' '; JWKS_BYTES_MAX + 1]));
        assert_eq!(huge.fetch().await, Err(JwksError::TooLarge(JWKS_BYTES_MAX)));
        let html = HttpJwks::new(serve_once("200 OK", b"<html>".to_vec()));
        assert!(matches!(html.fetch().await, Err(JwksError::Malformed(_))));
    }

    #[tokio::test]
    async fn an_unreachable_key_set_is_a_fetch_error() {
        // A port nothing listens on: bound, then closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let jwks = HttpJwks::new(format!("http://127.0.0.1:{port}/jwks"));
        assert!(matches!(jwks.fetch().await, Err(JwksError::Fetch(_))));
    }

    #[test]
    fn a_malformed_item_is_corrupt_not_a_client() {
        let cases = [
            item(&[(attr::STATUS, s("ACTIVE"))]),
            item(&[(attr::CLIENT_ID, s("m"))]),
            item(&[(attr::CLIENT_ID, s("m")), (attr::STATUS, s("active"))]),
            item(&[
                (attr::CLIENT_ID, s("m")),
                (attr::STATUS, s("ACTIVE")),
                (attr::SCOPES, s("payments:read")),
            ]),
            item(&[
                (attr::CLIENT_ID, s("m")),
                (attr::STATUS, s("ACTIVE")),
                (
                    attr::SCOPES,
                    AttributeValue::L(vec![AttributeValue::N("1".to_owned())]),
                ),
            ]),
            item(&[
                (attr::CLIENT_ID, AttributeValue::N("1".to_owned())),
                (attr::STATUS, s("ACTIVE")),
            ]),
        ];
        for case in cases {
            assert!(
                matches!(api_client_from_item(&case), Err(RepoError::Corrupt(_))),
                "{case:?}"
            );
        }
    }
}
