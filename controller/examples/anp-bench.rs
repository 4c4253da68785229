//! AdminNetworkPolicy benchmark (figures, not a test):
//! `cargo run --release -p switchyard-controller --example anp-bench [-- NODES PODS ANPS]`
//!
//! Real NB/SB ovsdb-server and ovn-northd in a temp dir, the in-memory
//! cluster (100 nodes, 10,000 pods in 10 namespaces, 100 ANPs of 10 rules
//! by default) and the controller in-process:
//! 1. the pods converge without policies;
//! 2. every ANP is applied at once: the clock runs until NB holds every
//!    row the controller's translation wants (as a second client's replica
//!    sees it), then until ovn-northd has put it all in SB; NB transactions
//!    and operations, ACLs, SB logical flows;
//! 3. restart on the converged cluster (must write nothing);
//! 4. ANP edits one at a time: applied → the edited ACL in NB, and → SB
//!    (ovn-northd caught up: what ovn-controllers then enforce);
//! 5. the anchor, same run: the controller stopped, the ANP rows deleted
//!    and written back by this program in one transaction: commit and
//!    → SB, the floor any controller has here.
//!
//! The ANPs: ANP j has priority j and selects the pods `app=app<j%50>` of
//! namespace `ns<j%10>`; 5 ingress rules (Allow from namespaces by label on
//! TCP 443; Deny from the next app's pods on TCP 80; Allow the named port
//! `http` from every namespace; for one ANP in ten a Pass from its own
//! namespace, else Allow; Deny TCP 8000-9000 from every namespace) and 5
//! egress rules (Allow `tier=db` pods on TCP 5432; Deny 10.0.0.0/8 on UDP
//! 53; Allow nodes on TCP 10250; Deny two documentation networks; Allow
//! namespaces by label).

use std::time::{Duration, Instant};

use kube_memory::{node, pod, MemoryCluster};
use ovn_testbed::OvnCentral;
use ovsdb::{Atom, Client, ClientConfig, Condition, MonitorSpec, Replica, Row, Transaction, Value};
use serde_json::json;
use switchyard_api::{names, NodeSubnets, PodNetwork};
use switchyard_controller::k8s::{AdminNetworkPolicy, Kind, Object, Observed, WatchEvent};
use switchyard_controller::model::Model;
use switchyard_controller::nb::Table;
use switchyard_controller::translate::{registry, Assigned, Decisions, View};
use switchyard_controller::Config;

#[path = "bench_common/mod.rs"]
mod bench_common;
use bench_common::{controller_cpu, northd_idle, pct, start, stop, wait};

/// What NB holds of policy rows: (port groups, their ports, address sets,
/// their addresses, ACLs).
type Shape = [usize; 5];
fn nb_shape(replica: &Replica) -> Shape {
    replica.with(|db| {
        let pg = db.table("Port_Group");
        let aset = db.table("Address_Set");
        [
            pg.len(),
            pg.iter()
                .map(|(_, r)| r.get("ports").map_or(0, |v| v.atoms().len()))
                .sum(),
            aset.len(),
            aset.iter()
                .map(|(_, r)| r.get("addresses").map_or(0, |v| v.atoms().len()))
                .sum(),
            db.table("ACL").len(),
        ]
    })
}

/// The shape the controller's translation wants for the cluster as it is
/// (addresses from the annotations the controller wrote).
/// `extra` admin policies are counted as if applied.
fn want_shape(cluster: &MemoryCluster, config: &Config, extra: &[AdminNetworkPolicy]) -> Shape {
    let mut model = Model::new();
    let mut changes = Vec::new();
    for kind in [
        Kind::Node,
        Kind::Namespace,
        Kind::Pod,
        Kind::AdminNetworkPolicy,
    ] {
        let mut list = cluster.list(kind);
        if kind == Kind::AdminNetworkPolicy {
            list.extend(extra.iter().cloned().map(Object::from));
        }
        let list = list.into_iter().map(Observed::from).collect();
        model.apply(kind, WatchEvent::Restarted(list), &mut changes);
    }
    let mut decisions = Decisions::default();
    for o in cluster.list(Kind::Node) {
        let Object::Node(n) = o else { continue };
        let text = n
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(switchyard_api::annotations::NODE_SUBNETS));
        if let Some(s) = text.and_then(|t| NodeSubnets::parse(t).ok()) {
            decisions
                .node_subnets
                .insert(n.metadata.name.clone().unwrap_or_default(), s.0);
        }
    }
    for p in cluster.pods() {
        let text = p
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(switchyard_api::annotations::POD_NETWORK));
        if let Some(net) = text.and_then(|t| PodNetwork::parse(t).ok()) {
            let key = format!(
                "{}/{}",
                p.metadata.namespace.clone().unwrap_or_default(),
                p.metadata.name.clone().unwrap_or_default()
            );
            decisions.pod_addresses.insert(
                key,
                Assigned {
                    ips: net.ips,
                    mac: net.mac,
                },
            );
        }
    }
    let view = View {
        model: &model,
        decisions: &decisions,
        config,
    };
    let mut shape = [0; 5];
    let mut problems = Vec::new();
    for t in registry() {
        for k in t.all(&view) {
            for r in t.rows(&k, &view, &mut problems).unwrap_or_default() {
                let len = |c: &str| match r.get(c) {
                    Some(switchyard_controller::nb::Col::Set(v)) => v.len(),
                    Some(switchyard_controller::nb::Col::Refs(_, v)) => v.len(),
                    _ => 0,
                };
                match r.table {
                    Table::PortGroup => {
                        shape[0] += 1;
                        shape[1] += len("ports");
                    }
                    Table::AddressSet => {
                        shape[2] += 1;
                        shape[3] += len("addresses");
                    }
                    Table::Acl => shape[4] += 1,
                    _ => {}
                }
            }
        }
    }
    shape
}

fn anp(j: usize, namespaces: usize, edit: Option<u16>) -> AdminNetworkPolicy {
    let ns = format!("ns{}", j % namespaces);
    let app = j % 50;
    let ns_sel = |l: &str| json!({"namespaces": {"matchLabels": {"team": l}}});
    let fourth = if j.is_multiple_of(10) {
        json!({"action": "Pass", "from": [{"namespaces": {"matchLabels": {"kubernetes.io/metadata.name": ns}}}]})
    } else {
        json!({"action": "Allow", "from": [ns_sel("t0")], "ports": [{"portNumber": {"protocol": "TCP", "port": 8443}}]})
    };
    let first_port = edit.map_or(443, i32::from);
    serde_json::from_value(json!({
        "metadata": {"name": format!("anp-{j:03}")},
        "spec": {
            "priority": j,
            "subject": {"pods": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
                                 "podSelector": {"matchLabels": {"app": format!("app{app}")}}}},
            "ingress": [
                {"action": "Allow", "from": [ns_sel(&format!("t{}", j % 3))], "ports": [{"portNumber": {"protocol": "TCP", "port": first_port}}]},
                {"action": "Deny", "from": [{"pods": {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": format!("app{}", (app + 1) % 50)}}}}],
                 "ports": [{"portNumber": {"protocol": "TCP", "port": 80}}]},
                {"action": "Allow", "from": [{"namespaces": {}}], "ports": [{"namedPort": "http"}]},
                fourth,
                {"action": "Deny", "from": [{"namespaces": {}}], "ports": [{"portRange": {"protocol": "TCP", "start": 8000, "end": 9000}}]},
            ],
            "egress": [
                {"action": "Allow", "to": [{"pods": {"namespaceSelector": {}, "podSelector": {"matchLabels": {"tier": "db"}}}}],
                 "ports": [{"portNumber": {"protocol": "TCP", "port": 5432}}]},
                {"action": "Deny", "to": [{"networks": ["10.0.0.0/8"]}], "ports": [{"portNumber": {"protocol": "UDP", "port": 53}}]},
                {"action": "Allow", "to": [{"nodes": {}}], "ports": [{"portNumber": {"protocol": "TCP", "port": 10250}}]},
                {"action": "Deny", "to": [{"networks": ["192.0.2.0/24", "198.51.100.0/24"]}]},
                {"action": "Allow", "to": [ns_sel(&format!("t{}", (j + 1) % 3))]},
            ],
        },
    }))
    .expect("an ANP")
}

fn admin(r: &Row) -> bool {
    r.map_get("external_ids", names::OWNER_KIND) == Some(names::KIND_ADMIN_NETWORK_POLICY)
}

/// The ANP rows, whole, for writing back.
fn snapshot(replica: &Replica) -> Vec<(String, ovsdb::Uuid, Row)> {
    replica.with(|db| {
        let mut out = Vec::new();
        for t in ["Address_Set", "Port_Group", "ACL"] {
            for (u, r) in db.table(t).iter().filter(|(_, r)| admin(r)) {
                out.push((t.to_string(), *u, r.clone()));
            }
        }
        out
    })
}

/// Writes a snapshot back in one transaction.
fn restore_tx(rows: &[(String, ovsdb::Uuid, Row)]) -> Transaction {
    let mut tx = Transaction::new("OVN_Northbound");
    let named = |u: &ovsdb::Uuid| format!("r{}", u.simple());
    for (t, u, r) in rows {
        let mut row = Row::new();
        for (c, v) in r.iter().filter(|(c, _)| *c != "_uuid" && *c != "_version") {
            let v = match (t.as_str(), c) {
                ("Port_Group", "acls") => {
                    Value::set(v.uuids().iter().map(|a| Atom::NamedUuid(named(a))))
                }
                _ => v.clone(),
            };
            row.set(c, v);
        }
        tx.insert_as(t, row, &named(u));
    }
    tx
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let nodes = args.first().copied().unwrap_or(100);
    let pods = args.get(1).copied().unwrap_or(10_000);
    let anps = args.get(2).copied().unwrap_or(100).min(1001);
    let namespaces = 10;
    let dir = tempfile::tempdir()?;
    let central = OvnCentral::start(dir.path())?;
    let client = Client::connect(ClientConfig::new(&central.nb_remote())?).await?;
    let mut spec = MonitorSpec::new("OVN_Northbound");
    for t in ["Port_Group", "Address_Set", "ACL", "Logical_Switch_Port"] {
        spec = spec.table(t, None);
    }
    let replica = client.monitor(spec).await?;
    let sb = Client::connect(ClientConfig::new(&central.sb_remote())?).await?;
    let lflows = || async {
        let mut tx = Transaction::new("OVN_Southbound");
        tx.select("Logical_Flow", vec![], Some(vec!["_uuid".into()]));
        sb.transact(tx)
            .await
            .map(|r| r[0].rows().len())
            .unwrap_or(0)
    };
    let config = Config {
        nb_remote: central.nb_remote(),
        http_addr: None,
        ..Config::default()
    };
    let cluster = MemoryCluster::new();
    for n in 0..nodes {
        cluster.apply_node(node(&format!("node-{n:03}")));
    }
    for i in 0..namespaces {
        let name = format!("ns{i}");
        cluster.apply(kube_memory::namespace(
            &name,
            &[
                ("team", &format!("t{}", i % 3)),
                ("kubernetes.io/metadata.name", &name),
            ],
        ));
    }
    for i in 0..pods {
        let mut p = pod(
            &format!("ns{}", i % namespaces),
            &format!("pod-{i:05}"),
            &format!("node-{:03}", i % nodes),
        );
        p.metadata.labels = Some(
            [
                ("app".to_string(), format!("app{}", (i / namespaces) % 50)),
                ("tier".to_string(), ["web", "api", "db"][i % 3].to_string()),
            ]
            .into(),
        );
        let http = if i % 7 == 0 { 9090 } else { 8080 };
        p.spec.as_mut().expect("spec").containers = vec![serde_json::from_value(json!({
            "name": "c", "ports": [{"name": "http", "containerPort": http}]}))?];
        cluster.apply_pod(p);
    }
    println!("Switchyard AdminNetworkPolicy benchmark: {nodes} nodes, {pods} pods in {namespaces} namespaces, {anps} ANPs of 10 rules, Pass compiled into positive terms (in-memory API, real NB/SB + northd)\n");

    // 1. Pods first.
    let run = start(&config, &cluster);
    wait("pods converged", Duration::from_secs(300), || {
        run.metrics.health.synced() && cluster.pod_patch_count(None) >= pods
    })
    .await;
    let pods_only = want_shape(&cluster, &config, &[]);
    wait("pods in NB", Duration::from_secs(120), || {
        nb_shape(&replica) == pods_only
    })
    .await;
    northd_idle(&client).await?;
    let flows0 = lflows().await;

    // 2. Every ANP at once.
    let (tx0, ops0, cpu0) = (
        run.metrics.nb_transactions.get(),
        run.metrics.nb_operations.get(),
        controller_cpu(),
    );
    let all: Vec<AdminNetworkPolicy> = (0..anps).map(|j| anp(j, namespaces, None)).collect();
    let want = want_shape(&cluster, &config, &all);
    let t0 = Instant::now();
    for p in all {
        cluster.apply(p);
    }
    wait("ANPs in NB", Duration::from_secs(600), || {
        nb_shape(&replica) == want
    })
    .await;
    let in_nb = t0.elapsed();
    let cpu = controller_cpu() - cpu0;
    northd_idle(&client).await?;
    let in_sb = t0.elapsed();
    // Read after SB: the replica can see a commit before the controller
    // has counted its reply.
    let (txns, ops) = (
        run.metrics.nb_transactions.get() - tx0,
        run.metrics.nb_operations.get() - ops0,
    );
    let flows = lflows().await;
    let acls = want[4] - pods_only[4];
    println!(
        "all {anps} ANPs applied → NB holds every row                              {:>7.2} s",
        in_nb.as_secs_f64()
    );
    println!(
        "  → SB logical flows stable (ovn-northd done)                           {:>7.2} s",
        in_sb.as_secs_f64()
    );
    println!(
        "  NB transactions / operations                                          {txns:>7} / {ops}"
    );
    println!("  controller CPU                                                        {cpu:>7.2} s ({:.2} ms per ANP)", cpu * 1e3 / anps as f64);
    println!(
        "  ACLs {acls} ({:.1} per rule), port groups +{}, address sets +{}",
        acls as f64 / (anps * 10) as f64,
        want[0] - pods_only[0],
        want[2] - pods_only[2]
    );
    println!(
        "  SB logical flows: {flows0} before, {flows} after: {:.1} per ANP",
        (flows - flows0) as f64 / anps as f64
    );

    // 3. Restart on the converged cluster.
    stop(run).await;
    let t1 = Instant::now();
    let run = start(&config, &cluster);
    wait("synced", Duration::from_secs(120), || {
        run.metrics.health.synced()
    })
    .await;
    println!("restart on the converged cluster → ready                                {:>7.2} s   ({} NB operations, must be 0)", t1.elapsed().as_secs_f64(), run.metrics.nb_operations.get());

    // 4. Edits one at a time: applied → ACL in NB, → SB.
    let (mut to_nb, mut to_sb) = (Vec::new(), Vec::new());
    for e in 0..40usize {
        let j = (e * 7 + 3) % anps;
        let port = 20_000 + e as u16;
        let needle = format!("tcp.dst == {port}");
        let t = Instant::now();
        cluster.apply(anp(j, namespaces, Some(port)));
        wait("edit in NB", Duration::from_secs(30), || {
            replica.with(|db| {
                db.table("ACL")
                    .iter()
                    .any(|(_, r)| r.str("match").is_some_and(|m| m.contains(&needle)))
            })
        })
        .await;
        to_nb.push(t.elapsed().as_secs_f64() * 1e3);
        northd_idle(&client).await?;
        to_sb.push(t.elapsed().as_secs_f64() * 1e3);
    }
    for v in [&mut to_nb, &mut to_sb] {
        v.sort_by(|a, b| a.total_cmp(b));
    }
    println!(
        "40 ANP edits, one at a time: applied → ACL in NB  p50 {:.2} ms, p99 {:.2} ms; → SB (northd done) p50 {:.0} ms, p99 {:.0} ms",
        pct(&to_nb, 0.5),
        pct(&to_nb, 0.99),
        pct(&to_sb, 0.5),
        pct(&to_sb, 0.99)
    );
    wait("edits settled", Duration::from_secs(60), || {
        nb_shape(&replica) == want_shape(&cluster, &config, &[])
    })
    .await;
    stop(run).await;

    // 5. The anchor: the same ANP rows in one transaction, this run.
    let rows = snapshot(&replica);
    let mut del = Transaction::new("OVN_Northbound");
    for t in ["Port_Group", "Address_Set"] {
        del.delete(
            t,
            vec![Condition::includes(
                "external_ids",
                Value::map([(names::OWNER_KIND, names::KIND_ADMIN_NETWORK_POLICY)]),
            )],
        );
    }
    client.transact(del).await?;
    northd_idle(&client).await?;
    let tx = restore_tx(&rows);
    let n_ops = tx.len();
    let t2 = Instant::now();
    client.transact(tx).await?;
    let commit = t2.elapsed();
    northd_idle(&client).await?;
    println!(
        "anchor, same run: the same ANP rows written in one transaction ({n_ops} operations): commit {:.2} s, → SB stable {:.2} s",
        commit.as_secs_f64(),
        t2.elapsed().as_secs_f64()
    );
    let run = start(&config, &cluster);
    wait("synced", Duration::from_secs(120), || {
        run.metrics.health.synced()
    })
    .await;
    println!(
        "  restart on the rows written back → {} NB operations",
        run.metrics.nb_operations.get()
    );
    stop(run).await;
    Ok(())
}
