//! An in-process local cloud for end-to-end tests: ephemeral loopback ports, an
//! in-memory DynamoDB, a data dir under `target/tmp` and the real binaries from
//! `target/debug`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use local::cloud::Options;

use crate::backend::repo_root;

/// The one runtime of an end-to-end test binary: its shared cloud lives as
/// long as the test process, across tests that each `block_on` it.
#[allow(clippy::expect_used)] // a test process without a runtime cannot test anything
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime")
    })
}

/// Waits and retry intervals run 20x faster than real time.
pub const TIME_SCALE: f64 = 0.05;

/// The workspace's `target` (or `CARGO_TARGET_DIR`).
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| repo_root().join("target"), PathBuf::from)
}

/// `target/debug`, checked to hold every binary the cloud starts plus `extra`.
pub fn bin_dir(extra: &[&str]) -> PathBuf {
    let dir = target_dir().join("debug");
    for binary in [
        "local",
        "mock-gateway",
        "api-handler",
        "operator-api",
        "authorizer",
        "invoice-processor",
        "wallet-service",
        "payments-adapter",
        "refund-service",
    ]
    .iter()
    .chain(extra)
    {
        assert!(
            dir.join(binary).exists(),
            "{binary} is not built: run `cargo build --workspace --bins` first"
        );
    }
    dir
}

/// Options for a throwaway cloud; `function_env` overrides Lambda environment.
/// Its data dir (the functions' logs, execution histories) stays in
/// `target/tmp/saga-e2e-*` to be read after a failure; `cargo clean` removes it.
pub fn options(function_env: BTreeMap<String, String>) -> Options {
    let data_dir = target_dir()
        .join("tmp")
        .join(format!("saga-e2e-{}", ulid::Ulid::new()));
    Options {
        root: repo_root(),
        data_dir,
        in_memory: true,
        bin_dir: bin_dir(&[]),
        edge_port: 0,
        api_port: 0,
        gateway_port: 0,
        time_scale: TIME_SCALE,
        instance_count_max: 6,
        gateway_pending_delay_ms: 300,
        function_env,
        schedules: false,
    }
}
