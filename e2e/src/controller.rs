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
