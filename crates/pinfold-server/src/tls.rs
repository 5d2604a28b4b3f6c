//! HTTPS: the rustls configuration built from `[server] tls_cert` / `tls_key`, swapped in
//! place on reload (SIGHUP) so that the listener stays open and only new connections see the
//! new certificate.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;
use rustls::ServerConfig as RustlsConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why a certificate or key could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// Only one of `tls_cert` and `tls_key` is set.
    #[error("tls_cert and tls_key go together: set both or neither")]
    Incomplete,
    /// A file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A file holds no usable PEM item.
    #[error("{path}: {what}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// rustls refused the pair (e.g. the key does not match the certificate).
    #[error("certificate {cert} with key {key}: {source}")]
    Rustls {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls' reason.
        #[source]
        source: rustls::Error,
    },
}

/// The certificate in force, reloadable from its files.
#[derive(Clone, Debug)]
pub struct TlsCertificate {
    cert: PathBuf,
    key: PathBuf,
    current: Arc<RwLock<Arc<RustlsConfig>>>,
}

impl TlsCertificate {
    /// `None` when neither file is configured.
    ///
    /// # Errors
    /// When only one is configured or the files do not hold a usable certificate and key.
    pub fn from_config(
        cert: Option<&Path>,
        key: Option<&Path>,
    ) -> Result<Option<TlsCertificate>, TlsError> {
        match (cert, key) {
            (None, None) => Ok(None),
            (Some(cert), Some(key)) => TlsCertificate::load(cert, key).map(Some),
            _ => Err(TlsError::Incomplete),
        }
    }

    /// Loads the certificate chain at `cert` and its private key at `key` (PEM).
    ///
    /// # Errors
    /// When the files cannot be read or rustls refuses them.
    pub fn load(cert: &Path, key: &Path) -> Result<TlsCertificate, TlsError> {
        let config = build(cert, key)?;
        Ok(TlsCertificate {
            cert: cert.to_owned(),
            key: key.to_owned(),
            current: Arc::new(RwLock::new(config)),
        })
    }

    /// Reads the files again; on success new connections get the new certificate, on failure
    /// the one in force stays.
    ///
    /// # Errors
    /// As [`TlsCertificate::load`].
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = build(&self.cert, &self.key)?;
        *self.current.write() = config;
        Ok(())
    }

    /// The configuration for the next handshake.
    pub(crate) fn current(&self) -> Arc<RustlsConfig> {
        Arc::clone(&self.current.read())
    }

    /// The certificate file.
    pub fn cert_path(&self) -> &Path {
        &self.cert
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

fn build(cert_path: &Path, key_path: &Path) -> Result<Arc<RustlsConfig>, TlsError> {
    let pem_error = |path: &Path, what: String| TlsError::Pem {
        path: path.to_owned(),
        what,
    };
    let certs = CertificateDer::pem_slice_iter(&read(cert_path)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(cert_path, format!("not a PEM certificate chain: {e}")))?;
    if certs.is_empty() {
        return Err(pem_error(
            cert_path,
            "no CERTIFICATE block found".to_owned(),
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(&read(key_path)?).map_err(|e| {
        pem_error(
            key_path,
            format!("no PEM private key (PKCS#8, PKCS#1 or SEC1): {e}"),
        )
    })?;
    // The ring provider, as reqwest's rustls uses: one crypto backend in the binary.
    let mut config =
        RustlsConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
            .map_err(|source| TlsError::Rustls {
                cert: cert_path.to_owned(),
                key: key_path.to_owned(),
                source,
            })?;
    // HTTP/2 first, HTTP/1.1 for clients that do not speak it.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
