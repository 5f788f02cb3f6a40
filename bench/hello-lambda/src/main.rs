//! `hello-lambda`: answers every event with a greeting. Nothing else: no
//! tracing, no SDK client, no configuration. `saga bench` cold-starts it next
//! to the real functions, so their own start-up cost shows as the difference.

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use serde_json::{Value, json};

async fn hello(_event: LambdaEvent<Value>) -> Result<Value, Error> {
    Ok(json!({ "message": "hello, world" }))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    run(service_fn(hello)).await
}
