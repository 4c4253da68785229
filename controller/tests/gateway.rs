//! Gateway rows against real NB and northd: per node a gateway router
//! bound to its chassis with routes, SNAT and policies for both
//! families; a changed node address is followed, a missing one is an
//! Event and leaves that family out; a converged restart writes nothing.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{eventually, Env};
use k8s_openapi::api::core::v1::Node;
use kube_memory::node;
use switchyard_api::annotations::{NODE_CHASSIS, NODE_GATEWAY};
use switchyard_api::names;

const T: Duration = Duration::from_secs(60);

fn gateway_node(name: &str, ips: &[&str], hops: &[&str]) -> Node {
    let mut n = node(name);
    let gw = serde_json::json!({
        "bridge": "br-phy",
        "mac": "02:00:00:00:00:0b",
        "ips": ips,
        "nextHops": hops,
    });
    n.metadata.annotations = Some(BTreeMap::from([
        (NODE_CHASSIS.to_string(), format!("chassis-{name}")),
        (NODE_GATEWAY.to_string(), gw.to_string()),
    ]));
    n
}

/// A column (or `column:key`) of the row named `name`: its elements
/// separated by spaces, unquoted.
fn get(env: &Env, table: &str, name: &str, column: &str) -> String {
    let out = env
        .central
        .nbctl(&["--if-exists", "get", table, name, column])
        .unwrap_or_default();
    out.trim()
        .trim_matches(|c| c == '[' || c == ']')
        .split(", ")
        .map(|s| s.trim_matches('"'))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `field=value` lines of the rows of an unnamed table owned by `node`'s
/// gateway.
fn owned(env: &Env, table: &str, node: &str, columns: &str) -> Vec<String> {
    let out = env
        .central
        .nbctl(&[
            "--bare",
            "--columns",
            columns,
            "find",
            table,
            &format!("external_ids:\"{}\"={node}", names::OWNER),
            &format!("external_ids:\"{}\"=Gateway", names::OWNER_KIND),
        ])
        .unwrap_or_default();
    let mut rows: Vec<String> = out
        .split("\n\n")
        .map(|r| r.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|r| !r.is_empty())
        .collect();
    rows.sort();
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateways_follow_their_nodes_and_a_converged_restart_writes_nothing() {
    let env = Env::new(&["10.244.0.0/16/24", "fd00:10:244::/48/64"]).await;
    let c = &env.cluster;
    c.apply_node(gateway_node(
        "n1",
        &["198.18.0.11/24", "2001:db8:18::11/64"],
        &["198.18.0.1", "2001:db8:18::1"],
    ));
    c.apply_node(gateway_node(
        "n2",
        &["198.18.0.12/24", "2001:db8:18::12/64"],
        &["198.18.0.1", "2001:db8:18::1"],
    ));
    // A node whose agent has not published yet: no gateway, no Event.
    c.apply_node(node("n3"));
    let first = env.start();
    eventually(T, "NB holds every node's gateway", || env.check()).await;
    assert_eq!(
        get(&env, "Logical_Router", "GR-n1", "options:chassis"),
        "chassis-n1"
    );
    let net = |n: &str| {
        get(
            &env,
            "Logical_Router_Port",
            &names::router_to_external(n),
            "networks",
        )
    };
    assert_eq!(net("n2"), "198.18.0.12/24 2001:db8:18::12/64");
    let nat = owned(&env, "NAT", "n2", "type,external_ip,logical_ip");
    assert_eq!(
        nat,
        [
            "snat 198.18.0.12 10.244.0.0/16",
            "snat 2001:db8:18::12 fd00:10:244::/48"
        ]
    );
    assert_eq!(
        owned(
            &env,
            "Logical_Router_Static_Route",
            "n1",
            "ip_prefix,nexthop,policy"
        )
        .len(),
        8,
        "default, pods, egress and join routes per family"
    );
    assert_eq!(
        owned(&env, "Logical_Router_Policy", "n1", "priority").len(),
        2
    );
    // northd accepts them: the gateway router is an l3 gateway on its chassis.
    eventually(T, "SB knows GR-n1's chassis binding", || {
        let out = env
            .central
            .sbctl(&[
                "--bare",
                "--columns=options",
                "find",
                "Port_Binding",
                "logical_port=rtoe-GR-n1",
            ])
            .map_err(|e| e.to_string())?;
        out.contains("l3gateway-chassis=chassis-n1")
            .then_some(())
            .ok_or(format!("options: {out}"))
    })
    .await;

    // The address changes: the gateway follows.
    c.apply_node(gateway_node(
        "n2",
        &["198.18.0.112/24", "2001:db8:18::12/64"],
        &["198.18.0.1", "2001:db8:18::1"],
    ));
    eventually(T, "n2's gateway follows its new address", || {
        let n = net("n2");
        (n == "198.18.0.112/24 2001:db8:18::12/64")
            .then_some(())
            .ok_or(n)
    })
    .await;
    eventually(T, "n2's SNAT follows", || {
        let nat = owned(&env, "NAT", "n2", "external_ip");
        (nat == ["198.18.0.112", "2001:db8:18::12"])
            .then_some(())
            .ok_or(format!("{nat:?}"))
    })
    .await;
    // The IPv4 address goes: an Event, and IPv4 leaves the gateway.
    c.apply_node(gateway_node(
        "n2",
        &["2001:db8:18::12/64"],
        &["2001:db8:18::1"],
    ));
    eventually(T, "an Event about n2's missing address", || {
        c.events()
            .iter()
            .find(|e| e.reason == "NodeAddressMissing" && e.regarding.name == "n2")
            .map(|e| assert!(e.note.contains("IPv4"), "{}", e.note))
            .ok_or("no Event".into())
    })
    .await;
    eventually(T, "n2's gateway without IPv4", || {
        let n = net("n2");
        let nat = owned(&env, "NAT", "n2", "external_ip");
        (n == "2001:db8:18::12/64" && nat == ["2001:db8:18::12"])
            .then_some(())
            .ok_or(format!("{n} {nat:?}"))
    })
    .await;
    assert!(
        !c.events().iter().any(|e| e.regarding.name == "n3"),
        "a node that published nothing yet is no problem"
    );
    // Back, and a node deleted takes its gateway with it.
    c.apply_node(gateway_node(
        "n2",
        &["198.18.0.12/24", "2001:db8:18::12/64"],
        &["198.18.0.1", "2001:db8:18::1"],
    ));
    c.delete_node("n1");
    eventually(T, "converged again", || env.check()).await;
    assert!(owned(&env, "NAT", "n1", "external_ip").is_empty());
    assert!(owned(&env, "Logical_Router_Static_Route", "n1", "nexthop").is_empty());
    first.stop().await;

    // A restart on the converged cluster writes nothing.
    let second = env.start();
    eventually(T, "second run converged", || {
        second.synced().then_some(()).ok_or("not synced".into())
    })
    .await;
    env.check().unwrap();
    assert_eq!(second.metrics.nb_operations.get(), 0, "NB operations");
    assert_eq!(second.metrics.nb_transactions.get(), 0, "NB transactions");
    second.stop().await;
}
