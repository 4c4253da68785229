//! NetworkPolicy rows against real NB/SB and ovn-northd: a new pod joins
//! its policies' sets in the transaction that creates its port; relabels
//! and edits move rows in one transaction with no moment open; a restart
//! writes nothing and empties nothing; bad input gets Events; logging
//! follows a namespace annotation.

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::policy::*;
use common::{eventually, Env};
use ovsdb::{Row, Update};
use serde_json::json;
use switchyard_api::{annotations, names};
use switchyard_controller::k8s::Kind;
use tokio::sync::broadcast;

const T: Duration = Duration::from_secs(60);

async fn converged(env: &Env) {
    eventually(T, "NB converged with the policies", || {
        env.check()?;
        check_policies(env)
    })
    .await;
}

async fn xyz() -> (Env, common::Running) {
    let env = Env::new(&["10.244.0.0/16/24", "fd00:10:244::/48/64"]).await;
    setup_xyz(&env);
    let running = env.start();
    converged(&env).await;
    (env, running)
}

/// Receives updates until `done` says so (given every update so far).
async fn updates_until(
    rx: &mut broadcast::Receiver<Arc<Update>>,
    what: &str,
    done: impl Fn(&[Arc<Update>]) -> bool,
) -> Vec<Arc<Update>> {
    let end = Instant::now() + T;
    let mut seen = Vec::new();
    while !done(&seen) {
        let left = end.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Ok(u)) => seen.push(u),
            Ok(Err(e)) => panic!("update stream: {e}"),
            Err(_) => panic!("timed out waiting for {what}; saw {} updates", seen.len()),
        }
    }
    seen
}

fn name_of(r: &Option<Row>) -> Option<&str> {
    r.as_ref().and_then(|r| r.str("name"))
}

fn uuids(r: &Option<Row>, col: &str) -> BTreeSet<ovsdb::Uuid> {
    r.as_ref()
        .and_then(|r| r.get(col))
        .map(|v| v.uuids().into_iter().collect())
        .unwrap_or_default()
}

fn strings(r: &Option<Row>, col: &str) -> BTreeSet<String> {
    r.as_ref()
        .and_then(|r| r.get(col))
        .map(|v| v.strings().into_iter().map(str::to_string).collect())
        .unwrap_or_default()
}

/// The NB transaction log (`ovsdb-tool show-log -m`), one string per
/// committed transaction.
fn nb_transactions(env: &Env) -> Vec<String> {
    let out = Command::new("ovsdb-tool")
        .args(["show-log", "-m"])
        .arg(env.central.nb.db_path())
        .output()
        .expect("ovsdb-tool runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut records = Vec::new();
    for line in text.lines() {
        if line.starts_with("record ") {
            records.push(String::new());
        }
        if let Some(r) = records.last_mut() {
            r.push_str(line);
            r.push('\n');
        }
    }
    records
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_pod_joins_its_sets_in_the_transaction_that_creates_its_port() {
    let (env, running) = xyz().await;
    // Pods labelled pod=a are selected (port group) and are peers of
    // every namespace (address sets).
    env.cluster.apply(np("x", "a-to-a", json!({
        "podSelector": {"matchLabels": {"pod": "a"}},
        "ingress": [{"from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"pod": "a"}}}]}],
    })));
    env.cluster.apply(np("x", "b-only", json!({
        "podSelector": {"matchLabels": {"pod": "b"}},
        "ingress": [{"from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"pod": "b"}}}]}],
    })));
    converged(&env).await;
    let mut rx = env.replica.subscribe();
    env.cluster
        .apply_pod(serve_pod("x", "a2", "n2", &[("pod", "a")]));
    let seen = updates_until(&mut rx, "the new pod's port", |s| {
        s.iter().flat_map(|u| &u.changes).any(|c| {
            c.table == "Logical_Switch_Port" && c.old.is_none() && name_of(&c.new) == Some("x_a2")
        })
    })
    .await;
    let (last, earlier) = seen.split_last().expect("an update");
    assert!(
        earlier
            .iter()
            .flat_map(|u| &u.changes)
            .all(|c| c.table != "Logical_Switch_Port"),
        "the port came alone first"
    );
    let port = last
        .changes
        .iter()
        .find(|c| c.table == "Logical_Switch_Port" && name_of(&c.new) == Some("x_a2"))
        .expect("the port");
    let addrs: Vec<String> = strings(&port.new, "addresses")
        .iter()
        .flat_map(|a| {
            a.split_whitespace()
                .skip(1)
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(addrs.len(), 2, "dual-stack");
    // In the same update: the port group gains the port, and the peer
    // address sets of both families gain its addresses.
    let group = last
        .changes
        .iter()
        .find(|c| c.table == "Port_Group" && uuids(&c.new, "ports").contains(&port.uuid))
        .expect("the port group holds the new port in the same update");
    assert!(!uuids(&group.old, "ports").contains(&port.uuid));
    for a in &addrs {
        assert!(
            last.changes.iter().any(|c| c.table == "Address_Set"
                && name_of(&c.new).is_some_and(|n| n.starts_with("peer."))
                && strings(&c.new, "addresses").contains(a)
                && !strings(&c.old, "addresses").contains(a)),
            "the peer set gains {a} in the same update"
        );
    }
    // And in the same NB transaction, as ovsdb-server logged it.
    let pg = name_of(&group.new).expect("named").to_string();
    let txns = nb_transactions(&env);
    let record = txns
        .iter()
        .find(|r| r.contains("table Logical_Switch_Port insert row \"x_a2\""))
        .expect("the port's transaction");
    assert!(
        record.contains(&format!("table Port_Group row \"{pg}\"")),
        "{record}"
    );
    assert!(record.contains("table Address_Set row \"peer."), "{record}");

    // A relabel leaves one group and joins the other in one update.
    let mut rx = env.replica.subscribe();
    env.cluster
        .apply_pod(serve_pod("x", "a2", "n2", &[("pod", "b")]));
    let seen = updates_until(&mut rx, "the relabel", |s| {
        s.iter()
            .flat_map(|u| &u.changes)
            .filter(|c| {
                c.table == "Port_Group"
                    && uuids(&c.old, "ports").contains(&port.uuid)
                        != uuids(&c.new, "ports").contains(&port.uuid)
            })
            .count()
            >= 2
    })
    .await;
    let moved: Vec<&ovsdb::Change> = seen
        .last()
        .expect("an update")
        .changes
        .iter()
        .filter(|c| c.table == "Port_Group")
        .collect();
    assert_eq!(
        moved.len(),
        2,
        "left one and joined the other in one update"
    );
    converged(&env).await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_replaces_acls_in_one_transaction_with_no_moment_open() {
    let (env, running) = xyz().await;
    let web = |port: u16, pods: &str| {
        np(
            "x",
            "web",
            json!({
                "podSelector": {"matchLabels": {"pod": pods}},
                "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}], "ports": [{"port": port}]},
                            {"from": [{"podSelector": {"matchLabels": {"pod": "c"}}}]}],
            }),
        )
    };
    env.cluster.apply(web(80, "a"));
    converged(&env).await;
    let acls_of = |u: &Update| -> usize {
        u.changes
            .iter()
            .filter(|c| c.table == "ACL")
            .filter(|c| {
                [&c.old, &c.new].iter().any(|r| {
                    r.as_ref()
                        .and_then(|r| r.map_get("external_ids", names::OWNER_KIND))
                        .is_some()
                })
            })
            .count()
    };
    // A port change: the ACLs change in one update, and the pod set's
    // deny and the other rule are untouched.
    let mut rx = env.replica.subscribe();
    env.cluster.apply(web(81, "a"));
    let seen = updates_until(&mut rx, "the edited ACL", |s| {
        s.iter().flat_map(|u| &u.changes).any(|c| {
            c.table == "ACL"
                && c.new
                    .as_ref()
                    .and_then(|r| r.str("match"))
                    .is_some_and(|m| m.contains("tcp.dst == 81"))
        })
    })
    .await;
    let touched: Vec<usize> = seen.iter().map(|u| acls_of(u)).filter(|n| *n > 0).collect();
    assert_eq!(touched, vec![1], "one ACL changed, in one update");
    converged(&env).await;
    // A selector change: a new group with its deny and the policy's
    // allows, the old group and its ACLs gone, in one transaction.
    let mut rx = env.replica.subscribe();
    env.cluster.apply(web(81, "b"));
    let seen = updates_until(&mut rx, "the new port group", |s| {
        s.iter()
            .flat_map(|u| &u.changes)
            .any(|c| c.table == "Port_Group" && c.old.is_none())
    })
    .await;
    let last = seen.last().expect("an update");
    let count = |table: &str, ins: bool| {
        last.changes
            .iter()
            .filter(|c| {
                c.table == table
                    && if ins {
                        c.old.is_none()
                    } else {
                        c.new.is_none()
                    }
            })
            .count()
    };
    assert_eq!(
        (count("Port_Group", true), count("Port_Group", false)),
        (1, 1)
    );
    assert_eq!(
        (count("ACL", true), count("ACL", false)),
        (3, 3),
        "two allows and a deny each"
    );
    assert!(seen[..seen.len() - 1].iter().all(|u| acls_of(u) == 0));
    converged(&env).await;
    // Same-name churn: a pod deleted and created again at once gets a new
    // port, and its group holds the new port in the same transaction.
    let mut rx = env.replica.subscribe();
    env.cluster.delete_pod("x", "b");
    env.cluster
        .apply_pod(serve_pod("x", "b", node_for("b"), &[("pod", "b")]));
    let seen = updates_until(&mut rx, "the recreated port", |s| {
        s.iter().flat_map(|u| &u.changes).any(|c| {
            c.table == "Logical_Switch_Port" && c.old.is_none() && name_of(&c.new) == Some("x_b")
        })
    })
    .await;
    let last = seen.last().expect("an update");
    let port = last
        .changes
        .iter()
        .find(|c| c.table == "Logical_Switch_Port" && c.old.is_none())
        .expect("the port")
        .uuid;
    assert!(
        last.changes
            .iter()
            .any(|c| c.table == "Port_Group" && uuids(&c.new, "ports").contains(&port)),
        "the group holds the recreated port in the same update"
    );
    converged(&env).await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_writes_nothing_and_never_empties_a_set() {
    let (env, first) = xyz().await;
    let c = &env.cluster;
    let mut logged = kube_memory::namespace("y", &[("ns", "y")]);
    logged.metadata.annotations = Some(
        [(
            annotations::ACL_LOGGING.to_string(),
            r#"{"deny":"info"}"#.to_string(),
        )]
        .into(),
    );
    c.apply(logged);
    c.apply(np("x", "p1", json!({"podSelector": {"matchLabels": {"pod": "a"}},
        "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}, "podSelector": {"matchLabels": {"pod": "b"}}}],
                     "ports": [{"port": "serve-80-tcp"}, {"port": 81}]}]})));
    c.apply(np("y", "p2", json!({"podSelector": {}, "policyTypes": ["Egress"],
        "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"ns": "z"}}}]},
                   {"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}], "ports": [{"port": "serve-81-udp", "protocol": "UDP"}]}]})));
    c.apply(np(
        "z",
        "p3",
        json!({"podSelector": {"matchLabels": {"pod": "c"}},
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "a"}}}]}]}),
    ));
    converged(&env).await;
    assert_eq!(read_nb(&env).meters.len(), 1);
    first.stop().await;

    // A converged restart: not one operation, not one update.
    let mut rx = env.replica.subscribe();
    let second = env.start();
    eventually(T, "second run synced", || {
        second.synced().then_some(()).ok_or("not synced".into())
    })
    .await;
    converged(&env).await;
    assert_eq!(
        second.metrics.nb_operations.get(),
        0,
        "NB operations on a converged restart"
    );
    assert!(
        matches!(rx.try_recv(), Err(broadcast::error::TryRecvError::Empty)),
        "NB changed"
    );
    second.stop().await;

    // Changes while the controller is down: the sets change by their
    // difference when it comes back, never through empty.
    c.apply_pod(serve_pod("x", "a3", "n1", &[("pod", "a")]));
    c.apply_pod(serve_pod("z", "a2", "n2", &[("pod", "a")]));
    c.delete_pod("z", "a");
    let mut rx = env.replica.subscribe();
    let third = env.start();
    converged(&env).await;
    eventually(T, "third run synced", || {
        third.synced().then_some(()).ok_or("not synced".into())
    })
    .await;
    let mut updates = Vec::new();
    while let Ok(u) = rx.try_recv() {
        updates.push(u);
    }
    for ch in updates.iter().flat_map(|u| &u.changes) {
        let len = |r: &Option<Row>| match ch.table.as_str() {
            "Port_Group" => Some(uuids(r, "ports").len()),
            "Address_Set" => Some(strings(r, "addresses").len()),
            _ => None,
        };
        let (Some(before), Some(after)) = (len(&ch.old), len(&ch.new)) else {
            continue;
        };
        assert!(
            ch.old.is_some() && ch.new.is_some(),
            "{} {:?} recreated",
            ch.table,
            name_of(&ch.old)
        );
        assert!(
            after > 0 || before == 0,
            "{} {:?} emptied ({before} -> {after})",
            ch.table,
            name_of(&ch.old)
        );
    }
    let ops = third.metrics.nb_operations.get();
    // A rebuild would be hundreds; three pods' worth is a few dozen.
    assert!((1..=40).contains(&ops), "{ops} operations for three pods");
    third.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_events_and_logging_follows_the_namespace() {
    let (env, running) = xyz().await;
    let c = &env.cluster;
    c.apply(np(
        "x",
        "bad",
        json!({
            "podSelector": {"matchLabels": {"pod": "a"}},
            "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/99"]}}]},
                        {"ports": [{"protocol": "ICMP"}]}],
        }),
    ));
    c.apply(np(
        "x",
        "good",
        json!({"podSelector": {"matchLabels": {"pod": "b"}},
        "ingress": [{"ports": [{"port": 80}]}]}),
    ));
    let mut garbled = kube_memory::namespace("z", &[("ns", "z")]);
    garbled.metadata.annotations = Some(
        [(
            annotations::ACL_LOGGING.to_string(),
            r#"{"deny":"loud"}"#.to_string(),
        )]
        .into(),
    );
    c.apply(garbled);
    converged(&env).await;
    let has_event = |kind: Kind, name: &str, reason: &str, text: &str| {
        c.events().iter().any(|e| {
            e.regarding.kind == kind
                && e.regarding.name == name
                && e.reason == reason
                && e.type_ == "Warning"
                && e.note.contains(text)
        })
    };
    eventually(T, "Events for the bad policy and annotation", || {
        let want = [
            (
                Kind::NetworkPolicy,
                "bad",
                "NetworkPolicyNotEnforceable",
                "10.1.0.0/99",
            ),
            (
                Kind::NetworkPolicy,
                "bad",
                "NetworkPolicyNotEnforceable",
                "ICMP",
            ),
            (Kind::Namespace, "z", "InvalidACLLogging", "loud"),
        ];
        let missing: Vec<_> = want
            .iter()
            .filter(|(k, n, r, t)| !has_event(*k, n, r, t))
            .collect();
        missing
            .is_empty()
            .then_some(())
            .ok_or(format!("missing {missing:?} in {:?}", c.events()))
    })
    .await;
    assert!(!c.events().iter().any(|e| e.regarding.name == "good"));
    // Closed: x/a's group denies, and the bad policy allows nothing.
    let nb = read_nb(&env);
    assert!(nb.acls.iter().all(|a| a.owner != "x/bad"));
    assert!(nb.acls.iter().any(
        |a| a.action == "drop" && a.ids.get(names::POLICY).map(String::as_str) == Some("x/bad")
    ));
    assert!(nb.meters.is_empty(), "no valid logging asked for");

    // Logging on for x: its ACLs log at the asked severities, through the
    // meter; y's and z's do not.
    let mut logged = kube_memory::namespace("x", &[("ns", "x")]);
    logged.metadata.annotations = Some(
        [(
            annotations::ACL_LOGGING.to_string(),
            r#"{"deny":"warning","allow":"info"}"#.to_string(),
        )]
        .into(),
    );
    c.apply(logged.clone());
    c.apply(np(
        "y",
        "other",
        json!({"podSelector": {}, "ingress": [{}]}),
    ));
    eventually(T, "ACL logging in x", || {
        let nb = read_nb(&env);
        if nb.meters != vec![names::ACL_LOGGING_METER.to_string()] {
            return Err(format!("meters {:?}", nb.meters));
        }
        for a in nb
            .acls
            .iter()
            .filter(|a| a.owner_kind != names::KIND_POLICY_HOST)
        {
            let in_x = a
                .ids
                .get(names::POLICY)
                .is_some_and(|p| p.starts_with("x/"));
            let want = match (in_x, a.action.as_str()) {
                (false, _) => None,
                (true, "drop") => Some("warning"),
                (true, _) => Some("info"),
            };
            if a.log != want.is_some()
                || a.severity.as_deref() != want
                || a.meter.as_deref() != want.map(|_| names::ACL_LOGGING_METER)
            {
                return Err(format!("{a:?}: want {want:?}"));
            }
        }
        Ok(())
    })
    .await;
    let band = env
        .central
        .nbctl(&["--bare", "--columns=rate,action", "list", "Meter_Band"])
        .expect("nbctl");
    assert_eq!(
        band.split_whitespace().collect::<Vec<_>>(),
        vec!["20", "drop"]
    );
    let unit = env
        .central
        .nbctl(&["get", "Meter", names::ACL_LOGGING_METER, "unit", "fair"])
        .expect("nbctl");
    assert_eq!(
        unit.split_whitespace().collect::<Vec<_>>(),
        vec!["pktps", "true"]
    );
    // And off again: no logging, no meter.
    logged.metadata.annotations =
        Some([(annotations::ACL_LOGGING.to_string(), "{}".to_string())].into());
    c.apply(logged);
    eventually(T, "logging off", || {
        let nb = read_nb(&env);
        (nb.meters.is_empty() && nb.acls.iter().all(|a| !a.log))
            .then_some(())
            .ok_or(format!("{:?}", nb.meters))
    })
    .await;
    converged(&env).await;
    // Damage by hand is repaired: a port group (and with it its ACLs)
    // and a peer address set deleted, an ACL's match rewritten.
    let acls_now = || {
        let mut v: Vec<(String, String, String)> = read_nb(&env)
            .acls
            .into_iter()
            .map(|a| (a.owner, a.matches, a.held_by[0].1.clone()))
            .collect();
        v.sort();
        v
    };
    c.apply(np(
        "z",
        "peer",
        json!({"podSelector": {},
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "a"}}}]}]}),
    ));
    converged(&env).await;
    let before = acls_now();
    let nb = read_nb(&env);
    let group = nb.groups.keys().next().expect("a port group").clone();
    let set = nb
        .sets
        .keys()
        .find(|n| n.starts_with("peer."))
        .expect("a peer set")
        .clone();
    let nbctl = |a: &[&str]| env.central.nbctl(a).expect("nbctl");
    nbctl(&["destroy", "Port_Group", &group]);
    nbctl(&["destroy", "Address_Set", &set]);
    let uuid = nbctl(&["--bare", "--columns=_uuid", "find", "ACL", "priority=12000"]);
    let uuid = uuid.split_whitespace().next().expect("an allow ACL");
    nbctl(&["set", "ACL", uuid, "match=\"ip\""]);
    eventually(T, "hand damage repaired", || {
        check_policies(&env)?;
        let now = acls_now();
        (now == before).then_some(()).ok_or(format!("{now:?}"))
    })
    .await;
    // Logical flows exist for the policy ACLs (northd took them).
    env.central.sync_sb(T).expect("SB sync");
    let flows = env
        .central
        .sbctl(&[
            "--bare",
            "--columns=match",
            "find",
            "Logical_Flow",
            "table_id=4",
            "pipeline=egress",
        ])
        .expect("sbctl");
    assert!(flows.contains("outport == @np.x."), "{flows}");
    running.stop().await;
}
