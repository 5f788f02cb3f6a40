//! Local cloud binary. The full cloud (Step Functions, Lambda runtime, API
//! Gateway) arrives with the local-cloud issue.

fn main() {
    eprintln!("local: the local cloud is not implemented yet; see issue 4");
    std::process::exit(1);
}
