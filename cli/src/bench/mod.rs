//! `saga bench`: the load benchmark (being built; see issue 6).

use std::process::ExitCode;

use clap::Args;

use crate::args::Global;
use crate::error::{CliError, CliResult};

#[derive(Debug, Args, Clone)]
pub struct BenchArgs {
    /// Number of payments.
    #[arg(long, short = 'n', default_value_t = 2000)]
    pub payments: u32,
}

pub async fn run(_global: &Global, _args: &BenchArgs) -> CliResult<ExitCode> {
    Err(CliError::Usage("bench: not implemented yet".into()))
}
