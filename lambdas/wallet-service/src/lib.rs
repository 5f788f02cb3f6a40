//! `wallet-service`: the saga's wallet movements. A debit takes the payment's
//! amount exactly once; a compensation gives that debit back exactly once. A
//! compensation of a payment that was never debited moves nothing and closes
//! the payment's debit in the store, so a debit arriving later (a timed-out
//! attempt still running, a duplicate execution) is refused with
//! `PaymentCompensated` instead of taking money nothing would give back.
//! Retried deliveries find their own ledger entry and move nothing
//! (`shared::ports::WalletRepo::apply`).

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
/// payment never took money and there is nothing to give back: the store has
/// closed its debit before answering, so none can follow and this read is
/// final. A debit of a different amount is a broken invariant and stays an
/// error.
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
    if let WalletError::PaymentCompensated { tx_id } = err {
        // A late debit (a timed-out attempt, a duplicate execution) that
        // would otherwise have taken money after its payment failed.
        warn!(errorType = %error_type, txId = %tx_id, "debit refused: payment already compensated");
    } else if error_type.is_retryable() {
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
        // AND a debit delivered again afterwards is a replay, not a refusal:
        // only a compensation that found no debit closes the debit
        let replay = handle(&deps, event(debit_json(payment_id, "40.00")))
            .await
            .unwrap();
        assert!(replay.replayed);
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

    fn compensate_json(payment_id: PaymentId, amount: &str) -> serde_json::Value {
        let mut compensate = debit_json(payment_id, amount);
        compensate["action"] = json!("COMPENSATE");
        compensate
    }

    fn usd_key() -> WalletKey {
        WalletKey::new(user(), Currency::parse("USD").unwrap())
    }

    #[tokio::test]
    async fn a_debit_after_nothing_was_compensated_is_refused_for_good() {
        // GIVEN a wallet of 100 and a payment compensated before any debit
        let (deps, store) = deps_with_balance("100").await;
        let payment_id = PaymentId::generate();
        let first = handle(&deps, event(compensate_json(payment_id, "40.00")))
            .await
            .unwrap();
        assert_eq!(first, WalletReply::nothing_to_compensate());
        // WHEN the late debit of that payment arrives (twice, as a retry would)
        for _ in 0..2 {
            let err = handle(&deps, event(debit_json(payment_id, "40.00")))
                .await
                .unwrap_err();
            // THEN it is refused with its own final name, and nothing is taken
            assert_eq!(err.error_type, ErrorType::PaymentCompensated);
            assert!(!err.error_type.is_retryable());
            let diagnostic = lambda_runtime::Diagnostic::from(err);
            assert_eq!(diagnostic.error_type, "PaymentCompensated");
        }
        assert_eq!(
            store.get(&usd_key()).await.unwrap().unwrap().balance,
            usd("100")
        );
        let debit_tx_id = format!("{payment_id}#DEBIT");
        assert!(
            store
                .entry(&usd_key(), &debit_tx_id)
                .await
                .unwrap()
                .is_none()
        );
        // AND compensating again still answers nothing to compensate
        let again = handle(&deps, event(compensate_json(payment_id, "40.00")))
            .await
            .unwrap();
        assert_eq!(
            serde_json::to_value(&again).unwrap(),
            json!({"moved": false, "replayed": false})
        );
        // AND other payments are debited as usual
        let other = handle(&deps, event(debit_json(PaymentId::generate(), "40.00")))
            .await
            .unwrap();
        assert_eq!(other.balance_after, Some(usd("60")));
    }

    #[tokio::test]
    async fn a_compensation_before_the_wallet_exists_still_closes_the_debit() {
        // GIVEN no wallet yet: the compensation has nothing to give back
        let store = Arc::new(InMemoryStore::new());
        let deps = Deps {
            wallets: store.clone(),
        };
        let payment_id = PaymentId::generate();
        let reply = handle(&deps, event(compensate_json(payment_id, "5.00")))
            .await
            .unwrap();
        assert_eq!(reply, WalletReply::nothing_to_compensate());
        // WHEN the wallet is opened and funded, and then the late debit arrives
        store
            .open(&user(), Currency::parse("USD").unwrap(), Timestamp::now())
            .await
            .unwrap();
        let top_up = Movement::top_up(user(), TopUpId::generate(), usd("50"));
        store.apply(&top_up, Timestamp::now()).await.unwrap();
        let err = handle(&deps, event(debit_json(payment_id, "5.00")))
            .await
            .unwrap_err();
        // THEN the debit is refused and the money stays
        assert_eq!(err.error_type, ErrorType::PaymentCompensated);
        assert_eq!(
            store.get(&usd_key()).await.unwrap().unwrap().balance,
            usd("50")
        );
    }

    #[tokio::test]
    async fn a_failed_closure_is_retryable_and_leaves_the_debit_open() {
        // GIVEN a store whose next write fails
        let (deps, store) = deps_with_balance("100").await;
        let payment_id = PaymentId::generate();
        store.fail_next_write(RepoError::Throttled("slow down".into()));
        // WHEN a compensation of a never-debited payment tries to close its debit
        let err = handle(&deps, event(compensate_json(payment_id, "40.00")))
            .await
            .unwrap_err();
        // THEN it is retried rather than answered: nothing was closed, so a
        // "nothing to compensate" now would leave a late debit unrefused
        assert_eq!(err.error_type, ErrorType::Retryable);
        let retried = handle(&deps, event(compensate_json(payment_id, "40.00")))
            .await
            .unwrap();
        assert_eq!(retried, WalletReply::nothing_to_compensate());
        let err = handle(&deps, event(debit_json(payment_id, "40.00")))
            .await
            .unwrap_err();
        assert_eq!(err.error_type, ErrorType::PaymentCompensated);
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
