//! `ovn-trace` probes of the x/y/z cluster and the expected reachability
//! tables they are checked against, in the upstream e2e's terms.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::process::Command;

use switchyard_api::{addressing, annotations, names};

use super::policy::{NAMESPACES, PODS};
use super::{annotation, Env};

/// Addresses and MACs of the pods and nodes, for building probes.
pub struct Tracer {
    sb: String,
    /// pod key -> (node, mac, ipv4, ipv6)
    pods: HashMap<String, (String, String, Option<IpAddr>, Option<IpAddr>)>,
    /// node -> (router mac, management mac, management ipv4, ipv6)
    nodes: HashMap<String, (String, String, Option<IpAddr>, Option<IpAddr>)>,
}

/// A probe's L4: `tcp`, `udp` or `sctp`, and the destination port.
#[derive(Clone, Copy, Debug)]
pub struct L4(pub &'static str, pub u16);

pub const TCP80: L4 = L4("tcp", 80);
pub const TCP81: L4 = L4("tcp", 81);
pub const UDP80: L4 = L4("udp", 80);
pub const UDP81: L4 = L4("udp", 81);
pub const SCTP80: L4 = L4("sctp", 80);

impl Tracer {
    /// Reads addresses from the pods' and nodes' annotations (after NB
    /// converged); waits for SB to hold what NB does.
    pub fn new(env: &Env) -> Tracer {
        env.central
            .sync_sb(std::time::Duration::from_secs(30))
            .expect("SB in sync");
        let mut pods = HashMap::new();
        for p in env.cluster.pods() {
            let Some(net) = annotation(&p) else { continue };
            let key = format!(
                "{}/{}",
                p.metadata.namespace.as_deref().unwrap_or_default(),
                p.metadata.name.as_deref().unwrap_or_default()
            );
            let v4 = net.ips.iter().map(|n| n.addr()).find(IpAddr::is_ipv4);
            let v6 = net.ips.iter().map(|n| n.addr()).find(IpAddr::is_ipv6);
            pods.insert(key, (super::node_of(&p), net.mac.clone(), v4, v6));
        }
        let mut nodes = HashMap::new();
        for n in env.cluster.nodes() {
            let name = n.metadata.name.clone().unwrap_or_default();
            let text = n
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(annotations::NODE_SUBNETS))
                .cloned()
                .unwrap_or_default();
            let Ok(subnets) = switchyard_api::NodeSubnets::parse(&text) else {
                continue;
            };
            let gw = subnets.0.first().and_then(|s| addressing::gateway(*s));
            let mgmt: Vec<IpAddr> = subnets
                .0
                .iter()
                .filter_map(|s| addressing::management(*s))
                .collect();
            let router_mac = gw.map(switchyard_api::mac::from_ip).unwrap_or_default();
            let mgmt_mac = mgmt
                .first()
                .map(|ip| switchyard_api::mac::from_ip(*ip))
                .unwrap_or_default();
            nodes.insert(
                name,
                (
                    router_mac,
                    mgmt_mac,
                    mgmt.iter().copied().find(IpAddr::is_ipv4),
                    mgmt.iter().copied().find(IpAddr::is_ipv6),
                ),
            );
        }
        Tracer {
            sb: env.central.sb_remote(),
            pods,
            nodes,
        }
    }

    pub fn ip(&self, pod: &str, v6: bool) -> IpAddr {
        let p = &self.pods[pod];
        if v6 { p.3 } else { p.2 }.expect("an address of that family")
    }

    /// The microflow from `from` (a pod key, or `host:<node>` for a node's
    /// management port) to `to` at `dst` (default: `to`'s address).
    fn flow(
        &self,
        from: &str,
        to: &str,
        l4: L4,
        v6: bool,
        dst: Option<IpAddr>,
    ) -> (String, String) {
        let (node, inport, src_mac, src_ip) = match from.strip_prefix("host:") {
            Some(n) => {
                let nd = &self.nodes[n];
                (
                    n.to_string(),
                    names::mgmt_port(n),
                    nd.1.clone(),
                    if v6 { nd.3 } else { nd.2 }.expect("mgmt address"),
                )
            }
            None => {
                let p = &self.pods[from];
                let (ns, name) = from.split_once('/').expect("ns/name");
                (
                    p.0.clone(),
                    names::pod_port(ns, name),
                    p.1.clone(),
                    self.ip(from, v6),
                )
            }
        };
        let t = &self.pods[to];
        // Across nodes, or to a service address, through the router.
        let dst_mac = if t.0 == node && dst.is_none() {
            t.1.clone()
        } else {
            self.nodes[&node].0.clone()
        };
        let dst_ip = dst.unwrap_or_else(|| self.ip(to, v6));
        let fam = if v6 { "ip6" } else { "ip4" };
        let flow = format!(
            "inport == \"{inport}\" && eth.src == {src_mac} && eth.dst == {dst_mac} && \
             {fam}.src == {src_ip} && {fam}.dst == {dst_ip} && ip.ttl == 64 && \
             {p}.src == 33333 && {p}.dst == {port}",
            p = l4.0,
            port = l4.1
        );
        (names::node_switch(&node), flow)
    }

    fn run(&self, datapath: &str, flow: &str, extra: &[String]) -> String {
        let mut cmd = Command::new("ovn-trace");
        cmd.arg(format!("--db={}", self.sb)).arg("--minimal");
        if extra.is_empty() {
            for _ in 0..8 {
                cmd.arg("--ct=new");
            }
        }
        cmd.args(extra).arg(datapath).arg(flow);
        let out = cmd.output().expect("ovn-trace runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && !stderr.contains("WARN") && !stderr.contains("ERR"),
            "ovn-trace {datapath} {flow:?} failed: {stderr}"
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Whether a new connection from `from` to `to` is delivered.
    pub fn allowed(&self, from: &str, to: &str, l4: L4, v6: bool) -> bool {
        let (dp, flow) = self.flow(from, to, l4, v6, None);
        let (ns, name) = to.split_once('/').expect("ns/name");
        let out = self.run(&dp, &flow, &[]);
        out.contains(&format!("output(\"{}\")", names::pod_port(ns, name)))
    }

    /// Whether a new connection from pod `from` to `dst`, an address
    /// outside the pods (a node, an external host), gets past the pod's
    /// switch into the cluster router.
    pub fn leaves(&self, from: &str, dst: IpAddr, l4: L4) -> bool {
        let p = &self.pods[from];
        let (ns, name) = from.split_once('/').expect("ns/name");
        let fam = if dst.is_ipv6() { "ip6" } else { "ip4" };
        let flow = format!(
            "inport == \"{}\" && eth.src == {} && eth.dst == {} && {fam}.src == {} && \
             {fam}.dst == {dst} && ip.ttl == 64 && {l}.src == 33333 && {l}.dst == {port}",
            names::pod_port(ns, name),
            p.1,
            self.nodes[&p.0].0,
            self.ip(from, dst.is_ipv6()),
            l = l4.0,
            port = l4.1
        );
        let mut cmd = Command::new("ovn-trace");
        cmd.arg(format!("--db={}", self.sb));
        for _ in 0..8 {
            cmd.arg("--ct=new");
        }
        cmd.arg(names::node_switch(&p.0)).arg(&flow);
        let out = cmd.output().expect("ovn-trace runs");
        assert!(out.status.success(), "ovn-trace {flow:?} failed");
        let text = String::from_utf8_lossy(&out.stdout);
        text.contains(&format!("ingress(dp=\"{}\"", names::CLUSTER_ROUTER))
    }

    /// Whether a connection to `vip` balanced to `to` is delivered.
    pub fn allowed_via(&self, from: &str, vip: IpAddr, to: &str, l4: L4) -> bool {
        let (dp, flow) = self.flow(from, to, l4, vip.is_ipv6(), Some(vip));
        let (ns, name) = to.split_once('/').expect("ns/name");
        let mut extra: Vec<String> = (0..8).map(|_| "--ct=new".to_string()).collect();
        extra.push(format!("--lb-dst={}:{}", self.ip(to, vip.is_ipv6()), l4.1));
        let out = self.run(&dp, &flow, &extra);
        out.contains(&format!("output(\"{}\")", names::pod_port(ns, name)))
    }

    /// Whether a reply packet of an established connection from `from` to
    /// `to` (so `from` is the server) is delivered.
    pub fn reply_allowed(&self, from: &str, to: &str, l4: L4) -> bool {
        let (dp, flow) = self.flow(from, to, l4, false, None);
        let (ns, name) = to.split_once('/').expect("ns/name");
        let extra: Vec<String> = (0..8).map(|_| "--ct=est,rpl".to_string()).collect();
        let out = self.run(&dp, &flow, &extra);
        out.contains(&format!("output(\"{}\")", names::pod_port(ns, name)))
    }

    /// Every pod to every other pod, two probes at a time.
    pub fn matrix(&self, l4: L4, v6: bool) -> BTreeMap<(String, String), bool> {
        let pairs: Vec<(String, String)> = all_pods()
            .iter()
            .flat_map(|a| all_pods().into_iter().map(move |b| (a.clone(), b)))
            .filter(|(a, b)| a != b)
            .collect();
        let half = pairs.len() / 2;
        let (first, second) = pairs.split_at(half);
        std::thread::scope(|s| {
            let h = s.spawn(|| {
                first
                    .iter()
                    .map(|(a, b)| ((a.clone(), b.clone()), self.allowed(a, b, l4, v6)))
                    .collect::<Vec<_>>()
            });
            let mut out: BTreeMap<_, _> = second
                .iter()
                .map(|(a, b)| ((a.clone(), b.clone()), self.allowed(a, b, l4, v6)))
                .collect();
            out.extend(h.join().expect("probe thread"));
            out
        })
    }
}

pub fn all_pods() -> Vec<String> {
    NAMESPACES
        .iter()
        .flat_map(|ns| PODS.iter().map(move |p| format!("{ns}/{p}")))
        .collect()
}

/// Expected reachability, in the upstream e2e's terms.
pub struct Reach {
    cells: BTreeMap<(String, String), bool>,
}

impl Reach {
    /// Every pair (but a pod to itself) as `allowed`.
    pub fn all(allowed: bool) -> Reach {
        let mut cells = BTreeMap::new();
        for a in all_pods() {
            for b in all_pods() {
                if a != b {
                    cells.insert((a.clone(), b), allowed);
                }
            }
        }
        Reach { cells }
    }

    pub fn expect(&mut self, from: &str, to: &str, allowed: bool) -> &mut Reach {
        if from != to {
            self.cells.insert((from.into(), to.into()), allowed);
        }
        self
    }

    /// Every source to the pods `to` picks.
    pub fn ingress(&mut self, to: impl Fn(&str) -> bool, allowed: bool) -> &mut Reach {
        for ((_, b), v) in self.cells.iter_mut() {
            if to(b) {
                *v = allowed;
            }
        }
        self
    }

    /// The pods `from` picks to every destination.
    pub fn egress(&mut self, from: impl Fn(&str) -> bool, allowed: bool) -> &mut Reach {
        for ((a, _), v) in self.cells.iter_mut() {
            if from(a) {
                *v = allowed;
            }
        }
        self
    }

    /// Sets each pair `rule` has an opinion on.
    pub fn pairs(&mut self, rule: impl Fn(&str, &str) -> Option<bool>) -> &mut Reach {
        for ((a, b), v) in self.cells.iter_mut() {
            if let Some(x) = rule(a, b) {
                *v = x;
            }
        }
        self
    }

    /// Panics with every pair that differs, as a table.
    pub fn check(&self, case: &str, l4: L4, have: &BTreeMap<(String, String), bool>) {
        let wrong: Vec<String> = self
            .cells
            .iter()
            .filter(|(k, v)| have.get(*k) != Some(*v))
            .map(|((a, b), v)| {
                format!(
                    "  {a} -> {b}: expected {v}, got {:?}",
                    have.get(&(a.clone(), b.clone()))
                )
            })
            .collect();
        assert!(
            wrong.is_empty(),
            "{case} ({} {}): {} of {} probes differ:\n{}",
            l4.0,
            l4.1,
            wrong.len(),
            self.cells.len(),
            wrong.join("\n")
        );
    }
}

/// `ns` of a pod key.
pub fn ns(pod: &str) -> &str {
    pod.split_once('/').map(|(n, _)| n).unwrap_or(pod)
}

/// The pod name of a key.
pub fn name(pod: &str) -> &str {
    pod.split_once('/').map(|(_, p)| p).unwrap_or(pod)
}
