//! The orphan pass of kube-controller-manager's pod garbage collector: a
//! pod bound to a node that no longer exists is marked failed (phase
//! `Failed` unless already terminal, condition `DisruptionTarget` with
//! reason `DeletionByPodGC`) and then deleted at once (grace period 0).
//!
//! The real controller runs every 20 s and waits out a 40 s quarantine
//! after a node disappears, re-checking with the API server; tests call
//! [`MemoryCluster::gc_orphaned_pods`] when they want that pass to have
//! happened, which is the same end state without the wait.

use k8s_openapi::api::core::v1::{Pod, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::MemoryCluster;

/// The condition's reason, as podgc sets it.
pub const REASON: &str = "DeletionByPodGC";
/// The condition's message, as podgc sets it.
pub const MESSAGE: &str = "PodGC: node no longer exists";

impl MemoryCluster {
    /// Deletes every pod whose `spec.nodeName` names no Node, after
    /// marking it failed as podgc does (watchers see that update, then
    /// the deletion). Pods not yet scheduled are left alone. Returns the
    /// pods deleted, as they were last stored.
    pub fn gc_orphaned_pods(&self) -> Vec<Pod> {
        let nodes: std::collections::HashSet<String> = self
            .nodes()
            .into_iter()
            .filter_map(|n| n.metadata.name)
            .collect();
        let mut deleted = Vec::new();
        for pod in self.pods() {
            let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
                continue;
            };
            if node.is_empty() || nodes.contains(&node) {
                continue;
            }
            let ns = pod.metadata.namespace.clone().unwrap_or_default();
            let name = pod.metadata.name.clone().unwrap_or_default();
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            let mut status = pod.status.clone().unwrap_or_default();
            if !matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
                status.phase = Some("Failed".into());
            }
            let conditions = status.conditions.get_or_insert_with(Vec::new);
            conditions.retain(|c| c.type_ != "DisruptionTarget");
            conditions.push(PodCondition {
                type_: "DisruptionTarget".into(),
                status: "True".into(),
                reason: Some(REASON.into()),
                message: Some(MESSAGE.into()),
                last_transition_time: Some(Time(Timestamp::now())),
                ..Default::default()
            });
            self.update_pod_status(&ns, &name, &uid, status);
            if let Some(p) = self.delete_pod(&ns, &name) {
                deleted.push(p);
            }
        }
        deleted
    }
}

#[cfg(test)]
mod tests {
    use crate::{node, pod, MemoryCluster};
    use futures::StreamExt;
    use switchyard_controller::k8s::WatchEvent;

    #[test]
    fn pods_of_a_deleted_node_are_failed_then_deleted() {
        let c = MemoryCluster::new();
        c.apply_node(node("a"));
        c.apply_node(node("b"));
        c.apply_pod(pod("x", "on-a", "a"));
        c.apply_pod(pod("x", "on-b", "b"));
        let mut unscheduled = pod("x", "nowhere", "a");
        if let Some(s) = unscheduled.spec.as_mut() {
            s.node_name = None;
        }
        c.apply_pod(unscheduled);
        // Nothing is orphaned while both nodes exist.
        assert!(c.gc_orphaned_pods().is_empty());
        let mut watch = c.watch_pods();
        c.delete_node("b").expect("node b existed");
        let gone = c.gc_orphaned_pods();
        let names: Vec<_> = gone
            .iter()
            .filter_map(|p| p.metadata.name.clone())
            .collect();
        assert_eq!(names, vec!["on-b".to_string()]);
        assert!(c.pod("x", "on-b").is_none());
        assert!(c.pod("x", "on-a").is_some());
        assert!(c.pod("x", "nowhere").is_some());
        // Watchers saw the failed status before the deletion.
        let events: Vec<_> = futures::executor::block_on(async {
            let mut out = Vec::new();
            while let Some(ev) = watch.next().await {
                if matches!(ev, WatchEvent::Restarted(_)) {
                    continue;
                }
                let done = matches!(ev, WatchEvent::Deleted(_));
                out.push(ev);
                if done {
                    break;
                }
            }
            out
        });
        let failed = events.iter().any(|ev| match ev {
            WatchEvent::Applied(p) => {
                let st = p.status.clone().unwrap_or_default();
                st.phase.as_deref() == Some("Failed")
                    && st.conditions.iter().flatten().any(|c| {
                        c.type_ == "DisruptionTarget" && c.reason.as_deref() == Some(super::REASON)
                    })
            }
            _ => false,
        });
        assert!(failed, "no failed status before the deletion: {events:?}");
    }
}
