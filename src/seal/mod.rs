//! Sealing: full raw segments rewritten as compressed blocks laid out for queries, with an
//! index sidecar (formats in [`format`] and `shards/README.md`).
//!
//! - [`block`]: the block codec of spans (columns), [`logblock`] that of logs, [`needles`]
//!   the filters of rare values that let a search skip blocks;
//! - [`write`]: sealing one raw segment, crash-safe;
//! - [`sealed`]: a sealed segment held and read; [`set`]: a shard's sealed segments;
//! - [`recover`]: what start-up makes of a directory's sealed files.
//!
//! Above `storage` and `index`, below `shard`: it knows the domain's spans, not OTLP's wire
//! formats.

pub mod block;
pub mod column;
pub mod format;
pub mod logblock;
pub mod needles;
pub mod recover;
pub mod sealed;
pub mod set;
pub mod write;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

pub use format::{BlockKind, BlockMeta, Sidecar};
pub use sealed::{DecodedBlock, SealedSegment};
pub use set::SealedSet;

use crate::storage::IoFailure;

/// Extension of a sealed data file.
pub const DATA_EXTENSION: &str = "sealed";
/// Extension of a sidecar.
pub const SIDECAR_EXTENSION: &str = "idx";
/// Appended to a sealed file's name while it is written.
pub const TMP_SUFFIX: &str = ".tmp";

pub fn data_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("seg-{seq:020}.{DATA_EXTENSION}"))
}

pub fn sidecar_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("seg-{seq:020}.{SIDECAR_EXTENSION}"))
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(TMP_SUFFIX);
    PathBuf::from(s)
}

/// Why sealing a segment, or reading a sealed one, failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SealError {
    #[error("cannot read raw segment {path}: {reason}")]
    Raw { path: PathBuf, reason: String },
    #[error("cannot seal {path}: {source}")]
    Io { path: PathBuf, source: IoFailure },
    #[error("sealed file {path} is damaged: {reason}")]
    Damaged { path: PathBuf, reason: String },
    #[error("block {block} of {path} is damaged: {reason}")]
    Block {
        path: PathBuf,
        block: usize,
        reason: String,
    },
}
