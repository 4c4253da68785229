//! The CNI socket and the files the daemon leaves for the container
//! runtime: who may reach them and who may change them. Real daemon, real
//! socket, real OVN (see `common`); a caller that is not root is a real
//! process running the real `switchyard-cni` as uid 65534 (nobody). They
//! need root; without it they skip.

mod common;

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;

macro_rules! need_root {
    () => {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
    };
}

const NOBODY: u32 = 65534;

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The shim, copied where uid 65534 can execute it (the build's target
/// directory and the node's temp directory may not be reachable).
struct NobodyShim {
    _dir: tempfile::TempDir,
    bin: PathBuf,
}

impl NobodyShim {
    fn new() -> NobodyShim {
        let dir = tempfile::Builder::new()
            .prefix("synobody")
            .tempdir_in("/tmp")
            .unwrap();
        chmod(dir.path(), 0o755);
        let bin = dir.path().join("switchyard-cni");
        std::fs::copy(CNI, &bin).unwrap();
        chmod(&bin, 0o755);
        NobodyShim { _dir: dir, bin }
    }

    /// Runs the shim as uid/gid 65534, as a runtime would run it.
    fn run(&self, env: &[(String, String)], stdin: &str) -> CniOutput {
        let mut child = Command::new(&self.bin)
            .env_clear()
            .envs(env.iter().cloned())
            .uid(NOBODY)
            .gid(NOBODY)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("running switchyard-cni as nobody");
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), stdin.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        CniOutput {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_and_runtime_files_are_roots_alone() {
    need_root!();
    let mut node = Node::start().await;
    let dir = node.socket.parent().unwrap().to_path_buf();
    let check = |node: &Node| {
        let meta = std::fs::symlink_metadata(&node.socket).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.uid(), 0);
        assert_eq!(mode(&node.socket), 0o600, "socket mode");
        let dmeta = std::fs::symlink_metadata(&dir).unwrap();
        assert!(dmeta.is_dir());
        assert_eq!(dmeta.uid(), 0);
        assert_eq!(mode(&dir), 0o700, "socket directory mode");
        // The daemon keeps no state files (attachments are read back from
        // OVS and the kernel); what it writes are the conflist and the
        // plugin binary, which the runtime reads and executes as root:
        // nobody else may change them.
        for (path, want) in [
            (node.conflist(), 0o644),
            (node.bin_dir.join("switchyard-cni"), 0o755),
        ] {
            let meta = std::fs::metadata(&path).unwrap();
            assert_eq!(meta.uid(), 0, "{}", path.display());
            assert_eq!(mode(&path), want, "{}", path.display());
        }
        let leftovers: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n != "cni.sock")
            .collect();
        assert!(
            leftovers.is_empty(),
            "other files beside the socket: {leftovers:?}"
        );
    };
    check(&node);

    // A restart puts the modes back, however they were loosened.
    node.kill_daemon();
    chmod(&dir, 0o777);
    chmod(&node.socket, 0o666);
    node.start_daemon();
    check(&node);
    // (A directory someone else owns is refused: a unit test of
    // `daemon::prepare_socket_dir`.)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_is_not_root_is_refused() {
    need_root!();
    let node = Node::start().await;
    let pod = node.pod(1, true).await;
    let shim = NobodyShim::new();
    let env = node.env("ADD", &pod);
    let conf = node.conf("1.1.0").to_string();

    // As installed, nobody cannot even reach the socket.
    let out = shim.run(&env, &conf);
    assert_eq!(out.error_code(), 108, "{}", out.stdout);
    assert!(out.stdout.contains("only root"), "{}", out.stdout);
    assert!(
        out.stdout.contains("Permission denied"),
        "refused by the file system: {}",
        out.stdout
    );

    // With every mode on the way loosened (a misconfigured host), nobody
    // connects, and the daemon refuses by the caller's credentials.
    let mut p = node.socket.clone();
    while let Some(parent) = p.parent() {
        if parent == Path::new("/tmp") {
            break;
        }
        chmod(parent, 0o755);
        p = parent.to_path_buf();
    }
    chmod(&node.socket, 0o666);
    let out = shim.run(&env, &conf);
    assert_eq!(out.error_code(), 108, "{}", out.stdout);
    assert!(
        out.stdout.contains(&format!("caller uid {NOBODY}")),
        "refused by the daemon: {}",
        out.stdout
    );
    node.wait_log_line("refused a CNI request: only root may call");
    // Nothing was done for it: no port, no interface in the pod.
    let bound = node
        .chassis
        .vsctl(&[
            "--columns=name",
            "find",
            "Interface",
            "external_ids:iface-id=default_pod1",
        ])
        .unwrap();
    assert!(bound.trim().is_empty(), "a port for the pod: {bound}");
    let links = Command::new("ip")
        .args(["-n", &pod.netns, "-o", "link"])
        .output()
        .unwrap();
    let links = String::from_utf8_lossy(&links.stdout).into_owned();
    assert!(!links.contains("eth0"), "{links}");
    let metrics = node.metrics_text();
    let refused = metric_value(
        &metrics,
        "switchyard_node_cni_request_duration_seconds_count{command=\"refused\",result=\"108\"}",
    );
    assert_eq!(refused, Some(1.0), "{metrics}");

    // Root, on the same socket, is served.
    let result = node.add(&pod);
    assert_eq!(result["ips"][0]["address"], format!("{}/24", pod.ip));
}
