//! The sandbox's OVN central: NB and SB either standalone (optionally
//! served over TLS, `up --tls`) or as RAFT clusters (`up --raft N`), and
//! ovn-northd; with the remotes each kind of client is given, and the
//! faults that can be injected into them.

use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use ovn_testbed::{
    CentralOptions, ClusteredDb, Northd, OvnCentral, Schema, ServerOptions, TlsFiles,
};

use crate::kubelet::lock;

/// NB or SB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Db {
    Nb,
    Sb,
}

impl std::str::FromStr for Db {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Db> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "nb" => Db::Nb,
            "sb" => Db::Sb,
            other => bail!("database must be nb or sb, not {other:?}"),
        })
    }
}

/// How to serve the databases.
#[derive(Clone, Debug, Default)]
pub struct CentralShape {
    /// Certificates, and the address the TLS listeners bind.
    pub tls: Option<(TlsFiles, String)>,
    /// Members per RAFT cluster; standalone when `None`.
    pub raft: Option<usize>,
}

pub struct Central {
    // Declared first: dropped before the databases.
    northd: Mutex<Northd>,
    standalone: Option<OvnCentral>,
    nb_cluster: Option<Mutex<ClusteredDb>>,
    sb_cluster: Option<Mutex<ClusteredDb>>,
    /// What the controller and ovn-controllers are given.
    nb_client: String,
    sb_client: String,
    /// What the sandbox's own tools use (unix sockets, no certificates).
    nb_local: String,
    sb_local: String,
}

impl Central {
    pub fn start(dir: &Path, shape: &CentralShape) -> Result<Central> {
        match shape.raft {
            None => Self::start_standalone(dir, shape),
            Some(n) => {
                if n == 0 || n % 2 == 0 {
                    bail!("--raft needs an odd number of members, not {n}");
                }
                let opts = ServerOptions {
                    tls: shape.tls.as_ref().map(|t| t.0.clone()),
                    ssl_addr: shape.tls.as_ref().map(|t| t.1.clone()),
                    ..ServerOptions::default()
                };
                let nb = ClusteredDb::start_with(dir, Schema::Northbound, n, opts.clone())
                    .context("starting the NB cluster")?;
                let sb = ClusteredDb::start_with(dir, Schema::Southbound, n, opts)
                    .context("starting the SB cluster")?;
                // Unix sockets reach into the nodes' namespaces; TCP on
                // 127.0.0.1 would not.
                let unix = |c: &ClusteredDb| {
                    (0..c.len())
                        .map(|i| c.member(i).unix_remote())
                        .collect::<Vec<_>>()
                        .join(",")
                };
                let (nb_remotes, sb_remotes) = (unix(&nb), unix(&sb));
                let northd =
                    Northd::start(dir, &nb_remotes, &sb_remotes).context("starting ovn-northd")?;
                let (nb_client, sb_client) = if shape.tls.is_some() {
                    (
                        nb.ssl_remotes().context("NB TLS remotes")?,
                        sb.ssl_remotes().context("SB TLS remotes")?,
                    )
                } else {
                    (nb_remotes.clone(), sb_remotes.clone())
                };
                Ok(Central {
                    northd: Mutex::new(northd),
                    standalone: None,
                    nb_cluster: Some(Mutex::new(nb)),
                    sb_cluster: Some(Mutex::new(sb)),
                    nb_client,
                    sb_client,
                    nb_local: nb_remotes,
                    sb_local: sb_remotes,
                })
            }
        }
    }

    fn start_standalone(dir: &Path, shape: &CentralShape) -> Result<Central> {
        let central = OvnCentral::start_with(
            dir,
            CentralOptions {
                tcp: false,
                northd: false,
                tls: shape.tls.as_ref().map(|t| t.0.clone()),
                ssl_addr: shape.tls.as_ref().map(|t| t.1.clone()),
            },
        )?;
        let (nb_local, sb_local) = (central.nb_remote(), central.sb_remote());
        let (nb_client, sb_client) = if shape.tls.is_some() {
            (
                central.nb_ssl_remote().context("NB TLS remote")?,
                central.sb_ssl_remote().context("SB TLS remote")?,
            )
        } else {
            (nb_local.clone(), sb_local.clone())
        };
        let northd = Northd::start(dir, &nb_local, &sb_local).context("starting ovn-northd")?;
        Ok(Central {
            northd: Mutex::new(northd),
            standalone: Some(central),
            nb_cluster: None,
            sb_cluster: None,
            nb_client,
            sb_client,
            nb_local,
            sb_local,
        })
    }

    /// The standalone databases, unless they are clusters.
    pub fn standalone(&self) -> Option<&OvnCentral> {
        self.standalone.as_ref()
    }

    /// The NB remote(s) the controller connects to.
    pub fn nb_client_remote(&self) -> &str {
        &self.nb_client
    }

    /// The SB remote(s) every ovn-controller connects to.
    pub fn sb_client_remote(&self) -> &str {
        &self.sb_client
    }

    /// NB as the sandbox's tools reach it (unix sockets).
    pub fn nb_local_remote(&self) -> &str {
        &self.nb_local
    }

    /// SB as the sandbox's tools reach it (unix sockets).
    pub fn sb_local_remote(&self) -> &str {
        &self.sb_local
    }

    /// `ovn-nbctl` (or `ovn-sbctl`) against the local remotes.
    pub fn ctl(&self, db: Db, args: &[&str]) -> Result<String> {
        let (program, remote) = match db {
            Db::Nb => ("ovn-nbctl", &self.nb_local),
            Db::Sb => ("ovn-sbctl", &self.sb_local),
        };
        let mut cmd = Command::new(program);
        cmd.arg(format!("--db={remote}"))
            .arg("--timeout=10")
            .args(args);
        crate::util::run(&mut cmd)
    }

    /// Pids of northd and of every database server.
    pub fn pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = lock(&self.northd).pid().into_iter().collect();
        if let Some(c) = &self.standalone {
            pids.extend(c.nb.pid());
            pids.extend(c.sb.pid());
        }
        for cluster in [&self.nb_cluster, &self.sb_cluster].into_iter().flatten() {
            let cluster = lock(cluster);
            pids.extend((0..cluster.len()).filter_map(|i| cluster.member(i).pid()));
        }
        pids
    }

    pub fn northd_pid(&self) -> Option<u32> {
        lock(&self.northd).pid()
    }

    pub fn kill_northd(&self) {
        lock(&self.northd).kill();
    }

    pub fn restart_northd(&self) -> Result<()> {
        Ok(lock(&self.northd).restart()?)
    }

    fn cluster(&self, db: Db) -> Result<&Mutex<ClusteredDb>> {
        match db {
            Db::Nb => self.nb_cluster.as_ref(),
            Db::Sb => self.sb_cluster.as_ref(),
        }
        .context("the databases are not clustered (start the sandbox with --raft N)")
    }

    /// Members per cluster (1 when standalone).
    pub fn members(&self) -> usize {
        self.nb_cluster.as_ref().map_or(1, |c| lock(c).len())
    }

    /// The member that leads `db`'s cluster now, waiting up to `timeout`
    /// for one.
    pub fn leader(&self, db: Db, timeout: Duration) -> Result<usize> {
        Ok(lock(self.cluster(db)?).wait_leader(timeout)?)
    }

    /// SIGKILLs member `i` of `db`'s cluster.
    pub fn kill_member(&self, db: Db, i: usize) -> Result<()> {
        let mut c = lock(self.cluster(db)?);
        if i >= c.len() {
            bail!("no member {i}: the cluster has {}", c.len());
        }
        c.kill(i);
        Ok(())
    }

    /// Starts member `i` of `db`'s cluster again on its files.
    pub fn restart_member(&self, db: Db, i: usize) -> Result<()> {
        let mut c = lock(self.cluster(db)?);
        if i >= c.len() {
            bail!("no member {i}: the cluster has {}", c.len());
        }
        Ok(c.restart(i)?)
    }
}
