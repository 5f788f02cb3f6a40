//! Who may move whose money (OWASP API1, broken object-level authorization),
//! at the handler: every route and method against every kind of caller. The
//! authorizer in front (lambdas/authorizer) verifies credentials; these tests
//! check what the handler allows each authenticated principal — and that it
//! refuses a request that reached it with none.

use serde_json::json;
use shared::domain::{PaymentId, UserId};
use shared::ports::PaymentRepo;

use api_handler::router::{self, Route};

use crate::common::{Harness, OPERATOR_ARN, Req};

const ALL_SCOPES: &str = "payments:write payments:read refunds:write wallets:read";

fn pay(user: &str, amount: &str) -> Req {
    Req::post(
        "/payments",
        json!({"userId": user, "amount": amount, "currency": "USD"}),
    )
}

fn refund(payment_id: &PaymentId) -> Req {
    Req::post(
        format!("/payments/{payment_id}/refunds"),
        json!({"amount": "1.00"}),
    )
}

fn credit(user: &str) -> Req {
    Req::post(
        format!("/wallets/{user}/credit"),
        json!({"amount": "100", "currency": "USD"}),
    )
}

/// A request for each operation a client route serves, for `user`'s objects.
fn client_requests(user: &str, payment_id: &PaymentId) -> Vec<Req> {
    vec![
        pay(user, "1.00"),
        Req::get("/payments").query("userId", user),
        Req::get(format!("/payments/{payment_id}")),
        refund(payment_id),
        Req::get(format!("/wallets/{user}")),
    ]
}

/// Every routed operation is classified here (the match is exhaustive: a new
/// route does not compile until someone decides who may call it), and each
/// class is checked: anonymous requests reach only the open routes.
#[tokio::test]
async fn every_route_and_method_is_open_client_or_operator_only() {
    let h = Harness::new();
    for resource in router::RESOURCES {
        let path = resource
            .template
            .replace("{paymentId}", "pay_01JC0000000000000000000000")
            .replace("{userId}", "u");
        for method in resource.methods {
            let router::Matched::Route { route, .. } = router::match_route(method, &path) else {
                panic!("{method} {path} does not route");
            };
            let open = match route {
                Route::Health | Route::GatewayWebhook => true,
                Route::CreatePayment
                | Route::ListPayments
                | Route::GetPayment { .. }
                | Route::CreateRefund { .. }
                | Route::GetWallet { .. }
                | Route::CreditWallet { .. } => false,
            };
            let reply = h.send(Req::new(method, path.clone()).anonymous()).await;
            // (The webhook has its own authentication: its signature.)
            let unauthenticated = reply.status == 401 && reply.code() == "unauthenticated";
            assert_eq!(unauthenticated, !open, "{method} {path}: {}", reply.body);
        }
    }
}

#[tokio::test]
async fn without_a_principal_every_client_route_is_401_and_nothing_moves() {
    let h = Harness::new();
    seed(&h, "alice").await;
    let payment_id = h.completed_payment("alice", "10.00").await;
    let starts = h.saga.start_count();
    let before = balance(&h, "alice").await;
    for req in client_requests("alice", &payment_id) {
        let label = format!("{} {}", req.method, req.path);
        let reply = h.send(req.anonymous()).await;
        assert_eq!(reply.status, 401, "{label}: {}", reply.body);
        assert_eq!(reply.code(), "unauthenticated", "{label}");
    }
    let reply = h.send(credit("alice").anonymous()).await;
    assert_eq!(reply.status, 401, "{}", reply.body);
    assert_eq!(h.saga.start_count(), starts, "no saga started");
    assert_eq!(h.refunder.call_count(), 0, "no refund reserved");
    assert_eq!(
        balance(&h, "alice").await,
        before,
        "alice's balance unchanged"
    );
    // The open routes stay open.
    assert_eq!(h.send(Req::get("/health").anonymous()).await.status, 200);
}

#[tokio::test]
async fn a_user_pays_and_reads_only_their_own() {
    let h = Harness::new();
    seed(&h, "alice").await;
    seed(&h, "bob").await;
    let bobs = h.completed_payment("bob", "10.00").await;

    // alice's own: pay, read, list, wallet, refund.
    let created = h.send(pay("alice", "5.00").by_user("alice")).await;
    assert_eq!(created.status, 202, "{}", created.body);
    let alices = PaymentId::parse(&created.text("paymentId")).unwrap();
    let own = h
        .send(Req::get(format!("/payments/{alices}")).by_user("alice"))
        .await;
    assert_eq!(own.status, 200, "{}", own.body);
    let listed = h
        .send(
            Req::get("/payments")
                .query("userId", "alice")
                .by_user("alice"),
        )
        .await;
    assert_eq!(listed.status, 200);
    assert_eq!(listed.body["data"].as_array().unwrap().len(), 1);
    let wallet = h.send(Req::get("/wallets/alice").by_user("alice")).await;
    assert_eq!(wallet.status, 200);

    // bob's payment is not found, exactly like one that does not exist.
    let theirs = h
        .send(Req::get(format!("/payments/{bobs}")).by_user("alice"))
        .await;
    assert_eq!(theirs.status, 404);
    assert_eq!(theirs.code(), "payment_not_found");
    let missing = PaymentId::parse("pay_01JC0000000000000000000000").unwrap();
    let absent = h
        .send(Req::get(format!("/payments/{missing}")).by_user("alice"))
        .await;
    assert_eq!(absent.status, 404);
    assert_eq!(
        theirs.body["error"]["message"]
            .as_str()
            .unwrap()
            .replace(&bobs.to_string(), "ID"),
        absent.body["error"]["message"]
            .as_str()
            .unwrap()
            .replace(&missing.to_string(), "ID")
    );

    // bob's wallet: not found; bob's list: forbidden (alice named bob).
    let wallet = h.send(Req::get("/wallets/bob").by_user("alice")).await;
    assert_eq!((wallet.status, wallet.code()), (404, "wallet_not_found"));
    let list = h
        .send(
            Req::get("/payments")
                .query("userId", "bob")
                .by_user("alice"),
        )
        .await;
    assert_eq!((list.status, list.code()), (403, "forbidden"));
    assert_eq!(list.param(), Some("userId"));
}

#[tokio::test]
async fn a_user_cannot_pay_from_or_refund_another_users_wallet() {
    let h = Harness::new();
    seed(&h, "alice").await;
    seed(&h, "bob").await;
    let bobs = h.completed_payment("bob", "10.00").await;
    let starts = h.saga.start_count();
    let bobs_balance = balance(&h, "bob").await;

    let reply = h.send(pay("bob", "50.00").by_user("alice").key("k1")).await;
    assert_eq!(
        (reply.status, reply.code()),
        (403, "forbidden"),
        "{}",
        reply.body
    );
    assert_eq!(reply.param(), Some("userId"));
    let reply = h.send(refund(&bobs).by_user("alice").key("k2")).await;
    assert_eq!((reply.status, reply.code()), (404, "payment_not_found"));

    assert_eq!(
        h.saga.start_count(),
        starts,
        "no payment saga, no refund saga"
    );
    assert_eq!(h.refunder.call_count(), 0, "nothing reserved");
    let bob = UserId::parse("bob").unwrap();
    let page = PaymentRepo::list_by_user(h.store.as_ref(), &bob, 10, None)
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1, "only bob's own payment");
    assert_eq!(
        balance(&h, "bob").await,
        bobs_balance,
        "bob's balance unchanged"
    );
    // bob himself still refunds his payment.
    let reply = h.send(refund(&bobs).by_user("bob")).await;
    assert_eq!(reply.status, 202, "{}", reply.body);
}

#[tokio::test]
async fn a_service_client_needs_each_operations_scope() {
    let h = Harness::new();
    seed(&h, "carol").await;
    let payment_id = h.completed_payment("carol", "10.00").await;
    let scope_of = |req: &Req| match (req.method, req.path.as_str()) {
        ("POST", "/payments") => "payments:write",
        ("POST", _) => "refunds:write",
        ("GET", path) if path.starts_with("/wallets/") => "wallets:read",
        _ => "payments:read",
    };
    for req in client_requests("carol", &payment_id) {
        let needed = scope_of(&req);
        let label = format!("{} {}", req.method, req.path);
        // Every scope but the one needed: refused, nothing done.
        let others: Vec<&str> = ALL_SCOPES.split(' ').filter(|s| *s != needed).collect();
        let refused = h.send(req.clone().by_client("m2", &others.join(" "))).await;
        assert_eq!(refused.status, 403, "{label}: {}", refused.body);
        assert_eq!(refused.code(), "missing_scope", "{label}");
        // The one needed scope alone is enough (for any user's objects).
        let allowed = h.send(req.by_client("m3", needed)).await;
        assert!(
            allowed.status < 300,
            "{label}: {} {}",
            allowed.status,
            allowed.body
        );
    }
}

#[tokio::test]
async fn only_an_operator_tops_up_and_only_on_operator_api() {
    let h = Harness::new();
    for req in [
        credit("alice").by_user("alice"),
        credit("alice").by_client("m1", ALL_SCOPES),
    ] {
        let reply = h.send_to_operator_api(req).await;
        assert_eq!(
            (reply.status, reply.code()),
            (403, "forbidden"),
            "{}",
            reply.body
        );
    }
    // api-handler does not serve top-ups at all, whoever asks.
    let reply = h
        .send_to_api_handler(credit("alice").by_operator(OPERATOR_ARN))
        .await;
    assert_eq!((reply.status, reply.code()), (404, "route_not_found"));
    // operator-api serves nothing else.
    let reply = h
        .send_to_operator_api(Req::get("/wallets/alice").by_operator(OPERATOR_ARN))
        .await;
    assert_eq!(reply.status, 404);
    // IAM credentials open no client route.
    let reply = h
        .send(Req::get("/wallets/alice").by_operator(OPERATOR_ARN))
        .await;
    assert_eq!((reply.status, reply.code()), (403, "forbidden"));
    assert_eq!(balance(&h, "alice").await, "", "no wallet was opened");
    let reply = h.send(credit("alice").by_operator(OPERATOR_ARN)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(balance(&h, "alice").await, "100.00");
}

#[tokio::test]
async fn idempotency_keys_are_scoped_per_principal() {
    let h = Harness::new();
    seed(&h, "alice").await;
    seed(&h, "bob").await;
    // Same key, different callers and bodies: two payments, no key reuse error.
    let a = h
        .send(pay("alice", "5.00").by_user("alice").key("same"))
        .await;
    let b = h.send(pay("bob", "7.00").by_user("bob").key("same")).await;
    let c = h
        .send(pay("bob", "9.00").by_client("m1", ALL_SCOPES).key("same"))
        .await;
    for reply in [&a, &b, &c] {
        assert_eq!(reply.status, 202, "{}", reply.body);
        assert!(reply.header("idempotent-replayed").is_none());
    }
    let ids: std::collections::BTreeSet<String> =
        [&a, &b, &c].iter().map(|r| r.text("paymentId")).collect();
    assert_eq!(ids.len(), 3, "three payments");
    // The same caller's retry is a replay of its own answer only.
    let again = h.send(pay("bob", "7.00").by_user("bob").key("same")).await;
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.text("paymentId"), b.text("paymentId"));
}

/// A 100.00 USD wallet, topped up by the operator.
async fn seed(h: &Harness, user: &str) {
    let reply = h.send(credit(user)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
}

/// The user's USD balance as a service client reads it ("" without a wallet).
async fn balance(h: &Harness, user: &str) -> String {
    let reply = h.send(Req::get(format!("/wallets/{user}"))).await;
    reply.body["wallets"][0]["balance"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}
