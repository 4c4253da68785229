//! The CNI request parsers of the node agent: the shim's request built from
//! its environment and stdin (`RawRequest::from_env` + `cni::parse`), the
//! daemon's wire protocol (a JSON `RawRequest` read from the socket, then
//! `cni::parse` again, because the daemon trusts no caller), the network
//! configuration with its `prevResult`, `CNI_ARGS`, and the shim's reading
//! of the daemon's `Reply`.
//!
//! Input: `KEY=VALUE` lines (the environment), a NUL, then stdin; the whole
//! input is also tried as the daemon's wire body and as a reply. Checked:
//! no panic; the daemon reaches the same verdict as the shim for the
//! request the shim forwards; a parsed `prevResult` written in the current
//! version reads back unchanged, and chaining onto it and writing in every
//! supported version do not panic; memory stays within a fixed multiple of
//! the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_fuzz::cni::{
    self, CniResult, IpConfig, RawRequest, CURRENT_VERSION, SUPPORTED_VERSIONS,
};
use switchyard_fuzz::protocol::Reply;
use switchyard_fuzz::{bounded, split_nul};

fn results(prev: &CniResult) {
    let written = prev.to_json(CURRENT_VERSION);
    let back = CniResult::from_json(&written).expect("our own result does not parse");
    assert_eq!(&back, prev, "prevResult changed through to_json/from_json");
    let ours = CniResult {
        ips: vec![IpConfig {
            address: "10.244.1.5/24".parse().expect("literal"),
            gateway: None,
            interface: Some(0),
        }],
        ..CniResult::default()
    };
    let chained = ours.chain_onto(prev);
    for v in SUPPORTED_VERSIONS {
        let _ = chained.to_json(v);
    }
}

fn parse(raw: &RawRequest) {
    let Ok(req) = cni::parse(raw) else { return };
    let _ = (req.version(), req.command.as_str());
    if let Some(prev) = &req.conf.prev_result {
        results(prev);
    }
}

fuzz_target!(|data: &[u8]| {
    bounded("cni request", data, 256, 256 << 10, |data| {
        // The shim: its environment and stdin.
        let (env, stdin) = split_nul(data);
        let env = String::from_utf8_lossy(env);
        let vars = env.lines().filter_map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        });
        let raw = RawRequest::from_env(vars, String::from_utf8_lossy(stdin).into_owned());
        let shim = cni::parse(&raw);
        parse(&raw);
        // What it forwards, as the daemon reads it off the socket.
        let wire = serde_json::to_vec(&raw).expect("encoding a request");
        let daemon_raw: RawRequest = serde_json::from_slice(&wire).expect("reading it back");
        assert_eq!(daemon_raw, raw);
        assert_eq!(cni::parse(&daemon_raw), shim, "shim and daemon disagree");
        if let Some(args) = raw.env.get("CNI_ARGS") {
            let _ = cni::parse_args(args);
        }

        // The whole input as a body from an arbitrary client of the socket,
        // and as the daemon's answer read by the shim.
        if let Ok(raw) = serde_json::from_slice::<RawRequest>(data) {
            parse(&raw);
        }
        if let Ok(reply) = serde_json::from_slice::<Reply>(data) {
            let _ = serde_json::to_vec(&reply);
        }
        let _ = cni::version_cmp(&env, "1.0.0");
    });
});
