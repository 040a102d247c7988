//! `loadgen`: the load generator bundled with Glust (see `README.md` beside this crate).
//!
//! - [`payload`]: seeded, deterministic OTLP traces and logs, encoded for the wire;
//! - [`transport`]: OTLP/HTTP and OTLP/gRPC clients on hyper, and how answers are counted;
//! - [`run`]: pinned workers, the open-loop pacer and the closed loop, retries, reporting;
//! - [`stats`]: counters, HDR histograms, `.hgrm` and interval-log output;
//! - [`verify`]: reading a sample back through the Glust query API and comparing it;
//! - [`cli`] and [`app`]: the command line and the whole program.

pub mod app;
pub mod cli;
pub mod payload;
pub mod rng;
pub mod run;
pub mod stats;
pub mod transport;
pub mod verify;
