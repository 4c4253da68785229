//! Standalone ovsdb-server: unix + TCP + TLS, kill/restart.

use std::process::Command;

use ovn_testbed::{OvsdbServer, Schema, ServerOptions, TlsFiles};

fn nbctl(db: &str, args: &[&str]) -> String {
    let out = Command::new("ovn-nbctl")
        .arg(format!("--db={db}"))
        .arg("--timeout=10")
        .args(args)
        .output()
        .expect("run ovn-nbctl");
    assert!(
        out.status.success(),
        "ovn-nbctl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn nb_over_unix_and_tcp_survives_kill_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let opts = ServerOptions {
        tcp: true,
        ..Default::default()
    };
    let mut nb = OvsdbServer::start(dir.path(), "nb", Schema::Northbound, opts).unwrap();
    assert!(nb.unix_remote().starts_with("unix:/"));
    assert!(nb.db_path().exists());
    assert!(nb.ssl_remote().is_none());
    let tcp = nb.tcp_remote().expect("tcp remote");

    nbctl(&nb.unix_remote(), &["ls-add", "sw0"]);
    assert!(nbctl(&tcp, &["ls-list"]).contains("sw0"));

    let pid = nb.pid().expect("running");
    nb.kill();
    assert!(!nb.is_running());
    assert!(!ovn_testbed::pid_alive(pid));

    nb.restart().unwrap();
    assert!(nb.is_running());
    assert_eq!(nb.tcp_remote().as_deref(), Some(tcp.as_str()), "same port");
    assert!(nbctl(&tcp, &["ls-list"]).contains("sw0"), "data kept");

    nb.stop();
    assert!(!nb.is_running());
    nb.restart().unwrap();
    assert!(nbctl(&nb.unix_remote(), &["ls-list"]).contains("sw0"));
}

#[test]
fn tls_with_client_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let tls = TlsFiles::generate(&dir.path().join("pki")).unwrap();
    let opts = ServerOptions {
        tls: Some(tls.clone()),
        ..Default::default()
    };
    let sb = OvsdbServer::start(dir.path(), "sb", Schema::Southbound, opts).unwrap();
    let ssl = sb.ssl_remote().expect("ssl remote");
    assert!(sb.tcp_remote().is_none());

    let list = |cert: &std::path::Path, key: &std::path::Path| {
        Command::new("ovsdb-client")
            .arg(format!("--private-key={}", key.display()))
            .arg(format!("--certificate={}", cert.display()))
            .arg(format!("--ca-cert={}", tls.ca_cert.display()))
            .args(["--timeout=10", "list-dbs", &ssl])
            .output()
            .unwrap()
    };
    let out = list(&tls.client_cert, &tls.client_key);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("OVN_Southbound"));

    // A certificate from another CA is refused.
    let other = TlsFiles::generate(&dir.path().join("other")).unwrap();
    let out = list(&other.client_cert, &other.client_key);
    assert!(!out.status.success(), "foreign client certificate accepted");
}

#[test]
fn long_directory_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let long = dir.path().join("x".repeat(120));
    std::fs::create_dir(&long).unwrap();
    let err = OvsdbServer::start(&long, "nb", Schema::Northbound, Default::default()).unwrap_err();
    assert!(err.to_string().contains("unix socket path"), "{err}");
}

#[test]
fn startup_failure_reports_daemon_output() {
    let dir = tempfile::tempdir().unwrap();
    let opts = ServerOptions {
        extra_args: vec!["--no-such-option".into()],
        ..Default::default()
    };
    let err = OvsdbServer::start(dir.path(), "nb", Schema::Northbound, opts).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("exited"), "{msg}");
    assert!(msg.contains("no-such-option"), "{msg}");
}
