//! Mock external payment gateway: an axum server that plays the third-party
//! card processor for local runs and tests (DESIGN.md §6).
//!
//! It depends on no workspace crate and has its own wire types. Build the
//! router with [`app`] and drive it with `tower::ServiceExt::oneshot` in tests,
//! or run the binary (`cargo run -p mock-gateway`), which serves on 127.0.0.1.

mod cancels;
mod charges;
mod config;
mod error;
mod middleware;
mod money;
mod refunds;
mod routes;
mod state;
mod webhooks;

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, post};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

pub use config::{
    ApiKey, ConfigError, DEFAULT_API_KEY, DEFAULT_PORT, ErrorRate, GatewayConfig, MAX_LATENCY_MS,
    MAX_PENDING_DELAY_MS, Mode, ModeSettings, ServerConfig,
};
pub use error::AppError;
pub use middleware::API_KEY_HEADER;
pub use state::{AppState, Clock, Limits, ManualClock, Stats, SystemClock};
pub use webhooks::{SIGNATURE_HEADER, WebhookSender};

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Server-side bound on any request, above [`MAX_LATENCY_MS`].
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The whole HTTP surface of the gateway.
pub fn app(state: AppState) -> Router {
    let v1 = Router::new()
        .route("/v1/payments", post(routes::create_payment))
        .route("/v1/payments/{paymentId}", get(routes::get_payment))
        .route(
            "/v1/payments/{paymentId}/cancel",
            post(routes::cancel_payment),
        )
        .route("/v1/refunds", post(routes::create_refund))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::gate,
        ));
    let control = Router::new()
        .route(
            "/control/mode",
            get(routes::get_mode).post(routes::set_mode),
        )
        .route("/control/reset", post(routes::reset))
        .route("/control/stats", get(routes::stats))
        .route_layer(axum::middleware::from_fn(middleware::refuse_browsers));
    Router::new()
        .merge(v1)
        .merge(control)
        .route("/health", get(routes::health))
        .fallback(routes::not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::observe,
        ))
        .with_state(state)
}

/// JSON logs to stderr; `RUST_LOG` overrides the default `info` level.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_current_span(false)
        .init();
}

/// Serves on `127.0.0.1:{port}` until `shutdown` completes, then drains.
pub async fn serve(
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, config.port));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, mode = %config.gateway.settings.mode, "mock gateway listening");
    let webhooks = config
        .webhook
        .as_ref()
        .map(|webhook| WebhookSender::new(&webhook.url, webhook.secret.as_bytes()));
    if let Some(webhook) = &config.webhook {
        tracing::info!(url = %webhook.url, "webhooks on");
    }
    let state = AppState::new(config.gateway).with_webhooks(webhooks);
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sigterm) => {
                sigterm.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown signal received");
}
