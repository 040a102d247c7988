//! Glust: a thread-per-core OpenTelemetry ingestor for traces and logs.
//!
//! A span's way through the crate: [`server`] starts one pinned executor per shard; a shard's
//! [`http`] listener reads an export ([`http::otlp`] or [`http::grpc`], then [`http::export`]);
//! [`otlp`] decodes it into [`domain`] types, validated; [`shard::ingest`] splits it by owner
//! ([`route::owner_of`]), encodes records and appends them on their owners ([`shard::append`],
//! over [`shard::mesh`] for the others) into [`storage`] segments, indexed by [`index`]. A
//! query's way: [`http::api`] parses it ([`query::params`]) and [`shard::query`] runs it on the
//! shards concerned, from their indexes and segments, and merges the answers.
//!
//! The modules, in layers: each uses only modules listed before it (`tests/layers.rs` checks).
//!
//! - [`limits`]: every limit, with its reason.
//! - [`config`]: what `glust serve` was told, with its defaults.
//! - [`domain`]: spans and log records as Glust keeps them, and their validation.
//! - [`route`]: `ShardId` and `owner_of(trace_id)`.
//! - [`otlp`]: wire formats: borrowing protobuf decoder, OTLP JSON decoder, OTLP JSON writer,
//!   the `google.rpc` types generated from `proto/` by `build.rs`.
//! - [`index`]: a shard's in-memory index.
//! - [`storage`]: record framing, segment files, recovery; knows nothing of OTLP or HTTP.
//! - [`seal`]: the sealed block codec (sealing segments with it is not built yet).
//! - [`metrics`]: per-shard counters and HDR histograms, merged when scraped.
//! - [`query`]: what a query asks and answers, and the query API's parameters.
//! - [`shard`]: a shard's state and its parts: admission, ingest, the append path, group write
//!   and commit, queries run and merged, the mesh (the only types that cross cores),
//!   connections, memory trim.
//! - [`http`]: hyper on glommio: the OTLP/HTTP and OTLP/gRPC receivers, the shared export
//!   path, the query API, answers and status codes.
//! - [`server`]: process start-up (resource limits, allocator, signals, preflight, ports,
//!   executors, rendezvous) and each shard's lifecycle.

pub mod config;
pub mod domain;
pub mod http;
pub mod index;
pub mod limits;
pub mod metrics;
pub mod otlp;
pub mod query;
pub mod route;
pub mod seal;
pub mod server;
pub mod shard;
pub mod storage;
