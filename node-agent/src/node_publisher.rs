//! What the node agent tells the cluster about its node: annotations on its
//! own Node object, the way back from the node to the controller.
//!
//! [`node_annotations`] computes the whole map from what the node knows
//! (`switchyard.io/chassis-id`, the OVN chassis name: the `Open_vSwitch`
//! row's `external_ids:system-id`; `switchyard.io/gateway`, the gateway
//! bridge's MAC, addresses and next hops). The daemon publishes the map at start-up and again whenever it
//! changes, retrying until the API server takes it.
//!
//! Two implementations sit behind [`NodePublisher`], beside the two
//! [`crate::pod_source::PodSource`]s:
//!
//! - [`KubePublisher`] (`--pod-source=kube`): reads the Node and, only when a
//!   value differs, sends one JSON merge patch of `metadata.annotations`
//!   (other annotations are left alone; a value is never removed);
//! - [`DirPublisher`] (`--pod-source=dir:/path`, the sandbox and tests):
//!   writes the map, merged into what the file held, to
//!   `<dir>/node-annotations.json` atomically (temporary name, then
//!   rename), only when it differs. The e2e sandbox applies that file to
//!   its in-memory Node (`e2e/src/mirror.rs`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Patch, PatchParams};
use kube::Api;
use switchyard_api::annotations::{NODE_CHASSIS, NODE_GATEWAY};
use switchyard_api::NodeGateway;

use crate::error::{Error, Result};

/// Annotation key -> value.
pub type Annotations = BTreeMap<String, String>;

/// The file [`DirPublisher`] writes in its directory.
pub const DIR_FILE: &str = "node-annotations.json";

/// The field manager named on the agent's patches.
pub const FIELD_MANAGER: &str = "switchyard-node";

/// Everything the node agent publishes about its node, from the
/// `Open_vSwitch` row's `external_ids` and the gateway bridge. Absent
/// inputs leave their keys out.
pub fn node_annotations(
    ovs_external_ids: &BTreeMap<String, String>,
    gateway: Option<&NodeGateway>,
) -> Annotations {
    let mut out = Annotations::new();
    if let Some(id) = ovs_external_ids
        .get("system-id")
        .filter(|s| !s.trim().is_empty())
    {
        out.insert(NODE_CHASSIS.to_string(), id.trim().to_string());
    }
    if let Some(gw) = gateway {
        out.insert(NODE_GATEWAY.to_string(), gw.to_json());
    }
    out
}

/// Whether `current` already holds every key of `wanted` with its value.
pub fn up_to_date(current: &Annotations, wanted: &Annotations) -> bool {
    wanted.iter().all(|(k, v)| current.get(k) == Some(v))
}

/// What a [`NodePublisher::publish`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Published {
    /// Every value was already there; nothing was written.
    Unchanged,
    Written,
}

/// The boundary through which the agent annotates its own Node.
pub trait NodePublisher: Send + Sync {
    /// Makes `annotations` present on the node's Node object, leaving its
    /// other annotations alone; writes nothing when all are already there.
    fn publish<'a>(&'a self, annotations: &'a Annotations) -> BoxFuture<'a, Result<Published>>;
}

/// Production: the Node through the API server.
pub struct KubePublisher {
    nodes: Api<Node>,
    node: String,
}

impl KubePublisher {
    pub fn new(client: kube::Client, node: impl Into<String>) -> Self {
        KubePublisher {
            nodes: Api::all(client),
            node: node.into(),
        }
    }
}

impl NodePublisher for KubePublisher {
    fn publish<'a>(&'a self, annotations: &'a Annotations) -> BoxFuture<'a, Result<Published>> {
        Box::pin(async move {
            let node = self
                .nodes
                .get_opt(&self.node)
                .await
                .map_err(|e| Error::PodSource(format!("reading node {}: {e}", self.node)))?
                .ok_or_else(|| Error::PodSource(format!("node {} does not exist", self.node)))?;
            let current = node.metadata.annotations.unwrap_or_default();
            if up_to_date(&current, annotations) {
                return Ok(Published::Unchanged);
            }
            let patch = serde_json::json!({"metadata": {"annotations": annotations}});
            self.nodes
                .patch(
                    &self.node,
                    &PatchParams {
                        field_manager: Some(FIELD_MANAGER.to_string()),
                        ..Default::default()
                    },
                    &Patch::Merge(&patch),
                )
                .await
                .map_err(|e| Error::PodSource(format!("patching node {}: {e}", self.node)))?;
            Ok(Published::Written)
        })
    }
}

/// Tests and the sandbox: `<dir>/node-annotations.json`.
pub struct DirPublisher {
    dir: PathBuf,
}

impl DirPublisher {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        DirPublisher { dir: dir.into() }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(DIR_FILE)
    }

    /// What the file holds now (empty when absent).
    pub fn read(&self) -> Result<Annotations> {
        let path = self.path();
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| Error::PodSource(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Annotations::new()),
            Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
        }
    }
}

impl NodePublisher for DirPublisher {
    fn publish<'a>(&'a self, annotations: &'a Annotations) -> BoxFuture<'a, Result<Published>> {
        Box::pin(async move {
            // A file nobody can parse is replaced, as a patch would be.
            let mut current = self.read().unwrap_or_default();
            if up_to_date(&current, annotations) {
                return Ok(Published::Unchanged);
            }
            current.extend(annotations.clone());
            let bytes =
                serde_json::to_vec_pretty(&current).map_err(|e| Error::Config(e.to_string()))?;
            let path = self.path();
            let tmp = self.dir.join(format!(".{DIR_FILE}.tmp"));
            std::fs::write(&tmp, bytes)
                .map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
            std::fs::rename(&tmp, &path)
                .map_err(|e| Error::io(format!("installing {}", path.display()), e))?;
            Ok(Published::Written)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn annotations_come_from_the_system_id() {
        let a = node_annotations(&ids(&[("system-id", "node-1"), ("hostname", "h")]), None);
        assert_eq!(a, ids(&[(NODE_CHASSIS, "node-1")]));
        assert!(node_annotations(&ids(&[("hostname", "h")]), None).is_empty());
        assert!(node_annotations(&ids(&[("system-id", " ")]), None).is_empty());
        let gw = NodeGateway {
            bridge: "br-phy".into(),
            mac: "02:00:00:00:00:01".into(),
            ips: vec!["198.18.0.11/24".parse().unwrap()],
            next_hops: vec![],
        };
        let a = node_annotations(&ids(&[("system-id", "node-1")]), Some(&gw));
        assert_eq!(NodeGateway::parse(&a[NODE_GATEWAY]).unwrap(), gw);
    }

    #[tokio::test]
    async fn dir_publisher_writes_the_file_once_and_keeps_other_keys() {
        let dir = tempfile::tempdir().unwrap();
        let p = DirPublisher::new(dir.path());
        assert!(p.read().unwrap().is_empty());
        let want = ids(&[(NODE_CHASSIS, "chassis-a")]);
        assert_eq!(p.publish(&want).await.unwrap(), Published::Written);
        let text = std::fs::read_to_string(dir.path().join(DIR_FILE)).unwrap();
        let on_disk: Annotations = serde_json::from_str(&text).unwrap();
        assert_eq!(on_disk, want);
        // Same value: nothing written (the file's inode stays).
        let ino = |p: &std::path::Path| {
            std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap())
        };
        let before = ino(&p.path());
        assert_eq!(p.publish(&want).await.unwrap(), Published::Unchanged);
        assert_eq!(ino(&p.path()), before);
        // Another key is merged in; a changed value replaces the old one.
        let more = ids(&[("switchyard.io/other", "x")]);
        assert_eq!(p.publish(&more).await.unwrap(), Published::Written);
        let changed = ids(&[(NODE_CHASSIS, "chassis-b")]);
        assert_eq!(p.publish(&changed).await.unwrap(), Published::Written);
        assert_eq!(
            p.read().unwrap(),
            ids(&[(NODE_CHASSIS, "chassis-b"), ("switchyard.io/other", "x")])
        );
        // No temporary file is left behind.
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, [DIR_FILE]);
    }

    mod kube_api {
        use super::*;
        use http::{Request, Response, StatusCode};
        use kube::client::Body;
        use std::time::Duration;
        use tower_test::mock;

        type Handle = mock::Handle<Request<Body>, Response<Body>>;

        fn json_response(code: u16, v: serde_json::Value) -> Response<Body> {
            Response::builder()
                .status(StatusCode::from_u16(code).unwrap())
                .header("content-type", "application/json")
                .body(Body::from(serde_json::to_vec(&v).unwrap()))
                .unwrap()
        }

        fn node(annotations: serde_json::Value) -> serde_json::Value {
            serde_json::json!({"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": "n1", "uid": "uid-n1", "resourceVersion": "7",
                             "annotations": annotations}})
        }

        async fn next(handle: &mut Handle) -> (Request<Body>, mock::SendResponse<Response<Body>>) {
            tokio::time::timeout(Duration::from_secs(10), handle.next_request())
                .await
                .expect("no request within 10 s")
                .expect("service gone")
        }

        async fn body_json(req: Request<Body>) -> serde_json::Value {
            let bytes = req.into_body().collect_bytes().await.unwrap();
            serde_json::from_slice(&bytes).unwrap()
        }

        #[tokio::test]
        async fn patches_only_what_differs_with_one_merge_patch() {
            let (svc, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
            let p = KubePublisher::new(kube::Client::new(svc, "default"), "n1");
            let want = ids(&[(NODE_CHASSIS, "n1")]);
            let server = tokio::spawn(async move {
                // 1. A node without the annotation: GET, then one PATCH.
                let (req, send) = next(&mut handle).await;
                assert_eq!(req.method(), "GET");
                assert_eq!(req.uri().path(), "/api/v1/nodes/n1");
                send.send_response(json_response(
                    200,
                    node(serde_json::json!({"other": "kept"})),
                ));
                let (req, send) = next(&mut handle).await;
                assert_eq!(req.method(), "PATCH");
                assert_eq!(req.uri().path(), "/api/v1/nodes/n1");
                assert_eq!(
                    req.headers()["content-type"],
                    "application/merge-patch+json"
                );
                assert!(
                    req.uri()
                        .query()
                        .unwrap_or("")
                        .contains("fieldManager=switchyard-node"),
                    "{:?}",
                    req.uri()
                );
                let body = body_json(req).await;
                assert_eq!(
                    body,
                    serde_json::json!({"metadata": {"annotations": {NODE_CHASSIS: "n1"}}}),
                    "only our keys, nothing else"
                );
                send.send_response(json_response(
                    200,
                    node(serde_json::json!({"other": "kept", NODE_CHASSIS: "n1"})),
                ));
                // 2. Already there: the GET only.
                let (req, send) = next(&mut handle).await;
                assert_eq!(req.method(), "GET");
                send.send_response(json_response(
                    200,
                    node(serde_json::json!({NODE_CHASSIS: "n1"})),
                ));
                // 3. A missing node is an error, and nothing is patched.
                let (req, send) = next(&mut handle).await;
                assert_eq!(req.method(), "GET");
                send.send_response(json_response(
                    404,
                    serde_json::json!({"apiVersion": "v1", "kind": "Status", "status": "Failure",
                        "message": "nodes \"n1\" not found", "reason": "NotFound", "code": 404}),
                ));
                handle
            });
            assert_eq!(p.publish(&want).await.unwrap(), Published::Written);
            assert_eq!(p.publish(&want).await.unwrap(), Published::Unchanged);
            let e = p.publish(&want).await.unwrap_err();
            assert!(e.to_string().contains("does not exist"), "{e}");
            // (A PATCH after the 404 would have found no server and failed
            // with another message.)
            server.await.expect("server side assertions");
        }
    }
}
