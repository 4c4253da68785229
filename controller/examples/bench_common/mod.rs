//! What the controller benchmarks share: running a controller on its own
//! runtime (so its CPU time is its own threads'), waiting on a condition,
//! waiting for ovn-northd to catch up, percentiles. Included by
//! `policy-bench`, `anp-bench` and `service-bench` with `#[path]` (cargo
//! builds each file under `examples/` as its own program, not this one);
//! each uses what it needs.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube_memory::MemoryCluster;
use ovsdb::{Client, Mutation, Transaction};
use switchyard_controller::{Config, Controller, Metrics};

pub struct Run {
    pub rt: tokio::runtime::Runtime,
    pub stop: tokio::sync::oneshot::Sender<()>,
    pub task: tokio::task::JoinHandle<switchyard_controller::Result<()>>,
    pub metrics: Metrics,
}

pub fn start(config: &Config, cluster: &Arc<MemoryCluster>) -> Run {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("sy-ctrl")
        .enable_all()
        .build()
        .expect("controller runtime");
    let c = Controller::new(config.clone(), cluster.clone());
    let metrics = c.metrics();
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let task = rt.spawn(c.run(async {
        let _ = rx.await;
    }));
    Run {
        rt,
        stop,
        task,
        metrics,
    }
}

pub async fn stop(r: Run) {
    let _ = r.stop.send(());
    let _ = r.task.await;
    r.rt.shutdown_background();
}

/// CPU seconds of this process's threads named `sy-ctrl*`.
pub fn controller_cpu() -> f64 {
    let mut sum = 0.0;
    for e in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        if !comm.starts_with("sy-ctrl") {
            continue;
        }
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<&str> = after.split_whitespace().collect();
        let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        sum += (t(11) + t(12)) / 100.0;
    }
    sum
}

pub async fn wait(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Waits until ovn-northd has caught up with NB (`ovn-nbctl --wait=sb
/// sync`: bump `nb_cfg`, wait for `sb_cfg`).
pub async fn northd_idle(client: &Client) -> Result<(), Box<dyn std::error::Error>> {
    let mut tx = Transaction::new("OVN_Northbound");
    tx.mutate("NB_Global", vec![], vec![Mutation::add("nb_cfg", 1i64)]);
    tx.select("NB_Global", vec![], Some(vec!["nb_cfg".into()]));
    let r = client.transact(tx).await?;
    let want = r[1]
        .rows()
        .first()
        .and_then(|row| row.get("nb_cfg")?.as_i64());
    let end = Instant::now() + Duration::from_secs(600);
    while Instant::now() < end {
        let mut tx = Transaction::new("OVN_Northbound");
        tx.select("NB_Global", vec![], Some(vec!["sb_cfg".into()]));
        let r = client.transact(tx).await?;
        let have = r[0]
            .rows()
            .first()
            .and_then(|row| row.get("sb_cfg")?.as_i64());
        if have >= want {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err("ovn-northd did not catch up in 600 s".into())
}

pub fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted
        .get(((sorted.len().max(1) - 1) as f64 * p).round() as usize)
        .copied()
        .unwrap_or(f64::NAN)
}
