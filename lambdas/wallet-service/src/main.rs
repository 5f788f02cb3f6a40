//! `wallet-service` Lambda: wiring only (see lib.rs for the handler).

use std::sync::Arc;

use lambda_runtime::{Error, run, service_fn};
use wallet_service::{Deps, handle};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::lambda::init_tracing();
    let deps = Deps {
        wallets: Arc::new(shared::lambda::dynamo_store().await?),
    };
    run(service_fn(|event| handle(&deps, event))).await
}
