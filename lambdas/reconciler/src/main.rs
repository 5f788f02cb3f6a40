//! `reconciler` Lambda: wiring only (see lib.rs for the handler). The
//! template runs it every five minutes; `saga reconcile` invokes it too.

use std::sync::Arc;

use lambda_runtime::{Error, run, service_fn};
use reconciler::{Deps, handle};
use shared::gateway::{GatewayConfig, HttpGateway};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::lambda::init_tracing();
    let store = Arc::new(shared::lambda::dynamo_store().await?);
    let config = GatewayConfig::from_env(&shared::lambda::sdk_config().await).await?;
    let deps = Deps {
        payments: store.clone(),
        refunds: store.clone(),
        wallets: store,
        gateway: Arc::new(HttpGateway::new(&config)?),
    };
    run(service_fn(|event| handle(&deps, event))).await
}
