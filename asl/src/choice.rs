//! Choice rules: every comparison operator of the Amazon States Language
//! (String/Numeric/Timestamp/Boolean, their `…Path` forms, StringMatches),
//! And/Or/Not, and the type tests IsPresent/IsNull/IsString/IsNumeric/
//! IsBoolean/IsTimestamp.

use std::cmp::Ordering;

use serde_json::{Map, Number, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::error::AslError;
use super::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    String,
    Numeric,
    Timestamp,
    Boolean,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Test {
    Equals,
    LessThan,
    GreaterThan,
    LessThanEquals,
    GreaterThanEquals,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeTest {
    Present,
    Null,
    String,
    Numeric,
    Boolean,
    Timestamp,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    Literal(Value),
    Path(Path),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    Compare {
        kind: Kind,
        test: Test,
        operand: Operand,
    },
    Matches(String),
    Is {
        test: TypeTest,
        expected: bool,
    },
}

/// A (possibly nested) boolean rule.
#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    And(Vec<Rule>),
    Or(Vec<Rule>),
    Not(Box<Rule>),
    Leaf {
        variable: Path,
        condition: Condition,
    },
}

/// A top-level entry of `Choices`: a rule and where it leads.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    pub rule: Rule,
    pub next: String,
}

const NESTING_DEPTH_MAX: u32 = 32;

impl Choice {
    pub fn parse(value: &Value, location: &str) -> Result<Self, AslError> {
        let map = value.as_object().ok_or_else(|| {
            AslError::invalid(location, "Choices", "each choice must be an object")
        })?;
        let next = map.get("Next").and_then(Value::as_str).ok_or_else(|| {
            AslError::invalid(location, "Next", "a choice rule needs a Next state")
        })?;
        let rule = Rule::parse(map, location, 0, true)?;
        Ok(Self {
            rule,
            next: next.to_owned(),
        })
    }
}

impl Rule {
    fn parse(
        map: &Map<String, Value>,
        location: &str,
        depth: u32,
        top_level: bool,
    ) -> Result<Self, AslError> {
        if depth > NESTING_DEPTH_MAX {
            return Err(AslError::invalid(
                location,
                "Choices",
                "rules nest too deeply",
            ));
        }
        let (operator, operand) = single_operator(map, location, top_level)?;
        let variable = map.get("Variable");
        match operator {
            "And" | "Or" => reject_variable(variable, location, operator).and_then(|()| {
                let rules = parse_rule_list(operand, location, depth, operator)?;
                Ok(if operator == "And" {
                    Self::And(rules)
                } else {
                    Self::Or(rules)
                })
            }),
            "Not" => reject_variable(variable, location, operator).and_then(|()| {
                let inner = operand
                    .as_object()
                    .ok_or_else(|| AslError::invalid(location, "Not", "must be a rule object"))?;
                Ok(Self::Not(Box::new(Self::parse(
                    inner,
                    location,
                    depth + 1,
                    false,
                )?)))
            }),
            _ => {
                let variable = variable.and_then(Value::as_str).ok_or_else(|| {
                    AslError::invalid(location, operator, "a comparison needs a Variable")
                })?;
                let variable = Path::parse(variable)
                    .map_err(|e| AslError::invalid(location, "Variable", e.0))?;
                let condition = parse_condition(operator, operand, location)?;
                Ok(Self::Leaf {
                    variable,
                    condition,
                })
            }
        }
    }

    /// Whether the rule holds. `Err` is a `States.Runtime` cause: a variable
    /// or a `…Path` operand that selects nothing (AWS fails the execution;
    /// only the type tests accept a missing variable).
    pub fn evaluate(&self, data: &Value, context: &Value) -> Result<bool, String> {
        match self {
            Self::And(rules) => {
                for rule in rules {
                    if !rule.evaluate(data, context)? {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            Self::Or(rules) => {
                for rule in rules {
                    if rule.evaluate(data, context)? {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            Self::Not(rule) => Ok(!rule.evaluate(data, context)?),
            Self::Leaf {
                variable,
                condition,
            } => {
                let value = select(variable, data, context);
                evaluate_condition(condition, variable, value, data, context)
            }
        }
    }
}

fn select<'v>(path: &Path, data: &'v Value, context: &'v Value) -> Option<&'v Value> {
    match path.root() {
        super::path::Root::Data => path.select(data),
        super::path::Root::Context => path.select(context),
    }
}

fn reject_variable(
    variable: Option<&Value>,
    location: &str,
    operator: &str,
) -> Result<(), AslError> {
    match variable {
        Some(_) => Err(AslError::invalid(
            location,
            "Variable",
            format!("{operator} takes no Variable"),
        )),
        None => Ok(()),
    }
}

/// The one operator of a rule (everything but Variable, Next and Comment).
fn single_operator<'m>(
    map: &'m Map<String, Value>,
    location: &str,
    top_level: bool,
) -> Result<(&'m str, &'m Value), AslError> {
    let mut operators = Vec::new();
    for (key, value) in map {
        match key.as_str() {
            "Comment" | "Variable" => {}
            "Next" if top_level => {}
            "Next" => {
                return Err(AslError::invalid(
                    location,
                    "Next",
                    "only top-level rules have Next",
                ));
            }
            _ => operators.push((key.as_str(), value)),
        }
    }
    match operators.as_slice() {
        [single] => Ok(*single),
        _ => Err(AslError::invalid(
            location,
            "Choices",
            format!(
                "a rule needs exactly one operator, found {}",
                operators.len()
            ),
        )),
    }
}

fn parse_rule_list(
    operand: &Value,
    location: &str,
    depth: u32,
    operator: &str,
) -> Result<Vec<Rule>, AslError> {
    let items = operand
        .as_array()
        .filter(|items| !items.is_empty())
        .ok_or_else(|| {
            AslError::invalid(location, operator, "must be a non-empty array of rules")
        })?;
    items
        .iter()
        .map(|item| {
            let map = item.as_object().ok_or_else(|| {
                AslError::invalid(location, operator, "each rule must be an object")
            })?;
            Rule::parse(map, location, depth + 1, false)
        })
        .collect()
}

fn parse_condition(operator: &str, operand: &Value, location: &str) -> Result<Condition, AslError> {
    if let Some(test) = parse_type_test(operator) {
        let expected = operand
            .as_bool()
            .ok_or_else(|| AslError::invalid(location, operator, "must be true or false"))?;
        return Ok(Condition::Is { test, expected });
    }
    if operator == "StringMatches" {
        let pattern = operand
            .as_str()
            .ok_or_else(|| AslError::invalid(location, operator, "must be a string pattern"))?;
        return Ok(Condition::Matches(pattern.to_owned()));
    }
    let (base, is_path) = match operator.strip_suffix("Path") {
        Some(base) => (base, true),
        None => (operator, false),
    };
    let (kind, test) = parse_comparison(base)
        .ok_or_else(|| AslError::unsupported(location, operator, "not a Choice operator"))?;
    let operand = if is_path {
        let text = operand
            .as_str()
            .ok_or_else(|| AslError::invalid(location, operator, "must be a path"))?;
        Operand::Path(Path::parse(text).map_err(|e| AslError::invalid(location, operator, e.0))?)
    } else {
        check_literal(kind, operand)
            .map_err(|message| AslError::invalid(location, operator, message))?;
        Operand::Literal(operand.clone())
    };
    Ok(Condition::Compare {
        kind,
        test,
        operand,
    })
}

fn parse_type_test(operator: &str) -> Option<TypeTest> {
    Some(match operator {
        "IsPresent" => TypeTest::Present,
        "IsNull" => TypeTest::Null,
        "IsString" => TypeTest::String,
        "IsNumeric" => TypeTest::Numeric,
        "IsBoolean" => TypeTest::Boolean,
        "IsTimestamp" => TypeTest::Timestamp,
        _ => return None,
    })
}

fn parse_comparison(base: &str) -> Option<(Kind, Test)> {
    let (kind, rest) = [
        ("String", Kind::String),
        ("Numeric", Kind::Numeric),
        ("Timestamp", Kind::Timestamp),
        ("Boolean", Kind::Boolean),
    ]
    .into_iter()
    .find_map(|(prefix, kind)| base.strip_prefix(prefix).map(|rest| (kind, rest)))?;
    let test = match rest {
        "Equals" => Test::Equals,
        "LessThan" => Test::LessThan,
        "GreaterThan" => Test::GreaterThan,
        "LessThanEquals" => Test::LessThanEquals,
        "GreaterThanEquals" => Test::GreaterThanEquals,
        _ => return None,
    };
    if kind == Kind::Boolean && test != Test::Equals {
        return None;
    }
    Some((kind, test))
}

fn check_literal(kind: Kind, operand: &Value) -> Result<(), &'static str> {
    let ok = match kind {
        Kind::String => operand.is_string(),
        Kind::Numeric => operand.is_number(),
        Kind::Boolean => operand.is_boolean(),
        Kind::Timestamp => operand.as_str().and_then(parse_timestamp).is_some(),
    };
    if ok {
        Ok(())
    } else {
        Err(match kind {
            Kind::String => "must be a string",
            Kind::Numeric => "must be a number",
            Kind::Boolean => "must be true or false",
            Kind::Timestamp => "must be an RFC 3339 timestamp such as 2016-08-18T17:33:00Z",
        })
    }
}

fn evaluate_condition(
    condition: &Condition,
    variable: &Path,
    value: Option<&Value>,
    data: &Value,
    context: &Value,
) -> Result<bool, String> {
    let missing = |path: &Path| {
        format!(
            "Invalid path '{path}': The choice state's condition path references an invalid value."
        )
    };
    match condition {
        Condition::Is { test, expected } => Ok(type_test(*test, value) == *expected),
        Condition::Matches(pattern) => {
            let value = value.ok_or_else(|| missing(variable))?;
            Ok(value
                .as_str()
                .is_some_and(|text| wildcard_match(pattern, text)))
        }
        Condition::Compare {
            kind,
            test,
            operand,
        } => {
            let value = value.ok_or_else(|| missing(variable))?;
            let expected = match operand {
                Operand::Literal(literal) => literal,
                Operand::Path(path) => select(path, data, context).ok_or_else(|| missing(path))?,
            };
            Ok(compare(*kind, value, expected).is_some_and(|ordering| test_holds(*test, ordering)))
        }
    }
}

fn type_test(test: TypeTest, value: Option<&Value>) -> bool {
    match (test, value) {
        (TypeTest::Present, value) => value.is_some(),
        (_, None) => false,
        (TypeTest::Null, Some(value)) => value.is_null(),
        (TypeTest::String, Some(value)) => value.is_string(),
        (TypeTest::Numeric, Some(value)) => value.is_number(),
        (TypeTest::Boolean, Some(value)) => value.is_boolean(),
        (TypeTest::Timestamp, Some(value)) => value.as_str().and_then(parse_timestamp).is_some(),
    }
}

fn test_holds(test: Test, ordering: Ordering) -> bool {
    match test {
        Test::Equals => ordering == Ordering::Equal,
        Test::LessThan => ordering == Ordering::Less,
        Test::GreaterThan => ordering == Ordering::Greater,
        Test::LessThanEquals => ordering != Ordering::Greater,
        Test::GreaterThanEquals => ordering != Ordering::Less,
    }
}

/// Orders `value` against `expected`; `None` when either is not of the
/// operator's type, which makes the comparison false (not an error).
fn compare(kind: Kind, value: &Value, expected: &Value) -> Option<Ordering> {
    match (kind, value, expected) {
        (Kind::String, Value::String(a), Value::String(b)) => Some(a.as_str().cmp(b.as_str())),
        (Kind::Numeric, Value::Number(a), Value::Number(b)) => compare_numbers(a, b),
        (Kind::Boolean, Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
        (Kind::Timestamp, Value::String(a), Value::String(b)) => {
            Some(parse_timestamp(a)?.cmp(&parse_timestamp(b)?))
        }
        _ => None,
    }
}

/// Integers are compared exactly; anything with a fraction as f64.
pub fn compare_numbers(a: &Number, b: &Number) -> Option<Ordering> {
    let exact = |n: &Number| {
        n.as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
    };
    match (exact(a), exact(b)) {
        (Some(x), Some(y)) => Some(x.cmp(&y)),
        _ => a.as_f64()?.partial_cmp(&b.as_f64()?),
    }
}

/// RFC 3339 with an uppercase `T` and, without a numeric offset, an
/// uppercase `Z` (the profile the ASL specification requires).
pub fn parse_timestamp(text: &str) -> Option<OffsetDateTime> {
    if text.get(10..11) != Some("T") || text.ends_with('z') {
        return None;
    }
    OffsetDateTime::parse(text, &Rfc3339).ok()
}

/// `*` matches any run of characters; `\*` is a literal star and `\\` a
/// literal backslash.
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    #[derive(Clone, Copy, PartialEq)]
    enum Token {
        Star,
        Char(char),
    }
    let mut tokens = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        tokens.push(match c {
            '\\' => Token::Char(chars.next().unwrap_or('\\')),
            '*' => Token::Star,
            other => Token::Char(other),
        });
    }
    let text: Vec<char> = text.chars().collect();
    // Greedy matching with backtracking to the last star: O(n·m) at worst.
    let (mut t, mut p) = (0_usize, 0_usize);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match tokens.get(p) {
            Some(Token::Char(c)) if *c == text[t] => {
                t += 1;
                p += 1;
            }
            Some(Token::Star) => {
                star = Some((p, t));
                p += 1;
            }
            _ => match star {
                Some((star_p, star_t)) => {
                    p = star_p + 1;
                    t = star_t + 1;
                    star = Some((star_p, star_t + 1));
                }
                None => return false,
            },
        }
    }
    tokens[p..].iter().all(|token| *token == Token::Star)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn holds(rule: Value, data: Value) -> Result<bool, String> {
        let mut rule = rule;
        rule["Next"] = json!("X");
        let choice = Choice::parse(&rule, "state C").unwrap();
        choice.rule.evaluate(&data, &json!({}))
    }

    #[test]
    fn numeric_comparisons_are_exact_for_integers_and_mix_with_floats() {
        let data = json!({"n": 10, "f": 2.5, "big": 9007199254740993_u64});
        assert_eq!(
            holds(
                json!({"Variable": "$.n", "NumericGreaterThanEquals": 10}),
                data.clone()
            ),
            Ok(true)
        );
        assert_eq!(
            holds(
                json!({"Variable": "$.n", "NumericLessThan": 10}),
                data.clone()
            ),
            Ok(false)
        );
        assert_eq!(
            holds(
                json!({"Variable": "$.n", "NumericEquals": 10.0}),
                data.clone()
            ),
            Ok(true)
        );
        assert_eq!(
            holds(
                json!({"Variable": "$.f", "NumericGreaterThan": 2}),
                data.clone()
            ),
            Ok(true)
        );
        assert_eq!(
            holds(
                json!({"Variable": "$.big", "NumericGreaterThan": 9007199254740992_u64}),
                data.clone()
            ),
            Ok(true)
        );
        assert_eq!(
            holds(
                json!({"Variable": "$.f", "NumericLessThanEqualsPath": "$.n"}),
                data
            ),
            Ok(true)
        );
    }

    #[test]
    fn type_mismatch_is_false_and_missing_variable_is_a_runtime_error() {
        let data = json!({"s": "10"});
        assert_eq!(
            holds(
                json!({"Variable": "$.s", "NumericEquals": 10}),
                data.clone()
            ),
            Ok(false)
        );
        let err = holds(
            json!({"Variable": "$.nope", "StringEquals": "x"}),
            data.clone(),
        )
        .unwrap_err();
        assert!(err.contains("Invalid path '$.nope'"), "{err}");
        assert_eq!(
            holds(
                json!({"Variable": "$.nope", "IsPresent": false}),
                data.clone()
            ),
            Ok(true)
        );
        assert_eq!(
            holds(json!({"Variable": "$.nope", "IsNull": true}), data),
            Ok(false)
        );
    }

    #[test]
    fn and_short_circuits_so_is_present_guards_a_comparison() {
        let rule = json!({"And": [
            {"Variable": "$.charge", "IsPresent": true},
            {"Variable": "$.charge.status", "StringEquals": "APPROVED"}
        ]});
        assert_eq!(holds(rule.clone(), json!({})), Ok(false));
        assert_eq!(
            holds(rule, json!({"charge": {"status": "APPROVED"}})),
            Ok(true)
        );
        let either = json!({"Or": [
            {"Variable": "$.a", "BooleanEquals": true},
            {"Not": {"Variable": "$.b", "StringEquals": "x"}}
        ]});
        assert_eq!(
            holds(either.clone(), json!({"a": false, "b": "y"})),
            Ok(true)
        );
        assert_eq!(holds(either, json!({"a": false, "b": "x"})), Ok(false));
    }

    #[test]
    fn timestamps_compare_as_instants_and_strings_match_wildcards() {
        let data = json!({
            "t": "2016-08-18T17:33:00Z",
            "u": "2016-08-18T19:33:00+02:00",
            "bad": "2016-08-18 17:33:00"
        });
        assert_eq!(
            holds(
                json!({"Variable": "$.t", "TimestampEqualsPath": "$.u"}),
                data.clone()
            ),
            Ok(true)
        );
        assert_eq!(
            holds(
                json!({"Variable": "$.t", "TimestampLessThan": "2016-08-18T17:33:01Z"}),
                data.clone()
            ),
            Ok(true)
        );
        assert_eq!(
            holds(
                json!({"Variable": "$.bad", "TimestampLessThan": "2030-01-01T00:00:00Z"}),
                data.clone()
            ),
            Ok(false)
        );
        assert_eq!(
            holds(
                json!({"Variable": "$.t", "IsTimestamp": true}),
                data.clone()
            ),
            Ok(true)
        );
        assert_eq!(
            holds(json!({"Variable": "$.bad", "IsTimestamp": true}), data),
            Ok(false)
        );
        assert!(wildcard_match("log-*.txt", "log-2024.txt"));
        assert!(wildcard_match("*", ""));
        assert!(wildcard_match(r"a\*b*", "a*bc"));
        assert!(!wildcard_match(r"a\*b", "axb"));
        assert!(wildcard_match("*.a*b", "x.aab"));
        assert!(!wildcard_match("a*b", "a"));
    }

    #[test]
    fn bad_rules_are_refused_at_load() {
        for rule in [
            json!({"Variable": "$.a", "StringEquals": 1, "Next": "X"}),
            json!({"Variable": "$.a", "StringEquals": "x", "NumericEquals": 1, "Next": "X"}),
            json!({"Variable": "$.a", "BooleanLessThan": true, "Next": "X"}),
            json!({"Variable": "$.a", "TimestampEquals": "yesterday", "Next": "X"}),
            json!({"And": [], "Next": "X"}),
            json!({"Not": {"Variable": "$.a", "IsNull": true, "Next": "Y"}, "Next": "X"}),
            json!({"Variable": "$.a", "StringEquals": "x"}),
        ] {
            assert!(
                Choice::parse(&rule, "state C").is_err(),
                "{rule} should be refused"
            );
        }
    }
}
