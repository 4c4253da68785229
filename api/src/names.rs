//! Northbound names and `external_ids` ownership keys.
//!
//! Names are chosen so `ovn-nbctl show` tells an operator what a row is
//! without a lookup table (see the architecture's naming table); the owner
//! keys let stale rows be found by query rather than by memory.

/// The one distributed router that joins every node's switch.
pub const CLUSTER_ROUTER: &str = "cluster-router";

/// `external_ids` key naming the kind of Kubernetes object that owns a row.
pub const OWNER_KIND: &str = "switchyard.io/owner-kind";
/// `external_ids` key naming the owner: `namespace/name`, or the name for
/// cluster-scoped objects.
pub const OWNER: &str = "switchyard.io/owner";
/// `external_ids` key holding the owning pod's UID on pod ports.
pub const POD_UID: &str = "switchyard.io/pod-uid";
/// `external_ids` key naming the node a row belongs to.
pub const NODE: &str = "switchyard.io/node";

/// Owner kinds written under [`OWNER_KIND`].
pub const KIND_POD: &str = "Pod";
pub const KIND_NODE: &str = "Node";
pub const KIND_CLUSTER: &str = "Cluster";

/// The logical switch that holds a node's pods.
pub fn node_switch(node: &str) -> String {
    format!("node-{node}")
}

/// The router side of the link between `cluster-router` and a node switch.
pub fn router_port(node: &str) -> String {
    format!("rtos-{node}")
}

/// The switch side of the link between `cluster-router` and a node switch.
pub fn switch_router_port(node: &str) -> String {
    format!("stor-{node}")
}

/// The management port through which a node's host reaches pods.
pub fn mgmt_port(node: &str) -> String {
    format!("mgmt-{node}")
}

/// A pod's logical switch port name, which is also the OVS `iface-id`.
pub fn pod_port(namespace: &str, name: &str) -> String {
    format!("{namespace}_{name}")
}

/// The address set holding the addresses of one IP family of every pod in
/// a namespace: `ns.<namespace>.v4` / `.v6`. OVN's set names (used as
/// `$name` in ACL matches) allow letters, digits, `_` and `.` only; a
/// namespace name is a DNS label, so mapping its `-` to `_` loses nothing.
pub fn namespace_address_set(namespace: &str, v6: bool) -> String {
    format!(
        "ns.{}.{}",
        namespace.replace('-', "_"),
        if v6 { "v6" } else { "v4" }
    )
}

/// Owner kind of a namespace's rows.
pub const KIND_NAMESPACE: &str = "Namespace";

/// Owner kinds of NetworkPolicy rows (see the controller's
/// `translate::policy`): a policy's allow ACLs; the port group of the pods
/// one selector picks in a namespace (with the default-deny ACLs of the
/// directions its policies isolate); the address sets of one peer
/// selector; a node's "host reaches its pods" ACL; the ACL logging meter.
pub const KIND_NETWORK_POLICY: &str = "NetworkPolicy";
pub const KIND_POLICY_PODS: &str = "PolicyPods";
pub const KIND_POLICY_PEERS: &str = "PolicyPeers";
pub const KIND_POLICY_HOST: &str = "PolicyHost";
pub const KIND_POLICY_METER: &str = "PolicyMeter";

/// Owner kinds of admin policy rows (the controller's `translate::anp`):
/// an AdminNetworkPolicy's port group, node address sets and ACLs; the
/// same for the BaselineAdminNetworkPolicy.
pub const KIND_ADMIN_NETWORK_POLICY: &str = "AdminNetworkPolicy";
pub const KIND_BASELINE_ADMIN_NETWORK_POLICY: &str = "BaselineAdminNetworkPolicy";

/// `external_ids` keys on policy ACLs, for counters and `trace`: the
/// policies (`namespace/name`, comma separated when a default deny is
/// shared), the direction (`Ingress`/`Egress`), the rule's index in that
/// direction, and the action (`allow`/`deny`).
pub const POLICY: &str = "switchyard.io/policy";
pub const DIRECTION: &str = "switchyard.io/direction";
pub const RULE: &str = "switchyard.io/rule";
pub const ACTION: &str = "switchyard.io/action";
/// `external_ids` key on policy port groups and address sets: the
/// selector they stand for, readable.
pub const SELECTOR: &str = "switchyard.io/selector";

/// The meter that rate-limits ACL log messages.
pub const ACL_LOGGING_METER: &str = "switchyard-acl-logging";

/// Owner kind of a node's gateway rows (its gateway router, external
/// switch, and the routes and policies that lead to them).
pub const KIND_GATEWAY: &str = "Gateway";
/// Owner kind of the join switch shared by every gateway router.
pub const KIND_JOIN: &str = "Join";

/// The switch between `cluster-router` and every node's gateway router.
pub const JOIN_SWITCH: &str = "join";

/// The physical network name the gateway routers' localnet ports use; the
/// node agent maps it to its gateway bridge (`ovn-bridge-mappings`).
pub const PHYSICAL_NETWORK: &str = "physnet";

/// A node's gateway router, bound to the node's chassis.
pub fn gateway_router(node: &str) -> String {
    format!("GR-{node}")
}

/// A router's port on the join switch (`cluster-router` or `GR-<node>`).
pub fn router_to_join(router: &str) -> String {
    format!("rtoj-{router}")
}

/// The join switch's port facing a router's [`router_to_join`] port.
pub fn join_to_router(router: &str) -> String {
    format!("jtor-{router}")
}

/// A node's external switch: the gateway router's outside, a localnet
/// port to the node's gateway bridge.
pub fn external_switch(node: &str) -> String {
    format!("ext-{node}")
}

/// The gateway router's port on the external switch: it carries the
/// node's IPs and the gateway bridge's MAC.
pub fn router_to_external(node: &str) -> String {
    format!("rtoe-{}", gateway_router(node))
}

/// The external switch's port facing [`router_to_external`].
pub fn external_to_router(node: &str) -> String {
    format!("etor-{}", gateway_router(node))
}

/// The external switch's localnet port; ovn-controller names the patch
/// port it creates on the gateway bridge after it
/// (`patch-<this>-to-br-int`).
pub fn localnet_port(node: &str) -> String {
    format!("lnet-{node}")
}

/// The Linux name of the management interface on a node's host; OVS internal
/// port names are limited to 15 bytes, so it is fixed rather than derived.
pub const MGMT_INTERFACE: &str = "sy-mgmt0";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_naming_table() {
        assert_eq!(node_switch("kind-worker"), "node-kind-worker");
        assert_eq!(router_port("a"), "rtos-a");
        assert_eq!(switch_router_port("a"), "stor-a");
        assert_eq!(mgmt_port("a"), "mgmt-a");
        assert_eq!(pod_port("default", "web-0"), "default_web-0");
        assert!(MGMT_INTERFACE.len() <= 15);
        assert_eq!(gateway_router("a"), "GR-a");
        assert_eq!(router_to_join(CLUSTER_ROUTER), "rtoj-cluster-router");
        assert_eq!(join_to_router("GR-a"), "jtor-GR-a");
        assert_eq!(external_switch("a"), "ext-a");
        assert_eq!(router_to_external("a"), "rtoe-GR-a");
        assert_eq!(external_to_router("a"), "etor-GR-a");
        assert_eq!(localnet_port("a"), "lnet-a");
    }
}
