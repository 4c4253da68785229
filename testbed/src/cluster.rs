//! A clustered (RAFT) database: several `ovsdb-server`s, one per member.
//!
//! Member 0 creates the cluster (`ovsdb-tool create-cluster`), the others
//! join it (`ovsdb-tool join-cluster`); every member also serves clients on
//! its own unix socket and TCP port. RAFT addresses are baked into the
//! database files, so their ports must be chosen before any server runs; if
//! another process grabs one in between, the whole cluster is rebuilt with
//! fresh ports.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::process::{absolute_dir, free_port, run};
use crate::server::{OvsdbServer, Schema, ServerOptions};
use crate::wait::wait_until;

/// How long a new cluster may take to connect and elect a leader.
const CLUSTER_TIMEOUT: Duration = Duration::from_secs(30);

/// How often the cluster is rebuilt when a RAFT port was taken.
const PORT_ATTEMPTS: usize = 3;

/// An n-member clustered database. Dropping it stops every member.
#[derive(Debug)]
pub struct ClusteredDb {
    schema: Schema,
    members: Vec<OvsdbServer>,
    raft_ports: Vec<u16>,
}

impl ClusteredDb {
    /// Creates and starts a cluster of `members` servers in `dir` (files
    /// `DIR/{nb,sb,ovs}-cN.*`). Returns once every member has joined and
    /// all agree on a leader.
    pub fn start(dir: &Path, schema: Schema, members: usize) -> io::Result<Self> {
        Self::start_with(dir, schema, members, ServerOptions::default())
    }

    /// [`start`](Self::start) with every member also given `opts`' TLS
    /// listener and extra arguments (TCP is always on).
    pub fn start_with(
        dir: &Path,
        schema: Schema,
        members: usize,
        opts: ServerOptions,
    ) -> io::Result<Self> {
        if members == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a cluster needs at least one member",
            ));
        }
        let dir = absolute_dir(dir)?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match Self::try_start(&dir, schema, members, &opts) {
                Err(e) if e.kind() == io::ErrorKind::AddrInUse && attempt < PORT_ATTEMPTS => {}
                result => return result,
            }
        }
    }

    fn try_start(dir: &Path, schema: Schema, n: usize, opts: &ServerOptions) -> io::Result<Self> {
        let raft_ports = (0..n)
            .map(|_| free_port())
            .collect::<io::Result<Vec<u16>>>()?;
        let raft_addr = |i: usize| format!("tcp:127.0.0.1:{}", raft_ports[i]);
        let name = |i: usize| format!("{}-c{i}", schema.short_name());
        let db_path = |i: usize| dir.join(format!("{}.db", name(i)));

        for i in 0..n {
            // Left over from an attempt that lost a port race.
            let _ = fs::remove_file(db_path(i));
            let mut tool = Command::new("ovsdb-tool");
            if i == 0 {
                tool.arg("create-cluster")
                    .arg(db_path(0))
                    .arg(schema.path())
                    .arg(raft_addr(0));
            } else {
                tool.arg("join-cluster")
                    .arg(db_path(i))
                    .arg(schema.db_name())
                    .arg(raft_addr(i))
                    .args((0..n).filter(|&j| j != i).map(raft_addr));
            }
            run(tool)?;
        }

        let opts = ServerOptions {
            tcp: true,
            ..opts.clone()
        };
        let mut members = Vec::with_capacity(n);
        for i in 0..n {
            members.push(OvsdbServer::serve(
                dir,
                &name(i),
                schema.db_name(),
                db_path(i),
                &opts,
            )?);
        }
        let cluster = ClusteredDb {
            schema,
            members,
            raft_ports,
        };
        cluster.wait_formed()?;
        Ok(cluster)
    }

    /// Waits until every member reports "cluster member" and knows a leader.
    fn wait_formed(&self) -> io::Result<()> {
        let result = wait_until(
            CLUSTER_TIMEOUT,
            "all members to join and agree on a leader",
            || {
                if let Some(port) = self.raft_port_conflict() {
                    return Some(Err(port));
                }
                let statuses: Vec<String> = self
                    .members
                    .iter()
                    .map(|m| m.appctl(&["cluster/status", self.schema.db_name()]))
                    .collect::<io::Result<_>>()
                    .ok()?;
                let formed = statuses.iter().all(|s| {
                    s.contains("Status: cluster member") && !s.contains("Leader: unknown")
                }) && statuses.iter().any(|s| s.contains("Role: leader"));
                formed.then_some(Ok(()))
            },
        );
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(port)) => Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("RAFT port {port} is already in use"),
            )),
            Err(msg) => Err(io::Error::other(format!("{msg}\n{}", self.describe()))),
        }
    }

    /// A RAFT port some member failed to bind.
    fn raft_port_conflict(&self) -> Option<u16> {
        self.members.iter().find_map(|m| {
            let log = fs::read_to_string(m.log_path()).unwrap_or_default();
            self.raft_ports
                .iter()
                .copied()
                .find(|p| log.contains(&format!("|{p}:127.0.0.1: bind: Address already in use")))
        })
    }

    /// Every member's cluster status and log tail, for error messages.
    fn describe(&self) -> String {
        let mut out = String::new();
        for (i, m) in self.members.iter().enumerate() {
            let status = m
                .appctl(&["cluster/status", self.schema.db_name()])
                .unwrap_or_else(|e| e.to_string());
            out.push_str(&format!(
                "--- member {i} cluster/status:\n{status}\n--- member {i} log {}:\n{}\n",
                m.log_path().display(),
                crate::process::file_tail(&m.log_path(), 15)
            ));
        }
        out
    }

    /// The client remotes of all members, comma-separated, as OVSDB clients
    /// take them: `tcp:127.0.0.1:P1,tcp:127.0.0.1:P2,...`.
    pub fn remotes(&self) -> String {
        (0..self.members.len())
            .map(|i| self.member_remote(i))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The TLS remotes of all members, comma-separated, when they serve TLS.
    pub fn ssl_remotes(&self) -> Option<String> {
        self.members
            .iter()
            .map(OvsdbServer::ssl_remote)
            .collect::<Option<Vec<_>>>()
            .map(|r| r.join(","))
    }

    /// The client TCP remote of member `i`. Panics if `i` is out of range.
    pub fn member_remote(&self, i: usize) -> String {
        self.members[i]
            .tcp_remote()
            .unwrap_or_else(|| self.members[i].unix_remote())
    }

    /// Member `i`'s server. Panics if `i` is out of range.
    pub fn member(&self, i: usize) -> &OvsdbServer {
        &self.members[i]
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Always false: a cluster has at least one member.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Database files of all members.
    pub fn db_paths(&self) -> Vec<PathBuf> {
        self.members
            .iter()
            .map(|m| m.db_path().to_path_buf())
            .collect()
    }

    /// Index of the member that currently reports itself leader, if any
    /// running member does.
    pub fn leader(&self) -> Option<usize> {
        self.members.iter().position(|m| {
            m.is_running()
                && m.appctl(&["cluster/status", self.schema.db_name()])
                    .is_ok_and(|s| s.contains("Role: leader"))
        })
    }

    /// Polls [`leader`](Self::leader) until some member leads.
    pub fn wait_leader(&self, timeout: Duration) -> io::Result<usize> {
        wait_until(timeout, "a cluster leader", || self.leader())
            .map_err(|msg| io::Error::other(format!("{msg}\n{}", self.describe())))
    }

    /// Kills member `i` with SIGKILL. Panics if `i` is out of range.
    pub fn kill(&mut self, i: usize) {
        self.members[i].kill();
    }

    /// Restarts member `i` on its database file and ports. Returns once it
    /// answers on its own sockets (it may still be catching up with the
    /// cluster). Panics if `i` is out of range.
    pub fn restart(&mut self, i: usize) -> io::Result<()> {
        self.members[i].restart()
    }
}
