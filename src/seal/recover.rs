//! Start-up in a shard directory, before its raw segments are replayed ([`recover_dir`]):
//! the sealed pairs are opened from their sidecars, and what a crash during sealing left is
//! put right, so that every record is served from exactly one place:
//!
//! - a `.tmp` file is a pair that was still being written: removed (its raw segment is there);
//! - a data file without its sidecar: the crash came between the two renames; removed (its raw
//!   segment is there, and is sealed again);
//! - a complete pair beside its raw segment: the crash came after the renames, before the raw
//!   segment was deleted: the raw segment is deleted now;
//! - a pair that does not open (damage) beside its raw segment: removed, the raw segment is
//!   the truth and is sealed again; without its raw segment: left in place, not served, and
//!   reported.

use std::path::{Path, PathBuf};

use super::{
    data_path, sidecar_path, SealedSegment, DATA_EXTENSION, SIDECAR_EXTENSION, TMP_SUFFIX,
};
use crate::storage::segment::{self, sync_dir};

/// What [`recover_dir`] found and did.
#[derive(Debug, Default)]
pub struct SealRecovery {
    pub segments: Vec<SealedSegment>,
    /// Files removed: leftovers of an interrupted sealing, and raw segments a complete pair
    /// replaces.
    pub removed: Vec<PathBuf>,
    /// Sealed pairs that could not be opened and have no raw segment: not served.
    pub damaged: Vec<(PathBuf, String)>,
}

/// The sequence number and extension of a sealed file name (`seg-<20 digits>.<ext>[.tmp]`).
fn parse(name: &str) -> Option<(u64, &str)> {
    let rest = name.strip_prefix("seg-")?;
    let (digits, ext) = rest.split_once('.')?;
    if digits.len() != 20 {
        return None;
    }
    Some((digits.parse().ok()?, ext))
}

/// Opens `dir`'s sealed pairs and clears what interrupted sealing left; `own` says whether
/// the directory is this shard's (only then are files removed from it). Blocking.
pub fn recover_dir(dir: &Path, own: bool) -> SealRecovery {
    let mut out = SealRecovery::default();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    let mut seqs: Vec<u64> = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name();
        let Some((seq, ext)) = name.to_str().and_then(parse) else {
            continue;
        };
        if ext.ends_with(TMP_SUFFIX) && !ext.starts_with("glust") {
            if own {
                remove(
                    &e.path(),
                    "an interrupted sealing's temporary file",
                    &mut out,
                );
            }
        } else if ext == DATA_EXTENSION {
            seqs.push(seq);
        } else if ext == SIDECAR_EXTENSION && !data_path(dir, seq).exists() && own {
            remove(&e.path(), "a sidecar without its data file", &mut out);
        }
    }
    seqs.sort_unstable();
    let mut removed_any = false;
    for seq in seqs {
        let (data, idx) = (data_path(dir, seq), sidecar_path(dir, seq));
        let raw = dir.join(segment::file_name(seq));
        let raw_exists = raw.exists();
        if !idx.exists() {
            if raw_exists && own {
                remove(
                    &data,
                    "a sealed data file whose sidecar was not renamed yet",
                    &mut out,
                );
                removed_any = true;
            } else {
                out.damaged
                    .push((data, "no sidecar, and no raw segment to seal again".into()));
            }
            continue;
        }
        match SealedSegment::open(data.clone(), idx.clone()) {
            Ok(sealed) => {
                if raw_exists && own {
                    remove(&raw, "a raw segment whose sealing had finished", &mut out);
                    removed_any = true;
                }
                out.segments.push(sealed);
            }
            Err(e) if raw_exists && own => {
                tracing::warn!("{e}; its raw segment is kept and sealed again");
                remove(&idx, "a damaged sidecar", &mut out);
                remove(&data, "a damaged sealed data file", &mut out);
                removed_any = true;
            }
            Err(e) => out.damaged.push((data, e.to_string())),
        }
    }
    if removed_any {
        if let Err(e) = sync_dir(dir) {
            tracing::warn!(dir = %dir.display(), "cannot sync the directory after recovery: {e}");
        }
    }
    out
}

fn remove(path: &Path, what: &str, out: &mut SealRecovery) {
    match std::fs::remove_file(path) {
        Ok(()) => {
            tracing::info!(file = %path.display(), "removed {what}");
            out.removed.push(path.to_owned());
        }
        Err(e) => tracing::warn!(file = %path.display(), "cannot remove {what}: {e}"),
    }
}
