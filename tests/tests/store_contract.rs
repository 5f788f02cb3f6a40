//! The store contract suite, run against both backends: the in-memory store
//! and the DynamoDB adapter over an embedded engine with the template's tables.

use saga_tests::backend::{Backend, TestStore};
use saga_tests::contract;

macro_rules! contract_cases {
    ($($case:ident),* $(,)?) => {
        mod memory {
            use super::*;
            $(
                #[tokio::test]
                async fn $case() {
                    let store = TestStore::new(Backend::Memory).await;
                    contract::$case(store.store()).await;
                    store.stop().await;
                }
            )*
        }

        mod dynamo {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let store = TestStore::new(Backend::Dynamo).await;
                    contract::$case(store.store()).await;
                    store.stop().await;
                }
            )*
        }
    };
}

contract_cases!(
    payment_create_is_idempotent,
    payment_transitions_are_validated_recorded_and_idempotent,
    a_wait_token_is_kept_only_while_processing,
    payments_list_newest_first_in_pages,
    a_page_larger_than_one_query_is_listed_whole,
    events_append_is_idempotent,
    wallets_open_empty_and_never_appear_by_themselves,
    movements_move_exact_amounts,
    replaying_each_movement_kind_moves_nothing,
    a_different_movement_under_an_existing_tx_id_conflicts,
    insufficient_funds_moves_nothing,
    money_given_back_must_match_a_debit,
    a_compensation_without_debit_closes_the_debit,
    a_compensation_before_the_wallet_exists_closes_the_debit,
    a_debit_then_its_compensation_is_given_back_once,
    a_compensation_racing_its_debit_never_leaves_the_debit,
    movements_in_another_currency_never_touch_the_wallet,
    amounts_round_trip_exactly,
    refunds_are_idempotent_and_versioned,
    refund_reservation_is_atomic_and_idempotent,
    refund_reservation_refuses_what_cannot_be_refunded,
    concurrent_refunds_never_over_refund,
    the_open_index_lists_what_is_not_settled,
    a_refused_refund_gives_its_reservation_back_atomically,
    idempotency_keys_are_claimed_once,
    breaker_state_is_written_with_optimistic_versions,
);

/// 100 concurrent debits of 10 on a wallet holding 500, on each backend. The
/// counts are printed so that a run shows how many version races were retried.
mod concurrency {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn memory_hundred_concurrent_debits_exactly_fifty_succeed() {
        let store = TestStore::new(Backend::Memory).await;
        let report = contract::concurrent_debits_never_overdraw(store.store()).await;
        println!("memory: {report:?}");
        store.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dynamo_hundred_concurrent_debits_exactly_fifty_succeed() {
        let store = TestStore::new(Backend::Dynamo).await;
        let report = contract::concurrent_debits_never_overdraw(store.store()).await;
        println!("dynamo: {report:?}");
        store.stop().await;
    }
}
