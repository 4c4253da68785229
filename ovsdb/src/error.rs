//! The crate's one error type.

use std::io;

use crate::transaction::OpError;

/// Everything that can go wrong talking to an OVSDB server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    #[error("tls: {0}")]
    Tls(String),
    #[error("invalid remote {remote:?}: {reason}")]
    InvalidRemote { remote: String, reason: String },
    /// The peer sent something that is not OVSDB JSON-RPC: malformed JSON,
    /// a message of the wrong shape, or an answer that does not fit the
    /// request. The connection is dropped.
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("message of more than {limit} bytes from the server")]
    MessageTooLarge { limit: usize },
    /// The server answered the request with an error.
    #[error("{method} failed: {error}")]
    Rpc { method: String, error: String },
    /// One operation of a transaction failed; the whole transaction was
    /// rolled back by the server.
    #[error("transaction operation {index} ({op}) failed: {error}")]
    Operation {
        index: usize,
        op: &'static str,
        error: OpError,
    },
    /// The connection dropped while the request was in flight. For a
    /// transaction this means it may or may not have committed.
    #[error("connection to the server was lost while the request was in flight")]
    Disconnected,
    #[error("timed out: {0}")]
    Timeout(String),
    #[error("not connected: {0}")]
    NotConnected(String),
    #[error("schema: {0}")]
    Schema(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn protocol(msg: impl Into<String>) -> Self {
        Error::Protocol(msg.into())
    }
}
