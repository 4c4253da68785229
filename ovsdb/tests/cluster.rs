//! A 3-member clustered northbound database: leader-only connections,
//! failover to a new leader with a replica that neither loses nor
//! duplicates rows, and reads from a follower.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ovn_testbed::{ClusteredDb, Schema};
use ovsdb::{
    Client, ClientConfig, Condition, Error, MonitorSpec, Replica, Row, Transaction, Update,
};

/// Deadline for conditions (elections, reconnects, replication) on a loaded
/// 2-core machine.
const DEADLINE: Duration = Duration::from_secs(30);

async fn bounded<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, f)
        .await
        .unwrap_or_else(|_| panic!("{what} hung for more than {DEADLINE:?}"))
}

/// The testbed is synchronous (it polls with thread sleeps); keep it off the
/// runtime's worker.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// Polls `cond` every 20 ms until it holds or the deadline passes.
async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {DEADLINE:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn leader_config(cluster: &ClusteredDb) -> ClientConfig {
    ClientConfig::new(&cluster.remotes())
        .unwrap()
        .leader_only(true)
        .database("OVN_Northbound")
        .connect_timeout(DEADLINE)
        .backoff(Duration::from_millis(50), Duration::from_millis(500))
}

async fn insert_switch(client: &Client, name: &str) -> ovsdb::Uuid {
    let mut tx = Transaction::new("OVN_Northbound");
    tx.insert("Logical_Switch", Row::new().with("name", name));
    let r = bounded("insert", client.transact(tx))
        .await
        .unwrap_or_else(|e| panic!("insert {name}: {e}"));
    r[0].uuid().unwrap()
}

/// Names of the replica's Logical_Switch rows, with how often each occurs.
fn names(replica: &Replica) -> BTreeMap<String, usize> {
    replica.with(|db| {
        let mut m = BTreeMap::new();
        for (_, row) in db.table("Logical_Switch").iter() {
            *m.entry(row.str("name").unwrap_or("").to_string())
                .or_insert(0) += 1;
        }
        m
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_only_client_follows_the_leader_and_keeps_its_replica() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster =
        blocking(|| ClusteredDb::start(dir.path(), Schema::Northbound, 3)).expect("cluster");

    let client = bounded("connect", Client::connect(leader_config(&cluster)))
        .await
        .expect("connect to the leader");
    // The client is on the leader (polled: an election may be under way
    // right after the cluster formed, and the client must end up on the
    // winner).
    let deadline = Instant::now() + DEADLINE;
    let leader = loop {
        let leader = blocking(|| cluster.leader());
        let on = client.connected_remote();
        if let Some(l) = leader {
            if client.is_connected() && on.as_deref() == Some(cluster.member_remote(l).as_str()) {
                break l;
            }
        }
        assert!(
            Instant::now() < deadline,
            "client on {on:?}, leader is {leader:?} ({})",
            cluster.remotes()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    let replica = bounded(
        "monitor",
        client.monitor(
            MonitorSpec::new("OVN_Northbound").table("Logical_Switch", Some(vec!["name".into()])),
        ),
    )
    .await
    .expect("monitor");
    let updates: Arc<Mutex<Vec<Arc<Update>>>> = Arc::default();
    let mut rx = replica.subscribe();
    let sink = updates.clone();
    let collector = tokio::spawn(async move {
        while let Ok(u) = rx.recv().await {
            sink.lock().unwrap().push(u);
        }
    });

    let mut expected = Vec::new();
    for i in 0..10 {
        let name = format!("before-{i}");
        insert_switch(&client, &name).await;
        expected.push(name);
    }
    bounded(
        "replica before failover",
        replica.wait_for(DEADLINE, |db| db.table("Logical_Switch").len() == 10),
    )
    .await
    .unwrap();
    let txn_before = replica.last_txn_id();
    assert!(txn_before.is_some(), "monitor_cond_since gives a txn id");

    // Kill the leader; the client must move to the new one.
    let old_remote = cluster.member_remote(leader);
    blocking(|| cluster.kill(leader));
    let new_leader = blocking(|| cluster.wait_leader(DEADLINE)).expect("a new leader");
    assert_ne!(new_leader, leader);
    let new_remote = cluster.member_remote(new_leader);
    wait_until("the client to reconnect to the new leader", || {
        client.is_connected() && client.connected_remote().as_deref() == Some(new_remote.as_str())
    })
    .await;
    assert_ne!(client.connected_remote(), Some(old_remote));

    for i in 0..10 {
        let name = format!("after-{i}");
        insert_switch(&client, &name).await;
        expected.push(name);
    }
    bounded(
        "replica after failover",
        replica.wait_for(DEADLINE, |db| db.table("Logical_Switch").len() >= 20),
    )
    .await
    .unwrap();

    // Every row exactly once, none lost, nothing else.
    let got = names(&replica);
    let want: BTreeMap<String, usize> = expected.iter().map(|n| (n.clone(), 1)).collect();
    assert_eq!(got, want);

    // The change stream reported each row's insertion exactly once (a
    // resync after the reconnect must not report rows the replica held).
    let deadline = Instant::now() + DEADLINE;
    let inserts = loop {
        let mut inserts: HashMap<ovsdb::Uuid, usize> = HashMap::new();
        let mut deletes = 0;
        for u in updates.lock().unwrap().iter() {
            for c in &u.changes {
                assert_eq!(c.table, "Logical_Switch");
                match (&c.old, &c.new) {
                    (None, Some(_)) => *inserts.entry(c.uuid).or_default() += 1,
                    (Some(_), None) => deletes += 1,
                    _ => {}
                }
            }
        }
        assert_eq!(deletes, 0, "no row was deleted");
        if inserts.len() >= 20 || Instant::now() >= deadline {
            break inserts;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(inserts.len(), 20, "inserts reported: {inserts:?}");
    assert!(inserts.values().all(|&n| n == 1), "{inserts:?}");
    let replica_uuids: Vec<ovsdb::Uuid> =
        replica.with(|db| db.table("Logical_Switch").iter().map(|(u, _)| *u).collect());
    assert!(replica_uuids.iter().all(|u| inserts.contains_key(u)));
    assert_ne!(replica.last_txn_id(), txn_before);
    collector.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_from_a_follower() {
    let dir = tempfile::tempdir().unwrap();
    let cluster =
        blocking(|| ClusteredDb::start(dir.path(), Schema::Northbound, 3)).expect("cluster");
    let leader = blocking(|| cluster.wait_leader(DEADLINE)).expect("leader");
    let follower = (leader + 1) % cluster.len();
    let follower_remote = cluster.member_remote(follower);

    let writer = bounded("connect", Client::connect(leader_config(&cluster)))
        .await
        .expect("connect to the leader");
    for i in 0..5 {
        insert_switch(&writer, &format!("ls-{i}")).await;
    }

    // leader_only(false): the follower is fine.
    let reader = bounded(
        "connect to follower",
        Client::connect(
            ClientConfig::new(&follower_remote)
                .unwrap()
                .leader_only(false)
                .connect_timeout(DEADLINE),
        ),
    )
    .await
    .expect("connect to a follower");
    assert_eq!(
        reader.connected_remote().as_deref(),
        Some(follower_remote.as_str())
    );

    // A follower is eventually consistent: poll until the rows are there.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let mut tx = Transaction::new("OVN_Northbound");
        tx.select(
            "Logical_Switch",
            vec![Condition::includes("name", "ls-0")],
            Some(vec!["name".into()]),
        );
        tx.select("Logical_Switch", vec![], Some(vec!["name".into()]));
        let r = bounded("select on the follower", reader.transact(tx))
            .await
            .expect("select on a follower");
        if r[1].rows().len() == 5 {
            assert_eq!(r[0].rows().len(), 1);
            assert_eq!(r[0].rows()[0].str("name"), Some("ls-0"));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "follower shows {} rows",
            r[1].rows().len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let replica = bounded(
        "monitor on the follower",
        reader.monitor(MonitorSpec::new("OVN_Northbound").table("Logical_Switch", None)),
    )
    .await
    .expect("monitor on a follower");
    assert_eq!(names(&replica).len(), 5);

    // A write on the leader reaches the follower's replica.
    insert_switch(&writer, "ls-late").await;
    bounded(
        "follower replica",
        replica.wait_for(DEADLINE, |db| {
            db.table("Logical_Switch").by_name("ls-late").is_some()
        }),
    )
    .await
    .unwrap();

    // leader_only(true) with only the follower's remote: refused, named.
    let r = Client::connect(
        ClientConfig::new(&follower_remote)
            .unwrap()
            .leader_only(true)
            .database("OVN_Northbound")
            .connect_timeout(Duration::from_secs(3)),
    )
    .await;
    match r {
        Err(Error::NotConnected(msg)) => {
            assert!(msg.contains("not the cluster leader"), "{msg}")
        }
        Err(e) => panic!("unexpected error {e:?}"),
        Ok(_) => {
            // Only acceptable if an election made the follower the leader.
            assert_eq!(
                blocking(|| cluster.leader()),
                Some(follower),
                "leader_only client connected to a follower"
            );
        }
    }
}
