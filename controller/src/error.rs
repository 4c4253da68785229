//! The crate's one error type.
//!
//! Library code returns [`Error`]; the binary wraps it in `anyhow` at its
//! edge. Variants say which boundary failed so the caller can decide whether
//! retrying can help ([`Error::is_transient`]).

/// Everything that can go wrong inside the controller library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration (flags, environment, file) is unusable.
    #[error("configuration: {0}")]
    Config(String),
    /// An address or subnet could not be allocated or reserved.
    #[error(transparent)]
    Ipam(#[from] crate::ipam::IpamError),
    /// A Kubernetes object carries an annotation that cannot be used.
    #[error(transparent)]
    Annotation(#[from] switchyard_api::annotations::AnnotationError),
    /// The Kubernetes API refused or failed a request.
    #[error(transparent)]
    Kube(#[from] crate::k8s::KubeError),
    /// The northbound database refused or failed a request.
    #[error("northbound: {0}")]
    Ovsdb(#[from] ovsdb::Error),
    /// Serving /metrics, /healthz, /readyz failed.
    #[error("http: {0}")]
    Http(#[from] std::io::Error),
}

impl Error {
    /// Whether the cause may clear by itself, so the operation is worth
    /// retrying with back-off (an exhausted subnet may gain free addresses, a
    /// malformed annotation will not fix itself).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Config(_) | Error::Annotation(_) => false,
            Error::Ipam(e) => e.is_transient(),
            Error::Kube(e) => e.is_transient(),
            Error::Ovsdb(_) | Error::Http(_) => true,
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
