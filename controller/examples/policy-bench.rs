//! NetworkPolicy benchmark (figures, not a test):
//! `cargo run --release -p switchyard-controller --example policy-bench [-- NODES PODS POLICIES]`
//!
//! Real NB/SB ovsdb-server and ovn-northd in a temp dir, the in-memory
//! cluster (100 nodes, 10,000 pods in 10 namespaces, 1,000 policies by
//! default) and the controller in-process:
//! 1. the pods converge without policies;
//! 2. every policy is applied at once: the clock runs until NB holds
//!    every policy row the controller's translation wants (port groups,
//!    address sets, ACLs, with their members), as a second client's replica
//!    sees it, then until ovn-northd has put it all in SB; NB transactions
//!    and operations, port groups and address sets used (against one per
//!    policy), SB logical flows per policy;
//! 3. restart on the converged cluster (must write nothing);
//! 4. 200 policy edits at 50/s: applied → the edited ACL in NB;
//! 5. the same-run limit: the controller stopped, its policy rows deleted,
//!    then written back by this program in one transaction: commit time and
//!    NB → SB, the floor any controller has here.
//!
//! The policies: per namespace 50 pod selectors (`app=appN`) shared by two
//! policies each; ingress from the next app's pods on TCP 80 and, for one
//! policy in five, on the named port `http` (8080 on most pods, 9090 on
//! every seventh: resolved per pod); ingress from namespaces by label on
//! TCP 443; for one policy in four, egress to `tier=db` pods of every
//! namespace on TCP 5432 and to an ip block (with an exception) on UDP 53.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube_memory::{node, pod, MemoryCluster};
use ovn_testbed::OvnCentral;
use ovsdb::{
    Atom, Client, ClientConfig, Condition, MonitorSpec, Mutation, Replica, Row, Transaction, Value,
};
use serde_json::json;
use switchyard_api::{names, NodeSubnets, PodNetwork};
use switchyard_controller::k8s::{Kind, Object, Observed, WatchEvent};
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
/// `extra` policies are counted as if applied.
fn want_shape(cluster: &MemoryCluster, config: &Config, extra: &[NetworkPolicy]) -> Shape {
    let mut model = Model::new();
    let mut changes = Vec::new();
    for kind in [Kind::Node, Kind::Namespace, Kind::Pod, Kind::NetworkPolicy] {
        let mut list = cluster.list(kind);
        if kind == Kind::NetworkPolicy {
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

fn policy(j: usize, namespaces: usize) -> NetworkPolicy {
    let ns = format!("ns{}", j % namespaces);
    let app = (j / namespaces) % 50;
    let mut ports = vec![json!({"port": 80})];
    if j.is_multiple_of(5) {
        ports.push(json!({"port": "http"}));
    }
    let mut spec = json!({
        "podSelector": {"matchLabels": {"app": format!("app{app}")}},
        "policyTypes": ["Ingress"],
        "ingress": [
            {"from": [{"podSelector": {"matchLabels": {"app": format!("app{}", (app + 1) % 50)}}}], "ports": ports},
            {"from": [{"namespaceSelector": {"matchLabels": {"team": format!("t{}", j % 3)}}}], "ports": [{"port": 443}]},
        ],
    });
    if j.is_multiple_of(4) {
        spec["policyTypes"] = json!(["Ingress", "Egress"]);
        spec["egress"] = json!([
            {"to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"tier": "db"}}}], "ports": [{"port": 5432}]},
            {"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}], "ports": [{"protocol": "UDP", "port": 53}]},
        ]);
    }
    serde_json::from_value(json!({
        "metadata": {"namespace": ns, "name": format!("np-{j:04}")},
        "spec": spec,
    }))
    .expect("a policy")
}

/// Every row of the policy tables, whole, for writing back.
fn snapshot(replica: &Replica) -> Vec<(String, ovsdb::Uuid, Row)> {
    replica.with(|db| {
        let mut out = Vec::new();
        for t in ["Address_Set", "Port_Group", "ACL", "Meter", "Meter_Band"] {
            for (u, r) in db.table(t).iter() {
                out.push((t.to_string(), *u, r.clone()));
            }
        }
        out
    })
}

/// Writes a snapshot's policy rows back in one transaction.
fn restore_tx(rows: &[(String, ovsdb::Uuid, Row)]) -> Transaction {
    let mut tx = Transaction::new("OVN_Northbound");
    let named = |u: &ovsdb::Uuid| format!("r{}", u.simple());
    let policy_kinds = [
        names::KIND_NETWORK_POLICY,
        names::KIND_POLICY_PODS,
        names::KIND_POLICY_PEERS,
        names::KIND_POLICY_HOST,
    ];
    let ours = |r: &Row| {
        r.map_get("external_ids", names::OWNER_KIND)
            .is_some_and(|k| policy_kinds.contains(&k))
    };
    let mut switch_acls: BTreeMap<String, Vec<ovsdb::Uuid>> = BTreeMap::new();
    for (t, u, r) in rows.iter().filter(|(_, _, r)| ours(r)) {
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
        if t == "ACL"
            && r.map_get("external_ids", names::OWNER_KIND) == Some(names::KIND_POLICY_HOST)
        {
            let node = r.map_get("external_ids", names::OWNER).unwrap_or_default();
            switch_acls
                .entry(names::node_switch(node))
                .or_default()
                .push(*u);
        }
        tx.insert_as(t, row, &named(u));
    }
    for (switch, acls) in switch_acls {
        tx.mutate(
            "Logical_Switch",
            vec![Condition::eq("name", switch.as_str())],
            vec![Mutation::insert(
                "acls",
                Value::set(acls.iter().map(|a| Atom::NamedUuid(named(a)))),
            )],
        );
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
    let policies = args.get(2).copied().unwrap_or(1_000);
    let namespaces = 10;
    let dir = tempfile::tempdir()?;
    let central = OvnCentral::start(dir.path())?;
    let client = Client::connect(ClientConfig::new(&central.nb_remote())?).await?;
    let mut spec = MonitorSpec::new("OVN_Northbound");
    for t in [
        "Port_Group",
        "Address_Set",
        "ACL",
        "Meter",
        "Meter_Band",
        "Logical_Switch_Port",
    ] {
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
        cluster.apply(kube_memory::namespace(
            &format!("ns{i}"),
            &[("team", &format!("t{}", i % 3))],
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
            "name": "c", "ports": [{"name": "http", "containerPort": http},
                                   {"name": "dns", "containerPort": 53, "protocol": "UDP"}]}))?];
        cluster.apply_pod(p);
    }
    println!("Switchyard NetworkPolicy benchmark: {nodes} nodes, {pods} pods in {namespaces} namespaces, {policies} policies (in-memory API, real NB/SB + northd)\n");

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
    stop(run).await;
    let t = Instant::now();
    let run = start(&config, &cluster);
    wait("synced", Duration::from_secs(120), || {
        run.metrics.health.synced()
    })
    .await;
    println!(
        "restart without policies → ready                                        {:>7.2} s",
        t.elapsed().as_secs_f64()
    );
    northd_idle(&client).await?;
    let flows0 = lflows().await;

    // 2. Every policy at once.
    let (tx0, ops0, cpu0) = (
        run.metrics.nb_transactions.get(),
        run.metrics.nb_operations.get(),
        controller_cpu(),
    );
    let all: Vec<NetworkPolicy> = (0..policies).map(|j| policy(j, namespaces)).collect();
    let want = want_shape(&cluster, &config, &all);
    let t0 = Instant::now();
    for p in all {
        cluster.apply(p);
    }
    let applied = t0.elapsed();
    wait("policies in NB", Duration::from_secs(600), || {
        nb_shape(&replica) == want
    })
    .await;
    let in_nb = t0.elapsed();
    let (txns, ops, cpu) = (
        run.metrics.nb_transactions.get() - tx0,
        run.metrics.nb_operations.get() - ops0,
        controller_cpu() - cpu0,
    );
    northd_idle(&client).await?;
    let in_sb = t0.elapsed();
    let flows = lflows().await;
    let ns_sets = 2 * namespaces;
    println!("all {policies} policies applied ({:.2} s to apply) → NB holds every policy row   {:>7.2} s", applied.as_secs_f64(), in_nb.as_secs_f64());
    println!("  → SB logical flows stable (ovn-northd done)                           {:>7.2} s   (anchor: 1k port groups + 2k ACLs + 1k address sets in one transaction → SB 1.9 s; Antrea 10k pods × 10k policies in 10.7 s)", in_sb.as_secs_f64());
    println!(
        "  NB transactions / operations                                          {txns:>7} / {ops}"
    );
    println!("  controller CPU                                                        {cpu:>7.2} s ({:.2} ms per policy)", cpu * 1e3 / policies as f64);
    println!(
        "  port groups {} ({} ports), address sets {} beside the {ns_sets} namespace sets ({} addresses), ACLs {}  (one group and set pair per policy would be {policies} and {})",
        want[0], want[1], want[2] - ns_sets, want[3] - pods_only[3], want[4], 2 * policies
    );
    println!(
        "  SB logical flows: {flows0} before, {flows} after: {:.1} per policy",
        (flows - flows0) as f64 / policies as f64
    );

    // 3. Restart on the converged cluster.
    stop(run).await;
    if std::env::var("POLICY_BENCH_STOP_AFTER").as_deref() == Ok("policies") {
        return Ok(());
    }
    let t1 = Instant::now();
    let run = start(&config, &cluster);
    wait("synced", Duration::from_secs(120), || {
        run.metrics.health.synced()
    })
    .await;
    println!("restart on the converged cluster → ready                                {:>7.2} s   ({} NB operations, must be 0)", t1.elapsed().as_secs_f64(), run.metrics.nb_operations.get());
    if std::env::var("POLICY_BENCH_STOP_AFTER").as_deref() == Ok("restart") {
        stop(run).await;
        return Ok(());
    }

    // 4. Edits one by one: applied → the ACL in NB.
    let mut lat = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    for e in 0..200usize {
        tick.tick().await;
        let j = (e * 7) % policies;
        let mut p = policy(j, namespaces);
        let port = 10_000 + e as i64;
        p.spec
            .as_mut()
            .expect("spec")
            .ingress
            .as_mut()
            .expect("ingress")[1]
            .ports = Some(vec![serde_json::from_value(json!({"port": port}))?]);
        let needle = format!("tcp.dst == {port}");
        let t = Instant::now();
        cluster.apply(p);
        wait("edit in NB", Duration::from_secs(30), || {
            replica.with(|db| {
                db.table("ACL")
                    .iter()
                    .any(|(_, r)| r.str("match").is_some_and(|m| m.contains(&needle)))
            })
        })
        .await;
        lat.push(t.elapsed().as_secs_f64() * 1e3);
    }
    lat.sort_by(|a, b| a.total_cmp(b));
    println!(
        "200 policy edits at 50/s: applied → ACL in NB  p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        pct(&lat, 0.5),
        pct(&lat, 0.99),
        pct(&lat, 1.0)
    );

    // 5. The same-run limit: the same rows in one transaction.
    wait("edits settled", Duration::from_secs(60), || {
        nb_shape(&replica) == want_shape(&cluster, &config, &[])
    })
    .await;
    stop(run).await;
    let rows = snapshot(&replica);
    let mut del = Transaction::new("OVN_Northbound");
    for kind in [names::KIND_POLICY_PODS, names::KIND_POLICY_PEERS] {
        let t = if kind == names::KIND_POLICY_PODS {
            "Port_Group"
        } else {
            "Address_Set"
        };
        del.delete(
            t,
            vec![Condition::includes(
                "external_ids",
                Value::map([(names::OWNER_KIND, kind)]),
            )],
        );
    }
    del.mutate(
        "Logical_Switch",
        vec![],
        vec![Mutation::delete(
            "acls",
            Value::set(
                rows.iter()
                    .filter(|(t, _, r)| {
                        t == "ACL"
                            && r.map_get("external_ids", names::OWNER_KIND)
                                == Some(names::KIND_POLICY_HOST)
                    })
                    .map(|(_, u, _)| Atom::Uuid(*u)),
            ),
        )],
    );
    client.transact(del).await?;
    northd_idle(&client).await?;
    let tx = restore_tx(&rows);
    let n_ops = tx.len();
    let t2 = Instant::now();
    client.transact(tx).await?;
    let commit = t2.elapsed();
    northd_idle(&client).await?;
    println!(
        "same-run limit: the same policy rows written in one transaction ({n_ops} operations): commit {:.2} s, → SB stable {:.2} s",
        commit.as_secs_f64(),
        t2.elapsed().as_secs_f64()
    );
    // The controller finds its rows as it wants them.
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
