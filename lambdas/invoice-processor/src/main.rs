//! `invoice-processor` Lambda: wiring only (see lib.rs for the handler).

use std::sync::Arc;

use invoice_processor::{Deps, handle};
use lambda_runtime::{Error, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::lambda::init_tracing();
    let deps = Deps {
        payments: Arc::new(shared::lambda::dynamo_store().await?),
    };
    run(service_fn(|event| handle(&deps, event))).await
}
