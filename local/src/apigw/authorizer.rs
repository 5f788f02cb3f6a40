//! Lambda REQUEST authorizers, as API Gateway (REST, payload 1.0) runs them:
//! the request event (the proxy event without its body, plus `type` and
//! `methodArn`), then the function's answer — an error `Unauthorized` is a
//! 401, any other failure or a malformed answer a 500 (`{"message": null}`),
//! a policy that does not allow the method a 403 (a `Deny` wins), an Allow
//! lets the request through with `principalId` and `context`.

use serde_json::{Map, Value};

use super::response::Refusal;
use crate::InvokeFailure;

/// The error message API Gateway turns into a 401.
pub const UNAUTHORIZED: &str = "Unauthorized";
/// The only action an authorizer's policy grants on API Gateway.
const INVOKE_ACTION: &str = "execute-api:Invoke";

/// What an Allow lets through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub principal_id: String,
    /// The answer's `context`, values as strings (REST APIs pass them so).
    pub context: Map<String, Value>,
    /// The usage plan key (`ApiKeySourceType: AUTHORIZER`).
    pub usage_identifier_key: Option<String>,
}

/// The REQUEST authorizer event for a request whose proxy event is `proxy_event`.
pub fn request_event(proxy_event: &Value, method_arn: &str) -> Value {
    let mut event = match proxy_event {
        Value::Object(fields) => fields.clone(),
        _ => Map::new(),
    };
    event.remove("body");
    event.remove("isBase64Encoded");
    event.insert("type".to_owned(), Value::String("REQUEST".to_owned()));
    event.insert("methodArn".to_owned(), Value::String(method_arn.to_owned()));
    Value::Object(event)
}

/// The authorizer's answer (or failure) for the method `method_arn`, as API
/// Gateway reads it.
pub fn interpret(reply: Result<Value, InvokeFailure>, method_arn: &str) -> Result<Grant, Refusal> {
    let reply = match reply {
        Ok(reply) => reply,
        Err(failure) if failure.error_message == UNAUTHORIZED => {
            return Err(Refusal::unauthorized());
        }
        Err(failure) => {
            eprintln!(
                "apigw: authorizer failed: {}: {}",
                failure.error_type, failure.error_message
            );
            return Err(Refusal::authorizer_failure());
        }
    };
    // Not the answer itself: its usageIdentifierKey may be a client's key.
    let malformed = |why: &str| {
        eprintln!("apigw: malformed authorizer answer: {why}");
        Refusal::authorizer_configuration_error()
    };
    let principal_id = reply
        .get("principalId")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed("no principalId"))?
        .to_owned();
    let policy = reply
        .get("policyDocument")
        .ok_or_else(|| malformed("no policyDocument"))?;
    match evaluate(policy, method_arn).map_err(|why| malformed(&why))? {
        Decision::Allow => {}
        Decision::ExplicitDeny => return Err(Refusal::access_denied(true)),
        Decision::ImplicitDeny => return Err(Refusal::access_denied(false)),
    }
    let mut context = Map::new();
    match reply.get("context") {
        None | Some(Value::Null) => {}
        Some(Value::Object(fields)) => {
            for (name, value) in fields {
                let text = match value {
                    Value::String(text) => text.clone(),
                    Value::Number(number) => number.to_string(),
                    Value::Bool(flag) => flag.to_string(),
                    Value::Null => continue,
                    Value::Array(_) | Value::Object(_) => {
                        return Err(malformed(
                            "a context value is not a string, number or boolean",
                        ));
                    }
                };
                context.insert(name.clone(), Value::String(text));
            }
        }
        Some(_) => return Err(malformed("context is not an object")),
    }
    let usage_identifier_key = match reply.get("usageIdentifierKey") {
        None | Some(Value::Null) => None,
        Some(Value::String(key)) => Some(key.clone()),
        Some(_) => return Err(malformed("usageIdentifierKey is not a string")),
    };
    Ok(Grant {
        principal_id,
        context,
        usage_identifier_key,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    Allow,
    ExplicitDeny,
    ImplicitDeny,
}

/// IAM's rule on a policy document: a matching `Deny` wins, else a matching
/// `Allow` allows, else nothing does.
fn evaluate(policy: &Value, method_arn: &str) -> Result<Decision, String> {
    let statements = match policy.get("Statement") {
        Some(Value::Array(statements)) => statements.iter().collect::<Vec<_>>(),
        Some(statement @ Value::Object(_)) => vec![statement],
        _ => return Err("policyDocument.Statement is not a list".to_owned()),
    };
    let mut allowed = false;
    for statement in statements {
        let effect = statement.get("Effect").and_then(Value::as_str);
        let matches = patterns(statement, "Action")?
            .iter()
            .any(|pattern| wildcard_match(&pattern.to_lowercase(), &INVOKE_ACTION.to_lowercase()))
            && patterns(statement, "Resource")?
                .iter()
                .any(|pattern| wildcard_match(pattern, method_arn));
        match effect {
            Some("Deny") if matches => return Ok(Decision::ExplicitDeny),
            Some("Allow") if matches => allowed = true,
            Some("Allow" | "Deny") => {}
            _ => return Err("a statement's Effect is neither Allow nor Deny".to_owned()),
        }
    }
    Ok(if allowed {
        Decision::Allow
    } else {
        Decision::ImplicitDeny
    })
}

/// A statement's `Action` or `Resource`: one string or a list of them
/// (`NotAction` / `NotResource` are not supported: malformed here).
fn patterns<'a>(statement: &'a Value, field: &str) -> Result<Vec<&'a str>, String> {
    match statement.get(field) {
        Some(Value::String(one)) => Ok(vec![one.as_str()]),
        Some(Value::Array(many)) => many
            .iter()
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| format!("a statement's {field} holds a non-string"))
            })
            .collect(),
        _ => Err(format!("a statement has no {field}")),
    }
}

/// IAM's wildcards: `*` any run of characters (`/` included), `?` any one.
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let (pattern, text): (Vec<char>, Vec<char>) =
        (pattern.chars().collect(), text.chars().collect());
    let (mut p, mut t) = (0, 0);
    // Where the last `*` was, and where in the text it was tried.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == '?' || Some(&c) == text.get(t) => {
                p += 1;
                t += 1;
            }
            _ => match star {
                // Let the last `*` take one more character and retry.
                Some((star_p, star_t)) => {
                    p = star_p + 1;
                    t = star_t + 1;
                    star = Some((star_p, star_t + 1));
                }
                None => return false,
            },
        }
    }
    pattern
        .get(p..)
        .is_some_and(|rest| rest.iter().all(|&c| c == '*'))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    const ARN: &str = "arn:aws:execute-api:us-east-1:000000000000:local/dev/GET/payments/pay_1";

    fn allow(resource: Value) -> Value {
        json!({"principalId": "user:alice", "policyDocument": {"Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": resource}]}})
    }

    #[test]
    fn wildcards_are_iams() {
        assert!(wildcard_match("*", ARN));
        assert!(wildcard_match(
            "arn:aws:execute-api:us-east-1:000000000000:local/dev/*",
            ARN
        ));
        assert!(wildcard_match(
            "arn:aws:execute-api:*:*:local/*/GET/payments/*",
            ARN
        ));
        assert!(wildcard_match(
            "arn:aws:execute-api:us-east-1:000000000000:local/dev/GET/payments/pay_?",
            ARN
        ));
        assert!(!wildcard_match(
            "arn:aws:execute-api:us-east-1:000000000000:local/dev/POST/*",
            ARN
        ));
        assert!(!wildcard_match(
            "arn:aws:execute-api:us-east-1:000000000000:local/dev",
            ARN
        ));
        assert!(wildcard_match("a*b*c", "aXXbYYc"));
        assert!(!wildcard_match("a*b*c", "aXXbYY"));
    }

    #[test]
    fn an_allow_of_the_method_grants_with_string_context() {
        let mut reply = allow(json!([
            "arn:aws:execute-api:us-east-1:000000000000:local/dev/*"
        ]));
        reply["context"] = json!({"principalType": "user", "count": 2, "ok": true});
        reply["usageIdentifierKey"] = json!("end-users-key");
        let grant = interpret(Ok(reply), ARN).unwrap();
        assert_eq!(grant.principal_id, "user:alice");
        assert_eq!(grant.context["count"], "2");
        assert_eq!(grant.context["ok"], "true");
        assert_eq!(grant.usage_identifier_key.as_deref(), Some("end-users-key"));
    }

    #[test]
    fn a_deny_wins_and_no_allow_is_a_deny() {
        let mut reply = allow(json!("*"));
        reply["policyDocument"]["Statement"]
            .as_array_mut()
            .unwrap()
            .push(json!({"Action": "execute-api:*", "Effect": "Deny", "Resource": ARN}));
        assert_eq!(interpret(Ok(reply), ARN), Err(Refusal::access_denied(true)));
        let other = allow(json!(
            "arn:aws:execute-api:us-east-1:000000000000:local/dev/POST/*"
        ));
        assert_eq!(
            interpret(Ok(other), ARN),
            Err(Refusal::access_denied(false))
        );
    }

    #[test]
    fn failures_and_malformed_answers_are_api_gateways() {
        let failure = |message: &str| InvokeFailure {
            error_type: "Error".into(),
            error_message: message.into(),
        };
        assert_eq!(
            interpret(Err(failure("Unauthorized")), ARN),
            Err(Refusal::unauthorized())
        );
        assert_eq!(
            interpret(Err(failure("unauthorized")), ARN),
            Err(Refusal::authorizer_failure())
        );
        assert_eq!(
            interpret(Err(failure("boom")), ARN),
            Err(Refusal::authorizer_failure())
        );
        for reply in [
            json!({"policyDocument": allow(json!("*"))["policyDocument"]}),
            json!({"principalId": "x"}),
            json!({"principalId": "x", "policyDocument": {"Statement": [{"Effect": "Maybe", "Action": "*", "Resource": "*"}]}}),
            {
                let mut nested = allow(json!("*"));
                nested["context"] = json!({"scopes": ["a"]});
                nested
            },
            json!("not an object"),
        ] {
            assert_eq!(
                interpret(Ok(reply.clone()), ARN),
                Err(Refusal::authorizer_configuration_error()),
                "{reply}"
            );
        }
    }

    #[test]
    fn the_request_event_is_the_proxy_event_without_body() {
        let proxy = json!({"resource": "/payments", "path": "/payments", "httpMethod": "POST",
            "headers": {"x-api-key": "k"}, "body": "{}", "isBase64Encoded": false,
            "requestContext": {"stage": "dev"}});
        let event = request_event(&proxy, ARN);
        assert_eq!(event["type"], "REQUEST");
        assert_eq!(event["methodArn"], ARN);
        assert_eq!(event["headers"]["x-api-key"], "k");
        assert!(event.get("body").is_none());
        assert!(event.get("isBase64Encoded").is_none());
    }
}
