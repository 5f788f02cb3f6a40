//! `reconciler` Lambda: wiring only (see lib.rs for the handler). The
//! template runs it every five minutes; `saga reconcile` invokes it too.

use std::sync::Arc;

use lambda_runtime::{Error, run, service_fn};
use reconciler::{Deps, StepFunctionsCallbacks, handle};
use shared::gateway::{GatewayConfig, HttpGateway};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::lambda::init_tracing();
    let store = Arc::new(shared::lambda::dynamo_store().await?);

    let sdk_config = shared::lambda::sdk_config().await;
    let config = GatewayConfig::from_env(&sdk_config).await?;
    let deps = Deps {
        ports: refund_service::Deps {
            payments: store.clone(),
            refunds: store.clone(),
            wallets: store,
            gateway: Arc::new(HttpGateway::new(&config)?),
        },
        sagas: Arc::new(StepFunctionsCallbacks::new(&sdk_config)),
    };
    run(service_fn(|event| handle(&deps, event))).await
}
