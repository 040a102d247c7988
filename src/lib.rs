//! Glust: a thread-per-core OpenTelemetry ingestor for traces and logs.
//!
//! The modules follow the pipeline, one per stage:
//!
//! - [`limits`]: every limit, with its reason.
//! - [`domain`]: spans and log records as Glust keeps them, and their validation.
pub mod domain;
pub mod limits;
pub mod otlp;
pub mod route;
pub mod index;
pub mod storage;
pub mod config;
pub mod metrics;
pub mod query;
pub mod http;
pub mod shard;
