//! Every limit Glust enforces, in one place, each with its reason.
//!
//! Units come last in names (`*_bytes_max`, `*_count_max`). Relationships between limits are
//! checked at compile time at the bottom of this file.

/// Largest request body accepted on the wire (after transfer decoding, before decompression).
/// OTLP exporters batch to a few MiB at most; anything bigger is a misconfiguration or abuse.
pub const REQUEST_WIRE_BYTES_MAX: usize = 16 << 20;

/// Largest request body after gzip/zstd decompression. Bounds the memory a compressed
/// "bomb" can make us allocate: decompression stops and the request gets 413 past this.
pub const REQUEST_DECODED_BYTES_MAX: usize = 64 << 20;

/// Memory the decoded values of one request may take. Decoding expands (a two-byte attribute
/// on the wire is a 56-byte value in memory); without this bound a hostile body of
/// `REQUEST_DECODED_BYTES_MAX` could decode into gigabytes. Typical OTLP expands about 2x, so
/// this leaves room for the largest legitimate bodies. Past it: 413.
pub const DECODED_REQUEST_BYTES_MAX: usize = 256 << 20;

/// Largest OTLP/gRPC message accepted (the gRPC "max receive message size"), compressed or
/// not: the same bound as an OTLP/HTTP body on the wire. Past it: `RESOURCE_EXHAUSTED`.
pub const GRPC_MESSAGE_BYTES_MAX: usize = REQUEST_WIRE_BYTES_MAX;

/// Attributes kept per span, event, link, log record, resource or scope. Extra attributes are
/// dropped and added to `dropped_attributes_count`, as the OTLP data model prescribes.
pub const ATTRIBUTES_COUNT_MAX: usize = 128;

/// Longest attribute key kept, in bytes. Longer keys are truncated on a char boundary.
pub const ATTRIBUTE_KEY_BYTES_MAX: usize = 256;

/// Longest string or bytes value kept, in bytes (attribute values, log bodies, names).
/// Longer values are truncated on a char boundary and counted.
pub const VALUE_BYTES_MAX: usize = 64 << 10;

/// Deepest nesting of array / key-value-list values. Deeper values are replaced by an empty
/// value and counted; this also bounds recursion in the decoder and the JSON encoder.
pub const VALUE_DEPTH_MAX: usize = 8;

/// Elements kept in one array or key-value-list value.
pub const VALUE_ELEMENTS_MAX: usize = 1024;

/// Events kept per span; the rest are dropped and counted in `dropped_events_count`.
pub const SPAN_EVENTS_MAX: usize = 128;

/// Links kept per span; the rest are dropped and counted in `dropped_links_count`.
pub const SPAN_LINKS_MAX: usize = 128;

/// Protobuf nesting depth the decoder follows before rejecting the message as malformed.
/// Deeper than any valid OTLP message with `VALUE_DEPTH_MAX` levels of values.
pub const PROTO_DEPTH_MAX: usize = 32;

/// Size of one segment file. Records never straddle segments, so this is also the ceiling
/// of one record. Smaller under `cfg(test)` so every test run crosses segment rollovers.
#[cfg(not(test))]
pub const SEGMENT_BYTES_DEFAULT: u64 = 128 << 20;
#[cfg(test)]
pub const SEGMENT_BYTES_DEFAULT: u64 = 1 << 20;

/// Bytes of each shard's most recent records kept in the page cache; older written records
/// are evicted once on disk (`storage::CacheWork` says why). 64 MiB is about a sixth of a
/// second of one shard's records at its measured peak (~0.9 M spans/s, ~480 B stored per
/// span: BENCHMARKS.md): the newest records are served from memory, older ones cost a disk
/// read. `--page-cache-keep`.
pub const PAGE_CACHE_KEEP_DEFAULT: u64 = 64 << 20;

/// Smallest segment size an operator may configure.
pub const SEGMENT_BYTES_MIN: u64 = 64 << 10;

/// Largest record payload. A request part bigger than this is split into several records.
pub const RECORD_BYTES_MAX: usize = 8 << 20;

/// In-flight requests one shard may have outstanding at another shard (credits per ordered
/// pair). Also the capacity of the request and reply queues of that pair, so a send never
/// finds a queue full: running out of credits *is* the backpressure signal.
pub const CROSS_SHARD_INFLIGHT_MAX: usize = 256;

/// Concurrent ingest requests one shard works on before answering 429. Bounds the memory of
/// decoded-but-unwritten requests.
pub const SHARD_INGEST_INFLIGHT_MAX: usize = 512;

/// Bytes of request bodies (decompressed) one shard holds in flight before answering 429.
/// With [`SHARD_INGEST_INFLIGHT_MAX`] this bounds a shard's memory for requests it has read
/// but not yet answered (their encoded records are of the same order of size).
pub const SHARD_INGEST_BYTES_MAX: usize = 256 << 20;

/// Request bytes that make a burst, received in one second or held at once by a shard: after
/// a burst, the first quiet second has the allocator give freed memory back to the kernel
/// (`shard::trim`). A quarter of [`SHARD_INGEST_BYTES_MAX`]: below it, what glibc keeps is
/// within the 64 MiB per heap it is allowed to keep anyway.
pub const TRIM_BURST_BYTES: usize = SHARD_INGEST_BYTES_MAX / 4;

/// Connections one shard keeps open on the query port, apart from the OTLP ports' cap
/// (`--max-connections`), so that health checks and queries always find a descriptor. At this
/// cap the longest-idle query connection is closed for a new one.
pub const QUERY_CONNECTIONS_MAX: usize = 64;

/// Ceiling of the default `--max-connections` per shard, whatever the open-file limit allows:
/// an idle connection costs its buffers (tens of KiB), so a million of them would cost more
/// memory than descriptors.
pub const CONNECTIONS_DEFAULT_MAX: usize = 8192;

/// Seconds a client is told to wait (`Retry-After`) when Glust is overloaded.
pub const RETRY_AFTER_SECS: u32 = 1;

/// Results one search may return.
pub const QUERY_LIMIT_MAX: usize = 1000;

/// Results a search returns when the request names no `limit`.
pub const QUERY_LIMIT_DEFAULT: usize = 20;

/// Distinct service or span names a shard interns for its index. Past it, new names are
/// indexed under an overflow id and found by scanning records instead.
pub const INTERNED_NAMES_MAX: usize = 1 << 20;

/// Longest service or span name the index interns. Longer names are still stored and found,
/// by reading records; this bounds the index's name table by bytes, not only by count.
pub const INTERNED_NAME_BYTES_MAX: usize = 256;

const _: () = assert!(REQUEST_WIRE_BYTES_MAX <= REQUEST_DECODED_BYTES_MAX);
const _: () = assert!(RECORD_BYTES_MAX as u64 * 2 <= SEGMENT_BYTES_DEFAULT || cfg!(test));
const _: () = assert!(SEGMENT_BYTES_MIN <= SEGMENT_BYTES_DEFAULT);
const _: () = assert!(VALUE_DEPTH_MAX * 3 < PROTO_DEPTH_MAX);
const _: () = assert!(QUERY_LIMIT_DEFAULT <= QUERY_LIMIT_MAX);
