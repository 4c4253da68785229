//! Desired northbound rows per owner, shared between the engine (writer of
//! intent) and the NB writer, with the owners that must commit together.
//!
//! When one change touches several owners (a new pod: its port, and its
//! address in its namespace's set and in the port groups of the policies
//! that select it), those owners' new rows are joined into one group, and
//! the writer never puts a group's owners in different transactions: no
//! packet sees the port before the policy that governs it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::nb::{DesiredRow, Owner};

#[derive(Default)]
pub(super) struct Inner {
    pub(super) rows: HashMap<Owner, Arc<Vec<DesiredRow>>>,
    pub(super) dirty: BTreeSet<Owner>,
    /// Union-find links between dirty owners of one group.
    link: HashMap<Owner, Owner>,
    pub(super) full: bool,
}

impl Inner {
    fn root(&self, o: &Owner) -> Owner {
        let mut cur = o;
        while let Some(next) = self.link.get(cur) {
            if next == cur {
                break;
            }
            cur = next;
        }
        cur.clone()
    }

    /// Joins `b`'s group into `a`'s. Members are linked straight to the
    /// root they join, so joining many owners to one stays linear.
    fn join(&mut self, a: &Owner, b: &Owner) {
        let (ra, rb) = (self.root(a), self.root(b));
        if ra != rb {
            self.link.insert(rb, ra);
        }
    }

    /// Takes the dirty owners as groups (each sorted, groups ordered by
    /// their first owner): the unit the writer may not split.
    pub(super) fn take_groups(&mut self) -> Vec<Vec<Owner>> {
        let dirty = std::mem::take(&mut self.dirty);
        let mut groups: BTreeMap<Owner, Vec<Owner>> = BTreeMap::new();
        for o in dirty {
            groups.entry(self.root(&o)).or_default().push(o);
        }
        self.link.clear();
        let mut out: Vec<Vec<Owner>> = groups.into_values().collect();
        out.sort_by(|a, b| a[0].cmp(&b[0]));
        out
    }
}

/// See the module doc.
#[derive(Default)]
pub struct DesiredStore {
    inner: Mutex<Inner>,
    pub(super) notify: Notify,
}

impl DesiredStore {
    pub(super) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets an owner's rows (`None`: it should have none); marks it dirty
    /// only when that changes what it wants.
    pub fn set(&self, owner: Owner, rows: Option<Vec<DesiredRow>>) {
        self.set_group(vec![(owner, rows)]);
    }

    /// Sets several owners' rows; those whose rows changed commit together.
    pub fn set_group(&self, owners: Vec<(Owner, Option<Vec<DesiredRow>>)>) {
        let mut g = self.lock();
        let mut changed: Vec<Owner> = Vec::new();
        for (owner, rows) in owners {
            let differs = match (&rows, g.rows.get(&owner)) {
                (None, None) => false,
                (Some(new), Some(old)) => new != old.as_ref(),
                _ => true,
            };
            if !differs {
                continue;
            }
            match rows {
                Some(r) => {
                    g.rows.insert(owner.clone(), Arc::new(r));
                }
                None => {
                    g.rows.remove(&owner);
                }
            }
            g.dirty.insert(owner.clone());
            changed.push(owner);
        }
        if let Some(first) = changed.first() {
            let root = g.root(first);
            for o in &changed[1..] {
                g.join(&root, o);
            }
            drop(g);
            self.notify.notify_one();
        }
    }

    /// Asks for a full diff of every owner plus removal of orphans.
    pub fn request_full(&self) {
        self.lock().full = true;
        self.notify.notify_one();
    }

    pub(super) fn mark_dirty(&self, owners: impl IntoIterator<Item = Owner>) {
        let mut g = self.lock();
        let before = g.dirty.len();
        g.dirty.extend(owners);
        if g.dirty.len() != before {
            drop(g);
            self.notify.notify_one();
        }
    }

    /// Marks a group dirty again, still as one group.
    pub(super) fn mark_group_dirty(&self, owners: &[Owner]) {
        let mut g = self.lock();
        for o in owners {
            g.dirty.insert(o.clone());
        }
        if let Some(first) = owners.first() {
            let root = g.root(first);
            for o in &owners[1..] {
                g.join(&root, o);
            }
        }
        drop(g);
        self.notify.notify_one();
    }

    pub fn owners(&self) -> usize {
        self.lock().rows.len()
    }

    pub fn dirty(&self) -> usize {
        self.lock().dirty.len()
    }

    /// One owner's desired rows.
    pub fn rows(&self, owner: &Owner) -> Option<Arc<Vec<DesiredRow>>> {
        self.lock().rows.get(owner).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nb::Table;

    fn o(kind: &'static str, key: &str) -> Owner {
        Owner::of(kind, key)
    }

    fn row(owner: &Owner, name: &str) -> Vec<DesiredRow> {
        vec![DesiredRow::named(Table::AddressSet, name, owner)]
    }

    #[test]
    fn owners_changed_together_stay_together() {
        let s = DesiredStore::default();
        let (p1, p2, ns) = (o("Pod", "a/p1"), o("Pod", "a/p2"), o("Namespace", "a"));
        s.set_group(vec![
            (p1.clone(), Some(row(&p1, "x1"))),
            (ns.clone(), Some(row(&ns, "n1"))),
        ]);
        s.set_group(vec![
            (p2.clone(), Some(row(&p2, "x2"))),
            (ns.clone(), Some(row(&ns, "n2"))),
        ]);
        let lone = o("Pod", "b/p3");
        s.set(lone.clone(), Some(row(&lone, "x3")));
        let groups = s.lock().take_groups();
        assert_eq!(groups.len(), 2, "{groups:?}");
        let big = groups
            .iter()
            .find(|g| g.len() == 3)
            .expect("one group of 3");
        assert!(big.contains(&p1) && big.contains(&p2) && big.contains(&ns));
        // An unchanged owner does not join a group.
        s.set_group(vec![
            (ns.clone(), Some(row(&ns, "n2"))),
            (lone.clone(), Some(row(&lone, "x4"))),
        ]);
        assert_eq!(s.lock().take_groups(), vec![vec![lone]]);
    }
}
