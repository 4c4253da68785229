//! Test certificates, made with the `openssl` command line tool.
//!
//! One throw-away CA signs a server certificate (valid for `127.0.0.1` and
//! `localhost`) and a client certificate. They are plain X.509 v3 with RSA
//! keys and subjectAltName, which both OpenSSL (ovsdb-server) and rustls
//! (our clients) accept.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::process::run;

/// Certificate and key files for TLS tests, all in PEM.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The CA certificate that signed both certificates below.
    pub ca_cert: PathBuf,
    /// Server certificate, for CN/SAN `127.0.0.1` and `localhost`.
    pub server_cert: PathBuf,
    /// Server private key.
    pub server_key: PathBuf,
    /// Client certificate.
    pub client_cert: PathBuf,
    /// Client private key.
    pub client_key: PathBuf,
}

/// Certificates are valid this long; tests are short.
const DAYS: &str = "30";

impl TlsFiles {
    /// Generates a CA, a server and a client certificate into `dir` (created
    /// if missing) as `ca-cert.pem`, `ca-key.pem`, `server-cert.pem`,
    /// `server-key.pem`, `client-cert.pem` and `client-key.pem`.
    pub fn generate(dir: &Path) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let ca_key = dir.join("ca-key.pem");
        let files = TlsFiles {
            ca_cert: dir.join("ca-cert.pem"),
            server_cert: dir.join("server-cert.pem"),
            server_key: dir.join("server-key.pem"),
            client_cert: dir.join("client-cert.pem"),
            client_key: dir.join("client-key.pem"),
        };

        let mut ca = openssl(&[
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", DAYS,
        ]);
        ca.arg("-keyout")
            .arg(&ca_key)
            .arg("-out")
            .arg(&files.ca_cert)
            .args(["-subj", "/CN=switchyard test CA"])
            .args(["-addext", "basicConstraints=critical,CA:TRUE"])
            .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
        run(ca)?;

        let server_ext = "basicConstraints=critical,CA:FALSE\n\
                          keyUsage=critical,digitalSignature,keyEncipherment\n\
                          extendedKeyUsage=serverAuth,clientAuth\n\
                          subjectAltName=IP:127.0.0.1,DNS:localhost\n";
        issue(
            dir,
            "server",
            "/CN=127.0.0.1",
            server_ext,
            &files.server_key,
            &files.server_cert,
            &files.ca_cert,
            &ca_key,
        )?;
        let client_ext = "basicConstraints=critical,CA:FALSE\n\
                          keyUsage=critical,digitalSignature,keyEncipherment\n\
                          extendedKeyUsage=clientAuth\n\
                          subjectAltName=DNS:switchyard-test-client\n";
        issue(
            dir,
            "client",
            "/CN=switchyard-test-client",
            client_ext,
            &files.client_key,
            &files.client_cert,
            &files.ca_cert,
            &ca_key,
        )?;
        Ok(files)
    }
}

fn openssl(args: &[&str]) -> Command {
    let mut cmd = Command::new("openssl");
    cmd.args(args);
    cmd
}

/// Makes a key and a certificate for `subject`, signed by the CA.
#[allow(clippy::too_many_arguments)]
fn issue(
    dir: &Path,
    stem: &str,
    subject: &str,
    extensions: &str,
    key: &Path,
    cert: &Path,
    ca_cert: &Path,
    ca_key: &Path,
) -> io::Result<()> {
    let csr = dir.join(format!("{stem}.csr"));
    let ext = dir.join(format!("{stem}.ext"));
    fs::write(&ext, extensions)?;

    let mut req = openssl(&["req", "-new", "-newkey", "rsa:2048", "-nodes"]);
    req.arg("-keyout")
        .arg(key)
        .arg("-out")
        .arg(&csr)
        .args(["-subj", subject]);
    run(req)?;

    let mut sign = openssl(&["x509", "-req", "-days", DAYS, "-set_serial"]);
    sign.arg(format!("0x{:016x}", crate::process::random_u64() >> 1))
        .arg("-in")
        .arg(&csr)
        .arg("-CA")
        .arg(ca_cert)
        .arg("-CAkey")
        .arg(ca_key)
        .arg("-extfile")
        .arg(&ext)
        .arg("-out")
        .arg(cert);
    run(sign)?;
    let _ = fs::remove_file(&csr);
    let _ = fs::remove_file(&ext);
    Ok(())
}
