//! `saga scenarios`: the tester's end-to-end suite against a running local cloud
//! (or a deployed stack). Each scenario uses a fresh user, checks the payment's
//! final status, failure reason and the wallet balance, and the run ends with
//! `N passed, M failed`.

use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use reqwest::Method;
use serde_json::json;

use crate::api::{Api, NewPayment, Payment};
use crate::args::Global;
use crate::error::{CliError, CliResult};
use crate::output::{Color, Style};

pub const DEFAULT_GATEWAY_URL: &str = "http://127.0.0.1:3000";

#[derive(Debug, Args, Clone)]
pub struct ScenariosArgs {
    /// Scenarios to run (default: every scenario but `circuit-breaker`); see --list.
    pub names: Vec<String>,
    /// List the scenarios and exit.
    #[arg(long)]
    pub list: bool,
    /// The mock gateway (its /control API switches modes for `circuit-breaker`).
    #[arg(long, env = "GATEWAY_URL", default_value = DEFAULT_GATEWAY_URL)]
    pub gateway_url: String,
    /// Seconds the breaker stays OPEN (template.yml `OpenSeconds`).
    #[arg(long, default_value_t = 30)]
    pub open_seconds: u64,
    /// Longest wait for one payment to settle.
    #[arg(long, default_value_t = 60)]
    pub settle_timeout: u64,
}

type Outcome = Result<String, String>;
type Run<'a> = Pin<Box<dyn Future<Output = Outcome> + 'a>>;

struct Scenario {
    name: &'static str,
    about: &'static str,
    in_default_suite: bool,
    run: for<'a> fn(&'a Ctx) -> Run<'a>,
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "payment-success",
        about: "50.00 USD on 1000.00 → COMPLETED, balance 950.00",
        in_default_suite: true,
        run: |ctx| Box::pin(success(ctx)),
    },
    Scenario {
        name: "insufficient-funds",
        about: "5000.00 on 1000.00 → FAILED INSUFFICIENT_FUNDS, nothing debited",
        in_default_suite: true,
        run: |ctx| Box::pin(insufficient_funds(ctx)),
    },
    Scenario {
        name: "declined",
        about: "cents .13 → gateway declines → FAILED PAYMENT_DECLINED, debit compensated",
        in_default_suite: true,
        run: |ctx| Box::pin(declined(ctx)),
    },
    Scenario {
        name: "gateway-error",
        about: "999.99 → gateway 500 (nothing recorded): asked, closed there, FAILED GATEWAY_NOT_PROCESSED, debit given back",
        in_default_suite: true,
        run: |ctx| Box::pin(gateway_error(ctx)),
    },
    Scenario {
        name: "pending-then-approved",
        about: "cents .77 → PENDING, the saga waits and re-checks → COMPLETED",
        in_default_suite: true,
        run: |ctx| Box::pin(pending(ctx)),
    },
    Scenario {
        name: "idempotency",
        about: "same Idempotency-Key replays the payment; a different body → 422",
        in_default_suite: true,
        run: |ctx| Box::pin(idempotency(ctx)),
    },
    Scenario {
        name: "validation",
        about: "bad amounts and currencies → 400 with a JSON error, nothing created",
        in_default_suite: true,
        run: |ctx| Box::pin(validation(ctx)),
    },
    Scenario {
        name: "refunds",
        about: "partial then full refund → PARTIALLY_REFUNDED, REFUNDED, balance restored",
        in_default_suite: true,
        run: |ctx| Box::pin(refunds(ctx)),
    },
    Scenario {
        name: "concurrency",
        about: "10 concurrent 100.00 payments on 500.00 → exactly 5 COMPLETED, balance 0.00",
        in_default_suite: true,
        run: |ctx| Box::pin(concurrency(ctx)),
    },
    Scenario {
        name: "circuit-breaker",
        about: "gateway failing → breaker opens, payments fail fast and are compensated, \
                gateway calls stop; then it recovers (takes ~OpenSeconds)",
        in_default_suite: false,
        run: |ctx| Box::pin(circuit_breaker(ctx)),
    },
];

/// How long a scenario waits for a refund saga to settle a refund.
const REFUND_SETTLE_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

struct Ctx {
    api: Api,
    gateway: Api,
    style: Style,
    settle: Duration,
    open_seconds: u64,
    /// Unique per run, so scenarios never share a wallet with earlier runs.
    run_id: String,
}

pub async fn run(global: &Global, args: &ScenariosArgs) -> CliResult<ExitCode> {
    let style = Style::detect();
    if args.list {
        for scenario in SCENARIOS {
            let suite = if scenario.in_default_suite {
                ""
            } else {
                " (not in the default suite)"
            };
            println!("  {:<22} {}{suite}", scenario.name, scenario.about);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let chosen: Vec<&Scenario> = if args.names.is_empty() {
        SCENARIOS.iter().filter(|s| s.in_default_suite).collect()
    } else {
        let mut chosen = Vec::new();
        for name in &args.names {
            let found = SCENARIOS.iter().find(|s| s.name == name).ok_or_else(|| {
                CliError::Usage(format!(
                    "unknown scenario `{name}`: see `saga scenarios --list`"
                ))
            })?;
            chosen.push(found);
        }
        chosen
    };
    let ctx = Ctx {
        api: Api::connect(global).await?,
        gateway: Api::new(&args.gateway_url)?,
        style,
        settle: Duration::from_secs(args.settle_timeout),
        open_seconds: args.open_seconds,
        run_id: ulid::Ulid::new().to_string().to_lowercase(),
    };
    ctx.api.health().await?;
    let (mut passed, mut failed) = (0_u32, 0_u32);
    let started = Instant::now();
    for scenario in chosen {
        println!(
            "▶ {:<22} {}",
            scenario.name,
            style.paint(Color::Dim, scenario.about)
        );
        let at = Instant::now();
        let outcome = (scenario.run)(&ctx).await;
        let took = format!("({:.1} s)", at.elapsed().as_secs_f64());
        match outcome {
            Ok(detail) => {
                passed += 1;
                println!(
                    "  {} {detail} {}",
                    style.paint(Color::Green, "✅ PASS"),
                    style.paint(Color::Dim, &took)
                );
            }
            Err(detail) => {
                failed += 1;
                println!(
                    "  {} {detail} {}",
                    style.paint(Color::Red, "❌ FAIL"),
                    style.paint(Color::Dim, &took)
                );
            }
        }
    }
    println!();
    let line = format!(
        "{passed} passed, {failed} failed ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
    let color = if failed == 0 {
        Color::Green
    } else {
        Color::Red
    };
    println!("{}", style.paint(color, &line));
    Ok(if failed == 0 && passed > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

impl Ctx {
    fn user(&self, scenario: &str) -> String {
        format!("e2e_{scenario}_{}", self.run_id)
    }

    async fn fund(&self, user: &str, amount: &str) -> Result<(), String> {
        self.api
            .credit(user, amount, "USD", Some("e2e"), None)
            .await
            .map(|_| ())
            .map_err(|err| format!("top-up failed: {err}"))
    }

    async fn balance(&self, user: &str) -> Result<String, String> {
        match self.api.balance(user, "USD").await {
            Ok(Some(wallet)) => Ok(wallet.balance),
            Ok(None) => Err(format!("{user} has no USD wallet")),
            Err(err) => Err(format!("balance: {err}")),
        }
    }

    async fn pay(&self, user: &str, amount: &str, key: Option<&str>) -> Result<Payment, String> {
        let request = NewPayment {
            user_id: user.to_owned(),
            amount: amount.to_owned(),
            currency: "USD".into(),
            order_id: Some(format!("order_{}", self.run_id)),
            description: None,
        };
        self.api
            .create_payment(&request, key)
            .await
            .map_err(|err| format!("POST /payments: {err}"))
    }

    /// Polls the payment until the saga is done with it.
    async fn settle(&self, payment_id: &str) -> Result<Payment, String> {
        let deadline = Instant::now() + self.settle;
        loop {
            let payment = self
                .api
                .payment(payment_id)
                .await
                .map_err(|err| format!("GET /payments/{payment_id}: {err}"))?;
            if payment.is_terminal() {
                return Ok(payment);
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{payment_id} still {} after {:?}",
                    payment.status, self.settle
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits for the refund saga to settle `refund` (an answer of
    /// `POST …/refunds`) and checks it ended `expected`.
    async fn refund_settled(
        &self,
        payment_id: &str,
        refund: &serde_json::Value,
        expected: &str,
    ) -> Result<(), String> {
        let refund_id = refund["refundId"].as_str().unwrap_or_default();
        let settled = self
            .api
            .settled_refund(payment_id, refund_id, REFUND_SETTLE_WAIT, |_| {})
            .await
            .map_err(|e| e.to_string())?;
        match settled["status"].as_str() {
            Some(status) if status == expected => Ok(()),
            other => Err(format!(
                "refund {refund_id} ended {other:?}, expected {expected}"
            )),
        }
    }

    async fn pay_and_settle(&self, user: &str, amount: &str) -> Result<Payment, String> {
        let created = self.pay(user, amount, None).await?;
        self.settle(&created.payment_id).await
    }

    fn say(&self, text: &str) {
        println!("    {}", self.style.paint(Color::Cyan, text));
    }

    async fn gateway_mode(&self, mode: &str) -> Result<(), String> {
        self.gateway
            .call(
                Method::POST,
                "/control/mode",
                Some(json!({ "mode": mode })),
                None,
            )
            .await
            .map(|_| ())
            .map_err(|err| format!("gateway mode {mode}: {err}"))
    }

    async fn gateway_calls(&self) -> Result<u64, String> {
        let stats = self
            .gateway
            .call(Method::GET, "/control/stats", None, None)
            .await
            .map_err(|err| format!("gateway stats: {err}"))?;
        stats["total"]
            .as_u64()
            .ok_or_else(|| format!("gateway stats without a total: {stats}"))
    }
}

fn expect(payment: &Payment, status: &str, reason: Option<&str>) -> Result<(), String> {
    if payment.status != status {
        return Err(format!(
            "{} is {} ({}), expected {status}",
            payment.payment_id,
            payment.status,
            payment.failure_reason.as_deref().unwrap_or("no reason")
        ));
    }
    if let Some(reason) = reason
        && payment.failure_reason.as_deref() != Some(reason)
    {
        return Err(format!(
            "{} failed with {:?}, expected {reason}",
            payment.payment_id, payment.failure_reason
        ));
    }
    Ok(())
}

fn expect_balance(actual: &str, expected: &str) -> Result<(), String> {
    if actual == expected {
        Ok(())
    } else {
        Err(format!("balance is {actual}, expected {expected}"))
    }
}

async fn success(ctx: &Ctx) -> Outcome {
    let user = ctx.user("success");
    ctx.fund(&user, "1000").await?;
    let payment = ctx.pay_and_settle(&user, "50").await?;
    expect(&payment, "COMPLETED", None)?;
    if payment.gateway_reference.is_none() {
        return Err(format!(
            "{} COMPLETED without a gateway reference",
            payment.payment_id
        ));
    }
    expect_balance(&ctx.balance(&user).await?, "950.00")?;
    Ok(format!(
        "{} COMPLETED, balance 1000.00 → 950.00",
        payment.payment_id
    ))
}

async fn insufficient_funds(ctx: &Ctx) -> Outcome {
    let user = ctx.user("poor");
    ctx.fund(&user, "1000").await?;
    let payment = ctx.pay_and_settle(&user, "5000").await?;
    expect(&payment, "FAILED", Some("INSUFFICIENT_FUNDS"))?;
    expect_balance(&ctx.balance(&user).await?, "1000.00")?;
    Ok(format!(
        "{} FAILED INSUFFICIENT_FUNDS, balance still 1000.00",
        payment.payment_id
    ))
}

async fn declined(ctx: &Ctx) -> Outcome {
    let user = ctx.user("declined");
    ctx.fund(&user, "1000").await?;
    let payment = ctx.pay_and_settle(&user, "20.13").await?;
    expect(&payment, "FAILED", Some("PAYMENT_DECLINED"))?;
    expect_balance(&ctx.balance(&user).await?, "1000.00")?;
    Ok(format!(
        "{} FAILED PAYMENT_DECLINED, debit given back: 1000.00",
        payment.payment_id
    ))
}

async fn gateway_error(ctx: &Ctx) -> Outcome {
    let user = ctx.user("gwerror");
    ctx.fund(&user, "2000").await?;
    // A 500 may follow a capture (the adapter cannot tell), so the saga asks
    // the gateway (not found), closes the payment there and only then gives
    // the debit back.
    let payment = ctx.pay_and_settle(&user, "999.99").await?;
    expect(&payment, "FAILED", Some("GATEWAY_NOT_PROCESSED"))?;
    expect_balance(&ctx.balance(&user).await?, "2000.00")?;
    Ok(format!(
        "{} FAILED GATEWAY_NOT_PROCESSED (asked, then closed at the gateway), debit given back: 2000.00",
        payment.payment_id
    ))
}

async fn pending(ctx: &Ctx) -> Outcome {
    let user = ctx.user("pending");
    ctx.fund(&user, "100").await?;
    let payment = ctx.pay_and_settle(&user, "10.77").await?;
    expect(&payment, "COMPLETED", None)?;
    expect_balance(&ctx.balance(&user).await?, "89.23")?;
    Ok(format!(
        "{} PENDING → COMPLETED, balance 100.00 → 89.23",
        payment.payment_id
    ))
}

async fn idempotency(ctx: &Ctx) -> Outcome {
    let user = ctx.user("idem");
    ctx.fund(&user, "100").await?;
    let key = format!("key-{}", ctx.run_id);
    let first = ctx.pay(&user, "10", Some(&key)).await?;
    let replay = ctx.pay(&user, "10", Some(&key)).await?;
    if replay.payment_id != first.payment_id {
        return Err(format!(
            "replay created {} besides {}",
            replay.payment_id, first.payment_id
        ));
    }
    match ctx.pay(&user, "11", Some(&key)).await {
        Err(err) if err.contains("422") && err.contains("idempotency_key_reused") => {}
        Err(err) => {
            return Err(format!(
                "reused key with another body: {err}, expected 422 idempotency_key_reused"
            ));
        }
        Ok(other) => {
            return Err(format!(
                "reused key with another body created {}",
                other.payment_id
            ));
        }
    }
    let settled = ctx.settle(&first.payment_id).await?;
    expect(&settled, "COMPLETED", None)?;
    expect_balance(&ctx.balance(&user).await?, "90.00")?;
    Ok(format!(
        "{} once, debited once (90.00); other body → 422",
        first.payment_id
    ))
}

async fn validation(ctx: &Ctx) -> Outcome {
    let user = ctx.user("validation");
    ctx.fund(&user, "100").await?;
    for (amount, currency, why) in [
        ("10.001", "USD", "more decimals than USD has"),
        ("-5", "USD", "negative"),
        ("0", "USD", "zero"),
        ("ten", "USD", "not a number"),
        ("10", "XXX1", "unknown currency"),
        ("10", "JPY", "no JPY wallet"),
    ] {
        let request = NewPayment {
            user_id: user.clone(),
            amount: amount.to_owned(),
            currency: currency.to_owned(),
            ..NewPayment::default()
        };
        match ctx.api.create_payment(&request, None).await {
            Err(CliError::Api { status, .. }) if (400..500).contains(&status) => {}
            Err(err) => return Err(format!("{amount} {currency} ({why}): {err}")),
            Ok(created) => {
                // A payment the saga will fail is acceptable only for a business rule.
                let settled = ctx.settle(&created.payment_id).await?;
                if settled.status != "FAILED" {
                    return Err(format!(
                        "{amount} {currency} ({why}) was accepted: {}",
                        settled.status
                    ));
                }
            }
        }
    }
    let listed = ctx
        .api
        .payments(&user, Some(10), None)
        .await
        .map_err(|err| err.to_string())?;
    let completed = listed["payments"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["status"] != "FAILED")
        .count();
    if completed != 0 {
        return Err(format!("{completed} payment(s) went through for bad input"));
    }
    expect_balance(&ctx.balance(&user).await?, "100.00")?;
    Ok("6 bad inputs refused, nothing debited".into())
}

async fn refunds(ctx: &Ctx) -> Outcome {
    let user = ctx.user("refund");
    ctx.fund(&user, "1000").await?;
    let payment = ctx.pay_and_settle(&user, "100").await?;
    expect(&payment, "COMPLETED", None)?;
    let partial = ctx
        .api
        .refund(&payment.payment_id, Some("30"), Some("e2e partial"), None)
        .await
        .map_err(|err| format!("partial refund: {err}"))?;
    ctx.refund_settled(&payment.payment_id, &partial, "COMPLETED")
        .await?;
    let after_partial = ctx
        .api
        .payment(&payment.payment_id)
        .await
        .map_err(|e| e.to_string())?;
    if after_partial.status != "PARTIALLY_REFUNDED" {
        return Err(format!(
            "after a 30.00 refund ({}) the payment is {}",
            partial["status"], after_partial.status
        ));
    }
    expect_balance(&ctx.balance(&user).await?, "930.00")?;
    let rest = ctx
        .api
        .refund(&payment.payment_id, None, Some("e2e rest"), None)
        .await
        .map_err(|err| format!("full refund: {err}"))?;
    ctx.refund_settled(&payment.payment_id, &rest, "COMPLETED")
        .await?;
    let after_full = ctx
        .api
        .payment(&payment.payment_id)
        .await
        .map_err(|e| e.to_string())?;
    if after_full.status != "REFUNDED" {
        return Err(format!(
            "after refunding the rest the payment is {}",
            after_full.status
        ));
    }
    expect_balance(&ctx.balance(&user).await?, "1000.00")?;
    match ctx
        .api
        .refund(&payment.payment_id, Some("1"), None, None)
        .await
    {
        Err(CliError::Api {
            status: 409 | 422, ..
        }) => {}
        other => {
            return Err(format!(
                "a refund beyond the amount: {other:?}, expected 409/422"
            ));
        }
    }
    Ok(format!(
        "{}: 30.00 then 70.00 refunded, balance 1000.00, a third refund refused",
        payment.payment_id
    ))
}

async fn concurrency(ctx: &Ctx) -> Outcome {
    let user = ctx.user("hot");
    ctx.fund(&user, "500").await?;
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let api = ctx.api.clone();
        let request = NewPayment {
            user_id: user.clone(),
            amount: "100".into(),
            currency: "USD".into(),
            ..NewPayment::default()
        };
        tasks.push(tokio::spawn(async move {
            api.create_payment(&request, None).await
        }));
    }
    let mut ids = Vec::new();
    for task in tasks {
        let created = task
            .await
            .map_err(|err| format!("task: {err}"))?
            .map_err(|err| format!("POST /payments: {err}"))?;
        ids.push(created.payment_id);
    }
    let (mut completed, mut failed) = (0, 0);
    for id in &ids {
        match ctx.settle(id).await?.status.as_str() {
            "COMPLETED" => completed += 1,
            "FAILED" => failed += 1,
            other => return Err(format!("{id} ended {other}")),
        }
    }
    if completed != 5 || failed != 5 {
        return Err(format!(
            "{completed} completed, {failed} failed; expected 5 and 5"
        ));
    }
    expect_balance(&ctx.balance(&user).await?, "0.00")?;
    Ok("5 COMPLETED, 5 FAILED INSUFFICIENT_FUNDS, balance 0.00".into())
}

async fn circuit_breaker(ctx: &Ctx) -> Outcome {
    let user = ctx.user("breaker");
    ctx.fund(&user, "1000").await?;
    ctx.say("gateway → mode `error`: every charge fails with 500");
    ctx.gateway_mode("error").await?;
    let result = breaker_steps(ctx, &user).await;
    // Leave the gateway as the other scenarios expect it, whatever happened.
    let restored = ctx.gateway_mode("normal").await;
    let detail = result?;
    restored?;
    Ok(detail)
}

async fn breaker_steps(ctx: &Ctx, user: &str) -> Outcome {
    let mut opened_after = None;
    for attempt in 1..=10 {
        let payment = ctx.pay_and_settle(user, "10").await?;
        let reason = payment.failure_reason.clone().unwrap_or_default();
        ctx.say(&format!(
            "payment {attempt}: {} {} ({reason})",
            payment.payment_id, payment.status
        ));
        if payment.status != "FAILED" {
            return Err(format!(
                "{} {} while the gateway fails",
                payment.payment_id, payment.status
            ));
        }
        if reason == "CIRCUIT_OPEN" {
            opened_after = Some(attempt);
            break;
        }
    }
    let opened_after = opened_after.ok_or("the breaker never opened in 10 failing payments")?;
    let frozen = ctx.gateway_calls().await?;
    ctx.say(&format!("breaker OPEN; gateway calls so far: {frozen}"));
    for attempt in 1..=3 {
        let started = Instant::now();
        let payment = ctx.pay_and_settle(user, "10").await?;
        expect(&payment, "FAILED", Some("CIRCUIT_OPEN"))?;
        ctx.say(&format!(
            "fail fast {attempt}: {} CIRCUIT_OPEN in {} ms, debit compensated",
            payment.payment_id,
            started.elapsed().as_millis()
        ));
    }
    let after = ctx.gateway_calls().await?;
    if after != frozen {
        return Err(format!(
            "gateway calls grew from {frozen} to {after} while the breaker was open"
        ));
    }
    ctx.say(&format!(
        "gateway calls still {after}: the open breaker sends nothing"
    ));
    expect_balance(&ctx.balance(user).await?, "1000.00")?;
    ctx.say("balance still 1000.00: every failed payment was compensated");
    ctx.gateway_mode("normal").await?;
    ctx.say(&format!(
        "gateway → mode `normal`; waiting {} s (OpenSeconds) for HALF_OPEN",
        ctx.open_seconds
    ));
    // A countdown in place on a terminal; in a log, a line every 10 s.
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stdout());
    for left in (1..=ctx.open_seconds + 1).rev() {
        if terminal {
            print!("\r    {left:>3} s left ");
            use std::io::Write as _;
            let _ = std::io::stdout().flush();
        } else if left % 10 == 0 {
            println!("    {left:>3} s left");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    if terminal {
        print!("\r");
    }
    println!("    HALF_OPEN: sending probes      ");
    let mut recovered = 0;
    for attempt in 1..=3 {
        let payment = ctx.pay_and_settle(user, "10").await?;
        ctx.say(&format!(
            "after the open period {attempt}: {} {}",
            payment.payment_id, payment.status
        ));
        if payment.status == "COMPLETED" {
            recovered += 1;
        }
    }
    if recovered == 0 {
        return Err("the breaker did not let payments through after the open period".into());
    }
    Ok(format!(
        "opened after {opened_after} failing payment(s), failed fast with gateway calls frozen at {after}, \
         recovered ({recovered}/3 completed)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenario_names_are_unique_and_the_default_suite_is_not_empty() {
        let mut names: Vec<_> = SCENARIOS.iter().map(|s| s.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), SCENARIOS.len());
        assert!(SCENARIOS.iter().any(|s| s.in_default_suite));
    }

    #[test]
    fn balances_compare_as_rendered_text() {
        assert!(expect_balance("950.00", "950.00").is_ok());
        assert!(expect_balance("950.0", "950.00").is_err());
    }
}
