//! Pure aggregation: OpenFlow flow counters → logical flows → ACLs →
//! policy series, with per-flow memory so the totals stay monotonic when
//! ovn-controller replaces flows. No I/O here; [`super::source`] feeds it.

use std::collections::{BTreeMap, HashMap, HashSet};

use openflow::{FlowStats, Match};
use prometheus_client::encoding::EncodeLabelSet;
use switchyard_api::names;

/// One exported series: whose rule counted which packets.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct SeriesKey {
    /// `NetworkPolicy`, `AdminNetworkPolicy` or `BaselineAdminNetworkPolicy`.
    pub kind: String,
    /// The policy's namespace; empty for the cluster-scoped admin kinds.
    pub namespace: String,
    pub policy: String,
    /// `Ingress` or `Egress`.
    pub direction: String,
    /// The rule's index in its direction, or `default` for the default
    /// deny of pods a NetworkPolicy isolates.
    pub rule: String,
    /// `allow`, `deny` (or `pass` for admin rules).
    pub action: String,
}

/// Packets and bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub packets: u64,
    pub bytes: u64,
}

/// The series an ACL counts into, from its `external_ids`: one per policy
/// it names (a default deny shared by several policies selecting the same
/// pods counts into each, since each one's isolation drops the packet).
/// ACLs without `switchyard.io/policy` (the node host's allow) count into
/// none.
pub fn acl_series(ids: &BTreeMap<String, String>) -> Vec<SeriesKey> {
    let Some(policies) = ids.get(names::POLICY) else {
        return Vec::new();
    };
    let get = |k: &str| ids.get(k).cloned().unwrap_or_default();
    let kind = match ids.get(names::OWNER_KIND).map(String::as_str) {
        Some(names::KIND_POLICY_PODS) | Some(names::KIND_NETWORK_POLICY) | None => {
            names::KIND_NETWORK_POLICY.to_string()
        }
        Some(other) => other.to_string(),
    };
    let namespaced = kind == names::KIND_NETWORK_POLICY;
    let rule = ids
        .get(names::RULE)
        .cloned()
        .unwrap_or_else(|| "default".to_string());
    policies
        .split(',')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (namespace, policy) = match p.split_once('/') {
                Some((ns, name)) if namespaced => (ns.to_string(), name.to_string()),
                _ => (String::new(), p.to_string()),
            };
            SeriesKey {
                kind: kind.clone(),
                namespace,
                policy,
                direction: get(names::DIRECTION),
                rule: rule.clone(),
                action: get(names::ACTION),
            }
        })
        .collect()
}

/// The first 32 bits of a row UUID: what ovn-controller puts in a flow's
/// cookie (for a logical flow) and in `stage-hint` (for an ACL).
pub fn uuid_prefix(u: &uuid::Uuid) -> u32 {
    let b = u.as_bytes();
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// One logical flow of an ACL stage, as the southbound database has it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogicalFlow {
    /// [`uuid_prefix`] of the row: the cookie of its OpenFlow flows.
    pub cookie: u32,
    /// `ingress` or `egress`.
    pub pipeline: String,
    /// The logical table (stage) number within the pipeline.
    pub table_id: u8,
    /// `external_ids:stage-hint`: the ACL's [`uuid_prefix`], when the flow
    /// comes from one.
    pub hint: Option<u32>,
}

/// What the databases say, reduced to lookups by 32-bit prefixes.
#[derive(Clone, Debug, Default)]
pub struct Mapping {
    /// cookie → (pipeline, logical table, ACL prefix); `None` prefix for
    /// flows of no ACL, and for cookies two logical flows share with
    /// different hints (ambiguous, never counted).
    flows: HashMap<u32, (String, u8, Option<u32>)>,
    /// ACL prefix → its series; `None` for a prefix two ACLs share.
    acls: HashMap<u32, Option<Vec<SeriesKey>>>,
}

impl Mapping {
    pub fn new(
        flows: impl IntoIterator<Item = LogicalFlow>,
        acls: impl IntoIterator<Item = (u32, Vec<SeriesKey>)>,
    ) -> Mapping {
        let mut m = Mapping::default();
        for f in flows {
            let entry = (f.pipeline.clone(), f.table_id, f.hint);
            match m.flows.get_mut(&f.cookie) {
                Some(old) if old.2 != f.hint => old.2 = None,
                Some(_) => {}
                None => {
                    m.flows.insert(f.cookie, entry);
                }
            }
        }
        for (prefix, series) in acls {
            match m.acls.get_mut(&prefix) {
                Some(old) => *old = None,
                None => {
                    m.acls.insert(prefix, Some(series));
                }
            }
        }
        m
    }

    /// The series an OpenFlow cookie counts into; `None` when the cookie
    /// is no known ACL's (yet).
    pub fn series_of(&self, cookie: u64) -> Option<&[SeriesKey]> {
        let c = u32::try_from(cookie).ok()?;
        let hint = self.flows.get(&c)?.2?;
        self.acls.get(&hint)?.as_deref()
    }

    /// The logical stage of a cookie: (pipeline, logical table).
    pub fn stage_of(&self, cookie: u64) -> Option<(&str, u8)> {
        let c = u32::try_from(cookie).ok()?;
        self.flows.get(&c).map(|(p, t, _)| (p.as_str(), *t))
    }

    /// The (pipeline, logical table) pairs of the ACL stages.
    pub fn stages(&self) -> HashSet<(&str, u8)> {
        self.flows
            .values()
            .map(|(p, t, _)| (p.as_str(), *t))
            .collect()
    }

    /// Every series some ACL names now.
    pub fn live_series(&self) -> HashSet<&SeriesKey> {
        self.acls.values().flatten().flatten().collect()
    }
}

/// Where the logical pipelines start among br-int's OpenFlow tables
/// (ovn-controller adds a fixed offset per pipeline, which differs between
/// OVN releases), learnt from flows whose cookies are known.
#[derive(Clone, Debug, Default)]
pub struct TableOffsets {
    offsets: HashMap<String, u8>,
}

impl TableOffsets {
    /// Learns offsets from a dump of all tables.
    pub fn learn(&mut self, flows: &[FlowStats], mapping: &Mapping) {
        for f in flows {
            if let Some((pipeline, t)) = mapping.stage_of(f.cookie) {
                if let Some(off) = f.table_id.checked_sub(t) {
                    self.offsets.entry(pipeline.to_string()).or_insert(off);
                }
            }
        }
    }

    /// The OpenFlow tables of the ACL stages, or `None` while some
    /// pipeline's offset is unknown (a full dump is needed).
    pub fn tables(&self, mapping: &Mapping) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        for (pipeline, t) in mapping.stages() {
            out.push(self.offsets.get(pipeline)?.checked_add(t)?);
        }
        out.sort_unstable();
        out.dedup();
        Some(out)
    }
}

/// An OpenFlow flow's identity in its table: flows with the same one are
/// the same flow (an add with it replaces the old one).
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct FlowKey {
    table: u8,
    priority: u16,
    cookie: u64,
    match_: Match,
}

#[derive(Clone, Copy, Debug)]
struct Seen {
    packets: u64,
    bytes: u64,
}

/// The running totals. Each collection passes every flow of the ACL
/// tables; a flow counts what it gained since last seen, or all it has
/// when it is new, or when it went backwards (fewer packets or bytes: it
/// was deleted and added again, and its counters restarted).
///
/// A flow's age is no sign of restarted counters: an OpenFlow add over an
/// identical flow restarts its age but carries its counters over (see
/// `openflow/tests/stats.rs`). A flow deleted and re-added between two
/// collections that has since counted past its old count is taken for
/// the same flow: the packets it had before are not counted again, so the
/// totals can only under-count, never jump.
#[derive(Debug, Default)]
pub struct Accumulator {
    last: HashMap<FlowKey, Seen>,
    totals: BTreeMap<SeriesKey, Totals>,
}

impl Accumulator {
    pub fn ingest(&mut self, flows: &[FlowStats], mapping: &Mapping) {
        let mut seen = HashMap::with_capacity(self.last.len());
        for f in flows {
            let key = FlowKey {
                table: f.table_id,
                priority: f.priority,
                cookie: f.cookie,
                match_: f.match_.clone(),
            };
            let Some(series) = mapping.series_of(f.cookie) else {
                // Not (yet, or no longer) resolvable: the databases lag
                // behind the switch. Keep what was last counted, so that
                // once resolved the flow counts from there (or from zero
                // if it never was).
                if let Some(prev) = self.last.get(&key) {
                    seen.insert(key, *prev);
                }
                continue;
            };
            let now = Seen {
                packets: f.packet_count,
                bytes: f.byte_count,
            };
            let gained = match self.last.get(&key) {
                Some(p) if now.packets >= p.packets && now.bytes >= p.bytes => {
                    (now.packets - p.packets, now.bytes - p.bytes)
                }
                _ => (now.packets, now.bytes),
            };
            for s in series {
                let t = self.totals.entry(s.clone()).or_default();
                t.packets = t.packets.saturating_add(gained.0);
                t.bytes = t.bytes.saturating_add(gained.1);
            }
            seen.insert(key, now);
        }
        // Flows missing from the dump are gone (their ACL, or their match
        // changed); a flow that comes back is a new one.
        self.last = seen;
        // Series follow the ACLs: a deleted policy's series go (Prometheus
        // convention for deleted objects), a new one's show at zero.
        let live = mapping.live_series();
        self.totals.retain(|k, _| live.contains(k));
        for k in live {
            self.totals.entry(k.clone()).or_default();
        }
    }

    pub fn totals(&self) -> &BTreeMap<SeriesKey, Totals> {
        &self.totals
    }

    /// Flows remembered (the memory this costs).
    pub fn flows(&self) -> usize {
        self.last.len()
    }
}
