//! Switchyard's cluster controller: Kubernetes objects into OVN northbound
//! state, and pod and node annotations for the node agent.
//!
//! Data flow: [`k8s::Cluster`] watches → [`model`] (typed, indexed stores)
//! → [`alloc`] (node subnets, pod addresses; [`annotate`] writes them onto
//! the objects) → [`translate`] (one pure translator per kind of owner:
//! desired rows) → [`engine::store`] (rows per owner, commit groups) →
//! [`engine::writer`] (the [`nb::diff`] against the NB replica, batched
//! transactions). [`engine`] runs it all on one task while leading.
//!
//! Run it in-process (tests, the e2e sandbox) with the in-memory API server
//! of the `kube-memory` crate (anything that implements [`k8s::Cluster`]):
//!
//! ```no_run
//! # async fn f() -> switchyard_controller::Result<()> {
//! use switchyard_controller::{Config, Controller};
//! let cluster = kube_memory::MemoryCluster::new();
//! let mut config = Config::default();
//! config.nb_remote = "unix:/tmp/nb.sock".into();
//! config.http_addr = None;
//! let controller = Controller::new(config, cluster.clone());
//! let metrics = controller.metrics();
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let task = tokio::spawn(controller.run(async { let _ = stopped.await; }));
//! // ... cluster.apply_node(..), cluster.apply_pod(..), metrics.health.synced() ...
//! let _ = stop.send(());
//! task.await.expect("join")?;
//! # Ok(()) }
//! ```

use std::future::Future;
use std::sync::Arc;

use tokio::sync::watch;

pub mod admin_status;
pub mod alloc;
pub mod annotate;
pub mod config;
pub mod engine;
pub mod error;
pub mod http;
pub mod ipam;
pub mod k8s;
pub mod lb_ips;
pub mod leader;
pub mod metrics;
pub mod model;
pub mod nb;
pub mod outbox;
pub mod translate;

pub use config::Config;
pub use error::{Error, Result};
pub use k8s::Cluster;
pub use metrics::Metrics;

/// The controller: configuration, a Kubernetes API and its metrics.
pub struct Controller {
    config: Config,
    cluster: Arc<dyn Cluster>,
    metrics: Metrics,
}

impl Controller {
    pub fn new(config: Config, cluster: Arc<dyn Cluster>) -> Self {
        Controller {
            config,
            cluster,
            metrics: Metrics::new(),
        }
    }

    /// The metrics (and health flags) this controller updates; clone it
    /// before [`Controller::run`] to watch a running controller.
    pub fn metrics(&self) -> Metrics {
        self.metrics.clone()
    }

    /// Runs until `shutdown` completes: serves HTTP when configured, takes
    /// part in leader election when enabled, and reconciles while leading.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<()> {
        self.config.validate()?;
        let (tx, rx) = watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = tx.send(true);
        });
        let http = match self.config.http_addr {
            Some(addr) => Some(http::serve(addr, self.metrics.clone(), rx.clone()).await?),
            None => None,
        };
        let result = if self.config.leader_election.enabled {
            let (config, cluster, metrics) = (
                self.config.clone(),
                self.cluster.clone(),
                self.metrics.clone(),
            );
            leader::run_elected(
                self.cluster.clone(),
                self.config.leader_election.clone(),
                self.metrics.clone(),
                rx.clone(),
                move |stop| engine::lead(config.clone(), cluster.clone(), metrics.clone(), stop),
            )
            .await
        } else {
            self.metrics.leader.set(1);
            engine::lead(
                self.config.clone(),
                self.cluster.clone(),
                self.metrics.clone(),
                rx.clone(),
            )
            .await
        };
        if let Some((_, task)) = http {
            let mut rx = rx;
            if !*rx.borrow() {
                // The controller failed on its own; the HTTP server goes too.
                task.abort();
            } else {
                let _ = rx.changed().await;
                let _ = task.await;
            }
        }
        result
    }
}

/// Runs a controller until `shutdown` completes; see [`Controller`].
pub async fn run(
    config: Config,
    cluster: Arc<dyn Cluster>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    Controller::new(config, cluster).run(shutdown).await
}
