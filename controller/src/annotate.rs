//! Annotation patches: the controller's decisions written onto Pods and
//! Nodes, level-triggered and guarded.
//!
//! Whatever an object carries (an operator's edit, a stale writer's late
//! patch), it gets the controller's decision back. Every patch carries the
//! object's UID and the resourceVersion the decision was made on, so the
//! server refuses a decision made on a view that is no longer current
//! (409) and a patch meant for an object that was replaced (422). Until
//! the watch shows the patch's own result, the object is not patched again.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use tokio::sync::mpsc;
use tracing::warn;

use crate::k8s::{Cluster, Kind, KubeError, ObjectRef, Written};
use crate::outbox::Outbox;

/// The outcome of one patch, back on the engine's task.
pub struct PatchDone {
    pub target: ObjectRef,
    pub key: String,
    pub value: String,
    /// The resourceVersion the patch was decided on.
    pub rv_sent: Option<String>,
    pub result: Result<Written, KubeError>,
    pub started: Instant,
}

#[derive(Default)]
struct State {
    inflight: bool,
    /// The last accepted patch: the version it was decided on and the
    /// value; while the watch still shows that version, the object is
    /// known to hold the value.
    written: Option<(Option<String>, String)>,
}

/// What the engine does after a patch.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    Nothing,
    /// Decide this object again now.
    Again,
    /// Try again after a back-off.
    Retry,
    /// Report the refusal on the object.
    Report(String),
}

/// Annotation state per object.
pub struct Annotator {
    outbox: Outbox,
    done_tx: mpsc::UnboundedSender<PatchDone>,
    state: HashMap<(Kind, String), State>,
}

impl Annotator {
    pub fn new(outbox: Outbox, done_tx: mpsc::UnboundedSender<PatchDone>) -> Annotator {
        Annotator {
            outbox,
            done_tx,
            state: HashMap::new(),
        }
    }

    /// Makes `target`'s annotation `annotation` equal `want`, given what
    /// the watch shows (`rv`, `current`). Sends a patch unless one is in
    /// flight or the object is known to hold `want`.
    pub fn ensure(
        &mut self,
        target: ObjectRef,
        key: &str,
        rv: Option<&str>,
        current: Option<&str>,
        annotation: &str,
        want: String,
    ) {
        let st = self
            .state
            .entry((target.kind, key.to_string()))
            .or_default();
        if current == Some(want.as_str()) {
            st.written = None;
            return;
        }
        if st.inflight {
            return;
        }
        if let Some((sent_on, value)) = &st.written {
            if *value == want && sent_on.as_deref() == rv {
                // Accepted; the watch has not shown it yet.
                return;
            }
        }
        st.inflight = true;
        let rv = rv.map(str::to_string);
        let map = BTreeMap::from([(annotation.to_string(), Some(want.clone()))]);
        let request = self
            .outbox
            .cluster()
            .patch_annotations(target.clone(), rv.clone(), map);
        let tx = self.done_tx.clone();
        let key = key.to_string();
        let started = Instant::now();
        self.outbox.send(request, move |result| {
            let _ = tx.send(PatchDone {
                target,
                key,
                value: want,
                rv_sent: rv,
                result,
                started,
            });
        });
    }

    /// Forgets an object that is gone.
    pub fn forget(&mut self, kind: Kind, key: &str) {
        self.state.remove(&(kind, key.to_string()));
    }

    /// Takes a patch's outcome; `rv_now` is the version the watch shows
    /// now. `None` when the patch was for an object that was replaced or
    /// forgotten meanwhile.
    pub fn done(&mut self, d: &PatchDone, uid_now: Option<&str>, rv_now: Option<&str>) -> Next {
        if uid_now.is_none() || uid_now != d.target.uid.as_deref() {
            return Next::Nothing;
        }
        let Some(st) = self.state.get_mut(&(d.target.kind, d.key.clone())) else {
            return Next::Nothing;
        };
        st.inflight = false;
        match &d.result {
            Ok(_) => {
                st.written = Some((d.rv_sent.clone(), d.value.clone()));
                Next::Nothing
            }
            // Deleted, or replaced by another object of the same name: the
            // watch events that say so follow.
            Err(KubeError::NotFound(_)) => Next::Nothing,
            Err(e) if e.object_replaced() => Next::Nothing,
            // Changed since the decision. When that change was seen
            // meanwhile, decide again now; otherwise its event will.
            Err(KubeError::Conflict(_)) => {
                if rv_now != d.rv_sent.as_deref() {
                    Next::Again
                } else {
                    Next::Nothing
                }
            }
            Err(e) if e.is_transient() => {
                warn!(object = %d.target, error = %e, "annotation patch failed; retrying");
                Next::Retry
            }
            Err(e) => Next::Report(format!("the API server refused the annotation patch: {e}")),
        }
    }

    /// Objects with a patch in flight.
    pub fn inflight(&self) -> usize {
        self.state.values().filter(|s| s.inflight).count()
    }

    pub fn cluster(&self) -> &std::sync::Arc<dyn Cluster> {
        self.outbox.cluster()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use futures::future::BoxFuture;
    use futures::stream::BoxStream;
    use futures::{FutureExt, StreamExt};
    use k8s_openapi::api::coordination::v1::Lease;
    use std::sync::{Arc, Mutex};

    use crate::k8s::{EventRecord, Observed, WatchEvent};

    /// Records patches; answers each with the next queued result.
    #[derive(Default)]
    struct Recorder {
        sent: Mutex<Vec<(Option<String>, String)>>,
    }
    impl Cluster for Recorder {
        fn watch(&self, _: Kind) -> BoxStream<'static, WatchEvent<Observed>> {
            futures::stream::empty().boxed()
        }
        fn patch_annotations(
            &self,
            _: ObjectRef,
            rv: Option<String>,
            a: BTreeMap<String, Option<String>>,
        ) -> BoxFuture<'static, Result<Written, KubeError>> {
            let v = a.into_values().next().flatten().unwrap_or_default();
            self.sent.lock().unwrap().push((rv, v));
            async { Ok(Some("next".into())) }.boxed()
        }
        fn emit_event(&self, _: EventRecord) -> BoxFuture<'static, Result<(), KubeError>> {
            async { Ok(()) }.boxed()
        }
        fn get_lease(
            &self,
            _: String,
            _: String,
        ) -> BoxFuture<'static, Result<Option<Lease>, KubeError>> {
            async { Ok(None) }.boxed()
        }
        fn create_lease(&self, l: Lease) -> BoxFuture<'static, Result<Lease, KubeError>> {
            async { Ok(l) }.boxed()
        }
        fn replace_lease(&self, l: Lease) -> BoxFuture<'static, Result<Lease, KubeError>> {
            async { Ok(l) }.boxed()
        }
    }

    fn done(result: Result<Written, KubeError>, rv_sent: &str) -> PatchDone {
        PatchDone {
            target: ObjectRef::pod("ns", "web", "u1"),
            key: "ns/web".into(),
            value: "{}".into(),
            rv_sent: Some(rv_sent.into()),
            result,
            started: Instant::now(),
        }
    }

    fn annotator() -> (Annotator, Arc<Recorder>, mpsc::UnboundedReceiver<PatchDone>) {
        let rec = Arc::new(Recorder::default());
        let (tx, rx) = mpsc::unbounded_channel();
        let outbox = Outbox::new(rec.clone(), Metrics::new(), 4);
        (Annotator::new(outbox, tx), rec, rx)
    }

    #[tokio::test]
    async fn a_replaced_pod_is_not_patched_again_and_a_server_error_is_retried() {
        let (mut a, _, _rx) = annotator();
        let t = ObjectRef::pod("ns", "web", "u1");
        a.ensure(t, "ns/web", Some("5"), None, "k", "{}".into());
        let replaced = done(
            Err(KubeError::invalid(
                "Pod \"web\" is invalid: metadata.uid: Invalid value: \"u1\": field is immutable",
                Some("metadata.uid"),
            )),
            "5",
        );
        assert_eq!(a.done(&replaced, Some("u1"), Some("5")), Next::Nothing);
        let t = ObjectRef::pod("ns", "web", "u1");
        a.ensure(t, "ns/web", Some("5"), None, "k", "{}".into());
        let failed = done(Err(KubeError::Api("etcd timeout".into())), "5");
        assert_eq!(a.done(&failed, Some("u1"), Some("5")), Next::Retry);
    }

    #[tokio::test]
    async fn a_conflict_waits_for_the_change_it_was_refused_for() {
        let (mut a, _, _rx) = annotator();
        let conflict = || done(Err(KubeError::Conflict("modified".into())), "5");
        a.ensure(
            ObjectRef::pod("ns", "web", "u1"),
            "ns/web",
            Some("5"),
            None,
            "k",
            "{}".into(),
        );
        assert_eq!(a.done(&conflict(), Some("u1"), Some("5")), Next::Nothing);
        a.ensure(
            ObjectRef::pod("ns", "web", "u1"),
            "ns/web",
            Some("5"),
            None,
            "k",
            "{}".into(),
        );
        assert_eq!(a.done(&conflict(), Some("u1"), Some("6")), Next::Again);
    }

    #[tokio::test]
    async fn an_accepted_value_is_not_sent_again_until_the_object_changes() {
        let (mut a, rec, mut rx) = annotator();
        let t = || ObjectRef::pod("ns", "web", "u1");
        a.ensure(t(), "ns/web", Some("5"), None, "k", "{}".into());
        let d = rx.recv().await.unwrap();
        assert_eq!(a.done(&d, Some("u1"), Some("5")), Next::Nothing);
        // The watch still shows version 5: known to hold the value.
        a.ensure(t(), "ns/web", Some("5"), None, "k", "{}".into());
        assert_eq!(rec.sent.lock().unwrap().len(), 1);
        // Someone wrote another value at version 7: put back, guarded by 7.
        a.ensure(t(), "ns/web", Some("7"), Some("stale"), "k", "{}".into());
        let d = rx.recv().await.unwrap();
        assert_eq!(d.rv_sent.as_deref(), Some("7"));
        assert_eq!(rec.sent.lock().unwrap().len(), 2);
    }
}
