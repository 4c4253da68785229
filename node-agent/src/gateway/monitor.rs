//! Kernel change notifications: links, addresses and routes of the
//! agent's network namespace, as a counter that goes up on every change.
//! Whoever keeps something in the kernel (the gateway bridge's addresses,
//! the management port) looks again when it moves, instead of polling.

use futures::StreamExt;
use rtnetlink::constants::{
    RTMGRP_IPV4_IFADDR, RTMGRP_IPV4_ROUTE, RTMGRP_IPV6_IFADDR, RTMGRP_IPV6_ROUTE, RTMGRP_LINK,
};
use rtnetlink::sys::{AsyncSocket, SocketAddr};
use tokio::sync::watch;
use tracing::warn;

use crate::error::{Error, Result};

/// Subscribes to the kernel's link, address and route notifications and
/// returns a receiver whose value changes after each (bursts coalesce).
/// The subscription lives as long as some receiver does.
pub fn start() -> Result<watch::Receiver<u64>> {
    let (mut conn, _handle, mut messages) =
        rtnetlink::new_connection().map_err(|e| Error::io("opening netlink", e))?;
    let groups = RTMGRP_LINK
        | RTMGRP_IPV4_IFADDR
        | RTMGRP_IPV4_ROUTE
        | RTMGRP_IPV6_IFADDR
        | RTMGRP_IPV6_ROUTE;
    conn.socket_mut()
        .socket_mut()
        .bind(&SocketAddr::new(0, groups))
        .map_err(|e| Error::io("subscribing to netlink notifications", e))?;
    let (tx, rx) = watch::channel(0u64);
    let task = tokio::spawn(conn);
    tokio::spawn(async move {
        while messages.next().await.is_some() {
            tx.send_modify(|n| *n = n.wrapping_add(1));
            if tx.is_closed() {
                break;
            }
        }
        warn!("netlink notifications ended");
        task.abort();
    });
    Ok(rx)
}
