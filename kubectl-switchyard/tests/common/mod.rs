//! A Switchyard cluster for the plugin's tests: real OVN central (NB, SB,
//! northd), the in-memory API server, a real controller writing NB; and
//! [`MemoryView`], the plugin's Kubernetes boundary over the in-memory
//! server.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, Node, Pod, PodCondition, PodIP, PodStatus, Service, ServicePort,
    ServiceSpec,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube_memory::MemoryCluster;
use ovn_testbed::OvnCentral;
use switchyard_api::{annotations, PodNetwork};
use switchyard_controller::k8s::{Kind, Object};
use switchyard_controller::{Config, Controller};
use switchyard_kubectl::cluster::ClusterView;
use switchyard_kubectl::Result;

pub const T: Duration = Duration::from_secs(60);

/// The plugin's view of the in-memory API server.
pub struct MemoryView(pub Arc<MemoryCluster>);

impl ClusterView for MemoryView {
    fn nodes(&self) -> BoxFuture<'_, Result<Vec<Node>>> {
        Box::pin(async move { Ok(self.0.nodes()) })
    }
    fn pods(&self) -> BoxFuture<'_, Result<Vec<Pod>>> {
        Box::pin(async move { Ok(self.0.pods()) })
    }
    fn pod<'a>(&'a self, ns: &'a str, name: &'a str) -> BoxFuture<'a, Result<Option<Pod>>> {
        Box::pin(async move { Ok(self.0.pod(ns, name)) })
    }
    fn services(&self) -> BoxFuture<'_, Result<Vec<Service>>> {
        Box::pin(async move {
            Ok(self
                .0
                .list(Kind::Service)
                .into_iter()
                .filter_map(|o| match o {
                    Object::Service(s) => Some(*s),
                    _ => None,
                })
                .collect())
        })
    }
    fn service<'a>(&'a self, ns: &'a str, name: &'a str) -> BoxFuture<'a, Result<Option<Service>>> {
        Box::pin(async move { Ok(self.0.service(ns, name)) })
    }
    fn endpoint_slices<'a>(
        &'a self,
        ns: &'a str,
        service: &'a str,
    ) -> BoxFuture<'a, Result<Vec<EndpointSlice>>> {
        Box::pin(async move { Ok(self.0.endpoint_slices(ns, service)) })
    }
    fn lease<'a>(&'a self, ns: &'a str, name: &'a str) -> BoxFuture<'a, Result<Option<Lease>>> {
        Box::pin(async move { Ok(self.0.lease(ns, name)) })
    }
}

/// Polls `cond` until it is Ok or `timeout` passes; panics with the last
/// error.
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = std::result::Result<(), String>>,
{
    let end = Instant::now() + timeout;
    loop {
        match cond().await {
            Ok(()) => return,
            Err(e) if Instant::now() >= end => {
                panic!("timed out after {timeout:?} waiting for {what}: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

pub fn annotation(p: &Pod) -> Option<PodNetwork> {
    let text = p
        .metadata
        .annotations
        .as_ref()?
        .get(annotations::POD_NETWORK)?;
    PodNetwork::parse(text).ok()
}

/// A running controller and the cluster it serves.
pub struct Cluster {
    pub central: OvnCentral,
    pub memory: Arc<MemoryCluster>,
    pub config: Config,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<switchyard_controller::Result<()>>>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// OVN central and a controller (leader election on, as deployed).
    pub fn start() -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let central = OvnCentral::start(dir.path()).expect("OVN central");
        let mut config = Config {
            nb_remote: central.nb_remote(),
            http_addr: None,
            ..Config::default()
        };
        config.leader_election.enabled = true;
        config.leader_election.identity = "controller-0".into();
        let memory = MemoryCluster::new();
        memory.set_service_cidrs(&config.service_cidrs);
        let controller = Controller::new(config.clone(), memory.client("switchyard-controller"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(controller.run(async {
            let _ = stopped.await;
        }));
        Cluster {
            central,
            memory,
            config,
            stop: Some(stop),
            task: Some(task),
            _dir: dir,
        }
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let r = tokio::time::timeout(Duration::from_secs(20), t)
                .await
                .expect("controller stops within 20 s");
            r.expect("join").expect("controller result");
        }
    }

    /// A pod labelled `pod=<name>`, serving port 80; waits for its
    /// annotation and reports it Running and Ready with those addresses.
    pub async fn ready_pod(&self, ns: &str, name: &str, node: &str) {
        let mut p = kube_memory::pod(ns, name, node);
        p.metadata.labels = Some(BTreeMap::from([("pod".to_string(), name.to_string())]));
        if let Some(spec) = p.spec.as_mut() {
            spec.containers = vec![Container {
                name: "c".into(),
                ports: Some(vec![ContainerPort {
                    name: Some("http".into()),
                    container_port: 80,
                    ..Default::default()
                }]),
                ..Default::default()
            }];
        }
        self.memory.apply_pod(p);
        let m = self.memory.clone();
        eventually(T, "pod annotated", || {
            let found = m.pod(ns, name).and_then(|p| annotation(&p));
            async move {
                found
                    .map(|_| ())
                    .ok_or(format!("{ns}/{name} not annotated"))
            }
        })
        .await;
        let p = self.memory.pod(ns, name).expect("pod");
        let net = annotation(&p).expect("annotated");
        let ips: Vec<String> = net.ips.iter().map(|n| n.addr().to_string()).collect();
        let status = PodStatus {
            phase: Some("Running".into()),
            pod_ips: Some(ips.iter().map(|ip| PodIP { ip: ip.clone() }).collect()),
            pod_ip: ips.first().cloned(),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: "True".into(),
                ..Default::default()
            }]),
            ..Default::default()
        };
        let uid = p.metadata.uid.unwrap_or_default();
        assert!(self.memory.update_pod_status(ns, name, &uid, status));
    }

    /// A ClusterIP Service `ns/name` on port 80 selecting `pod=<target>`.
    pub fn service(&self, ns: &str, name: &str, target: &str) {
        self.memory.apply_service(Service {
            metadata: ObjectMeta {
                namespace: Some(ns.into()),
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                selector: Some(BTreeMap::from([("pod".to_string(), target.to_string())])),
                ports: Some(vec![ServicePort {
                    name: Some("http".into()),
                    protocol: Some("TCP".into()),
                    port: 80,
                    target_port: Some(IntOrString::String("http".into())),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            status: None,
        });
    }

    pub fn policy(&self, ns: &str, name: &str, spec: serde_json::Value) {
        let np: NetworkPolicy = serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": ns, "name": name},
            "spec": spec,
        }))
        .expect("a NetworkPolicy");
        self.memory.apply(np);
    }
}
