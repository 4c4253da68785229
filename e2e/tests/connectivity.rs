//! 3 nodes, 2 pods each: every pod reaches every other pod over ICMP, TCP
//! and UDP, across nodes and on the same node; every node's host reaches
//! every pod on it. For IPv4, dual-stack (both families) and IPv6.

mod common;

use std::time::Duration;

use switchyard_e2e::probe::{self, echo_server_command, Proto};
use switchyard_e2e::{pod_spec, IpFamily, Sandbox, SandboxOptions};

fn connectivity(family: IpFamily) {
    common::init_tracing();
    let _serial = common::serial();
    let dir = tempfile::tempdir().unwrap();
    let mut opts = SandboxOptions::new(3, dir.path());
    opts.ip_family = family;
    let sb = common::up(opts).expect("sandbox up");
    let mut pods = Vec::new();
    for i in 0..6 {
        let name = format!("pod-{i}");
        sb.create_pod(pod_spec("conn", &name, None, echo_server_command(&name)))
            .unwrap();
        pods.push(("conn".to_string(), name));
    }
    sb.wait_pods_ready(Duration::from_secs(120)).unwrap();

    // Spread: two per node.
    for node in 0..3 {
        let n = pods
            .iter()
            .filter(|(ns, p)| sb.pod_node_index(ns, p) == Some(node))
            .count();
        assert_eq!(n, 2, "node {node} should run two pods");
    }
    let want = match family {
        IpFamily::Dual => 2,
        _ => 1,
    };
    for (ns, p) in &pods {
        let ips = sb.pod_ips(ns, p);
        assert_eq!(ips.len(), want, "{p}: {ips:?}");
        if family == IpFamily::Ipv6 {
            assert!(ips[0].is_ipv6());
        }
    }
    // Negative control: the probes can fail (an address nobody has).
    let src = sb.pod_netns("conn", "pod-0").unwrap();
    let nobody = if family == IpFamily::Ipv6 {
        "fd00:10:244:99::99".parse().unwrap()
    } else {
        "10.244.99.99".parse().unwrap()
    };
    for proto in [Proto::Icmp, Proto::Tcp, Proto::Udp] {
        assert!(probe::probe_once(&src, proto, nobody, None).is_err());
    }
    common::assert_full_mesh(&sb, &pods);
    common::assert_hosts_reach_their_pods(&sb, &pods);
    assert_full_size_packets_cross_nodes(&sb, &pods);
    sb.down().unwrap();
}

/// Geneve costs 58 bytes of IPv4 underlay: a pod MTU too large for the
/// underlay loses full-size packets silently while small pings pass. So
/// send full-size, don't-fragment pings between pods on different nodes,
/// and check that one byte more is refused rather than sent.
fn assert_full_size_packets_cross_nodes(sb: &Sandbox, pods: &[(String, String)]) {
    let (a_ns, a) = &pods[0];
    let (b_ns, b) = pods
        .iter()
        .find(|(ns, p)| sb.pod_node_index(ns, p) != sb.pod_node_index(a_ns, a))
        .expect("a pod on another node");
    let src = sb.pod_netns(a_ns, a).unwrap();
    let mtu = switchyard_e2e::sandbox::MTU as usize;
    for dst in sb.pod_ips(b_ns, b) {
        let header = if dst.is_ipv6() { 40 + 8 } else { 20 + 8 };
        let ping = |payload: usize| {
            std::process::Command::new("ip")
                .args([
                    "netns", "exec", &src, "ping", "-M", "do", "-c", "1", "-W", "1",
                ])
                .arg("-s")
                .arg(payload.to_string())
                .arg(dst.to_string())
                .output()
                .expect("run ping")
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let out = ping(mtu - header);
            if out.status.success() {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "full-size ({mtu}-byte) DF ping {a} -> {b} ({dst}) never got through: {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        let too_big = ping(mtu - header + 1);
        assert!(
            !too_big.status.success(),
            "a {}-byte DF packet left a {mtu}-byte interface",
            mtu + 1
        );
    }
}

#[test]
fn ipv4_pods_reach_each_other_and_their_hosts() {
    connectivity(IpFamily::Ipv4);
}

#[test]
fn dual_stack_pods_reach_each_other_over_both_families() {
    connectivity(IpFamily::Dual);
}

#[test]
fn ipv6_pods_reach_each_other_and_their_hosts() {
    connectivity(IpFamily::Ipv6);
}
