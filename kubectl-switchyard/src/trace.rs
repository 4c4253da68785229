//! `trace`: the microflow through `ovn-trace`, and its summary.

use std::path::PathBuf;

use tokio::process::Command;

use crate::cluster::ClusterView;
use crate::error::{Error, Result};
use crate::flow::{self, Microflow, Protocol, Target};
use crate::summary::{self, Names, Summary};

/// Where OVN is and how to run its tracer.
#[derive(Clone, Debug)]
pub struct OvnAccess {
    pub nb: String,
    pub sb: String,
    /// The `ovn-trace` program.
    pub ovn_trace: PathBuf,
}

/// What a trace found.
#[derive(Clone, Debug)]
pub struct Traced {
    pub microflow: Microflow,
    /// `ovn-trace`'s detailed output.
    pub raw: String,
    pub summary: Summary,
}

/// The `ovn-trace` arguments for a microflow: the SB database, one
/// `--ct=new` per connection tracking step (a new connection), the backend
/// a load balancer picks.
pub fn ovn_trace_args(sb: &str, m: &Microflow) -> Vec<String> {
    let mut args = vec![format!("--db={sb}")];
    for _ in 0..8 {
        args.push("--ct=new".into());
    }
    if let Some(lb) = m.lb_dst {
        args.push(format!("--lb-dst={lb}"));
    }
    args.push(m.datapath.clone());
    args.push(m.flow.clone());
    args
}

/// Runs `ovn-trace` on the microflow and returns its detailed output.
pub async fn run_ovn_trace(ovn: &OvnAccess, m: &Microflow) -> Result<String> {
    let program = ovn.ovn_trace.display().to_string();
    let out = Command::new(&ovn.ovn_trace)
        .args(ovn_trace_args(&ovn.sb, m))
        .output()
        .await
        .map_err(|source| Error::Spawn {
            program: program.clone(),
            source,
        })?;
    if !out.status.success() {
        return Err(Error::Tool {
            program,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Resolves `src` and `dst`, traces, and summarises with the NB rows the
/// trace's logical flows came from.
pub async fn trace(
    cluster: &dyn ClusterView,
    ovn: &OvnAccess,
    src: &Target,
    dst: &Target,
    port: Option<u16>,
    protocol: Option<Protocol>,
) -> Result<Traced> {
    let microflow = flow::microflow(cluster, src, dst, port, protocol).await?;
    let raw = run_ovn_trace(ovn, &microflow).await?;
    let names = Names::read(&ovn.nb, &ovn.sb).await?;
    let summary = summary::summarize(&raw, &names);
    Ok(Traced {
        microflow,
        raw,
        summary,
    })
}
