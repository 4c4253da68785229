//! The in-memory server refuses what kube-apiserver refuses, with the same
//! codes, and its client controls behave as documented.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::PodStatus;
use switchyard_controller::k8s::{Cluster, EventRecord, Kind, KubeError, ObjectRef, WatchEvent};

use super::*;

fn ann(k: &str, v: &str) -> BTreeMap<String, Option<String>> {
    BTreeMap::from([(k.to_string(), Some(v.to_string()))])
}

fn rv_of(c: &MemoryCluster, ns: &str, name: &str) -> Option<String> {
    c.pod(ns, name)?.metadata.resource_version
}

#[tokio::test]
async fn annotation_patches_are_guarded_as_the_server_guards_them() {
    let c = MemoryCluster::new();
    let p = c.apply_pod(pod("ns", "web", "n1"));
    let uid = p.metadata.uid.clone().unwrap();
    let rv = p.metadata.resource_version.clone();
    let target = ObjectRef::pod("ns", "web", &uid);
    let new_rv = c
        .patch_annotations(target.clone(), rv.clone(), ann("switchyard.io/a", "1"))
        .await
        .unwrap();
    assert_eq!(new_rv, rv_of(&c, "ns", "web"));
    // The decision was made on the old version: 409.
    let err = c
        .patch_annotations(target.clone(), rv, ann("switchyard.io/a", "2"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), 409, "{err}");
    // Another pod of the same name: the UID may not change, 422.
    c.delete_pod("ns", "web");
    c.apply_pod(pod("ns", "web", "n1"));
    let err = c
        .patch_annotations(target.clone(), None, ann("switchyard.io/a", "3"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), 422, "{err}");
    assert!(err.object_replaced());
    // Gone: 404.
    c.delete_pod("ns", "web");
    let err = c
        .patch_annotations(target, None, ann("switchyard.io/a", "4"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), 404);
    // A key that is not a qualified name: 422.
    let p = c.apply_pod(pod("ns", "web2", "n1"));
    let target = ObjectRef::pod("ns", "web2", p.metadata.uid.as_deref().unwrap());
    let err = c
        .patch_annotations(target, None, ann("not a key", "x"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), 422);
    assert_eq!(c.patch_count(), 1, "only the accepted patch is recorded");
}

#[test]
fn objects_are_validated_and_immutable_fields_stay() {
    let c = MemoryCluster::new();
    let bad_name = c.try_apply(pod("ns", "churn_p1", "n1")).unwrap_err();
    assert_eq!(bad_name.code(), 422);
    assert!(bad_name.to_string().contains("metadata.name"), "{bad_name}");
    let p = c.apply_pod(pod("ns", "a", "n1"));
    assert!(
        c.get(Kind::Namespace, None, "ns").is_some(),
        "a test's namespace is created with its first object"
    );
    // Bound pods stay on their node.
    let moved = c.try_apply(pod("ns", "a", "n2")).unwrap_err();
    assert_eq!(moved.code(), 422);
    // A stale resourceVersion is a conflict.
    let mut stale = p.clone();
    c.update_pod_status(
        "ns",
        "a",
        p.metadata.uid.as_deref().unwrap(),
        PodStatus::default(),
    );
    stale.metadata.labels = Some([("x".to_string(), "y".to_string())].into());
    assert_eq!(c.try_apply(stale).unwrap_err().code(), 409);
    let mut other_uid = pod("ns", "a", "n1");
    other_uid.metadata.uid = Some("someone-else".into());
    assert_eq!(c.try_apply(other_uid).unwrap_err().code(), 422);
    // Creating what exists through a create is 409 AlreadyExists; a
    // Service name must be a DNS-1035 label.
    let svc = k8s_openapi::api::core::v1::Service {
        metadata: ObjectMeta {
            name: Some("1svc".into()),
            namespace: Some("ns".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    assert_eq!(c.try_apply(svc).unwrap_err().code(), 422);
}

#[tokio::test]
async fn admin_policies_are_validated_as_their_crds_and_take_status() {
    use switchyard_controller::k8s::{AdminNetworkPolicy, BaselineAdminNetworkPolicy};
    let c = MemoryCluster::new();
    let anp = |name: &str, spec: serde_json::Value| -> AdminNetworkPolicy {
        serde_json::from_value(serde_json::json!({"metadata": {"name": name}, "spec": spec}))
            .unwrap()
    };
    let err = c
        .try_apply(anp(
            "high",
            serde_json::json!({"priority": 1001, "subject": {"namespaces": {}}}),
        ))
        .unwrap_err();
    assert_eq!(err.code(), 422);
    assert!(err.to_string().contains("spec.priority"), "{err}");
    let pass_in_baseline: BaselineAdminNetworkPolicy = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "default"},
        "spec": {"subject": {"namespaces": {}}, "ingress": [{"action": "Pass", "from": [{"namespaces": {}}]}]}
    }))
    .unwrap();
    let err = c.try_apply(pass_in_baseline).unwrap_err();
    assert!(err.to_string().contains("spec.ingress[0].action"), "{err}");
    let other: BaselineAdminNetworkPolicy = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "other"}, "spec": {"subject": {"namespaces": {}}}
    }))
    .unwrap();
    let err = c.try_apply(other).unwrap_err();
    assert!(err.to_string().contains("named default"), "{err}");
    let ok = c.apply(anp(
        "ok",
        serde_json::json!({"priority": 1000, "subject": {"namespaces": {}}}),
    ));
    let target = ObjectRef::new(
        Kind::AdminNetworkPolicy,
        None,
        "ok",
        ok.meta().uid.as_deref().unwrap(),
    );
    let client = c.client("t");
    client
        .patch_status(
            target,
            ok.meta().resource_version.clone(),
            serde_json::json!({"conditions": [{"type": "Ready", "status": "True", "reason": "SetupSucceeded",
                "message": "m", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}),
        )
        .await
        .unwrap();
    let Some(Object::AdminNetworkPolicy(p)) = c.get(Kind::AdminNetworkPolicy, None, "ok") else {
        panic!("stored");
    };
    assert_eq!(p.status.unwrap().conditions[0].reason, "SetupSucceeded");
}

#[tokio::test]
async fn events_are_validated_named_and_counted_like_the_recorders() {
    let c = MemoryCluster::new();
    c.apply_pod(pod("ns", "web", "n1"));
    let ev = EventRecord {
        regarding: ObjectRef::pod("ns", "web", "u"),
        type_: "Warning".into(),
        reason: "AddressAllocationFailed".into(),
        action: "Allocate".into(),
        note: "n".repeat(3000),
    };
    c.emit_event(ev.clone()).await.unwrap();
    c.emit_event(ev.clone()).await.unwrap();
    let stored = c.stored_events();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].count, 2);
    let name = stored[0].object.metadata.name.clone().unwrap();
    assert!(name.starts_with("web."), "{name}");
    assert!(stored[0].object.note.as_ref().unwrap().len() <= 1024);
    // A reason over 128 bytes is refused, as are unknown types.
    let mut bad = ev.clone();
    bad.reason = "R".repeat(129);
    assert_eq!(c.emit_event(bad).await.unwrap_err().code(), 422);
    let mut bad = ev.clone();
    bad.type_ = "Error".into();
    assert_eq!(c.emit_event(bad).await.unwrap_err().code(), 422);
    // An Event in a namespace that does not exist: 404.
    let mut missing = ev;
    missing.regarding = ObjectRef::pod("nowhere", "x", "u");
    assert_eq!(c.emit_event(missing).await.unwrap_err().code(), 404);
    // A Node's Event lives in `default`.
    c.emit_event(EventRecord {
        regarding: ObjectRef::node("n1", "nu"),
        type_: "Normal".into(),
        reason: "Subnet".into(),
        action: "Allocate".into(),
        note: "ok".into(),
    })
    .await
    .unwrap();
    let calls = c.calls();
    assert!(calls
        .iter()
        .any(|a| a.verb == "create" && a.resource == "events" && a.group == "events.k8s.io"));
    assert!(calls
        .iter()
        .any(|a| a.verb == "patch" && a.resource == "events"));
}

#[tokio::test]
async fn a_killed_client_sends_nothing_more_and_its_watches_end() {
    let c = MemoryCluster::new();
    let p = c.apply_pod(pod("ns", "web", "n1"));
    let a = c.client("a");
    let mut watch = a.watch(Kind::Pod);
    assert!(matches!(watch.next().await, Some(WatchEvent::Restarted(l)) if l.len() == 1));
    let target = ObjectRef::pod("ns", "web", p.metadata.uid.as_deref().unwrap());
    // A request created before the kill and polled after it never arrives.
    let late = a.patch_annotations(target, None, ann("switchyard.io/a", "1"));
    a.kill();
    assert!(late.await.is_err());
    assert_eq!(c.patch_count(), 0);
    assert!(tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await
        .expect("the watch ends")
        .is_none());
}

#[tokio::test]
async fn held_writes_wait_and_dropped_ones_never_land() {
    let c = MemoryCluster::new();
    let p = c.apply_pod(pod("ns", "web", "n1"));
    let target = ObjectRef::pod("ns", "web", p.metadata.uid.as_deref().unwrap());
    let a = c.client("a");
    a.hold_writes();
    let kept = tokio::spawn(a.patch_annotations(target.clone(), None, ann("switchyard.io/k", "1")));
    let dropped = tokio::spawn(a.patch_annotations(target, None, ann("switchyard.io/d", "1")));
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while a.held_writes() < 2 {
        assert!(std::time::Instant::now() < deadline, "writes never held");
        tokio::task::yield_now().await;
    }
    assert_eq!(c.patch_count(), 0);
    dropped.abort();
    let _ = dropped.await;
    assert_eq!(a.held_writes(), 1);
    a.release_writes();
    kept.await.unwrap().unwrap();
    let anns = c.pod("ns", "web").unwrap().metadata.annotations.unwrap();
    assert!(anns.contains_key("switchyard.io/k"));
    assert!(!anns.contains_key("switchyard.io/d"));
    assert_eq!(c.patches()[0].client, "a");
}

#[tokio::test]
async fn leases_answer_as_the_server_does() {
    use k8s_openapi::api::coordination::v1::Lease;
    let c = MemoryCluster::new();
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some("ctl".into()),
            namespace: Some("switchyard".into()),
            ..Default::default()
        },
        spec: None,
    };
    let created = c.create_lease(lease.clone()).await.unwrap();
    let err = c.create_lease(lease.clone()).await.unwrap_err();
    assert!(matches!(err, KubeError::Conflict(ref m) if m.contains("already exists")));
    assert_eq!(c.replace_lease(lease).await.unwrap_err().code(), 409);
    c.replace_lease(created).await.unwrap();
}

#[test]
fn labels_are_set_and_removed_as_kubectl_label_does() {
    let c = MemoryCluster::new();
    let mut p = pod("ns", "web", "n1");
    p.metadata.labels = Some(BTreeMap::from([("app".to_string(), "a".to_string())]));
    let rv = c.apply_pod(p).metadata.resource_version;
    let set = BTreeMap::from([("tier".to_string(), "front".to_string())]);
    let o = c
        .try_label(Kind::Pod, Some("ns"), "web", &set, &["app".to_string()])
        .unwrap();
    let labels = o.meta().labels.clone().unwrap();
    assert_eq!(labels.get("tier").map(String::as_str), Some("front"));
    assert!(!labels.contains_key("app"));
    assert_ne!(o.meta().resource_version, rv);
    // Nothing to change: no new version, as the server writes nothing.
    let again = c
        .try_label(Kind::Pod, Some("ns"), "web", &set, &[])
        .unwrap();
    assert_eq!(again.meta().resource_version, o.meta().resource_version);
    let bad = BTreeMap::from([("x".to_string(), "not valid".to_string())]);
    let err = c
        .try_label(Kind::Pod, Some("ns"), "web", &bad, &[])
        .unwrap_err();
    assert_eq!(err.code(), 422, "{err}");
    let err = c
        .try_label(Kind::Pod, Some("ns"), "nope", &set, &[])
        .unwrap_err();
    assert_eq!(err.code(), 404, "{err}");
}
