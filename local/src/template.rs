//! Reads `template.yml`, the single source of truth for tables (and, as the
//! local cloud grows, functions, the state machine and the API), so that local
//! and AWS cannot drift apart. Supports the intrinsic functions the template
//! uses (`!Ref`, `!Sub`, `!GetAtt` and their long forms); anything else in a
//! place the local cloud needs is an error, never silently ignored.

use std::collections::BTreeMap;
use std::path::Path;

use serde_yaml_ng::Value;

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("template is not valid YAML: {0}")]
    Yaml(#[from] serde_yaml_ng::Error),
    #[error("template: {0}")]
    Invalid(String),
}

fn invalid(message: impl Into<String>) -> TemplateError {
    TemplateError::Invalid(message.into())
}

/// Values the intrinsic functions resolve against.
#[derive(Debug, Clone)]
pub struct Context {
    pub stack_name: String,
    pub region: String,
    pub account_id: String,
}

impl Default for Context {
    fn default() -> Self {
        Self {
            stack_name: "local".into(),
            region: "us-east-1".into(),
            account_id: "000000000000".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttributeType {
    S,
    N,
    B,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    Hash,
    Range,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyElement {
    pub attribute: String,
    pub key_type: KeyType,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexSpec {
    pub name: String,
    pub key: Vec<KeyElement>,
    /// `ProjectionType`: `ALL` or `KEYS_ONLY` (`INCLUDE` is not supported locally).
    pub keys_only: bool,
}

/// One `AWS::DynamoDB::Table` resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSpec {
    pub logical_id: String,
    pub table_name: String,
    pub attributes: Vec<(String, AttributeType)>,
    pub key: Vec<KeyElement>,
    pub global_indexes: Vec<IndexSpec>,
    pub ttl_attribute: Option<String>,
}

/// One `AWS::Serverless::Function` resource, as the local cloud runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionSpec {
    pub logical_id: String,
    pub function_name: String,
    /// The cargo binary (`Metadata.BuildProperties.Binary`).
    pub binary: String,
    pub timeout_seconds: u32,
    pub memory_mb: u32,
    /// Globals plus the function's own variables, intrinsics resolved.
    pub environment: BTreeMap<String, String>,
    /// `Events` of type `Api`: (method upper-case, path like `/payments/{paymentId}`).
    pub api_routes: Vec<(String, String)>,
    /// `Events` of type `Schedule` / `ScheduleV2`, which the local cloud runs.
    pub schedules: Vec<ScheduleSpec>,
}

/// A scheduled invocation: `rate(…)` only (a `cron(…)` is refused locally).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleSpec {
    /// The event's name in the template (`Every5Minutes`).
    pub name: String,
    pub period: std::time::Duration,
    /// The event's `Input` (JSON text), `{}` when absent.
    pub input: String,
}

/// One `AWS::Serverless::StateMachine` resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateMachineSpec {
    pub logical_id: String,
    pub name: String,
    pub definition_uri: String,
    pub substitutions: BTreeMap<String, String>,
    pub workflow_type: String,
}

#[derive(Debug, Clone)]
pub struct Template {
    root: Value,
    context: Context,
    pub tables: Vec<TableSpec>,
    pub functions: Vec<FunctionSpec>,
    pub state_machines: Vec<StateMachineSpec>,
    /// Physical names of functions and state machines, known before anything
    /// that refers to them is resolved.
    names: BTreeMap<String, (ResourceKind, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ResourceKind {
    Function,
    StateMachine,
}

impl Template {
    pub fn load(path: &Path, context: Context) -> Result<Self, TemplateError> {
        let text = std::fs::read_to_string(path).map_err(|source| TemplateError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, context)
    }

    pub fn parse(text: &str, context: Context) -> Result<Self, TemplateError> {
        let root: Value = serde_yaml_ng::from_str(text)?;
        let mut template = Self {
            root,
            context,
            tables: Vec::new(),
            functions: Vec::new(),
            state_machines: Vec::new(),
            names: BTreeMap::new(),
        };
        template.tables = template.read_tables()?;
        template.names = template.read_names()?;
        template.functions = template.read_functions()?;
        template.state_machines = template.read_state_machines()?;
        Ok(template)
    }

    pub fn function(&self, logical_id: &str) -> Option<&FunctionSpec> {
        self.functions.iter().find(|f| f.logical_id == logical_id)
    }

    pub fn function_arn(&self, function_name: &str) -> String {
        format!(
            "arn:aws:lambda:{}:{}:function:{function_name}",
            self.context.region, self.context.account_id
        )
    }

    pub fn state_machine_arn(&self, name: &str) -> String {
        format!(
            "arn:aws:states:{}:{}:stateMachine:{name}",
            self.context.region, self.context.account_id
        )
    }

    pub fn context(&self) -> &Context {
        &self.context
    }

    fn typed_resources(&self, kind: &str) -> Result<Vec<(String, &Value)>, TemplateError> {
        let mut found = Vec::new();
        for (logical_id, resource) in self.resources()? {
            if resource.get("Type").and_then(Value::as_str) == Some(kind)
                && self.condition_holds(resource)?
            {
                let id = logical_id
                    .as_str()
                    .ok_or_else(|| invalid("non-string resource id"))?;
                found.push((id.to_owned(), resource));
            }
        }
        Ok(found)
    }

    /// Function and state machine names, resolved from their own properties
    /// (which may only use parameters and pseudo parameters).
    fn read_names(&self) -> Result<BTreeMap<String, (ResourceKind, String)>, TemplateError> {
        let mut names = BTreeMap::new();
        let kinds = [
            (
                "AWS::Serverless::Function",
                "FunctionName",
                ResourceKind::Function,
            ),
            (
                "AWS::Serverless::StateMachine",
                "Name",
                ResourceKind::StateMachine,
            ),
        ];
        for (resource_type, field, kind) in kinds {
            for (logical_id, resource) in self.typed_resources(resource_type)? {
                let name = match resource.get("Properties").and_then(|p| p.get(field)) {
                    Some(value) => self.resolve(value)?,
                    None => format!("{}-{logical_id}", self.context.stack_name),
                };
                names.insert(logical_id, (kind, name));
            }
        }
        Ok(names)
    }

    fn global_function_property(&self, field: &str) -> Option<&Value> {
        self.root
            .get("Globals")
            .and_then(|g| g.get("Function"))
            .and_then(|f| f.get(field))
    }

    fn read_functions(&self) -> Result<Vec<FunctionSpec>, TemplateError> {
        let mut functions = Vec::new();
        for (logical_id, resource) in self.typed_resources("AWS::Serverless::Function")? {
            let props = resource
                .get("Properties")
                .ok_or_else(|| invalid(format!("{logical_id}: no Properties")))?;
            let binary = resource
                .get("Metadata")
                .and_then(|m| m.get("BuildProperties"))
                .and_then(|b| b.get("Binary"))
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    invalid(format!(
                        "{logical_id}: Metadata.BuildProperties.Binary is missing"
                    ))
                })?;
            let number = |field: &str, default: u32| -> Result<u32, TemplateError> {
                match props
                    .get(field)
                    .or_else(|| self.global_function_property(field))
                {
                    Some(value) => self
                        .resolve(value)?
                        .parse()
                        .map_err(|_| invalid(format!("{logical_id}: {field}"))),
                    None => Ok(default),
                }
            };
            let mut environment = self.global_environment()?;
            let own = props
                .get("Environment")
                .and_then(|e| e.get("Variables"))
                .and_then(Value::as_mapping);
            for (name, value) in own.into_iter().flatten() {
                let name = name
                    .as_str()
                    .ok_or_else(|| invalid("non-string variable name"))?;
                environment.insert(name.to_owned(), self.resolve(value)?);
            }
            let function_name = self
                .names
                .get(&logical_id)
                .map(|(_, n)| n.clone())
                .unwrap_or_default();
            functions.push(FunctionSpec {
                api_routes: api_routes(props),
                schedules: schedules(props, &logical_id)?,
                timeout_seconds: number("Timeout", 3)?,
                memory_mb: number("MemorySize", 128)?,
                binary: binary.to_owned(),
                function_name,
                environment,
                logical_id,
            });
        }
        Ok(functions)
    }

    fn read_state_machines(&self) -> Result<Vec<StateMachineSpec>, TemplateError> {
        let mut machines = Vec::new();
        for (logical_id, resource) in self.typed_resources("AWS::Serverless::StateMachine")? {
            let props = resource
                .get("Properties")
                .ok_or_else(|| invalid(format!("{logical_id}: no Properties")))?;
            let definition_uri = text(props, "DefinitionUri", &logical_id)?;
            let mut substitutions = BTreeMap::new();
            let declared = props
                .get("DefinitionSubstitutions")
                .and_then(Value::as_mapping);
            for (name, value) in declared.into_iter().flatten() {
                let name = name
                    .as_str()
                    .ok_or_else(|| invalid("non-string substitution name"))?;
                substitutions.insert(name.to_owned(), self.resolve(value)?);
            }
            let workflow_type = match props.get("Type") {
                Some(value) => self.resolve(value)?,
                None => "STANDARD".to_owned(),
            };
            let name = self
                .names
                .get(&logical_id)
                .map(|(_, n)| n.clone())
                .unwrap_or_default();
            machines.push(StateMachineSpec {
                logical_id,
                name,
                definition_uri,
                substitutions,
                workflow_type,
            });
        }
        Ok(machines)
    }

    fn resources(&self) -> Result<&serde_yaml_ng::Mapping, TemplateError> {
        self.root
            .get("Resources")
            .and_then(Value::as_mapping)
            .ok_or_else(|| invalid("no Resources"))
    }

    fn read_tables(&self) -> Result<Vec<TableSpec>, TemplateError> {
        let mut tables = Vec::new();
        for (logical_id, resource) in self.resources()? {
            let logical_id = logical_id
                .as_str()
                .ok_or_else(|| invalid("non-string resource id"))?;
            if resource.get("Type").and_then(Value::as_str) == Some("AWS::DynamoDB::Table") {
                tables.push(self.read_table(logical_id, resource)?);
            }
        }
        Ok(tables)
    }

    fn read_table(&self, logical_id: &str, resource: &Value) -> Result<TableSpec, TemplateError> {
        let props = resource
            .get("Properties")
            .ok_or_else(|| invalid(format!("{logical_id}: no Properties")))?;
        let table_name = match props.get("TableName") {
            Some(value) => self.resolve(value)?,
            None => logical_id.to_owned(),
        };
        let mut attributes = Vec::new();
        for def in sequence(props, "AttributeDefinitions", logical_id)? {
            let name = text(def, "AttributeName", logical_id)?;
            let attribute_type = match text(def, "AttributeType", logical_id)?.as_str() {
                "S" => AttributeType::S,
                "N" => AttributeType::N,
                "B" => AttributeType::B,
                other => return Err(invalid(format!("{logical_id}: attribute type {other}"))),
            };
            attributes.push((name, attribute_type));
        }
        let key = key_schema(props, logical_id)?;
        let mut global_indexes = Vec::new();
        if props.get("GlobalSecondaryIndexes").is_some() {
            for index in sequence(props, "GlobalSecondaryIndexes", logical_id)? {
                let projection = index
                    .get("Projection")
                    .and_then(|p| p.get("ProjectionType"));
                let keys_only = match projection.and_then(Value::as_str) {
                    Some("ALL") => false,
                    Some("KEYS_ONLY") => true,
                    _ => {
                        return Err(invalid(format!(
                            "{logical_id}: only ProjectionType ALL or KEYS_ONLY is supported locally"
                        )));
                    }
                };
                let name = text(index, "IndexName", logical_id)?;
                global_indexes.push(IndexSpec {
                    name,
                    key: key_schema(index, logical_id)?,
                    keys_only,
                });
            }
        }
        let ttl = props.get("TimeToLiveSpecification");
        let ttl_enabled = ttl.and_then(|t| t.get("Enabled")).and_then(Value::as_bool) == Some(true);
        let ttl_attribute = match ttl {
            Some(ttl) if ttl_enabled => Some(text(ttl, "AttributeName", logical_id)?),
            _ => None,
        };
        Ok(TableSpec {
            logical_id: logical_id.to_owned(),
            table_name,
            attributes,
            key,
            global_indexes,
            ttl_attribute,
        })
    }

    /// The environment every function gets from `Globals.Function.Environment`.
    pub fn global_environment(&self) -> Result<BTreeMap<String, String>, TemplateError> {
        let variables = self
            .root
            .get("Globals")
            .and_then(|g| g.get("Function"))
            .and_then(|f| f.get("Environment"))
            .and_then(|e| e.get("Variables"))
            .and_then(Value::as_mapping);
        let mut environment = BTreeMap::new();
        for (name, value) in variables.into_iter().flatten() {
            let name = name
                .as_str()
                .ok_or_else(|| invalid("non-string variable name"))?;
            environment.insert(name.to_owned(), self.resolve(value)?);
        }
        Ok(environment)
    }

    /// Resolves a scalar or an intrinsic function to a string.
    /// Whether a resource's `Condition` holds (one without a condition
    /// always exists).
    fn condition_holds(&self, resource: &Value) -> Result<bool, TemplateError> {
        match resource.get("Condition") {
            None => Ok(true),
            Some(Value::String(name)) => self.condition(name),
            Some(other) => Err(invalid(format!("Condition {other:?} is not a name"))),
        }
    }

    /// A named entry of `Conditions`, with the parameters' defaults.
    fn condition(&self, name: &str) -> Result<bool, TemplateError> {
        let definition = self
            .root
            .get("Conditions")
            .and_then(|conditions| conditions.get(name))
            .ok_or_else(|| invalid(format!("no condition {name}")))?;
        self.truth(definition)
    }

    /// `!Equals`, `!Not`, `!And`, `!Or` and `!Condition`, as CloudFormation
    /// evaluates them.
    fn truth(&self, value: &Value) -> Result<bool, TemplateError> {
        let (name, argument) = intrinsic_parts(value)
            .ok_or_else(|| invalid(format!("{value:?} is not a condition")))?;
        let operands = || {
            argument
                .as_sequence()
                .ok_or_else(|| invalid(format!("{name} takes a list")))
        };
        match name.as_str() {
            "Equals" => match operands()?.as_slice() {
                [left, right] => Ok(self.resolve(left)? == self.resolve(right)?),
                _ => Err(invalid("Equals takes two values")),
            },
            "Not" => match operands()?.as_slice() {
                [inner] => Ok(!self.truth(inner)?),
                _ => Err(invalid("Not takes one condition")),
            },
            "And" => operands()?
                .iter()
                .try_fold(true, |all, c| Ok(all && self.truth(c)?)),
            "Or" => operands()?
                .iter()
                .try_fold(false, |any, c| Ok(any || self.truth(c)?)),
            "Condition" => match argument {
                Value::String(inner) => self.condition(inner),
                _ => Err(invalid("Condition takes a name")),
            },
            other => Err(invalid(format!(
                "condition function {other} is not supported locally"
            ))),
        }
    }

    pub fn resolve(&self, value: &Value) -> Result<String, TemplateError> {
        match value {
            Value::String(text) => Ok(text.clone()),
            Value::Number(number) => Ok(number.to_string()),
            Value::Bool(flag) => Ok(flag.to_string()),
            other => match intrinsic_parts(other) {
                Some((name, argument)) => self.intrinsic(&name, argument),
                None => Err(invalid(format!("cannot resolve {other:?} locally"))),
            },
        }
    }

    fn intrinsic(&self, name: &str, argument: &Value) -> Result<String, TemplateError> {
        match (name, argument) {
            ("Ref", Value::String(target)) => self.reference(target),
            ("Sub", Value::String(pattern)) => self.substitute(pattern),
            ("GetAtt", Value::String(path)) => self.attribute(path),
            ("If", Value::Sequence(arms)) => match arms.as_slice() {
                [Value::String(condition), then, otherwise] => {
                    let chosen = if self.condition(condition)? {
                        then
                    } else {
                        otherwise
                    };
                    self.resolve(chosen)
                }
                _ => Err(invalid("If takes [condition, value, value]")),
            },
            _ => Err(invalid(format!(
                "intrinsic {name} with {argument:?} is not supported locally"
            ))),
        }
    }

    fn reference(&self, target: &str) -> Result<String, TemplateError> {
        match target {
            "AWS::StackName" => Ok(self.context.stack_name.clone()),
            "AWS::Region" => Ok(self.context.region.clone()),
            "AWS::AccountId" => Ok(self.context.account_id.clone()),
            _ => {
                if let Some(table) = self.tables.iter().find(|t| t.logical_id == target) {
                    return Ok(table.table_name.clone());
                }
                match self.names.get(target) {
                    Some((ResourceKind::Function, name)) => return Ok(name.clone()),
                    Some((ResourceKind::StateMachine, name)) => {
                        return Ok(self.state_machine_arn(name));
                    }
                    None => {}
                }
                let parameter = self.root.get("Parameters").and_then(|p| p.get(target));
                match parameter.and_then(|p| p.get("Default")) {
                    Some(default) => self.resolve(default),
                    None => Err(invalid(format!(
                        "!Ref {target}: not a table or a parameter with a default"
                    ))),
                }
            }
        }
    }

    fn attribute(&self, path: &str) -> Result<String, TemplateError> {
        let (logical_id, attribute) = path
            .split_once('.')
            .ok_or_else(|| invalid(format!("!GetAtt {path}: expected Resource.Attribute")))?;
        let table = self.tables.iter().find(|t| t.logical_id == logical_id);
        if let (Some(table), "Arn") = (table, attribute) {
            return Ok(format!(
                "arn:aws:dynamodb:{}:{}:table/{}",
                self.context.region, self.context.account_id, table.table_name
            ));
        }
        match (self.names.get(logical_id), attribute) {
            (Some((ResourceKind::Function, name)), "Arn") => Ok(self.function_arn(name)),
            (Some((ResourceKind::StateMachine, name)), "Arn") => Ok(self.state_machine_arn(name)),
            (Some((ResourceKind::StateMachine, name)), "Name") => Ok(name.clone()),
            _ => Err(invalid(format!("!GetAtt {path} is not supported locally"))),
        }
    }

    fn substitute(&self, pattern: &str) -> Result<String, TemplateError> {
        let mut out = String::new();
        let mut rest = pattern;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| invalid(format!("!Sub {pattern}: unclosed ${{")))?;
            let name = &after[..end];
            match name.split_once('.') {
                Some(_) => out.push_str(&self.attribute(name)?),
                None => out.push_str(&self.reference(name)?),
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

/// The `Api` events of a function: (METHOD, /path).
fn api_routes(props: &Value) -> Vec<(String, String)> {
    let events = props.get("Events").and_then(Value::as_mapping);
    let mut routes = Vec::new();
    for (_, event) in events.into_iter().flatten() {
        if event.get("Type").and_then(Value::as_str) != Some("Api") {
            continue;
        }
        let properties = event.get("Properties");
        let path = properties
            .and_then(|p| p.get("Path"))
            .and_then(Value::as_str);
        let method = properties
            .and_then(|p| p.get("Method"))
            .and_then(Value::as_str);
        if let (Some(path), Some(method)) = (path, method) {
            routes.push((method.to_uppercase(), path.to_owned()));
        }
    }
    routes
}

/// The `Schedule` / `ScheduleV2` events of a function.
fn schedules(props: &Value, logical_id: &str) -> Result<Vec<ScheduleSpec>, TemplateError> {
    let events = props.get("Events").and_then(Value::as_mapping);
    let mut schedules = Vec::new();
    for (name, event) in events.into_iter().flatten() {
        let kind = event.get("Type").and_then(Value::as_str);
        let field = match kind {
            Some("Schedule") => "Schedule",
            Some("ScheduleV2") => "ScheduleExpression",
            _ => continue,
        };
        let name = name.as_str().unwrap_or("schedule").to_owned();
        let owner = format!("{logical_id}.Events.{name}");
        let properties = event
            .get("Properties")
            .ok_or_else(|| invalid(format!("{owner}: no Properties")))?;
        let expression = text(properties, field, &owner)?;
        let period = rate_period(&expression).ok_or_else(|| {
            invalid(format!(
                "{owner}: `{expression}`: only rate(N unit) schedules are supported locally"
            ))
        })?;
        let input = match properties.get("Input") {
            Some(input) => input
                .as_str()
                .ok_or_else(|| invalid(format!("{owner}: Input must be a JSON string")))?
                .to_owned(),
            None => "{}".to_owned(),
        };
        serde_json::from_str::<serde_json::Value>(&input)
            .map_err(|err| invalid(format!("{owner}: Input is not JSON: {err}")))?;
        schedules.push(ScheduleSpec {
            name,
            period,
            input,
        });
    }
    Ok(schedules)
}

/// `rate(5 minutes)` → 300 s; `None` for anything else (cron, a zero rate).
pub fn rate_period(expression: &str) -> Option<std::time::Duration> {
    let inner = expression.trim().strip_prefix("rate(")?.strip_suffix(')')?;
    let (count, unit) = inner.trim().split_once(' ')?;
    let count: u64 = count.parse().ok().filter(|count| *count > 0)?;
    let unit_seconds = match unit.trim() {
        "minute" | "minutes" => 60,
        "hour" | "hours" => 3_600,
        "day" | "days" => 86_400,
        _ => return None,
    };
    Some(std::time::Duration::from_secs(
        count.checked_mul(unit_seconds)?,
    ))
}

/// `(name, argument)` of an intrinsic in short (`!Equals`) or long
/// (`{"Fn::Equals": …}`, `{"Condition": …}`) form.
fn intrinsic_parts(value: &Value) -> Option<(String, &Value)> {
    match value {
        Value::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            Some((tag.trim_start_matches('!').to_owned(), &tagged.value))
        }
        Value::Mapping(map) if map.len() == 1 => {
            let (name, argument) = map.iter().next()?;
            let name = name.as_str()?;
            Some((
                name.strip_prefix("Fn::").unwrap_or(name).to_owned(),
                argument,
            ))
        }
        _ => None,
    }
}

fn sequence<'a>(
    value: &'a Value,
    field: &str,
    owner: &str,
) -> Result<&'a Vec<Value>, TemplateError> {
    value
        .get(field)
        .and_then(Value::as_sequence)
        .ok_or_else(|| invalid(format!("{owner}: {field} is not a list")))
}

fn text(value: &Value, field: &str, owner: &str) -> Result<String, TemplateError> {
    value
        .get(field)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| invalid(format!("{owner}: {field} is not a string")))
}

fn key_schema(value: &Value, owner: &str) -> Result<Vec<KeyElement>, TemplateError> {
    sequence(value, "KeySchema", owner)?
        .iter()
        .map(|element| {
            let attribute = text(element, "AttributeName", owner)?;
            let key_type = match text(element, "KeyType", owner)?.as_str() {
                "HASH" => KeyType::Hash,
                "RANGE" => KeyType::Range,
                other => return Err(invalid(format!("{owner}: key type {other}"))),
            };
            Ok(KeyElement {
                attribute,
                key_type,
            })
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn repo_template() -> Template {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../template.yml");
        Template::load(&path, Context::default()).expect("template.yml parses")
    }

    #[test]
    fn reads_every_table_of_the_design() {
        let template = repo_template();
        let names: Vec<&str> = template
            .tables
            .iter()
            .map(|t| t.logical_id.as_str())
            .collect();
        for expected in [
            "PaymentsTable",
            "PaymentEventsTable",
            "WalletsTable",
            "WalletTransactionsTable",
            "RefundsTable",
            "IdempotencyTable",
            "CircuitBreakerTable",
        ] {
            assert!(
                names.contains(&expected),
                "{expected} missing from {names:?}"
            );
        }
        let payments = template
            .tables
            .iter()
            .find(|t| t.logical_id == "PaymentsTable")
            .unwrap();
        assert_eq!(payments.table_name, "local-payments");
        assert_eq!(payments.global_indexes[0].name, "UserIndex");
        let idempotency = template
            .tables
            .iter()
            .find(|t| t.logical_id == "IdempotencyTable")
            .unwrap();
        assert_eq!(idempotency.ttl_attribute.as_deref(), Some("expiresAt"));
    }

    #[test]
    fn global_environment_names_every_table() {
        let environment = repo_template().global_environment().unwrap();
        let tables =
            shared::dynamo::TableNames::from_lookup(|name| environment.get(name).cloned()).unwrap();
        assert_eq!(tables.wallets, "local-wallets");
        assert_eq!(tables.wallet_transactions, "local-wallet-transactions");
    }

    #[test]
    fn reads_functions_state_machine_and_routes() {
        let template = repo_template();
        let binaries: Vec<&str> = template
            .functions
            .iter()
            .map(|f| f.binary.as_str())
            .collect();
        for binary in [
            "invoice-processor",
            "wallet-service",
            "payments-adapter",
            "refund-service",
            "api-handler",
        ] {
            assert!(
                binaries.contains(&binary),
                "{binary} missing from {binaries:?}"
            );
        }
        let api = template.function("ApiHandlerFunction").unwrap();
        assert_eq!(api.function_name, "local-api-handler");
        assert!(
            api.api_routes
                .contains(&("POST".to_owned(), "/payments".to_owned()))
        );
        assert_eq!(api.environment["PAYMENTS_TABLE_NAME"], "local-payments");
        assert_eq!(
            api.environment["STATE_MACHINE_ARN"],
            "arn:aws:states:us-east-1:000000000000:stateMachine:local-payment-saga"
        );
        assert!(api.timeout_seconds > 0);
        // WorkflowType defaults to STANDARD: the EXPRESS saga's Condition is false.
        let machines: Vec<&str> = template
            .state_machines
            .iter()
            .map(|m| m.logical_id.as_str())
            .collect();
        assert_eq!(
            machines,
            ["PaymentSagaStateMachine", "RefundSagaStateMachine"]
        );
        let saga = &template.state_machines[0];
        assert_eq!(saga.definition_uri, "state-machine/payment-saga.asl.json");
        assert_eq!(
            saga.substitutions["WalletServiceFunctionArn"],
            "arn:aws:lambda:us-east-1:000000000000:function:local-wallet-service"
        );
        assert_eq!(saga.workflow_type, "STANDARD");
    }

    #[test]
    fn reads_the_reconcilers_schedule_and_rates() {
        let template = repo_template();
        let reconciler = template.function("ReconcilerFunction").unwrap();
        assert_eq!(
            reconciler.schedules,
            vec![ScheduleSpec {
                name: "Every5Minutes".to_owned(),
                period: std::time::Duration::from_secs(300),
                input: "{}".to_owned(),
            }]
        );
        let seconds = |text: &str| rate_period(text).map(|period| period.as_secs());
        assert_eq!(seconds("rate(1 minute)"), Some(60));
        assert_eq!(seconds("rate(2 hours)"), Some(7_200));
        assert_eq!(seconds("rate(1 day)"), Some(86_400));
        assert_eq!(seconds("rate(0 minutes)"), None);
        assert_eq!(seconds("rate(5 fortnights)"), None);
        assert_eq!(seconds("cron(0 12 * * ? *)"), None);
    }

    #[test]
    fn intrinsics_resolve_in_short_and_long_form() {
        let text = "Parameters:\n  Stage:\n    Default: dev\nResources:\n  T:\n    Type: AWS::DynamoDB::Table\n    Properties:\n      TableName: !Sub \"${AWS::StackName}-${Stage}-t\"\n      AttributeDefinitions: [{AttributeName: k, AttributeType: S}]\n      KeySchema: [{AttributeName: k, KeyType: HASH}]\n";
        let template = Template::parse(text, Context::default()).unwrap();
        assert_eq!(template.tables[0].table_name, "local-dev-t");
        let long: Value = serde_yaml_ng::from_str("{\"Fn::GetAtt\": \"T.Arn\"}").unwrap();
        assert_eq!(
            template.resolve(&long).unwrap(),
            "arn:aws:dynamodb:us-east-1:000000000000:table/local-dev-t"
        );
        let unsupported: Value = serde_yaml_ng::from_str("!ImportValue x").unwrap();
        assert!(template.resolve(&unsupported).is_err());
    }
}
