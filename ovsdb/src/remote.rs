//! Remotes as OVS writes them: `tcp:IP:PORT`, `ssl:IP:PORT`, `unix:PATH`,
//! and comma-separated lists of them for clustered databases.

use std::fmt;
use std::path::PathBuf;

use crate::error::{Error, Result};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Remote {
    Tcp { host: String, port: u16 },
    Ssl { host: String, port: u16 },
    Unix(PathBuf),
}

impl Remote {
    pub fn parse(s: &str) -> Result<Remote> {
        let invalid = |reason: &str| Error::InvalidRemote {
            remote: s.to_string(),
            reason: reason.to_string(),
        };
        let (kind, rest) = s
            .split_once(':')
            .ok_or_else(|| invalid("expected KIND:ADDRESS"))?;
        match kind {
            "unix" => {
                if rest.is_empty() {
                    return Err(invalid("empty path"));
                }
                Ok(Remote::Unix(PathBuf::from(rest)))
            }
            "tcp" | "ssl" => {
                let (host, port) =
                    split_host_port(rest).ok_or_else(|| invalid("expected IP:PORT"))?;
                let port: u16 = port.parse().map_err(|_| invalid("bad port"))?;
                if host.is_empty() {
                    return Err(invalid("empty host"));
                }
                let host = host.to_string();
                Ok(if kind == "tcp" {
                    Remote::Tcp { host, port }
                } else {
                    Remote::Ssl { host, port }
                })
            }
            _ => Err(invalid("kind must be tcp, ssl or unix")),
        }
    }

    /// Parses a comma-separated list, as OVN writes the remotes of a
    /// clustered database.
    pub fn parse_list(s: &str) -> Result<Vec<Remote>> {
        let remotes = s
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(Remote::parse)
            .collect::<Result<Vec<_>>>()?;
        if remotes.is_empty() {
            return Err(Error::InvalidRemote {
                remote: s.to_string(),
                reason: "no remote".into(),
            });
        }
        Ok(remotes)
    }
}

/// Splits `IP:PORT`, where an IPv6 address is written in brackets.
fn split_host_port(s: &str) -> Option<(&str, &str)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, port) = rest.split_once("]:")?;
        Some((host, port))
    } else {
        s.rsplit_once(':')
    }
}

impl fmt::Display for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hp = |host: &str, port: u16| {
            if host.contains(':') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            }
        };
        match self {
            Remote::Tcp { host, port } => write!(f, "tcp:{}", hp(host, *port)),
            Remote::Ssl { host, port } => write!(f, "ssl:{}", hp(host, *port)),
            Remote::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ovs_remotes() {
        assert_eq!(
            Remote::parse("tcp:127.0.0.1:6641").unwrap(),
            Remote::Tcp {
                host: "127.0.0.1".into(),
                port: 6641
            }
        );
        assert_eq!(
            Remote::parse("ssl:[fd00::1]:6641").unwrap(),
            Remote::Ssl {
                host: "fd00::1".into(),
                port: 6641
            }
        );
        assert_eq!(
            Remote::parse("unix:/run/ovn/ovnnb_db.sock").unwrap(),
            Remote::Unix("/run/ovn/ovnnb_db.sock".into())
        );
        let l = Remote::parse_list("tcp:10.0.0.1:6641, tcp:10.0.0.2:6641").unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(l[1].to_string(), "tcp:10.0.0.2:6641");
        assert_eq!(
            Remote::parse("ssl:[fd00::1]:1").unwrap().to_string(),
            "ssl:[fd00::1]:1"
        );
    }

    #[test]
    fn rejects_bad_remotes() {
        for bad in [
            "",
            "tcp:1.2.3.4",
            "tcp::1",
            "udp:1.2.3.4:5",
            "unix:",
            "tcp:1.2.3.4:99999",
            ",",
        ] {
            assert!(Remote::parse_list(bad).is_err(), "{bad}");
        }
    }
}
