//! Interned service and span names: the index stores a 4-byte [`NameId`] per span instead of
//! a string. Bounded by [`INTERNED_NAMES_MAX`] names of at most [`INTERNED_NAME_BYTES_MAX`]
//! bytes: a longer name, or any name once the table is full, gets [`NameId::OVERFLOW`], and
//! searches by such a name fall back to reading the records. So the table costs at most
//! about 2 × 1M × 256 bytes per shard, whatever clients send.

use foldhash::HashMap;

use crate::limits::{INTERNED_NAMES_MAX, INTERNED_NAME_BYTES_MAX};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NameId(pub u32);

impl NameId {
    /// Every name interned after the table filled up.
    pub const OVERFLOW: NameId = NameId(u32::MAX);
}

#[derive(Default)]
pub struct Names {
    ids: HashMap<Box<str>, NameId>,
    names: Vec<Box<str>>,
    bytes: usize,
    /// Some name got [`NameId::OVERFLOW`]: a lookup miss is not proof of absence.
    overflowed: bool,
}

impl Names {
    pub fn intern(&mut self, name: &str) -> NameId {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        if self.names.len() >= INTERNED_NAMES_MAX || name.len() > INTERNED_NAME_BYTES_MAX {
            self.overflowed = true;
            return NameId::OVERFLOW;
        }
        let id = NameId(self.names.len() as u32);
        self.names.push(name.into());
        self.ids.insert(name.into(), id);
        self.bytes += 2 * name.len();
        id
    }

    /// The id of a name already interned; `None` when no span or log carries it, unless the
    /// table overflowed (then it may be behind [`NameId::OVERFLOW`]).
    pub fn lookup(&self, name: &str) -> Option<NameId> {
        self.ids.get(name).copied()
    }

    pub fn overflowed(&self) -> bool {
        self.overflowed
    }

    pub fn get(&self, id: NameId) -> &str {
        self.names.get(id.0 as usize).map_or("", |n| n)
    }

    pub fn approx_bytes(&self) -> usize {
        self.bytes + self.names.capacity() * 16 + self.ids.capacity() * 24
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interning_is_idempotent() {
        let mut n = Names::default();
        let a = n.intern("checkout");
        let b = n.intern("cart");
        assert_ne!(a, b);
        assert_eq!(n.intern("checkout"), a);
        assert_eq!(n.get(b), "cart");
        assert_eq!(n.lookup("cart"), Some(b));
        assert_eq!(n.lookup("nope"), None);
        assert!(!n.overflowed());
        let long = "x".repeat(INTERNED_NAME_BYTES_MAX + 1);
        assert_eq!(n.intern(&long), NameId::OVERFLOW);
        assert!(n.overflowed());
        assert_eq!(n.lookup(&long), None);
    }
}
