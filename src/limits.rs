//! Every limit Glust enforces, in one place, each with its reason.
//!
//! Units come last in names (`*_bytes_max`, `*_count_max`). Relationships between limits are
//! checked at compile time at the bottom of this file.

use std::time::Duration;

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
pub const REQUEST_VALUES_BYTES_MAX: usize = 256 << 20;

/// Largest OTLP/gRPC message accepted (the gRPC "max receive message size"), compressed or
/// not: the same bound as an OTLP/HTTP body on the wire. Past it: `RESOURCE_EXHAUSTED`.
pub const GRPC_MESSAGE_BYTES_MAX: usize = REQUEST_WIRE_BYTES_MAX;

/// Longest `grpc-message` Glust sends, cut with `...` past it: clients cap metadata (grpc-java
/// at 8 KiB), and a long message must not turn a clear status into a protocol error.
pub const GRPC_STATUS_MESSAGE_BYTES_MAX: usize = 1024;

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
/// of the head segment are evicted once on disk (`storage::CacheWork` says why). A full
/// segment's records are not evicted: sealing reads them all once more, then deletes the file,
/// which frees their pages. 128 MiB, the default segment size, lets sealing read a default
/// segment from memory instead of reading back what was just written (on the VM of
/// BENCHMARKS.md, 64 MiB made sealing read ~63 MB/s from disk at 114 k spans/s of ingest and
/// fall behind); the newest records are served from memory, older ones cost a disk read.
/// `--page-cache-keep`.
pub const PAGE_CACHE_KEEP_DEFAULT: u64 = 128 << 20;

/// Threads that open a shard directory's sealed pairs at start-up. Each open reads the sidecar
/// and the data file's header: on a cold page cache, 211 pairs opened one after the other took
/// 3.0 s on the VM of BENCHMARKS.md, nearly all of it waiting for the disk, which answers
/// many reads at once about as fast as one.
pub const SEALED_OPEN_THREADS: usize = 16;

/// Smallest segment size an operator may configure.
pub const SEGMENT_BYTES_MIN: u64 = 64 << 10;

/// Largest segment size an operator may configure: a record's place in its segment is a
/// `u32` offset (`index::RecordLoc`), so 4 GiB less one byte.
pub const SEGMENT_BYTES_MAX: u64 = u32::MAX as u64;

/// `--retention-bytes auto`: this share, in percent, of what the file system has free at start
/// plus what the data directory holds, so that Glust never fills the disk by default and
/// leaves room for the rest of the machine.
pub const RETENTION_AUTO_PERCENT: u64 = 80;

/// Longest column of a sealed block, decompressed: blocks hold a few thousand spans, a few MiB
/// at most; a length past this is damage.
pub const SEALED_COLUMN_BYTES_MAX: usize = 64 << 20;

/// Spans per sealed block, about: a block ends at the first trace boundary past this, so a
/// trace's spans of one segment sit in one block. At loadgen's ~67 bytes per sealed span a
/// block is ~270 KB, and a trace lookup decodes one.
pub const SEALED_BLOCK_SPANS: usize = 4096;

/// Spans a sealed block holds at most: a trace with more spans than this in one segment is
/// cut over several blocks, which the block table's trace-id ranges find together.
pub const SEALED_BLOCK_SPANS_MAX: usize = 4 * SEALED_BLOCK_SPANS;

/// Stored log bytes per sealed log block, about.
pub const SEALED_LOG_BLOCK_BYTES: usize = 1 << 20;

/// Largest sidecar read at start-up: a segment's sidecar is a few hundred KB; past this is
/// damage, and reading it would only waste memory.
pub const SIDECAR_BYTES_MAX: u64 = 256 << 20;

/// How often each shard looks for full raw segments to seal.
pub const SEAL_PERIOD: Duration = Duration::from_secs(1);

/// CPU priority (nice) of sealing while few raw segments wait for it: it takes what ingest
/// leaves of a core. Sealing costs several times what ingesting a span did, so at full
/// speed it would take most of a shard's core from ingest (on one core under wrk, the peak
/// fell 30% with sealing at nice 0).
pub const SEAL_NICE: i32 = 19;

/// Share of `--seal-backlog-bytes` (in percent) past which sealing runs at normal priority
/// (nice 0) and takes its fair share of the core from ingest: near the bound where appends
/// are refused, sealing is the only way out. Below it, bursts of ingest run at full speed
/// (with 512 MiB, the peak of 5 s bursts of logs fell 21% as sealing took half the core).
pub const SEAL_URGENT_PERCENT: u64 = 75;

/// `--seal-backlog-bytes`'s default: eight default segments wait for sealing at most (about
/// 110 MB of in-memory index for loadgen's traces) before appends are refused.
pub const SEAL_BACKLOG_BYTES_DEFAULT: u64 = 8 * SEGMENT_BYTES_DEFAULT;

/// How long a raw segment whose sealing failed waits before it is tried again.
pub const SEAL_RETRY: Duration = Duration::from_secs(30);

/// How often each shard looks whether retention has segments to delete.
pub const RETENTION_PERIOD: Duration = Duration::from_secs(1);

/// `--fsync-interval`'s default: a machine crash loses at most the last second acknowledged.
pub const FSYNC_INTERVAL_DEFAULT: Duration = Duration::from_secs(1);

/// `--header-read-timeout`'s default: time a client has to send a request's headers.
pub const HEADER_READ_TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);

/// `--body-read-timeout`'s default: time a client has to send an OTLP body.
pub const BODY_READ_TIMEOUT_DEFAULT: Duration = Duration::from_secs(60);

/// `--hdr-dump-interval`'s default.
pub const HDR_DUMP_INTERVAL_DEFAULT: Duration = Duration::from_secs(10);

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

/// A second is quiet, and a trim may follow a burst, when a shard received and held less than
/// this: an eighth of a burst.
pub const TRIM_QUIET_BYTES: usize = TRIM_BURST_BYTES / 8;

/// Freed memory glibc keeps at the top of each heap instead of giving it back (mallopt
/// `M_TRIM_THRESHOLD`, set at start by `main::tune_malloc`, which says why).
pub const MALLOC_TRIM_THRESHOLD_BYTES: usize = 64 << 20;

/// Blocks larger than this get an `mmap` of their own from glibc (`M_MMAP_THRESHOLD`). Larger
/// than a group write ([`GROUP_WRITE_BYTES_MAX`]) and than the records and bodies of a usual
/// request, so those come from the heap.
pub const MALLOC_MMAP_THRESHOLD_BYTES: usize = 4 << 20;

/// Blocks of up to 1 KiB that glibc keeps per thread and per size, ready for reuse (glibc's
/// default is 7; `main::reexec_with_tcache_tunable` says why more).
pub const MALLOC_TCACHE_COUNT: u32 = 1024;

/// Connections one shard keeps open on the query port, apart from the OTLP ports' cap
/// (`--max-connections`), so that health checks and queries always find a descriptor. At this
/// cap the longest-idle query connection is closed for a new one.
pub const QUERY_CONNECTIONS_MAX: usize = 64;

/// Ceiling of the default `--max-connections` per shard, whatever the open-file limit allows:
/// an idle connection costs its buffers (tens of KiB), so a million of them would cost more
/// memory than descriptors.
pub const CONNECTIONS_DEFAULT_MAX: usize = 8192;

/// Floor of the default `--max-connections` per shard, however low the open-file limit.
pub const CONNECTIONS_DEFAULT_MIN: usize = 16;

/// Seconds a client is told to wait (`Retry-After`) when Glust is overloaded.
pub const RETRY_AFTER_SECS: u32 = 1;

/// Results one search may return.
pub const QUERY_LIMIT_MAX: usize = 1000;

/// Results a search returns when the request names no `limit`.
pub const QUERY_LIMIT_DEFAULT: usize = 20;

/// Keys (a scope, a service and an attribute key) tag discovery notes per segment, head or
/// sealed: past it new keys are left out (`crate::domain::tags`).
pub const TAG_KEYS_MAX: usize = 1024;

/// Values of one key counted per segment (space-saving: a value more frequent than one in this
/// many is always among them).
pub const TAG_VALUES_TRACKED: usize = 32;

/// Values of one key a sealed segment's sidecar keeps, its most frequent.
pub const TAG_VALUES_KEPT: usize = 16;

/// Longest string value tag discovery lists: longer ones (SQL, stack traces) are no choice for
/// a drop-down, and would fill the bound below.
pub const TAG_VALUE_BYTES_MAX: usize = 128;

/// Text (keys and values) tag discovery holds per segment, head or sealed.
pub const TAG_TEXT_BYTES_MAX: usize = 1 << 20;

/// One span or log record in this many, about, has its attributes noted for tag discovery, in
/// the head and at sealing, weighing the items it stands for (resources are noted once a batch,
/// for all its items; `crate::domain::tags::Sampler` picks them). Noting all of them cost ~270
/// ns a span in the head (storage bench, `index/add 100 spans to a warm part`), near a third of
/// ingest's cost on a core, and sealing 12% more time on loadgen's spans; one in 8, ~35 ns and
/// 2%.
pub const TAG_SAMPLE_EVERY: usize = 8;

/// Values a tag values answer holds unless asked (`limit`).
pub const TAG_VALUES_LIMIT_DEFAULT: usize = 100;

/// Matching spans a trace search returns per trace (`spss`) unless asked, and at most.
pub const SEARCH_SPSS_DEFAULT: usize = 3;
pub const SEARCH_SPSS_MAX: usize = 100;

/// `attr=key=value` filters one search may carry.
pub const SEARCH_ATTRS_MAX: usize = 16;

/// The longest TraceQL query taken, and the conditions it may hold: a query is parsed and
/// checked against every candidate span, so its size is bounded like a request's.
pub const TRACEQL_BYTES_MAX: usize = 16 << 10;
pub const TRACEQL_CONDITIONS_MAX: usize = 64;

/// The memory one TraceQL regular expression may compile to (the `regex` crate's size limit):
/// a pattern past it is refused rather than built.
pub const TRACEQL_REGEX_BYTES_MAX: usize = 1 << 20;

/// How long a search runs when the request names no `timeout`: past it, the answer holds what
/// was found, marked partial.
pub const SEARCH_TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);

/// The longest `timeout` a search may ask for.
pub const SEARCH_TIMEOUT_MAX: Duration = Duration::from_secs(300);

/// Distinct service or span names a shard interns for its index. Past it, new names are
/// indexed under an overflow id and found by scanning records instead.
pub const INTERNED_NAMES_MAX: usize = 1 << 20;

/// Longest service or span name the index interns. Longer names are still stored and found,
/// by reading records; this bounds the index's name table by bytes, not only by count.
pub const INTERNED_NAME_BYTES_MAX: usize = 256;

// ---- HTTP and connections

/// HTTP/2 streams one connection may have open at once.
pub const H2_CONCURRENT_STREAMS_MAX: u32 = 256;

/// HTTP/2 flow-control windows: big enough for a 4 MiB export in flight per stream without
/// waiting for window updates on loopback or a LAN.
pub const H2_STREAM_WINDOW_BYTES: u32 = 4 << 20;
/// The connection's window: four streams' worth.
pub const H2_CONNECTION_WINDOW_BYTES: u32 = 16 << 20;

/// Largest HTTP/2 frame the client may send (SETTINGS_MAX_FRAME_SIZE; the protocol's default
/// is 16 KiB). A client that uses it (Rust's h2 does) sends an export of up to this size as
/// one DATA frame: one frame to parse and a body in one piece, which collecting then does not
/// copy. The cost is that a connection's reader may buffer one frame this
/// large.
pub const H2_FRAME_BYTES_MAX: u32 = 256 << 10;

/// HTTP/2 pings on idle connections, and how long to wait for the answer, to drop dead peers.
pub const H2_KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// How long a ping may go unanswered before the connection is dropped.
pub const H2_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// Longest request head accepted (HTTP/1.1 headers).
pub const H1_HEADER_BYTES_MAX: usize = 64 << 10;

/// After a failed `accept` (out of descriptors), an accept loop waits this long, doubling
/// on each failure in a row up to [`ACCEPT_BACKOFF_MAX`]: it neither spins nor stalls.
pub const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
/// The longest wait between two failed accepts.
pub const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Accept failures are logged at most once per this period (with the count of the others).
pub const ACCEPT_LOG_PERIOD: Duration = Duration::from_secs(10);

/// How long a connection closed for room may take to finish once it has no request in
/// progress (an HTTP/2 client acknowledging GOAWAY).
pub const EVICTION_GRACE: Duration = Duration::from_secs(1);

/// Most bytes one read asks the socket for (and zeroes beforehand).
pub const READ_CHUNK_BYTES: usize = 16 << 10;

/// Spare capacity a joined body may keep, as a fraction of its length (1/16), before
/// `http::body::CountedBody::into_bytes` gives it back.
pub const JOINED_SLACK_DIVISOR: usize = 16;

// ---- Queries

/// How long a search scans before it lets the shard's other work run: the most a search
/// adds to each step of an export arriving meanwhile.
pub const QUERY_SLICE: Duration = Duration::from_micros(500);

/// Index entries a search visits between two looks at the clock: a few µs of work.
pub const SCAN_CLOCK_EVERY: usize = 64;

/// The sleep between two slices of a search: any sleep, so that the search's task waits on
/// the reactor's timers (see `shard::query::scan::Slice::next`). On a shard with nothing else to do the executor
/// parks for it: searches there take ~10% longer than one unbroken scan.
pub const SLICE_GAP: Duration = Duration::from_micros(1);

/// A search that reads records reads them ahead in blocks of this many index entries
/// (`shard::query::scan::ReadAhead`): at most ~40 records of 100 spans, ~1.3 MB, a few ms of one of the shard's
/// two blocking threads (which also run its fsyncs and segment preparations).
pub const READ_AHEAD_ENTRIES: usize = 4 << 10;

/// Searches one shard runs at once; more are refused (503, retry) rather than queued: each
/// holds the shard's thread for slices and its disk for reading ahead.
pub const SEARCHES_MAX: usize = 4;

// ---- Storage

/// A batch of staged records is written once it reaches this size, even before its flush:
/// on the VM of BENCHMARKS.md, writes of 0.4-1 MB ran as fast as any, and 4 MB ones slower
/// (the batch no longer fits in the caches it was just copied through).
pub const GROUP_WRITE_BYTES_MAX: usize = 1 << 20;

/// Writeback starts in steps of this many bytes of the active segment.
pub const WRITEBACK_STEP_BYTES: usize = 4 << 20;

/// ... and stays this far behind the append position.
pub const WRITEBACK_TRAIL_BYTES: usize = 1 << 20;

/// How far past the last record of a prefetch its range goes: that record's frame (records
/// are far smaller than this in practice; a longer one faults its tail in on reading).
pub const PREFETCH_TAIL_BYTES: usize = 256 << 10;

/// Records further apart than this are read ahead as separate ranges, not with what lies
/// between them.
pub const PREFETCH_GAP_BYTES: usize = 1 << 20;

/// The buffer `storage::prefetch` reads through.
pub const PREFETCH_CHUNK_BYTES: usize = 256 << 10;

/// Capacity of the staging buffer kept after a flush: one large batch (a rollover's worth of
/// records, a burst) does not pin its memory for the life of the segment.
pub const STAGED_KEEP_BYTES: usize = 4 << 20;

/// Free disk space that must remain after a new segment is fully written, on top of one more
/// segment: the margin that keeps a mapped write from ever meeting a full disk.
pub const DISK_FREE_RESERVE_BYTES: u64 = 64 << 20;

/// Items one record holds at most: the index addresses an item in its record with a `u16`.
pub const RECORD_ITEMS_MAX: usize = u16::MAX as usize;

// ---- Shards: executors, start-up and shutdown

/// Memory glommio registers per executor for io_uring buffers. Glust does no DMA file I/O
/// (segments are written with pwrite and read through maps), so it needs little; keeping it
/// small keeps `ulimit -l` needs low.
pub const EXECUTOR_IO_MEMORY_BYTES: usize = 512 << 10;

/// Threads of each shard's blocking pool. Two, so an fsync (group commit, interval sync) and a
/// segment preparation (file creation and two fsyncs) never wait for each other: with
/// glommio's default of one, appends waiting for the next segment sat behind a 150 ms fsync
/// and vice versa (client p99 ~170 ms at half load). Unbound: the kernel may run them on a
/// core with spare time rather than on the shard's own.
pub const BLOCKING_THREADS: usize = 2;

/// The shares of the task queue searches run in (`shard::Shard::query_queue`), against 1000 for
/// the default queue where ingest runs: while both have work, a search gets about 1/11 of the
/// thread.
pub const QUERY_SHARES: usize = 100;

/// How often a shard checks whether the process was asked to stop (not the hot path).
pub const STOP_POLL: Duration = Duration::from_millis(50);

/// How long shutdown waits for in-flight requests before giving up on them.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// How often a draining shard looks at its connections and requests in flight.
pub const DRAIN_POLL: Duration = Duration::from_millis(5);

/// How often a shard waiting at a start-up or shutdown rendezvous looks whether the others
/// arrived.
pub const RENDEZVOUS_POLL: Duration = Duration::from_millis(2);

/// Locked memory allowed for each executor's io_uring rings on top of its registered buffers
/// ([`EXECUTOR_IO_MEMORY_BYTES`]), in the start-up check of `ulimit -l`: a generous bound.
pub const EXECUTOR_RING_MEMORY_BYTES: usize = 1 << 20;

/// Period of the "recovering: N/M segments" line while a shard reads its segments at start.
pub const RECOVERY_PROGRESS_PERIOD: Duration = Duration::from_secs(2);

/// How often an append waiting for the next segment ([`SEGMENT_WAIT_MAX`] at most) looks
/// again, should the preparation's signal be missed.
pub const SEGMENT_WAIT_POLL: Duration = Duration::from_millis(100);

/// How long shard 0 may take for the last `--hdr-dump-dir` interval at shutdown.
pub const FINAL_DUMP_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest an append waits for the next segment's preparation before creating one itself.
pub const SEGMENT_WAIT_MAX: Duration = Duration::from_secs(2);

/// How long start-up waits for a port held by no live process to be released.
pub const PORT_RELEASE_WAIT: Duration = Duration::from_secs(5);

/// How often the probe is retried meanwhile.
pub const PORT_RETRY_PERIOD: Duration = Duration::from_millis(20);

/// How often a shard looks at the high-water mark of its request bytes.
pub const TRIM_PERIOD: Duration = Duration::from_secs(1);

/// Highest core number + 1 that `--cores` takes (the kernel's default `CONFIG_NR_CPUS` bound).
pub const CORES_MAX: usize = 8192;

const _: () = assert!(REQUEST_WIRE_BYTES_MAX <= REQUEST_DECODED_BYTES_MAX);
const _: () = assert!(RECORD_BYTES_MAX as u64 * 2 <= SEGMENT_BYTES_DEFAULT || cfg!(test));
const _: () = assert!(SEGMENT_BYTES_MIN <= SEGMENT_BYTES_DEFAULT);
const _: () = assert!(SEGMENT_BYTES_DEFAULT <= SEGMENT_BYTES_MAX);
const _: () = assert!(VALUE_DEPTH_MAX * 3 < PROTO_DEPTH_MAX);
const _: () = assert!(QUERY_LIMIT_DEFAULT <= QUERY_LIMIT_MAX);
const _: () = assert!(MALLOC_MMAP_THRESHOLD_BYTES > GROUP_WRITE_BYTES_MAX);
const _: () = assert!(CONNECTIONS_DEFAULT_MIN <= CONNECTIONS_DEFAULT_MAX);
