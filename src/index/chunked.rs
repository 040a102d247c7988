//! Growable containers for the index that never move what they hold.
//!
//! A `Vec` of millions of entries doubles by copying all of them, and a hash map of millions
//! of keys rehashes all of them: on the shard's only thread that is a stall of tens to
//! hundreds of milliseconds for every request waiting behind it. [`ChunkedVec`] grows by
//! fixed-size chunks; [`ShardedMap`] splits keys over [`MAP_SHARDS`] maps so each rehash
//! touches a 64th of them; [`AppendList`] is the small per-trace list (the records of a
//! trace, the logs of a trace) that may still grow long.

use std::collections::hash_map::Entry;
use std::hash::Hash;

use foldhash::HashMap;

/// Elements per chunk: 16,384 (640 KiB of 40-byte span entries).
pub const CHUNK_LEN: usize = 1 << 14;

/// An append-only vector stored in fixed-size chunks of `N` elements.
#[derive(Debug, Clone)]
pub struct ChunkedVec<T, const N: usize = CHUNK_LEN> {
    chunks: Vec<Vec<T>>,
    len: usize,
}

impl<T, const N: usize> Default for ChunkedVec<T, N> {
    fn default() -> Self {
        ChunkedVec {
            chunks: Vec::new(),
            len: 0,
        }
    }
}

impl<T, const N: usize> ChunkedVec<T, N> {
    pub fn push(&mut self, value: T) {
        if self.len % N == 0 {
            self.chunks.push(Vec::with_capacity(N));
        }
        let chunk = self.chunks.last_mut().expect("a chunk with room");
        debug_assert!(chunk.len() < N);
        chunk.push(value);
        self.len += 1;
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn get(&self, i: usize) -> Option<&T> {
        self.chunks.get(i / N)?.get(i % N)
    }

    pub fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        self.chunks.get_mut(i / N)?.get_mut(i % N)
    }

    pub fn last(&self) -> Option<&T> {
        self.chunks.last()?.last()
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &T> {
        self.chunks.iter().flat_map(|c| c.iter())
    }

    /// Bytes reserved for elements.
    pub fn capacity_bytes(&self) -> usize {
        self.chunks.len() * N * std::mem::size_of::<T>()
    }
}

impl<T, const N: usize> std::ops::Index<usize> for ChunkedVec<T, N> {
    type Output = T;
    fn index(&self, i: usize) -> &T {
        &self.chunks[i / N][i % N]
    }
}

/// Elements an [`AppendList`] holds in its small growable part; past that it adds chunks of
/// this many.
pub const LIST_CHUNK_LEN: usize = 32;

/// A short append-only list, usually of one element (most traces' spans arrive in one
/// record): that one inline, without an allocation; the next [`LIST_CHUNK_LEN`] in a `Vec`
/// that grows as usual (a second element costs 4 slots); any more in chunks of
/// [`LIST_CHUNK_LEN`] behind one box. 48 bytes inline for 8-byte elements.
///
/// Why not a plain `Vec`: a trace that keeps receiving spans (a long-running job, a client
/// that repeats trace ids) doubles its `Vec` by copying it, and lists that grew in step (the
/// traces of a payload sent again and again) double together: measured as 4-6 ms of `realloc`
/// and page faults on the shard's thread in one go under the fixed-payload benchmark
/// (`scripts/bench.sh`). Here a push copies at most `LIST_CHUNK_LEN / 2` elements (the small part
/// doubling) and the chunk list's `Vec` of chunk headers; elements in chunks never move.
#[derive(Debug, Clone)]
pub struct AppendList<T> {
    head: Option<T>,
    small: Vec<T>,
    chunks: Option<Box<ChunkedVec<T, LIST_CHUNK_LEN>>>,
}

impl<T> Default for AppendList<T> {
    fn default() -> Self {
        AppendList {
            head: None,
            small: Vec::new(),
            chunks: None,
        }
    }
}

impl<T> AppendList<T> {
    /// Appends `value`; returns the bytes of heap this list newly reserved for it (for the
    /// index's memory estimate), 0 most of the time.
    pub fn push(&mut self, value: T) -> usize {
        if self.head.is_none() {
            self.head = Some(value);
            return 0;
        }
        if self.small.len() < LIST_CHUNK_LEN {
            let before = self.small.capacity();
            self.small.push(value);
            debug_assert!(self.small.capacity() <= LIST_CHUNK_LEN.max(4));
            return (self.small.capacity() - before) * std::mem::size_of::<T>();
        }
        let chunks = self.chunks.get_or_insert_with(Default::default);
        let before = chunks.capacity_bytes();
        chunks.push(value);
        chunks.capacity_bytes() - before
    }

    pub fn len(&self) -> usize {
        self.head.is_some() as usize
            + self.small.len()
            + self.chunks.as_ref().map_or(0, |c| c.len())
    }

    pub fn is_empty(&self) -> bool {
        self.head.is_none()
    }

    pub fn last(&self) -> Option<&T> {
        match &self.chunks {
            Some(c) => c.last(),
            None => self.small.last().or(self.head.as_ref()),
        }
    }

    /// In push order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &T> {
        self.head
            .iter()
            .chain(self.small.iter())
            .chain(self.chunks.iter().flat_map(|c| c.iter()))
    }
}

/// Maps per [`ShardedMap`].
pub const MAP_SHARDS: usize = 64;

/// A hash map split in [`MAP_SHARDS`] maps by a caller-given 64-bit hash of the key.
pub struct ShardedMap<K, V> {
    maps: Vec<HashMap<K, V>>,
}

impl<K, V> Default for ShardedMap<K, V> {
    fn default() -> Self {
        ShardedMap {
            maps: (0..MAP_SHARDS).map(|_| HashMap::default()).collect(),
        }
    }
}

impl<K: Hash + Eq, V> ShardedMap<K, V> {
    fn map(&self, spread: u64) -> &HashMap<K, V> {
        &self.maps[(spread >> 58) as usize % MAP_SHARDS]
    }

    fn map_mut(&mut self, spread: u64) -> &mut HashMap<K, V> {
        &mut self.maps[(spread >> 58) as usize % MAP_SHARDS]
    }

    /// `spread` must be a well-mixed hash of `key` (it picks the map).
    pub fn get(&self, key: &K, spread: u64) -> Option<&V> {
        self.map(spread).get(key)
    }

    pub fn entry(&mut self, key: K, spread: u64) -> Entry<'_, K, V> {
        self.map_mut(spread).entry(key)
    }

    pub fn len(&self) -> usize {
        self.maps.iter().map(|m| m.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.maps.iter().all(|m| m.is_empty())
    }

    pub fn capacity(&self) -> usize {
        self.maps.iter().map(|m| m.capacity()).sum()
    }

    /// Bytes the maps' tables reserve: a `(K, V)` slot and a control byte per bucket.
    pub fn table_bytes(&self) -> usize {
        self.capacity() * (std::mem::size_of::<(K, V)>() + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_vec_indexes_across_chunks() {
        let mut v: ChunkedVec<usize> = ChunkedVec::default();
        for i in 0..(CHUNK_LEN * 2 + 5) {
            v.push(i);
        }
        assert_eq!(v.len(), CHUNK_LEN * 2 + 5);
        assert_eq!(v[CHUNK_LEN + 3], CHUNK_LEN + 3);
        assert_eq!(v.get(CHUNK_LEN * 3), None);
        assert_eq!(v.iter().next_back(), Some(&(CHUNK_LEN * 2 + 4)));
        assert_eq!(v.iter().count(), v.len());
        *v.get_mut(7).unwrap() = 70;
        assert_eq!(v[7], 70);
    }

    #[test]
    fn append_list_keeps_push_order_across_chunks() {
        let mut l = AppendList::default();
        assert!(l.is_empty());
        assert_eq!(l.last(), None);
        assert_eq!(l.iter().count(), 0);
        l.push(0usize);
        assert_eq!((l.len(), l.last()), (1, Some(&0)));
        let n = 1 + LIST_CHUNK_LEN * 3 + 2;
        let mut reserved = 0;
        for i in 1..n {
            reserved += l.push(i);
            assert_eq!(l.last(), Some(&i));
            assert_eq!(l.len(), i + 1);
        }
        // The small part at its full size (32 slots), then three chunks for the other 66.
        let chunk_bytes = LIST_CHUNK_LEN * std::mem::size_of::<usize>();
        assert_eq!(reserved, chunk_bytes + 3 * chunk_bytes);
        assert!(l.iter().copied().eq(0..n));
        assert!(l.iter().rev().copied().eq((0..n).rev()));
    }

    #[test]
    fn chunked_vec_with_small_chunks() {
        let mut v: ChunkedVec<u32, 4> = ChunkedVec::default();
        assert_eq!(v.last(), None);
        for i in 0..10 {
            v.push(i);
        }
        assert_eq!(
            (v.len(), v.last(), v[9], v.get(10)),
            (10, Some(&9), 9, None)
        );
        assert_eq!(v.capacity_bytes(), 3 * 4 * 4);
    }

    #[test]
    fn sharded_map_finds_what_it_holds() {
        let mut m: ShardedMap<u64, u64> = ShardedMap::default();
        let spread = |k: u64| k.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        for k in 0..10_000u64 {
            *m.entry(k, spread(k)).or_insert(0) += k;
        }
        assert_eq!(m.len(), 10_000);
        assert_eq!(m.get(&77, spread(77)), Some(&77));
        assert_eq!(m.get(&10_001, spread(10_001)), None);
    }
}
