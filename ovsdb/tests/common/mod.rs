//! Shared set-up for the integration tests: a real NB ovsdb-server in a
//! temporary directory, and a client for it.
#![allow(dead_code)]

use std::time::Duration;

use ovn_testbed::{OvsdbServer, Schema, ServerOptions};
use ovsdb::{Client, ClientConfig, Condition, Row, Transaction, Value};

pub const NB: &str = "OVN_Northbound";
pub const DEADLINE: Duration = Duration::from_secs(20);

pub struct Nb {
    pub server: OvsdbServer,
    pub dir: tempfile::TempDir,
}

pub fn start_nb(tcp: bool) -> Nb {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = OvsdbServer::start(
        dir.path(),
        "nb",
        Schema::Northbound,
        ServerOptions {
            tcp,
            ..Default::default()
        },
    )
    .expect("start NB ovsdb-server");
    Nb { server, dir }
}

pub fn fast_config(remote: &str) -> ClientConfig {
    ClientConfig::new(remote)
        .expect("remote")
        .backoff(Duration::from_millis(20), Duration::from_millis(200))
        .connect_timeout(Duration::from_secs(10))
}

pub async fn connect(remote: &str) -> Client {
    Client::connect(fast_config(remote)).await.expect("connect")
}

/// Inserts a logical switch named `name` with `n` ports `name-p0..`.
pub async fn add_switch(client: &Client, name: &str, n: usize) {
    let mut tx = Transaction::new(NB);
    let ports: Vec<Value> = (0..n)
        .map(|i| {
            tx.insert(
                "Logical_Switch_Port",
                Row::new()
                    .with("name", format!("{name}-p{i}"))
                    .with("external_ids", Value::map([("owner", name)])),
            )
        })
        .collect();
    let atoms: Vec<ovsdb::Atom> = ports.iter().filter_map(|v| v.atom().cloned()).collect();
    tx.insert(
        "Logical_Switch",
        Row::new()
            .with("name", name)
            .with("ports", Value::set(atoms)),
    );
    client.transact(tx).await.expect("add switch");
}

pub fn name_is(name: &str) -> Vec<Condition> {
    vec![Condition::eq("name", name)]
}

pub fn nbctl(server: &OvsdbServer, args: &[&str]) -> String {
    let out = std::process::Command::new("ovn-nbctl")
        .arg(format!("--db={}", server.unix_remote()))
        .args(args)
        .output()
        .expect("run ovn-nbctl");
    assert!(
        out.status.success(),
        "ovn-nbctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Shows the client's logs in a failing test's output.
pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "ovsdb=info".into()))
        .try_init();
}
