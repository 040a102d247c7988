//! The machinery every search's scan shares: slices of [`QUERY_SLICE`] between which the shard
//! runs its other work, read-ahead of the records a scan will need, the record read last, and
//! filters resolved against the shard's interned names.

use std::time::{Duration, Instant};

use crate::index::names::NameId;
use crate::index::{Index, RecordLoc};
use crate::limits::{QUERY_SLICE, READ_AHEAD_ENTRIES, SCAN_CLOCK_EVERY, SLICE_GAP};
use crate::seal::SealedSegment;
use crate::shard::Shard;
use crate::storage::SegmentKey;

/// One slice of a search's scan: the scan visits index positions newest first (from `end - 1`
/// down to `0`) under fresh borrows of the index and the store, for [`QUERY_SLICE`] at most;
/// records read in a slice are not kept past it. Between slices ([`Slice::next`]) the borrows
/// are released. Ingest may append to the index meanwhile: positions below the scan's `end`
/// keep their entries (the index only grows), and entries appended after the search started
/// are not part of it.
pub(super) struct Slice {
    deadline: Instant,
    first: usize,
}

impl Slice {
    pub(super) fn start(pos: usize) -> Self {
        Slice {
            deadline: Instant::now() + QUERY_SLICE,
            first: pos,
        }
    }

    /// Whether the scan, about to visit below `pos`, should stop this slice: the clock is read
    /// every [`SCAN_CLOCK_EVERY`] positions, and a slice visits one position at least.
    pub(super) fn over(&self, pos: usize) -> bool {
        pos != self.first && pos % SCAN_CLOCK_EVERY == 0 && Instant::now() >= self.deadline
    }

    /// After a slice, if positions are left: a timer, not a yield. glommio polls its rings
    /// only when no task is ready (or every 100 ms, its preemption timer), so a task that
    /// yields and is ready again at once would keep the sockets unread; one waiting on a timer
    /// is ready again only after the executor's next poll, which also wakes the ingest work
    /// whose I/O completed.
    pub(super) async fn next(pos: usize) {
        if pos > 0 {
            glommio::timer::sleep(SLICE_GAP + test_pause()).await;
        }
    }
}

/// Environment variable: milliseconds every search waits after each slice of its scan and
/// before each sealed block it reads, so that the deadline and cancellation tests have a
/// search that lasts whatever the machine. For tests only.
pub const SEARCH_PAUSE_ENV: &str = "GLUST_TEST_SEARCH_PAUSE_MS";

/// The pause [`SEARCH_PAUSE_ENV`] asks for; zero unless set.
fn test_pause() -> Duration {
    static PAUSE: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
    *PAUSE.get_or_init(|| {
        std::env::var(SEARCH_PAUSE_ENV)
            .ok()
            .and_then(|v| v.parse().ok())
            .map_or(Duration::ZERO, Duration::from_millis)
    })
}

/// Before a sealed block: the test pause, if one is set.
pub(super) async fn before_block() {
    let pause = test_pause();
    if !pause.is_zero() {
        glommio::timer::sleep(pause).await;
    }
}

/// Reads a search's records into the page cache ahead of its scan, on the blocking pool, so
/// that slices do not wait for the disk on the shard's thread (records older than
/// `--page-cache-keep` are no longer cached). Positions are taken in blocks of
/// [`READ_AHEAD_ENTRIES`] from the scan's `end` down: when the scan enters a block, it waits
/// for that block's read, started in the background when it entered the block before (or
/// reads it now: the first block, or one the scan reached by going past the one before in a
/// single slice), and starts the next block's read. One per index part a search scans.
pub(super) struct ReadAhead {
    /// The segment whose index part is scanned.
    segment: u32,
    end: usize,
    /// The block the scan is in.
    block: Option<usize>,
    /// The background read of a block, and which.
    next: Option<(usize, glommio::Task<()>)>,
}

impl ReadAhead {
    pub(super) fn new(segment: u32, end: usize) -> Self {
        ReadAhead {
            segment,
            end,
            block: None,
            next: None,
        }
    }

    /// Before a slice that starts at `pos` (visiting below it): `locs` gives the records the
    /// scan would read for a range of positions (those the index alone does not decide).
    pub(super) async fn before_slice(
        &mut self,
        shard: &Shard,
        pos: usize,
        locs: impl Fn(&Index, std::ops::Range<usize>) -> Vec<RecordLoc>,
    ) {
        let block = (self.end - pos) / READ_AHEAD_ENTRIES;
        if self.block == Some(block) {
            return;
        }
        self.block = Some(block);
        let range_of = |b: usize| {
            let hi = self.end.saturating_sub(b * READ_AHEAD_ENTRIES);
            hi.saturating_sub(READ_AHEAD_ENTRIES)..hi
        };
        match self.next.take() {
            Some((b, read)) if b == block => read.await,
            _ => {
                let cold = cold_ranges(shard, self.segment, |index| {
                    locs(index, range_of(block).start..pos)
                });
                if !cold.is_empty() {
                    glommio::executor()
                        .spawn_blocking(move || crate::storage::prefetch(&cold))
                        .await;
                }
            }
        }
        let after = range_of(block + 1);
        if !after.is_empty() {
            let cold = cold_ranges(shard, self.segment, |index| locs(index, after));
            if !cold.is_empty() {
                let read =
                    glommio::executor().spawn_blocking(move || crate::storage::prefetch(&cold));
                self.next = Some((block + 1, glommio::spawn_local(read)));
            }
        }
    }
}

/// The ranges of the records `locs` names in the index part of `segment` that are not in the
/// page cache; none if the part is gone.
pub(super) fn cold_ranges(
    shard: &Shard,
    segment: u32,
    locs: impl FnOnce(&Index) -> Vec<RecordLoc>,
) -> Vec<crate::storage::ColdRange> {
    let indexes = shard.index.borrow();
    let Some(index) = indexes.part(segment) else {
        return Vec::new();
    };
    let store = shard.store.borrow();
    store.cold_ranges(locs(index).into_iter())
}

/// The record read last, kept for the entries after it: a record's items are consecutive
/// entries of the index.
pub(super) struct LastRecord<'s, T> {
    loc: Option<RecordLoc>,
    batch: Option<&'s T>,
}

impl<'s, T> LastRecord<'s, T> {
    pub(super) fn new() -> Self {
        LastRecord {
            loc: None,
            batch: None,
        }
    }

    /// The record at `loc`: the one kept, or `read(loc)`.
    pub(super) fn get(
        &mut self,
        loc: RecordLoc,
        read: impl FnOnce(RecordLoc) -> Option<&'s T>,
    ) -> Option<&'s T> {
        if self.loc != Some(loc) {
            self.loc = Some(loc);
            self.batch = read(loc);
        }
        self.batch
    }
}

/// A name filter resolved against the shard's interned names.
pub(super) enum NameFilter<'q> {
    Any,
    Id(NameId),
    /// Not interned because the table overflowed: compare the record's text for entries
    /// interned as [`NameId::OVERFLOW`].
    Overflowed(&'q str),
    /// No span or log here carries it.
    Nothing,
}

pub(super) fn name_filter<'q>(index: &Index, wanted: Option<&'q str>) -> NameFilter<'q> {
    match wanted {
        None => NameFilter::Any,
        Some(w) => match index.names.lookup(w) {
            Some(id) => NameFilter::Id(id),
            None if index.names.overflowed() => NameFilter::Overflowed(w),
            None => NameFilter::Nothing,
        },
    }
}

impl NameFilter<'_> {
    /// `Some(verdict)` when the id decides; `None` when the record's text must be read.
    pub(super) fn by_id(&self, id: NameId) -> Option<bool> {
        match self {
            NameFilter::Any => Some(true),
            NameFilter::Id(w) => Some(*w == id),
            NameFilter::Overflowed(_) if id == NameId::OVERFLOW => None,
            NameFilter::Overflowed(_) | NameFilter::Nothing => Some(false),
        }
    }

    pub(super) fn text(&self) -> &str {
        match self {
            NameFilter::Overflowed(t) => t,
            _ => "",
        }
    }
}

pub(super) fn in_range(t: u64, start: Option<u64>, end: Option<u64>) -> bool {
    start.is_none_or(|s| t >= s) && end.is_none_or(|e| t <= e)
}

/// What the index alone says of an entry, for a search.
pub(super) enum Verdict {
    /// It does not match.
    Skip,
    /// It matches.
    Match,
    /// Its record must tell; whether the service (and name) matched by id, `None` where
    /// only the record's text can say.
    Read {
        service_ok: Option<bool>,
        name_ok: Option<bool>,
    },
}

/// What a search reads, as it starts, newest first: the head index parts (appends after the
/// start are not part of the search) and the sealed segments.
pub(super) struct SearchView {
    /// Per part: its segment slot, its span entries then, and its segment's key
    /// ([`crate::storage::Store::segment_key`]).
    pub(super) parts: Vec<(u32, usize, Option<SegmentKey>)>,
    pub(super) sealed: Vec<std::sync::Arc<SealedSegment>>,
}

impl SearchView {
    pub(super) fn now(shard: &Shard) -> SearchView {
        let (indexes, store) = (shard.index.borrow(), shard.store.borrow());
        SearchView {
            parts: indexes
                .parts()
                .rev()
                .map(|(slot, index)| (slot, index.spans().len(), store.segment_key(slot)))
                .collect(),
            sealed: shard.sealed.borrow().iter().rev().cloned().collect(),
        }
    }

    /// After the head parts were scanned: the slots of those whose segment was sealed (or
    /// deleted) meanwhile. The sealed segments made of them join `sealed`, to be searched
    /// whole.
    pub(super) fn catch_up(&mut self, shard: &Shard) -> Vec<u32> {
        let store = shard.store.borrow();
        let gone: Vec<(u32, SegmentKey)> = self
            .parts
            .iter()
            .filter(|(slot, ..)| !store.holds(*slot))
            .filter_map(|&(slot, _, key)| Some((slot, key?)))
            .collect();
        let keys: Vec<SegmentKey> = gone.iter().map(|(_, k)| *k).collect();
        self.sealed.extend(shard.sealed.borrow().made_of(&keys));
        gone.into_iter().map(|(slot, _)| slot).collect()
    }
}
