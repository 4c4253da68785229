//! LoadBalancer IPs from an optional pool: what a cloud's service
//! controller does for `type: LoadBalancer`, for clusters without one.
//!
//! A Service of type LoadBalancer with no `loadBalancerClass` (or
//! [`CLASS`]) gets one address per IP family it has and the pool covers,
//! written to `status.loadBalancer.ingress` through the `/status`
//! subresource (guarded by UID and resourceVersion, so a decision made on
//! a stale view is refused rather than applied). The translator then
//! programs those addresses like any ingress IP. An address goes back to
//! the pool when its Service goes, changes type or class; a Service that
//! is no longer ours loses the pool's addresses from its status.
//!
//! Level-triggered and restart-safe: the status is the record. At start
//! the addresses Services already show are adopted, oldest Service first,
//! before anything new is handed out; two Services showing one address
//! (a manual edit) leave it to the older and the younger gets a new one
//! and a Warning Event, as does a `spec.loadBalancerIP` that is taken or
//! outside the pool.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use k8s_openapi::api::core::v1::Service;
use serde_json::json;
use tracing::warn;

use crate::k8s::{Kind, KubeError, ObjectRef, Written};
use crate::model::{Change, Model};
use crate::outbox::Outbox;
use crate::translate::Problem;

/// The `loadBalancerClass` Switchyard answers besides none.
pub const CLASS: &str = "switchyard.io/load-balancer";

/// Whether Switchyard assigns `svc`'s LoadBalancer IPs.
pub fn ours(svc: &Service) -> bool {
    let Some(spec) = svc.spec.as_ref() else {
        return false;
    };
    spec.type_.as_deref() == Some("LoadBalancer")
        && spec
            .load_balancer_class
            .as_deref()
            .is_none_or(|c| c == CLASS)
}

fn ingress_ips(svc: &Service) -> Vec<IpAddr> {
    svc.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|l| l.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.as_deref()?.parse().ok())
        .collect()
}

fn seniority(key: &str, svc: &Service) -> (Option<k8s_openapi::jiff::Timestamp>, String) {
    (
        svc.metadata.creation_timestamp.as_ref().map(|t| t.0),
        key.to_string(),
    )
}

fn target(key: &str, svc: &Service) -> ObjectRef {
    let (ns, name) = key.split_once('/').unwrap_or(("default", key));
    ObjectRef::new(
        Kind::Service,
        Some(ns),
        name,
        svc.metadata.uid.as_deref().unwrap_or_default(),
    )
}

/// A patch's outcome, picked up on the engine's task.
struct Done {
    key: String,
    rv_sent: Option<String>,
    want: Vec<IpAddr>,
    result: Result<Written, KubeError>,
}

#[derive(Default)]
struct Writing {
    inflight: bool,
    /// Accepted: (version decided on, value); the watch shows it soon.
    written: Option<(Option<String>, Vec<IpAddr>)>,
    retry_at: Option<Instant>,
}

/// See the module doc.
pub struct LbIps {
    pool: Vec<IpNet>,
    held: HashMap<IpAddr, String>,
    dirty: BTreeSet<String>,
    writing: HashMap<String, Writing>,
    /// Services that found the pool exhausted: looked at again when an
    /// address is freed.
    waiting: BTreeSet<String>,
    done: Arc<Mutex<Vec<Done>>>,
    started: bool,
}

impl LbIps {
    pub fn new(pool: Vec<IpNet>) -> LbIps {
        LbIps {
            pool,
            held: HashMap::new(),
            dirty: BTreeSet::new(),
            writing: HashMap::new(),
            waiting: BTreeSet::new(),
            done: Arc::default(),
            started: false,
        }
    }

    /// Addresses handed out.
    pub fn in_use(&self) -> usize {
        self.held.len()
    }

    fn in_pool(&self, ip: IpAddr) -> bool {
        self.pool.iter().any(|n| n.contains(&ip))
    }

    /// Adopts what the Services show, oldest first; then decides for all.
    pub fn start(&mut self, model: &Model) {
        self.started = true;
        if self.pool.is_empty() {
            return;
        }
        let mut services: Vec<(&String, &Arc<Service>)> =
            model.services.iter().filter(|(_, s)| ours(s)).collect();
        services.sort_by_key(|(k, s)| seniority(k, s));
        for (k, s) in services {
            for ip in ingress_ips(s) {
                if self.in_pool(ip) && !self.held.contains_key(&ip) {
                    self.held.insert(ip, k.clone());
                }
            }
        }
        self.dirty.extend(model.services.keys().cloned());
    }

    /// Takes a round's changes.
    pub fn observe(&mut self, changes: &[Change]) {
        if self.pool.is_empty() {
            return;
        }
        for c in changes {
            if let Change::Service { key, new, .. } = c {
                self.dirty.insert(key.clone());
                if new.is_none() {
                    self.release(key);
                    self.writing.remove(key);
                }
            }
        }
    }

    fn release(&mut self, key: &str) {
        let before = self.held.len();
        self.held.retain(|_, k| k != key);
        if self.held.len() != before {
            // Someone waiting for an address may have one now.
            self.dirty.append(&mut self.waiting);
        }
    }

    /// The addresses `key` should show, or problems.
    fn decide(&mut self, key: &str, svc: &Service, problems: &mut Vec<Problem>) -> Vec<IpAddr> {
        let spec = svc.spec.as_ref();
        let families: Vec<bool> = spec
            .and_then(|s| s.ip_families.clone())
            .filter(|f| !f.is_empty())
            .unwrap_or_else(|| vec!["IPv4".into()])
            .iter()
            .map(|f| f == "IPv6")
            .collect();
        let requested: Option<IpAddr> = spec
            .and_then(|s| s.load_balancer_ip.as_deref())
            .filter(|s| !s.is_empty())
            .and_then(|s| s.parse().ok());
        let shown = ingress_ips(svc);
        let mut problem = |reason: &'static str, note: String| {
            problems.push(Problem {
                object: target(key, svc),
                reason,
                note,
            })
        };
        let mut out = Vec::new();
        for v6 in families {
            let Some(cidr) = self.pool.iter().find(|n| n.addr().is_ipv6() == v6).copied() else {
                continue;
            };
            let free_or_mine =
                |ip: &IpAddr, held: &HashMap<IpAddr, String>| held.get(ip).is_none_or(|k| k == key);
            let ip = if let Some(r) = requested.filter(|r| r.is_ipv6() == v6) {
                if !cidr.contains(&r) {
                    problem(
                        "LoadBalancerIPUnavailable",
                        format!("spec.loadBalancerIP {r} is outside the pool {cidr}"),
                    );
                    continue;
                }
                if !free_or_mine(&r, &self.held) {
                    let other = self.held.get(&r).cloned().unwrap_or_default();
                    problem(
                        "LoadBalancerIPConflict",
                        format!("spec.loadBalancerIP {r} is already assigned to Service {other}"),
                    );
                    continue;
                }
                Some(r)
            } else if let Some(s) = shown
                .iter()
                .find(|ip| ip.is_ipv6() == v6 && cidr.contains(*ip))
            {
                if free_or_mine(s, &self.held) {
                    Some(*s)
                } else {
                    let other = self.held.get(s).cloned().unwrap_or_default();
                    problem(
                        "LoadBalancerIPConflict",
                        format!("{s} is assigned to the older Service {other}; this Service gets another address"),
                    );
                    self.mine(key, v6).or_else(|| self.free(cidr))
                }
            } else {
                self.mine(key, v6).or_else(|| self.free(cidr))
            };
            match ip {
                Some(ip) => {
                    // Whatever else it held of this family goes back.
                    self.held
                        .retain(|h, k| !(k == key && h.is_ipv6() == v6 && *h != ip));
                    self.held.insert(ip, key.to_string());
                    out.push(ip);
                }
                None => {
                    self.waiting.insert(key.to_string());
                    problem(
                        "LoadBalancerPoolExhausted",
                        format!("no free address in the LoadBalancer pool {cidr}"),
                    )
                }
            }
        }
        out
    }

    fn mine(&self, key: &str, v6: bool) -> Option<IpAddr> {
        self.held
            .iter()
            .find(|(ip, k)| k.as_str() == key && ip.is_ipv6() == v6)
            .map(|(ip, _)| *ip)
    }

    /// The lowest free address of `cidr` (not its network address, nor
    /// the IPv4 broadcast address), scanning at most 65,536.
    fn free(&self, cidr: IpNet) -> Option<IpAddr> {
        cidr.hosts()
            .take(1 << 16)
            .find(|ip| *ip != cidr.network() && !self.held.contains_key(ip))
    }

    /// Decides for the dirty Services and sends the status patches that
    /// are due; returns the problems to report.
    pub fn process(&mut self, model: &Model, outbox: &Outbox) -> Vec<Problem> {
        let mut problems = Vec::new();
        if self.pool.is_empty() || !self.started {
            return problems;
        }
        self.collect(model);
        let now = Instant::now();
        for (k, w) in &self.writing {
            if w.retry_at.is_some_and(|t| t <= now) {
                self.dirty.insert(k.clone());
            }
        }
        for key in std::mem::take(&mut self.dirty) {
            let Some(svc) = model.services.get(&key) else {
                self.release(&key);
                continue;
            };
            let shown = ingress_ips(svc);
            let want: Vec<IpAddr> = if ours(svc) {
                self.decide(&key, svc, &mut problems)
            } else {
                self.release(&key);
                // No longer ours: what the pool gave goes from the status.
                shown
                    .iter()
                    .copied()
                    .filter(|ip| !self.in_pool(*ip))
                    .collect()
            };
            let same = {
                let (mut a, mut b) = (shown.clone(), want.clone());
                a.sort();
                b.sort();
                a == b
            };
            if same || (!ours(svc) && shown.iter().all(|ip| !self.in_pool(*ip))) {
                self.writing.remove(&key);
                continue;
            }
            self.send(&key, svc, want, outbox);
        }
        problems
    }

    fn send(&mut self, key: &str, svc: &Service, want: Vec<IpAddr>, outbox: &Outbox) {
        let rv = svc.metadata.resource_version.clone();
        let w = self.writing.entry(key.to_string()).or_default();
        if w.inflight || w.retry_at.is_some_and(|t| t > Instant::now()) {
            return;
        }
        if w.written.as_ref() == Some(&(rv.clone(), want.clone())) {
            return;
        }
        w.inflight = true;
        w.retry_at = None;
        let ingress: Vec<serde_json::Value> = want
            .iter()
            .map(|ip| json!({"ip": ip.to_string()}))
            .collect();
        let status = if ingress.is_empty() {
            json!({"loadBalancer": {"ingress": null}})
        } else {
            json!({"loadBalancer": {"ingress": ingress}})
        };
        let request = outbox
            .cluster()
            .patch_status(target(key, svc), rv.clone(), status);
        let done = self.done.clone();
        let key = key.to_string();
        outbox.send(request, move |result| {
            if let Ok(mut d) = done.lock() {
                d.push(Done {
                    key,
                    rv_sent: rv,
                    want,
                    result,
                });
            }
        });
    }

    /// Takes the outcomes of the patches sent.
    fn collect(&mut self, model: &Model) {
        let done = match self.done.lock() {
            Ok(mut d) => std::mem::take(&mut *d),
            Err(_) => return,
        };
        for d in done {
            let Some(w) = self.writing.get_mut(&d.key) else {
                continue;
            };
            w.inflight = false;
            let rv_now = model
                .services
                .get(&d.key)
                .and_then(|s| s.metadata.resource_version.clone());
            match d.result {
                Ok(_) => w.written = Some((d.rv_sent, d.want)),
                Err(KubeError::NotFound(_)) => {}
                Err(e) if e.object_replaced() => {}
                // Changed since the decision: decide again on what the
                // watch shows (now, or when its event arrives).
                Err(KubeError::Conflict(_)) => {
                    if rv_now != d.rv_sent {
                        self.dirty.insert(d.key);
                    }
                }
                Err(e) => {
                    warn!(service = %d.key, error = %e, "LoadBalancer status patch failed; retrying");
                    w.retry_at = Some(Instant::now() + Duration::from_secs(1));
                }
            }
        }
    }

    /// The addresses held, by Service (for tests and metrics).
    pub fn assignments(&self) -> BTreeMap<String, Vec<IpAddr>> {
        let mut out: BTreeMap<String, Vec<IpAddr>> = BTreeMap::new();
        for (ip, k) in &self.held {
            out.entry(k.clone()).or_default().push(*ip);
        }
        for v in out.values_mut() {
            v.sort();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::k8s::{Object, Observed, WatchEvent};
    use k8s_openapi::api::core::v1::{
        LoadBalancerIngress, LoadBalancerStatus, ServiceSpec, ServiceStatus,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn lb(name: &str, age: i64, shown: &[&str], class: Option<&str>) -> Service {
        let mut s = Service::default();
        s.metadata.namespace = Some("ns".into());
        s.metadata.name = Some(name.into());
        s.metadata.resource_version = Some("1".into());
        s.metadata.creation_timestamp = Some(Time(
            k8s_openapi::jiff::Timestamp::from_second(1_700_000_000 + age).unwrap(),
        ));
        s.spec = Some(ServiceSpec {
            type_: Some("LoadBalancer".into()),
            load_balancer_class: class.map(str::to_string),
            ip_families: Some(vec!["IPv4".into(), "IPv6".into()]),
            ..Default::default()
        });
        s.status = Some(ServiceStatus {
            load_balancer: Some(LoadBalancerStatus {
                ingress: Some(
                    shown
                        .iter()
                        .map(|ip| LoadBalancerIngress {
                            ip: Some(ip.to_string()),
                            ..Default::default()
                        })
                        .collect(),
                ),
            }),
            ..Default::default()
        });
        s
    }

    fn model(services: Vec<Service>) -> Model {
        let mut m = Model::new();
        m.apply(
            Kind::Service,
            WatchEvent::Restarted(
                services
                    .into_iter()
                    .map(|o| Observed::from(Object::from(o)))
                    .collect(),
            ),
            &mut Vec::new(),
        );
        m
    }

    fn ips(v: &[&str]) -> Vec<IpAddr> {
        v.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn shown_addresses_are_adopted_oldest_first_and_families_filled() {
        let pool = vec![
            "198.51.100.0/30".parse().unwrap(),
            "2001:db8::/126".parse().unwrap(),
        ];
        let mut p = LbIps::new(pool);
        // Both show .1; "old" is older and keeps it.
        let m = model(vec![
            lb("young", 2, &["198.51.100.1"], None),
            lb("old", 1, &["198.51.100.1"], None),
            lb("theirs", 0, &[], Some("example.com/other")),
        ]);
        p.start(&m);
        let mut problems = Vec::new();
        let old = m.services.get("ns/old").unwrap().clone();
        let young = m.services.get("ns/young").unwrap().clone();
        assert_eq!(
            p.decide("ns/old", &old, &mut problems),
            ips(&["198.51.100.1", "2001:db8::1"])
        );
        assert_eq!(
            p.decide("ns/young", &young, &mut problems),
            ips(&["198.51.100.2", "2001:db8::2"])
        );
        let reasons: Vec<&str> = problems.iter().map(|p| p.reason).collect();
        assert_eq!(reasons, vec!["LoadBalancerIPConflict"]);
        assert!(!ours(m.services.get("ns/theirs").unwrap()));
        // A /30 has two hosts: a third Service waits for an IPv4 address
        // (its IPv6 one is there), and gets the one the first one frees.
        let third = Arc::new(lb("third", 3, &[], None));
        problems.clear();
        assert_eq!(
            p.decide("ns/third", &third, &mut problems),
            ips(&["2001:db8::3"])
        );
        assert_eq!(problems[0].reason, "LoadBalancerPoolExhausted");
        p.release("ns/old");
        assert!(p.dirty.contains("ns/third"));
        assert_eq!(
            p.decide("ns/third", &third, &mut Vec::new()),
            ips(&["198.51.100.1", "2001:db8::3"])
        );
        assert_eq!(p.in_use(), 4);
    }
}
