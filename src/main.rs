//! `glust`: the command line. `glust` alone serves with the defaults; `glust serve` takes
//! flags. See docs/operations.md for every flag and docs/api.md for every endpoint.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Duration;

use clap::{Parser, Subcommand};
use glust::config::{Config, FsyncPolicy};
use glust::limits::{SEGMENT_BYTES_MAX, SEGMENT_BYTES_MIN};
use glust::server::process::{
    auto_retention_bytes, raise_memlock_limit, raise_open_files_limit, reexec_with_tcache_tunable,
    stop_on_signals, tune_malloc,
};

#[derive(Parser)]
#[command(
    name = "glust",
    version,
    about = "OpenTelemetry (OTLP) trace and log ingestor"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Receive OTLP, store it, serve queries (the default command).
    Serve(ServeArgs),
}

#[derive(Parser)]
struct ServeArgs {
    /// Directory holding one sub-directory of segments per shard.
    #[arg(long, default_value = "./shards")]
    data_dir: PathBuf,
    /// Number of shards (one pinned executor each). Default: the cores available, or the
    /// number of `--cores`.
    #[arg(long)]
    shards: Option<u32>,
    /// Cores to run the shards on, shard i on the i-th listed core (e.g. `0-7`, `2,4,6`,
    /// `1-3,8`); sets the shard count. Each must be a core this process may run on. Default:
    /// shard i on the i-th core of the process's CPU affinity.
    #[arg(long, value_parser = parse_cores)]
    cores: Option<CoreList>,
    /// OTLP/HTTP listen address (`POST /v1/traces`, `POST /v1/logs`).
    #[arg(long, default_value = "0.0.0.0:4318")]
    otlp_http: SocketAddr,
    /// OTLP/gRPC listen address (`TraceService/Export`, `LogsService/Export`).
    #[arg(long, default_value = "0.0.0.0:4317")]
    otlp_grpc: SocketAddr,
    /// Query API (`/api/v1/...`), `/metrics` (Prometheus), `/debug/hdr`, `/healthz` and
    /// `/readyz` listen address.
    #[arg(long, default_value = "0.0.0.0:3200")]
    query: SocketAddr,
    /// When appended data is fsync'd: always (before answering), interval, never.
    #[arg(long, value_enum, default_value_t = FsyncPolicy::Interval)]
    fsync: FsyncPolicy,
    /// Period of `--fsync interval` (e.g. 200ms, 1s).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    fsync_interval: Duration,
    /// Time a client has to send a request's headers before the connection is closed.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    header_read_timeout: Duration,
    /// Time a client has to send a request body before it is answered 408.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    body_read_timeout: Duration,
    /// Write an HdrHistogram interval log per latency histogram into this directory
    /// (`DIR/<metric>.hlog`, e.g. `request_http_traces.hlog`; the last interval at a clean
    /// shutdown). Created if missing, existing logs of those names are started afresh; glust
    /// does not start if it cannot be written.
    #[arg(long)]
    hdr_dump_dir: Option<PathBuf>,
    /// Interval of those logs.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    hdr_dump_interval: Duration,
    /// OTLP connections (the HTTP and gRPC ports together) each shard keeps open; at the cap,
    /// the connection idle the longest is closed for a new one. The query port has its own 64
    /// per shard. Default: half the open-file limit over the shards, less those 64, at most
    /// 8192.
    #[arg(long)]
    max_connections: Option<usize>,
    /// Size of each segment file in bytes (accepts k/M/G suffixes, e.g. 128M).
    #[arg(long, default_value = "128M", value_parser = parse_segment_bytes)]
    segment_bytes: u64,
    /// Bytes of each shard's newest records kept in the page cache (k/M/G suffixes); older
    /// records of the head segment are evicted once on disk and read from disk when a query
    /// needs them (full segments are left to sealing, which deletes them). `off` leaves
    /// caching to the kernel.
    #[arg(long, default_value = "128M", value_parser = parse_cache_keep)]
    page_cache_keep: CacheKeep,
    /// Bytes of full raw segments each shard lets wait for sealing (k/M/G suffixes); past it,
    /// appends are refused with a retryable 503 / `UNAVAILABLE` until sealing catches up.
    /// Bounds the raw backlog and the in-memory index it keeps when ingest outruns sealing.
    #[arg(long, default_value = "1G", value_parser = parse_bytes)]
    seal_backlog_bytes: u64,
    /// Bytes of segments the data directory may hold, all shards together (k/M/G suffixes);
    /// past it each shard deletes its oldest segments. `auto`: 80% of what the file system has
    /// free at start plus what the data directory holds already. `off`: no bound.
    #[arg(long, default_value = "auto", value_parser = parse_retention_bytes)]
    retention_bytes: RetentionBytes,
    /// Segments last written longer ago than this are deleted, oldest first (e.g. 12h, 7d).
    /// `off`: no bound.
    #[arg(long, default_value = "off", value_parser = parse_retention_age)]
    retention_age: RetentionAge,
}

/// `--retention-bytes`.
#[derive(Clone, Copy, Debug, PartialEq)]
enum RetentionBytes {
    Auto,
    Off,
    Bytes(u64),
}

fn parse_retention_bytes(s: &str) -> Result<RetentionBytes, String> {
    match s {
        "auto" => Ok(RetentionBytes::Auto),
        "off" => Ok(RetentionBytes::Off),
        _ => parse_bytes(s).map(RetentionBytes::Bytes),
    }
}

/// `--retention-age`: `None` for `off`.
#[derive(Clone, Copy, Debug, PartialEq)]
struct RetentionAge(Option<Duration>);

fn parse_retention_age(s: &str) -> Result<RetentionAge, String> {
    match s {
        "off" => Ok(RetentionAge(None)),
        _ => humantime::parse_duration(s)
            .map(|d| RetentionAge(Some(d)))
            .map_err(|e| e.to_string()),
    }
}

#[derive(Clone, Copy)]
struct CacheKeep(Option<u64>);

/// `--cores`: one value holding a list (clap would take a `Vec` for repeated flags).
#[derive(Clone)]
struct CoreList(Vec<usize>);

fn parse_cores(s: &str) -> Result<CoreList, String> {
    glust::config::parse_core_list(s).map(CoreList)
}

fn parse_cache_keep(s: &str) -> Result<CacheKeep, String> {
    match s {
        "off" => Ok(CacheKeep(None)),
        _ => parse_bytes(s).map(|b| CacheKeep(Some(b))),
    }
}

fn parse_segment_bytes(s: &str) -> Result<u64, String> {
    let bytes = parse_bytes(s)?;
    if !(SEGMENT_BYTES_MIN..=SEGMENT_BYTES_MAX).contains(&bytes) {
        return Err(format!(
            "segment size must be between {SEGMENT_BYTES_MIN} and {SEGMENT_BYTES_MAX} bytes \
             (64K to 4G less one byte)"
        ));
    }
    Ok(bytes)
}

impl Default for ServeArgs {
    fn default() -> Self {
        ServeArgs::parse_from(["serve"])
    }
}

fn parse_bytes(s: &str) -> Result<u64, String> {
    let (digits, mult) = match s.chars().last() {
        Some('k' | 'K') => (&s[..s.len() - 1], 1u64 << 10),
        Some('m' | 'M') => (&s[..s.len() - 1], 1 << 20),
        Some('g' | 'G') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{s}` is not a size like 64M"))?;
    n.checked_mul(mult)
        .ok_or_else(|| "size too large".to_string())
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    reexec_with_tcache_tunable();
    tune_malloc();
    let cli = Cli::parse();
    let args = match cli.command {
        Some(Command::Serve(a)) => a,
        None => ServeArgs::default(),
    };
    let config = match config_of(args) {
        Ok(config) => config,
        Err(why) => {
            eprintln!("glust: {why}");
            return ExitCode::from(2);
        }
    };
    let stop = match stop_on_signals() {
        Ok(stop) => stop,
        Err(e) => {
            eprintln!("glust: cannot install signal handler: {e}");
            return ExitCode::FAILURE;
        }
    };
    let summary = format!(
        "shards={} data-dir={} fsync={}",
        config.shards,
        config.data_dir.display(),
        config.fsync
    );
    let outcome = glust::server::run(config, stop.clone(), move |addrs| {
        // One machine-readable line on stdout: tests and scripts wait for it.
        println!(
            "glust ready: otlp-http={} otlp-grpc={} query={} {summary}",
            addrs.otlp_http, addrs.otlp_grpc, addrs.query
        );
    });
    match outcome {
        Ok(()) => {
            tracing::info!("stopped cleanly");
            if stop.load(Ordering::SeqCst) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("glust: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The configuration `args` give, with the limits raised and the connection cap derived from
/// them; what is wrong with the arguments otherwise (exit 2).
fn config_of(args: ServeArgs) -> Result<Config, String> {
    let cores = args.cores.map(|c| c.0);
    let shards = match (&cores, args.shards) {
        (Some(cores), Some(n)) if n as usize != cores.len() => {
            return Err(format!(
                "--shards {n} and --cores with {} cores disagree; --cores alone sets the shard count",
                cores.len()
            ));
        }
        (Some(cores), _) => cores.len() as u32,
        (None, n) => n.unwrap_or_else(glust::config::default_shards),
    };
    if shards == 0 {
        return Err("--shards must be at least 1".into());
    }
    raise_memlock_limit();
    let open_files_max = raise_open_files_limit();
    let max_connections = match args.max_connections {
        Some(0) => return Err("--max-connections must be at least 1".into()),
        Some(n) => n,
        None => glust::config::max_connections_default(open_files_max, shards),
    };
    tracing::info!(
        open_files_max,
        max_connections,
        "connections per shard capped"
    );
    let retention_bytes = match args.retention_bytes {
        RetentionBytes::Off => None,
        RetentionBytes::Bytes(b) => Some(b),
        RetentionBytes::Auto => Some(auto_retention_bytes(&args.data_dir).map_err(|e| {
            format!(
                "cannot size --retention-bytes auto from {}: {e}; give a size or off",
                args.data_dir.display()
            )
        })?),
    };
    let config = Config {
        data_dir: args.data_dir,
        shards,
        cores,
        otlp_http: args.otlp_http,
        otlp_grpc: args.otlp_grpc,
        query: args.query,
        fsync: args.fsync,
        fsync_interval: args.fsync_interval,
        segment_bytes: args.segment_bytes,
        page_cache_keep: args.page_cache_keep.0,
        seal_backlog_bytes: args.seal_backlog_bytes,
        header_read_timeout: args.header_read_timeout,
        body_read_timeout: args.body_read_timeout,
        hdr_dump_dir: args.hdr_dump_dir,
        hdr_dump_interval: args.hdr_dump_interval,
        max_connections,
        retention_bytes,
        retention_age: args.retention_age.0,
    };
    if let Some(per_shard) = config.retention_bytes_per_shard() {
        if per_shard < 2 * config.segment_bytes {
            return Err(format!(
                "--retention-bytes {} leaves each of {shards} shards {per_shard} bytes, \
                 less than two segments of --segment-bytes {}",
                retention_bytes.unwrap_or(0),
                config.segment_bytes
            ));
        }
        tracing::info!(
            retention_bytes,
            per_shard,
            "the data directory is bounded: past it the oldest segments are deleted"
        );
    }
    Ok(config)
}

/// `glust serve`'s defaults are written twice, as clap's strings (for `--help`) and as
/// `Config::default` (from `limits.rs`): these tests hold them together.
#[cfg(test)]
mod defaults {
    use super::*;
    use clap::CommandFactory;
    use glust::limits::{CONNECTIONS_DEFAULT_MAX, QUERY_CONNECTIONS_MAX};

    #[test]
    fn serve_flags_default_to_config_default() {
        let args = ServeArgs::default();
        let config = Config::default();
        assert_eq!(args.data_dir, config.data_dir);
        assert_eq!(args.otlp_http, config.otlp_http);
        assert_eq!(args.otlp_grpc, config.otlp_grpc);
        assert_eq!(args.query, config.query);
        assert_eq!(args.fsync, config.fsync);
        assert_eq!(args.fsync_interval, config.fsync_interval);
        assert_eq!(args.header_read_timeout, config.header_read_timeout);
        assert_eq!(args.body_read_timeout, config.body_read_timeout);
        assert_eq!(args.hdr_dump_interval, config.hdr_dump_interval);
        assert_eq!(args.segment_bytes, config.segment_bytes);
        assert_eq!(args.page_cache_keep.0, config.page_cache_keep);
    }

    #[test]
    fn max_connections_help_quotes_the_limits() {
        let mut serve = ServeArgs::command();
        let help = serve.render_long_help().to_string();
        let text: String = help.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            text.contains(&format!("its own {QUERY_CONNECTIONS_MAX} per shard")),
            "{text}"
        );
        assert!(
            text.contains(&format!("at most {CONNECTIONS_DEFAULT_MAX}")),
            "{text}"
        );
    }

    #[test]
    fn segment_sizes_are_bounded_by_the_limits() {
        assert_eq!(parse_segment_bytes("64k"), Ok(SEGMENT_BYTES_MIN));
        assert_eq!(
            parse_segment_bytes(&SEGMENT_BYTES_MAX.to_string()),
            Ok(SEGMENT_BYTES_MAX)
        );
        assert!(parse_segment_bytes("4G").is_err());
        assert!(parse_segment_bytes("63k").is_err());
    }
}
