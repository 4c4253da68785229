//! Test harness: one real OVN node (NB/SB/northd, the node's ovsdb-server,
//! ovs-vswitchd with the userspace datapath and ovn-controller, all in the
//! test's temp directory and the chassis' own network namespace), the real
//! `switchyard-node` daemon running in that namespace with a directory pod
//! source, and the real `switchyard-cni` binary executed the way a container
//! runtime executes it. Pods are network namespaces.
#![allow(dead_code)]

use std::io::Write;
use std::net::{IpAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use ovn_testbed::{wait_until, Chassis, ChassisOptions, OvnCentral};
use ovsdb::{Client, ClientConfig, Condition, Mutation, Row, Transaction, Value};
use serde_json::{json, Value as Json};
use switchyard_api::{names, PodNetwork};

pub const CNI: &str = env!("CARGO_BIN_EXE_switchyard-cni");
pub const DAEMON: &str = env!("CARGO_BIN_EXE_switchyard-node");
pub const SUBNET: &str = "10.244.1.0/24";
pub const GATEWAY: &str = "10.244.1.1";
pub const MGMT_IP: &str = "10.244.1.2";
pub const WAIT: Duration = Duration::from_secs(30);

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A process-unique short name.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}x{}",
        std::process::id() % 100_000,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

pub struct Node {
    pub name: String,
    pub chassis: Chassis,
    pub central: OvnCentral,
    pub nb: Client,
    pub daemon: Option<Child>,
    pub socket: PathBuf,
    pub pods_dir: PathBuf,
    pub conf_dir: PathBuf,
    pub bin_dir: PathBuf,
    pub metrics_port: u16,
    pub annotation_timeout_ms: u64,
    // Last: removed after the daemons above are stopped.
    pub dir: tempfile::TempDir,
}

pub struct Pod {
    pub name: String,
    pub netns: String,
    pub container_id: String,
    pub uid: String,
    pub ip: String,
    pub mac: String,
}

impl Pod {
    pub fn netns_path(&self) -> String {
        format!("/var/run/netns/{}", self.netns)
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .stderr(Stdio::null())
            .status();
    }
}

impl Node {
    pub async fn start() -> Node {
        Self::start_with_timeout(2000).await
    }

    /// A node whose daemon waits `annotation_timeout_ms` for annotations.
    pub async fn start_with_timeout(annotation_timeout_ms: u64) -> Node {
        let dir = tempfile::Builder::new()
            .prefix("syn")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let central = OvnCentral::start(dir.path()).expect("OVN central");
        let name = unique("n");
        let nb = Client::connect(ClientConfig::new(&central.nb_remote()).expect("remote"))
            .await
            .expect("NB connection");
        // The node's logical switch and management port, written through the
        // ovsdb crate as the controller would.
        let mut tx = Transaction::new("OVN_Northbound");
        let mgmt_mac = switchyard_api::mac::from_ip(MGMT_IP.parse().unwrap());
        let lsp = tx.insert(
            "Logical_Switch_Port",
            Row::new()
                .with("name", names::mgmt_port(&name).as_str())
                .with("addresses", Value::set([format!("{mgmt_mac} {MGMT_IP}")])),
        );
        tx.insert(
            "Logical_Switch",
            Row::new()
                .with("name", names::node_switch(&name).as_str())
                .with("ports", lsp)
                .with("other_config", Value::map([("subnet", SUBNET)])),
        );
        nb.transact(tx).await.expect("creating the node switch");

        let opts = ChassisOptions {
            name: name.clone(),
            encap_ip: None,
            netns: true,
            configure_ovn: false,
        };
        let chassis = Chassis::start(dir.path(), &central.sb_remote(), opts).expect("chassis");
        let pods_dir = dir.path().join("pods");
        std::fs::create_dir_all(&pods_dir).unwrap();
        std::fs::write(
            pods_dir.join("node.json"),
            json!({"metadata": {"name": name}, "spec": {"podCIDRs": [SUBNET]}}).to_string(),
        )
        .unwrap();
        let mut node = Node {
            socket: dir.path().join("run").join("cni.sock"),
            conf_dir: dir.path().join("net.d"),
            bin_dir: dir.path().join("bin"),
            pods_dir,
            name,
            chassis,
            central,
            nb,
            daemon: None,
            metrics_port: 20000
                + (std::process::id() % 20000) as u16
                + COUNTER.fetch_add(1, Ordering::Relaxed) as u16,
            annotation_timeout_ms,
            dir,
        };
        node.start_daemon();
        node
    }

    pub fn conflist(&self) -> PathBuf {
        self.conf_dir.join("10-switchyard.conflist")
    }

    /// Starts the daemon inside the chassis' namespace and waits until it
    /// has installed the CNI configuration (its readiness signal).
    pub fn start_daemon(&mut self) {
        let _ = std::fs::remove_file(self.conflist());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("daemon.log"))
            .unwrap();
        let netns = self.chassis.netns().expect("chassis netns").to_string();
        let child = Command::new("ip")
            .args(["netns", "exec", &netns, DAEMON])
            .args(["--node-name", &self.name])
            .arg("--socket")
            .arg(&self.socket)
            .args(["--ovs-remote", &self.chassis.ovs_remote()])
            .args(["--sb-remote", &self.central.sb_remote()])
            .args(["--encap-ip", "127.0.0.1", "--datapath-type", "netdev"])
            .arg("--cni-conf-dir")
            .arg(&self.conf_dir)
            .arg("--cni-bin-dir")
            .arg(&self.bin_dir)
            .args(["--cni-plugin-source", CNI])
            .arg(format!("--pod-source=dir:{}", self.pods_dir.display()))
            .args(["--cluster-cidrs", "10.244.0.0/16"])
            .args([
                "--annotation-timeout-ms",
                &self.annotation_timeout_ms.to_string(),
            ])
            .args(["--ovn-install-timeout-ms", "20000"])
            .args([
                "--metrics-address",
                &format!("127.0.0.1:{}", self.metrics_port),
            ])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawning switchyard-node");
        self.daemon = Some(child);
        let conflist = self.conflist();
        let started = wait_until(WAIT, "the daemon to install its conflist", || {
            conflist.exists().then_some(())
        });
        if let Err(e) = started {
            panic!("{e}\ndaemon log:\n{}", self.daemon_log());
        }
    }

    pub fn kill_daemon(&mut self) {
        if let Some(mut c) = self.daemon.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    /// Creates the pod's netns, its logical switch port (through the ovsdb
    /// crate) and, when `annotate`, its Pod object with the annotation.
    pub async fn pod(&self, index: u8, annotate: bool) -> Pod {
        let name = format!("pod{index}");
        let ip = format!("10.244.1.{}", 10 + index);
        let mac = switchyard_api::mac::from_ip(ip.parse().unwrap());
        let pod = Pod {
            name: name.clone(),
            netns: unique("p"),
            container_id: format!(
                "{:032x}",
                (std::process::id() as u128) << 64
                    | COUNTER.fetch_add(1, Ordering::Relaxed) as u128
            ),
            uid: format!("uid-{}", unique("u")),
            ip: ip.clone(),
            mac: mac.clone(),
        };
        let st = Command::new("ip")
            .args(["netns", "add", &pod.netns])
            .status()
            .unwrap();
        assert!(st.success(), "ip netns add");
        let port = names::pod_port("default", &name);
        let mut tx = Transaction::new("OVN_Northbound");
        let lsp = tx.insert(
            "Logical_Switch_Port",
            Row::new()
                .with("name", port.as_str())
                .with("addresses", Value::set([format!("{mac} {ip}")]))
                .with("options", Value::map([("iface-id-ver", pod.uid.as_str())])),
        );
        tx.mutate(
            "Logical_Switch",
            vec![Condition::eq(
                "name",
                names::node_switch(&self.name).as_str(),
            )],
            vec![Mutation::insert("ports", lsp)],
        );
        self.nb.transact(tx).await.expect("creating the pod port");
        if annotate {
            self.annotate(&pod);
        }
        pod
    }

    pub fn annotate(&self, pod: &Pod) {
        self.write_pod_object(pod, &pod.uid, true);
    }

    /// Writes the Pod object the daemon's pod source reads: `pod`'s name
    /// with `uid`, with or without its network annotation.
    pub fn write_pod_object(&self, pod: &Pod, uid: &str, annotated: bool) {
        let net = PodNetwork {
            ips: vec![format!("{}/24", pod.ip).parse().unwrap()],
            mac: pod.mac.clone(),
            gateways: vec![GATEWAY.parse().unwrap()],
            routes: vec![],
            mtu: None,
        };
        let mut obj = json!({
            "metadata": {
                "namespace": "default",
                "name": pod.name,
                "uid": uid,
            }
        });
        if annotated {
            obj["metadata"]["annotations"] =
                json!({switchyard_api::annotations::POD_NETWORK: net.to_json()});
        }
        let tmp = self.pods_dir.join(format!(".{}.tmp", pod.name));
        std::fs::write(&tmp, obj.to_string()).unwrap();
        std::fs::rename(
            tmp,
            self.pods_dir.join(format!("default_{}.json", pod.name)),
        )
        .unwrap();
    }

    /// Deletes the Pod object (the pod was deleted from the API).
    pub fn delete_pod_object(&self, pod: &Pod) {
        std::fs::remove_file(self.pods_dir.join(format!("default_{}.json", pod.name))).unwrap();
    }

    /// Starts an ADD for `pod` on a thread of its own (the plugin binary
    /// blocks until the daemon answers).
    pub fn add_in_background(&self, pod: &Pod) -> std::thread::JoinHandle<CniOutput> {
        let bin = self.bin_dir.join("switchyard-cni");
        let env = self.env("ADD", pod);
        let conf = self.conf("1.1.0").to_string();
        std::thread::spawn(move || run_cni(&bin, &env, &conf))
    }

    /// Waits until the daemon's log (since its last start) has a line
    /// containing `what`.
    pub fn wait_log_line(&self, what: &str) {
        let r = wait_until(WAIT, &format!("the daemon to log {what:?}"), || {
            let log = self.daemon_log();
            let since_start = log.rsplit("wrote node settings").next().unwrap_or("");
            since_start
                .lines()
                .map(strip_ansi)
                .any(|l| l.contains(what))
                .then_some(())
        });
        if let Err(e) = r {
            panic!("{e}\ndaemon log:\n{}", self.daemon_log());
        }
    }

    /// Waits until the daemon's log has a line about `pod` containing `what`.
    pub fn wait_log(&self, pod: &Pod, what: &str) {
        let needle = format!("pod=default/{}", pod.name);
        let r = wait_until(
            WAIT,
            &format!("the daemon to log {what:?} for {needle}"),
            || {
                self.daemon_log()
                    .lines()
                    .map(strip_ansi)
                    .any(|l| l.contains(&needle) && l.contains(what))
                    .then_some(())
            },
        );
        if let Err(e) = r {
            panic!("{e}\ndaemon log:\n{}", self.daemon_log());
        }
    }

    pub fn conf(&self, version: &str) -> Json {
        json!({
            "cniVersion": version,
            "name": "switchyard",
            "type": "switchyard-cni",
            "daemonSocket": self.socket.display().to_string(),
        })
    }

    pub fn env(&self, command: &str, pod: &Pod) -> Vec<(String, String)> {
        vec![
            ("CNI_COMMAND".into(), command.into()),
            ("CNI_CONTAINERID".into(), pod.container_id.clone()),
            ("CNI_NETNS".into(), pod.netns_path()),
            ("CNI_IFNAME".into(), "eth0".into()),
            ("CNI_PATH".into(), self.bin_dir.display().to_string()),
            (
                "CNI_ARGS".into(),
                format!(
                    "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={};K8S_POD_UID={}",
                    pod.name, pod.container_id, pod.uid
                ),
            ),
        ]
    }

    /// Executes the installed plugin binary as a runtime does.
    pub fn cni(&self, env: &[(String, String)], stdin: &str) -> CniOutput {
        run_cni(&self.bin_dir.join("switchyard-cni"), env, stdin)
    }

    pub fn add(&self, pod: &Pod) -> Json {
        let out = self.cni(&self.env("ADD", pod), &self.conf("1.1.0").to_string());
        assert!(
            out.ok(),
            "ADD {} failed: {}\ndaemon log:\n{}",
            pod.name,
            out.stdout,
            self.daemon_log()
        );
        out.json()
    }

    pub fn del(&self, pod: &Pod) {
        let out = self.cni(&self.env("DEL", pod), &self.conf("1.1.0").to_string());
        assert!(out.ok(), "DEL {} failed: {}", pod.name, out.stdout);
        assert!(
            out.stdout.trim().is_empty(),
            "DEL prints nothing: {}",
            out.stdout
        );
    }

    /// Runs a command in the node's namespace.
    pub fn on_host(&self, cmd: &[&str]) -> Output {
        self.chassis.exec(cmd).expect("exec on node")
    }

    pub fn ports(&self) -> Vec<String> {
        self.chassis
            .vsctl(&["list-ports", "br-int"])
            .expect("list-ports")
            .lines()
            .map(str::to_string)
            .collect()
    }

    pub fn host_link_exists(&self, name: &str) -> bool {
        self.on_host(&["ip", "link", "show", name]).status.success()
    }
}

/// A log line without its colour escapes (`ESC [ ... letter`).
pub fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

pub struct CniOutput {
    pub code: Option<i32>,
    pub stdout: String,
}

impl CniOutput {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }
    pub fn json(&self) -> Json {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.stdout))
    }
    /// The CNI error code, asserting the error shape.
    pub fn error_code(&self) -> u64 {
        assert!(
            !self.ok(),
            "expected an error, got success: {}",
            self.stdout
        );
        let j = self.json();
        assert!(j["msg"].is_string(), "error without msg: {j}");
        assert!(j["cniVersion"].is_string(), "error without cniVersion: {j}");
        j["code"]
            .as_u64()
            .unwrap_or_else(|| panic!("error without code: {j}"))
    }
}

pub fn run_cni(binary: &Path, env: &[(String, String)], stdin: &str) -> CniOutput {
    let mut child = Command::new(binary)
        .env_clear()
        .envs(env.iter().cloned())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("running switchyard-cni");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    CniOutput {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
    }
}

/// Runs `f` on a thread inside the named netns.
pub fn in_netns<T: Send + 'static>(netns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/var/run/netns/{netns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).expect("open netns");
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    })
    .join()
    .expect("netns thread")
}

/// Pings from a netns until one reply arrives or the deadline passes.
pub fn ping_until(netns: Option<&str>, target: &str, node: Option<&Node>) -> Result<(), String> {
    wait_until(WAIT, &format!("ping {target}"), || {
        let out = match (netns, node) {
            (Some(ns), _) => Command::new("ip")
                .args(["netns", "exec", ns, "ping", "-c1", "-W1", target])
                .output()
                .ok()?,
            (None, Some(n)) => n.on_host(&["ping", "-c1", "-W1", target]),
            (None, None) => return None,
        };
        out.status.success().then_some(())
    })
}

/// A TCP round trip between two pods: a listener in `server_ns`, a client in
/// `client_ns` sending a payload larger than one segment, echoed back.
pub fn tcp_round_trip(server_ns: &str, server_ip: &str, client_ns: &str) -> Result<(), String> {
    let ip: IpAddr = server_ip.parse().unwrap();
    let listener = in_netns(server_ns, move || {
        TcpListener::bind((ip, 7777)).expect("bind")
    });
    let server = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut s, _) = listener.accept()?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut buf = vec![0u8; 100_000];
        let mut got = 0;
        while got < buf.len() {
            let n = std::io::Read::read(&mut s, &mut buf[got..])?;
            if n == 0 {
                break;
            }
            got += n;
        }
        s.write_all(&buf[..got])
    });
    let deadline = Instant::now() + WAIT;
    let result = in_netns(client_ns, move || -> Result<(), String> {
        loop {
            match TcpStream::connect_timeout(&(ip, 7777).into(), Duration::from_secs(2)) {
                Ok(mut s) => {
                    s.set_read_timeout(Some(Duration::from_secs(10)))
                        .map_err(|e| e.to_string())?;
                    let payload: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
                    s.write_all(&payload).map_err(|e| e.to_string())?;
                    let mut back = vec![0u8; payload.len()];
                    std::io::Read::read_exact(&mut s, &mut back)
                        .map_err(|e| format!("TCP read: {e}"))?;
                    return if back == payload {
                        Ok(())
                    } else {
                        Err("TCP payload mismatch".into())
                    };
                }
                Err(e) if Instant::now() > deadline => return Err(format!("TCP connect: {e}")),
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    });
    let _ = server.join();
    result
}

/// A UDP request/response between two pods, retried until the deadline.
pub fn udp_round_trip(server_ns: &str, server_ip: &str, client_ns: &str) -> Result<(), String> {
    let ip: IpAddr = server_ip.parse().unwrap();
    let sock = in_netns(server_ns, move || {
        UdpSocket::bind((ip, 7778)).expect("bind udp")
    });
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let server = std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while !stop2.load(Ordering::Relaxed) {
            if let Ok((n, from)) = sock.recv_from(&mut buf) {
                let _ = sock.send_to(&buf[..n], from);
            }
        }
    });
    let result = in_netns(client_ns, move || -> Result<(), String> {
        let c = UdpSocket::bind("0.0.0.0:0").map_err(|e| e.to_string())?;
        c.set_read_timeout(Some(Duration::from_millis(500)))
            .map_err(|e| e.to_string())?;
        let deadline = Instant::now() + WAIT;
        let mut buf = [0u8; 1500];
        while Instant::now() < deadline {
            let _ = c.send_to(b"switchyard", (ip, 7778));
            if let Ok((n, _)) = c.recv_from(&mut buf) {
                if &buf[..n] == b"switchyard" {
                    return Ok(());
                }
            }
        }
        Err("no UDP echo".into())
    });
    stop.store(true, Ordering::Relaxed);
    let _ = server.join();
    result
}

impl Node {
    /// The daemon's `/metrics` page (fetched inside the node's namespace).
    pub fn metrics_text(&self) -> String {
        let port = self.metrics_port;
        in_netns(self.chassis.netns().expect("chassis netns"), move || {
            use std::io::Read;
            let mut s = TcpStream::connect(("127.0.0.1", port)).expect("metrics endpoint");
            s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
                .unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            out
        })
    }
}

/// A sample's value from Prometheus text (`name{labels} value`).
pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill_daemon();
    }
}
