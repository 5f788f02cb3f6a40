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

#[derive(Debug, Clone)]
pub struct Template {
    root: Value,
    context: Context,
    pub tables: Vec<TableSpec>,
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
        };
        template.tables = template.read_tables()?;
        Ok(template)
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
                if projection.and_then(Value::as_str) != Some("ALL") {
                    return Err(invalid(format!(
                        "{logical_id}: only ProjectionType ALL is supported locally"
                    )));
                }
                let name = text(index, "IndexName", logical_id)?;
                global_indexes.push(IndexSpec {
                    name,
                    key: key_schema(index, logical_id)?,
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
    pub fn resolve(&self, value: &Value) -> Result<String, TemplateError> {
        match value {
            Value::String(text) => Ok(text.clone()),
            Value::Number(number) => Ok(number.to_string()),
            Value::Bool(flag) => Ok(flag.to_string()),
            Value::Tagged(tagged) => {
                let tag = tagged.tag.to_string();
                self.intrinsic(tag.trim_start_matches('!'), &tagged.value)
            }
            Value::Mapping(map) if map.len() == 1 => {
                let (name, argument) = map.iter().next().ok_or_else(|| invalid("empty mapping"))?;
                let name = name.as_str().unwrap_or_default();
                let short = name.strip_prefix("Fn::").unwrap_or(name);
                self.intrinsic(short, argument)
            }
            other => Err(invalid(format!("cannot resolve {other:?} locally"))),
        }
    }

    fn intrinsic(&self, name: &str, argument: &Value) -> Result<String, TemplateError> {
        match (name, argument) {
            ("Ref", Value::String(target)) => self.reference(target),
            ("Sub", Value::String(pattern)) => self.substitute(pattern),
            ("GetAtt", Value::String(path)) => self.attribute(path),
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
        match (
            self.tables.iter().find(|t| t.logical_id == logical_id),
            attribute,
        ) {
            (Some(table), "Arn") => Ok(format!(
                "arn:aws:dynamodb:{}:{}:table/{}",
                self.context.region, self.context.account_id, table.table_name
            )),
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
