//! `GET /wallets/{userId}` and the operator top-up `POST /wallets/{userId}/credit`.

use serde_json::json;
use shared::domain::{Movement, Timestamp, TopUpId, UserId};
use tracing::info;
use ulid::Ulid;

use crate::body::JsonObject;
use crate::error::{ApiError, Code};
use crate::http::{Request, Response};
use crate::idempotency::{self, Outcome};
use crate::principal::Principal;
use crate::requests::{CreditWallet, parse_user_id};
use crate::{Deps, OperatorDeps, views};

pub async fn get(
    deps: &Deps,
    principal: &Principal,
    raw_user_id: &str,
) -> Result<Response, ApiError> {
    let user_id = parse_user_id(raw_user_id, "userId")?;
    // Another user's wallet is not found, like one that does not exist.
    let mut wallets = if principal.may_see(&user_id) {
        deps.wallets.wallets_of(&user_id).await?
    } else {
        Vec::new()
    };
    if wallets.is_empty() {
        let message = format!("user {user_id} has no wallet");
        return Err(ApiError::new(Code::WalletNotFound, message).with_param("userId"));
    }
    wallets.sort_by_key(|wallet| wallet.currency().code());
    let wallets: Vec<_> = wallets.iter().map(views::wallet).collect();
    Ok(Response::json(
        200,
        &json!({ "userId": user_id, "wallets": wallets }),
    ))
}

/// Opens the wallet if needed and credits it. With an Idempotency-Key the
/// top-up id (hence the ledger `txId`) is derived from the key, so an
/// operator's retry finds its ledger entry and never credits twice.
pub async fn credit(
    deps: &OperatorDeps,
    request: &Request<'_>,
    raw_user_id: &str,
    body: &JsonObject,
) -> Result<Response, ApiError> {
    let user_id = parse_user_id(raw_user_id, "userId")?;
    let command = CreditWallet::parse(body, deps.amount_max)?;
    let key = idempotency::key(request, &command.canonical())?;
    let work = |seed| async move {
        let response = match top_up(deps, user_id, &command, seed).await {
            Ok(response) => response,
            Err(err) => Response::error(err),
        };
        Outcome::by_status(response)
    };
    Ok(idempotency::run(deps.idempotency.as_ref(), key, work).await)
}

async fn top_up(
    deps: &OperatorDeps,
    user_id: UserId,
    command: &CreditWallet,
    seed: Ulid,
) -> Result<Response, ApiError> {
    let top_up_id = idempotency::id_from_seed(TopUpId::PREFIX, seed, TopUpId::parse)?;
    let currency = command.amount.currency();
    deps.wallets
        .open(&user_id, currency, Timestamp::now())
        .await?;
    let movement = Movement::top_up(user_id, top_up_id, command.amount);
    let receipt = deps.wallets.apply(&movement, Timestamp::now()).await?;
    let entry = &receipt.entry;
    info!(txId = %entry.tx_id, amount = %entry.amount, balanceAfter = %entry.balance_after,
        replayed = receipt.replayed, reference = command.reference.as_deref().unwrap_or(""),
        "wallet credited");
    let body = views::credit(entry, top_up_id, command.reference.as_deref());
    Ok(Response::json(200, &body))
}
