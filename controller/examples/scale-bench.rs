//! Scale benchmark (figures, not a test):
//! `cargo run --release -p switchyard-controller --example scale-bench [-- NODES PODS]`
//!
//! Real NB/SB ovsdb-server and ovn-northd in a temp dir, the in-memory
//! cluster with 100 nodes and 10,000 pods, and the controller in-process:
//! 1. cold start: start → every pod annotated and its port in NB;
//! 2. NB rebuild: NB's Switchyard rows deleted, pods already annotated;
//! 3. restart on a converged cluster (should write nothing);
//! 4. steady state: 1,000 pods added one by one at 100/s, created → annotated.
//!
//! Process figures (CPU, peak RSS) include the in-memory API server and the
//! benchmark's own NB replica, so they overstate the controller's.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ovn_testbed::OvnCentral;
use ovsdb::{Client, ClientConfig, Condition, MonitorSpec, Transaction};
use switchyard_api::names;
use switchyard_controller::k8s::memory::{node, pod, MemoryCluster};
use switchyard_controller::{Config, Controller, Metrics};

fn cpu_seconds() -> f64 {
    // utime + stime from /proc/self/stat, in clock ticks of 1/100 s.
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (t(11) + t(12)) / 100.0
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

struct Run {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<switchyard_controller::Result<()>>,
    metrics: Metrics,
}

fn start(config: &Config, cluster: &Arc<MemoryCluster>) -> Run {
    let c = Controller::new(config.clone(), cluster.clone());
    let metrics = c.metrics();
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(c.run(async {
        let _ = rx.await;
    }));
    Run {
        stop,
        task,
        metrics,
    }
}

async fn stop(r: Run) {
    let _ = r.stop.send(());
    let _ = r.task.await;
}

async fn wait(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while !cond() {
        if Instant::now() > end {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let nodes = args.first().copied().unwrap_or(100);
    let pods = args.get(1).copied().unwrap_or(10_000);
    let dir = tempfile::tempdir()?;
    let central = OvnCentral::start(dir.path())?;
    let client = Client::connect(ClientConfig::new(&central.nb_remote())?).await?;
    let replica = client
        .monitor(
            MonitorSpec::new("OVN_Northbound")
                .table(
                    "Logical_Switch_Port",
                    Some(vec!["name".into(), "external_ids".into()]),
                )
                .index_external_id("Logical_Switch_Port", names::OWNER_KIND),
        )
        .await?;
    let pod_ports = || {
        replica.with(|db| {
            db.table("Logical_Switch_Port")
                .by_external_id(names::OWNER_KIND, names::KIND_POD)
                .len()
        })
    };
    let config = Config {
        nb_remote: central.nb_remote(),
        http_addr: None,
        ..Config::default()
    };
    let cluster = MemoryCluster::new();
    for n in 0..nodes {
        cluster.apply_node(node(&format!("node-{n:03}")));
    }
    for i in 0..pods {
        cluster.apply_pod(pod(
            &format!("ns{}", i % 20),
            &format!("pod-{i:05}"),
            &format!("node-{:03}", i % nodes),
        ));
    }
    let annotated = |c: &MemoryCluster| c.patches().iter().filter(|p| p.kind == "Pod").count();
    println!("Switchyard controller scale benchmark: {nodes} nodes, {pods} pods (in-memory API, real NB/SB + northd)\n");

    // 1. Cold start.
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    let run = start(&config, &cluster);
    wait("cold start", Duration::from_secs(300), || {
        annotated(&cluster) >= pods && pod_ports() >= pods
    })
    .await;
    let cold = t0.elapsed();
    let cold_cpu = cpu_seconds() - cpu0;
    wait("synced", Duration::from_secs(60), || {
        run.metrics.health.synced()
    })
    .await;
    let txns = run.metrics.nb_transactions.get();
    let ops = run.metrics.nb_operations.get();
    println!("cold start → all pods annotated and in NB   {:>8.2} s     (target ≤ 20 s; ovn-kubernetes 205 s)", cold.as_secs_f64());
    println!("  NB transactions / operations              {txns:>8} / {ops}  (ovn-kubernetes 13,000 / 36,000)");
    println!(
        "  process CPU / per pod                     {:>8.2} s / {:.3} ms  (target ≤ 0.5 ms per pod; ovn-kubernetes 4.2 ms)",
        cold_cpu,
        cold_cpu * 1e3 / pods as f64
    );
    stop(run).await;

    // 2. NB rebuild: pods annotated, NB lost Switchyard's rows.
    let mut tx = Transaction::new("OVN_Northbound");
    tx.delete(
        "Logical_Switch",
        vec![Condition::includes(
            "external_ids",
            ovsdb::Value::map([(names::OWNER_KIND, names::KIND_NODE)]),
        )],
    );
    tx.delete(
        "Logical_Router",
        vec![Condition::eq("name", names::CLUSTER_ROUTER)],
    );
    client.transact(tx).await?;
    wait("NB emptied", Duration::from_secs(30), || pod_ports() == 0).await;
    let patches_before = cluster.patch_count();
    let t1 = Instant::now();
    let run = start(&config, &cluster);
    wait("NB rebuild", Duration::from_secs(120), || {
        pod_ports() >= pods
    })
    .await;
    let rebuild = t1.elapsed();
    wait("synced", Duration::from_secs(60), || {
        run.metrics.health.synced()
    })
    .await;
    println!(
        "NB rebuild of {pods} annotated pods             {:>8.2} s     (target ≤ 0.7 s; {} transactions, {} operations, {} API patches)",
        rebuild.as_secs_f64(),
        run.metrics.nb_transactions.get(),
        run.metrics.nb_operations.get(),
        cluster.patch_count() - patches_before
    );
    stop(run).await;

    // 3. Restart on a converged cluster.
    let t2 = Instant::now();
    let run = start(&config, &cluster);
    wait("synced", Duration::from_secs(60), || {
        run.metrics.health.synced()
    })
    .await;
    println!(
        "restart on converged cluster → ready        {:>8.2} s     ({} NB operations, must be 0)",
        t2.elapsed().as_secs_f64(),
        run.metrics.nb_operations.get()
    );

    // 4. Steady state: 1,000 pods at 100/s.
    let extra = 1000usize;
    let mut uids = Vec::with_capacity(extra);
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    for i in 0..extra {
        tick.tick().await;
        let p = cluster.apply_pod(pod(
            "steady",
            &format!("s-{i:04}"),
            &format!("node-{:03}", i % nodes),
        ));
        uids.push(p.metadata.uid.unwrap_or_default());
    }
    wait("steady pods annotated", Duration::from_secs(60), || {
        cluster
            .patches()
            .iter()
            .filter(|p| p.namespace.as_deref() == Some("steady"))
            .count()
            >= extra
    })
    .await;
    let patches = cluster.patches();
    let mut lat: Vec<f64> = patches
        .iter()
        .filter(|p| p.namespace.as_deref() == Some("steady"))
        .filter_map(|p| {
            Some(
                p.at.duration_since(cluster.created_at(&p.uid)?)
                    .as_secs_f64()
                    * 1e3,
            )
        })
        .collect();
    lat.sort_by(|a, b| a.total_cmp(b));
    println!(
        "steady state, {extra} pods at 100/s: created → annotated p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms  (target p99 ≤ 20 ms; ovn-kubernetes p50 7 ms, p99 42 ms)",
        pct(&lat, 0.5),
        pct(&lat, 0.99),
        lat.last().copied().unwrap_or(f64::NAN)
    );
    wait("steady ports in NB", Duration::from_secs(60), || {
        pod_ports() >= pods + extra
    })
    .await;
    stop(run).await;
    println!("peak RSS of the whole process              {:>8.1} MiB   (target ≤ 100 MiB for the controller; ovn-kubernetes 530 MiB)", peak_rss_mib());
    Ok(())
}
