//! Payload templates (`Parameters`, `ResultSelector`): JSON in which a field
//! whose name ends in `.$` takes its value from a path (`$.x`, `$$.Execution.Id`)
//! or an intrinsic function, at any depth (objects and arrays).

use rand::Rng;
use rand::rngs::StdRng;
use serde_json::{Map, Value};

use super::error::AslError;
use super::intrinsic::{Intrinsic, IntrinsicError};
use super::path::{Path, Root};

/// What a template is evaluated against: the state's data, the context
/// object, and the execution's random source (States.UUID).
pub struct Scope<'a> {
    data: &'a Value,
    context: &'a Value,
    rng: &'a mut StdRng,
}

impl<'a> Scope<'a> {
    pub fn new(data: &'a Value, context: &'a Value, rng: &'a mut StdRng) -> Self {
        Self { data, context, rng }
    }

    pub fn data(&self) -> &Value {
        self.data
    }

    pub fn resolve(&self, path: &Path) -> Option<&'a Value> {
        match path.root() {
            Root::Data => path.select(self.data),
            Root::Context => path.select(self.context),
        }
    }

    pub fn random_u128(&mut self) -> u128 {
        self.rng.random()
    }
}

/// A dynamic value: `$.path`, `$$.path` or `States.Fn(...)`.
#[derive(Debug, Clone, PartialEq)]
pub enum Expression {
    Path(Path),
    Intrinsic(Intrinsic),
}

impl Expression {
    pub fn parse(text: &str, location: &str, field: &str) -> Result<Self, AslError> {
        if text.starts_with("States.") {
            return Intrinsic::parse(text)
                .map(Self::Intrinsic)
                .map_err(|e| match e {
                    IntrinsicError::Syntax(message) => AslError::invalid(location, field, message),
                    IntrinsicError::Unsupported(message) => {
                        AslError::unsupported(location, field, message)
                    }
                });
        }
        Path::parse(text)
            .map(Self::Path)
            .map_err(|e| AslError::invalid(location, field, e.0))
    }

    /// Evaluates the expression; a path that selects nothing is `Ok(None)`.
    pub fn evaluate(&self, scope: &mut Scope<'_>) -> Result<Option<Value>, String> {
        match self {
            Self::Path(path) => Ok(scope.resolve(path).cloned()),
            Self::Intrinsic(call) => call.evaluate(scope).map(Some),
        }
    }

    pub fn text(&self) -> &str {
        match self {
            Self::Path(path) => path.text(),
            Self::Intrinsic(call) => call.text(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Literal(Value),
    Object(Vec<(String, Node)>),
    Array(Vec<Node>),
    /// A `name.$` field: `key` is the name with its `.$`.
    Dynamic {
        key: String,
        expression: Expression,
    },
}

/// A parsed payload template.
#[derive(Debug, Clone, PartialEq)]
pub struct Payload(Node);

impl Payload {
    pub fn parse(value: &Value, location: &str, field: &str) -> Result<Self, AslError> {
        parse_node(value, location, field).map(Self)
    }

    /// Builds the JSON. Errors are AWS's `States.Runtime` causes (without
    /// the "An error occurred while executing the state" prefix).
    pub fn evaluate(&self, scope: &mut Scope<'_>) -> Result<Value, String> {
        evaluate_node(&self.0, scope)
    }
}

fn parse_node(value: &Value, location: &str, field: &str) -> Result<Node, AslError> {
    match value {
        Value::Object(map) => {
            let mut fields = Vec::with_capacity(map.len());
            for (key, child) in map {
                let node = match (key.strip_suffix(".$"), child) {
                    (Some(_), Value::String(text)) => Node::Dynamic {
                        key: key.clone(),
                        expression: Expression::parse(text, location, &format!("{field}.{key}"))?,
                    },
                    (Some(_), _) => {
                        return Err(AslError::invalid(
                            location,
                            format!("{field}.{key}"),
                            "a field ending in .$ must hold a path or an intrinsic function",
                        ));
                    }
                    (None, child) => parse_node(child, location, &format!("{field}.{key}"))?,
                };
                fields.push((key.clone(), node));
            }
            Ok(Node::Object(fields))
        }
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(index, item)| parse_node(item, location, &format!("{field}[{index}]")))
            .collect::<Result<Vec<_>, _>>()
            .map(Node::Array),
        literal => Ok(Node::Literal(literal.clone())),
    }
}

fn evaluate_node(node: &Node, scope: &mut Scope<'_>) -> Result<Value, String> {
    match node {
        Node::Literal(value) => Ok(value.clone()),
        Node::Array(items) => items
            .iter()
            .map(|item| evaluate_node(item, scope))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        Node::Object(fields) => {
            let mut out = Map::new();
            for (key, child) in fields {
                let (name, value) = match child {
                    Node::Dynamic { key, expression } => {
                        let name = key.strip_suffix(".$").unwrap_or(key);
                        (name, evaluate_dynamic(key, expression, scope)?)
                    }
                    other => (key.as_str(), evaluate_node(other, scope)?),
                };
                out.insert(name.to_owned(), value);
            }
            Ok(Value::Object(out))
        }
        Node::Dynamic { key, expression } => evaluate_dynamic(key, expression, scope),
    }
}

fn evaluate_dynamic(
    key: &str,
    expression: &Expression,
    scope: &mut Scope<'_>,
) -> Result<Value, String> {
    expression.evaluate(scope)?.ok_or_else(|| {
        let input = match expression {
            Expression::Path(path) if path.root() == Root::Context => "the context object".into(),
            _ => format!("the input '{}'", scope.data()),
        };
        format!(
            "The JSONPath '{}' specified for the field '{key}' could not be found in {input}",
            expression.text()
        )
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use serde_json::json;

    fn apply(template: Value, data: Value) -> Result<Value, String> {
        let context = json!({"State": {"Name": "S", "RetryCount": 0}});
        let mut rng = StdRng::seed_from_u64(1);
        let payload = Payload::parse(&template, "state S", "Parameters").unwrap();
        payload.evaluate(&mut Scope::new(&data, &context, &mut rng))
    }

    #[test]
    fn aws_parameters_example() {
        // GIVEN the input of the AWS "InputPath and Parameters" documentation
        let input = json!({
            "comment": "Example for Parameters.",
            "product": {
                "details": {"color": "blue", "size": "small", "material": "cotton"},
                "availability": "in stock", "sku": "2317", "cost": "$23"
            }
        });
        let template = json!({
            "comment": "Selecting what I care about.",
            "MyDetails": {
                "size.$": "$.product.details.size",
                "exists.$": "$.product.availability",
                "StaticValue": "foo"
            }
        });
        // WHEN the template is applied THEN the documented JSON comes out
        assert_eq!(
            apply(template, input),
            Ok(json!({
                "comment": "Selecting what I care about.",
                "MyDetails": {"size": "small", "exists": "in stock", "StaticValue": "foo"}
            }))
        );
    }

    #[test]
    fn arrays_context_and_numbers_are_kept_exact() {
        let out = apply(
            json!({"list": [{"n.$": "$.n"}, 2], "state.$": "$$.State.Name", "big.$": "$.big"}),
            json!({"n": 1, "big": 12345678901234567_u64}),
        );
        assert_eq!(
            out,
            Ok(json!({"list": [{"n": 1}, 2], "state": "S", "big": 12345678901234567_u64}))
        );
    }

    #[test]
    fn a_missing_path_names_the_field_like_aws() {
        let err = apply(json!({"JobName.$": "$.JobName"}), json!({})).unwrap_err();
        assert_eq!(
            err,
            "The JSONPath '$.JobName' specified for the field 'JobName.$' \
             could not be found in the input '{}'"
        );
    }

    #[test]
    fn a_dollar_field_must_hold_a_string() {
        let err = Payload::parse(&json!({"a.$": 1}), "state S", "Parameters").unwrap_err();
        assert!(err.to_string().contains("Parameters.a.$"), "{err}");
    }
}
