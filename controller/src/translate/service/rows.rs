//! A Service's load balancers: pure construction of the `Load_Balancer`
//! rows from a read [`Spec`] and its endpoints.
//!
//! Every row hangs from one of three cluster-wide `Load_Balancer_Group`s
//! (owned by the cluster owner, see [`super::GROUPS`]), never from a
//! switch or router directly, so a Service costs the same rows on 3 nodes
//! or 1,000. Per protocol, a Service has at most these rows, each only
//! when it has a VIP:
//!
//! | name `svc:<ns>/<name>:<proto>…` | kind | groups | VIPs |
//! |---|---|---|---|
//! | (none) | explicit | cluster | ClusterIPs (ITP Cluster), external IPs (ETP Cluster) → all endpoints |
//! | `:switches` | explicit | switches | external IPs of ETP Local Services → all endpoints (traffic from inside the cluster is never "external") |
//! | `:local:<fam>` | template | switches | ClusterIPs of ITP Local Services → `^local.…` (the node's own endpoints) |
//! | `:nodeport:<fam>` | template | switches (+ gateways for ETP Cluster) | `^NODEIP_<FAM>:<nodePort>` → all endpoints |
//! | `:nodeport` | explicit | switches (+ gateways for ETP Cluster) | with ClientIP affinity instead of the template: every node IP `:<nodePort>` → all endpoints |
//! | `:gateway-local:<fam>` | template | gateways | ETP Local: `^NODEIP_<FAM>:<nodePort>` and external IPs → `^local.…`, `skip_snat` |
//!
//! Template variables (`Chassis_Template_Var`, one row per node, see
//! [`super::NodeServices`]): `NODEIP_V4`/`NODEIP_V6`, the node's first
//! InternalIP per family, and `local.<ns>.<name>.<proto>.<port>.<fam>`,
//! the node's own usable endpoints of that port (`-` in names becomes `_`;
//! Kubernetes names have no `_` or `.`, so names stay distinct).
//!
//! OVN 23.03 limits that shape this: template load balancers lose
//! `affinity_timeout` (northd builds the affinity flows of a template as
//! if it were IPv6 without a port), hence the explicit `:nodeport` row for
//! ClientIP Services; `options:reject` has no effect on templates.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use ovsdb::nb::{LoadBalancer, LoadBalancerGroup};

use crate::nb::{Col, DesiredRow, Owner, Parent, Table};

use super::endpoints::{backend_list, of_family, usable, Endpoint};
use super::spec::{Family, Issue, Port, Proto, Spec};
use super::{GROUP_CLUSTER, GROUP_GATEWAYS, GROUP_SWITCHES, KIND_SERVICE};

/// `external_ids` key listing a load balancer's groups: a row whose groups
/// change is replaced (the diff adds parents but never drops one).
pub const GROUPS_KEY: &str = "switchyard.io/lb-groups";

/// What a backend is chosen by: a hash of the connection's addresses and
/// ports, which Open vSwitch computes while translating the flow.
///
/// Why not OVN's default (`dp_hash`): that makes the datapath compute the
/// hash and recirculate the packet once more, and Open vSwitch's userspace
/// datapath drops a packet recirculated more than 6 times
/// (`datapath_drop_recirc_error`). A new connection from outside to a
/// NodePort whose endpoint is on the same node already needs 6 (the
/// gateway router's un-SNAT, DNAT and SNAT zones, the endpoint's zone):
/// with `dp_hash` every first SYN was lost and only its retransmission a
/// second later got through. A hash of the 5-tuple spreads connections as
/// evenly; sorted, as OVSDB keeps sets, the column reads back equal.
pub const SELECTION_FIELDS: [&str; 4] = ["ip_dst", "ip_src", "tp_dst", "tp_src"];

/// `svc:<namespace>/<name>:<protocol>[:<scope>]`.
pub fn lb_name(key: &str, proto: Proto, scope: Option<&str>) -> String {
    match scope {
        Some(s) => format!("svc:{key}:{}:{s}", proto.as_str()),
        None => format!("svc:{key}:{}", proto.as_str()),
    }
}

/// The template variable holding a node's IP of `family`.
pub fn node_ip_var(family: Family) -> &'static str {
    match family {
        Family::V4 => "NODEIP_V4",
        Family::V6 => "NODEIP_V6",
    }
}

/// The template variable holding a node's own backends of one port.
pub fn local_var(key: &str, proto: Proto, port: u16, family: Family) -> String {
    let (ns, name) = key.split_once('/').unwrap_or(("", key));
    format!(
        "local.{}.{}.{}.{port}.{}",
        ns.replace('-', "_"),
        name.replace('-', "_"),
        proto.as_str(),
        family.suffix()
    )
}

/// `ip:port`, IPv6 in brackets.
pub fn vip(ip: IpAddr, port: u16) -> String {
    SocketAddr::new(ip, port).to_string()
}

fn template_vip(family: Family, port: u16) -> String {
    format!("^{}:{port}", node_ip_var(family))
}

/// One load balancer being built.
struct Lb {
    name: String,
    proto: Proto,
    groups: Vec<&'static str>,
    vips: BTreeMap<String, String>,
    options: BTreeMap<String, String>,
}

impl Lb {
    fn new(name: String, proto: Proto, template: Option<Family>, groups: Vec<&'static str>) -> Lb {
        let mut options = BTreeMap::new();
        match template {
            None => {
                // No endpoint: refuse the connection, as kube-proxy does,
                // rather than let it time out.
                options.insert("reject".into(), "true".into());
            }
            Some(f) => {
                options.insert("template".into(), "true".into());
                options.insert("address-family".into(), f.ovn().into());
            }
        }
        if proto == Proto::Udp {
            // A UDP client keeps sending to a backend that is gone until
            // its conntrack entry goes: ovn-controller flushes the entries
            // of removed backends (kube-proxy clears them likewise).
            options.insert("ct_flush".into(), "true".into());
        }
        Lb {
            name,
            proto,
            groups,
            vips: BTreeMap::new(),
            options,
        }
    }

    fn into_row(self, owner: &Owner) -> Option<DesiredRow> {
        if self.vips.is_empty() {
            return None;
        }
        let groups = self.groups.join(",");
        let mut row = DesiredRow::named(Table::LoadBalancer, self.name, owner)
            .ids([(GROUPS_KEY, groups.as_str())])
            .identity(GROUPS_KEY, groups.clone())
            .col(LoadBalancer::PROTOCOL, Col::opt(Some(self.proto.as_str())))
            .col(LoadBalancer::VIPS, Col::Map(self.vips))
            .col(LoadBalancer::OPTIONS, Col::Map(self.options))
            .col(
                LoadBalancer::SELECTION_FIELDS,
                Col::Set(SELECTION_FIELDS.iter().map(|f| f.to_string()).collect()),
            );
        for g in self.groups {
            row = row.parent(Parent::new(
                Table::LoadBalancerGroup,
                g,
                LoadBalancerGroup::LOAD_BALANCER,
            ));
        }
        Some(row)
    }
}

/// What one Service's rows are built from.
pub struct Inputs<'a> {
    /// `namespace/name`.
    pub key: &'a str,
    pub spec: &'a Spec,
    /// The endpoints of each of `spec.ports`, in order.
    pub endpoints: &'a [Vec<Endpoint>],
    /// Every node's first InternalIP per family (explicit NodePort VIPs of
    /// ClientIP Services).
    pub node_ips: &'a [IpAddr],
}

/// The Service's `Load_Balancer` rows; what they cannot carry goes to
/// `issues`.
pub fn service_rows(inp: &Inputs, issues: &mut Vec<Issue>) -> Vec<DesiredRow> {
    let spec = inp.spec;
    let owner = Owner::of(KIND_SERVICE, inp.key);
    if spec.affinity.is_some() && spec.itp_local && !spec.cluster_ips.is_empty() {
        issues.push(Issue::new(
            "SessionAffinityNotApplied",
            "ClientIP affinity is not applied to the ClusterIPs of an internalTrafficPolicy Local \
             Service: OVN 23.03 template load balancers cannot keep affinity",
        ));
    }
    if spec.affinity.is_some()
        && spec.etp_local
        && (!spec.external.is_empty() || spec.has_node_ports())
    {
        issues.push(Issue::new(
            "SessionAffinityNotApplied",
            "ClientIP affinity is not applied to external traffic of an externalTrafficPolicy Local \
             Service: OVN 23.03 template load balancers cannot keep affinity",
        ));
    }
    let mut rows = Vec::new();
    for proto in spec.protocols() {
        rows.extend(protocol_rows(inp, proto, &owner));
    }
    rows
}

fn with_gateways(etp_local: bool, mut groups: Vec<&'static str>) -> Vec<&'static str> {
    if !etp_local {
        groups.push(GROUP_GATEWAYS);
    }
    groups
}

fn protocol_rows(inp: &Inputs, proto: Proto, owner: &Owner) -> Vec<DesiredRow> {
    let (spec, key) = (inp.spec, inp.key);
    let name = |scope: Option<&str>| lb_name(key, proto, scope);
    let mut cluster = Lb::new(name(None), proto, None, vec![GROUP_CLUSTER]);
    let mut switches = Lb::new(name(Some("switches")), proto, None, vec![GROUP_SWITCHES]);
    let np_groups = with_gateways(spec.etp_local, vec![GROUP_SWITCHES]);
    let mut np_explicit = Lb::new(name(Some("nodeport")), proto, None, np_groups.clone());
    if let Some(t) = spec.affinity {
        for lb in [&mut cluster, &mut switches, &mut np_explicit] {
            lb.options.insert("affinity_timeout".into(), t.to_string());
        }
    }
    let per_family = |scope: &str, groups: Vec<&'static str>| -> Vec<Lb> {
        Family::ALL
            .into_iter()
            .map(|f| {
                let scope = format!("{scope}:{}", f.suffix());
                Lb::new(name(Some(&scope)), proto, Some(f), groups.clone())
            })
            .collect()
    };
    let mut local = per_family("local", vec![GROUP_SWITCHES]);
    let mut np_template = per_family("nodeport", np_groups);
    let mut gw_local = per_family("gateway-local", vec![GROUP_GATEWAYS]);
    for lb in &mut gw_local {
        // The client's address must reach the endpoint (ETP Local).
        lb.options.insert("skip_snat".into(), "true".into());
    }
    let idx = |f: Family| usize::from(f.is_v6());

    for (port, eps) in spec.ports.iter().zip(inp.endpoints) {
        if port.proto != proto {
            continue;
        }
        let all = |f: Family| backend_list(&usable(&of_family(eps, f.is_v6()), None));
        let local_ref = |f: Family| format!("^{}", local_var(key, proto, port.port, f));
        for ip in &spec.cluster_ips {
            let f = Family::of(*ip);
            if spec.itp_local {
                local[idx(f)].vips.insert(vip(*ip, port.port), local_ref(f));
            } else {
                cluster.vips.insert(vip(*ip, port.port), all(f));
            }
        }
        for ip in &spec.external {
            let f = Family::of(*ip);
            if spec.etp_local {
                switches.vips.insert(vip(*ip, port.port), all(f));
                gw_local[idx(f)]
                    .vips
                    .insert(vip(*ip, port.port), local_ref(f));
            } else {
                cluster.vips.insert(vip(*ip, port.port), all(f));
            }
        }
        node_port_vips(
            inp,
            port,
            &all,
            &local_ref,
            &mut np_explicit,
            &mut np_template,
            &mut gw_local,
        );
    }
    let mut out = Vec::new();
    let lbs = [cluster, switches, np_explicit]
        .into_iter()
        .chain(local)
        .chain(np_template)
        .chain(gw_local);
    for lb in lbs {
        out.extend(lb.into_row(owner));
    }
    out
}

fn node_port_vips(
    inp: &Inputs,
    port: &Port,
    all: &dyn Fn(Family) -> String,
    local_ref: &dyn Fn(Family) -> String,
    explicit: &mut Lb,
    template: &mut [Lb],
    gw_local: &mut [Lb],
) {
    let Some(np) = port.node_port else {
        return;
    };
    let spec = inp.spec;
    for f in &spec.families {
        let i = usize::from(f.is_v6());
        if spec.affinity.is_some() {
            for ip in inp.node_ips.iter().filter(|ip| Family::of(**ip) == *f) {
                explicit.vips.insert(vip(*ip, np), all(*f));
            }
        } else {
            template[i].vips.insert(template_vip(*f, np), all(*f));
        }
        if spec.etp_local {
            gw_local[i].vips.insert(template_vip(*f, np), local_ref(*f));
        }
    }
}

/// A node's template variables for one Service: each port's own usable
/// endpoints per family of the Service (empty when the node has none, so
/// the variable always expands).
pub fn local_vars(
    key: &str,
    spec: &Spec,
    endpoints: &[Vec<Endpoint>],
    node: &str,
    out: &mut BTreeMap<String, String>,
) {
    for (port, eps) in spec.ports.iter().zip(endpoints) {
        for f in &spec.families {
            let mine = usable(&of_family(eps, f.is_v6()), Some(node));
            out.insert(
                local_var(key, port.proto, port.port, *f),
                backend_list(&mine),
            );
        }
    }
}
