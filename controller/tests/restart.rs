//! Crash in the middle of churn, restart, converge; a restart on a
//! converged cluster writes nothing.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{active, annotation, eventually, Env};
use k8s_openapi::api::core::v1::PodStatus;
use kube_memory::{node, pod};

const T: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_during_churn_then_restart_converges_and_second_restart_writes_nothing() {
    let env = Env::new(&["10.244.0.0/16/24", "fd00:10:244::/48/64"]).await;
    let c = &env.cluster;
    for n in 0..5 {
        c.apply_node(node(&format!("n{n}")));
    }
    let churn = |from: usize, to: usize| {
        for i in from..to {
            c.apply_pod(pod("churn", &format!("p{i}"), &format!("n{}", i % 5)));
            if i % 7 == 3 {
                c.delete_pod("churn", &format!("p{}", i - 3));
            }
            if i % 11 == 5 {
                // Recreated under the same name: a new UID.
                c.delete_pod("churn", &format!("p{}", i - 5));
                c.apply_pod(pod(
                    "churn",
                    &format!("p{}", i - 5),
                    &format!("n{}", (i + 1) % 5),
                ));
            }
            if i % 13 == 6 {
                let name = format!("p{}", i - 6);
                if let Some(p) = c.pod("churn", &name) {
                    let uid = p.metadata.uid.unwrap_or_default();
                    let done = PodStatus {
                        phase: Some("Succeeded".into()),
                        ..Default::default()
                    };
                    c.update_pod_status("churn", &name, &uid, done);
                }
            }
        }
    };
    let first = env.start();
    churn(0, 100);
    eventually(T, "some pods annotated", || {
        let n = c.patch_count();
        (n >= 50).then_some(()).ok_or(format!("{n} patches"))
    })
    .await;
    // Crash with work in flight: 150 new pods not yet processed.
    churn(100, 250);
    first.crash();
    let at_crash = c.patch_count();
    churn(250, 500);
    let annotated_before: HashMap<String, String> = c
        .pods()
        .iter()
        .filter(|p| active(p))
        .filter_map(|p| Some((p.metadata.uid.clone()?, format!("{:?}", annotation(p)?))))
        .collect();

    assert!(
        at_crash < 250 + 5,
        "the crash came after all the work: {at_crash} patches"
    );
    let second = env.start();
    eventually(T, "NB converged after the crash", || env.check()).await;
    eventually(T, "controller reports convergence", || {
        second.synced().then_some(()).ok_or("not synced".into())
    })
    .await;
    // Every pod kept what it had before the crash.
    for p in c.pods() {
        if let Some(before) = p
            .metadata
            .uid
            .as_ref()
            .and_then(|u| annotated_before.get(u))
        {
            assert_eq!(
                &format!("{:?}", annotation(&p).unwrap()),
                before,
                "pod changed addresses"
            );
        }
    }
    // No address leaked: the allocators hold exactly the live pods' addresses.
    let live = c.pods().iter().filter(|p| active(p)).count() as i64;
    assert!(live > 300, "{live} live pods");
    eventually(T, "allocator usage equals live pods", || {
        let used = second.metrics.pod_addresses_used.get();
        (used == 2 * live)
            .then_some(())
            .ok_or(format!("{used} used, {live} live pods"))
    })
    .await;
    second.stop().await;

    // A restart on a converged cluster: zero NB operations, zero patches.
    let patches = c.patch_count();
    let snapshot = || {
        env.replica.with(|db| {
            let mut rows: Vec<String> = Vec::new();
            for t in switchyard_controller::nb::Table::ALL {
                for (u, row) in db.table(t.name()).iter() {
                    let cols: Vec<String> = t
                        .columns()
                        .iter()
                        .map(|c| format!("{c}={:?}", row.get(c)))
                        .collect();
                    rows.push(format!("{u} {}", cols.join(" ")));
                }
            }
            rows.sort();
            rows
        })
    };
    let before = snapshot();
    let third = env.start();
    eventually(T, "third run converged", || {
        third.synced().then_some(()).ok_or("not synced".into())
    })
    .await;
    env.check().unwrap();
    assert_eq!(
        third.metrics.nb_operations.get(),
        0,
        "NB operations on a converged cluster"
    );
    assert_eq!(
        third.metrics.nb_transactions.get(),
        0,
        "NB transactions on a converged cluster"
    );
    assert_eq!(
        c.patch_count(),
        patches,
        "API patches on a converged cluster"
    );
    // And NB itself shows the same rows (same UUIDs) and managed columns.
    // (ovn-northd may still write its own columns such as `up`.)
    assert!(
        before == snapshot(),
        "NB rows changed during the converged restart"
    );
    third.stop().await;
}
