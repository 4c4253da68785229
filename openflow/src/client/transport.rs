//! Remotes (`unix:PATH`, `tcp:HOST:PORT`) and bounded message framing on a
//! byte stream.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};

use crate::codec::{frame_len, HEADER_LEN, MAX_MESSAGE_LEN};
use crate::error::{Error, Result};

/// A byte stream to a switch.
pub(crate) trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for T {}

/// Where the switch listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Remote {
    /// `unix:PATH`, e.g. `unix:/var/run/openvswitch/br-int.mgmt`.
    Unix(String),
    /// `tcp:HOST:PORT`.
    Tcp(String),
}

impl Remote {
    /// Parses `unix:PATH` or `tcp:HOST:PORT`.
    pub fn parse(s: &str) -> Result<Self> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(Error::InvalidArgument(format!("empty unix path in {s:?}")));
            }
            Ok(Remote::Unix(path.to_string()))
        } else if let Some(addr) = s.strip_prefix("tcp:") {
            if !addr.contains(':') {
                return Err(Error::InvalidArgument(format!("{s:?} lacks a port")));
            }
            Ok(Remote::Tcp(addr.to_string()))
        } else {
            Err(Error::InvalidArgument(format!(
                "remote {s:?} is neither unix:PATH nor tcp:HOST:PORT"
            )))
        }
    }

    pub(crate) async fn connect(&self, timeout: Duration) -> Result<Box<dyn Stream>> {
        let what = || format!("connecting to {self}");
        let stream: Box<dyn Stream> = match self {
            Remote::Unix(p) => Box::new(
                tokio::time::timeout(timeout, UnixStream::connect(p))
                    .await
                    .map_err(|_| Error::Timeout(what()))??,
            ),
            Remote::Tcp(a) => {
                let s = tokio::time::timeout(timeout, TcpStream::connect(a.as_str()))
                    .await
                    .map_err(|_| Error::Timeout(what()))??;
                s.set_nodelay(true)?;
                Box::new(s)
            }
        };
        Ok(stream)
    }
}

impl std::fmt::Display for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Remote::Unix(p) => write!(f, "unix:{p}"),
            Remote::Tcp(a) => write!(f, "tcp:{a}"),
        }
    }
}

/// Splits a byte stream into OpenFlow messages. Holds at most one message
/// plus one read chunk, whatever the peer sends.
pub(crate) struct FrameReader<R> {
    inner: R,
    buf: Vec<u8>,
    start: usize,
}

const READ_CHUNK: usize = 64 * 1024;

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(inner: R) -> Self {
        FrameReader {
            inner,
            buf: Vec::with_capacity(READ_CHUNK),
            start: 0,
        }
    }

    /// The next complete message, `Ok(None)` at a clean end of stream.
    /// A length field below 8 is an error (the stream cannot be resynced);
    /// the 16-bit field cannot exceed [`MAX_MESSAGE_LEN`].
    pub async fn next(&mut self) -> Result<Option<Vec<u8>>> {
        loop {
            let pending = self.buf.get(self.start..).unwrap_or_default();
            if let Some(len) = frame_len(pending)? {
                debug_assert!(len <= MAX_MESSAGE_LEN);
                if let Some(msg) = pending.get(..len) {
                    let msg = msg.to_vec();
                    self.start += len;
                    return Ok(Some(msg));
                }
            }
            // Compact before reading more, so the buffer stays bounded.
            if self.start > 0 {
                self.buf.drain(..self.start);
                self.start = 0;
            }
            let old = self.buf.len();
            self.buf.resize(old + READ_CHUNK, 0);
            let n = match self.inner.read(&mut self.buf[old..]).await {
                Ok(n) => n,
                Err(e) => {
                    self.buf.truncate(old);
                    return Err(e.into());
                }
            };
            self.buf.truncate(old + n);
            if n == 0 {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                return Err(Error::Truncated {
                    what: "message at end of stream",
                    need: frame_len(&self.buf)?.unwrap_or(HEADER_LEN),
                    have: self.buf.len(),
                });
            }
        }
    }
}
