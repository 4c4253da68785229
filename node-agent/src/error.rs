//! The library's one error type, and its mapping onto CNI error codes.

use crate::cni::{codes, CniError};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request the daemon refuses for a reason the CNI spec names.
    #[error("{0}")]
    Cni(#[from] CniError),
    #[error("pod {pod}: no {key} annotation after {waited_ms} ms", key = switchyard_api::annotations::POD_NETWORK)]
    AnnotationTimeout { pod: String, waited_ms: u128 },
    #[error("pod {pod}: {source}")]
    Annotation {
        pod: String,
        #[source]
        source: switchyard_api::annotations::AnnotationError,
    },
    /// The pod was deleted, or replaced by another of the same name, while
    /// an ADD waited for its annotation.
    #[error("pod {pod}: {}", gone_reason(uid.as_deref(), successor.as_deref()))]
    PodGone {
        pod: String,
        uid: Option<String>,
        /// The UID of the pod that now has the name, when replaced.
        successor: Option<String>,
    },
    #[error("port {port}: ovn-controller did not set ovn-installed within {waited_ms} ms")]
    OvnInstallTimeout { port: String, waited_ms: u128 },
    #[error("Open vSwitch database: {0}")]
    Ovs(#[from] ovsdb::Error),
    #[error("Open vSwitch: {0}")]
    OvsState(String),
    #[error("netlink: {what}: {source}")]
    Netlink {
        what: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Sys {
        what: String,
        #[source]
        source: nix::Error,
    },
    #[error("CHECK failed: {0}")]
    Check(String),
    #[error("pod source: {0}")]
    PodSource(String),
    #[error("invalid configuration: {0}")]
    Config(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            what: what.into(),
            source,
        }
    }

    pub fn netlink(what: impl Into<String>, source: rtnetlink::Error) -> Self {
        Error::Netlink {
            what: what.into(),
            source,
        }
    }

    pub fn sys(what: impl Into<String>, source: nix::Error) -> Self {
        Error::Sys {
            what: what.into(),
            source,
        }
    }

    /// The CNI error a runtime receives for this failure, in `version`.
    pub fn to_cni(&self, version: &str) -> CniError {
        let code = match self {
            Error::Cni(e) => return e.clone().version(version),
            Error::AnnotationTimeout { .. } => codes::ANNOTATION_TIMEOUT,
            Error::Annotation { .. } => codes::INVALID_ANNOTATION,
            Error::PodGone { .. } => codes::POD_GONE,
            Error::OvnInstallTimeout { .. } => codes::OVN_INSTALL_TIMEOUT,
            Error::Ovs(_) | Error::OvsState(_) => codes::OVS_FAILURE,
            Error::Netlink { .. } | Error::Sys { .. } => codes::NETLINK_FAILURE,
            Error::Io { .. } => codes::IO_FAILURE,
            Error::Check(_) => codes::CHECK_FAILED,
            Error::PodSource(_) => codes::TRY_AGAIN_LATER,
            Error::Config(_) => codes::INVALID_CONFIG,
        };
        let msg = match self {
            Error::AnnotationTimeout { .. } => "timed out waiting for the pod's network annotation",
            Error::Annotation { .. } => "the pod's network annotation is invalid",
            Error::PodGone { .. } => {
                "the pod was deleted or replaced while waiting for its network annotation"
            }
            Error::OvnInstallTimeout { .. } => {
                "timed out waiting for OVN to install the pod's port"
            }
            Error::Ovs(_) | Error::OvsState(_) => "Open vSwitch operation failed",
            Error::Netlink { .. } | Error::Sys { .. } => "network interface operation failed",
            Error::Io { .. } => "I/O failure",
            Error::Check(_) => "the attachment does not match what ADD created",
            Error::PodSource(_) => "cannot read the pod from the Kubernetes API",
            Error::Config(_) => "invalid configuration",
            Error::Cni(_) => unreachable_msg(),
        };
        CniError::new(code, msg)
            .version(version)
            .details(self.to_string())
    }

    /// True when the failure says the thing looked for is simply absent,
    /// which DEL treats as success.
    pub fn is_not_found(&self) -> bool {
        match self {
            Error::Netlink {
                source: rtnetlink::Error::NetlinkError(m),
                ..
            } => m.raw_code().abs() == libc::ENODEV || m.raw_code().abs() == libc::ENOENT,
            Error::Io { source, .. } => source.kind() == std::io::ErrorKind::NotFound,
            Error::Sys { source, .. } => *source == nix::Error::ENOENT,
            _ => false,
        }
    }
}

fn gone_reason(uid: Option<&str>, successor: Option<&str>) -> String {
    let ours = uid.map(|u| format!(" (uid {u})")).unwrap_or_default();
    match successor {
        Some(s) => format!(
            "the pod{ours} was replaced by another pod of the same name (uid {s}) before its network annotation came"
        ),
        None => format!("the pod{ours} was deleted before its network annotation came"),
    }
}

// Kept as a function so the match above stays exhaustive without a panic.
fn unreachable_msg() -> &'static str {
    "CNI error"
}
