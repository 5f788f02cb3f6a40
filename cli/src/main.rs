//! Command-line client (pay, wallet, refund, flow monitor, bench). Filled by the DX issue.

fn main() {
    eprintln!("cli: not implemented yet");
    std::process::exit(1);
}
