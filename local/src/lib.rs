//! The Docker-free local cloud. So far: the template reader and the embedded
//! DynamoDB-compatible engine with tables created from `template.yml`.

pub mod dynamo;
pub mod template;
