//! Property: no sequence of movements — top-ups, debits, compensations,
//! refunds, replays, in any order, valid or not — makes a balance negative,
//! and after every step the balance equals the sum of the ledger entries.
//! Refused movements move nothing. Once a compensation found no debit for a
//! payment, no debit of that payment is ever taken (`PaymentCompensated`).
//! Run against both backends.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;
use std::sync::Arc;

use proptest::prelude::*;
use saga_tests::backend::{Backend, Store, TestStore};
use saga_tests::contract::{assert_balance_matches_ledger, funded_wallet, usd, user};
use shared::ErrorType;
use shared::domain::{
    Money, Movement, MovementKind, PaymentId, RefundId, Timestamp, TopUpId, UserId,
};
use shared::ports::WalletRepo;

#[derive(Debug, Clone)]
enum Op {
    TopUp(u32),
    Debit {
        payment: usize,
        cents: u32,
    },
    Compensate {
        payment: usize,
        cents: u32,
    },
    Refund {
        payment: usize,
        cents: u32,
    },
    /// Deliver the movement of an earlier step again.
    Replay(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (1u32..5_000).prop_map(Op::TopUp),
        (0usize..4, 1u32..8_000).prop_map(|(payment, cents)| Op::Debit { payment, cents }),
        (0usize..4, 1u32..8_000).prop_map(|(payment, cents)| Op::Compensate { payment, cents }),
        (0usize..4, 1u32..8_000).prop_map(|(payment, cents)| Op::Refund { payment, cents }),
        (0usize..32).prop_map(Op::Replay),
    ]
}

fn cents(amount: u32) -> Money {
    Money::parse(&format!("{}.{:02}", amount / 100, amount % 100), "USD").unwrap()
}

fn movement(
    op: &Op,
    owner: &UserId,
    payments: &[PaymentId],
    done: &[Movement],
) -> Option<Movement> {
    let owner = owner.clone();
    Some(match op {
        Op::TopUp(amount) => Movement::top_up(owner, TopUpId::generate(), cents(*amount)),
        Op::Debit { payment, cents: c } => Movement::debit(owner, payments[*payment], cents(*c)),
        Op::Compensate { payment, cents: c } => {
            Movement::compensation(owner, payments[*payment], cents(*c))
        }
        Op::Refund { payment, cents: c } => {
            Movement::refund(owner, RefundId::generate(), payments[*payment], cents(*c))
        }
        Op::Replay(index) => return done.get(*index).cloned(),
    })
}

/// What the sequence so far says about each payment's debit.
#[derive(Default)]
struct Debits {
    /// A debit of the payment was taken.
    taken: HashSet<PaymentId>,
    /// A compensation found no debit of the payment: its debit is closed.
    closed: HashSet<PaymentId>,
}

impl Debits {
    /// Checks `outcome` of `movement` against the model, then records it.
    fn observe(&mut self, movement: &Movement, outcome: Result<(), ErrorType>) {
        let Some(payment_id) = movement.reference.payment_id() else {
            return;
        };
        match (movement.kind(), outcome) {
            (MovementKind::Debit, Ok(_)) => {
                assert!(
                    !self.closed.contains(&payment_id),
                    "a debit of a closed payment was taken: {movement:?}"
                );
                self.taken.insert(payment_id);
            }
            (MovementKind::Debit, Err(error_type)) => {
                let closed = self.closed.contains(&payment_id);
                let refused_as_closed = error_type == ErrorType::PaymentCompensated;
                assert_eq!(closed, refused_as_closed, "{movement:?}: {error_type}");
            }
            (MovementKind::Compensation, Err(ErrorType::DebitNotFound))
                if !self.taken.contains(&payment_id) =>
            {
                self.closed.insert(payment_id);
            }
            (MovementKind::Compensation | MovementKind::Refund | MovementKind::TopUp, _) => {}
        }
        assert!(
            !(self.taken.contains(&payment_id) && self.closed.contains(&payment_id)),
            "payment {payment_id} both debited and closed"
        );
    }
}

async fn run(store: Arc<dyn Store>, ops: Vec<Op>) {
    let owner = user("prop_user");
    let key = funded_wallet(&*store, &owner, usd("10")).await;
    let payments: Vec<PaymentId> = (0..4).map(|_| PaymentId::generate()).collect();
    let mut done = Vec::new();
    let mut debits = Debits::default();
    for op in &ops {
        let Some(movement) = movement(op, &owner, &payments, &done) else {
            continue;
        };
        let before = WalletRepo::get(&*store, &key)
            .await
            .unwrap()
            .unwrap()
            .balance;
        let outcome = store.apply(&movement, Timestamp::now()).await;
        debits.observe(
            &movement,
            outcome.as_ref().map(|_| ()).map_err(|err| err.error_type()),
        );
        match outcome {
            Ok(receipt) if receipt.replayed => {
                let after = WalletRepo::get(&*store, &key)
                    .await
                    .unwrap()
                    .unwrap()
                    .balance;
                assert_eq!(after, before, "a replay moved money: {op:?}");
            }
            Ok(_) => {}
            Err(err) => {
                assert!(
                    !err.error_type().is_retryable(),
                    "no concurrency here: {err:?}"
                );
                let after = WalletRepo::get(&*store, &key)
                    .await
                    .unwrap()
                    .unwrap()
                    .balance;
                assert_eq!(
                    after, before,
                    "a refused movement moved money: {op:?} {err:?}"
                );
            }
        }
        assert_balance_matches_ledger(&*store, &key).await;
        done.push(movement);
    }
}

fn check(backend: Backend, ops: Vec<Op>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = TestStore::new(backend).await;
        run(store.store(), ops).await;
        store.stop().await;
    });
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]
    #[test]
    fn memory_movements_keep_balance_non_negative_and_equal_to_ledger(
        ops in proptest::collection::vec(op(), 1..40)
    ) {
        check(Backend::Memory, ops);
    }
}

proptest! {
    // Each case starts its own embedded DynamoDB: fewer, shorter sequences.
    #![proptest_config(ProptestConfig::with_cases(16))]
    #[test]
    fn dynamo_movements_keep_balance_non_negative_and_equal_to_ledger(
        ops in proptest::collection::vec(op(), 1..25)
    ) {
        check(Backend::Dynamo, ops);
    }
}
