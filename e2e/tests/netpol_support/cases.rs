//! The NetworkPolicy matrix cases: policies (YAML) and the reachability
//! each must produce over the 9 matrix pods, for every port and family.

use std::net::IpAddr;

use switchyard_e2e::netpol_matrix::{Port, Probe};
use switchyard_e2e::Sandbox;

/// A named case: policies, then the expected matrix.
pub struct Case {
    pub name: &'static str,
    /// Run in the short (CI) form for every family, not only IPv4.
    pub core: bool,
    pub yaml: String,
    pub expect: Box<dyn Fn(&Probe) -> bool>,
}

fn is(p: &switchyard_e2e::netpol_matrix::PodRef, id: &str) -> bool {
    p.id() == id
}

/// `NAME` a NetworkPolicy in `ns` with the given `spec` (YAML flow text).
pub fn policy(ns: &str, name: &str, spec: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {spec}\n---\n"
    )
}

fn host_cidr(ip: IpAddr) -> String {
    if ip.is_ipv6() {
        format!("{ip}/128")
    } else {
        format!("{ip}/32")
    }
}

/// Every case; `pods` are the matrix pods (for the ipBlock addresses).
pub fn all(sb: &Sandbox, pods: &[switchyard_e2e::netpol_matrix::PodRef]) -> Vec<Case> {
    let find = |id: &str| pods.iter().find(|p| p.id() == id).cloned();
    let yb = find("y/b").map(|p| p.ips).unwrap_or_default();
    let zc = find("z/c").map(|p| p.ips).unwrap_or_default();
    let cidrs = sb.options().ip_family.cluster_cidrs();
    // x/a: the whole pod network except y/b; x/b: z/c alone.
    let except_yb: Vec<String> = cidrs
        .iter()
        .map(|c| {
            let v6 = c.contains(':');
            let ex: Vec<String> = yb
                .iter()
                .filter(|i| i.is_ipv6() == v6)
                .map(|i| host_cidr(*i))
                .collect();
            format!(
                "{{ipBlock: {{cidr: \"{c}\", except: [{}]}}}}",
                ex.join(", ")
            )
        })
        .collect();
    let only_zc: Vec<String> = zc
        .iter()
        .map(|i| format!("{{ipBlock: {{cidr: \"{}\"}}}}", host_cidr(*i)))
        .collect();
    vec![
        Case {
            name: "default allow",
            core: true,
            yaml: String::new(),
            expect: Box::new(|_| true),
        },
        Case {
            name: "deny all ingress in x (x's own connections still get replies)",
            core: true,
            yaml: policy("x", "deny-in", "{podSelector: {}, policyTypes: [Ingress]}"),
            expect: Box::new(|p| p.to.ns != "x"),
        },
        Case {
            name: "allow from the same namespace",
            core: false,
            yaml: policy(
                "x",
                "same-ns",
                "{podSelector: {}, ingress: [{from: [{podSelector: {}}]}]}",
            ),
            expect: Box::new(|p| p.to.ns != "x" || p.from.ns == "x"),
        },
        Case {
            name: "allow from a namespaceSelector",
            core: true,
            yaml: policy(
                "x",
                "from-y",
                "{podSelector: {}, ingress: [{from: [{namespaceSelector: {matchLabels: {ns: y}}}]}]}",
            ),
            expect: Box::new(|p| p.to.ns != "x" || p.from.ns == "y"),
        },
        Case {
            name: "podSelector and namespaceSelector in one peer; kubernetes.io/metadata.name",
            core: true,
            yaml: policy(
                "x",
                "yb-to-a",
                "{podSelector: {matchLabels: {pod: a}}, ingress: [{from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: y}}, podSelector: {matchLabels: {pod: b}}}]}]}",
            ),
            expect: Box::new(|p| !is(p.to, "x/a") || is(p.from, "y/b")),
        },
        Case {
            name: "matchExpressions In, NotIn, Exists, DoesNotExist",
            core: false,
            yaml: policy(
                "x",
                "exprs",
                "{podSelector: {matchExpressions: [{key: pod, operator: In, values: [a, b]}, {key: pod, operator: Exists}]}, \
                 ingress: [{from: [\
                   {namespaceSelector: {matchExpressions: [{key: ns, operator: NotIn, values: [y]}]}, podSelector: {matchExpressions: [{key: pod, operator: In, values: [c]}]}}, \
                   {namespaceSelector: {matchExpressions: [{key: ns, operator: Exists}]}, podSelector: {matchExpressions: [{key: pod, operator: DoesNotExist}]}}]}]}",
            ),
            expect: Box::new(|p| {
                !(p.to.ns == "x" && p.to.name != "c") || (p.from.ns != "y" && p.from.name == "c")
            }),
        },
        Case {
            name: "ipBlock with except; a single-address ipBlock",
            core: true,
            yaml: policy(
                "x",
                "ipblock-a",
                &format!(
                    "{{podSelector: {{matchLabels: {{pod: a}}}}, ingress: [{{from: [{}]}}]}}",
                    except_yb.join(", ")
                ),
            ) + &policy(
                "x",
                "ipblock-b",
                &format!(
                    "{{podSelector: {{matchLabels: {{pod: b}}}}, ingress: [{{from: [{}]}}]}}",
                    only_zc.join(", ")
                ),
            ),
            expect: Box::new(|p| {
                if is(p.to, "x/a") {
                    !is(p.from, "y/b")
                } else if is(p.to, "x/b") {
                    is(p.from, "z/c")
                } else {
                    true
                }
            }),
        },
        Case {
            name: "ports: number (TCP), endPort range (UDP), names (TCP and UDP)",
            core: true,
            yaml: policy(
                "x",
                "tcp-81",
                "{podSelector: {}, ingress: [{ports: [{port: 81, protocol: TCP}]}]}",
            ) + &policy(
                "y",
                "udp-range",
                "{podSelector: {}, ingress: [{ports: [{port: 80, endPort: 81, protocol: UDP}]}]}",
            ) + &policy(
                "z",
                "named",
                "{podSelector: {}, ingress: [{ports: [{port: serve-80-tcp}, {port: serve-81-udp, protocol: UDP}]}]}",
            ),
            expect: Box::new(|p| match p.to.ns.as_str() {
                "x" => p.port == Port::tcp(81),
                "y" => p.port.udp,
                _ => p.port == Port::tcp(80) || p.port == Port::udp(81),
            }),
        },
        Case {
            name: "egress deny all in x (x still answers what it accepts)",
            core: true,
            yaml: policy("x", "deny-out", "{podSelector: {}, policyTypes: [Egress]}"),
            expect: Box::new(|p| p.from.ns != "x"),
        },
        Case {
            name: "egress allowed to one peer and port, no DNS rule",
            core: true,
            yaml: policy(
                "x",
                "a-to-y80",
                "{podSelector: {matchLabels: {pod: a}}, policyTypes: [Egress], egress: [{to: [{namespaceSelector: {matchLabels: {ns: y}}}], ports: [{port: 80}]}]}",
            ),
            expect: Box::new(|p| {
                !is(p.from, "x/a") || (p.to.ns == "y" && p.port == Port::tcp(80))
            }),
        },
        Case {
            name: "policyTypes left out with an egress section: Ingress and Egress",
            core: false,
            yaml: policy(
                "y",
                "defaulted",
                "{podSelector: {}, egress: [{to: [{namespaceSelector: {matchLabels: {ns: z}}}]}]}",
            ),
            expect: Box::new(|p| p.to.ns != "y" && (p.from.ns != "y" || p.to.ns == "z")),
        },
        Case {
            name: "rules with no ports, no peers, neither",
            core: false,
            yaml: policy(
                "x",
                "neither",
                "{podSelector: {matchLabels: {pod: a}}, ingress: [{}]}",
            ) + &policy(
                "x",
                "no-peers",
                "{podSelector: {matchLabels: {pod: b}}, ingress: [{ports: [{port: 80}]}]}",
            ) + &policy(
                "x",
                "no-ports",
                "{podSelector: {matchLabels: {pod: c}}, ingress: [{from: [{namespaceSelector: {matchLabels: {ns: z}}}]}]}",
            ),
            expect: Box::new(|p| match p.to.id().as_str() {
                "x/b" => p.port == Port::tcp(80),
                "x/c" => p.from.ns == "z",
                _ => true,
            }),
        },
        Case {
            name: "OR across two policies selecting one pod",
            core: false,
            yaml: policy(
                "x",
                "or-1",
                "{podSelector: {matchLabels: {pod: a}}, ingress: [{from: [{namespaceSelector: {matchLabels: {ns: y}}}]}]}",
            ) + &policy(
                "x",
                "or-2",
                "{podSelector: {matchLabels: {pod: a}}, ingress: [{from: [{namespaceSelector: {}, podSelector: {matchLabels: {pod: b}}}]}]}",
            ),
            expect: Box::new(|p| !is(p.to, "x/a") || p.from.ns == "y" || p.from.name == "b"),
        },
    ]
}
