//! `authorizer` Lambda: wiring only (see lib.rs for the handler). API
//! Gateway calls it before every request of the public API.

use std::sync::Arc;

use authorizer::{Config, Deps, DynamoClientDirectory, HttpJwks, handle};
use lambda_runtime::{Error, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::lambda::init_tracing();
    let config = Config::from_env()?;
    let sdk_config = shared::lambda::sdk_config().await;
    let clients = DynamoClientDirectory::new(&sdk_config, config.api_clients_table_name.clone());
    // Not fetched here: the first token fetches it, so a cold start stays small.
    let jwks = HttpJwks::new(config.jwks_url.clone());
    let deps = Deps::new(&config, Arc::new(clients), Arc::new(jwks))?;
    run(service_fn(|event| handle(&deps, event))).await
}
