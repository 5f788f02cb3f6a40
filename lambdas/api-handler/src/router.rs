//! Which operation a method and path name. The route table is data, so the
//! OpenAPI contract test can compare it with `api/openapi.yaml`.
//!
//! Routing uses the request path, not API Gateway's `resource`, so the same
//! handler works behind API Gateway and behind the local cloud's proxy.

/// A resource path and the methods it serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resource {
    pub template: &'static str,
    pub methods: &'static [&'static str],
}

pub const HEALTH: Resource = Resource {
    template: "/health",
    methods: &["GET"],
};
pub const PAYMENTS: Resource = Resource {
    template: "/payments",
    methods: &["GET", "POST"],
};
pub const PAYMENT: Resource = Resource {
    template: "/payments/{paymentId}",
    methods: &["GET"],
};
pub const PAYMENT_REFUNDS: Resource = Resource {
    template: "/payments/{paymentId}/refunds",
    methods: &["POST"],
};
pub const WALLET: Resource = Resource {
    template: "/wallets/{userId}",
    methods: &["GET"],
};
pub const WALLET_CREDIT: Resource = Resource {
    template: "/wallets/{userId}/credit",
    methods: &["POST"],
};

/// The gateway's webhook: signed events, no API key.
pub const GATEWAY_WEBHOOK: Resource = Resource {
    template: "/webhooks/gateway",
    methods: &["POST"],
};

/// Every resource the API serves.
pub const RESOURCES: [Resource; 7] = [
    HEALTH,
    PAYMENTS,
    PAYMENT,
    PAYMENT_REFUNDS,
    WALLET,
    WALLET_CREDIT,
    GATEWAY_WEBHOOK,
];

/// One operation, with its raw (not yet validated) path parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    Health,
    CreatePayment,
    ListPayments,
    GetPayment { payment_id: &'a str },
    CreateRefund { payment_id: &'a str },
    GetWallet { user_id: &'a str },
    CreditWallet { user_id: &'a str },
    GatewayWebhook,
}

impl Route<'_> {
    /// Query parameters the operation accepts; any other is a 400. `None`:
    /// not checked (uptime checkers add cache-busting parameters to /health).
    pub fn query_params(&self) -> Option<&'static [&'static str]> {
        match self {
            Self::Health => None,
            Self::ListPayments => Some(&["userId", "limit", "cursor"]),
            Self::CreatePayment
            | Self::GetPayment { .. }
            | Self::CreateRefund { .. }
            | Self::GetWallet { .. }
            | Self::CreditWallet { .. }
            | Self::GatewayWebhook => Some(&[]),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Matched<'a> {
    Route {
        route: Route<'a>,
        resource: Resource,
    },
    MethodNotAllowed {
        resource: Resource,
    },
    NotFound,
}

pub fn match_route<'a>(method: &str, path: &'a str) -> Matched<'a> {
    let Some((resource, param)) = resource_of(path) else {
        return Matched::NotFound;
    };
    let route = match (resource.template, method) {
        ("/health", "GET") => Route::Health,
        ("/payments", "POST") => Route::CreatePayment,
        ("/payments", "GET") => Route::ListPayments,
        ("/payments/{paymentId}", "GET") => Route::GetPayment { payment_id: param },
        ("/payments/{paymentId}/refunds", "POST") => Route::CreateRefund { payment_id: param },
        ("/wallets/{userId}", "GET") => Route::GetWallet { user_id: param },
        ("/wallets/{userId}/credit", "POST") => Route::CreditWallet { user_id: param },
        ("/webhooks/gateway", "POST") => Route::GatewayWebhook,
        _ => return Matched::MethodNotAllowed { resource },
    };
    Matched::Route { route, resource }
}

/// The resource a path names and its one path parameter ("" when none).
/// Empty segments (`/payments/`, `//health`) match nothing.
fn resource_of(path: &str) -> Option<(Resource, &str)> {
    let rest = path.strip_prefix('/')?;
    // Three segments at most are meaningful; a fourth (the unsplit rest) never matches.
    let segments: Vec<&str> = rest.splitn(4, '/').collect();
    if segments.iter().any(|s| s.is_empty()) {
        return None;
    }
    match segments.as_slice() {
        ["health"] => Some((HEALTH, "")),
        ["payments"] => Some((PAYMENTS, "")),
        ["payments", id] => Some((PAYMENT, id)),
        ["payments", id, "refunds"] => Some((PAYMENT_REFUNDS, id)),
        ["webhooks", "gateway"] => Some((GATEWAY_WEBHOOK, "")),
        ["wallets", user] => Some((WALLET, user)),
        ["wallets", user, "credit"] => Some((WALLET_CREDIT, user)),
        _ => None,
    }
}

/// The payment id in a path, for the log's `correlationId` before routing.
pub fn payment_id_in_path(path: &str) -> Option<&str> {
    match resource_of(path) {
        Some((PAYMENT | PAYMENT_REFUNDS, id)) => Some(id),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_methods_pick_one_operation() {
        assert_eq!(
            match_route("GET", "/payments/pay_1"),
            Matched::Route {
                route: Route::GetPayment {
                    payment_id: "pay_1"
                },
                resource: PAYMENT
            }
        );
        assert!(matches!(
            match_route("POST", "/wallets/u1/credit"),
            Matched::Route {
                route: Route::CreditWallet { user_id: "u1" },
                ..
            }
        ));
        assert_eq!(
            match_route("DELETE", "/payments"),
            Matched::MethodNotAllowed { resource: PAYMENTS }
        );
        for path in [
            "/",
            "",
            "/payments/",
            "/payments//refunds",
            "/nope",
            "/health/x",
        ] {
            assert_eq!(match_route("GET", path), Matched::NotFound, "{path}");
        }
    }

    #[test]
    fn every_resource_method_routes() {
        for resource in RESOURCES {
            let path = resource
                .template
                .replace("{paymentId}", "p")
                .replace("{userId}", "u");
            for method in resource.methods {
                assert!(
                    matches!(match_route(method, &path), Matched::Route { resource: r, .. } if r == resource),
                    "{method} {path}"
                );
            }
        }
        assert_eq!(payment_id_in_path("/payments/pay_9/refunds"), Some("pay_9"));
        assert_eq!(payment_id_in_path("/wallets/u"), None);
    }
}
