//! NB ingest benchmark: 100 Logical_Switches and 10,000 Logical_Switch_Ports
//! (each with external_ids) written to a real ovsdb-server, in transactions
//! of 10,000, 100 and 1 rows, each case on a fresh database.
//!
//! The clock starts at the first send and stops when a second client's
//! replica (monitoring Logical_Switch_Port) holds all 10,000 rows; the time
//! of the last commit reply is printed too. The reference is the C tool,
//! `ovsdb-client transact`, doing the same transactions, watched by the
//! same replica.
//!
//! Run: `cargo run --release -p ovsdb --example nb_ingest`
//! (`NB_INGEST_REPS=N` repeats each case N times and prints the median; default 3).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use ovn_testbed::{OvsdbServer, Schema, ServerOptions};
use ovsdb::{
    Client, ClientConfig, Condition, MonitorSpec, Mutation, Replica, Row, Transaction, Uuid, Value,
};
use serde_json::{json, Value as Json};

const SWITCHES: usize = 100;
const PORTS: usize = 10_000;
const PER_SWITCH: usize = PORTS / SWITCHES;
const DB: &str = "OVN_Northbound";
/// Concurrent transactions in flight for the pipelined case.
const IN_FLIGHT: usize = 64;

/// Anchors from /work/shared/notes/performance-anchors.md (seconds).
const ANCHOR_10K: f64 = 0.33;
const ANCHOR_100: f64 = 0.30;
const ANCHOR_1: f64 = 0.90;

fn switch_name(k: usize) -> String {
    format!("ls-{k:03}")
}

fn port_row(i: usize) -> Row {
    let k = i / PER_SWITCH;
    Row::new().with("name", format!("lsp-{i:05}")).with(
        "external_ids",
        Value::map([
            ("switchyard.io/owner", format!("ns-{k:03}/pod-{i:05}")),
            ("switchyard.io/node", format!("node-{k:03}")),
        ]),
    )
}

/// The same row as raw JSON, for the C tool.
fn port_json(i: usize, uuid_name: &str) -> Json {
    let k = i / PER_SWITCH;
    json!({"op": "insert", "table": "Logical_Switch_Port", "uuid-name": uuid_name,
        "row": {"name": format!("lsp-{i:05}"), "external_ids": ["map", [
            ["switchyard.io/node", format!("node-{k:03}")],
            ["switchyard.io/owner", format!("ns-{k:03}/pod-{i:05}")]]]}})
}

/// Switches `switches` with all their ports, in one transaction.
fn switches_tx(switches: std::ops::Range<usize>) -> Transaction {
    let mut tx = Transaction::new(DB);
    for k in switches {
        let ports: Vec<Value> = (k * PER_SWITCH..(k + 1) * PER_SWITCH)
            .map(|i| tx.insert("Logical_Switch_Port", port_row(i)))
            .collect();
        let port_set = Value::set(ports.iter().flat_map(|v| v.atoms().to_vec()));
        tx.insert(
            "Logical_Switch",
            Row::new()
                .with("name", switch_name(k))
                .with("ports", port_set),
        );
    }
    tx
}

/// The same as `ovsdb-client transact` JSON.
fn switches_json(switches: std::ops::Range<usize>) -> String {
    let mut ops = vec![json!(DB)];
    for k in switches {
        let mut names = Vec::new();
        for i in k * PER_SWITCH..(k + 1) * PER_SWITCH {
            let n = format!("p{i}");
            ops.push(port_json(i, &n));
            names.push(json!(["named-uuid", n]));
        }
        ops.push(json!({"op": "insert", "table": "Logical_Switch",
            "row": {"name": switch_name(k), "ports": ["set", names]}}));
    }
    serde_json::to_string(&Json::Array(ops)).unwrap()
}

/// One port added to an existing switch.
fn single_port_tx(i: usize, switch: Uuid) -> Transaction {
    let mut tx = Transaction::new(DB);
    let p = tx.insert("Logical_Switch_Port", port_row(i));
    tx.mutate(
        "Logical_Switch",
        vec![Condition::uuid(switch)],
        vec![Mutation::insert("ports", p)],
    );
    tx
}

fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Resets the peak RSS to the current RSS (Linux `clear_refs` 5).
fn reset_hwm() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

struct Run {
    commit: Duration,
    replica: Duration,
    hwm_mib: f64,
}

struct Db {
    _dir: tempfile::TempDir,
    server: OvsdbServer,
}

fn fresh_db() -> Db {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = OvsdbServer::start(
        dir.path(),
        "nb",
        Schema::Northbound,
        ServerOptions::default(),
    )
    .expect("ovsdb-server");
    Db { _dir: dir, server }
}

async fn connect(db: &Db) -> Client {
    Client::connect(ClientConfig::new(&db.server.unix_remote()).unwrap())
        .await
        .expect("connect")
}

async fn watcher(db: &Db) -> (Client, Replica) {
    let c = connect(db).await;
    let r = c
        .monitor(MonitorSpec::new(DB).table("Logical_Switch_Port", None))
        .await
        .expect("monitor");
    (c, r)
}

async fn wait_all(replica: &Replica) {
    replica
        .wait_for(Duration::from_secs(300), |db| {
            db.table("Logical_Switch_Port").len() == PORTS
        })
        .await
        .expect("replica never held all ports");
}

/// Switchyard: transactions of `batch` rows, pipelined.
async fn run_switchyard(batch: usize) -> Run {
    let db = fresh_db();
    let writer = connect(&db).await;
    let (_w, replica) = watcher(&db).await;

    let txs: Vec<Transaction> = match batch {
        1 => {
            // The switches exist first (not timed); each transaction adds one port.
            let r = writer
                .transact(switches_tx_empty())
                .await
                .expect("create switches");
            let uuids: Vec<Uuid> = r.iter().filter_map(|o| o.uuid()).collect();
            (0..PORTS)
                .map(|i| single_port_tx(i, uuids[i / PER_SWITCH]))
                .collect()
        }
        _ => {
            let per_tx = batch / PER_SWITCH;
            (0..SWITCHES / per_tx)
                .map(|j| switches_tx(j * per_tx..(j + 1) * per_tx))
                .collect()
        }
    };

    reset_hwm();
    let start = Instant::now();
    let mut results =
        stream::iter(txs.into_iter().map(|tx| writer.transact(tx))).buffer_unordered(IN_FLIGHT);
    while let Some(r) = results.next().await {
        r.expect("transaction failed");
    }
    let commit = start.elapsed();
    wait_all(&replica).await;
    let replica_t = start.elapsed();
    Run {
        commit,
        replica: replica_t,
        hwm_mib: vm_hwm_kib() as f64 / 1024.0,
    }
}

fn switches_tx_empty() -> Transaction {
    let mut tx = Transaction::new(DB);
    for k in 0..SWITCHES {
        tx.insert("Logical_Switch", Row::new().with("name", switch_name(k)));
    }
    tx
}

fn ovsdb_client(sock: &str, txn: &str) {
    let out = Command::new("ovsdb-client")
        .args(["transact", sock, txn])
        .output()
        .expect("run ovsdb-client");
    assert!(
        out.status.success() && !String::from_utf8_lossy(&out.stdout).contains("\"error\""),
        "ovsdb-client failed: {} {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The C tool: one `ovsdb-client transact` per transaction file, in turn.
async fn run_c_tool(batch: usize, files_dir: &Path) -> (Run, Duration) {
    let per_tx = batch / PER_SWITCH;
    let files: Vec<std::path::PathBuf> = (0..SWITCHES / per_tx)
        .map(|j| {
            let p = files_dir.join(format!("txn-{batch}-{j:04}.json"));
            std::fs::write(&p, switches_json(j * per_tx..(j + 1) * per_tx)).unwrap();
            p
        })
        .collect();
    let db = fresh_db();
    let (_w, replica) = watcher(&db).await;
    let sock = db.server.unix_remote();

    // The cost of one invocation that does nothing (process start, connect).
    let noop_start = Instant::now();
    for _ in 0..10 {
        ovsdb_client(&sock, &format!("[\"{DB}\"]"));
    }
    let per_call = noop_start.elapsed() / 10;

    let texts: Vec<String> = files
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    let start = Instant::now();
    let sock2 = sock.clone();
    tokio::task::spawn_blocking(move || {
        for t in &texts {
            ovsdb_client(&sock2, t);
        }
    })
    .await
    .unwrap();
    let commit = start.elapsed();
    wait_all(&replica).await;
    let replica_t = start.elapsed();
    (
        Run {
            commit,
            replica: replica_t,
            hwm_mib: 0.0,
        },
        per_call * files.len() as u32,
    )
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn rate(d: Duration) -> f64 {
    PORTS as f64 / d.as_secs_f64()
}

#[tokio::main]
async fn main() {
    let reps: usize = std::env::var("NB_INGEST_REPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3)
        .max(1);
    let files = tempfile::tempdir().unwrap();
    println!(
        "NB ingest: {SWITCHES} Logical_Switches + {PORTS} Logical_Switch_Ports (2 external_ids each), \
         fresh ovsdb-server per run, unix socket, median of {reps}"
    );
    println!(
        "time = first send -> a second client's replica holds all {PORTS} LSPs (commit = last reply)\n"
    );

    // Check what this machine's argv allows for the C tool.
    let big = switches_json(0..SWITCHES).len();

    for (batch, anchor) in [(PORTS, ANCHOR_10K), (100, ANCHOR_100), (1, ANCHOR_1)] {
        let mut commits = Vec::new();
        let mut replicas = Vec::new();
        let mut hwm: f64 = 0.0;
        for _ in 0..reps {
            let r = run_switchyard(batch).await;
            commits.push(r.commit);
            replicas.push(r.replica);
            hwm = hwm.max(r.hwm_mib);
        }
        let (commit, repl) = (median(commits.clone()), median(replicas.clone()));
        let label = match batch {
            PORTS => "1 txn of 10,000 (+100 switches)".to_string(),
            100 => "100 txns of 100 (+1 switch each), pipelined".to_string(),
            _ => format!("10,000 txns of 1 (insert+mutate), {IN_FLIGHT} in flight"),
        };
        println!("batch {batch:>5}: {label}");
        println!(
            "  Switchyard  : {:>7.3} s  {:>8.0} rows/s   (commit {:.3} s)   peak RSS {:.1} MiB   runs: {}",
            repl.as_secs_f64(),
            rate(repl),
            commit.as_secs_f64(),
            hwm,
            replicas
                .iter()
                .map(|d| format!("{:.3}", d.as_secs_f64()))
                .collect::<Vec<_>>()
                .join(" ")
        );
        println!(
            "  anchor      : {anchor:>7.3} s  {:>8.0} rows/s   (OVN limit, performance-anchors.md)",
            PORTS as f64 / anchor
        );
        match batch {
            100 => {
                let mut c_commits = Vec::new();
                let mut c_repl = Vec::new();
                let mut overheads = Vec::new();
                for _ in 0..reps {
                    let (r, overhead) = run_c_tool(batch, files.path()).await;
                    c_commits.push(r.commit);
                    c_repl.push(r.replica);
                    overheads.push(overhead);
                }
                let (cc, cr, ov) = (median(c_commits), median(c_repl), median(overheads));
                println!(
                    "  ovsdb-client: {:>7.3} s  {:>8.0} rows/s   (commit {:.3} s; of which ~{:.3} s is starting 100 processes)",
                    cr.as_secs_f64(),
                    rate(cr),
                    cc.as_secs_f64(),
                    ov.as_secs_f64()
                );
                println!(
                    "  ratio Switchyard/C tool: {:.2}x (goal <= 1.2x; the C tool pays ~{:.1} ms per invocation \
                     to start and connect, measured with empty transactions); vs anchor {:.2}x",
                    repl.as_secs_f64() / cr.as_secs_f64(),
                    ov.as_secs_f64() * 1000.0 / 100.0,
                    repl.as_secs_f64() / anchor
                );
            }
            PORTS => {
                println!(
                    "  ovsdb-client: none - the transaction is {:.1} MB of JSON and `ovsdb-client transact` takes it \
                     only as one argv string, which Linux caps at 128 KiB (MAX_ARG_STRLEN)",
                    big as f64 / 1e6
                );
                println!(
                    "  ratio Switchyard/anchor: {:.2}x (goal <= 1.2x)",
                    repl.as_secs_f64() / anchor
                );
            }
            _ => {
                println!(
                    "  ovsdb-client: none - 10,000 invocations would time process starts (one connection each), \
                     not pipelined transactions"
                );
                println!(
                    "  ratio Switchyard/anchor: {:.2}x",
                    repl.as_secs_f64() / anchor
                );
            }
        }
        println!();
    }
}
