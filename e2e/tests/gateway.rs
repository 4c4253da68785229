//! Gateways with real packets, for IPv4, IPv6 and dual-stack: pods reach
//! a host outside the cluster (which sees the node IP as source), their
//! own node's IP (a hostNetwork server, which sees the pod's own address)
//! and other nodes' IPs (which see the pod's node IP: that traffic leaves
//! through the pod's gateway router, see `controller/src/translate/
//! gateway.rs`); node hosts and hostNetwork pods reach pods on every
//! node; pod → pod is never NATed. The dual-stack sandbox also goes
//! through a long TCP stream across a node-agent restart, an
//! `ovs-vswitchd` restart, a node address that changes and then goes
//! missing, and a converged controller restart.

mod common;

use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use switchyard_e2e::probe::{self, echo_server_command, python, whoami, Proto};
use switchyard_e2e::{pod_spec, IpFamily, Sandbox, SandboxOptions};

const NS: &str = "gw";
const T: Duration = common::PROBE_TIMEOUT;

fn families(f: IpFamily) -> Vec<bool> {
    match f {
        IpFamily::Ipv4 => vec![false],
        IpFamily::Ipv6 => vec![true],
        IpFamily::Dual => vec![false, true],
    }
}

fn of_family(ips: &[IpAddr], v6: bool) -> IpAddr {
    *ips.iter()
        .find(|i| i.is_ipv6() == v6)
        .expect("an address of the family")
}

/// Two nodes, a pod and a hostNetwork pod on each, all running the echo
/// server (named after the pod; the hostNetwork ones `host-node-K`).
fn start(family: IpFamily) -> (tempfile::TempDir, Sandbox) {
    common::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let mut opts = SandboxOptions::new(2, dir.path());
    opts.ip_family = family;
    let sb = common::up(opts).expect("sandbox up");
    for k in 1..=2 {
        let node = format!("node-{k}");
        let name = format!("pod-{k}");
        sb.create_pod(pod_spec(NS, &name, Some(&node), echo_server_command(&name)))
            .unwrap();
        let host = format!("host-{node}");
        let mut p = pod_spec(
            NS,
            &format!("host-{k}"),
            Some(&node),
            echo_server_command(&host),
        );
        p.spec.as_mut().unwrap().host_network = Some(true);
        sb.create_pod(p).unwrap();
    }
    sb.wait_pods_ready(Duration::from_secs(120)).unwrap();
    (dir, sb)
}

fn pod_netns(sb: &Sandbox, k: usize) -> String {
    sb.pod_netns(NS, &format!("pod-{k}")).unwrap()
}

/// Every path the gateways make, for each family the sandbox has.
fn assert_paths(sb: &Sandbox, family: IpFamily) {
    // The rows, as an operator sees them.
    let show = sb.nbctl(&["show"]).unwrap();
    for name in [
        "GR-node-1",
        "GR-node-2",
        "join",
        "ext-node-1",
        "lnet-node-2",
    ] {
        assert!(show.contains(name), "{name} not in ovn-nbctl show:\n{show}");
    }
    let chassis = sb
        .nbctl(&["get", "Logical_Router", "GR-node-2", "options:chassis"])
        .unwrap();
    assert_eq!(chassis.trim().trim_matches('"'), "node-2");

    let external = sb.external_ips();
    for v6 in families(family) {
        // Negative control: nothing answers at an address nobody has.
        let nobody: IpAddr = if v6 {
            "2001:db8:113::99"
        } else {
            "203.0.113.99"
        }
        .parse()
        .unwrap();
        assert!(probe::probe_once(&pod_netns(sb, 1), Proto::Tcp, nobody, None).is_err());
        for k in 1..=2 {
            let src = pod_netns(sb, k);
            let pod_ip = of_family(&sb.pod_ips(NS, &format!("pod-{k}")), v6);
            let node_ip = of_family(&sb.node_ips(k - 1), v6);
            // Pod → outside (underlay and "internet" address): the
            // external host sees the node IP.
            for dst in external.iter().filter(|i| i.is_ipv6() == v6) {
                let (name, peer) = whoami(&src, *dst, T)
                    .unwrap_or_else(|e| panic!("pod-{k} -> external {dst}: {e:#}"));
                assert_eq!(name, "external");
                assert_eq!(peer, node_ip, "pod-{k} -> {dst} should leave as its node");
                probe::probe(&src, Proto::Icmp, *dst, None, T)
                    .unwrap_or_else(|e| panic!("pod-{k} -> {dst} ping: {e:#}"));
            }
            // Pod → every node's IP: its own node's hostNetwork server sees
            // the pod, another node's sees the pod's node.
            for j in 1..=2 {
                let dst = of_family(&sb.node_ips(j - 1), v6);
                let (name, peer) = whoami(&src, dst, T)
                    .unwrap_or_else(|e| panic!("pod-{k} -> node-{j} {dst}: {e:#}"));
                assert_eq!(name, format!("host-node-{j}"));
                if j == k {
                    assert_eq!(peer, pod_ip, "pod-{k} -> its node is not NATed");
                } else {
                    assert_eq!(peer, node_ip, "pod-{k} -> node-{j} leaves as its node");
                }
                probe::probe(&src, Proto::Udp, dst, Some(&name), T)
                    .unwrap_or_else(|e| panic!("pod-{k} -> node-{j} {dst} udp: {e:#}"));
            }
            // Pod → pod: no NAT.
            let other = 3 - k;
            let dst = of_family(&sb.pod_ips(NS, &format!("pod-{other}")), v6);
            let (name, peer) = whoami(&src, dst, T).unwrap();
            assert_eq!(
                (name.as_str(), peer),
                (format!("pod-{other}").as_str(), pod_ip)
            );
            // Node host → outside, through the same bridge.
            let host = sb.node_netns(k - 1);
            for dst in external.iter().filter(|i| i.is_ipv6() == v6) {
                let (_, peer) = whoami(host, *dst, T)
                    .unwrap_or_else(|e| panic!("node-{k} host -> {dst}: {e:#}"));
                assert_eq!(peer, node_ip);
            }
            // Node host and hostNetwork pod → pods on every node.
            let host_pod = sb.pod_netns(NS, &format!("host-{k}")).unwrap();
            assert_eq!(host_pod, host, "a hostNetwork pod runs in its node");
            for j in 1..=2 {
                let name = format!("pod-{j}");
                let dst = of_family(&sb.pod_ips(NS, &name), v6);
                for proto in [Proto::Icmp, Proto::Tcp] {
                    probe::probe(host, proto, dst, Some(&name), T)
                        .unwrap_or_else(|e| panic!("node-{k} host -> {name} {dst} {proto}: {e:#}"));
                }
                let out = sb
                    .exec(
                        NS,
                        &format!("host-{k}"),
                        &[python(), "-c", probe_tcp(), &dst.to_string()],
                    )
                    .unwrap();
                assert_eq!(
                    String::from_utf8_lossy(&out.stdout).trim(),
                    name,
                    "hostNetwork host-{k} -> {name}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }
}

/// A one-shot TCP client of the echo server, retrying for a while.
fn probe_tcp() -> &'static str {
    r#"
import socket, sys, time
ip = sys.argv[1]
fam = socket.AF_INET6 if ":" in ip else socket.AF_INET
end = time.time() + 30
while True:
    try:
        s = socket.socket(fam, socket.SOCK_STREAM); s.settimeout(1.0)
        s.connect((ip, 8080)); print(s.recv(100).decode()); break
    except OSError:
        if time.time() > end: raise
        time.sleep(0.1)
"#
}

#[test]
fn ipv4_gateway_paths() {
    let _serial = common::serial();
    let (_dir, sb) = start(IpFamily::Ipv4);
    assert_paths(&sb, IpFamily::Ipv4);
    sb.down().unwrap();
}

#[test]
fn ipv6_gateway_paths() {
    let _serial = common::serial();
    let (_dir, sb) = start(IpFamily::Ipv6);
    assert_paths(&sb, IpFamily::Ipv6);
    sb.down().unwrap();
}

/// The gateway bridge's flows, `ovs-ofctl dump-flows` of node `i` (none
/// while the switch does not answer).
fn bridge_flows(sb: &Sandbox, i: usize) -> Vec<String> {
    let mgmt = sb.node_dir(i).join("br-phy.mgmt");
    let out = Command::new("ovs-ofctl")
        .args(["--timeout=10", "dump-flows"])
        .arg(format!("unix:{}", mgmt.display()))
        .output()
        .unwrap();
    if !out.status.success() {
        return Vec::new();
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("cookie="))
        .map(str::to_string)
        .collect()
}

/// `duration=` of every flow, in seconds, keyed by the flow without stats.
fn durations(flows: &[String]) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = flows
        .iter()
        .map(|l| {
            let d = l
                .split("duration=")
                .nth(1)
                .and_then(|r| r.split('s').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(-1.0);
            let key = l
                .split(", ")
                .filter(|f| {
                    !["duration=", "n_packets=", "n_bytes=", "idle_age="]
                        .iter()
                        .any(|p| f.trim_start().starts_with(p))
                })
                .collect::<Vec<_>>()
                .join(", ");
            (key, d)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// A TCP stream from inside `netns` to the external host's sink: sends
/// 1 KiB every 20 ms, prints `tick` every 250 ms, stops when stdin closes,
/// then prints what the sink received and its longest silence.
const STREAM_CLIENT: &str = r#"
import socket, sys, threading, time
ip = sys.argv[1]
fam = socket.AF_INET6 if ":" in ip else socket.AF_INET
end = time.time() + 30
while True:
    try:
        s = socket.socket(fam, socket.SOCK_STREAM); s.settimeout(30)
        s.connect((ip, 8100)); break
    except OSError:
        if time.time() > end: raise
        time.sleep(0.1)
print("connected", flush=True)
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
sent, last = 0, time.time()
while not stop.is_set():
    s.sendall(b"x" * 1024); sent += 1024
    if time.time() - last > 0.25:
        print("tick", flush=True); last = time.time()
    time.sleep(0.02)
s.shutdown(socket.SHUT_WR)
print("sent", sent, "got", s.recv(100).decode(), flush=True)
"#;

/// The external host's sink: per connection, counts bytes and the longest
/// gap between arrivals (ms), answers `BYTES GAP_MS` at EOF.
const STREAM_SINK: &str = r#"
import socket, threading, time
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::", 8100)); s.listen(16)
def serve(c):
    n, gap, last = 0, 0.0, None
    while True:
        d = c.recv(65536)
        now = time.time()
        if not d: break
        if last is not None: gap = max(gap, now - last)
        last, n = now, n + len(d)
    c.sendall(("%d %d" % (n, gap * 1000)).encode()); c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

/// Streams from pod-1 to the external host while `during` runs; returns
/// (bytes sent, bytes received, longest gap in ms).
fn stream_across(sb: &Sandbox, dst: IpAddr, during: impl FnOnce()) -> (u64, u64, u64) {
    let mut child = Command::new("ip")
        .args([
            "netns",
            "exec",
            &pod_netns(sb, 1),
            python(),
            "-c",
            STREAM_CLIENT,
        ])
        .arg(dst.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next = || lines.next().and_then(|l| l.ok()).unwrap_or_default();
    assert_eq!(next(), "connected");
    // Streaming for a while before, during, and a while after.
    for _ in 0..4 {
        assert_eq!(next(), "tick");
    }
    during();
    for _ in 0..12 {
        assert_eq!(next(), "tick", "the stream stopped after the restart");
    }
    drop(child.stdin.take());
    let last = next();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the stream failed: {last} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let nums: Vec<u64> = last
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert_eq!(nums.len(), 3, "{last}");
    (nums[0], nums[1], nums[2])
}

/// Sets node `i`'s IPv4 on br-phy (replacing `old`, when given) with a
/// default route via the external host; `None` leaves it without.
fn set_ipv4(sb: &Sandbox, i: usize, old: Option<IpAddr>, new: Option<IpAddr>) {
    let ns = sb.node_netns(i).to_string();
    let ip = |args: &[&str]| {
        let out = Command::new("ip")
            .arg("-n")
            .arg(&ns)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    if let Some(o) = old {
        ip(&["addr", "del", &format!("{o}/24"), "dev", "br-phy"]);
    }
    if let Some(n) = new {
        ip(&["addr", "add", &format!("{n}/24"), "dev", "br-phy"]);
        let gw = of_family(&sb.external_ips(), false).to_string();
        ip(&["route", "replace", "default", "via", &gw, "dev", "br-phy"]);
    }
}

fn gateway_networks(sb: &Sandbox, node: &str) -> String {
    sb.nbctl(&[
        "get",
        "Logical_Router_Port",
        &format!("rtoe-GR-{node}"),
        "networks",
    ])
    .unwrap_or_default()
}

#[test]
fn dual_stack_gateways_survive_restarts_and_follow_addresses() {
    let _serial = common::serial();
    let (_dir, sb) = start(IpFamily::Dual);
    assert_paths(&sb, IpFamily::Dual);
    let sink = Command::new("ip")
        .args([
            "netns",
            "exec",
            &sb.external_netns(),
            python(),
            "-c",
            STREAM_SINK,
        ])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _sink = Kill(sink);
    let internet = sb.external_ips()[2];

    // 1. A node-agent restart: the stream goes on, the flows stay.
    let before = durations(&bridge_flows(&sb, 0));
    assert!(before.len() >= 15, "{before:?}");
    let (sent, got, gap) = stream_across(&sb, internet, || {
        sb.restart_node_agent(0).unwrap();
        // Converged: nothing to replace.
        let after = durations(&bridge_flows(&sb, 0));
        assert_eq!(
            after.iter().map(|a| &a.0).collect::<Vec<_>>(),
            before.iter().map(|b| &b.0).collect::<Vec<_>>(),
            "the same flows"
        );
        for ((k, b), (_, a)) in before.iter().zip(&after) {
            assert!(a >= b, "{k} was replaced: duration {b} -> {a}");
        }
    });
    eprintln!(
        "stream across the agent restart: {sent} bytes sent, {got} received, longest gap {gap} ms"
    );
    assert_eq!(sent, got, "bytes lost");
    assert!(sent > 16 * 1024, "{sent} bytes: too short a stream to tell");
    assert!(
        gap < 2000,
        "the stream stalled {gap} ms across the agent restart"
    );

    // 2. An ovs-vswitchd restart: flows, the bridge's addresses and the
    //    paths come back.
    sb.restart_vswitchd(0).unwrap();
    common::wait(
        Duration::from_secs(60),
        "node-1's gateway bridge flows restored",
        || {
            let flows = bridge_flows(&sb, 0);
            (flows.iter().all(|f| f.contains("cookie=0x53594757")) && flows.len() >= 15)
                .then_some(())
                .ok_or(format!("{flows:#?}"))
        },
    );
    for v6 in [false, true] {
        let (_, peer) = whoami(
            &pod_netns(&sb, 1),
            of_family(&sb.external_ips()[2..], v6),
            T,
        )
        .expect("pod-1 reaches outside after the vswitchd restart");
        assert_eq!(peer, of_family(&sb.node_ips(0), v6));
    }
    assert_paths(&sb, IpFamily::Dual);

    // 3. node-2's IPv4 changes: its gateway follows.
    let old = of_family(&sb.node_ips(1), false);
    let new: IpAddr = match old {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            IpAddr::V4([o[0], o[1], o[2], o[3] + 100].into())
        }
        IpAddr::V6(_) => unreachable!(),
    };
    set_ipv4(&sb, 1, Some(old), Some(new));
    common::wait(T, "GR-node-2 follows the new address", || {
        let n = gateway_networks(&sb, "node-2");
        n.contains(&format!("{new}/24")).then_some(()).ok_or(n)
    });
    let (_, peer) = whoami(&pod_netns(&sb, 2), internet, T).unwrap();
    assert_eq!(peer, new, "pod-2 leaves as node-2's new address");

    // 4. ... then goes missing: an Event, and no IPv4 in its gateway.
    set_ipv4(&sb, 1, Some(new), None);
    common::wait(T, "an Event about node-2's missing address", || {
        sb.cluster()
            .events()
            .iter()
            .any(|e| e.reason == "NodeAddressMissing" && e.regarding.name == "node-2")
            .then_some(())
            .ok_or("no Event yet".to_string())
    });
    common::wait(T, "GR-node-2 without IPv4", || {
        let n = gateway_networks(&sb, "node-2");
        (!n.contains('.')).then_some(()).ok_or(n)
    });
    assert!(probe::probe_once(&pod_netns(&sb, 2), Proto::Tcp, internet, None).is_err());
    // IPv6 still leaves.
    let v6_out = of_family(&sb.external_ips()[2..], true);
    assert_eq!(
        whoami(&pod_netns(&sb, 2), v6_out, T).unwrap().1,
        of_family(&sb.node_ips(1), true)
    );

    // 5. Restored: everything works again, and a controller restart on
    //    the converged cluster writes nothing to NB.
    set_ipv4(&sb, 1, None, Some(old));
    common::wait(T, "GR-node-2 back on its address", || {
        let n = gateway_networks(&sb, "node-2");
        n.contains(&format!("{old}/24")).then_some(()).ok_or(n)
    });
    assert_paths(&sb, IpFamily::Dual);
    sb.restart_controller().unwrap();
    let m = sb.controller_metrics().unwrap();
    common::wait(T, "the restarted controller in sync", || {
        m.health
            .synced()
            .then_some(())
            .ok_or("not synced".to_string())
    });
    assert_eq!(
        m.nb_operations.get(),
        0,
        "NB operations on a converged restart"
    );
    sb.down().unwrap();
}
