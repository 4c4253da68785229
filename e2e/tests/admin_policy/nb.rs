//! What NB holds for policies, read with `ovn-nbctl --format=json`, and
//! the barrier every case of `tests/admin_policy.rs` waits on before it
//! probes: NB holds what the case applied, then `--wait=hv sync` (every
//! ovn-controller has installed the flows of that NB state).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::Value;
use switchyard_api::names;
use switchyard_e2e::Sandbox;

/// An ACL: its owner (kind, name), the policies it names, its priority
/// and match.
#[derive(Clone, Debug)]
pub struct Acl {
    pub owner_kind: String,
    pub owner: String,
    pub policies: String,
    pub priority: i64,
    pub matches: String,
}

/// ACLs, port groups (name -> port names) and address sets (name ->
/// addresses).
#[derive(Debug, Default)]
pub struct Nb {
    pub acls: Vec<Acl>,
    pub groups: BTreeMap<String, BTreeSet<String>>,
    pub sets: BTreeMap<String, BTreeSet<String>>,
}

fn list(sb: &Sandbox, table: &str, columns: &str) -> Result<Vec<Vec<Value>>, String> {
    let out = sb
        .nbctl(&[
            "--format=json",
            &format!("--columns={columns}"),
            "list",
            table,
        ])
        .map_err(|e| format!("{e:#}"))?;
    let v: Value = serde_json::from_str(&out).map_err(|e| e.to_string())?;
    Ok(v["data"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|r| r.as_array().cloned().unwrap_or_default())
        .collect())
}

/// The members of an OVSDB set (or the one atom standing for it).
fn atoms(v: &Value) -> Vec<Value> {
    match v.as_array() {
        Some(a) if a.first().and_then(Value::as_str) == Some("set") => a
            .get(1)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default(),
        _ => vec![v.clone()],
    }
}

/// A uuid atom's text.
fn uuid(v: &Value) -> String {
    v.get(1)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn map(v: &Value) -> BTreeMap<String, String> {
    v.get(1)
        .and_then(Value::as_array)
        .map(|pairs| {
            pairs
                .iter()
                .filter_map(|p| Some((p[0].as_str()?.to_string(), p[1].as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

pub fn read(sb: &Sandbox) -> Result<Nb, String> {
    let mut nb = Nb::default();
    for r in list(sb, "ACL", "priority,match,external_ids")? {
        let ids = map(&r[2]);
        nb.acls.push(Acl {
            owner_kind: ids.get(names::OWNER_KIND).cloned().unwrap_or_default(),
            owner: ids.get(names::OWNER).cloned().unwrap_or_default(),
            policies: ids.get(names::POLICY).cloned().unwrap_or_default(),
            priority: r[0].as_i64().unwrap_or(-1),
            matches: r[1].as_str().unwrap_or_default().to_string(),
        });
    }
    let ports: BTreeMap<String, String> = list(sb, "Logical_Switch_Port", "_uuid,name")?
        .into_iter()
        .map(|r| (uuid(&r[0]), r[1].as_str().unwrap_or_default().to_string()))
        .collect();
    for r in list(sb, "Port_Group", "name,ports")? {
        let members = atoms(&r[1])
            .iter()
            .filter_map(|u| ports.get(&uuid(u)).cloned())
            .collect();
        nb.groups
            .insert(r[0].as_str().unwrap_or_default().to_string(), members);
    }
    for r in list(sb, "Address_Set", "name,addresses")? {
        let addrs = atoms(&r[1])
            .iter()
            .filter_map(|a| a.as_str().map(str::to_string))
            .collect();
        nb.sets
            .insert(r[0].as_str().unwrap_or_default().to_string(), addrs);
    }
    Ok(nb)
}

pub const ANP: &str = names::KIND_ADMIN_NETWORK_POLICY;
pub const BANP: &str = names::KIND_BASELINE_ADMIN_NETWORK_POLICY;

impl Nb {
    /// Admin ACLs per (kind, owner).
    pub fn admin_counts(&self) -> BTreeMap<(String, String), usize> {
        let mut m = BTreeMap::new();
        for a in self
            .acls
            .iter()
            .filter(|a| a.owner_kind == ANP || a.owner_kind == BANP)
        {
            *m.entry((a.owner_kind.clone(), a.owner.clone()))
                .or_default() += 1;
        }
        m
    }

    /// Exactly these admin ACLs ((kind, owner, count)) and ACLs naming
    /// exactly these NetworkPolicies (`ns/name`).
    pub fn exactly(&self, admin: &[(&str, &str, usize)], nps: &[&str]) -> Result<(), String> {
        let want: BTreeMap<(String, String), usize> = admin
            .iter()
            .map(|(k, o, n)| ((k.to_string(), o.to_string()), *n))
            .collect();
        let have = self.admin_counts();
        if have != want {
            return Err(format!("admin ACLs {have:?}, want {want:?}"));
        }
        let named: BTreeSet<&str> = self
            .acls
            .iter()
            .flat_map(|a| a.policies.split(','))
            .filter(|p| p.contains('/'))
            .collect();
        let want: BTreeSet<&str> = nps.iter().copied().collect();
        if named != want {
            return Err(format!("NetworkPolicies in ACLs {named:?}, want {want:?}"));
        }
        Ok(())
    }

    /// Every address in the address sets the ACLs of admin policy
    /// `owner` name.
    pub fn peer_addresses(&self, owner: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for a in self.acls.iter().filter(|a| a.owner == owner) {
            for tok in a.matches.split('$').skip(1) {
                let name: String = tok
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || "_.-".contains(*c))
                    .collect();
                if let Some(s) = self.sets.get(&name) {
                    out.extend(s.iter().cloned());
                }
            }
        }
        out
    }

    /// The ports of the port group holding admin policy `owner`'s ACLs.
    pub fn subject_ports(&self, owner: &str) -> BTreeSet<String> {
        let want = format!("anp.{}", owner.replace('-', "_"));
        self.groups.get(&want).cloned().unwrap_or_default()
    }

    /// The priority of admin policy `owner`'s first ACL.
    pub fn priority(&self, owner: &str) -> Option<i64> {
        self.acls
            .iter()
            .filter(|a| a.owner == owner)
            .map(|a| a.priority)
            .max()
    }
}

/// Waits until `cond` holds on NB, then until every ovn-controller has
/// caught up with it.
pub fn settle(sb: &Sandbox, what: &str, cond: impl Fn(&Nb) -> Result<(), String>) {
    let timeout = Duration::from_secs(45);
    let deadline = Instant::now() + timeout;
    loop {
        let r = read(sb).and_then(|nb| cond(&nb));
        match r {
            Ok(()) => break,
            Err(e) if Instant::now() >= deadline => {
                panic!("{what}: NB not there after {timeout:?}: {e}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    hv_sync(sb);
}

/// `ovn-nbctl --wait=hv sync`: returns once every chassis has applied
/// the NB state of this moment (retried: the tool's own timeout is 10 s).
pub fn hv_sync(sb: &Sandbox) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match sb.nbctl(&["--wait=hv", "sync"]) {
            Ok(_) => return,
            Err(e) if Instant::now() >= deadline => panic!("ovn-nbctl --wait=hv sync: {e:#}"),
            Err(_) => {}
        }
    }
}
