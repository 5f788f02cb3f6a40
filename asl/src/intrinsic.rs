//! Intrinsic functions (`States.Format(...)` etc.), parsed when the definition
//! is loaded and evaluated against the state's data and the context object.
//! Implemented: States.Format, States.StringToJson, States.JsonToString,
//! States.Array, States.ArrayGetItem, States.ArrayLength, States.ArrayContains,
//! States.StringSplit, States.MathAdd, States.UUID. Any other `States.*`
//! function is refused at load.

use serde_json::{Number, Value};

use super::path::Path;
use super::payload::Scope;

/// AWS allows at most 10 nested intrinsic functions in one field.
pub const NESTING_DEPTH_MAX: u32 = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    Format,
    StringToJson,
    JsonToString,
    Array,
    ArrayGetItem,
    ArrayLength,
    ArrayContains,
    StringSplit,
    MathAdd,
    Uuid,
}

impl Function {
    fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "States.Format" => Self::Format,
            "States.StringToJson" => Self::StringToJson,
            "States.JsonToString" => Self::JsonToString,
            "States.Array" => Self::Array,
            "States.ArrayGetItem" => Self::ArrayGetItem,
            "States.ArrayLength" => Self::ArrayLength,
            "States.ArrayContains" => Self::ArrayContains,
            "States.StringSplit" => Self::StringSplit,
            "States.MathAdd" => Self::MathAdd,
            "States.UUID" => Self::Uuid,
            _ => return None,
        })
    }

    /// (minimum, maximum) number of arguments.
    fn arity(self) -> (usize, usize) {
        match self {
            Self::Format => (1, usize::MAX),
            Self::Array => (0, usize::MAX),
            Self::StringToJson | Self::JsonToString | Self::ArrayLength => (1, 1),
            Self::ArrayGetItem | Self::ArrayContains | Self::StringSplit | Self::MathAdd => (2, 2),
            Self::Uuid => (0, 0),
        }
    }
}

/// A piece of a `States.Format` template: text, or a `{}` to fill.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Hole,
}

#[derive(Debug, Clone, PartialEq)]
enum Arg {
    /// A quoted string; `pieces` keeps escaped braces apart from `{}` holes.
    Str {
        value: String,
        pieces: Vec<Piece>,
    },
    Literal(Value),
    Path(Path),
    Call(Intrinsic),
}

/// A parsed intrinsic function call.
#[derive(Debug, Clone, PartialEq)]
pub struct Intrinsic {
    text: String,
    function: Function,
    args: Vec<Arg>,
}

/// Why an intrinsic's text was refused at load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntrinsicError {
    Syntax(String),
    Unsupported(String),
}

impl Intrinsic {
    pub fn parse(text: &str) -> Result<Self, IntrinsicError> {
        let mut parser = Parser {
            chars: text.chars().collect(),
            position: 0,
        };
        let call = parser.call(text, 1)?;
        parser.skip_whitespace();
        if parser.position != parser.chars.len() {
            return Err(IntrinsicError::Syntax(format!(
                "'{text}': unexpected text after the closing parenthesis"
            )));
        }
        Ok(call)
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn evaluate(&self, scope: &mut Scope<'_>) -> Result<Value, String> {
        let mut values = Vec::with_capacity(self.args.len());
        for arg in &self.args {
            values.push(match arg {
                Arg::Str { value, .. } => Value::String(value.clone()),
                Arg::Literal(value) => value.clone(),
                Arg::Path(path) => scope.resolve(path).cloned().ok_or_else(|| {
                    format!(
                        "The function '{}' had the following error: \
                         the path '{path}' could not be found",
                        self.text
                    )
                })?,
                Arg::Call(call) => call.evaluate(scope)?,
            });
        }
        self.apply(values, scope).map_err(|message| {
            format!(
                "The function '{}' had the following error: {message}",
                self.text
            )
        })
    }

    fn apply(&self, values: Vec<Value>, scope: &mut Scope<'_>) -> Result<Value, String> {
        match self.function {
            Function::Format => self.format(values),
            Function::StringToJson => {
                let text = string_arg(&values, 0)?;
                serde_json::from_str(text).map_err(|e| format!("invalid JSON string: {e}"))
            }
            Function::JsonToString => serde_json::to_string(nth(&values, 0)?)
                .map(Value::String)
                .map_err(|e| e.to_string()),
            Function::Array => Ok(Value::Array(values)),
            Function::ArrayGetItem => {
                let items = array_arg(&values, 0)?;
                let index = index_arg(&values, 1)?;
                items
                    .get(index)
                    .cloned()
                    .ok_or_else(|| format!("index {index} is out of bounds"))
            }
            Function::ArrayLength => Ok(Value::from(array_arg(&values, 0)?.len())),
            Function::ArrayContains => Ok(Value::Bool(
                array_arg(&values, 0)?.contains(nth(&values, 1)?),
            )),
            Function::StringSplit => {
                let text = string_arg(&values, 0)?;
                let delimiters: Vec<char> = string_arg(&values, 1)?.chars().collect();
                Ok(Value::Array(
                    text.split(delimiters.as_slice())
                        .filter(|part| !part.is_empty())
                        .map(|part| Value::String(part.to_owned()))
                        .collect(),
                ))
            }
            Function::MathAdd => {
                let sum = integer_arg(&values, 0)?
                    .checked_add(integer_arg(&values, 1)?)
                    .ok_or("the sum overflows")?;
                Ok(Value::from(sum))
            }
            Function::Uuid => Ok(Value::String(uuid_v4(scope.random_u128()))),
        }
    }

    fn format(&self, values: Vec<Value>) -> Result<Value, String> {
        let pieces = match self.args.first() {
            Some(Arg::Str { pieces, .. }) => pieces.clone(),
            _ => split_template(string_arg(&values, 0)?),
        };
        let holes = pieces.iter().filter(|p| **p == Piece::Hole).count();
        let supplied = values.len().saturating_sub(1);
        if holes != supplied {
            return Err(format!(
                "the template has {holes} {{}} but {supplied} arguments follow it"
            ));
        }
        let mut fill = values.iter().skip(1);
        let mut out = String::new();
        for piece in &pieces {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Hole => match fill.next() {
                    Some(Value::String(text)) => out.push_str(text),
                    Some(other) => out.push_str(&other.to_string()),
                    None => return Err("missing argument".into()),
                },
            }
        }
        Ok(Value::String(out))
    }
}

fn nth(values: &[Value], index: usize) -> Result<&Value, String> {
    values
        .get(index)
        .ok_or_else(|| format!("argument {} is missing", index + 1))
}

fn string_arg(values: &[Value], index: usize) -> Result<&str, String> {
    match values.get(index) {
        Some(Value::String(text)) => Ok(text),
        other => Err(format!(
            "argument {} must be a string, got {other:?}",
            index + 1
        )),
    }
}

fn array_arg(values: &[Value], index: usize) -> Result<&Vec<Value>, String> {
    match values.get(index) {
        Some(Value::Array(items)) => Ok(items),
        other => Err(format!(
            "argument {} must be an array, got {other:?}",
            index + 1
        )),
    }
}

fn index_arg(values: &[Value], index: usize) -> Result<usize, String> {
    values
        .get(index)
        .and_then(Value::as_u64)
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| format!("argument {} must be a non-negative integer", index + 1))
}

/// MathAdd takes integers; AWS rounds a non-integer to the nearest integer the
/// way Java's `Math.round` does (halves towards positive infinity).
fn integer_arg(values: &[Value], index: usize) -> Result<i64, String> {
    let not_integer = || format!("argument {} must be a number", index + 1);
    let number: &Number = match values.get(index) {
        Some(Value::Number(number)) => number,
        _ => return Err(not_integer()),
    };
    if let Some(value) = number.as_i64() {
        return Ok(value);
    }
    if number.is_u64() {
        return Err(format!("argument {} is out of range", index + 1));
    }
    let float = number.as_f64().ok_or_else(not_integer)?;
    format!("{:.0}", java_round(float))
        .parse::<i64>()
        .map_err(|_| format!("argument {} is out of range", index + 1))
}

#[allow(clippy::float_arithmetic)] // rounding a JSON float the way AWS (Java) does; not money
fn java_round(value: f64) -> f64 {
    (value + 0.5).floor()
}

/// Formats 128 random bits as a version 4 UUID.
pub fn uuid_v4(random: u128) -> String {
    let mut bytes = random.to_be_bytes();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// A template taken from the data at run time: `{}` is a hole, no escapes.
fn split_template(text: &str) -> Vec<Piece> {
    let mut pieces = Vec::new();
    let mut parts = text.split("{}").peekable();
    while let Some(part) = parts.next() {
        if !part.is_empty() {
            pieces.push(Piece::Text(part.to_owned()));
        }
        if parts.peek().is_some() {
            pieces.push(Piece::Hole);
        }
    }
    pieces
}

struct Parser {
    chars: Vec<char>,
    position: usize,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.position).copied()
    }

    fn skip_whitespace(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.position += 1;
        }
    }

    fn syntax(&self, text: &str, message: &str) -> IntrinsicError {
        IntrinsicError::Syntax(format!(
            "'{text}': {message} at character {}",
            self.position
        ))
    }

    fn call(&mut self, text: &str, depth: u32) -> Result<Intrinsic, IntrinsicError> {
        if depth > NESTING_DEPTH_MAX {
            return Err(self.syntax(text, "more than 10 nested intrinsic functions"));
        }
        let start = self.position;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '.')
        {
            self.position += 1;
        }
        let name: String = self.chars[start..self.position].iter().collect();
        let function = Function::from_name(&name).ok_or_else(|| {
            IntrinsicError::Unsupported(format!("intrinsic function {name} in '{text}'"))
        })?;
        self.skip_whitespace();
        if self.peek() != Some('(') {
            return Err(self.syntax(text, "expected ("));
        }
        self.position += 1;
        let args = self.arguments(text, depth)?;
        let (min, max) = function.arity();
        if args.len() < min || args.len() > max {
            return Err(IntrinsicError::Syntax(format!(
                "'{text}': {name} takes {} arguments, got {}",
                if min == max {
                    min.to_string()
                } else {
                    format!("at least {min}")
                },
                args.len()
            )));
        }
        let source: String = self.chars[start..self.position].iter().collect();
        Ok(Intrinsic {
            text: source,
            function,
            args,
        })
    }

    fn arguments(&mut self, text: &str, depth: u32) -> Result<Vec<Arg>, IntrinsicError> {
        let mut args = Vec::new();
        self.skip_whitespace();
        if self.peek() == Some(')') {
            self.position += 1;
            return Ok(args);
        }
        loop {
            self.skip_whitespace();
            args.push(self.argument(text, depth)?);
            self.skip_whitespace();
            match self.peek() {
                Some(',') => self.position += 1,
                Some(')') => {
                    self.position += 1;
                    return Ok(args);
                }
                _ => return Err(self.syntax(text, "expected , or )")),
            }
        }
    }

    fn argument(&mut self, text: &str, depth: u32) -> Result<Arg, IntrinsicError> {
        match self.peek() {
            Some('\'') => self.string(text),
            Some('$') => {
                let raw = self.path_text();
                Path::parse(raw.trim())
                    .map(Arg::Path)
                    .map_err(|e| IntrinsicError::Syntax(e.0))
            }
            Some('S') => Ok(Arg::Call(self.call(text, depth + 1)?)),
            Some(_) => {
                let start = self.position;
                while self
                    .peek()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '+' | '.'))
                {
                    self.position += 1;
                }
                let word: String = self.chars[start..self.position].iter().collect();
                serde_json::from_str::<Value>(&word)
                    .ok()
                    .filter(|v| !v.is_object() && !v.is_array() && !v.is_string())
                    .map(Arg::Literal)
                    .ok_or_else(|| self.syntax(text, &format!("invalid argument '{word}'")))
            }
            None => Err(self.syntax(text, "unexpected end")),
        }
    }

    /// A path argument runs until the `,` or `)` that is not inside brackets.
    fn path_text(&mut self) -> String {
        let start = self.position;
        let mut quote: Option<char> = None;
        let mut brackets = 0_u32;
        while let Some(c) = self.peek() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '\'' | '"') => quote = Some(c),
                (None, '[') => brackets += 1,
                (None, ']') => brackets = brackets.saturating_sub(1),
                (None, ',' | ')') if brackets == 0 => break,
                _ => {}
            }
            self.position += 1;
        }
        self.chars[start..self.position].iter().collect()
    }

    fn string(&mut self, text: &str) -> Result<Arg, IntrinsicError> {
        self.position += 1;
        let mut value = String::new();
        let mut pieces = Vec::new();
        let mut current = String::new();
        loop {
            let c = self
                .peek()
                .ok_or_else(|| self.syntax(text, "unclosed string"))?;
            self.position += 1;
            match c {
                '\'' => break,
                '\\' => {
                    let escaped = self
                        .peek()
                        .filter(|e| matches!(e, '\'' | '{' | '}' | '\\'))
                        .ok_or_else(|| self.syntax(text, "open escape \\"))?;
                    self.position += 1;
                    value.push(escaped);
                    current.push(escaped);
                }
                '{' if self.peek() == Some('}') => {
                    self.position += 1;
                    value.push_str("{}");
                    if !current.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut current)));
                    }
                    pieces.push(Piece::Hole);
                }
                other => {
                    value.push(other);
                    current.push(other);
                }
            }
        }
        if !current.is_empty() {
            pieces.push(Piece::Text(current));
        }
        Ok(Arg::Str { value, pieces })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use serde_json::json;

    fn eval(text: &str, data: Value) -> Result<Value, String> {
        let context = json!({"Execution": {"Name": "run-1"}});
        let mut rng = StdRng::seed_from_u64(7);
        let mut scope = Scope::new(&data, &context, &mut rng);
        Intrinsic::parse(text).unwrap().evaluate(&mut scope)
    }

    #[test]
    fn math_add_keeps_integers_and_rounds_like_aws() {
        assert_eq!(
            eval(
                "States.MathAdd($.value1, $.step)",
                json!({"value1": 111, "step": -1})
            ),
            Ok(json!(110))
        );
        assert_eq!(
            eval("States.MathAdd($.a, 1)", json!({"a": 1.5})),
            Ok(json!(3))
        );
        assert_eq!(
            eval("States.MathAdd($.a, 0)", json!({"a": -2.5})),
            Ok(json!(-2))
        );
        assert!(eval("States.MathAdd($.a, 1)", json!({"a": "1"})).is_err());
        assert!(eval("States.MathAdd($.a, 1)", json!({})).is_err());
    }

    #[test]
    fn format_fills_holes_and_keeps_escaped_braces() {
        let data = json!({"name": "Arnav", "template": "Hello, my name is {}."});
        assert_eq!(
            eval(
                "States.Format('Hello, my name is {}.', $.name)",
                data.clone()
            ),
            Ok(json!("Hello, my name is Arnav."))
        );
        assert_eq!(
            eval("States.Format($.template, $.name)", data),
            Ok(json!("Hello, my name is Arnav."))
        );
        assert_eq!(
            eval(r"States.Format('\{\} {} it\'s', 5)", json!({})),
            Ok(json!("{} 5 it's"))
        );
        assert!(eval("States.Format('{} {}', 1)", json!({})).is_err());
    }

    #[test]
    fn json_string_array_and_uuid() {
        let data = json!({"escaped": "{\"foo\": \"bar\"}", "raw": {"foo": "bar"}, "Id": 123456});
        assert_eq!(
            eval("States.StringToJson($.escaped)", data.clone()),
            Ok(json!({"foo": "bar"}))
        );
        assert_eq!(
            eval("States.JsonToString($.raw)", data.clone()),
            Ok(json!("{\"foo\":\"bar\"}"))
        );
        assert_eq!(
            eval(
                "States.Array($.Id, 'x', States.ArrayLength(States.Array(1, 2)))",
                data
            ),
            Ok(json!([123456, "x", 2]))
        );
        assert_eq!(
            eval("States.StringSplit('a.b+c', '.+')", json!({})),
            Ok(json!(["a", "b", "c"]))
        );
        assert_eq!(
            eval("States.Format('{}', $$.Execution.Name)", json!({})),
            Ok(json!("run-1"))
        );
        let uuid = eval("States.UUID()", json!({})).unwrap();
        let uuid = uuid.as_str().unwrap();
        assert_eq!(uuid.len(), 36);
        assert_eq!(&uuid[14..15], "4");
    }

    #[test]
    fn unknown_functions_and_bad_syntax_are_refused_at_load() {
        assert!(matches!(
            Intrinsic::parse("States.Hash($.a, 'SHA-256')"),
            Err(IntrinsicError::Unsupported(_))
        ));
        assert!(matches!(
            Intrinsic::parse("States.MathAdd($.a)"),
            Err(IntrinsicError::Syntax(_))
        ));
        assert!(matches!(
            Intrinsic::parse("States.Format('x\\q')"),
            Err(IntrinsicError::Syntax(_))
        ));
        assert!(matches!(
            Intrinsic::parse("States.Array(1) extra"),
            Err(IntrinsicError::Syntax(_))
        ));
    }
}
