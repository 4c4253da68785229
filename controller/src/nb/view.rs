//! Read access to the northbound rows the diff compares against: the
//! monitor's replica in production, plain maps in unit tests.

use std::collections::BTreeMap;

use ovsdb::{Atom, ReplicaDb, Row, Uuid, Value};
use switchyard_api::names;

use super::row::{Owner, RowId, Table, KEY};

/// What the diff reads of NB.
pub trait NbView {
    fn row(&self, table: Table, uuid: Uuid) -> Option<&Row>;
    /// Rows of `table` whose name column is `name`.
    fn rows_named(&self, table: Table, name: &str) -> Vec<Uuid>;
    /// Rows of `table` whose `external_ids` name `owner`.
    fn owned_by(&self, table: Table, owner: &Owner) -> Vec<Uuid>;
    /// Every row of `table` carrying a Switchyard owner.
    fn all_owned(&self, table: Table) -> Vec<(Uuid, Owner)>;

    fn exists(&self, table: Table, uuid: Uuid) -> bool {
        self.row(table, uuid).is_some()
    }

    fn value(&self, table: Table, uuid: Uuid, column: &str) -> Option<&Value> {
        self.row(table, uuid)?.get(column)
    }

    fn external_id(&self, table: Table, uuid: Uuid, key: &str) -> Option<&str> {
        self.row(table, uuid)?.map_get("external_ids", key)
    }

    /// The row's name, for named tables.
    fn name_of(&self, table: Table, uuid: Uuid) -> Option<&str> {
        self.row(table, uuid)?.str(table.name_column()?)
    }

    /// The owner a row's `external_ids` name.
    fn owner_of(&self, table: Table, uuid: Uuid) -> Option<Owner> {
        owner_of(self.row(table, uuid)?)
    }

    /// Rows that stand for `id`: by name in named tables; by key, among
    /// `owner`'s rows, in the others.
    fn rows_with_id(&self, table: Table, id: &RowId, owner: &Owner) -> Vec<Uuid> {
        match id {
            RowId::Name(n) => self.rows_named(table, n),
            RowId::Key(k) => self
                .owned_by(table, owner)
                .into_iter()
                .filter(|u| self.external_id(table, *u, KEY) == Some(k.as_str()))
                .collect(),
        }
    }
}

/// The owner named by a row's `external_ids`, if it is one of ours.
pub fn owner_of(row: &Row) -> Option<Owner> {
    Owner::from_external_ids(
        row.map_get("external_ids", names::OWNER_KIND),
        row.map_get("external_ids", names::OWNER),
    )
}

/// [`NbView`] over a replica snapshot (indexed by name and by owner).
pub struct ReplicaView<'a>(pub &'a ReplicaDb);

impl NbView for ReplicaView<'_> {
    fn row(&self, table: Table, uuid: Uuid) -> Option<&Row> {
        self.0.table(table.name()).get(&uuid)
    }
    fn rows_named(&self, table: Table, name: &str) -> Vec<Uuid> {
        match table.name_column() {
            Some("name") => self.0.table(table.name()).all_by_name(name),
            Some(col) => self
                .0
                .table(table.name())
                .iter()
                .filter(|(_, r)| r.str(col) == Some(name))
                .map(|(u, _)| *u)
                .collect(),
            None => Vec::new(),
        }
    }
    fn owned_by(&self, table: Table, owner: &Owner) -> Vec<Uuid> {
        let t = self.0.table(table.name());
        t.by_external_id(names::OWNER, owner.key())
            .into_iter()
            .filter(|u| t.get(u).and_then(owner_of).as_ref() == Some(owner))
            .collect()
    }
    fn all_owned(&self, table: Table) -> Vec<(Uuid, Owner)> {
        self.0
            .table(table.name())
            .iter()
            .filter_map(|(u, r)| owner_of(r).map(|o| (*u, o)))
            .collect()
    }
}

/// A [`NbView`] over plain maps, with an `apply` that behaves as
/// ovsdb-server does for the operations the diff emits: for unit tests of
/// the engine without a database.
#[derive(Clone, Debug, Default)]
pub struct MapView {
    pub rows: BTreeMap<(Table, Uuid), Row>,
}

impl NbView for MapView {
    fn row(&self, table: Table, uuid: Uuid) -> Option<&Row> {
        self.rows.get(&(table, uuid))
    }
    fn rows_named(&self, table: Table, name: &str) -> Vec<Uuid> {
        let Some(col) = table.name_column() else {
            return Vec::new();
        };
        self.rows
            .iter()
            .filter(|((t, _), r)| *t == table && r.str(col) == Some(name))
            .map(|((_, u), _)| *u)
            .collect()
    }
    fn owned_by(&self, table: Table, owner: &Owner) -> Vec<Uuid> {
        self.all_owned(table)
            .into_iter()
            .filter(|(_, o)| o == owner)
            .map(|(u, _)| u)
            .collect()
    }
    fn all_owned(&self, table: Table) -> Vec<(Uuid, Owner)> {
        self.rows
            .iter()
            .filter(|((t, _), _)| *t == table)
            .filter_map(|((_, u), r)| Some((*u, owner_of(r)?)))
            .collect()
    }
}

impl MapView {
    /// Applies a transaction's operations as ovsdb-server would: new UUIDs
    /// for inserts, named UUIDs resolved, mutations applied, and non-root
    /// rows no one references any more collected.
    pub fn apply(&mut self, ops: &[super::diff::Op]) {
        use super::diff::{Op, Target};
        let mut named: BTreeMap<String, Uuid> = BTreeMap::new();
        for op in ops {
            if let Op::Insert { uname, .. } = op {
                named.insert(uname.clone(), Uuid::new_v4());
            }
        }
        let resolve = |v: &Value| -> Value {
            let fix = |a: &Atom| match a {
                Atom::NamedUuid(n) => Atom::Uuid(named[n]),
                other => other.clone(),
            };
            match v {
                Value::Set(s) => Value::set(s.iter().map(fix)),
                Value::Map(m) => Value::Map(m.iter().map(|(k, v)| (fix(k), fix(v))).collect()),
            }
        };
        for op in ops {
            match op {
                Op::Insert {
                    table, uname, row, ..
                } => {
                    let mut r = Row::new();
                    for (c, v) in row.iter() {
                        r.set(c, resolve(v));
                    }
                    self.rows.insert((*table, named[uname]), r);
                }
                Op::Update { table, uuid, row } => {
                    if let Some(have) = self.rows.get_mut(&(*table, *uuid)) {
                        for (c, v) in row.iter() {
                            have.set(c, resolve(v));
                        }
                    }
                }
                Op::Mutate {
                    table,
                    target,
                    column,
                    insert,
                    delete,
                } => {
                    let uuids: Vec<Uuid> = match target {
                        Target::Row(u) => vec![*u],
                        Target::Holding(u) => self
                            .rows
                            .iter()
                            .filter(|((t, _), r)| {
                                *t == *table
                                    && r.get(column)
                                        .is_some_and(|v| v.atoms().contains(&Atom::Uuid(*u)))
                            })
                            .map(|((_, x), _)| *x)
                            .collect(),
                    };
                    let (ins, del) = (resolve(insert), resolve(delete));
                    for u in uuids {
                        if let Some(have) = self.rows.get_mut(&(*table, u)) {
                            let cur = have.get(column).cloned().unwrap_or_else(Value::empty_set);
                            have.set(*column, mutate(&cur, &ins, &del));
                        }
                    }
                }
                Op::Delete { table, uuid } => {
                    self.rows.remove(&(*table, *uuid));
                }
            }
        }
        self.collect_garbage();
    }

    fn collect_garbage(&mut self) {
        loop {
            let held: std::collections::HashSet<Uuid> = self
                .rows
                .values()
                .flat_map(|r| {
                    r.iter()
                        .flat_map(|(_, v)| v.atoms().iter().filter_map(Atom::as_uuid))
                })
                .collect();
            let before = self.rows.len();
            self.rows
                .retain(|(t, u), _| t.is_root() || held.contains(u));
            if self.rows.len() == before {
                return;
            }
        }
    }
}

/// A set or map column after an OVSDB `insert`/`delete` mutation.
fn mutate(cur: &Value, ins: &Value, del: &Value) -> Value {
    match (cur, ins) {
        (Value::Map(m), _) | (_, Value::Map(m)) if !m.is_empty() || cur.as_map().is_some() => {
            let mut out = cur.as_map().cloned().unwrap_or_default();
            if let Some(d) = del.as_map() {
                for k in d.keys() {
                    out.remove(k);
                }
            }
            for k in del.atoms() {
                out.remove(k);
            }
            for (k, v) in ins.as_map().into_iter().flatten() {
                // OVSDB's map insert never overwrites a key.
                if !out.contains_key(k) {
                    out.insert(k.clone(), v.clone());
                }
            }
            Value::Map(out)
        }
        _ => {
            let mut out: Vec<Atom> = cur
                .atoms()
                .iter()
                .filter(|a| !del.atoms().contains(a))
                .cloned()
                .collect();
            out.extend(ins.atoms().iter().cloned());
            Value::set(out)
        }
    }
}
