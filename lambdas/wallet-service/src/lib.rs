//! `wallet-service`: the saga's wallet movements. A debit takes the payment's
//! amount exactly once; a compensation gives that debit back exactly once, and
//! is a no-op for a payment that was never debited. Retried deliveries find
//! their own ledger entry and move nothing (`shared::ports::WalletRepo::apply`).

use std::sync::Arc;

use lambda_runtime::LambdaEvent;
use shared::domain::{Movement, Timestamp, WalletKey};
use shared::events::{WalletCommand, WalletReply};
use shared::ports::WalletRepo;
use shared::{TaskError, WalletError};
use tracing::{Instrument, info, warn};

pub const FUNCTION_NAME: &str = "wallet-service";

pub struct Deps {
    pub wallets: Arc<dyn WalletRepo>,
}

pub async fn handle(
    deps: &Deps,
    event: LambdaEvent<WalletCommand>,
) -> Result<WalletReply, TaskError> {
    let span = shared::invocation_span!(FUNCTION_NAME, event.context, event.payload.payment_id());
    execute(deps.wallets.as_ref(), event.payload)
        .instrument(span)
        .await
}

pub async fn execute(
    wallets: &dyn WalletRepo,
    command: WalletCommand,
) -> Result<WalletReply, TaskError> {
    match command {
        WalletCommand::Debit {
            payment_id,
            user_id,
            amount,
        } => {
            let movement = Movement::debit(user_id, payment_id, amount);
            let receipt = wallets
                .apply(&movement, Timestamp::now())
                .await
                .inspect_err(log_refusal)?;
            info!(txId = %receipt.entry.tx_id, amount = %amount, balanceAfter = %receipt.entry.balance_after,
                replayed = receipt.replayed, "wallet debited");
            Ok(WalletReply::moved(&receipt))
        }
        WalletCommand::Compensate {
            payment_id,
            user_id,
            amount,
        } => {
            let movement = Movement::compensation(user_id, payment_id, amount);
            match wallets.apply(&movement, Timestamp::now()).await {
                Ok(receipt) => {
                    info!(txId = %receipt.entry.tx_id, amount = %amount,
                        balanceAfter = %receipt.entry.balance_after, replayed = receipt.replayed,
                        "debit compensated");
                    Ok(WalletReply::moved(&receipt))
                }
                Err(err @ (WalletError::DebitNotFound { .. } | WalletError::WalletNotFound(_))) => {
                    never_debited(wallets, &movement, err).await
                }
                Err(err) => {
                    log_refusal(&err);
                    Err(err.into())
                }
            }
        }
    }
}

/// A compensation found no matching debit. If there is no debit at all the
/// payment never took money and there is nothing to give back; a debit of a
/// different amount is a broken invariant and stays an error.
async fn never_debited(
    wallets: &dyn WalletRepo,
    movement: &Movement,
    err: WalletError,
) -> Result<WalletReply, TaskError> {
    let debit_tx_id = movement.debit_tx_id().unwrap_or_default();
    let key: WalletKey = movement.wallet_key();
    match wallets.entry(&key, &debit_tx_id).await? {
        None => {
            info!(txId = %debit_tx_id, "nothing to compensate: the payment was never debited");
            Ok(WalletReply::nothing_to_compensate())
        }
        Some(debit) => {
            warn!(txId = %debit_tx_id, debited = %debit.amount, requested = %movement.amount,
                "compensation does not match its debit");
            Err(err.into())
        }
    }
}

fn log_refusal(err: &WalletError) {
    let error_type = err.error_type();
    if error_type.is_retryable() {
        warn!(errorType = %error_type, error = %err, "wallet movement not applied, retryable");
    } else {
        info!(errorType = %error_type, error = %err, "wallet movement refused");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use lambda_runtime::Context;
    use serde_json::json;
    use shared::ErrorType;
    use shared::RepoError;
    use shared::domain::{Currency, Money, PaymentId, TopUpId, UserId};
    use shared::memory::InMemoryStore;

    use super::*;

    fn user() -> UserId {
        UserId::parse("user_1").unwrap()
    }

    fn usd(text: &str) -> Money {
        Money::parse(text, "USD").unwrap()
    }

    async fn deps_with_balance(balance: &str) -> (Deps, Arc<InMemoryStore>) {
        let store = Arc::new(InMemoryStore::new());
        store
            .open(&user(), Currency::parse("USD").unwrap(), Timestamp::now())
            .await
            .unwrap();
        let top_up = Movement::top_up(user(), TopUpId::generate(), usd(balance));
        store.apply(&top_up, Timestamp::now()).await.unwrap();
        (
            Deps {
                wallets: store.clone(),
            },
            store,
        )
    }

    fn event(value: serde_json::Value) -> LambdaEvent<WalletCommand> {
        LambdaEvent::new(serde_json::from_value(value).unwrap(), Context::default())
    }

    fn debit_json(payment_id: PaymentId, amount: &str) -> serde_json::Value {
        json!({"action": "DEBIT", "paymentId": payment_id.to_string(), "userId": "user_1",
               "amount": {"amount": amount, "currency": "USD"}})
    }

    #[tokio::test]
    async fn debit_then_replay_moves_money_once() {
        // GIVEN a wallet of 100
        let (deps, _) = deps_with_balance("100").await;
        let payment_id = PaymentId::generate();
        // WHEN the same debit is delivered twice
        let first = handle(&deps, event(debit_json(payment_id, "50.00")))
            .await
            .unwrap();
        let second = handle(&deps, event(debit_json(payment_id, "50.00")))
            .await
            .unwrap();
        // THEN the balance dropped once and the output is the golden payload
        assert_eq!(
            serde_json::to_value(&first).unwrap(),
            json!({"moved": true, "replayed": false, "txId": format!("{payment_id}#DEBIT"),
                   "balanceAfter": {"amount": "50.00", "currency": "USD"}})
        );
        assert!(second.replayed);
        assert_eq!(second.balance_after, first.balance_after);
    }

    #[tokio::test]
    async fn insufficient_funds_leaves_with_its_name() {
        let (deps, _) = deps_with_balance("10").await;
        let err = handle(&deps, event(debit_json(PaymentId::generate(), "10.01")))
            .await
            .unwrap_err();
        assert_eq!(err.error_type, ErrorType::InsufficientFunds);
        let diagnostic = lambda_runtime::Diagnostic::from(err);
        assert_eq!(diagnostic.error_type, "InsufficientFunds");
    }

    #[tokio::test]
    async fn missing_wallet_and_store_failures_have_their_names() {
        let deps = Deps {
            wallets: Arc::new(InMemoryStore::new()),
        };
        let err = handle(&deps, event(debit_json(PaymentId::generate(), "1.00")))
            .await
            .unwrap_err();
        assert_eq!(err.error_type, ErrorType::WalletNotFound);
        let (deps, store) = deps_with_balance("10").await;
        store.fail_next_write(RepoError::Throttled("slow down".into()));
        let err = handle(&deps, event(debit_json(PaymentId::generate(), "1.00")))
            .await
            .unwrap_err();
        assert_eq!(err.error_type, ErrorType::Retryable);
    }

    #[tokio::test]
    async fn compensation_gives_the_debit_back_exactly_once() {
        let (deps, store) = deps_with_balance("100").await;
        let payment_id = PaymentId::generate();
        handle(&deps, event(debit_json(payment_id, "40.00")))
            .await
            .unwrap();
        let mut compensate = debit_json(payment_id, "40.00");
        compensate["action"] = json!("COMPENSATE");
        let first = handle(&deps, event(compensate.clone())).await.unwrap();
        let again = handle(&deps, event(compensate)).await.unwrap();
        assert!(first.moved && !first.replayed);
        assert!(again.replayed);
        let key = WalletKey::new(user(), Currency::parse("USD").unwrap());
        assert_eq!(store.get(&key).await.unwrap().unwrap().balance, usd("100"));
    }

    #[tokio::test]
    async fn compensating_a_payment_never_debited_moves_nothing() {
        let (deps, _) = deps_with_balance("100").await;
        let mut compensate = debit_json(PaymentId::generate(), "40.00");
        compensate["action"] = json!("COMPENSATE");
        let reply = handle(&deps, event(compensate)).await.unwrap();
        assert_eq!(
            serde_json::to_value(&reply).unwrap(),
            json!({"moved": false, "replayed": false})
        );
    }

    #[tokio::test]
    async fn compensation_of_another_amount_is_refused() {
        let (deps, _) = deps_with_balance("100").await;
        let payment_id = PaymentId::generate();
        handle(&deps, event(debit_json(payment_id, "40.00")))
            .await
            .unwrap();
        let mut compensate = debit_json(payment_id, "41.00");
        compensate["action"] = json!("COMPENSATE");
        let err = handle(&deps, event(compensate)).await.unwrap_err();
        assert_eq!(err.error_type, ErrorType::DebitNotFound);
    }
}
