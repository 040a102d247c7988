//! Tag discovery on one shard: the keys and values its head parts noted and its sealed
//! segments' sidecars keep ([`crate::domain::tags`]). No record is read; the cost is the
//! number of keys the segments of the time range hold.

use crate::domain::tags::{TagScope, TagValue, TopValues};
use crate::index::names::NameId;
use crate::query::TagFilter;
use crate::shard::Shard;

/// Calls `each` with every key of `f`'s scopes, service and time range, in every head part
/// and sealed segment; whether any of them left keys or values out for its bounds.
fn visit(shard: &Shard, f: &TagFilter, mut each: impl FnMut(TagScope, &str, &TopValues)) -> bool {
    let mut truncated = false;
    let index = shard.index.borrow();
    for (_, part) in index.parts() {
        let (min, max) = part.time_range();
        if !f.overlaps(min, max) {
            continue;
        }
        truncated |= part.tags().truncated();
        for (scope, service, key, values) in part.tags().entries() {
            // A service past the interning table is not told apart from another: left out
            // when a service is asked for.
            let of_service =
                |s: &String| service != NameId::OVERFLOW && part.names.get(service) == s;
            if f.wants(scope) && f.service.as_ref().is_none_or(of_service) {
                each(scope, key, values);
            }
        }
    }
    for seg in shard.sealed.borrow().iter() {
        let sc = &seg.sidecar;
        if sc.spans + sc.logs == 0 || !f.overlaps(sc.min_time, sc.max_time) {
            continue;
        }
        truncated |= sc.tags.truncated();
        for (scope, service, key, values) in sc.tags.entries() {
            let of_service = |s: &String| sc.services.get(service as usize) == Some(s);
            if f.wants(scope) && f.service.as_ref().is_none_or(of_service) {
                each(scope, key, values);
            }
        }
    }
    truncated
}

/// The keys of `f`, by scope, sorted, each once; whether some were left out.
pub fn tags_local(shard: &Shard, f: &TagFilter) -> (Vec<(TagScope, String)>, bool) {
    let mut seen: [std::collections::BTreeSet<String>; 4] = Default::default();
    let truncated = visit(shard, f, |scope, key, _| {
        let seen = &mut seen[scope as usize];
        if !seen.contains(key) {
            seen.insert(key.to_owned());
        }
    });
    let tags = TagScope::ALL
        .into_iter()
        .zip(seen)
        .flat_map(|(scope, keys)| keys.into_iter().map(move |k| (scope, k)))
        .collect();
    (tags, truncated)
}

/// The values of `key` in `f`, with their counts summed, most frequent first; whether some
/// segment left keys or values out.
pub fn tag_values_local(shard: &Shard, key: &str, f: &TagFilter) -> (Vec<(TagValue, u64)>, bool) {
    let mut counts = ValueCounts::default();
    let truncated = visit(shard, f, |_, k, values| {
        if k == key {
            for (v, n) in values.top(usize::MAX) {
                counts.add(v, n);
            }
        }
    });
    (counts.most_frequent(usize::MAX), truncated)
}

/// Counts of values gathered from several tables.
#[derive(Default)]
pub struct ValueCounts {
    by_value: std::collections::HashMap<ValueKey, (TagValue, u64)>,
}

/// A value as a map key: doubles by their bits (they are never NaN, and `-0.0` is `0.0`).
#[derive(PartialEq, Eq, Hash)]
enum ValueKey {
    Str(String),
    Int(i64),
    Double(u64),
    Bool(bool),
}

impl ValueCounts {
    pub fn add(&mut self, v: &TagValue, n: u64) {
        let key = match v {
            TagValue::Str(s) => ValueKey::Str(s.clone()),
            TagValue::Int(i) => ValueKey::Int(*i),
            TagValue::Double(d) => ValueKey::Double(d.to_bits()),
            TagValue::Bool(b) => ValueKey::Bool(*b),
        };
        self.by_value.entry(key).or_insert_with(|| (v.clone(), 0)).1 += n;
    }

    /// The `limit` most counted, most first (ties in [`TagValue::order`]).
    pub fn most_frequent(self, limit: usize) -> Vec<(TagValue, u64)> {
        let mut all: Vec<(TagValue, u64)> = self.by_value.into_values().collect();
        all.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.order(&b.0)));
        all.truncate(limit);
        all
    }
}
