//! CNI ADD latency on one node of real OVN: p50/p99 over 100 sequential
//! and 20 concurrent pods, measured as a runtime sees it (exec of the
//! `switchyard-cni` binary to its result), and the share of the daemon's
//! ADD time spent waiting for ovn-controller's `ovn-installed`.
//!
//! `cargo bench -p switchyard-node --bench cni-add` (root needed). Figures,
//! not a test: nothing here fails on a clock.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn report(what: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "{what}: n={} p50={:.1} ms p99={:.1} ms max={:.1} ms",
        samples.len(),
        percentile(&samples, 0.50).as_secs_f64() * 1e3,
        percentile(&samples, 0.99).as_secs_f64() * 1e3,
        samples.last().map(|d| d.as_secs_f64() * 1e3).unwrap_or(0.0),
    );
}

/// (sum seconds, count) per ADD phase, from the daemon's histograms.
fn phases(node: &Node) -> Vec<(&'static str, f64, f64)> {
    let text = node.metrics_text();
    switchyard_node::metrics::ADD_PHASES
        .iter()
        .map(|p| {
            let series = |what: &str| {
                metric_value(
                    &text,
                    &format!("switchyard_node_cni_add_phase_seconds_{what}{{phase=\"{p}\"}}"),
                )
                .unwrap_or(0.0)
            };
            (*p, series("sum"), series("count"))
        })
        .collect()
}

/// Mean per phase between two readings.
fn report_phases(before: &[(&str, f64, f64)], after: &[(&str, f64, f64)]) {
    let parts: Vec<String> = before
        .iter()
        .zip(after)
        .map(|((p, s0, c0), (_, s1, c1))| {
            format!("{p} {:.1}", 1e3 * (s1 - s0) / (c1 - c0).max(1.0))
        })
        .collect();
    println!("  mean ms per phase: {}", parts.join(", "));
}

fn install_share(node: &Node) -> (f64, f64) {
    let text = node.metrics_text();
    let wait = metric_value(&text, "switchyard_node_ovn_installed_wait_seconds_sum").unwrap_or(0.0);
    let add = metric_value(
        &text,
        "switchyard_node_cni_request_duration_seconds_sum{command=\"ADD\",result=\"ok\"}",
    )
    .unwrap_or(0.0);
    (wait, add)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if !is_root() {
        eprintln!("cni-add benchmark needs root; skipped");
        return;
    }
    let node = Arc::new(Node::start().await);
    let mut pods = Vec::new();
    for i in 0..120u8 {
        pods.push(node.pod(i, true).await);
    }
    let conf = node.conf("1.1.0").to_string();

    let phases0 = phases(&node);
    let mut sequential = Vec::new();
    for pod in &pods[..100] {
        let env = node.env("ADD", pod);
        let t = Instant::now();
        let out = node.cni(&env, &conf);
        sequential.push(t.elapsed());
        assert!(out.ok(), "ADD failed: {}", out.stdout);
    }
    let (wait_seq, add_seq) = install_share(&node);
    report("sequential ADD (100 pods)", sequential);
    println!(
        "  share waiting for ovn-installed: {:.0}% ({:.2} s of {:.2} s daemon ADD time)",
        100.0 * wait_seq / add_seq.max(1e-9),
        wait_seq,
        add_seq
    );
    let phases1 = phases(&node);
    report_phases(&phases0, &phases1);

    let pods = Arc::new(pods);
    let threads: Vec<_> = (100..120)
        .map(|i| {
            let node = node.clone();
            let pods = pods.clone();
            let conf = conf.clone();
            std::thread::spawn(move || {
                let env = node.env("ADD", &pods[i]);
                let t = Instant::now();
                let out = node.cni(&env, &conf);
                let took = t.elapsed();
                assert!(out.ok(), "ADD failed: {}", out.stdout);
                took
            })
        })
        .collect();
    let concurrent: Vec<Duration> = threads
        .into_iter()
        .map(|t| t.join().expect("ADD thread"))
        .collect();
    let (wait_all, add_all) = install_share(&node);
    report("concurrent ADD (20 pods at once)", concurrent);
    println!(
        "  share waiting for ovn-installed: {:.0}%",
        100.0 * (wait_all - wait_seq) / (add_all - add_seq).max(1e-9)
    );
    report_phases(&phases1, &phases(&node));
}
