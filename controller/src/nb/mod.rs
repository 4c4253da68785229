//! The northbound side: the row model translators write ([`row`]), the
//! replica seen through [`view::NbView`], the diff ([`diff`]), plans as
//! OVSDB transactions ([`build`]), and the connection and monitor.

use std::time::Duration;

use ovsdb::{Client, ClientConfig, MonitorSpec, Replica, TlsConfig};
use switchyard_api::names;

use crate::config::Config;
use crate::error::Result;

pub mod build;
pub mod diff;
pub mod row;
pub mod view;

pub use row::{Col, DesiredRow, Owner, Parent, RowId, Table, KEY};

/// Connects to NB with the configured remotes and TLS files.
pub async fn connect(config: &Config) -> Result<Client> {
    let mut cc = ClientConfig::new(&config.nb_remote)?
        .leader_only(true)
        .connect_timeout(Duration::from_secs(30));
    if let Some(tls) = &config.nb_tls {
        cc = cc.tls(TlsConfig {
            ca_cert: tls.ca_cert.clone(),
            client_cert: tls.client_cert.clone(),
            client_key: tls.client_key.clone(),
        });
    }
    Ok(Client::connect(cc).await?)
}

/// What the controller monitors: the managed columns of every table it
/// writes, indexed by owner.
pub fn monitor_spec() -> MonitorSpec {
    let mut spec = MonitorSpec::new(build::DB);
    for t in Table::ALL {
        spec = spec.table(
            t.name(),
            Some(t.columns().iter().map(|c| c.to_string()).collect()),
        );
        if t.has_external_ids() {
            spec = spec.index_external_id(t.name(), names::OWNER);
        }
    }
    spec
}

pub async fn monitor(client: &Client) -> Result<Replica> {
    Ok(client.monitor(monitor_spec()).await?)
}
