//! Cross-crate test support: the store contract suite and the backends it
//! runs against (in-memory, and DynamoDB through the embedded engine with the
//! tables of `template.yml`), and the in-process local cloud of the end-to-end tests.

pub mod backend;
pub mod cloud;
pub mod contract;
