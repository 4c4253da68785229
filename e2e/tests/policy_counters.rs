//! Per-policy counters on the node agent's `/metrics`, with real packets:
//! a NetworkPolicy isolates a server pod for ingress and allows one
//! client; a known number of UDP datagrams from the denied client and
//! from the allowed one (each from its own source port, so each is a new
//! connection) must raise the server node's
//! `switchyard_networkpolicy_packets_total` deny and allow series by
//! exactly that many, and the bytes series by that many frames' bytes.
//! Then an AdminNetworkPolicy's Deny rule, counted under its own `kind`.

mod common;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::networking::v1::NetworkPolicy;
use switchyard_controller::k8s::Kind;
use switchyard_e2e::probe::{self, echo_server_command, python, Proto};
use switchyard_e2e::{pod_spec, Sandbox, SandboxOptions};

const NS: &str = "counters";
const T: Duration = common::PROBE_TIMEOUT;
/// Datagrams from each client.
const DENIED: u64 = 17;
const ALLOWED: u64 = 11;
/// UDP payload bytes of each datagram.
const PAYLOAD: u64 = 100;
/// What br-int counts for one: Ethernet (14) + IPv4 (20) + UDP (8) +
/// payload, the inner frame (after Geneve decapsulation).
const FRAME: u64 = 14 + 20 + 8 + PAYLOAD;

/// Sends `n` datagrams of `PAYLOAD` bytes, each from its own socket (all
/// open at once, so their ephemeral source ports differ); with `replies`,
/// waits for each answer and prints how many came.
const SENDER: &str = r#"
import socket, sys
ip, port, n, size, replies = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == "1"
socks = []
for _ in range(n):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", 0))
    socks.append(s)
assert len({s.getsockname()[1] for s in socks}) == n
got = 0
for s in socks:
    s.sendto(b"x" * size, (ip, port))
    if replies:
        s.settimeout(5.0)
        try:
            s.recvfrom(2048); got += 1
        except OSError:
            pass
print(got)
"#;

fn labels(pod: &str, key: &str, value: &str) -> k8s_openapi::api::core::v1::Pod {
    let mut p = pod_spec(NS, pod, None, echo_server_command(pod));
    p.metadata.labels = Some(BTreeMap::from([(key.to_string(), value.to_string())]));
    p
}

fn policy() -> NetworkPolicy {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"namespace": NS, "name": "only-ok"},
        "spec": {
            "podSelector": {"matchLabels": {"app": "server"}},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "ok"}}}]}]
        }
    }))
    .expect("a valid NetworkPolicy")
}

/// The value of the `family` series with these label values.
fn value(text: &str, family: &str, want: &[(&str, &str)]) -> Option<u64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{family}{{")))
        .find(|l| {
            want.iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Counts {
    deny_packets: u64,
    deny_bytes: u64,
    allow_packets: u64,
    allow_bytes: u64,
}

const DENY: &[(&str, &str)] = &[
    ("kind", "NetworkPolicy"),
    ("namespace", NS),
    ("policy", "only-ok"),
    ("direction", "Ingress"),
    ("rule", "default"),
    ("action", "deny"),
];
const ALLOW: &[(&str, &str)] = &[
    ("kind", "NetworkPolicy"),
    ("namespace", NS),
    ("policy", "only-ok"),
    ("direction", "Ingress"),
    ("rule", "0"),
    ("action", "allow"),
];

fn counts(sb: &Sandbox, node: usize) -> Result<Counts, String> {
    let text = sb
        .with_node(node, |n| n.agent_metrics())
        .map_err(|e| format!("{e:#}"))?;
    let get = |family: &str, which: &[(&str, &str)]| {
        value(&text, family, which).ok_or_else(|| format!("no {family} {which:?} in:\n{text}"))
    };
    Ok(Counts {
        deny_packets: get("switchyard_networkpolicy_packets_total", DENY)?,
        deny_bytes: get("switchyard_networkpolicy_bytes_total", DENY)?,
        allow_packets: get("switchyard_networkpolicy_packets_total", ALLOW)?,
        allow_bytes: get("switchyard_networkpolicy_bytes_total", ALLOW)?,
    })
}

fn send(sb: &Sandbox, pod: &str, server: IpAddr, n: u64, replies: bool) -> u64 {
    let (ip, n_s, size) = (server.to_string(), n.to_string(), PAYLOAD.to_string());
    let port = probe::UDP_PORT.to_string();
    let out = sb
        .exec(
            NS,
            pod,
            &[
                python(),
                "-c",
                SENDER,
                &ip,
                &port,
                &n_s,
                &size,
                if replies { "1" } else { "0" },
            ],
        )
        .unwrap();
    assert!(
        out.status.success(),
        "sender in {pod}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

#[test]
fn policy_counters_count_denied_and_allowed_datagrams() {
    let _serial = common::serial();
    common::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let sb = common::up(SandboxOptions::new(2, dir.path())).expect("sandbox up");
    // The server on node-1, both clients on node-2: the ingress ACLs are
    // judged on node-1, where the server's port is.
    let mut server = labels("server", "app", "server");
    server.spec.as_mut().unwrap().node_name = Some("node-1".into());
    sb.create_pod(server).unwrap();
    for (pod, role) in [("client-ok", "ok"), ("client-bad", "bad")] {
        let mut p = labels(pod, "role", role);
        p.spec.as_mut().unwrap().node_name = Some("node-2".into());
        sb.create_pod(p).unwrap();
    }
    sb.wait_pods_ready(Duration::from_secs(120)).unwrap();
    let server_ip = *sb
        .pod_ips(NS, "server")
        .iter()
        .find(|i| i.is_ipv4())
        .expect("the server's IPv4 address");
    assert_eq!(sb.pod_node_index(NS, "server"), Some(0));
    // Paths warm (tunnel neighbours learnt) before anything is counted.
    for client in ["client-ok", "client-bad"] {
        let netns = sb.pod_netns(NS, client).unwrap();
        probe::probe(&netns, Proto::Udp, server_ip, Some("server"), T).unwrap();
    }

    sb.cluster().try_apply(policy()).expect("policy applied");
    let bad = sb.pod_netns(NS, "client-bad").unwrap();
    let ok = sb.pod_netns(NS, "client-ok").unwrap();
    common::wait(
        T,
        "the policy to deny client-bad",
        || match probe::probe_once(&bad, Proto::Udp, server_ip, Some("server")) {
            Ok(()) => Err("client-bad still reaches the server".into()),
            Err(_) => Ok(()),
        },
    );
    probe::probe(&ok, Proto::Udp, server_ip, Some("server"), T).unwrap();
    // The series exist (and the probes above are counted) before the
    // baseline is read.
    common::wait(T, "the policy's series on node-1", || {
        counts(&sb, 0).map(|_| ())
    });
    let before = counts(&sb, 0).unwrap();

    assert_eq!(send(&sb, "client-bad", server_ip, DENIED, false), 0);
    assert_eq!(
        send(&sb, "client-ok", server_ip, ALLOWED, true),
        ALLOWED,
        "every allowed datagram answered"
    );
    let want = Counts {
        deny_packets: before.deny_packets + DENIED,
        deny_bytes: before.deny_bytes + DENIED * FRAME,
        allow_packets: before.allow_packets + ALLOWED,
        allow_bytes: before.allow_bytes + ALLOWED * FRAME,
    };
    // Flow statistics are read live; wait until both rose, then they must
    // have risen by exactly what was sent.
    let mut last = before;
    common::wait(T, "the counters to rise", || {
        last = counts(&sb, 0)?;
        (last.deny_packets >= want.deny_packets && last.allow_packets >= want.allow_packets)
            .then_some(())
            .ok_or_else(|| format!("{last:?}, want {want:?}"))
    });
    assert_eq!(last, want, "from {before:?}");
    // Node-2 judged none of it: its series (if any) did not move by these.
    let other = counts(&sb, 1).ok();
    assert!(
        other.is_none_or(|c| c.deny_packets < DENIED && c.allow_packets < ALLOWED),
        "{other:?}"
    );

    // A deleted policy's series go.
    sb.cluster()
        .delete(Kind::NetworkPolicy, Some(NS), "only-ok")
        .expect("policy deleted");
    common::wait(T, "the policy's series to go", || {
        let text = sb
            .with_node(0, |n| n.agent_metrics())
            .map_err(|e| format!("{e:#}"))?;
        (!text.contains("policy=\"only-ok\""))
            .then_some(())
            .ok_or(text)
    });

    // The same for an AdminNetworkPolicy (cluster-scoped: no namespace;
    // `kind` tells it from the others): its Deny rule drops client-bad.
    sb.cluster().try_apply(admin_policy()).expect("ANP applied");
    common::wait(T, "the ANP to deny client-bad", || match probe::probe_once(
        &bad,
        Proto::Udp,
        server_ip,
        Some("server"),
    ) {
        Ok(()) => Err("client-bad still reaches the server".into()),
        Err(_) => Ok(()),
    });
    probe::probe(&ok, Proto::Udp, server_ip, Some("server"), T).unwrap();
    let anp_deny = |sb: &Sandbox| -> Result<(u64, u64), String> {
        let text = sb
            .with_node(0, |n| n.agent_metrics())
            .map_err(|e| format!("{e:#}"))?;
        let get = |family: &str| {
            value(&text, family, ANP_DENY)
                .ok_or_else(|| format!("no {family} {ANP_DENY:?} in:\n{text}"))
        };
        Ok((
            get("switchyard_networkpolicy_packets_total")?,
            get("switchyard_networkpolicy_bytes_total")?,
        ))
    };
    common::wait(T, "the ANP's series on node-1", || {
        anp_deny(&sb).map(|_| ())
    });
    let before = anp_deny(&sb).unwrap();
    assert_eq!(send(&sb, "client-bad", server_ip, DENIED, false), 0);
    let want = (before.0 + DENIED, before.1 + DENIED * FRAME);
    let mut last = before;
    common::wait(T, "the ANP's counters to rise", || {
        last = anp_deny(&sb)?;
        (last.0 >= want.0)
            .then_some(())
            .ok_or_else(|| format!("{last:?}, want {want:?}"))
    });
    assert_eq!(last, want, "from {before:?}");
    sb.down().unwrap();
}

const ANP_DENY: &[(&str, &str)] = &[
    ("kind", "AdminNetworkPolicy"),
    ("namespace", ""),
    ("policy", "no-bad"),
    ("direction", "Ingress"),
    ("rule", "0"),
    ("action", "deny"),
];

fn admin_policy() -> switchyard_controller::k8s::AdminNetworkPolicy {
    let pods = |key: &str, value: &str| serde_json::json!({"pods": {"namespaceSelector": {}, "podSelector": {"matchLabels": {key: value}}}});
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "no-bad"},
        "spec": {
            "priority": 10,
            "subject": pods("app", "server"),
            "ingress": [{"name": "bad", "action": "Deny", "from": [pods("role", "bad")]}]
        }
    }))
    .expect("a valid AdminNetworkPolicy")
}
