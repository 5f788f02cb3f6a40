//! Handler tests: real proxy events through `handle`, with the in-memory
//! store and fakes of the saga starter and refund-service. One test binary
//! (modules below) so the slow link happens once.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod authorization;
mod common;
mod http;
mod openapi;
mod payments;
mod refunds;
mod wallets;
mod webhooks;
