//! How `switchyard-sandbox` works between invocations.
//!
//! `up` starts `switchyard-sandbox serve` in the background (its own
//! session, output in `STATE/sandbox.log`). That process owns the
//! [`Sandbox`] (OVN daemons, node agents, the controller, the kubelets,
//! the in-memory Kubernetes API) and answers the other commands on the
//! unix socket `STATE/sandbox.sock`: one JSON [`Request`] per connection,
//! one JSON [`Response`] back. `exec` asks for the pod's network namespace
//! and then runs the command itself (`ip netns exec`), so stdin, stdout
//! and the exit status are the command's own.
//!
//! If `serve` died, `down` cleans up from `STATE/state.json` (namespaces
//! and pids; see [`crate::sandbox::cleanup_state_dir`]).

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::sandbox::{PodSummary, Sandbox, SandboxOptions};

pub const SOCKET: &str = "sandbox.sock";
pub const LOG: &str = "sandbox.log";

/// The default state directory: `$SWITCHYARD_SANDBOX_DIR`, else
/// `/tmp/switchyard-sandbox`.
pub fn default_state_dir() -> PathBuf {
    std::env::var_os("SWITCHYARD_SANDBOX_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/switchyard-sandbox"))
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Status,
    Apply {
        yaml: String,
    },
    DeleteYaml {
        yaml: String,
    },
    Delete {
        kind: String,
        namespace: String,
        name: String,
    },
    Pods,
    Nodes,
    /// Whole objects of one kind; `namespace` `None` is every namespace.
    Get {
        kind: String,
        #[serde(default)]
        namespace: Option<String>,
    },
    /// `kubectl label`: `k=v` sets, `k-` removes.
    Label {
        kind: String,
        namespace: String,
        name: String,
        labels: Vec<String>,
    },
    WaitReady {
        timeout_secs: u64,
    },
    /// Kill or restart a component ([`crate::fault`]).
    Fault {
        action: crate::fault::Action,
        component: String,
    },
    Down,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pods: Vec<PodSummary>,
    /// Node objects as the API server would return them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    /// Objects as the API server returns them (`Get`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub objects: Vec<serde_json::Value>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Status {
    pub pid: u32,
    pub index: u8,
    pub nodes: Vec<String>,
    pub node_netns: Vec<String>,
    pub nb_remote: String,
    pub sb_remote: String,
    pub ip_family: crate::IpFamily,
}

impl Response {
    fn ok() -> Self {
        Response {
            ok: true,
            ..Default::default()
        }
    }
    fn err(e: anyhow::Error) -> Self {
        Response {
            ok: false,
            error: Some(format!("{e:#}")),
            ..Default::default()
        }
    }
}

/// Sends one request to the sandbox in `state_dir`.
pub fn call(state_dir: &Path, req: &Request, timeout: Duration) -> Result<Response> {
    let socket = state_dir.join(SOCKET);
    let mut s = UnixStream::connect(&socket).with_context(|| {
        format!(
            "no sandbox answers at {} (is one up? `switchyard-sandbox up`)",
            socket.display()
        )
    })?;
    s.set_read_timeout(Some(timeout))?;
    s.write_all(&serde_json::to_vec(req)?)?;
    s.shutdown(std::net::Shutdown::Write)?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)
        .context("reading the sandbox's answer")?;
    let resp: Response = serde_json::from_slice(&buf).context("malformed answer")?;
    if !resp.ok {
        bail!("{}", resp.error.unwrap_or_default());
    }
    Ok(resp)
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: nix::libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// `serve`: brings the sandbox up, then answers requests until `down` or
/// SIGTERM/SIGINT, and tears everything down.
pub fn serve(opts: SandboxOptions) -> Result<()> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for sig in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        // SAFETY: the handler only stores to an atomic.
        unsafe { sigaction(sig, &action) }?;
    }
    let state_dir = opts.state_dir.clone();
    let socket = state_dir.join(SOCKET);
    let _ = std::fs::remove_file(&socket);
    let sandbox = Arc::new(Sandbox::up(opts)?);
    let listener =
        UnixListener::bind(&socket).with_context(|| format!("binding {}", socket.display()))?;
    listener.set_nonblocking(true)?;
    eprintln!(
        "switchyard-sandbox: ready; listening on {}",
        socket.display()
    );
    let down = Arc::new(AtomicBool::new(false));
    while !STOP.load(Ordering::SeqCst) && !down.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                let (sb, down) = (sandbox.clone(), down.clone());
                std::thread::spawn(move || handle(stream, &sb, &down));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => eprintln!("switchyard-sandbox: accept: {e}"),
        }
    }
    drop(listener);
    let _ = std::fs::remove_file(&socket);
    eprintln!("switchyard-sandbox: tearing down");
    // Connection threads hold clones briefly; wait for them to finish.
    let mut sandbox = sandbox;
    let sandbox = loop {
        match Arc::try_unwrap(sandbox) {
            Ok(sb) => break sb,
            Err(again) => {
                sandbox = again;
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    };
    let r = sandbox.down();
    eprintln!("switchyard-sandbox: down");
    r
}

fn handle(mut stream: UnixStream, sb: &Arc<Sandbox>, down: &AtomicBool) {
    let _ = stream.set_nonblocking(false);
    let mut buf = Vec::new();
    let resp = match stream.read_to_end(&mut buf) {
        Err(e) => Response::err(e.into()),
        Ok(_) => match serde_json::from_slice::<Request>(&buf) {
            Err(e) => Response::err(e.into()),
            Ok(Request::Down) => {
                down.store(true, Ordering::SeqCst);
                Response::ok()
            }
            Ok(req) => answer(sb, req).unwrap_or_else(Response::err),
        },
    };
    let _ = stream.write_all(&serde_json::to_vec(&resp).unwrap_or_default());
}

fn answer(sb: &Sandbox, req: Request) -> Result<Response> {
    let mut r = Response::ok();
    match req {
        Request::Status => {
            r.status = Some(Status {
                pid: std::process::id(),
                index: sb.index(),
                nodes: sb.node_names(),
                node_netns: (0..sb.node_count())
                    .map(|i| sb.node_netns(i).to_string())
                    .collect(),
                nb_remote: sb.ovn().nb_local_remote().to_string(),
                sb_remote: sb.ovn().sb_local_remote().to_string(),
                ip_family: sb.options().ip_family,
            })
        }
        Request::Apply { yaml } => r.lines = sb.apply_yaml(&yaml)?,
        Request::DeleteYaml { yaml } => r.lines = sb.delete_yaml(&yaml)?,
        Request::Delete {
            kind,
            namespace,
            name,
        } => {
            let found = sb.delete(&kind, &namespace, &name)?;
            if !found {
                bail!("{kind} {namespace}/{name} not found");
            }
            r.lines = vec![format!("{} \"{name}\" deleted", kind.to_lowercase())];
        }
        Request::Pods => r.pods = sb.pods(),
        Request::Get { kind, namespace } => {
            let kind = crate::objects::kind_of(&kind)?;
            r.objects = sb.get_objects(kind, namespace.as_deref());
        }
        Request::Label {
            kind,
            namespace,
            name,
            labels,
        } => {
            let kind = crate::objects::kind_of(&kind)?;
            let (set, remove) = crate::objects::parse_label_args(&labels)?;
            r.lines = vec![sb.label(kind, &namespace, &name, &set, &remove)?];
        }
        Request::Nodes => {
            r.nodes = sb
                .nodes()
                .iter()
                .map(serde_json::to_value)
                .collect::<std::result::Result<_, _>>()?
        }
        Request::WaitReady { timeout_secs } => {
            sb.wait_pods_ready(Duration::from_secs(timeout_secs))?
        }
        Request::Fault { action, component } => {
            let c: crate::fault::Component = component.parse()?;
            r.lines = vec![crate::fault::inject(sb, action, &c)?];
        }
        Request::Down => {}
    }
    Ok(r)
}

/// `kubectl get pods [-A] [-o wide]`-style table.
pub fn format_pods(pods: &[PodSummary], wide: bool, all_namespaces: bool) -> String {
    let mut rows: Vec<Vec<String>> = vec![];
    let mut head = vec!["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE"];
    if wide {
        head.extend(["IP", "NODE"]);
    }
    rows.push(head.iter().map(|s| s.to_string()).collect());
    for p in pods {
        let mut row = vec![
            p.namespace.clone(),
            p.name.clone(),
            if p.ready { "1/1" } else { "0/1" }.to_string(),
            if p.phase == "Pending" && p.message.is_some() {
                "ContainerCreating".to_string()
            } else {
                p.phase.clone()
            },
            "0".to_string(),
            age(p.age_secs),
        ];
        if wide {
            row.push(if p.ips.is_empty() {
                "<none>".into()
            } else {
                p.ips.join(",")
            });
            row.push(p.node.clone().unwrap_or_else(|| "<none>".into()));
        }
        rows.push(row);
    }
    if !all_namespaces {
        for r in &mut rows {
            r.remove(0);
        }
    }
    crate::kubectl::columns(&rows)
}

/// `kubectl get nodes`-style table, with what Switchyard annotates.
pub fn format_nodes(nodes: &[serde_json::Value]) -> String {
    use switchyard_api::annotations::{NODE_CHASSIS, NODE_SUBNETS};
    let mut rows = vec![vec![
        "NAME".to_string(),
        "CHASSIS".to_string(),
        "SUBNETS".to_string(),
    ]];
    for n in nodes {
        let ann = &n["metadata"]["annotations"];
        let get = |k: &str| ann[k].as_str().unwrap_or("<none>").to_string();
        rows.push(vec![
            n["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            get(NODE_CHASSIS),
            get(NODE_SUBNETS),
        ]);
    }
    crate::kubectl::columns(&rows)
}

fn age(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s => format!("{}h", s / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, ready: bool, ips: &[&str]) -> PodSummary {
        PodSummary {
            namespace: "demo".into(),
            name: name.into(),
            uid: "u".into(),
            node: Some("node-1".into()),
            phase: if ready { "Running" } else { "Pending" }.into(),
            ready,
            ips: ips.iter().map(|s| s.to_string()).collect(),
            netns: None,
            message: None,
            age_secs: 130,
        }
    }

    #[test]
    fn pods_table_like_kubectl() {
        let t = format_pods(
            &[
                pod("web-0", true, &["10.244.0.3", "fd00::3"]),
                pod("x", false, &[]),
            ],
            true,
            true,
        );
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("NAMESPACE   NAME    READY   STATUS"));
        assert!(lines[1].contains("1/1") && lines[1].contains("10.244.0.3,fd00::3"));
        assert!(lines[1].contains("2m") && lines[1].ends_with("node-1"));
        assert!(lines[2].contains("0/1") && lines[2].contains("<none>"));
        let narrow = format_pods(&[pod("a", true, &["1.2.3.4"])], false, false);
        assert!(
            !narrow.contains("1.2.3.4") && narrow.starts_with("NAME "),
            "{narrow}"
        );
    }

    #[test]
    fn requests_round_trip() {
        let r: Request =
            serde_json::from_str(r#"{"op":"delete","kind":"pod","namespace":"a","name":"b"}"#)
                .unwrap();
        assert!(matches!(r, Request::Delete { .. }));
        assert!(serde_json::from_str::<Request>(r#"{"op":"nope"}"#).is_err());
    }
}
