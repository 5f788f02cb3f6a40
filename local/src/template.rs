//! Reads `template.yml`, the single source of truth for tables, functions,
//! state machines and the API (routes, their authentication, usage plans), so
//! that local and AWS cannot drift apart. Supports the intrinsic functions the template
//! uses (`!Ref`, `!Sub`, `!GetAtt` and their long forms); anything else in a
//! place the local cloud needs is an error, never silently ignored.

use std::collections::BTreeMap;
use std::path::Path;

use serde_yaml_ng::Value;

mod api;

pub(crate) use api::{parse_throttle, thousandths};

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
    /// Parameter values that win over the template's `Default`s, in `!Ref`,
    /// `${Param}` and the conditions (SAM's `--parameter-overrides`). Each
    /// must name a declared parameter, except the local cloud's own
    /// ([`LOCAL_PARAMETER_OVERRIDES`]), which apply where declared.
    pub parameters: BTreeMap<String, String>,
}

/// The physical id `!Ref` gives the template's `AWS::Serverless::Api`
/// locally (`requestContext.apiId`, the `methodArn`).
pub const LOCAL_REST_API_ID: &str = "local";

/// The parameters the local cloud always sets: an existing "user pool"
/// (the local issuer, [`crate::issuer`]) instead of the Cognito pool the
/// template would create. With them `CreateUserPool` is false, so no Cognito
/// resource is referenced and the authorizer's `JWT_AUDIENCE` is the local
/// issuer's audience. Cognito is not emulated: this, and the issuer URL the
/// authorizer gets ([`crate::cloud`]), are the only local deviations.
pub const LOCAL_PARAMETER_OVERRIDES: [(&str, &str); 2] = [
    ("UserPoolId", crate::issuer::LOCAL_USER_POOL_ID),
    ("UserPoolClientId", crate::issuer::LOCAL_AUDIENCE),
];

impl Default for Context {
    fn default() -> Self {
        Self {
            stack_name: "local".into(),
            region: "us-east-1".into(),
            account_id: "000000000000".into(),
            parameters: LOCAL_PARAMETER_OVERRIDES
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
                .collect(),
        }
    }
}

impl Context {
    /// This context with `overrides` over its parameters (the last wins).
    pub fn with_parameters(
        mut self,
        overrides: impl IntoIterator<Item = (String, String)>,
    ) -> Self {
        self.parameters.extend(overrides);
        self
    }
}

/// `Name=Value`, one entry of `--parameter-overrides` (SAM's short form).
pub fn parse_parameter_override(text: &str) -> Result<(String, String), TemplateError> {
    match text.split_once('=') {
        Some((name, value)) if !name.trim().is_empty() => {
            Ok((name.trim().to_owned(), value.to_owned()))
        }
        _ => Err(invalid(format!(
            "parameter override `{text}`: expected Name=Value"
        ))),
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
    /// `Events` of type `Api`, each with the authentication API Gateway
    /// applies to it.
    pub api_routes: Vec<ApiRoute>,
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

/// One `Api` event of a function: a method on a path, and how API Gateway
/// authenticates it (the event's `Auth`, else its API's defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiRoute {
    /// Upper-case (`POST`), or `ANY`.
    pub method: String,
    /// A resource path like `/payments/{paymentId}`.
    pub path: String,
    pub auth: RouteAuth,
    /// A usage plan key is needed (`Auth.ApiKeyRequired`).
    pub api_key_required: bool,
}

impl ApiRoute {
    /// A route with no authorizer and no API key (an implicit API's).
    pub fn open(method: &str, path: &str) -> Self {
        Self {
            method: method.to_uppercase(),
            path: path.to_owned(),
            auth: RouteAuth::None,
            api_key_required: false,
        }
    }
}

/// Who API Gateway lets through to a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteAuth {
    /// `Authorizer: NONE`: anyone.
    None,
    /// `Authorizer: AWS_IAM`: SigV4-signed requests.
    Iam,
    /// A Lambda REQUEST authorizer of the API.
    LambdaAuthorizer(LambdaAuthorizerSpec),
}

/// One entry of an API's `Auth.Authorizers`: a Lambda REQUEST authorizer
/// (`FunctionPayloadType: REQUEST`, the only kind supported locally).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LambdaAuthorizerSpec {
    /// Its name under `Auth.Authorizers`.
    pub name: String,
    /// The function `FunctionArn` names.
    pub function_name: String,
    /// `Identity.Headers`: a request without one of them is refused (401)
    /// before the authorizer is invoked.
    pub identity_headers: Vec<String>,
    /// `Identity.QueryStrings`, likewise.
    pub identity_query_strings: Vec<String>,
}

/// Where API Gateway takes a request's usage plan key from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiKeySource {
    /// The `x-api-key` header (API Gateway's default).
    Header,
    /// The authorizer's `usageIdentifierKey`.
    Authorizer,
}

/// One `GatewayResponses` entry: what API Gateway answers for a response
/// type (`THROTTLED`, `UNAUTHORIZED`, `DEFAULT_4XX`…) instead of its default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayResponseSpec {
    /// `StatusCode`; `None` keeps the type's default status.
    pub status_code: Option<u16>,
    /// `ResponseParameters.Headers`, each a quoted literal (`"'1'"`), unquoted.
    pub headers: Vec<(String, String)>,
    /// `ResponseTemplates` `application/json`; `None` keeps the default body.
    pub json_template: Option<String>,
}

/// The template's `AWS::Serverless::Api` (at most one: the local cloud
/// serves one API, on one port).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiSpec {
    pub logical_id: String,
    /// `StageName`, resolved.
    pub stage_name: String,
    /// `ApiKeySourceType`.
    pub api_key_source: ApiKeySource,
    /// `Auth.Authorizers` (Lambda REQUEST authorizers), by name.
    pub authorizers: BTreeMap<String, LambdaAuthorizerSpec>,
    /// `Auth.DefaultAuthorizer` for routes whose `Auth` names none.
    pub default_auth: RouteAuth,
    /// `Auth.ApiKeyRequired` for routes whose `Auth` does not say.
    pub api_key_required: bool,
    /// `GatewayResponses`, by response type.
    pub gateway_responses: BTreeMap<String, GatewayResponseSpec>,
    /// The stage's `MethodSettings` that throttle, in template order.
    pub method_throttles: Vec<MethodThrottleSpec>,
}

/// One entry of the stage's `MethodSettings` with a throttle: the methods it
/// applies to and their limits. Each method it applies to has its own
/// bucket, shared by every client, as API Gateway meters a stage's methods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodThrottleSpec {
    /// `ResourcePath` with `~1` decoded (`/~1health` → `/health`); `None`
    /// for `/*`, every resource.
    pub resource_path: Option<String>,
    /// `HttpMethod` upper-case (`GET`, `ANY`); `None` for `*`, every method.
    pub http_method: Option<String>,
    /// `ThrottlingRateLimit` and `ThrottlingBurstLimit`.
    pub throttle: Throttle,
}

impl MethodThrottleSpec {
    /// How specifically the setting names the method `method` of the
    /// resource `path` (higher wins: an exact resource and method is 3, the
    /// `/*` `*` default 0); `None` when it does not apply to it.
    pub fn specificity(&self, method: &str, path: &str) -> Option<u8> {
        let resource = match self.resource_path.as_deref() {
            None => 0,
            Some(resource) if resource == path => 2,
            Some(_) => return None,
        };
        let verb = match self.http_method.as_deref() {
            None => 0,
            Some(verb) if verb == method => 1,
            Some(_) => return None,
        };
        Some(resource + verb)
    }
}

/// A usage plan's `Throttle`, in integers: requests per second in
/// thousandths (`RateLimit` may be fractional, e.g. 0.5), burst in requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttle {
    pub rate_millirequests_per_second: u64,
    pub burst_requests: u64,
}

/// An API stage a usage plan applies to (`ApiStages`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiStage {
    pub api_id: String,
    pub stage: String,
}

/// One `AWS::ApiGateway::UsagePlan`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsagePlanSpec {
    pub logical_id: String,
    /// `UsagePlanName`, resolved (the logical id when absent).
    pub name: String,
    /// `None`: not throttled by the plan.
    pub throttle: Option<Throttle>,
    pub api_stages: Vec<ApiStage>,
}

impl UsagePlanSpec {
    /// Whether the plan applies to `stage` of the API `api_id`.
    pub fn covers(&self, api_id: &str, stage: &str) -> bool {
        self.api_stages
            .iter()
            .any(|s| s.api_id == api_id && s.stage == stage)
    }
}

/// An API key attached to a usage plan (`AWS::ApiGateway::ApiKey` +
/// `AWS::ApiGateway::UsagePlanKey`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageKeySpec {
    /// The key's id (`requestContext.identity.apiKeyId`): its logical id.
    pub key_id: String,
    /// `Enabled`; a disabled key is refused (403).
    pub enabled: bool,
    pub plan: UsagePlanSpec,
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
    /// The `AWS::Serverless::Api`, if the template declares one.
    pub api: Option<ApiSpec>,
    /// Usage plan keys by key value: each key's plan and throttle.
    pub usage_keys: BTreeMap<String, UsageKeySpec>,
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
            api: None,
            usage_keys: BTreeMap::new(),
            names: BTreeMap::new(),
        };
        template.check_parameters()?;
        template.tables = template.read_tables()?;
        template.names = template.read_names()?;
        template.api = template.read_api()?;
        template.functions = template.read_functions()?;
        template.check_method_throttles()?;
        template.state_machines = template.read_state_machines()?;
        template.usage_keys = template.read_usage_keys()?;
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
                api_routes: self.api_routes(props, &logical_id)?,
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
            if resource.get("Type").and_then(Value::as_str) == Some("AWS::DynamoDB::Table")
                && self.condition_holds(resource)?
            {
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
            ("Sub", Value::String(pattern)) => self.substitute(pattern, &BTreeMap::new()),
            ("Sub", Value::Sequence(parts)) => match parts.as_slice() {
                [Value::String(pattern), Value::Mapping(declared)] => {
                    let mut variables = BTreeMap::new();
                    for (name, value) in declared {
                        let name = name
                            .as_str()
                            .ok_or_else(|| invalid("!Sub: non-string variable name"))?;
                        variables.insert(name.to_owned(), self.resolve(value)?);
                    }
                    self.substitute(pattern, &variables)
                }
                [Value::String(pattern)] => self.substitute(pattern, &BTreeMap::new()),
                _ => Err(invalid("!Sub takes a string or [string, {Var: value}]")),
            },
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
                // SAM's `!Ref MyApi.Stage`: the stage name of that API.
                if let Some((logical_id, "Stage")) = target.split_once('.') {
                    return self.api_stage_name(logical_id);
                }
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
                if self.declared_parameter(target).is_some() {
                    return self.parameter(target);
                }
                match self.resource_type(target) {
                    Some("AWS::Serverless::Api") => Ok(LOCAL_REST_API_ID.to_owned()),
                    // Their ids, locally, are their logical ids.
                    Some("AWS::ApiGateway::ApiKey" | "AWS::ApiGateway::UsagePlan") => {
                        Ok(target.to_owned())
                    }
                    Some(kind) if kind.starts_with("AWS::Cognito::") => Err(invalid(format!(
                        "!Ref {target}: {kind} is not run locally (Cognito is not emulated: the \
                         local cloud sets UserPoolId and UserPoolClientId to its own issuer)"
                    ))),
                    _ => Err(invalid(format!(
                        "!Ref {target}: not a table, function, state machine, API or parameter"
                    ))),
                }
            }
        }
    }

    fn declared_parameter(&self, name: &str) -> Option<&Value> {
        self.root.get("Parameters").and_then(|p| p.get(name))
    }

    /// A parameter's value: its override, else its `Default`.
    pub fn parameter(&self, name: &str) -> Result<String, TemplateError> {
        let declaration = self
            .declared_parameter(name)
            .ok_or_else(|| invalid(format!("no parameter {name}")))?;
        if let Some(value) = self.context.parameters.get(name) {
            return Ok(value.clone());
        }
        match declaration.get("Default") {
            Some(default) => self.resolve(default),
            None => Err(invalid(format!(
                "parameter {name} has no Default and no override"
            ))),
        }
    }

    /// Every override names a declared parameter (the local cloud's own
    /// apply only where declared) and fits its `AllowedValues` and, for a
    /// `Number`, its `MinValue` / `MaxValue`. (`AllowedPattern` is left to
    /// `make validate-template`: no regex engine here.)
    fn check_parameters(&self) -> Result<(), TemplateError> {
        for (name, value) in &self.context.parameters {
            let Some(declaration) = self.declared_parameter(name) else {
                if LOCAL_PARAMETER_OVERRIDES
                    .iter()
                    .any(|(local, _)| local == name)
                {
                    continue;
                }
                return Err(invalid(format!(
                    "parameter override {name}: the template declares no such parameter"
                )));
            };
            let refused = |why: String| invalid(format!("parameter {name}={value}: {why}"));
            if let Some(allowed) = declaration
                .get("AllowedValues")
                .and_then(Value::as_sequence)
            {
                let allowed = allowed
                    .iter()
                    .map(|v| self.resolve(v))
                    .collect::<Result<Vec<_>, _>>()?;
                if !allowed.contains(value) {
                    return Err(refused(format!("not one of {allowed:?}")));
                }
            }
            if declaration.get("Type").and_then(Value::as_str) != Some("Number") {
                continue;
            }
            let number = thousandths(value).ok_or_else(|| refused("not a Number".into()))?;
            for (bound, below) in [("MinValue", true), ("MaxValue", false)] {
                let Some(limit) = declaration.get(bound) else {
                    continue;
                };
                let limit = thousandths(&self.resolve(limit)?)
                    .ok_or_else(|| invalid(format!("parameter {name}: {bound} is not a number")))?;
                if (below && number < limit) || (!below && number > limit) {
                    return Err(refused(format!("outside its {bound}")));
                }
            }
        }
        Ok(())
    }

    fn resource(&self, logical_id: &str) -> Option<&Value> {
        self.root
            .get("Resources")
            .and_then(|resources| resources.get(logical_id))
    }

    fn resource_type(&self, logical_id: &str) -> Option<&str> {
        self.resource(logical_id)
            .and_then(|r| r.get("Type"))
            .and_then(Value::as_str)
    }

    /// The `StageName` of the `AWS::Serverless::Api` `logical_id`.
    fn api_stage_name(&self, logical_id: &str) -> Result<String, TemplateError> {
        let resource = self
            .resource(logical_id)
            .filter(|_| self.resource_type(logical_id) == Some("AWS::Serverless::Api"))
            .ok_or_else(|| {
                invalid(format!(
                    "!Ref {logical_id}.Stage: not an AWS::Serverless::Api"
                ))
            })?;
        let stage = resource
            .get("Properties")
            .and_then(|p| p.get("StageName"))
            .ok_or_else(|| invalid(format!("{logical_id}: no StageName")))?;
        self.resolve(stage)
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

    /// `${Name}`, `${Resource.Attribute}` and `${!Literal}` (which stays
    /// `${Literal}`); `variables` (the list form's map) win over the rest.
    fn substitute(
        &self,
        pattern: &str,
        variables: &BTreeMap<String, String>,
    ) -> Result<String, TemplateError> {
        let mut out = String::new();
        let mut rest = pattern;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| invalid(format!("!Sub {pattern}: unclosed ${{")))?;
            let name = &after[..end];
            if let Some(literal) = name.strip_prefix('!') {
                out.push_str("${");
                out.push_str(literal);
                out.push('}');
            } else if let Some(value) = variables.get(name) {
                out.push_str(value);
            } else {
                match name.split_once('.') {
                    Some(_) => out.push_str(&self.attribute(name)?),
                    None => out.push_str(&self.reference(name)?),
                }
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
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
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn repo_template() -> Template {
        repo_template_with(Context::default()).expect("template.yml parses")
    }

    fn repo_template_with(context: Context) -> Result<Template, TemplateError> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../template.yml");
        Template::load(&path, context)
    }

    fn overrides(pairs: &[(&str, &str)]) -> Context {
        Context::default().with_parameters(
            pairs
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned())),
        )
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
            "ApiClientsTable",
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
            "operator-api",
            "authorizer",
            "reconciler",
        ] {
            assert!(
                binaries.contains(&binary),
                "{binary} missing from {binaries:?}"
            );
        }
        let api = template.function("ApiHandlerFunction").unwrap();
        assert_eq!(api.function_name, "local-api-handler");
        let route = |function: &FunctionSpec, method: &str, path: &str| {
            function
                .api_routes
                .iter()
                .find(|r| r.method == method && r.path == path)
                .cloned()
                .unwrap_or_else(|| panic!("{method} {path} not a route of {}", function.logical_id))
        };
        // Client routes: the API's default authorizer and API key.
        let create = route(api, "POST", "/payments");
        let RouteAuth::LambdaAuthorizer(authorizer) = &create.auth else {
            panic!("POST /payments: {:?}", create.auth);
        };
        assert_eq!(authorizer.name, "PrincipalAuthorizer");
        assert_eq!(authorizer.function_name, "local-authorizer");
        assert!(authorizer.identity_headers.is_empty());
        assert!(create.api_key_required);
        // Open routes: Authorizer NONE, no key.
        for path in ["/health", "/webhooks/gateway"] {
            let open = api.api_routes.iter().find(|r| r.path == path).unwrap();
            assert_eq!(open.auth, RouteAuth::None, "{path}");
            assert!(!open.api_key_required, "{path}");
        }
        // The credit route is the operator's: AWS_IAM, no key, not api-handler's.
        let operator = template.function("OperatorApiFunction").unwrap();
        let credit = route(operator, "POST", "/wallets/{userId}/credit");
        assert_eq!(credit.auth, RouteAuth::Iam);
        assert!(!credit.api_key_required);
        // api-handler has the path only for its other methods (405).
        let theirs = api
            .api_routes
            .iter()
            .filter(|r| r.path.ends_with("/credit"));
        assert!(theirs.clone().all(|r| r.method == "ANY"), "{api:?}");
        assert_eq!(theirs.count(), 1);
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
    fn reads_the_payment_apis_auth_and_gateway_responses() {
        let template = repo_template();
        let api = template.api.as_ref().unwrap();
        assert_eq!(api.logical_id, "PaymentApi");
        assert_eq!(api.stage_name, "dev");
        assert_eq!(api.api_key_source, ApiKeySource::Authorizer);
        assert!(api.api_key_required);
        assert_eq!(
            api.authorizers.keys().collect::<Vec<_>>(),
            ["PrincipalAuthorizer"]
        );
        assert_eq!(
            api.default_auth,
            RouteAuth::LambdaAuthorizer(api.authorizers["PrincipalAuthorizer"].clone())
        );
        assert_eq!(
            api.gateway_responses["THROTTLED"],
            GatewayResponseSpec {
                status_code: Some(429),
                headers: vec![("Retry-After".to_owned(), "1".to_owned())],
                json_template: Some(r#"{"message": "Too Many Requests"}"#.to_owned()),
            }
        );
        // `!Ref PaymentApi.Stage` and `!Ref PaymentApi`, as the usage plan reads them.
        let stage: Value = serde_yaml_ng::from_str("!Ref PaymentApi.Stage").unwrap();
        assert_eq!(template.resolve(&stage).unwrap(), "dev");
        let id: Value = serde_yaml_ng::from_str("!Ref PaymentApi").unwrap();
        assert_eq!(template.resolve(&id).unwrap(), LOCAL_REST_API_ID);
    }

    #[test]
    fn reads_the_payment_apis_three_method_settings_with_their_numbers() {
        let template = repo_template();
        let api = template.api.as_ref().unwrap();
        let setting =
            |resource: Option<&str>, method: Option<&str>, rate, burst| MethodThrottleSpec {
                resource_path: resource.map(str::to_owned),
                http_method: method.map(str::to_owned),
                throttle: Throttle {
                    rate_millirequests_per_second: rate,
                    burst_requests: burst,
                },
            };
        assert_eq!(
            api.method_throttles,
            [
                setting(None, None, 100_000, 200),
                setting(Some("/wallets/{userId}/credit"), Some("POST"), 5_000, 10),
                setting(Some("/health"), Some("GET"), 10_000, 20),
            ]
        );
        // The exact resource and method wins over the default; the ANY route of
        // the same path is another method, and only the default names it.
        let health = &api.method_throttles[2];
        assert_eq!(health.specificity("GET", "/health"), Some(3));
        assert_eq!(health.specificity("ANY", "/health"), None);
        assert_eq!(
            api.method_throttles[0].specificity("ANY", "/health"),
            Some(0)
        );
    }

    #[test]
    fn method_settings_decode_paths_and_refuse_what_they_cannot_honour() {
        // GIVEN a fractional rate, `*` methods of one resource, a setting with no throttle
        let api = "      MethodSettings:
        - {ResourcePath: \"/~1things\", HttpMethod: \"*\", ThrottlingRateLimit: 0.5, ThrottlingBurstLimit: 1}
        - {ResourcePath: \"/*\", HttpMethod: \"*\", MetricsEnabled: true}";
        let template = api_template(api, "").unwrap();
        let throttles = &template.api.as_ref().unwrap().method_throttles;
        assert_eq!(
            throttles,
            &[MethodThrottleSpec {
                resource_path: Some("/things".to_owned()),
                http_method: None,
                throttle: Throttle {
                    rate_millirequests_per_second: 500,
                    burst_requests: 1,
                },
            }]
        );
        assert_eq!(throttles[0].specificity("GET", "/things"), Some(2));
        for (setting, expected) in [
            (
                "{ResourcePath: \"/~1thing\", HttpMethod: GET, ThrottlingRateLimit: 1, ThrottlingBurstLimit: 1}",
                "no Api event declares it",
            ),
            (
                "{ResourcePath: \"/~1things\", HttpMethod: POST, ThrottlingRateLimit: 1, ThrottlingBurstLimit: 1}",
                "no Api event declares it",
            ),
            (
                "{ResourcePath: \"things\", HttpMethod: GET, ThrottlingRateLimit: 1, ThrottlingBurstLimit: 1}",
                "ResourcePath things",
            ),
            (
                "{ResourcePath: \"/*\", HttpMethod: \"*\", ThrottlingRateLimit: 1, ThrottlingBurstLimit: 1.5}",
                "ThrottlingBurstLimit 1.5",
            ),
            (
                "{ResourcePath: \"/*\", HttpMethod: \"*\", ThrottlingRateLimit: -1, ThrottlingBurstLimit: 1}",
                "ThrottlingRateLimit -1",
            ),
            (
                "{ResourcePath: \"/*\", HttpMethod: \"*\", ThrottlingRateLimit: 1}",
                "without ThrottlingBurstLimit",
            ),
            (
                "{ResourcePath: \"/*\", HttpMethod: \"*\", CachingEnabled: true}",
                "CachingEnabled is not supported",
            ),
            (
                "{ResourcePath: \"/*\", HttpMethod: \"*\", ThrottlingRateLimit: 1, ThrottlingBurstLimit: 1}, {ResourcePath: \"/*\", HttpMethod: \"*\", ThrottlingRateLimit: 2, ThrottlingBurstLimit: 2}",
                "a second setting",
            ),
            (
                "{ResourcePath: \"/*\", HttpMethod: FETCH, ThrottlingRateLimit: 1, ThrottlingBurstLimit: 1}",
                "HttpMethod FETCH",
            ),
        ] {
            let api = format!("      MethodSettings: [{setting}]");
            let err = api_template(&api, "").unwrap_err().to_string();
            assert!(err.contains(expected), "{setting}: {err}");
        }
    }

    #[test]
    fn reads_the_end_users_usage_plan_and_key() {
        let template = repo_template();
        assert_eq!(
            template.usage_keys.keys().collect::<Vec<_>>(),
            ["end-users-local-usage-key"]
        );
        let key = &template.usage_keys["end-users-local-usage-key"];
        assert_eq!(key.key_id, "EndUserUsageKey");
        assert!(key.enabled);
        assert_eq!(key.plan.name, "local-end-users");
        assert_eq!(
            key.plan.throttle,
            Some(Throttle {
                rate_millirequests_per_second: 100_000,
                burst_requests: 200,
            })
        );
        assert!(key.plan.covers(LOCAL_REST_API_ID, "dev"));
        assert!(!key.plan.covers(LOCAL_REST_API_ID, "prod"));
        // The authorizer names the same key, from its own !Sub.
        let authorizer = template.function("AuthorizerFunction").unwrap();
        assert_eq!(
            authorizer.environment["END_USER_USAGE_KEY"],
            "end-users-local-usage-key"
        );
    }

    #[test]
    fn the_local_parameters_make_the_authorizer_trust_the_local_pool() {
        // GIVEN the local cloud's own overrides (UserPoolId, UserPoolClientId)
        let template = repo_template();
        let authorizer = template.function("AuthorizerFunction").unwrap();
        // THEN !Sub's list form and !If resolve to the existing "pool", no Cognito resource
        assert_eq!(
            authorizer.environment["JWT_ISSUER"],
            "https://cognito-idp.us-east-1.amazonaws.com/local-pool"
        );
        assert_eq!(authorizer.environment["JWT_AUDIENCE"], "payment-saga-local");
        assert_eq!(
            authorizer.environment["API_CLIENTS_TABLE_NAME"],
            "local-api-clients"
        );
        // AND without them the template would create Cognito resources: refused
        let bare = Context {
            parameters: BTreeMap::new(),
            ..Context::default()
        };
        let err = repo_template_with(bare).unwrap_err().to_string();
        assert!(
            err.contains("EndUserPool") && err.contains("Cognito"),
            "{err}"
        );
    }

    #[test]
    fn parameter_overrides_win_over_defaults_everywhere() {
        // GIVEN overrides of a stage, a usage plan rate and the workflow type
        let template = repo_template_with(overrides(&[
            ("Stage", "prod"),
            ("EndUserRateLimit", "1.5"),
            ("EndUserBurstLimit", "3"),
            ("WorkflowType", "EXPRESS"),
        ]))
        .unwrap();
        // THEN !Ref reads them: the stage, the plan's throttle and stage
        assert_eq!(template.api.as_ref().unwrap().stage_name, "prod");
        let plan = &template.usage_keys["end-users-local-usage-key"].plan;
        assert_eq!(
            plan.throttle,
            Some(Throttle {
                rate_millirequests_per_second: 1_500,
                burst_requests: 3,
            })
        );
        assert!(plan.covers(LOCAL_REST_API_ID, "prod"));
        assert_eq!(template.parameter("Stage").unwrap(), "prod");
        assert_eq!(template.parameter("ClientRateLimit").unwrap(), "50");
        // AND the conditions: EXPRESS loads the express saga instead
        let machines: Vec<&str> = template
            .state_machines
            .iter()
            .map(|m| m.logical_id.as_str())
            .collect();
        assert_eq!(
            machines,
            ["PaymentSagaExpressStateMachine", "RefundSagaStateMachine"]
        );
    }

    #[test]
    fn bad_parameter_overrides_are_refused() {
        for (pairs, expected) in [
            (&[("ClientRateLimt", "2")][..], "declares no such parameter"),
            (&[("WorkflowType", "FAST")][..], "not one of"),
            (&[("ClientRateLimit", "0")][..], "MinValue"),
            (&[("FailedExecutionAlarmPercent", "101")][..], "MaxValue"),
            (&[("ClientBurstLimit", "lots")][..], "not a Number"),
        ] {
            let err = repo_template_with(overrides(pairs))
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{pairs:?}: {err}");
        }
        assert_eq!(
            parse_parameter_override("ClientRateLimit=2").unwrap(),
            ("ClientRateLimit".to_owned(), "2".to_owned())
        );
        assert_eq!(
            parse_parameter_override("Empty=").unwrap(),
            ("Empty".to_owned(), String::new())
        );
        assert!(parse_parameter_override("=2").is_err());
        assert!(parse_parameter_override("ClientRateLimit").is_err());
    }

    #[test]
    fn sub_takes_a_variable_map_and_escapes() {
        let text = "Parameters:\n  Pool:\n    Type: String\n    Default: p1\nResources: {}\n";
        let template = Template::parse(text, Context::default()).unwrap();
        let sub: Value = serde_yaml_ng::from_str(
            "!Sub [\"https://${Host}/${Pool}/${AWS::Region}/${!Literal}\", {Host: !Ref Pool}]",
        )
        .unwrap();
        assert_eq!(
            template.resolve(&sub).unwrap(),
            "https://p1/p1/us-east-1/${Literal}"
        );
        let long: Value =
            serde_yaml_ng::from_str("{\"Fn::Sub\": [\"${A}-${Pool}\", {A: x}]}").unwrap();
        assert_eq!(template.resolve(&long).unwrap(), "x-p1");
        let overridden = Template::parse(
            text,
            Context::default().with_parameters([("Pool".to_owned(), "p2".to_owned())]),
        )
        .unwrap();
        assert_eq!(overridden.resolve(&long).unwrap(), "x-p2");
    }

    /// A template with one API and one function, `auth` its `Auth`.
    fn api_template(api_properties: &str, event_auth: &str) -> Result<Template, TemplateError> {
        let text = format!(
            "Resources:
  Authorizer:
    Type: AWS::Serverless::Function
    Metadata: {{BuildProperties: {{Binary: authorizer}}}}
    Properties: {{FunctionName: auth}}
  Handler:
    Type: AWS::Serverless::Function
    Metadata: {{BuildProperties: {{Binary: handler}}}}
    Properties:
      FunctionName: handler
      Events:
        Get:
          Type: Api
          Properties: {{RestApiId: !Ref Api, Path: /things, Method: get{event_auth}}}
  Api:
    Type: AWS::Serverless::Api
    Properties:
      StageName: v1
{api_properties}
"
        );
        Template::parse(&text, Context::default())
    }

    #[test]
    fn route_auth_comes_from_the_event_else_the_api() {
        let api = "      Auth:
        DefaultAuthorizer: Lambda
        Authorizers:
          Lambda:
            FunctionArn: !GetAtt Authorizer.Arn
            FunctionPayloadType: REQUEST
            Identity: {Headers: [Authorization], ReauthorizeEvery: 0}";
        let template = api_template(api, "").unwrap();
        let route = &template.function("Handler").unwrap().api_routes[0];
        let RouteAuth::LambdaAuthorizer(authorizer) = &route.auth else {
            panic!("{route:?}");
        };
        assert_eq!(authorizer.function_name, "auth");
        assert_eq!(authorizer.identity_headers, ["authorization"]);
        assert!(!route.api_key_required);
        let api_spec = template.api.as_ref().unwrap();
        assert_eq!(api_spec.api_key_source, ApiKeySource::Header);
        let template =
            api_template(api, ", Auth: {Authorizer: AWS_IAM, ApiKeyRequired: true}").unwrap();
        let route = &template.function("Handler").unwrap().api_routes[0];
        assert_eq!(route.auth, RouteAuth::Iam);
        assert!(route.api_key_required);
    }

    #[test]
    fn unsupported_api_auth_is_refused_not_ignored() {
        let token = "      Auth:
        Authorizers:
          Lambda: {FunctionArn: !GetAtt Authorizer.Arn}";
        for (api, event_auth, expected) in [
            (token, "", "only REQUEST authorizers"),
            ("", ", Auth: {Authorizer: Nobody}", "no authorizer Nobody"),
            (
                "      Auth: {UsagePlan: {CreateUsagePlan: PER_API}}",
                "",
                "UsagePlan is not supported",
            ),
            (
                "      GatewayResponses: {THROTTLED: {ResponseParameters: {Headers: {X: method.request.header.x}}}}",
                "",
                "quoted literals",
            ),
        ] {
            let err = api_template(api, event_auth).unwrap_err().to_string();
            assert!(err.contains(expected), "{api} {event_auth}: {err}");
        }
    }

    #[test]
    fn decimals_read_in_thousandths() {
        assert_eq!(thousandths("100"), Some(100_000));
        assert_eq!(thousandths("0.5"), Some(500));
        assert_eq!(thousandths("2.125"), Some(2_125));
        assert_eq!(thousandths("-1.5"), Some(-1_500));
        assert_eq!(thousandths("1.2345"), None);
        assert_eq!(thousandths("1e3"), None);
        assert_eq!(thousandths(""), None);
        assert_eq!(thousandths(".5"), None);
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
