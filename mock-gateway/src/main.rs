//! Mock payment gateway on 127.0.0.1:$PORT (default 3000). See README.md.

use std::process::ExitCode;

use mock_gateway::{ServerConfig, init_tracing, serve, shutdown_signal};

#[tokio::main]
async fn main() -> ExitCode {
    init_tracing();
    let config = match ServerConfig::from_env() {
        Ok(config) => config,
        Err(e) => {
            tracing::error!(error = %e, "invalid configuration");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = serve(config, shutdown_signal()).await {
        tracing::error!(error = %e, "server failed");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
