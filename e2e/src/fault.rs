//! Faults the sandbox can inject: kill or restart one named component
//! (`switchyard-sandbox fault kill|restart COMPONENT`, and tests).
//!
//! Components: `controller` (every replica), `controller/I` (replica I,
//! from 0), `controller-leader` (the replica holding the Lease);
//! `node-agent/NODE`, `ovn-controller/NODE`,
//! `ovs-vswitchd/NODE`; `ovn-northd`; `nb/I`, `sb/I` (member I of a RAFT
//! cluster, from 0) and `nb-leader`, `sb-leader` (whichever member leads
//! now), `nb-cluster`, `sb-cluster` (every member at once);
//! `underlay/NODE`, where kill cuts the node off the underlay and
//! restart joins it back.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::central::Db;
use crate::Sandbox;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// SIGKILL; the component stays down until restarted.
    Kill,
    /// Kill (if it runs) and start again; returns once it serves.
    Restart,
}

impl FromStr for Action {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Action> {
        Ok(match s {
            "kill" => Action::Kill,
            "restart" => Action::Restart,
            other => bail!("fault action must be kill or restart, not {other:?}"),
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Component {
    Controller,
    ControllerReplica(usize),
    ControllerLeader,
    NodeAgent(String),
    OvnController(String),
    Vswitchd(String),
    Northd,
    Member(Db, usize),
    Leader(Db),
    Cluster(Db),
    Underlay(String),
}

impl FromStr for Component {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Component> {
        let (kind, arg) = match s.split_once('/') {
            Some((k, a)) => (k, Some(a)),
            None => (s, None),
        };
        let node = || -> Result<String> {
            match arg {
                Some(n) if !n.is_empty() => Ok(n.to_string()),
                _ => bail!("{kind} needs a node: {kind}/NODE"),
            }
        };
        let member = || -> Result<usize> {
            arg.context("a member index: nb/I or sb/I")?
                .parse()
                .with_context(|| format!("bad member index in {s:?}"))
        };
        Ok(match kind {
            "controller" if arg.is_none() => Component::Controller,
            "controller" => Component::ControllerReplica(
                arg.unwrap_or_default()
                    .parse()
                    .with_context(|| format!("bad replica index in {s:?}"))?,
            ),
            "controller-leader" if arg.is_none() => Component::ControllerLeader,
            "node-agent" | "agent" => Component::NodeAgent(node()?),
            "ovn-controller" => Component::OvnController(node()?),
            "ovs-vswitchd" | "vswitchd" => Component::Vswitchd(node()?),
            "ovn-northd" | "northd" if arg.is_none() => Component::Northd,
            "nb" => Component::Member(Db::Nb, member()?),
            "sb" => Component::Member(Db::Sb, member()?),
            "underlay" => Component::Underlay(node()?),
            "nb-cluster" if arg.is_none() => Component::Cluster(Db::Nb),
            "sb-cluster" if arg.is_none() => Component::Cluster(Db::Sb),
            "nb-leader" if arg.is_none() => Component::Leader(Db::Nb),
            "sb-leader" if arg.is_none() => Component::Leader(Db::Sb),
            _ => bail!(
                "unknown component {s:?}: controller, controller/I, controller-leader, node-agent/NODE, ovn-controller/NODE, \
                 ovs-vswitchd/NODE, ovn-northd, nb/I, sb/I, nb-leader, sb-leader, nb-cluster, sb-cluster, underlay/NODE"
            ),
        })
    }
}

impl fmt::Display for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let db = |d: &Db| if *d == Db::Nb { "nb" } else { "sb" };
        match self {
            Component::Controller => write!(f, "controller"),
            Component::ControllerReplica(i) => write!(f, "controller/{i}"),
            Component::ControllerLeader => write!(f, "controller-leader"),
            Component::NodeAgent(n) => write!(f, "node-agent/{n}"),
            Component::OvnController(n) => write!(f, "ovn-controller/{n}"),
            Component::Vswitchd(n) => write!(f, "ovs-vswitchd/{n}"),
            Component::Northd => write!(f, "ovn-northd"),
            Component::Member(d, i) => write!(f, "{}/{i}", db(d)),
            Component::Leader(d) => write!(f, "{}-leader", db(d)),
            Component::Cluster(d) => write!(f, "{}-cluster", db(d)),
            Component::Underlay(n) => write!(f, "underlay/{n}"),
        }
    }
}

/// How long a restarted component may take to serve again.
const RESTART_TIMEOUT: Duration = Duration::from_secs(60);

/// Applies `action` to `component`; returns what was done, e.g.
/// `killed nb/1 (the leader)`.
pub fn inject(sb: &Sandbox, action: Action, component: &Component) -> Result<String> {
    let node = |name: &str| -> Result<usize> {
        sb.node_names()
            .iter()
            .position(|n| n == name)
            .with_context(|| format!("no node {name} (nodes: {})", sb.node_names().join(", ")))
    };
    let mut what = component.to_string();
    match (action, component) {
        (Action::Kill, Component::Controller) => sb.kill_controller(),
        (Action::Restart, Component::Controller) => sb.restart_controller()?,
        (action, Component::ControllerReplica(i)) => {
            let mut set = sb.controllers();
            if *i >= set.len() {
                bail!("no controller {i}: {} replicas", set.len());
            }
            match action {
                Action::Kill => set.kill(*i),
                Action::Restart => set.restart(*i)?,
            }
        }
        (action, Component::ControllerLeader) => {
            let i = controller_leader(sb)?;
            what = format!("{what} (controller/{i})");
            return inject(sb, action, &Component::ControllerReplica(i))
                .map(|done| done.replace(&format!("controller/{i}"), &what));
        }
        (Action::Kill, Component::NodeAgent(n)) => sb.kill_node_agent(node(n)?),
        (Action::Restart, Component::NodeAgent(n)) => sb.restart_node_agent(node(n)?)?,
        (Action::Kill, Component::OvnController(n)) => {
            sb.with_node(node(n)?, |nd| {
                nd.kill_ovn_controller();
                Ok(())
            })?;
        }
        (Action::Restart, Component::OvnController(n)) => {
            sb.with_node(node(n)?, |nd| nd.restart_ovn_controller())?;
        }
        (Action::Kill, Component::Vswitchd(n)) => {
            sb.with_node(node(n)?, |nd| {
                nd.kill_vswitchd();
                Ok(())
            })?;
        }
        (Action::Restart, Component::Vswitchd(n)) => sb.restart_vswitchd(node(n)?)?,
        (Action::Kill, Component::Northd) => sb.ovn().kill_northd(),
        (Action::Restart, Component::Northd) => sb.ovn().restart_northd()?,
        (action, Component::Underlay(n)) => {
            sb.set_underlay_link(node(n)?, action == Action::Restart)?;
            return Ok(match action {
                Action::Kill => format!("cut {n} off the underlay"),
                Action::Restart => format!("joined {n} back onto the underlay"),
            });
        }
        (action, Component::Member(db, i)) => member(sb, action, *db, *i)?,
        (Action::Kill, Component::Cluster(db)) => {
            for i in 0..sb.ovn().members() {
                sb.ovn().kill_member(*db, i)?;
            }
        }
        (Action::Restart, Component::Cluster(db)) => {
            let central = sb.ovn();
            for i in 0..central.members() {
                central.kill_member(*db, i)?;
            }
            for i in 0..central.members() {
                central.restart_member(*db, i)?;
            }
            central.leader(*db, RESTART_TIMEOUT)?;
        }
        (action, Component::Leader(db)) => {
            let i = sb.ovn().leader(*db, Duration::from_secs(30))?;
            what = format!("{what} (member {i})");
            member(sb, action, *db, i)?;
        }
    }
    sb.refresh_state_pids();
    Ok(match action {
        Action::Kill => format!("killed {what}"),
        Action::Restart => format!("restarted {what}"),
    })
}

/// The component `c` names now: `nb-leader` and `sb-leader` become the
/// member that leads, so that a later restart brings back the one killed.
pub fn resolve(sb: &Sandbox, c: &Component) -> Result<Component> {
    Ok(match c {
        Component::Leader(db) => Component::Member(*db, sb.ovn().leader(*db, RESTART_TIMEOUT)?),
        Component::ControllerLeader => Component::ControllerReplica(controller_leader(sb)?),
        other => other.clone(),
    })
}

/// The controller replica holding the Lease, waiting for one to.
fn controller_leader(sb: &Sandbox) -> Result<usize> {
    crate::util::wait_for(RESTART_TIMEOUT, "a controller to hold the Lease", || {
        sb.controllers().leader()
    })
}

fn member(sb: &Sandbox, action: Action, db: Db, i: usize) -> Result<()> {
    let central = sb.ovn();
    match action {
        Action::Kill => central.kill_member(db, i),
        Action::Restart => {
            central.kill_member(db, i)?;
            central.restart_member(db, i)?;
            // Back in the cluster: some member leads again.
            central.leader(db, RESTART_TIMEOUT).map(drop)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_components_and_actions() {
        for s in [
            "controller",
            "controller/1",
            "controller-leader",
            "node-agent/node-2",
            "ovn-controller/node-1",
            "ovs-vswitchd/node-3",
            "ovn-northd",
            "nb/0",
            "sb/2",
            "nb-leader",
            "sb-leader",
            "underlay/node-2",
            "nb-cluster",
            "sb-cluster",
        ] {
            assert_eq!(s.parse::<Component>().unwrap().to_string(), s);
        }
        assert_eq!(
            "agent/node-1".parse::<Component>().unwrap(),
            Component::NodeAgent("node-1".into())
        );
        for bad in ["", "ovn-controller", "nb/x", "controller/x", "etcd"] {
            assert!(bad.parse::<Component>().is_err(), "{bad}");
        }
        assert_eq!("kill".parse::<Action>().unwrap(), Action::Kill);
        assert!("pause".parse::<Action>().is_err());
    }
}
