//! Growable containers for the index that never move what they hold.
//!
//! A `Vec` of millions of entries doubles by copying all of them, and a hash map of millions
//! of keys rehashes all of them: on the shard's only thread that is a stall of tens to
//! hundreds of milliseconds for every request waiting behind it. [`ChunkedVec`] grows by
//! fixed-size chunks; [`ShardedMap`] splits keys over [`MAP_SHARDS`] maps so each rehash
//! touches a 64th of them.

use std::collections::hash_map::Entry;
use std::hash::Hash;

use foldhash::HashMap;

/// Elements per chunk: 16,384 (640 KiB of 40-byte span entries).
pub const CHUNK_LEN: usize = 1 << 14;

/// An append-only vector stored in fixed-size chunks.
pub struct ChunkedVec<T> {
    chunks: Vec<Vec<T>>,
    len: usize,
}

impl<T> Default for ChunkedVec<T> {
    fn default() -> Self {
        ChunkedVec {
            chunks: Vec::new(),
            len: 0,
        }
    }
}

impl<T> ChunkedVec<T> {
    pub fn push(&mut self, value: T) {
        if self.len % CHUNK_LEN == 0 {
            self.chunks.push(Vec::with_capacity(CHUNK_LEN));
        }
        let chunk = self.chunks.last_mut().expect("a chunk with room");
        debug_assert!(chunk.len() < CHUNK_LEN);
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
        self.chunks.get(i / CHUNK_LEN)?.get(i % CHUNK_LEN)
    }

    pub fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        self.chunks.get_mut(i / CHUNK_LEN)?.get_mut(i % CHUNK_LEN)
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &T> {
        self.chunks.iter().flat_map(|c| c.iter())
    }

    /// Bytes reserved for elements.
    pub fn capacity_bytes(&self) -> usize {
        self.chunks.len() * CHUNK_LEN * std::mem::size_of::<T>()
    }
}

impl<T> std::ops::Index<usize> for ChunkedVec<T> {
    type Output = T;
    fn index(&self, i: usize) -> &T {
        &self.chunks[i / CHUNK_LEN][i % CHUNK_LEN]
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_vec_indexes_across_chunks() {
        let mut v = ChunkedVec::default();
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
