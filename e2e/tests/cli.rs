//! The `switchyard-sandbox` command line end to end: up, a second up
//! refused, apply from stdin, get (pods, nodes, services, endpointslices,
//! networkpolicies; tables, `-o json` Lists and `-o yaml`), label, a
//! Service answering on its ClusterIP, exec with the exit status passed
//! through (in a pod, on a node's host, on the external host), delete,
//! down leaving nothing behind.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn sandbox(dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchyard-sandbox"));
    cmd.arg("--state-dir")
        .arg(dir)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("switchyard-sandbox runs");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    child.wait_with_output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

const PODS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: cli}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: cli}
spec:
  containers: [{name: c, image: x, command: ["nc", "-lk", "-p", "80"]}]
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: cli, labels: {app: web}}
spec:
  containers: [{name: c, image: x, command: ["nc", "-lk", "-p", "80"]}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: cli}
spec:
  selector: {app: web}
  ports: [{port: 8080, targetPort: 80}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-from-anywhere, namespace: cli}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress: [{}]
"#;

fn json(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", text(o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(o)))
}

#[test]
fn command_line_round_trip() {
    let _serial = common::serial();
    common::check_node_binaries();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let before = common::MachineState::now();

    let up = sandbox(d, &["up", "--nodes", "2"], None);
    assert!(up.status.success(), "up: {}", text(&up));
    let again = sandbox(d, &["up", "--nodes", "2"], None);
    assert!(!again.status.success());
    assert!(text(&again).contains("already running"), "{}", text(&again));

    // Each node agent published its chassis on its Node: the names of the
    // SB Chassis rows, one per node.
    let nodes = sandbox(d, &["get", "nodes", "-o", "json"], None);
    assert!(nodes.status.success(), "get nodes: {}", text(&nodes));
    let nodes: serde_json::Value = serde_json::from_slice(&nodes.stdout).unwrap();
    assert_eq!(nodes["kind"], "List", "{nodes}");
    let mut published: Vec<String> = nodes["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            n["metadata"]["annotations"][switchyard_api::annotations::NODE_CHASSIS]
                .as_str()
                .unwrap_or_else(|| panic!("node without chassis-id: {n}"))
                .to_string()
        })
        .collect();
    published.sort();
    let sb = format!(
        "unix:{}",
        d.canonicalize().unwrap().join("central/sb.sock").display()
    );
    let chassis = Command::new("ovn-sbctl")
        .args([
            &format!("--db={sb}"),
            "--bare",
            "--columns=name",
            "list",
            "Chassis",
        ])
        .output()
        .unwrap();
    assert!(chassis.status.success(), "{}", text(&chassis));
    let mut names: Vec<String> = String::from_utf8_lossy(&chassis.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    names.sort();
    assert_eq!(published, names);
    assert_eq!(published.len(), 2);
    let table = sandbox(d, &["get", "nodes"], None);
    assert!(text(&table).contains("CHASSIS"), "{}", text(&table));

    let apply = sandbox(d, &["apply", "-f", "-", "--wait"], Some(PODS));
    assert!(apply.status.success(), "apply: {}", text(&apply));
    assert!(text(&apply).contains("pod/a created"));
    assert!(text(&apply).contains("service/web created"));
    assert!(text(&apply).contains("networkpolicy/web-from-anywhere created"));

    // kubectl's namespace rules: `default` unless -n or -A.
    let get = sandbox(d, &["get", "pods"], None);
    assert!(!text(&get).contains("cli"), "{}", text(&get));
    let get = sandbox(d, &["get", "pods", "-A", "-o", "wide"], None);
    let table = text(&get);
    assert!(get.status.success(), "{table}");
    let rows: Vec<&str> = table.lines().filter(|l| l.starts_with("cli ")).collect();
    assert_eq!(rows.len(), 2, "{table}");
    assert!(
        rows.iter()
            .all(|r| r.contains("Running") && r.contains("10.244.")),
        "{table}"
    );
    assert!(
        table.contains("node-1") && table.contains("node-2"),
        "spread: {table}"
    );
    let b_ip = rows[1].split_whitespace().nth(6).unwrap().to_string();

    // Whole objects, as the API server holds them.
    let pods = json(&sandbox(
        d,
        &["get", "pods", "-n", "cli", "-o", "json"],
        None,
    ));
    assert_eq!(pods["kind"], "List");
    assert_eq!(pods["items"][1]["kind"], "Pod");
    assert_eq!(pods["items"][1]["status"]["podIPs"][0]["ip"], b_ip.as_str());
    let yaml = sandbox(d, &["get", "netpol", "-n", "cli", "-o", "yaml"], None);
    assert!(text(&yaml).contains("kind: List") && text(&yaml).contains("web-from-anywhere"));

    // The Service: a ClusterIP from the service CIDR, an EndpointSlice of
    // b, and a real connection through the ClusterIP.
    let svc = sandbox(d, &["get", "svc", "-n", "cli"], None);
    assert!(
        text(&svc).contains("ClusterIP") && text(&svc).contains("8080/TCP"),
        "{}",
        text(&svc)
    );
    let svcs = json(&sandbox(
        d,
        &["get", "services", "-n", "cli", "-o", "json"],
        None,
    ));
    let cluster_ip = svcs["items"][0]["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(cluster_ip.starts_with("10.96."), "{svcs}");
    let slices = json(&sandbox(
        d,
        &["get", "endpointslices", "-n", "cli", "-o", "json"],
        None,
    ));
    assert_eq!(
        slices["items"][0]["endpoints"][0]["addresses"][0],
        b_ip.as_str(),
        "{slices}"
    );
    let via_vip = format!(
        "for i in $(seq 1 100); do nc -z -w1 {cluster_ip} 8080 && exit 0; sleep 0.1; done; exit 1"
    );
    let nc = sandbox(d, &["exec", "cli/a", "--", "sh", "-c", &via_vip], None);
    assert!(nc.status.success(), "a -> web's ClusterIP: {}", text(&nc));

    // Labels set and removed, as kubectl label does; a bad one refused.
    let l = sandbox(d, &["label", "pod", "cli/a", "tier=front", "app=cli"], None);
    assert!(text(&l).contains("pod/a labeled"), "{}", text(&l));
    let a = json(&sandbox(
        d,
        &["get", "pods", "-n", "cli", "-o", "json"],
        None,
    ));
    assert_eq!(a["items"][0]["metadata"]["labels"]["tier"], "front", "{a}");
    let l = sandbox(d, &["label", "pod", "a", "-n", "cli", "tier-"], None);
    assert!(l.status.success(), "{}", text(&l));
    let a = json(&sandbox(
        d,
        &["get", "pods", "-n", "cli", "-o", "json"],
        None,
    ));
    assert!(
        a["items"][0]["metadata"]["labels"].get("tier").is_none(),
        "{a}"
    );
    let bad = sandbox(d, &["label", "pod", "cli/a", "x=not valid"], None);
    assert!(
        !bad.status.success() && text(&bad).contains("Invalid"),
        "{}",
        text(&bad)
    );
    let missing = sandbox(d, &["label", "pod", "cli/nope", "x=y"], None);
    assert!(
        !missing.status.success() && text(&missing).contains("not found"),
        "{}",
        text(&missing)
    );

    // Exit status passes through; a real TCP connection from a to b.
    let exit = sandbox(d, &["exec", "cli/a", "--", "sh", "-c", "exit 3"], None);
    assert_eq!(exit.status.code(), Some(3));
    let connect =
        format!("for i in $(seq 1 50); do nc -z -w1 {b_ip} 80 && exit 0; sleep 0.1; done; exit 1");
    let nc = sandbox(d, &["exec", "cli/a", "--", "sh", "-c", &connect], None);
    assert!(nc.status.success(), "a -> b:80: {}", text(&nc));

    // The external host and a node's host: the external host answers on
    // 203.0.113.1 with the source it sees, which for a node is its IP.
    let ext = sandbox(
        d,
        &["exec", "--external", "--", "ip", "-o", "addr", "show", "lo"],
        None,
    );
    assert!(text(&ext).contains("203.0.113.1/32"), "{}", text(&ext));
    let ask = "for i in $(seq 1 50); do nc -w1 203.0.113.1 8090 && exit 0; sleep 0.1; done; exit 1";
    let who = sandbox(
        d,
        &["exec", "--node", "node-2", "--", "sh", "-c", ask],
        None,
    );
    assert!(who.status.success(), "{}", text(&who));
    assert!(text(&who).contains("external 198.18."), "{}", text(&who));
    let from_pod = sandbox(d, &["exec", "cli/a", "--", "sh", "-c", ask], None);
    assert!(
        from_pod.status.success(),
        "a -> outside: {}",
        text(&from_pod)
    );
    let no_node = sandbox(d, &["exec", "--node", "node-9", "--", "true"], None);
    assert!(!no_node.status.success());
    assert!(
        text(&no_node).contains("no node node-9"),
        "{}",
        text(&no_node)
    );

    let del = sandbox(d, &["delete", "pod", "cli/b"], None);
    assert!(del.status.success(), "{}", text(&del));
    let get = sandbox(d, &["get", "pods", "-n", "cli"], None);
    assert!(!text(&get).contains("b   "), "{}", text(&get));
    let del = sandbox(d, &["delete", "svc", "web", "-n", "cli"], None);
    assert!(del.status.success(), "{}", text(&del));
    let svc = sandbox(d, &["get", "svc", "-A"], None);
    assert!(!text(&svc).contains("web"), "{}", text(&svc));
    let gone = sandbox(d, &["exec", "cli/b", "--", "true"], None);
    assert!(!gone.status.success());

    let index: u8 = switchyard_e2e::sandbox::read_state(d).unwrap().index;
    let down = sandbox(d, &["down"], None);
    assert!(down.status.success(), "{}", text(&down));
    common::assert_machine_restored(&before, index, d);
    assert!(!d.join("sandbox.sock").exists());
}

/// `up --tls --raft 3`, then the fault tool: a RAFT leader restarted,
/// ovn-northd killed and restarted, a node cut off the underlay and back,
/// an unknown component refused; a pod applied afterwards comes up; `down`
/// leaves nothing, not even the host's underlay link.
#[test]
fn fault_command_round_trip() {
    let _serial = common::serial();
    common::check_node_binaries();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let before = common::MachineState::now();
    let up = sandbox(d, &["up", "--nodes", "2", "--tls", "--raft", "3"], None);
    assert!(up.status.success(), "{}", text(&up));
    let index: u8 = switchyard_e2e::sandbox::read_state(d).unwrap().index;
    let link = format!("sy{index}-central");
    assert!(Command::new("ip")
        .args(["link", "show", &link])
        .output()
        .unwrap()
        .status
        .success());
    for (args, want) in [
        (
            &["fault", "restart", "nb-leader"][..],
            "restarted nb-leader (member ",
        ),
        (&["fault", "kill", "ovn-northd"], "killed ovn-northd"),
        (&["fault", "restart", "ovn-northd"], "restarted ovn-northd"),
        (
            &["fault", "kill", "underlay/node-2"],
            "cut node-2 off the underlay",
        ),
        (
            &["fault", "restart", "underlay/node-2"],
            "joined node-2 back onto the underlay",
        ),
        (&["fault", "restart", "sb/1"], "restarted sb/1"),
    ] {
        let out = sandbox(d, args, None);
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        assert!(text(&out).starts_with(want), "{args:?}: {}", text(&out));
    }
    let bad = sandbox(d, &["fault", "kill", "etcd"], None);
    assert!(!bad.status.success());
    assert!(text(&bad).contains("unknown component"), "{}", text(&bad));
    let no_member = sandbox(d, &["fault", "kill", "nb/7"], None);
    assert!(!no_member.status.success(), "{}", text(&no_member));

    let apply = sandbox(d, &["apply", "-f", "-", "--wait"], Some(PODS));
    assert!(apply.status.success(), "{}", text(&apply));
    let down = sandbox(d, &["down"], None);
    assert!(down.status.success(), "{}", text(&down));
    common::assert_machine_restored(&before, index, d);
    assert!(!Command::new("ip")
        .args(["link", "show", &link])
        .output()
        .unwrap()
        .status
        .success());
}
