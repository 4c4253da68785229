//! The duplicate-address race of wave 1, made to happen on purpose.
//!
//! Two writers decided addresses from two views: a replica that had lost
//! its lease (or been "killed" while its tasks ran on) kept sending the
//! annotation patches it had queued, after its successor had allocated
//! from a list that did not show them; and the successor never put back
//! an annotation it had already written once. Each test below holds the
//! old writer's requests at a slow API server (the in-memory server's
//! write hold) and lets them go exactly when the successor has decided,
//! instead of hoping the scheduler interleaves them that way.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{annotation, eventually, Env, Running};
use kube_memory::{node, pod};
use switchyard_api::annotations::POD_NETWORK;
use switchyard_controller::config::LeaderElection;
use switchyard_controller::k8s::{Cluster, ObjectRef};

const T: Duration = Duration::from_secs(60);

fn elected(env: &Env, identity: &str) -> switchyard_controller::Config {
    let mut config = env.config.clone();
    config.leader_election = LeaderElection {
        enabled: true,
        namespace: "switchyard".into(),
        lease_name: "controller".into(),
        identity: identity.into(),
        lease_duration: Duration::from_millis(1500),
        renew_deadline: Duration::from_millis(1000),
        retry_period: Duration::from_millis(100),
    };
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_lost_its_lease_sends_nothing_it_had_queued() {
    let env = Env::new(&["10.244.0.0/16/24"]).await;
    let c = &env.cluster;
    c.apply_node(node("n1"));
    let a = Running::start(elected(&env, "a"), c.client("a"));
    eventually(T, "a leads and gives n1 its subnet", || {
        let n = c.node("n1").unwrap();
        let annotated = n
            .metadata
            .annotations
            .is_some_and(|m| m.contains_key(switchyard_api::annotations::NODE_SUBNETS));
        (a.metrics.leader.get() == 1 && annotated)
            .then_some(())
            .ok_or("not yet".into())
    })
    .await;

    // The API server turns slow for a: its patches wait.
    a.client.hold_writes();
    for i in 0..20 {
        c.apply_pod(pod("ns", &format!("p{i}"), "n1"));
    }
    eventually(
        T,
        "a has decided all 20 pods and waits on the server",
        || {
            let held = a.client.held_writes();
            (held == 20).then_some(()).ok_or(format!("{held} held"))
        },
    )
    .await;

    // Another replica takes the lease: a's next renewal sees it and a steps
    // down.
    let mut lease = c.lease("switchyard", "controller").expect("lease");
    let spec = lease.spec.as_mut().expect("spec");
    spec.holder_identity = Some("b".into());
    spec.renew_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
        k8s_openapi::jiff::Timestamp::now(),
    ));
    c.put_lease(lease);
    eventually(T, "a stepped down", || {
        (a.metrics.leader.get() == 0)
            .then_some(())
            .ok_or("still leading".into())
    })
    .await;

    // The server answers again. Nothing a decided may land now: its
    // successor's list did not include it.
    a.client.release_writes();
    eventually(T, "a's queued requests are gone", || {
        let held = a.client.held_writes();
        (held == 0).then_some(()).ok_or(format!("{held} held"))
    })
    .await;
    let from_a: Vec<String> = c
        .patches()
        .iter()
        .filter(|p| p.client == "a" && p.kind == "Pod")
        .map(|p| p.name.clone())
        .collect();
    assert!(
        from_a.is_empty(),
        "a replica without the lease patched {from_a:?}"
    );

    // The successor takes over from a different list (p0 went, q came),
    // so its choices differ from a's; it converges with one address each.
    c.delete_pod("ns", "p0");
    c.apply_pod(pod("ns", "q", "n1"));
    let b = Running::start(elected(&env, "b"), c.client("b"));
    eventually(T, "b converged", || env.check()).await;
    b.stop().await;
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_annotation_overwritten_behind_the_controllers_back_is_put_back() {
    let env = Env::new(&["10.244.0.0/16/24"]).await;
    let c = &env.cluster;
    c.apply_node(node("n1"));
    for i in 0..10 {
        c.apply_pod(pod("ns", &format!("p{i}"), "n1"));
    }
    let running = env.start();
    eventually(T, "converged", || env.check()).await;

    // A stale writer (an old leader's request that was already on the
    // wire) lands late and gives p1 the address the controller gave p2.
    let p1 = c.pod("ns", "p1").unwrap();
    let p2 = annotation(&c.pod("ns", "p2").unwrap()).unwrap();
    let mut stale = annotation(&p1).unwrap();
    stale.ips = p2.ips.clone();
    stale.mac = p2.mac.clone();
    // The controller's own writes wait meanwhile, so the damage is seen.
    running.client.hold_writes();
    let stale_writer = c.client("stale");
    stale_writer
        .patch_annotations(
            ObjectRef::pod("ns", "p1", p1.metadata.uid.as_deref().unwrap()),
            None,
            BTreeMap::from([(POD_NETWORK.to_string(), Some(stale.to_json()))]),
        )
        .await
        .unwrap();
    let err = env.check().expect_err("the stale patch made a duplicate");
    assert!(err.contains("given to both"), "{err}");
    running.client.release_writes();
    eventually(T, "the controller put p1's own address back", || {
        env.check()
    })
    .await;
    assert_eq!(
        annotation(&c.pod("ns", "p1").unwrap()).unwrap().ips,
        annotation(&p1).unwrap().ips
    );
    running.stop().await;
}
