//! `local`: the Docker-free local cloud. One process serves, on 127.0.0.1,
//! the AWS edge endpoint (DynamoDB, Step Functions, Lambda), the HTTP API and
//! the mock gateway, running the same Lambda binaries, ASL file and tables as
//! `template.yml` deploys to AWS.

use std::path::PathBuf;

use clap::Parser;
use local::cloud::{LocalCloud, Options, summary};
use local::template::parse_parameter_override;

/// The Docker-free local cloud of the payment saga.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Args {
    /// Repository root (where template.yml is).
    #[arg(long, env = "LOCAL_ROOT", default_value = ".")]
    root: PathBuf,
    /// Data, logs and executions directory.
    #[arg(long, env = "LOCAL_DATA_DIR", default_value = ".local")]
    data_dir: PathBuf,
    /// Keep everything in memory (nothing survives a restart).
    #[arg(long)]
    in_memory: bool,
    /// Directory of the Lambda and mock-gateway binaries.
    #[arg(long, env = "LOCAL_BIN_DIR", default_value = "target/debug")]
    bin_dir: PathBuf,
    /// AWS edge endpoint port (DynamoDB, Step Functions, Lambda); 0 = any free port.
    #[arg(long, env = "EDGE_PORT", default_value_t = 4566)]
    edge_port: u16,
    /// HTTP API port (API Gateway); 0 = any free port.
    #[arg(long, env = "API_PORT", default_value_t = 3001)]
    api_port: u16,
    /// Mock gateway port; 0 = any free port.
    #[arg(long, env = "GATEWAY_PORT", default_value_t = 3000)]
    gateway_port: u16,
    /// Multiply Wait states and retry intervals by this factor, in (0, 1].
    #[arg(long, env = "TIME_SCALE", default_value_t = 1.0)]
    time_scale: f64,
    /// Most instances per function.
    #[arg(long, default_value_t = 8)]
    instance_count_max: u32,
    /// How long a PENDING charge stays pending at the mock gateway (ms).
    #[arg(long, env = "PENDING_DELAY_MS", default_value_t = 2000)]
    gateway_pending_delay_ms: u64,
    /// Do not run the template's schedules (the reconciler every 5 minutes).
    #[arg(long, env = "NO_SCHEDULES")]
    no_schedules: bool,
    /// Template parameter values over their defaults, as SAM's
    /// (`--parameter-overrides ClientRateLimit=2 ClientBurstLimit=2`).
    #[arg(long, env = "PARAMETER_OVERRIDES", value_name = "NAME=VALUE", num_args = 1.., value_delimiter = ' ')]
    parameter_overrides: Vec<String>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_target(false)
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let data_dir = args.data_dir.clone();
    let mut parameter_overrides = std::collections::BTreeMap::new();
    for text in args.parameter_overrides.iter().filter(|t| !t.is_empty()) {
        match parse_parameter_override(text) {
            Ok((name, value)) => {
                parameter_overrides.insert(name, value);
            }
            Err(err) => {
                eprintln!("local cloud failed to start: {err}");
                return std::process::ExitCode::FAILURE;
            }
        }
    }
    let options = Options {
        root: args.root,
        data_dir: args.data_dir,
        in_memory: args.in_memory,
        bin_dir: args.bin_dir,
        edge_port: args.edge_port,
        api_port: args.api_port,
        gateway_port: args.gateway_port,
        time_scale: args.time_scale,
        instance_count_max: args.instance_count_max,
        gateway_pending_delay_ms: args.gateway_pending_delay_ms,
        function_env: std::collections::BTreeMap::new(),
        schedules: !args.no_schedules,
    };
    let cloud = match LocalCloud::start_with_parameters(options, parameter_overrides).await {
        Ok(cloud) => cloud,
        Err(err) => {
            eprintln!("local cloud failed to start: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let state = summary(&cloud);
    let _ = std::fs::write(data_dir.join("endpoints.json"), format!("{state:#}\n"));
    println!(
        "local cloud ready: edge {} · api {} · gateway {} · issuer {}",
        cloud.endpoints.edge, cloud.endpoints.api, cloud.endpoints.gateway, cloud.endpoints.issuer
    );
    wait_for_signal().await;
    eprintln!("local cloud stopping");
    cloud.shutdown().await;
    let _ = std::fs::remove_file(data_dir.join("endpoints.json"));
    std::process::ExitCode::SUCCESS
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
