//! The command line: `saga <command>`. Every subcommand has its own `--help`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::api::DEFAULT_API_URL;

/// saga — pay, watch the saga, inspect wallets and payments, refund, benchmark.
///
/// Talks to the payments HTTP API (the local cloud's 3001 by default) and to Step
/// Functions (the local edge on 4566 by default; a real AWS account when --profile or
/// --region is given). Exit codes: 0 the expected outcome, 1 another outcome or a failed
/// call, 2 usage errors and timeouts.
#[derive(Debug, Parser)]
#[command(name = "saga", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args, Clone)]
#[command(next_help_heading = "Where (every command)")]
pub struct Global {
    /// Base URL of the payments API.
    #[arg(long, env = "API_URL", default_value = DEFAULT_API_URL, global = true)]
    pub api_url: String,
    /// Step Functions endpoint (default: the local edge, http://127.0.0.1:4566, unless
    /// --profile or --region is given).
    #[arg(long, env = "SFN_ENDPOINT_URL", global = true)]
    pub endpoint_url: Option<String>,
    /// AWS profile: read Step Functions of a deployed stack (AWS_PROFILE alone does
    /// not switch away from the local cloud).
    #[arg(long, global = true)]
    pub profile: Option<String>,
    /// AWS region of a deployed stack.
    #[arg(long, global = true)]
    pub region: Option<String>,
    /// Machine-readable JSON output instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// Call as this end user: a bearer token from the local cloud's issuer
    /// (`saga token <userId>`). Locally, with no --as, --token or --api-key,
    /// the local demo merchant's API key is used.
    #[arg(long = "as", value_name = "USER_ID", global = true)]
    pub as_user: Option<String>,
    /// Call with this bearer token (an end user's JWT; Cognito on AWS).
    #[arg(long, env = "SAGA_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
    /// Call as a service client with this API key (scripts/create-client.sh on AWS).
    #[arg(long, env = "SAGA_API_KEY", global = true, hide_env_values = true)]
    pub api_key: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a payment (POST /payments); --watch follows it through the saga.
    Pay(PayArgs),
    /// Follow a payment through the saga, live, state by state.
    Monitor(MonitorArgs),
    /// Show a wallet or credit (top up) it.
    #[command(subcommand)]
    Wallet(WalletCommand),
    /// Show one payment (with its event timeline) or list a user's payments.
    #[command(subcommand)]
    Payment(PaymentCommand),
    /// Refund a completed payment, fully or partially.
    Refund(RefundArgs),
    /// Recent saga executions with their histories (what `make logs-stepfunction` prints).
    Executions(ExecutionsArgs),
    /// The end-to-end scenario suite against the running stack (`make test-e2e`).
    Scenarios(crate::scenarios::ScenariosArgs),
    /// Load benchmark against the running local cloud (see `make bench`).
    Bench(crate::bench::BenchArgs),
    /// Print a bearer token for an end user from the local cloud's issuer (stdout, nothing
    /// else): `curl -H "Authorization: Bearer $(saga token alice)" …`.
    Token(TokenArgs),
    /// Settle what the sagas could not, now: run the reconciler (the template runs it
    /// every 5 minutes), print its report, save it as JSON (`make reconcile`).
    Reconcile(crate::reconcile::ReconcileArgs),
}

#[derive(Debug, Args, Clone)]
pub struct TokenArgs {
    /// The user the token is for (its subject).
    pub user_id: String,
    /// Lifetime in seconds (at most 86400).
    #[arg(long, default_value_t = 3600)]
    pub expires_in: u64,
}

#[derive(Debug, Args, Clone)]
pub struct PayArgs {
    /// Who pays (1–64 of A-Z a-z 0-9 _ . -).
    #[arg(long, short = 'u', default_value = "user_test_001")]
    pub user: String,
    /// Exact decimal amount, e.g. 50 or 12.34 (never rounded: extra decimals are refused).
    #[arg(long, short = 'a')]
    pub amount: String,
    /// ISO 4217 currency code.
    #[arg(long, short = 'c', default_value = "USD")]
    pub currency: String,
    /// Your order reference.
    #[arg(long)]
    pub order_id: Option<String>,
    /// Free text stored with the payment.
    #[arg(long)]
    pub description: Option<String>,
    /// Idempotency-Key header: the same key and body replay the first answer.
    #[arg(long)]
    pub idempotency_key: Option<String>,
    /// Top up the wallet first when it is missing or holds less than the amount
    /// (1000.00, or the shortfall if larger): a tester's convenience.
    #[arg(long)]
    pub fund: bool,
    /// Follow the payment through the saga with the flow monitor.
    #[arg(long, short = 'w')]
    pub watch: bool,
    #[command(flatten)]
    pub watch_options: WatchOptions,
}

#[derive(Debug, Args, Clone)]
pub struct WatchOptions {
    /// The payment status that counts as success (exit 0); anything else exits 1.
    #[arg(long, default_value = "COMPLETED", value_parser = ["COMPLETED", "FAILED", "RECONCILIATION_REQUIRED", "REFUNDED", "PARTIALLY_REFUNDED"])]
    pub expect: String,
    /// Give up (exit 2) after this many seconds.
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
    /// How often to read the execution history, in milliseconds.
    #[arg(long, default_value_t = 200)]
    pub poll_ms: u64,
}

#[derive(Debug, Args, Clone)]
pub struct MonitorArgs {
    /// A payment id (pay_…) or an execution ARN.
    pub target: String,
    #[command(flatten)]
    pub watch_options: WatchOptions,
}

#[derive(Debug, Subcommand)]
pub enum WalletCommand {
    /// Balances of a user, per currency.
    Show {
        #[arg(default_value = "user_test_001")]
        user: String,
    },
    /// Top up a wallet (creates it on the first credit).
    Credit {
        #[arg(default_value = "user_test_001")]
        user: String,
        #[arg(long, short = 'a', default_value = "1000")]
        amount: String,
        #[arg(long, short = 'c', default_value = "USD")]
        currency: String,
        /// Your reference for the top-up.
        #[arg(long)]
        reference: Option<String>,
        #[arg(long)]
        idempotency_key: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum PaymentCommand {
    /// One payment with its event timeline and refunds.
    Show { payment_id: String },
    /// A user's payments, newest first.
    List {
        #[arg(default_value = "user_test_001")]
        user: String,
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Cursor from the previous page.
        #[arg(long)]
        cursor: Option<String>,
    },
}

#[derive(Debug, Args, Clone)]
pub struct RefundArgs {
    pub payment_id: String,
    /// Partial amount; the whole remaining amount when left out.
    #[arg(long, short = 'a')]
    pub amount: Option<String>,
    #[arg(long)]
    pub reason: Option<String>,
    #[arg(long)]
    pub idempotency_key: Option<String>,
    /// Seconds to wait for the refund saga to settle the refund (0: answer at
    /// once, with the refund REQUESTED).
    #[arg(long, default_value_t = 60)]
    pub wait: u64,
    /// Follow the refund saga state by state (the flow monitor) while waiting.
    #[arg(long, short = 'w')]
    pub watch: bool,
}

#[derive(Debug, Args, Clone)]
pub struct ExecutionsArgs {
    /// How many of the most recent executions.
    #[arg(long, short = 'n', default_value_t = 5)]
    pub limit: u32,
    /// Print each execution's history, state by state.
    #[arg(long)]
    pub history: bool,
}

/// Where `bench` writes its JSON.
pub fn default_bench_dir() -> PathBuf {
    PathBuf::from("target/bench")
}
