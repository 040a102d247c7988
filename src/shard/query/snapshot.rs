//! One shard's metrics, its gauges read at the moment of the scrape.

use crate::index::Indexes;
use crate::metrics::Counter;
use crate::shard::conns::Conns;
use crate::shard::Shard;
use crate::storage::Store;

/// This shard's metrics, with its gauges read now.
pub(super) fn metrics_snapshot(
    shard: &Shard,
    index: &Indexes,
    store: &Store,
) -> crate::metrics::Snapshot {
    let stats = index.stats();
    let sealed = shard.sealed.borrow().stats();
    let conns = shard.conns.borrow();
    let (otlp, query) = match &*conns {
        Some((otlp, query)) => (Some(&**otlp), Some(&**query)),
        None => (None, None),
    };
    let open = |c: Option<&Conns>| c.map_or(0, |c| c.len() as u64);
    let evicted = |c: Option<&Conns>| c.map_or(0, |c| c.evicted.get());
    let refused = |c: Option<&Conns>| c.map_or(0, |c| c.refused.get());
    let mut snapshot = shard.metrics.snapshot(vec![
        (
            "connections_otlp",
            "connections open on the OTLP ports (HTTP and gRPC), within --max-connections per shard",
            open(otlp),
        ),
        (
            "connections_query",
            "connections open on the query port",
            open(query),
        ),
        (
            "requests_in_flight",
            "OTLP requests being worked on, and appends sent by other shards",
            shard.in_flight.get() as u64,
        ),
        (
            "request_bytes_in_flight",
            "request body bytes held by requests in flight",
            shard.in_flight_bytes.get() as u64,
        ),
        (
            "queue_depth",
            "appends sent to other shards and not yet answered: cross-shard ingest queued or being written",
            shard.mesh.appends_in_flight() as u64,
        ),
        (
            "segments",
            "raw segment files open (the head segment and those not sealed yet)",
            store.segment_count() as u64,
        ),
        (
            "bytes_stored",
            "bytes written to raw segments, headers included",
            store.bytes_written(),
        ),
        (
            "sealed_segments",
            "sealed segments held",
            sealed.segments,
        ),
        (
            "sealed_bytes",
            "bytes of sealed segments on disk, data files and sidecars",
            sealed.disk_bytes,
        ),
        (
            "sealed_spans",
            "spans held in sealed segments",
            sealed.spans,
        ),
        (
            "sealed_logs",
            "log records held in sealed segments",
            sealed.logs,
        ),
        (
            "sealed_memory_bytes",
            "approximate heap bytes of the sealed segments' sidecars",
            sealed.memory_bytes,
        ),
        (
            "index_traces",
            "traces in the in-memory index",
            stats.traces as u64,
        ),
        (
            "index_spans",
            "spans in the in-memory index",
            stats.spans as u64,
        ),
        (
            "index_logs",
            "log records in the in-memory index",
            stats.logs as u64,
        ),
        (
            "index_memory_bytes",
            "approximate heap bytes of the in-memory index",
            stats.approx_bytes as u64,
        ),
    ]);
    snapshot.oldest.push((
        "oldest_data_unix_seconds",
        "when the oldest segment kept was started (unix seconds): retention deletes from there",
        [
            store.oldest_created_unix_nanos(),
            shard.sealed.borrow().oldest_created_unix_nanos(),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(0)
            / 1_000_000_000,
    ));
    snapshot.counters.extend([
        Counter::new(
            "connections_evicted_total",
            "idle connections closed to make room for new ones at the connection cap",
            evicted(otlp) + evicted(query),
        ),
        Counter::new(
            "connections_refused_total",
            "new connections closed at once: at the cap with every open connection busy",
            refused(otlp) + refused(query),
        ),
    ]);
    snapshot
}
