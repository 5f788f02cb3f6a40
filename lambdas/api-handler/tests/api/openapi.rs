//! The contract test: `api/openapi.yaml` and the handler must agree. It fails
//! when a route, a status, an error code, a header or a response body field
//! exists on one side only.

use std::collections::{BTreeSet, HashSet};

use api_handler::RefundInvokeError;
use api_handler::SagaStartError;
use api_handler::error::Code;
use api_handler::router::{self, Matched};
use serde_json::{Value, json};
use shared::domain::PaymentId;
use shared::{ErrorType, TaskError};

use crate::common::{Harness, Reply, Req};

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];
/// Headers every response has, documented once in the spec's description.
const UNIVERSAL_HEADERS: [&str; 2] = ["content-type", "cache-control"];

struct Spec {
    doc: Value,
}

impl Spec {
    fn load() -> Self {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../api/openapi.yaml");
        let text = std::fs::read_to_string(path).expect("api/openapi.yaml");
        let doc: Value = serde_yaml_ng::from_str(&text).expect("openapi.yaml is valid YAML");
        assert_eq!(doc["openapi"], "3.1.0");
        Self { doc }
    }

    /// Follows `$ref`s (`#/components/...`) to the object they name.
    fn resolve<'a>(&'a self, mut node: &'a Value) -> &'a Value {
        for _ in 0..16 {
            let Some(reference) = node.get("$ref").and_then(Value::as_str) else {
                return node;
            };
            let pointer = reference.strip_prefix('#').expect("local $ref");
            node = self
                .doc
                .pointer(pointer)
                .unwrap_or_else(|| panic!("dangling $ref {reference}"));
        }
        panic!("$ref cycle");
    }

    fn operations(&self) -> Vec<(String, String, &Value)> {
        let mut found = Vec::new();
        for (path, item) in self.doc["paths"].as_object().expect("paths") {
            for method in METHODS {
                if let Some(operation) = item.get(method) {
                    found.push((method.to_uppercase(), path.clone(), operation));
                }
            }
        }
        found
    }

    /// The responses map that documents `req`: its operation's, or the
    /// answers to requests that match no operation.
    fn responses_for(&self, req: &Req) -> &Value {
        match router::match_route(req.method, &req.path) {
            Matched::Route { resource, .. } => {
                let method = req.method.to_lowercase();
                let operation = &self.doc["paths"][resource.template][method.as_str()];
                assert!(
                    operation.is_object(),
                    "{} {} not in the spec",
                    req.method,
                    resource.template
                );
                &operation["responses"]
            }
            Matched::MethodNotAllowed { .. } | Matched::NotFound => {
                &self.doc["x-unmatched-request-responses"]
            }
        }
    }

    fn error_codes(&self, response: &Value) -> BTreeSet<String> {
        response["x-error-codes"]
            .as_array()
            .map(|codes| {
                codes
                    .iter()
                    .map(|c| c.as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every response object of the spec with its status.
    fn all_responses(&self) -> Vec<(String, &Value)> {
        let mut maps: Vec<&Value> = self
            .operations()
            .into_iter()
            .map(|(_, _, op)| &op["responses"])
            .collect();
        maps.push(&self.doc["x-unmatched-request-responses"]);
        let mut found = Vec::new();
        for map in maps {
            for (status, response) in map.as_object().expect("responses") {
                found.push((status.clone(), self.resolve(response)));
            }
        }
        found
    }

    /// A small JSON Schema (2020-12 subset) check: the keywords this spec uses.
    fn check(&self, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
        let schema = self.resolve(schema);
        if let Some(types) = schema.get("type") {
            let types: Vec<&str> = match types {
                Value::String(t) => vec![t.as_str()],
                Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
                _ => vec![],
            };
            if !types.iter().any(|t| type_matches(t, value)) {
                errors.push(format!("{at}: {value} is not {types:?}"));
                return;
            }
        }
        if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
            && !allowed.contains(value)
        {
            errors.push(format!("{at}: {value} not in enum"));
        }
        if let Some(expected) = schema.get("const")
            && expected != value
        {
            errors.push(format!("{at}: {value} is not {expected}"));
        }
        if let Some(options) = schema.get("oneOf").and_then(Value::as_array) {
            let passing = options
                .iter()
                .filter(|option| {
                    let mut sub = Vec::new();
                    self.check(option, value, at, &mut sub);
                    sub.is_empty()
                })
                .count();
            if passing != 1 {
                errors.push(format!("{at}: {value} matches {passing} oneOf options"));
            }
        }
        for part in schema
            .get("allOf")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            self.check(part, value, at, errors);
        }
        self.check_contents(schema, value, at, errors);
    }

    /// Members, items and lengths.
    fn check_contents(&self, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
        match value {
            Value::Object(map) => self.check_object(schema, map, at, errors),
            Value::Array(items) => {
                if let Some(item_schema) = schema.get("items") {
                    for (i, item) in items.iter().enumerate() {
                        self.check(item_schema, item, &format!("{at}[{i}]"), errors);
                    }
                }
                let min = schema.get("minItems").and_then(Value::as_u64).unwrap_or(0);
                if u64::try_from(items.len()).unwrap() < min {
                    errors.push(format!("{at}: fewer than {min} items"));
                }
            }
            Value::String(text) => {
                let length = u64::try_from(text.chars().count()).unwrap();
                if schema
                    .get("maxLength")
                    .and_then(Value::as_u64)
                    .is_some_and(|m| length > m)
                    || schema
                        .get("minLength")
                        .and_then(Value::as_u64)
                        .is_some_and(|m| length < m)
                {
                    errors.push(format!("{at}: length {length} out of bounds"));
                }
            }
            _ => {}
        }
    }

    fn check_object(
        &self,
        schema: &Value,
        map: &serde_json::Map<String, Value>,
        at: &str,
        errors: &mut Vec<String>,
    ) {
        for name in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = name.as_str().unwrap();
            if !map.contains_key(name) {
                errors.push(format!("{at}: missing required `{name}`"));
            }
        }
        let properties = schema.get("properties").and_then(Value::as_object);
        for (name, value) in map {
            let field_at = format!("{at}.{name}");
            match properties.and_then(|p| p.get(name)) {
                Some(property) => self.check(property, value, &field_at, errors),
                None => match schema.get("additionalProperties") {
                    Some(Value::Bool(false)) => {
                        errors.push(format!("{field_at}: not in the schema"));
                    }
                    Some(extra @ Value::Object(_)) => self.check(extra, value, &field_at, errors),
                    _ => {}
                },
            }
        }
        if schema.get("unevaluatedProperties") == Some(&Value::Bool(false)) {
            let known = self.evaluated_properties(schema);
            for name in map.keys().filter(|name| !known.contains(name.as_str())) {
                errors.push(format!("{at}.{name}: not in the schema"));
            }
        }
    }

    fn evaluated_properties(&self, schema: &Value) -> HashSet<String> {
        let schema = self.resolve(schema);
        let mut names: HashSet<String> = schema
            .get("properties")
            .and_then(Value::as_object)
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default();
        for part in schema
            .get("allOf")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            names.extend(self.evaluated_properties(part));
        }
        names
    }

    /// Checks one real exchange against the spec; returns what disagrees.
    fn disagreements(&self, req: &Req, reply: &Reply) -> Vec<String> {
        let status = reply.status.to_string();
        let Some(documented) = self.responses_for(req).get(&status) else {
            return vec![format!("status {status} is not documented")];
        };
        let response = self.resolve(documented);
        let mut errors = Vec::new();
        if reply.status >= 400 {
            let code = reply.code().to_owned();
            if !self.error_codes(response).contains(&code) {
                errors.push(format!("code `{code}` not in x-error-codes of {status}"));
            }
        }
        let documented_headers: HashSet<String> = response["headers"]
            .as_object()
            .map(|h| h.keys().map(|k| k.to_lowercase()).collect())
            .unwrap_or_default();
        for name in reply.raw.headers.keys() {
            let name = name.as_str();
            if !UNIVERSAL_HEADERS.contains(&name) && !documented_headers.contains(name) {
                errors.push(format!("header `{name}` not documented for {status}"));
            }
        }
        let schema = &response["content"]["application/json"]["schema"];
        if schema.is_null() {
            errors.push(format!("{status} has no application/json schema"));
        } else {
            self.check(schema, &reply.body, "body", &mut errors);
        }
        errors
    }
}

fn type_matches(kind: &str, value: &Value) -> bool {
    match kind {
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "object" => value.is_object(),
        "array" => value.is_array(),
        "null" => value.is_null(),
        _ => false,
    }
}

#[test]
fn every_route_the_router_serves_is_in_the_spec_and_vice_versa() {
    let spec = Spec::load();
    let documented: BTreeSet<(String, String)> = spec
        .operations()
        .into_iter()
        .map(|(method, path, _)| (method, path))
        .collect();
    let served: BTreeSet<(String, String)> = router::RESOURCES
        .iter()
        .flat_map(|r| {
            r.methods
                .iter()
                .map(|m| (m.to_string(), r.template.to_owned()))
        })
        .collect();
    assert_eq!(documented, served);
}

#[test]
fn the_spec_lists_exactly_the_currencies_the_handler_accepts() {
    let spec = Spec::load();
    let listed: Vec<String> = spec.doc["components"]["schemas"]["Currency"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    let accepted: Vec<String> = shared::domain::money::Currency::all()
        .iter()
        .map(|c| c.code().to_owned())
        .collect();
    assert_eq!(listed, accepted, "Currency.enum vs Currency::all (sorted)");
}

#[test]
fn the_spec_lists_exactly_the_error_codes_and_under_their_status() {
    let spec = Spec::load();
    let ours: BTreeSet<String> = Code::ALL.iter().map(|c| c.as_str().to_owned()).collect();
    let error = &spec.doc["components"]["schemas"]["Error"]["properties"]["error"];
    let enumerated: BTreeSet<String> = error["properties"]["code"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(enumerated, ours, "Error.code enum vs Code::ALL");
    let types: BTreeSet<&str> = error["properties"]["type"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    let mut placed = BTreeSet::new();
    for (status, response) in spec.all_responses() {
        assert!(
            response["headers"].get("X-Request-Id").is_some(),
            "{status}: X-Request-Id not documented"
        );
        for name in spec.error_codes(response) {
            let code = Code::ALL
                .iter()
                .find(|c| c.as_str() == name)
                .unwrap_or_else(|| panic!("unknown code `{name}` in the spec"));
            assert_eq!(
                code.status().to_string(),
                status,
                "`{name}` under the wrong status"
            );
            assert!(
                types.contains(code.kind().as_str()),
                "{name}: type not in the enum"
            );
            placed.insert(name);
        }
    }
    assert_eq!(
        placed, ours,
        "codes no operation documents (or unknown ones)"
    );
}

/// What to change before an example request is sent.
enum Setup {
    Nothing,
    SagaDown,
    SagaUp,
    Refunds(Option<RefundInvokeError>),
}

impl Setup {
    fn apply(self, h: &Harness) {
        match self {
            Self::Nothing => {}
            Self::SagaDown => h
                .saga
                .fail_with(Some(SagaStartError::Unavailable("timeout".into()))),
            Self::SagaUp => h.saga.fail_with(None),
            Self::Refunds(err) => h.refunder.fail_with(err),
        }
    }

    fn refused(error_type: ErrorType) -> Self {
        let task = TaskError::new(error_type, "refund-service says no");
        Self::Refunds(Some(RefundInvokeError::Refused(task)))
    }
}

/// An example request, its set-up and the status it must get.
struct Example(Setup, Req, u16);

fn ex(req: Req, status: u16) -> Example {
    Example(Setup::Nothing, req, status)
}

fn pay(body: Value) -> Req {
    Req::post("/payments", body)
}

fn payment_examples(paid: &PaymentId, unknown: &PaymentId) -> Vec<Example> {
    let full = json!({"userId": "u1", "amount": "12.50", "currency": "USD",
                      "orderId": "o-1", "description": "d", "metadata": {"k": "v"}});
    let small = json!({"userId": "u1", "amount": 1, "currency": "USD"});
    let text = Req::new("POST", "/payments")
        .raw_body("x")
        .header("Content-Type", "text/plain");
    let list = || Req::get("/payments").query("userId", "u1");
    vec![
        ex(pay(full.clone()).key("c-1"), 202),
        ex(pay(full).key("c-1"), 202),
        ex(pay(small.clone()).key("c-1"), 422),
        ex(
            pay(json!({"userId": "u1", "amount": 10.001, "currency": "USD"})),
            400,
        ),
        ex(pay(json!({"userId": "u1"})), 400),
        ex(text, 415),
        ex(
            Req::new("POST", "/payments").raw_body(&"x".repeat(70_000)),
            413,
        ),
        Example(Setup::SagaDown, pay(small), 503),
        Example(Setup::SagaUp, list().query("limit", "2"), 200),
        ex(list().query("limit", "500"), 400),
        ex(Req::get("/payments"), 400),
        ex(Req::get(format!("/payments/{paid}")), 200),
        ex(Req::get("/payments/pay_x"), 400),
        ex(Req::get(format!("/payments/{unknown}")), 404),
    ]
}

fn refund_examples(paid: &PaymentId, pending: &PaymentId, unknown: &PaymentId) -> Vec<Example> {
    let refund = |id: &PaymentId, body: Value| Req::post(format!("/payments/{id}/refunds"), body);
    let unknown_outcome = Setup::Refunds(Some(RefundInvokeError::Unknown("timeout".into())));
    let throttled = Setup::Refunds(Some(RefundInvokeError::Throttled("slow".into())));
    vec![
        ex(refund(paid, json!({"amount": 10, "reason": "r"})), 202),
        // Read again, now with a refund in it.
        ex(Req::get(format!("/payments/{paid}")), 200),
        ex(refund(pending, json!({})), 422),
        ex(refund(paid, json!({"amount": 1000})), 422),
        ex(refund(unknown, json!({})), 404),
        ex(refund(paid, json!({"amount": "1.001"})), 400),
        Example(throttled, refund(paid, json!({})), 429),
        Example(
            Setup::refused(ErrorType::GatewayRejected),
            refund(paid, json!({})),
            422,
        ),
        Example(
            Setup::refused(ErrorType::GatewayUnavailable),
            refund(paid, json!({})),
            502,
        ),
        Example(
            Setup::refused(ErrorType::GatewayUnavailable),
            refund(paid, json!({})),
            502,
        ),
        Example(
            Setup::refused(ErrorType::DebitNotFound),
            refund(paid, json!({})),
            500,
        ),
        Example(
            Setup::refused(ErrorType::PaymentDeclined),
            refund(paid, json!({})),
            422,
        ),
        Example(unknown_outcome, refund(paid, json!({})).key("r-1"), 503),
        Example(
            Setup::Refunds(None),
            refund(paid, json!({})).key("r-1"),
            409,
        ),
    ]
}

fn other_examples() -> Vec<Example> {
    let credit = |body: Value| Req::post("/wallets/u1/credit", body);
    vec![
        ex(Req::get("/health"), 200),
        ex(Req::get("/health").query("ts", "1"), 200),
        ex(
            credit(json!({"amount": 100, "currency": "USD", "reference": "T-1"})),
            200,
        ),
        ex(credit(json!({"amount": 1.5, "currency": "JPY"})), 400),
        ex(Req::get("/wallets/u1"), 200),
        ex(Req::get("/wallets/nobody"), 404),
        ex(Req::get(format!("/wallets/{}", "x".repeat(65))), 400),
        ex(Req::get("/wallets/u1").query("verbose", "1"), 400),
        ex(Req::get("/nope"), 404),
        ex(Req::new("DELETE", "/payments"), 405),
    ]
}

#[tokio::test]
async fn the_handler_answers_only_what_the_spec_documents() {
    // GIVEN a completed payment and a pending one
    let h = Harness::new();
    let paid = h.completed_payment("u1", "80").await;
    let pending = h.create_payment("u1", "5").await;
    let unknown = PaymentId::generate();
    let mut examples = payment_examples(&paid, &unknown);
    examples.extend(refund_examples(&paid, &pending, &unknown));
    examples.extend(other_examples());
    let spec = Spec::load();
    let mut problems = Vec::new();
    let mut statuses = BTreeSet::new();
    for Example(setup, req, expected) in examples {
        // WHEN each example request is sent after its set-up
        setup.apply(&h);
        let reply = h.send(req.clone()).await;
        // THEN it gets its intended status, and the spec documents that
        // status, its error code, its headers and its body
        let (method, path) = (req.method, &req.path);
        assert_eq!(reply.status, expected, "{method} {path}: {}", reply.body);
        statuses.insert(reply.status);
        for problem in spec.disagreements(&req, &reply) {
            problems.push(format!("{method} {path} -> {expected}: {problem}"));
        }
    }
    assert!(
        problems.is_empty(),
        "handler and spec disagree:\n{}",
        problems.join("\n")
    );
    let used = [
        200, 202, 400, 404, 405, 409, 413, 415, 422, 429, 500, 502, 503,
    ];
    assert_eq!(
        statuses,
        used.into(),
        "the examples cover every status the API uses"
    );
}
