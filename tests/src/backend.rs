//! The two store backends the contract suite runs against.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use local::dynamo::{self, EmbeddedDynamo};
use local::template::{Context, Template};
use shared::dynamo::{DynamoStore, TableNames};
use shared::memory::InMemoryStore;
use shared::ports::{
    BreakerStore, IdempotencyRepo, PaymentEventRepo, PaymentRepo, RefundRepo, WalletRepo,
};

/// Every store port at once; both backends implement all of them.
pub trait Store:
    PaymentRepo + PaymentEventRepo + WalletRepo + RefundRepo + IdempotencyRepo + BreakerStore
{
}

impl<T> Store for T where
    T: PaymentRepo + PaymentEventRepo + WalletRepo + RefundRepo + IdempotencyRepo + BreakerStore
{
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Memory,
    Dynamo,
}

/// A fresh, empty store. For DynamoDB: an in-memory engine of its own on an
/// ephemeral loopback port, with every table of `template.yml`.
pub struct TestStore {
    store: Arc<dyn Store>,
    engine: Option<EmbeddedDynamo>,
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

impl TestStore {
    pub async fn new(backend: Backend) -> Self {
        match backend {
            Backend::Memory => Self {
                store: Arc::new(InMemoryStore::new()),
                engine: None,
            },
            Backend::Dynamo => Self::dynamo().await,
        }
    }

    #[allow(clippy::expect_used)]
    async fn dynamo() -> Self {
        let template = Template::load(&repo_root().join("template.yml"), Context::default())
            .expect("template.yml parses");
        let engine = EmbeddedDynamo::start_in_memory(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .await
            .expect("embedded DynamoDB starts");
        let client = dynamo::client(engine.endpoint());
        dynamo::create_tables(&client, &template.tables)
            .await
            .expect("tables are created");
        let environment = template
            .global_environment()
            .expect("Globals environment resolves");
        let tables = TableNames::from_lookup(|name| environment.get(name).cloned())
            .expect("the template names every table");
        Self {
            store: Arc::new(DynamoStore::new(client, tables)),
            engine: Some(engine),
        }
    }

    pub fn store(&self) -> Arc<dyn Store> {
        Arc::clone(&self.store)
    }

    pub async fn stop(self) {
        if let Some(engine) = self.engine {
            engine.stop().await;
        }
    }
}
