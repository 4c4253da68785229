//! Byte streams to a remote: TCP, unix socket, or TLS over TCP.
//!
//! TLS follows what OVS's own stream-ssl does, because OVN deployments are
//! built around it: the server's chain must lead to the configured CA and
//! the client presents its own certificate, but the certificate's name is not
//! matched against the address dialled (OVN certificates usually name a
//! chassis or a role, not an IP).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};
use tokio_rustls::rustls::{
    self,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    client::WebPkiServerVerifier,
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer, ServerName, UnixTime},
    CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_rustls::TlsConnector;

use crate::error::{Error, Result};
use crate::remote::Remote;

/// Files for `ssl:` remotes, as OVN passes them (`-p`, `-c`, `-C`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsConfig {
    pub ca_cert: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

pub type BoxStream = Box<dyn Stream>;

/// Opens a stream to `remote` within `timeout`.
pub async fn connect(
    remote: &Remote,
    tls: Option<&TlsConfig>,
    timeout: Duration,
) -> Result<BoxStream> {
    let fut = async {
        match remote {
            Remote::Unix(path) => Ok(Box::new(UnixStream::connect(path).await?) as BoxStream),
            Remote::Tcp { host, port } => {
                let s = TcpStream::connect((host.as_str(), *port)).await?;
                s.set_nodelay(true)?;
                Ok(Box::new(s) as BoxStream)
            }
            Remote::Ssl { host, port } => {
                let tls = tls.ok_or_else(|| {
                    Error::Tls(format!("{remote} needs a CA, certificate and private key"))
                })?;
                let connector = tls_connector(tls)?;
                let s = TcpStream::connect((host.as_str(), *port)).await?;
                s.set_nodelay(true)?;
                let name = ServerName::try_from(host.clone())
                    .map_err(|e| Error::Tls(format!("server name {host:?}: {e}")))?;
                let stream = connector
                    .connect(name, s)
                    .await
                    .map_err(|e| Error::Tls(format!("handshake with {remote}: {e}")))?;
                Ok(Box::new(stream) as BoxStream)
            }
        }
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| Error::Timeout(format!("connecting to {remote}")))?
}

fn tls_connector(tls: &TlsConfig) -> Result<TlsConnector> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(&tls.ca_cert)? {
        roots
            .add(cert)
            .map_err(|e| Error::Tls(format!("CA {}: {e}", tls.ca_cert.display())))?;
    }
    let chain = read_certs(&tls.client_cert)?;
    let key = PrivateKeyDer::from_pem_file(&tls.client_key)
        .map_err(|e| Error::Tls(format!("private key {}: {e}", tls.client_key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| Error::Tls(format!("CA {}: {e}", tls.ca_cert.display())))?;
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(CaOnlyVerifier { inner }))
        .with_client_auth_cert(chain, key)
        .map_err(|e| Error::Tls(format!("certificate {}: {e}", tls.client_cert.display())))?;
    Ok(TlsConnector::from(Arc::new(config)))
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| Error::Tls(format!("{}: {e}", path.display())))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Tls(format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(Error::Tls(format!("{}: no certificate", path.display())));
    }
    Ok(certs)
}

/// Checks the chain and signatures like any TLS client, but accepts a
/// certificate whose name does not match the address (see the module doc).
#[derive(Debug)]
struct CaOnlyVerifier {
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for CaOnlyVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
