//! `switchyard-sandbox`: a multi-node Switchyard cluster of real OVN on one
//! machine, nodes and pods as network namespaces. See `switchyard_e2e::cli`
//! for how the commands talk to the background process.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use switchyard_e2e::cli::{self, call, Request, LOG, SOCKET};
use switchyard_e2e::sandbox::{cleanup_state_dir, read_state};
use switchyard_e2e::{IpFamily, SandboxOptions};

#[derive(Parser)]
#[command(
    name = "switchyard-sandbox",
    about = "A Switchyard cluster of real OVN on one machine: nodes and pods are network namespaces"
)]
struct Args {
    /// Where the sandbox keeps every file (default $SWITCHYARD_SANDBOX_DIR
    /// or /tmp/switchyard-sandbox).
    #[arg(long, global = true)]
    state_dir: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start OVN central, N nodes and the controller; returns when ready.
    Up {
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// ipv4, ipv6 or dual
        #[arg(long, default_value = "ipv4")]
        ip_family: String,
        /// Sandbox index (underlay 198.18.INDEX.0/24); default: first free.
        #[arg(long)]
        index: Option<u8>,
        /// Directory holding switchyard-node and switchyard-cni (default:
        /// $SWITCHYARD_BIN_DIR, else beside this program).
        #[arg(long)]
        bin_dir: Option<PathBuf>,
        #[command(flatten)]
        shape: Shape,
    },
    /// Apply Kubernetes YAML (Namespace, Pod, Service, NetworkPolicy).
    Apply {
        /// File, directory or - for stdin.
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<String>,
        /// Wait until every pod is Running.
        #[arg(long)]
        wait: bool,
    },
    /// Delete objects: `-f FILE` or `KIND NAMESPACE/NAME`.
    Delete {
        #[arg(short = 'f', long = "filename")]
        files: Vec<String>,
        kind: Option<String>,
        /// NAMESPACE/NAME (or NAME in -n NAMESPACE, default `default`;
        /// a Namespace's name).
        name: Option<String>,
        #[arg(short = 'n', long = "namespace")]
        namespace: Option<String>,
    },
    /// List objects as kubectl does: `get pods|services|endpointslices|
    /// networkpolicies|nodes|namespaces|anp|banp [-n NS | -A]
    /// [-o wide|json|yaml]` (namespace `default` unless -n or -A).
    Get {
        what: String,
        #[arg(short = 'o', long = "output")]
        output: Option<String>,
        #[arg(short = 'n', long = "namespace", conflicts_with = "all_namespaces")]
        namespace: Option<String>,
        #[arg(short = 'A', long = "all-namespaces")]
        all_namespaces: bool,
    },
    /// Set (`k=v`) or remove (`k-`) labels: `label KIND NAMESPACE/NAME k=v k-`
    /// (or `label KIND NAME -n NS ...`; a Namespace or Node by its name).
    Label {
        kind: String,
        name: String,
        #[arg(required = true)]
        labels: Vec<String>,
        #[arg(short = 'n', long = "namespace")]
        namespace: Option<String>,
    },
    /// Run a command inside a pod's network namespace, on a node's host
    /// (`--node NODE`) or on the external host (`--external`).
    Exec {
        /// NAMESPACE/POD
        #[arg(required_unless_present_any = ["node", "external"], conflicts_with_all = ["node", "external"])]
        pod: Option<String>,
        /// Run on this node's host (its network namespace).
        #[arg(long, conflicts_with = "external")]
        node: Option<String>,
        /// Run on the external host: on the underlay, outside every node,
        /// with 203.0.113.1 and 2001:db8:113::1 behind it.
        #[arg(long)]
        external: bool,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Wait until every pod is Running.
    Wait {
        #[arg(long, default_value_t = 120)]
        timeout: u64,
    },
    /// Pod-to-pod reachability matrix: an HTTP GET from every running pod
    /// to every pod's addresses (real TCP connections).
    Matrix {
        #[arg(long, default_value_t = 80)]
        port: u16,
    },
    /// Run ovn-nbctl against the sandbox's northbound database.
    Nbctl {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Kill or restart a component: controller (every replica),
    /// controller/I, controller-leader, node-agent/NODE,
    /// ovn-controller/NODE, ovs-vswitchd/NODE, ovn-northd, nb/I, sb/I
    /// (RAFT members, from 0), nb-leader, sb-leader, nb-cluster, sb-cluster
    /// (every member); underlay/NODE (kill
    /// cuts the node off the underlay, restart joins it back).
    Fault {
        /// kill or restart
        action: String,
        component: String,
    },
    /// Stop everything; leaves nothing outside the state directory.
    Down,
    /// The background process `up` starts (not for direct use).
    #[command(hide = true)]
    Serve {
        #[arg(long)]
        nodes: usize,
        #[arg(long)]
        ip_family: String,
        #[arg(long)]
        index: Option<u8>,
        #[arg(long)]
        bin_dir: Option<PathBuf>,
        #[command(flatten)]
        shape: Shape,
    },
}

/// How OVN central is served.
#[derive(clap::Args, Clone, Copy, Debug)]
struct Shape {
    /// Serve NB and SB over TLS only (certificates generated in
    /// STATE/pki); the controller and every ovn-controller present a
    /// client certificate.
    #[arg(long)]
    tls: bool,
    /// NB and SB as RAFT clusters of N members (odd); the controller,
    /// ovn-northd and every ovn-controller are given all of them.
    #[arg(long, value_name = "N")]
    raft: Option<usize>,
    /// Controller replicas; more than one elect a leader through a Lease.
    #[arg(long, default_value_t = 1)]
    controllers: usize,
}

impl Shape {
    fn args(self) -> Vec<String> {
        let mut a = Vec::new();
        if self.tls {
            a.push("--tls".to_string());
        }
        if let Some(n) = self.raft {
            a.push(format!("--raft={n}"));
        }
        a.push(format!("--controllers={}", self.controllers));
        a
    }

    fn apply(self, opts: &mut SandboxOptions) {
        opts.tls = self.tls;
        opts.raft = self.raft;
        opts.controllers = self.controllers;
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let dir = args
        .state_dir
        .clone()
        .unwrap_or_else(cli::default_state_dir);
    match run(args.cmd, &dir) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("switchyard-sandbox: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cmd: Cmd, dir: &Path) -> Result<ExitCode> {
    match cmd {
        Cmd::Up {
            nodes,
            ip_family,
            index,
            bin_dir,
            shape,
        } => up(dir, nodes, &ip_family, index, bin_dir, shape)?,
        Cmd::Serve {
            nodes,
            ip_family,
            index,
            bin_dir,
            shape,
        } => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| "info".into()),
                )
                .init();
            let mut opts = SandboxOptions::new(nodes, dir);
            opts.ip_family = ip_family.parse()?;
            opts.index = index;
            opts.bin_dir = bin_dir;
            shape.apply(&mut opts);
            cli::serve(opts)?;
        }
        Cmd::Apply { files, wait } => {
            let yaml = read_inputs(&files)?;
            let r = call(dir, &Request::Apply { yaml }, Duration::from_secs(60))?;
            r.lines.iter().for_each(|l| println!("{l}"));
            if wait {
                wait_ready(dir, 120)?;
            }
        }
        Cmd::Delete {
            files,
            kind,
            name,
            namespace,
        } => {
            let r = if !files.is_empty() {
                let yaml = read_inputs(&files)?;
                call(dir, &Request::DeleteYaml { yaml }, Duration::from_secs(300))?
            } else {
                let (Some(kind), Some(name)) = (kind, name) else {
                    bail!("usage: delete -f FILE | delete KIND NAMESPACE/NAME");
                };
                let (namespace, name) = split_name(&name, namespace);
                call(
                    dir,
                    &Request::Delete {
                        kind,
                        namespace,
                        name,
                    },
                    Duration::from_secs(300),
                )?
            };
            r.lines.iter().for_each(|l| println!("{l}"));
        }
        Cmd::Get {
            what,
            output,
            namespace,
            all_namespaces,
        } => get(dir, &what, output.as_deref(), namespace, all_namespaces)?,
        Cmd::Label {
            kind,
            name,
            labels,
            namespace,
        } => {
            let (namespace, name) = split_name(&name, namespace);
            let r = call(
                dir,
                &Request::Label {
                    kind,
                    namespace,
                    name,
                    labels,
                },
                Duration::from_secs(30),
            )?;
            r.lines.iter().for_each(|l| println!("{l}"));
        }
        Cmd::Exec {
            pod,
            node,
            external,
            command,
        } => {
            let target = match (pod, node) {
                _ if external => Target::External,
                (_, Some(n)) => Target::Node(n),
                (Some(p), None) => Target::Pod(p),
                (None, None) => bail!("exec needs a pod, --node NODE or --external"),
            };
            return exec(dir, &target, &command);
        }
        Cmd::Wait { timeout } => wait_ready(dir, timeout)?,
        Cmd::Nbctl { args } => {
            let st = status(dir)?;
            let s = Command::new("ovn-nbctl")
                .arg(format!("--db={}", st.nb_remote))
                .args(&args)
                .status()?;
            return Ok(exit_code(s.code()));
        }
        Cmd::Matrix { port } => {
            let r = call(dir, &Request::Pods, Duration::from_secs(30))?;
            let (text, all_ok) = matrix(&r.pods, port);
            print!("{text}");
            if !all_ok {
                return Ok(ExitCode::FAILURE);
            }
        }
        Cmd::Fault { action, component } => {
            let action = action.parse()?;
            let _: switchyard_e2e::fault::Component = component.parse()?;
            let r = call(
                dir,
                &Request::Fault { action, component },
                Duration::from_secs(120),
            )?;
            r.lines.iter().for_each(|l| println!("{l}"));
        }
        Cmd::Down => down(dir)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn status(dir: &Path) -> Result<cli::Status> {
    call(dir, &Request::Status, Duration::from_secs(10))?
        .status
        .context("no status in the answer")
}

fn wait_ready(dir: &Path, timeout: u64) -> Result<()> {
    call(
        dir,
        &Request::WaitReady {
            timeout_secs: timeout,
        },
        Duration::from_secs(timeout + 10),
    )?;
    Ok(())
}

fn up(
    dir: &Path,
    nodes: usize,
    ip_family: &str,
    index: Option<u8>,
    bin_dir: Option<PathBuf>,
    shape: Shape,
) -> Result<()> {
    let _: IpFamily = ip_family.parse()?;
    // Before anything starts: the node binaries must be there.
    let bins = switchyard_e2e::util::binaries(bin_dir.as_deref())?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = dir.canonicalize()?;
    if let Some(st) = read_state(&dir) {
        if ovn_testbed::pid_alive(st.pid) {
            bail!(
                "a sandbox is already running in {} (pid {}); `switchyard-sandbox down` stops it",
                dir.display(),
                st.pid
            );
        }
    }
    if call(&dir, &Request::Status, Duration::from_secs(5)).is_ok() {
        bail!("a sandbox is already running in {}", dir.display());
    }
    let log_path = dir.join(LOG);
    let log = std::fs::File::create(&log_path)?;
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.arg("--state-dir")
        .arg(&dir)
        .arg("serve")
        .arg(format!("--nodes={nodes}"))
        .arg(format!("--ip-family={ip_family}"))
        .args(shape.args());
    if let Some(i) = index {
        cmd.arg(format!("--index={i}"));
    }
    if let Some(d) = bins.node.parent() {
        cmd.arg("--bin-dir").arg(d);
    }
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0);
    let mut child = cmd.spawn().context("starting the sandbox process")?;
    let started = Instant::now();
    eprintln!(
        "starting a {nodes}-node sandbox ({ip_family}) in {} ...",
        dir.display()
    );
    loop {
        if let Some(status) = child.try_wait()? {
            bail!(
                "the sandbox process exited ({status}); its log {}:\n{}",
                log_path.display(),
                switchyard_e2e::node::tail(&log_path, 30).unwrap_or_default()
            );
        }
        if dir.join(SOCKET).exists() {
            if let Ok(r) = call(&dir, &Request::Status, Duration::from_secs(5)) {
                let st = r.status.context("status")?;
                eprintln!(
                    "sandbox up in {:.1}s: nodes {} (underlay 198.18.{}.0/24), NB {}",
                    started.elapsed().as_secs_f64(),
                    st.nodes.join(", "),
                    st.index,
                    st.nb_remote
                );
                return Ok(());
            }
        }
        if started.elapsed() > Duration::from_secs(300) {
            bail!(
                "the sandbox did not come up in 300 s; see {}",
                log_path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Where `exec` runs its command.
enum Target {
    Pod(String),
    Node(String),
    External,
}

fn exec(dir: &Path, target: &Target, command: &[String]) -> Result<ExitCode> {
    let netns = match target {
        Target::Pod(pod) => {
            let (ns, name) = pod
                .split_once('/')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .unwrap_or_else(|| ("default".into(), pod.to_string()));
            let r = call(dir, &Request::Pods, Duration::from_secs(30))?;
            let p = r
                .pods
                .iter()
                .find(|p| p.namespace == ns && p.name == name)
                .with_context(|| format!("pod {ns}/{name} not found"))?;
            p.netns
                .clone()
                .with_context(|| format!("pod {ns}/{name} is not running ({})", p.phase))?
        }
        Target::Node(node) => {
            let st = status(dir)?;
            let i = st
                .nodes
                .iter()
                .position(|n| n == node)
                .with_context(|| format!("no node {node} (nodes: {})", st.nodes.join(", ")))?;
            st.node_netns[i].clone()
        }
        Target::External => switchyard_e2e::underlay::external_netns_name(status(dir)?.index),
    };
    let s = Command::new("ip")
        .args(["netns", "exec", &netns])
        .args(command)
        .status()
        .with_context(|| format!("running {command:?}"))?;
    Ok(exit_code(s.code()))
}

fn exit_code(code: Option<i32>) -> ExitCode {
    ExitCode::from(code.unwrap_or(1).clamp(0, 255) as u8)
}

fn down(dir: &Path) -> Result<()> {
    let Some(st) = read_state(dir) else {
        if call(dir, &Request::Status, Duration::from_secs(5)).is_err() {
            eprintln!("no sandbox in {}", dir.display());
            return Ok(());
        }
        bail!("a sandbox answers but has no state file");
    };
    match call(dir, &Request::Down, Duration::from_secs(30)) {
        Ok(_) => {
            let started = Instant::now();
            while ovn_testbed::pid_alive(st.pid) {
                if started.elapsed() > Duration::from_secs(60) {
                    eprintln!("the sandbox process did not exit; cleaning up after it");
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Err(e) => eprintln!("the sandbox process does not answer ({e:#}); cleaning up after it"),
    }
    if ovn_testbed::pid_alive(st.pid) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(st.pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    cleanup_state_dir(dir)?;
    let _ = std::fs::remove_file(dir.join(SOCKET));
    eprintln!("sandbox down");
    Ok(())
}

/// Concatenates YAML from files, directories (*.yaml, *.yml, *.json,
/// sorted) and `-` (stdin) as separate documents.
fn read_inputs(files: &[String]) -> Result<String> {
    let mut out = String::new();
    for f in files {
        if f == "-" {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s)?;
            push_doc(&mut out, &s);
            continue;
        }
        let path = Path::new(f);
        if path.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(path)?
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    matches!(
                        p.extension().and_then(|e| e.to_str()),
                        Some("yaml" | "yml" | "json")
                    )
                })
                .collect();
            entries.sort();
            for e in entries {
                push_doc(&mut out, &std::fs::read_to_string(&e)?);
            }
        } else {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {f}"))?;
            push_doc(&mut out, &text);
        }
    }
    Ok(out)
}

fn push_doc(out: &mut String, doc: &str) {
    if !out.is_empty() {
        out.push_str("\n---\n");
    }
    out.push_str(doc);
}

/// Every running pod GETs every pod's every address (retrying for a few
/// seconds: first packets may drop); OK or FAIL per pair.
fn matrix(pods: &[switchyard_e2e::PodSummary], port: u16) -> (String, bool) {
    use switchyard_e2e::probe::http_get;
    let running: Vec<_> = pods.iter().filter(|p| p.netns.is_some()).collect();
    let label = |p: &switchyard_e2e::PodSummary| format!("{}/{}", p.namespace, p.name);
    let results: Vec<Vec<bool>> = std::thread::scope(|s| {
        let handles: Vec<_> = running
            .iter()
            .map(|src| {
                let running = &running;
                s.spawn(move || {
                    let netns = src.netns.clone().unwrap_or_default();
                    running
                        .iter()
                        .map(|dst| {
                            dst.ips.iter().filter_map(|ip| ip.parse().ok()).all(|ip| {
                                let deadline = Instant::now() + Duration::from_secs(10);
                                loop {
                                    if http_get(&netns, ip, port).is_ok() {
                                        break true;
                                    }
                                    if Instant::now() > deadline {
                                        break false;
                                    }
                                    std::thread::sleep(Duration::from_millis(200));
                                }
                            }) && !dst.ips.is_empty()
                        })
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let w = running
        .iter()
        .map(|p| label(p).len())
        .max()
        .unwrap_or(4)
        .max(9);
    let mut out = format!(
        "HTTP GET :{port} from (row) to (column); nodes: {}\n",
        running
            .iter()
            .map(|p| format!("{}@{}", p.name, p.node.clone().unwrap_or_default()))
            .collect::<Vec<_>>()
            .join(" ")
    );
    out.push_str(&format!("{:<w$}", "from \\ to"));
    for p in &running {
        out.push_str(&format!("  {:>w2$}", p.name, w2 = p.name.len().max(4)));
    }
    out.push('\n');
    let mut all_ok = true;
    for (src, row) in running.iter().zip(&results) {
        out.push_str(&format!("{:<w$}", label(src)));
        for (dst, ok) in running.iter().zip(row) {
            all_ok &= ok;
            out.push_str(&format!(
                "  {:>w2$}",
                if *ok { "OK" } else { "FAIL" },
                w2 = dst.name.len().max(4)
            ));
        }
        out.push('\n');
    }
    (out, all_ok)
}

/// `NAMESPACE/NAME`, or `NAME` in `-n NAMESPACE` (default `default`).
fn split_name(arg: &str, namespace: Option<String>) -> (String, String) {
    match arg.split_once('/') {
        Some((ns, n)) => (ns.to_string(), n.to_string()),
        None => (
            namespace.unwrap_or_else(|| "default".to_string()),
            arg.to_string(),
        ),
    }
}

/// `get`: pods and nodes keep their sandbox-specific tables (a pod's
/// ContainerCreating message, a node's chassis and subnets); every kind
/// prints whole objects with `-o json|yaml`.
fn get(
    dir: &Path,
    what: &str,
    output: Option<&str>,
    namespace: Option<String>,
    all_namespaces: bool,
) -> Result<()> {
    use switchyard_e2e::kubectl::{self, Output};
    use switchyard_e2e::objects::kind_of;
    let kind = kind_of(what)?;
    let output: Output = match output {
        None => Output::Table { wide: false },
        Some(o) => o.parse()?,
    };
    let namespace = if all_namespaces {
        None
    } else {
        Some(namespace.unwrap_or_else(|| "default".to_string()))
    };
    let t = Duration::from_secs(30);
    let objects = || -> Result<Vec<serde_json::Value>> {
        let req = Request::Get {
            kind: what.to_string(),
            namespace: namespace.clone(),
        };
        Ok(call(dir, &req, t)?.objects)
    };
    match (output, kind) {
        (Output::Json, _) => println!(
            "{}",
            serde_json::to_string_pretty(&kubectl::list(objects()?))?
        ),
        (Output::Yaml, _) => print!("{}", serde_yaml_ng::to_string(&kubectl::list(objects()?))?),
        (Output::Table { .. }, switchyard_controller::k8s::Kind::Node) => {
            print!("{}", cli::format_nodes(&objects()?))
        }
        (Output::Table { wide }, switchyard_controller::k8s::Kind::Pod) => {
            let mut pods = call(dir, &Request::Pods, t)?.pods;
            if let Some(ns) = &namespace {
                pods.retain(|p| &p.namespace == ns);
            }
            print!("{}", cli::format_pods(&pods, wide, namespace.is_none()))
        }
        (Output::Table { wide }, kind) => print!(
            "{}",
            kubectl::table(kind, &objects()?, namespace.is_none(), wide)
        ),
    }
    Ok(())
}
