//! The embedded DynamoDB-compatible engine (dynoxide-rs) served on loopback,
//! and table creation from the template's table definitions.

use std::net::SocketAddr;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement,
    KeyType as SdkKeyType, Projection, ProjectionType, ScalarAttributeType,
    TimeToLiveSpecification,
};
use dynoxide::Database;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::template::{AttributeType, KeyElement, KeyType, TableSpec};

#[derive(Debug, thiserror::Error)]
pub enum DynamoError {
    #[error("cannot open the embedded database: {0}")]
    Open(String),
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot create table {table}: {message}")]
    CreateTable { table: String, message: String },
    #[error("cannot seed table {table}: {message}")]
    Seed { table: String, message: String },
}

/// A running embedded engine. Stops when [`EmbeddedDynamo::stop`] is called
/// (or, less gracefully, when dropped with the runtime).
pub struct EmbeddedDynamo {
    endpoint: String,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), String>>,
}

impl EmbeddedDynamo {
    /// An in-memory database served on `addr` (port 0 picks a free port).
    pub async fn start_in_memory(addr: SocketAddr) -> Result<Self, DynamoError> {
        let db = Database::memory().map_err(|err| DynamoError::Open(err.to_string()))?;
        Self::serve(db, addr).await
    }

    /// A database persisted in the SQLite file at `path`.
    pub async fn start_persistent(
        path: &std::path::Path,
        addr: SocketAddr,
    ) -> Result<Self, DynamoError> {
        let db = Database::new(&path.to_string_lossy())
            .map_err(|err| DynamoError::Open(err.to_string()))?;
        Self::serve(db, addr).await
    }

    async fn serve(db: Database, addr: SocketAddr) -> Result<Self, DynamoError> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| DynamoError::Bind { addr, source })?;
        let bound = listener
            .local_addr()
            .map_err(|source| DynamoError::Bind { addr, source })?;
        let (shutdown, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(dynoxide::server::serve_with_shutdown(
            listener,
            db,
            async move {
                let _ = stopped.await;
            },
        ));
        Ok(Self {
            endpoint: format!("http://{bound}"),
            shutdown: Some(shutdown),
            task,
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        let _ = (&mut self.task).await;
    }
}

/// A DynamoDB client for a local endpoint: fixed region, dummy credentials
/// (the local engine does not check signatures), explicit timeouts.
pub fn client(endpoint: &str) -> Client {
    let timeouts = aws_sdk_dynamodb::config::timeout::TimeoutConfig::builder()
        .connect_timeout(std::time::Duration::from_secs(2))
        .operation_timeout(std::time::Duration::from_secs(10))
        .build();
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            crate::LOCAL_ACCESS_KEY_ID,
            crate::LOCAL_SECRET_ACCESS_KEY,
            None,
            None,
            "local-cloud",
        ))
        .timeout_config(timeouts)
        .build();
    Client::from_conf(config)
}

/// Creates every table that does not exist yet (existing ones are kept, so a
/// restart of the local cloud keeps its data).
pub async fn create_tables(client: &Client, tables: &[TableSpec]) -> Result<(), DynamoError> {
    let existing = client
        .list_tables()
        .limit(100)
        .send()
        .await
        .map_err(|err| DynamoError::CreateTable {
            table: "*".into(),
            message: err.to_string(),
        })?;
    for table in tables {
        if existing.table_names().contains(&table.table_name) {
            continue;
        }
        create_table(client, table).await?;
    }
    Ok(())
}

async fn create_table(client: &Client, table: &TableSpec) -> Result<(), DynamoError> {
    let fail = |message: String| DynamoError::CreateTable {
        table: table.table_name.clone(),
        message,
    };
    let mut request = client
        .create_table()
        .table_name(&table.table_name)
        .billing_mode(BillingMode::PayPerRequest)
        .set_key_schema(Some(key_schema(&table.key).map_err(fail)?));
    for (name, attribute_type) in &table.attributes {
        let attribute_type = match attribute_type {
            AttributeType::S => ScalarAttributeType::S,
            AttributeType::N => ScalarAttributeType::N,
            AttributeType::B => ScalarAttributeType::B,
        };
        let definition = AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(attribute_type)
            .build()
            .map_err(|err| fail(err.to_string()))?;
        request = request.attribute_definitions(definition);
    }
    for index in &table.global_indexes {
        let gsi = GlobalSecondaryIndex::builder()
            .index_name(&index.name)
            .set_key_schema(Some(key_schema(&index.key).map_err(fail)?))
            .projection(
                Projection::builder()
                    .projection_type(if index.keys_only {
                        ProjectionType::KeysOnly
                    } else {
                        ProjectionType::All
                    })
                    .build(),
            )
            .build()
            .map_err(|err| fail(err.to_string()))?;
        request = request.global_secondary_indexes(gsi);
    }
    request
        .send()
        .await
        .map_err(|err| fail(aws_sdk_dynamodb::error::DisplayErrorContext(err).to_string()))?;
    if let Some(attribute) = &table.ttl_attribute {
        let ttl = TimeToLiveSpecification::builder()
            .attribute_name(attribute)
            .enabled(true)
            .build()
            .map_err(|err| fail(err.to_string()))?;
        client
            .update_time_to_live()
            .table_name(&table.table_name)
            .time_to_live_specification(ttl)
            .send()
            .await
            .map_err(|err| fail(aws_sdk_dynamodb::error::DisplayErrorContext(err).to_string()))?;
    }
    Ok(())
}

fn key_schema(key: &[KeyElement]) -> Result<Vec<KeySchemaElement>, String> {
    key.iter()
        .map(|element| {
            let key_type = match element.key_type {
                KeyType::Hash => SdkKeyType::Hash,
                KeyType::Range => SdkKeyType::Range,
            };
            KeySchemaElement::builder()
                .attribute_name(&element.attribute)
                .key_type(key_type)
                .build()
                .map_err(|err| err.to_string())
        })
        .collect()
}
