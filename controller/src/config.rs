//! Configuration: defaults that fit a kind cluster, overridden by a YAML file
//! (mounted from a ConfigMap), then by environment and flags.
//!
//! Precedence is file < environment < flags so an operator can override one
//! value of a shared ConfigMap on a single replica without editing it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A cluster CIDR and the prefix length of each node's slice of it, written
/// `10.244.0.0/16/24` (the form ovn-kubernetes operators know). Without the
/// second length, IPv4 nodes get /24 and IPv6 nodes /64.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ClusterCidr {
    pub cidr: IpNet,
    pub node_prefix: u8,
}

impl FromStr for ClusterCidr {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        let bad = |why: &str| Error::Config(format!("cluster CIDR {s:?}: {why}"));
        let (cidr, node_prefix) = match s.matches('/').count() {
            1 => {
                let cidr: IpNet = s.parse().map_err(|_| bad("not a CIDR"))?;
                let p = if cidr.addr().is_ipv4() { 24 } else { 64 };
                (cidr, p)
            }
            2 => {
                let (c, p) = s.rsplit_once('/').ok_or_else(|| bad("not a CIDR"))?;
                let cidr: IpNet = c.parse().map_err(|_| bad("not a CIDR"))?;
                let p: u8 = p.parse().map_err(|_| bad("node prefix is not a number"))?;
                (cidr, p)
            }
            _ => return Err(bad("expected CIDR or CIDR/NODEPREFIX")),
        };
        if cidr != cidr.trunc() {
            return Err(bad("host bits set"));
        }
        let max = cidr.max_prefix_len();
        // A node subnet needs room for network, gateway, management and at
        // least one pod (and broadcast for IPv4).
        let limit = if cidr.addr().is_ipv4() { 29 } else { 125 };
        if node_prefix < cidr.prefix_len() || node_prefix > limit || node_prefix > max {
            return Err(bad(
                "node prefix must lie between the CIDR's prefix and /29 (/125 for IPv6)",
            ));
        }
        Ok(ClusterCidr { cidr, node_prefix })
    }
}

impl TryFrom<String> for ClusterCidr {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<ClusterCidr> for String {
    fn from(c: ClusterCidr) -> String {
        format!("{}/{}", c.cidr, c.node_prefix)
    }
}

/// Client TLS files for `ssl:` northbound remotes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TlsFiles {
    pub ca_cert: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

/// Lease-based leader election between replicas.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct LeaderElection {
    /// Off for single-replica runs, tests and the e2e sandbox.
    pub enabled: bool,
    pub namespace: String,
    pub lease_name: String,
    /// This replica's holder identity; the pod name in a Deployment.
    pub identity: String,
    #[serde(with = "millis")]
    pub lease_duration: Duration,
    #[serde(with = "millis")]
    pub renew_deadline: Duration,
    #[serde(with = "millis")]
    pub retry_period: Duration,
}

impl Default for LeaderElection {
    fn default() -> Self {
        LeaderElection {
            enabled: false,
            namespace: "switchyard".into(),
            lease_name: "switchyard-controller".into(),
            identity: std::env::var("HOSTNAME").unwrap_or_else(|_| "switchyard-controller".into()),
            // client-go's defaults: a new leader within ~15 s of a crash.
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

/// The controller's whole configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Config {
    /// Pod address space, at most one CIDR per IP family (dual-stack when
    /// both are given).
    pub cluster_cidrs: Vec<ClusterCidr>,
    /// Service address space; pods get a route to it through their gateway.
    pub service_cidrs: Vec<IpNet>,
    /// Northbound remote(s): `unix:PATH`, `tcp:IP:PORT`, `ssl:IP:PORT`, comma
    /// separated for a clustered database.
    pub nb_remote: String,
    pub nb_tls: Option<TlsFiles>,
    /// The join switch's subnets, at most one per IP family: the links
    /// between `cluster-router` and every node's gateway router. They must
    /// not overlap anything pods talk to; each needs room for one address
    /// per node subnet of its family plus two.
    pub join_subnets: Vec<IpNet>,
    /// Pod interface MTU written into the pod annotation.
    pub mtu: Option<u32>,
    /// Where /metrics, /healthz and /readyz are served; none in tests.
    pub http_addr: Option<SocketAddr>,
    pub leader_election: LeaderElection,
    /// Most owners diffed into one NB transaction: large enough that a cold
    /// start needs few transactions, small enough that one bad row costs
    /// little when a batch is split to find it.
    pub max_batch_owners: usize,
    /// Pod annotation patches in flight at once.
    pub patch_concurrency: usize,
    /// A full diff of everything against NB at this interval, as a safety net.
    #[serde(with = "millis")]
    pub full_resync_interval: Duration,
    /// Addresses for Services of type LoadBalancer (at most one CIDR per
    /// IP family); none: Switchyard assigns no LoadBalancer IPs.
    pub load_balancer_pool: Vec<IpNet>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            cluster_cidrs: vec![ClusterCidr {
                cidr: "10.244.0.0/16".parse().expect("constant"),
                node_prefix: 24,
            }],
            service_cidrs: vec!["10.96.0.0/16".parse().expect("constant")],
            join_subnets: vec![
                "100.64.0.0/16".parse().expect("constant"),
                "fd98::/64".parse().expect("constant"),
            ],
            nb_remote: "unix:/var/run/ovn/ovnnb_db.sock".into(),
            nb_tls: None,
            mtu: Some(1400),
            http_addr: Some(SocketAddr::from(([0, 0, 0, 0], 9476))),
            leader_election: LeaderElection::default(),
            max_batch_owners: 4000,
            patch_concurrency: 64,
            full_resync_interval: Duration::from_secs(600),
            load_balancer_pool: Vec::new(),
        }
    }
}

impl Config {
    /// Reads a YAML file; absent keys keep their defaults.
    pub fn from_yaml(text: &str) -> Result<Self> {
        let c: Config = serde_yaml_ng::from_str(text)
            .map_err(|e| Error::Config(format!("config file: {e}")))?;
        c.validate()?;
        Ok(c)
    }

    /// Checks what serde cannot: one CIDR per family, families that agree.
    pub fn validate(&self) -> Result<()> {
        if self.cluster_cidrs.is_empty() {
            return Err(Error::Config("no cluster CIDR".into()));
        }
        let v4 = self
            .cluster_cidrs
            .iter()
            .filter(|c| c.cidr.addr().is_ipv4())
            .count();
        if v4 > 1 || self.cluster_cidrs.len() - v4 > 1 {
            return Err(Error::Config(
                "at most one cluster CIDR per IP family".into(),
            ));
        }
        let join_v4 = self
            .join_subnets
            .iter()
            .filter(|c| c.addr().is_ipv4())
            .count();
        if join_v4 > 1 || self.join_subnets.len() - join_v4 > 1 {
            return Err(Error::Config(
                "at most one join subnet per IP family".into(),
            ));
        }
        for j in &self.join_subnets {
            if *j != j.trunc() || j.max_prefix_len() - j.prefix_len() < 2 {
                return Err(Error::Config(format!(
                    "join subnet {j}: host bits set, or too small for a router and a node"
                )));
            }
            if self
                .cluster_cidrs
                .iter()
                .map(|c| c.cidr)
                .chain(self.service_cidrs.iter().copied())
                .any(|o| o.contains(&j.network()) || j.contains(&o.network()))
            {
                return Err(Error::Config(format!(
                    "join subnet {j} overlaps a cluster or service CIDR"
                )));
            }
        }
        if self.nb_remote.trim().is_empty() {
            return Err(Error::Config("no northbound remote".into()));
        }
        if self.nb_remote.contains("ssl:") && self.nb_tls.is_none() {
            return Err(Error::Config("ssl: remote without TLS files".into()));
        }
        let le = &self.leader_election;
        if le.enabled
            && !(le.retry_period < le.renew_deadline && le.renew_deadline < le.lease_duration)
        {
            return Err(Error::Config(format!(
                "leader election needs retry period ({:?}) < renew deadline ({:?}) < lease duration ({:?}): \
                 a leader that cannot renew must stop before a standby may take over",
                le.retry_period, le.renew_deadline, le.lease_duration
            )));
        }
        let pool_v4 = self
            .load_balancer_pool
            .iter()
            .filter(|c| c.addr().is_ipv4())
            .count();
        if pool_v4 > 1 || self.load_balancer_pool.len() - pool_v4 > 1 {
            return Err(Error::Config(
                "at most one LoadBalancer pool CIDR per IP family".into(),
            ));
        }
        if self.max_batch_owners == 0 || self.patch_concurrency == 0 {
            return Err(Error::Config(
                "batch size and patch concurrency must be positive".into(),
            ));
        }
        Ok(())
    }
}

/// Command line and environment; every flag is optional and overrides the
/// file.
#[derive(Debug, Default, clap::Parser)]
#[command(
    name = "switchyard-controller",
    about = "Switchyard's cluster controller"
)]
pub struct Args {
    /// YAML configuration file (a mounted ConfigMap).
    #[arg(long, env = "SWITCHYARD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Cluster CIDRs, comma separated, each CIDR or CIDR/NODEPREFIX.
    #[arg(long, env = "SWITCHYARD_CLUSTER_CIDRS", value_delimiter = ',')]
    pub cluster_cidrs: Vec<String>,
    /// Service CIDRs, comma separated.
    #[arg(long, env = "SWITCHYARD_SERVICE_CIDRS", value_delimiter = ',')]
    pub service_cidrs: Vec<String>,
    /// Join subnets (comma separated, at most one per family).
    #[arg(long, env = "SWITCHYARD_JOIN_SUBNETS", value_delimiter = ',')]
    pub join_subnets: Vec<String>,
    /// Northbound remote(s).
    #[arg(long, env = "SWITCHYARD_NB_REMOTE")]
    pub nb_remote: Option<String>,
    #[arg(long, env = "SWITCHYARD_NB_CA_CERT", requires_all = ["nb_client_cert", "nb_client_key"])]
    pub nb_ca_cert: Option<PathBuf>,
    #[arg(long, env = "SWITCHYARD_NB_CLIENT_CERT")]
    pub nb_client_cert: Option<PathBuf>,
    #[arg(long, env = "SWITCHYARD_NB_CLIENT_KEY")]
    pub nb_client_key: Option<PathBuf>,
    /// Pod MTU.
    #[arg(long, env = "SWITCHYARD_MTU")]
    pub mtu: Option<u32>,
    /// Address for /metrics, /healthz, /readyz.
    #[arg(long, env = "SWITCHYARD_HTTP_ADDR")]
    pub http_addr: Option<SocketAddr>,
    /// Run leader election (for several replicas).
    #[arg(long, env = "SWITCHYARD_LEADER_ELECT")]
    pub leader_elect: Option<bool>,
    #[arg(long, env = "SWITCHYARD_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// Holder identity, normally the pod name.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// How long a standby waits without seeing the lease renewed before it
    /// takes over (`15s`, `500ms`): with the retry period, the bound on
    /// fail-over after a leader dies.
    #[arg(long, env = "SWITCHYARD_LEASE_DURATION", value_parser = parse_duration)]
    pub lease_duration: Option<Duration>,
    /// How long a leader keeps working without a successful renewal; must
    /// be shorter than the lease duration, so a leader that cannot renew
    /// stops before a standby may start.
    #[arg(long, env = "SWITCHYARD_RENEW_DEADLINE", value_parser = parse_duration)]
    pub renew_deadline: Option<Duration>,
    /// How often the leader renews and a standby tries to acquire.
    #[arg(long, env = "SWITCHYARD_RETRY_PERIOD", value_parser = parse_duration)]
    pub retry_period: Option<Duration>,
    /// LoadBalancer IP pool, comma separated CIDRs (one per IP family).
    #[arg(long, env = "SWITCHYARD_LOAD_BALANCER_POOL", value_delimiter = ',')]
    pub load_balancer_pool: Vec<String>,
}

/// `250ms`, `2s`, `1m`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration such as 500ms, 15s or 1m"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(format!("{s:?}: unit must be ms, s or m")),
    };
    if !secs.is_finite() || secs <= 0.0 {
        return Err(format!("{s:?} must be positive"));
    }
    Ok(Duration::from_secs_f64(secs))
}

impl Args {
    /// Applies the file (if any), then these flags, to the defaults.
    pub fn into_config(self) -> Result<Config> {
        let mut c = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
                Config::from_yaml(&text)?
            }
            None => Config::default(),
        };
        if !self.cluster_cidrs.is_empty() {
            c.cluster_cidrs = self
                .cluster_cidrs
                .iter()
                .map(|s| s.parse())
                .collect::<Result<_>>()?;
        }
        if !self.service_cidrs.is_empty() {
            c.service_cidrs = self
                .service_cidrs
                .iter()
                .map(|s| {
                    s.trim()
                        .parse()
                        .map_err(|_| Error::Config(format!("service CIDR {s:?} is not a CIDR")))
                })
                .collect::<Result<_>>()?;
        }
        if !self.join_subnets.is_empty() {
            c.join_subnets = self
                .join_subnets
                .iter()
                .map(|s| {
                    s.trim()
                        .parse()
                        .map_err(|_| Error::Config(format!("join subnet {s:?} is not a CIDR")))
                })
                .collect::<Result<_>>()?;
        }
        if !self.load_balancer_pool.is_empty() {
            c.load_balancer_pool = self
                .load_balancer_pool
                .iter()
                .map(|s| {
                    s.trim().parse().map_err(|_| {
                        Error::Config(format!("LoadBalancer pool {s:?} is not a CIDR"))
                    })
                })
                .collect::<Result<_>>()?;
        }
        if let Some(r) = self.nb_remote {
            c.nb_remote = r;
        }
        if let (Some(ca), Some(cert), Some(key)) =
            (self.nb_ca_cert, self.nb_client_cert, self.nb_client_key)
        {
            c.nb_tls = Some(TlsFiles {
                ca_cert: ca,
                client_cert: cert,
                client_key: key,
            });
        }
        if self.mtu.is_some() {
            c.mtu = self.mtu;
        }
        if self.http_addr.is_some() {
            c.http_addr = self.http_addr;
        }
        if let Some(e) = self.leader_elect {
            c.leader_election.enabled = e;
        }
        if let Some(ns) = self.lease_namespace {
            c.leader_election.namespace = ns;
        }
        if let Some(id) = self.identity {
            c.leader_election.identity = id;
        }
        let le = &mut c.leader_election;
        le.lease_duration = self.lease_duration.unwrap_or(le.lease_duration);
        le.renew_deadline = self.renew_deadline.unwrap_or(le.renew_deadline);
        le.retry_period = self.retry_period.unwrap_or(le.retry_period);
        c.validate()?;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn lease_timing_is_configurable_and_checked() {
        let args = Args::try_parse_from([
            "switchyard-controller",
            "--leader-elect=true",
            "--lease-duration=6s",
            "--renew-deadline=4s",
            "--retry-period=500ms",
        ])
        .unwrap();
        let c = args.into_config().unwrap();
        assert_eq!(c.leader_election.lease_duration, Duration::from_secs(6));
        assert_eq!(c.leader_election.renew_deadline, Duration::from_secs(4));
        assert_eq!(c.leader_election.retry_period, Duration::from_millis(500));
        let bad = Args::try_parse_from([
            "switchyard-controller",
            "--leader-elect=true",
            "--lease-duration=4s",
            "--renew-deadline=4s",
        ])
        .unwrap();
        assert!(bad.into_config().is_err(), "renew deadline must be shorter");
        assert!(parse_duration("1m").is_ok_and(|d| d == Duration::from_secs(60)));
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("5h").is_err());
    }

    #[test]
    fn defaults_fit_kind() {
        let c = Config::default();
        c.validate().unwrap();
        assert_eq!(String::from(c.cluster_cidrs[0]), "10.244.0.0/16/24");
        assert_eq!(c.service_cidrs[0].to_string(), "10.96.0.0/16");
    }

    #[test]
    fn parses_cluster_cidrs() {
        let c: ClusterCidr = "fd00:10:244::/48".parse().unwrap();
        assert_eq!(c.node_prefix, 64);
        let c: ClusterCidr = "10.128.0.0/14/23".parse().unwrap();
        assert_eq!(c.node_prefix, 23);
        assert!("10.244.0.1/16".parse::<ClusterCidr>().is_err());
        assert!("10.244.0.0/16/8".parse::<ClusterCidr>().is_err());
        assert!("10.244.0.0/16/31".parse::<ClusterCidr>().is_err());
        assert!("nonsense".parse::<ClusterCidr>().is_err());
    }

    #[test]
    fn file_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(
            &path,
            "clusterCidrs: [\"10.1.0.0/16/24\", \"fd00:1::/48/64\"]\nmtu: 9000\nnbRemote: tcp:127.0.0.1:6641\n",
        )
        .unwrap();
        let args = Args::parse_from([
            "x",
            "--config",
            path.to_str().unwrap(),
            "--mtu",
            "1442",
            "--service-cidrs",
            "10.96.0.0/12,fd00:96::/112",
        ]);
        let c = args.into_config().unwrap();
        assert_eq!(c.cluster_cidrs.len(), 2);
        assert_eq!(c.mtu, Some(1442));
        assert_eq!(c.service_cidrs.len(), 2);
        assert_eq!(c.nb_remote, "tcp:127.0.0.1:6641");
    }

    #[test]
    fn load_balancer_pool_from_file_or_flag() {
        let c = Config::from_yaml("loadBalancerPool: [\"198.51.100.0/28\", \"2001:db8::/120\"]\n")
            .unwrap();
        assert_eq!(c.load_balancer_pool.len(), 2);
        assert!(
            Config::from_yaml("loadBalancerPool: [\"198.51.100.0/28\", \"203.0.113.0/28\"]")
                .is_err()
        );
        let args = Args::parse_from(["x", "--load-balancer-pool", "192.0.2.0/29"]);
        assert_eq!(
            args.into_config().unwrap().load_balancer_pool[0].to_string(),
            "192.0.2.0/29"
        );
        assert!(Config::default().load_balancer_pool.is_empty());
    }

    #[test]
    fn rejects_bad_config() {
        assert!(Config::from_yaml("clusterCidrs: [\"10.1.0.0/16\", \"10.2.0.0/16\"]").is_err());
        assert!(Config::from_yaml("clusterCidrs: []").is_err());
        assert!(Config::from_yaml("nbRemote: ssl:1.2.3.4:6641").is_err());
        assert!(Config::from_yaml("clusterCidrs: 5").is_err());
        assert!(Config::from_yaml("joinSubnets: [\"100.64.0.0/16\", \"100.65.0.0/16\"]").is_err());
        assert!(Config::from_yaml("joinSubnets: [\"10.244.0.0/24\"]").is_err());
        assert!(Config::from_yaml("joinSubnets: [\"100.64.0.0/31\"]").is_err());
        let c = Config::from_yaml("joinSubnets: [\"100.96.0.0/20\"]").unwrap();
        assert_eq!(c.join_subnets.len(), 1);
    }
}
