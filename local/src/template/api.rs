//! The API part of the template: the `AWS::Serverless::Api` (stage,
//! authorizers, default auth, API key source, gateway responses), each
//! function's `Api` events with their `Auth`, and the usage plans with their
//! keys — what the local API Gateway ([`crate::apigw`]) enforces.

use std::collections::BTreeMap;

use serde_yaml_ng::Value;

use super::{
    ApiKeySource, ApiRoute, ApiSpec, ApiStage, GatewayResponseSpec, LambdaAuthorizerSpec,
    MethodThrottleSpec, RouteAuth, Template, TemplateError, Throttle, UsageKeySpec, UsagePlanSpec,
    intrinsic_parts, invalid,
};

/// The `Authorizer` values that name no authorizer of the API.
const AUTHORIZER_NONE: &str = "NONE";
const AUTHORIZER_IAM: &str = "AWS_IAM";

/// What the local cloud reads of an API's `Auth`; `ResourcePolicy` is not
/// evaluated locally (one local principal, see [`crate::apigw`]).
const API_AUTH_KEYS: [&str; 5] = [
    "DefaultAuthorizer",
    "ApiKeyRequired",
    "Authorizers",
    "ResourcePolicy",
    "AddDefaultAuthorizerToCorsPreflight",
];
/// What it reads of an `Api` event's `Auth` (`InvokeRole` does not matter
/// locally: the proxy invokes the function itself).
const ROUTE_AUTH_KEYS: [&str; 3] = ["Authorizer", "ApiKeyRequired", "InvokeRole"];
/// What it reads of a `MethodSettings` entry: where and the throttle. Metrics
/// and logging change nothing a caller sees; caching would, and is refused.
const METHOD_SETTING_KEYS: [&str; 7] = [
    "ResourcePath",
    "HttpMethod",
    "ThrottlingRateLimit",
    "ThrottlingBurstLimit",
    "MetricsEnabled",
    "DataTraceEnabled",
    "LoggingLevel",
];
/// The `HttpMethod`s of a method setting besides `*`.
const HTTP_METHODS: [&str; 8] = [
    "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "ANY",
];

impl Template {
    /// The template's `AWS::Serverless::Api`, if any.
    pub(super) fn read_api(&self) -> Result<Option<ApiSpec>, TemplateError> {
        let apis = self.typed_resources("AWS::Serverless::Api")?;
        match apis.as_slice() {
            [] => Ok(None),
            [(logical_id, resource)] => Ok(Some(self.read_api_resource(logical_id, resource)?)),
            _ => Err(invalid(
                "more than one AWS::Serverless::Api: the local cloud serves one API",
            )),
        }
    }

    fn read_api_resource(
        &self,
        logical_id: &str,
        resource: &Value,
    ) -> Result<ApiSpec, TemplateError> {
        let props = resource
            .get("Properties")
            .ok_or_else(|| invalid(format!("{logical_id}: no Properties")))?;
        let stage_name = self.api_stage_name(logical_id)?;
        let api_key_source = match props.get("ApiKeySourceType") {
            None => ApiKeySource::Header,
            Some(value) => match self.resolve(value)?.as_str() {
                "HEADER" => ApiKeySource::Header,
                "AUTHORIZER" => ApiKeySource::Authorizer,
                other => {
                    return Err(invalid(format!("{logical_id}: ApiKeySourceType {other}")));
                }
            },
        };
        let auth = props.get("Auth");
        if let Some(auth) = auth {
            only_keys(auth, &API_AUTH_KEYS, &format!("{logical_id}.Auth"))?;
        }
        let mut authorizers = BTreeMap::new();
        let declared = auth
            .and_then(|a| a.get("Authorizers"))
            .and_then(Value::as_mapping);
        for (name, authorizer) in declared.into_iter().flatten() {
            let name = name
                .as_str()
                .ok_or_else(|| invalid(format!("{logical_id}: non-string authorizer name")))?;
            authorizers.insert(
                name.to_owned(),
                self.read_authorizer(
                    &format!("{logical_id}.Auth.Authorizers.{name}"),
                    name,
                    authorizer,
                )?,
            );
        }
        let default_auth = match auth.and_then(|a| a.get("DefaultAuthorizer")) {
            None => RouteAuth::None,
            Some(value) => named_auth(&self.resolve(value)?, &authorizers, logical_id)?,
        };
        let api_key_required = match auth.and_then(|a| a.get("ApiKeyRequired")) {
            None => false,
            Some(value) => self.boolean(value, &format!("{logical_id}.Auth.ApiKeyRequired"))?,
        };
        let mut gateway_responses = BTreeMap::new();
        let declared = props.get("GatewayResponses").and_then(Value::as_mapping);
        for (kind, response) in declared.into_iter().flatten() {
            let kind = kind
                .as_str()
                .ok_or_else(|| invalid(format!("{logical_id}: non-string gateway response")))?;
            let owner = format!("{logical_id}.GatewayResponses.{kind}");
            gateway_responses.insert(
                kind.to_owned(),
                self.read_gateway_response(&owner, response)?,
            );
        }
        let method_throttles = self.read_method_throttles(logical_id, props)?;
        Ok(ApiSpec {
            logical_id: logical_id.to_owned(),
            stage_name,
            api_key_source,
            authorizers,
            default_auth,
            api_key_required,
            gateway_responses,
            method_throttles,
        })
    }

    /// The stage's `MethodSettings` entries that throttle; one naming the
    /// same methods as another is refused (which would win is unclear).
    fn read_method_throttles(
        &self,
        logical_id: &str,
        props: &Value,
    ) -> Result<Vec<MethodThrottleSpec>, TemplateError> {
        let declared = match props.get("MethodSettings") {
            None => return Ok(Vec::new()),
            Some(Value::Sequence(settings)) => settings,
            Some(_) => {
                return Err(invalid(format!(
                    "{logical_id}: MethodSettings is not a list"
                )));
            }
        };
        let mut throttles: Vec<MethodThrottleSpec> = Vec::new();
        for (index, setting) in declared.iter().enumerate() {
            let owner = format!("{logical_id}.MethodSettings[{index}]");
            let Some(spec) = self.read_method_throttle(&owner, setting)? else {
                continue;
            };
            let same = |other: &&MethodThrottleSpec| {
                other.resource_path == spec.resource_path && other.http_method == spec.http_method
            };
            if throttles.iter().any(|other| same(&other)) {
                return Err(invalid(format!(
                    "{owner}: a second setting for these methods"
                )));
            }
            throttles.push(spec);
        }
        Ok(throttles)
    }

    /// One `MethodSettings` entry; `None` when it sets no throttle (its
    /// methods keep the `/*` `*` one).
    fn read_method_throttle(
        &self,
        owner: &str,
        setting: &Value,
    ) -> Result<Option<MethodThrottleSpec>, TemplateError> {
        only_keys(setting, &METHOD_SETTING_KEYS, owner)?;
        let field = |name: &str| -> Result<Option<String>, TemplateError> {
            setting
                .get(name)
                .map(|value| self.resolve(value))
                .transpose()
        };
        let resource =
            field("ResourcePath")?.ok_or_else(|| invalid(format!("{owner}: no ResourcePath")))?;
        let method =
            field("HttpMethod")?.ok_or_else(|| invalid(format!("{owner}: no HttpMethod")))?;
        let throttle = match (
            field("ThrottlingRateLimit")?,
            field("ThrottlingBurstLimit")?,
        ) {
            (None, None) => return Ok(None),
            (Some(rate), Some(burst)) => throttle_of(
                ("ThrottlingRateLimit", &rate),
                ("ThrottlingBurstLimit", &burst),
                owner,
            )?,
            _ => {
                return Err(invalid(format!(
                    "{owner}: ThrottlingRateLimit without ThrottlingBurstLimit (or the reverse) is not supported locally"
                )));
            }
        };
        let http_method = match method.to_uppercase().as_str() {
            "*" => None,
            verb if HTTP_METHODS.contains(&verb) => Some(verb.to_owned()),
            _ => return Err(invalid(format!("{owner}: HttpMethod {method}"))),
        };
        Ok(Some(MethodThrottleSpec {
            resource_path: method_setting_resource(&resource)
                .ok_or_else(|| invalid(format!("{owner}: ResourcePath {resource}")))?,
            http_method,
            throttle,
        }))
    }

    /// Refuses a method setting for a resource or method no `Api` event
    /// declares: API Gateway refuses to deploy it, and locally it would
    /// throttle nothing (a typo in `~1` escapes, say).
    pub(super) fn check_method_throttles(&self) -> Result<(), TemplateError> {
        let Some(api) = &self.api else {
            return Ok(());
        };
        for spec in &api.method_throttles {
            let Some(path) = &spec.resource_path else {
                continue;
            };
            let declared = self
                .functions
                .iter()
                .flat_map(|f| &f.api_routes)
                .any(|route| {
                    &route.path == path
                        && spec.http_method.as_ref().is_none_or(|m| m == &route.method)
                });
            if !declared {
                let method = spec.http_method.as_deref().unwrap_or("*");
                return Err(invalid(format!(
                    "{}: MethodSettings {method} {path}: no Api event declares it",
                    api.logical_id
                )));
            }
        }
        Ok(())
    }

    fn read_authorizer(
        &self,
        owner: &str,
        name: &str,
        authorizer: &Value,
    ) -> Result<LambdaAuthorizerSpec, TemplateError> {
        if authorizer.get("UserPoolArn").is_some() {
            return Err(invalid(format!(
                "{owner}: Cognito authorizers are not supported locally"
            )));
        }
        let arn = authorizer
            .get("FunctionArn")
            .ok_or_else(|| invalid(format!("{owner}: no FunctionArn")))?;
        let arn = self.resolve(arn)?;
        let prefix = self.function_arn("");
        let function_name = arn
            .strip_prefix(&prefix)
            .filter(|name| !name.is_empty())
            .ok_or_else(|| {
                invalid(format!(
                    "{owner}: FunctionArn {arn} is not a function of this template"
                ))
            })?;
        // SAM's default payload type is TOKEN.
        let payload = match authorizer.get("FunctionPayloadType") {
            Some(value) => self.resolve(value)?,
            None => "TOKEN".to_owned(),
        };
        if payload != "REQUEST" {
            return Err(invalid(format!(
                "{owner}: FunctionPayloadType {payload}: only REQUEST authorizers are supported locally"
            )));
        }
        let identity = authorizer.get("Identity");
        if let Some(identity) = identity {
            // No authorizer cache locally: each request is authorized on its
            // own, as ReauthorizeEvery 0 asks (a cache would only hide calls).
            only_keys(
                identity,
                &["Headers", "QueryStrings", "ReauthorizeEvery"],
                owner,
            )?;
        }
        let names = |field: &str| -> Result<Vec<String>, TemplateError> {
            match identity.and_then(|i| i.get(field)) {
                None => Ok(Vec::new()),
                Some(Value::Sequence(values)) => values.iter().map(|v| self.resolve(v)).collect(),
                Some(_) => Err(invalid(format!("{owner}: Identity.{field} is not a list"))),
            }
        };
        Ok(LambdaAuthorizerSpec {
            name: name.to_owned(),
            function_name: function_name.to_owned(),
            identity_headers: names("Headers")?
                .into_iter()
                .map(|h| h.to_lowercase())
                .collect(),
            identity_query_strings: names("QueryStrings")?,
        })
    }

    fn read_gateway_response(
        &self,
        owner: &str,
        response: &Value,
    ) -> Result<GatewayResponseSpec, TemplateError> {
        let status_code = match response.get("StatusCode") {
            None => None,
            Some(value) => Some(
                self.resolve(value)?
                    .parse::<u16>()
                    .ok()
                    .filter(|code| (100..=599).contains(code))
                    .ok_or_else(|| invalid(format!("{owner}: StatusCode")))?,
            ),
        };
        let mut headers = Vec::new();
        if let Some(parameters) = response.get("ResponseParameters") {
            only_keys(parameters, &["Headers"], owner)?;
            let declared = parameters.get("Headers").and_then(Value::as_mapping);
            for (name, value) in declared.into_iter().flatten() {
                let name = name
                    .as_str()
                    .ok_or_else(|| invalid(format!("{owner}: non-string header name")))?;
                let value = self.resolve(value)?;
                // A quoted literal; anything else maps a request value, which
                // the local cloud does not do.
                let literal = value
                    .strip_prefix('\'')
                    .and_then(|v| v.strip_suffix('\''))
                    .ok_or_else(|| {
                        invalid(format!(
                            "{owner}: header {name}: only quoted literals ('value') are supported locally"
                        ))
                    })?;
                headers.push((name.to_owned(), literal.to_owned()));
            }
        }
        let mut json_template = None;
        let templates = response
            .get("ResponseTemplates")
            .and_then(Value::as_mapping);
        for (content_type, template) in templates.into_iter().flatten() {
            match content_type.as_str() {
                Some("application/json") => json_template = Some(self.resolve(template)?),
                other => {
                    return Err(invalid(format!(
                        "{owner}: ResponseTemplates {other:?}: only application/json is served locally"
                    )));
                }
            }
        }
        Ok(GatewayResponseSpec {
            status_code,
            headers,
            json_template,
        })
    }

    /// The `Api` events of a function, each with its authentication.
    pub(super) fn api_routes(
        &self,
        props: &Value,
        logical_id: &str,
    ) -> Result<Vec<ApiRoute>, TemplateError> {
        let events = props.get("Events").and_then(Value::as_mapping);
        let mut routes = Vec::new();
        for (name, event) in events.into_iter().flatten() {
            if event.get("Type").and_then(Value::as_str) != Some("Api") {
                continue;
            }
            let owner = format!("{logical_id}.Events.{}", name.as_str().unwrap_or("?"));
            let properties = event
                .get("Properties")
                .ok_or_else(|| invalid(format!("{owner}: no Properties")))?;
            let path = super::text(properties, "Path", &owner)?;
            let method = super::text(properties, "Method", &owner)?;
            routes.push(self.api_route(&owner, properties, &method, &path)?);
        }
        Ok(routes)
    }

    fn api_route(
        &self,
        owner: &str,
        properties: &Value,
        method: &str,
        path: &str,
    ) -> Result<ApiRoute, TemplateError> {
        let api = match properties.get("RestApiId") {
            // SAM's implicit API: no authorizer, no key.
            None => return Ok(ApiRoute::open(method, path)),
            Some(value) => {
                let target = ref_target(value)
                    .ok_or_else(|| invalid(format!("{owner}: RestApiId must be a !Ref")))?;
                self.api
                    .as_ref()
                    .filter(|api| api.logical_id == target)
                    .ok_or_else(|| {
                        invalid(format!(
                            "{owner}: RestApiId {target} is not the template's API"
                        ))
                    })?
            }
        };
        let auth = properties.get("Auth");
        if let Some(auth) = auth {
            only_keys(auth, &ROUTE_AUTH_KEYS, &format!("{owner}.Auth"))?;
        }
        let route_auth = match auth.and_then(|a| a.get("Authorizer")) {
            None => api.default_auth.clone(),
            Some(value) => named_auth(&self.resolve(value)?, &api.authorizers, owner)?,
        };
        let api_key_required = match auth.and_then(|a| a.get("ApiKeyRequired")) {
            None => api.api_key_required,
            Some(value) => self.boolean(value, &format!("{owner}.Auth.ApiKeyRequired"))?,
        };
        Ok(ApiRoute {
            auth: route_auth,
            api_key_required,
            ..ApiRoute::open(method, path)
        })
    }

    /// Usage plan keys by key value: `AWS::ApiGateway::UsagePlanKey`s joining
    /// an `AWS::ApiGateway::ApiKey` to an `AWS::ApiGateway::UsagePlan`.
    pub(super) fn read_usage_keys(&self) -> Result<BTreeMap<String, UsageKeySpec>, TemplateError> {
        let mut plans = BTreeMap::new();
        for (logical_id, resource) in self.typed_resources("AWS::ApiGateway::UsagePlan")? {
            let plan = self.read_usage_plan(&logical_id, resource)?;
            plans.insert(logical_id, plan);
        }
        let mut keys = BTreeMap::new();
        for (logical_id, resource) in self.typed_resources("AWS::ApiGateway::ApiKey")? {
            let props = resource.get("Properties");
            let value = match props.and_then(|p| p.get("Value")) {
                Some(value) => Some(self.resolve(value)?),
                // AWS generates the value: nobody could present it locally.
                None => None,
            };
            let enabled = match props.and_then(|p| p.get("Enabled")) {
                Some(flag) => self.boolean(flag, &format!("{logical_id}.Enabled"))?,
                None => false,
            };
            keys.insert(logical_id, (value, enabled));
        }
        let mut usage_keys = BTreeMap::new();
        for (logical_id, resource) in self.typed_resources("AWS::ApiGateway::UsagePlanKey")? {
            let props = resource
                .get("Properties")
                .ok_or_else(|| invalid(format!("{logical_id}: no Properties")))?;
            let kind = super::text(props, "KeyType", &logical_id)?;
            if kind != "API_KEY" {
                return Err(invalid(format!("{logical_id}: KeyType {kind}")));
            }
            let reference = |field: &str| {
                props
                    .get(field)
                    .and_then(ref_target)
                    .ok_or_else(|| invalid(format!("{logical_id}: {field} must be a !Ref")))
            };
            let key_id = reference("KeyId")?;
            let plan_id = reference("UsagePlanId")?;
            let (value, enabled) = keys
                .get(key_id)
                .ok_or_else(|| invalid(format!("{logical_id}: KeyId {key_id} is not an ApiKey")))?;
            let plan = plans.get(plan_id).ok_or_else(|| {
                invalid(format!(
                    "{logical_id}: UsagePlanId {plan_id} is not a UsagePlan"
                ))
            })?;
            let Some(value) = value else {
                continue;
            };
            let spec = UsageKeySpec {
                key_id: key_id.to_owned(),
                enabled: *enabled,
                plan: plan.clone(),
            };
            if usage_keys.insert(value.clone(), spec).is_some() {
                return Err(invalid(format!(
                    "{logical_id}: key {key_id} is in two usage plans (not supported locally)"
                )));
            }
        }
        Ok(usage_keys)
    }

    fn read_usage_plan(
        &self,
        logical_id: &str,
        resource: &Value,
    ) -> Result<UsagePlanSpec, TemplateError> {
        let props = resource
            .get("Properties")
            .ok_or_else(|| invalid(format!("{logical_id}: no Properties")))?;
        only_keys(
            props,
            &[
                "UsagePlanName",
                "Description",
                "ApiStages",
                "Throttle",
                "Tags",
            ],
            logical_id,
        )?;
        let name = match props.get("UsagePlanName") {
            Some(value) => self.resolve(value)?,
            None => logical_id.to_owned(),
        };
        let throttle = match props.get("Throttle") {
            None => None,
            Some(throttle) => Some(self.read_throttle(logical_id, throttle)?),
        };
        let mut api_stages = Vec::new();
        let stages = props.get("ApiStages").and_then(Value::as_sequence);
        for stage in stages.into_iter().flatten() {
            only_keys(
                stage,
                &["ApiId", "Stage"],
                &format!("{logical_id}.ApiStages"),
            )?;
            let field = |name: &str| -> Result<String, TemplateError> {
                let value = stage
                    .get(name)
                    .ok_or_else(|| invalid(format!("{logical_id}: ApiStages.{name} is missing")))?;
                self.resolve(value)
            };
            api_stages.push(ApiStage {
                api_id: field("ApiId")?,
                stage: field("Stage")?,
            });
        }
        Ok(UsagePlanSpec {
            logical_id: logical_id.to_owned(),
            name,
            throttle,
            api_stages,
        })
    }

    /// A plan's `Throttle`: `RateLimit` (decimal) and `BurstLimit`.
    fn read_throttle(&self, logical_id: &str, throttle: &Value) -> Result<Throttle, TemplateError> {
        let number = |field: &str| -> Result<String, TemplateError> {
            let value = throttle
                .get(field)
                .ok_or_else(|| invalid(format!("{logical_id}: Throttle.{field} is missing")))?;
            self.resolve(value)
        };
        parse_throttle(&number("RateLimit")?, &number("BurstLimit")?, logical_id)
    }

    fn boolean(&self, value: &Value, owner: &str) -> Result<bool, TemplateError> {
        match self.resolve(value)?.as_str() {
            "true" | "True" => Ok(true),
            "false" | "False" => Ok(false),
            other => Err(invalid(format!("{owner}: {other} is not a boolean"))),
        }
    }
}

/// `NONE`, `AWS_IAM` or the name of one of `authorizers`.
fn named_auth(
    name: &str,
    authorizers: &BTreeMap<String, LambdaAuthorizerSpec>,
    owner: &str,
) -> Result<RouteAuth, TemplateError> {
    match name {
        AUTHORIZER_NONE => Ok(RouteAuth::None),
        AUTHORIZER_IAM => Ok(RouteAuth::Iam),
        _ => authorizers
            .get(name)
            .cloned()
            .map(RouteAuth::LambdaAuthorizer)
            .ok_or_else(|| invalid(format!("{owner}: no authorizer {name}"))),
    }
}

/// The logical id of a `!Ref X` (or `{"Ref": X}`).
fn ref_target(value: &Value) -> Option<&str> {
    match intrinsic_parts(value) {
        Some((name, Value::String(target))) if name == "Ref" => Some(target.as_str()),
        _ => None,
    }
}

/// Refuses a mapping key the local cloud does not read, rather than ignore
/// what it may mean.
fn only_keys(value: &Value, known: &[&str], owner: &str) -> Result<(), TemplateError> {
    let Some(mapping) = value.as_mapping() else {
        return Err(invalid(format!("{owner} is not a mapping")));
    };
    for key in mapping.keys() {
        let key = key.as_str().unwrap_or("?");
        if !known.contains(&key) {
            return Err(invalid(format!("{owner}.{key} is not supported locally")));
        }
    }
    Ok(())
}

/// A `Throttle` from the texts of its `RateLimit` (a decimal, at most three
/// places) and `BurstLimit` (whole requests).
pub(crate) fn parse_throttle(
    rate: &str,
    burst: &str,
    owner: &str,
) -> Result<Throttle, TemplateError> {
    throttle_of(
        ("Throttle.RateLimit", rate),
        ("Throttle.BurstLimit", burst),
        owner,
    )
}

/// A `Throttle` from a (field, text) rate (a decimal, at most three places)
/// and burst (whole requests), the fields naming them in errors.
fn throttle_of(
    (rate_field, rate): (&str, &str),
    (burst_field, burst): (&str, &str),
    owner: &str,
) -> Result<Throttle, TemplateError> {
    Ok(Throttle {
        rate_millirequests_per_second: thousandths(rate)
            .and_then(|rate| u64::try_from(rate).ok())
            .ok_or_else(|| invalid(format!("{owner}: {rate_field} {rate}")))?,
        burst_requests: burst
            .parse()
            .map_err(|_| invalid(format!("{owner}: {burst_field} {burst}")))?,
    })
}

/// A method setting's `ResourcePath`: `/*` is every resource (`Some(None)`);
/// else `/` then the resource path with each `/` written `~1` (and `~` as
/// `~0`), as in API Gateway's stage settings: `/~1health` → `/health`.
fn method_setting_resource(text: &str) -> Option<Option<String>> {
    let escaped = text.strip_prefix('/')?;
    if escaped == "*" {
        return Some(None);
    }
    let path = escaped.replace("~1", "/").replace("~0", "~");
    path.starts_with('/').then_some(Some(path))
}

/// A decimal number in thousandths (`0.5` → 500, `-2` → -2000); `None`
/// for more than three decimals or anything but digits.
pub(crate) fn thousandths(text: &str) -> Option<i64> {
    let text = text.trim();
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let all_digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || fraction.len() > 3 || !all_digits(whole) || !all_digits(fraction) {
        return None;
    }
    let whole: i64 = whole.parse().ok()?;
    let mut fraction_thousandths: i64 = 0;
    for (position, digit) in fraction.bytes().enumerate() {
        let scale = match position {
            0 => 100,
            1 => 10,
            _ => 1,
        };
        fraction_thousandths = fraction_thousandths.checked_add(i64::from(digit - b'0') * scale)?;
    }
    let magnitude = whole.checked_mul(1000)?.checked_add(fraction_thousandths)?;
    Some(if negative { -magnitude } else { magnitude })
}
