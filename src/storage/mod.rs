//! Per-shard storage: a table of mmapped segments, one of them active.
//!
//! A shard owns `<data-dir>/<shard-id>/` exclusively; nothing else writes there. It also owns
//! the directories of shards that no longer exist after the shard count was lowered:
//! directory `k >= shards` is adopted by shard `k % shards` (resharding keeps old data
//! readable without moving it), never appended to, its segments sealed and retained as the
//! shard's own. The byte layout is in `shards/README.md`, [`frame`] and
//! [`segment`].
//!
//! Architecture invariant: storage knows records (kind + bytes) and segments, not OTLP and not
//! HTTP. It never blocks on the network; its blocking file calls are named as such.

pub mod frame;
pub mod segment;

mod cache;
mod next_segment;
mod prefetch;
mod recovery;
mod store;

pub use cache::CacheWork;
pub use frame::RecordKind;
pub use next_segment::{now_unix_nanos, Preparation};
pub use prefetch::{prefetch, ColdRange};
pub use recovery::{shard_dirs, RecoveryReport};
pub use store::{
    shard_dir, Deletable, IoFailure, SegmentKey, Store, StoreConfig, StoreError, StoreFailure,
};
