//! `tests/http_gateway.rs` is compiled only with the `http-gateway` feature
//! (`#![cfg(feature = "http-gateway")]`). A plain `cargo test -p shared`
//! does not enable it, and that suite then runs 0 tests without a word; this
//! stand-in makes the gap show as one ignored test naming the fix.
//! (`cargo test --workspace` enables the feature through the lambdas that
//! depend on it, so there the real suite runs and this file is empty.)
#![cfg(not(feature = "http-gateway"))]

#[test]
#[ignore = "HttpGateway tests need `--features http-gateway` (or `cargo test --workspace`)"]
fn http_gateway_tests_need_the_http_gateway_feature() {}
