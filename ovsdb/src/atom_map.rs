//! The map of an OVSDB map column, kept as a sorted vector.
//!
//! Nearly every map a replica holds is small (`external_ids`, `options`:
//! two to six pairs), and there are tens of thousands of them: a `BTreeMap`
//! allocates a node for eleven pairs on the first insert (about 720 bytes
//! for atom pairs), a vector sized to its pairs a tenth of that. Lookups
//! are binary searches; inserts into a large map (a load balancer's
//! `vips`) are linear, which the replica's deltas (a few pairs each) and
//! decoding (sorted once, whole) keep rare.

use std::fmt;

use crate::value::Atom;

/// Pairs sorted by key, keys unique. Equality and order are those of the
/// sorted pairs, as for a `BTreeMap`.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AtomMap(Vec<(Atom, Atom)>);

impl AtomMap {
    pub fn new() -> AtomMap {
        AtomMap(Vec::new())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn find(&self, key: &Atom) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| k.cmp(key))
    }

    pub fn get(&self, key: &Atom) -> Option<&Atom> {
        self.find(key).ok().map(|i| &self.0[i].1)
    }

    /// The value of a string key, found without allocating an atom.
    pub fn get_str(&self, key: &str) -> Option<&Atom> {
        self.0
            .binary_search_by(|(k, _)| match k {
                Atom::String(s) => s.as_str().cmp(key),
                // Another kind of atom orders against every string by its
                // kind alone (an empty string allocates nothing).
                other => other.cmp(&Atom::String(String::new())),
            })
            .ok()
            .map(|i| &self.0[i].1)
    }

    pub fn get_mut(&mut self, key: &Atom) -> Option<&mut Atom> {
        self.find(key).ok().map(|i| &mut self.0[i].1)
    }

    pub fn contains_key(&self, key: &Atom) -> bool {
        self.find(key).is_ok()
    }

    /// Sets `key` to `value`, giving back the value it replaced.
    pub fn insert(&mut self, key: Atom, value: Atom) -> Option<Atom> {
        match self.find(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, value)),
            Err(i) => {
                self.0.insert(i, (key, value));
                None
            }
        }
    }

    pub fn remove(&mut self, key: &Atom) -> Option<Atom> {
        self.find(key).ok().map(|i| self.0.remove(i).1)
    }

    pub fn retain(&mut self, mut keep: impl FnMut(&Atom, &Atom) -> bool) {
        self.0.retain(|(k, v)| keep(k, v));
    }

    /// The pairs in key order.
    pub fn iter(&self) -> Iter<'_> {
        Iter(self.0.iter())
    }

    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &Atom> + ExactSizeIterator {
        self.0.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl DoubleEndedIterator<Item = &Atom> + ExactSizeIterator {
        self.0.iter().map(|(_, v)| v)
    }
}

/// `[(k, v), …]` as a `BTreeMap` prints `{k: v, …}`.
impl fmt::Debug for AtomMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// Later pairs win over earlier ones with the same key, as collecting
/// into a `BTreeMap` does.
impl FromIterator<(Atom, Atom)> for AtomMap {
    fn from_iter<I: IntoIterator<Item = (Atom, Atom)>>(iter: I) -> Self {
        let mut v: Vec<(Atom, Atom)> = iter.into_iter().collect();
        // Stable: among equal keys the last one inserted stays last.
        v.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out: Vec<(Atom, Atom)> = Vec::with_capacity(v.len());
        for (k, val) in v {
            match out.last_mut() {
                Some(last) if last.0 == k => last.1 = val,
                _ => out.push((k, val)),
            }
        }
        out.shrink_to_fit();
        AtomMap(out)
    }
}

impl Extend<(Atom, Atom)> for AtomMap {
    fn extend<I: IntoIterator<Item = (Atom, Atom)>>(&mut self, iter: I) {
        for (k, v) in iter {
            self.insert(k, v);
        }
    }
}

impl IntoIterator for AtomMap {
    type Item = (Atom, Atom);
    type IntoIter = std::vec::IntoIter<(Atom, Atom)>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a AtomMap {
    type Item = (&'a Atom, &'a Atom);
    type IntoIter = Iter<'a>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// Borrowed pairs of an [`AtomMap`], in key order.
#[derive(Clone, Debug)]
pub struct Iter<'a>(std::slice::Iter<'a, (Atom, Atom)>);

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a Atom, &'a Atom);
    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(|(k, v)| (k, v))
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl DoubleEndedIterator for Iter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.0.next_back().map(|(k, v)| (k, v))
    }
}

impl ExactSizeIterator for Iter<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_as_a_btreemap() {
        use std::collections::BTreeMap;
        let pairs: Vec<(i64, i64)> = vec![(3, 1), (1, 2), (3, 4), (2, 0), (1, 9)];
        let a: AtomMap = pairs
            .iter()
            .map(|&(k, v)| (Atom::from(k), Atom::from(v)))
            .collect();
        let b: BTreeMap<Atom, Atom> = pairs
            .iter()
            .map(|&(k, v)| (Atom::from(k), Atom::from(v)))
            .collect();
        assert!(a.iter().eq(b.iter()));
        let mut a = a;
        let mut b = b;
        assert_eq!(
            a.insert(5i64.into(), 5i64.into()),
            b.insert(5i64.into(), 5i64.into())
        );
        assert_eq!(
            a.insert(1i64.into(), 0i64.into()),
            b.insert(1i64.into(), 0i64.into())
        );
        assert_eq!(a.remove(&2i64.into()), b.remove(&2i64.into()));
        assert_eq!(a.remove(&7i64.into()), b.remove(&7i64.into()));
        assert!(a.iter().eq(b.iter()));
        assert_eq!(a.get(&3i64.into()), b.get(&3i64.into()));
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
    }
}
