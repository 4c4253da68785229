//! The engine loop: watch events into the model, the allocator's
//! decisions, the translators' rows for every owner a change touches, and
//! annotation patches, all on one task.
//!
//! Each round drains whatever events are ready (a burst becomes one round),
//! lets the allocator decide, asks each translator's mapper which owners
//! the round's changes touch, translates those owners once, and hands their
//! rows to the [`store`] as commit groups: the owners one change touched
//! are written in one transaction. The [`writer`] task diffs and commits;
//! the engine never waits on it, so an annotation is never delayed by a
//! large NB transaction.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{BoxStream, SelectAll};
use futures::{FutureExt, StreamExt};
use tokio::sync::{mpsc, watch};
use tracing::{debug, error, info, warn};

use crate::admin_status::AdminStatus;
use crate::alloc::{Allocator, Recovery, Round};
use crate::annotate::{Annotator, Next, PatchDone};
use crate::config::Config;
use crate::error::Result;
use crate::k8s::{Cluster, EventRecord, Kind, Observed, WatchEvent};
use crate::lb_ips::LbIps;
use crate::metrics::Metrics;
use crate::model::{Change, Model};
use crate::nb::{DesiredRow, Owner};
use crate::outbox::Outbox;
use crate::translate::{self, Problem, Translator, View};
use switchyard_api::names;

pub mod store;
pub mod writer;

pub use store::DesiredStore;
pub use writer::NbWriter;

type Watch = BoxStream<'static, (Kind, Option<WatchEvent<Observed>>)>;

/// A kind's watch, ending with `(kind, None)` so the engine can watch
/// again.
fn watch(cluster: &Arc<dyn Cluster>, kind: Kind) -> Watch {
    cluster
        .watch(kind)
        .map(move |ev| (kind, Some(ev)))
        .chain(futures::stream::once(async move { (kind, None) }))
        .boxed()
}

/// How often a kind the API server does not serve (an optional CRD) is
/// looked for again: rarely, so its absence is no error loop.
const UNSERVED_RECHECK: Duration = Duration::from_secs(300);

/// Watches `kind` again: at once, or later for a kind not served.
fn rewatch(model: &Model, cluster: &Arc<dyn Cluster>, kind: Kind) -> Watch {
    if !model.is_unavailable(kind) {
        warn!(%kind, "watch ended; watching again");
        return watch(cluster, kind);
    }
    let cluster = cluster.clone();
    futures::stream::once(tokio::time::sleep(UNSERVED_RECHECK))
        .flat_map(move |_| watch(&cluster, kind))
        .boxed()
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Work {
    Node(String),
    Pod(String),
}

/// Everything the engine's task owns.
struct Engine {
    config: Config,
    metrics: Metrics,
    model: Model,
    alloc: Allocator,
    /// LoadBalancer IPs from the configured pool.
    lb_ips: LbIps,
    /// Admin policies' `Ready` conditions.
    admin_status: AdminStatus,
    annotator: Annotator,
    outbox: Outbox,
    store: Arc<DesiredStore>,
    retries: BinaryHeap<Reverse<(Instant, Work)>>,
    attempts: HashMap<Work, u32>,
    /// Last Event per object, so retries do not flood the API server.
    last_event: HashMap<String, String>,
    last_gauges: Instant,
}

impl Engine {
    fn view(&self) -> View<'_> {
        View {
            model: &self.model,
            decisions: &self.alloc.decisions,
            config: &self.config,
        }
    }

    /// One round: the changes of the events applied, decided, translated.
    fn round(&mut self, mut changes: Vec<Change>) {
        self.lb_ips.observe(&changes);
        for p in self.lb_ips.process(&self.model, &self.outbox) {
            self.report(p, "AssignLoadBalancerIP");
        }
        let mut round = Round::default();
        for c in &changes {
            self.alloc.observe(&self.model, c, &mut round);
            if let Change::Pod { key, new: None, .. } = c {
                self.annotator.forget(Kind::Pod, key);
            }
            if let Change::Node {
                name, new: None, ..
            } = c
            {
                self.annotator.forget(Kind::Node, name);
            }
        }
        self.alloc.process(&self.model, &mut round);
        changes.append(&mut round.changes);
        self.finish(round, changes);
    }

    /// Translates what `changes` touch, sends the allocator's wants, and
    /// reports its problems.
    fn finish(&mut self, round: Round, changes: Vec<Change>) {
        let groups = self.groups(&changes);
        self.publish(groups);
        // An admin policy whose spec did not change has no rows to
        // translate, but its condition may have been changed by others.
        for c in &changes {
            let (kind, name) = match c {
                Change::AdminNetworkPolicy { name, .. } => (Kind::AdminNetworkPolicy, name),
                Change::BaselineAdminNetworkPolicy { name, .. } => {
                    (Kind::BaselineAdminNetworkPolicy, name)
                }
                _ => continue,
            };
            let view = View {
                model: &self.model,
                decisions: &self.alloc.decisions,
                config: &self.config,
            };
            self.admin_status.ensure(kind, name, &view, &self.outbox);
        }
        for w in round.wants {
            let (rv, current) = match w.target.kind {
                Kind::Node => self.model.nodes.get(&w.key).map(|n| {
                    (
                        n.resource_version.clone(),
                        n.annotation(w.annotation).map(str::to_string),
                    )
                }),
                _ => self.model.pod(&w.key).map(|p| {
                    (
                        p.resource_version.clone(),
                        p.annotation(w.annotation).map(str::to_string),
                    )
                }),
            }
            .unwrap_or_default();
            self.annotator.ensure(
                w.target,
                &w.key,
                rv.as_deref(),
                current.as_deref(),
                w.annotation,
                w.value,
            );
        }
        for (p, transient) in round.problems {
            let work = match p.object.kind {
                Kind::Node => Work::Node(p.object.name.clone()),
                _ => Work::Pod(format!(
                    "{}/{}",
                    p.object.namespace.as_deref().unwrap_or_default(),
                    p.object.name
                )),
            };
            self.report(p, "Allocate");
            if transient {
                self.schedule_retry(work);
            }
        }
        if self.last_gauges.elapsed() >= Duration::from_millis(100) {
            self.update_gauges();
        }
    }

    /// The owners each change touches, merged where they share an owner.
    fn groups(&self, changes: &[Change]) -> Vec<Vec<Owner>> {
        let view = self.view();
        let mut groups: Vec<BTreeSet<Owner>> = Vec::new();
        let mut keys = Vec::new();
        for c in changes {
            let mut g = BTreeSet::new();
            for t in translate::registry() {
                keys.clear();
                t.owners(c, &view, &mut keys);
                g.extend(keys.drain(..).map(|k| Owner::of(t.kind(), k)));
            }
            if !g.is_empty() {
                groups.push(g);
            }
        }
        merge(groups)
    }

    /// Translates and stores the owners of `groups`.
    fn publish(&mut self, groups: Vec<Vec<Owner>>) {
        let mut problems = Vec::new();
        let mut admin = Vec::new();
        {
            let view = self.view();
            for g in groups {
                admin.extend(g.iter().filter_map(|o| match o.kind() {
                    names::KIND_ADMIN_NETWORK_POLICY => {
                        Some((Kind::AdminNetworkPolicy, o.key().to_string()))
                    }
                    names::KIND_BASELINE_ADMIN_NETWORK_POLICY => {
                        Some((Kind::BaselineAdminNetworkPolicy, o.key().to_string()))
                    }
                    _ => None,
                }));
                let rows: Vec<(Owner, Option<Vec<DesiredRow>>)> = g
                    .into_iter()
                    .map(|o| {
                        let rows = translator(o.kind())
                            .and_then(|t| t.rows(o.key(), &view, &mut problems));
                        (o, rows)
                    })
                    .collect();
                self.store.set_group(rows);
            }
        }
        for p in problems {
            self.report(p, "Translate");
        }
        let view = View {
            model: &self.model,
            decisions: &self.alloc.decisions,
            config: &self.config,
        };
        for (kind, name) in admin {
            self.admin_status.ensure(kind, &name, &view, &self.outbox);
        }
    }

    /// Every owner of every translator, as one group: the start-up state.
    fn publish_all(&mut self) {
        let view = self.view();
        let all: BTreeSet<Owner> = translate::registry()
            .iter()
            .flat_map(|t| t.all(&view).into_iter().map(|k| Owner::of(t.kind(), k)))
            .collect();
        self.publish(vec![all.into_iter().collect()]);
    }

    fn on_patch_done(&mut self, d: PatchDone) {
        let (uid, rv) = match d.target.kind {
            Kind::Node => self
                .model
                .nodes
                .get(&d.key)
                .map(|n| (Some(n.uid.clone()), n.resource_version.clone())),
            _ => self
                .model
                .pod(&d.key)
                .map(|p| (Some(p.uid.clone()), p.resource_version.clone())),
        }
        .unwrap_or_default();
        let work = match d.target.kind {
            Kind::Node => Work::Node(d.key.clone()),
            _ => Work::Pod(d.key.clone()),
        };
        match self.annotator.done(&d, uid.as_deref(), rv.as_deref()) {
            Next::Nothing => {
                if d.result.is_ok() {
                    self.attempts.remove(&work);
                    if d.target.kind == Kind::Pod {
                        if let Some(t) = self.alloc.first_seen(&d.key) {
                            self.metrics
                                .pod_annotation_latency
                                .observe(t.elapsed().as_secs_f64());
                        }
                    }
                }
            }
            Next::Again => self.again(work),
            Next::Retry => self.schedule_retry(work),
            Next::Report(note) => self.report(
                Problem {
                    object: d.target.clone(),
                    reason: "AnnotationRejected",
                    note,
                },
                "Annotate",
            ),
        }
    }

    fn again(&mut self, work: Work) {
        match work {
            Work::Node(n) => self.alloc.again_node(&n),
            Work::Pod(k) => self.alloc.again_pod(&k),
        }
    }

    fn schedule_retry(&mut self, work: Work) {
        let n = self.attempts.entry(work.clone()).or_insert(0);
        *n += 1;
        let delay = (Duration::from_millis(250) * 2u32.saturating_pow((*n).min(8) - 1))
            .min(Duration::from_secs(30));
        self.retries.push(Reverse((Instant::now() + delay, work)));
    }

    fn run_due_retries(&mut self) {
        let now = Instant::now();
        while let Some(Reverse((t, _))) = self.retries.peek() {
            if *t > now {
                break;
            }
            let Some(Reverse((_, work))) = self.retries.pop() else {
                break;
            };
            self.again(work);
        }
    }

    fn next_retry(&self) -> Option<Instant> {
        self.retries.peek().map(|Reverse((t, _))| *t)
    }

    /// Logs a problem on its object and emits a Warning Event, once per
    /// distinct message.
    fn report(&mut self, p: Problem, action: &str) {
        let key = p.object.to_string();
        error!(object = %key, reason = p.reason, "{}", p.note);
        let sig = format!("{}: {}", p.reason, p.note);
        if self.last_event.get(&key) == Some(&sig) {
            return;
        }
        self.last_event.insert(key, sig);
        self.outbox.event(EventRecord {
            regarding: p.object,
            type_: "Warning".into(),
            reason: p.reason.into(),
            action: action.into(),
            note: p.note,
        });
    }

    fn update_gauges(&mut self) {
        self.last_gauges = Instant::now();
        let usage = self.alloc.usage();
        let (used, cap) = usage.addresses;
        let subnets = usage.subnets;
        self.metrics.pod_addresses_used.set(used as i64);
        self.metrics.pod_addresses_capacity.set(cap as i64);
        for (cidr, u, c) in subnets {
            let l = vec![("cidr".to_string(), cidr.to_string())];
            self.metrics
                .node_subnets_used
                .get_or_create(&l)
                .set(u as i64);
            self.metrics
                .node_subnets_capacity
                .get_or_create(&l)
                .set(c as i64);
        }
        let waiting = self.alloc.waiting(&self.model) + self.annotator.inflight();
        self.metrics.pod_queue_depth.set(waiting as i64);
    }
}

/// The translator of an owner kind.
fn translator(kind: &str) -> Option<&'static dyn Translator> {
    translate::registry()
        .iter()
        .copied()
        .find(|t| t.kind() == kind)
}

/// Merges groups that share an owner.
fn merge(groups: Vec<BTreeSet<Owner>>) -> Vec<Vec<Owner>> {
    let mut index: HashMap<Owner, usize> = HashMap::new();
    let mut parent: Vec<usize> = (0..groups.len()).collect();
    fn find(p: &mut [usize], mut i: usize) -> usize {
        while p[i] != i {
            p[i] = p[p[i]];
            i = p[i];
        }
        i
    }
    for (i, g) in groups.iter().enumerate() {
        for o in g {
            match index.get(o) {
                Some(&j) => {
                    let (a, b) = (find(&mut parent, i), find(&mut parent, j));
                    parent[a] = b;
                }
                None => {
                    index.insert(o.clone(), i);
                }
            }
        }
    }
    let mut merged: BTreeMap<usize, BTreeSet<Owner>> = BTreeMap::new();
    for (i, g) in groups.into_iter().enumerate() {
        let r = find(&mut parent, i);
        merged.entry(r).or_default().extend(g);
    }
    merged
        .into_values()
        .map(|g| g.into_iter().collect())
        .collect()
}

/// Runs the controller as leader until `stop` turns true.
pub(crate) async fn lead(
    config: Config,
    cluster: Arc<dyn Cluster>,
    metrics: Metrics,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    let started = Instant::now();
    // NB's initial state and the API's lists arrive at once: neither
    // waits for the other (each is a few hundred milliseconds at 10,000
    // pods).
    let mut nb = {
        let config = config.clone();
        AbortOnDrop(tokio::spawn(async move {
            let client = crate::nb::connect(&config).await?;
            let replica = crate::nb::monitor(&client).await?;
            Ok::<_, crate::Error>((client, replica))
        }))
    };
    let store = Arc::new(DesiredStore::default());
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let outbox = Outbox::new(cluster.clone(), metrics.clone(), config.patch_concurrency);
    let mut e = Engine {
        alloc: Allocator::new(config.clone()),
        lb_ips: LbIps::new(config.load_balancer_pool.clone()),
        admin_status: AdminStatus::default(),
        annotator: Annotator::new(outbox.clone(), done_tx),
        outbox: outbox.clone(),
        config: config.clone(),
        metrics: metrics.clone(),
        model: Model::new(),
        store: store.clone(),
        retries: BinaryHeap::new(),
        attempts: HashMap::new(),
        last_event: HashMap::new(),
        last_gauges: Instant::now(),
    };
    let kinds = translate::watched_kinds();
    let mut watches: SelectAll<Watch> = SelectAll::new();
    for k in &kinds {
        watches.push(watch(&cluster, *k));
    }

    // The initial lists, before anything is decided.
    let mut changes = Vec::new();
    while !e.model.listed(&kinds) {
        tokio::select! {
            ev = watches.next() => match ev {
                Some((kind, Some(ev))) => on_event(&mut e.model, kind, ev, &mut changes),
                Some((kind, None)) => watches.push(rewatch(&e.model, &cluster, kind)),
                None => {}
            },
            _ = stop.changed() => return Ok(()),
        }
    }
    debug!(
        ms = started.elapsed().as_millis() as u64,
        "listed every kind"
    );
    let (client, replica) = tokio::select! {
        r = &mut nb.0 => r.map_err(|e| crate::Error::Config(format!("northbound connection task: {e}")))??,
        _ = stop.changed() => return Ok(()),
    };
    info!(remote = %config.nb_remote, ms = started.elapsed().as_millis() as u64, "connected to northbound");
    let recovery = replica.with(Recovery::from_replica);
    let round = e.alloc.rebuild(&e.model, recovery);
    debug!(
        ms = started.elapsed().as_millis() as u64,
        "allocations rebuilt"
    );
    e.lb_ips.start(&e.model);
    e.publish_all();
    e.finish(round, Vec::new());
    debug!(
        ms = started.elapsed().as_millis() as u64,
        "every owner translated"
    );

    let (synced_tx, mut synced_rx) = watch::channel(false);
    let writer = NbWriter {
        client,
        replica,
        store,
        metrics: metrics.clone(),
        outbox: outbox.clone(),
        max_batch: config.max_batch_owners,
        full_resync_interval: config.full_resync_interval,
        own: Default::default(),
    };
    let writer_task = tokio::spawn(writer.run(stop.clone(), synced_tx));
    metrics.health.set_alive(true);
    // Gauges are refreshed at most every 100 ms while busy; this tick
    // catches the last change of a burst.
    let mut gauge_tick = tokio::time::interval(Duration::from_millis(500));
    gauge_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    loop {
        let retry_at = e.next_retry();
        let retry_sleep = async move {
            match retry_at {
                Some(t) => tokio::time::sleep_until(t.into()).await,
                None => futures::future::pending().await,
            }
        };
        let mut changes = Vec::new();
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            r = synced_rx.changed() => {
                if r.is_ok() && *synced_rx.borrow() {
                    metrics.health.set_synced(true);
                }
            }
            Some(d) = done_rx.recv() => e.on_patch_done(d),
            ev = watches.next() => match ev {
                Some((kind, Some(ev))) => on_event(&mut e.model, kind, ev, &mut changes),
                Some((kind, None)) => watches.push(rewatch(&e.model, &cluster, kind)),
                None => {}
            },
            _ = retry_sleep => e.run_due_retries(),
            _ = gauge_tick.tick() => e.update_gauges(),
        }
        // Take whatever else is ready, so a burst is processed as one round.
        for _ in 0..10_000 {
            let mut progressed = false;
            match watches.next().now_or_never() {
                Some(Some((kind, Some(ev)))) => {
                    on_event(&mut e.model, kind, ev, &mut changes);
                    progressed = true;
                }
                Some(Some((kind, None))) => watches.push(rewatch(&e.model, &cluster, kind)),
                _ => {}
            }
            while let Ok(d) = done_rx.try_recv() {
                e.on_patch_done(d);
                progressed = true;
            }
            if !progressed {
                break;
            }
        }
        e.run_due_retries();
        e.round(changes);
    }
    metrics.health.set_synced(false);
    // Nothing decided in this term may reach the API server after it.
    outbox.close().await;
    let _ = writer_task.await;
    Ok(())
}

fn on_event(model: &mut Model, kind: Kind, ev: WatchEvent<Observed>, changes: &mut Vec<Change>) {
    if let WatchEvent::Unavailable(why) = &ev {
        if !model.is_unavailable(kind) {
            info!(%kind, reason = %why, "the API server does not serve this kind; running without it");
        }
    }
    model.apply(kind, ev, changes);
}

#[cfg(test)]
mod merge_tests {
    use super::*;

    #[test]
    fn groups_sharing_an_owner_merge() {
        let o = |k: &'static str, key: &str| Owner::of(k, key);
        let groups = vec![
            BTreeSet::from([o("Pod", "a/p1"), o("Namespace", "a")]),
            BTreeSet::from([o("Pod", "b/p9")]),
            BTreeSet::from([o("Pod", "a/p2"), o("Namespace", "a")]),
        ];
        let merged = merge(groups);
        assert_eq!(merged.len(), 2);
        assert!(merged.iter().any(|g| g.len() == 3));
    }
}
#[cfg(test)]
mod tests;

/// A spawned task that ends with the term that started it: a term that
/// returns early (stopped, or an API list failed) must not leave a
/// northbound connection behind.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
