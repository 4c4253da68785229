//! `kubectl-switchyard`: `kubectl switchyard status` and
//! `kubectl switchyard trace SRC DST`. Kubernetes through the user's
//! kubeconfig; OVN through `--nb`/`--sb` (for a cluster, port-forward
//! the `ovn-nb`/`ovn-sb` Services of namespace `switchyard`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use switchyard_kubectl::cluster::KubeView;
use switchyard_kubectl::flow::{Protocol, Target};
use switchyard_kubectl::status::{status, StatusOptions};
use switchyard_kubectl::trace::{trace, OvnAccess};

#[derive(Parser, Debug)]
#[command(name = "kubectl-switchyard", about = "Switchyard's operator tools")]
struct Args {
    /// OVN northbound remotes (comma separated, every cluster member).
    #[arg(
        long,
        env = "SWITCHYARD_NB",
        default_value = "tcp:127.0.0.1:6641",
        global = true
    )]
    nb: String,
    /// OVN southbound remotes (comma separated, every cluster member).
    #[arg(
        long,
        env = "SWITCHYARD_SB",
        default_value = "tcp:127.0.0.1:6642",
        global = true
    )]
    sb: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Nodes (agent, chassis, bound ports, gateway), the controller's
    /// leader, NB and SB cluster health.
    Status {
        #[arg(long, default_value = "switchyard")]
        lease_namespace: String,
        #[arg(long, default_value = "switchyard-controller")]
        lease_name: String,
    },
    /// Where a new connection from SRC to DST goes: SRC is `ns/pod`,
    /// `host:<node>` or a pod's address; DST is `ns/pod`, `host:<node>`,
    /// `svc:ns/name` or an address.
    Trace {
        src: String,
        dst: String,
        /// Destination port (default: 80 for pods and addresses, the
        /// Service's first port for Services).
        #[arg(long)]
        port: Option<u16>,
        /// tcp, udp or sctp (default: tcp, or the Service port's).
        #[arg(long)]
        protocol: Option<String>,
        /// Print ovn-trace's own detailed output after the summary.
        #[arg(long)]
        ovn: bool,
        /// The ovn-trace program.
        #[arg(long, default_value = "ovn-trace")]
        ovn_trace: PathBuf,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    let client = kube::Client::try_default()
        .await
        .context("connecting to Kubernetes (kubeconfig)")?;
    let view = KubeView::new(client);
    match args.command {
        Command::Status {
            lease_namespace,
            lease_name,
        } => {
            let opts = StatusOptions {
                nb: args.nb,
                sb: args.sb,
                lease_namespace,
                lease_name,
            };
            let s = status(&view, &opts).await?;
            for l in s.lines() {
                println!("{l}");
            }
            Ok(if s.healthy() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Trace {
            src,
            dst,
            port,
            protocol,
            ovn,
            ovn_trace,
        } => {
            let src: Target = src.parse()?;
            let dst: Target = dst.parse()?;
            let protocol: Option<Protocol> = protocol.map(|p| p.parse()).transpose()?;
            let access = OvnAccess {
                nb: args.nb,
                sb: args.sb,
                ovn_trace,
            };
            let t = trace(&view, &access, &src, &dst, port, protocol).await?;
            println!("{} {}", t.microflow.datapath, t.microflow.flow);
            for l in t.summary.lines() {
                println!("{l}");
            }
            if ovn {
                println!("\n{}", t.raw);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_parse() {
        let a = Args::try_parse_from([
            "kubectl-switchyard",
            "trace",
            "x/a",
            "svc:x/web",
            "--port",
            "8080",
            "--protocol",
            "udp",
            "--ovn",
            "--sb",
            "tcp:10.0.0.1:6642",
        ])
        .expect("trace parses");
        assert_eq!(a.sb, "tcp:10.0.0.1:6642");
        match a.command {
            Command::Trace {
                src,
                dst,
                port,
                protocol,
                ovn,
                ..
            } => {
                assert_eq!((src.as_str(), dst.as_str()), ("x/a", "svc:x/web"));
                assert_eq!(port, Some(8080));
                assert_eq!(protocol.as_deref(), Some("udp"));
                assert!(ovn);
            }
            other => panic!("{other:?}"),
        }
        let a = Args::try_parse_from(["kubectl-switchyard", "status"]).expect("status parses");
        assert!(matches!(a.command, Command::Status { .. }));
        assert!(Args::try_parse_from(["kubectl-switchyard", "trace", "x/a"]).is_err());
        assert!(
            Args::try_parse_from(["kubectl-switchyard", "trace", "a", "b", "--port", "70000"])
                .is_err()
        );
    }
}
