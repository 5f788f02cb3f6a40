//! Who is calling, as API Gateway authenticated them, and what each caller
//! may do. The authorizer (lambdas/authorizer) verified the credential; this
//! module reads what it returned (`requestContext.authorizer`) or, on the
//! SigV4 operator route, the IAM identity — and decides per object:
//!
//! - an end user (bearer JWT) acts only on their own payments and wallets;
//!   another user's payment or wallet is answered 404, as if it did not exist;
//! - a service client (API key) acts for any user, within its scopes;
//! - an operator (IAM) only tops wallets up, on operator-api.
//!
//! Nothing here trusts the request body or path for identity.

use std::collections::BTreeSet;
use std::fmt;

use aws_lambda_events::apigw::ApiGatewayProxyRequest;
use serde_json::Value;
use shared::domain::UserId;

use crate::error::{ApiError, Code};

/// `requestContext.authorizer` keys the authorizer sets (string values).
pub const CONTEXT_PRINCIPAL_TYPE: &str = "principalType";
pub const CONTEXT_USER_ID: &str = "userId";
pub const CONTEXT_CLIENT_ID: &str = "clientId";
pub const CONTEXT_SCOPES: &str = "scopes";

/// A service client's permission, as granted to its API key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    PaymentsWrite,
    PaymentsRead,
    RefundsWrite,
    WalletsRead,
}

impl Scope {
    pub const ALL: [Scope; 4] = [
        Self::PaymentsWrite,
        Self::PaymentsRead,
        Self::RefundsWrite,
        Self::WalletsRead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::PaymentsWrite => "payments:write",
            Self::PaymentsRead => "payments:read",
            Self::RefundsWrite => "refunds:write",
            Self::WalletsRead => "wallets:read",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|scope| scope.as_str() == text)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// An end user: the token's subject.
    User(UserId),
    /// A merchant's backend with its API key's scopes.
    Client {
        client_id: String,
        scopes: BTreeSet<Scope>,
    },
    /// A SigV4-signed IAM principal (the operator route only).
    Operator { arn: String },
}

impl Principal {
    /// The principal API Gateway authenticated, if any. A context that names
    /// a principal badly counts as none (fail closed: 401).
    pub fn from_proxy(event: &ApiGatewayProxyRequest) -> Option<Self> {
        let context = &event.request_context;
        let fields = &context.authorizer.fields;
        let text = |name: &str| {
            fields
                .get(name)
                .and_then(Value::as_str)
                .filter(|v| !v.is_empty())
        };
        match text(CONTEXT_PRINCIPAL_TYPE) {
            Some("user") => text(CONTEXT_USER_ID)
                .and_then(|id| UserId::parse(id).ok())
                .map(Self::User),
            Some("client") => text(CONTEXT_CLIENT_ID).map(|client_id| Self::Client {
                client_id: client_id.to_owned(),
                scopes: text(CONTEXT_SCOPES)
                    .unwrap_or_default()
                    .split_whitespace()
                    .filter_map(Scope::parse)
                    .collect(),
            }),
            Some(_) => None,
            None => {
                let identity = &context.identity;
                let non_empty = |v: &Option<String>| v.clone().filter(|v| !v.is_empty());
                non_empty(&identity.user_arn)
                    .or_else(|| non_empty(&identity.caller))
                    .map(|arn| Self::Operator { arn })
            }
        }
    }

    /// What scopes this principal's idempotency keys (two callers never share
    /// or replay each other's keys).
    pub fn scope_key(&self) -> String {
        match self {
            Self::User(user_id) => format!("user:{user_id}"),
            Self::Client { client_id, .. } => format!("client:{client_id}"),
            Self::Operator { arn } => format!("iam:{arn}"),
        }
    }

    /// A client route may be used: by an end user, or by a client holding
    /// `scope`. An operator's IAM identity opens no client route.
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        match self {
            Self::User(_) => Ok(()),
            Self::Client { scopes, client_id } if !scopes.contains(&scope) => Err(ApiError::new(
                Code::MissingScope,
                format!("client {client_id} lacks the scope {scope}"),
            )),
            Self::Client { .. } => Ok(()),
            Self::Operator { .. } => Err(ApiError::new(
                Code::Forbidden,
                "IAM credentials open only the operator route",
            )),
        }
    }

    /// Whether this principal may see `owner`'s payments and wallets (after
    /// [`Self::require`]). `false` is answered as not found.
    pub fn may_see(&self, owner: &UserId) -> bool {
        match self {
            Self::User(user_id) => user_id == owner,
            Self::Client { .. } => true,
            Self::Operator { .. } => false,
        }
    }

    /// Whether this principal may act for `user_id`'s wallet (paying from it,
    /// listing its payments): a refusal here is a 403, since the caller named
    /// the user themself.
    pub fn may_act_for(&self, user_id: &UserId) -> Result<(), ApiError> {
        if self.may_see(user_id) {
            return Ok(());
        }
        Err(ApiError::new(
            Code::Forbidden,
            "an end user acts only for themself: userId must be the token's subject",
        )
        .with_param("userId"))
    }
}

/// The 401 of a client route reached without a principal (API Gateway's
/// authorizer should have stopped it: this is the second lock).
pub fn unauthenticated() -> ApiError {
    ApiError::new(
        Code::Unauthenticated,
        "send a bearer token (Authorization) or an API key (x-api-key)",
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(authorizer: Value, identity: Value) -> ApiGatewayProxyRequest {
        serde_json::from_value(json!({
            "path": "/payments", "httpMethod": "GET", "headers": {},
            "requestContext": {"httpMethod": "GET", "authorizer": authorizer, "identity": identity}
        }))
        .unwrap()
    }

    #[test]
    fn principals_come_from_the_authorizer_context_only() {
        let user = event(
            json!({"principalType": "user", "userId": "alice"}),
            json!({}),
        );
        assert_eq!(
            Principal::from_proxy(&user),
            Some(Principal::User(UserId::parse("alice").unwrap()))
        );
        let client = event(
            json!({"principalType": "client", "clientId": "m1", "scopes": "payments:read bogus"}),
            json!({}),
        );
        let Some(Principal::Client { client_id, scopes }) = Principal::from_proxy(&client) else {
            panic!("a client");
        };
        assert_eq!(client_id, "m1");
        assert_eq!(scopes, BTreeSet::from([Scope::PaymentsRead]));
        let operator = event(
            Value::Null,
            json!({"userArn": "arn:aws:iam::1:role/ops", "caller": "x"}),
        );
        assert_eq!(
            Principal::from_proxy(&operator),
            Some(Principal::Operator {
                arn: "arn:aws:iam::1:role/ops".into()
            })
        );
        for bad in [
            json!({"principalType": "user", "userId": "not a user id!"}),
            json!({"principalType": "user"}),
            json!({"principalType": "admin", "userId": "alice"}),
            json!({"principalType": "client"}),
        ] {
            assert_eq!(
                Principal::from_proxy(&event(bad.clone(), json!({}))),
                None,
                "{bad}"
            );
        }
        assert_eq!(Principal::from_proxy(&event(Value::Null, json!({}))), None);
    }

    #[test]
    fn users_see_only_their_own_and_clients_need_scopes() {
        let alice = UserId::parse("alice").unwrap();
        let bob = UserId::parse("bob").unwrap();
        let user = Principal::User(alice.clone());
        assert!(user.may_see(&alice) && !user.may_see(&bob));
        assert_eq!(user.may_act_for(&bob).unwrap_err().code, Code::Forbidden);
        let reader = Principal::Client {
            client_id: "r".into(),
            scopes: BTreeSet::from([Scope::PaymentsRead]),
        };
        assert!(reader.require(Scope::PaymentsRead).is_ok());
        assert_eq!(
            reader.require(Scope::PaymentsWrite).unwrap_err().code,
            Code::MissingScope
        );
        assert!(reader.may_see(&bob));
        let operator = Principal::Operator { arn: "a".into() };
        assert_eq!(
            operator.require(Scope::WalletsRead).unwrap_err().code,
            Code::Forbidden
        );
        assert_ne!(user.scope_key(), reader.scope_key());
    }
}
