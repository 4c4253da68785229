//! The fault matrix's cases that are not a component killed during the
//! churn: the node agent killed at a chosen point of DELs, and a node
//! deleted from the API while it has pods.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use switchyard_e2e::fault::{inject, Action, Component};
use switchyard_e2e::probe::{Prober, Proto, UdpStream};
use switchyard_e2e::SandboxOptions;
use switchyard_node::testhook;

use crate::common;
use crate::fault_load::{self, labelled_pod, NS};

const READY: Duration = Duration::from_secs(120);

/// Pods per case: `SWITCHYARD_FAULT_PODS`, else 8.
fn pods_per_case() -> usize {
    std::env::var("SWITCHYARD_FAULT_PODS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8)
}

/// Lines of node `i`'s agent log saying a DEL stopped at the pause point.
fn paused_lines(sb: &switchyard_e2e::Sandbox, i: usize) -> usize {
    std::fs::read_to_string(&sb.agent_logs()[i])
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(testhook::PAUSED))
        .count()
}

/// The node agent killed in the middle of DELs, at a chosen point: node-2's
/// agent runs with the test pause point between removing a pod's OVS port
/// and deleting its veth, half its pods are deleted, and once every one of
/// those DELs stopped there (their ports gone, their veths still there) the
/// agent is killed and started again without the pause. The kubelet's DEL
/// retries finish the teardown: no OVS port, veth, namespace or address of
/// the deleted pods is left, the others run on, a new pod comes up.
#[test]
fn node_agent_killed_mid_del_converges() {
    common::init_tracing();
    let _serial = common::serial();
    let dir = tempfile::tempdir().unwrap();
    let sb = common::up(SandboxOptions::new(2, dir.path())).expect("sandbox up");
    let node2 = 1;
    let pods: Vec<(String, String)> = (0..pods_per_case())
        .map(|i| labelled_pod(&sb, NS, &format!("middel-{i}"), Some("node-2"), &[]))
        .collect();
    sb.wait_pods_ready(READY).unwrap();
    let paused_before = paused_lines(&sb, node2);
    sb.with_node(node2, |n| {
        n.agent_env = vec![(
            testhook::PAUSE_ENV.to_string(),
            testhook::TEARDOWN_BETWEEN_OVS_AND_VETH.to_string(),
        )];
        n.restart_agent(READY)
    })
    .unwrap();
    sb.refresh_state_pids();
    let (gone, kept) = pods.split_at(pods.len() / 2);
    let uids: Vec<String> = gone
        .iter()
        .filter_map(|(ns, n)| sb.delete_pod_nowait(ns, n))
        .collect();
    // Every DEL stopped at the point: its OVS port is gone, its veth not.
    common::wait(READY, "every DEL to stop between OVS and veth", || {
        let ids = sb
            .vsctl(
                node2,
                &["--bare", "--columns=external_ids", "list", "Interface"],
            )
            .map_err(|e| e.to_string())?;
        let plugged: Vec<&String> = gone
            .iter()
            .map(|(_, n)| n)
            .filter(|n| ids.contains(&format!("iface-id={NS}_{n}")))
            .collect();
        let paused = paused_lines(&sb, node2) - paused_before;
        (plugged.is_empty() && paused >= gone.len())
            .then_some(())
            .ok_or_else(|| format!("still plugged {plugged:?}, {paused} DELs paused"))
    });
    let veths = sb
        .node_host_exec(node2, &["ip", "-o", "link", "show", "type", "veth"])
        .unwrap();
    let veths = String::from_utf8_lossy(&veths.stdout)
        .lines()
        .filter(|l| !l.contains("ul0"))
        .count();
    assert_eq!(
        veths,
        pods.len(),
        "the paused DELs must not have deleted their veths yet"
    );
    inject(&sb, Action::Kill, &Component::NodeAgent("node-2".into())).unwrap();
    let started = Instant::now();
    sb.with_node(node2, |n| {
        n.agent_env.clear();
        Ok(())
    })
    .unwrap();
    inject(&sb, Action::Restart, &Component::NodeAgent("node-2".into())).unwrap();
    sb.wait_torn_down(&uids, READY).unwrap();
    let mut live = kept.to_vec();
    live.push(labelled_pod(&sb, NS, "after-middel", Some("node-2"), &[]));
    sb.wait_pods_ready(READY).unwrap();
    common::assert_converges_without_leaks(&sb, &live, Duration::from_secs(60));
    common::assert_full_mesh(&sb, &live[live.len() - 2..]);
    println!(
        "mid-DEL: {} DELs stopped between OVS port and veth, agent killed; {} pods deleted and {} \
         kept converged {:.1} s after the restart",
        gone.len(),
        gone.len(),
        kept.len(),
        started.elapsed().as_secs_f64()
    );
    sb.down().unwrap();
}

/// NB rows that name `node` (its switch, ports, gateway router, join
/// port, chassis template variables...), as `table: name` lines.
fn nb_rows_of_node(sb: &switchyard_e2e::Sandbox, node: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (table, name_col) in [
        ("Logical_Switch", "name"),
        ("Logical_Switch_Port", "name"),
        ("Logical_Router", "name"),
        ("Logical_Router_Port", "name"),
        ("Logical_Router_Static_Route", "ip_prefix"),
        ("NAT", "logical_ip"),
        ("Load_Balancer", "name"),
        ("Chassis_Template_Var", "chassis"),
        ("Address_Set", "name"),
        ("Port_Group", "name"),
    ] {
        let out = sb
            .nbctl(&[
                "--format=json",
                &format!("--columns={name_col},external_ids"),
                "list",
                table,
            ])
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        for row in v["data"].as_array().cloned().unwrap_or_default() {
            let name = row[0].as_str().unwrap_or_default().to_string();
            let ids = row[1].to_string();
            let names_node = ids.contains(&format!("\"{}\",\"{node}\"", switchyard_api::names::NODE))
                || ids.contains(&format!("\"{}\",\"{node}\"", switchyard_api::names::OWNER))
                || name == node
                // node-N, rtos-N, stor-N, mgmt-N, GR-N, rtoj-GR-N,
                // jtor-GR-N, ext-N, rtoe-GR-N, etor-GR-N, lnet-N
                || name.ends_with(&format!("-{node}"));
            if names_node {
                found.push(format!("{table}: {name} {ids}"));
            }
        }
    }
    found
}

/// A node deleted from the API while it has pods: kube-controller-manager's
/// pod GC deletes the pods bound to it (the sandbox emulates it), the
/// kubelet tears them down through the node's agent (whose processes run
/// on: the node is only gone from the API), their addresses are released,
/// NB keeps no row of that node, and node-1's pods talk on, through the
/// Service too, whose backends on node-2 went with them. New pods go to
/// node-1 only.
#[test]
fn node_deleted_with_pods_converges() {
    common::init_tracing();
    let _serial = common::serial();
    let dir = tempfile::tempdir().unwrap();
    let sb = common::up(SandboxOptions::new(2, dir.path())).expect("sandbox up");
    let stay: Vec<(String, String)> =
        [("client", ("role", "allowed")), ("server", ("app", "echo"))]
            .into_iter()
            .map(|(p, label)| labelled_pod(&sb, NS, p, Some("node-1"), &[label]))
            .collect();
    let doomed: Vec<(String, String)> = (0..pods_per_case())
        .map(|i| {
            labelled_pod(
                &sb,
                NS,
                &format!("on2-{i}"),
                Some("node-2"),
                &[("app", "echo")],
            )
        })
        .collect();
    fault_load::service(&sb, fault_load::SERVICE, "app", "echo");
    sb.wait_pods_ready(READY).unwrap();
    let client = sb.pod_netns(NS, "client").unwrap();
    let server_ip = sb.pod_ips(NS, "server")[0];
    let cluster_ip = fault_load::cluster_ip(&sb, fault_load::SERVICE);
    switchyard_e2e::probe::probe(&client, Proto::Tcp, server_ip, Some("server"), READY).unwrap();
    switchyard_e2e::probe::probe(&client, Proto::Tcp, cluster_ip, None, READY).unwrap();
    let doomed_ips: BTreeSet<String> = doomed
        .iter()
        .flat_map(|(ns, n)| sb.pod_ips(ns, n))
        .map(|ip| ip.to_string())
        .collect();
    assert!(
        !nb_rows_of_node(&sb, "node-2").is_empty(),
        "the control: node-2 has NB rows"
    );
    let prober = Prober::start(&client, Proto::Tcp, server_ip, Some("server"));
    let via_service = Prober::start_every(
        &client,
        Proto::Tcp,
        cluster_ip,
        None,
        Duration::from_millis(250),
    );
    let stream = UdpStream::start(&client, server_ip).unwrap();

    let deleted_at = Instant::now();
    let uids = sb.delete_node("node-2").expect("node-2 existed");
    assert_eq!(
        uids.len(),
        doomed.len(),
        "pod GC deletes exactly node-2's pods"
    );
    sb.wait_torn_down(&uids, READY).unwrap();
    // A pod created now goes to the node that is left.
    let mut live = stay.clone();
    live.push(labelled_pod(
        &sb,
        NS,
        "after-delete",
        None,
        &[("app", "echo")],
    ));
    assert_eq!(
        sb.pod(NS, "after-delete").and_then(|p| p.node).as_deref(),
        Some("node-1")
    );
    sb.wait_pods_ready(READY).unwrap();
    common::assert_converges_without_leaks(&sb, &live, Duration::from_secs(60));
    let mut left = Vec::new();
    common::wait(Duration::from_secs(60), "NB to forget node-2", || {
        left = nb_rows_of_node(&sb, "node-2");
        left.is_empty()
            .then_some(())
            .ok_or_else(|| format!("{left:#?}"))
    });
    fault_load::assert_nb_objects(&sb, Duration::from_secs(60));
    let converged = deleted_at.elapsed();
    // (The controller counting only the live pods' addresses, checked
    // above, is the deleted ones' being released.)
    let live_ips: BTreeSet<String> = live
        .iter()
        .flat_map(|(ns, n)| sb.pod_ips(ns, n))
        .map(|ip| ip.to_string())
        .collect();
    // Through the Service (whose load balancer holds only node-1's
    // backends now: checked above), the pod created after the deletion
    // answers too.
    common::wait(
        READY,
        "the new backend to answer through the Service",
        || {
            switchyard_e2e::probe::probe_once(&client, Proto::Tcp, cluster_ip, Some("after-delete"))
                .map_err(|e| e.to_string())
        },
    );
    prober.wait_ok_after(deleted_at, READY).unwrap();
    stream.wait_ok_after(deleted_at, READY).unwrap();
    let tcp = prober.finish();
    let service = via_service.finish();
    let (answers, gap) = stream.finish();
    common::assert_full_mesh(&sb, &live);
    // The controller speaks NB only: node-2's ovn-controller, still
    // running, keeps its chassis registered in SB.
    let chassis = sb
        .ovn()
        .ctl(
            switchyard_e2e::central::Db::Sb,
            &["--bare", "--columns=name", "list", "Chassis"],
        )
        .unwrap();
    println!(
        "node deleted: {} pods of node-2 deleted by pod GC, addresses {:?} released (live {:?}); \
         NB forgot node-2 and converged {:.1} s after the deletion; node-1 client -> server: \
         longest UDP gap {:.2} s ({answers} answers), TCP {tcp}; through the Service: {service}; \
         SB chassis now: {:?}",
        uids.len(),
        doomed_ips,
        live_ips,
        converged.as_secs_f64(),
        gap.as_secs_f64(),
        chassis.split_whitespace().collect::<Vec<_>>()
    );
    sb.down().unwrap();
}
