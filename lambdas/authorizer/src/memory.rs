//! In-memory implementations of the authorizer's ports, for tests and for
//! running the authorizer without AWS.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use async_trait::async_trait;
use jsonwebtoken::jwk::JwkSet;
use shared::RepoError;

use crate::client::{ApiClient, ClientDirectory, key_hash};
use crate::token::{JwksError, JwksSource};

/// Service clients by key hash, with a failure to inject.
#[derive(Default)]
pub struct InMemoryClientDirectory {
    clients: Mutex<HashMap<String, ApiClient>>,
    failure: Mutex<Option<RepoError>>,
}

impl InMemoryClientDirectory {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `client` under the hash of `key`.
    pub fn insert(&self, key: &str, client: ApiClient) {
        if let Ok(mut clients) = self.clients.lock() {
            clients.insert(key_hash(key), client);
        }
    }

    /// Every lookup fails with `err` from now on (`None`: lookups work again).
    pub fn fail_with(&self, err: Option<RepoError>) {
        if let Ok(mut failure) = self.failure.lock() {
            *failure = err;
        }
    }
}

#[async_trait]
impl ClientDirectory for InMemoryClientDirectory {
    async fn client(&self, key_hash: &str) -> Result<Option<ApiClient>, RepoError> {
        let poisoned = || RepoError::Unavailable("in-memory directory poisoned".to_owned());
        if let Some(err) = self.failure.lock().map_err(|_| poisoned())?.clone() {
            return Err(err);
        }
        Ok(self
            .clients
            .lock()
            .map_err(|_| poisoned())?
            .get(key_hash)
            .cloned())
    }
}

/// A fixed key set that counts its fetches; the set can be replaced (a key
/// rotation) and fetches made to fail.
#[derive(Default)]
pub struct InMemoryJwks {
    set: Mutex<JwkSet>,
    failure: Mutex<Option<JwksError>>,
    fetch_count: AtomicU32,
}

impl InMemoryJwks {
    pub fn new(set: JwkSet) -> Self {
        Self {
            set: Mutex::new(set),
            ..Self::default()
        }
    }

    pub fn replace(&self, set: JwkSet) {
        if let Ok(mut current) = self.set.lock() {
            *current = set;
        }
    }

    pub fn fail_with(&self, err: Option<JwksError>) {
        if let Ok(mut failure) = self.failure.lock() {
            *failure = err;
        }
    }

    /// Fetches so far, failed ones included.
    pub fn fetch_count(&self) -> u32 {
        self.fetch_count.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl JwksSource for InMemoryJwks {
    async fn fetch(&self) -> Result<JwkSet, JwksError> {
        self.fetch_count.fetch_add(1, Ordering::SeqCst);
        let poisoned = || JwksError::Fetch("in-memory key set poisoned".to_owned());
        if let Some(err) = self.failure.lock().map_err(|_| poisoned())?.clone() {
            return Err(err);
        }
        Ok(self.set.lock().map_err(|_| poisoned())?.clone())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::client::Scope;

    fn client(active: bool) -> ApiClient {
        ApiClient {
            client_id: "merchant-1".to_owned(),
            scopes: [Scope::PaymentsRead].into(),
            active,
        }
    }

    #[tokio::test]
    async fn the_directory_finds_a_client_by_the_hash_of_its_key_only() {
        let directory = InMemoryClientDirectory::new();
        directory.insert("key-1", client(true));
        assert_eq!(
            directory.client(&key_hash("key-1")).await.unwrap(),
            Some(client(true))
        );
        assert_eq!(directory.client("key-1").await.unwrap(), None);
        assert_eq!(directory.client(&key_hash("key-2")).await.unwrap(), None);
    }

    #[tokio::test]
    async fn the_directory_fails_as_told_until_told_otherwise() {
        let directory = InMemoryClientDirectory::new();
        directory.insert("key-1", client(true));
        directory.fail_with(Some(RepoError::Throttled("slow down".to_owned())));
        assert_eq!(
            directory.client(&key_hash("key-1")).await,
            Err(RepoError::Throttled("slow down".to_owned()))
        );
        directory.fail_with(None);
        assert!(
            directory
                .client(&key_hash("key-1"))
                .await
                .unwrap()
                .is_some()
        );
    }

    #[tokio::test]
    async fn the_key_set_counts_fetches_and_serves_its_replacement() {
        let jwks = InMemoryJwks::new(JwkSet::default());
        assert!(jwks.fetch().await.unwrap().keys.is_empty());
        jwks.fail_with(Some(JwksError::Status(503)));
        assert_eq!(jwks.fetch().await, Err(JwksError::Status(503)));
        jwks.fail_with(None);
        jwks.replace(JwkSet { keys: Vec::new() });
        assert!(jwks.fetch().await.is_ok());
        assert_eq!(jwks.fetch_count(), 3);
    }
}
