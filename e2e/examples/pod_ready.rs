//! Pod-ready latency: how long from a pod being applied to the API until
//! CNI ADD returned on its node (the network part of a pod start), over
//! 300 pods created at a steady rate across a 3-node sandbox of real OVN.
//!
//! The split: "annotation" is applied -> the controller's
//! `switchyard.io/pod-network` patch (IPAM, NB write queued); "node" is
//! patch -> CNI ADD returned (the node agent's veth and OVS port, and
//! waiting for ovn-controller's `ovn-installed`, which dominates).
//!
//! ```sh
//! cargo run --release -p switchyard-e2e --example pod_ready [-- --pods 300 --rate 20 --nodes 3]
//! ```
//! Needs root. Figures, not a test: nothing fails on a clock.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use switchyard_api::annotations::POD_NETWORK;
use switchyard_e2e::{pod_spec, Sandbox, SandboxOptions};

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
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

fn main() -> Result<()> {
    let pods = arg("--pods", 300);
    let rate = arg("--rate", 20).max(1);
    let nodes = arg("--nodes", 3);
    let dir = tempfile::tempdir()?;
    eprintln!("starting a {nodes}-node sandbox ...");
    let sb = Sandbox::up(SandboxOptions::new(nodes, dir.path()))?;

    // Warm-up: one pod per node, so first-tunnel effects are not measured.
    for i in 0..nodes {
        sb.create_pod(pod_spec("warmup", &format!("w{i}"), None, vec![]))?;
    }
    sb.wait_pods_ready(Duration::from_secs(60))?;

    eprintln!("creating {pods} pods at {rate}/s ...");
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let start = Instant::now();
    let mut uids = Vec::new();
    for i in 0..pods {
        let due = start + interval * i as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let pod = sb.create_pod(pod_spec("bench", &format!("p{i}"), None, vec![]))?;
        uids.push(pod.metadata.uid.context("uid")?);
    }
    sb.wait_pods_ready(Duration::from_secs(300))?;
    let wall = start.elapsed();

    let cluster = sb.cluster();
    let annotated: HashMap<String, Instant> = cluster
        .patches()
        .into_iter()
        .filter(|p| p.kind == "Pod" && p.annotations.contains_key(POD_NETWORK))
        .fold(HashMap::new(), |mut m, p| {
            m.entry(p.uid).or_insert(p.at);
            m
        });
    let returned: HashMap<String, Instant> = sb
        .kubelet()
        .starts()
        .into_iter()
        .map(|s| (s.uid, s.add_returned))
        .collect();
    let (mut total, mut ann, mut node) = (vec![], vec![], vec![]);
    for uid in &uids {
        let (Some(created), Some(a), Some(r)) = (
            cluster.created_at(uid),
            annotated.get(uid),
            returned.get(uid),
        ) else {
            continue;
        };
        total.push(r.saturating_duration_since(created));
        ann.push(a.saturating_duration_since(created));
        node.push(r.saturating_duration_since(*a));
    }
    for v in [&mut total, &mut ann, &mut node] {
        v.sort();
    }
    println!();
    println!(
        "Pod-ready latency (pod applied -> CNI ADD returned), {} pods at {rate}/s over {nodes} nodes, {:.1} s wall",
        total.len(),
        wall.as_secs_f64()
    );
    println!("                                     p50         p99         max");
    for (label, v) in [
        ("total (applied -> ADD returned)", &total),
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
    println!("Anchors (not like for like):");
    println!("  Kubernetes pod-startup SLO: p99 <= 5 s for the whole pod start (image pull excluded), all of it, not just the network");
    println!("  ovn-kubernetes CI on kind: about 1.2 s average pod-ready");
    sb.down()?;
    Ok(())
}
