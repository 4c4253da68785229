//! The controller against real NB/SB ovsdb-server and ovn-northd, driven
//! through the in-memory cluster.

mod common;

use std::time::Duration;

use common::{annotation, eventually, Env};
use k8s_openapi::api::core::v1::PodStatus;
use kube_memory::{node, pod};
use switchyard_api::annotations;

const T: Duration = Duration::from_secs(30);

fn with_pod_cidrs(name: &str, cidrs: &[&str]) -> k8s_openapi::api::core::v1::Node {
    let mut n = node(name);
    n.spec.as_mut().unwrap().pod_cidrs = Some(cidrs.iter().map(|s| s.to_string()).collect());
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_and_pods_become_nb_rows_and_annotations() {
    let env = Env::new(&["10.244.0.0/16/24", "fd00:10:244::/48/64"]).await;
    let c = &env.cluster;
    c.apply_node(node("n1"));
    c.apply_node(with_pod_cidrs(
        "n2",
        &["10.244.200.0/24", "fd00:10:244:c8::/64"],
    ));
    for i in 0..3 {
        c.apply_pod(pod("default", &format!("a{i}"), "n1"));
        c.apply_pod(pod("kube-system", &format!("b{i}"), "n2"));
    }
    let mut host = pod("default", "host", "n1");
    host.spec.as_mut().unwrap().host_network = Some(true);
    c.apply_pod(host);
    c.apply_pod(pod("default", "unscheduled", ""));
    let running = env.start();
    eventually(T, "NB matches the cluster", || env.check()).await;
    // Ready follows once the writer has seen its own commit: a moment after
    // NB holds the rows (found by the stress script, 1 run in 10 under 3
    // CPU hogs).
    eventually(T, "readiness after convergence", || {
        running.synced().then_some(()).ok_or("not synced".into())
    })
    .await;

    // Annotations: dual-stack, from the node's subnet, gateway .1.
    let a0 = annotation(&c.pod("default", "a0").unwrap()).unwrap();
    assert_eq!(a0.ips.len(), 2);
    let n1_subnets =
        c.node("n1").unwrap().metadata.annotations.unwrap()[annotations::NODE_SUBNETS].clone();
    let n1_subnets = switchyard_api::NodeSubnets::parse(&n1_subnets).unwrap().0;
    assert!(
        n1_subnets[0].contains(&a0.ips[0].addr()),
        "{a0:?} not in {n1_subnets:?}"
    );
    assert_eq!(
        a0.gateways[0],
        switchyard_api::addressing::gateway(n1_subnets[0]).unwrap()
    );
    assert_eq!(a0.mac, switchyard_api::mac::from_ip(a0.ips[0].addr()));
    let b0 = annotation(&c.pod("kube-system", "b0").unwrap()).unwrap();
    assert_eq!(
        b0.ips[0].to_string(),
        "10.244.200.3/24",
        "podCIDRs from Kubernetes are used"
    );
    assert_eq!(b0.ips[1].to_string(), "fd00:10:244:c8::3/64");
    assert!(
        c.node("n2").unwrap().metadata.annotations.is_none(),
        "no annotation when podCIDRs are set"
    );
    assert!(annotation(&c.pod("default", "host").unwrap()).is_none());
    assert!(annotation(&c.pod("default", "unscheduled").unwrap()).is_none());
    // One patch per pod and one per allocated node, nothing more.
    assert_eq!(c.patch_count(), 6 + 1);

    // As an operator sees it.
    let show = env.central.nbctl(&["show"]).unwrap();
    for want in [
        "router",
        "(cluster-router)",
        "(node-n1)",
        "(node-n2)",
        "port rtos-n1",
        "port stor-n2",
        "port mgmt-n1",
        "port default_a0",
        "port kube-system_b2",
        "networks: [\"10.244.200.1/24\", \"fd00:10:244:c8::1/64\"]",
    ] {
        assert!(
            show.contains(want),
            "ovn-nbctl show lacks {want:?}:\n{show}"
        );
    }
    let found = env
        .central
        .nbctl(&[
            "--bare",
            "--columns=name",
            "find",
            "Logical_Switch_Port",
            "external_ids:switchyard.io/owner-kind=Pod",
        ])
        .unwrap();
    let mut ports: Vec<&str> = found.split_whitespace().collect();
    ports.sort();
    assert_eq!(
        ports,
        vec![
            "default_a0",
            "default_a1",
            "default_a2",
            "kube-system_b0",
            "kube-system_b1",
            "kube-system_b2"
        ]
    );
    let opts = env
        .central
        .nbctl(&[
            "get",
            "Logical_Switch_Port",
            "default_a1",
            "options:requested-chassis",
        ])
        .unwrap();
    assert_eq!(opts.trim(), "n1");
    let stor = env
        .central
        .nbctl(&[
            "get",
            "Logical_Switch_Port",
            "stor-n1",
            "type",
            "options:router-port",
        ])
        .unwrap();
    assert_eq!(
        stor.split_whitespace().collect::<Vec<_>>(),
        vec!["router", "rtos-n1"]
    );
    // SB: northd bound every port.
    env.central.sync_sb(T).unwrap();
    let sb = env
        .central
        .sbctl(&["--bare", "--columns=logical_port", "list", "Port_Binding"])
        .unwrap();
    for p in [
        "default_a0",
        "kube-system_b1",
        "mgmt-n1",
        "stor-n2",
        "rtos-n1",
    ] {
        assert!(
            sb.split_whitespace().any(|l| l == p),
            "SB lacks port binding {p}: {sb}"
        );
    }

    // Lifecycle: delete, finish, recreate under the same name.
    c.delete_pod("default", "a0");
    let a1 = c.pod("default", "a1").unwrap();
    assert!(c.update_pod_status(
        "default",
        "a1",
        a1.metadata.uid.as_deref().unwrap(),
        PodStatus {
            phase: Some("Succeeded".into()),
            ..Default::default()
        }
    ));
    let old_uid = c.pod("default", "a2").unwrap().metadata.uid.unwrap();
    c.delete_pod("default", "a2");
    let new = c.apply_pod(pod("default", "a2", "n1"));
    assert_ne!(new.metadata.uid.as_deref(), Some(old_uid.as_str()));
    eventually(T, "NB after pod churn", || env.check()).await;
    let ver = env
        .central
        .nbctl(&[
            "get",
            "Logical_Switch_Port",
            "default_a2",
            "options:iface-id-ver",
        ])
        .unwrap();
    assert_eq!(ver.trim().trim_matches('"'), new.metadata.uid.unwrap());
    eventually(T, "address gauge counts 5 live pods", || {
        let used = running.metrics.pod_addresses_used.get();
        // 4 pods left (a2 new, b0..b2) with two families each.
        (used == 8)
            .then_some(())
            .ok_or(format!("{used} addresses in use"))
    })
    .await;

    // A node goes: its rows go, its subnet is freed.
    c.delete_node("n2");
    for i in 0..3 {
        c.delete_pod("kube-system", &format!("b{i}"));
    }
    eventually(T, "NB after node deletion", || env.check()).await;
    assert!(!env.central.nbctl(&["show"]).unwrap().contains("node-n2"));
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_an_event_and_disturbs_nothing_else() {
    // Two /29 node subnets: four pod addresses each.
    let env = Env::new(&["10.244.0.0/28/29"]).await;
    let c = &env.cluster;
    c.apply_node(node("n1"));
    c.apply_node(node("n2"));
    c.apply_node(node("n3")); // no subnet left
    for i in 0..5 {
        c.apply_pod(pod("ns", &format!("p{i}"), "n1")); // one too many
    }
    let mut outside = pod("ns", "outside", "n2");
    outside.metadata.annotations = Some(
        [(
            annotations::REQUESTED_IPS.to_string(),
            "10.99.0.5".to_string(),
        )]
        .into(),
    );
    c.apply_pod(outside);
    let mut garbage = pod("ns", "garbage", "n2");
    garbage.metadata.annotations =
        Some([(annotations::POD_NETWORK.to_string(), "{nope".to_string())].into());
    c.apply_pod(garbage);
    let mut wants = pod("ns", "wants", "n2");
    wants.metadata.annotations = Some(
        [(
            annotations::REQUESTED_IPS.to_string(),
            "10.244.0.12".to_string(),
        )]
        .into(),
    );
    c.apply_pod(wants);
    let mut clash = pod("ns", "clash", "n2");
    clash.metadata.annotations = Some(
        [(
            annotations::REQUESTED_IPS.to_string(),
            "10.244.0.12".to_string(),
        )]
        .into(),
    );
    c.apply_pod(clash);
    c.apply_pod(pod("ns", "fine", "n2"));
    let running = env.start();

    let has_event = |kind: &str, name: &str, reason: &str, text: &str| {
        c.events().iter().any(|e| {
            e.regarding.kind.name() == kind
                && e.regarding.name == name
                && e.reason == reason
                && e.type_ == "Warning"
                && e.note.contains(text)
        })
    };
    eventually(T, "Events for every bad input", || {
        let want = [
            (
                "Node",
                "n3",
                "SubnetAllocationFailed",
                "no free node subnet",
            ),
            ("Pod", "outside", "AddressAllocationFailed", "10.99.0.5"),
            ("Pod", "garbage", "InvalidAnnotation", "invalid JSON"),
        ];
        let missing: Vec<_> = want
            .iter()
            .filter(|(k, n, r, t)| !has_event(k, n, r, t))
            .collect();
        // "wants" and "clash" ask for the same address: one gets it, the
        // other an Event naming the holder.
        let conflict = has_event(
            "Pod",
            "clash",
            "AddressAllocationFailed",
            "already assigned to ns/wants",
        ) || has_event(
            "Pod",
            "wants",
            "AddressAllocationFailed",
            "already assigned to ns/clash",
        );
        if missing.is_empty() && conflict {
            Ok(())
        } else {
            Err(format!("missing {missing:?}; have {:?}", c.events()))
        }
    })
    .await;
    eventually(T, "exhaustion Event for one of n1's five pods", || {
        c.events()
            .iter()
            .any(|e| e.reason == "AddressAllocationFailed" && e.note.contains("no free address"))
            .then_some(())
            .ok_or_else(|| format!("{:?}", c.events()))
    })
    .await;
    // Counted only as the server accepted them.
    eventually(T, "the Event counter equals what the server stored", || {
        let stored: u32 = c.stored_events().iter().map(|e| e.count).sum();
        let counted = running.metrics.events.get();
        (counted == stored as u64 && running.metrics.event_failures.get() == 0)
            .then_some(())
            .ok_or(format!("counted {counted}, stored {stored}"))
    })
    .await;
    // Everyone else is fine.
    let (winner, loser) = if annotation(&c.pod("ns", "wants").unwrap()).is_some() {
        ("wants", "clash")
    } else {
        ("clash", "wants")
    };
    let net = annotation(&c.pod("ns", winner).unwrap()).unwrap();
    assert_eq!(net.ips[0].to_string(), "10.244.0.12/29");
    assert!(annotation(&c.pod("ns", loser).unwrap()).is_none());
    assert!(annotation(&c.pod("ns", "fine").unwrap()).is_some());
    let annotated: Vec<String> = (0..5)
        .filter(|i| annotation(&c.pod("ns", &format!("p{i}")).unwrap()).is_some())
        .map(|i| format!("p{i}"))
        .collect();
    assert_eq!(annotated.len(), 4, "{annotated:?}");
    let nb = env.nb_rows();
    for bad in [
        "ns_outside".to_string(),
        "ns_garbage".to_string(),
        format!("ns_{loser}"),
    ] {
        assert!(!nb.iter().any(|(_, n, _)| *n == bad), "{bad} has a port");
    }
    assert!(!nb.iter().any(|(_, n, _)| n == "node-n3"));
    // The garbage annotation is left as the user wrote it.
    assert_eq!(
        c.pod("ns", "garbage")
            .unwrap()
            .metadata
            .annotations
            .unwrap()[annotations::POD_NETWORK],
        "{nope"
    );

    // Causes that clear are retried: a freed address goes to the waiting pod,
    // a freed subnet to the waiting node.
    let waiting = (0..5)
        .map(|i| format!("p{i}"))
        .find(|p| !annotated.contains(p))
        .unwrap();
    c.delete_pod("ns", &annotated[0]);
    c.delete_pod("ns", winner);
    c.delete_pod("ns", "outside");
    c.delete_pod("ns", "garbage");
    c.delete_node("n1");
    eventually(T, "n3 gets n1's subnet; the loser gets its address", || {
        let n3 = c
            .node("n3")
            .unwrap()
            .metadata
            .annotations
            .unwrap_or_default();
        let ok3 = n3.contains_key(annotations::NODE_SUBNETS);
        let clash = annotation(&c.pod("ns", loser).unwrap());
        match (ok3, clash) {
            (true, Some(net)) if net.ips[0].to_string() == "10.244.0.12/29" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    // The pod waiting on n1 lost its node; on the other hand nothing on n2
    // was disturbed.
    let _ = waiting;
    c.apply_pod(pod("ns", "late", "n3"));
    eventually(T, "NB matches after recovery", || env.check()).await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_damage_is_repaired() {
    let env = Env::new(&[]).await;
    let c = &env.cluster;
    c.apply_node(node("n1"));
    c.apply_node(node("n2"));
    for i in 0..4 {
        c.apply_pod(pod(
            "ns",
            &format!("p{i}"),
            if i % 2 == 0 { "n1" } else { "n2" },
        ));
    }
    let running = env.start();
    eventually(T, "converged", || env.check()).await;
    let before = env.nb_rows();
    let nb = |args: &[&str]| env.central.nbctl(args).unwrap();

    // Delete a pod port, rewrite another's addresses, strip ownership from
    // a third, delete a whole node switch (and with it its ports), and add a
    // stray row that claims to be ours.
    nb(&["lsp-del", "ns_p0"]);
    nb(&["lsp-set-addresses", "ns_p1", "0a:00:00:00:00:01 10.9.9.9"]);
    nb(&[
        "set",
        "Logical_Switch_Port",
        "ns_p1",
        "options:requested-chassis=elsewhere",
    ]);
    nb(&[
        "remove",
        "Logical_Switch_Port",
        "mgmt-n1",
        "external_ids",
        "switchyard.io/owner-kind",
    ]);
    nb(&["ls-del", "node-n2"]);
    nb(&[
        "lsp-add",
        "node-n1",
        "ns_ghost",
        "--",
        "set",
        "Logical_Switch_Port",
        "ns_ghost",
        "external_ids:switchyard.io/owner-kind=Pod",
        "external_ids:switchyard.io/owner=ns/ghost",
    ]);
    eventually(T, "NB repaired", || env.check()).await;
    eventually(T, "rows identical to before the damage", || {
        let now = env.nb_rows();
        if now == before {
            Ok(())
        } else {
            Err(format!("{now:?}"))
        }
    })
    .await;
    let p1 = nb(&[
        "get",
        "Logical_Switch_Port",
        "ns_p1",
        "options:requested-chassis",
    ]);
    assert_eq!(p1.trim(), "n2");

    // The router itself.
    nb(&["lr-del", "cluster-router"]);
    eventually(T, "router and its ports rebuilt", || {
        env.check()?;
        let show = nb(&["show"]);
        (show.contains("rtos-n1") && show.contains("rtos-n2"))
            .then_some(())
            .ok_or(show)
    })
    .await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_events_are_counted_as_failures_not_as_sent() {
    let env = Env::new(&["10.244.0.0/28/29"]).await;
    let c = &env.cluster;
    c.refuse_events(true);
    c.apply_node(node("n1"));
    let mut outside = pod("ns", "outside", "n1");
    outside.metadata.annotations = Some(
        [(
            annotations::REQUESTED_IPS.to_string(),
            "10.99.0.5".to_string(),
        )]
        .into(),
    );
    c.apply_pod(outside);
    c.apply_pod(pod("ns", "fine", "n1"));
    let running = env.start();
    eventually(T, "the refusal is counted", || {
        let failed = running.metrics.event_failures.get();
        (failed >= 1)
            .then_some(())
            .ok_or(format!("{failed} failures"))
    })
    .await;
    assert_eq!(
        running.metrics.events.get(),
        0,
        "a refused Event counted as sent"
    );
    assert!(c.events().is_empty());
    // The rest keeps working.
    eventually(T, "the good pod is served", || {
        let annotated = annotation(&c.pod("ns", "fine").unwrap()).is_some();
        let port = env
            .nb_rows()
            .iter()
            .any(|(t, n, _)| t == "Logical_Switch_Port" && n == "ns_fine");
        (annotated && port)
            .then_some(())
            .ok_or(format!("annotated {annotated}, port {port}"))
    })
    .await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_admin_network_policy_crds_the_controller_runs_and_asks_once() {
    use switchyard_controller::k8s::Kind;
    let env = Env::new(&[]).await;
    let c = &env.cluster;
    c.unserve(Kind::AdminNetworkPolicy);
    c.unserve(Kind::BaselineAdminNetworkPolicy);
    c.apply_node(node("n1"));
    c.apply_pod(pod("ns", "p", "n1"));
    let running = env.start();
    eventually(T, "converged without the CRDs", || env.check()).await;
    eventually(T, "synced", || {
        running.synced().then_some(()).ok_or("not synced".into())
    })
    .await;
    // One list each, not a retry loop.
    let lists = |resource: &str| {
        c.calls()
            .iter()
            .filter(|a| a.verb == "list" && a.resource == resource)
            .count()
    };
    assert_eq!(lists("adminnetworkpolicies"), 1);
    assert_eq!(lists("baselineadminnetworkpolicies"), 1);
    // Everything else still works.
    c.apply_pod(pod("ns", "later", "n1"));
    eventually(T, "a later pod is served", || env.check()).await;
    assert_eq!(lists("adminnetworkpolicies"), 1);
    running.stop().await;
}
