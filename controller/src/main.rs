//! `switchyard-controller`: flags/environment/file into a [`Config`], the
//! kube-rs API client, and the controller until SIGTERM or Ctrl-C.

use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use switchyard_controller::config::Args;
use switchyard_controller::k8s::kube::KubeCluster;
use switchyard_controller::Controller;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let config = Args::parse().into_config().context("configuration")?;
    tracing::info!(?config, "starting");
    let client = kube::Client::try_default()
        .await
        .context("Kubernetes client (in-cluster or kubeconfig)")?;
    let cluster = Arc::new(KubeCluster::new(
        client,
        "switchyard-controller",
        &config.leader_election.identity,
    ));
    let shutdown = async {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot watch SIGTERM; Ctrl-C only");
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        tracing::info!("shutting down");
    };
    Controller::new(config, cluster)
        .run(shutdown)
        .await
        .context("controller")?;
    Ok(())
}
