//! The production [`Cluster`]: kube-rs watchers, merge patches, Events and
//! Leases. All kube-rs specifics live in this module.
//!
//! Watches use `kube::runtime::watcher` (list, then watch from the list's
//! resourceVersion; on `410 Gone` it relists), with kube-rs's default
//! back-off between failed attempts; the relist arrives as one
//! [`WatchEvent::Restarted`]. RBAC is listed in [`crate::k8s`].

use std::collections::BTreeMap;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, Stream, StreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, ObjectReference, Pod};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Client;
use serde_json::json;
use tracing::warn;

use super::{Cluster, EventRecord, KubeError, WatchEvent};

/// [`Cluster`] over a kube-rs client.
#[derive(Clone)]
pub struct KubeCluster {
    client: Client,
    /// Field manager for patches and `reportingController` for Events.
    manager: String,
    /// `reportingInstance` for Events: this replica.
    instance: String,
}

impl KubeCluster {
    pub fn new(client: Client, manager: &str, instance: &str) -> Self {
        KubeCluster {
            client,
            manager: manager.to_string(),
            instance: instance.to_string(),
        }
    }
}

fn map_err(e: kube::Error) -> KubeError {
    match e {
        kube::Error::Api(s) => match s.code {
            404 => KubeError::NotFound(s.message),
            409 => KubeError::Conflict(s.message),
            400 | 422 => KubeError::Invalid(s.message),
            _ => KubeError::Api(format!("{} ({})", s.message, s.code)),
        },
        other => KubeError::Api(other.to_string()),
    }
}

/// kube-rs watcher events into [`WatchEvent`]s: `Init`/`InitApply`/`InitDone`
/// become one `Restarted` with the whole list; errors are logged (the
/// watcher recovers by itself, relisting on 410 Gone).
pub fn convert<K: Send + 'static>(
    what: &'static str,
    s: impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
) -> BoxStream<'static, WatchEvent<K>> {
    let mut buf: Vec<K> = Vec::new();
    s.map(move |ev| match ev {
        Ok(watcher::Event::Init) => {
            buf.clear();
            None
        }
        Ok(watcher::Event::InitApply(k)) => {
            buf.push(k);
            None
        }
        Ok(watcher::Event::InitDone) => Some(WatchEvent::Restarted(std::mem::take(&mut buf))),
        Ok(watcher::Event::Apply(k)) => Some(WatchEvent::Applied(k)),
        Ok(watcher::Event::Delete(k)) => Some(WatchEvent::Deleted(k)),
        Err(e) => {
            warn!(what, error = %e, "watch failed; the watcher retries");
            None
        }
    })
    .filter_map(futures::future::ready)
    .boxed()
}

impl KubeCluster {
    fn patch_params(&self) -> PatchParams {
        PatchParams {
            field_manager: Some(self.manager.clone()),
            ..Default::default()
        }
    }
}

/// Sends [`annotation_patch`] for one Pod or Node.
fn patch_annotations<K>(
    api: Api<K>,
    pp: PatchParams,
    name: String,
    uid: String,
    annotations: BTreeMap<String, String>,
) -> BoxFuture<'static, Result<(), KubeError>>
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
{
    async move {
        let patch = annotation_patch(&uid, &annotations);
        api.patch(&name, &pp, &Patch::Merge(&patch))
            .await
            .map(|_| ())
            .map_err(map_err)
    }
    .boxed()
}

/// A merge patch that sets annotations only if the object still has `uid`
/// (the API server answers 409 otherwise).
pub fn annotation_patch(uid: &str, annotations: &BTreeMap<String, String>) -> serde_json::Value {
    json!({ "metadata": { "uid": uid, "annotations": annotations } })
}

impl Cluster for KubeCluster {
    fn watch_nodes(&self) -> BoxStream<'static, WatchEvent<Node>> {
        let api: Api<Node> = Api::all(self.client.clone());
        convert(
            "nodes",
            watcher(api, watcher::Config::default()).default_backoff(),
        )
    }

    fn watch_pods(&self) -> BoxStream<'static, WatchEvent<Pod>> {
        let api: Api<Pod> = Api::all(self.client.clone());
        convert(
            "pods",
            watcher(api, watcher::Config::default()).default_backoff(),
        )
    }

    fn patch_pod_annotations(
        &self,
        namespace: String,
        name: String,
        uid: String,
        annotations: BTreeMap<String, String>,
    ) -> BoxFuture<'static, Result<(), KubeError>> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        patch_annotations(api, self.patch_params(), name, uid, annotations)
    }

    fn patch_node_annotations(
        &self,
        name: String,
        uid: String,
        annotations: BTreeMap<String, String>,
    ) -> BoxFuture<'static, Result<(), KubeError>> {
        let api: Api<Node> = Api::all(self.client.clone());
        patch_annotations(api, self.patch_params(), name, uid, annotations)
    }

    fn emit_event(&self, e: EventRecord) -> BoxFuture<'static, Result<(), KubeError>> {
        // Cluster-scoped objects' Events go to `default`, as kubectl shows them.
        let ns = e
            .regarding
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
        let event = Event {
            metadata: ObjectMeta {
                generate_name: Some(format!("{}.", e.regarding.name)),
                namespace: Some(ns),
                ..Default::default()
            },
            event_time: Some(MicroTime(k8s_openapi::jiff::Timestamp::now())),
            reporting_controller: Some(format!("switchyard.io/{}", self.manager)),
            reporting_instance: Some(self.instance.clone()),
            action: Some(e.action),
            reason: Some(e.reason),
            note: Some(e.note),
            type_: Some(e.type_),
            regarding: Some(ObjectReference {
                api_version: Some("v1".into()),
                kind: Some(e.regarding.kind),
                namespace: e.regarding.namespace,
                name: Some(e.regarding.name),
                uid: e.regarding.uid,
                ..Default::default()
            }),
            ..Default::default()
        };
        async move {
            api.create(&PostParams::default(), &event)
                .await
                .map(|_| ())
                .map_err(map_err)
        }
        .boxed()
    }

    fn get_lease(
        &self,
        namespace: String,
        name: String,
    ) -> BoxFuture<'static, Result<Option<Lease>, KubeError>> {
        let api: Api<Lease> = Api::namespaced(self.client.clone(), &namespace);
        async move { api.get_opt(&name).await.map_err(map_err) }.boxed()
    }

    fn create_lease(&self, lease: Lease) -> BoxFuture<'static, Result<Lease, KubeError>> {
        let ns = lease.metadata.namespace.clone().unwrap_or_default();
        let api: Api<Lease> = Api::namespaced(self.client.clone(), &ns);
        async move {
            api.create(&PostParams::default(), &lease)
                .await
                .map_err(map_err)
        }
        .boxed()
    }

    fn replace_lease(&self, lease: Lease) -> BoxFuture<'static, Result<Lease, KubeError>> {
        let ns = lease.metadata.namespace.clone().unwrap_or_default();
        let name = lease.metadata.name.clone().unwrap_or_default();
        let api: Api<Lease> = Api::namespaced(self.client.clone(), &ns);
        async move {
            api.replace(&name, &PostParams::default(), &lease)
                .await
                .map_err(map_err)
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::k8s::ObjectRef;
    use http::{Request, Response, StatusCode};
    use kube::client::Body;
    use std::time::Duration;
    use tower_test::mock;

    type Handle = mock::Handle<Request<Body>, Response<Body>>;

    fn cluster() -> (KubeCluster, Handle) {
        let (svc, handle) = mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(svc, "default");
        (
            KubeCluster::new(client, "switchyard-controller", "replica-0"),
            handle,
        )
    }

    fn json_response(code: u16, v: serde_json::Value) -> Response<Body> {
        Response::builder()
            .status(StatusCode::from_u16(code).unwrap())
            .header("content-type", "application/json")
            .body(Body::from(serde_json::to_vec(&v).unwrap()))
            .unwrap()
    }

    fn node_json(name: &str, rv: &str) -> serde_json::Value {
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "uid": format!("uid-{name}"), "resourceVersion": rv}})
    }

    fn query(req: &Request<Body>) -> String {
        req.uri().query().unwrap_or("").to_string()
    }

    async fn next(handle: &mut Handle) -> (Request<Body>, mock::SendResponse<Response<Body>>) {
        tokio::time::timeout(Duration::from_secs(10), handle.next_request())
            .await
            .expect("no request within 10 s")
            .expect("service gone")
    }

    #[tokio::test]
    async fn node_watch_lists_watches_and_relists_after_410_gone() {
        let (c, mut handle) = cluster();
        let mut stream = c.watch_nodes();
        let server = tokio::spawn(async move {
            // 1. The initial list.
            let (req, send) = next(&mut handle).await;
            assert_eq!(req.method(), "GET");
            assert_eq!(req.uri().path(), "/api/v1/nodes");
            assert!(!query(&req).contains("watch=true"), "{}", query(&req));
            send.send_response(json_response(
                200,
                json!({"apiVersion": "v1", "kind": "NodeList", "metadata": {"resourceVersion": "10"},
                       "items": [node_json("a", "9")]}),
            ));
            // 2. The watch from the list's resourceVersion: one change, then 410.
            let (req, send) = next(&mut handle).await;
            let q = query(&req);
            assert_eq!(req.uri().path(), "/api/v1/nodes");
            assert!(q.contains("watch=true"), "{q}");
            assert!(q.contains("resourceVersion=10"), "{q}");
            let mut body =
                serde_json::to_vec(&json!({"type": "ADDED", "object": node_json("b", "11")}))
                    .unwrap();
            body.push(b'\n');
            body.extend(
                serde_json::to_vec(&json!({"type": "ERROR", "object": {
                "apiVersion": "v1", "kind": "Status", "status": "Failure",
                "message": "too old resource version: 10 (50)", "reason": "Expired", "code": 410}}))
                .unwrap(),
            );
            body.push(b'\n');
            send.send_response(
                Response::builder()
                    .status(200)
                    .body(Body::from(body))
                    .unwrap(),
            );
            // 3. 410 Gone: a fresh list, not a watch.
            let (req, send) = next(&mut handle).await;
            let q = query(&req);
            assert!(
                !q.contains("watch=true"),
                "after 410 the watcher must relist: {q}"
            );
            send.send_response(json_response(
                200,
                json!({"apiVersion": "v1", "kind": "NodeList", "metadata": {"resourceVersion": "60"},
                       "items": [node_json("b", "55")]}),
            ));
            // 4. And watches again from the new list.
            let (req, _send) = next(&mut handle).await;
            let q = query(&req);
            assert!(
                q.contains("watch=true") && q.contains("resourceVersion=60"),
                "{q}"
            );
            handle
        });
        let names = |v: &[Node]| {
            v.iter()
                .map(|n| n.metadata.name.clone().unwrap())
                .collect::<Vec<_>>()
        };
        match stream.next().await {
            Some(WatchEvent::Restarted(list)) => assert_eq!(names(&list), vec!["a"]),
            other => panic!("{other:?}"),
        }
        match stream.next().await {
            Some(WatchEvent::Applied(n)) => assert_eq!(n.metadata.name.as_deref(), Some("b")),
            other => panic!("{other:?}"),
        }
        match tokio::time::timeout(Duration::from_secs(15), stream.next())
            .await
            .unwrap()
        {
            Some(WatchEvent::Restarted(list)) => assert_eq!(names(&list), vec!["b"]),
            other => panic!("{other:?}"),
        }
        // Keep polling so the watcher makes its next request.
        let poller = tokio::spawn(async move { stream.next().await.is_some() });
        let _handle = server.await.unwrap();
        poller.abort();
    }

    #[tokio::test]
    async fn pod_patch_is_one_merge_patch_with_uid_precondition() {
        let (c, mut handle) = cluster();
        let mut ann = BTreeMap::new();
        ann.insert(
            "switchyard.io/pod-network".to_string(),
            "{\"x\":1}".to_string(),
        );
        let fut = c.patch_pod_annotations("ns".into(), "web".into(), "u-1".into(), ann.clone());
        let server = tokio::spawn(async move {
            let (req, send) = next(&mut handle).await;
            assert_eq!(req.method(), "PATCH");
            assert_eq!(req.uri().path(), "/api/v1/namespaces/ns/pods/web");
            assert!(
                query(&req).contains("fieldManager=switchyard-controller"),
                "{}",
                query(&req)
            );
            assert_eq!(
                req.headers()["content-type"],
                "application/merge-patch+json"
            );
            let body = req.into_body().collect_bytes().await.unwrap();
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v["metadata"]["uid"], "u-1");
            assert_eq!(
                v["metadata"]["annotations"]["switchyard.io/pod-network"],
                "{\"x\":1}"
            );
            send.send_response(json_response(
                200,
                json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "web", "namespace": "ns", "uid": "u-1"}}),
            ));
            // The second patch meets a recreated pod: 409.
            let (_req, send) = next(&mut handle).await;
            send.send_response(json_response(409, json!({"apiVersion": "v1", "kind": "Status",
                "status": "Failure", "reason": "Conflict", "code": 409,
                "message": "Precondition failed: UID in precondition: u-1, UID in object meta: u-2"})));
        });
        fut.await.unwrap();
        let err = c
            .patch_pod_annotations("ns".into(), "web".into(), "u-1".into(), ann)
            .await
            .unwrap_err();
        assert!(
            matches!(err, KubeError::Conflict(ref m) if m.contains("Precondition")),
            "{err:?}"
        );
        server.await.unwrap();
    }

    #[tokio::test]
    async fn events_and_leases() {
        let (c, mut handle) = cluster();
        let server = tokio::spawn(async move {
            let (req, send) = next(&mut handle).await;
            assert_eq!(req.method(), "POST");
            assert_eq!(
                req.uri().path(),
                "/apis/events.k8s.io/v1/namespaces/ns/events"
            );
            let body = req.into_body().collect_bytes().await.unwrap();
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v["reason"], "AddressAllocationFailed");
            assert_eq!(v["type"], "Warning");
            assert_eq!(v["regarding"]["kind"], "Pod");
            assert_eq!(v["regarding"]["uid"], "u-1");
            assert_eq!(v["reportingInstance"], "replica-0");
            send.send_response(json_response(201, v));
            let (req, send) = next(&mut handle).await;
            assert_eq!(req.method(), "GET");
            assert_eq!(
                req.uri().path(),
                "/apis/coordination.k8s.io/v1/namespaces/switchyard/leases/ctl"
            );
            send.send_response(json_response(
                404,
                json!({"apiVersion": "v1", "kind": "Status",
                "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"}),
            ));
            let (req, send) = next(&mut handle).await;
            assert_eq!(req.method(), "PUT");
            assert_eq!(
                req.uri().path(),
                "/apis/coordination.k8s.io/v1/namespaces/switchyard/leases/ctl"
            );
            send.send_response(json_response(409, json!({"apiVersion": "v1", "kind": "Status",
                "status": "Failure", "reason": "Conflict", "code": 409, "message": "the object has been modified"})));
        });
        c.emit_event(EventRecord {
            regarding: ObjectRef::pod("ns", "web", "u-1"),
            type_: "Warning".into(),
            reason: "AddressAllocationFailed".into(),
            action: "Allocate".into(),
            note: "no free address".into(),
        })
        .await
        .unwrap();
        assert_eq!(
            c.get_lease("switchyard".into(), "ctl".into())
                .await
                .unwrap(),
            None
        );
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some("ctl".into()),
                namespace: Some("switchyard".into()),
                resource_version: Some("3".into()),
                ..Default::default()
            },
            spec: None,
        };
        assert!(matches!(
            c.replace_lease(lease).await,
            Err(KubeError::Conflict(_))
        ));
        server.await.unwrap();
    }
}
