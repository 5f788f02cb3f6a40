//! One function per subcommand; `run` maps every error to its exit code.

use std::process::ExitCode;

use rust_decimal::Decimal;
use serde_json::Value;

use crate::api::{Api, NewPayment};
use crate::args::{
    Cli, Command, ExecutionsArgs, Global, MonitorArgs, PayArgs, PaymentCommand, RefundArgs,
    TokenArgs, WalletCommand,
};
use crate::error::{CliError, CliResult};
use crate::monitor::flow::Flow;
use crate::monitor::{Monitor, StartingBalance, event_from, render_line};
use crate::output::{Color, Style};
use crate::stepfunctions::{StepFunctions, Target};

pub async fn run(cli: Cli) -> ExitCode {
    let global = cli.global;
    let outcome = match &cli.command {
        Command::Pay(args) => pay(&global, args).await,
        Command::Monitor(args) => monitor(&global, args).await,
        Command::Wallet(command) => wallet(&global, command).await,
        Command::Payment(command) => payment(&global, command).await,
        Command::Refund(args) => refund(&global, args).await,
        Command::Executions(args) => executions(&global, args).await,
        Command::Scenarios(args) => crate::scenarios::run(&global, args).await,
        Command::Bench(args) => crate::bench::run(&global, args).await,
        Command::Reconcile(args) => crate::reconcile::run(&global, args).await,
        Command::Token(args) => token(&global, args).await,
    };
    match outcome {
        Ok(code) => code,
        Err(err) => {
            let style = Style::detect();
            eprintln!("{} {err}", style.paint(Color::Red, "error:"));
            err.exit_code()
        }
    }
}

async fn api(global: &Global) -> CliResult<Api> {
    Api::connect(global).await
}

/// `saga token <userId>`: the token alone on stdout, for `$(saga token alice)`.
async fn token(global: &Global, args: &TokenArgs) -> CliResult<ExitCode> {
    let http = crate::api::http_client()?;
    let issuer = crate::auth::local_issuer(global.endpoint_url.as_deref());
    let token =
        crate::auth::local_token(&http, &issuer, &args.user_id, Some(args.expires_in)).await?;
    println!("{token}");
    Ok(ExitCode::SUCCESS)
}

async fn step_functions(global: &Global) -> StepFunctions {
    StepFunctions::connect(Target::new(
        global.endpoint_url.clone(),
        global.profile.clone(),
        global.region.clone(),
    ))
    .await
}

fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    );
}

async fn pay(global: &Global, args: &PayArgs) -> CliResult<ExitCode> {
    let api = api(global).await?;
    let request = NewPayment {
        user_id: args.user.clone(),
        amount: args.amount.clone(),
        currency: args.currency.to_ascii_uppercase(),
        order_id: args.order_id.clone(),
        description: args.description.clone(),
    };
    if args.fund {
        fund(&api, &request, global.json).await?;
    }
    if !args.watch {
        let created = api
            .create_payment(&request, args.idempotency_key.as_deref())
            .await?;
        if global.json {
            print_json(&serde_json::to_value(&created).unwrap_or_default());
        } else {
            println!(
                "payment {} {} {} {} (user {})",
                created.payment_id,
                created.status,
                created.amount,
                created.currency,
                created.user_id
            );
            println!("watch it: saga monitor {}", created.payment_id);
        }
        return Ok(ExitCode::SUCCESS);
    }
    // The balance before the payment, so the summary shows what it moved.
    let before = api
        .balance(&request.user_id, &request.currency)
        .await?
        .map(|wallet| wallet.balance);
    let created = api
        .create_payment(&request, args.idempotency_key.as_deref())
        .await?;
    let sfn = step_functions(global).await;
    let execution_arn = match created.execution_arn.clone() {
        Some(arn) => arn,
        None => sfn.execution_arn_for(&created.payment_id).await?,
    };
    let monitor = Monitor {
        api: &api,
        sfn: &sfn,
        style: Style::detect(),
        json: global.json,
        options: &args.watch_options,
    };
    monitor
        .watch(&execution_arn, StartingBalance::BeforePayment(before))
        .await
}

/// Tops the wallet up so it covers the payment (`pay --fund`).
async fn fund(api: &Api, request: &NewPayment, quiet: bool) -> CliResult<()> {
    let Ok(amount) = request.amount.parse::<Decimal>() else {
        // Not a number: let the API say what is wrong with it.
        return Ok(());
    };
    let balance = api
        .balance(&request.user_id, &request.currency)
        .await?
        .and_then(|wallet| wallet.balance.parse::<Decimal>().ok());
    let short = match balance {
        Some(balance) if balance >= amount => return Ok(()),
        Some(balance) => amount - balance,
        None => amount,
    };
    let top_up = short.max(Decimal::from(1000)).to_string();
    let reply = api
        .credit(
            &request.user_id,
            &top_up,
            &request.currency,
            Some("saga pay --fund"),
            None,
        )
        .await?;
    if !quiet {
        println!(
            "💰 topped up {} with {} {} (balance {})",
            request.user_id,
            reply["amount"].as_str().unwrap_or(&top_up),
            request.currency,
            reply["balance"].as_str().unwrap_or("-")
        );
    }
    Ok(())
}

async fn monitor(global: &Global, args: &MonitorArgs) -> CliResult<ExitCode> {
    let api = api(global).await?;
    let sfn = step_functions(global).await;
    let execution_arn = if args.target.starts_with("arn:") {
        args.target.clone()
    } else if args.target.starts_with("pay_") {
        sfn.execution_arn_for(&args.target).await?
    } else {
        return Err(CliError::Usage(format!(
            "`{}` is neither a payment id (pay_…) nor an execution ARN (arn:aws:states:…)",
            args.target
        )));
    };
    let monitor = Monitor {
        api: &api,
        sfn: &sfn,
        style: Style::detect(),
        json: global.json,
        options: &args.watch_options,
    };
    monitor
        .watch(&execution_arn, StartingBalance::WhenTheMonitorStarts)
        .await
}

async fn wallet(global: &Global, command: &WalletCommand) -> CliResult<ExitCode> {
    let api = api(global).await?;
    match command {
        WalletCommand::Show { user } => {
            let reply = api.wallet_raw(user).await?;
            if global.json {
                print_json(&reply);
            } else {
                println!("💰 wallet of {user}");
                for wallet in reply["wallets"].as_array().into_iter().flatten() {
                    println!(
                        "   {} {}  (version {})",
                        wallet["balance"].as_str().unwrap_or_default(),
                        wallet["currency"].as_str().unwrap_or_default(),
                        wallet["version"]
                    );
                }
            }
        }
        WalletCommand::Credit {
            user,
            amount,
            currency,
            reference,
            idempotency_key,
        } => {
            let reply = api
                .credit(
                    user,
                    amount,
                    &currency.to_ascii_uppercase(),
                    reference.as_deref(),
                    idempotency_key.as_deref(),
                )
                .await?;
            if global.json {
                print_json(&reply);
            } else {
                println!(
                    "💰 credited {} {} to {user}: balance {} {}",
                    reply["amount"].as_str().unwrap_or_default(),
                    reply["currency"].as_str().unwrap_or_default(),
                    reply["balance"].as_str().unwrap_or_default(),
                    reply["currency"].as_str().unwrap_or_default(),
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn payment(global: &Global, command: &PaymentCommand) -> CliResult<ExitCode> {
    let api = api(global).await?;
    match command {
        PaymentCommand::Show { payment_id } => {
            let reply = api.payment_raw(payment_id).await?;
            if global.json {
                print_json(&reply);
                return Ok(ExitCode::SUCCESS);
            }
            let text = |key: &str| reply[key].as_str().unwrap_or("-").to_owned();
            println!("📋 {}", text("paymentId"));
            println!("   Status: {}", text("status"));
            println!("   User ID: {}", text("userId"));
            println!("   Amount: {} {}", text("amount"), text("currency"));
            println!(
                "   Refunded: {} {}",
                text("refundedAmount"),
                text("currency")
            );
            println!("   Gateway Reference: {}", text("gatewayReference"));
            if reply["failureReason"].is_string() {
                println!("   Failure Reason: {}", text("failureReason"));
            }
            println!("   Created: {}", text("createdAt"));
            println!("   Timeline:");
            for event in reply["events"].as_array().into_iter().flatten() {
                println!(
                    "     {}  {:<28} {} → {}",
                    event["at"].as_str().unwrap_or_default(),
                    event["type"].as_str().unwrap_or_default(),
                    event["fromStatus"].as_str().unwrap_or("-"),
                    event["status"].as_str().unwrap_or_default(),
                );
            }
            for refund in reply["refunds"].as_array().into_iter().flatten() {
                println!(
                    "   Refund {}: {} {} {}",
                    refund["refundId"].as_str().unwrap_or_default(),
                    refund["amount"].as_str().unwrap_or_default(),
                    refund["currency"].as_str().unwrap_or_default(),
                    refund["status"].as_str().unwrap_or_default(),
                );
            }
        }
        PaymentCommand::List {
            user,
            limit,
            cursor,
        } => {
            let reply = api.payments(user, Some(*limit), cursor.as_deref()).await?;
            if global.json {
                print_json(&reply);
                return Ok(ExitCode::SUCCESS);
            }
            let items = reply["payments"].as_array().cloned().unwrap_or_default();
            println!("{} payment(s) of {user}, newest first", items.len());
            for item in &items {
                println!(
                    "   {}  {:>12} {}  {:<24} {}",
                    item["paymentId"].as_str().unwrap_or_default(),
                    item["amount"].as_str().unwrap_or_default(),
                    item["currency"].as_str().unwrap_or_default(),
                    item["status"].as_str().unwrap_or_default(),
                    item["createdAt"].as_str().unwrap_or_default(),
                );
            }
            if let Some(next) = reply["nextCursor"].as_str() {
                println!("next page: saga payment list {user} --cursor {next}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn refund(global: &Global, args: &RefundArgs) -> CliResult<ExitCode> {
    let api = api(global).await?;
    let reply = api
        .refund(
            &args.payment_id,
            args.amount.as_deref(),
            args.reason.as_deref(),
            args.idempotency_key.as_deref(),
        )
        .await?;
    let text = |value: &serde_json::Value, key: &str| value[key].as_str().unwrap_or("-").to_owned();
    if !global.json {
        println!(
            "↩️  refund {} of {} {} on {}: {}",
            text(&reply, "refundId"),
            text(&reply, "amount"),
            text(&reply, "currency"),
            text(&reply, "paymentId"),
            text(&reply, "status")
        );
    }
    // --watch: the refund saga's states as they run, then the refund below.
    if args.watch
        && args.wait > 0
        && reply["status"] != "COMPLETED"
        && let Some(execution_arn) = reply["executionArn"].as_str()
    {
        let sfn = step_functions(global).await;
        let options = crate::args::WatchOptions {
            expect: "COMPLETED".to_owned(),
            timeout: args.wait,
            poll_ms: 200,
        };
        let monitor = Monitor {
            api: &api,
            sfn: &sfn,
            style: Style::detect(),
            json: global.json,
            options: &options,
        };
        println!();
        let status = monitor.follow_states(execution_arn).await?;
        println!("   refund saga: {status}");
    }
    // The refund saga finishes it; wait for that (showing each step) unless
    // told not to.
    let refund = if args.wait > 0 && reply["status"] != "COMPLETED" {
        let json = global.json;
        let mut first = true;
        let settled = api
            .settled_refund(
                &args.payment_id,
                &text(&reply, "refundId"),
                std::time::Duration::from_secs(args.wait),
                |status| {
                    // (the first status is the one just printed)
                    if !json && !first {
                        println!("   → {status}");
                    }
                    first = false;
                },
            )
            .await?;
        if settled.is_null() { reply } else { settled }
    } else {
        reply
    };
    if global.json {
        print_json(&refund);
    } else {
        if args.watch {
            println!("   Refund status: {}", text(&refund, "status"));
        }
        if refund["failureReason"].is_string() {
            println!("   Failure Reason: {}", text(&refund, "failureReason"));
        }
    }
    let status = refund["status"].as_str().unwrap_or_default();
    Ok(match status {
        "COMPLETED" => ExitCode::SUCCESS,
        // still under way after --wait: not a failure, but not done
        "REQUESTED" | "GATEWAY_REFUNDED" if args.wait == 0 => ExitCode::SUCCESS,
        "REQUESTED" | "GATEWAY_REFUNDED" => ExitCode::from(2),
        _ => ExitCode::from(1),
    })
}

async fn executions(global: &Global, args: &ExecutionsArgs) -> CliResult<ExitCode> {
    let sfn = step_functions(global).await;
    let arns = sfn.recent_executions(args.limit).await?;
    let style = Style::detect();
    if arns.is_empty() && !global.json {
        println!("no executions yet: make test-payment");
    }
    for execution in arns {
        if global.json {
            let mut value = serde_json::json!({
                "executionArn": execution.arn,
                "status": execution.status,
                "error": execution.error,
                "cause": execution.cause,
            });
            if args.history {
                let mut flow = Flow::new();
                let lines: Vec<_> = sfn
                    .events_after(&execution.arn, 0)
                    .await?
                    .iter()
                    .flat_map(|event| flow.push(&event_from(event)))
                    .collect();
                value["history"] = serde_json::to_value(lines).unwrap_or_default();
            }
            println!("{value}");
            continue;
        }
        let color = match execution.status.as_str() {
            "SUCCEEDED" => Color::Green,
            "RUNNING" => Color::Blue,
            _ => Color::Red,
        };
        println!(
            "{}  {}",
            style.paint(color, &format!("{:<9}", execution.status)),
            execution.arn
        );
        if let Some(error) = &execution.error {
            println!(
                "          {error}: {}",
                execution.cause.as_deref().unwrap_or("")
            );
        }
        if args.history {
            let mut flow = Flow::new();
            for event in sfn.events_after(&execution.arn, 0).await? {
                for line in flow.push(&event_from(&event)) {
                    if let Some(text) = render_line(&line, style) {
                        println!("          {text}");
                    }
                }
            }
            println!();
        }
    }
    Ok(ExitCode::SUCCESS)
}
