//! The CNI 1.1.0 protocol as data: commands, environment, network
//! configuration, results, errors and version negotiation.
//!
//! Everything here is pure (no I/O) so that both the shim binary and the
//! daemon parse a request the same way and so that every rule of the
//! specification is unit tested without a network namespace. The shim
//! answers what it can answer alone (VERSION, malformed input) and forwards
//! the rest; the daemon parses again because it must not trust its caller.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// The version this plugin speaks natively; results are converted down to
/// the version the runtime's configuration asks for.
pub const CURRENT_VERSION: &str = "1.1.0";

/// Every version a configuration may name. 0.3.0 is the oldest whose result
/// shape (interfaces + ips with an interface index) we can produce.
pub const SUPPORTED_VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// The runtime-supplied GC key listing attachments that are still wanted.
/// CNI 1.1.0 names it `cni.dev/valid-attachments`; `cni.dev/attachments` is
/// accepted too because some runtimes' drafts used it.
pub const VALID_ATTACHMENTS_KEYS: &[&str] = &["cni.dev/valid-attachments", "cni.dev/attachments"];

/// Error codes, as the specification numbers them, plus Switchyard's own
/// (100 and up, which the specification reserves for plugins).
pub mod codes {
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    pub const UNSUPPORTED_FIELD: u32 = 2;
    pub const UNKNOWN_CONTAINER: u32 = 3;
    pub const INVALID_ENVIRONMENT: u32 = 4;
    pub const IO_FAILURE: u32 = 5;
    pub const DECODE_FAILURE: u32 = 6;
    pub const INVALID_CONFIG: u32 = 7;
    pub const TRY_AGAIN_LATER: u32 = 11;
    pub const NOT_AVAILABLE: u32 = 50;
    pub const NOT_AVAILABLE_LIMITED: u32 = 51;
    /// The pod's `switchyard.io/pod-network` annotation did not appear in time.
    pub const ANNOTATION_TIMEOUT: u32 = 100;
    /// The pod's annotation is present but malformed.
    pub const INVALID_ANNOTATION: u32 = 101;
    /// ovn-controller did not mark the port `ovn-installed` in time.
    pub const OVN_INSTALL_TIMEOUT: u32 = 102;
    /// Talking to the node's Open vSwitch database failed.
    pub const OVS_FAILURE: u32 = 103;
    /// A netlink or namespace operation failed.
    pub const NETLINK_FAILURE: u32 = 104;
    /// CHECK found the attachment differing from what ADD created.
    pub const CHECK_FAILED: u32 = 105;
    /// The daemon could not be reached or answered nonsense.
    pub const DAEMON_FAILURE: u32 = 106;
    /// The pod was deleted, or replaced by another pod of the same name
    /// (another UID), while ADD waited for its annotation.
    pub const POD_GONE: u32 = 107;
    /// The caller is not root: the daemon reads its peer's credentials
    /// (`SO_PEERCRED`) and serves uid 0 only, whatever the socket's mode.
    pub const PERMISSION_DENIED: u32 = 108;
}

/// A CNI error result, printed on stdout with a non-zero exit status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("CNI error {code}: {msg}{}", if details.is_empty() { String::new() } else { format!(" ({details})") })]
#[serde(rename_all = "camelCase")]
pub struct CniError {
    pub cni_version: String,
    pub code: u32,
    pub msg: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub details: String,
}

impl CniError {
    pub fn new(code: u32, msg: impl Into<String>) -> Self {
        CniError {
            cni_version: CURRENT_VERSION.into(),
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    pub fn details(mut self, details: impl Into<String>) -> Self {
        self.details = details.into();
        self
    }

    /// Errors are reported in the version the request used, when it named a
    /// supported one, so old runtimes can parse them.
    pub fn version(mut self, version: &str) -> Self {
        if SUPPORTED_VERSIONS.contains(&version) {
            self.cni_version = version.into();
        }
        self
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The CNI operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Command {
    Add,
    Del,
    Check,
    Status,
    Gc,
    Version,
}

impl Command {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "STATUS" => Command::Status,
            "GC" => Command::Gc,
            "VERSION" => Command::Version,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Status => "STATUS",
            Command::Gc => "GC",
            Command::Version => "VERSION",
        }
    }

    /// The oldest configuration version that defines this command.
    fn min_version(self) -> &'static str {
        match self {
            Command::Check => "0.4.0",
            Command::Status | Command::Gc => "1.1.0",
            _ => "0.3.0",
        }
    }
}

/// What the runtime handed the plugin: its environment and stdin. This is
/// also what the shim forwards to the daemon, unchanged.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RawRequest {
    /// Only the `CNI_*` variables; the shim drops the rest of its environment.
    pub env: BTreeMap<String, String>,
    pub stdin: String,
}

impl RawRequest {
    /// Keeps the variables the specification defines.
    pub fn from_env(vars: impl IntoIterator<Item = (String, String)>, stdin: String) -> Self {
        RawRequest {
            env: vars
                .into_iter()
                .filter(|(k, _)| k.starts_with("CNI_"))
                .collect(),
            stdin,
        }
    }
}

/// One attachment the runtime still wants, from GC's valid-attachments list.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Attachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

/// The parts of the network configuration Switchyard reads.
#[derive(Clone, Debug, PartialEq)]
pub struct NetConf {
    pub cni_version: String,
    pub name: String,
    /// The daemon's socket; the conflist the daemon installs names it.
    pub daemon_socket: Option<PathBuf>,
    /// Pod interface MTU when the annotation does not give one.
    pub mtu: Option<u32>,
    pub prev_result: Option<CniResult>,
    pub valid_attachments: Option<Vec<Attachment>>,
}

/// The pod the runtime is working for, from `CNI_ARGS` as the kubelet sets it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    pub uid: Option<String>,
    pub infra_container_id: Option<String>,
}

/// A validated request.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    pub command: Command,
    pub container_id: String,
    pub netns: Option<PathBuf>,
    pub ifname: String,
    pub pod: Option<PodRef>,
    pub conf: NetConf,
}

impl Request {
    /// The version to answer in.
    pub fn version(&self) -> &str {
        &self.conf.cni_version
    }

    pub fn error(&self, code: u32, msg: impl Into<String>) -> CniError {
        CniError::new(code, msg).version(&self.conf.cni_version)
    }
}

/// Compares dotted versions numerically; malformed parts compare as 0.
pub fn version_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let parse = |s: &str| -> Vec<u64> { s.split('.').map(|p| p.parse().unwrap_or(0)).collect() };
    parse(a).cmp(&parse(b))
}

/// VERSION's answer.
pub fn version_info() -> Value {
    json!({ "cniVersion": CURRENT_VERSION, "supportedVersions": SUPPORTED_VERSIONS })
}

/// Splits `CNI_ARGS` (`K=V;K=V`). Malformed pairs are an environment error.
pub fn parse_args(args: &str) -> Result<BTreeMap<String, String>, CniError> {
    let mut out = BTreeMap::new();
    for pair in args.split(';').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').ok_or_else(|| {
            CniError::new(codes::INVALID_ENVIRONMENT, "invalid CNI_ARGS")
                .details(format!("{pair:?} is not KEY=VALUE"))
        })?;
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

/// Container ids are used in OVS external_ids and to derive names; the
/// specification restricts them to alphanumerics plus `_.-`.
fn valid_container_id(id: &str) -> bool {
    let mut chars = id.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

/// Linux interface name rules, as the specification asks plugins to check.
fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace())
}

/// Parses and validates a request, in the order the specification's
/// reference implementation does: command, configuration and version,
/// then the environment the command needs.
pub fn parse(raw: &RawRequest) -> Result<Request, CniError> {
    let command_text = raw.env.get("CNI_COMMAND").map(String::as_str).unwrap_or("");
    let command = Command::parse(command_text).ok_or_else(|| {
        CniError::new(
            codes::INVALID_ENVIRONMENT,
            if command_text.is_empty() {
                "required env variables [CNI_COMMAND] missing".to_string()
            } else {
                format!("unknown CNI_COMMAND: {command_text}")
            },
        )
    })?;

    let stdin = raw.stdin.trim();
    let conf_json: Value = if stdin.is_empty() && command == Command::Version {
        json!({ "cniVersion": CURRENT_VERSION })
    } else {
        serde_json::from_str(stdin).map_err(|e| {
            CniError::new(
                codes::DECODE_FAILURE,
                "failed to decode network configuration",
            )
            .details(e.to_string())
        })?
    };
    let obj = conf_json.as_object().ok_or_else(|| {
        CniError::new(
            codes::DECODE_FAILURE,
            "failed to decode network configuration",
        )
        .details("network configuration is not a JSON object")
    })?;
    let cni_version = match obj.get("cniVersion") {
        None if command == Command::Version => CURRENT_VERSION.to_string(),
        None => "0.1.0".to_string(),
        Some(Value::String(v)) => v.clone(),
        Some(_) => {
            return Err(CniError::new(
                codes::DECODE_FAILURE,
                "failed to decode network configuration",
            )
            .details("cniVersion is not a string"))
        }
    };
    if command == Command::Version {
        return Ok(Request {
            command,
            container_id: String::new(),
            netns: None,
            ifname: String::new(),
            pod: None,
            conf: NetConf {
                cni_version,
                name: String::new(),
                daemon_socket: None,
                mtu: None,
                prev_result: None,
                valid_attachments: None,
            },
        });
    }
    if !SUPPORTED_VERSIONS.contains(&cni_version.as_str()) {
        return Err(CniError::new(
            codes::INCOMPATIBLE_VERSION,
            format!("incompatible CNI versions: config is {cni_version:?}, plugin supports {SUPPORTED_VERSIONS:?}"),
        ));
    }
    let err = |code, msg: String| CniError::new(code, msg).version(&cni_version);
    if version_cmp(&cni_version, command.min_version()).is_lt() {
        return Err(err(
            codes::INCOMPATIBLE_VERSION,
            format!(
                "configuration version {cni_version} does not support {} (needs {} or later)",
                command.as_str(),
                command.min_version()
            ),
        ));
    }
    let name = match obj.get("name") {
        Some(Value::String(n)) if !n.is_empty() => n.clone(),
        _ => {
            return Err(err(
                codes::INVALID_CONFIG,
                "network configuration has no name".into(),
            ))
        }
    };
    let daemon_socket = match obj.get("daemonSocket") {
        None => None,
        Some(Value::String(s)) if !s.is_empty() => Some(PathBuf::from(s)),
        Some(_) => {
            return Err(err(
                codes::INVALID_CONFIG,
                "daemonSocket must be a non-empty string".into(),
            ))
        }
    };
    let mtu = match obj.get("mtu") {
        None => None,
        Some(v) => match v.as_u64() {
            Some(m) if (576..=65535).contains(&m) => Some(m as u32),
            _ => return Err(err(codes::INVALID_CONFIG, format!("invalid mtu {v}"))),
        },
    };
    let prev_result = match obj.get("prevResult") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            CniResult::from_json(v)
                .map_err(|e| err(codes::DECODE_FAILURE, format!("invalid prevResult: {e}")))?,
        ),
    };
    let mut valid_attachments = None;
    for key in VALID_ATTACHMENTS_KEYS {
        if let Some(v) = obj.get(*key) {
            let list: Vec<Attachment> = serde_json::from_value(v.clone())
                .map_err(|e| err(codes::DECODE_FAILURE, format!("invalid {key}: {e}")))?;
            valid_attachments.get_or_insert_with(Vec::new).extend(list);
        }
    }

    let env = |key: &str| raw.env.get(key).filter(|v| !v.is_empty()).cloned();
    let required: &[&str] = match command {
        Command::Add | Command::Check => &["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"],
        Command::Del => &["CNI_CONTAINERID", "CNI_IFNAME"],
        _ => &[],
    };
    let missing: Vec<&str> = required
        .iter()
        .copied()
        .filter(|k| env(k).is_none())
        .collect();
    if !missing.is_empty() {
        return Err(err(
            codes::INVALID_ENVIRONMENT,
            format!("required env variables [{}] missing", missing.join(",")),
        ));
    }
    let container_id = env("CNI_CONTAINERID").unwrap_or_default();
    if !container_id.is_empty() && !valid_container_id(&container_id) {
        return Err(err(
            codes::INVALID_ENVIRONMENT,
            format!("invalid CNI_CONTAINERID {container_id:?}"),
        ));
    }
    let ifname = env("CNI_IFNAME").unwrap_or_default();
    if !ifname.is_empty() && !valid_ifname(&ifname) {
        return Err(err(
            codes::INVALID_ENVIRONMENT,
            format!("invalid CNI_IFNAME {ifname:?}"),
        ));
    }
    let args =
        parse_args(&env("CNI_ARGS").unwrap_or_default()).map_err(|e| e.version(&cni_version))?;
    let pod = match (args.get("K8S_POD_NAMESPACE"), args.get("K8S_POD_NAME")) {
        (Some(ns), Some(name)) if !ns.is_empty() && !name.is_empty() => Some(PodRef {
            namespace: ns.clone(),
            name: name.clone(),
            uid: args.get("K8S_POD_UID").filter(|v| !v.is_empty()).cloned(),
            infra_container_id: args
                .get("K8S_POD_INFRA_CONTAINER_ID")
                .filter(|v| !v.is_empty())
                .cloned(),
        }),
        _ => None,
    };
    if matches!(command, Command::Add | Command::Check) && pod.is_none() {
        return Err(err(
            codes::INVALID_ENVIRONMENT,
            "CNI_ARGS must name the pod (K8S_POD_NAMESPACE and K8S_POD_NAME)".into(),
        ));
    }
    if command == Command::Check && prev_result.is_none() {
        return Err(err(
            codes::INVALID_CONFIG,
            "CHECK needs prevResult in the network configuration".into(),
        ));
    }
    Ok(Request {
        command,
        container_id,
        netns: env("CNI_NETNS").map(PathBuf::from),
        ifname,
        pod,
        conf: NetConf {
            cni_version,
            name,
            daemon_socket,
            mtu,
            prev_result,
            valid_attachments,
        },
    })
}

/// One interface in a result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub mac: String,
    pub mtu: Option<u32>,
    /// The netns path for interfaces inside the container; none on the host.
    pub sandbox: Option<String>,
}

/// One address in a result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpConfig {
    pub address: IpNet,
    pub gateway: Option<IpAddr>,
    /// Index into the result's interfaces.
    pub interface: Option<usize>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteEntry {
    pub dst: IpNet,
    pub gw: Option<IpAddr>,
}

/// A success result, version independent; [`CniResult::to_json`] writes a
/// given version's shape.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CniResult {
    pub interfaces: Vec<Interface>,
    pub ips: Vec<IpConfig>,
    pub routes: Vec<RouteEntry>,
    /// Passed through unchanged (Switchyard configures no DNS itself).
    pub dns: Map<String, Value>,
}

impl CniResult {
    /// Writes the result in `version`'s shape: 0.3.x and 0.4.0 carry an IP
    /// `version` field; interface `mtu` exists from 1.1.0 on.
    pub fn to_json(&self, version: &str) -> Value {
        let old = version_cmp(version, "1.0.0").is_lt();
        let with_mtu = version_cmp(version, "1.1.0").is_ge();
        let interfaces: Vec<Value> = self
            .interfaces
            .iter()
            .map(|i| {
                let mut o = Map::new();
                o.insert("name".into(), json!(i.name));
                o.insert("mac".into(), json!(i.mac));
                if let (true, Some(mtu)) = (with_mtu, i.mtu) {
                    o.insert("mtu".into(), json!(mtu));
                }
                if let Some(s) = &i.sandbox {
                    o.insert("sandbox".into(), json!(s));
                }
                Value::Object(o)
            })
            .collect();
        let ips: Vec<Value> = self
            .ips
            .iter()
            .map(|ip| {
                let mut o = Map::new();
                if old {
                    o.insert(
                        "version".into(),
                        json!(if ip.address.addr().is_ipv4() {
                            "4"
                        } else {
                            "6"
                        }),
                    );
                }
                o.insert("address".into(), json!(ip.address.to_string()));
                if let Some(gw) = ip.gateway {
                    o.insert("gateway".into(), json!(gw.to_string()));
                }
                if let Some(i) = ip.interface {
                    o.insert("interface".into(), json!(i));
                }
                Value::Object(o)
            })
            .collect();
        let routes: Vec<Value> = self
            .routes
            .iter()
            .map(|r| match r.gw {
                Some(gw) => json!({"dst": r.dst.to_string(), "gw": gw.to_string()}),
                None => json!({"dst": r.dst.to_string()}),
            })
            .collect();
        let mut out = Map::new();
        out.insert("cniVersion".into(), json!(version));
        if !interfaces.is_empty() {
            out.insert("interfaces".into(), Value::Array(interfaces));
        }
        if !ips.is_empty() {
            out.insert("ips".into(), Value::Array(ips));
        }
        if !routes.is_empty() {
            out.insert("routes".into(), Value::Array(routes));
        }
        out.insert("dns".into(), Value::Object(self.dns.clone()));
        Value::Object(out)
    }

    /// Reads a result of any supported version (the `version` field of old
    /// IP entries is implied by the address and ignored).
    pub fn from_json(v: &Value) -> Result<Self, String> {
        let obj = v.as_object().ok_or("result is not an object")?;
        let list = |key: &str| -> Result<Vec<Value>, String> {
            match obj.get(key) {
                None | Some(Value::Null) => Ok(vec![]),
                Some(Value::Array(a)) => Ok(a.clone()),
                Some(_) => Err(format!("{key} is not a list")),
            }
        };
        let s = |o: &Value, k: &str| o.get(k).and_then(Value::as_str).map(str::to_string);
        let mut out = CniResult::default();
        for i in list("interfaces")? {
            out.interfaces.push(Interface {
                name: s(&i, "name").ok_or("interface without a name")?,
                mac: s(&i, "mac").unwrap_or_default(),
                mtu: i.get("mtu").and_then(Value::as_u64).map(|m| m as u32),
                sandbox: s(&i, "sandbox").filter(|s| !s.is_empty()),
            });
        }
        for ip in list("ips")? {
            let address = s(&ip, "address").ok_or("ip without an address")?;
            out.ips.push(IpConfig {
                address: address
                    .parse()
                    .map_err(|_| format!("invalid address {address:?}"))?,
                gateway: match s(&ip, "gateway") {
                    Some(g) => Some(g.parse().map_err(|_| format!("invalid gateway {g:?}"))?),
                    None => None,
                },
                interface: ip
                    .get("interface")
                    .and_then(Value::as_u64)
                    .map(|i| i as usize),
            });
        }
        for r in list("routes")? {
            let dst = s(&r, "dst").ok_or("route without dst")?;
            out.routes.push(RouteEntry {
                dst: dst
                    .parse()
                    .map_err(|_| format!("invalid route dst {dst:?}"))?,
                gw: match s(&r, "gw") {
                    Some(g) => Some(g.parse().map_err(|_| format!("invalid route gw {g:?}"))?),
                    None => None,
                },
            });
        }
        if let Some(Value::Object(d)) = obj.get("dns") {
            out.dns = d.clone();
        }
        Ok(out)
    }

    /// Chaining: a plugin later in the chain appends to what came before.
    /// Our interface indices shift past the previous interfaces.
    pub fn chain_onto(self, prev: &CniResult) -> CniResult {
        let offset = prev.interfaces.len();
        let mut out = prev.clone();
        out.interfaces.extend(self.interfaces);
        out.ips.extend(self.ips.into_iter().map(|mut ip| {
            ip.interface = ip.interface.map(|i| i + offset);
            ip
        }));
        out.routes.extend(self.routes);
        if out.dns.is_empty() {
            out.dns = self.dns;
        }
        out
    }
}

/// The conflist the daemon installs into the runtime's configuration
/// directory. The runtime adds `cniVersion` and `name` to each plugin's
/// configuration; `daemonSocket` tells the shim where the daemon listens.
pub fn conflist(network: &str, daemon_socket: &std::path::Path, mtu: Option<u32>) -> Value {
    let mut plugin = json!({
        "type": "switchyard-cni",
        "daemonSocket": daemon_socket.display().to_string(),
    });
    if let (Some(mtu), Some(o)) = (mtu, plugin.as_object_mut()) {
        o.insert("mtu".into(), json!(mtu));
    }
    json!({
        "cniVersion": CURRENT_VERSION,
        "name": network,
        "plugins": [plugin],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(cmd: &str, stdin: &str, extra: &[(&str, &str)]) -> RawRequest {
        let mut env: BTreeMap<String, String> = [
            ("CNI_COMMAND", cmd),
            ("CNI_CONTAINERID", "abc123"),
            ("CNI_NETNS", "/var/run/netns/x"),
            ("CNI_IFNAME", "eth0"),
            (
                "CNI_ARGS",
                "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p;K8S_POD_UID=u-1",
            ),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for (k, v) in extra {
            if v.is_empty() {
                env.remove(*k);
            } else {
                env.insert(k.to_string(), v.to_string());
            }
        }
        RawRequest {
            env,
            stdin: stdin.to_string(),
        }
    }

    const CONF: &str = r#"{"cniVersion":"1.1.0","name":"switchyard","type":"switchyard-cni","daemonSocket":"/tmp/s.sock"}"#;

    #[test]
    fn parses_an_add() {
        let req = parse(&raw("ADD", CONF, &[])).unwrap();
        assert_eq!(req.command, Command::Add);
        assert_eq!(req.container_id, "abc123");
        assert_eq!(req.ifname, "eth0");
        assert_eq!(req.conf.daemon_socket, Some(PathBuf::from("/tmp/s.sock")));
        let pod = req.pod.unwrap();
        assert_eq!((pod.namespace.as_str(), pod.name.as_str()), ("ns", "p"));
        assert_eq!(pod.uid.as_deref(), Some("u-1"));
    }

    #[test]
    fn error_codes_follow_the_spec() {
        let code = |r: RawRequest| parse(&r).unwrap_err().code;
        assert_eq!(
            code(raw("", CONF, &[("CNI_COMMAND", "")])),
            codes::INVALID_ENVIRONMENT
        );
        assert_eq!(code(raw("FROB", CONF, &[])), codes::INVALID_ENVIRONMENT);
        assert_eq!(code(raw("ADD", "{nope", &[])), codes::DECODE_FAILURE);
        assert_eq!(code(raw("ADD", "[1]", &[])), codes::DECODE_FAILURE);
        assert_eq!(
            code(raw("ADD", r#"{"cniVersion":"9.9.9","name":"n"}"#, &[])),
            codes::INCOMPATIBLE_VERSION
        );
        assert_eq!(
            code(raw(
                "CHECK",
                r#"{"cniVersion":"0.3.1","name":"n","prevResult":{}}"#,
                &[]
            )),
            codes::INCOMPATIBLE_VERSION
        );
        assert_eq!(
            code(raw("GC", r#"{"cniVersion":"1.0.0","name":"n"}"#, &[])),
            codes::INCOMPATIBLE_VERSION
        );
        assert_eq!(
            code(raw("ADD", r#"{"cniVersion":"1.0.0"}"#, &[])),
            codes::INVALID_CONFIG
        );
        let e = parse(&raw("ADD", CONF, &[("CNI_NETNS", "")])).unwrap_err();
        assert_eq!(e.code, codes::INVALID_ENVIRONMENT);
        assert!(e.msg.contains("CNI_NETNS"), "{}", e.msg);
        assert_eq!(
            code(raw("ADD", CONF, &[("CNI_ARGS", "K8S_POD_NAME=p")])),
            codes::INVALID_ENVIRONMENT
        );
        assert_eq!(
            code(raw("ADD", CONF, &[("CNI_ARGS", "garbage")])),
            codes::INVALID_ENVIRONMENT
        );
        assert_eq!(
            code(raw("ADD", CONF, &[("CNI_IFNAME", "a/b")])),
            codes::INVALID_ENVIRONMENT
        );
        assert_eq!(
            code(raw("ADD", CONF, &[("CNI_CONTAINERID", "-x")])),
            codes::INVALID_ENVIRONMENT
        );
        assert_eq!(code(raw("CHECK", CONF, &[])), codes::INVALID_CONFIG);
    }

    #[test]
    fn errors_answer_in_the_request_version() {
        let e = parse(&raw("ADD", r#"{"cniVersion":"0.4.0"}"#, &[])).unwrap_err();
        assert_eq!(e.cni_version, "0.4.0");
        let j: Value = serde_json::from_str(&e.to_json()).unwrap();
        assert_eq!(j["code"], 7);
        assert!(j["msg"].is_string());
        assert_eq!(j["cniVersion"], "0.4.0");
        let e = parse(&raw("ADD", r#"{"cniVersion":"7.0.0","name":"n"}"#, &[])).unwrap_err();
        assert_eq!(e.cni_version, CURRENT_VERSION);
    }

    #[test]
    fn del_needs_no_netns_and_no_pod() {
        let req = parse(&raw("DEL", CONF, &[("CNI_NETNS", ""), ("CNI_ARGS", "")])).unwrap();
        assert_eq!(req.netns, None);
        assert_eq!(req.pod, None);
    }

    #[test]
    fn status_and_gc_need_no_environment() {
        let gc = r#"{"cniVersion":"1.1.0","name":"n","cni.dev/valid-attachments":[{"containerID":"c1","ifname":"eth0"}]}"#;
        let mut r = raw("GC", gc, &[]);
        r.env.retain(|k, _| k == "CNI_COMMAND");
        let req = parse(&r).unwrap();
        assert_eq!(
            req.conf.valid_attachments,
            Some(vec![Attachment {
                container_id: "c1".into(),
                ifname: "eth0".into()
            }])
        );
        let mut r = raw("STATUS", CONF, &[]);
        r.env.retain(|k, _| k == "CNI_COMMAND");
        assert_eq!(parse(&r).unwrap().command, Command::Status);
    }

    #[test]
    fn version_works_without_config() {
        let req = parse(&raw("VERSION", "", &[])).unwrap();
        assert_eq!(req.command, Command::Version);
        let v = version_info();
        assert_eq!(v["cniVersion"], CURRENT_VERSION);
        assert_eq!(
            v["supportedVersions"].as_array().unwrap().len(),
            SUPPORTED_VERSIONS.len()
        );
        // VERSION answers even for a version the plugin does not know.
        assert!(parse(&raw("VERSION", r#"{"cniVersion":"42.0.0"}"#, &[])).is_ok());
    }

    fn sample() -> CniResult {
        CniResult {
            interfaces: vec![Interface {
                name: "eth0".into(),
                mac: "0a:58:0a:f4:01:05".into(),
                mtu: Some(1400),
                sandbox: Some("/var/run/netns/x".into()),
            }],
            ips: vec![IpConfig {
                address: "10.244.1.5/24".parse().unwrap(),
                gateway: Some("10.244.1.1".parse().unwrap()),
                interface: Some(0),
            }],
            routes: vec![RouteEntry {
                dst: "0.0.0.0/0".parse().unwrap(),
                gw: Some("10.244.1.1".parse().unwrap()),
            }],
            dns: Map::new(),
        }
    }

    #[test]
    fn results_per_version() {
        let r = sample();
        let v11 = r.to_json("1.1.0");
        assert_eq!(v11["cniVersion"], "1.1.0");
        assert_eq!(v11["interfaces"][0]["mtu"], 1400);
        assert!(v11["ips"][0].get("version").is_none());
        assert_eq!(v11["ips"][0]["address"], "10.244.1.5/24");
        assert_eq!(v11["ips"][0]["interface"], 0);
        let v10 = r.to_json("1.0.0");
        assert!(v10["interfaces"][0].get("mtu").is_none());
        let v031 = r.to_json("0.3.1");
        assert_eq!(v031["ips"][0]["version"], "4");
        assert_eq!(v031["routes"][0]["gw"], "10.244.1.1");
        for v in [v11, v10, v031] {
            let back = CniResult::from_json(&v).unwrap();
            assert_eq!(back.ips, r.ips);
            assert_eq!(back.routes, r.routes);
        }
        assert!(CniResult::from_json(&json!({"ips":[{"address":"bad"}]})).is_err());
    }

    #[test]
    fn chaining_appends_and_shifts_indices() {
        let prev = sample();
        let ours = sample();
        let out = ours.chain_onto(&prev);
        assert_eq!(out.interfaces.len(), 2);
        assert_eq!(out.ips[1].interface, Some(1));
        let req = parse(&raw(
            "ADD",
            &format!(
                r#"{{"cniVersion":"1.0.0","name":"n","prevResult":{}}}"#,
                prev.to_json("1.0.0")
            ),
            &[],
        ))
        .unwrap();
        assert_eq!(req.conf.prev_result.unwrap().ips, prev.ips);
    }

    #[test]
    fn conflist_names_the_socket() {
        let c = conflist(
            "switchyard",
            std::path::Path::new("/run/s.sock"),
            Some(1400),
        );
        assert_eq!(c["plugins"][0]["type"], "switchyard-cni");
        assert_eq!(c["plugins"][0]["daemonSocket"], "/run/s.sock");
        assert_eq!(c["plugins"][0]["mtu"], 1400);
        assert_eq!(c["cniVersion"], CURRENT_VERSION);
    }

    #[test]
    fn version_ordering() {
        assert!(version_cmp("0.3.1", "0.4.0").is_lt());
        assert!(version_cmp("1.1.0", "1.0.0").is_gt());
        assert!(version_cmp("0.10.0", "0.4.0").is_gt());
    }
}
