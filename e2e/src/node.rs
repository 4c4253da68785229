//! One sandbox node: an OVN chassis (ovsdb-server, ovs-vswitchd with the
//! userspace datapath, ovn-controller) in its own network namespace, its
//! underlay bridge `br-phy`, and the real `switchyard-node` daemon running
//! inside that namespace as a child process.
//!
//! The chassis is started with `configure_ovn: false`: the node agent
//! writes `system-id`, `ovn-remote`, `ovn-encap-*` and the datapath type
//! itself, exactly as it does on a real node.
//!
//! Files, under `STATE/node-K/`: the chassis' own directory (`NAME/`),
//! `pods/` (the agent's `--pod-source dir:`, mirrored from the cluster),
//! `net.d/` and `bin/` (the CNI configuration and plugin the agent
//! installs), `run/cni.sock` and `agent.log`.

use std::fs;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use ovn_testbed::{Chassis, ChassisOptions};

use crate::underlay::Underlay;
use crate::util::{self, sh, wait_for, Binaries};

/// What a node agent needs to know about the cluster.
#[derive(Clone, Debug)]
pub struct AgentSettings {
    pub sb_remote: String,
    /// The northbound database, for the agent's per-policy counters
    /// (`--nb-remote`); `None` leaves them off.
    pub nb_remote: Option<String>,
    pub cluster_cidrs: Vec<String>,
    /// Routed via the management port too (node host → ClusterIP).
    pub service_cidrs: Vec<String>,
    pub mtu: u32,
    /// `up --tls`: ovn-controller's key, certificate and CA, written into
    /// the node's `SSL` table (which ovn-controller reads for `ssl:`
    /// remotes).
    pub tls: Option<ovn_testbed::TlsFiles>,
}

/// Where each node agent serves `/metrics`, inside its node's network
/// namespace (each has its own loopback): see [`Node::agent_metrics`].
pub const AGENT_METRICS: &str = "127.0.0.1:9477";

pub struct Node {
    pub name: String,
    pub index: usize,
    pub dir: PathBuf,
    pub ip: String,
    pub ip6: String,
    chassis: Chassis,
    agent: Option<Child>,
    /// Extra environment for the agent's next starts (a fault test sets
    /// `switchyard_node::testhook::PAUSE_ENV` to stop it at a named point).
    pub agent_env: Vec<(String, String)>,
    settings: AgentSettings,
    bins: Binaries,
}

impl Node {
    /// Starts the chassis, wires it to the underlay and starts the agent;
    /// does not wait for the agent (see [`Node::wait_ready`]).
    pub fn start(
        state: &Path,
        index: usize,
        name: &str,
        underlay: &Underlay,
        settings: AgentSettings,
        bins: Binaries,
    ) -> Result<Node> {
        let dir = state.join(name);
        fs::create_dir_all(dir.join("pods"))?;
        let ip = underlay.node_ip(index).to_string();
        let chassis = Chassis::start(
            &dir,
            &settings.sb_remote,
            ChassisOptions {
                name: name.to_string(),
                encap_ip: Some(ip.clone()),
                netns: true,
                configure_ovn: false,
            },
        )
        .with_context(|| format!("starting the OVS/OVN daemons of {name}"))?;
        let netns = chassis
            .netns()
            .context("chassis without netns")?
            .to_string();
        underlay.attach(index, &netns)?;
        if let Some(tls) = &settings.tls {
            let path = |p: &Path| p.display().to_string();
            chassis
                .vsctl(&[
                    "set-ssl",
                    &path(&tls.client_key),
                    &path(&tls.client_cert),
                    &path(&tls.ca_cert),
                ])
                .with_context(|| format!("configuring ovn-controller's TLS on {name}"))?;
        }
        chassis
            .vsctl(&[
                "add-br",
                "br-phy",
                "--",
                "set",
                "bridge",
                "br-phy",
                "datapath_type=netdev",
                "--",
                "add-port",
                "br-phy",
                "ul0",
            ])
            .with_context(|| format!("creating br-phy on {name}"))?;
        let cidr = format!("{ip}/{}", Underlay::PREFIX);
        wait_for(Duration::from_secs(10), "br-phy's interface", || {
            sh(&["ip", "-n", &netns, "link", "set", "br-phy", "up"]).ok()
        })?;
        sh(&["ip", "-n", &netns, "addr", "add", &cidr, "dev", "br-phy"])?;
        // Both families on the underlay whatever the pods get; the default
        // routes lead to the external host.
        let ip6 = underlay.node_ip6(index).to_string();
        let cidr6 = format!("{ip6}/{}", Underlay::PREFIX6);
        sh(&[
            "ip", "-n", &netns, "addr", "add", &cidr6, "dev", "br-phy", "nodad",
        ])?;
        let (gw4, gw6) = (
            underlay.external_ip().to_string(),
            underlay.external_ip6().to_string(),
        );
        sh(&["ip", "-n", &netns, "route", "add", "default", "via", &gw4])?;
        sh(&[
            "ip", "-n", &netns, "-6", "route", "add", "default", "via", &gw6,
        ])?;
        let mut node = Node {
            name: name.to_string(),
            index,
            dir,
            ip,
            ip6,
            chassis,
            agent: None,
            agent_env: Vec::new(),
            settings,
            bins,
        };
        node.start_agent()?;
        Ok(node)
    }

    pub fn netns(&self) -> &str {
        self.chassis.netns().unwrap_or_default()
    }

    pub fn chassis(&self) -> &Chassis {
        &self.chassis
    }

    pub fn pods_dir(&self) -> PathBuf {
        self.dir.join("pods")
    }
    pub fn cni_conf_dir(&self) -> PathBuf {
        self.dir.join("net.d")
    }
    pub fn cni_bin_dir(&self) -> PathBuf {
        self.dir.join("bin")
    }
    pub fn socket(&self) -> PathBuf {
        self.dir.join("run").join("cni.sock")
    }
    pub fn conflist(&self) -> PathBuf {
        self.cni_conf_dir().join("10-switchyard.conflist")
    }

    /// Starts `switchyard-node` inside the node's namespace.
    pub fn start_agent(&mut self) -> Result<()> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("agent.log"))?;
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", self.netns()])
            .arg(&self.bins.node)
            .arg(format!("--node-name={}", self.name))
            .arg(format!("--socket={}", self.socket().display()))
            .arg(format!("--ovs-remote={}", self.chassis.ovs_remote()))
            .arg(format!("--sb-remote={}", self.settings.sb_remote))
            .args(
                self.settings
                    .nb_remote
                    .iter()
                    .map(|nb| format!("--nb-remote={nb}")),
            )
            .args(self.settings.tls.iter().flat_map(|t| {
                [
                    format!("--ovn-ca-cert={}", t.ca_cert.display()),
                    format!("--ovn-client-cert={}", t.client_cert.display()),
                    format!("--ovn-client-key={}", t.client_key.display()),
                ]
            }))
            .arg(format!("--metrics-address={AGENT_METRICS}"))
            .arg(format!("--encap-ip={}", self.ip))
            .arg("--gateway-bridge=br-phy")
            .arg("--gateway-interface=ul0")
            .arg("--datapath-type=netdev")
            .arg(format!("--cni-conf-dir={}", self.cni_conf_dir().display()))
            .arg(format!("--cni-bin-dir={}", self.cni_bin_dir().display()))
            .arg(format!("--cni-plugin-source={}", self.bins.cni.display()))
            .arg(format!("--pod-source=dir:{}", self.pods_dir().display()))
            .arg(format!("--mtu={}", self.settings.mtu))
            .arg(format!(
                "--cluster-cidrs={}",
                self.settings.cluster_cidrs.join(",")
            ))
            .arg(format!(
                "--service-cidrs={}",
                self.settings.service_cidrs.join(",")
            ))
            .env("RUST_LOG", "info")
            .envs(self.agent_env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", util::describe(&cmd)))?;
        self.agent = Some(child);
        Ok(())
    }

    /// The agent's `/metrics` exposition, fetched from inside the node's
    /// namespace.
    pub fn agent_metrics(&self) -> Result<String> {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                self.netns(),
                "curl",
                "-sf",
                "--max-time",
                "10",
            ])
            .arg(format!("http://{AGENT_METRICS}/metrics"))
            .output()
            .context("running curl")?;
        anyhow::ensure!(
            out.status.success(),
            "GET /metrics on {}: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Waits until the agent serves its socket and has installed the CNI
    /// configuration (which is what tells a kubelet the node is ready).
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let socket = self.socket();
        let conflist = self.conflist();
        let name = self.name.clone();
        let log = self.dir.join("agent.log");
        let agent = &mut self.agent;
        wait_for(timeout, &format!("the node agent of {name}"), || {
            if let Some(child) = agent.as_mut() {
                if let Ok(Some(_)) = child.try_wait() {
                    return Some(Err(anyhow::anyhow!("exited")));
                }
            }
            (conflist.exists() && UnixStream::connect(&socket).is_ok()).then_some(Ok(()))
        })
        .and_then(|r| r)
        .with_context(|| {
            format!(
                "node agent of {name}; log tail:\n{}",
                tail(&log, 20).unwrap_or_default()
            )
        })
    }

    /// Restarts `ovs-vswitchd` (SIGTERM, then a new one on the same
    /// database): every bridge's flows and, with the userspace datapath,
    /// its internal devices and conntrack go with it.
    pub fn restart_vswitchd(&mut self) -> Result<()> {
        self.chassis
            .restart_vswitchd()
            .with_context(|| format!("restarting ovs-vswitchd on {}", self.name))
    }

    /// SIGKILLs `ovn-controller` (br-int keeps its flows).
    pub fn kill_ovn_controller(&mut self) {
        self.chassis.kill_ovn_controller();
    }

    /// Starts `ovn-controller` again (stopping it first if it runs).
    pub fn restart_ovn_controller(&mut self) -> Result<()> {
        self.chassis
            .restart_ovn_controller()
            .with_context(|| format!("restarting ovn-controller on {}", self.name))
    }

    /// SIGKILLs `ovs-vswitchd`; [`restart_vswitchd`](Self::restart_vswitchd)
    /// brings it back.
    pub fn kill_vswitchd(&mut self) {
        if let Some(pid) = self.chassis.vswitchd_pid() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = wait_for(Duration::from_secs(5), "ovs-vswitchd to die", || {
                (!ovn_testbed::pid_alive(pid)).then_some(())
            });
        }
    }

    /// SIGKILLs the node agent (pods and OVS ports stay).
    pub fn kill_agent(&mut self) {
        if let Some(mut child) = self.agent.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the agent again and waits until it serves.
    pub fn restart_agent(&mut self, timeout: Duration) -> Result<()> {
        self.kill_agent();
        self.start_agent()?;
        self.wait_ready(timeout)
    }

    pub fn agent_pid(&self) -> Option<u32> {
        self.agent.as_ref().map(Child::id)
    }

    /// Pids of every process this node started.
    pub fn pids(&self) -> Vec<u32> {
        let mut p = self.chassis.pids();
        p.extend(self.agent_pid());
        p
    }

    /// Stops the agent, then the daemons, and deletes the namespace.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.agent.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let deadline = std::time::Instant::now() + Duration::from_secs(3);
            loop {
                if !matches!(child.try_wait(), Ok(None)) {
                    break;
                }
                if std::time::Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.chassis.stop();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The last `n` lines of a file.
pub fn tail(path: &Path, n: usize) -> Option<String> {
    let text = fs::read_to_string(path).ok()?;
    let lines: Vec<&str> = text.lines().collect();
    Some(lines[lines.len().saturating_sub(n)..].join("\n"))
}
