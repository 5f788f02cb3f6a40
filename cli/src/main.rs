//! `saga`: see `saga --help`.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = cli::args::Cli::parse();
    cli::commands::run(cli).await
}
