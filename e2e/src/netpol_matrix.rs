//! NetworkPolicy reachability matrices with real connections, in the
//! manner of Kubernetes' own NetworkPolicy e2e suite: namespaces `x`, `y`,
//! `z` with pods `a`, `b`, `c` each, spread over the nodes, every pod
//! serving TCP and UDP on ports 80 and 81; a case is a set of policies and
//! the matrix it must produce, probed pair by pair.
//!
//! Probing is fast because it is concurrent: one Python process per source
//! pod tries all its targets at once, and all sources run at the same time.
//! A denied probe costs its timeout (1 s). A pair that should pass but
//! did not is tried three more times at once (an allowed pair may lose its
//! first packet to tunnel warm-up); then, while any pair disagrees, the
//! whole matrix is probed again, until a deadline (a policy just applied
//! takes a moment to reach OVN, and only a round that agrees everywhere
//! counts). When the deadline passes with
//! pairs still disagreeing, the error carries kubectl-e2e style grids
//! (`.` reachable, `X` blocked) of what was expected and seen.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::net::IpAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::pyprobe::{python, server_command, Agent, AgentTarget, Listen, LOOPER};
use crate::util::in_netns;
use crate::Sandbox;

/// The matrix namespaces and pods.
pub const NAMESPACES: [&str; 3] = ["x", "y", "z"];
pub const PODS: [&str; 3] = ["a", "b", "c"];

/// A transport protocol and port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Port {
    pub udp: bool,
    pub port: u16,
}

impl Port {
    pub const fn tcp(port: u16) -> Port {
        Port { udp: false, port }
    }
    pub const fn udp(port: u16) -> Port {
        Port { udp: true, port }
    }
    /// How [`crate::pyprobe::SERVER`] listens on it.
    pub fn listen(self) -> Listen {
        if self.udp {
            Listen::Udp(self.port)
        } else {
            Listen::Tcp(self.port)
        }
    }
    fn proto(self) -> &'static str {
        if self.udp {
            "udp"
        } else {
            "tcp"
        }
    }
}

impl std::fmt::Display for Port {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.proto(), self.port)
    }
}

/// The four ports every matrix pod serves.
pub const ALL_PORTS: [Port; 4] = [Port::tcp(80), Port::tcp(81), Port::udp(80), Port::udp(81)];

/// A running pod as the matrix sees it.
#[derive(Clone, Debug)]
pub struct PodRef {
    pub ns: String,
    pub name: String,
    pub netns: String,
    pub ips: Vec<IpAddr>,
    pub node: usize,
}

impl PodRef {
    /// `ns/name`.
    pub fn id(&self) -> String {
        format!("{}/{}", self.ns, self.name)
    }
    /// The name its server answers with (unique across namespaces).
    pub fn answer(&self) -> String {
        format!("{}-{}", self.ns, self.name)
    }
    pub fn ip_of(&self, v6: bool) -> Option<IpAddr> {
        self.ips.iter().copied().find(|i| i.is_ipv6() == v6)
    }
    /// Looks the pod up in the sandbox.
    pub fn of(sb: &Sandbox, ns: &str, name: &str) -> Result<PodRef> {
        Ok(PodRef {
            ns: ns.into(),
            name: name.into(),
            netns: sb.pod_netns(ns, name)?,
            ips: sb.pod_ips(ns, name),
            node: sb
                .pod_node_index(ns, name)
                .with_context(|| format!("{ns}/{name} has no node"))?,
        })
    }
}

/// One probe of a matrix: from a pod to a pod's address of one family.
pub struct Probe<'a> {
    pub from: &'a PodRef,
    pub to: &'a PodRef,
    pub port: Port,
    pub src: IpAddr,
    pub dst: IpAddr,
}

/// One connection attempt for [`probe_all`].
#[derive(Clone, Debug)]
pub struct Attempt {
    pub netns: String,
    pub port: Port,
    pub dst: IpAddr,
}

/// Runs every attempt once, concurrently (one process per source
/// namespace); who answered each, if anyone.
pub fn probe_all(attempts: &[Attempt], timeout: Duration) -> Vec<Option<String>> {
    let mut by_ns: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, a) in attempts.iter().enumerate() {
        by_ns.entry(a.netns.as_str()).or_default().push(i);
    }
    let results = Mutex::new(vec![None; attempts.len()]);
    std::thread::scope(|s| {
        for (netns, idx) in &by_ns {
            let results = &results;
            s.spawn(move || {
                let targets: Vec<AgentTarget> = idx
                    .iter()
                    .map(|&i| {
                        let a = &attempts[i];
                        (i.to_string(), a.port.proto(), a.dst, a.port.port)
                    })
                    .collect();
                // A prober that could not run (a busy machine can fail
                // `ip netns exec` or a thread start) is run again: its
                // targets did not fail, they were not tried.
                let mut got = Vec::new();
                for attempt in 1..=3 {
                    match run_prober(netns, &targets, timeout) {
                        Ok(g) => {
                            got = g;
                            break;
                        }
                        Err(e) => eprintln!("prober in {netns} (attempt {attempt}): {e:#}"),
                    }
                }
                let mut r = results.lock().unwrap_or_else(|p| p.into_inner());
                for (i, name) in got {
                    if let Some(slot) = r.get_mut(i) {
                        *slot = Some(name);
                    }
                }
            });
        }
    });
    results.into_inner().unwrap_or_else(|p| p.into_inner())
}

/// One [`Agent`] round in `netns` over the `(index, attempt)` pairs; the
/// index and answer of every attempt that was answered.
fn run_prober(
    netns: &str,
    targets: &[AgentTarget],
    timeout: Duration,
) -> Result<Vec<(usize, String)>> {
    let mut agent = Agent::start(netns)?;
    agent.send(timeout, targets)?;
    Ok(agent
        .recv()?
        .into_iter()
        .filter_map(|(k, v)| Some((k.parse().ok()?, v.strip_prefix("ok:")?.to_string())))
        .collect())
}

/// What one matrix check cost.
#[derive(Clone, Debug, Default)]
pub struct MatrixStats {
    pub probes: usize,
    pub attempts: usize,
    pub rounds: usize,
    pub elapsed: Duration,
}

impl std::fmt::Display for MatrixStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} probes, {} attempts in {} rounds, {:.1} s",
            self.probes,
            self.attempts,
            self.rounds,
            self.elapsed.as_secs_f64()
        )
    }
}

/// Probes every `from` × `to` pair on every port and address family both
/// ends have, and compares with `expect`; pairs that disagree are probed
/// again until `deadline` (see the module doc). An error shows the grids.
pub fn check(
    from: &[PodRef],
    to: &[PodRef],
    ports: &[Port],
    expect: &dyn Fn(&Probe) -> bool,
    deadline: Duration,
) -> Result<MatrixStats> {
    let began = Instant::now();
    let mut probes = Vec::new();
    for port in ports {
        for v6 in [false, true] {
            for f in from {
                for t in to {
                    if let (Some(src), Some(dst)) = (f.ip_of(v6), t.ip_of(v6)) {
                        probes.push(Probe {
                            from: f,
                            to: t,
                            port: *port,
                            src,
                            dst,
                        });
                    }
                }
            }
        }
    }
    // A pod reaching its own address never leaves it (the kernel loops
    // it back), so no policy can deny it: upstream's "allow loopback".
    let want: Vec<bool> = probes
        .iter()
        .map(|p| expect(p) || (p.from.ns == p.to.ns && p.from.name == p.to.name))
        .collect();
    let mut seen = vec![None::<bool>; probes.len()];
    let mut stats = MatrixStats {
        probes: probes.len(),
        ..Default::default()
    };
    let run = |idx: &[usize], timeout: Duration, seen: &mut Vec<Option<bool>>| {
        let attempts: Vec<Attempt> = idx
            .iter()
            .map(|&i| Attempt {
                netns: probes[i].from.netns.clone(),
                port: probes[i].port,
                dst: probes[i].dst,
            })
            .collect();
        for (&i, answer) in idx.iter().zip(probe_all(&attempts, timeout)) {
            seen[i] = Some(answer.as_deref() == Some(probes[i].to.answer().as_str()));
        }
        attempts.len()
    };
    let all: Vec<usize> = (0..probes.len()).collect();
    // Whole rounds until one agrees everywhere: a pair that agreed before
    // the policies were all in place proves nothing, so every pair is
    // probed again in the round that passes.
    loop {
        stats.rounds += 1;
        stats.attempts += run(&all, Duration::from_secs(1), &mut seen);
        // A pair that should pass but did not gets three more looks,
        // longer: the first packet over a new tunnel may have been lost,
        // and a loaded machine may be slow to answer.
        for _ in 0..3 {
            let retry: Vec<usize> = all
                .iter()
                .copied()
                .filter(|&i| want[i] && seen[i] != Some(true))
                .collect();
            if retry.is_empty() {
                break;
            }
            stats.attempts += run(&retry, Duration::from_secs(2), &mut seen);
        }
        let wrong = all.iter().filter(|&&i| seen[i] != Some(want[i])).count();
        if wrong == 0 {
            stats.elapsed = began.elapsed();
            return Ok(stats);
        }
        if began.elapsed() >= deadline {
            stats.elapsed = began.elapsed();
            // Where the disagreements are: all on one node's pods points
            // at that node's datapath rather than at a policy.
            let mut per_node: BTreeMap<usize, usize> = BTreeMap::new();
            for i in all.iter().filter(|&&i| seen[i] != Some(want[i])) {
                *per_node.entry(probes[*i].from.node).or_default() += 1;
                if probes[*i].to.node != probes[*i].from.node {
                    *per_node.entry(probes[*i].to.node).or_default() += 1;
                }
            }
            bail!(
                "{wrong} of {} probes disagree after {:?} ({stats}); disagreements touching each node (by index): {per_node:?}\n{}",
                probes.len(),
                deadline,
                grids(&probes, &want, &seen, from, to)
            );
        }
    }
}

/// Expected, observed and comparison grids for every port and family
/// with a disagreement: `.` reachable, `X` blocked; in the comparison `.`
/// agrees and `X` differs.
fn grids(
    probes: &[Probe],
    want: &[bool],
    seen: &[Option<bool>],
    from: &[PodRef],
    to: &[PodRef],
) -> String {
    let mut keys: Vec<(Port, bool)> = probes
        .iter()
        .enumerate()
        .filter(|(i, _)| seen[*i] != Some(want[*i]))
        .map(|(_, p)| (p.port, p.dst.is_ipv6()))
        .collect();
    keys.dedup();
    keys.sort();
    keys.dedup();
    let mut out = String::new();
    for (port, v6) in keys {
        let cell = |f: &PodRef, t: &PodRef, which: u8| -> char {
            let Some(i) = probes.iter().position(|p| {
                p.port == port
                    && p.dst.is_ipv6() == v6
                    && p.from.id() == f.id()
                    && p.to.id() == t.id()
            }) else {
                return ' ';
            };
            let ok = |b: bool| if b { '.' } else { 'X' };
            match which {
                0 => ok(want[i]),
                1 => seen[i].map(ok).unwrap_or('?'),
                _ => ok(seen[i] == Some(want[i])),
            }
        };
        for (which, title) in [(0, "expected"), (1, "observed"), (2, "comparison")] {
            out.push_str(&format!(
                "{port} {} {title}:\n{:>6}",
                if v6 { "IPv6" } else { "IPv4" },
                ""
            ));
            for t in to {
                out.push_str(&format!("{:>6}", t.id()));
            }
            out.push('\n');
            for f in from {
                out.push_str(&format!("{:>6}", f.id()));
                for t in to {
                    out.push_str(&format!("{:>6}", cell(f, t, which)));
                }
                out.push('\n');
            }
        }
    }
    out
}

/// The Namespace and Pod YAML of the matrix: namespaces labelled `ns=NS`
/// and `kubernetes.io/metadata.name=NS` (the real API server sets the
/// latter; the in-memory one does not), pods labelled `pod=NAME`, pod `i`
/// of namespace `j` on node `(i + j) % nodes`, each serving [`ALL_PORTS`]
/// with container ports named `serve-80-tcp` and so on.
pub fn matrix_yaml(sb: &Sandbox) -> String {
    let nodes = sb.node_names();
    let mut docs = Vec::new();
    for ns in NAMESPACES {
        docs.push(serde_json::json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": ns, "labels": {"ns": ns, "kubernetes.io/metadata.name": ns}},
        }));
    }
    for (j, ns) in NAMESPACES.iter().enumerate() {
        for (i, pod) in PODS.iter().enumerate() {
            docs.push(server_pod(
                ns,
                pod,
                &nodes[(i + j) % nodes.len()],
                &ALL_PORTS
                    .iter()
                    .map(|p| (format!("serve-{}-{}", p.port, p.proto()), *p))
                    .collect::<Vec<_>>(),
                false,
            ));
        }
    }
    docs.iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("\n---\n")
}

/// A Pod running [`crate::pyprobe::SERVER`] on `ports` (named as given), labelled
/// `pod=NAME`, on `node`.
pub fn server_pod(
    ns: &str,
    name: &str,
    node: &str,
    ports: &[(String, Port)],
    host_network: bool,
) -> serde_json::Value {
    let listen: Vec<Listen> = ports.iter().map(|(_, p)| p.listen()).collect();
    let command = server_command(&format!("{ns}-{name}"), &listen);
    let container_ports: Vec<serde_json::Value> = ports
        .iter()
        .map(|(n, p)| {
            serde_json::json!({"name": n, "containerPort": p.port,
                               "protocol": if p.udp { "UDP" } else { "TCP" }})
        })
        .collect();
    serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": {"pod": name}},
        "spec": {"nodeName": node, "hostNetwork": host_network, "containers": [{
            "name": "serve", "image": "sandbox", "command": command, "ports": container_ports,
        }]},
    })
}

/// Creates the matrix namespaces and pods and waits for them; the pods in
/// namespace-then-name order.
pub fn setup(sb: &Sandbox) -> Result<Vec<PodRef>> {
    sb.apply_yaml(&matrix_yaml(sb))?;
    sb.wait_pods_ready(Duration::from_secs(180))?;
    let mut pods = Vec::new();
    for ns in NAMESPACES {
        for p in PODS {
            pods.push(PodRef::of(sb, ns, p)?);
        }
    }
    Ok(pods)
}

/// The NetworkPolicy port groups (`np.*`) in NB.
pub fn policy_port_groups(sb: &Sandbox) -> Result<Vec<String>> {
    Ok(sb
        .nbctl(&["--bare", "--columns=name", "list", "Port_Group"])?
        .lines()
        .map(str::trim)
        .filter(|n| n.starts_with("np."))
        .map(str::to_string)
        .collect())
}

/// Deletes every NetworkPolicy and waits until NB holds none of their
/// port groups, so the next case starts from an unrestricted cluster.
pub fn clear_policies(sb: &Sandbox) -> Result<()> {
    use switchyard_controller::k8s::Kind;
    for p in sb.get_objects(Kind::NetworkPolicy, None) {
        let ns = p["metadata"]["namespace"].as_str().unwrap_or_default();
        let name = p["metadata"]["name"].as_str().unwrap_or_default();
        sb.delete("NetworkPolicy", ns, name)?;
    }
    crate::util::wait_for(
        Duration::from_secs(60),
        "NetworkPolicy port groups gone",
        || {
            policy_port_groups(sb)
                .ok()
                .filter(|g| g.is_empty())
                .map(drop)
        },
    )
}

/// What a [`Looper`] saw.
#[derive(Clone, Debug, Default)]
pub struct LoopReport {
    pub rounds: usize,
    /// Every answer: the address that answered and with what name.
    pub answers: Vec<(Instant, String)>,
}

/// [`LOOPER`] in the background: the same targets attempted round after
/// round from one process, every answer recorded with its arrival time.
pub struct Looper {
    child: std::process::Child,
    seen: Arc<Mutex<LoopReport>>,
}

impl Looper {
    pub fn start(netns: &str, port: Port, ips: &[IpAddr], timeout: Duration) -> Result<Looper> {
        let mut args = vec![
            python().to_string(),
            "-c".into(),
            LOOPER.into(),
            port.proto().into(),
            port.port.to_string(),
            format!("{:.2}", timeout.as_secs_f64()),
        ];
        args.extend(ips.iter().map(|i| i.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut child = in_netns(netns, &args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let out = child.stdout.take().context("looper stdout")?;
        let seen = Arc::new(Mutex::new(LoopReport::default()));
        let sink = seen.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap_or_else(|p| p.into_inner());
                if line == "r" {
                    s.rounds += 1;
                } else if let Some(rest) = line.strip_prefix("ok ") {
                    s.answers.push((Instant::now(), rest.to_string()));
                }
            }
        });
        Ok(Looper { child, seen })
    }

    /// What was seen so far.
    pub fn report(&self) -> LoopReport {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Waits until `n` more rounds than `after` were completed.
    pub fn wait_rounds(&self, n: usize, timeout: Duration) -> Result<()> {
        let base = self.report().rounds;
        crate::util::wait_for(timeout, "looper rounds", || {
            (self.report().rounds >= base + n).then_some(())
        })
    }

    /// Waits for an answer that arrived after `t`.
    pub fn wait_answer_after(&self, t: Instant, timeout: Duration) -> Result<()> {
        crate::util::wait_for(timeout, "an answer", || {
            self.report()
                .answers
                .iter()
                .any(|(at, _)| *at > t)
                .then_some(())
        })
    }

    /// Stops the loop; what it saw.
    pub fn finish(mut self) -> LoopReport {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.report()
    }
}

impl Drop for Looper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
