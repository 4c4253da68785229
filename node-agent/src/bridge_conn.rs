//! One OpenFlow connection to a bridge's management socket
//! (`<rundir>/<bridge>.mgmt`), opened on first use and again after it
//! closed. The UDP conntrack flusher and the per-policy counters each keep
//! one to `br-int`.

use std::path::Path;
use std::time::Duration;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

pub struct BridgeConn {
    remote: String,
    client: Option<openflow::Client>,
}

impl BridgeConn {
    pub fn new(ovs_rundir: &Path, bridge: &str) -> Self {
        BridgeConn {
            remote: format!(
                "unix:{}",
                ovs_rundir.join(format!("{bridge}.mgmt")).display()
            ),
            client: None,
        }
    }

    /// The connected client, connecting when there is none (or it closed).
    pub async fn get(&mut self) -> Result<openflow::Client, String> {
        if let Some(c) = self.client.as_ref().filter(|c| c.is_connected()) {
            return Ok(c.clone());
        }
        let remote = &self.remote;
        let cfg = openflow::ClientConfig::new(remote)
            .map_err(|e| format!("{remote}: {e}"))?
            .connect_timeout(CONNECT_TIMEOUT)
            .request_timeout(REQUEST_TIMEOUT);
        let (client, _events) = openflow::Client::connect(cfg)
            .await
            .map_err(|e| format!("OpenFlow to {remote}: {e}"))?;
        self.client = Some(client.clone());
        Ok(client)
    }

    /// Drops the client, so that the next [`BridgeConn::get`] connects anew.
    pub fn forget(&mut self) {
        self.client = None;
    }
}
