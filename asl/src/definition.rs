//! Parses and validates a definition into a typed model. Every field is
//! either understood or refused with an error naming the state and the field:
//! nothing the interpreter does not implement is silently ignored.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};
use time::OffsetDateTime;

use super::choice::{Choice, parse_timestamp};
use super::error::{AslError, names};
use super::path::{Path, Root};
use super::payload::{Expression, Payload};

/// AWS's upper bound for IntervalSeconds, MaxAttempts, TimeoutSeconds and Wait Seconds.
pub const SECONDS_MAX: u64 = 99_999_999;
/// AWS's upper bound for MaxDelaySeconds (exclusive bound 31622401).
pub const MAX_DELAY_SECONDS_MAX: u64 = 31_622_400;
pub const LAMBDA_INVOKE: &str = "arn:aws:states:::lambda:invoke";
pub const LAMBDA_INVOKE_WAIT_FOR_TASK_TOKEN: &str =
    "arn:aws:states:::lambda:invoke.waitForTaskToken";
/// The context path a callback task hands its token on with.
const TASK_TOKEN_PATH: &str = "$$.Task.Token";

/// Fields of the ASL that this interpreter knows but does not implement.
const UNSUPPORTED_FIELDS: &[&str] = &[
    "HeartbeatSeconds",
    "HeartbeatSecondsPath",
    "TimeoutSecondsPath",
    "Credentials",
    "Assign",
    "Arguments",
    "Output",
    "Branches",
    "Iterator",
    "ItemProcessor",
    "ItemsPath",
    "ItemSelector",
    "ItemReader",
    "ResultWriter",
    "MaxConcurrency",
    "MaxConcurrencyPath",
    "ToleratedFailurePercentage",
    "ToleratedFailureCount",
    "Label",
    "Items",
    "Condition",
];

#[derive(Debug, Clone, PartialEq)]
pub struct Definition {
    pub start_at: String,
    pub timeout_seconds: Option<u64>,
    pub states: BTreeMap<String, State>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct State {
    pub name: String,
    pub input_path: DataPath,
    pub output_path: DataPath,
    pub kind: StateKind,
}

/// InputPath/OutputPath: a path into the data, or `null` (an empty object).
#[derive(Debug, Clone, PartialEq)]
pub enum DataPath {
    Select(Path),
    Null,
}

/// ResultPath: where the result goes in the raw input, or `null` (discard it).
#[derive(Debug, Clone, PartialEq)]
pub enum ResultPath {
    Insert(Path),
    Discard,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    Next(String),
    End,
}

#[derive(Debug, Clone, PartialEq)]
pub enum StateKind {
    Pass(PassState),
    Task(Box<TaskState>),
    Choice(ChoiceState),
    Wait(WaitState),
    Succeed,
    Fail(FailState),
}

#[derive(Debug, Clone, PartialEq)]
pub struct PassState {
    pub result: Option<Value>,
    pub parameters: Option<Payload>,
    pub result_path: ResultPath,
    pub transition: Transition,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    /// A Lambda function ARN: history events are `LambdaFunction*`.
    LambdaFunction(String),
    /// `arn:aws:states:::lambda:invoke`: history events are `Task*`.
    LambdaInvoke,
    /// `arn:aws:states:::lambda:invoke.waitForTaskToken`: the callback
    /// pattern; the result is the token's SendTaskSuccess output.
    WaitForTaskToken,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TaskState {
    pub resource: Resource,
    pub parameters: Option<Payload>,
    pub result_selector: Option<Payload>,
    pub result_path: ResultPath,
    pub retry: Vec<Retrier>,
    pub catch: Vec<Catcher>,
    pub timeout_seconds: Option<u64>,
    /// Only on a callback task (`WaitForTaskToken`).
    pub heartbeat_seconds: Option<u64>,
    pub transition: Transition,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jitter {
    Full,
    None,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Retrier {
    pub error_equals: Vec<String>,
    pub interval_seconds: u32,
    pub max_attempts: u32,
    pub backoff_rate: f64,
    pub max_delay_seconds: Option<u32>,
    pub jitter: Jitter,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Catcher {
    pub error_equals: Vec<String>,
    pub next: String,
    pub result_path: ResultPath,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChoiceState {
    pub choices: Vec<Choice>,
    pub default: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum WaitFor {
    Seconds(u64),
    SecondsPath(Path),
    Timestamp(OffsetDateTime),
    TimestampPath(Path),
}

#[derive(Debug, Clone, PartialEq)]
pub struct WaitState {
    pub wait: WaitFor,
    pub transition: Transition,
}

/// Fail's Error/Cause: a literal, or ErrorPath/CausePath.
#[derive(Debug, Clone, PartialEq)]
pub enum FailText {
    Literal(String),
    Dynamic(Expression),
}

#[derive(Debug, Clone, PartialEq)]
pub struct FailState {
    pub error: Option<FailText>,
    pub cause: Option<FailText>,
}

/// Reads the fields of one JSON object, remembering which were used, so the
/// rest can be reported.
struct Fields<'a> {
    location: String,
    map: &'a Map<String, Value>,
    used: BTreeSet<&'a str>,
}

impl<'a> Fields<'a> {
    fn new(location: impl Into<String>, value: &'a Value) -> Result<Self, AslError> {
        let location = location.into();
        let map = value.as_object().ok_or_else(|| {
            AslError::invalid(location.as_str(), "(self)", "must be a JSON object")
        })?;
        Ok(Self {
            location,
            map,
            used: BTreeSet::new(),
        })
    }

    fn take(&mut self, key: &'a str) -> Option<&'a Value> {
        let (key, value) = self.map.get_key_value(key)?;
        self.used.insert(key.as_str());
        Some(value)
    }

    fn invalid(&self, field: &str, message: impl Into<String>) -> AslError {
        AslError::invalid(self.location.as_str(), field, message)
    }

    fn string(&mut self, key: &'a str) -> Result<Option<&'a str>, AslError> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::String(text)) => Ok(Some(text)),
            Some(_) => Err(self.invalid(key, "must be a string")),
        }
    }

    fn required_string(&mut self, key: &'a str) -> Result<&'a str, AslError> {
        self.string(key)?
            .ok_or_else(|| self.invalid(key, "is required"))
    }

    fn integer(&mut self, key: &'a str, min: u64, max: u64) -> Result<Option<u64>, AslError> {
        match self.take(key) {
            None => Ok(None),
            Some(value) => value
                .as_u64()
                .filter(|n| (min..=max).contains(n))
                .map(Some)
                .ok_or_else(|| self.invalid(key, format!("must be an integer in [{min}, {max}]"))),
        }
    }

    fn data_path(&mut self, key: &'a str) -> Result<DataPath, AslError> {
        match self.take(key) {
            None => Ok(DataPath::Select(root_path())),
            Some(Value::Null) => Ok(DataPath::Null),
            Some(Value::String(text)) => self.path(key, text).map(DataPath::Select),
            Some(_) => Err(self.invalid(key, "must be a path or null")),
        }
    }

    fn result_path(&mut self, key: &'a str) -> Result<ResultPath, AslError> {
        match self.data_path(key)? {
            DataPath::Select(path) => Ok(ResultPath::Insert(path)),
            DataPath::Null => Ok(ResultPath::Discard),
        }
    }

    /// A path into the state's data (`$…`, not the context object).
    fn path(&self, key: &str, text: &str) -> Result<Path, AslError> {
        let path = Path::parse(text).map_err(|e| self.invalid(key, e.0))?;
        if path.root() == Root::Context {
            return Err(AslError::unsupported(
                self.location.as_str(),
                key,
                "a context-object path ($$) here",
            ));
        }
        Ok(path)
    }

    fn payload(&mut self, key: &'a str) -> Result<Option<Payload>, AslError> {
        self.take(key)
            .map(|value| Payload::parse(value, &self.location, key))
            .transpose()
    }

    /// Reports the first field nobody read.
    fn finish(self) -> Result<(), AslError> {
        let unread = self
            .map
            .keys()
            .find(|key| !self.used.contains(key.as_str()));
        match unread {
            None => Ok(()),
            Some(key) if UNSUPPORTED_FIELDS.contains(&key.as_str()) => Err(AslError::unsupported(
                self.location.as_str(),
                key.as_str(),
                "refused rather than ignored",
            )),
            Some(key) => Err(self.invalid(key, "unknown field for this state type")),
        }
    }
}

fn root_path() -> Path {
    Path::data_root()
}

/// Parses the definition JSON (after DefinitionSubstitutions).
pub fn parse(root: &Value) -> Result<Definition, AslError> {
    let mut fields = Fields::new("definition", root)?;
    fields.take("Comment");
    if let Some(version) = fields.string("Version")?.filter(|v| *v != "1.0") {
        return Err(fields.invalid("Version", format!("unknown version {version}")));
    }
    query_language(&mut fields)?;
    let start_at = fields.required_string("StartAt")?.to_owned();
    let timeout_seconds = fields.integer("TimeoutSeconds", 1, SECONDS_MAX)?;
    let states_value = fields
        .take("States")
        .ok_or_else(|| fields.invalid("States", "is required"))?;
    fields.finish()?;
    let states_map = states_value
        .as_object()
        .filter(|m| !m.is_empty())
        .ok_or_else(|| AslError::invalid("definition", "States", "must be a non-empty object"))?;
    let mut states = BTreeMap::new();
    for (name, value) in states_map {
        states.insert(name.clone(), parse_state(name, value)?);
    }
    let definition = Definition {
        start_at,
        timeout_seconds,
        states,
    };
    validate_transitions(&definition)?;
    Ok(definition)
}

fn query_language(fields: &mut Fields<'_>) -> Result<(), AslError> {
    match fields.string("QueryLanguage")? {
        None | Some("JSONPath") => Ok(()),
        Some(other) => Err(AslError::unsupported(
            fields.location.as_str(),
            "QueryLanguage",
            format!("{other} (only JSONPath is implemented)"),
        )),
    }
}

fn parse_state(name: &str, value: &Value) -> Result<State, AslError> {
    let mut fields = Fields::new(format!("state '{name}'"), value)?;
    fields.take("Comment");
    query_language(&mut fields)?;
    let state_type = fields.required_string("Type")?;
    let (input_path, output_path) = if state_type == "Fail" {
        (DataPath::Select(root_path()), DataPath::Select(root_path()))
    } else {
        (
            fields.data_path("InputPath")?,
            fields.data_path("OutputPath")?,
        )
    };
    let kind = match state_type {
        "Pass" => StateKind::Pass(parse_pass(&mut fields)?),
        "Task" => StateKind::Task(Box::new(parse_task(&mut fields)?)),
        "Choice" => StateKind::Choice(parse_choice(&mut fields)?),
        "Wait" => StateKind::Wait(parse_wait(&mut fields)?),
        "Succeed" => StateKind::Succeed,
        "Fail" => StateKind::Fail(parse_fail(&mut fields)?),
        "Parallel" | "Map" => {
            return Err(AslError::unsupported(
                fields.location.as_str(),
                "Type",
                format!("{state_type} states are not implemented"),
            ));
        }
        other => return Err(fields.invalid("Type", format!("unknown state type {other}"))),
    };
    fields.finish()?;
    Ok(State {
        name: name.to_owned(),
        input_path,
        output_path,
        kind,
    })
}

fn transition(fields: &mut Fields<'_>) -> Result<Transition, AslError> {
    let next = fields.string("Next")?;
    let end = match fields.take("End") {
        None => false,
        Some(Value::Bool(end)) => *end,
        Some(_) => return Err(fields.invalid("End", "must be true or false")),
    };
    match (next, end) {
        (Some(next), false) => Ok(Transition::Next(next.to_owned())),
        (None, true) => Ok(Transition::End),
        (Some(_), true) => {
            Err(fields.invalid("Next", "a state has either Next or End: true, not both"))
        }
        (None, false) => Err(fields.invalid("Next", "a state needs Next or End: true")),
    }
}

fn parse_pass(fields: &mut Fields<'_>) -> Result<PassState, AslError> {
    Ok(PassState {
        result: fields.take("Result").cloned(),
        parameters: fields.payload("Parameters")?,
        result_path: fields.result_path("ResultPath")?,
        transition: transition(fields)?,
    })
}

fn parse_task(fields: &mut Fields<'_>) -> Result<TaskState, AslError> {
    let resource = parse_resource(fields.required_string("Resource")?, fields)?;
    let parameters = fields.payload("Parameters")?;
    match resource {
        Resource::LambdaInvoke => {
            check_lambda_invoke_parameters(fields, fields.map.get("Parameters"))?;
        }
        Resource::WaitForTaskToken => {
            check_lambda_invoke_parameters(fields, fields.map.get("Parameters"))?;
            check_passes_task_token(fields, fields.map.get("Parameters"))?;
        }
        Resource::LambdaFunction(_) => {}
    }
    let retry = match fields.take("Retry") {
        None => Vec::new(),
        Some(value) => parse_retry(value, &fields.location)?,
    };
    let catch = match fields.take("Catch") {
        None => Vec::new(),
        Some(value) => parse_catch(value, &fields.location)?,
    };
    let timeout_seconds = fields.integer("TimeoutSeconds", 1, SECONDS_MAX)?;
    let heartbeat_seconds = heartbeat_seconds(fields, &resource, timeout_seconds)?;
    Ok(TaskState {
        resource,
        parameters,
        result_selector: fields.payload("ResultSelector")?,
        result_path: fields.result_path("ResultPath")?,
        retry,
        catch,
        timeout_seconds,
        heartbeat_seconds,
        transition: transition(fields)?,
    })
}

/// HeartbeatSeconds: implemented for callback tasks only, and smaller than
/// TimeoutSeconds.
fn heartbeat_seconds(
    fields: &mut Fields<'_>,
    resource: &Resource,
    timeout_seconds: Option<u64>,
) -> Result<Option<u64>, AslError> {
    if *resource != Resource::WaitForTaskToken {
        if fields.map.contains_key("HeartbeatSeconds") {
            return Err(AslError::unsupported(
                fields.location.as_str(),
                "HeartbeatSeconds",
                format!("only on {LAMBDA_INVOKE_WAIT_FOR_TASK_TOKEN} tasks"),
            ));
        }
        return Ok(None);
    }
    let heartbeat_seconds = fields.integer("HeartbeatSeconds", 1, SECONDS_MAX)?;
    if let (Some(heartbeat), Some(timeout)) = (heartbeat_seconds, timeout_seconds)
        && heartbeat >= timeout
    {
        return Err(fields.invalid(
            "HeartbeatSeconds",
            format!("must be smaller than TimeoutSeconds ({heartbeat} >= {timeout})"),
        ));
    }
    Ok(heartbeat_seconds)
}

fn parse_resource(text: &str, fields: &Fields<'_>) -> Result<Resource, AslError> {
    if text == LAMBDA_INVOKE {
        return Ok(Resource::LambdaInvoke);
    }
    if text == LAMBDA_INVOKE_WAIT_FOR_TASK_TOKEN {
        return Ok(Resource::WaitForTaskToken);
    }
    let parts: Vec<&str> = text.split(':').collect();
    let is_function_arn = parts.len() >= 7
        && parts.len() <= 8
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "lambda"
        && parts[5] == "function"
        && parts[3..].iter().all(|part| !part.is_empty());
    if is_function_arn {
        return Ok(Resource::LambdaFunction(text.to_owned()));
    }
    Err(AslError::unsupported(
        fields.location.as_str(),
        "Resource",
        format!(
            "{text} (only Lambda function ARNs, {LAMBDA_INVOKE} and \
             {LAMBDA_INVOKE_WAIT_FOR_TASK_TOKEN} are implemented)"
        ),
    ))
}

fn check_lambda_invoke_parameters(
    fields: &Fields<'_>,
    parameters: Option<&Value>,
) -> Result<(), AslError> {
    let map = parameters.and_then(Value::as_object).ok_or_else(|| {
        fields.invalid(
            "Parameters",
            "lambda:invoke needs Parameters with FunctionName",
        )
    })?;
    let mut has_function = false;
    for key in map.keys() {
        match key.strip_suffix(".$").unwrap_or(key) {
            "FunctionName" => has_function = true,
            "Payload" => {}
            other => {
                return Err(AslError::unsupported(
                    fields.location.as_str(),
                    format!("Parameters.{key}"),
                    format!("lambda:invoke parameter {other} (only FunctionName and Payload)"),
                ));
            }
        }
    }
    if !has_function {
        return Err(fields.invalid("Parameters", "lambda:invoke needs FunctionName"));
    }
    Ok(())
}

/// A callback task must hand its token on: some `.$` field of its
/// Parameters is, or contains, `$$.Task.Token`.
fn check_passes_task_token(
    fields: &Fields<'_>,
    parameters: Option<&Value>,
) -> Result<(), AslError> {
    if parameters.is_some_and(references_task_token) {
        return Ok(());
    }
    Err(fields.invalid(
        "Parameters",
        format!(
            "a .waitForTaskToken task must pass {TASK_TOKEN_PATH} in a `.$` field, \
             or nobody can answer it"
        ),
    ))
}

fn references_task_token(value: &Value) -> bool {
    match value {
        Value::Object(map) => map.iter().any(|(key, child)| match child {
            Value::String(text) if key.ends_with(".$") => text.contains(TASK_TOKEN_PATH),
            other => references_task_token(other),
        }),
        Value::Array(items) => items.iter().any(references_task_token),
        _ => false,
    }
}

fn error_equals(fields: &mut Fields<'_>, prefix: &str) -> Result<Vec<String>, AslError> {
    let field = format!("{prefix}.ErrorEquals");
    let names = fields
        .take("ErrorEquals")
        .and_then(Value::as_array)
        .filter(|items| !items.is_empty())
        .ok_or_else(|| fields.invalid(&field, "must be a non-empty array of error names"))?;
    names
        .iter()
        .map(|name| {
            name.as_str()
                .filter(|n| !n.is_empty())
                .map(str::to_owned)
                .ok_or_else(|| fields.invalid(&field, "error names are non-empty strings"))
        })
        .collect()
}

/// `States.ALL` must appear alone and in the last retrier or catcher.
fn check_states_all(lists: &[Vec<String>], location: &str, field: &str) -> Result<(), AslError> {
    for (index, list) in lists.iter().enumerate() {
        if list.iter().any(|name| name == names::ALL)
            && (list.len() > 1 || index + 1 != lists.len())
        {
            return Err(AslError::invalid(
                location,
                format!("{field}[{index}].ErrorEquals"),
                "States.ALL must appear alone, in the last entry",
            ));
        }
    }
    Ok(())
}

fn parse_retry(value: &Value, location: &str) -> Result<Vec<Retrier>, AslError> {
    let items = value
        .as_array()
        .ok_or_else(|| AslError::invalid(location, "Retry", "must be an array"))?;
    let mut retriers = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        retriers.push(parse_retrier(item, location, index)?);
    }
    let lists: Vec<Vec<String>> = retriers.iter().map(|r| r.error_equals.clone()).collect();
    check_states_all(&lists, location, "Retry")?;
    Ok(retriers)
}

fn parse_retrier(item: &Value, location: &str, index: usize) -> Result<Retrier, AslError> {
    let prefix = format!("Retry[{index}]");
    let mut fields = Fields::new(format!("{location} {prefix}"), item)?;
    fields.take("Comment");
    let error_equals = error_equals(&mut fields, &prefix)?;
    let small = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
    let interval_seconds = fields
        .integer("IntervalSeconds", 1, SECONDS_MAX)?
        .map_or(1, small);
    let max_attempts = fields
        .integer("MaxAttempts", 0, SECONDS_MAX)?
        .map_or(3, small);
    let max_delay_seconds = fields
        .integer("MaxDelaySeconds", 1, MAX_DELAY_SECONDS_MAX)?
        .map(small);
    let backoff_rate = match fields.take("BackoffRate") {
        None => 2.0,
        Some(value) => value
            .as_f64()
            .filter(|rate| rate.is_finite() && *rate >= 1.0)
            .ok_or_else(|| fields.invalid("BackoffRate", "must be a number >= 1.0"))?,
    };
    let jitter = match fields.string("JitterStrategy")? {
        None | Some("NONE") => Jitter::None,
        Some("FULL") => Jitter::Full,
        Some(other) => {
            return Err(fields.invalid("JitterStrategy", format!("{other} is not FULL or NONE")));
        }
    };
    fields.finish()?;
    Ok(Retrier {
        error_equals,
        interval_seconds,
        max_attempts,
        backoff_rate,
        max_delay_seconds,
        jitter,
    })
}

fn parse_catch(value: &Value, location: &str) -> Result<Vec<Catcher>, AslError> {
    let items = value
        .as_array()
        .ok_or_else(|| AslError::invalid(location, "Catch", "must be an array"))?;
    let mut catchers = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let prefix = format!("Catch[{index}]");
        let mut fields = Fields::new(format!("{location} {prefix}"), item)?;
        fields.take("Comment");
        let catcher = Catcher {
            error_equals: error_equals(&mut fields, &prefix)?,
            next: fields.required_string("Next")?.to_owned(),
            result_path: fields.result_path("ResultPath")?,
        };
        fields.finish()?;
        catchers.push(catcher);
    }
    let lists: Vec<Vec<String>> = catchers.iter().map(|c| c.error_equals.clone()).collect();
    check_states_all(&lists, location, "Catch")?;
    Ok(catchers)
}

fn parse_choice(fields: &mut Fields<'_>) -> Result<ChoiceState, AslError> {
    let items = fields
        .take("Choices")
        .and_then(Value::as_array)
        .filter(|items| !items.is_empty())
        .ok_or_else(|| fields.invalid("Choices", "must be a non-empty array"))?;
    let choices = items
        .iter()
        .map(|item| Choice::parse(item, &fields.location))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ChoiceState {
        choices,
        default: fields.string("Default")?.map(str::to_owned),
    })
}

fn parse_wait(fields: &mut Fields<'_>) -> Result<WaitState, AslError> {
    let mut waits = Vec::new();
    if let Some(seconds) = fields.integer("Seconds", 0, SECONDS_MAX)? {
        waits.push(WaitFor::Seconds(seconds));
    }
    if let Some(text) = fields.string("SecondsPath")? {
        waits.push(WaitFor::SecondsPath(fields.path("SecondsPath", text)?));
    }
    if let Some(text) = fields.string("Timestamp")? {
        let timestamp = parse_timestamp(text).ok_or_else(|| {
            fields.invalid(
                "Timestamp",
                "must be an RFC 3339 timestamp such as 2016-08-18T17:33:00Z",
            )
        })?;
        waits.push(WaitFor::Timestamp(timestamp));
    }
    if let Some(text) = fields.string("TimestampPath")? {
        waits.push(WaitFor::TimestampPath(fields.path("TimestampPath", text)?));
    }
    let wait = match waits.len() {
        1 => waits.remove(0),
        _ => {
            return Err(fields.invalid(
                "Seconds",
                "a Wait state needs exactly one of Seconds, SecondsPath, Timestamp, TimestampPath",
            ));
        }
    };
    Ok(WaitState {
        wait,
        transition: transition(fields)?,
    })
}

fn parse_fail(fields: &mut Fields<'_>) -> Result<FailState, AslError> {
    let mut text =
        |literal: &'static str, dynamic: &'static str| -> Result<Option<FailText>, AslError> {
            let location = fields.location.clone();
            match (fields.string(literal)?, fields.string(dynamic)?) {
                (Some(_), Some(_)) => Err(AslError::invalid(
                    location,
                    dynamic,
                    format!("{literal} and {dynamic} exclude each other"),
                )),
                (Some(text), None) => Ok(Some(FailText::Literal(text.to_owned()))),
                (None, Some(expression)) => Ok(Some(FailText::Dynamic(Expression::parse(
                    expression, &location, dynamic,
                )?))),
                (None, None) => Ok(None),
            }
        };
    Ok(FailState {
        error: text("Error", "ErrorPath")?,
        cause: text("Cause", "CausePath")?,
    })
}

/// Every target exists, and every state can be reached from StartAt.
fn validate_transitions(definition: &Definition) -> Result<(), AslError> {
    let exists = |target: &str, location: &str, field: &str| {
        if definition.states.contains_key(target) {
            Ok(())
        } else {
            Err(AslError::invalid(
                location,
                field,
                format!("no state named '{target}'"),
            ))
        }
    };
    exists(&definition.start_at, "definition", "StartAt")?;
    let mut reached = BTreeSet::new();
    let mut pending = vec![definition.start_at.as_str()];
    while let Some(name) = pending.pop() {
        if !reached.insert(name) {
            continue;
        }
        let Some(state) = definition.states.get(name) else {
            continue;
        };
        for (field, target) in targets(state) {
            exists(target, &format!("state '{name}'"), field)?;
            pending.push(target);
        }
    }
    match definition
        .states
        .keys()
        .find(|name| !reached.contains(name.as_str()))
    {
        Some(name) => Err(AslError::invalid(
            format!("state '{name}'"),
            "(self)",
            "is not reachable from StartAt",
        )),
        None => Ok(()),
    }
}

fn next_of(transition: &Transition) -> Option<&str> {
    match transition {
        Transition::Next(next) => Some(next.as_str()),
        Transition::End => None,
    }
}

fn targets(state: &State) -> Vec<(&'static str, &str)> {
    let next = next_of;
    let mut out: Vec<(&'static str, &str)> = Vec::new();
    match &state.kind {
        StateKind::Pass(pass) => out.extend(next(&pass.transition).map(|n| ("Next", n))),
        StateKind::Wait(wait) => out.extend(next(&wait.transition).map(|n| ("Next", n))),
        StateKind::Task(task) => {
            out.extend(next(&task.transition).map(|n| ("Next", n)));
            out.extend(task.catch.iter().map(|c| ("Catch.Next", c.next.as_str())));
        }
        StateKind::Choice(choice) => {
            out.extend(
                choice
                    .choices
                    .iter()
                    .map(|c| ("Choices.Next", c.next.as_str())),
            );
            out.extend(choice.default.as_deref().map(|d| ("Default", d)));
        }
        StateKind::Succeed | StateKind::Fail(_) => {}
    }
    out
}
