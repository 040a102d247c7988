//! Glust: a thread-per-core OpenTelemetry ingestor for traces and logs.
//!
//! The modules follow the pipeline, one per stage:
//!
//! - [`limits`]: every limit, with its reason.
//! - [`domain`]: spans and log records as Glust keeps them, and their validation.
pub mod config;
pub mod domain;
pub mod http;
pub mod index;
pub mod limits;
pub mod metrics;
pub mod otlp;
pub mod query;
pub mod route;
pub mod shard;
pub mod storage;
