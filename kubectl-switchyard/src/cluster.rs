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
