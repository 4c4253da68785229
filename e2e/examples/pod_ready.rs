//! Pod-ready latency: how long from a pod being applied to the API until
//! CNI ADD returned on its node (the network part of a pod start), over
//! 300 pods created at a steady rate across a 3-node sandbox of real OVN,
//! read against the binding limit measured on the same sandbox at the same
//! rate just before.
//!
//! The limit ([`switchyard_e2e::bench::binding_limit`]): the same number of
//! ports, spread the same way, each written directly and at once as
//! Switchyard writes a pod's (the logical switch port in NB, the OVS port
//! with `iface-id` on a veth made beforehand), no controller, no agent,
//! timed from the writes to `ovn-installed`. Switchyard's figures are then
//! printed as ratios to it, and per pod beside it: what the OVS/OVN
//! daemons did (ovs-vswitchd bridge reconfigurations and transactions,
//! ovn-controller transactions and engine runs) and the CPU each program
//! used. What Switchyard costs beyond the limit is in those differences.
//!
//! The split: "annotation" is applied -> the controller's
//! `switchyard.io/pod-network` patch (IPAM, NB write queued); "node" is
//! patch -> CNI ADD returned (the node agent's veth and OVS port, and
//! waiting for ovn-controller's `ovn-installed`, which dominates). Below
//! that, each pod's path phase by phase: the sandbox kubelet's own
//! timestamps (watch event, network namespace, plugin exec) and the node
//! agent's per-ADD phases from its `done` log line. Last, the machine's
//! CPU over the run by program, with what ran outside the sandbox: on a
//! shared 2-core machine the figures mean little when "other" is large.
//!
//! ```sh
//! cargo build --release -p switchyard-node -p switchyard-e2e --bins --example pod_ready
//! target/release/examples/pod_ready [--pods 300 --rate 20 --nodes 3 --rounds 1 --state-dir DIR --hold SECONDS]
//! ```
//! (`cargo run --release -p switchyard-e2e --example pod_ready` works too
//! once the node binaries are built in release.) Needs root. Figures, not
//! a test: nothing fails on a clock.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use switchyard_e2e::bench::arg;

use anyhow::{Context, Result};
use switchyard_api::annotations::POD_NETWORK;
use switchyard_e2e::bench::{binding_limit, per_pod, Counters, PER_POD_ROWS};
use switchyard_e2e::load::{pids_under, CpuSample, CpuUse};
use switchyard_e2e::{pod_spec, Sandbox, SandboxOptions};

/// The daemon's per-ADD split, from its `done` log line.
#[derive(Clone, Debug, Default)]
struct AgentAdd {
    took: f64,
    annotation: f64,
    veth: f64,
    attach: f64,
    pod_side: f64,
    ovs: f64,
    installed: f64,
    result: f64,
    ovs_txns: f64,
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `namespace/name` -> the last successful ADD the agents logged for it.
fn agent_adds(logs: &[PathBuf]) -> HashMap<String, AgentAdd> {
    let mut out = HashMap::new();
    for path in logs {
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        };
        for line in text.lines().filter(|l| l.contains("annotation_ms")) {
            let line = strip_ansi(line);
            let mut pod = None;
            let mut a = AgentAdd::default();
            for tok in line.split(|c: char| c.is_whitespace() || c == '{' || c == '}') {
                let Some((k, v)) = tok.split_once('=') else {
                    continue;
                };
                let num = || v.parse::<f64>().unwrap_or(0.0);
                match k {
                    "pod" => pod = Some(v.to_string()),
                    "took_ms" => a.took = num(),
                    "annotation_ms" => a.annotation = num(),
                    "veth_ms" => a.veth = num(),
                    "attach_ms" => a.attach = num(),
                    "pod_side_ms" => a.pod_side = num(),
                    "ovs_ms" => a.ovs = num(),
                    "ovn_installed_ms" => a.installed = num(),
                    "result_ms" => a.result = num(),
                    "ovs_txns" => a.ovs_txns = num(),
                    _ => {}
                }
            }
            if let Some(pod) = pod {
                out.insert(pod, a);
            }
        }
    }
    out
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn ms(d: Duration) -> String {
    format!("{:7.1} ms", d.as_secs_f64() * 1000.0)
}

/// CPU milliseconds by program, summed over rounds.
#[derive(Default)]
struct CpuMs {
    by_program: std::collections::BTreeMap<String, f64>,
    own: f64,
    machine: f64,
    other: f64,
}

impl CpuMs {
    fn add(&mut self, c: &CpuUse) {
        let ms = |cores: f64| cores * c.seconds * 1e3;
        for (p, cores) in &c.by_program {
            *self.by_program.entry(p.clone()).or_default() += ms(*cores);
        }
        self.own += ms(c.own);
        self.machine += ms(c.machine);
        self.other += ms(c.other);
    }
}

/// Pooled over rounds.
#[derive(Default)]
struct Pooled {
    latencies: Vec<Duration>,
    counters: Counters,
    cpu: CpuMs,
    wall: Duration,
}

impl Pooled {
    fn add_counters(&mut self, c: &Counters) {
        for (k, v) in &c.0 {
            *self.counters.0.entry(k.clone()).or_default() += v;
        }
    }
}

fn main() -> Result<()> {
    let pods = arg("--pods", 300);
    let rate = arg("--rate", 20).max(1);
    let nodes = arg("--nodes", 3);
    // Rounds alternate the limit and Switchyard on the same sandbox, so
    // that load from outside falls on both alike; figures are pooled.
    let rounds = arg("--rounds", 1).max(1);
    // `--state-dir DIR` keeps the sandbox's files (daemon logs) afterwards.
    let args: Vec<String> = std::env::args().collect();
    let kept = args
        .iter()
        .position(|a| a == "--state-dir")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from);
    let temp = tempfile::tempdir()?;
    let dir = kept.clone().unwrap_or_else(|| temp.path().to_path_buf());
    eprintln!("starting a {nodes}-node sandbox in {} ...", dir.display());
    let sb = Sandbox::up(SandboxOptions::new(nodes, &dir))?;

    // Warm-up: one pod per node, so first-tunnel effects are not measured.
    for i in 0..nodes {
        sb.create_pod(pod_spec("warmup", &format!("w{i}"), None, vec![]))?;
    }
    sb.wait_pods_ready(Duration::from_secs(60))?;

    let mut limit = Pooled::default();
    let mut sy = Pooled::default();
    let mut bench_pods: Vec<(String, String)> = Vec::new(); // (uid, ns/name)
    for round in 0..rounds {
        eprintln!(
            "round {}/{rounds}: binding limit, {pods} ports at {rate}/s written directly ...",
            round + 1
        );
        let l = binding_limit(&sb, pods, rate)?;
        limit.latencies.extend(l.latencies.iter().copied());
        limit.add_counters(&l.counters);
        limit.cpu.add(&l.cpu);
        limit.wall += l.wall;

        eprintln!(
            "round {}/{rounds}: Switchyard, {pods} pods at {rate}/s ...",
            round + 1
        );
        let ns = format!("bench-r{round}");
        let mut watched = sb.pids();
        watched.extend(pids_under(sb.state_dir()));
        watched.sort();
        watched.dedup();
        let counters_before = Counters::read(&sb)?;
        let cpu_before = CpuSample::take(&watched);
        let interval = Duration::from_secs_f64(1.0 / rate as f64);
        let start = Instant::now();
        let mut uids = Vec::new();
        for i in 0..pods {
            let due = start + interval * i as u32;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let pod = sb.create_pod(pod_spec(&ns, &format!("p{i}"), None, vec![]))?;
            let uid = pod.metadata.uid.context("uid")?;
            uids.push(uid.clone());
            bench_pods.push((uid, format!("{ns}/p{i}")));
        }
        sb.wait_pods_ready(Duration::from_secs(300))?;
        sy.wall += start.elapsed();
        sy.cpu.add(&cpu_before.until(&CpuSample::take(&watched)));
        sy.add_counters(&counters_before.until(&Counters::read(&sb)?));
        if round + 1 < rounds {
            // Back to the state the round started from.
            for i in 0..pods {
                sb.delete_pod_nowait(&ns, &format!("p{i}"));
            }
            sb.wait_torn_down(&uids, Duration::from_secs(300))?;
        }
    }
    limit.latencies.sort();

    let cluster = sb.cluster();
    let annotated: HashMap<String, Instant> = cluster
        .patches()
        .into_iter()
        .filter(|p| p.kind == "Pod" && p.annotations.contains_key(POD_NETWORK))
        .fold(HashMap::new(), |mut m, p| {
            m.entry(p.uid).or_insert(p.at);
            m
        });
    let starts: HashMap<String, _> = sb
        .kubelet()
        .starts()
        .into_iter()
        .map(|s| (s.uid.clone(), s))
        .collect();
    let agent = agent_adds(&sb.agent_logs());
    let ms_f = |v: f64| Duration::from_secs_f64(v.max(0.0) / 1e3);
    let (mut ann, mut node) = (vec![], vec![]);
    let mut split: Vec<(&str, Vec<Duration>)> = [
        "kubelet: applied -> watch event",
        "kubelet: netns created",
        "kubelet: netns -> CNI exec",
        "CNI exec -> ADD returned",
        "  shim exec + socket (outside daemon)",
        "  daemon ADD total",
        "    annotation wait",
        "    veth pair (peer made in the pod)",
        "    attach (both of the next, overlapped)",
        "      pod side (netlink in the pod)",
        "      OVS transaction (port insert)",
        "      ovn-installed wait",
        "    result",
        "port insert -> ovn-installed",
    ]
    .into_iter()
    .map(|l| (l, vec![]))
    .collect();
    let mut retried = 0;
    let mut agent_txns = (0.0, 0usize);
    for (uid, key) in &bench_pods {
        let (Some(created), Some(a), Some(s)) =
            (cluster.created_at(uid), annotated.get(uid), starts.get(uid))
        else {
            continue;
        };
        let r = s.add_returned;
        sy.latencies.push(r.saturating_duration_since(created));
        ann.push(a.saturating_duration_since(created));
        node.push(r.saturating_duration_since(*a));
        if s.add_attempts > 1 {
            retried += 1;
        }
        let exec = r.saturating_duration_since(s.exec_started);
        let mut row = vec![
            s.seen.saturating_duration_since(created),
            s.netns_ready.saturating_duration_since(s.seen),
            s.exec_started.saturating_duration_since(s.netns_ready),
            exec,
        ];
        if let Some(d) = agent.get(key) {
            agent_txns.0 += d.ovs_txns;
            agent_txns.1 += 1;
            row.extend([
                exec.saturating_sub(ms_f(d.took)),
                ms_f(d.took),
                ms_f(d.annotation),
                ms_f(d.veth),
                ms_f(d.attach),
                ms_f(d.pod_side),
                ms_f(d.ovs),
                ms_f(d.installed),
                ms_f(d.result),
                ms_f(d.ovs + d.installed),
            ]);
        }
        for (slot, v) in split.iter_mut().zip(row) {
            slot.1.push(v);
        }
    }
    let total = &mut sy.latencies;
    for v in [&mut *total, &mut ann, &mut node] {
        v.sort();
    }
    for (_, v) in split.iter_mut() {
        v.sort();
    }
    let total = &sy.latencies;
    println!();
    println!(
        "Pod-ready latency (pod applied -> CNI ADD returned), {} pods at {rate}/s over {nodes} nodes in {rounds} round(s), {:.1} s wall",
        total.len(),
        sy.wall.as_secs_f64()
    );
    println!("                                     p50         p99         max");
    for (label, v) in [
        ("total (applied -> ADD returned)", total),
        ("  controller annotation", &ann),
        ("  node agent + ovn-installed", &node),
    ] {
        println!(
            "{label:<32} {}  {}  {}",
            ms(pct(v, 0.50)),
            ms(pct(v, 0.99)),
            ms(v.last().copied().unwrap_or_default())
        );
    }
    println!();
    println!("Split (each row's own percentiles; {retried} pods needed more than one ADD):");
    for (label, v) in &split {
        println!(
            "{label:<40} {}  {}  {}   (n={})",
            ms(pct(v, 0.50)),
            ms(pct(v, 0.99)),
            ms(v.last().copied().unwrap_or_default()),
            v.len()
        );
    }
    println!();
    let l = &limit.latencies;
    println!(
        "Binding limit on this sandbox, same rate ({} ports at {rate}/s, {:.1} s wall): NB port + OVS port with iface-id written at once -> ovn-installed",
        l.len(),
        limit.wall.as_secs_f64()
    );
    println!("                                     p50         p99         max");
    println!(
        "{:<32} {}  {}  {}",
        "limit (writes -> ovn-installed)",
        ms(pct(l, 0.50)),
        ms(pct(l, 0.99)),
        ms(l.last().copied().unwrap_or_default())
    );
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(1e-9);
    println!(
        "Switchyard / limit: p50 {:.2}x, p99 {:.2}x (applied -> ADD returned over writes -> ovn-installed)",
        ratio(pct(total, 0.50), pct(l, 0.50)),
        ratio(pct(total, 0.99), pct(l, 0.99)),
    );
    println!();
    println!("Per pod, summed over the nodes               Switchyard         limit");
    println!(
        "  {:<44} {:>10}  {:>12}",
        "node agent Open_vSwitch transactions / ADD",
        format!("{:.2}", agent_txns.0 / agent_txns.1.max(1) as f64),
        "-"
    );
    for (label, key) in PER_POD_ROWS {
        println!(
            "  {label:<44} {:>10}  {:>12}",
            per_pod(&sy.counters, key, total.len()),
            per_pod(&limit.counters, key, l.len())
        );
    }
    println!("  CPU ms per pod, by program:");
    let (n_sy, n_l) = (total.len().max(1) as f64, l.len().max(1) as f64);
    let mut programs: Vec<&String> = sy
        .cpu
        .by_program
        .keys()
        .chain(limit.cpu.by_program.keys())
        .collect();
    programs.sort();
    programs.dedup();
    let get = |c: &CpuMs, p: &str| c.by_program.get(p).copied().unwrap_or(0.0);
    for p in programs {
        println!(
            "    {p:<42} {:>10.2}  {:>12.2}",
            get(&sy.cpu, p) / n_sy,
            get(&limit.cpu, p) / n_l
        );
    }
    for (label, a, b) in [
        (
            "this process (controller, kubelet, CNI execs)",
            sy.cpu.own,
            limit.cpu.own,
        ),
        ("outside the sandbox", sy.cpu.other, limit.cpu.other),
        ("machine (everyone)", sy.cpu.machine, limit.cpu.machine),
    ] {
        println!("    {label:<42} {:>10.2}  {:>12.2}", a / n_sy, b / n_l);
    }
    println!();
    println!("Other anchors:");
    println!("  Switchyard target: applied -> ADD returned p99 <= 150 ms (3-node sandbox)");
    println!("  Kubernetes pod-startup SLO: p99 <= 5 s for the whole pod start (image pull excluded), all of it, not just the network");
    println!("  ovn-kubernetes CI on kind: about 1.2 s average pod-ready");
    // `--hold SECONDS`: keep the sandbox up for inspection (ovn-appctl).
    let hold = arg("--hold", 0);
    if hold > 0 {
        eprintln!("holding the sandbox for {hold} s ...");
        std::thread::sleep(Duration::from_secs(hold as u64));
    }
    sb.down()?;
    Ok(())
}
