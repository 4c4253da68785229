//! Monitors and the replica against a real ovsdb-server: writers on other
//! connections (another client, and ovn-nbctl) are seen; conditions narrow
//! what arrives; the change stream reports each change once.

mod common;

use std::collections::BTreeSet;

use common::*;
use ovsdb::{Condition, MonitorSpec, Mutation, Row, Transaction, Value};

fn names(replica: &ovsdb::Replica, table: &str) -> BTreeSet<String> {
    replica.with(|db| {
        db.table(table)
            .iter()
            .filter_map(|(_, r)| r.str("name").map(str::to_string))
            .collect()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_follows_other_writers() {
    let nb = start_nb(false);
    let writer = connect(&nb.server.unix_remote()).await;
    add_switch(&writer, "before", 2).await;

    let reader = connect(&nb.server.unix_remote()).await;
    let replica = reader
        .monitor(
            MonitorSpec::new(NB)
                .table("Logical_Switch", None)
                .table(
                    "Logical_Switch_Port",
                    Some(vec![
                        "name".into(),
                        "external_ids".into(),
                        "addresses".into(),
                    ]),
                )
                .index_external_id("Logical_Switch_Port", "owner"),
        )
        .await
        .unwrap();
    // The initial state is in when monitor() returns.
    assert_eq!(
        names(&replica, "Logical_Switch"),
        BTreeSet::from(["before".to_string()])
    );
    assert_eq!(replica.with(|db| db.table("Logical_Switch_Port").len()), 2);
    let mut changes = replica.subscribe();

    // Another client writes.
    add_switch(&writer, "other", 3).await;
    replica
        .wait_for(DEADLINE, |db| {
            db.table("Logical_Switch_Port")
                .by_external_id("owner", "other")
                .len()
                == 3
        })
        .await
        .unwrap();
    let update = changes.recv().await.unwrap();
    assert_eq!(update.changes.len(), 4, "{update:?}");
    assert!(update
        .changes
        .iter()
        .all(|c| c.old.is_none() && c.new.is_some()));

    // ovn-nbctl writes: an insert, a set change, a map change, a delete.
    nbctl(&nb.server, &["ls-add", "from-nbctl"]);
    nbctl(
        &nb.server,
        &[
            "lsp-set-addresses",
            "other-p0",
            "0a:58:0a:00:00:05 10.0.0.5",
        ],
    );
    nbctl(
        &nb.server,
        &[
            "set",
            "Logical_Switch_Port",
            "other-p1",
            "external_ids:owner=moved",
        ],
    );
    nbctl(&nb.server, &["ls-del", "before"]);
    replica
        .wait_for(DEADLINE, |db| {
            let lsp = db.table("Logical_Switch_Port");
            db.table("Logical_Switch").by_name("from-nbctl").is_some()
                && db.table("Logical_Switch").by_name("before").is_none()
                && lsp.by_external_id("owner", "moved").len() == 1
                && lsp.by_external_id("owner", "before").is_empty()
                && lsp.by_name("other-p0").and_then(|(_, r)| {
                    r.get("addresses")
                        .map(|a| a.strings() == ["0a:58:0a:00:00:05 10.0.0.5"])
                }) == Some(true)
        })
        .await
        .unwrap();
    let (_, p1) = replica.with(|db| {
        db.table("Logical_Switch_Port")
            .by_name("other-p1")
            .map(|(u, r)| (u, r.clone()))
            .unwrap()
    });
    assert_eq!(p1.map_get("external_ids", "owner"), Some("moved"));

    // Every change arrives exactly once on the stream: drain what is there.
    let mut seen_delete = 0;
    while let Ok(u) = changes.try_recv() {
        seen_delete += u
            .changes
            .iter()
            .filter(|c| c.table == "Logical_Switch" && c.new.is_none())
            .count();
    }
    assert_eq!(seen_delete, 1);

    // The replica matches what the server holds, row for row.
    let mut tx = Transaction::new(NB);
    tx.select("Logical_Switch_Port", vec![], Some(vec!["name".into()]));
    let server_names: BTreeSet<String> = writer.transact(tx).await.unwrap()[0]
        .rows()
        .iter()
        .filter_map(|r| r.str("name").map(str::to_string))
        .collect();
    assert_eq!(names(&replica, "Logical_Switch_Port"), server_names);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditions_narrow_and_change() {
    let nb = start_nb(false);
    let client = connect(&nb.server.unix_remote()).await;
    for s in ["a", "b", "c"] {
        add_switch(&client, s, 2).await;
    }
    let replica = client
        .monitor(
            MonitorSpec::new(NB)
                .table("Logical_Switch_Port", None)
                .condition(
                    "Logical_Switch_Port",
                    vec![Condition::eq("external_ids", Value::map([("owner", "a")]))],
                ),
        )
        .await
        .unwrap();
    assert_eq!(
        names(&replica, "Logical_Switch_Port"),
        BTreeSet::from(["a-p0".to_string(), "a-p1".to_string()])
    );

    // A write outside the condition does not arrive; one inside does.
    add_switch(&client, "d", 1).await;
    let mut tx = Transaction::new(NB);
    let p = tx.insert(
        "Logical_Switch_Port",
        Row::new()
            .with("name", "a-p2")
            .with("external_ids", Value::map([("owner", "a")])),
    );
    tx.mutate(
        "Logical_Switch",
        name_is("a"),
        vec![Mutation::insert("ports", p)],
    );
    client.transact(tx).await.unwrap();
    replica
        .wait_for(DEADLINE, |db| {
            db.table("Logical_Switch_Port").by_name("a-p2").is_some()
        })
        .await
        .unwrap();
    assert_eq!(replica.with(|db| db.table("Logical_Switch_Port").len()), 3);

    // monitor_cond_change: switch to b's ports; a's leave, b's arrive.
    replica
        .set_condition(
            "Logical_Switch_Port",
            vec![Condition::eq("external_ids", Value::map([("owner", "b")]))],
        )
        .await
        .unwrap();
    replica
        .wait_for(DEADLINE, |db| {
            let t = db.table("Logical_Switch_Port");
            t.len() == 2 && t.by_name("b-p0").is_some() && t.by_name("b-p1").is_some()
        })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_table_is_refused_before_monitoring() {
    let nb = start_nb(false);
    let client = connect(&nb.server.unix_remote()).await;
    let err = client
        .monitor(MonitorSpec::new(NB).table("No_Such_Table", None))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("No_Such_Table"), "{err}");
    // The client keeps working.
    add_switch(&client, "ok", 0).await;
}
