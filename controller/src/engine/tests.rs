//! The engine without a database or an API server: model events in,
//! rounds run, commit groups written to an in-memory NB that applies
//! operations as ovsdb-server does. A property test drives random
//! sequences of changes and checks that NB converges to exactly what the
//! translators want, and that a second pass writes nothing.

use std::collections::BTreeMap;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, PodSpec};
use proptest::prelude::*;

use super::*;
use crate::k8s::{KubeError, ObjectRef, Written};
use crate::nb::diff::{diff, orphans, values_equal};
use crate::nb::view::{MapView, NbView};
use crate::nb::RowId;

/// An API server that accepts every write (annotations are not under test
/// here).
struct Accepting;
impl Cluster for Accepting {
    fn watch(&self, _: Kind) -> BoxStream<'static, WatchEvent<Observed>> {
        futures::stream::empty().boxed()
    }
    fn patch_annotations(
        &self,
        _: ObjectRef,
        _: Option<String>,
        _: BTreeMap<String, Option<String>>,
    ) -> BoxFuture<'static, std::result::Result<Written, KubeError>> {
        async { Ok(None) }.boxed()
    }
    fn emit_event(&self, _: EventRecord) -> BoxFuture<'static, std::result::Result<(), KubeError>> {
        async { Ok(()) }.boxed()
    }
    fn get_lease(
        &self,
        _: String,
        _: String,
    ) -> BoxFuture<'static, std::result::Result<Option<Lease>, KubeError>> {
        async { Ok(None) }.boxed()
    }
    fn create_lease(&self, l: Lease) -> BoxFuture<'static, std::result::Result<Lease, KubeError>> {
        async { Ok(l) }.boxed()
    }
    fn replace_lease(&self, l: Lease) -> BoxFuture<'static, std::result::Result<Lease, KubeError>> {
        async { Ok(l) }.boxed()
    }
}

struct Harness {
    engine: Engine,
    nb: MapView,
    rv: u64,
    /// Transactions written, each the owners of one commit.
    commits: Vec<Vec<Owner>>,
}

impl Harness {
    fn new() -> Harness {
        let (tx, _rx) = mpsc::unbounded_channel();
        let cluster: Arc<dyn Cluster> = Arc::new(Accepting);
        let metrics = Metrics::new();
        let outbox = Outbox::new(cluster, metrics.clone(), 4);
        let config = Config {
            cluster_cidrs: vec!["10.244.0.0/16/24".parse().unwrap()],
            ..Config::default()
        };
        let mut engine = Engine {
            alloc: Allocator::new(config.clone()),
            annotator: Annotator::new(outbox.clone(), tx),
            outbox,
            config,
            metrics,
            model: Model::new(),
            lb_ips: crate::lb_ips::LbIps::new(Vec::new()),
            admin_status: Default::default(),
            store: Arc::new(DesiredStore::default()),
            retries: BinaryHeap::new(),
            attempts: HashMap::new(),
            last_event: HashMap::new(),
            last_gauges: Instant::now(),
        };
        let mut changes = Vec::new();
        for k in Kind::ALL {
            engine
                .model
                .apply(k, WatchEvent::Restarted(Vec::new()), &mut changes);
        }
        let round = engine.alloc.rebuild(&engine.model, Recovery::default());
        engine.publish_all();
        engine.finish(round, changes);
        Harness {
            engine,
            nb: MapView::default(),
            rv: 0,
            commits: Vec::new(),
        }
    }

    fn event(&mut self, kind: Kind, ev: WatchEvent<Observed>) {
        let mut changes = Vec::new();
        self.engine.model.apply(kind, ev, &mut changes);
        self.engine.round(changes);
    }

    fn rv(&mut self) -> String {
        self.rv += 1;
        self.rv.to_string()
    }

    fn node(&mut self, name: &str) {
        let mut n = Node::default();
        n.metadata.name = Some(name.into());
        n.metadata.uid = Some(format!("n-{name}"));
        n.metadata.resource_version = Some(self.rv());
        self.event(
            Kind::Node,
            WatchEvent::Applied(crate::k8s::Object::from(n).into()),
        );
    }

    fn namespace(&mut self, name: &str) {
        let mut n = Namespace::default();
        n.metadata.name = Some(name.into());
        n.metadata.resource_version = Some(self.rv());
        self.event(
            Kind::Namespace,
            WatchEvent::Applied(crate::k8s::Object::from(n).into()),
        );
    }

    fn pod(&mut self, ns: &str, name: &str, node: &str, uid: &str, app: &str) {
        let mut p = Pod::default();
        p.metadata.namespace = Some(ns.into());
        p.metadata.name = Some(name.into());
        p.metadata.uid = Some(uid.into());
        p.metadata.resource_version = Some(self.rv());
        p.metadata.labels = Some([("app".to_string(), app.to_string())].into());
        p.spec = Some(PodSpec {
            node_name: Some(node.into()),
            ..Default::default()
        });
        self.event(
            Kind::Pod,
            WatchEvent::Applied(crate::k8s::Object::from(p).into()),
        );
    }

    fn delete(&mut self, kind: Kind, obj: crate::k8s::Object) {
        let obj = Observed::from(obj);
        self.event(kind, WatchEvent::Deleted(obj));
    }

    /// What the NB writer does, without batching limits: each commit
    /// group in one transaction, until nothing is dirty.
    fn write(&mut self) {
        for _ in 0..10 {
            let groups = self.engine.store.lock().take_groups();
            if groups.is_empty() {
                return;
            }
            for g in groups {
                let rows: Vec<(Owner, Option<Arc<Vec<DesiredRow>>>)> = g
                    .iter()
                    .map(|o| (o.clone(), self.engine.store.rows(o)))
                    .collect();
                let owners: Vec<(&Owner, Option<&[DesiredRow]>)> = rows
                    .iter()
                    .map(|(o, r)| (o, r.as_ref().map(|r| r.as_slice())))
                    .collect();
                let plan = diff(&self.nb, &owners);
                if !plan.deferred.is_empty() {
                    self.engine.store.mark_dirty(plan.deferred.iter().cloned());
                }
                if !plan.is_empty() {
                    self.nb.apply(&plan.ops);
                    self.commits.push(g);
                }
            }
        }
        panic!("the writer did not settle in 10 passes");
    }

    /// Every owner the translators want now, with its rows.
    fn wanted(&self) -> Vec<(Owner, Vec<DesiredRow>)> {
        let view = self.engine.view();
        let mut problems = Vec::new();
        translate::registry()
            .iter()
            .flat_map(|t| {
                t.all(&view)
                    .into_iter()
                    .map(|k| (Owner::of(t.kind(), k), *t))
                    .collect::<Vec<_>>()
            })
            .filter_map(|(o, t)| {
                let rows = t.rows(o.key(), &view, &mut problems)?;
                Some((o, rows))
            })
            .collect()
    }

    /// NB holds exactly the wanted rows: each wanted row with its columns,
    /// no other row of ours, and a full diff finds nothing to do.
    fn check(&self) -> std::result::Result<(), String> {
        let wanted = self.wanted();
        let mut count = 0;
        for (owner, rows) in &wanted {
            for r in rows {
                // Rows of tables without external_ids carry no owner to
                // count by (they were found by name above).
                if r.table.has_external_ids() {
                    count += 1;
                }
                let found = self.nb.rows_with_id(r.table, &r.id, owner);
                let [uuid] = found[..] else {
                    return Err(format!(
                        "{owner}: {} {:?} found {found:?}",
                        r.table.name(),
                        r.id
                    ));
                };
                for (c, v) in &r.cols {
                    let want = match v {
                        Col::Refs(t, names) => {
                            let mut have: Vec<String> = self
                                .nb
                                .value(r.table, uuid, c)
                                .map(|v| v.uuids())
                                .unwrap_or_default()
                                .into_iter()
                                .filter_map(|u| self.nb.name_of(*t, u).map(str::to_string))
                                .collect();
                            have.sort();
                            if &have != names {
                                return Err(format!("{owner} {c}: {have:?} != {names:?}"));
                            }
                            continue;
                        }
                        other => other.clone(),
                    };
                    let (value, _) = value_of(&want);
                    if !values_equal(self.nb.value(r.table, uuid, c), &value) {
                        return Err(format!(
                            "{owner} {:?} {c}: {:?} != {want:?}",
                            r.id,
                            self.nb.value(r.table, uuid, c)
                        ));
                    }
                }
                if let RowId::Name(n) = &r.id {
                    for p in &r.parents {
                        let held = self.nb.rows_named(p.table, &p.name).iter().any(|pu| {
                            self.nb
                                .value(p.table, *pu, p.column)
                                .is_some_and(|v| v.uuids().contains(&uuid))
                        });
                        if !held {
                            return Err(format!(
                                "{n} not in {} {}.{}",
                                p.table.name(),
                                p.name,
                                p.column
                            ));
                        }
                    }
                }
            }
        }
        let ours: usize = Table::ALL.iter().map(|t| self.nb.all_owned(*t).len()).sum();
        if ours != count {
            return Err(format!("NB holds {ours} rows of ours, {count} wanted"));
        }
        let owners: Vec<(&Owner, Option<&[DesiredRow]>)> = wanted
            .iter()
            .map(|(o, r)| (o, Some(r.as_slice())))
            .collect();
        let plan = diff(&self.nb, &owners);
        if !plan.is_empty() {
            return Err(format!("a second pass would write {:?}", plan.ops));
        }
        let known: Vec<&Owner> = wanted.iter().map(|(o, _)| o).collect();
        let orphaned = orphans(&self.nb, &|o| known.contains(&o));
        if !orphaned.is_empty() {
            return Err(format!("orphans {orphaned:?}"));
        }
        Ok(())
    }
}

/// A column as the diff writes it (references are compared by name above).
fn value_of(c: &Col) -> (ovsdb::Value, bool) {
    use ovsdb::{Atom, Value};
    match c {
        Col::Str(s) => (Value::from(s.as_str()), true),
        Col::Int(i) => (Value::from(*i), true),
        Col::Real(f) => (Value::set([Atom::Real(*f)]), true),
        Col::Bool(b) => (Value::from(*b), true),
        Col::Set(v) => (Value::set(v.iter().map(|s| Atom::from(s.as_str()))), true),
        Col::Map(m) => (
            Value::map(m.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
            true,
        ),
        Col::Refs(..) => (Value::empty_set(), false),
    }
}

use crate::nb::{Col, Table};

/// Runs `f` inside a runtime (the outbox spawns its requests).
fn in_runtime<T>(f: impl FnOnce() -> T) -> T {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _entered = rt.enter();
    f()
}

#[test]
fn a_new_pod_and_its_namespace_set_commit_together() {
    in_runtime(a_new_pod_and_its_namespace_set_commit_together_inner)
}

fn a_new_pod_and_its_namespace_set_commit_together_inner() {
    let mut h = Harness::new();
    h.namespace("a");
    h.node("n1");
    h.write();
    let before = h.commits.len();
    h.pod("a", "p1", "n1", "u1", "web");
    h.write();
    let commits = &h.commits[before..];
    assert_eq!(commits.len(), 1, "{commits:?}");
    let kinds: Vec<&str> = commits[0].iter().map(|o| o.kind()).collect();
    assert!(
        kinds.contains(&"Pod") && kinds.contains(&"Namespace"),
        "{kinds:?}"
    );
    h.check().unwrap();
}

#[derive(Clone, Debug)]
enum Step {
    Node(u8),
    DeleteNode(u8),
    Namespace(u8),
    DeleteNamespace(u8),
    Pod {
        ns: u8,
        name: u8,
        node: u8,
        app: u8,
    },
    Relabel {
        ns: u8,
        name: u8,
        app: u8,
    },
    Recreate {
        ns: u8,
        name: u8,
    },
    DeletePod {
        ns: u8,
        name: u8,
    },
    /// The writer catches up now (otherwise changes pile up).
    Write,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0u8..4).prop_map(Step::Node),
        (0u8..4).prop_map(Step::DeleteNode),
        (0u8..3).prop_map(Step::Namespace),
        (0u8..3).prop_map(Step::DeleteNamespace),
        (0u8..3, 0u8..8, 0u8..4, 0u8..3).prop_map(|(ns, name, node, app)| Step::Pod {
            ns,
            name,
            node,
            app
        }),
        (0u8..3, 0u8..8, 0u8..3).prop_map(|(ns, name, app)| Step::Relabel { ns, name, app }),
        (0u8..3, 0u8..8).prop_map(|(ns, name)| Step::Recreate { ns, name }),
        (0u8..3, 0u8..8).prop_map(|(ns, name)| Step::DeletePod { ns, name }),
        Just(Step::Write),
    ]
}

fn apply(h: &mut Harness, s: &Step, uids: &mut u64) {
    let ns = |i: u8| format!("ns{i}");
    let pod_key = |n: u8, p: u8| format!("ns{n}/p{p}");
    match s {
        Step::Node(n) => h.node(&format!("n{n}")),
        Step::DeleteNode(n) => {
            let name = format!("n{n}");
            if h.engine.model.nodes.contains_key(&name) {
                let mut node = Node::default();
                node.metadata.name = Some(name);
                h.delete(Kind::Node, node.into());
            }
        }
        Step::Namespace(n) => h.namespace(&ns(*n)),
        Step::DeleteNamespace(n) => {
            // As the API server does: what the namespace holds goes with it.
            let keys: Vec<String> = h.engine.model.pods_in(&ns(*n)).cloned().collect();
            for k in keys {
                let (pns, pname) = crate::model::split_key(&k);
                let mut p = Pod::default();
                p.metadata.namespace = Some(pns.into());
                p.metadata.name = Some(pname.into());
                h.delete(Kind::Pod, p.into());
            }
            let mut obj = Namespace::default();
            obj.metadata.name = Some(ns(*n));
            h.delete(Kind::Namespace, obj.into());
        }
        Step::Pod {
            ns: n,
            name,
            node,
            app,
        } => {
            if h.engine.model.pod(&pod_key(*n, *name)).is_some() {
                return;
            }
            *uids += 1;
            h.pod(
                &ns(*n),
                &format!("p{name}"),
                &format!("n{node}"),
                &format!("u{uids}"),
                &format!("app{app}"),
            );
        }
        Step::Relabel { ns: n, name, app } => {
            if let Some(p) = h.engine.model.pod(&pod_key(*n, *name)).cloned() {
                let node = p.node.clone().unwrap_or_default();
                h.pod(&ns(*n), &p.name, &node, &p.uid, &format!("app{app}"));
            }
        }
        Step::Recreate { ns: n, name } => {
            if let Some(p) = h.engine.model.pod(&pod_key(*n, *name)).cloned() {
                let node = p.node.clone().unwrap_or_default();
                let mut old = Pod::default();
                old.metadata.namespace = Some(p.namespace.clone());
                old.metadata.name = Some(p.name.clone());
                h.delete(Kind::Pod, old.into());
                *uids += 1;
                h.pod(&ns(*n), &p.name, &node, &format!("u{uids}"), "app0");
            }
        }
        Step::DeletePod { ns: n, name } => {
            if h.engine.model.pod(&pod_key(*n, *name)).is_some() {
                let mut p = Pod::default();
                p.metadata.namespace = Some(ns(*n));
                p.metadata.name = Some(format!("p{name}"));
                h.delete(Kind::Pod, p.into());
            }
        }
        Step::Write => h.write(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn random_changes_converge_to_exactly_what_the_translators_want(
        steps in proptest::collection::vec(step(), 1..60)
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let _entered = rt.enter();
        let mut h = Harness::new();
        let mut uids = 0;
        for s in &steps {
            apply(&mut h, s, &mut uids);
        }
        h.write();
        if let Err(e) = h.check() {
            return Err(TestCaseError::fail(e));
        }
        // Nothing left to write: a second pass is empty.
        let before = h.commits.len();
        h.engine.publish_all();
        h.write();
        prop_assert_eq!(h.commits.len(), before);
    }
}
