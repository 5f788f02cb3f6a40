//! HTTP adapter of the external payment gateway (`PaymentGateway` over reqwest):
//! the only place money meets the gateway's wire format (`mock-gateway/README.md`
//! is the contract). With the `fakes` feature, a scripted in-memory gateway too.

pub mod config;
#[cfg(any(test, feature = "fakes"))]
pub mod fake;
pub mod http;
mod wire;

#[cfg(feature = "lambda")]
pub use config::fetch_api_key;
pub use config::{ApiKeySource, GatewayConfig, GatewayConfigError, Secret};
pub use http::{API_KEY_HEADER, HttpGateway, IDEMPOTENCY_KEY_HEADER};
