//! What the Services test needs beyond the sandbox: pods with labels,
//! Services as YAML, their allocated addresses and ports, and "every
//! backend answers" over real connections.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use serde_json::Value;
use switchyard_controller::k8s::Kind;
use switchyard_e2e::probe::{self, echo_server_command, Proto};
use switchyard_e2e::{pod_spec, Sandbox};

/// The namespace of every object of the test.
pub const NS: &str = "svc";

/// Creates `name` on node `node` (1-based) running the echo server named
/// after it, with `labels`.
pub fn pod(sb: &Sandbox, name: &str, node: usize, labels: &[(&str, &str)]) {
    let mut p = pod_spec(
        NS,
        name,
        Some(&format!("node-{node}")),
        echo_server_command(name),
    );
    p.metadata.labels = Some(
        labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    sb.create_pod(p)
        .unwrap_or_else(|e| panic!("pod {name}: {e:#}"));
}

/// The Service `name` as `kubectl get -o json` shows it.
pub fn service(sb: &Sandbox, name: &str) -> Value {
    sb.get_objects(Kind::Service, Some(NS))
        .into_iter()
        .find(|s| s["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no Service {name}"))
}

/// `spec.clusterIPs`.
pub fn cluster_ips(svc: &Value) -> Vec<IpAddr> {
    svc["spec"]["clusterIPs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i.as_str()?.parse().ok())
        .collect()
}

/// The NodePort of the Service port named `port`.
pub fn node_port(svc: &Value, port: &str) -> u16 {
    svc["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == port)
        .and_then(|p| p["nodePort"].as_u64())
        .and_then(|n| u16::try_from(n).ok())
        .unwrap_or_else(|| panic!("no nodePort for {port}: {svc}"))
}

/// `status.loadBalancer.ingress[*].ip`, once there are `n` of them.
pub fn wait_ingress(sb: &Sandbox, name: &str, n: usize, timeout: Duration) -> Vec<IpAddr> {
    let deadline = Instant::now() + timeout;
    loop {
        let svc = service(sb, name);
        let ips: Vec<IpAddr> = svc["status"]["loadBalancer"]["ingress"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| i["ip"].as_str()?.parse().ok())
            .collect();
        if ips.len() == n {
            return ips;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: {n} ingress IPs expected after {timeout:?}: {svc}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Asks `ip:port` from inside `netns` until every one of `want` has
/// answered; panics at once if anything else answers (a wrong backend),
/// or after `timeout` with what was missing.
pub fn all_answer(
    netns: &str,
    proto: Proto,
    ip: IpAddr,
    port: u16,
    want: &[&str],
    timeout: Duration,
) {
    let want: BTreeSet<String> = want.iter().map(|w| w.to_string()).collect();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut last_err = String::new();
    let deadline = Instant::now() + timeout;
    while seen != want {
        match probe::ask(netns, proto, ip, port) {
            Ok(a) => {
                let name = a.split(' ').next().unwrap_or_default().to_string();
                assert!(
                    want.contains(&name),
                    "{proto} {ip} port {port} from {netns}: answered by {a:?}, not one of {want:?}"
                );
                seen.insert(name);
            }
            Err(e) => last_err = format!("{e:#}"),
        }
        assert!(
            seen == want || Instant::now() < deadline,
            "{proto} {ip} port {port} from {netns}: after {timeout:?} only {seen:?} of {want:?} answered; last error: {last_err}"
        );
    }
}

/// `n` answers in a row from `ip:port`: who answered each (retrying
/// failed attempts until `timeout`).
pub fn answers(
    netns: &str,
    proto: Proto,
    ip: IpAddr,
    port: u16,
    n: usize,
    timeout: Duration,
) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    while out.len() < n {
        match probe::ask(netns, proto, ip, port) {
            Ok(a) => out.push(a),
            Err(e) => assert!(
                Instant::now() < deadline,
                "{proto} {ip} port {port} from {netns}: {e:#}"
            ),
        }
    }
    out
}

/// Waits until `n` attempts in a row fail (nothing answers `ip:port`);
/// panics after `timeout`.
pub fn wait_refused(netns: &str, ip: IpAddr, port: u16, n: usize, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let mut run = 0;
    while run < n {
        match probe::ask(netns, Proto::Tcp, ip, port) {
            Ok(a) => {
                run = 0;
                assert!(
                    Instant::now() < deadline,
                    "{ip} port {port} from {netns} still answers ({a}) after {timeout:?}"
                );
                std::thread::sleep(Duration::from_millis(200)); // pacing
            }
            Err(_) => run += 1,
        }
    }
}

/// Names of NB `Load_Balancer` rows.
pub fn lb_names(sb: &Sandbox) -> Vec<String> {
    sb.nbctl(&["--bare", "--columns=name", "list", "Load_Balancer"])
        .expect("ovn-nbctl list Load_Balancer")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// NB load balancers of Service `name` (`svc:NS/NAME:...`).
pub fn lbs_of(sb: &Sandbox, name: &str) -> Vec<String> {
    let prefix = format!("svc:{NS}/{name}:");
    lb_names(sb)
        .into_iter()
        .filter(|n| n.starts_with(&prefix))
        .collect()
}

/// Routes `dst` on the external host via node `node`'s (0-based) address
/// of the same family: what a router in front of the cluster would do for
/// LoadBalancer and external IPs.
pub fn route_via_node(sb: &Sandbox, dst: &str, node: usize) {
    let v6 = dst.contains(':');
    let via = sb
        .node_ips(node)
        .into_iter()
        .find(|i| i.is_ipv6() == v6)
        .expect("a node address of the family")
        .to_string();
    let out = sb
        .external_exec(&["ip", "route", "replace", dst, "via", &via])
        .expect("ip route");
    assert!(
        out.status.success(),
        "ip route replace {dst} via {via}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `ovs-appctl` against node `i`'s ovn-controller.
pub fn ovn_controller_appctl(sb: &Sandbox, i: usize, args: &[&str]) -> Option<String> {
    let ctl = std::fs::read_dir(sb.node_dir(i))
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            let n = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            n.starts_with("ovn-controller.") && n.ends_with(".ctl")
        })?;
    let out = std::process::Command::new("ovs-appctl")
        .arg("-t")
        .arg(&ctl)
        .args(args)
        .output()
        .ok()?;
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Per node: the datapath's conntrack entries for `vip` and the flushes
/// ovn-controller logged.
pub fn conntrack_report(sb: &Sandbox, vip: IpAddr) -> String {
    let mut out = String::new();
    for i in 0..sb.node_count() {
        let ctl = sb.node_dir(i).join("ovs-vswitchd.ctl");
        let ct = std::process::Command::new("ovs-appctl")
            .arg("-t")
            .arg(&ctl)
            .arg("dpctl/dump-conntrack")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let log =
            std::fs::read_to_string(sb.node_dir(i).join("ovn-controller.log")).unwrap_or_default();
        out += &format!("node-{}: conntrack for {vip}:\n", i + 1);
        for l in ct.lines().filter(|l| l.contains(&format!("dst={vip},"))) {
            out += &format!("  {l}\n");
        }
        out += "  flushes logged:\n";
        for l in log.lines().filter(|l| l.contains("Flushing CT")) {
            out += &format!("  {l}\n");
        }
    }
    out
}
