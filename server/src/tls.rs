//! TLS for a listener (rustls, aws-lc-rs): a certificate chain and a key
//! from PEM files, read once when serving starts. HTTP/2 and HTTP/1.1 are
//! offered by ALPN, so gRPC clients (which insist on `h2`) and HTTP clients
//! share one listener as they do without TLS.
//!
//! It must not decide whether TLS is needed; the daemons' configs say so.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::crypto::aws_lc_rs;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The PEM files of a listener's certificate chain and private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Why a certificate or key could not be used. Names the file, never its
/// content.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the TLS certificate {path}: {reason}")]
    Cert { path: PathBuf, reason: String },
    #[error("cannot read the TLS key {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("the TLS certificate {cert} and key {key} do not make a server config: {reason}")]
    Config {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
}

impl TlsFiles {
    /// Reads both files and builds the server side of TLS.
    pub fn acceptor(&self) -> Result<TlsAcceptor, TlsError> {
        let cert_error = |reason: String| TlsError::Cert {
            path: self.cert.clone(),
            reason,
        };
        let certs = CertificateDer::pem_file_iter(&self.cert)
            .map_err(|error| cert_error(error.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| cert_error(error.to_string()))?;
        if certs.is_empty() {
            return Err(cert_error("no certificate in the file".to_owned()));
        }
        let key = PrivateKeyDer::from_pem_file(&self.key).map_err(|error| TlsError::Key {
            path: self.key.clone(),
            reason: error.to_string(),
        })?;
        let config_error = |reason: String| TlsError::Config {
            cert: self.cert.clone(),
            key: self.key.clone(),
            reason,
        };
        let mut config =
            ServerConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(|error| config_error(error.to_string()))?
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .map_err(|error| config_error(error.to_string()))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }

    /// Both paths, from a config's two optional settings: `None` when
    /// neither is set, an error naming the missing one when one is.
    pub fn from_settings(
        cert: Option<&Path>,
        key: Option<&Path>,
        section: &str,
    ) -> Result<Option<Self>, String> {
        match (cert, key) {
            (None, None) => Ok(None),
            (Some(cert), Some(key)) => Ok(Some(Self {
                cert: cert.to_owned(),
                key: key.to_owned(),
            })),
            (Some(_), None) => Err(format!(
                "`{section}.tls_cert` is set but `{section}.tls_key` is not: TLS needs both"
            )),
            (None, Some(_)) => Err(format!(
                "`{section}.tls_key` is set but `{section}.tls_cert` is not: TLS needs both"
            )),
        }
    }
}

/// A bound socket and, if it speaks TLS, its certificate and key: what
/// [`crate::serve`] serves. A bare `TcpListener` is plain HTTP.
#[derive(Debug)]
pub struct Listener {
    pub(crate) tcp: TcpListener,
    pub(crate) tls: Option<TlsFiles>,
}

impl Listener {
    /// `tcp`, with TLS when `tls` is given.
    pub fn new(tcp: TcpListener, tls: Option<TlsFiles>) -> Self {
        Self { tcp, tls }
    }

    /// The address it is bound to.
    pub fn local_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.tcp.local_addr()
    }
}

impl From<TcpListener> for Listener {
    fn from(tcp: TcpListener) -> Self {
        Self::new(tcp, None)
    }
}
