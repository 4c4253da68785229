//! The diff against an in-memory NB that applies operations as
//! ovsdb-server does ([`MapView::apply`]).

use super::*;
use crate::model::PodInfo;
use crate::nb::view::MapView;
use crate::translate::node::node_rows;
use crate::translate::pod::pod_rows;
use crate::translate::Assigned;
use ovsdb::nb::{Acl, AddressSet, LoadBalancer, LoadBalancerGroup, LogicalSwitch, PortGroup};

fn owner(kind: &'static str, key: &str) -> Owner {
    Owner::of(kind, key)
}

fn cluster() -> (Owner, Vec<DesiredRow>) {
    let o = owner("Cluster", "cluster-router");
    (o, crate::translate::cluster::cluster_rows())
}

fn node(name: &str, i: u8) -> (Owner, Vec<DesiredRow>) {
    (
        owner("Node", name),
        node_rows(name, &[format!("10.244.{i}.0/24").parse().unwrap()]),
    )
}

fn pod(name: &str, uid: &str, last: u8) -> (Owner, Vec<DesiredRow>) {
    let p = PodInfo {
        namespace: "ns".into(),
        name: name.into(),
        uid: uid.into(),
        ..Default::default()
    };
    let a = Assigned {
        ips: vec![format!("10.244.1.{last}/24").parse().unwrap()],
        mac: switchyard_api::mac::from_ip(format!("10.244.1.{last}").parse().unwrap()),
    };
    (owner("Pod", &p.key()), pod_rows(&p, "a", &a))
}

fn run(view: &MapView, owners: &[(Owner, Vec<DesiredRow>)]) -> Plan {
    let o: Vec<(&Owner, Option<&[DesiredRow]>)> = owners
        .iter()
        .map(|(o, r)| (o, Some(r.as_slice())))
        .collect();
    diff(view, &o)
}

fn converge(view: &mut MapView, owners: &[(Owner, Vec<DesiredRow>)]) -> Plan {
    let plan = run(view, owners);
    view.apply(&plan.ops);
    plan
}

fn named(view: &MapView, table: Table, name: &str) -> Uuid {
    let v = view.rows_named(table, name);
    assert_eq!(v.len(), 1, "{} {name}: {v:?}", table.name());
    v[0]
}

#[test]
fn empty_nb_gets_everything_in_one_plan_then_nothing() {
    let mut view = MapView::default();
    // Children listed before their parents: the plan resolves them anyway.
    let owners = vec![pod("p", "u1", 5), node("a", 1), cluster()];
    let plan = converge(&mut view, &owners);
    assert!(plan.deferred.is_empty(), "{:?}", plan.deferred);
    let inserts = plan
        .ops
        .iter()
        .filter(|o| matches!(o, Op::Insert { .. }))
        .count();
    // The router and the three load balancer groups, the node's four
    // rows, the pod's port.
    assert_eq!(inserts, 4 + 4 + 1);
    let ls = named(&view, Table::LogicalSwitch, "node-a");
    let ports = view.value(Table::LogicalSwitch, ls, "ports").unwrap();
    assert_eq!(ports.atoms().len(), 3, "stor, mgmt and the pod port");
    assert!(
        run(&view, &owners).is_empty(),
        "converged NB needs no operation"
    );
}

#[test]
fn a_child_without_its_parent_is_deferred() {
    let view = MapView::default();
    let plan = run(&view, &[pod("p", "u1", 5)]);
    assert!(plan.ops.is_empty());
    assert_eq!(plan.deferred, vec![owner("Pod", "ns/p")]);
}

#[test]
fn only_changed_columns_are_written() {
    let mut view = MapView::default();
    let owners = vec![cluster(), node("a", 1), pod("p", "u1", 5)];
    converge(&mut view, &owners);
    let uuid = named(&view, Table::LogicalSwitchPort, "ns_p");
    view.rows
        .get_mut(&(Table::LogicalSwitchPort, uuid))
        .unwrap()
        .set("addresses", Value::set(["00:00:00:00:00:01 1.2.3.4"]));
    let plan = run(&view, &owners);
    assert_eq!(plan.ops.len(), 1, "{plan:?}");
    match &plan.ops[0] {
        Op::Update { uuid: u, row, .. } => {
            assert_eq!(*u, uuid);
            assert_eq!(row.columns().collect::<Vec<_>>(), vec!["addresses"]);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_recreated_pod_gets_a_fresh_port() {
    let mut view = MapView::default();
    converge(&mut view, &[cluster(), node("a", 1), pod("p", "u1", 5)]);
    let old = named(&view, Table::LogicalSwitchPort, "ns_p");
    converge(&mut view, &[pod("p", "u2", 6)]);
    let new = named(&view, Table::LogicalSwitchPort, "ns_p");
    assert_ne!(old, new);
    assert_eq!(
        view.external_id(Table::LogicalSwitchPort, new, "switchyard.io/pod-uid"),
        Some("u2")
    );
}

#[test]
fn removed_owners_and_orphans_go_with_their_links() {
    let mut view = MapView::default();
    converge(
        &mut view,
        &[cluster(), node("a", 1), node("b", 2), pod("p", "u1", 5)],
    );
    // b and the pod are gone: their rows are deleted and unlinked.
    let gone: Vec<(Owner, Option<&[DesiredRow]>)> =
        vec![(owner("Node", "b"), None), (owner("Pod", "ns/p"), None)];
    let o: Vec<(&Owner, Option<&[DesiredRow]>)> = gone.iter().map(|(o, r)| (o, *r)).collect();
    let plan = diff(&view, &o);
    view.apply(&plan.ops);
    assert!(view.rows_named(Table::LogicalSwitch, "node-b").is_empty());
    assert!(view.rows_named(Table::LogicalSwitchPort, "ns_p").is_empty());
    let lr = named(&view, Table::LogicalRouter, "cluster-router");
    assert_eq!(
        view.value(Table::LogicalRouter, lr, "ports")
            .unwrap()
            .atoms()
            .len(),
        1,
        "rtos-b unlinked"
    );
    // A stray row claiming an owner nobody has is an orphan.
    let known = |o: &Owner| o.kind() != "Pod";
    let stray = owner("Pod", "ns/ghost");
    let mut r = Row::new().with("name", "ghost");
    r.set("external_ids", Value::map(stray.external_ids()));
    view.rows.insert((Table::AddressSet, Uuid::new_v4()), r);
    assert_eq!(orphans(&view, &known), vec![stray]);
}

#[test]
fn keyed_rows_without_names_are_found_by_their_key() {
    let mut view = MapView::default();
    let pg_owner = owner("Namespace", "a");
    let acl = |prio: i64, m: &str| {
        DesiredRow::keyed(Table::Acl, "ingress-0", &pg_owner)
            .col(Acl::PRIORITY, Col::Int(prio))
            .col(Acl::DIRECTION, Col::str("to-lport"))
            .col(Acl::MATCH, Col::str(m))
            .col(Acl::ACTION, Col::str("allow-related"))
            .col(Acl::LOG, Col::Bool(false))
            .parent(Parent::new(Table::PortGroup, "pg_a", PortGroup::ACLS))
    };
    let pg = DesiredRow::named(Table::PortGroup, "pg_a", &pg_owner);
    let owners = vec![(pg_owner.clone(), vec![pg.clone(), acl(1000, "ip4")])];
    converge(&mut view, &owners);
    let acls = view.owned_by(Table::Acl, &pg_owner);
    assert_eq!(acls.len(), 1);
    assert!(run(&view, &owners).is_empty());
    // An edit updates the same row (found by key) in place.
    let edited = vec![(pg_owner.clone(), vec![pg, acl(1001, "ip6")])];
    let plan = converge(&mut view, &edited);
    assert!(
        plan.ops.iter().all(|o| matches!(o, Op::Update { .. })),
        "{plan:?}"
    );
    assert_eq!(view.owned_by(Table::Acl, &pg_owner), acls);
    assert_eq!(
        view.value(Table::Acl, acls[0], "priority")
            .unwrap()
            .as_i64(),
        Some(1001)
    );
}

#[test]
fn references_resolve_to_other_owners_rows_old_and_new() {
    let mut view = MapView::default();
    converge(&mut view, &[cluster(), node("a", 1), pod("p1", "u1", 5)]);
    let ns = owner("Namespace", "ns");
    let pg = |ports: &[&str]| {
        vec![DesiredRow::named(Table::PortGroup, "pg_ns", &ns).col(
            PortGroup::PORTS,
            Col::refs(Table::LogicalSwitchPort, ports.iter().copied()),
        )]
    };
    // p2's port is inserted by the same plan that references it.
    let plan = converge(
        &mut view,
        &[pod("p2", "u2", 6), (ns.clone(), pg(&["ns_p1", "ns_p2"]))],
    );
    assert!(plan.deferred.is_empty());
    let pgu = named(&view, Table::PortGroup, "pg_ns");
    let ports = view.value(Table::PortGroup, pgu, "ports").unwrap().uuids();
    let want: Vec<Uuid> = ["ns_p1", "ns_p2"]
        .iter()
        .map(|n| named(&view, Table::LogicalSwitchPort, n))
        .collect();
    let mut ports = ports;
    ports.sort();
    let mut want = want;
    want.sort();
    assert_eq!(ports, want);
    // A reference to a row that does not exist: written without it, and
    // the owner retried.
    let plan = run(&view, &[(ns.clone(), pg(&["ns_p1", "ns_p2", "ns_nope"]))]);
    assert_eq!(plan.deferred, vec![ns]);
}

#[test]
fn one_row_attached_to_many_parents_owned_by_others() {
    let mut view = MapView::default();
    converge(&mut view, &[cluster(), node("a", 1), node("b", 2)]);
    let svc = owner("Namespace", "svc-owner");
    let lb = DesiredRow::named(Table::LoadBalancer, "svc:ns/web:tcp", &svc)
        .col(LoadBalancer::PROTOCOL, Col::set(["tcp"]))
        .col(
            LoadBalancer::VIPS,
            Col::map([("10.96.0.10:80", "10.244.1.5:8080")]),
        )
        .parent(Parent::new(
            Table::LogicalSwitch,
            "node-a",
            LogicalSwitch::LOAD_BALANCER,
        ))
        .parent(Parent::new(
            Table::LogicalSwitch,
            "node-b",
            LogicalSwitch::LOAD_BALANCER,
        ));
    let owners = vec![(svc.clone(), vec![lb])];
    converge(&mut view, &owners);
    let lbu = named(&view, Table::LoadBalancer, "svc:ns/web:tcp");
    for n in ["node-a", "node-b"] {
        let ls = named(&view, Table::LogicalSwitch, n);
        assert_eq!(
            view.value(Table::LogicalSwitch, ls, "load_balancer")
                .unwrap()
                .uuids(),
            vec![lbu]
        );
    }
    assert!(run(&view, &owners).is_empty());
    // The switches' owner rewrites its own rows without touching the
    // attachment: the column is not one it manages.
    assert!(run(&view, &[node("a", 1)]).is_empty());
}

#[test]
fn a_large_set_that_changes_a_little_is_mutated() {
    let mut view = MapView::default();
    let ns = owner("Namespace", "big");
    let set = |n: usize| {
        vec![DesiredRow::named(Table::AddressSet, "ns.big.v4", &ns).col(
            AddressSet::ADDRESSES,
            Col::set((0..n).map(|i| format!("10.0.{}.{}", i / 250, i % 250 + 1))),
        )]
    };
    converge(&mut view, &[(ns.clone(), set(100))]);
    let plan = converge(&mut view, &[(ns.clone(), set(101))]);
    assert!(
        matches!(&plan.ops[..], [Op::Mutate { column: "addresses", insert, delete, .. }]
            if insert.atoms().len() == 1 && delete.atoms().is_empty()),
        "{plan:?}"
    );
    let u = named(&view, Table::AddressSet, "ns.big.v4");
    assert_eq!(
        view.value(Table::AddressSet, u, "addresses")
            .unwrap()
            .atoms()
            .len(),
        101
    );
    // A small set is rewritten.
    let plan = converge(&mut view, &[(ns.clone(), set(2))]);
    assert!(matches!(&plan.ops[..], [Op::Update { .. }]), "{plan:?}");
}

#[test]
fn rows_of_a_table_without_external_ids_are_found_by_name() {
    let mut view = MapView::default();
    let c = owner("Cluster", "cluster-router");
    let lbg = DesiredRow::named(Table::LoadBalancerGroup, "lbg-cluster", &c).col(
        LoadBalancerGroup::LOAD_BALANCER,
        Col::refs(Table::LoadBalancer, Vec::<String>::new()),
    );
    assert!(lbg.get("external_ids").is_none());
    let owners = vec![(c, vec![lbg])];
    converge(&mut view, &owners);
    assert!(run(&view, &owners).is_empty());
}
