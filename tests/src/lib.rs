//! Cross-crate test support: the store contract suite and the backends it
//! runs against (in-memory, and DynamoDB through the embedded engine with the
//! tables of `template.yml`).

pub mod backend;
pub mod contract;
