//! What the tool reads from OVN's databases, over the `ovsdb` crate's
//! client: each clustered member's `_Server` view (health and leadership),
//! northbound ACLs and load balancers, southbound logical flow hints,
//! chassis and port bindings. Reads only.

use std::collections::BTreeMap;
use std::time::Duration;

use ovsdb::{Client, ClientConfig, Condition, Remote, Row, Transaction, Value};

use crate::error::{Error, Result};

pub const NB_DB: &str = "OVN_Northbound";
pub const SB_DB: &str = "OVN_Southbound";

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// A client of `remotes` (any member answers: reads only).
pub async fn connect(remotes: &str) -> Result<Client> {
    let wrap = |source| Error::Ovsdb {
        remote: remotes.to_string(),
        source,
    };
    let config = ClientConfig::new(remotes)
        .map_err(wrap)?
        .leader_only(false)
        .connect_timeout(CONNECT_TIMEOUT);
    Client::connect(config).await.map_err(wrap)
}

/// Every row of `table` in `db`, with `columns` (and `_uuid`).
pub async fn select(
    client: &Client,
    remote: &str,
    db: &str,
    table: &str,
    columns: &[&str],
) -> Result<Vec<Row>> {
    let mut tx = Transaction::new(db);
    let mut cols: Vec<String> = columns.iter().map(|c| c.to_string()).collect();
    cols.push("_uuid".into());
    tx.select(table, Vec::new(), Some(cols));
    let res = client.transact(tx).await.map_err(|source| Error::Ovsdb {
        remote: remote.to_string(),
        source,
    })?;
    Ok(res.first().map(|r| r.rows().to_vec()).unwrap_or_default())
}

/// A row's `external_ids` as strings.
pub fn external_ids(row: &Row) -> BTreeMap<String, String> {
    row.get("external_ids")
        .and_then(Value::as_map)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.as_str()?.to_string(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// The first 8 hex digits of a row's UUID: how `ovn-trace` names logical
/// flows and how northd's `stage-hint` names the northbound row behind one.
pub fn short_uuid(row: &Row) -> String {
    row.uuid()
        .map(|u| u.simple().to_string()[..8].to_string())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------
// Cluster health.

/// One member's answer about one database, from its `_Server` database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberState {
    /// `clustered`, `standalone`, `relay`.
    pub model: String,
    /// Whether the member is connected to its cluster (always true for a
    /// standalone database).
    pub connected: bool,
    pub leader: bool,
    /// The member's server id, first 4 hex digits as `ovs-appctl` shows it.
    pub sid: Option<String>,
}

/// A member of a database cluster as the tool reached it.
#[derive(Clone, Debug)]
pub struct Member {
    pub remote: String,
    pub state: std::result::Result<MemberState, String>,
}

/// Asks each member of `remotes` (comma separated) what it knows of `db`.
pub async fn cluster_health(remotes: &str, db: &str) -> Result<Vec<Member>> {
    let list = Remote::parse_list(remotes).map_err(|source| Error::Ovsdb {
        remote: remotes.to_string(),
        source,
    })?;
    let mut out = Vec::new();
    for r in list {
        let remote = r.to_string();
        let state = member_state(&remote, db).await.map_err(|e| e.to_string());
        out.push(Member { remote, state });
    }
    Ok(out)
}

async fn member_state(remote: &str, db: &str) -> Result<MemberState> {
    let client = connect(remote).await?;
    let mut tx = Transaction::new("_Server");
    tx.select(
        "Database",
        vec![Condition::eq("name", db)],
        Some(
            ["model", "connected", "leader", "sid"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        ),
    );
    let res = client.transact(tx).await.map_err(|source| Error::Ovsdb {
        remote: remote.to_string(),
        source,
    })?;
    let row = res
        .first()
        .and_then(|r| r.rows().first().cloned())
        .ok_or_else(|| Error::NotFound(format!("database {db} on {remote}")))?;
    let flag = |c: &str| row.get(c).and_then(Value::as_bool).unwrap_or(false);
    Ok(MemberState {
        model: row.str("model").unwrap_or_default().to_string(),
        connected: flag("connected"),
        leader: flag("leader"),
        sid: row
            .get("sid")
            .and_then(|v| v.uuids().first().copied())
            .map(|u| u.simple().to_string()[..4].to_string()),
    })
}

/// One line on a database's health: `healthy` when every member answers,
/// is connected, and exactly one leads (a standalone database leads itself).
pub fn health_summary(members: &[Member]) -> (bool, String) {
    let up: Vec<&MemberState> = members
        .iter()
        .filter_map(|m| m.state.as_ref().ok())
        .collect();
    let leaders: Vec<&str> = members
        .iter()
        .filter(|m| m.state.as_ref().is_ok_and(|s| s.leader))
        .map(|m| m.remote.as_str())
        .collect();
    let model = up.first().map(|s| s.model.as_str()).unwrap_or("unknown");
    let healthy = !members.is_empty()
        && up.len() == members.len()
        && up.iter().all(|s| s.connected)
        && leaders.len() == 1;
    let text = format!(
        "{}: {model}, {}/{} members up, leader {}",
        if healthy { "healthy" } else { "UNHEALTHY" },
        up.len(),
        members.len(),
        match leaders.as_slice() {
            [] => "none".to_string(),
            [one] => one.to_string(),
            many => format!("{} (split)", many.join(", ")),
        }
    );
    (healthy, text)
}
