//! `operator-api` Lambda: operator top-ups (`POST /wallets/{userId}/credit`,
//! SigV4). Wiring only; its role alone may credit wallets.

use std::sync::Arc;

use api_handler::{OperatorDeps, config, handle_operator};
use lambda_runtime::{Error, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::lambda::init_tracing();
    let amount_max = config::amount_max(|name| std::env::var(name).ok())?;
    let store = Arc::new(shared::lambda::dynamo_store().await?);
    let deps = OperatorDeps {
        wallets: store.clone(),
        idempotency: store,
        amount_max,
    };
    run(service_fn(|event| handle_operator(&deps, event))).await
}
