//! Reading `ovn-trace`'s detailed output: the datapaths the packet
//! crosses, the logical flows it meets (each `uuid` resolved through the
//! southbound `stage-hint` to the northbound ACL or load balancer behind
//! it), and where it ends (an `output to` a VIF, or a `drop`).

use std::collections::{BTreeSet, HashMap};

use switchyard_api::names;

use crate::error::Result;
use crate::ovn::{self, external_ids, short_uuid, NB_DB, SB_DB};

/// An ACL row as the summary names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AclInfo {
    pub name: String,
    pub action: String,
    pub direction: String,
    /// NetworkPolicies (`ns/name`) the ACL stands for; several when a
    /// default deny is shared.
    pub policies: Vec<String>,
    /// `Ingress`/`Egress` and the rule's index, when a policy rule.
    pub policy_direction: Option<String>,
    pub rule: Option<String>,
}

/// What the summary needs from NB and SB to name the trace's flows.
#[derive(Clone, Debug, Default)]
pub struct Names {
    /// Logical flow uuid (8 hex) -> `stage-hint` (8 hex of the NB row).
    pub hints: HashMap<String, String>,
    /// ACL uuid (8 hex) -> the ACL.
    pub acls: HashMap<String, AclInfo>,
    /// Load balancer uuid (8 hex) -> name.
    pub load_balancers: HashMap<String, String>,
    pub routers: BTreeSet<String>,
}

impl Names {
    /// Reads the rows from NB and SB.
    pub async fn read(nb: &str, sb: &str) -> Result<Names> {
        let mut names = Names::default();
        let sbc = ovn::connect(sb).await?;
        for row in ovn::select(&sbc, sb, SB_DB, "Logical_Flow", &["external_ids"]).await? {
            if let Some(hint) = row.map_get("external_ids", "stage-hint") {
                names.hints.insert(short_uuid(&row), hint.to_string());
            }
        }
        let nbc = ovn::connect(nb).await?;
        for row in ovn::select(
            &nbc,
            nb,
            NB_DB,
            "ACL",
            &["name", "action", "direction", "external_ids"],
        )
        .await?
        {
            let ids = external_ids(&row);
            let acl = AclInfo {
                name: row
                    .get("name")
                    .and_then(|v| v.strings().first().map(|s| s.to_string()))
                    .unwrap_or_default(),
                action: row.str("action").unwrap_or_default().to_string(),
                direction: row.str("direction").unwrap_or_default().to_string(),
                policies: ids
                    .get(names::POLICY)
                    .map(|p| {
                        p.split(',')
                            .filter(|s| !s.is_empty())
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default(),
                policy_direction: ids.get(names::DIRECTION).cloned(),
                rule: ids.get(names::RULE).cloned(),
            };
            names.acls.insert(short_uuid(&row), acl);
        }
        for row in ovn::select(&nbc, nb, NB_DB, "Load_Balancer", &["name"]).await? {
            let name = row.str("name").unwrap_or_default().to_string();
            names.load_balancers.insert(short_uuid(&row), name);
        }
        for row in ovn::select(&nbc, nb, NB_DB, "Logical_Router", &["name"]).await? {
            names
                .routers
                .insert(row.str("name").unwrap_or_default().to_string());
        }
        Ok(names)
    }
}

/// Where the packet ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Output to this logical port (a pod, a management port…).
    Delivered(String),
    /// Dropped in this stage of this datapath.
    Dropped { datapath: String, stage: String },
    /// Neither an output nor a drop was seen.
    Unknown,
}

/// One ACL the packet met.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AclHit {
    pub datapath: String,
    pub stage: String,
    pub acl: AclInfo,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// (datapath, is a router), in the order met, without repeats in a row.
    pub datapaths: Vec<(String, bool)>,
    pub load_balancers: Vec<String>,
    pub acls: Vec<AclHit>,
    pub verdict: Verdict,
}

/// `dp="X"` of an `ingress(...)`/`egress(...)` header.
fn header_datapath(line: &str) -> Option<String> {
    let rest = line
        .strip_prefix("ingress(dp=\"")
        .or_else(|| line.strip_prefix("egress(dp=\""))?;
    rest.split_once('"').map(|(dp, _)| dp.to_string())
}

/// `N. stage (file:line): match, priority P, uuid U` -> (stage, U).
fn flow_line(line: &str) -> Option<(String, String)> {
    let (num, rest) = line.split_once(". ")?;
    if num.is_empty() || !num.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let stage = rest.split_whitespace().next()?.to_string();
    let uuid = rest.rsplit_once(", uuid ")?.1.trim().to_string();
    Some((stage, uuid))
}

/// `/* output to "P", type "T" */` -> (P, T).
fn output_line(line: &str) -> Option<(String, String)> {
    let rest = line.strip_prefix("/* output to \"")?;
    let (port, rest) = rest.split_once('"')?;
    let ty = rest
        .split_once("type \"")
        .and_then(|(_, t)| t.split_once('"'))
        .map(|(t, _)| t.to_string())
        .unwrap_or_default();
    Some((port.to_string(), ty))
}

/// Summarises a detailed `ovn-trace` output.
pub fn summarize(raw: &str, names: &Names) -> Summary {
    let mut datapaths: Vec<(String, bool)> = Vec::new();
    let mut lbs: Vec<String> = Vec::new();
    let mut acls: Vec<AclHit> = Vec::new();
    let mut datapath = String::new();
    let mut stage = String::new();
    let mut delivered: Option<String> = None;
    let mut dropped: Option<(String, String)> = None;
    for line in raw.lines().map(str::trim) {
        if let Some(dp) = header_datapath(line) {
            if datapaths.last().map(|(d, _)| d) != Some(&dp) {
                datapaths.push((dp.clone(), names.routers.contains(&dp)));
            }
            datapath = dp;
            continue;
        }
        if let Some((s, uuid)) = flow_line(line) {
            stage = s;
            let Some(hint) = names.hints.get(&uuid) else {
                continue;
            };
            if let Some(acl) = names.acls.get(hint) {
                let hit = AclHit {
                    datapath: datapath.clone(),
                    stage: stage.clone(),
                    acl: acl.clone(),
                };
                if !acls.iter().any(|a| a.acl == hit.acl) {
                    acls.push(hit);
                }
            }
            if let Some(lb) = names.load_balancers.get(hint) {
                if !lbs.contains(lb) {
                    lbs.push(lb.clone());
                }
            }
            continue;
        }
        if let Some((port, ty)) = output_line(line) {
            // Patch ports lead to the next datapath; anything else is
            // where the packet leaves OVN.
            if ty != "patch" {
                delivered = Some(port);
            }
            continue;
        }
        if line == "drop;" || line.starts_with("no match") {
            dropped = Some((datapath.clone(), stage.clone()));
        }
    }
    let verdict = match (delivered, dropped) {
        (Some(p), _) => Verdict::Delivered(p),
        (None, Some((datapath, stage))) => Verdict::Dropped { datapath, stage },
        (None, None) => Verdict::Unknown,
    };
    Summary {
        datapaths,
        load_balancers: lbs,
        acls,
        verdict,
    }
}

impl AclInfo {
    fn describe(&self) -> String {
        let what = if self.policies.is_empty() {
            String::new()
        } else if self.rule.is_none() {
            format!(
                ": default deny of NetworkPolicy {}",
                self.policies.join(", ")
            )
        } else {
            format!(
                ": NetworkPolicy {} {} rule {}",
                self.policies.join(", "),
                self.policy_direction.as_deref().unwrap_or_default(),
                self.rule.as_deref().unwrap_or_default()
            )
        };
        let name = if self.name.is_empty() {
            "(unnamed)"
        } else {
            &self.name
        };
        format!("ACL {name} [{} {}]{what}", self.direction, self.action)
    }
}

impl Summary {
    /// A few readable lines.
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        let path: Vec<String> = self
            .datapaths
            .iter()
            .map(|(d, router)| format!("{} {d}", if *router { "router" } else { "switch" }))
            .collect();
        out.push(format!("path: {}", path.join(" -> ")));
        for lb in &self.load_balancers {
            out.push(format!("load balancer {lb}"));
        }
        for hit in &self.acls {
            out.push(format!("{} (on {})", hit.acl.describe(), hit.datapath));
        }
        out.push(match &self.verdict {
            Verdict::Delivered(p) => format!("delivered to {p}"),
            Verdict::Dropped { datapath, stage } => {
                format!("DROPPED on {datapath} in {stage}")
            }
            Verdict::Unknown => "verdict unknown (see --ovn)".to_string(),
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_read() {
        assert_eq!(
            header_datapath("ingress(dp=\"node-n1\", inport=\"x_a\")"),
            Some("node-n1".into())
        );
        assert_eq!(
            flow_line("8. ls_in_acl_eval (northd.c:6597): ip && 1, priority 2001, uuid 0a1b2c3d"),
            Some(("ls_in_acl_eval".into(), "0a1b2c3d".into()))
        );
        assert_eq!(
            output_line("/* output to \"x_b\", type \"\" */"),
            Some(("x_b".into(), String::new()))
        );
        assert_eq!(flow_line("next;"), None);
    }
}
