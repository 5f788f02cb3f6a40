//! `payments-adapter` Lambda: wiring only (see lib.rs for the handler).

use std::sync::Arc;

use lambda_runtime::{Error, run, service_fn};
use payments_adapter::{Config, Deps, handle};
use shared::dynamo::{DynamoStore, TableNames};
use shared::gateway::{GatewayConfig, HttpGateway};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::lambda::init_tracing();
    let config = Config::from_env()?;
    let sdk = shared::lambda::sdk_config().await;
    let gateway = HttpGateway::new(&GatewayConfig::from_env(&sdk).await?)?;
    let store = DynamoStore::from_sdk_config(&sdk, TableNames::from_env()?);
    let deps = Deps::new(config, Arc::new(gateway), Arc::new(store));
    run(service_fn(|event| handle(&deps, event))).await
}
