//! Run-time configuration: what `glust serve` was told, with its defaults.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::limits::CORES_MAX;
use crate::limits::{
    BODY_READ_TIMEOUT_DEFAULT, CONNECTIONS_DEFAULT_MAX, CONNECTIONS_DEFAULT_MIN,
    FSYNC_INTERVAL_DEFAULT, HDR_DUMP_INTERVAL_DEFAULT, HEADER_READ_TIMEOUT_DEFAULT,
    PAGE_CACHE_KEEP_DEFAULT, QUERY_CONNECTIONS_MAX, SEAL_BACKLOG_BYTES_DEFAULT,
    SEGMENT_BYTES_DEFAULT,
};

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
    /// The core of each shard (`--cores`), as many as `shards`; `None`: shard i on the i-th
    /// core of the process's CPU affinity.
    pub cores: Option<Vec<usize>>,
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
    /// Bytes of full raw segments a shard lets wait for sealing before it refuses appends.
    pub seal_backlog_bytes: u64,
    /// Time a client has to send a request's headers (HTTP/1.1); slower connections are
    /// closed, so a trickle of bytes cannot hold one (and its memory) forever.
    pub header_read_timeout: Duration,
    /// Time a client has to send an OTLP request's body once its headers are in: 408 past it.
    pub body_read_timeout: Duration,
    /// OTLP connections (HTTP and gRPC ports together) each shard keeps open; at the cap the
    /// longest-idle one is closed for a new one (`shard::conns`).
    pub max_connections: usize,
    /// Where to write HdrHistogram interval logs of every latency histogram, if anywhere.
    pub hdr_dump_dir: Option<std::path::PathBuf>,
    /// How often those logs get an interval.
    pub hdr_dump_interval: Duration,
    /// Bytes of segments the whole data directory may hold, split evenly over the shards;
    /// past it each shard deletes its oldest segments (`None`: no bound).
    pub retention_bytes: Option<u64>,
    /// Segments last written longer ago than this are deleted (`None`: no bound).
    pub retention_age: Option<Duration>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./shards"),
            shards: default_shards(),
            cores: None,
            otlp_http: "0.0.0.0:4318".parse().unwrap(),
            otlp_grpc: "0.0.0.0:4317".parse().unwrap(),
            query: "0.0.0.0:3200".parse().unwrap(),
            fsync: FsyncPolicy::Interval,
            fsync_interval: FSYNC_INTERVAL_DEFAULT,
            segment_bytes: SEGMENT_BYTES_DEFAULT,
            page_cache_keep: Some(PAGE_CACHE_KEEP_DEFAULT),
            seal_backlog_bytes: SEAL_BACKLOG_BYTES_DEFAULT,
            header_read_timeout: HEADER_READ_TIMEOUT_DEFAULT,
            body_read_timeout: BODY_READ_TIMEOUT_DEFAULT,
            hdr_dump_dir: None,
            hdr_dump_interval: HDR_DUMP_INTERVAL_DEFAULT,
            max_connections: CONNECTIONS_DEFAULT_MAX,
            retention_bytes: None,
            retention_age: None,
        }
    }
}

impl Config {
    /// Each shard's share of `--retention-bytes`.
    pub fn retention_bytes_per_shard(&self) -> Option<u64> {
        self.retention_bytes
            .map(|total| total / u64::from(self.shards.max(1)))
    }
}

/// One shard per core this process may run on.
pub fn default_shards() -> u32 {
    std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1)
}

/// The default `--max-connections`: half of the open-file limit goes to connections, shared
/// by the shards, less each shard's query connections ([`QUERY_CONNECTIONS_MAX`]); the other
/// half is left for segment files, io_uring rings and the rest. At most
/// [`CONNECTIONS_DEFAULT_MAX`], at least [`CONNECTIONS_DEFAULT_MIN`].
pub fn max_connections_default(open_files_max: u64, shards: u32) -> usize {
    let per_shard = (open_files_max / 2 / shards.max(1) as u64) as usize;
    per_shard
        .saturating_sub(QUERY_CONNECTIONS_MAX)
        .clamp(CONNECTIONS_DEFAULT_MIN, CONNECTIONS_DEFAULT_MAX)
}

/// Parses a core list as `taskset -c` and the kernel's cpu lists write it: `0-7`, `2,4,6`,
/// `1-3,8`. Order is kept (shard i runs on the i-th core); a core listed twice is an error.
pub fn parse_core_list(s: &str) -> Result<Vec<usize>, String> {
    let mut cores = Vec::new();
    for part in s.split(',') {
        let part = part.trim();
        let num = |t: &str| {
            t.trim()
                .parse::<usize>()
                .map_err(|_| format!("`{part}` is not a core or a range like 0-7"))
        };
        let (first, last) = match part.split_once('-') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => (num(part)?, num(part)?),
        };
        if first > last {
            return Err(format!("`{part}`: a range goes from low to high"));
        }
        if last >= CORES_MAX {
            return Err(format!(
                "core {last} is past the {CORES_MAX} cores Glust handles"
            ));
        }
        for core in first..=last {
            if cores.contains(&core) {
                return Err(format!("core {core} is listed twice"));
            }
            cores.push(core);
        }
    }
    Ok(cores)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_cap_follows_the_open_file_limit() {
        assert_eq!(
            max_connections_default(1024, 1),
            512 - QUERY_CONNECTIONS_MAX
        );
        assert_eq!(
            max_connections_default(1024, 2),
            256 - QUERY_CONNECTIONS_MAX
        );
        assert_eq!(max_connections_default(1 << 20, 2), CONNECTIONS_DEFAULT_MAX);
        assert_eq!(max_connections_default(64, 4), 16, "never below 16");
    }

    #[test]
    fn core_lists_parse_like_taskset() {
        assert_eq!(parse_core_list("0-3"), Ok(vec![0, 1, 2, 3]));
        assert_eq!(parse_core_list("2,4,6"), Ok(vec![2, 4, 6]));
        assert_eq!(parse_core_list("1-3,8"), Ok(vec![1, 2, 3, 8]));
        assert_eq!(parse_core_list("5,1"), Ok(vec![5, 1]), "order is kept");
        assert_eq!(parse_core_list("7"), Ok(vec![7]));
        assert!(parse_core_list("3-1").unwrap_err().contains("low to high"));
        assert!(parse_core_list("1,1").unwrap_err().contains("twice"));
        assert!(parse_core_list("0-2,2").unwrap_err().contains("twice"));
        assert!(parse_core_list("").is_err());
        assert!(parse_core_list("a").is_err());
        assert!(parse_core_list("1,").is_err());
        assert!(parse_core_list("99999").unwrap_err().contains("past"));
    }
}
