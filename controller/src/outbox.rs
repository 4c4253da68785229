//! Every request the controller sends to the API server while it leads.
//!
//! Decisions are made on the leader's view; the requests that carry them
//! run concurrently (at most `patch_concurrency` at once) so a slow API
//! server never stalls the controller. They must also end with the
//! leadership that decided them: a replica that stepped down (or a
//! controller being stopped) that kept sending queued patches would write
//! addresses allocated from a view the new leader never saw, and two pods
//! would end up with the same address. This was the wave-1 P0: queued
//! patch tasks outlived the leader and landed after its successor had
//! allocated. So the outbox owns every request task, and [`Outbox::close`]
//! aborts them all, queued or waiting for a permit, before the leader's
//! work returns; the lease's renew deadline then bounds the one request
//! that may already be on the wire.
//!
//! Events are best effort but never silently lost: one is counted only
//! when the server accepted it, a transient failure is retried a few
//! times, and a failure is logged once per reason and object.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::{debug, warn};

use crate::k8s::{Cluster, EventRecord, KubeError};
use crate::metrics::Metrics;

struct Inner {
    tasks: JoinSet<()>,
    closed: bool,
    /// (reason, object) of Events whose failure was logged already.
    logged: HashSet<(String, String)>,
}

/// The requests of one leadership term.
#[derive(Clone)]
pub struct Outbox {
    inner: Arc<Mutex<Inner>>,
    permits: Arc<Semaphore>,
    cluster: Arc<dyn Cluster>,
    metrics: Metrics,
}

/// Attempts for an Event the server could not take for a transient reason.
const EVENT_ATTEMPTS: u32 = 3;

impl Outbox {
    pub fn new(cluster: Arc<dyn Cluster>, metrics: Metrics, concurrency: usize) -> Outbox {
        Outbox {
            inner: Arc::new(Mutex::new(Inner {
                tasks: JoinSet::new(),
                closed: false,
                logged: HashSet::new(),
            })),
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            cluster,
            metrics,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn cluster(&self) -> &Arc<dyn Cluster> {
        &self.cluster
    }

    /// Runs `request` when a permit is free, unless the outbox is closed
    /// first; `done` gets its result (never called once closed).
    pub fn send<T, F, D>(&self, request: F, done: D)
    where
        T: Send + 'static,
        F: Future<Output = T> + Send + 'static,
        D: FnOnce(T) + Send + 'static,
    {
        let permits = self.permits.clone();
        let mut g = self.lock();
        if g.closed {
            return;
        }
        // Finished tasks are reaped here, so the set holds only live ones.
        while g.tasks.try_join_next().is_some() {}
        g.tasks.spawn(async move {
            let Ok(_permit) = permits.acquire_owned().await else {
                return;
            };
            done(request.await);
        });
    }

    /// Emits `event` (see the module doc).
    pub fn event(&self, event: EventRecord) {
        let this = self.clone();
        let mut g = self.lock();
        if g.closed {
            return;
        }
        while g.tasks.try_join_next().is_some() {}
        g.tasks.spawn(async move {
            let mut delay = Duration::from_millis(200);
            for attempt in 1..=EVENT_ATTEMPTS {
                match this.cluster.emit_event(event.clone()).await {
                    Ok(()) => {
                        this.metrics.events.inc();
                        return;
                    }
                    Err(e) if e.is_transient() && attempt < EVENT_ATTEMPTS => {
                        debug!(error = %e, attempt, "Event not accepted yet; retrying");
                        tokio::time::sleep(delay).await;
                        delay *= 2;
                    }
                    Err(e) => {
                        this.event_failed(&event, &e);
                        return;
                    }
                }
            }
        });
    }

    fn event_failed(&self, event: &EventRecord, e: &KubeError) {
        self.metrics.event_failures.inc();
        let first = self
            .lock()
            .logged
            .insert((event.reason.clone(), event.regarding.to_string()));
        if first {
            warn!(object = %event.regarding, reason = %event.reason, error = %e, note = %event.note,
                "the API server did not accept an Event; further failures of this one are counted, not logged");
        }
    }

    /// Requests in flight or queued.
    pub fn pending(&self) -> usize {
        self.lock().tasks.len()
    }

    /// Aborts every request not yet answered and refuses new ones; returns
    /// once all of them have stopped.
    pub async fn close(&self) {
        let mut tasks = {
            let mut g = self.lock();
            g.closed = true;
            std::mem::take(&mut g.tasks)
        };
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
}
