//! Shared test helpers: a private ovs-vswitchd per test, and packets.
#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::time::Duration;

use openflow::{Client, ClientConfig, Events, FlowStatsRequest, Version};
use ovn_testbed::{OvsSwitch, SwitchOptions};

/// A switch in a temporary directory. Fields drop in order: the daemons
/// stop before the directory goes.
pub struct Bed {
    pub sw: OvsSwitch,
    pub dir: tempfile::TempDir,
}

pub fn switch(name: &str) -> Bed {
    let dir = tempfile::Builder::new()
        .prefix("of-")
        .tempdir_in("/tmp")
        .expect("tempdir");
    let sw = OvsSwitch::start(dir.path(), SwitchOptions::new(name)).expect("start ovs-vswitchd");
    Bed { sw, dir }
}

impl Bed {
    pub async fn connect(&self, v: Version) -> (Client, Events) {
        let cfg = ClientConfig::new(&self.sw.mgmt_remote())
            .expect("remote")
            .versions(&[v])
            .request_timeout(Duration::from_secs(30));
        Client::connect(cfg).await.expect("connect")
    }

    /// `ovs-ofctl -O V dump-flows --no-stats`, one line per flow, trimmed and
    /// sorted.
    pub fn ofctl_flows(&self, v: Version) -> Vec<String> {
        let out = self
            .sw
            .ofctl(&["-O", v.ofctl_name(), "dump-flows", "--no-stats"])
            .expect("dump-flows");
        let mut lines: Vec<String> = out
            .lines()
            .filter(|l| l.starts_with(' '))
            .map(|l| l.trim().to_string())
            .collect();
        lines.sort();
        lines
    }

    pub fn ofctl(&self, args: &[&str]) -> String {
        self.sw.ofctl(args).expect("ovs-ofctl")
    }
}

/// Our own dump, printed the way `--no-stats` prints, sorted.
pub async fn our_flows(c: &Client) -> Vec<String> {
    let mut lines: Vec<String> = c
        .dump_flows(FlowStatsRequest::all())
        .await
        .expect("dump flows")
        .iter()
        .map(|f| f.to_ofctl(false))
        .collect();
    lines.sort();
    lines
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An Ethernet/IPv4 frame carrying TCP (SYN) or UDP between the given
/// endpoints.
pub fn ipv4_packet(proto: u8, src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16) -> Vec<u8> {
    let l4: Vec<u8> = if proto == 6 {
        let mut t = Vec::new();
        t.extend_from_slice(&sport.to_be_bytes());
        t.extend_from_slice(&dport.to_be_bytes());
        t.extend_from_slice(&1u32.to_be_bytes());
        t.extend_from_slice(&0u32.to_be_bytes());
        t.extend_from_slice(&[0x50, 0x02, 0x20, 0x00, 0, 0, 0, 0]);
        t
    } else {
        let mut u = Vec::new();
        u.extend_from_slice(&sport.to_be_bytes());
        u.extend_from_slice(&dport.to_be_bytes());
        u.extend_from_slice(&12u16.to_be_bytes());
        u.extend_from_slice(&[0, 0, b'h', b'i', b'!', b'!']);
        u
    };
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&[0, proto]);
    pseudo.extend_from_slice(&(l4.len() as u16).to_be_bytes());
    pseudo.extend_from_slice(&l4);
    let mut l4 = l4;
    let c = checksum(&pseudo).to_be_bytes();
    let at = if proto == 6 { 16 } else { 6 };
    l4[at] = c[0];
    l4[at + 1] = c[1];
    let total = (20 + l4.len()) as u16;
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&[0, 1, 0, 0, 64, proto, 0, 0]);
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&dst.octets());
    let c = checksum(&ip).to_be_bytes();
    ip[10] = c[0];
    ip[11] = c[1];
    let mut frame = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
    frame.extend_from_slice(&ip);
    frame.extend_from_slice(&l4);
    frame
}

/// Polls an async condition until it holds or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if f().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
