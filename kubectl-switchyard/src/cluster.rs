//! The Kubernetes objects the tool reads, behind a small trait: the binary
//! uses kube-rs ([`KubeView`]); tests use the in-memory API server.

use futures::future::BoxFuture;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::ListParams;
use kube::Api;

use crate::error::Result;

/// Read-only access to the objects `status` and `trace` need.
pub trait ClusterView: Send + Sync {
    fn nodes(&self) -> BoxFuture<'_, Result<Vec<Node>>>;
    /// Pods of every namespace.
    fn pods(&self) -> BoxFuture<'_, Result<Vec<Pod>>>;
    fn pod<'a>(&'a self, namespace: &'a str, name: &'a str) -> BoxFuture<'a, Result<Option<Pod>>>;
    /// Services of every namespace.
    fn services(&self) -> BoxFuture<'_, Result<Vec<Service>>>;
    fn service<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Service>>>;
    /// The EndpointSlices of one Service (label `kubernetes.io/service-name`).
    fn endpoint_slices<'a>(
        &'a self,
        namespace: &'a str,
        service: &'a str,
    ) -> BoxFuture<'a, Result<Vec<EndpointSlice>>>;
    fn lease<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Lease>>>;
}

/// [`ClusterView`] over kube-rs (the user's kubeconfig).
pub struct KubeView {
    client: kube::Client,
}

impl KubeView {
    pub fn new(client: kube::Client) -> Self {
        KubeView { client }
    }
}

impl ClusterView for KubeView {
    fn nodes(&self) -> BoxFuture<'_, Result<Vec<Node>>> {
        Box::pin(async move {
            let api: Api<Node> = Api::all(self.client.clone());
            Ok(api.list(&ListParams::default()).await?.items)
        })
    }

    fn pods(&self) -> BoxFuture<'_, Result<Vec<Pod>>> {
        Box::pin(async move {
            let api: Api<Pod> = Api::all(self.client.clone());
            Ok(api.list(&ListParams::default()).await?.items)
        })
    }

    fn pod<'a>(&'a self, namespace: &'a str, name: &'a str) -> BoxFuture<'a, Result<Option<Pod>>> {
        Box::pin(async move {
            let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
            Ok(api.get_opt(name).await?)
        })
    }

    fn services(&self) -> BoxFuture<'_, Result<Vec<Service>>> {
        Box::pin(async move {
            let api: Api<Service> = Api::all(self.client.clone());
            Ok(api.list(&ListParams::default()).await?.items)
        })
    }

    fn service<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Service>>> {
        Box::pin(async move {
            let api: Api<Service> = Api::namespaced(self.client.clone(), namespace);
            Ok(api.get_opt(name).await?)
        })
    }

    fn endpoint_slices<'a>(
        &'a self,
        namespace: &'a str,
        service: &'a str,
    ) -> BoxFuture<'a, Result<Vec<EndpointSlice>>> {
        Box::pin(async move {
            let api: Api<EndpointSlice> = Api::namespaced(self.client.clone(), namespace);
            let lp = ListParams::default().labels(&format!("kubernetes.io/service-name={service}"));
            Ok(api.list(&lp).await?.items)
        })
    }

    fn lease<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Lease>>> {
        Box::pin(async move {
            let api: Api<Lease> = Api::namespaced(self.client.clone(), namespace);
            Ok(api.get_opt(name).await?)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{Request, Response, StatusCode};
    use kube::client::Body;
    use std::time::Duration;
    use tower_test::mock;

    type Handle = mock::Handle<Request<Body>, Response<Body>>;

    fn json_response(code: u16, v: serde_json::Value) -> Response<Body> {
        Response::builder()
            .status(StatusCode::from_u16(code).expect("code"))
            .header("content-type", "application/json")
            .body(Body::from(serde_json::to_vec(&v).expect("json")))
            .expect("response")
    }

    async fn next(handle: &mut Handle) -> (Request<Body>, mock::SendResponse<Response<Body>>) {
        tokio::time::timeout(Duration::from_secs(10), handle.next_request())
            .await
            .expect("no request within 10 s")
            .expect("service gone")
    }

    fn not_found() -> Response<Body> {
        json_response(
            404,
            serde_json::json!({"apiVersion": "v1", "kind": "Status", "status": "Failure",
                               "reason": "NotFound", "code": 404, "message": "not found"}),
        )
    }

    #[tokio::test]
    async fn reads_are_the_requests_kubectl_would_send() {
        let (svc, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
        let view = KubeView::new(kube::Client::new(svc, "default"));
        let server = tokio::spawn(async move {
            // A pod by name; absent is None, not an error.
            let (req, send) = next(&mut handle).await;
            assert_eq!(req.method(), "GET");
            assert_eq!(req.uri().path(), "/api/v1/namespaces/x/pods/a");
            send.send_response(not_found());
            // A Service's EndpointSlices, by the service-name label.
            let (req, send) = next(&mut handle).await;
            assert_eq!(
                req.uri().path(),
                "/apis/discovery.k8s.io/v1/namespaces/x/endpointslices"
            );
            let query = req.uri().query().unwrap_or_default().to_string();
            assert!(
                query.contains("labelSelector=kubernetes.io%2Fservice-name%3Dweb"),
                "{query}"
            );
            send.send_response(json_response(
                200,
                serde_json::json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSliceList",
                    "metadata": {"resourceVersion": "1"},
                    "items": [{"metadata": {"name": "web-1", "namespace": "x"},
                               "addressType": "IPv4", "endpoints": []}]}),
            ));
            // The controller's Lease.
            let (req, send) = next(&mut handle).await;
            assert_eq!(
                req.uri().path(),
                "/apis/coordination.k8s.io/v1/namespaces/switchyard/leases/switchyard-controller"
            );
            send.send_response(json_response(
                200,
                serde_json::json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": "switchyard-controller", "namespace": "switchyard"},
                    "spec": {"holderIdentity": "controller-0"}}),
            ));
            // Nodes: a server error is an error.
            let (req, send) = next(&mut handle).await;
            assert_eq!(req.uri().path(), "/api/v1/nodes");
            send.send_response(json_response(
                500,
                serde_json::json!({"apiVersion": "v1", "kind": "Status", "status": "Failure",
                                   "reason": "InternalError", "code": 500, "message": "boom"}),
            ));
        });
        assert!(view.pod("x", "a").await.expect("pod").is_none());
        let slices = view.endpoint_slices("x", "web").await.expect("slices");
        assert_eq!(slices.len(), 1);
        let lease = view
            .lease("switchyard", "switchyard-controller")
            .await
            .expect("lease")
            .expect("present");
        assert_eq!(
            lease.spec.and_then(|s| s.holder_identity).as_deref(),
            Some("controller-0")
        );
        assert!(view.nodes().await.is_err());
        server.await.expect("server");
    }
}
