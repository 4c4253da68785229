//! `kubectl switchyard status` against real OVN: nodes as the agent and
//! the controller left them, the controller's Lease, the health of a
//! standalone database and of a three-member RAFT cluster losing members.

mod common;

use std::collections::BTreeMap;

use common::{eventually, Cluster, MemoryView, T};
use ovn_testbed::{ClusteredDb, Schema};
use switchyard_api::annotations;
use switchyard_kubectl::ovn::{cluster_health, health_summary, NB_DB};
use switchyard_kubectl::status::{status, StatusOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reports_nodes_leader_and_databases() {
    let c = Cluster::start();
    for n in ["n1", "n2"] {
        c.memory.apply_node(kube_memory::node(n));
    }
    c.memory.apply(kube_memory::namespace("x", &[]));
    c.ready_pod("x", "a", "n1").await;
    // The agent of n1 published its chassis; ovn-controller registered it
    // and bound the pod's port (as ovn-controller does, by hand here).
    let mut n1 = c.memory.node("n1").expect("n1");
    n1.metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(annotations::NODE_CHASSIS.into(), "chassis-n1".into());
    // ... and its gateway bridge, from which the controller builds GR-n1.
    let gw = annotations::NodeGateway {
        bridge: "br-phy".into(),
        mac: "0a:58:c6:12:00:02".into(),
        ips: vec!["198.18.0.2/24".parse().expect("net")],
        next_hops: vec!["198.18.0.1".parse().expect("ip")],
    };
    n1.metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(annotations::NODE_GATEWAY.into(), gw.to_json());
    c.memory.apply_node(n1);
    c.central
        .sbctl(&["chassis-add", "chassis-n1", "geneve", "127.0.0.1"])
        .expect("chassis-add");
    let opts = StatusOptions {
        nb: c.central.nb_remote(),
        sb: c.central.sb_remote(),
        lease_namespace: c.config.leader_election.namespace.clone(),
        lease_name: c.config.leader_election.lease_name.clone(),
    };
    let view = MemoryView(c.memory.clone());
    // The port binding exists once northd has run.
    eventually(T, "the pod's port binding in SB", || {
        let r = c.central.sbctl(&["lsp-bind", "x_a", "chassis-n1"]);
        async move { r.map(|_| ()).map_err(|e| e.to_string()) }
    })
    .await;
    eventually(T, "the leader and both switches", || async {
        let s = status(&view, &opts).await.map_err(|e| e.to_string())?;
        let ok = s.leader.as_ref().is_some_and(|l| l.holder.is_some())
            && s.nodes.len() == 2
            && s.nodes.iter().all(|n| n.switch_in_nb)
            && s.nodes[0].gateway_router_in_nb;
        ok.then_some(()).ok_or(s.lines().join("\n"))
    })
    .await;
    let s = status(&view, &opts).await.expect("status");
    let text = s.lines().join("\n");
    eprintln!("{text}");
    let n1 = &s.nodes[0];
    assert_eq!(n1.name, "n1");
    assert_eq!(n1.chassis.as_deref(), Some("chassis-n1"), "{text}");
    assert!(n1.chassis_registered, "{text}");
    assert_eq!(n1.bound_ports, 1, "{text}");
    assert_eq!(n1.gateways.len(), 1, "{text}");
    assert_eq!(n1.bridge.as_deref(), Some("br-phy 198.18.0.2/24"), "{text}");
    assert!(text.contains("GR-n1"), "{text}");
    assert!(!s.nodes[1].gateway_router_in_nb, "{text}");
    assert!(text.contains("none published"), "{text}");
    let n2 = &s.nodes[1];
    assert_eq!(n2.chassis, None, "{text}");
    assert!(!n2.chassis_registered);
    assert!(
        text.contains("n2") && text.contains("NOT REPORTING"),
        "{text}"
    );
    assert!(text.contains("controller leader: controller-0"), "{text}");
    assert!(
        text.contains("NB healthy: standalone, 1/1 members up"),
        "{text}"
    );
    assert!(
        text.contains("SB healthy: standalone, 1/1 members up"),
        "{text}"
    );
    // n2's agent does not report: not healthy overall.
    assert!(!s.healthy());
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raft_cluster_is_healthy_with_one_leader_and_not_without_a_member() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut db = ClusteredDb::start(dir.path(), Schema::Northbound, 3).expect("cluster");
    let leader = db.wait_leader(T).expect("a leader");
    let members = cluster_health(&db.remotes(), NB_DB).await.expect("health");
    let (healthy, text) = health_summary(&members);
    assert!(healthy, "{text}");
    assert!(text.contains("clustered, 3/3 members up"), "{text}");
    assert!(text.contains(&db.member_remote(leader)), "{text}");

    let follower = (leader + 1) % 3;
    db.kill(follower);
    let members = cluster_health(&db.remotes(), NB_DB).await.expect("health");
    let (healthy, text) = health_summary(&members);
    assert!(!healthy, "{text}");
    assert!(text.contains("2/3 members up"), "{text}");
    let down = &members[follower];
    assert!(down.state.is_err(), "{down:?}");
}
