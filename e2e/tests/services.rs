//! Services with real connections, for IPv4, IPv6 and dual-stack: one
//! two-node sandbox per family, shared by every case of that family.
//!
//! Every family, from pods: a NodePort Service with three ports of two
//! protocols (TCP 80→8080, UDP 53→8081, TCP 90→8090) answers on its
//! ClusterIP(s) from every backend, the server seeing the client pod's own
//! address, and on its NodePorts at the pod's node's address; a
//! LoadBalancer Service gets an address per family from the controller's
//! pool and answers there, as do `externalIPs`; headless and ExternalName
//! Services get no load balancer. On the dual-stack sandbox the Service is
//! `RequireDualStack` and both ClusterIPs answer.
//!
//! The IPv4 sandbox also proves: a pod reaching itself through its own
//! Service (hairpin, TCP and UDP); `sessionAffinity: ClientIP` keeping one
//! client on one backend and letting go after its timeout;
//! `internalTrafficPolicy: Local` (a pod reaches only its own node's
//! backend); endpoints churned under a client that keeps connecting (the
//! longest interruption is printed); a deleted Service leaves no NB row; a
//! converged controller restart writes nothing to NB.
//!
//! [`from_node_hosts_and_outside`] (dual-stack) covers what does not start
//! in a pod: node hosts to ClusterIPs and NodePorts, the
//! external host to NodePorts on every node, LoadBalancer and external
//! IPs, and `externalTrafficPolicy: Local` (client address kept, remote
//! endpoints unused).
//! [`udp_client_survives_server_pod_cycle`] keeps one UDP client's source
//! port while its only backend is replaced (the node agents flush the gone
//! backend's conntrack entries).
//!
//! `SWITCHYARD_SVC_CHURN_ROUNDS=N` (default 3) sets the endpoint churn's
//! rounds (one pod added and one removed each) for a longer run by hand.

mod common;
#[path = "svc/mod.rs"]
mod svc;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use switchyard_controller::k8s::Kind;
use switchyard_e2e::probe::{self, Prober, Proto, UdpStream};
use switchyard_e2e::{IpFamily, Sandbox, SandboxOptions};

use svc::{all_answer, answers, cluster_ips, node_port, pod, service, NS};

const T: Duration = common::PROBE_TIMEOUT;
const WEB: [&str; 2] = ["web-1", "web-2"];
const POOL_V4: &str = "192.0.2.0/28";
const POOL_V6: &str = "2001:db8:1b::/124";
const EXTERNAL_V4: &str = "192.0.2.100";
const EXTERNAL_V6: &str = "2001:db8:e::100";

fn v6s(family: IpFamily) -> Vec<bool> {
    match family {
        IpFamily::Ipv4 => vec![false],
        IpFamily::Ipv6 => vec![true],
        IpFamily::Dual => vec![false, true],
    }
}

/// Two nodes; web-1 and web-2 (the backends, one per node), client on
/// node-1 and client-2 on node-2, all running the echo server.
fn start(family: IpFamily) -> (tempfile::TempDir, Sandbox) {
    common::init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut opts = SandboxOptions::new(2, dir.path());
    opts.ip_family = family;
    opts.load_balancer_pool = v6s(family)
        .into_iter()
        .map(|v6| if v6 { POOL_V6 } else { POOL_V4 }.to_string())
        .collect();
    let sb = common::up(opts).expect("sandbox up");
    pod(&sb, "web-1", 1, &[("app", "web")]);
    pod(&sb, "web-2", 2, &[("app", "web")]);
    pod(&sb, "client", 1, &[("app", "client")]);
    pod(&sb, "client-2", 2, &[("role", "client")]);
    (dir, sb)
}

/// The core Services of the family: `web` (NodePort, three ports),
/// `web-lb` (LoadBalancer), `web-ext` (externalIPs), `headless`,
/// `alias` (ExternalName).
fn core_yaml(family: IpFamily) -> String {
    let policy = if family == IpFamily::Dual {
        "ipFamilyPolicy: RequireDualStack"
    } else {
        "ipFamilyPolicy: SingleStack"
    };
    let ext: Vec<&str> = v6s(family)
        .into_iter()
        .map(|v6| if v6 { EXTERNAL_V6 } else { EXTERNAL_V4 })
        .collect();
    format!(
        r#"
apiVersion: v1
kind: Service
metadata: {{name: headless, namespace: {NS}}}
spec:
  clusterIP: None
  selector: {{app: web}}
  ports: [{{name: echo, port: 80, targetPort: 8080}}]
---
apiVersion: v1
kind: Service
metadata: {{name: alias, namespace: {NS}}}
spec:
  type: ExternalName
  externalName: example.com
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: {NS}}}
spec:
  type: NodePort
  {policy}
  selector: {{app: web}}
  ports:
  - {{name: echo, port: 80, targetPort: 8080, protocol: TCP}}
  - {{name: echo-udp, port: 53, targetPort: 8081, protocol: UDP}}
  - {{name: whoami, port: 90, targetPort: 8090, protocol: TCP}}
---
apiVersion: v1
kind: Service
metadata: {{name: web-lb, namespace: {NS}}}
spec:
  type: LoadBalancer
  {policy}
  selector: {{app: web}}
  ports: [{{name: echo, port: 80, targetPort: 8080}}]
---
apiVersion: v1
kind: Service
metadata: {{name: web-ext, namespace: {NS}}}
spec:
  {policy}
  selector: {{app: web}}
  externalIPs: {ext:?}
  ports: [{{name: echo, port: 80, targetPort: 8080}}]
"#
    )
}

fn of_family(ips: &[IpAddr], v6: bool) -> IpAddr {
    *ips.iter()
        .find(|i| i.is_ipv6() == v6)
        .expect("an address of the family")
}

/// Applies the core Services and waits for every pod.
fn apply_core(sb: &Sandbox, family: IpFamily) {
    sb.apply_yaml(&core_yaml(family)).expect("core Services");
    sb.wait_pods_ready(Duration::from_secs(120))
        .expect("pods ready");
}

/// Every in-cluster core case of the family: from pods.
fn core(sb: &Sandbox, family: IpFamily) {
    apply_core(sb, family);
    let client = sb.pod_netns(NS, "client").expect("client runs");
    let web = service(sb, "web");
    let cips = cluster_ips(&web);
    assert_eq!(cips.len(), v6s(family).len(), "ClusterIPs: {web}");

    // ClusterIP(s) from a pod: every backend, every port, both protocols;
    // the server sees the client pod itself (no SNAT).
    for &cip in &cips {
        let started = Instant::now();
        all_answer(&client, Proto::Tcp, cip, 80, &WEB, T);
        eprintln!(
            "web {cip}:80 answered by both after {:?}",
            started.elapsed()
        );
        all_answer(&client, Proto::Udp, cip, 53, &WEB, T);
        let me = of_family(&sb.pod_ips(NS, "client"), cip.is_ipv6());
        for a in answers(&client, Proto::Tcp, cip, 90, 4, T) {
            let peer = a.split(' ').nth(1).unwrap_or_default();
            assert_eq!(peer, me.to_string(), "whoami via {cip}: {a}");
        }
        // Nothing answers on a port the Service does not have.
        assert!(probe::ask(&client, Proto::Tcp, cip, 8080).is_err());
    }

    // NodePorts at the pod's own node's address (the node switch's
    // template load balancer), TCP and UDP.
    let (np_tcp, np_udp) = (node_port(&web, "echo"), node_port(&web, "echo-udp"));
    for v6 in v6s(family) {
        let ip = of_family(&sb.node_ips(0), v6);
        all_answer(&client, Proto::Tcp, ip, np_tcp, &WEB, T);
        all_answer(&client, Proto::Udp, ip, np_udp, &WEB, T);
    }

    // LoadBalancer: an address per family from the pool; from a pod it is
    // load balanced like the ClusterIP. externalIPs likewise.
    let ingress = svc::wait_ingress(sb, "web-lb", cips.len(), T);
    for ip in &ingress {
        let pool = if ip.is_ipv6() { POOL_V6 } else { POOL_V4 };
        let net: ipnet::IpNet = pool.parse().expect("pool");
        assert!(net.contains(ip), "{ip} is not from the pool {pool}");
        all_answer(&client, Proto::Tcp, *ip, 80, &WEB, T);
    }
    for v6 in v6s(family) {
        let ext: IpAddr = if v6 { EXTERNAL_V6 } else { EXTERNAL_V4 }
            .parse()
            .expect("address");
        all_answer(&client, Proto::Tcp, ext, 80, &WEB, T);
    }

    // Headless and ExternalName: no load balancer (the others have theirs,
    // so the controller has been through every Service).
    for name in ["web", "web-lb", "web-ext"] {
        assert!(!svc::lbs_of(sb, name).is_empty(), "{name} has no LB rows");
    }
    for name in ["headless", "alias"] {
        let rows = svc::lbs_of(sb, name);
        assert!(rows.is_empty(), "{name} has LB rows: {rows:?}");
    }
}

/// What arrives from outside the pod network: a node host's connections
/// (to a ClusterIP, to NodePorts), and the external host's (NodePorts on
/// every node's address, the LoadBalancer IP and an external IP routed to
/// a node).
fn outside(sb: &Sandbox, family: IpFamily) {
    let client = sb.pod_netns(NS, "client").expect("client runs");
    let host = sb.node_netns(1).to_string();
    let external = sb.external_netns();
    let web = service(sb, "web");
    // Node-2's host reaches the ClusterIP through its management port,
    // the backend on its own node (web-2) included.
    for &cip in &cluster_ips(&web) {
        all_answer(&host, Proto::Tcp, cip, 80, &WEB, T);
    }
    let (np_tcp, np_udp) = (node_port(&web, "echo"), node_port(&web, "echo-udp"));
    for v6 in v6s(family) {
        for i in 0..sb.node_count() {
            let ip = of_family(&sb.node_ips(i), v6);
            all_answer(&external, Proto::Tcp, ip, np_tcp, &WEB, T);
            all_answer(&external, Proto::Udp, ip, np_udp, &WEB, T);
            all_answer(&client, Proto::Tcp, ip, np_tcp, &WEB, T);
            // Node-2's host, to its own address too (policy routing sends
            // it through the management port).
            all_answer(&host, Proto::Tcp, ip, np_tcp, &WEB, T);
        }
    }
    let ingress = svc::wait_ingress(sb, "web-lb", v6s(family).len(), T);
    for ip in &ingress {
        let pool = if ip.is_ipv6() { POOL_V6 } else { POOL_V4 };
        svc::route_via_node(sb, pool, 0);
        all_answer(&external, Proto::Tcp, *ip, 80, &WEB, T);
    }
    for v6 in v6s(family) {
        let ext = if v6 { EXTERNAL_V6 } else { EXTERNAL_V4 };
        svc::route_via_node(sb, ext, 1);
        let ip: IpAddr = ext.parse().expect("address");
        all_answer(&external, Proto::Tcp, ip, 80, &WEB, T);
    }
}

#[test]
fn ipv6_services() {
    let _serial = common::serial();
    let (_dir, sb) = start(IpFamily::Ipv6);
    core(&sb, IpFamily::Ipv6);
    sb.down().expect("down");
}

#[test]
fn dual_stack_services() {
    let _serial = common::serial();
    let (_dir, sb) = start(IpFamily::Dual);
    core(&sb, IpFamily::Dual);
    sb.down().expect("down");
}

#[test]
fn ipv4_services() {
    let _serial = common::serial();
    let (_dir, sb) = start(IpFamily::Ipv4);
    // Pods of the later cases start while the core ones run.
    pod(&sb, "lo-1", 1, &[("app", "lo")]);
    pod(&sb, "lo-2", 2, &[("app", "lo")]);
    pod(&sb, "churn-1", 1, &[("app", "churn")]);
    pod(&sb, "churn-2", 2, &[("app", "churn")]);
    sb.apply_yaml(EXTRA_YAML).expect("Services");
    core(&sb, IpFamily::Ipv4);
    hairpin(&sb);
    affinity(&sb);
    internal_local(&sb);
    churn(&sb);
    deleted_and_restarted(&sb);
    sb.down().expect("down");
}

/// The upstream "should be able to preserve UDP traffic when server pod
/// cycles", see [`udp_server_cycles`].
///
/// ovn-controller flushes the removed backend's conntrack entries
/// (`ct_flush`), but the stream's next datagram, 20 ms later, can still
/// meet the datapath's cached flows of before the change (the userspace
/// datapath revalidates them after the OpenFlow change, asynchronously)
/// and re-create the entry to the gone backend, which the stream then
/// keeps alive. The node agent flushes the removed backend again on a
/// schedule that outlasts that window (`switchyard_node::udp_flush`). A
/// failure shows the nodes' conntrack entries and the flushes
/// ovn-controller logged.
#[test]
fn udp_client_survives_server_pod_cycle() {
    let _serial = common::serial();
    let (_dir, sb) = start(IpFamily::Ipv4);
    pod(&sb, "udp-1", 2, &[("app", "udp")]);
    // The replacement, unlabelled until the swap: its address is surely
    // not the old one's.
    pod(&sb, "udp-2", 2, &[]);
    sb.apply_yaml(EXTRA_YAML).expect("Services");
    sb.wait_pods_ready(Duration::from_secs(120))
        .expect("pods ready");
    udp_server_cycles(&sb);
    sb.down().expect("down");
}

/// Connections from node hosts and from outside the cluster: the node
/// host → ClusterIP, NodePorts on every node's address (from outside, a
/// pod, a node host), the LoadBalancer and external IPs from outside, and
/// `externalTrafficPolicy: Local`. Dual-stack, so both families.
#[test]
fn from_node_hosts_and_outside() {
    let _serial = common::serial();
    let (_dir, sb) = start(IpFamily::Dual);
    pod(&sb, "lo-1", 1, &[("app", "lo")]);
    pod(&sb, "lo-2", 2, &[("app", "lo")]);
    sb.apply_yaml(EXTRA_YAML).expect("Services");
    apply_core(&sb, IpFamily::Dual);
    outside(&sb, IpFamily::Dual);
    external_local(&sb);
    sb.down().expect("down");
}

const EXTRA_YAML: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: self, namespace: svc}
spec:
  selector: {app: client}
  ports:
  - {name: echo, port: 80, targetPort: 8080}
  - {name: echo-udp, port: 81, targetPort: 8081, protocol: UDP}
---
apiVersion: v1
kind: Service
metadata: {name: sticky, namespace: svc}
spec:
  selector: {app: web}
  sessionAffinity: ClientIP
  sessionAffinityConfig: {clientIP: {timeoutSeconds: 3}}
  ports: [{name: echo, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: itp, namespace: svc}
spec:
  selector: {app: lo}
  internalTrafficPolicy: Local
  ports: [{name: echo, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: etp, namespace: svc}
spec:
  type: NodePort
  externalTrafficPolicy: Local
  selector: {app: lo}
  ports: [{name: whoami, port: 90, targetPort: 8090}]
---
apiVersion: v1
kind: Service
metadata: {name: churn, namespace: svc}
spec:
  selector: {app: churn}
  ports: [{name: echo, port: 8080, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: udp, namespace: svc}
spec:
  selector: {app: udp}
  ports: [{name: echo, port: 8081, targetPort: 8081, protocol: UDP}]
"#;

fn cluster_ip(sb: &Sandbox, name: &str) -> IpAddr {
    cluster_ips(&service(sb, name))[0]
}

/// A pod reaches itself through its own Service.
fn hairpin(sb: &Sandbox) {
    let client = sb.pod_netns(NS, "client").expect("client");
    all_answer(
        &client,
        Proto::Tcp,
        cluster_ip(sb, "self"),
        80,
        &["client"],
        T,
    );
    let udp: Vec<String> = answers(&client, Proto::Udp, cluster_ip(sb, "self"), 81, 2, T);
    assert_eq!(udp, ["client", "client"]);
}

/// ClientIP affinity: one backend while the client keeps coming back
/// within the timeout (with two backends, eight equal answers by chance
/// are 1 in 128); once it stays away longer than the timeout a new choice
/// is made, so the other backend answers within a few idle periods.
fn affinity(sb: &Sandbox) {
    let client = sb.pod_netns(NS, "client").expect("client");
    let ip = cluster_ip(sb, "sticky");
    let timeout = Duration::from_secs(3);
    let first = answers(&client, Proto::Tcp, ip, 80, 1, T).remove(0);
    let mut last = Instant::now();
    let mut same = 0;
    while same < 8 {
        let a = answers(&client, Proto::Tcp, ip, 80, 1, T).remove(0);
        if last.elapsed() >= timeout {
            // The machine stalled past the timeout: a new choice is
            // allowed, start over from it.
            eprintln!("affinity: an ask took longer than the timeout, starting over");
            same = 0;
        } else {
            assert_eq!(a, first, "ClientIP affinity broken within the timeout");
            same += 1;
        }
        last = Instant::now();
    }
    let mut idle_periods = 0;
    let mut first_lost = 0;
    loop {
        // Waiting out the affinity timer itself (a duration of the
        // protocol, nothing to poll for).
        std::thread::sleep(timeout + Duration::from_millis(1500));
        idle_periods += 1;
        // The first connection after the timeout: on OVN 23.03 its SYN is
        // lost (the one that creates the affinity entry; the client's
        // retransmission a second later is answered), so only counted.
        let a = match probe::ask(&client, Proto::Tcp, ip, 80) {
            Ok(a) => a,
            Err(_) => {
                first_lost += 1;
                answers(&client, Proto::Tcp, ip, 80, 1, T).remove(0)
            }
        };
        if a != first {
            eprintln!(
                "affinity: {first} then {a} after {idle_periods} idle periods; \
                 first connection after the timeout lost {first_lost} times of {idle_periods}"
            );
            break;
        }
        assert!(
            idle_periods < 16,
            "{first} kept answering after 16 idle periods past the timeout"
        );
    }
}

/// internalTrafficPolicy Local: from either node, only that node's
/// backend answers (with two backends, eight by chance are 1 in 256).
fn internal_local(sb: &Sandbox) {
    let itp = cluster_ip(sb, "itp");
    for (client, want) in [("client", "lo-1"), ("client-2", "lo-2")] {
        let netns = sb.pod_netns(NS, client).expect("client");
        for a in answers(&netns, Proto::Tcp, itp, 80, 8, T) {
            assert_eq!(a, want, "internalTrafficPolicy Local from {client}");
        }
    }
}

/// externalTrafficPolicy Local from outside via either node: only the
/// node's own backend answers and sees the external client's address;
/// then via a node whose only local backend left: refused.
fn external_local(sb: &Sandbox) {
    let external = sb.external_netns();
    let src = of_family(&sb.external_ips(), false);
    let np = node_port(&service(sb, "etp"), "whoami");
    for (i, want) in [(0, "lo-1"), (1, "lo-2")] {
        let node = of_family(&sb.node_ips(i), false);
        for a in answers(&external, Proto::Tcp, node, np, 6, T) {
            assert_eq!(
                a,
                format!("{want} {src}"),
                "externalTrafficPolicy Local via node-{}: only the local backend, the client's own address",
                i + 1
            );
        }
    }
    // lo-2 leaves the Service: node-2 has no local backend any more.
    sb.label(
        Kind::Pod,
        NS,
        "lo-2",
        &Default::default(),
        &["app".to_string()],
    )
    .expect("label");
    let node2 = of_family(&sb.node_ips(1), false);
    svc::wait_refused(&external, node2, np, 3, T);
    let node1 = of_family(&sb.node_ips(0), false);
    assert_eq!(
        answers(&external, Proto::Tcp, node1, np, 1, T)[0],
        format!("lo-1 {src}")
    );
}

fn churn_rounds() -> usize {
    std::env::var("SWITCHYARD_SVC_CHURN_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
}

/// Backends added and removed while a client connects to the ClusterIP
/// every 100 ms.
fn churn(sb: &Sandbox) {
    let client = sb.pod_netns(NS, "client").expect("client");
    let ip = cluster_ip(sb, "churn");
    all_answer(&client, Proto::Tcp, ip, 8080, &["churn-1", "churn-2"], T);
    let prober = Prober::start(&client, Proto::Tcp, ip, None);
    let mut live: Vec<String> = vec!["churn-1".into(), "churn-2".into()];
    for round in 0..churn_rounds() {
        let name = format!("churn-{}", round + 3);
        pod(sb, &name, 1 + round % 2, &[("app", "churn")]);
        sb.wait_pods_ready(Duration::from_secs(120))
            .expect("new backend ready");
        live.push(name);
        let gone = live.remove(0);
        sb.delete("pod", NS, &gone).expect("delete a backend");
        // Exactly the live backends answer: the new one was added, the
        // deleted one is gone.
        let want: Vec<&str> = live.iter().map(String::as_str).collect();
        all_answer(&client, Proto::Tcp, ip, 8080, &want, T);
    }
    let t = Instant::now();
    prober
        .wait_ok_after(t, T)
        .expect("the client answered after churn");
    let report = prober.finish();
    eprintln!("endpoint churn ({} rounds): {report}", churn_rounds());
    assert!(
        report.longest_outage < Duration::from_secs(10),
        "the client lost the Service for {:?} during churn ({report})",
        report.longest_outage
    );
}

/// The upstream "preserve UDP traffic when server pod cycles": a client
/// keeps sending from one source port; its only backend is replaced; the
/// datagrams reach the new one (its old conntrack entry, DNAT to the gone
/// backend, must not hold them).
fn udp_server_cycles(sb: &Sandbox) {
    let client = sb.pod_netns(NS, "client").expect("client");
    let ip = cluster_ip(sb, "udp");
    all_answer(&client, Proto::Udp, ip, 8081, &["udp-1"], T);
    assert_ne!(sb.pod_ips(NS, "udp-1"), sb.pod_ips(NS, "udp-2"));
    // ovn-controller logs each conntrack flush it sends at debug level:
    // what the failure message shows.
    for i in 0..sb.node_count() {
        let _ = svc::ovn_controller_appctl(sb, i, &["vlog/set", "ofctrl:file:dbg"]);
    }
    let start = Instant::now();
    let stream = UdpStream::start(&client, ip).expect("UDP stream");
    stream
        .wait_answer_from("udp-1", start, T)
        .expect("udp-1 answered the stream");
    sb.delete("pod", NS, "udp-1").expect("delete udp-1");
    let swapped = Instant::now();
    sb.label(
        Kind::Pod,
        NS,
        "udp-2",
        &[("app".to_string(), "udp".to_string())].into(),
        &[],
    )
    .expect("label udp-2");
    let r = stream.wait_answer_from("udp-2", swapped, T);
    let (n, gap) = stream.finish();
    eprintln!(
        "UDP server cycle: {n} answers, longest gap {:.2} s",
        gap.as_secs_f64()
    );
    if let Err(e) = r {
        panic!(
            "datagrams from the same source port do not reach the new backend: {e:#}\n{}",
            svc::conntrack_report(sb, ip)
        );
    }
    // And a fresh client is answered by the new one.
    all_answer(&client, Proto::Udp, ip, 8081, &["udp-2"], T);
    // Every node agent flushed the removed backend itself.
    for i in 0..sb.node_count() {
        common::wait(T, "the node agent's conntrack flushes", || {
            let text = sb
                .with_node(i, |n| n.agent_metrics())
                .map_err(|e| format!("{e:#}"))?;
            let n = text
                .lines()
                .find_map(|l| l.strip_prefix("switchyard_udp_conntrack_flushes_total "))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .ok_or(format!("no flush counter in:\n{text}"))?;
            (n > 0.0)
                .then_some(())
                .ok_or(format!("node {i}: no flushes yet"))
        });
    }
}

/// A deleted Service leaves no NB row; a converged controller restart
/// writes nothing to NB.
fn deleted_and_restarted(sb: &Sandbox) {
    assert!(!svc::lbs_of(sb, "web-ext").is_empty());
    assert!(sb.delete("svc", NS, "web-ext").expect("delete"));
    common::wait(T, "web-ext's load balancers gone", || {
        let rows = svc::lbs_of(sb, "web-ext");
        rows.is_empty().then_some(()).ok_or(format!("{rows:?}"))
    });
    // It answered pods on its external IP before.
    let client = sb.pod_netns(NS, "client").expect("client");
    let ip: IpAddr = EXTERNAL_V4.parse().expect("address");
    svc::wait_refused(&client, ip, 80, 3, T);
    let before = svc::lb_names(sb);
    sb.restart_controller().expect("restart");
    let m = sb.controller_metrics().expect("metrics");
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
    assert_eq!(svc::lb_names(sb), before);
}
