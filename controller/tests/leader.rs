//! Lease-based leader election between replicas, through the in-memory
//! API server.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube_memory::MemoryCluster;
use switchyard_controller::config::LeaderElection;
use switchyard_controller::leader::run_elected;
use switchyard_controller::{Metrics, Result};
use tokio::sync::watch;

fn cfg(id: &str) -> LeaderElection {
    LeaderElection {
        enabled: true,
        namespace: "switchyard".into(),
        lease_name: "ctl".into(),
        identity: id.into(),
        lease_duration: Duration::from_millis(400),
        renew_deadline: Duration::from_millis(300),
        retry_period: Duration::from_millis(50),
    }
}

/// A work function that counts how many replicas are working.
fn worker(
    working: Arc<AtomicUsize>,
    started: watch::Sender<bool>,
) -> impl FnMut(watch::Receiver<bool>) -> futures::future::BoxFuture<'static, Result<()>> {
    move |mut stop| {
        let working = working.clone();
        let _ = started.send(true);
        Box::pin(async move {
            working.fetch_add(1, Ordering::SeqCst);
            while !*stop.borrow() {
                if stop.changed().await.is_err() {
                    break;
                }
            }
            working.fetch_sub(1, Ordering::SeqCst);
            Ok(())
        })
    }
}

async fn wait(deadline: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cond()
}

#[tokio::test]
async fn one_leads_the_other_takes_over_after_a_crash() {
    let cluster = MemoryCluster::new();
    let working = Arc::new(AtomicUsize::new(0));
    let (a_started, a_rx) = watch::channel(false);
    let (b_started, b_rx) = watch::channel(false);
    let (_a_shut, a_shut_rx) = watch::channel(false);
    let (b_shut, b_shut_rx) = watch::channel(false);
    let a = tokio::spawn(run_elected(
        cluster.clone(),
        cfg("a"),
        Metrics::new(),
        a_shut_rx,
        worker(working.clone(), a_started),
    ));
    assert!(
        wait(Duration::from_secs(5), || *a_rx.borrow()).await,
        "a never led"
    );
    let b = tokio::spawn(run_elected(
        cluster.clone(),
        cfg("b"),
        Metrics::new(),
        b_shut_rx,
        worker(working.clone(), b_started),
    ));
    // b stays a standby while a renews.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(!*b_rx.borrow(), "b led while a renewed");
    assert_eq!(working.load(Ordering::SeqCst), 1);
    let lease = cluster.lease("switchyard", "ctl").unwrap();
    assert_eq!(lease.spec.unwrap().holder_identity.as_deref(), Some("a"));
    // a crashes (no release): b takes over once the lease expires.
    a.abort();
    let _ = a.await;
    working.store(0, Ordering::SeqCst);
    let crashed = Instant::now();
    assert!(
        wait(Duration::from_secs(5), || *b_rx.borrow()).await,
        "b never took over"
    );
    assert!(
        crashed.elapsed() >= Duration::from_millis(300),
        "took over before expiry"
    );
    let lease = cluster.lease("switchyard", "ctl").unwrap().spec.unwrap();
    assert_eq!(lease.holder_identity.as_deref(), Some("b"));
    assert_eq!(lease.lease_transitions, Some(1));
    // Clean shutdown releases the lease.
    b_shut.send(true).unwrap();
    b.await.unwrap().unwrap();
    let lease = cluster.lease("switchyard", "ctl").unwrap().spec.unwrap();
    assert_eq!(lease.holder_identity, None);
}
