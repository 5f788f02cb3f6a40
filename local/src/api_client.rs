//! The local cloud's service clients (merchant backends calling with
//! `x-api-key`): fixed development keys, seeded at every start into the
//! template's API clients table (the authorizer looks keys up there by their
//! SHA-256), each with its own usage plan throttled by the template's
//! `ClientRateLimit` / `ClientBurstLimit` — what `scripts/create-client.sh`
//! gives a real client on AWS. Tools find them at
//! [`crate::issuer::CLIENTS_PATH`] on the edge.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::dynamo::DynamoError;
use crate::template::{
    ApiStage, LOCAL_REST_API_ID, Template, TemplateError, UsageKeySpec, UsagePlanSpec,
};

/// The table the authorizer reads clients from (`template.yml`).
pub const API_CLIENTS_TABLE_LOGICAL_ID: &str = "ApiClientsTable";
/// The template parameters of each client's usage plan.
pub const CLIENT_RATE_LIMIT_PARAMETER: &str = "ClientRateLimit";
pub const CLIENT_BURST_LIMIT_PARAMETER: &str = "ClientBurstLimit";

pub const DEMO_MERCHANT_CLIENT_ID: &str = "demo-merchant";
/// A development key: it opens only the local cloud.
pub const DEMO_MERCHANT_API_KEY: &str = "local-demo-merchant-key-000000000001";
pub const READ_ONLY_CLIENT_ID: &str = "read-only-client";
pub const READ_ONLY_CLIENT_API_KEY: &str = "local-read-only-client-key-000000000002";

/// The item attributes the authorizer reads (`shared::dynamo::attr`).
mod attr {
    pub use shared::dynamo::attr::{
        API_CLIENT_ACTIVE as STATUS_ACTIVE, API_CLIENT_ID as CLIENT_ID,
        API_CLIENT_KEY_HASH as KEY_HASH, API_CLIENT_SCOPES as SCOPES, STATUS,
    };
}

/// One local service client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalApiClient {
    pub client_id: &'static str,
    pub api_key: &'static str,
    pub scopes: &'static [&'static str],
}

pub const LOCAL_API_CLIENTS: [LocalApiClient; 2] = [
    LocalApiClient {
        client_id: DEMO_MERCHANT_CLIENT_ID,
        api_key: DEMO_MERCHANT_API_KEY,
        scopes: &[
            "payments:write",
            "payments:read",
            "refunds:write",
            "wallets:read",
        ],
    },
    LocalApiClient {
        client_id: READ_ONLY_CLIENT_ID,
        api_key: READ_ONLY_CLIENT_API_KEY,
        scopes: &["payments:read"],
    },
];

/// Lowercase hex SHA-256 of `key`: the table's partition key.
pub fn key_hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// The table item of `client`, as the authorizer reads it.
pub fn item(client: &LocalApiClient) -> HashMap<String, AttributeValue> {
    let scopes = client
        .scopes
        .iter()
        .map(|scope| AttributeValue::S((*scope).to_owned()))
        .collect();
    HashMap::from([
        (
            attr::KEY_HASH.to_owned(),
            AttributeValue::S(key_hash(client.api_key)),
        ),
        (
            attr::CLIENT_ID.to_owned(),
            AttributeValue::S(client.client_id.to_owned()),
        ),
        (attr::SCOPES.to_owned(), AttributeValue::L(scopes)),
        (
            attr::STATUS.to_owned(),
            AttributeValue::S(attr::STATUS_ACTIVE.to_owned()),
        ),
    ])
}

/// Writes every local client into the template's API clients table (again
/// at each start: a persisted table keeps the same items). Nothing to do for
/// a template without that table.
pub async fn seed(client: &Client, template: &Template) -> Result<(), DynamoError> {
    let Some(table) = template
        .tables
        .iter()
        .find(|t| t.logical_id == API_CLIENTS_TABLE_LOGICAL_ID)
    else {
        return Ok(());
    };
    for local in &LOCAL_API_CLIENTS {
        client
            .put_item()
            .table_name(&table.table_name)
            .set_item(Some(item(local)))
            .send()
            .await
            .map_err(|err| DynamoError::Seed {
                table: table.table_name.clone(),
                message: aws_sdk_dynamodb::error::DisplayErrorContext(err).to_string(),
            })?;
    }
    Ok(())
}

/// Each local client's key with its own usage plan on the template's API
/// stage, throttled by `ClientRateLimit` / `ClientBurstLimit` (overrides
/// included). None without an API; no throttle without the parameters.
pub fn usage_keys(template: &Template) -> Result<Vec<(String, UsageKeySpec)>, TemplateError> {
    let Some(api) = &template.api else {
        return Ok(Vec::new());
    };
    let throttle = match (
        template.parameter(CLIENT_RATE_LIMIT_PARAMETER),
        template.parameter(CLIENT_BURST_LIMIT_PARAMETER),
    ) {
        (Ok(rate), Ok(burst)) => Some(crate::template::parse_throttle(
            &rate,
            &burst,
            "the local clients' usage plan",
        )?),
        _ => None,
    };
    let stack = &template.context().stack_name;
    Ok(LOCAL_API_CLIENTS
        .iter()
        .map(|client| {
            let spec = UsageKeySpec {
                key_id: format!("local-key-{}", client.client_id),
                enabled: true,
                plan: UsagePlanSpec {
                    logical_id: format!("local-plan-{}", client.client_id),
                    name: format!("{stack}-client-{}", client.client_id),
                    throttle,
                    api_stages: vec![ApiStage {
                        api_id: LOCAL_REST_API_ID.to_owned(),
                        stage: api.stage_name.clone(),
                    }],
                },
            };
            (client.api_key.to_owned(), spec)
        })
        .collect())
}

/// `[{"clientId", "apiKey", "scopes"}]`, for tools.
pub fn listing() -> Value {
    Value::Array(
        LOCAL_API_CLIENTS
            .iter()
            .map(|client| {
                json!({"clientId": client.client_id, "apiKey": client.api_key, "scopes": client.scopes})
            })
            .collect(),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::template::{Context, Throttle};

    fn repo_template(context: Context) -> Template {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../template.yml");
        Template::load(&path, context).unwrap()
    }

    #[test]
    fn an_item_holds_the_keys_hash_never_the_key() {
        let item = item(&LOCAL_API_CLIENTS[1]);
        assert_eq!(
            item[attr::KEY_HASH],
            AttributeValue::S(key_hash(READ_ONLY_CLIENT_API_KEY))
        );
        assert_eq!(
            item[attr::CLIENT_ID],
            AttributeValue::S(READ_ONLY_CLIENT_ID.into())
        );
        assert_eq!(
            item[attr::SCOPES],
            AttributeValue::L(vec![AttributeValue::S("payments:read".into())])
        );
        assert_eq!(item[attr::STATUS], AttributeValue::S("ACTIVE".into()));
        assert!(!format!("{item:?}").contains(READ_ONLY_CLIENT_API_KEY));
        // SHA-256("abc"), FIPS 180-2 appendix B.1.
        assert_eq!(
            key_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn each_client_has_its_own_plan_throttled_by_the_client_parameters() {
        // GIVEN the repo template with its defaults, then with overrides
        let defaults = usage_keys(&repo_template(Context::default())).unwrap();
        let overridden = repo_template(Context::default().with_parameters([
            ("ClientRateLimit".to_owned(), "2".to_owned()),
            ("ClientBurstLimit".to_owned(), "3".to_owned()),
        ]));
        let keys = usage_keys(&overridden).unwrap();
        // THEN every local client has a plan of its own on the API's stage
        assert_eq!(keys.len(), LOCAL_API_CLIENTS.len());
        let (key, spec) = &keys[0];
        assert_eq!(key, DEMO_MERCHANT_API_KEY);
        assert_ne!(spec.plan.logical_id, keys[1].1.plan.logical_id);
        assert!(spec.plan.covers(LOCAL_REST_API_ID, "dev"));
        // AND its throttle is the parameters', overrides winning
        assert_eq!(
            spec.plan.throttle,
            Some(Throttle {
                rate_millirequests_per_second: 2_000,
                burst_requests: 3
            })
        );
        assert_eq!(
            defaults[0].1.plan.throttle,
            Some(Throttle {
                rate_millirequests_per_second: 50_000,
                burst_requests: 100
            })
        );
    }

    #[test]
    fn the_listing_shows_keys_and_scopes() {
        let listing = listing();
        assert_eq!(listing[0]["clientId"], DEMO_MERCHANT_CLIENT_ID);
        assert_eq!(listing[0]["apiKey"], DEMO_MERCHANT_API_KEY);
        assert_eq!(listing[1]["scopes"], json!(["payments:read"]));
    }
}
