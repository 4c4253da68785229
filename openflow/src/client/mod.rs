//! The async client: one connection to one switch (bridge).
//!
//! [`Client::connect`] performs the hello/version negotiation and the
//! features exchange, then hands the socket to a reader and a writer task
//! (see `conn`). `Client` is a cheap handle (clone it freely); requests from
//! many tasks are multiplexed by xid. Messages without replies (flow-mods,
//! group-mods, packet-outs, conntrack flushes) are sent with a barrier
//! behind them, so `Ok(())` means the switch applied them and an error names
//! the message it refused.
//!
//! The client does not reconnect: when the switch goes away every pending
//! request fails with [`Error::Disconnected`], [`Events`] yields
//! [`Event::Closed`], and the caller connects again (after a restart of
//! `ovs-vswitchd` its flows are gone anyway and must be re-installed).

mod bundle;
mod conn;
mod transport;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncWrite, AsyncWriteExt, ReadHalf};
use tokio::sync::{mpsc, oneshot};

use bundle::expect_bundle_reply;
pub use bundle::Bundle;
pub use transport::Remote;

use crate::codec::{
    bundle_flags, decode, encode, AggregateStats, BundleControl, BundleCtrlType, CtFlush, ErrorMsg,
    Features, FlowMod, FlowStats, FlowStatsRequest, Frame, GroupMod, Hello, Message,
    MultipartReply, MultipartRequest, PacketIn, PacketOut, PortDesc, PortStats, PortStatus,
    SwitchConfig, Version,
};
use crate::error::{Error, Result};
use conn::{Command, Completed, Shared, TaskConfig};
use transport::{FrameReader, Stream};

/// How to connect.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    remote: Remote,
    versions: Vec<Version>,
    connect_timeout: Duration,
    request_timeout: Duration,
    echo_interval: Duration,
    echo_timeout: Duration,
    event_capacity: usize,
    max_reply_bytes: usize,
    async_messages: bool,
}

impl ClientConfig {
    /// `unix:<rundir>/<bridge>.mgmt` or `tcp:HOST:PORT`; offers OpenFlow 1.5
    /// and 1.3.
    pub fn new(remote: &str) -> Result<Self> {
        Ok(ClientConfig {
            remote: Remote::parse(remote)?,
            versions: vec![Version::V1_3, Version::V1_5],
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            echo_interval: Duration::from_secs(5),
            echo_timeout: Duration::from_secs(10),
            event_capacity: 1024,
            max_reply_bytes: 256 << 20,
            async_messages: true,
        })
    }
    /// Versions to offer; the highest one both sides speak wins.
    pub fn versions(mut self, versions: &[Version]) -> Self {
        self.versions = versions.to_vec();
        self
    }
    /// Bound on connecting plus the hello and features exchange.
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }
    /// Bound on each request (a barrier after 10,000 flow-mods included).
    pub fn request_timeout(mut self, d: Duration) -> Self {
        self.request_timeout = d;
        self
    }
    /// After this long without hearing from the switch, send an echo
    /// request; after `timeout` more, give up on the connection.
    pub fn keepalive(mut self, interval: Duration, timeout: Duration) -> Self {
        self.echo_interval = interval.max(Duration::from_millis(10));
        self.echo_timeout = timeout;
        self
    }
    /// Capacity of the event channel; events beyond it are dropped and
    /// counted ([`Client::dropped_events`]).
    pub fn event_capacity(mut self, n: usize) -> Self {
        self.event_capacity = n.max(1);
        self
    }
    /// Ask for asynchronous messages (port status, packet-in) with a
    /// SET_CONFIG of `miss_send_len` 128 after the handshake (default on;
    /// OVS sends none to a `.mgmt` connection otherwise).
    pub fn async_messages(mut self, on: bool) -> Self {
        self.async_messages = on;
        self
    }
    /// Largest multipart reply (all parts) accepted.
    pub fn max_reply_bytes(mut self, n: usize) -> Self {
        self.max_reply_bytes = n;
        self
    }
}

/// Something the switch said that nobody asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A port was added, removed or changed.
    PortStatus(PortStatus),
    /// A packet sent to the controller.
    PacketIn(PacketIn),
    /// An error for a message sent with [`Client::send`] (or an unknown xid).
    Error { xid: u32, error: ErrorMsg },
    /// Any other unsolicited message.
    Message(Frame),
    /// The connection is gone; nothing follows.
    Closed { reason: String },
}

/// The stream of [`Event`]s of one connection.
#[derive(Debug)]
pub struct Events {
    rx: mpsc::Receiver<Event>,
}

impl Events {
    /// The next event; `None` once the connection is closed and drained.
    pub async fn recv(&mut self) -> Option<Event> {
        self.rx.recv().await
    }
    /// The next event if one is queued.
    pub fn try_recv(&mut self) -> Option<Event> {
        self.rx.try_recv().ok()
    }
}

struct Inner {
    commands: mpsc::Sender<Command>,
    shared: Arc<Shared>,
    version: Version,
    features: Features,
    remote: Remote,
    next_bundle: AtomicU32,
}

/// A connection to one switch. Clone to share.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("remote", &self.inner.remote)
            .field("version", &self.inner.version)
            .finish()
    }
}

const HELLO_XID: u32 = 1;
const FEATURES_XID: u32 = 2;

impl Client {
    /// Connects, negotiates the version and reads the switch's features.
    pub async fn connect(config: ClientConfig) -> Result<(Client, Events)> {
        if config.versions.is_empty() {
            return Err(Error::InvalidArgument("no OpenFlow version offered".into()));
        }
        let stream = config.remote.connect(config.connect_timeout).await?;
        let (rd, mut wr) = tokio::io::split(stream);
        let mut reader = FrameReader::new(rd);
        let (version, features) = tokio::time::timeout(
            config.connect_timeout,
            handshake(&mut reader, &mut wr, &config.versions),
        )
        .await
        .map_err(|_| Error::Timeout(format!("hello and features from {}", config.remote)))??;

        let (cmd_tx, cmd_rx) = mpsc::channel(64);
        let (ev_tx, ev_rx) = mpsc::channel(config.event_capacity);
        let shared = Shared::new();
        conn::spawn(
            reader,
            wr,
            FEATURES_XID + 1,
            TaskConfig {
                version,
                request_timeout: config.request_timeout,
                echo_interval: config.echo_interval,
                echo_timeout: config.echo_timeout,
                max_reply_bytes: config.max_reply_bytes,
            },
            shared.clone(),
            cmd_rx,
            ev_tx,
        );
        let client = Client {
            inner: Arc::new(Inner {
                commands: cmd_tx,
                shared,
                version,
                features,
                remote: config.remote,
                next_bundle: AtomicU32::new(1),
            }),
        };
        if config.async_messages {
            client
                .transact(vec![Message::SetConfig(SwitchConfig {
                    flags: 0,
                    miss_send_len: 128,
                })])
                .await?;
        }
        Ok((client, Events { rx: ev_rx }))
    }

    /// The negotiated version.
    pub fn version(&self) -> Version {
        self.inner.version
    }
    /// The switch's features reply (datapath id, tables, ...).
    pub fn features(&self) -> Features {
        self.inner.features
    }
    pub fn remote(&self) -> &Remote {
        &self.inner.remote
    }
    /// False once the connection is closed.
    pub fn is_connected(&self) -> bool {
        self.inner.shared.closed_reason().is_none()
    }
    /// Why the connection closed, once it has.
    pub fn closed_reason(&self) -> Option<String> {
        self.inner.shared.closed_reason()
    }
    /// Events dropped because the event channel was full.
    pub fn dropped_events(&self) -> u64 {
        self.inner
            .shared
            .dropped_events
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn command(&self, cmd: Command) -> Result<()> {
        self.inner
            .commands
            .send(cmd)
            .await
            .map_err(|_| Error::Disconnected {
                during: self.inner.shared.closed_reason(),
            })
    }

    async fn exchange(
        &self,
        messages: Vec<Message>,
        claim_from: Option<u32>,
        history: Vec<(u32, Vec<Message>)>,
    ) -> Result<Completed> {
        let (tx, rx) = oneshot::channel();
        self.command(Command::Exchange {
            messages,
            claim_from,
            history,
            reply: tx,
        })
        .await?;
        rx.await.map_err(|_| Error::Disconnected {
            during: self.inner.shared.closed_reason(),
        })?
    }

    /// Sends one request and returns its (single) reply.
    pub async fn request(&self, message: Message) -> Result<Message> {
        let done = self.exchange(vec![message], None, Vec::new()).await?;
        done.replies
            .into_iter()
            .next()
            .ok_or_else(|| Error::malformed("reply", "empty"))
    }

    /// Sends a message that has no reply and returns its xid without
    /// waiting; an error for it arrives as [`Event::Error`].
    pub async fn send(&self, message: Message) -> Result<u32> {
        let (tx, rx) = oneshot::channel();
        self.command(Command::Send { message, reply: tx }).await?;
        rx.await.map_err(|_| Error::Disconnected {
            during: self.inner.shared.closed_reason(),
        })?
    }

    /// Sends `messages` followed by a barrier; `Ok` once the switch has
    /// processed all of them without error. Otherwise
    /// [`Error::Rejected`] lists each refused message.
    pub async fn transact(&self, mut messages: Vec<Message>) -> Result<()> {
        messages.push(Message::BarrierRequest);
        self.exchange(messages, None, Vec::new()).await.map(drop)
    }

    /// A barrier round trip.
    pub async fn barrier(&self) -> Result<()> {
        self.transact(Vec::new()).await
    }

    /// An echo round trip; returns the round-trip time.
    pub async fn echo(&self) -> Result<Duration> {
        let start = Instant::now();
        match self
            .request(Message::EchoRequest(b"switchyard".to_vec()))
            .await?
        {
            Message::EchoReply(_) => Ok(start.elapsed()),
            other => Err(unexpected("ECHO_REPLY", &other)),
        }
    }

    /// Applies one flow-mod (confirmed by a barrier).
    pub async fn flow_mod(&self, fm: FlowMod) -> Result<()> {
        self.transact(vec![Message::FlowMod(fm)]).await
    }

    /// Applies flow-mods back to back, then one barrier.
    pub async fn flow_mods(&self, fms: Vec<FlowMod>) -> Result<()> {
        self.transact(fms.into_iter().map(Message::FlowMod).collect())
            .await
    }

    pub async fn group_mod(&self, gm: GroupMod) -> Result<()> {
        self.transact(vec![Message::GroupMod(gm)]).await
    }

    pub async fn packet_out(&self, po: PacketOut) -> Result<()> {
        self.transact(vec![Message::PacketOut(po)]).await
    }

    /// `NXT_CT_FLUSH` (confirmed by a barrier).
    pub async fn ct_flush(&self, flush: CtFlush) -> Result<()> {
        self.transact(vec![Message::CtFlush(flush)]).await
    }

    /// All parts of a multipart reply.
    pub async fn multipart(&self, req: MultipartRequest) -> Result<Vec<MultipartReply>> {
        let done = self
            .exchange(vec![Message::MultipartRequest(req)], None, Vec::new())
            .await?;
        done.replies
            .into_iter()
            .map(|m| match m {
                Message::MultipartReply(r) => Ok(r),
                other => Err(unexpected("MULTIPART_REPLY", &other)),
            })
            .collect()
    }

    /// Flow statistics (every part of the reply).
    pub async fn dump_flows(&self, req: FlowStatsRequest) -> Result<Vec<FlowStats>> {
        let mut out = Vec::new();
        for part in self.multipart(MultipartRequest::Flow(req)).await? {
            match part {
                MultipartReply::Flow { flows, .. } => out.extend(flows),
                other => return Err(unexpected_mp("flow stats", &other)),
            }
        }
        Ok(out)
    }

    /// Aggregate counters of the flows `req` selects.
    pub async fn aggregate(&self, req: FlowStatsRequest) -> Result<AggregateStats> {
        let parts = self.multipart(MultipartRequest::Aggregate(req)).await?;
        match parts.into_iter().next() {
            Some(MultipartReply::Aggregate(a)) => Ok(a),
            Some(other) => Err(unexpected_mp("aggregate stats", &other)),
            None => Err(Error::malformed("aggregate reply", "empty")),
        }
    }

    /// Counters of `port_no`, or of every port with `port::ANY`.
    pub async fn port_stats(&self, port_no: u32) -> Result<Vec<PortStats>> {
        let mut out = Vec::new();
        for part in self
            .multipart(MultipartRequest::PortStats { port_no })
            .await?
        {
            match part {
                MultipartReply::PortStats { ports, .. } => out.extend(ports),
                other => return Err(unexpected_mp("port stats", &other)),
            }
        }
        Ok(out)
    }

    /// Descriptions of every port.
    pub async fn port_descs(&self) -> Result<Vec<PortDesc>> {
        let mut out = Vec::new();
        for part in self.multipart(MultipartRequest::PortDesc).await? {
            match part {
                MultipartReply::PortDesc { ports, .. } => out.extend(ports),
                other => return Err(unexpected_mp("port desc", &other)),
            }
        }
        Ok(out)
    }

    /// Opens an atomic, ordered bundle.
    pub async fn open_bundle(&self) -> Result<Bundle> {
        let id = self.inner.next_bundle.fetch_add(1, Ordering::Relaxed);
        let flags = bundle_flags::ATOMIC | bundle_flags::ORDERED;
        let reply = self
            .request(Message::BundleControl(BundleControl::new(
                id,
                BundleCtrlType::OpenRequest,
                flags,
            )))
            .await?;
        expect_bundle_reply(&reply, BundleCtrlType::OpenReply)?;
        Ok(Bundle {
            client: self.clone(),
            id,
            flags,
            history: Vec::new(),
            finished: false,
        })
    }

    /// Applies `fms` atomically: all of them, or (on any error) none.
    pub async fn bundle_flow_mods(&self, fms: Vec<FlowMod>) -> Result<()> {
        let mut bundle = self.open_bundle().await?;
        if let Err(e) = bundle.add_flow_mods(fms).await {
            let _ = bundle.discard().await;
            return Err(e);
        }
        bundle.commit().await
    }

    /// Atomically replaces every flow of the bridge with `flows` (a
    /// delete-all and the adds in one bundle).
    pub async fn replace_flows(&self, flows: Vec<FlowMod>) -> Result<()> {
        let mut all = Vec::with_capacity(flows.len() + 1);
        all.push(FlowMod::delete_all());
        all.extend(flows);
        self.bundle_flow_mods(all).await
    }
}

fn unexpected(want: &str, got: &Message) -> Error {
    Error::malformed("reply", format!("expected {want}, got {}", got.name()))
}

fn unexpected_mp(want: &str, got: &MultipartReply) -> Error {
    Error::malformed("multipart reply", format!("expected {want}, got {got:?}"))
}

async fn write_msg<W: AsyncWrite + Unpin>(
    wr: &mut W,
    v: Version,
    xid: u32,
    m: &Message,
) -> Result<()> {
    wr.write_all(&encode(v, xid, m)?).await?;
    wr.flush().await?;
    Ok(())
}

/// Hello, version choice, features.
async fn handshake<W: AsyncWrite + Unpin>(
    reader: &mut FrameReader<ReadHalf<Box<dyn Stream>>>,
    wr: &mut W,
    versions: &[Version],
) -> Result<(Version, Features)> {
    let ours = versions.iter().copied().max().unwrap_or(Version::V1_3);
    write_msg(
        wr,
        ours,
        HELLO_XID,
        &Message::Hello(Hello::for_versions(versions)),
    )
    .await?;
    let raw = reader
        .next()
        .await
        .map_err(|e| Error::Handshake(format!("reading hello: {e}")))?
        .ok_or_else(|| Error::Handshake("the switch closed the connection before hello".into()))?;
    let frame = decode(&raw).map_err(|e| Error::Handshake(format!("bad hello: {e}")))?;
    let Message::Hello(hello) = frame.message else {
        return Err(Error::Handshake(format!(
            "expected HELLO, got {}",
            frame.message.name()
        )));
    };
    let chosen = match hello.bitmap {
        Some(bm) => versions
            .iter()
            .copied()
            .filter(|v| bm & (1 << v.wire()) != 0)
            .max(),
        None => versions
            .iter()
            .copied()
            .filter(|v| v.wire() <= frame.version)
            .max(),
    };
    let Some(version) = chosen else {
        let err = Message::Error(ErrorMsg {
            err_type: 0,
            code: 0,
            experimenter: None,
            data: b"no common OpenFlow version".to_vec(),
        });
        let _ = write_msg(wr, ours, HELLO_XID, &err).await;
        return Err(Error::Handshake(format!(
            "no common version: we offer {versions:?}, the switch {} (bitmap {:?})",
            frame.version, hello.bitmap
        )));
    };
    write_msg(wr, version, FEATURES_XID, &Message::FeaturesRequest).await?;
    loop {
        let raw = reader
            .next()
            .await
            .map_err(|e| Error::Handshake(format!("reading features: {e}")))?
            .ok_or_else(|| Error::Handshake("the switch closed the connection".into()))?;
        let Ok(frame) = decode(&raw) else {
            continue;
        };
        match frame.message {
            Message::FeaturesReply(f) if frame.xid == FEATURES_XID => return Ok((version, f)),
            Message::Error(e) => {
                return Err(Error::Handshake(format!("the switch refused: {e}")));
            }
            Message::EchoRequest(d) => {
                write_msg(wr, version, frame.xid, &Message::EchoReply(d)).await?;
            }
            _ => {}
        }
    }
}
