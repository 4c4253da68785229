//! `switchyard-cni`: the CNI plugin binary the container runtime executes.
//!
//! A thin shim. It validates the request (so malformed input gets the
//! specification's error without a daemon), answers VERSION itself, and
//! forwards everything else to `switchyard-node` over its unix socket,
//! printing the daemon's answer. Errors go to stdout as CNI error JSON with
//! exit status 1, as the specification requires.

use std::io::Read;
use std::process::ExitCode;
use std::time::Duration;

use switchyard_node::cni::{self, codes, CniError, Command, RawRequest};
use switchyard_node::protocol::{self, Reply};

/// Longer than any deadline the daemon applies itself, so the daemon's
/// own, more precise error wins.
const DAEMON_TIMEOUT: Duration = Duration::from_secs(300);

fn main() -> ExitCode {
    let mut stdin = String::new();
    if let Err(e) = std::io::stdin()
        .take(protocol::MAX_MESSAGE)
        .read_to_string(&mut stdin)
    {
        return fail(CniError::new(codes::IO_FAILURE, "cannot read stdin").details(e.to_string()));
    }
    let raw = RawRequest::from_env(std::env::vars(), stdin);
    let req = match cni::parse(&raw) {
        Ok(req) => req,
        Err(e) => return fail(e),
    };
    if req.command == Command::Version {
        println!("{}", cni::version_info());
        return ExitCode::SUCCESS;
    }
    let socket = protocol::socket_for(req.conf.daemon_socket.as_deref());
    match protocol::call(&socket, &raw, DAEMON_TIMEOUT) {
        Ok(Reply::Ok(Some(out))) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Ok(Reply::Ok(None)) => ExitCode::SUCCESS,
        Ok(Reply::Err(e)) => fail(e),
        Err(e) => fail(e.version(req.version())),
    }
}

fn fail(e: CniError) -> ExitCode {
    println!("{}", e.to_json());
    ExitCode::from(1)
}
