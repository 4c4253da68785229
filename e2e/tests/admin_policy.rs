//! AdminNetworkPolicy and BaselineAdminNetworkPolicy with real packets
//! (issue 13): namespaces x, y, z with pods a, b, c each (labels `ns`,
//! `pod`; a on node-1, b on node-2, c on node-3), every pod serving TCP 80
//! and 81 and UDP 80 and answering its `ns/name`; a listener on each node's
//! host (TCP [`NODE_PORT`]) and the external host's whoami (TCP 8090) for
//! egress to `nodes` and `networks`.
//!
//! Each case applies policies through the API the controller watches,
//! waits for NB to hold them and for every ovn-controller to have caught
//! up (`--wait=hv sync`, see `admin_policy/nb.rs`), then probes the whole
//! matrix at once (`admin_policy/reach.rs`): denied probes cost one short
//! timeout, only failures expected to pass are retried, and a mismatch
//! prints the grids with their differences. Failing cases are collected
//! and reported together at the end.
//!
//! `Pass` is written to the API's semantics (the traffic goes on to
//! NetworkPolicy, then to the baseline), as the controller compiles it by
//! default (positive set-difference pieces; see
//! docs/admin-network-policy.md).
//!
//! One IPv4 sandbox runs every case, one IPv6 sandbox a core subset.
//! `ADMIN_POLICY_LONG=1` adds a dual-stack sandbox running the core subset
//! over both families.
//!
//! Known environment failure: with stateful node switches (any policy
//! present) the sandbox's userspace datapath (Debian 12's
//! `ovs-vswitchd` 3.1.0) can abort with `conntrack.c:1063: assertion
//! conn->conn_type == CT_CONN_TYPE_DEFAULT failed in conn_update_state()`;
//! that node's pods then answer nothing. A mismatch prints every node's
//! flow count and its daemons' last warnings (`World::diagnose`), which
//! shows it.

mod common;
#[path = "admin_policy/nb.rs"]
mod nb;
#[path = "admin_policy/reach.rs"]
mod reach;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ContainerPort;
use nb::{settle, ANP, BANP};
use reach::{server_command, Matrix, Target, L4, POD_PORTS, TCP80, TCP81, UDP80};
use serde_json::{json, Value};
use switchyard_controller::k8s::{Kind, Object};
use switchyard_e2e::util::in_netns;
use switchyard_e2e::{pod_spec, IpFamily, Sandbox, SandboxOptions};

const NAMESPACES: [&str; 3] = ["x", "y", "z"];
const PODS: [&str; 3] = ["a", "b", "c"];
/// The node hosts' listener.
const NODE_PORT: u16 = 18080;

fn ns(p: &str) -> &str {
    p.split('/').next().unwrap_or_default()
}
fn name(p: &str) -> &str {
    p.split('/').nth(1).unwrap_or_default()
}

struct World {
    sb: Sandbox,
    _dir: tempfile::TempDir,
    matrix: Matrix,
    /// Every pod's address(es) of the sandbox's families, on each port.
    pods: Vec<Target>,
    /// The node hosts and the external host.
    outside: Vec<Target>,
    hosts: Hosts,
    tag: &'static str,
    cidrs: Vec<&'static str>,
    failures: Vec<String>,
    lines: Vec<String>,
}

/// The node hosts' listeners, killed when dropped.
struct Hosts(Vec<Child>);

impl Drop for Hosts {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn of_family(ips: &[IpAddr], family: IpFamily) -> Vec<IpAddr> {
    ips.iter()
        .copied()
        .filter(|i| match family {
            IpFamily::Ipv4 => i.is_ipv4(),
            IpFamily::Ipv6 => i.is_ipv6(),
            IpFamily::Dual => true,
        })
        .collect()
}

impl World {
    fn up(family: IpFamily, tag: &'static str) -> World {
        common::init_tracing();
        let dir = tempfile::tempdir().expect("a state directory");
        let mut opts = SandboxOptions::new(3, dir.path());
        opts.ip_family = family;
        let sb = common::up(opts).expect("sandbox up");
        for n in NAMESPACES {
            apply(
                &sb,
                json!({"apiVersion": "v1", "kind": "Namespace",
                       "metadata": {"name": n, "labels": {"ns": n}}}),
            );
        }
        for n in NAMESPACES {
            for (k, p) in PODS.iter().enumerate() {
                let node = format!("node-{}", k + 1);
                let mut pod = pod_spec(
                    n,
                    p,
                    Some(&node),
                    server_command(&format!("{n}/{p}"), &POD_PORTS),
                );
                pod.metadata.labels = Some(
                    [("ns", n), ("pod", *p)]
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                );
                let spec = pod.spec.as_mut().expect("a spec");
                spec.containers[0].ports = Some(
                    [
                        ("serve-80-tcp", 80, "TCP"),
                        ("serve-81-tcp", 81, "TCP"),
                        ("serve-80-udp", 80, "UDP"),
                    ]
                    .iter()
                    .map(|(name, port, proto)| ContainerPort {
                        name: Some(name.to_string()),
                        container_port: *port,
                        protocol: Some(proto.to_string()),
                        ..Default::default()
                    })
                    .collect(),
                );
                sb.create_pod(pod).expect("pod created");
            }
        }
        sb.wait_pods_ready(Duration::from_secs(120))
            .expect("pods ready");
        let mut hosts = Hosts(Vec::new());
        for i in 0..sb.node_count() {
            let cmd = server_command(&format!("node-{}", i + 1), &[L4::Tcp(NODE_PORT)]);
            let args: Vec<&str> = cmd.iter().map(String::as_str).collect();
            let child = in_netns(sb.node_netns(i), &args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("a listener on the node host");
            hosts.0.push(child);
        }
        let mut pods = Vec::new();
        let mut sources = Vec::new();
        for n in NAMESPACES {
            for p in PODS {
                let label = format!("{n}/{p}");
                sources.push((label.clone(), sb.pod_netns(n, p).expect("pod runs")));
                let ips = of_family(&sb.pod_ips(n, p), family);
                assert!(!ips.is_empty(), "{label} has no address");
                for ip in ips {
                    for l4 in POD_PORTS {
                        pods.push(Target {
                            label: label.clone(),
                            ip,
                            l4,
                            answer: label.clone(),
                        });
                    }
                }
            }
        }
        let mut outside = Vec::new();
        for i in 0..sb.node_count() {
            for ip in of_family(&sb.node_ips(i), family) {
                outside.push(Target {
                    label: format!("node-{}", i + 1),
                    ip,
                    l4: L4::Tcp(NODE_PORT),
                    answer: format!("node-{}", i + 1),
                });
            }
        }
        for ip in of_family(&sb.external_ips()[2..], family) {
            outside.push(Target {
                label: "external".into(),
                ip,
                l4: L4::Tcp(switchyard_e2e::probe::WHOAMI_PORT),
                answer: "external".into(),
            });
        }
        let cidrs = match family {
            IpFamily::Ipv4 => vec!["203.0.113.0/24"],
            IpFamily::Ipv6 => vec!["2001:db8:113::/64"],
            IpFamily::Dual => vec!["203.0.113.0/24", "2001:db8:113::/64"],
        };
        World {
            matrix: Matrix::new(&sources),
            sb,
            _dir: dir,
            pods,
            outside,
            hosts,
            tag,
            cidrs,
            failures: Vec::new(),
            lines: Vec::new(),
        }
    }

    /// Probes the pods (and with `outside` the node hosts and the
    /// external host) against `want(source, target)`; a mismatch is
    /// recorded, not raised, so that every case runs.
    fn check(&mut self, case: &str, outside: bool, want: impl Fn(&str, &Target) -> bool) {
        let mut targets = self.pods.clone();
        if outside {
            targets.extend(self.outside.iter().cloned());
        }
        let case = format!("[{}] {case}", self.tag);
        self.sb.heal_crashed_vswitchd();
        // Each case judges new connections: the previous case's UDP
        // conversations (the probes' datagrams) would otherwise be
        // established entries that a case's verdict does not concern.
        // How a change treats live connections is the NetworkPolicy
        // dynamics tests' subject (e2e/tests/netpol.rs).
        flush_conntrack(&self.sb);
        let mut result = self.matrix.check(&case, &targets, &want);
        // An ovs-vswitchd abort (the sandbox's userspace datapath, see
        // switchyard_e2e::datapath) is no verdict: restart it, run again.
        if result.is_err() && self.sb.heal_crashed_vswitchd() {
            eprintln!("{case}: failed with a datapath crash, run again");
            result = self.matrix.check(&case, &targets, &want);
        } else if let Err(first) = &result {
            // The settle condition counts ACLs; the rows a Pass's pieces
            // use may land a transaction later on a loaded machine. The
            // verdict must hold once every chassis caught up with NB.
            eprintln!("{case}: not yet, checked again after NB and every chassis sync:\n{first}");
            nb::hv_sync(&self.sb);
            // The datapath's cached flows may still carry the previous
            // verdict: under load, OVS 3.1 kept megaflows of the case
            // before through the sync and a second look (3 of 7 runs
            // beside 2 CPU hogs, always "Pass y/a then Deny all"), while
            // the OpenFlow tables were already right: purging the
            // datapath's flows, and nothing else, made every such second
            // look pass. The verdict judged here is what the tables say.
            purge_datapath_flows(&self.sb);
            // Probes of the first look, made before the verdict landed,
            // left established entries.
            flush_conntrack(&self.sb);
            result = self.matrix.check(&case, &targets, &want);
        }
        match result {
            Ok(o) => {
                let line = format!(
                    "{case}: ok, {} probes, {} denied, {} retried, {:.1} s",
                    o.probes,
                    o.denied,
                    o.retried,
                    o.took.as_secs_f64()
                );
                eprintln!("{line}");
                self.lines.push(line);
            }
            Err(msg) => {
                let msg = format!("{msg}{}", self.sb.vswitchd_crashes());
                eprintln!("{msg}");
                self.diagnose();
                self.lines.push(format!("{case}: MISMATCH"));
                self.failures.push(msg);
            }
        }
    }

    /// After a mismatch: each node's ovn-controller, alive or not, its
    /// size and its last warnings.
    fn diagnose(&self) {
        for i in 0..self.sb.node_count() {
            let dir = self.sb.node_dir(i);
            let pid = std::fs::read_to_string(dir.join("ovn-controller.pid")).unwrap_or_default();
            let status = std::fs::read_to_string(format!("/proc/{}/status", pid.trim()))
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find(|l| l.starts_with("VmRSS"))
                        .map(str::to_string)
                })
                .unwrap_or_else(|| "not running".into());
            let log = std::fs::read_to_string(dir.join("ovn-controller.log")).unwrap_or_default();
            let vs = std::fs::read_to_string(dir.join("ovs-vswitchd.log")).unwrap_or_default();
            let warn: Vec<&str> = log
                .lines()
                .chain(vs.lines())
                .filter(|l| l.contains("|WARN|") || l.contains("|ERR|") || l.contains("|EMER|"))
                .collect();
            let flows = std::process::Command::new("ovs-ofctl")
                .args([
                    "dump-aggregate",
                    &format!("unix:{}/br-int.mgmt", dir.display()),
                ])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .unwrap_or_default();
            eprintln!("node-{}: {flows}", i + 1);
            eprintln!(
                "node-{}: ovn-controller pid {} {status}; last warnings:\n  {}",
                i + 1,
                pid.trim(),
                warn[warn.len().saturating_sub(8)..].join("\n  ")
            );
        }
    }

    fn apply(&self, v: Value) {
        apply(&self.sb, v);
    }

    fn delete(&self, kind: &str, namespace: &str, name: &str) {
        self.sb
            .delete(kind, namespace, name)
            .unwrap_or_else(|e| panic!("deleting {kind} {namespace}/{name}: {e:#}"));
    }

    fn label(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
        set: &[(&str, &str)],
        remove: &[&str],
    ) {
        let set: BTreeMap<String, String> = set
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let remove: Vec<String> = remove.iter().map(|s| s.to_string()).collect();
        self.sb
            .label(kind, namespace, name, &set, &remove)
            .unwrap_or_else(|e| panic!("labelling {namespace}/{name}: {e:#}"));
    }

    /// Waits for NB to hold exactly these admin ACLs and NetworkPolicies
    /// and for every listed admin policy to say `Ready=True`, then for
    /// the chassis.
    fn settle(
        &self,
        what: &str,
        admin: &[(&str, &str, usize)],
        nps: &[&str],
        ready: &[(Kind, &str)],
    ) {
        common::wait(Duration::from_secs(45), &format!("{what}: Ready"), || {
            for (kind, n) in ready {
                match condition(&self.sb, *kind, n) {
                    Some(c) if c.0 == "True" => {}
                    other => return Err(format!("{n}: {other:?}")),
                }
            }
            Ok(())
        });
        settle(&self.sb, what, |nb| nb.exactly(admin, nps));
    }

    fn pod_ip(&self, namespace: &str, pod: &str) -> Vec<String> {
        self.sb
            .pod_ips(namespace, pod)
            .iter()
            .map(|i| i.to_string())
            .collect()
    }

    fn node_ip(&self, i: usize) -> Vec<String> {
        let fam = self.sb.options().ip_family;
        of_family(&self.sb.node_ips(i), fam)
            .iter()
            .map(|i| i.to_string())
            .collect()
    }
}

/// Drops every node's cached datapath flows (`ovs-appctl
/// revalidator/purge`): the next packets are translated anew from the
/// OpenFlow tables.
fn purge_datapath_flows(sb: &Sandbox) {
    for i in 0..sb.node_count() {
        let ctl = sb.node_dir(i).join("ovs-vswitchd.ctl");
        let _ = std::process::Command::new("ovs-appctl")
            .arg("-t")
            .arg(&ctl)
            .arg("revalidator/purge")
            .output();
    }
}

/// Forgets every node's connections (`ovs-appctl dpctl/flush-conntrack`).
fn flush_conntrack(sb: &Sandbox) {
    for i in 0..sb.node_count() {
        let ctl = sb.node_dir(i).join("ovs-vswitchd.ctl");
        let _ = std::process::Command::new("ovs-appctl")
            .arg("-t")
            .arg(&ctl)
            .arg("dpctl/flush-conntrack")
            .output();
    }
}

fn apply(sb: &Sandbox, v: Value) {
    sb.apply_yaml(&v.to_string())
        .unwrap_or_else(|e| panic!("applying {v}: {e:#}"));
}

/// The `Ready` condition of an admin policy: (status, reason, message).
fn condition(sb: &Sandbox, kind: Kind, name: &str) -> Option<(String, String, String)> {
    let status = match sb.cluster().get(kind, None, name)? {
        Object::AdminNetworkPolicy(p) => p.status?,
        Object::BaselineAdminNetworkPolicy(p) => p.status?,
        _ => return None,
    };
    let c = status.conditions.into_iter().find(|c| c.type_ == "Ready")?;
    Some((c.status, c.reason, c.message))
}

fn anp(name: &str, priority: i32, subject: Value, ingress: Value, egress: Value) -> Value {
    json!({"apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": "AdminNetworkPolicy",
           "metadata": {"name": name},
           "spec": {"priority": priority, "subject": subject, "ingress": ingress, "egress": egress}})
}

fn banp(subject: Value, ingress: Value, egress: Value) -> Value {
    json!({"apiVersion": "policy.networking.k8s.io/v1alpha1",
           "kind": "BaselineAdminNetworkPolicy", "metadata": {"name": "default"},
           "spec": {"subject": subject, "ingress": ingress, "egress": egress}})
}

fn np(namespace: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
           "metadata": {"name": name, "namespace": namespace}, "spec": spec})
}

/// Namespaces labelled `ns=<n>` (as subject or peer).
fn nss(n: &str) -> Value {
    json!({"namespaces": {"matchLabels": {"ns": n}}})
}
fn all_ns() -> Value {
    json!({"namespaces": {}})
}
/// Pods `pod=<p>` in namespaces `ns=<n>`.
fn pods(n: &str, p: &str) -> Value {
    json!({"pods": {"namespaceSelector": {"matchLabels": {"ns": n}},
                    "podSelector": {"matchLabels": {"pod": p}}}})
}
fn from(action: &str, peers: Value) -> Value {
    json!({"action": action, "from": peers})
}
fn to(action: &str, peers: Value) -> Value {
    json!({"action": action, "to": peers})
}

#[path = "admin_policy/cases.rs"]
mod cases;

#[test]
fn admin_policies_ipv4() {
    let _g = common::serial();
    let began = Instant::now();
    let mut w = World::up(IpFamily::Ipv4, "ipv4");
    eprintln!(
        "[ipv4] sandbox and pods up in {:.1} s",
        began.elapsed().as_secs_f64()
    );
    cases::all(&mut w);
    finish(w, began);
}

#[test]
fn admin_policies_ipv6() {
    let _g = common::serial();
    let began = Instant::now();
    let mut w = World::up(IpFamily::Ipv6, "ipv6");
    eprintln!(
        "[ipv6] sandbox and pods up in {:.1} s",
        began.elapsed().as_secs_f64()
    );
    cases::core(&mut w);
    finish(w, began);
}

#[test]
fn admin_policies_dual_stack_long() {
    if std::env::var_os("ADMIN_POLICY_LONG").is_none() {
        eprintln!("dual stack: set ADMIN_POLICY_LONG=1 to run it");
        return;
    }
    let _g = common::serial();
    let began = Instant::now();
    let mut w = World::up(IpFamily::Dual, "dual");
    cases::core(&mut w);
    finish(w, began);
}

fn finish(w: World, began: Instant) {
    let World {
        sb,
        matrix,
        hosts,
        tag,
        failures,
        lines,
        ..
    } = w;
    drop(matrix);
    drop(hosts);
    eprintln!(
        "[{tag}] {} checks in {:.1} s:\n{}",
        lines.len(),
        began.elapsed().as_secs_f64(),
        lines.join("\n")
    );
    sb.down().expect("sandbox down");
    assert!(
        failures.is_empty(),
        "{} of {} checks failed:\n{}",
        failures.len(),
        lines.len(),
        failures.join("\n")
    );
}
