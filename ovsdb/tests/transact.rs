//! Transactions against a real ovsdb-server: every operation kind, and the
//! server's errors as typed values.

mod common;

use common::*;
use ovsdb::{
    Condition, Error, Mutation, OpErrorKind, OpResult, Row, Transaction, Uuid, Value, WaitUntil,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crud_round_trip() {
    let nb = start_nb(false);
    let client = connect(&nb.server.unix_remote()).await;
    assert!(client.list_dbs().await.unwrap().contains(&NB.to_string()));

    add_switch(&client, "sw0", 2).await;

    let mut tx = Transaction::new(NB);
    tx.select(
        "Logical_Switch",
        name_is("sw0"),
        Some(vec!["name".into(), "ports".into()]),
    );
    let r = client.transact(tx).await.unwrap();
    let rows = r[0].rows();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get("ports").unwrap().uuids().len(), 2);

    // update
    let mut tx = Transaction::new(NB);
    tx.update(
        "Logical_Switch",
        name_is("sw0"),
        Row::new().with("other_config", Value::map([("subnet", "10.0.0.0/24")])),
    );
    assert_eq!(client.transact(tx).await.unwrap()[0].count(), 1);
    assert!(nbctl(
        &nb.server,
        &["get", "Logical_Switch", "sw0", "other_config:subnet"]
    )
    .contains("10.0.0.0/24"));

    // mutate: map insert and delete, integer add
    let mut tx = Transaction::new(NB);
    tx.mutate(
        "Logical_Switch",
        name_is("sw0"),
        vec![
            Mutation::insert("external_ids", Value::map([("a", "1"), ("b", "2")])),
            Mutation::delete("other_config", Value::set(["subnet"])),
        ],
    );
    assert_eq!(client.transact(tx).await.unwrap()[0].count(), 1);
    let mut tx = Transaction::new(NB);
    tx.select("Logical_Switch", name_is("sw0"), None);
    let row = client.transact(tx).await.unwrap()[0].rows()[0].clone();
    assert_eq!(row.map_get("external_ids", "b"), Some("2"));
    assert!(row.get("other_config").unwrap().is_empty());

    // ACL rows are not root rows: one survives only while a switch refers to it.
    let mut tx = Transaction::new(NB);
    let acl = tx.insert(
        "ACL",
        Row::new()
            .with("priority", 100i64)
            .with("direction", "to-lport")
            .with("match", "ip4")
            .with("action", "allow"),
    );
    tx.mutate(
        "Logical_Switch",
        name_is("sw0"),
        vec![Mutation::insert("acls", acl)],
    );
    let acl = client.transact(tx).await.unwrap()[0].uuid().unwrap();
    let mut tx = Transaction::new(NB);
    tx.mutate(
        "ACL",
        vec![Condition::uuid(acl)],
        vec![Mutation::add("priority", 5i64)],
    );
    client.transact(tx).await.unwrap();
    let mut tx = Transaction::new(NB);
    tx.select(
        "ACL",
        vec![Condition::uuid(acl)],
        Some(vec!["priority".into()]),
    );
    assert_eq!(
        client.transact(tx).await.unwrap()[0].rows()[0]
            .get("priority")
            .unwrap()
            .as_i64(),
        Some(105)
    );

    // delete: the switch goes, and its ports with it (they are not root rows)
    let mut tx = Transaction::new(NB);
    tx.delete("Logical_Switch", name_is("sw0"));
    tx.comment("switchyard test: delete sw0");
    let r = client.transact(tx).await.unwrap();
    assert_eq!(r[0].count(), 1);
    assert_eq!(r[1], OpResult::Empty);
    let mut tx = Transaction::new(NB);
    tx.select("Logical_Switch_Port", vec![], None);
    assert!(client.transact(tx).await.unwrap()[0].rows().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_commit_abort_assert() {
    let nb = start_nb(false);
    let client = connect(&nb.server.unix_remote()).await;
    add_switch(&client, "sw0", 0).await;

    // wait that holds at once
    let mut tx = Transaction::new(NB);
    tx.wait(
        "Logical_Switch",
        name_is("sw0"),
        vec!["name".into()],
        WaitUntil::Equal,
        vec![Row::new().with("name", "sw0")],
        Some(0),
    );
    tx.commit(false);
    let r = client.transact(tx).await.unwrap();
    assert_eq!(r, vec![OpResult::Empty, OpResult::Empty]);

    // wait that cannot hold times out at once
    let mut tx = Transaction::new(NB);
    tx.wait(
        "Logical_Switch",
        name_is("sw0"),
        vec!["name".into()],
        WaitUntil::Equal,
        vec![Row::new().with("name", "other")],
        Some(0),
    );
    match client.transact(tx).await {
        Err(Error::Operation {
            index: 0,
            op: "wait",
            error,
        }) => assert_eq!(error.kind(), OpErrorKind::TimedOut),
        other => panic!("expected a timed-out wait, got {other:?}"),
    }

    // abort rolls back the insert before it
    let mut tx = Transaction::new(NB);
    tx.insert("Logical_Switch", Row::new().with("name", "never"));
    tx.abort();
    match client.transact(tx).await {
        Err(Error::Operation {
            index: 1,
            op: "abort",
            error,
        }) => assert_eq!(error.kind(), OpErrorKind::Aborted),
        other => panic!("expected aborted, got {other:?}"),
    }
    assert!(!nbctl(&nb.server, &["ls-list"]).contains("never"));

    // assert on a lock this session does not hold
    let mut tx = Transaction::new(NB);
    tx.assert_lock("switchyard_test_lock");
    match client.transact(tx).await {
        Err(Error::Operation {
            op: "assert",
            error,
            ..
        }) => {
            assert_eq!(error.kind(), OpErrorKind::NotOwner, "{error:?}")
        }
        other => panic!("expected not owner, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_typed_and_change_nothing() {
    let nb = start_nb(false);
    let client = connect(&nb.server.unix_remote()).await;

    // A strong reference to a row that does not exist.
    let mut tx = Transaction::new(NB);
    tx.insert(
        "Logical_Switch",
        Row::new()
            .with("name", "dangling")
            .with("ports", Value::from(Uuid::new_v4())),
    );
    match client.transact(tx).await {
        Err(Error::Operation { error, .. }) => {
            assert_eq!(
                error.kind(),
                OpErrorKind::ReferentialIntegrityViolation,
                "{error}"
            )
        }
        other => panic!("expected a referential integrity violation, got {other:?}"),
    }

    // An enum value outside the schema's set.
    let mut tx = Transaction::new(NB);
    tx.insert(
        "ACL",
        Row::new()
            .with("priority", 1i64)
            .with("direction", "sideways")
            .with("match", "1")
            .with("action", "allow"),
    );
    match client.transact(tx).await {
        Err(Error::Operation {
            index: 0,
            op: "insert",
            error,
        }) => {
            assert_eq!(error.kind(), OpErrorKind::ConstraintViolation, "{error}")
        }
        other => panic!("expected a constraint violation, got {other:?}"),
    }

    // Two rows with the same value in an indexed column.
    let mut tx = Transaction::new(NB);
    tx.insert("Address_Set", Row::new().with("name", "as1"));
    tx.insert("Address_Set", Row::new().with("name", "as1"));
    match client.transact(tx).await {
        Err(Error::Operation { error, .. }) => {
            assert_eq!(error.kind(), OpErrorKind::ConstraintViolation, "{error}")
        }
        other => panic!("expected an index violation, got {other:?}"),
    }

    // An unknown table is the server's error too.
    let mut tx = Transaction::new(NB);
    tx.insert("No_Such_Table", Row::new());
    assert!(client.transact(tx).await.is_err());

    // None of it left anything behind, and the session still works.
    assert_eq!(nbctl(&nb.server, &["ls-list"]).trim(), "");
    assert!(nbctl(&nb.server, &["list", "Address_Set"])
        .trim()
        .is_empty());
    add_switch(&client, "fine", 1).await;
    assert!(nbctl(&nb.server, &["ls-list"]).contains("fine"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_and_concurrent_requests() {
    let nb = start_nb(true);
    let client = connect(nb.server.tcp_remote().as_deref().unwrap()).await;
    let schema = client.get_schema(NB).await.unwrap();
    assert_eq!(schema.name, NB);
    let lsp = schema.table("Logical_Switch_Port").unwrap();
    assert!(lsp.columns["addresses"].kind.max.is_none());
    assert!(lsp.columns["external_ids"].kind.is_map());
    assert!(!lsp.is_root);

    // Many transactions in flight on one connection, each answered.
    let futs = (0..200).map(|i| {
        let c = client.clone();
        async move { add_switch(&c, &format!("s{i}"), 1).await }
    });
    futures::future::join_all(futs).await;
    let mut tx = Transaction::new(NB);
    tx.select("Logical_Switch_Port", vec![], Some(vec!["name".into()]));
    assert_eq!(client.transact(tx).await.unwrap()[0].rows().len(), 200);
    client.echo().await.unwrap();
}
