//! The `Ready` condition of each AdminNetworkPolicy and the
//! BaselineAdminNetworkPolicy: `True` (reason `SetupSucceeded`) when every
//! rule is translated into northbound rows, `False` (`SetupFailed`, with
//! what is not) otherwise.
//!
//! Level-triggered: each time a policy's rows are translated the wanted
//! condition is compared with the one the object carries, and a status
//! patch is sent only when they differ (and none with that content is in
//! flight). The patch rewrites the condition list with the other
//! controllers' conditions kept, guarded by the resourceVersion read; a
//! conflict means a newer version is on its way, whose translation
//! compares again. The condition says the rows were handed to the writer,
//! which commits them in the batch of the same round.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use serde_json::json;
use tracing::warn;

use crate::k8s::policy_api::PolicyStatus;
use crate::k8s::{Kind, ObjectRef};
use crate::outbox::Outbox;
use crate::translate::{anp, View};

/// The condition type.
pub const READY: &str = "Ready";

/// What a condition says, without its time.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Said {
    status: String,
    reason: String,
    message: String,
}

fn said(ok: &Result<(), String>) -> Said {
    match ok {
        Ok(()) => Said {
            status: "True".into(),
            reason: "SetupSucceeded".into(),
            message: "every rule is programmed in OVN".into(),
        },
        Err(e) => Said {
            status: "False".into(),
            reason: "SetupFailed".into(),
            message: e.clone(),
        },
    }
}

type Key = (Kind, String);

/// See the module doc.
#[derive(Default)]
pub struct AdminStatus {
    /// Patches in flight: what each said.
    inflight: HashMap<Key, Said>,
    /// Finished patches, taken on the next call.
    done: Arc<Mutex<Vec<Key>>>,
}

impl AdminStatus {
    /// Sends the condition of the admin policy `name` of `kind` when the
    /// object does not say it already.
    pub fn ensure(&mut self, kind: Kind, name: &str, view: &View, outbox: &Outbox) {
        if let Ok(mut d) = self.done.lock() {
            for k in d.drain(..) {
                self.inflight.remove(&k);
            }
        }
        let Some(ok) = anp::readiness(kind, name, view) else {
            return;
        };
        let m = view.model;
        let (meta, status) = match kind {
            Kind::AdminNetworkPolicy => match m.admin_network_policies.get(name) {
                Some(p) => (&p.metadata, &p.status),
                None => return,
            },
            Kind::BaselineAdminNetworkPolicy => match m.baseline_admin_network_policies.get(name) {
                Some(p) => (&p.metadata, &p.status),
                None => return,
            },
            _ => return,
        };
        let want = said(&ok);
        let conditions = status
            .as_ref()
            .map(|s| s.conditions.clone())
            .unwrap_or_default();
        let have = conditions.iter().find(|c| c.type_ == READY);
        let now_says = have.map(|c| Said {
            status: c.status.clone(),
            reason: c.reason.clone(),
            message: c.message.clone(),
        });
        let key = (kind, name.to_string());
        if now_says.as_ref() == Some(&want) || self.inflight.get(&key) == Some(&want) {
            return;
        }
        let since = match have {
            Some(c) if c.status == want.status => c.last_transition_time.clone(),
            _ => Time(Timestamp::now()),
        };
        let mut list: Vec<Condition> = conditions
            .iter()
            .filter(|c| c.type_ != READY)
            .cloned()
            .collect();
        list.push(Condition {
            type_: READY.into(),
            status: want.status.clone(),
            reason: want.reason.clone(),
            message: want.message.clone(),
            observed_generation: meta.generation,
            last_transition_time: since,
        });
        let body = match serde_json::to_value(PolicyStatus { conditions: list }) {
            Ok(v) => v,
            Err(e) => {
                warn!(policy = name, "status not encoded: {e}");
                return;
            }
        };
        let target = ObjectRef::new(kind, None, name, meta.uid.as_deref().unwrap_or_default());
        let request =
            outbox
                .cluster()
                .patch_status(target, meta.resource_version.clone(), json!(body));
        self.inflight.insert(key.clone(), want);
        let done = self.done.clone();
        outbox.send(request, move |result| {
            if let Err(e) = &result {
                warn!(policy = %key.1, kind = %key.0, "status patch failed: {e}");
            }
            if let Ok(mut d) = done.lock() {
                d.push(key);
            }
        });
    }
}
