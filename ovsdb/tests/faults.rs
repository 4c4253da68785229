//! The server killed and restarted under the client: monitors resume and
//! converge without losing or duplicating rows; a transaction in flight
//! reports that it was interrupted and is never re-sent behind the caller's
//! back.

mod common;

use std::time::Duration;

use common::*;
use ovsdb::{Error, MonitorSpec, Row, Transaction, WaitUntil};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_survives_server_restart() {
    init_logs();
    let mut nb = start_nb(true);
    let remote = nb.server.tcp_remote().unwrap();
    let client =
        ovsdb::Client::connect(fast_config(&remote).connect_timeout(Duration::from_secs(2)))
            .await
            .unwrap();
    add_switch(&client, "one", 3).await;
    let replica = client
        .monitor(
            MonitorSpec::new(NB)
                .table("Logical_Switch_Port", None)
                .table("Logical_Switch", None),
        )
        .await
        .unwrap();
    let mut changes = replica.subscribe();
    assert_eq!(replica.with(|db| db.table("Logical_Switch_Port").len()), 3);

    nb.server.kill();
    // A request while the server is down waits for a connection up to the
    // connect timeout, then fails clearly.
    let r = tokio::time::timeout(Duration::from_secs(30), client.echo()).await;
    assert!(matches!(r, Ok(Err(Error::NotConnected(_)))), "{r:?}");
    nb.server.restart().unwrap();

    // Another writer changes things while our client reconnects.
    let other = connect(&remote).await;
    add_switch(&other, "two", 2).await;
    nbctl(&nb.server, &["lsp-del", "one-p0"]);

    replica
        .wait_for(DEADLINE, |db| {
            let t = db.table("Logical_Switch_Port");
            t.len() == 4 && t.by_name("one-p0").is_none() && t.by_name("two-p1").is_some()
        })
        .await
        .unwrap();
    // The replica is re-subscribed before the connection is handed out, so
    // it may converge a moment before the client reports itself connected.
    client.wait_connected(DEADLINE).await.unwrap();

    // The change stream tells consumers exactly what changed across the
    // crash: one delete and two inserts, none lost, none repeated.
    let mut stream_events = Vec::new();
    while let Ok(u) = changes.try_recv() {
        stream_events.extend(
            u.changes
                .iter()
                .filter(|c| c.table == "Logical_Switch_Port")
                .cloned(),
        );
    }
    let deleted: Vec<_> = stream_events
        .iter()
        .filter(|c| c.new.is_none())
        .filter_map(|c| {
            c.old
                .as_ref()
                .and_then(|r| r.str("name"))
                .map(str::to_string)
        })
        .collect();
    assert_eq!(
        deleted,
        vec!["one-p0".to_string()],
        "exactly one delete reported"
    );
    let inserted: Vec<_> = stream_events
        .iter()
        .filter(|c| c.old.is_none())
        .filter_map(|c| {
            c.new
                .as_ref()
                .and_then(|r| r.str("name"))
                .map(str::to_string)
        })
        .collect();
    let mut inserted_sorted = inserted.clone();
    inserted_sorted.sort();
    assert_eq!(
        inserted_sorted,
        vec!["two-p0".to_string(), "two-p1".to_string()],
        "{inserted:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_in_flight_when_server_dies() {
    init_logs();
    let mut nb = start_nb(false);
    let client = connect(&nb.server.unix_remote()).await;
    add_switch(&client, "sw", 0).await;

    // A wait that cannot be satisfied keeps the transaction pending on the
    // server, so it is certainly in flight when the server is killed.
    let mut tx = Transaction::new(NB);
    tx.wait(
        "Logical_Switch",
        name_is("sw"),
        vec!["name".into()],
        WaitUntil::Equal,
        vec![Row::new().with("name", "never")],
        Some(60_000),
    );
    tx.insert("Logical_Switch", Row::new().with("name", "after-wait"));
    let c = client.clone();
    let pending = tokio::spawn(async move { c.transact(tx).await });
    // Wait until the server holds the transaction (it shows in its memory stats).
    let ctl = nb.server.ctl_path();
    ovn_testbed::wait_for(
        DEADLINE,
        "the server to hold the pending transaction",
        || {
            std::process::Command::new("ovs-appctl")
                .arg("-t")
                .arg(&ctl)
                .arg("memory/show")
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).contains("triggers:1"))
                .unwrap_or(false)
        },
    )
    .unwrap();
    nb.server.kill();
    let r = tokio::time::timeout(DEADLINE, pending)
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(r, Err(Error::Disconnected)), "{r:?}");

    nb.server.restart().unwrap();
    client.wait_connected(DEADLINE).await.unwrap();
    // It was not re-sent: the insert behind the wait never happened.
    assert!(!nbctl(&nb.server, &["ls-list"]).contains("after-wait"));
    // New transactions work on the new connection.
    add_switch(&client, "later", 1).await;
    assert!(nbctl(&nb.server, &["ls-list"]).contains("later"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_fails_clearly_when_nothing_listens() {
    let dir = tempfile::tempdir().unwrap();
    let remote = format!("unix:{}/nothing.sock", dir.path().display());
    let err =
        ovsdb::Client::connect(fast_config(&remote).connect_timeout(Duration::from_millis(500)))
            .await
            .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::NotConnected(_)), "{text}");
    assert!(text.contains("nothing.sock"), "{text}");
}
