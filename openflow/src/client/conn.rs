//! The connection: one reader task and one writer task sharing a table of
//! pending exchanges.
//!
//! An *exchange* is a run of messages sent back to back whose last message
//! expects a reply (a barrier, a multipart request, a bundle commit). The
//! writer gives the run consecutive xids and registers the range before a
//! single byte is written; the reader then attributes every OFPT_ERROR whose
//! xid falls in the range to that exchange (naming the message that failed)
//! and completes it when the reply to the last xid arrives. OpenFlow
//! guarantees the switch answers in order, so errors for earlier messages
//! always precede the final reply.
//!
//! Memory is bounded: the command channel and event channel have fixed
//! capacity (events beyond it are counted and dropped, never queued), at
//! most `MAX_PENDING` exchanges wait at once, multipart replies are capped
//! by `max_reply_bytes`, and frames are at most 64 KiB.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::io::{AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{mpsc, oneshot};

use super::transport::{FrameReader, Stream};
use super::Event;
use crate::codec::{decode, encode_into, Frame, Message, Version};
use crate::error::{Error, Rejection, Result};

/// Most exchanges waiting for replies at once.
pub(crate) const MAX_PENDING: usize = 4096;
/// Writes are flushed in chunks of this size.
const WRITE_CHUNK: usize = 64 * 1024;

/// What the caller asks the writer to do.
pub(crate) enum Command {
    /// Send `messages`; the last expects a reply. `claim_from` (if set)
    /// extends error attribution back to xids sent by an earlier exchange
    /// (a bundle's adds, for its commit).
    Exchange {
        messages: Vec<Message>,
        claim_from: Option<u32>,
        /// Earlier messages (first xid, messages) to name in errors that
        /// fall in the claimed range (a bundle's adds).
        history: Vec<(u32, Vec<Message>)>,
        reply: oneshot::Sender<Result<Completed>>,
    },
    /// Send one message that has no reply; answers with its xid.
    Send {
        message: Message,
        reply: oneshot::Sender<Result<u32>>,
    },
}

/// A finished exchange: the replies to its last message and the first xid
/// it used.
#[derive(Debug)]
pub(crate) struct Completed {
    pub first_xid: u32,
    pub replies: Vec<Message>,
    /// The messages sent, handed back for later error attribution.
    pub messages: Vec<Message>,
}

struct Pending {
    first: u32,
    last: u32,
    claim_from: u32,
    messages: Vec<Message>,
    history: Vec<(u32, Vec<Message>)>,
    replies: Vec<Message>,
    reply_bytes: usize,
    rejections: Vec<Rejection>,
    deadline: Instant,
    tx: Option<oneshot::Sender<Result<Completed>>>,
}

impl Pending {
    fn claims(&self, xid: u32) -> bool {
        xid.wrapping_sub(self.claim_from) <= self.last.wrapping_sub(self.claim_from)
    }

    fn owns(&self, xid: u32) -> bool {
        xid.wrapping_sub(self.first) <= self.last.wrapping_sub(self.first)
    }

    fn describe(&self, xid: u32) -> String {
        let lists = std::iter::once((self.first, &self.messages))
            .chain(self.history.iter().map(|(f, m)| (*f, m)));
        for (first, messages) in lists {
            let off = xid.wrapping_sub(first) as usize;
            if let Some(m) = messages.get(off) {
                return describe(m);
            }
        }
        format!("request xid={xid:#x}")
    }

    fn finish(&mut self, result: Result<Completed>) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(result);
        }
    }
}

/// A one-line description of a request, for errors.
pub(crate) fn describe(m: &Message) -> String {
    match m {
        Message::FlowMod(fm) => format!("FLOW_MOD {fm}"),
        Message::GroupMod(g) => format!(
            "GROUP_MOD {:?} group_id={} type={}",
            g.command,
            g.group_id,
            g.group_type.name()
        ),
        Message::BundleAdd { message, .. } => {
            format!("BUNDLE_ADD_MESSAGE({})", describe(message))
        }
        Message::BundleControl(b) => {
            format!("BUNDLE_CONTROL {:?} bundle_id={}", b.ctrl_type, b.bundle_id)
        }
        Message::CtFlush(f) => format!("NXT_CT_FLUSH {f:?}"),
        Message::PacketOut(p) => format!(
            "PACKET_OUT in_port={} actions={}",
            crate::text::format_port(p.in_port),
            crate::text::format_action_list(&p.actions)
        ),
        other => other.name().to_string(),
    }
}

/// What the reader asks of the writer.
enum Ctl {
    /// Send this (an echo reply).
    Send(u32, Message),
    /// The stream is over (end of file, I/O error, unframeable bytes).
    Fatal(String),
}

/// State shared by the tasks and the client handles.
pub(crate) struct Shared {
    pending: Mutex<Vec<Pending>>,
    closed: Mutex<Option<String>>,
    pub dropped_events: AtomicU64,
    last_rx: Mutex<Instant>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    pub fn new() -> Arc<Self> {
        Arc::new(Shared {
            pending: Mutex::new(Vec::new()),
            closed: Mutex::new(None),
            dropped_events: AtomicU64::new(0),
            last_rx: Mutex::new(Instant::now()),
        })
    }

    pub fn closed_reason(&self) -> Option<String> {
        lock(&self.closed).clone()
    }

    /// Marks the connection closed and fails everything pending.
    fn close(&self, reason: String) {
        {
            let mut c = lock(&self.closed);
            if c.is_none() {
                *c = Some(reason.clone());
            }
        }
        let drained: Vec<Pending> = lock(&self.pending).drain(..).collect();
        for mut p in drained {
            let during = p.messages.last().map(describe);
            p.finish(Err(Error::Disconnected { during }));
        }
    }
}

/// Settings the tasks need.
#[derive(Debug, Clone)]
pub(crate) struct TaskConfig {
    pub version: Version,
    pub request_timeout: Duration,
    pub echo_interval: Duration,
    pub echo_timeout: Duration,
    pub max_reply_bytes: usize,
}

/// Starts the reader and writer tasks on an established (post-handshake)
/// stream.
pub(crate) fn spawn(
    reader: FrameReader<ReadHalf<Box<dyn Stream>>>,
    wr: WriteHalf<Box<dyn Stream>>,
    first_xid: u32,
    cfg: TaskConfig,
    shared: Arc<Shared>,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<Event>,
) {
    let (ctl_tx, ctl_rx) = mpsc::channel::<Ctl>(16);
    let read_task = tokio::spawn(read_loop(
        reader,
        cfg.clone(),
        shared.clone(),
        events.clone(),
        ctl_tx,
    ));
    tokio::spawn(async move {
        let result = write_loop(wr, first_xid, &cfg, &shared, commands, ctl_rx).await;
        read_task.abort();
        let reason = match result {
            Ok(()) => "client closed".to_string(),
            Err(e) => e.to_string(),
        };
        shared.close(reason.clone());
        let _ = events.try_send(Event::Closed { reason });
    });
}

async fn write_loop(
    mut wr: WriteHalf<Box<dyn Stream>>,
    mut next_xid: u32,
    cfg: &TaskConfig,
    shared: &Shared,
    mut commands: mpsc::Receiver<Command>,
    mut ctl: mpsc::Receiver<Ctl>,
) -> Result<()> {
    let v = cfg.version;
    let tick = cfg.echo_interval.min(Duration::from_millis(200));
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_echo_sent = Instant::now();
    let mut buf = Vec::with_capacity(WRITE_CHUNK);
    loop {
        tokio::select! {
            ctl_msg = ctl.recv() => {
                match ctl_msg {
                    Some(Ctl::Send(xid, msg)) => {
                        buf.clear();
                        encode_into(&mut buf, v, xid, &msg)?;
                        write_chunked(&mut wr, &buf).await?;
                    }
                    Some(Ctl::Fatal(reason)) => {
                        return Err(Error::Io(std::io::Error::other(reason)));
                    }
                    None => return Err(Error::Disconnected { during: None }),
                }
            }
            cmd = commands.recv() => {
                let Some(cmd) = cmd else { return Ok(()) };
                match cmd {
                    Command::Send { message, reply } => {
                        let xid = next_xid;
                        next_xid = next_xid.wrapping_add(1);
                        buf.clear();
                        match encode_into(&mut buf, v, xid, &message) {
                            Ok(()) => {
                                write_chunked(&mut wr, &buf).await?;
                                let _ = reply.send(Ok(xid));
                            }
                            Err(e) => { let _ = reply.send(Err(e)); }
                        }
                    }
                    Command::Exchange { messages, claim_from, history, reply } => {
                        if messages.is_empty() {
                            let _ = reply.send(Err(Error::InvalidArgument("empty exchange".into())));
                            continue;
                        }
                        if lock(&shared.pending).len() >= MAX_PENDING {
                            let _ = reply.send(Err(Error::InvalidArgument(format!(
                                "more than {MAX_PENDING} requests in flight"))));
                            continue;
                        }
                        let first = next_xid;
                        buf.clear();
                        let mut failed = None;
                        for (i, m) in messages.iter().enumerate() {
                            if let Err(e) = encode_into(&mut buf, v, first.wrapping_add(i as u32), m) {
                                failed = Some(e);
                                break;
                            }
                        }
                        if let Some(e) = failed {
                            let _ = reply.send(Err(e));
                            continue;
                        }
                        let last = first.wrapping_add(messages.len() as u32 - 1);
                        next_xid = last.wrapping_add(1);
                        lock(&shared.pending).push(Pending {
                            first,
                            last,
                            claim_from: claim_from.unwrap_or(first),
                            messages,
                            history,
                            replies: Vec::new(),
                            reply_bytes: 0,
                            rejections: Vec::new(),
                            deadline: Instant::now() + cfg.request_timeout,
                            tx: Some(reply),
                        });
                        write_chunked(&mut wr, &buf).await?;
                        if buf.capacity() > 4 * WRITE_CHUNK {
                            buf = Vec::with_capacity(WRITE_CHUNK);
                        }
                    }
                }
            }
            _ = ticker.tick() => {
                let now = Instant::now();
                expire(shared, now);
                let idle = now.saturating_duration_since(*lock(&shared.last_rx));
                if idle > cfg.echo_interval + cfg.echo_timeout {
                    return Err(Error::Timeout(format!(
                        "the switch (silent for {:.1} s, echo unanswered)", idle.as_secs_f64())));
                }
                if idle > cfg.echo_interval
                    && now.saturating_duration_since(last_echo_sent) > cfg.echo_interval
                {
                    last_echo_sent = now;
                    let xid = next_xid;
                    next_xid = next_xid.wrapping_add(1);
                    buf.clear();
                    encode_into(&mut buf, v, xid, &Message::EchoRequest(Vec::new()))?;
                    write_chunked(&mut wr, &buf).await?;
                }
            }
        }
    }
}

async fn write_chunked<W: AsyncWrite + Unpin>(wr: &mut W, buf: &[u8]) -> Result<()> {
    for chunk in buf.chunks(WRITE_CHUNK) {
        wr.write_all(chunk).await?;
    }
    wr.flush().await?;
    Ok(())
}

fn expire(shared: &Shared, now: Instant) {
    let expired: Vec<Pending> = {
        let mut pending = lock(&shared.pending);
        let (gone, keep): (Vec<_>, Vec<_>) = pending.drain(..).partition(|p| p.deadline <= now);
        *pending = keep;
        gone
    };
    for mut p in expired {
        let what = p.messages.last().map_or_else(|| "reply".into(), describe);
        p.finish(Err(Error::Timeout(format!("the reply to {what}"))));
    }
}

async fn read_loop(
    mut reader: FrameReader<ReadHalf<Box<dyn Stream>>>,
    cfg: TaskConfig,
    shared: Arc<Shared>,
    events: mpsc::Sender<Event>,
    ctl: mpsc::Sender<Ctl>,
) {
    loop {
        let raw = match reader.next().await {
            Ok(Some(raw)) => raw,
            Ok(None) => {
                let _ = ctl
                    .send(Ctl::Fatal("the switch closed the connection".into()))
                    .await;
                return;
            }
            Err(e) => {
                let _ = ctl.send(Ctl::Fatal(e.to_string())).await;
                return;
            }
        };
        *lock(&shared.last_rx) = Instant::now();
        let frame = match decode(&raw) {
            Ok(f) => f,
            Err(e) => {
                handle_undecodable(&shared, &raw, e);
                continue;
            }
        };
        dispatch(frame, raw.len(), &cfg, &shared, &events, &ctl).await;
    }
}

/// A well-framed message that does not decode: fails the exchange waiting
/// for it, if any; otherwise it is ignored (logged).
fn handle_undecodable(shared: &Shared, raw: &[u8], e: Error) {
    let xid = raw
        .get(4..8)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map_or(0, u32::from_be_bytes);
    let mut pending = lock(&shared.pending);
    if let Some(i) = pending.iter().position(|p| p.last == xid) {
        let mut p = pending.swap_remove(i);
        drop(pending);
        p.finish(Err(e));
    } else {
        tracing::debug!(xid, error = %e, "ignoring undecodable message");
    }
}

fn emit(shared: &Shared, events: &mpsc::Sender<Event>, ev: Event) {
    if events.try_send(ev).is_err() {
        shared.dropped_events.fetch_add(1, Ordering::Relaxed);
    }
}

async fn dispatch(
    frame: Frame,
    size: usize,
    cfg: &TaskConfig,
    shared: &Shared,
    events: &mpsc::Sender<Event>,
    ctl: &mpsc::Sender<Ctl>,
) {
    let xid = frame.xid;
    match frame.message {
        Message::EchoRequest(data) => {
            // If the writer is backed up the switch will ask again.
            let _ = ctl.try_send(Ctl::Send(xid, Message::EchoReply(data)));
        }
        Message::EchoReply(_) if !is_pending(shared, xid) => {}
        Message::PortStatus(ps) => emit(shared, events, Event::PortStatus(ps)),
        Message::PacketIn(pi) => emit(shared, events, Event::PacketIn(pi)),
        Message::Error(error) => {
            let mut pending = lock(&shared.pending);
            let found = pending
                .iter()
                .position(|p| p.owns(xid))
                .or_else(|| pending.iter().position(|p| p.claims(xid)));
            let Some(i) = found else {
                drop(pending);
                emit(shared, events, Event::Error { xid, error });
                return;
            };
            let p = &mut pending[i];
            let request = p.describe(xid);
            p.rejections.push(Rejection {
                xid,
                request,
                error,
            });
            if p.last == xid {
                let mut p = pending.swap_remove(i);
                drop(pending);
                let failures = std::mem::take(&mut p.rejections);
                p.finish(Err(Error::Rejected { failures }));
            }
        }
        message => {
            let mut pending = lock(&shared.pending);
            let Some(i) = pending.iter().position(|p| p.last == xid) else {
                drop(pending);
                emit(shared, events, Event::Message(Frame { message, ..frame }));
                return;
            };
            let more = matches!(&message, Message::MultipartReply(r) if r.more());
            let p = &mut pending[i];
            p.reply_bytes += size;
            if p.reply_bytes > cfg.max_reply_bytes {
                let mut p = pending.swap_remove(i);
                drop(pending);
                p.finish(Err(Error::TooLong {
                    what: "multipart reply",
                    len: p.reply_bytes,
                    max: cfg.max_reply_bytes,
                }));
                return;
            }
            p.replies.push(message);
            if !more {
                let mut p = pending.swap_remove(i);
                drop(pending);
                let replies = std::mem::take(&mut p.replies);
                let result = if p.rejections.is_empty() {
                    Ok(Completed {
                        first_xid: p.first,
                        replies,
                        messages: std::mem::take(&mut p.messages),
                    })
                } else {
                    Err(Error::Rejected {
                        failures: std::mem::take(&mut p.rejections),
                    })
                };
                p.finish(result);
            }
        }
    }
}

fn is_pending(shared: &Shared, xid: u32) -> bool {
    lock(&shared.pending).iter().any(|p| p.last == xid)
}
