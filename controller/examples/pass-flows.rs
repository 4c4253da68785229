//! What `Pass` costs a real ovn-controller (figures, not a test):
//! `cargo run --release -p switchyard-controller --example pass-flows [-- PEERS PASS1 PASS2]`
//!
//! The shape that ran ovn-controller 23.03 past 18 GB when `Pass` was a
//! negated address set: a Deny from a namespace of `PEERS` (1,000) pods to
//! two subject pods, below a Pass of `PASS1` (20) of those pods on TCP 80
//! (both subject pods) and a Pass of `PASS2` (100) others (one subject
//! pod only), so the Deny splits into pieces of subject, peers and ports.
//!
//! Real NB/SB/northd and one chassis (ovs-vswitchd + ovn-controller in a
//! network namespace), the in-memory cluster and the controller in
//! process. The subject pods' ports are bound on the chassis, so their
//! switch's flows are installed. Printed for the Deny alone and then with
//! the passes: its ACLs, SB logical flows, OpenFlow flows on br-int and
//! ovn-controller's resident memory, once the flow count has held still
//! for 3 s.

#[path = "bench_common/mod.rs"]
mod bench_common;

use std::time::{Duration, Instant};

use bench_common::{start, stop};
use kube_memory::{node, pod, MemoryCluster};
use ovn_testbed::{Chassis, ChassisOptions, OvnCentral};
use serde_json::json;
use switchyard_controller::config::ClusterCidr;
use switchyard_controller::k8s::AdminNetworkPolicy;
use switchyard_controller::Config;

type Error = Box<dyn std::error::Error>;

const NODE: &str = "node-0";

fn anp(name: &str, spec: serde_json::Value) -> Result<AdminNetworkPolicy, Error> {
    Ok(serde_json::from_value(
        json!({"metadata": {"name": name}, "spec": spec}),
    )?)
}

fn rss_mib(pid: Option<u32>) -> f64 {
    let Some(pid) = pid else { return 0.0 };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

fn of_flows(ch: &Chassis) -> usize {
    match ch.ofctl(&["dump-flows"]) {
        Ok(o) => o.lines().filter(|l| l.contains("cookie=")).count(),
        Err(e) => {
            eprintln!("ovs-ofctl: {e}");
            0
        }
    }
}

fn count(central: &OvnCentral, sb: bool, args: &[&str]) -> usize {
    let out = if sb {
        central.sbctl(args)
    } else {
        central.nbctl(args)
    };
    out.map(|o| o.lines().filter(|l| !l.trim().is_empty()).count())
        .unwrap_or(0)
}

fn deny_acls(central: &OvnCentral) -> Vec<String> {
    central
        .nbctl(&[
            "--bare",
            "--columns=match",
            "find",
            "ACL",
            "name=\"anp:deny:Ingress:0\"",
        ])
        .map(|o| {
            o.lines()
                .filter(|l| !l.trim().is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until the flow count holds for 3 s (or 300 s pass, or
/// ovn-controller passes 8 GiB), then prints the figures.
async fn measure(what: &str, central: &OvnCentral, ch: &Chassis) -> Result<(), Error> {
    central.nbctl(&["--wait=hv", "sync"])?;
    let t0 = Instant::now();
    let (mut last, mut since) = (usize::MAX, Instant::now());
    let mut peak = 0.0f64;
    loop {
        let n = of_flows(ch);
        let rss = rss_mib(ch.ovn_controller_pid());
        peak = peak.max(rss);
        if n != last {
            (last, since) = (n, Instant::now());
        }
        if since.elapsed() >= Duration::from_secs(3) && n > 0 {
            break;
        }
        if t0.elapsed() > Duration::from_secs(120) || rss > 8192.0 {
            println!("{what}: gave up after {:.0?} at {rss:.0} MiB", t0.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let acls = deny_acls(central);
    let lflows = count(
        central,
        true,
        &["--bare", "--columns=_uuid", "list", "Logical_Flow"],
    );
    println!(
        "{what}: deny ACLs {}, SB logical flows {lflows}, br-int OpenFlow flows {last}, ovn-controller RSS {:.1} MiB (peak {peak:.1}), settled in {:.1?}",
        acls.len(),
        rss_mib(ch.ovn_controller_pid()),
        since.duration_since(t0)
    );
    for m in acls {
        println!("  {}", if m.len() > 160 { &m[..160] } else { &m });
    }
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Error> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let peers = args.first().copied().unwrap_or(1000);
    let pass1 = args.get(1).copied().unwrap_or(20);
    let pass2 = args.get(2).copied().unwrap_or(100);
    let dir = tempfile::tempdir()?;
    let central = OvnCentral::start(dir.path())?;
    let ch = Chassis::start(dir.path(), &central.sb_remote(), ChassisOptions::new(NODE))?;
    ch.wait_registered(Duration::from_secs(30))?;
    // One node holds every pod: a /20 per node, not the default /24.
    let config = Config {
        cluster_cidrs: vec![ClusterCidr {
            cidr: "10.244.0.0/16".parse()?,
            node_prefix: 20,
        }],
        nb_remote: central.nb_remote(),
        http_addr: None,
        ..Config::default()
    };
    let cluster = MemoryCluster::new();
    cluster.apply_node(node(NODE));
    for (ns, label) in [("peers", "peers"), ("s", "s")] {
        cluster.apply(kube_memory::namespace(ns, &[("ns", label)]));
    }
    // The subject pods first: their ports are bound while the peers come.
    for t in ["t1", "t2"] {
        let mut p = pod("s", t, NODE);
        p.metadata.labels = Some([("pod".to_string(), t.to_string())].into());
        cluster.apply_pod(p);
    }
    for i in 0..peers {
        let mut p = pod("peers", &format!("p{i:04}"), NODE);
        let group = if i < pass1 {
            "one"
        } else if i < pass1 + pass2 {
            "two"
        } else {
            "rest"
        };
        p.metadata.labels = Some([("group".to_string(), group.to_string())].into());
        cluster.apply_pod(p);
    }
    println!("pass-flows: {peers} peer pods, passes over {pass1} (TCP 80, both subject pods) and {pass2} (every port, t1 only)\n");
    let run = start(&config, &cluster);
    let s = json!({"namespaces": {"matchLabels": {"ns": "s"}}});
    cluster.apply(anp(
        "deny",
        json!({"priority": 30, "subject": s,
        "ingress": [{"action": "Deny", "from": [{"namespaces": {"matchLabels": {"ns": "peers"}}}]}]}),
    )?);
    bench_common::wait("the deny in NB", Duration::from_secs(300), || {
        !deny_acls(&central).is_empty()
    })
    .await;
    for t in ["t1", "t2"] {
        // ovn-controller claims a pod's port only for the pod's uid.
        let uid = cluster
            .pod("s", t)
            .and_then(|p| p.metadata.uid)
            .unwrap_or_default();
        ch.vsctl(&[
            "add-port",
            "br-int",
            t,
            "--",
            "set",
            "Interface",
            t,
            "type=internal",
            &format!("external_ids:iface-id=s_{t}"),
            &format!("external_ids:iface-id-ver={uid}"),
        ])?;
    }
    bench_common::wait("the subject ports bound", Duration::from_secs(600), || {
        ["t1", "t2"].iter().all(|t| {
            central
                .sbctl(&[
                    "--bare",
                    "--columns=chassis",
                    "find",
                    "Port_Binding",
                    &format!("logical_port=s_{t}"),
                ])
                .is_ok_and(|o| !o.trim().is_empty())
        })
    })
    .await;
    bench_common::wait("every peer in its set", Duration::from_secs(900), || {
        central
            .nbctl(&[
                "--bare",
                "--columns=addresses",
                "find",
                "Address_Set",
                "name=ns.peers.v4",
            ])
            .is_ok_and(|o| o.split_whitespace().count() >= peers)
    })
    .await;
    measure("Deny alone", &central, &ch).await?;
    let group = |g: &str| json!({"pods": {"namespaceSelector": {"matchLabels": {"ns": "peers"}}, "podSelector": {"matchLabels": {"group": g}}}});
    cluster.apply(anp(
        "pass-one",
        json!({"priority": 10, "subject": s,
        "ingress": [{"action": "Pass", "from": [group("one")],
                     "ports": [{"portNumber": {"protocol": "TCP", "port": 80}}]}]}),
    )?);
    cluster.apply(anp(
        "pass-two",
        json!({"priority": 20,
        "subject": {"pods": {"namespaceSelector": {"matchLabels": {"ns": "s"}}, "podSelector": {"matchLabels": {"pod": "t1"}}}},
        "ingress": [{"action": "Pass", "from": [group("two")]}]}),
    )?);
    bench_common::wait("the pieces in NB", Duration::from_secs(600), || {
        deny_acls(&central).len() > 1
    })
    .await;
    measure("Deny below both passes", &central, &ch).await?;
    stop(run).await;
    Ok(())
}
