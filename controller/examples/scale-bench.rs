//! Scale benchmark (figures, not a test):
//! `cargo run --release -p switchyard-controller --example scale-bench [-- NODES PODS]`
//!
//! Real NB/SB ovsdb-server and ovn-northd in a temp dir, the in-memory
//! cluster with 100 nodes and 10,000 pods, and the controller in-process:
//! 1. cold start: start → every pod annotated and its port in NB;
//! 2. NB rebuild: the controller starts on a cluster whose nodes and pods
//!    all carry their annotations while NB holds none of Switchyard's rows;
//!    the clock runs from the start until NB holds every row the controller
//!    wants (1 router, a switch and a router port per node, two switch ports
//!    per node and one per pod), as seen by a second client's replica;
//!    every run starts once ovn-northd is idle (`SCALE_BENCH_REPS` runs,
//!    default 3, the median printed);
//! 3. restart on a converged cluster (should write nothing);
//! 4. steady state: 1,000 pods added one by one at 100/s, created → annotated.
//!
//! The controller's own cost is told apart from the rest of the process
//! (the in-memory API server holding every Pod, the benchmark's NB watcher):
//! - CPU: the controller runs on a runtime of its own whose threads are
//!   named `sy-ctrl`; their CPU time is summed from /proc/self/task;
//! - memory: a counting allocator gives the live heap before the controller
//!   starts and its peak while it runs; the peak RSS (VmHWM, reset per phase
//!   through /proc/self/clear_refs) is given against the RSS at the start.
//!   Only the first phase's RSS figure is clean: later phases reuse heap
//!   pages freed by earlier ones, which RSS does not show.
//!
//! `SCALE_BENCH_MAX_BATCH=N` overrides `max_batch_owners`; `RUST_LOG` turns
//! the controller's logs on; `SCALE_BENCH_STOP_AFTER=cold|rebuild` ends the
//! run after that phase (for profiling one phase).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube_memory::{node, pod, MemoryCluster};
use ovn_testbed::OvnCentral;
use ovsdb::{Client, ClientConfig, Condition, MonitorSpec, Mutation, Replica, Transaction};
use switchyard_api::names;
use switchyard_controller::{Config, Controller, Metrics};

/// The system allocator, counting live bytes and their peak.
struct Counting;

static INNER: System = System;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { INNER.alloc(layout) };
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { INNER.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { INNER.alloc_zeroed(layout) };
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { INNER.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                let grow = new_size - layout.size();
                let live = LIVE.fetch_add(grow, Ordering::Relaxed) + grow;
                PEAK.fetch_max(live, Ordering::Relaxed);
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const MIB: f64 = 1024.0 * 1024.0;

fn heap_mib() -> f64 {
    LIVE.load(Ordering::Relaxed) as f64 / MIB
}

fn proc_status_mib(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// utime + stime of the tasks (threads) of this process whose name starts
/// with `prefix`, or of the whole process for `None`; seconds.
fn cpu_seconds(prefix: Option<&str>) -> f64 {
    let ticks = |stat: &str| -> f64 {
        let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<&str> = after.split_whitespace().collect();
        let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        (t(11) + t(12)) / 100.0
    };
    let Some(prefix) = prefix else {
        return ticks(&std::fs::read_to_string("/proc/self/stat").unwrap_or_default());
    };
    let mut sum = 0.0;
    for e in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        if comm.starts_with(prefix) {
            sum += ticks(&std::fs::read_to_string(e.path().join("stat")).unwrap_or_default());
        }
    }
    sum
}

/// Memory and CPU from the start of a phase.
struct Meter {
    heap0: f64,
    rss0: f64,
    cpu0: f64,
}

impl Meter {
    fn start() -> Meter {
        PEAK.store(LIVE.load(Ordering::Relaxed), Ordering::Relaxed);
        let _ = std::fs::write("/proc/self/clear_refs", "5");
        Meter {
            heap0: heap_mib(),
            rss0: proc_status_mib("VmRSS:"),
            cpu0: cpu_seconds(None),
        }
    }
    fn heap_peak_delta(&self) -> f64 {
        PEAK.load(Ordering::Relaxed) as f64 / MIB - self.heap0
    }
    fn rss_peak_delta(&self) -> f64 {
        proc_status_mib("VmHWM:") - self.rss0
    }
    fn process_cpu(&self) -> f64 {
        cpu_seconds(None) - self.cpu0
    }
}

/// A controller on a runtime of its own (threads named `sy-ctrl`).
struct Run {
    rt: tokio::runtime::Runtime,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<switchyard_controller::Result<()>>,
    metrics: Metrics,
}

fn start(config: &Config, cluster: &Arc<MemoryCluster>) -> Run {
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

impl Run {
    /// CPU seconds the controller's threads used so far.
    fn cpu(&self) -> f64 {
        cpu_seconds(Some("sy-ctrl"))
    }
}

async fn stop(r: Run) {
    let _ = r.stop.send(());
    let _ = r.task.await;
    r.rt.shutdown_background();
}

async fn wait(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while !cond() {
        if Instant::now() > end {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

const TABLES: [&str; 5] = [
    "Logical_Router",
    "Logical_Switch",
    "Logical_Router_Port",
    "Logical_Switch_Port",
    "Address_Set",
];

/// Namespaces the pods are spread over.
const NAMESPACES: usize = 20;

/// Rows per table in the watcher's replica.
fn nb_rows(replica: &Replica) -> [usize; 5] {
    replica.with(|db| TABLES.map(|t| db.table(t).len()))
}

/// Waits until ovn-northd has caught up with NB, as `ovn-nbctl --wait=sb
/// sync` does: bumps `NB_Global.nb_cfg` and waits for `sb_cfg` to reach it.
async fn northd_idle(client: &Client) -> Result<(), Box<dyn std::error::Error>> {
    let mut tx = Transaction::new("OVN_Northbound");
    tx.mutate("NB_Global", vec![], vec![Mutation::add("nb_cfg", 1i64)]);
    tx.select("NB_Global", vec![], Some(vec!["nb_cfg".into()]));
    let r = client.transact(tx).await?;
    let Some(want) = r[1]
        .rows()
        .first()
        .and_then(|row| row.get("nb_cfg")?.as_i64())
    else {
        return Ok(());
    };
    let end = Instant::now() + Duration::from_secs(120);
    while Instant::now() < end {
        let mut tx = Transaction::new("OVN_Northbound");
        tx.select("NB_Global", vec![], Some(vec!["sb_cfg".into()]));
        let r = client.transact(tx).await?;
        let have = r[0]
            .rows()
            .first()
            .and_then(|row| row.get("sb_cfg")?.as_i64());
        if have.is_some_and(|h| h >= want) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err("ovn-northd did not catch up in 120 s".into())
}

/// A pod as large as a real API server hands out: container specs with
/// env, resources and probes, status with conditions, managedFields and a
/// last-applied annotation (about 8 KiB of JSON). The controller reads
/// about 300 bytes of it; the rest is what decoding must skip.
fn realistic_pod(ns: &str, name: &str, node: &str) -> Pod {
    let mut p = pod(ns, name, node);
    let env: Vec<serde_json::Value> = (0..12)
        .map(|i| serde_json::json!({"name": format!("ENV_{i}"), "value": format!("value-{i}-with-some-length")}))
        .collect();
    let spec_json = serde_json::json!({
        "nodeName": node,
        "serviceAccountName": "default",
        "containers": [{
            "name": "app", "image": "registry.example.com/team/app:1.2.3",
            "imagePullPolicy": "IfNotPresent",
            "args": ["--listen=:8080", "--log-level=info", "--metrics=:9090"],
            "env": env,
            "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"},
                      {"name": "metrics", "containerPort": 9090, "protocol": "TCP"}],
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}},
            "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 10},
            "livenessProbe": {"httpGet": {"path": "/livez", "port": 8080}, "periodSeconds": 10},
            "volumeMounts": [{"name": "config", "mountPath": "/etc/app"},
                             {"name": "kube-api-access", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true}]
        }],
        "volumes": [{"name": "config", "configMap": {"name": "app-config"}},
                    {"name": "kube-api-access", "projected": {"sources": [{"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}}]}}],
        "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}]
    });
    p.spec = serde_json::from_value(spec_json).ok();
    let conditions: Vec<serde_json::Value> = ["PodScheduled", "Initialized", "ContainersReady", "Ready"]
        .iter()
        .map(|t| serde_json::json!({"type": t, "status": "True", "lastTransitionTime": "2026-12-01T10:00:00Z"}))
        .collect();
    let status_json = serde_json::json!({
        "phase": "Pending",
        "conditions": conditions,
        "hostIP": "198.18.0.10", "qosClass": "Burstable",
        "containerStatuses": [{"name": "app", "ready": false, "restartCount": 0, "image": "registry.example.com/team/app:1.2.3",
            "imageID": "registry.example.com/team/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "state": {"waiting": {"reason": "ContainerCreating"}}}]
    });
    p.status = serde_json::from_value(status_json).ok();
    p.metadata.labels = Some(
        [
            ("app", "shop"),
            ("tier", "web"),
            ("pod-template-hash", "7d9f8c6b5"),
            ("version", "v1.2.3"),
            ("team", "payments"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
    );
    p.metadata.annotations = Some(
        [
            (
                "kubectl.kubernetes.io/last-applied-configuration".to_string(),
                "{\"apiVersion\":\"v1\",\"kind\":\"Pod\"}".repeat(40),
            ),
            ("prometheus.io/scrape".to_string(), "true".to_string()),
        ]
        .into(),
    );
    p.metadata.managed_fields = serde_json::from_value(serde_json::json!([
        {"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1", "time": "2026-12-01T10:00:00Z",
         "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:app": {}, "f:tier": {}}}, "f:spec": {"f:containers": {"k:{\"name\":\"app\"}": {".": {}, "f:image": {}, "f:env": {}, "f:ports": {}, "f:resources": {}}}}}},
        {"manager": "kubelet", "operation": "Update", "apiVersion": "v1", "time": "2026-12-01T10:00:01Z", "subresource": "status",
         "fieldsType": "FieldsV1", "fieldsV1": {"f:status": {"f:conditions": {}, "f:containerStatuses": {}, "f:hostIP": {}, "f:phase": {}, "f:qosClass": {}}}}
    ]))
    .ok();
    p
}

/// Every row of the benchmark's tables, whole, as one `select` sees them.
async fn snapshot(
    client: &Client,
) -> Result<Vec<(String, Vec<ovsdb::Row>)>, Box<dyn std::error::Error>> {
    let mut tx = Transaction::new("OVN_Northbound");
    for t in TABLES {
        tx.select(t, vec![], None);
    }
    let r = client.transact(tx).await?;
    Ok(TABLES
        .iter()
        .zip(r)
        .map(|(t, res)| (t.to_string(), res.rows().to_vec()))
        .collect())
}

/// The same rows written by a plain client in one transaction, UUID
/// references turned into the transaction's own names: what OVN itself
/// takes to ingest what the controller writes, with ovn-northd running.
fn ingest_transaction(rows: &[(String, Vec<ovsdb::Row>)]) -> Transaction {
    use ovsdb::{Atom, Value};
    let mut names = std::collections::HashMap::new();
    for (_, rs) in rows {
        for r in rs {
            if let Some(u) = r.uuid() {
                names.insert(u, format!("r{}", names.len()));
            }
        }
    }
    let fix = |a: &Atom| match a {
        Atom::Uuid(u) => names
            .get(u)
            .map(|n| Atom::NamedUuid(n.clone()))
            .unwrap_or_else(|| a.clone()),
        other => other.clone(),
    };
    let mut tx = Transaction::new("OVN_Northbound");
    for (table, rs) in rows {
        for r in rs {
            let mut row = ovsdb::Row::new();
            for (c, v) in r.iter() {
                let empty = v.atoms().is_empty() && v.as_map().is_none_or(|m| m.is_empty());
                if c.starts_with('_') || empty || (table == "Logical_Switch_Port" && c == "up") {
                    continue;
                }
                let v = match v {
                    Value::Set(s) => Value::Set(s.iter().map(fix).collect()),
                    Value::Map(m) => Value::Map(m.iter().map(|(k, v)| (fix(k), fix(v))).collect()),
                };
                row.set(c, v);
            }
            let name = r
                .uuid()
                .and_then(|u| names.get(&u))
                .cloned()
                .unwrap_or_default();
            tx.insert_as(table, row, &name);
        }
    }
    tx
}

/// Deletes what the controller wrote (what NB loses in a rebuild).
async fn delete_ours(client: &Client) -> Result<(), Box<dyn std::error::Error>> {
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
    tx.delete(
        "Logical_Switch",
        vec![Condition::eq("name", names::JOIN_SWITCH)],
    );
    tx.delete(
        "Address_Set",
        vec![Condition::includes(
            "external_ids",
            ovsdb::Value::map([(names::OWNER_KIND, names::KIND_NAMESPACE)]),
        )],
    );
    client.transact(tx).await?;
    Ok(())
}

/// Prints the live heap and its peak with every event it is given.
struct HeapTrace;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for HeapTrace {
    fn on_event(&self, ev: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Msg(String);
        impl tracing::field::Visit for Msg {
            fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                if f.name() == "message" {
                    self.0 = format!("{v:?}");
                }
            }
        }
        let mut m = Msg(String::new());
        ev.record(&mut m);
        // Per-object messages repeat 10,000 times: the first of a run only.
        static LAST: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());
        let Ok(mut last) = LAST.lock() else { return };
        if *last == m.0 {
            return;
        }
        last.clone_from(&m.0);
        static T0: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        let t0 = T0.get_or_init(Instant::now);
        eprintln!(
            "  [{:>9.3} s heap {:.1} MiB, peak {:.1} MiB] {}",
            t0.elapsed().as_secs_f64(),
            heap_mib(),
            PEAK.load(Ordering::Relaxed) as f64 / MIB,
            m.0
        );
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("HEAP_TRACE").is_some() {
        // Where the heap goes: the live heap beside each of the engine's
        // phase messages (connected, listed, allocations rebuilt,
        // translated, committed).
        use tracing_subscriber::layer::{Layer, SubscriberExt};
        let filter = tracing_subscriber::EnvFilter::new("switchyard_controller=debug");
        tracing::subscriber::set_global_default(
            tracing_subscriber::registry().with(HeapTrace.with_filter(filter)),
        )?;
    } else if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .init();
    }
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let nodes = args.first().copied().unwrap_or(100);
    let pods = args.get(1).copied().unwrap_or(10_000);
    let dir = tempfile::tempdir()?;
    let central = OvnCentral::start(dir.path())?;
    let client = Client::connect(ClientConfig::new(&central.nb_remote())?).await?;
    // The benchmark's own watcher: names only, to stay small.
    let mut spec = MonitorSpec::new("OVN_Northbound");
    for t in TABLES {
        spec = spec.table(t, Some(vec!["name".into()]));
    }
    let replica = client.monitor(spec).await?;
    // What the controller wants in NB.
    // The cluster router; per node a switch, its router port and both ends
    // of the link, per pod a port; the join switch with cluster-router's
    // port on it (gateway routers come only with nodes' gateway bridges,
    // which these nodes have none of); two address sets per namespace.
    let all_rows = [
        1,
        nodes + 1,
        nodes + 1,
        2 * nodes + pods + 1,
        2 * NAMESPACES,
    ];
    let mut config = Config {
        nb_remote: central.nb_remote(),
        http_addr: None,
        ..Config::default()
    };
    if let Some(b) = std::env::var("SCALE_BENCH_MAX_BATCH")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        config.max_batch_owners = b;
    }
    let cluster = MemoryCluster::new();
    for n in 0..nodes {
        cluster.apply_node(node(&format!("node-{n:03}")));
    }
    for i in 0..pods {
        cluster.apply_pod(realistic_pod(
            &format!("ns{}", i % NAMESPACES),
            &format!("pod-{i:05}"),
            &format!("node-{:03}", i % nodes),
        ));
    }
    println!(
        "Switchyard controller scale benchmark: {nodes} nodes, {pods} pods (in-memory API, real NB/SB + northd)"
    );
    let pod_json = serde_json::to_vec(&cluster.pods()[0])
        .map(|v| v.len())
        .unwrap_or(0);
    println!(
        "before any controller: process RSS {:.1} MiB, live heap {:.1} MiB (in-memory API server with the Pods, NB watcher); each Pod is {:.1} KiB of JSON, decoded by the controller as from a real API server\n",
        proc_status_mib("VmRSS:"),
        heap_mib(),
        pod_json as f64 / 1024.0
    );

    northd_idle(&client).await?;

    // 1. Cold start.
    let meter = Meter::start();
    let t0 = Instant::now();
    let run = start(&config, &cluster);
    wait("cold start", Duration::from_secs(300), || {
        cluster.pod_patch_count(None) >= pods && nb_rows(&replica) == all_rows
    })
    .await;
    let cold = t0.elapsed();
    wait("synced", Duration::from_secs(60), || {
        run.metrics.health.synced()
    })
    .await;
    let cold_cpu = run.cpu();
    let txns = run.metrics.nb_transactions.get();
    let ops = run.metrics.nb_operations.get();
    println!("cold start → all pods annotated and in NB   {:>8.2} s     (target ≤ 20 s; ovn-kubernetes 205 s)", cold.as_secs_f64());
    println!("  NB transactions / operations              {txns:>8} / {ops}  (ovn-kubernetes 13,000 / 36,000)");
    println!(
        "  controller CPU / per pod                  {:>8.2} s / {:.3} ms  (target ≤ 0.5 ms per pod; ovn-kubernetes 4.2 ms); whole process {:.2} s",
        cold_cpu,
        cold_cpu * 1e3 / pods as f64,
        meter.process_cpu()
    );
    println!(
        "  controller memory: heap peak +{:.1} MiB, process RSS peak +{:.1} MiB over the {:.1} MiB before it started (target ≤ 100 MiB; ovn-kubernetes 530 MiB)",
        meter.heap_peak_delta(),
        meter.rss_peak_delta(),
        meter.rss0
    );
    stop(run).await;
    let stop_after = std::env::var("SCALE_BENCH_STOP_AFTER").unwrap_or_default();
    if stop_after == "cold" {
        return Ok(());
    }

    // 2. NB rebuild: nodes and pods annotated, NB lost Switchyard's rows;
    // repeated, the median reported.
    let reps: usize = std::env::var("SCALE_BENCH_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1);
    let mut runs: Vec<(f64, f64, f64)> = Vec::new();
    let (mut heap_peak, mut watcher, mut rss_peak, mut process_cpu) = (0.0f64, 0.0, 0.0f64, 0.0);
    let (mut txns, mut ops, mut patches) = (0, 0, 0);
    let ours = snapshot(&client).await?;
    let mut limits: Vec<f64> = Vec::new();
    // Any controller keeps a replica of what it writes: the limit's writer
    // monitors the same tables and columns the controller does.
    let limit_replica = client
        .monitor(switchyard_controller::nb::monitor_spec())
        .await?;
    for _ in 0..reps {
        // The limit first, on the same rows: a plain client's one
        // transaction, from a quiet system, until the watcher has them.
        delete_ours(&client).await?;
        wait("NB emptied", Duration::from_secs(30), || {
            nb_rows(&replica) == [0; 5]
        })
        .await;
        northd_idle(&client).await?;
        let tx = ingest_transaction(&ours);
        let tl = Instant::now();
        client.transact(tx).await?;
        wait("bare ingest", Duration::from_secs(120), || {
            nb_rows(&replica) == all_rows
        })
        .await;
        limits.push(tl.elapsed().as_secs_f64());
        wait("the limit's replica", Duration::from_secs(60), || {
            limit_replica.with(|db| db.table("Logical_Switch_Port").len()) == all_rows[3]
        })
        .await;
        northd_idle(&client).await?;
        delete_ours(&client).await?;
        wait("NB emptied", Duration::from_secs(30), || {
            nb_rows(&replica) == [0; 5]
        })
        .await;
        // Start from a quiet system: northd done with the deletion.
        northd_idle(&client).await?;
        let patches_before = cluster.patch_count();
        let meter = Meter::start();
        let t1 = Instant::now();
        let run = start(&config, &cluster);
        wait("NB rebuild", Duration::from_secs(120), || {
            nb_rows(&replica) == all_rows
        })
        .await;
        let rebuild = t1.elapsed();
        wait("synced", Duration::from_secs(60), || {
            run.metrics.health.synced()
        })
        .await;
        let synced = t1.elapsed();
        runs.push((rebuild.as_secs_f64(), synced.as_secs_f64(), run.cpu()));
        heap_peak = heap_peak.max(meter.heap_peak_delta());
        rss_peak = rss_peak.max(meter.rss_peak_delta());
        process_cpu += meter.process_cpu() / reps as f64;
        (txns, ops) = (
            run.metrics.nb_transactions.get(),
            run.metrics.nb_operations.get(),
        );
        stop(run).await;
        // What the watcher's replica grew by (the controller is gone, and the
        // rebuild patched nothing, so the rest of the heap is as before).
        watcher = heap_mib() - meter.heap0;
        patches += cluster.patch_count() - patches_before;
    }
    let med = |f: fn(&(f64, f64, f64)) -> f64| {
        let mut v: Vec<f64> = runs.iter().map(f).collect();
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let rebuild_cpu = med(|r| r.2);
    limits.sort_by(|a, b| a.total_cmp(b));
    let limit = limits[limits.len() / 2];
    println!(
        "NB rebuild: start → NB holds all {} rows    {:>8.2} s     (target ≤ 0.7 s; median of {reps}: {}; controller synced at {:.2} s; {txns} transactions, {ops} operations, {patches} API patches)",
        all_rows.iter().sum::<usize>(),
        med(|r| r.0),
        runs.iter().map(|r| format!("{:.2}", r.0)).collect::<Vec<_>>().join(" "),
        med(|r| r.1),
    );
    println!(
        "  limit, same run: the same rows in one transaction by a plain client that monitors what the controller monitors, northd running: {limit:.2} s (median of {reps}) → Switchyard {:.2}× the limit",
        med(|r| r.0) / limit
    );
    println!(
        "  controller CPU / per pod                  {:>8.2} s / {:.3} ms; whole process {:.2} s",
        rebuild_cpu,
        rebuild_cpu * 1e3 / pods as f64,
        process_cpu
    );
    println!(
        "  controller memory: heap peak +{:.1} MiB (of which the NB watcher's own replica ~{:.1} MiB), process RSS peak +{:.1} MiB (reuses freed pages)",
        heap_peak, watcher, rss_peak
    );

    drop(limit_replica);
    if stop_after == "rebuild" {
        return Ok(());
    }

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
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    for i in 0..extra {
        tick.tick().await;
        cluster.apply_pod(realistic_pod(
            "steady",
            &format!("s-{i:04}"),
            &format!("node-{:03}", i % nodes),
        ));
    }
    wait("steady pods annotated", Duration::from_secs(60), || {
        cluster.pod_patch_count(Some("steady")) >= extra
    })
    .await;
    let mut lat: Vec<f64> = cluster
        .patches()
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
    let mut want = all_rows;
    want[3] += extra;
    want[4] += 2;
    wait("steady ports in NB", Duration::from_secs(60), || {
        nb_rows(&replica) == want
    })
    .await;
    stop(run).await;
    Ok(())
}
