//! Port security proven with packets. A pod ("attacker", node-1) writes
//! raw Ethernet frames on its own interface (an AF_PACKET socket, so the
//! kernel does not stop it) carrying UDP datagrams whose source is another
//! pod's IP, another pod's MAC, both, or an address nobody gave it, and it
//! also adds an address it was not given to its interface and pings from
//! it. Observers on the same node ("peer") and on the other node ("remote")
//! capture everything their interface receives (AF_PACKET, ETH_P_ALL):
//! not one spoofed frame may arrive. The control: the same raw sender,
//! with the attacker's own MAC and IP, gets through before and after the
//! spoofs (so the frames are well made, and the spoofs had their chance to
//! arrive before the last control did). IPv4 and IPv6 in one dual-stack
//! sandbox.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use switchyard_e2e::probe::{self, echo_server_command, python, Proto};
use switchyard_e2e::{pod_spec, IpFamily, Sandbox, SandboxOptions};

const NS: &str = "portsec";

/// Writes raw frames: argv[1] the interface, argv[2] a JSON list of
/// `[src_mac, dst_mac, src_ip, dst_ip, payload, count]`; UDP to port 9999.
const SENDER: &str = r#"
import json, socket, struct, sys
iface, frames = sys.argv[1], json.loads(sys.argv[2])
def csum(b):
    if len(b) % 2: b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return (~s) & 0xffff
def mac(m): return bytes.fromhex(m.replace(":", ""))
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((iface, 0))
for smac, dmac, sip, dip, payload, count in frames:
    data = payload.encode()
    ulen = 8 + len(data)
    if ":" in sip:
        src, dst = socket.inet_pton(socket.AF_INET6, sip), socket.inet_pton(socket.AF_INET6, dip)
        pseudo = src + dst + struct.pack("!I3xB", ulen, 17)
        udp = struct.pack("!HHHH", 40000, 9999, ulen, 0) + data
        c = csum(pseudo + udp) or 0xffff
        udp = struct.pack("!HHHH", 40000, 9999, ulen, c) + data
        ip = struct.pack("!IHBB", 6 << 28, ulen, 17, 64) + src + dst
        ethertype = 0x86dd
    else:
        src, dst = socket.inet_aton(sip), socket.inet_aton(dip)
        pseudo = src + dst + struct.pack("!xBH", 17, ulen)
        udp = struct.pack("!HHHH", 40000, 9999, ulen, 0) + data
        c = csum(pseudo + udp) or 0xffff
        udp = struct.pack("!HHHH", 40000, 9999, ulen, c) + data
        hdr = struct.pack("!BBHHHBBH", 0x45, 0, 20 + ulen, 0, 0x4000, 64, 17, 0) + src + dst
        ip = hdr[:10] + struct.pack("!H", csum(hdr)) + hdr[12:]
        ethertype = 0x0800
    frame = mac(dmac) + mac(smac) + struct.pack("!H", ethertype) + ip + udp
    for _ in range(count):
        s.send(frame)
"#;

/// Announces an address as the sender's: argv[1] the interface, argv[2]
/// the MAC, argv[3] the address, argv[4] how many times. IPv4: a
/// gratuitous ARP request (broadcast); IPv6: an unsolicited neighbour
/// advertisement to all nodes, sent from the sender's own address argv[5].
const ANNOUNCER: &str = r#"
import socket, struct, sys
iface, smac, ip, count = sys.argv[1], bytes.fromhex(sys.argv[2].replace(":", "")), sys.argv[3], int(sys.argv[4])
def csum(b):
    if len(b) % 2: b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return (~s) & 0xffff
if ":" in ip:
    src = socket.inet_pton(socket.AF_INET6, sys.argv[5])
    dst = socket.inet_pton(socket.AF_INET6, "ff02::1")
    target = socket.inet_pton(socket.AF_INET6, ip)
    body = struct.pack("!I", 0x20000000) + target + struct.pack("!BB", 2, 1) + smac
    icmp = struct.pack("!BBH", 136, 0, 0) + body
    pseudo = src + dst + struct.pack("!I3xB", len(icmp), 58)
    icmp = struct.pack("!BBH", 136, 0, csum(pseudo + icmp)) + body
    pkt = struct.pack("!IHBB", 6 << 28, len(icmp), 58, 255) + src + dst + icmp
    frame = bytes.fromhex("333300000001") + smac + struct.pack("!H", 0x86dd) + pkt
else:
    a = socket.inet_aton(ip)
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + smac + a + b"\0" * 6 + a
    frame = b"\xff" * 6 + smac + struct.pack("!H", 0x0806) + arp
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((iface, 0))
for _ in range(count):
    s.send(frame)
"#;

/// Captures every frame `argv[1]` receives; prints `ready`, then one line
/// per IPv4/IPv6 frame that is UDP with a payload starting with `argv[2]`
/// (`udp SRC_MAC SRC_IP PAYLOAD`) or an ICMP/ICMPv6 echo request
/// (`echo SRC_MAC SRC_IP`), and per ARP packet (`arp SENDER_MAC
/// SENDER_IP`) and neighbour advertisement (`na SRC_MAC TARGET`).
const OBSERVER: &str = r#"
import socket, struct, sys
iface, nonce = sys.argv[1], sys.argv[2].encode()
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind((iface, 0))
print("ready", flush=True)
def mac(b): return ":".join("%02x" % x for x in b)
while True:
    f, addr = s.recvfrom(65535)
    if addr[2] == socket.PACKET_OUTGOING: continue
    et = struct.unpack("!H", f[12:14])[0]
    if et == 0x0806 and len(f) >= 42:
        print("arp", mac(f[22:28]), socket.inet_ntop(socket.AF_INET, f[28:32]), flush=True)
        continue
    if et == 0x86dd and f[20] == 58 and f[54:55] == b"\x88":
        print("na", mac(f[6:12]), socket.inet_ntop(socket.AF_INET6, f[62:78]), flush=True)
        continue
    if et == 0x0800:
        ihl = (f[14] & 15) * 4
        proto, sip, l4 = f[23], socket.inet_ntop(socket.AF_INET, f[26:30]), f[14 + ihl:]
        echo = proto == 1 and l4[:1] == b"\x08"
    elif et == 0x86dd:
        proto, sip, l4 = f[20], socket.inet_ntop(socket.AF_INET6, f[22:38]), f[54:]
        echo = proto == 58 and l4[:1] == b"\x80"
    else:
        continue
    if proto == 17 and l4[8:].startswith(nonce):
        print("udp", mac(f[6:12]), sip, l4[8:].decode(errors="replace"), flush=True)
    elif echo:
        print("echo", mac(f[6:12]), sip, flush=True)
"#;

/// A capture running in a pod; its lines as they arrive.
struct Observer {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Observer {
    fn start(sb: &Sandbox, pod: &str, nonce: &str) -> Observer {
        let mut child = sb
            .exec_command(NS, pod, &[python(), "-u", "-c", OBSERVER, "eth0", nonce])
            .unwrap()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the observer");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().expect("observer stdout");
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let obs = Observer { child, lines };
        common::wait(Duration::from_secs(10), "the observer to capture", || {
            obs.has(|l| l == "ready")
                .then_some(())
                .ok_or_else(|| "not ready".to_string())
        });
        obs
    }

    fn has(&self, f: impl Fn(&str) -> bool) -> bool {
        self.lines.lock().unwrap().iter().any(|l| f(l))
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ip_json(sb: &Sandbox, pod: &str, args: &[&str]) -> Value {
    let mut cmd = vec!["ip", "-j"];
    cmd.extend_from_slice(args);
    let out = sb.exec(NS, pod, &cmd).unwrap();
    assert!(
        out.status.success(),
        "{pod}: ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn mac_of(sb: &Sandbox, pod: &str) -> String {
    ip_json(sb, pod, &["link", "show", "dev", "eth0"])[0]["address"]
        .as_str()
        .expect("eth0 has a MAC")
        .to_string()
}

/// The MAC of the pod's default gateway (the router port) in `family`,
/// which the pod learned when it last talked across nodes.
fn gateway_mac(sb: &Sandbox, pod: &str, v6: bool) -> String {
    let fam = if v6 { "-6" } else { "-4" };
    let gw = ip_json(sb, pod, &[fam, "route", "show", "default"])[0]["gateway"]
        .as_str()
        .expect("a default gateway")
        .to_string();
    let mut mac = None;
    common::wait(
        Duration::from_secs(10),
        "the gateway's neighbour entry",
        || {
            let n = ip_json(sb, pod, &[fam, "neigh", "show", "to", &gw, "dev", "eth0"]);
            mac = n[0]["lladdr"].as_str().map(str::to_string);
            mac.as_ref().map(drop).ok_or_else(|| format!("{n}"))
        },
    );
    mac.unwrap()
}

fn family_ip(sb: &Sandbox, pod: &str, v6: bool) -> IpAddr {
    sb.pod_ips(NS, pod)
        .into_iter()
        .find(|ip| ip.is_ipv6() == v6)
        .unwrap_or_else(|| panic!("{pod} has no {} address", if v6 { "IPv6" } else { "IPv4" }))
}

/// An address in the attacker's own subnet that nobody was given.
fn unassigned(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            IpAddr::from([o[0], o[1], o[2], 201])
        }
        IpAddr::V6(v6) => {
            let mut s = v6.segments();
            s[7] = 0xc9c9;
            IpAddr::from(s)
        }
    }
}

fn send(sb: &Sandbox, frames: &[(String, String, IpAddr, IpAddr, String, u32)]) {
    let list: Vec<Value> = frames
        .iter()
        .map(|(sm, dm, si, di, p, n)| {
            serde_json::json!([sm, dm, si.to_string(), di.to_string(), p, n])
        })
        .collect();
    let out = sb
        .exec(
            NS,
            "attacker",
            &[
                python(),
                "-c",
                SENDER,
                "eth0",
                &Value::Array(list).to_string(),
            ],
        )
        .unwrap();
    assert!(
        out.status.success(),
        "raw sender: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn spoofed_ip_mac_and_unassigned_sources_get_nothing_through() {
    common::init_tracing();
    let _serial = common::serial();
    let dir = tempfile::tempdir().unwrap();
    let mut opts = SandboxOptions::new(2, dir.path());
    opts.ip_family = IpFamily::Dual;
    let sb = common::up(opts).expect("sandbox up");
    for (pod, node) in [
        ("attacker", "node-1"),
        ("peer", "node-1"),
        ("remote", "node-2"),
        ("victim", "node-2"),
    ] {
        sb.create_pod(pod_spec(NS, pod, Some(node), echo_server_command(pod)))
            .unwrap();
    }
    sb.wait_pods_ready(Duration::from_secs(120)).unwrap();
    let started = Instant::now();

    // Ordinary traffic works, and teaches the attacker its neighbours.
    let attacker_ns = sb.pod_netns(NS, "attacker").unwrap();
    for dst in ["peer", "remote", "victim"] {
        for ip in sb.pod_ips(NS, dst) {
            probe::probe(&attacker_ns, Proto::Icmp, ip, None, common::PROBE_TIMEOUT)
                .unwrap_or_else(|e| panic!("attacker -> {dst} ({ip}): {e:#}"));
        }
    }
    let nonce = format!(
        "portsec-{:08x}",
        std::process::id() ^ started.elapsed().subsec_nanos()
    );
    let observers: BTreeMap<&str, Observer> = ["peer", "remote"]
        .into_iter()
        .map(|p| (p, Observer::start(&sb, p, &nonce)))
        .collect();

    let own_mac = mac_of(&sb, "attacker");
    let victim_mac = mac_of(&sb, "victim");
    let mut sent_spoofed = 0;
    for v6 in [false, true] {
        let fam = if v6 { "ipv6" } else { "ipv4" };
        let own_ip = family_ip(&sb, "attacker", v6);
        let victim_ip = family_ip(&sb, "victim", v6);
        let nobody = unassigned(own_ip);
        assert!(
            sb.pods()
                .iter()
                .all(|p| !p.ips.contains(&nobody.to_string())),
            "{nobody} belongs to a pod"
        );
        let gw_mac = gateway_mac(&sb, "attacker", v6);
        for obs in ["peer", "remote"] {
            // Same node: straight to the peer's MAC; across nodes: to the
            // router port.
            let dst_mac = if obs == "peer" {
                mac_of(&sb, "peer")
            } else {
                gw_mac.clone()
            };
            let dst_ip = family_ip(&sb, obs, v6);
            let frame = |case: &str, smac: &str, sip: IpAddr, n: u32| {
                (
                    smac.to_string(),
                    dst_mac.clone(),
                    sip,
                    dst_ip,
                    format!("{nonce} {case} {fam}"),
                    n,
                )
            };
            let seen = |case: &str| {
                let want = format!("{nonce} {case} {fam}");
                observers[obs].has(|l| l.ends_with(&want))
            };
            // Control before: the attacker's own MAC and IP, through the
            // same raw socket.
            common::wait(common::PROBE_TIMEOUT, "the raw control frame", || {
                send(&sb, &[frame("legit-before", &own_mac, own_ip, 1)]);
                seen("legit-before").then_some(()).ok_or_else(|| {
                    format!("{obs} ({fam}) saw nothing: {:?}", observers[obs].lines())
                })
            });
            let spoofs = [
                frame("spoof-ip", &own_mac, victim_ip, 20),
                frame("spoof-mac", &victim_mac, own_ip, 20),
                frame("spoof-both", &victim_mac, victim_ip, 20),
                frame("unassigned", &own_mac, nobody, 20),
            ];
            sent_spoofed += spoofs.iter().map(|f| f.5).sum::<u32>();
            send(&sb, &spoofs);
            // An address it was not given, used by the kernel as a source.
            let plen = if v6 { "/128" } else { "/32" };
            let mut add = vec!["ip", "addr", "add"];
            let nobody_s = format!("{nobody}{plen}");
            add.extend([nobody_s.as_str(), "dev", "eth0"]);
            if v6 {
                add.push("nodad");
            }
            let out = sb.exec(NS, "attacker", &add).unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let dst_s = dst_ip.to_string();
            let nobody_ip = nobody.to_string();
            let _ = sb
                .exec(
                    NS,
                    "attacker",
                    &[
                        "ping", "-c", "3", "-i", "0.2", "-W", "1", "-I", &nobody_ip, &dst_s,
                    ],
                )
                .unwrap();
            sent_spoofed += 3;
            let del: Vec<&str> = ["ip", "addr", "del", nobody_s.as_str(), "dev", "eth0"].to_vec();
            assert!(sb.exec(NS, "attacker", &del).unwrap().status.success());
            // Control after: once it arrived, the spoofs sent before it
            // had every chance to.
            common::wait(
                common::PROBE_TIMEOUT,
                "the raw control frame after the spoofs",
                || {
                    send(&sb, &[frame("legit-after", &own_mac, own_ip, 1)]);
                    seen("legit-after")
                        .then_some(())
                        .ok_or_else(|| format!("{obs} ({fam}) saw no control after the spoofs"))
                },
            );
            let lines = observers[obs].lines();
            let leaked: Vec<&String> = lines
                .iter()
                .filter(|l| {
                    l.contains(" spoof-")
                        || l.contains(" unassigned ")
                        || l.contains(&victim_mac)
                        || l.split(' ').nth(2) == Some(victim_ip.to_string().as_str())
                        || l.split(' ').nth(2) == Some(nobody_ip.as_str())
                })
                .collect();
            assert!(
                leaked.is_empty(),
                "{obs} ({fam}) received {} spoofed packets from the attacker, e.g. {:?}",
                leaked.len(),
                leaked.iter().take(8).collect::<Vec<_>>()
            );
            let legit = lines
                .iter()
                .filter(|l| l.contains(" legit-") && l.ends_with(fam))
                .count();
            println!(
                "port security {fam} -> {obs}: {} spoofed packets sent, 0 received; {legit} control frames received",
                spoofs.iter().map(|f| f.5).sum::<u32>() + 3
            );
        }
    }
    // Neighbour spoofing on the attacker's own switch: announcing the
    // peer's, the victim's, or an unassigned address as the attacker's
    // (ARP poisoning, forged neighbour advertisements) reaches nobody;
    // announcing its own does (the control, before and after).
    let peer = &observers["peer"];
    let own6 = family_ip(&sb, "attacker", true);
    let announce = |ip: IpAddr, n: u32| {
        let out = sb
            .exec(
                NS,
                "attacker",
                &[
                    python(),
                    "-c",
                    ANNOUNCER,
                    "eth0",
                    &own_mac,
                    &ip.to_string(),
                    &n.to_string(),
                    &own6.to_string(),
                ],
            )
            .unwrap();
        assert!(
            out.status.success(),
            "announcer: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    for v6 in [false, true] {
        let kind = if v6 { "na" } else { "arp" };
        let own_ip = family_ip(&sb, "attacker", v6);
        let control = format!("{kind} {own_mac} {own_ip}");
        let controls = || peer.lines().iter().filter(|l| **l == control).count();
        let before = controls();
        common::wait(
            common::PROBE_TIMEOUT,
            "the attacker's own announcement",
            || {
                announce(own_ip, 1);
                (controls() > before)
                    .then_some(())
                    .ok_or_else(|| format!("peer saw no {control:?}: {:?}", peer.lines()))
            },
        );
        let spoofed: Vec<String> = [
            family_ip(&sb, "peer", v6),
            family_ip(&sb, "victim", v6),
            unassigned(own_ip),
        ]
        .iter()
        .map(IpAddr::to_string)
        .collect();
        for ip in &spoofed {
            announce(ip.parse().unwrap(), 20);
        }
        sent_spoofed += 60;
        let before = controls();
        common::wait(
            common::PROBE_TIMEOUT,
            "the own announcement after the spoofs",
            || {
                announce(own_ip, 1);
                (controls() > before)
                    .then_some(())
                    .ok_or_else(|| "no control after the spoofs".to_string())
            },
        );
        let lines = peer.lines();
        let leaked: Vec<&String> = lines
            .iter()
            .filter(|l| {
                l.starts_with(kind) && spoofed.iter().any(|ip| l.split(' ').nth(2) == Some(ip))
            })
            .collect();
        assert!(
            leaked.is_empty(),
            "peer received {} forged {kind} announcements, e.g. {:?}",
            leaked.len(),
            leaked.iter().take(8).collect::<Vec<_>>()
        );
        println!(
            "port security {kind}: 60 forged announcements (peer's, victim's, unassigned address) sent, 0 received; {} own received",
            controls()
        );
    }

    // The attacker's own traffic still flows after all that.
    for ip in sb.pod_ips(NS, "remote") {
        probe::probe(
            &attacker_ns,
            Proto::Tcp,
            ip,
            Some("remote"),
            common::PROBE_TIMEOUT,
        )
        .unwrap_or_else(|e| panic!("attacker -> remote ({ip}) after the spoofs: {e:#}"));
    }
    println!(
        "port security: {sent_spoofed} spoofed packets in {:.1} s, none received",
        started.elapsed().as_secs_f64()
    );
    drop(observers);
    sb.down().unwrap();
}
