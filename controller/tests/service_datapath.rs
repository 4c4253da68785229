//! What OVN makes of the Service rows: `ovn-trace` through the logical
//! flows northd built (ClusterIPs, TCP, UDP and SCTP, both families), and
//! a real `ovn-controller` chassis for what ovn-trace cannot evaluate
//! (23.03's ovn-trace leaves template variables unexpanded): NodePorts at
//! the node's address, the node-local view of `Local` policies, hairpin.
//!
//! SCTP connections cannot be made on these machines; its paths are
//! proven here through the flows, as for TCP and UDP.

mod common;
mod svc;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{annotation, eventually, Env};
use k8s_openapi::api::core::v1::ServiceSpec;
use ovn_testbed::{Chassis, ChassisOptions};
use svc::*;

/// `ovn-trace` of one packet, as an operator would run it.
fn trace(env: &Env, datapath: &str, flow: &str) -> String {
    let out = Command::new("ovn-trace")
        .arg(format!("--db={}", env.central.sb_remote()))
        .args(["--ct=new", "--ct=new", datapath, flow])
        .output()
        .expect("ovn-trace runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The flow of a packet from pod `from` to `dst:port` over `proto`.
fn pod_flow(
    c: &kube_memory::MemoryCluster,
    from: &str,
    v6: bool,
    dst: &str,
    proto: &str,
    port: u16,
) -> String {
    let net = annotation(&c.pod(NS, from).unwrap()).unwrap();
    let i = usize::from(v6);
    let (src, gw) = (net.ips[i].addr(), net.gateways[i]);
    let ip = if v6 { "ip6" } else { "ip4" };
    format!(
        "inport == \"{NS}_{from}\" && eth.src == {} && eth.dst == {} && {ip}.src == {src} && {ip}.dst == {dst} \
         && ip.ttl == 64 && {proto}.src == 40000 && {proto}.dst == {port}",
        net.mac,
        switchyard_api::mac::from_ip(gw),
    )
}

fn backends(ips: &[Vec<IpAddr>], v6: bool, port: u16) -> String {
    let mut v: Vec<std::net::SocketAddr> = ips
        .iter()
        .map(|p| std::net::SocketAddr::new(p[usize::from(v6)], port))
        .collect();
    v.sort();
    v.iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ovn_trace_load_balances_cluster_ips_over_tcp_udp_and_sctp() {
    let mut env = Env::new(&["10.244.0.0/16/24", "fd00:10:244::/48/64"]).await;
    env.config.service_cidrs = vec![
        "10.96.0.0/16".parse().unwrap(),
        "fd00:96::/112".parse().unwrap(),
    ];
    env.cluster.set_service_cidrs(&env.config.service_cidrs);
    let c = env.cluster.clone();
    c.apply_node(node("n1", &["192.168.0.1"]));
    c.apply_node(node("n2", &["192.168.0.2"]));
    let running = env.start();
    let b1 = ready_backend(&c, backend("b1", "n1", "app", 8080)).await;
    let b2 = ready_backend(&c, backend("b2", "n2", "app", 8080)).await;
    ready_backend(&c, backend("client", "n1", "client", 1)).await;
    c.apply_service(service(
        "multi",
        ServiceSpec {
            ip_family_policy: Some("RequireDualStack".into()),
            selector: selector("app"),
            ports: Some(vec![
                port("web", "TCP", 80, "8080"),
                port("dns", "UDP", 53, "5353"),
                port("sig", "SCTP", 9000, "9000"),
            ]),
            ..Default::default()
        },
    ));
    c.apply_service(service(
        "empty",
        ServiceSpec {
            selector: selector("nobody"),
            ports: Some(vec![port("", "TCP", 80, "80")]),
            ..Default::default()
        },
    ));
    let ips = cluster_ips(&c, "multi");
    eventually(T, "load balancers with backends", || {
        let lbs = load_balancers(&env);
        let ok = ["tcp", "udp", "sctp"].iter().all(|p| {
            lbs.get(&format!("svc:ns/multi:{p}")).is_some_and(|l| {
                l.vips.len() == 2 && l.vips.values().all(|v| v.split(',').count() == 2)
            })
        }) && lbs.contains_key("svc:ns/empty:tcp");
        ok.then_some(()).ok_or(format!("{lbs:#?}"))
    })
    .await;
    env.central.sync_sb(Duration::from_secs(20)).unwrap();

    let both = [b1.clone(), b2.clone()];
    for (v6, vip) in [(false, &ips[0]), (true, &ips[1])] {
        for (proto, port, target) in [("tcp", 80, 8080), ("udp", 53, 5353), ("sctp", 9000, 9000)] {
            let out = trace(
                &env,
                "node-n1",
                &pod_flow(&c, "client", v6, vip, proto, port),
            );
            let want = lb_action(&backends(&both, v6, target), proto);
            assert!(out.contains(&want), "{proto} to {vip}: no {want} in\n{out}");
        }
    }
    // From the node's host, through its management port.
    let (mgmt_ip, mgmt_mac, gw_mac) = host_side(&c, "n1");
    let out = trace(
        &env,
        "node-n1",
        &format!(
            "inport == \"mgmt-n1\" && eth.src == {mgmt_mac} && eth.dst == {gw_mac} && ip4.src == {mgmt_ip} \
             && ip4.dst == {} && ip.ttl == 64 && tcp.src == 40000 && tcp.dst == 80",
            ips[0]
        ),
    );
    assert!(
        out.contains(&lb_action(&backends(&both, false, 8080), "tcp")),
        "{out}"
    );
    // No endpoint: the connection is refused, not left to time out.
    let empty = cluster_ips(&c, "empty")[0].clone();
    let out = trace(
        &env,
        "node-n1",
        &pod_flow(&c, "client", false, &empty, "tcp", 80),
    );
    assert!(out.contains("reject"), "{out}");
    running.stop().await;
}

/// Polls the chassis' OpenFlow tables until `check` accepts them.
fn eventually_flows(
    chassis: &Chassis,
    what: &str,
    check: impl Fn(&str, &BTreeMap<String, String>) -> Result<(), String>,
) {
    let end = Instant::now() + T;
    loop {
        let flows = chassis
            .ofctl(&["-O", "OpenFlow15", "dump-flows"])
            .unwrap_or_default();
        let groups: BTreeMap<String, String> = chassis
            .ofctl(&["-O", "OpenFlow15", "dump-groups"])
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let id = l.trim().strip_prefix("group_id=")?.split(',').next()?;
                Some((id.to_string(), l.to_string()))
            })
            .collect();
        match check(&flows, &groups) {
            Ok(()) => return,
            Err(e) if Instant::now() > end => panic!("timed out waiting for {what}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// The group a flow matching every one of `needles` sends to, and its
/// buckets' NAT destinations.
fn balanced(
    flows: &str,
    groups: &BTreeMap<String, String>,
    needles: &[&str],
) -> Option<Vec<String>> {
    let line = flows
        .lines()
        .find(|l| needles.iter().all(|n| l.contains(n)) && l.contains("group:"))?;
    let id = line
        .split("group:")
        .nth(1)?
        .split(|c: char| !c.is_ascii_digit())
        .next()?;
    let group = groups.get(id)?;
    let mut dsts: Vec<String> = group
        .split("nat(dst=")
        .skip(1)
        .filter_map(|s| s.split(')').next().map(str::to_string))
        .collect();
    dsts.sort();
    Some(dsts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chassis_expands_node_ports_and_local_views_and_handles_hairpin() {
    let env = Env::new(&[]).await;
    let c = env.cluster.clone();
    c.apply_node(node("n1", &["192.168.0.11"]));
    c.apply_node(node("n2", &["192.168.0.12"]));
    let dir = tempfile::tempdir().unwrap();
    let chassis = Chassis::start(
        dir.path(),
        &env.central.sb_remote(),
        ChassisOptions::new("n1"),
    )
    .expect("chassis n1");
    chassis.wait_registered(T).unwrap();
    let running = env.start();
    let b1 = ready_backend(&c, backend("b1", "n1", "app", 8080)).await;
    let b2 = ready_backend(&c, backend("b2", "n2", "app", 8080)).await;
    // The node's host behind its management port, bound here.
    chassis
        .vsctl(&[
            "add-port",
            "br-int",
            "mgmt0",
            "--",
            "set",
            "interface",
            "mgmt0",
            "type=internal",
            "external_ids:iface-id=mgmt-n1",
        ])
        .unwrap();
    for (name, proto, target) in [
        ("np-tcp", "TCP", "8080"),
        ("np-udp", "UDP", "5353"),
        ("np-sctp", "SCTP", "9000"),
    ] {
        c.apply_service(service(
            name,
            ServiceSpec {
                type_: Some("NodePort".into()),
                selector: selector("app"),
                ports: Some(vec![port("", proto, 80, target)]),
                ..Default::default()
            },
        ));
    }
    c.apply_service(service(
        "itp",
        ServiceSpec {
            internal_traffic_policy: Some("Local".into()),
            selector: selector("app"),
            ports: Some(vec![port("", "TCP", 80, "8080")]),
            ..Default::default()
        },
    ));
    let both = [b1.clone(), b2.clone()];
    let nps: Vec<(String, &str, u16)> = [
        ("np-tcp", "tcp", 8080),
        ("np-udp", "udp", 5353),
        ("np-sctp", "sctp", 9000),
    ]
    .into_iter()
    .map(|(n, p, t)| (format!("tp_dst={}", node_port(&c, n)), p, t))
    .collect();
    let itp_ip = format!("nw_dst={}", cluster_ips(&c, "itp")[0]);
    eventually_flows(
        &chassis,
        "NodePorts and the local view in n1's OpenFlow",
        |flows, groups| {
            for (tp, proto, target) in &nps {
                let want: Vec<String> = backends(&both, false, *target)
                    .split(',')
                    .map(str::to_string)
                    .collect();
                let got = balanced(
                    flows,
                    groups,
                    &["ct_state=+new", proto, "nw_dst=192.168.0.11", tp],
                );
                if got.as_ref() != Some(&want) {
                    return Err(format!("{proto} {tp}: {got:?}, want {want:?}"));
                }
            }
            // internalTrafficPolicy Local: only n1's own endpoint here.
            let got = balanced(
                flows,
                groups,
                &["ct_state=+new", "tcp", &itp_ip, "tp_dst=80"],
            );
            let want = vec![format!("{}:8080", b1[0])];
            if got.as_ref() != Some(&want) {
                return Err(format!("local view: {got:?}, want {want:?}"));
            }
            // Hairpin: b1 reaching itself through the NodePort is handled
            // (ovn-controller's hairpin flows learn the reply's SNAT).
            let hairpin = format!("nw_src={},nw_dst={}", b1[0], b1[0]);
            if !flows
                .lines()
                .any(|l| l.contains(&hairpin) && l.contains("tp_dst=8080") && l.contains("learn("))
            {
                return Err(format!("no hairpin flow for {hairpin}"));
            }
            Ok(())
        },
    );
    // A packet from the host through mgmt0 to the NodePort reaches the
    // load balancer's group in vswitchd itself.
    let np = node_port(&c, "np-tcp");
    let (mgmt_ip, mgmt_mac, gw_mac) = host_side(&c, "n1");
    let ctl = chassis.dir().join("ovs-vswitchd.ctl");
    let out = Command::new("ovs-appctl")
        .arg("-t")
        .arg(&ctl)
        .args([
            "ofproto/trace",
            "br-int",
            &format!(
                "in_port=mgmt0,tcp,dl_src={mgmt_mac},dl_dst={gw_mac},nw_src={mgmt_ip},nw_dst=192.168.0.11,nw_ttl=64,tp_src=40000,tp_dst={np}"
            ),
            "--ct-next",
            "trk,new",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("group:"),
        "the traced packet reaches no load balancer group:\n{text}"
    );
    // The endpoint on n1 goes: the local view follows (to nothing).
    c.delete_pod(NS, "b1");
    eventually_flows(
        &chassis,
        "the local view emptied",
        |flows, groups| match balanced(
            flows,
            groups,
            &["ct_state=+new", "tcp", &itp_ip, "tp_dst=80"],
        ) {
            None => Ok(()),
            Some(g) => Err(format!("still {g:?}")),
        },
    );
    running.stop().await;
    drop(chassis);
}

/// Conntrack entries of `vswitchd` at `ctl` whose text has `needle`.
fn conntrack(ctl: &std::path::Path, needle: &str) -> Vec<String> {
    let out = Command::new("ovs-appctl")
        .arg("-t")
        .arg(ctl)
        .arg("dpctl/dump-conntrack")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_udp_backend_loses_its_conntrack_entries() {
    let env = Env::new(&[]).await;
    let c = env.cluster.clone();
    c.apply_node(node("n1", &["192.168.0.11"]));
    c.apply_node(node("n2", &["192.168.0.12"]));
    let dir = tempfile::tempdir().unwrap();
    let chassis = Chassis::start(
        dir.path(),
        &env.central.sb_remote(),
        ChassisOptions::new("n1"),
    )
    .expect("chassis n1");
    chassis.wait_registered(T).unwrap();
    let running = env.start();
    let gone = ready_backend(&c, backend("gone", "n2", "udp", 1)).await;
    c.apply_service(service(
        "dns",
        ServiceSpec {
            type_: Some("NodePort".into()),
            selector: selector("udp"),
            ports: Some(vec![port("", "UDP", 53, "5353")]),
            ..Default::default()
        },
    ));
    let np = node_port(&c, "dns");
    let (mgmt_ip, mgmt_mac, gw_mac) = host_side(&c, "n1");
    let gw = switchyard_api::addressing::gateway(
        format!("{mgmt_ip}/24")
            .parse::<ipnet::IpNet>()
            .unwrap()
            .trunc(),
    )
    .unwrap();
    // The node's host: its management interface in the chassis' namespace.
    chassis
        .vsctl(&[
            "add-port",
            "br-int",
            "mgmt0",
            "--",
            "set",
            "interface",
            "mgmt0",
            "type=internal",
            "external_ids:iface-id=mgmt-n1",
        ])
        .unwrap();
    let sh = |script: String| {
        let out = chassis.exec(&["sh", "-c", &script]).unwrap();
        assert!(
            out.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    sh(format!(
        "ip link set mgmt0 address {mgmt_mac} && ip addr add {mgmt_ip}/24 dev mgmt0 && ip link set mgmt0 up \
         && ip route add 192.168.0.11/32 via {gw} && ip neigh replace {gw} lladdr {gw_mac} dev mgmt0"
    ));
    let ctl = chassis.dir().join("ovs-vswitchd.ctl");
    let old = format!("src={}", gone[0]);
    eventually(T, "UDP conntrack entries towards the backend", || {
        // A UDP client on the host (bash picks a source port per send).
        for _ in 0..4 {
            let _ = chassis.exec(&[
                "bash",
                "-c",
                &format!("echo q > /dev/udp/192.168.0.11/{np}"),
            ]);
        }
        let n = conntrack(&ctl, &old).len();
        (n > 0).then_some(()).ok_or(format!("no entry with {old}"))
    })
    .await;
    // The backend goes (another one comes): its entries are flushed, so
    // the client's next datagram is balanced afresh. Well within the
    // userspace conntrack's UDP timeout (30 s), which alone would also
    // clear them eventually.
    ready_backend(&c, backend("next", "n2", "udp", 1)).await;
    c.delete_pod(NS, "gone");
    eventually(
        Duration::from_secs(10),
        "the removed backend's entries flushed",
        || {
            let left = conntrack(&ctl, &old);
            left.is_empty().then_some(()).ok_or(format!("{left:?}"))
        },
    )
    .await;
    running.stop().await;
    drop(chassis);
}

/// The load-balancing action northd writes for `backends`: chosen by a
/// hash of the 5-tuple (`selection_fields`), never by `dp_hash` (one more
/// recirculation, see the controller's `SELECTION_FIELDS`).
fn lb_action(backends: &str, proto: &str) -> String {
    format!(
        "ct_lb_mark(backends={backends}; hash_fields=\"ip_dst,ip_src,{proto}_dst,{proto}_src\");"
    )
}
