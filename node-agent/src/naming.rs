//! Names of the kernel interfaces the agent creates.
//!
//! Linux interface names have at most 15 bytes, too few for a container id.
//! The host end of a pod's veth is `sy` plus 11 hex digits of a hash of the
//! container id and interface name: stable (DEL and GC recompute it), short,
//! and recorded in OVS `external_ids` so a restarted daemon finds it by
//! query rather than by recomputation.

/// FNV-1a, 64 bit: stable across Rust versions and platforms, unlike the
/// standard library's hasher, which matters because names outlive the
/// binary that chose them.
fn fnv1a(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn tag(container_id: &str, ifname: &str) -> String {
    let h = fnv1a(format!("{container_id}/{ifname}").as_bytes());
    format!("{:011x}", h & 0xfff_ffff_ffff)
}

/// Host end of the pod's veth; also the OVS port and interface name.
pub fn host_veth(container_id: &str, ifname: &str) -> String {
    format!("sy{}", tag(container_id, ifname))
}

/// OVS `external_ids` keys the agent writes on pod interfaces, beside OVN's
/// own `iface-id` / `iface-id-ver` / `attached-mac`.
pub mod ext {
    /// The runtime's container (sandbox) id.
    pub const SANDBOX: &str = "sandbox";
    /// `CNI_IFNAME` inside the pod.
    pub const IFNAME: &str = "switchyard.io/ifname";
    /// The pod's network namespace path.
    pub const NETNS: &str = "switchyard.io/netns";
    /// `namespace/name` of the pod, for operators.
    pub const POD: &str = "switchyard.io/pod";
    /// Marks rows this agent owns, so GC never touches anyone else's ports.
    pub const OWNER: &str = switchyard_api::names::OWNER_KIND;
    pub const OWNER_VALUE: &str = "cni";
    pub const IFACE_ID: &str = "iface-id";
    pub const IFACE_ID_VER: &str = "iface-id-ver";
    pub const ATTACHED_MAC: &str = "attached-mac";
    pub const OVN_INSTALLED: &str = "ovn-installed";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_and_are_stable() {
        let a = host_veth("0123456789abcdef0123456789abcdef", "eth0");
        assert_eq!(a.len(), 13);
        assert!(a.starts_with("sy"));
        assert_eq!(a, host_veth("0123456789abcdef0123456789abcdef", "eth0"));
        assert_ne!(a, host_veth("0123456789abcdef0123456789abcdef", "eth1"));
        assert_ne!(a, host_veth("x", "eth0"));
        // The hash is fixed: a new build must find an old build's names.
        assert_eq!(host_veth("c", "eth0"), host_veth("c", "eth0"));
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
