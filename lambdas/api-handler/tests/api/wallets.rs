//! `GET /wallets/{userId}` and `POST /wallets/{userId}/credit`.

use serde_json::json;

use crate::common::{Harness, Req, golden};

fn credit(user: &str, body: serde_json::Value) -> Req {
    Req::post(format!("/wallets/{user}/credit"), body)
}

#[tokio::test]
async fn a_credit_opens_the_wallet_and_get_shows_the_balance() {
    // GIVEN a user without a wallet
    let h = Harness::new();
    let none = h.send(Req::get("/wallets/user_9")).await;
    assert_eq!((none.status, none.code()), (404, "wallet_not_found"));
    // WHEN an operator credits 950 USD
    let reply = h
        .send(credit(
            "user_9",
            json!({"amount": 950, "currency": "USD", "reference": "TICKET-1"}),
        ))
        .await;
    // THEN 200 with the ledger entry's ids and the new balance
    assert_eq!(reply.status, 200, "{}", reply.body);
    let top_up_id = reply.text("topUpId");
    assert_eq!(
        golden(
            &reply.body,
            &["transactionId", "ledgerTxId", "topUpId", "createdAt"]
        ),
        json!({"userId": "user_9", "currency": "USD", "amount": "950.00", "balance": "950.00",
               "transactionId": "<transactionId>", "ledgerTxId": "<ledgerTxId>",
               "topUpId": "<topUpId>", "reference": "TICKET-1", "createdAt": "<createdAt>"})
    );
    assert!(top_up_id.starts_with("top_"));
    assert!(reply.text("transactionId").starts_with("txn_"));
    assert_eq!(reply.text("ledgerTxId"), format!("{top_up_id}#TOPUP"));
    // AND the wallet shows it
    let wallet = h.send(Req::get("/wallets/user_9")).await;
    assert_eq!(wallet.status, 200);
    assert_eq!(
        golden(&wallet.body["wallets"][0], &["updatedAt"]),
        json!({"currency": "USD", "balance": "950.00", "version": 1, "updatedAt": "<updatedAt>"})
    );
    assert_eq!(wallet.body["userId"], "user_9");
}

#[tokio::test]
async fn an_operator_retry_with_the_key_never_credits_twice() {
    let h = Harness::new();
    let body = json!({"amount": "100.00", "currency": "EUR"});
    let first = h.send(credit("u1", body.clone()).key("topup-77")).await;
    let again = h
        .send(credit("u1", json!({"currency": "EUR", "amount": 100})).key("topup-77"))
        .await;
    assert_eq!(again.body, first.body);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    // Without a key, each request is a new top-up.
    h.send(credit("u1", body)).await;
    let wallet = h.send(Req::get("/wallets/u1")).await;
    assert_eq!(wallet.body["wallets"][0]["balance"], "200.00");
    // The same key on another user's wallet is another operation.
    let other = h
        .send(credit("u2", json!({"amount": 1, "currency": "EUR"})).key("topup-77"))
        .await;
    assert_eq!(other.status, 200);
}

#[tokio::test]
async fn wallets_are_listed_per_currency() {
    let h = Harness::new();
    for (amount, currency) in [
        (json!(5), "USD"),
        (json!(700), "JPY"),
        (json!("1.5"), "EUR"),
    ] {
        let reply = h
            .send(credit(
                "u1",
                json!({"amount": amount, "currency": currency}),
            ))
            .await;
        assert_eq!(reply.status, 200);
    }
    let wallet = h.send(Req::get("/wallets/u1")).await;
    let balances: Vec<_> = wallet.body["wallets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| (w["currency"].clone(), w["balance"].clone()))
        .collect();
    assert_eq!(
        balances,
        vec![
            (json!("EUR"), json!("1.50")),
            (json!("JPY"), json!("700")),
            (json!("USD"), json!("5.00")),
        ]
    );
}

#[tokio::test]
async fn credits_are_validated_like_payments() {
    let h = Harness::new();
    let long_user = "x".repeat(65);
    let cases = [
        (
            credit("u1", json!({"amount": 1.5, "currency": "JPY"})),
            "amount_too_precise",
            Some("amount"),
        ),
        (
            credit("u1", json!({"amount": 5})),
            "missing_field",
            Some("currency"),
        ),
        (
            credit("u1", json!({"amount": 0, "currency": "USD"})),
            "invalid_amount",
            Some("amount"),
        ),
        (
            credit("u1", json!({"amount": 2000000, "currency": "USD"})),
            "amount_too_large",
            Some("amount"),
        ),
        (
            credit("u1", json!({"amount": 5, "currency": "USD", "note": "x"})),
            "unknown_field",
            Some("note"),
        ),
        (
            credit(
                "u1",
                json!({"amount": 5, "currency": "USD", "reference": ""}),
            ),
            "invalid_field",
            Some("reference"),
        ),
        (
            credit(&long_user, json!({"amount": 5, "currency": "USD"})),
            "invalid_user_id",
            Some("userId"),
        ),
        (
            Req::get(format!("/wallets/{long_user}")),
            "invalid_user_id",
            Some("userId"),
        ),
    ];
    for (req, code, param) in cases {
        let reply = h.send(req).await;
        assert_eq!((reply.status, reply.code()), (400, code), "{}", reply.body);
        assert_eq!(reply.param(), param);
    }
}
