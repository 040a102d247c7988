//! The docs quote the code, and this checks that they quote it right:
//!
//! - every flag of `glust serve --help` has a row in docs/operations.md's flag table, with the
//!   default the help gives, and the table has no flag the binary lacks;
//! - README's ports are the defaults of the listener flags;
//! - every value the docs link to `src/limits.rs` (`[16 MiB](../src/limits.rs "NAME")`) is the
//!   value of the constant `NAME`, rendered as below.
//!
//! A limit that changes in `limits.rs` thus fails this test until the docs say the new value.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use glust::limits as l;

/// A quoted value: how `limits.rs` holds it decides how the docs write it.
#[derive(Debug, Clone, Copy)]
enum Quantity {
    Bytes(u64),
    Count(u64),
    Time(Duration),
}
use Quantity::{Bytes, Count, Time};

impl Quantity {
    /// How the docs write it: bytes in the largest binary unit that divides them (`16 MiB`,
    /// `256 bytes`), counts in digits (`1024` or `1,024`), times in the largest unit that divides
    /// them (`1 s`, `10 ms`, `500 µs`).
    fn renderings(self) -> Vec<String> {
        match self {
            Bytes(n) => {
                let unit = [(30, "GiB"), (20, "MiB"), (10, "KiB")]
                    .into_iter()
                    .find(|&(shift, _)| n >= 1 << shift && n % (1 << shift) == 0);
                vec![match unit {
                    Some((shift, name)) => format!("{} {name}", n >> shift),
                    None => format!("{n} bytes"),
                }]
            }
            Count(n) => vec![n.to_string(), grouped(n)],
            Time(d) => {
                let text = if d.subsec_nanos() == 0 {
                    format!("{} s", d.as_secs())
                } else if d.as_nanos() % 1_000_000 == 0 {
                    format!("{} ms", d.as_millis())
                } else {
                    format!("{} µs", d.as_micros())
                };
                vec![text]
            }
        }
    }
}

fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The limits the docs quote. A constant linked in the docs and missing here fails the test.
fn quoted_limits() -> BTreeMap<&'static str, Quantity> {
    let b = |n: usize| Bytes(n as u64);
    let c = |n: usize| Count(n as u64);
    BTreeMap::from([
        ("REQUEST_WIRE_BYTES_MAX", b(l::REQUEST_WIRE_BYTES_MAX)),
        ("REQUEST_DECODED_BYTES_MAX", b(l::REQUEST_DECODED_BYTES_MAX)),
        ("REQUEST_VALUES_BYTES_MAX", b(l::REQUEST_VALUES_BYTES_MAX)),
        ("GRPC_MESSAGE_BYTES_MAX", b(l::GRPC_MESSAGE_BYTES_MAX)),
        ("ATTRIBUTES_COUNT_MAX", c(l::ATTRIBUTES_COUNT_MAX)),
        ("ATTRIBUTE_KEY_BYTES_MAX", b(l::ATTRIBUTE_KEY_BYTES_MAX)),
        ("VALUE_BYTES_MAX", b(l::VALUE_BYTES_MAX)),
        ("VALUE_DEPTH_MAX", c(l::VALUE_DEPTH_MAX)),
        ("SPAN_EVENTS_MAX", c(l::SPAN_EVENTS_MAX)),
        ("SPAN_LINKS_MAX", c(l::SPAN_LINKS_MAX)),
        ("PAGE_CACHE_KEEP_DEFAULT", Bytes(l::PAGE_CACHE_KEEP_DEFAULT)),
        ("CROSS_SHARD_INFLIGHT_MAX", c(l::CROSS_SHARD_INFLIGHT_MAX)),
        ("SHARD_INGEST_INFLIGHT_MAX", c(l::SHARD_INGEST_INFLIGHT_MAX)),
        ("SHARD_INGEST_BYTES_MAX", b(l::SHARD_INGEST_BYTES_MAX)),
        ("TRIM_BURST_BYTES", b(l::TRIM_BURST_BYTES)),
        ("TRIM_QUIET_BYTES", b(l::TRIM_QUIET_BYTES)),
        (
            "MALLOC_TRIM_THRESHOLD_BYTES",
            b(l::MALLOC_TRIM_THRESHOLD_BYTES),
        ),
        (
            "MALLOC_MMAP_THRESHOLD_BYTES",
            b(l::MALLOC_MMAP_THRESHOLD_BYTES),
        ),
        (
            "MALLOC_TCACHE_COUNT",
            Count(u64::from(l::MALLOC_TCACHE_COUNT)),
        ),
        ("QUERY_CONNECTIONS_MAX", c(l::QUERY_CONNECTIONS_MAX)),
        ("CONNECTIONS_DEFAULT_MIN", c(l::CONNECTIONS_DEFAULT_MIN)),
        ("CONNECTIONS_DEFAULT_MAX", c(l::CONNECTIONS_DEFAULT_MAX)),
        (
            "RETRY_AFTER_SECS",
            Time(Duration::from_secs(u64::from(l::RETRY_AFTER_SECS))),
        ),
        ("QUERY_LIMIT_MAX", c(l::QUERY_LIMIT_MAX)),
        ("QUERY_LIMIT_DEFAULT", c(l::QUERY_LIMIT_DEFAULT)),
        ("TAG_VALUES_LIMIT_DEFAULT", c(l::TAG_VALUES_LIMIT_DEFAULT)),
        ("TAG_VALUE_BYTES_MAX", b(l::TAG_VALUE_BYTES_MAX)),
        ("TAG_VALUES_TRACKED", c(l::TAG_VALUES_TRACKED)),
        ("TAG_VALUES_KEPT", c(l::TAG_VALUES_KEPT)),
        ("TAG_SAMPLE_EVERY", c(l::TAG_SAMPLE_EVERY)),
        ("TAG_KEYS_MAX", c(l::TAG_KEYS_MAX)),
        ("TAG_TEXT_BYTES_MAX", b(l::TAG_TEXT_BYTES_MAX)),
        ("SEARCH_ATTRS_MAX", c(l::SEARCH_ATTRS_MAX)),
        ("TRACEQL_BYTES_MAX", b(l::TRACEQL_BYTES_MAX)),
        ("TRACEQL_CONDITIONS_MAX", c(l::TRACEQL_CONDITIONS_MAX)),
        ("TRACEQL_REGEX_BYTES_MAX", b(l::TRACEQL_REGEX_BYTES_MAX)),
        ("SEARCH_SPSS_MAX", c(l::SEARCH_SPSS_MAX)),
        ("SEARCH_SPSS_DEFAULT", c(l::SEARCH_SPSS_DEFAULT)),
        ("SEARCH_TIMEOUT_DEFAULT", Time(l::SEARCH_TIMEOUT_DEFAULT)),
        ("SEARCH_TIMEOUT_MAX", Time(l::SEARCH_TIMEOUT_MAX)),
        ("INTERNED_NAMES_MAX", c(l::INTERNED_NAMES_MAX)),
        ("INTERNED_NAME_BYTES_MAX", b(l::INTERNED_NAME_BYTES_MAX)),
        (
            "H2_CONCURRENT_STREAMS_MAX",
            Count(u64::from(l::H2_CONCURRENT_STREAMS_MAX)),
        ),
        (
            "H2_STREAM_WINDOW_BYTES",
            Bytes(u64::from(l::H2_STREAM_WINDOW_BYTES)),
        ),
        (
            "H2_CONNECTION_WINDOW_BYTES",
            Bytes(u64::from(l::H2_CONNECTION_WINDOW_BYTES)),
        ),
        (
            "H2_FRAME_BYTES_MAX",
            Bytes(u64::from(l::H2_FRAME_BYTES_MAX)),
        ),
        ("H2_KEEP_ALIVE_INTERVAL", Time(l::H2_KEEP_ALIVE_INTERVAL)),
        ("H2_KEEP_ALIVE_TIMEOUT", Time(l::H2_KEEP_ALIVE_TIMEOUT)),
        ("ACCEPT_BACKOFF_MIN", Time(l::ACCEPT_BACKOFF_MIN)),
        ("ACCEPT_BACKOFF_MAX", Time(l::ACCEPT_BACKOFF_MAX)),
        ("ACCEPT_LOG_PERIOD", Time(l::ACCEPT_LOG_PERIOD)),
        ("EVICTION_GRACE", Time(l::EVICTION_GRACE)),
        ("SEAL_RETRY", Time(l::SEAL_RETRY)),
        ("SEALED_OPEN_THREADS", c(l::SEALED_OPEN_THREADS)),
        ("SEAL_NICE", Count(l::SEAL_NICE as u64)),
        ("SEAL_URGENT_PERCENT", Count(l::SEAL_URGENT_PERCENT)),
        (
            "SEAL_BACKLOG_BYTES_DEFAULT",
            Bytes(l::SEAL_BACKLOG_BYTES_DEFAULT),
        ),
        ("QUERY_SLICE", Time(l::QUERY_SLICE)),
        ("SEARCHES_MAX", c(l::SEARCHES_MAX)),
        ("GROUP_WRITE_BYTES_MAX", b(l::GROUP_WRITE_BYTES_MAX)),
        ("PORT_RELEASE_WAIT", Time(l::PORT_RELEASE_WAIT)),
    ])
}

const DOCS: &[&str] = &[
    "README.md",
    "docs/api.md",
    "docs/compat.md",
    "docs/operations.md",
];

fn read(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// Every `[TEXT](…src/limits.rs "NAME")` of `doc`, as (line, text, name).
fn limit_links(doc: &str) -> Vec<(usize, String, String)> {
    const TARGET: &str = "src/limits.rs \"";
    let mut out = Vec::new();
    let mut rest = doc;
    let mut consumed = 0;
    while let Some(at) = rest.find(TARGET) {
        let before = &rest[..at];
        let open_paren = before
            .rfind("](")
            .expect("a limits.rs link starts with `](`");
        let open_bracket = before[..open_paren]
            .rfind('[')
            .expect("a limits.rs link has a text");
        let text = before[open_bracket + 1..open_paren].replace('\n', " ");
        let after = &rest[at + TARGET.len()..];
        let close = after.find("\")").expect("a limits.rs link ends with `\")`");
        let line = doc[..consumed + at].lines().count();
        out.push((line, text, after[..close].to_string()));
        let step = at + TARGET.len() + close;
        consumed += step;
        rest = &rest[step..];
    }
    out
}

#[test]
fn the_docs_quote_limits_rs_values() {
    let limits = quoted_limits();
    let mut linked = BTreeSet::new();
    let mut wrong = Vec::new();
    for path in DOCS {
        for (line, text, name) in limit_links(&read(path)) {
            let quantity = *limits.get(name.as_str()).unwrap_or_else(|| {
                panic!("{path}:{line} links {name}, which tests/docs.rs does not know: add it")
            });
            let renderings = quantity.renderings();
            let ok = renderings
                .iter()
                .any(|r| text == *r || text.starts_with(&format!("{r} ")));
            if !ok {
                wrong.push(format!(
                    "{path}:{line}: [{text}] links {name}, which is {}",
                    renderings[0]
                ));
            }
            linked.insert(name);
        }
    }
    assert!(
        wrong.is_empty(),
        "docs quote stale limits:\n{}",
        wrong.join("\n")
    );
    let unused: Vec<_> = limits.keys().filter(|n| !linked.contains(**n)).collect();
    assert!(unused.is_empty(), "no doc links these any more: {unused:?}");
}

/// `glust serve --help`: each long flag with its `[default: …]`, if it has one.
fn help_flags() -> BTreeMap<String, Option<String>> {
    let out = Command::new(env!("CARGO_BIN_EXE_glust"))
        .args(["serve", "--help"])
        .output()
        .expect("glust serve --help runs");
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).expect("help is UTF-8");
    let mut flags = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in help.lines() {
        let trimmed = line.trim_start();
        let flag = trimmed
            .strip_prefix("-h, ")
            .unwrap_or(trimmed)
            .strip_prefix("--")
            .filter(|_| line.starts_with("  ") && !line.starts_with("          "));
        if let Some(flag) = flag {
            let name = format!("--{}", flag.split_whitespace().next().expect("a flag name"));
            flags.insert(name.clone(), None);
            current = Some(name);
        } else if let (Some(name), Some(at)) = (&current, trimmed.find("[default: ")) {
            let value = &trimmed[at + "[default: ".len()..];
            let value = value.strip_suffix(']').expect("`[default: …]` on one line");
            flags.insert(name.clone(), Some(value.to_string()));
        }
    }
    flags.remove("--help");
    flags
}

/// docs/operations.md's flag table: each `--flag` with its default cell, backticks removed.
fn documented_flags() -> BTreeMap<String, String> {
    read("docs/operations.md")
        .lines()
        .filter_map(|row| row.strip_prefix("| `--"))
        .map(|row| {
            let cells: Vec<&str> = row.split(" | ").collect();
            let name = format!("--{}", cells[0].split(['`', ' ']).next().expect("a name"));
            (name, cells[1].trim_matches('`').to_string())
        })
        .collect()
}

#[test]
fn the_flag_table_is_glust_serve_help() {
    let help = help_flags();
    let docs = documented_flags();
    assert!(help.len() >= 10, "help parsed: {help:?}");
    let in_help: BTreeSet<_> = help.keys().collect();
    let in_docs: BTreeSet<_> = docs.keys().collect();
    assert_eq!(
        in_help, in_docs,
        "docs/operations.md's flag table and `glust serve --help` list different flags"
    );
    for (flag, default) in &help {
        if let Some(default) = default {
            assert_eq!(
                &docs[flag], default,
                "docs/operations.md gives {flag} another default than --help"
            );
        }
    }
}

#[test]
fn readme_ports_are_the_listener_defaults() {
    let help = help_flags();
    let port = |flag: &str| {
        let addr = help[flag].as_deref().expect("listeners have defaults");
        addr.rsplit(':').next().expect("host:port").to_string()
    };
    let readme = read("README.md");
    for (flag, what) in [
        ("--otlp-grpc", "OTLP/gRPC"),
        ("--otlp-http", "OTLP/HTTP"),
        ("--query", "query API"),
    ] {
        let row = format!("| `{}` | {what}", port(flag));
        assert!(readme.contains(&row), "README has no `{row}` row");
    }
}
