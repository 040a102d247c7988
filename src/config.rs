//! Run-time configuration: what `glust serve` was told, with its defaults.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::limits::{PAGE_CACHE_KEEP_DEFAULT, SEGMENT_BYTES_DEFAULT};

/// When appended records are made durable (fsync'd), and what an acknowledgement promises.
///
/// Records are written into the segment files (`pwrite`, one per group of requests) before
/// their requests are answered, so they are in the kernel's page cache by then: in every mode
/// an acknowledged record survives a crash or kill of the Glust process. The modes differ in
/// what survives a crash of the machine (power loss, kernel panic).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FsyncPolicy {
    /// A request is answered only after an fsync covering its records completed on every
    /// owning shard. Concurrent requests share one fsync (group commit). Survives machine
    /// crashes.
    Always,
    /// Each shard fsyncs what it wrote every `--fsync-interval`. A machine crash loses at most
    /// the records acknowledged during the last interval.
    Interval,
    /// Glust never fsyncs while running (only on clean shutdown); the kernel writes back dirty
    /// pages on its own schedule (typically within 30 s).
    Never,
}

impl std::fmt::Display for FsyncPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FsyncPolicy::Always => "always",
            FsyncPolicy::Interval => "interval",
            FsyncPolicy::Never => "never",
        })
    }
}

/// Everything a running Glust needs to know.
#[derive(Debug, Clone)]
pub struct Config {
    /// Root of the shard directories.
    pub data_dir: PathBuf,
    /// Number of shards (executors); each is pinned to one core.
    pub shards: u32,
    /// OTLP/HTTP listen address.
    pub otlp_http: SocketAddr,
    /// OTLP/gRPC listen address.
    pub otlp_grpc: SocketAddr,
    /// Query API, `/healthz`, `/readyz` listen address.
    pub query: SocketAddr,
    pub fsync: FsyncPolicy,
    /// Period of the `interval` fsync policy.
    pub fsync_interval: Duration,
    /// Size of each new segment file.
    pub segment_bytes: u64,
    /// Bytes of each shard's newest records kept in the page cache (`None`: no eviction,
    /// left to the kernel).
    pub page_cache_keep: Option<u64>,
    /// Time a client has to send a request's headers (HTTP/1.1); slower connections are
    /// closed, so a trickle of bytes cannot hold one (and its memory) forever.
    pub header_read_timeout: Duration,
    /// Time a client has to send an OTLP request's body once its headers are in: 408 past it.
    pub body_read_timeout: Duration,
    /// Where to write HdrHistogram interval logs of every latency histogram, if anywhere.
    pub hdr_dump_dir: Option<std::path::PathBuf>,
    /// How often those logs get an interval.
    pub hdr_dump_interval: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./shards"),
            shards: default_shards(),
            otlp_http: "0.0.0.0:4318".parse().unwrap(),
            otlp_grpc: "0.0.0.0:4317".parse().unwrap(),
            query: "0.0.0.0:3200".parse().unwrap(),
            fsync: FsyncPolicy::Interval,
            fsync_interval: Duration::from_secs(1),
            segment_bytes: SEGMENT_BYTES_DEFAULT,
            page_cache_keep: Some(PAGE_CACHE_KEEP_DEFAULT),
            header_read_timeout: Duration::from_secs(30),
            body_read_timeout: Duration::from_secs(60),
            hdr_dump_dir: None,
            hdr_dump_interval: Duration::from_secs(10),
        }
    }
}

/// One shard per core this process may run on.
pub fn default_shards() -> u32 {
    std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1)
}
