//! The NB writer: diffs dirty owners against the replica and commits the
//! difference in batched transactions.
//!
//! Batches hold whole commit groups (see [`super::store`]) and at most
//! `max_batch` owners otherwise. When NB refuses a transaction, the owner
//! at fault is found (by halving the batch's groups, and inside a group by
//! probing halves in transactions that end with `abort`, so a group is
//! never committed in parts), given an Event and a back-off, and the rest
//! is committed without it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ovsdb::{Client, Replica, Uuid};
use switchyard_api::names;
use tokio::sync::{broadcast, watch};
use tracing::{debug, error, info, info_span, warn, Instrument};

use crate::k8s::{EventRecord, Kind, ObjectRef};
use crate::metrics::Metrics;
use crate::nb::build::{self, Built};
use crate::nb::diff::{self, Plan};
use crate::nb::view::{owner_of, ReplicaView};
use crate::nb::{Col, DesiredRow, Owner, Table};
use crate::outbox::Outbox;

use super::store::DesiredStore;

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
    /// The rows the writer's own commits touched and that the update
    /// stream has not shown yet: each commit comes back as one update,
    /// which needs no diff (re-diffing 10,000 owners after a rebuild cost
    /// more than the rebuild's own diff).
    pub own: std::sync::Mutex<Vec<HashSet<(Table, Uuid)>>>,
}

enum Outcome {
    Done,
    /// A transport problem: retry everything later.
    Transient,
}

type Rows = Vec<(Owner, Option<Arc<Vec<DesiredRow>>>)>;

impl NbWriter {
    /// Runs until `shutdown` turns true. `synced` is set to true the first
    /// time NB matches the desired state completely.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>, synced: watch::Sender<bool>) {
        let mut updates = self.replica.subscribe();
        let mut backoff: HashMap<Owner, Backoff> = HashMap::new();
        let mut last_full = Instant::now();
        self.store.request_full();
        loop {
            let now = Instant::now();
            if now.duration_since(last_full) >= self.full_resync_interval {
                self.store.request_full();
            }
            let (groups, full) = self.take_work(&mut backoff, now);
            if full {
                last_full = now;
            }
            self.metrics.nb_queue_depth.set(self.store.dirty() as i64);
            if !groups.is_empty() {
                if let Outcome::Transient = self.sync(groups, &mut backoff, full).await {
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                        _ = shutdown.changed() => return,
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
                Err(broadcast::error::TryRecvError::Lagged(_)) => self.store.request_full(),
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
                if self.is_own(&u) {
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
                            .filter_map(owner_of)
                    });
                // Parents lose children when an operator deletes them; the
                // children's owners are found through their old rows.
                self.store.mark_dirty(owners);
            }
            Err(broadcast::error::RecvError::Lagged(_)) => self.store.request_full(),
            Err(broadcast::error::RecvError::Closed) => {}
        }
    }

    /// Whether `u` is one of the writer's own commits coming back (every
    /// row it changes is one a pending commit touched); each is recognised
    /// once.
    fn is_own(&self, u: &ovsdb::Update) -> bool {
        let mut own = self.own.lock().unwrap_or_else(|p| p.into_inner());
        let found = own.iter().position(|touched| {
            !u.changes.is_empty()
                && u.changes.iter().all(|c| {
                    Table::from_name(&c.table).is_some_and(|t| touched.contains(&(t, c.uuid)))
                })
        });
        match found {
            Some(i) => {
                own.remove(i);
                true
            }
            None => false,
        }
    }

    fn take_work(
        &self,
        backoff: &mut HashMap<Owner, Backoff>,
        now: Instant,
    ) -> (Vec<Vec<Owner>>, bool) {
        let mut g = self.store.lock();
        let full = std::mem::take(&mut g.full);
        if full {
            let all: Vec<Owner> = g.rows.keys().cloned().collect();
            g.dirty.extend(all);
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
            g.dirty.extend(orphans);
        }
        let mut out = Vec::new();
        let mut waiting = Vec::new();
        for group in g.take_groups() {
            // A group waits while any of its owners is backing off.
            if group
                .iter()
                .any(|o| backoff.get(o).is_some_and(|b| b.until > now))
            {
                waiting.push(group);
            } else {
                out.push(group);
            }
        }
        drop(g);
        for group in waiting {
            self.store.mark_group_dirty(&group);
        }
        (out, full)
    }

    fn rows_of(&self, owners: &[Owner]) -> Rows {
        let g = self.store.lock();
        owners
            .iter()
            .map(|o| (o.clone(), g.rows.get(o).cloned()))
            .collect()
    }

    fn plan(&self, rows: &Rows) -> Plan {
        let owners: Vec<(&Owner, Option<&[DesiredRow]>)> = rows
            .iter()
            .map(|(o, r)| (o, r.as_ref().map(|r| r.as_slice())))
            .collect();
        self.replica
            .with(|db| diff::diff(&ReplicaView(db), &owners))
    }

    /// Diffs and commits `groups`, packed into batches.
    async fn sync(
        &self,
        groups: Vec<Vec<Owner>>,
        backoff: &mut HashMap<Owner, Backoff>,
        full: bool,
    ) -> Outcome {
        let mut queue: VecDeque<Vec<Vec<Owner>>> = VecDeque::new();
        let mut batch: Vec<Vec<Owner>> = Vec::new();
        let mut size = 0;
        for group in groups {
            if size > 0 && size + group.len() > self.max_batch {
                queue.push_back(std::mem::take(&mut batch));
                size = 0;
            }
            size += group.len();
            batch.push(group);
        }
        if !batch.is_empty() {
            queue.push_back(batch);
        }
        let mut ops_total = 0usize;
        while let Some(batch) = queue.pop_front() {
            let owners: Vec<Owner> = batch.iter().flatten().cloned().collect();
            let rows = self.rows_of(&owners);
            let t = Instant::now();
            let plan = self.plan(&rows);
            debug!(
                owners = owners.len(),
                ops = plan.ops.len(),
                ms = t.elapsed().as_millis() as u64,
                "diffed"
            );
            if !plan.deferred.is_empty() {
                debug!(
                    count = plan.deferred.len(),
                    "owners wait for rows they need"
                );
                for o in &plan.deferred {
                    bump(backoff, o, Duration::from_millis(100));
                }
                self.store.mark_dirty(plan.deferred.iter().cloned());
            }
            let settle = |backoff: &mut HashMap<Owner, Backoff>| {
                for o in &owners {
                    if !plan.deferred.contains(o) {
                        backoff.remove(o);
                    }
                }
            };
            if plan.is_empty() {
                settle(backoff);
                continue;
            }
            let t = Instant::now();
            let built = build::build(&plan);
            debug!(ms = t.elapsed().as_millis() as u64, "built");
            let operations = built.operations;
            let span =
                info_span!("nb_transaction", owners = owners.len(), operations, first = %owners[0]);
            match self.commit(built, &span).await {
                Ok(()) => {
                    ops_total += operations;
                    settle(backoff);
                }
                Err(ovsdb::Error::Operation { index, op, error }) => {
                    self.metrics.nb_transaction_failures.inc();
                    if batch.len() > 1 {
                        // Find the group at fault by halving.
                        let mid = batch.len() / 2;
                        queue.push_front(batch[mid..].to_vec());
                        queue.push_front(batch[..mid].to_vec());
                        continue;
                    }
                    let culprit = match owners.len() {
                        1 => owners[0].clone(),
                        _ => self
                            .probe(&owners)
                            .await
                            .unwrap_or_else(|| owners[0].clone()),
                    };
                    let b = bump(backoff, &culprit, Duration::from_secs(1));
                    error!(owner = %culprit, index, op, error = %error, retry_in_ms = b.as_millis() as u64,
                        "northbound rejected this owner's rows");
                    let culprit_rows = rows
                        .iter()
                        .find(|(o, _)| *o == culprit)
                        .and_then(|(_, r)| r.clone());
                    self.event(
                        &culprit,
                        culprit_rows,
                        format!("northbound rejected the transaction ({op} #{index}): {error}"),
                    );
                    self.store.mark_dirty([culprit.clone()]);
                    let rest: Vec<Owner> = owners.into_iter().filter(|o| *o != culprit).collect();
                    if !rest.is_empty() {
                        queue.push_front(vec![rest]);
                    }
                }
                Err(e) => {
                    self.metrics.nb_transaction_failures.inc();
                    warn!(error = %e, owners = owners.len(), "northbound transaction failed; retrying");
                    self.store.mark_group_dirty(&owners);
                    for rest in queue {
                        for group in rest {
                            self.store.mark_group_dirty(&group);
                        }
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

    async fn commit(&self, built: Built, span: &tracing::Span) -> Result<(), ovsdb::Error> {
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
        let results = result?;
        let mut touched: HashSet<(Table, Uuid)> = built.touched;
        for (idx, table) in &built.inserts {
            if let Some(u) = results.get(*idx).and_then(ovsdb::OpResult::uuid) {
                touched.insert((*table, u));
            }
        }
        {
            let mut own = self.own.lock().unwrap_or_else(|p| p.into_inner());
            // Only the latest few can still be in flight on the stream.
            if own.len() >= 8 {
                own.remove(0);
            }
            own.push(touched);
        }
        self.metrics.nb_transactions.inc();
        self.metrics.nb_operations.inc_by(built.operations as u64);
        self.metrics
            .nb_transaction_size
            .observe(built.operations as f64);
        let expect = build::expectations(&built.inserts, &results, built.expect);
        let wait = self
            .replica
            .wait_for(Duration::from_secs(10), |db| build::reflects(db, &expect))
            .await;
        if let Err(e) = wait {
            warn!(error = %e, "replica did not reflect a committed transaction in time");
            self.store.request_full();
        }
        debug!(parent: span, ms = elapsed.as_secs_f64() * 1e3, "committed");
        Ok(())
    }

    /// Finds the owner of a commit group whose rows NB refuses, without
    /// committing any part of the group: each half is sent in a
    /// transaction that ends with `abort`.
    async fn probe(&self, owners: &[Owner]) -> Option<Owner> {
        let mut suspects = owners.to_vec();
        while suspects.len() > 1 {
            let mid = suspects.len() / 2;
            let first = suspects[..mid].to_vec();
            suspects = if self.fails(&first).await {
                first
            } else {
                suspects[mid..].to_vec()
            };
        }
        suspects.pop()
    }

    async fn fails(&self, owners: &[Owner]) -> bool {
        let plan = self.plan(&self.rows_of(owners));
        if plan.is_empty() {
            return false;
        }
        let mut built = build::build(&plan);
        built.tx.abort();
        match self.client.transact(built.tx).await {
            Err(ovsdb::Error::Operation { op, .. }) => op != "abort",
            _ => false,
        }
    }

    fn event(&self, owner: &Owner, rows: Option<Arc<Vec<DesiredRow>>>, note: String) {
        let uid = rows
            .as_ref()
            .and_then(|r| r.first())
            .and_then(|r| match r.get("external_ids") {
                Some(Col::Map(m)) => m.get(names::POD_UID).cloned(),
                _ => None,
            })
            .unwrap_or_default();
        let Some(regarding) = object_of(owner, &uid) else {
            return;
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

/// The Kubernetes object an owner stands for, if any.
pub fn object_of(owner: &Owner, uid: &str) -> Option<ObjectRef> {
    let kind = Kind::ALL.into_iter().find(|k| k.name() == owner.kind())?;
    let (ns, name) = match owner.key().split_once('/') {
        Some((ns, name)) if kind.namespaced() => (Some(ns), name),
        _ => (None, owner.key()),
    };
    Some(ObjectRef::new(kind, ns, name, uid))
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
