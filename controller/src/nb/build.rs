//! A plan as one OVSDB transaction, and what the replica must show once
//! that transaction is visible in it.

use std::collections::HashSet;

use ovsdb::{Condition, Mutation, OpResult, ReplicaDb, Row, Transaction, Uuid, Value};

use super::diff::{values_equal, Op, Plan, Target};
use super::row::Table;
use super::view::{NbView, ReplicaView};

pub const DB: &str = ovsdb::nb::DATABASE;

/// What the replica must show once a transaction is visible in it.
#[derive(Clone, Debug)]
pub enum Expect {
    Present(Table, Uuid),
    Absent(Table, Uuid),
    Columns(Table, Uuid, Row),
}

/// A transaction, the op indices of its inserts, and its expectations.
pub struct Built {
    pub tx: Transaction,
    pub inserts: Vec<(usize, Table)>,
    pub expect: Vec<Expect>,
    /// Write operations (inserts, updates, mutates, deletes).
    pub operations: usize,
    /// Rows the transaction changes (inserts are known once committed).
    pub touched: HashSet<(Table, Uuid)>,
}

pub fn build(plan: &Plan) -> Built {
    let mut tx = Transaction::new(DB);
    let mut inserts = Vec::new();
    let mut expect = Vec::new();
    let mut touched = HashSet::new();
    for op in &plan.ops {
        match op {
            Op::Insert { table, uname, row } => {
                inserts.push((tx.len(), *table));
                tx.insert_as(table.name(), row.clone(), uname);
            }
            Op::Update { table, uuid, row } => {
                tx.update(table.name(), vec![Condition::uuid(*uuid)], row.clone());
                expect.push(Expect::Columns(*table, *uuid, row.clone()));
                touched.insert((*table, *uuid));
            }
            Op::Mutate {
                table,
                target,
                column,
                insert,
                delete,
            } => {
                let cond = match target {
                    Target::Row(u) => {
                        touched.insert((*table, *u));
                        Condition::uuid(*u)
                    }
                    Target::Holding(u) => Condition::includes(*column, Value::from(*u)),
                };
                let mut mutations = Vec::new();
                if !is_empty(delete) {
                    mutations.push(Mutation::delete(*column, delete.clone()));
                }
                if !is_empty(insert) {
                    mutations.push(Mutation::insert(*column, insert.clone()));
                }
                tx.mutate(table.name(), vec![cond], mutations);
            }
            Op::Delete { table, uuid } => {
                tx.delete(table.name(), vec![Condition::uuid(*uuid)]);
                expect.push(Expect::Absent(*table, *uuid));
                touched.insert((*table, *uuid));
            }
        }
    }
    Built {
        operations: tx.len(),
        tx,
        inserts,
        expect,
        touched,
    }
}

fn is_empty(v: &Value) -> bool {
    v.atoms().is_empty() && v.as_map().is_none_or(|m| m.is_empty())
}

/// The expectations completed with the UUIDs the server gave the inserts.
pub fn expectations(
    built_inserts: &[(usize, Table)],
    results: &[OpResult],
    mut expect: Vec<Expect>,
) -> Vec<Expect> {
    for (idx, table) in built_inserts {
        if let Some(u) = results.get(*idx).and_then(OpResult::uuid) {
            expect.push(Expect::Present(*table, u));
        }
    }
    expect
}

/// Whether the replica shows every expectation.
pub fn reflects(db: &ReplicaDb, expect: &[Expect]) -> bool {
    let view = ReplicaView(db);
    expect.iter().all(|e| match e {
        Expect::Present(t, u) => view.exists(*t, *u),
        Expect::Absent(t, u) => !view.exists(*t, *u),
        Expect::Columns(t, u, row) => {
            // A row deleted meanwhile (by an operator) counts as seen; the
            // next diff deals with it.
            !view.exists(*t, *u)
                || row
                    .iter()
                    .all(|(c, v)| values_equal(view.value(*t, *u, c), v))
        }
    })
}
