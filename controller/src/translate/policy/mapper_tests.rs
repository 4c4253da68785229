//! What each change touches: the owners of the old and the new version.

use std::collections::BTreeSet;

use serde_json::json;
use switchyard_api::names;

use super::tests::{namespace, np, pod, serve_ports, Fx};
use crate::model::Change;

#[test]
fn changes_touch_the_owners_of_the_old_and_the_new_version() {
    let mut fx = Fx::xyz();
    fx.apply(np("x", "to-a", json!({"podSelector": {"matchLabels": {"pod": "a"}},
        "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}, "podSelector": {"matchLabels": {"pod": "b"}}}]}]})));
    fx.apply(np(
        "x",
        "to-b",
        json!({"podSelector": {"matchLabels": {"pod": "b"}},
        "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "z"}}}]}]}),
    ));
    fx.changes.clear();
    // x/a relabelled to b: leaves one port group, joins the other.
    let mut moved = pod("x", "a", json!({"pod": "b"}), serve_ports());
    moved.metadata.resource_version = Some("2".into());
    fx.apply(moved);
    let changes = fx.changes.clone();
    assert_eq!(
        fx.touched(names::KIND_POLICY_PODS),
        BTreeSet::from(["x/pod=a".to_string(), "x/pod=b".to_string()])
    );
    // y/b relabelled: leaves the cross-namespace peer set.
    fx.changes = changes;
    fx.changes.clear();
    let mut yb = pod("y", "b", json!({"pod": "q"}), serve_ports());
    yb.metadata.resource_version = Some("2".into());
    fx.apply(yb);
    assert_eq!(
        fx.touched(names::KIND_POLICY_PEERS),
        BTreeSet::from(["nsel:ns=y|pod=b".to_string()])
    );
    // A status-only update touches nothing.
    let mut same = pod("y", "c", json!({"pod": "c"}), serve_ports());
    same.metadata.resource_version = Some("2".into());
    fx.apply(same);
    assert!(fx.touched(names::KIND_POLICY_PEERS).is_empty());
    // Namespace z relabelled: the policy listing namespaces by label.
    let mut z = namespace("z", json!({}));
    z.metadata.labels = Some([("ns".to_string(), "zz".to_string())].into());
    fx.apply(z);
    let c = fx.changes.clone();
    assert_eq!(
        fx.touched(names::KIND_NETWORK_POLICY),
        BTreeSet::from(["x/to-b".to_string()])
    );
    fx.changes = c;
    assert!(
        fx.touched(names::KIND_POLICY_PEERS).is_empty(),
        "no set is scoped by ns=z"
    );
    // An edit touches the sets of both versions, and the hosts only on
    // create and delete.
    let mut edited = np(
        "x",
        "to-a",
        json!({"podSelector": {"matchLabels": {"pod": "c"}}}),
    );
    edited.metadata.resource_version = Some("2".into());
    fx.apply(edited);
    let c = fx.changes.clone();
    assert_eq!(
        fx.touched(names::KIND_POLICY_PODS),
        BTreeSet::from(["x/pod=a".to_string(), "x/pod=c".to_string()])
    );
    fx.changes = c.clone();
    assert_eq!(
        fx.touched(names::KIND_POLICY_PEERS),
        BTreeSet::from(["nsel:ns=y|pod=b".to_string()])
    );
    fx.changes = c;
    assert!(fx.touched(names::KIND_POLICY_HOST).is_empty());
    fx.apply(np("z", "new", json!({})));
    assert_eq!(
        fx.touched(names::KIND_POLICY_HOST),
        BTreeSet::from(["n1".to_string()])
    );
    // Addresses decided for a pod: the sets its labels put it in.
    fx.changes.push(Change::PodAddresses { key: "x/b".into() });
    assert_eq!(
        fx.touched(names::KIND_POLICY_PODS),
        BTreeSet::from(["x/pod=b".to_string()])
    );
}

#[test]
fn named_ports_touch_only_policies_that_can_resolve_them_on_the_pod() {
    let mut fx = Fx::xyz();
    fx.apply(np(
        "x",
        "in-named",
        json!({"ingress": [{"ports": [{"port": "serve-80-tcp"}]}]}),
    ));
    fx.apply(np(
        "z",
        "out-named",
        json!({"policyTypes": ["Egress"],
        "egress": [{"ports": [{"port": "serve-80-tcp"}]}]}),
    ));
    fx.apply(np(
        "y",
        "numbers",
        json!({"ingress": [{"ports": [{"port": 80}]}]}),
    ));
    fx.changes.clear();
    let mut moved = pod("y", "a", json!({"pod": "q"}), serve_ports());
    moved.metadata.resource_version = Some("2".into());
    fx.apply(moved);
    assert_eq!(
        fx.touched(names::KIND_NETWORK_POLICY),
        BTreeSet::from(["z/out-named".to_string()]),
        "x's ingress names resolve on x's pods only"
    );
    let mut moved = pod("x", "a", json!({"pod": "q"}), serve_ports());
    moved.metadata.resource_version = Some("2".into());
    fx.apply(moved);
    assert_eq!(fx.touched(names::KIND_NETWORK_POLICY).len(), 2);
}

/// An admin policy alone needs the host ACLs too: their `allow-related`
/// makes the node switches stateful, without which an ANP `Deny` also
/// drops the replies of connections its subject opened
/// (tests/admin_policy.rs in the e2e crate saw it with real packets).
#[test]
fn an_admin_policy_alone_brings_the_host_acls_and_takes_them_away() {
    use crate::k8s::{AdminNetworkPolicy, BaselineAdminNetworkPolicy, Kind, Object, WatchEvent};
    let mut fx = Fx::xyz();
    let host_owners = |fx: &Fx| {
        fx.rows()
            .0
            .keys()
            .filter(|o| o.kind() == names::KIND_POLICY_HOST)
            .count()
    };
    assert_eq!(host_owners(&fx), 0, "no policy, no host ACL");
    let anp: AdminNetworkPolicy = serde_json::from_value(json!({
        "metadata": {"name": "deny", "uid": "uid-deny", "resourceVersion": "1"},
        "spec": {"priority": 1, "subject": {"namespaces": {}},
                 "ingress": [{"action": "Deny", "from": [{"namespaces": {}}]}]},
    }))
    .expect("an ANP");
    fx.changes.clear();
    fx.apply(anp.clone());
    assert_eq!(
        fx.touched(names::KIND_POLICY_HOST),
        BTreeSet::from(["n1".to_string()])
    );
    assert_eq!(host_owners(&fx), 1);
    fx.model.apply(
        Kind::AdminNetworkPolicy,
        WatchEvent::Deleted(Object::from(anp).into()),
        &mut fx.changes,
    );
    assert_eq!(
        fx.touched(names::KIND_POLICY_HOST),
        BTreeSet::from(["n1".to_string()])
    );
    assert_eq!(host_owners(&fx), 0);
    let banp: BaselineAdminNetworkPolicy = serde_json::from_value(json!({
        "metadata": {"name": "default", "uid": "uid-default", "resourceVersion": "1"},
        "spec": {"subject": {"namespaces": {}},
                 "ingress": [{"action": "Deny", "from": [{"namespaces": {}}]}]},
    }))
    .expect("a BANP");
    fx.apply(banp);
    assert_eq!(
        fx.touched(names::KIND_POLICY_HOST),
        BTreeSet::from(["n1".to_string()])
    );
    assert_eq!(host_owners(&fx), 1);
}
