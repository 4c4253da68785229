//! The one diff engine: desired rows of some owners against what the
//! northbound replica holds, giving the fewest operations that make NB
//! right.
//!
//! The replica is read through [`NbView`] so the rules (update only the
//! columns that differ, replace a row whose identity changed, delete what an
//! owner no longer wants, place new ports under their parent) are unit
//! tested without a database.

use std::collections::{BTreeMap, HashMap, HashSet};

use ovsdb::Uuid;
use switchyard_api::names;

use crate::translate::{Col, DesiredRow, Owner, Table};

/// Read access to the northbound rows the controller manages.
pub trait NbView {
    /// Rows of `table` whose `name` is `name`.
    fn rows_named(&self, table: Table, name: &str) -> Vec<Uuid>;
    /// Rows of `table` whose `external_ids` name `owner`.
    fn owned_by(&self, table: Table, owner: &Owner) -> Vec<Uuid>;
    /// Every row of `table` carrying a Switchyard owner.
    fn all_owned(&self, table: Table) -> Vec<(Uuid, Owner)>;
    /// Whether the row's column equals `want` (false when the row is gone).
    fn column_matches(&self, table: Table, uuid: Uuid, column: &str, want: &Col) -> bool;
    /// One `external_ids` value of a row.
    fn external_id(&self, table: Table, uuid: Uuid, key: &str) -> Option<String>;
    fn exists(&self, table: Table, uuid: Uuid) -> bool;
}

/// Where a new row's parent is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParentRef {
    Existing(Table, Uuid),
    /// Inserted by the same plan.
    New(Table, String),
}

/// One northbound operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Insert {
        table: Table,
        name: String,
        cols: Vec<(&'static str, Col)>,
        parent: Option<ParentRef>,
    },
    Update {
        table: Table,
        uuid: Uuid,
        cols: Vec<(&'static str, Col)>,
    },
    Delete {
        table: Table,
        uuid: Uuid,
    },
}

/// The operations for a set of owners.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub ops: Vec<Op>,
    /// Owners whose rows could not all be placed (a parent row is missing);
    /// they are retried once the parent exists.
    pub deferred: Vec<Owner>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// Diffs `owners` (desired rows, or `None` for an owner that should have
/// none) against `view`. Owners are processed in order, so callers pass
/// parents (cluster, nodes) before children (pods).
pub fn diff<'a>(
    view: &dyn NbView,
    owners: impl IntoIterator<Item = (&'a Owner, Option<&'a [DesiredRow]>)>,
) -> Plan {
    let mut plan = Plan::default();
    // Rows inserted by this plan, so children find their parents.
    let mut inserted: HashSet<(Table, String)> = HashSet::new();
    // Rows deleted by this plan; a parent being deleted cannot take children.
    let mut deleted: HashSet<Uuid> = HashSet::new();
    for (owner, rows) in owners {
        let rows = rows.unwrap_or(&[]);
        let mut keep: HashSet<Uuid> = HashSet::new();
        let mut ops: Vec<Op> = Vec::new();
        let mut deferred = false;
        for row in rows {
            let existing = choose(view, row, owner);
            let existing = match (existing, &row.identity) {
                (Some(uuid), Some((key, want)))
                    if view.external_id(row.table, uuid, key).as_deref() != Some(want.as_str()) =>
                {
                    // Same name, different object (e.g. a recreated pod): a
                    // fresh row, never an update of the old one.
                    ops.push(Op::Delete {
                        table: row.table,
                        uuid,
                    });
                    None
                }
                (e, _) => e,
            };
            match existing {
                Some(uuid) => {
                    keep.insert(uuid);
                    let changed: Vec<(&'static str, Col)> = row
                        .cols
                        .iter()
                        .filter(|(c, v)| !view.column_matches(row.table, uuid, c, v))
                        .cloned()
                        .collect();
                    if !changed.is_empty() {
                        ops.push(Op::Update {
                            table: row.table,
                            uuid,
                            cols: changed,
                        });
                    }
                }
                None => {
                    let parent = match &row.parent {
                        None => None,
                        Some((pt, pname)) => {
                            if inserted.contains(&(*pt, pname.clone())) {
                                Some(ParentRef::New(*pt, pname.clone()))
                            } else {
                                let found = view
                                    .rows_named(*pt, pname)
                                    .into_iter()
                                    .filter(|u| !deleted.contains(u))
                                    .min_by_key(|u| {
                                        // Prefer our own row among duplicates.
                                        view.external_id(*pt, *u, names::OWNER_KIND).is_none()
                                    });
                                match found {
                                    Some(u) => Some(ParentRef::Existing(*pt, u)),
                                    None => {
                                        deferred = true;
                                        continue;
                                    }
                                }
                            }
                        }
                    };
                    inserted.insert((row.table, row.name.clone()));
                    ops.push(Op::Insert {
                        table: row.table,
                        name: row.name.clone(),
                        cols: row.cols.clone(),
                        parent,
                    });
                }
            }
        }
        // Rows this owner has but no longer wants (or duplicates).
        for table in Table::ALL {
            for uuid in view.owned_by(table, owner) {
                if !keep.contains(&uuid) && !deleted.contains(&uuid) && view.exists(table, uuid) {
                    let already = ops
                        .iter()
                        .any(|op| matches!(op, Op::Delete { uuid: u, .. } if *u == uuid));
                    if !already {
                        ops.push(Op::Delete { table, uuid });
                    }
                }
            }
        }
        for op in &ops {
            if let Op::Delete { uuid, .. } = op {
                deleted.insert(*uuid);
            }
        }
        if deferred {
            plan.deferred.push(owner.clone());
        }
        plan.ops.extend(ops);
    }
    plan
}

/// The row standing for `row`: among rows with its name, one this owner
/// already has, else any (adopted: its external_ids get rewritten).
fn choose(view: &dyn NbView, row: &DesiredRow, owner: &Owner) -> Option<Uuid> {
    let named = view.rows_named(row.table, &row.name);
    named
        .iter()
        .copied()
        .find(|u| {
            view.external_id(row.table, *u, names::OWNER_KIND)
                .as_deref()
                == Some(owner.kind())
                && view.external_id(row.table, *u, names::OWNER).as_deref() == Some(owner.key())
        })
        .or_else(|| named.first().copied())
}

/// Owners that have rows in NB but are not in `known`: what a full sync
/// deletes.
pub fn orphans(view: &dyn NbView, known: &dyn Fn(&Owner) -> bool) -> Vec<Owner> {
    let mut out: Vec<Owner> = Vec::new();
    let mut seen = HashSet::new();
    for table in Table::ALL {
        for (_, owner) in view.all_owned(table) {
            if !known(&owner) && seen.insert(owner.clone()) {
                out.push(owner);
            }
        }
    }
    out.sort();
    out
}

/// A [`NbView`] over plain maps, for tests.
#[derive(Clone, Debug, Default)]
pub struct MapView {
    /// (table, uuid) -> (name, columns)
    pub rows: BTreeMap<(Table, Uuid), (String, HashMap<String, Col>)>,
}

impl MapView {
    /// Applies a plan as ovsdb-server would (new uuids for inserts).
    pub fn apply(&mut self, plan: &Plan) {
        for op in &plan.ops {
            match op {
                Op::Insert {
                    table, name, cols, ..
                } => {
                    let cols = cols
                        .iter()
                        .map(|(c, v)| (c.to_string(), v.clone()))
                        .collect();
                    self.rows
                        .insert((*table, Uuid::new_v4()), (name.clone(), cols));
                }
                Op::Update { table, uuid, cols } => {
                    if let Some((_, have)) = self.rows.get_mut(&(*table, *uuid)) {
                        for (c, v) in cols {
                            have.insert(c.to_string(), v.clone());
                        }
                    }
                }
                Op::Delete { table, uuid } => {
                    self.rows.remove(&(*table, *uuid));
                }
            }
        }
    }

    fn ids(&self, table: Table, uuid: Uuid) -> Option<&BTreeMap<String, String>> {
        match self.rows.get(&(table, uuid))?.1.get("external_ids")? {
            Col::Map(m) => Some(m),
            _ => None,
        }
    }
}

impl NbView for MapView {
    fn rows_named(&self, table: Table, name: &str) -> Vec<Uuid> {
        self.rows
            .iter()
            .filter(|((t, _), (n, _))| *t == table && n == name)
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
            .keys()
            .filter(|(t, _)| *t == table)
            .filter_map(|(_, u)| {
                let ids = self.ids(table, *u)?;
                let o = Owner::from_external_ids(
                    ids.get(names::OWNER_KIND).map(String::as_str),
                    ids.get(names::OWNER).map(String::as_str),
                )?;
                Some((*u, o))
            })
            .collect()
    }
    fn column_matches(&self, table: Table, uuid: Uuid, column: &str, want: &Col) -> bool {
        self.rows
            .get(&(table, uuid))
            .and_then(|(_, c)| c.get(column))
            == Some(want)
    }
    fn external_id(&self, table: Table, uuid: Uuid, key: &str) -> Option<String> {
        self.ids(table, uuid)?.get(key).cloned()
    }
    fn exists(&self, table: Table, uuid: Uuid) -> bool {
        self.rows.contains_key(&(table, uuid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::{cluster_rows, node_rows, pod_rows, NodeModel, PodModel};

    fn node(name: &str, i: u8) -> (Owner, Vec<DesiredRow>) {
        (
            Owner::Node(name.into()),
            node_rows(&NodeModel {
                name: name.into(),
                subnets: vec![format!("10.244.{i}.0/24").parse().unwrap()],
            }),
        )
    }

    fn pod(name: &str, uid: &str, last: u8) -> (Owner, Vec<DesiredRow>) {
        let p = PodModel {
            namespace: "ns".into(),
            name: name.into(),
            uid: uid.into(),
            node: "a".into(),
            ips: vec![format!("10.244.1.{last}/24").parse().unwrap()],
            mac: switchyard_api::mac::from_ip(format!("10.244.1.{last}").parse().unwrap()),
        };
        (Owner::Pod(p.key()), pod_rows(&p))
    }

    fn run(view: &MapView, owners: &[(Owner, Vec<DesiredRow>)]) -> Plan {
        diff(view, owners.iter().map(|(o, r)| (o, Some(r.as_slice()))))
    }

    #[test]
    fn empty_nb_gets_everything_in_one_plan_then_nothing() {
        let mut view = MapView::default();
        let owners = vec![
            (Owner::Cluster, cluster_rows()),
            node("a", 1),
            pod("p", "u1", 5),
        ];
        let plan = run(&view, &owners);
        assert_eq!(plan.ops.len(), 1 + 4 + 1);
        assert!(plan.deferred.is_empty());
        // The pod port's parent is the switch inserted by the same plan.
        assert!(plan.ops.iter().any(|op| matches!(op,
            Op::Insert { name, parent: Some(ParentRef::New(Table::LogicalSwitch, p)), .. }
                if name == "ns_p" && p == "node-a")));
        view.apply(&plan);
        assert!(
            run(&view, &owners).is_empty(),
            "converged NB needs no operation"
        );
    }

    #[test]
    fn pod_without_parent_is_deferred() {
        let view = MapView::default();
        let plan = run(&view, &[pod("p", "u1", 5)]);
        assert!(plan.ops.is_empty());
        assert_eq!(plan.deferred, vec![Owner::Pod("ns/p".into())]);
    }

    #[test]
    fn updates_only_changed_columns() {
        let mut view = MapView::default();
        let owners = vec![
            (Owner::Cluster, cluster_rows()),
            node("a", 1),
            pod("p", "u1", 5),
        ];
        view.apply(&run(&view, &owners));
        // An operator rewrites the pod's addresses.
        let uuid = view.rows_named(Table::LogicalSwitchPort, "ns_p")[0];
        view.rows
            .get_mut(&(Table::LogicalSwitchPort, uuid))
            .unwrap()
            .1
            .insert("addresses".into(), Col::set(["00:00:00:00:00:01 1.2.3.4"]));
        let plan = run(&view, &owners);
        assert_eq!(plan.ops.len(), 1);
        match &plan.ops[0] {
            Op::Update { uuid: u, cols, .. } => {
                assert_eq!(*u, uuid);
                assert_eq!(cols.len(), 1);
                assert_eq!(cols[0].0, "addresses");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn recreated_pod_gets_a_fresh_port() {
        let mut view = MapView::default();
        let base = vec![(Owner::Cluster, cluster_rows()), node("a", 1)];
        view.apply(&run(&view, &base));
        view.apply(&run(&view, &[pod("p", "u1", 5)]));
        let old = view.rows_named(Table::LogicalSwitchPort, "ns_p")[0];
        let plan = run(&view, &[pod("p", "u2", 6)]);
        assert_eq!(plan.ops.len(), 2, "{plan:?}");
        assert_eq!(
            plan.ops[0],
            Op::Delete {
                table: Table::LogicalSwitchPort,
                uuid: old
            }
        );
        assert!(matches!(&plan.ops[1], Op::Insert { name, .. } if name == "ns_p"));
    }

    #[test]
    fn removed_owner_and_orphans_are_deleted() {
        let mut view = MapView::default();
        let owners = vec![
            (Owner::Cluster, cluster_rows()),
            node("a", 1),
            node("b", 2),
            pod("p", "u1", 5),
        ];
        view.apply(&run(&view, &owners));
        let gone = Owner::Node("b".into());
        let plan = diff(&view, [(&gone, None)]);
        assert_eq!(plan.ops.len(), 4);
        assert!(plan.ops.iter().all(|op| matches!(op, Op::Delete { .. })));
        let known: Vec<Owner> = owners[..2].iter().map(|(o, _)| o.clone()).collect();
        let orphans = orphans(&view, &|o| known.contains(o));
        assert_eq!(
            orphans,
            vec![Owner::Node("b".into()), Owner::Pod("ns/p".into())]
        );
    }

    #[test]
    fn duplicates_of_an_owned_row_are_removed() {
        let mut view = MapView::default();
        let owners = vec![(Owner::Cluster, cluster_rows())];
        view.apply(&run(&view, &owners));
        // A second cluster-router with our external_ids (Logical_Router
        // names are not unique in the schema).
        let (_, (name, cols)) = view
            .rows
            .iter()
            .next()
            .map(|(k, v)| (*k, v.clone()))
            .unwrap();
        view.rows
            .insert((Table::LogicalRouter, Uuid::new_v4()), (name, cols));
        let plan = run(&view, &owners);
        assert_eq!(plan.ops.len(), 1);
        assert!(matches!(
            plan.ops[0],
            Op::Delete {
                table: Table::LogicalRouter,
                ..
            }
        ));
    }
}
