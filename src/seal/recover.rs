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
//!   the truth and is sealed again;
//! - without its raw segment, a pair that does not open or a data file without a sidecar
//!   (lost, say): rebuilt from the data file's intact blocks ([`rebuild`]), the damaged blocks
//!   counted; a data file whose header is unreadable: left in place, not served, reported.

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::write::rebuild;
use super::{
    data_path, sidecar_path, SealError, SealedSegment, DATA_EXTENSION, SIDECAR_EXTENSION,
    TMP_SUFFIX,
};
use crate::limits::SEALED_OPEN_THREADS;
use crate::storage::segment::{self, sync_dir};

/// What [`recover_dir`] found and did.
#[derive(Debug, Default)]
pub struct SealRecovery {
    pub segments: Vec<SealedSegment>,
    /// Files removed: leftovers of an interrupted sealing, and raw segments a complete pair
    /// replaces.
    pub removed: Vec<PathBuf>,
    /// Sealed pairs that could not be opened and have no raw segment to seal again, nor a
    /// data file to rebuild them from: not served.
    pub damaged: Vec<(PathBuf, String)>,
    /// Sealed pairs that could not be opened, rebuilt from their data file's intact blocks
    /// ([`rebuild`]): each with why it could not be opened and the blocks lost.
    pub rebuilt: Vec<(PathBuf, String, usize)>,
    /// Sealed pairs that could not be opened, removed for their raw segment to be sealed again.
    pub resealed: usize,
}

impl SealRecovery {
    /// Sealed pairs found damaged, whatever was made of them.
    pub fn damaged_pairs(&self) -> usize {
        self.damaged.len() + self.rebuilt.len() + self.resealed
    }
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

/// Opens `dir`'s sealed pairs and clears what interrupted sealing left. `dir` is the shard's
/// own or one it adopted: either way no other shard touches it. Blocking.
pub fn recover_dir(dir: &Path) -> SealRecovery {
    let mut out = SealRecovery::default();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    let mut seqs: Vec<u64> = Vec::new();
    // The directory's names, so that whether a file exists costs no lookup of its own: on a
    // cold start each is a read from disk.
    let mut names: HashSet<OsString> = HashSet::new();
    let entries: Vec<_> = entries.flatten().collect();
    for e in &entries {
        names.insert(e.file_name());
    }
    let exists = |p: &Path| p.file_name().is_some_and(|n| names.contains(n));
    for e in entries {
        let name = e.file_name();
        let Some((seq, ext)) = name.to_str().and_then(parse) else {
            continue;
        };
        if ext.ends_with(TMP_SUFFIX) && !ext.starts_with("glust") {
            remove(
                &e.path(),
                "an interrupted sealing's temporary file",
                &mut out,
            );
        } else if ext == DATA_EXTENSION {
            seqs.push(seq);
        } else if ext == SIDECAR_EXTENSION && !exists(&data_path(dir, seq)) {
            remove(&e.path(), "a sidecar without its data file", &mut out);
        }
    }
    seqs.sort_unstable();
    let complete: Vec<(PathBuf, PathBuf)> = seqs
        .iter()
        .map(|&seq| (data_path(dir, seq), sidecar_path(dir, seq)))
        .filter(|(_, idx)| exists(idx))
        .collect();
    let mut opened = open_all(&complete).into_iter();
    let mut removed_any = false;
    for seq in seqs {
        let (data, idx) = (data_path(dir, seq), sidecar_path(dir, seq));
        let raw = dir.join(segment::file_name(seq));
        let raw_exists = exists(&raw);
        if !exists(&idx) {
            if raw_exists {
                remove(
                    &data,
                    "a sealed data file whose sidecar was not renamed yet",
                    &mut out,
                );
                removed_any = true;
            } else {
                match rebuild(&data) {
                    Ok(r) => {
                        out.rebuilt.push((data, "no sidecar".into(), r.blocks_lost));
                        out.segments.push(r.segment);
                    }
                    Err(e) => out
                        .damaged
                        .push((data, format!("no sidecar; not rebuilt: {e}"))),
                }
            }
            continue;
        }
        let opened = opened.next().expect("one outcome per complete pair");
        match opened {
            Ok(sealed) => {
                if raw_exists {
                    remove(&raw, "a raw segment whose sealing had finished", &mut out);
                    removed_any = true;
                }
                out.segments.push(sealed);
            }
            Err(e) if raw_exists => {
                tracing::warn!("{e}; its raw segment is kept and sealed again");
                out.resealed += 1;
                remove(&idx, "a damaged sidecar", &mut out);
                remove(&data, "a damaged sealed data file", &mut out);
                removed_any = true;
            }
            Err(e) => match rebuild(&data) {
                Ok(r) => {
                    out.rebuilt.push((data, e.to_string(), r.blocks_lost));
                    out.segments.push(r.segment);
                }
                Err(again) => out
                    .damaged
                    .push((data, format!("{e}; not rebuilt: {again}"))),
            },
        }
    }
    if removed_any {
        if let Err(e) = sync_dir(dir) {
            tracing::warn!(dir = %dir.display(), "cannot sync the directory after recovery: {e}");
        }
    }
    out
}

/// Opens the pairs, [`SEALED_OPEN_THREADS`] at a time: on a cold start each open waits for
/// the disk a few times (the sidecar, the data file's header), and a disk answers many reads
/// at once about as fast as one. The outcomes in the pairs' order, each segment's sidecar
/// copied by the calling thread ([`SealedSegment::rehomed`]).
fn open_all(pairs: &[(PathBuf, PathBuf)]) -> Vec<Result<SealedSegment, SealError>> {
    if pairs.is_empty() {
        return Vec::new();
    }
    let per_thread = pairs.len().div_ceil(SEALED_OPEN_THREADS);
    let outcomes: Vec<Vec<Result<SealedSegment, SealError>>> = std::thread::scope(|scope| {
        let opening: Vec<_> = pairs
            .chunks(per_thread)
            .map(|chunk| {
                scope.spawn(move || {
                    chunk
                        .iter()
                        .map(|(data, idx)| SealedSegment::open(data.clone(), idx.clone()))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        opening
            .into_iter()
            .map(|t| t.join().expect("opening a sealed pair does not panic"))
            .collect()
    });
    outcomes
        .into_iter()
        .flatten()
        .map(|o| o.map(SealedSegment::rehomed))
        .collect()
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
