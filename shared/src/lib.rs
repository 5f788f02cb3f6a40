//! Shared library of the payment saga: the domain (money, ids, statuses,
//! errors), the store ports, and their DynamoDB and in-memory adapters.
//!
//! Dependencies point one way: `dynamo` and `memory` implement `ports` over
//! `domain`; `domain` imports no AWS SDK, no HTTP and no async runtime.

pub mod breaker;
pub mod domain;
pub mod dynamo;
pub mod error;
pub mod events;
#[cfg(feature = "http-gateway")]
pub mod gateway;
#[cfg(feature = "lambda")]
pub mod lambda;
#[cfg(any(test, feature = "fakes"))]
pub mod memory;
pub mod observability;
pub mod ports;
pub mod webhook;

pub use error::{Entity, ErrorType, GatewayError, RepoError, StoreError, TaskError, WalletError};
