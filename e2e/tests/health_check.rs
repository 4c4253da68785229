//! Service health check ports with real sockets: the node agents answer a
//! LoadBalancer's `healthCheckNodePort` (`externalTrafficPolicy: Local`)
//! as kube-proxy does, seen from the external host with curl: 200 and
//! `localEndpoints: 1` on the node with the endpoint, 503 and 0 on the
//! other; the answers follow the endpoint to another node (a terminating
//! endpoint no longer counts), survive an agent restart and an unreadable
//! Service file, move when the Service's port changes, and the port
//! closes on both nodes when the Service goes.
//! Dual-stack: every answer is checked at both node addresses.

mod common;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;
use switchyard_controller::k8s::{Kind, Object};
use switchyard_e2e::probe::echo_server_command;
use switchyard_e2e::{pod_spec, IpFamily, Sandbox, SandboxOptions};

const NS: &str = "hc";
const T: Duration = Duration::from_secs(60);

/// What a GET of a health check port got.
#[derive(Debug, PartialEq)]
enum Answer {
    /// Status, and the body's `localEndpoints`.
    Http(u16, i64),
    Refused,
}

/// `GET http://ip:port/` from the external host; checks the headers and
/// the body's service name on every HTTP answer.
fn get(sb: &Sandbox, ip: IpAddr, port: u16, service: &str) -> Result<Answer, String> {
    let host = match ip {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("[{a}]"),
    };
    let url = format!("http://{host}:{port}/");
    let out = sb
        .external_exec(&["curl", "-sS", "-i", "--max-time", "5", &url])
        .map_err(|e| format!("{e:#}"))?;
    // curl: 7 = could not connect.
    if out.status.code() == Some(7) {
        return Ok(Answer::Refused);
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!(
            "curl {url}: {:?} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or(format!("no head: {text:?}"))?;
    let status: u16 = head
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or(format!("no status: {head:?}"))?;
    let headers: BTreeMap<String, String> = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_string()))
        .collect();
    assert_eq!(
        headers.get("content-type").map(String::as_str),
        Some("application/json"),
        "{head}"
    );
    assert_eq!(
        headers.get("x-content-type-options").map(String::as_str),
        Some("nosniff"),
        "{head}"
    );
    let v: Value = serde_json::from_str(body).map_err(|e| format!("{e}: {body:?}"))?;
    assert_eq!(v["service"]["namespace"], NS, "{body}");
    assert_eq!(v["service"]["name"], service, "{body}");
    assert_eq!(v["serviceProxyHealthy"], true, "{body}");
    let local = v["localEndpoints"]
        .as_i64()
        .ok_or(format!("no localEndpoints: {body}"))?;
    Ok(Answer::Http(status, local))
}

/// Waits until node `i` answers `want` on `port` at each of its addresses
/// (IPv4 and IPv6).
fn expect(sb: &Sandbox, i: usize, port: u16, service: &str, want: Answer, what: &str) {
    let ips = sb.node_ips(i);
    assert_eq!(ips.len(), 2, "a dual-stack node: {ips:?}");
    for ip in ips {
        common::wait(T, &format!("{what}: node {i} ({ip}) port {port}"), || {
            let got = get(sb, ip, port, service)?;
            (got == want)
                .then_some(())
                .ok_or(format!("got {got:?}, want {want:?}"))
        });
    }
}

/// A LoadBalancer with `externalTrafficPolicy: Local` selecting
/// `app=<app>` (created, or updated), with health check port `port` or
/// one the API server allocates; returns the port.
fn local_load_balancer(sb: &Sandbox, name: &str, app: &str, port: Option<u16>) -> u16 {
    let svc = Service {
        metadata: ObjectMeta {
            namespace: Some(NS.into()),
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("LoadBalancer".into()),
            external_traffic_policy: Some("Local".into()),
            health_check_node_port: port.map(i32::from),
            selector: Some(BTreeMap::from([("app".to_string(), app.to_string())])),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                protocol: Some("TCP".into()),
                port: 80,
                target_port: Some(IntOrString::Int(8080)),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    };
    let Object::Service(stored) = sb.cluster().try_apply(svc).expect("the Service is valid") else {
        panic!("not a Service");
    };
    let port = stored
        .spec
        .and_then(|s| s.health_check_node_port)
        .expect("a healthCheckNodePort is allocated");
    u16::try_from(port).expect("a TCP port")
}

fn server_pod(sb: &Sandbox, name: &str, node: &str, app: &str) {
    let mut p = pod_spec(NS, name, Some(node), echo_server_command(name));
    p.metadata.labels = Some(BTreeMap::from([("app".to_string(), app.to_string())]));
    sb.create_pod(p).expect("pod created");
}

#[test]
fn health_check_ports_answer_as_kube_proxy_does() {
    assert_eq!(
        switchyard_e2e::mirror::SERVICES_DIR,
        switchyard_node::service_source::SERVICES_DIR
    );
    assert_eq!(
        switchyard_e2e::mirror::ENDPOINT_SLICES_DIR,
        switchyard_node::service_source::ENDPOINT_SLICES_DIR
    );
    let _serial = common::serial();
    common::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    // Dual-stack: one listener answers both families, and a pod's two
    // addresses (two slices) are one endpoint.
    let mut opts = SandboxOptions::new(2, dir.path());
    opts.ip_family = IpFamily::Dual;
    let sb = common::up(opts).expect("sandbox up");
    let nodes = sb.node_names();

    server_pod(&sb, "web-a", &nodes[0], "web");
    sb.wait_pods_ready(Duration::from_secs(120)).unwrap();
    let port = local_load_balancer(&sb, "front", "web", None);
    expect(
        &sb,
        0,
        port,
        "front",
        Answer::Http(200, 1),
        "the endpoint's node",
    );
    expect(
        &sb,
        1,
        port,
        "front",
        Answer::Http(503, 0),
        "the other node",
    );

    // A second endpoint on node 1, then the first one terminating: it no
    // longer counts, though it still serves (kube-proxy drains the node).
    server_pod(&sb, "web-b", &nodes[1], "web");
    sb.wait_pods_ready(Duration::from_secs(120)).unwrap();
    expect(
        &sb,
        1,
        port,
        "front",
        Answer::Http(200, 1),
        "a new endpoint",
    );
    assert!(sb.cluster().begin_pod_deletion(NS, "web-a"));
    expect(
        &sb,
        0,
        port,
        "front",
        Answer::Http(503, 0),
        "a terminating endpoint",
    );
    assert!(sb.delete("Pod", NS, "web-a").unwrap());
    expect(
        &sb,
        0,
        port,
        "front",
        Answer::Http(503, 0),
        "the endpoint gone",
    );
    expect(
        &sb,
        1,
        port,
        "front",
        Answer::Http(200, 1),
        "the endpoint moved",
    );

    // A Service file the agent cannot parse: reported, the rest served (a
    // new Service included).
    let pods_dir = sb.with_node(1, |n| Ok(n.pods_dir())).unwrap();
    let bad = pods_dir.join("services").join("hc_bad.json");
    assert!(
        bad.parent().is_some_and(|d| d.is_dir()),
        "{}",
        bad.display()
    );
    std::fs::write(&bad, "{ not json").unwrap();
    server_pod(&sb, "api-a", &nodes[1], "api");
    sb.wait_pods_ready(Duration::from_secs(120)).unwrap();
    let api_port = local_load_balancer(&sb, "api", "api", None);
    assert_ne!(api_port, port);
    expect(
        &sb,
        1,
        api_port,
        "api",
        Answer::Http(200, 1),
        "beside a bad file",
    );
    expect(
        &sb,
        0,
        api_port,
        "api",
        Answer::Http(503, 0),
        "beside a bad file",
    );
    expect(
        &sb,
        1,
        port,
        "front",
        Answer::Http(200, 1),
        "beside a bad file",
    );
    let log = sb.agent_logs()[1].clone();
    common::wait(T, "the bad file in node 1's agent log", || {
        let text = std::fs::read_to_string(&log).map_err(|e| e.to_string())?;
        text.lines()
            .any(|l| l.contains("health check port problem") && l.contains("hc_bad.json"))
            .then_some(())
            .ok_or(format!("not in {}", log.display()))
    });
    std::fs::remove_file(&bad).unwrap();

    // A restarted agent serves again.
    sb.restart_node_agent(1).expect("agent restarted");
    expect(
        &sb,
        1,
        port,
        "front",
        Answer::Http(200, 1),
        "after an agent restart",
    );
    expect(
        &sb,
        1,
        api_port,
        "api",
        Answer::Http(200, 1),
        "after an agent restart",
    );

    // The Service moves to another port: the old one closes, the new one
    // answers.
    let old = port;
    let port = local_load_balancer(&sb, "front", "web", Some(32000));
    assert_eq!(port, 32000);
    for i in 0..2 {
        expect(&sb, i, old, "front", Answer::Refused, "the Service moved");
    }
    expect(&sb, 0, port, "front", Answer::Http(503, 0), "the new port");
    expect(&sb, 1, port, "front", Answer::Http(200, 1), "the new port");

    // The Service goes: its port closes on both nodes; the other stays.
    assert!(sb
        .cluster()
        .delete(Kind::Service, Some(NS), "front")
        .is_some());
    expect(
        &sb,
        0,
        port,
        "front",
        Answer::Refused,
        "the Service deleted",
    );
    expect(
        &sb,
        1,
        port,
        "front",
        Answer::Refused,
        "the Service deleted",
    );
    expect(
        &sb,
        1,
        api_port,
        "api",
        Answer::Http(200, 1),
        "another Service deleted",
    );
    sb.down().unwrap();
}
