//! The private protocol between the `switchyard-cni` shim and the daemon.
//!
//! One request per connection: the shim writes a JSON [`RawRequest`] and
//! shuts down its write half; the daemon answers with one JSON [`Reply`]
//! and closes. No framing beyond end-of-stream is needed, and a daemon
//! restart can never leave a half-read message behind.
//!
//! The socket lives in a directory of mode 0700 and is itself 0600: anyone
//! who can reach it can plumb interfaces into namespaces. The daemon also
//! checks each caller's credentials (`SO_PEERCRED`) and answers anyone but
//! uid 0 with [`codes::PERMISSION_DENIED`], so loosened modes are not
//! enough to call it.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::cni::{codes, CniError, RawRequest};

/// Where the daemon listens unless configured otherwise.
pub const DEFAULT_SOCKET: &str = "/run/switchyard/cni/cni.sock";

/// Largest request or reply accepted; CNI configurations are small.
pub const MAX_MESSAGE: u64 = 4 << 20;

/// The daemon's answer: what the shim prints, and whether it is an error.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Reply {
    /// Success; `None` for commands that print nothing (DEL, CHECK, ...).
    Ok(Option<Value>),
    Err(CniError),
}

/// Sends `req` to the daemon and waits for its answer. Blocking on purpose:
/// the shim is a short-lived process that needs no async runtime. Connection
/// failures are mapped to the CNI error a runtime can act on.
pub fn call(socket: &Path, req: &RawRequest, timeout: Duration) -> Result<Reply, CniError> {
    let unreachable = |e: std::io::Error, command: &str| {
        let code = if command == "STATUS" {
            codes::NOT_AVAILABLE
        } else {
            codes::TRY_AGAIN_LATER
        };
        CniError::new(code, "the switchyard-node daemon is not running")
            .details(format!("cannot connect to {}: {e}", socket.display()))
    };
    let command = req.env.get("CNI_COMMAND").cloned().unwrap_or_default();
    let mut stream = UnixStream::connect(socket).map_err(|e| {
        if e.kind() == std::io::ErrorKind::PermissionDenied {
            // The daemon runs, but its socket is root's alone.
            CniError::new(
                codes::PERMISSION_DENIED,
                "permission denied: only root may call switchyard-node",
            )
            .details(format!("cannot connect to {}: {e}", socket.display()))
        } else {
            unreachable(e, &command)
        }
    })?;
    let io_err = |what: &str, e: std::io::Error| {
        CniError::new(
            codes::DAEMON_FAILURE,
            format!("talking to switchyard-node failed: {what}"),
        )
        .details(e.to_string())
    };
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| io_err("set timeout", e))?;
    stream
        .set_write_timeout(Some(timeout))
        .map_err(|e| io_err("set timeout", e))?;
    let body = serde_json::to_vec(req).map_err(|e| {
        CniError::new(codes::DAEMON_FAILURE, "cannot encode the request").details(e.to_string())
    })?;
    stream.write_all(&body).map_err(|e| io_err("send", e))?;
    stream
        .shutdown(std::net::Shutdown::Write)
        .map_err(|e| io_err("send", e))?;
    let mut answer = Vec::new();
    stream
        .take(MAX_MESSAGE)
        .read_to_end(&mut answer)
        .map_err(|e| io_err("receive", e))?;
    serde_json::from_slice(&answer).map_err(|e| {
        CniError::new(
            codes::DAEMON_FAILURE,
            "switchyard-node sent a malformed answer",
        )
        .details(e.to_string())
    })
}

/// The socket the shim should use: the configuration's `daemonSocket`, or
/// the default.
pub fn socket_for(conf_socket: Option<&Path>) -> PathBuf {
    conf_socket
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_wire_shape() {
        let ok = serde_json::to_string(&Reply::Ok(None)).unwrap();
        assert_eq!(ok, r#"{"ok":null}"#);
        let err = Reply::Err(CniError::new(7, "bad"));
        let text = serde_json::to_string(&err).unwrap();
        assert_eq!(serde_json::from_str::<Reply>(&text).unwrap(), err);
    }

    #[test]
    fn unreachable_daemon_is_a_cni_error() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("none.sock");
        let mut req = RawRequest::default();
        req.env.insert("CNI_COMMAND".into(), "ADD".into());
        let e = call(&sock, &req, Duration::from_secs(1)).unwrap_err();
        assert_eq!(e.code, codes::TRY_AGAIN_LATER);
        assert!(e.msg.contains("not running"));
        req.env.insert("CNI_COMMAND".into(), "STATUS".into());
        assert_eq!(
            call(&sock, &req, Duration::from_secs(1)).unwrap_err().code,
            codes::NOT_AVAILABLE
        );
    }
}
