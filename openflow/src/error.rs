//! The crate's one error type.
//!
//! Decoding errors, transport failures and the switch's own OFPT_ERROR replies
//! all end up here, so a caller matches on one enum. A request the switch
//! refused is reported as [`Error::Rejected`], which names the request (its
//! message type, xid and a one-line description) next to the decoded error,
//! because "OFPBMC_BAD_PREREQ" alone does not tell an operator which of
//! 10,000 flows was wrong.

use std::fmt;

use crate::codec::ErrorMsg;

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input ended before a structure did.
    #[error("truncated {what}: need {need} bytes, have {have}")]
    Truncated {
        what: &'static str,
        need: usize,
        have: usize,
    },
    /// A length field is impossible (too small, not a multiple of 8, or
    /// larger than what contains it).
    #[error("bad length in {what}: {len}")]
    BadLength { what: &'static str, len: usize },
    /// A message or field is larger than this crate accepts.
    #[error("{what} too long: {len} bytes (limit {max})")]
    TooLong {
        what: &'static str,
        len: usize,
        max: usize,
    },
    /// Well-framed bytes whose content makes no sense.
    #[error("malformed {what}: {detail}")]
    Malformed { what: &'static str, detail: String },
    /// Something this crate cannot express on the wire for the negotiated
    /// version (e.g. a 1.5-only feature on a 1.3 connection).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A caller-supplied value is invalid (remote string, bad field value).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Transport error.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// Hello exchange failed: no common version, or the peer spoke nonsense.
    #[error("handshake failed: {0}")]
    Handshake(String),
    /// The connection closed (or failed) while this request was waiting.
    #[error("connection closed{}", during.as_deref().map(|d| format!(" during {d}")).unwrap_or_default())]
    Disconnected { during: Option<String> },
    /// No answer in time.
    #[error("timed out waiting for {0}")]
    Timeout(String),
    /// The switch answered with OFPT_ERROR for one or more requests.
    #[error("{}", describe_rejections(failures))]
    Rejected { failures: Vec<Rejection> },
}

impl Error {
    pub(crate) fn malformed(what: &'static str, detail: impl Into<String>) -> Self {
        Error::Malformed {
            what,
            detail: detail.into(),
        }
    }

    /// The switch's rejections, if this is [`Error::Rejected`].
    pub fn rejections(&self) -> &[Rejection] {
        match self {
            Error::Rejected { failures } => failures,
            _ => &[],
        }
    }
}

/// One request the switch refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The xid of the request (the error carries the same xid).
    pub xid: u32,
    /// The request, described: message type and, for flow-mods, the flow
    /// in `ovs-ofctl` text form.
    pub request: String,
    /// The decoded OFPT_ERROR.
    pub error: ErrorMsg,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (xid={:#x}) rejected: {}",
            self.request, self.xid, self.error
        )
    }
}

fn describe_rejections(failures: &[Rejection]) -> String {
    match failures {
        [] => "switch rejected a request".to_string(),
        [one] => one.to_string(),
        [first, rest @ ..] => format!("{first} (and {} more)", rest.len()),
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
