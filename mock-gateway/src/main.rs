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
    let stop = async {
        tokio::select! {
            () = shutdown_signal() => {}
            () = parent_gone() => tracing::info!("parent process gone: stopping"),
        }
    };
    if let Err(e) = serve(config, stop).await {
        tracing::error!(error = %e, "server failed");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// With `EXIT_WITH_PARENT=1` (set by the local cloud, which pipes our stdin),
/// stdin reaching EOF means the parent died: stop rather than linger as an orphan.
async fn parent_gone() {
    if std::env::var("EXIT_WITH_PARENT").as_deref() != Ok("1") {
        return std::future::pending().await;
    }
    let _ = tokio::task::spawn_blocking(|| {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
    })
    .await;
}
