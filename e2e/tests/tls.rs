//! `up --tls`: NB and SB are served over TLS only (plus the unix sockets
//! ovn-northd uses beside them), the controller and every ovn-controller
//! connect with the sandbox's client certificate, and pods on two nodes
//! reach each other. A client without a certificate, or with one another
//! CA signed, or without TLS at all, gets no answer from either database;
//! the same client with the right certificate does (the control).

mod common;

use std::path::Path;
use std::time::Duration;

use switchyard_e2e::probe::{echo_server_command, python};
use switchyard_e2e::{pod_spec, SandboxOptions};

/// `argv`: host, port, CA file, then optionally a certificate and key.
/// Prints the databases the server lists, or `refused: WHY`.
const CLIENT: &str = r#"
import json, socket, ssl, sys
host, port, ca = sys.argv[1], int(sys.argv[2]), sys.argv[3]
try:
    raw = socket.create_connection((host, port), timeout=5)
    if ca == "-":
        s = raw
    else:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.load_verify_locations(ca)
        if len(sys.argv) > 5:
            ctx.load_cert_chain(sys.argv[4], sys.argv[5])
        s = ctx.wrap_socket(raw)
    s.sendall(b'{"id":0,"method":"list_dbs","params":[]}')
    data = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
        try:
            print(" ".join(json.loads(data)["result"]))
            sys.exit(0)
        except ValueError:
            pass
    print("refused: closed after %r" % data)
except (OSError, ssl.SSLError) as e:
    print("refused: %s" % e)
"#;

fn list_dbs(remote: &str, ca: &str, cert: Option<(&Path, &Path)>) -> String {
    let (host, port) = remote
        .strip_prefix("ssl:")
        .and_then(|r| r.rsplit_once(':'))
        .expect("an ssl:HOST:PORT remote");
    let mut args = vec![python(), "-c", CLIENT, host, port, ca];
    let (c, k);
    if let Some((cert, key)) = cert {
        c = cert.display().to_string();
        k = key.display().to_string();
        args.extend([c.as_str(), k.as_str()]);
    }
    let out = std::process::Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("run python");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn tls_sandbox_connects_with_certificates_and_refuses_clients_without() {
    common::init_tracing();
    let _serial = common::serial();
    let dir = tempfile::tempdir().unwrap();
    let mut opts = SandboxOptions::new(2, dir.path());
    opts.tls = true;
    let sb = common::up(opts).expect("sandbox up --tls");
    let central = sb.central();
    let nb = central.nb_ssl_remote().expect("NB serves TLS");
    let sb_remote = central.sb_ssl_remote().expect("SB serves TLS");
    assert!(central.nb.tcp_remote().is_none() && central.sb.tcp_remote().is_none());
    // Every ovn-controller was given the TLS remote, and nothing else.
    for i in 0..sb.node_count() {
        let remote = sb
            .vsctl(i, &["get", "Open_vSwitch", ".", "external_ids:ovn-remote"])
            .unwrap();
        assert_eq!(remote.trim().trim_matches('"'), sb_remote, "node {i}");
    }

    let pods: Vec<(String, String)> = [("a", "node-1"), ("b", "node-2")]
        .into_iter()
        .map(|(p, node)| {
            sb.create_pod(pod_spec("tls", p, Some(node), echo_server_command(p)))
                .unwrap();
            ("tls".to_string(), p.to_string())
        })
        .collect();
    sb.wait_pods_ready(Duration::from_secs(120)).unwrap();
    common::assert_full_mesh(&sb, &pods);
    // The controller's NB connection is a TLS one.
    let conns = central
        .nb
        .appctl(&["ovsdb-server/list-remotes"])
        .unwrap_or_default();
    assert!(conns.contains("pssl:"), "NB listens on TLS: {conns}");
    // The node agents' per-policy counters read NB and SB over TLS too: a
    // policy's series show on the node of the pod it isolates.
    let policy: k8s_openapi::api::networking::v1::NetworkPolicy =
        serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": "tls", "name": "deny-all"},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}
        }))
        .unwrap();
    sb.cluster().try_apply(policy).unwrap();
    common::wait(
        Duration::from_secs(30),
        "the policy's counters on node-1",
        || {
            let text = sb
                .with_node(0, |n| n.agent_metrics())
                .map_err(|e| format!("{e:#}"))?;
            text.contains("policy=\"deny-all\"")
                .then_some(())
                .ok_or(text)
        },
    );

    let pki = sb.state_dir().join("pki");
    let ca = pki.join("ca-cert.pem").display().to_string();
    let (cert, key) = (pki.join("client-cert.pem"), pki.join("client-key.pem"));
    let rogue_dir = tempfile::tempdir().unwrap();
    let rogue = ovn_testbed::TlsFiles::generate(rogue_dir.path()).unwrap();
    for (name, remote, db) in [
        ("NB", &nb, "OVN_Northbound"),
        ("SB", &sb_remote, "OVN_Southbound"),
    ] {
        let good = list_dbs(remote, &ca, Some((&cert, &key)));
        assert!(
            good.split(' ').any(|d| d == db),
            "{name} with the sandbox's client certificate: {good}"
        );
        let none = list_dbs(remote, &ca, None);
        assert!(
            none.starts_with("refused"),
            "{name} without a certificate: {none}"
        );
        let other_ca = list_dbs(remote, &ca, Some((&rogue.client_cert, &rogue.client_key)));
        assert!(
            other_ca.starts_with("refused"),
            "{name} with another CA's certificate: {other_ca}"
        );
        let plain = list_dbs(remote, "-", None);
        assert!(plain.starts_with("refused"), "{name} without TLS: {plain}");
        println!("{name} {remote}: certificate -> {good}; none -> {none}; other CA -> {other_ca}; plain TCP -> {plain}");
    }
    sb.down().unwrap();
}

/// `up --tls --raft 3`: every member serves TLS; the controller and the
/// ovn-controllers are given all members' TLS remotes; after the NB leader
/// dies the controller finds the new one (over TLS) and a new pod comes up
/// reachable.
#[test]
fn tls_raft_sandbox_survives_the_nb_leader() {
    use switchyard_e2e::central::Db;
    use switchyard_e2e::fault::{inject, resolve, Action, Component};
    common::init_tracing();
    let _serial = common::serial();
    let dir = tempfile::tempdir().unwrap();
    let mut opts = SandboxOptions::new(2, dir.path());
    opts.tls = true;
    opts.raft = Some(3);
    let sb = common::up(opts).expect("sandbox up --tls --raft 3");
    let sb_remotes = sb.ovn().sb_client_remote().to_string();
    assert_eq!(sb_remotes.matches("ssl:").count(), 3, "{sb_remotes}");
    assert_eq!(
        sb.ovn().nb_client_remote().matches("ssl:").count(),
        3,
        "{}",
        sb.ovn().nb_client_remote()
    );
    for i in 0..sb.node_count() {
        let remote = sb
            .vsctl(i, &["get", "Open_vSwitch", ".", "external_ids:ovn-remote"])
            .unwrap();
        assert_eq!(remote.trim().trim_matches('"'), sb_remotes, "node {i}");
    }
    let mut pods = Vec::new();
    for (p, node) in [("a", "node-1"), ("b", "node-2")] {
        sb.create_pod(pod_spec("tls", p, Some(node), echo_server_command(p)))
            .unwrap();
        pods.push(("tls".to_string(), p.to_string()));
    }
    sb.wait_pods_ready(Duration::from_secs(120)).unwrap();
    common::assert_full_mesh(&sb, &pods);

    let leader = resolve(&sb, &Component::Leader(Db::Nb)).unwrap();
    println!("{}", inject(&sb, Action::Kill, &leader).unwrap());
    sb.create_pod(pod_spec(
        "tls",
        "c",
        Some("node-2"),
        echo_server_command("c"),
    ))
    .unwrap();
    pods.push(("tls".to_string(), "c".to_string()));
    sb.wait_pods_ready(Duration::from_secs(120)).unwrap();
    common::assert_full_mesh(&sb, &pods);
    println!("{}", inject(&sb, Action::Restart, &leader).unwrap());
    common::assert_converges_without_leaks(&sb, &pods, Duration::from_secs(60));
    sb.down().unwrap();
}
