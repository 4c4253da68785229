//! The northbound writer: desired rows per owner in, minimal batched
//! transactions out.
//!
//! The controller publishes each owner's desired rows into a
//! [`DesiredStore`]; the writer takes whatever is dirty (many owners under
//! load, one in steady state), diffs it against the NB replica, commits one
//! transaction, waits until the replica shows it (so the next diff never
//! repeats work), and loops. Replica changes made by anyone else (an
//! operator's `ovn-nbctl`) mark their owners dirty, so damage is repaired by
//! the same path. A failed batch is split in halves until the failing owner
//! is alone; that owner gets an Event and a back-off, the rest proceed.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ovsdb::{Client, Replica};
use switchyard_api::names;
use tokio::sync::{broadcast, watch, Notify};
use tracing::{debug, error, info, info_span, warn, Instrument};

use crate::diff::{self, Plan};
use crate::k8s::{EventRecord, ObjectRef};
use crate::metrics::Metrics;
use crate::nb::{self, ReplicaView};
use crate::outbox::Outbox;
use crate::translate::{Col, DesiredRow, Owner, Table};

#[derive(Default)]
struct Inner {
    rows: HashMap<Owner, Arc<Vec<DesiredRow>>>,
    dirty: BTreeSet<Owner>,
    full: bool,
    /// Bumped on every change; `synced_gen` tells when NB caught up.
    generation: u64,
}

/// Desired NB rows per owner, shared between the controller (writer of
/// intent) and the NB writer.
#[derive(Default)]
pub struct DesiredStore {
    inner: Mutex<Inner>,
    notify: Notify,
}

impl DesiredStore {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets an owner's rows (`None`: it should have none); marks it dirty
    /// only when that changes what it wants.
    pub fn set(&self, owner: Owner, rows: Option<Vec<DesiredRow>>) {
        let mut g = self.lock();
        let changed = match (&rows, g.rows.get(&owner)) {
            (None, None) => false,
            (Some(new), Some(old)) => new != old.as_ref(),
            _ => true,
        };
        if !changed {
            return;
        }
        match rows {
            Some(r) => {
                g.rows.insert(owner.clone(), Arc::new(r));
            }
            None => {
                g.rows.remove(&owner);
            }
        }
        g.dirty.insert(owner);
        g.generation += 1;
        drop(g);
        self.notify.notify_one();
    }

    /// Asks for a full diff of every owner plus removal of orphans.
    pub fn request_full(&self) {
        let mut g = self.lock();
        g.full = true;
        g.generation += 1;
        drop(g);
        self.notify.notify_one();
    }

    fn mark_dirty(&self, owners: impl IntoIterator<Item = Owner>) {
        let mut g = self.lock();
        let before = g.dirty.len();
        g.dirty.extend(owners);
        if g.dirty.len() != before {
            g.generation += 1;
            drop(g);
            self.notify.notify_one();
        }
    }

    pub fn owners(&self) -> usize {
        self.lock().rows.len()
    }

    pub fn dirty(&self) -> usize {
        self.lock().dirty.len()
    }
}

/// Back-off per failing owner.
struct Backoff {
    attempts: u32,
    until: Instant,
}

/// The NB writer task.
pub struct NbWriter {
    pub client: Client,
    pub replica: Replica,
    pub store: Arc<DesiredStore>,
    pub metrics: Metrics,
    /// Where its Events go: the leadership term's requests.
    pub outbox: Outbox,
    pub max_batch: usize,
    pub full_resync_interval: Duration,
}

enum Outcome {
    Done,
    /// A transport problem: retry everything later.
    Transient,
}

impl NbWriter {
    /// Runs until `shutdown` turns true. `synced` is set to true the first
    /// time NB matches the desired state completely.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>, synced: watch::Sender<bool>) {
        let mut updates = self.replica.subscribe();
        let mut backoff: HashMap<Owner, Backoff> = HashMap::new();
        let mut last_full = Instant::now();
        self.store.request_full();
        loop {
            // Gather work: everything dirty and due.
            let now = Instant::now();
            if now.duration_since(last_full) >= self.full_resync_interval {
                self.store.request_full();
            }
            let (batch_owners, full) = self.take_work(&mut backoff, now);
            if full {
                last_full = now;
            }
            self.metrics.nb_queue_depth.set(self.store.dirty() as i64);
            if !batch_owners.is_empty() {
                match self.sync(batch_owners, &mut backoff, full).await {
                    Outcome::Done => {}
                    Outcome::Transient => {
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                            _ = shutdown.changed() => return,
                        }
                    }
                }
                self.drain_updates(&mut updates);
                if !*synced.borrow() && self.store.dirty() == 0 && backoff.is_empty() {
                    let _ = synced.send(true);
                    info!(owners = self.store.owners(), "northbound converged");
                }
                continue;
            }
            if !*synced.borrow() && backoff.is_empty() {
                let _ = synced.send(true);
                info!(owners = self.store.owners(), "northbound converged");
            }
            let next_due = backoff.values().map(|b| b.until).min();
            let sleep = match next_due {
                Some(t) => tokio::time::sleep_until(t.into()),
                None => tokio::time::sleep(self.full_resync_interval),
            };
            tokio::select! {
                _ = self.store.notify.notified() => {}
                r = updates.recv() => self.on_update(r),
                _ = sleep => {}
                _ = shutdown.changed() => return,
            }
            if *shutdown.borrow() {
                return;
            }
        }
    }

    fn drain_updates(&self, updates: &mut broadcast::Receiver<Arc<ovsdb::Update>>) {
        loop {
            match updates.try_recv() {
                Ok(u) => self.on_update(Ok(u)),
                Err(broadcast::error::TryRecvError::Empty) => return,
                Err(broadcast::error::TryRecvError::Lagged(_)) => {
                    self.store.request_full();
                }
                Err(broadcast::error::TryRecvError::Closed) => return,
            }
        }
    }

    /// Marks the owners of changed rows dirty, so anyone else's edit of a
    /// Switchyard row is diffed (and undone) like any other difference.
    fn on_update(&self, r: Result<Arc<ovsdb::Update>, broadcast::error::RecvError>) {
        match r {
            Ok(u) => {
                if u.resync {
                    self.store.request_full();
                    return;
                }
                let owners = u
                    .changes
                    .iter()
                    .filter(|c| Table::from_name(&c.table).is_some())
                    .flat_map(|c| {
                        [c.old.as_ref(), c.new.as_ref()]
                            .into_iter()
                            .flatten()
                            .filter_map(nb::row_owner)
                    });
                // Parents lose children when an operator deletes them; the
                // children's owners are found through their old rows.
                self.store.mark_dirty(owners);
            }
            Err(broadcast::error::RecvError::Lagged(_)) => self.store.request_full(),
            Err(broadcast::error::RecvError::Closed) => {}
        }
    }

    fn take_work(&self, backoff: &mut HashMap<Owner, Backoff>, now: Instant) -> (Vec<Owner>, bool) {
        let mut g = self.store.lock();
        let full = std::mem::take(&mut g.full);
        let mut owners: BTreeSet<Owner> = std::mem::take(&mut g.dirty);
        if full {
            owners.extend(g.rows.keys().cloned());
            let rows = &g.rows;
            let orphans = self
                .replica
                .with(|db| diff::orphans(&ReplicaView(db), &|o| rows.contains_key(o)));
            if !orphans.is_empty() {
                info!(
                    count = orphans.len(),
                    "removing rows of owners that no longer exist"
                );
            }
            owners.extend(orphans);
        }
        // Owners in back-off wait for their time (unless their intent changed).
        let mut out = Vec::with_capacity(owners.len());
        for o in owners {
            match backoff.get(&o) {
                Some(b) if b.until > now => {
                    g.dirty.insert(o);
                }
                _ => out.push(o),
            }
        }
        // The dirty set is sorted Cluster < Node < Pod: parents first.
        (out, full)
    }

    /// Diffs and commits `owners` in batches of at most `max_batch`.
    async fn sync(
        &self,
        owners: Vec<Owner>,
        backoff: &mut HashMap<Owner, Backoff>,
        full: bool,
    ) -> Outcome {
        let mut queue: VecDeque<Vec<Owner>> =
            owners.chunks(self.max_batch).map(|c| c.to_vec()).collect();
        let mut ops_total = 0usize;
        while let Some(batch) = queue.pop_front() {
            let rows: Vec<(Owner, Option<Arc<Vec<DesiredRow>>>)> = {
                let g = self.store.lock();
                batch
                    .iter()
                    .map(|o| (o.clone(), g.rows.get(o).cloned()))
                    .collect()
            };
            let plan: Plan = self.replica.with(|db| {
                diff::diff(
                    &ReplicaView(db),
                    rows.iter()
                        .map(|(o, r)| (o, r.as_ref().map(|r| r.as_slice()))),
                )
            });
            if !plan.deferred.is_empty() {
                debug!(
                    count = plan.deferred.len(),
                    "owners wait for their parent rows"
                );
                for o in &plan.deferred {
                    bump(backoff, o, Duration::from_millis(100));
                }
                self.store.mark_dirty(plan.deferred.iter().cloned());
            }
            if plan.is_empty() {
                for (o, _) in &rows {
                    if !plan.deferred.contains(o) {
                        backoff.remove(o);
                    }
                }
                continue;
            }
            let built = nb::build(&plan);
            let operations = built.operations;
            let span =
                info_span!("nb_transaction", owners = batch.len(), operations, first = %batch[0]);
            let started = Instant::now();
            let result = self
                .client
                .transact(built.tx)
                .instrument(span.clone())
                .await;
            let elapsed = started.elapsed();
            self.metrics
                .nb_transaction_duration
                .observe(elapsed.as_secs_f64());
            match result {
                Ok(results) => {
                    self.metrics.nb_transactions.inc();
                    self.metrics.nb_operations.inc_by(operations as u64);
                    self.metrics.nb_transaction_size.observe(operations as f64);
                    ops_total += operations;
                    let expect = nb::expectations(&built.inserts, &results, built.expect);
                    let wait = self
                        .replica
                        .wait_for(Duration::from_secs(10), |db| nb::reflects(db, &expect))
                        .await;
                    if let Err(e) = wait {
                        warn!(error = %e, "replica did not reflect a committed transaction in time");
                        self.store.mark_dirty(batch.iter().cloned());
                    }
                    for (o, _) in &rows {
                        if !plan.deferred.contains(o) {
                            backoff.remove(o);
                        }
                    }
                    debug!(parent: &span, ms = elapsed.as_secs_f64() * 1e3, "committed");
                }
                Err(ovsdb::Error::Operation { index, op, error }) => {
                    self.metrics.nb_transaction_failures.inc();
                    if batch.len() > 1 {
                        // Find the owner at fault by halving.
                        let mid = batch.len() / 2;
                        queue.push_front(batch[mid..].to_vec());
                        queue.push_front(batch[..mid].to_vec());
                        continue;
                    }
                    let owner = &batch[0];
                    let b = bump(backoff, owner, Duration::from_secs(1));
                    error!(%owner, index, op, error = %error, retry_in_ms = b.as_millis() as u64,
                        "northbound rejected this owner's rows");
                    self.event(
                        owner,
                        rows.first().and_then(|(_, r)| r.clone()),
                        format!("northbound rejected the transaction ({op} #{index}): {error}"),
                    );
                    self.store.mark_dirty([owner.clone()]);
                }
                Err(e) => {
                    self.metrics.nb_transaction_failures.inc();
                    warn!(error = %e, owners = batch.len(), "northbound transaction failed; retrying");
                    self.store.mark_dirty(batch.iter().cloned());
                    for rest in queue {
                        self.store.mark_dirty(rest);
                    }
                    return Outcome::Transient;
                }
            }
        }
        if full || ops_total > 0 {
            debug!(ops_total, full, "sync round done");
        }
        Outcome::Done
    }

    fn event(&self, owner: &Owner, rows: Option<Arc<Vec<DesiredRow>>>, note: String) {
        let regarding = match owner {
            Owner::Cluster => return,
            Owner::Node(n) => ObjectRef::node(n, ""),
            Owner::Pod(key) => {
                let (ns, name) = key.split_once('/').unwrap_or(("", key));
                let uid = rows
                    .as_ref()
                    .and_then(|r| r.first())
                    .and_then(|r| match r.col("external_ids") {
                        Some(Col::Map(m)) => m.get(names::POD_UID).cloned(),
                        _ => None,
                    })
                    .unwrap_or_default();
                ObjectRef::pod(ns, name, &uid)
            }
        };
        self.outbox.event(EventRecord {
            regarding,
            type_: "Warning".into(),
            reason: "NorthboundWriteFailed".into(),
            action: "Reconcile".into(),
            note,
        });
    }
}

/// Records one more failure and returns the delay until the next attempt.
fn bump(backoff: &mut HashMap<Owner, Backoff>, owner: &Owner, base: Duration) -> Duration {
    let b = backoff.entry(owner.clone()).or_insert(Backoff {
        attempts: 0,
        until: Instant::now(),
    });
    b.attempts += 1;
    let delay = (base * 2u32.saturating_pow(b.attempts.min(6) - 1)).min(Duration::from_secs(60));
    b.until = Instant::now() + delay;
    delay
}
