//! The one diff engine: the desired rows of some owners against what the
//! northbound replica holds, giving the fewest operations that make NB
//! right.
//!
//! Rules: a row is found by its identity (name, or owner-scoped key) and
//! only the columns that differ are written; a large set or map that
//! differs by a few elements is mutated rather than rewritten (port groups
//! and address sets that many pods share); a row whose identity changed is
//! replaced; a row is attached to every parent that must hold it, by
//! mutation, so many owners can share one parent; references to other
//! owners' rows resolve to their UUIDs, or to the rows the same
//! transaction inserts; what an owner no longer wants is unlinked from its
//! strong parents and deleted. An owner whose rows need a row that does not
//! exist yet (a parent, a referenced row) is deferred and retried; what it
//! can write is written.
//!
//! The diff runs in two passes over the whole batch: first which rows
//! exist, are inserted or go; then the values, so a reference or a parent
//! inserted by any owner of the batch resolves, whatever the owners' order.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use ovsdb::{Atom, Row, Uuid, Value};
use switchyard_api::names;

use super::row::{Col, DesiredRow, Owner, Parent, RowId, Table};
use super::view::NbView;

/// Which rows a mutation applies to.
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    Row(Uuid),
    /// Every row of the table whose column holds this UUID (unlinking a row
    /// from whichever parents hold it).
    Holding(Uuid),
}

/// One northbound operation, values resolved (`Atom::NamedUuid` for rows
/// the same transaction inserts).
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    Insert {
        table: Table,
        uname: String,
        row: Row,
    },
    Update {
        table: Table,
        uuid: Uuid,
        row: Row,
    },
    /// `delete` is applied first, then `insert` (OVSDB map inserts never
    /// overwrite a key, so a changed entry is deleted and inserted).
    Mutate {
        table: Table,
        target: Target,
        column: &'static str,
        insert: Value,
        delete: Value,
    },
    Delete {
        table: Table,
        uuid: Uuid,
    },
}

/// The operations for a batch of owners.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    pub ops: Vec<Op>,
    /// Owners whose rows could not all be written (a parent or referenced
    /// row is missing); they are retried.
    pub deferred: Vec<Owner>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// A set this much larger than its change is mutated, not rewritten.
const MUTATE_RATIO: usize = 4;

struct Matched<'a> {
    owner: usize,
    row: &'a DesiredRow,
    existing: Option<Uuid>,
    /// The named UUID of an insert.
    uname: Option<String>,
}

/// Diffs `owners` (desired rows, or `None` for an owner that should have
/// none) against `view`.
pub fn diff(view: &dyn NbView, owners: &[(&Owner, Option<&[DesiredRow]>)]) -> Plan {
    let mut deleted: BTreeSet<(Table, Uuid)> = BTreeSet::new();
    let mut matched: Vec<Matched> = Vec::new();
    // Pass 1: what exists, what is inserted, what goes.
    for (i, (owner, rows)) in owners.iter().enumerate() {
        let mut keep: HashSet<Uuid> = HashSet::new();
        for row in rows.unwrap_or(&[]) {
            let candidates = view.rows_with_id(row.table, &row.id, owner);
            let existing = choose(view, row.table, &candidates, owner);
            let existing = match (existing, &row.identity) {
                (Some(u), Some((key, want)))
                    if view.external_id(row.table, u, key) != Some(want.as_str()) =>
                {
                    // Same name, another object (a recreated pod): a fresh
                    // row, never an update of the old one.
                    deleted.insert((row.table, u));
                    None
                }
                (e, _) => e,
            };
            if let Some(u) = existing {
                keep.insert(u);
                // Duplicates of the same identity go.
                for d in candidates.iter().filter(|d| **d != u) {
                    if view.owner_of(row.table, *d).as_ref() == Some(*owner) {
                        deleted.insert((row.table, *d));
                    }
                }
            }
            matched.push(Matched {
                owner: i,
                row,
                existing,
                uname: None,
            });
        }
        for table in Table::ALL {
            for u in view.owned_by(table, owner) {
                if !keep.contains(&u) {
                    deleted.insert((table, u));
                }
            }
        }
    }
    let mut inserted: HashMap<(Table, &str), String> = HashMap::new();
    for (n, m) in matched.iter_mut().enumerate() {
        if m.existing.is_none() {
            let uname = format!("row{n}");
            if let RowId::Name(name) = &m.row.id {
                inserted.insert((m.row.table, name.as_str()), uname.clone());
            }
            m.uname = Some(uname);
        }
    }
    let ctx = Ctx {
        view,
        deleted: &deleted,
        inserted: &inserted,
    };

    // Pass 2: values, parents, references.
    let mut deferred: BTreeSet<usize> = BTreeSet::new();
    let mut inserts: Vec<(Table, String, Row)> = Vec::new();
    let mut updates: Vec<Op> = Vec::new();
    // (parent table, parent, column) -> children to add.
    let mut attach: BTreeMap<(Table, Uuid, &'static str), Vec<Atom>> = BTreeMap::new();
    let mut attach_new: HashMap<(Table, String, &'static str), Vec<Atom>> = HashMap::new();
    for m in &matched {
        let self_atom = match (&m.existing, &m.uname) {
            (Some(u), _) => Atom::Uuid(*u),
            (None, Some(n)) => Atom::NamedUuid(n.clone()),
            (None, None) => continue,
        };
        // Parents first: a new non-root row no parent can hold is not
        // inserted at all.
        let mut parents_ok = true;
        for p in &m.row.parents {
            match ctx.parent(p) {
                Some(ParentAt::New(uname)) => attach_new
                    .entry((p.table, uname, p.column))
                    .or_default()
                    .push(self_atom.clone()),
                Some(ParentAt::Existing(pu)) => {
                    let held = m.existing.is_some_and(|u| {
                        view.value(p.table, pu, p.column)
                            .is_some_and(|v| v.atoms().contains(&Atom::Uuid(u)))
                    });
                    if !held {
                        attach
                            .entry((p.table, pu, p.column))
                            .or_default()
                            .push(self_atom.clone());
                    }
                }
                None => parents_ok = false,
            }
        }
        if !parents_ok {
            deferred.insert(m.owner);
            if m.existing.is_none() && !m.row.table.is_root() {
                continue;
            }
        }
        match (&m.existing, &m.uname) {
            (None, Some(uname)) => {
                let mut row = Row::new();
                if let (RowId::Name(n), Some(col)) = (&m.row.id, m.row.table.name_column()) {
                    row.set(col, n.as_str());
                }
                for (c, v) in &m.row.cols {
                    let (value, complete) = ctx.value(v);
                    if !complete {
                        deferred.insert(m.owner);
                    }
                    row.set(*c, value);
                }
                inserts.push((m.row.table, uname.clone(), row));
            }
            (Some(uuid), _) => {
                let mut changed = Row::new();
                for (c, v) in &m.row.cols {
                    let (want, complete) = ctx.value(v);
                    if !complete {
                        deferred.insert(m.owner);
                    }
                    let have = view.value(m.row.table, *uuid, c);
                    if values_equal(have, &want) {
                        continue;
                    }
                    match delta(have, &want) {
                        Some((insert, delete)) => updates.push(Op::Mutate {
                            table: m.row.table,
                            target: Target::Row(*uuid),
                            column: c,
                            insert,
                            delete,
                        }),
                        None => {
                            changed.set(*c, want);
                        }
                    }
                }
                if !changed.is_empty() {
                    updates.push(Op::Update {
                        table: m.row.table,
                        uuid: *uuid,
                        row: changed,
                    });
                }
            }
            (None, None) => {}
        }
    }

    // Children of parents this plan inserts go into the parent's insert.
    for (table, uname, row) in &mut inserts {
        for ((t, u, column), atoms) in attach_new.iter() {
            if t == table && u == uname {
                let mut all: Vec<Atom> = row
                    .get(column)
                    .map(|v| v.atoms().to_vec())
                    .unwrap_or_default();
                all.extend(atoms.iter().cloned());
                row.set(*column, Value::set(all));
            }
        }
    }

    let mut ops: Vec<Op> = Vec::new();
    for (table, uname, row) in inserts {
        ops.push(Op::Insert { table, uname, row });
    }
    ops.extend(updates);
    for ((table, uuid, column), atoms) in attach {
        ops.push(Op::Mutate {
            table,
            target: Target::Row(uuid),
            column,
            insert: Value::set(atoms),
            delete: Value::empty_set(),
        });
    }
    for (table, uuid) in &deleted {
        // Unlinked from whatever holds it strongly, then deleted.
        for (pt, column) in table.strong_parents() {
            ops.push(Op::Mutate {
                table: *pt,
                target: Target::Holding(*uuid),
                column,
                insert: Value::empty_set(),
                delete: Value::from(*uuid),
            });
        }
        ops.push(Op::Delete {
            table: *table,
            uuid: *uuid,
        });
    }
    Plan {
        ops,
        deferred: deferred.into_iter().map(|i| owners[i].0.clone()).collect(),
    }
}

/// The row standing for a desired one among those with its identity: one
/// this owner has, else one no Switchyard owner claims (adopted: its
/// `external_ids` get rewritten), else any.
fn choose(view: &dyn NbView, table: Table, candidates: &[Uuid], owner: &Owner) -> Option<Uuid> {
    candidates
        .iter()
        .copied()
        .find(|u| view.owner_of(table, *u).as_ref() == Some(owner))
        .or_else(|| {
            candidates
                .iter()
                .copied()
                .find(|u| view.external_id(table, *u, names::OWNER_KIND).is_none())
        })
        .or_else(|| candidates.first().copied())
}

enum ParentAt {
    Existing(Uuid),
    New(String),
}

struct Ctx<'a> {
    view: &'a dyn NbView,
    deleted: &'a BTreeSet<(Table, Uuid)>,
    inserted: &'a HashMap<(Table, &'a str), String>,
}

impl Ctx<'_> {
    /// A row named `name` as it will be after this plan.
    fn lookup(&self, table: Table, name: &str) -> Option<Atom> {
        if let Some(uname) = self.inserted.get(&(table, name)) {
            return Some(Atom::NamedUuid(uname.clone()));
        }
        let found = self
            .view
            .rows_named(table, name)
            .into_iter()
            .filter(|u| !self.deleted.contains(&(table, *u)))
            .min_by_key(|u| {
                self.view
                    .external_id(table, *u, names::OWNER_KIND)
                    .is_none()
            });
        found.map(Atom::Uuid)
    }

    fn parent(&self, p: &Parent) -> Option<ParentAt> {
        match self.lookup(p.table, &p.name)? {
            Atom::NamedUuid(n) => Some(ParentAt::New(n)),
            Atom::Uuid(u) => Some(ParentAt::Existing(u)),
            _ => None,
        }
    }

    /// The value to write, and whether every reference resolved.
    fn value(&self, c: &Col) -> (Value, bool) {
        match c {
            Col::Str(s) => (Value::from(s.as_str()), true),
            Col::Int(i) => (Value::from(*i), true),
            Col::Real(f) => (Value::set([Atom::Real(*f)]), true),
            Col::Bool(b) => (Value::from(*b), true),
            Col::Set(items) => (
                Value::set(items.iter().map(|s| Atom::from(s.as_str()))),
                true,
            ),
            Col::Map(m) => (
                Value::map(m.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
                true,
            ),
            Col::Refs(table, names) => {
                let atoms: Vec<Atom> = names
                    .iter()
                    .filter_map(|n| self.lookup(*table, n))
                    .collect();
                let complete = atoms.len() == names.len();
                (Value::set(atoms), complete)
            }
        }
    }
}

fn is_empty(v: &Value) -> bool {
    v.atoms().is_empty() && v.as_map().is_none_or(|m| m.is_empty())
}

/// Whether a column holds `want`. A column the server left out is at its
/// default; an empty map may be decoded as an empty set; a named UUID never
/// matches (the row does not exist yet).
pub fn values_equal(have: Option<&Value>, want: &Value) -> bool {
    if want.atoms().iter().any(|a| matches!(a, Atom::NamedUuid(_))) {
        return false;
    }
    let Some(have) = have else {
        return is_empty(want)
            || matches!(want.atom(), Some(Atom::String(s)) if s.is_empty())
            || matches!(
                want.atom(),
                Some(Atom::Integer(0)) | Some(Atom::Boolean(false))
            );
    };
    match (have.as_map(), want.as_map()) {
        (Some(a), Some(b)) => a == b,
        (None, None) => {
            let (mut a, mut b) = (have.atoms().to_vec(), want.atoms().to_vec());
            a.sort();
            b.sort();
            a == b
        }
        _ => is_empty(have) && is_empty(want),
    }
}

/// The insert and delete that turn `have` into `want`, when that is much
/// smaller than writing `want` whole.
fn delta(have: Option<&Value>, want: &Value) -> Option<(Value, Value)> {
    let have = have?;
    match (have.as_map(), want.as_map()) {
        (Some(h), Some(w)) => {
            let delete: Vec<Atom> = h
                .iter()
                .filter(|(k, v)| w.get(k) != Some(*v))
                .map(|(k, _)| k.clone())
                .collect();
            let insert: Vec<(Atom, Atom)> = w
                .iter()
                .filter(|(k, v)| h.get(k) != Some(*v))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let change = delete.len() + insert.len();
            (change * MUTATE_RATIO < w.len()).then(|| (Value::map(insert), Value::set(delete)))
        }
        (None, None) => {
            let h: BTreeSet<&Atom> = have.atoms().iter().collect();
            let w: BTreeSet<&Atom> = want.atoms().iter().collect();
            if h.len() <= 1 && w.len() <= 1 {
                // A scalar or optional column: written, not mutated.
                return None;
            }
            let insert: Vec<Atom> = w.difference(&h).map(|a| (*a).clone()).collect();
            let delete: Vec<Atom> = h.difference(&w).map(|a| (*a).clone()).collect();
            let change = insert.len() + delete.len();
            (change * MUTATE_RATIO < w.len().max(h.len()))
                .then(|| (Value::set(insert), Value::set(delete)))
        }
        _ => None,
    }
}

/// Owners that have rows in NB but are not `known`: what a full sync
/// deletes.
pub fn orphans(view: &dyn NbView, known: &dyn Fn(&Owner) -> bool) -> Vec<Owner> {
    let mut out: BTreeSet<Owner> = BTreeSet::new();
    for table in Table::ALL {
        for (_, owner) in view.all_owned(table) {
            if !known(&owner) {
                out.insert(owner);
            }
        }
    }
    out.into_iter().collect()
}

#[cfg(test)]
#[path = "diff_tests.rs"]
mod tests;
