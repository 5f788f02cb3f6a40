//! `api-handler` Lambda: wiring only (see lib.rs for the handler).

use std::sync::Arc;

use api_handler::{Config, aws, handle};
use lambda_runtime::{Error, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::lambda::init_tracing();
    let config = Config::from_env()?;
    let sdk = shared::lambda::sdk_config().await;
    let store = Arc::new(shared::lambda::dynamo_store().await?);
    let webhook_secret = aws::webhook_secret(&config, &sdk).await?;
    let deps = aws::deps(&config, &sdk, store, webhook_secret);
    run(service_fn(|event| handle(&deps, event))).await
}
