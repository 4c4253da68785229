//! `kubectl switchyard trace` against real OVN: a controller writes NB
//! for pods on two nodes, a Service and a NetworkPolicy; northd compiles
//! SB; the plugin resolves the endpoints from the in-memory API server,
//! runs `ovn-trace` and summarises.

mod common;

use std::path::PathBuf;

use common::{eventually, Cluster, MemoryView, T};
use serde_json::json;
use switchyard_kubectl::flow::{Protocol, Target};
use switchyard_kubectl::ovn::{self, NB_DB};
use switchyard_kubectl::summary::Verdict;
use switchyard_kubectl::trace::{trace, OvnAccess, Traced};

/// x/a and x/b on n1, x/c on n2; Service x/web in front of c; policy
/// x/c-from-a admits a (only) to c on TCP 80.
async fn cluster() -> Cluster {
    let c = Cluster::start();
    for n in ["n1", "n2"] {
        c.memory.apply_node(kube_memory::node(n));
    }
    c.memory.apply(kube_memory::namespace("x", &[("ns", "x")]));
    c.ready_pod("x", "a", "n1").await;
    c.ready_pod("x", "b", "n1").await;
    c.ready_pod("x", "c", "n2").await;
    c.service("x", "web", "c");
    c.policy(
        "x",
        "c-from-a",
        json!({
            "podSelector": {"matchLabels": {"pod": "c"}},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "a"}}}],
                         "ports": [{"protocol": "TCP", "port": 80}]}],
        }),
    );
    // NB holds the policy's ACLs and the Service's load balancer with its
    // backend; then SB follows.
    let nb = c.central.nb_remote();
    eventually(T, "NB holds the policy and the service", || {
        let nb = nb.clone();
        async move {
            let client = ovn::connect(&nb).await.map_err(|e| e.to_string())?;
            let acls = ovn::select(&client, &nb, NB_DB, "ACL", &["name"])
                .await
                .map_err(|e| e.to_string())?;
            let named = |n: &str| {
                acls.iter()
                    .any(|r| r.get("name").is_some_and(|v| v.strings().contains(&n)))
            };
            if !named("x/c-from-a:Ingress:0") {
                return Err("no allow ACL".into());
            }
            let lbs = ovn::select(&client, &nb, NB_DB, "Load_Balancer", &["name", "vips"])
                .await
                .map_err(|e| e.to_string())?;
            let served = lbs.iter().any(|r| {
                r.str("name").is_some_and(|n| n.starts_with("svc:x/web"))
                    && r.get("vips").and_then(|v| v.as_map()).is_some_and(|m| {
                        m.values()
                            .any(|b| b.as_str().is_some_and(|s| !s.is_empty()))
                    })
            });
            served
                .then_some(())
                .ok_or("no load balancer with backends".into())
        }
    })
    .await;
    c.central
        .sync_sb(std::time::Duration::from_secs(30))
        .expect("SB in sync");
    c
}

fn access(c: &Cluster) -> OvnAccess {
    OvnAccess {
        nb: c.central.nb_remote(),
        sb: c.central.sb_remote(),
        ovn_trace: PathBuf::from("ovn-trace"),
    }
}

async fn run(c: &Cluster, src: &str, dst: &str, port: Option<u16>) -> Traced {
    run_proto(c, src, dst, port, Protocol::Tcp).await
}

async fn run_proto(
    c: &Cluster,
    src: &str,
    dst: &str,
    port: Option<u16>,
    protocol: Protocol,
) -> Traced {
    let view = MemoryView(c.memory.clone());
    let src: Target = src.parse().expect("source");
    let dst: Target = dst.parse().expect("destination");
    trace(&view, &access(c), &src, &dst, port, Some(protocol))
        .await
        .expect("trace")
}

fn text(t: &Traced) -> String {
    t.summary.lines().join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_names_switches_router_policy_and_verdict() {
    let c = cluster().await;

    // Allowed by the policy, across the router.
    let allowed = run(&c, "x/a", "x/c", Some(80)).await;
    let s = text(&allowed);
    // `--ovn` prints this: OVN's own trace, from the source's port.
    assert!(allowed
        .raw
        .contains("ingress(dp=\"node-n1\", inport=\"x_a\")"));
    eprintln!("a -> c:\n{s}\n");
    assert_eq!(
        allowed.summary.verdict,
        Verdict::Delivered("x_c".into()),
        "{s}"
    );
    assert!(s.contains("switch node-n1"), "{s}");
    assert!(s.contains("router cluster-router"), "{s}");
    assert!(s.contains("switch node-n2"), "{s}");
    assert!(s.contains("NetworkPolicy x/c-from-a Ingress rule 0"), "{s}");

    // Denied: b is not admitted; the default deny names the policy.
    let denied = run(&c, "x/b", "x/c", Some(80)).await;
    let s = text(&denied);
    eprintln!("b -> c:\n{s}\n");
    assert!(
        matches!(&denied.summary.verdict, Verdict::Dropped { datapath, .. } if datapath == "node-n2"),
        "{s}"
    );
    assert!(
        s.contains("default deny of NetworkPolicy x/c-from-a"),
        "{s}"
    );
    assert!(s.contains("DROPPED on node-n2"), "{s}");

    // The policy admits TCP 80 only: UDP 80, SCTP 80 and TCP 81 are not.
    for (proto, port) in [
        (Protocol::Udp, 80),
        (Protocol::Sctp, 80),
        (Protocol::Tcp, 81),
    ] {
        let t = run_proto(&c, "x/a", "x/c", Some(port), proto).await;
        let s = text(&t);
        assert!(t
            .microflow
            .flow
            .contains(&format!("{}.dst == {port}", proto.ovn())));
        assert!(
            matches!(t.summary.verdict, Verdict::Dropped { .. }),
            "{proto:?} {port}: {s}"
        );
        assert!(
            s.contains("default deny of NetworkPolicy x/c-from-a"),
            "{s}"
        );
    }

    // Not isolated: same switch, no ACL, no router.
    let open = run(&c, "x/c", "x/a", Some(80)).await;
    let s = text(&open);
    eprintln!("c -> a:\n{s}\n");
    assert_eq!(
        open.summary.verdict,
        Verdict::Delivered("x_a".into()),
        "{s}"
    );
    let local = run(&c, "x/a", "x/b", Some(80)).await;
    let s = text(&local);
    assert_eq!(
        local.summary.verdict,
        Verdict::Delivered("x_b".into()),
        "{s}"
    );
    assert!(!s.contains("router"), "{s}");
    assert!(!s.contains("ACL"), "{s}");

    // Through the Service: the load balancer, then the policy.
    let via = run(&c, "x/a", "svc:x/web", None).await;
    let s = text(&via);
    eprintln!("a -> svc:x/web:\n{s}\n");
    assert!(s.contains("load balancer svc:x/web"), "{s}");
    assert_eq!(via.summary.verdict, Verdict::Delivered("x_c".into()), "{s}");
    let blocked = run(&c, "x/b", "svc:x/web", None).await;
    assert!(
        matches!(blocked.summary.verdict, Verdict::Dropped { .. }),
        "{}",
        text(&blocked)
    );

    // A node's host reaches its own isolated pod (kubelet probes), through
    // its management port.
    let probe = run(&c, "host:n2", "x/c", Some(80)).await;
    let s = text(&probe);
    eprintln!("host:n2 -> c:\n{s}\n");
    assert!(probe.microflow.flow.contains("inport == \"mgmt-n2\""));
    assert_eq!(
        probe.summary.verdict,
        Verdict::Delivered("x_c".into()),
        "{s}"
    );
    let back = run(&c, "x/a", "host:n1", Some(10250)).await;
    assert_eq!(
        back.summary.verdict,
        Verdict::Delivered("mgmt-n1".into()),
        "{}",
        text(&back)
    );

    // By address: the source and destination pods found from their IPs.
    let a_ip = common::annotation(&c.memory.pod("x", "a").expect("a"))
        .expect("annotated")
        .ips[0]
        .addr();
    let c_ip = common::annotation(&c.memory.pod("x", "c").expect("c"))
        .expect("annotated")
        .ips[0]
        .addr();
    let by_ip = run(&c, &a_ip.to_string(), &c_ip.to_string(), Some(80)).await;
    assert_eq!(by_ip.summary.verdict, Verdict::Delivered("x_c".into()));
    c.stop().await;
}
