//! The gateway bridge's flow table: pure data from the bridge's ports.
//!
//! The node's host stack (the bridge's `LOCAL` port) and its gateway
//! router (reached through the localnet patch port ovn-controller creates)
//! share the node IP and the bridge's MAC on one uplink. What leaves is
//! easy: both go out the uplink. What arrives must be told apart:
//!
//! - Geneve between nodes goes straight to the host (the userspace
//!   datapath decapsulates it there), before conntrack; what the host
//!   sends (its own traffic and the tunnels it encapsulates, which enter
//!   the bridge from `LOCAL`) simply goes out;
//! - traffic the gateway router sent out (pod egress, SNATed to the node
//!   IP) is committed to conntrack zone [`CT_ZONE`] with mark
//!   [`MARK_GATEWAY`]; what comes back on such a connection (established
//!   or related, e.g. ICMP errors) goes to the patch port;
//! - packets to the Services' node ports on the node's addresses and to
//!   LoadBalancer and external IPs ([`super::steer`]) go to the patch
//!   port, where the gateway router holds their load balancers, before
//!   and without conntrack: the destination alone decides, and the
//!   userspace datapath drops a packet recirculated more than 6 times,
//!   which a new connection through the router to an endpoint on this
//!   node already needs (see the controller's `SELECTION_FIELDS`); one
//!   more here lost every first SYN;
//! - everything else that is IP goes to the host: its own connections'
//!   replies and new connections from outside;
//! - ARP and IPv6 neighbour discovery from the uplink go to both, since
//!   both answer for the same address and MAC and both need to learn
//!   their neighbours.
//!
//! Host traffic is not committed: only the gateway router's connections
//! need to be recognised, and every conntrack entry costs the userspace
//! datapath.
//!
//! The cookie of every flow carries a fingerprint of the whole table
//! ([`cookie_of`]), so a restarted agent can tell that the bridge already
//! holds exactly this table without comparing actions that Open vSwitch
//! may print back in another spelling.

use std::net::IpAddr;

use openflow::{ct_state, port, Action, Ct, CtZone, Field, FlowMod, FlowStats, Match};

use super::steer::{self, Steering};

/// `ip, nw_dst=IP` or `ipv6, ipv6_dst=IP`.
fn dst(m: Match, ip: IpAddr) -> Match {
    match ip {
        IpAddr::V4(a) => m.ip().ipv4_dst(a),
        IpAddr::V6(a) => m.ipv6().ipv6_dst(a),
    }
}

/// Conntrack zone of the gateway bridge's connections (ovn-controller
/// allocates its zones from 1 upwards; this stays clear of them).
pub const CT_ZONE: u16 = 64000;
/// `ct_mark` of connections the gateway router started.
pub const MARK_GATEWAY: u32 = 1;
/// Geneve's UDP port.
pub const GENEVE_PORT: u16 = 6081;
/// The high 32 bits of every cookie: "SYGW".
pub const COOKIE_MAGIC: u64 = 0x5359_4757 << 32;
/// Neighbour solicitation and advertisement.
const ND_TYPES: [u8; 2] = [135, 136];

/// The bridge's ports the table refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ports {
    /// The physical uplink's OpenFlow port number.
    pub uplink: u32,
    /// The localnet patch port to `br-int`, once ovn-controller made it.
    pub patch: Option<u32>,
}

/// The flow table for `ports` and `steering`, with the cookie of
/// [`cookie_of`].
pub fn flows(ports: Ports, steering: &Steering) -> Vec<FlowMod> {
    let up = ports.uplink;
    let to_host_and_gw: Vec<Action> = std::iter::once(Action::local())
        .chain(ports.patch.map(Action::output))
        .collect();
    let add = |table: u8, priority: u16, m: Match, actions: Vec<Action>| {
        FlowMod::add(m)
            .table(table)
            .priority(priority)
            .actions(actions)
    };
    let mut out = vec![
        // Geneve between nodes: to the host, never through conntrack.
        add(
            0,
            300,
            Match::new().in_port(up).udp().udp_dst(GENEVE_PORT),
            vec![Action::local()],
        ),
        add(
            0,
            300,
            Match::new().in_port(up).udp6().udp_dst(GENEVE_PORT),
            vec![Action::local()],
        ),
    ];
    for t in ND_TYPES {
        out.push(add(
            0,
            200,
            Match::new().in_port(up).icmp6().icmpv6_type(t),
            to_host_and_gw.clone(),
        ));
    }
    let lookup = Action::Ct(Ct {
        commit: false,
        force: false,
        zone: CtZone::Imm(CT_ZONE),
        table: Some(1),
        alg: 0,
        actions: vec![],
    });
    out.push(add(
        0,
        100,
        Match::new().in_port(up).ip(),
        vec![lookup.clone()],
    ));
    out.push(add(0, 100, Match::new().in_port(up).ipv6(), vec![lookup]));
    // ARP and anything else that is not IP.
    out.push(add(0, 10, Match::new().in_port(up), to_host_and_gw));
    out.push(add(
        0,
        10,
        Match::new().in_port(port::LOCAL),
        vec![Action::output(up)],
    ));
    if let Some(patch) = ports.patch {
        let commit = Action::Ct(Ct {
            commit: true,
            force: false,
            zone: CtZone::Imm(CT_ZONE),
            table: None,
            alg: 0,
            actions: vec![Action::set_field(Field::CtMark, MARK_GATEWAY.into())],
        });
        for m in [Match::new().ip(), Match::new().ipv6()] {
            out.push(add(
                0,
                100,
                m.in_port(patch),
                vec![commit.clone(), Action::output(up)],
            ));
        }
        out.push(add(
            0,
            10,
            Match::new().in_port(patch),
            vec![Action::output(up)],
        ));
        for (ip, proto, port) in &steering.node_ports {
            let m = dst(Match::new(), *ip).ip_proto(*proto);
            let m = match *proto {
                steer::UDP => m.udp_dst(*port),
                steer::SCTP => m.sctp_dst(*port),
                _ => m.tcp_dst(*port),
            };
            out.push(add(0, 150, m.in_port(up), vec![Action::output(patch)]));
        }
        for ip in &steering.vips {
            out.push(add(
                0,
                150,
                dst(Match::new(), *ip).in_port(up),
                vec![Action::output(patch)],
            ));
        }
        for state in [ct_state::EST, ct_state::REL] {
            out.push(add(
                1,
                100,
                Match::new()
                    .ct_state(ct_state::TRK | state, ct_state::TRK | state)
                    .ct_mark(MARK_GATEWAY),
                vec![Action::output(patch)],
            ));
        }
    }
    // Other ports (an operator's): the bridge behaves as it did before.
    out.push(add(0, 0, Match::new(), vec![Action::normal()]));
    out.push(add(1, 0, Match::new(), vec![Action::local()]));
    let cookie = cookie_of(&out);
    out.into_iter().map(|f| f.cookie(cookie)).collect()
}

/// [`COOKIE_MAGIC`] plus a 32-bit FNV-1a hash of the table's text form
/// (cookies left out).
pub fn cookie_of(flows: &[FlowMod]) -> u64 {
    let mut lines: Vec<String> = flows
        .iter()
        .map(|f| f.clone().cookie(0).to_flow_stats().to_ofctl(false))
        .collect();
    lines.sort();
    let mut h: u32 = 0x811c_9dc5;
    for b in lines.join("\n").bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    COOKIE_MAGIC | u64::from(h)
}

/// Whether the bridge holds exactly `want` already: as many flows, each
/// with `want`'s cookie (which fingerprints the table).
pub fn holds(have: &[FlowStats], want: &[FlowMod]) -> bool {
    let Some(cookie) = want.first().map(|f| f.cookie) else {
        return have.is_empty();
    };
    have.len() == want.len() && have.iter().all(|f| f.cookie == cookie)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(flows: &[FlowMod]) -> Vec<String> {
        flows
            .iter()
            .map(|f| f.clone().cookie(0).to_flow_stats().to_ofctl(false))
            .collect()
    }

    #[test]
    fn the_table_with_a_patch_port() {
        let t = text(&flows(
            Ports {
                uplink: 1,
                patch: Some(2),
            },
            &Steering::default(),
        ));
        let want = [
            "priority=300,udp,in_port=1,tp_dst=6081 actions=LOCAL",
            "priority=300,udp6,in_port=1,tp_dst=6081 actions=LOCAL",
            "priority=200,icmp6,in_port=1,icmp_type=135 actions=LOCAL,output:2",
            "priority=200,icmp6,in_port=1,icmp_type=136 actions=LOCAL,output:2",
            "priority=100,ip,in_port=1 actions=ct(table=1,zone=64000)",
            "priority=100,ipv6,in_port=1 actions=ct(table=1,zone=64000)",
            "priority=10,in_port=1 actions=LOCAL,output:2",
            "priority=10,in_port=LOCAL actions=output:1",
            "priority=100,ip,in_port=2 actions=ct(commit,zone=64000,exec(set_field:0x1->ct_mark)),output:1",
            "priority=100,ipv6,in_port=2 actions=ct(commit,zone=64000,exec(set_field:0x1->ct_mark)),output:1",
            "priority=10,in_port=2 actions=output:1",
            "table=1, priority=100,ct_state=+est+trk,ct_mark=0x1 actions=output:2",
            "table=1, priority=100,ct_state=+rel+trk,ct_mark=0x1 actions=output:2",
            "priority=0 actions=NORMAL",
            "table=1, priority=0 actions=LOCAL",
        ];
        assert_eq!(t, want);
    }

    #[test]
    fn node_ports_and_vips_go_to_the_gateway_router() {
        let steering = Steering {
            node_ports: [
                ("198.18.0.11".parse().unwrap(), steer::TCP, 30080),
                ("fd00::11".parse().unwrap(), steer::UDP, 30053),
            ]
            .into(),
            vips: ["192.0.2.7".parse().unwrap()].into(),
        };
        let t = text(&flows(
            Ports {
                uplink: 1,
                patch: Some(2),
            },
            &steering,
        ));
        for want in [
            "priority=150,tcp,in_port=1,nw_dst=198.18.0.11,tp_dst=30080 actions=output:2",
            "priority=150,udp6,in_port=1,ipv6_dst=fd00::11,tp_dst=30053 actions=output:2",
            "priority=150,ip,in_port=1,nw_dst=192.0.2.7 actions=output:2",
        ] {
            let want = want.to_string();
            assert!(t.contains(&want), "{want} not in {t:#?}");
        }
        // Another Service set is another table, so another fingerprint.
        let plain = flows(
            Ports {
                uplink: 1,
                patch: Some(2),
            },
            &Steering::default(),
        );
        assert_ne!(
            cookie_of(&plain),
            cookie_of(&flows(
                Ports {
                    uplink: 1,
                    patch: Some(2)
                },
                &steering
            ))
        );
    }

    #[test]
    fn without_a_patch_port_everything_is_the_hosts() {
        let t = text(&flows(
            Ports {
                uplink: 7,
                patch: None,
            },
            &Steering {
                vips: ["192.0.2.7".parse().unwrap()].into(),
                ..Default::default()
            },
        ));
        assert!(t.iter().all(|l| !l.contains("ct_mark")), "{t:#?}");
        assert!(t.contains(&"priority=10,in_port=7 actions=LOCAL".to_string()));
        assert_eq!(t.len(), 10);
    }

    #[test]
    fn cookies_fingerprint_the_table() {
        let a = flows(
            Ports {
                uplink: 1,
                patch: Some(2),
            },
            &Steering::default(),
        );
        let b = flows(
            Ports {
                uplink: 1,
                patch: Some(3),
            },
            &Steering::default(),
        );
        assert!(a.iter().all(|f| f.cookie == a[0].cookie));
        assert_eq!(a[0].cookie >> 32, COOKIE_MAGIC >> 32);
        assert_ne!(a[0].cookie, b[0].cookie);
        assert_eq!(a[0].cookie, cookie_of(&a), "stable");
        let have: Vec<FlowStats> = a.iter().map(|f| f.to_flow_stats()).collect();
        assert!(holds(&have, &a));
        assert!(!holds(&have, &b));
        assert!(!holds(&have[1..], &a));
        let mut extra = have.clone();
        extra.push(FlowStats::default());
        assert!(!holds(&extra, &a));
    }
}
