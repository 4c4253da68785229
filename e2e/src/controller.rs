//! The real Switchyard controller, in-process, on a runtime of its own so
//! that "killing" it drops every task it spawned (its NB connection, its
//! patch requests), as a crash would.

use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::{Context, Result};
use kube_memory::MemoryCluster;
use switchyard_controller::{Config, Controller, Metrics};
use tokio::sync::oneshot;

pub struct ControllerHandle {
    kill: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    pub metrics: Metrics,
}

impl ControllerHandle {
    pub fn start(config: Config, cluster: Arc<MemoryCluster>) -> Result<ControllerHandle> {
        let controller = Controller::new(config, cluster);
        let metrics = controller.metrics();
        let (kill, killed) = oneshot::channel::<()>();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("controller")
            .enable_all()
            .build()
            .context("building the controller's runtime")?;
        let thread = std::thread::Builder::new()
            .name("controller-main".into())
            .spawn(move || {
                rt.block_on(async move {
                    tokio::select! {
                        r = controller.run(std::future::pending()) => {
                            if let Err(e) = r {
                                tracing::error!("controller stopped: {e}");
                            }
                        }
                        _ = killed => {}
                    }
                });
                rt.shutdown_background();
            })?;
        Ok(ControllerHandle {
            kill: Some(kill),
            thread: Some(thread),
            metrics,
        })
    }

    /// Stops the controller at once, dropping everything in flight.
    pub fn kill(&mut self) {
        if let Some(k) = self.kill.take() {
            let _ = k.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }
}

impl Drop for ControllerHandle {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One controller, or several replicas sharing one Lease (the sandbox's
/// `controllers` option): only the Lease holder works.
pub struct ControllerSet {
    configs: Vec<Config>,
    handles: Vec<Option<ControllerHandle>>,
    cluster: Arc<MemoryCluster>,
}

/// Lease timings for sandbox replicas: a standby takes over within ~4 s of
/// the leader's death.
fn replica_config(base: &Config, i: usize) -> Config {
    let mut c = base.clone();
    let le = &mut c.leader_election;
    le.enabled = true;
    le.identity = format!("controller-{i}");
    le.lease_duration = std::time::Duration::from_secs(3);
    le.renew_deadline = std::time::Duration::from_secs(2);
    le.retry_period = std::time::Duration::from_millis(500);
    c
}

impl ControllerSet {
    /// Starts `replicas` controllers (leader election on when more than
    /// one).
    pub fn start(
        base: Config,
        replicas: usize,
        cluster: Arc<MemoryCluster>,
    ) -> Result<ControllerSet> {
        let configs: Vec<Config> = if replicas <= 1 {
            vec![base]
        } else {
            (0..replicas).map(|i| replica_config(&base, i)).collect()
        };
        let mut set = ControllerSet {
            handles: configs.iter().map(|_| None).collect(),
            configs,
            cluster,
        };
        for i in 0..set.len() {
            set.restart(i)?;
        }
        Ok(set)
    }

    pub fn len(&self) -> usize {
        self.configs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.configs.is_empty()
    }

    /// Kills replica `i` (no-op when it is not running).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.handles.get_mut(i).and_then(Option::take) {
            c.kill();
        }
    }

    /// Kills every replica.
    pub fn kill_all(&mut self) {
        for i in 0..self.len() {
            self.kill(i);
        }
    }

    /// Starts replica `i` again (killing it first if it runs).
    pub fn restart(&mut self, i: usize) -> Result<()> {
        self.kill(i);
        let config = self.configs.get(i).context("no such controller")?.clone();
        self.handles[i] = Some(ControllerHandle::start(config, self.cluster.clone())?);
        Ok(())
    }

    /// The replica whose identity holds the Lease, when replicas elect.
    pub fn leader(&self) -> Option<usize> {
        let le = &self.configs.first()?.leader_election;
        if !le.enabled {
            return Some(0);
        }
        let lease = self.cluster.lease(&le.namespace, &le.lease_name)?;
        let holder = lease.spec?.holder_identity?;
        self.configs
            .iter()
            .position(|c| c.leader_election.identity == holder)
    }

    /// The metrics of the leader (or of the only replica).
    pub fn metrics(&self) -> Option<Metrics> {
        let i = self.leader()?;
        self.handles.get(i)?.as_ref().map(|h| h.metrics.clone())
    }
}
