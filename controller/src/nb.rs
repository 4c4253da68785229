//! The northbound side: the replica seen as an [`NbView`], plans turned into
//! OVSDB transactions, and the checks that tell when the replica reflects a
//! committed transaction.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use ovsdb::{
    Atom, Client, ClientConfig, Condition, MonitorSpec, Mutation, OpResult, Replica, ReplicaDb,
    Row, TlsConfig, Transaction, Uuid, Value,
};
use switchyard_api::names;

use crate::config::Config;
use crate::diff::{NbView, Op, ParentRef, Plan};
use crate::error::Result;
use crate::translate::{Col, Owner, Table};

pub const DB: &str = "OVN_Northbound";

/// Connects to NB with the configured remotes and TLS files.
pub async fn connect(config: &Config) -> Result<Client> {
    let mut cc = ClientConfig::new(&config.nb_remote)?
        .leader_only(true)
        .connect_timeout(Duration::from_secs(30));
    if let Some(tls) = &config.nb_tls {
        cc = cc.tls(TlsConfig {
            ca_cert: tls.ca_cert.clone(),
            client_cert: tls.client_cert.clone(),
            client_key: tls.client_key.clone(),
        });
    }
    Ok(Client::connect(cc).await?)
}

/// Monitors the managed tables' managed columns, indexed by owner.
pub async fn monitor(client: &Client) -> Result<Replica> {
    let mut spec = MonitorSpec::new(DB);
    for t in Table::ALL {
        spec = spec
            .table(
                t.name(),
                Some(t.columns().iter().map(|c| c.to_string()).collect()),
            )
            .index_external_id(t.name(), names::OWNER);
    }
    Ok(client.monitor(spec).await?)
}

/// Whether an OVSDB value equals a desired column.
pub fn value_matches(v: &Value, want: &Col) -> bool {
    match want {
        Col::Str(s) => v.as_str() == Some(s.as_str()),
        Col::Set(items) => {
            if v.as_map().is_some() {
                return items.is_empty() && v.as_map().is_some_and(|m| m.is_empty());
            }
            let atoms = v.atoms();
            if atoms.len() != items.len() {
                return false;
            }
            let mut have: Vec<&str> = Vec::with_capacity(atoms.len());
            for a in atoms {
                match a.as_str() {
                    Some(s) => have.push(s),
                    None => return false,
                }
            }
            have.sort_unstable();
            have.iter().zip(items).all(|(a, b)| *a == b)
        }
        Col::Map(m) => match v.as_map() {
            Some(have) => {
                have.len() == m.len()
                    && have
                        .iter()
                        .all(|(k, val)| match (k.as_str(), val.as_str()) {
                            (Some(k), Some(val)) => m.get(k).is_some_and(|w| w == val),
                            _ => false,
                        })
            }
            // An empty map may be decoded as an empty set.
            None => m.is_empty() && v.atoms().is_empty(),
        },
    }
}

/// The OVSDB value for a desired column.
pub fn to_value(c: &Col) -> Value {
    match c {
        Col::Str(s) => Value::from(s.as_str()),
        Col::Set(items) => Value::set(items.iter().map(|s| Atom::from(s.as_str()))),
        Col::Map(m) => Value::map(m.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
    }
}

/// [`NbView`] over a replica snapshot.
pub struct ReplicaView<'a>(pub &'a ReplicaDb);

impl ReplicaView<'_> {
    fn row(&self, table: Table, uuid: Uuid) -> Option<&Row> {
        self.0.table(table.name()).get(&uuid)
    }
}

fn owner_of(row: &Row) -> Option<Owner> {
    Owner::from_external_ids(
        row.map_get("external_ids", names::OWNER_KIND),
        row.map_get("external_ids", names::OWNER),
    )
}

impl NbView for ReplicaView<'_> {
    fn rows_named(&self, table: Table, name: &str) -> Vec<Uuid> {
        self.0.table(table.name()).all_by_name(name)
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
    fn column_matches(&self, table: Table, uuid: Uuid, column: &str, want: &Col) -> bool {
        match self.row(table, uuid) {
            Some(r) => match r.get(column) {
                Some(v) => value_matches(v, want),
                // A column the server left out is at its default (empty).
                None => match want {
                    Col::Str(s) => s.is_empty(),
                    Col::Set(v) => v.is_empty(),
                    Col::Map(m) => m.is_empty(),
                },
            },
            None => false,
        }
    }
    fn external_id(&self, table: Table, uuid: Uuid, key: &str) -> Option<String> {
        self.row(table, uuid)?
            .map_get("external_ids", key)
            .map(str::to_string)
    }
    fn exists(&self, table: Table, uuid: Uuid) -> bool {
        self.row(table, uuid).is_some()
    }
}

/// What the replica must show once a transaction is visible in it.
#[derive(Clone, Debug)]
pub enum Expect {
    Present(Table, Uuid),
    Absent(Table, Uuid),
    Columns(Table, Uuid, Vec<(&'static str, Col)>),
}

/// A transaction and the op indices of its inserts.
pub struct Built {
    pub tx: Transaction,
    pub inserts: Vec<(usize, Table)>,
    pub expect: Vec<Expect>,
    /// Write operations (inserts, updates, mutates, deletes).
    pub operations: usize,
}

/// Turns a plan into one transaction. New children of existing parents are
/// added with one `mutate` per parent; new children of new parents go into
/// the parent's `insert`.
pub fn build(plan: &Plan) -> Built {
    let mut tx = Transaction::new(DB);
    let mut inserts = Vec::new();
    let mut expect = Vec::new();
    let mut named: HashMap<(Table, &str), String> = HashMap::new();
    let mut new_children: HashMap<(Table, &str), Vec<Atom>> = HashMap::new();
    let mut existing_children: BTreeMap<(Table, Uuid), Vec<Atom>> = BTreeMap::new();
    for (i, op) in plan.ops.iter().enumerate() {
        if let Op::Insert {
            table,
            name,
            parent,
            ..
        } = op
        {
            let uname = format!("row{i}");
            named.insert((*table, name.as_str()), uname.clone());
            match parent {
                Some(ParentRef::New(pt, pname)) => new_children
                    .entry((*pt, pname.as_str()))
                    .or_default()
                    .push(Atom::NamedUuid(uname)),
                Some(ParentRef::Existing(pt, pu)) => existing_children
                    .entry((*pt, *pu))
                    .or_default()
                    .push(Atom::NamedUuid(uname)),
                None => {}
            }
        }
    }
    let mut operations = 0;
    for op in &plan.ops {
        match op {
            Op::Insert {
                table, name, cols, ..
            } => {
                let mut row = Row::new().with("name", name.as_str());
                for (c, v) in cols {
                    row.set(*c, to_value(v));
                }
                if let Some(children) = new_children.remove(&(*table, name.as_str())) {
                    row.set("ports", Value::set(children));
                }
                let uname = &named[&(*table, name.as_str())];
                inserts.push((tx.len(), *table));
                tx.insert_as(table.name(), row, uname);
                operations += 1;
            }
            Op::Update { table, uuid, cols } => {
                let mut row = Row::new();
                for (c, v) in cols {
                    row.set(*c, to_value(v));
                }
                tx.update(table.name(), vec![Condition::uuid(*uuid)], row);
                expect.push(Expect::Columns(*table, *uuid, cols.clone()));
                operations += 1;
            }
            Op::Delete { table, uuid } => {
                if let Some(pt) = table.parent() {
                    // Unlink from whichever parent holds it.
                    tx.mutate(
                        pt.name(),
                        vec![Condition::includes("ports", Value::from(*uuid))],
                        vec![Mutation::delete("ports", Value::from(*uuid))],
                    );
                    operations += 1;
                }
                tx.delete(table.name(), vec![Condition::uuid(*uuid)]);
                expect.push(Expect::Absent(*table, *uuid));
                operations += 1;
            }
        }
    }
    for ((pt, pu), atoms) in existing_children {
        tx.mutate(
            pt.name(),
            vec![Condition::uuid(pu)],
            vec![Mutation::insert("ports", Value::set(atoms))],
        );
        operations += 1;
    }
    Built {
        tx,
        inserts,
        expect,
        operations,
    }
}

/// The expectations completed with the uuids the server gave the inserts.
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
        Expect::Columns(t, u, cols) => {
            // A row deleted meanwhile (by an operator) counts as seen; the
            // next diff deals with it.
            !view.exists(*t, *u) || cols.iter().all(|(c, v)| view.column_matches(*t, *u, c, v))
        }
    })
}

/// The owner named by a changed row, if it is ours.
pub fn row_owner(row: &Row) -> Option<Owner> {
    owner_of(row)
}
