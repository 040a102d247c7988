//! Model-based property test of storage recovery: random appends, reopens and damage
//! (bit rot, torn tails, truncated files). Whatever happens, recovery never panics, never
//! serves a record that was not written, keeps the order of what it serves, and loses nothing
//! written since the last damage. The store evicts every sealed segment from the page cache
//! as it goes (`page_cache_keep: Some(0)`), so reads also come back through eviction.

use std::path::Path;

use glust::storage::{RecordKind, Store, StoreConfig};
use proptest::prelude::*;

const SEGMENT_BYTES: u64 = 16 << 10;

#[derive(Debug, Clone)]
enum Op {
    Append {
        len: usize,
    },
    Reopen,
    /// Flip a byte at `at` (a fraction of the file) of segment `seg` (mod the count).
    Rot {
        seg: usize,
        at: f64,
    },
    /// Zero the last `n` written bytes of the newest segment, as a torn write would.
    Tear {
        n: usize,
    },
    /// Cut segment `seg` to a fraction of its length.
    Truncate {
        seg: usize,
        keep: f64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (1usize..3000).prop_map(|len| Op::Append { len }),
        2 => Just(Op::Reopen),
        1 => (0usize..8, 0.0f64..1.0).prop_map(|(seg, at)| Op::Rot { seg, at }),
        1 => (1usize..200).prop_map(|n| Op::Tear { n }),
        1 => (0usize..8, 0.0f64..1.0).prop_map(|(seg, keep)| Op::Truncate { seg, keep }),
    ]
}

/// Payload `id`: its id, then bytes derived from it, so any served payload can be checked.
fn payload(id: u64, len: usize) -> Vec<u8> {
    let mut p = id.to_le_bytes().to_vec();
    p.extend((0..len).map(|i| (id as usize * 31 + i * 7) as u8));
    p
}

fn check(p: &[u8]) -> u64 {
    let id = u64::from_le_bytes(p[..8].try_into().unwrap());
    assert_eq!(
        p,
        payload(id, p.len() - 8),
        "served bytes that were never written"
    );
    id
}

fn open(dir: &Path) -> (Store, Vec<u64>) {
    let config = StoreConfig::single_shard(dir, SEGMENT_BYTES, Some(0));
    let mut seen = Vec::new();
    let (store, _) = Store::open(config, |_, _, p| seen.push(check(p)), |_, _| {}).unwrap();
    (store, seen)
}

fn segment_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir.join("0"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn recovery_serves_only_what_was_written(ops in proptest::collection::vec(op(), 1..120)) {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = open(dir.path());
        let mut next_id = 0u64;
        // Ids appended since the last damage: they must all be served after a reopen.
        let mut since_damage: Vec<u64> = Vec::new();
        let mut damaged = false;
        for op in ops {
            match op {
                Op::Append { len } => {
                    let loc = store.append(RecordKind::Spans, &payload(next_id, len)).unwrap();
                    // Page-cache upkeep as the shard runs it (the config keeps nothing cached,
                    // so sealed segments are evicted at once): records read back the same.
                    if let Some(work) = store.cache_work() {
                        work.run();
                    }
                    let (_, read) = store.read(loc).expect("the record just appended");
                    prop_assert_eq!(read, &payload(next_id, len)[..]);
                    since_damage.push(next_id);
                    next_id += 1;
                }
                Op::Reopen => {
                    drop(store);
                    let (s, seen) = open(dir.path());
                    store = s;
                    prop_assert!(seen.windows(2).all(|w| w[0] < w[1]), "order kept: {seen:?}");
                    for id in &since_damage {
                        prop_assert!(seen.contains(id), "record {id} lost; seen {seen:?}");
                    }
                    if !damaged {
                        prop_assert_eq!(seen, (0..next_id).collect::<Vec<_>>());
                    }
                }
                Op::Rot { seg, at } => {
                    drop(store);
                    let before = open(dir.path()).1;
                    let files = segment_files(dir.path());
                    let f = &files[seg % files.len()];
                    let mut raw = std::fs::read(f).unwrap();
                    let mut in_header = true;
                    if !raw.is_empty() {
                        let i = ((raw.len() - 1) as f64 * at) as usize;
                        raw[i] ^= 0x5a;
                        in_header = i < 64;
                    }
                    std::fs::write(f, raw).unwrap();
                    let (s, after) = open(dir.path());
                    store = s;
                    // One flipped byte costs at most the record it hit, unless it hit the
                    // segment header (the whole file is then unreadable).
                    let lost = before.iter().filter(|id| !after.contains(id)).count();
                    prop_assert!(in_header || lost <= 1, "one flip lost {lost} records");
                    damaged = true;
                    since_damage.clear();
                }
                Op::Truncate { seg, keep } => {
                    drop(store);
                    let files = segment_files(dir.path());
                    let f = &files[seg % files.len()];
                    let len = std::fs::metadata(f).unwrap().len();
                    let file = std::fs::OpenOptions::new().write(true).open(f).unwrap();
                    file.set_len((len as f64 * keep) as u64).unwrap();
                    damaged = true;
                    since_damage.clear();
                    store = open(dir.path()).0;
                }
                Op::Tear { n } => {
                    drop(store);
                    let files = segment_files(dir.path());
                    let f = files.last().unwrap();
                    let mut raw = std::fs::read(f).unwrap();
                    let end = raw.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
                    let start = end.saturating_sub(n).max(64);
                    if start < end {
                        raw[start..end].fill(0);
                    }
                    std::fs::write(f, raw).unwrap();
                    damaged = true;
                    since_damage.clear();
                    store = open(dir.path()).0;
                }
            }
        }
    }
}
