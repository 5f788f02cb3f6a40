//! Service clients: an API key is looked up by its SHA-256 (the table never
//! holds a key) in the [`ClientDirectory`]; a known, active client is let in
//! with its scopes.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::str::FromStr;

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use shared::RepoError;

use crate::{AuthError, Refusal};

/// What a client may do. Declared in the order of their names, so a
/// `BTreeSet<Scope>` iterates them sorted as the context shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    PaymentsRead,
    PaymentsWrite,
    RefundsWrite,
    WalletsRead,
}

impl Scope {
    pub const ALL: [Scope; 4] = [
        Self::PaymentsRead,
        Self::PaymentsWrite,
        Self::RefundsWrite,
        Self::WalletsRead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::PaymentsRead => "payments:read",
            Self::PaymentsWrite => "payments:write",
            Self::RefundsWrite => "refunds:write",
            Self::WalletsRead => "wallets:read",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown scope")]
pub struct UnknownScope;

impl FromStr for Scope {
    type Err = UnknownScope;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|scope| scope.as_str() == text)
            .ok_or(UnknownScope)
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One service client, as the directory holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiClient {
    pub client_id: String,
    pub scopes: BTreeSet<Scope>,
    /// `false`: DISABLED, its key is refused.
    pub active: bool,
}

impl ApiClient {
    /// The scopes space-separated, sorted: `payments:read payments:write`.
    pub fn scope_list(&self) -> String {
        let mut names: Vec<&str> = self.scopes.iter().map(|scope| scope.as_str()).collect();
        names.sort_unstable();
        names.join(" ")
    }
}

/// The service clients, by the hash of their key ([`key_hash`]).
#[async_trait]
pub trait ClientDirectory: Send + Sync {
    /// `Ok(None)`: no client has this key.
    async fn client(&self, key_hash: &str) -> Result<Option<ApiClient>, RepoError>;
}

/// Lowercase hex SHA-256 of the key: the directory's partition key.
pub fn key_hash(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let mut hex = String::with_capacity(64);
    for byte in digest {
        // Writing to a String cannot fail.
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

/// Characters of a key hash a log line may show.
const KEY_HASH_PREFIX_LEN: usize = 8;

/// The active client holding `key`, or why not.
pub async fn identify(directory: &dyn ClientDirectory, key: &str) -> Result<ApiClient, AuthError> {
    let hash = key_hash(key);
    match directory.client(&hash).await {
        Ok(Some(client)) if client.active => Ok(client),
        Ok(Some(client)) => Err(Refusal::DisabledApiKey {
            client_id: client.client_id,
        }
        .into()),
        Ok(None) => Err(Refusal::UnknownApiKey {
            key_hash_prefix: hash.chars().take(KEY_HASH_PREFIX_LEN).collect(),
        }
        .into()),
        Err(err) => Err(AuthError::Directory(err)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn key_hash_is_lowercase_hex_sha256() {
        // SHA-256("abc"), FIPS 180-2 appendix B.1.
        assert_eq!(
            key_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn scopes_are_declared_in_the_order_of_their_names() {
        let names: Vec<&str> = Scope::ALL.iter().map(|scope| scope.as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted);
        let set: BTreeSet<Scope> = Scope::ALL.into_iter().rev().collect();
        assert_eq!(set.into_iter().collect::<Vec<_>>(), Scope::ALL.to_vec());
    }

    #[test]
    fn scopes_parse_back_from_their_names_and_nothing_else() {
        for scope in Scope::ALL {
            assert_eq!(scope.as_str().parse::<Scope>().unwrap(), scope);
        }
        assert_eq!("payments:admin".parse::<Scope>(), Err(UnknownScope));
        assert_eq!("PAYMENTS:READ".parse::<Scope>(), Err(UnknownScope));
    }

    #[test]
    fn the_scope_list_is_sorted_and_space_separated() {
        let client = ApiClient {
            client_id: "merchant-1".to_owned(),
            scopes: [
                Scope::WalletsRead,
                Scope::PaymentsWrite,
                Scope::PaymentsRead,
            ]
            .into(),
            active: true,
        };
        assert_eq!(
            client.scope_list(),
            "payments:read payments:write wallets:read"
        );
    }
}
