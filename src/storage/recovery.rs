//! Opening a shard's storage: recovering every segment of its own directory and of the
//! directories it adopted ([`Store::open`]), and what that found ([`RecoveryReport`]).

use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};

use super::cache::evict;
use super::segment::{self, ScanReport, Segment};
use super::{shard_dir, RecordKind, Store, StoreConfig, StoreError};
use crate::index::RecordLoc;

/// What opening a shard's storage found, for the start-up log and the metrics.
#[derive(Debug, Default, Clone)]
pub struct RecoveryReport {
    pub segments: u64,
    pub records: u64,
    pub corrupt_records: u64,
    pub truncated_bytes: u64,
    /// Segment files that could not be opened at all (bad header); left in place, not served.
    pub unreadable_segments: Vec<(PathBuf, String)>,
    /// Segments written under another shard count: their traces may not live on their owner
    /// under the current count, so trace lookups must also ask this shard.
    pub foreign_generation: bool,
    /// Sealed pairs found damaged (rebuilt, sealed again from their raw segment, or not
    /// served), and the sealed blocks lost in rebuilding them.
    pub sealed_damaged: u64,
    pub sealed_blocks_lost: u64,
}

impl RecoveryReport {
    fn add(&mut self, scan: &ScanReport) {
        self.segments += 1;
        self.records += scan.records;
        self.corrupt_records += scan.corrupt;
        self.truncated_bytes += scan.truncated_bytes;
    }
}

impl Store {
    /// Opens (or creates) the shard's storage, recovering every segment: each record is
    /// checked, torn tails are cut, corrupt records counted. `visit` sees every intact record
    /// in storage order, so the caller can rebuild its index. Blocking: run at start-up.
    pub fn open(
        config: StoreConfig,
        mut visit: impl FnMut(RecordLoc, RecordKind, &[u8]),
        mut progress: impl FnMut(&RecoveryReport, usize),
    ) -> Result<(Store, RecoveryReport), StoreError> {
        let own = config.own_dir();
        std::fs::create_dir_all(&own).map_err(|source| StoreError::Dir {
            path: own.clone(),
            source: source.into(),
        })?;
        let mut report = RecoveryReport::default();
        let mut segments = Vec::new();

        // Adopted directories of shards that no longer exist: appended to never, sealed and
        // retained as the shard's own.
        let mut dirs = adopted_dirs(&config)?;
        dirs.push(own.clone());
        for dir in &dirs {
            remove_leftover_tmp_files(dir);
        }
        let total: usize = dirs
            .iter()
            .map(|d| list_segments(d).map(|v| v.len()).unwrap_or(0))
            .sum();
        let mut next_seq = 0;
        for dir in &dirs {
            let is_own = *dir == own;
            let files = list_segments(dir).map_err(|source| StoreError::Dir {
                path: dir.clone(),
                source: source.into(),
            })?;
            let last = files.len().saturating_sub(1);
            for (i, (seq, path)) in files.into_iter().enumerate() {
                if is_own {
                    next_seq = next_seq.max(seq + 1);
                }
                let writable = is_own && i == last;
                let slot = segments.len() as u32;
                let Some(seg) = recover_segment(
                    &config,
                    &path,
                    writable,
                    is_own,
                    slot,
                    &mut visit,
                    &mut report,
                ) else {
                    continue;
                };
                segments.push(Some(seg));
                progress(&report, total);
            }
        }

        let mut store = Store {
            config,
            segments,
            active: usize::MAX,
            next_seq,
            dirty: Vec::new(),
            failed: None,
            next: None,
            preparing: false,
            written_back: 0,
            appended: 0,
            writebacks: Vec::new(),
            evictions: VecDeque::new(),
            lost: None,
            full_own_bytes: 0,
        };
        // Appends continue in the newest own segment only if it was written under the same
        // shard count: records of one generation must not go into a segment whose header
        // names another, or lookups after the next change of count would not find them.
        match store.segments.last().and_then(Option::as_ref) {
            Some(seg)
                if seg.is_writable()
                    && seg.meta.shard_count == store.config.shard_count
                    && seg.meta.shard_id == store.config.shard.0 =>
            {
                store.active = store.segments.len() - 1
            }
            _ => store.roll()?,
        }
        store.recount_full_own_bytes();
        Ok((store, report))
    }
}

/// Opens and recovers one segment file as store slot `slot`, its intact records passed to
/// `visit`; `None`, noted in `report`, when the file cannot be opened.
fn recover_segment(
    config: &StoreConfig,
    path: &Path,
    writable: bool,
    is_own: bool,
    slot: u32,
    visit: &mut impl FnMut(RecordLoc, RecordKind, &[u8]),
    report: &mut RecoveryReport,
) -> Option<Segment> {
    let mut seg = match Segment::open(path, writable) {
        Ok(seg) => seg,
        Err(e) => {
            report
                .unreadable_segments
                .push((path.to_path_buf(), e.to_string()));
            return None;
        }
    };
    if seg.meta.shard_count != config.shard_count || !is_own {
        report.foreign_generation = true;
    }
    let scan = seg.recover(|offset, kind, payload| {
        visit(
            RecordLoc {
                segment: slot,
                offset,
            },
            kind,
            payload,
        )
    });
    report.add(&scan);
    if let Some(why) = &scan.sealed_after_error {
        tracing::warn!("{why}; the segment is sealed and appends go to a new one");
    }
    if config.page_cache_keep.is_some() && !seg.is_writable() {
        // The scan read all of it through the map: let it go, or recovering a large store
        // would fill the page cache with old records.
        seg.unmap_range(0, seg.len());
        evict(&seg.file(), 0, seg.len() as u64);
    }
    Some(seg)
}

/// The directories a shard reads, adopted ones first, its own last (created if missing).
pub fn shard_dirs(config: &StoreConfig) -> Result<Vec<PathBuf>, StoreError> {
    let own = config.own_dir();
    std::fs::create_dir_all(&own).map_err(|source| StoreError::Dir {
        path: own.clone(),
        source: source.into(),
    })?;
    let mut dirs = adopted_dirs(config)?;
    dirs.push(own);
    Ok(dirs)
}

/// Directories `k >= shard_count` with `k % shard_count == shard`: shards that no longer exist.
fn adopted_dirs(config: &StoreConfig) -> Result<Vec<PathBuf>, StoreError> {
    let entries = std::fs::read_dir(&config.data_dir).map_err(|source| StoreError::Dir {
        path: config.data_dir.clone(),
        source: source.into(),
    })?;
    let mut ids: Vec<u32> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&k| k >= config.shard_count && k % config.shard_count == config.shard.0)
        .collect();
    ids.sort_unstable();
    Ok(ids
        .into_iter()
        .map(|k| shard_dir(&config.data_dir, k))
        .collect())
}

/// Removes segments whose creation a crash interrupted (they never got their final name).
fn remove_leftover_tmp_files(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        if name
            .to_str()
            .is_some_and(|n| n.ends_with(&format!(".{}", segment::TMP_EXTENSION)))
        {
            tracing::info!(file = %e.path().display(), "removing a segment whose creation was interrupted");
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Segment files of a directory, oldest first.
fn list_segments(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut out: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let seq = segment::parse_file_name(e.file_name().to_str()?)?;
            Some((seq, e.path()))
        })
        .collect();
    out.sort_unstable();
    Ok(out)
}
