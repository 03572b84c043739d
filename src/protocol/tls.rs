//! TLS for both legs, with rustls and its `ring` provider: termination towards clients (a
//! certificate and key in PEM files) and encryption towards the upstream server in one of
//! libpq's `sslmode`s.
//!
//! Both legs advertise the ALPN protocol `postgresql`, which PostgreSQL 17+ requires for direct
//! TLS and which older servers ignore.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig};

/// The ALPN protocol id PostgreSQL registered.
pub(crate) const ALPN_POSTGRESQL: &[u8] = b"postgresql";

/// A TLS configuration problem, found when ddlgate starts.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("cannot load {what} from {}: {reason}", path.display())]
    Load {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    /// rustls refused the configuration (e.g. the key does not match the certificate).
    #[error("invalid TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// How ddlgate protects its connection to the upstream server; the names are libpq's
/// `sslmode` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum UpstreamTlsMode {
    /// Plaintext.
    #[default]
    Disable,
    /// Encrypted; the server's certificate is not checked.
    Require,
    /// Encrypted; the certificate must chain to the configured CA (the name is not checked).
    VerifyCa,
    /// Encrypted; the certificate must chain to the configured CA and name the upstream host.
    VerifyFull,
}

impl fmt::Display for UpstreamTlsMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Disable => "disable",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        })
    }
}

/// What ddlgate presents to clients that ask for TLS.
#[derive(Debug, Clone)]
pub struct ClientTls {
    /// The rustls server configuration.
    pub config: Arc<ServerConfig>,
    /// ddlgate's own end-entity certificate. SCRAM channel binding (`tls-server-end-point`)
    /// hashes the server certificate, so it can pass through ddlgate only when this is the very
    /// certificate the upstream server presents.
    pub leaf: CertificateDer<'static>,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let load_err = |reason: String| TlsError::Load {
        what: "certificates",
        path: path.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| load_err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| load_err(e.to_string()))?;
    if certs.is_empty() {
        return Err(load_err("the file holds no PEM certificate".into()));
    }
    Ok(certs)
}

/// Loads the certificate chain and private key ddlgate presents to clients.
pub(crate) fn client_facing(cert: &Path, key: &Path) -> Result<ClientTls, TlsError> {
    let certs = load_certs(cert)?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Load {
        what: "the private key",
        path: key.to_owned(),
        reason: e.to_string(),
    })?;
    let leaf = certs.first().cloned().ok_or_else(|| TlsError::Load {
        what: "certificates",
        path: cert.to_owned(),
        reason: "the file holds no PEM certificate".into(),
    })?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![ALPN_POSTGRESQL.to_vec()];
    Ok(ClientTls {
        config: Arc::new(config),
        leaf,
    })
}

/// Builds the TLS configuration for connections to the upstream, or `None` for `disable`.
pub(crate) fn upstream(
    mode: UpstreamTlsMode,
    ca_file: Option<&Path>,
) -> Result<Option<Arc<ClientConfig>>, TlsError> {
    let roots = || -> Result<(RootCertStore, Vec<CertificateDer<'static>>), TlsError> {
        let Some(path) = ca_file else {
            return Err(TlsError::Load {
                what: "the CA certificate",
                path: PathBuf::new(),
                reason: format!("upstream_tls = \"{mode}\" needs upstream_tls_ca"),
            });
        };
        let certs = load_certs(path)?;
        let mut store = RootCertStore::empty();
        for cert in &certs {
            store.add(cert.clone()).map_err(|e| TlsError::Load {
                what: "the CA certificate",
                path: path.to_owned(),
                reason: e.to_string(),
            })?;
        }
        Ok((store, certs))
    };
    let builder =
        ClientConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let mut config = match mode {
        UpstreamTlsMode::Disable => return Ok(None),
        UpstreamTlsMode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(EncryptOnly(provider())))
            .with_no_client_auth(),
        UpstreamTlsMode::VerifyCa => {
            let (store, pinned) = roots()?;
            let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider())
                .build()
                .map_err(|e| TlsError::Rustls(rustls::Error::General(e.to_string())))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(ChainOnly { inner, pinned }))
                .with_no_client_auth()
        }
        UpstreamTlsMode::VerifyFull => builder
            .with_root_certificates(roots()?.0)
            .with_no_client_auth(),
    };
    config.alpn_protocols = vec![ALPN_POSTGRESQL.to_vec()];
    Ok(Some(Arc::new(config)))
}

/// `sslmode=require`: encrypt, but accept whatever certificate the server shows. Handshake
/// signatures are still checked, so the server must hold the key of the certificate it sends.
#[derive(Debug)]
struct EncryptOnly(Arc<CryptoProvider>);

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `sslmode=verify-ca`: the chain must lead to the CA file, whatever name the certificate
/// carries. A self-signed server certificate listed in the CA file itself is accepted too, as
/// libpq does.
#[derive(Debug)]
struct ChainOnly {
    inner: Arc<WebPkiServerVerifier>,
    pinned: Vec<CertificateDer<'static>>,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self
            .pinned
            .iter()
            .any(|c| c.as_ref() == end_entity.as_ref())
        {
            return Ok(ServerCertVerified::assertion());
        }
        match self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
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
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    #[test]
    fn verify_modes_need_a_ca_file() {
        let err = upstream(UpstreamTlsMode::VerifyFull, None).unwrap_err();
        assert!(
            err.to_string()
                .contains("upstream_tls = \"verify-full\" needs upstream_tls_ca"),
            "{err}"
        );
    }

    #[test]
    fn disable_builds_no_config_and_require_needs_no_ca() {
        assert!(upstream(UpstreamTlsMode::Disable, None).unwrap().is_none());
        let cfg = upstream(UpstreamTlsMode::Require, None).unwrap().unwrap();
        assert_eq!(cfg.alpn_protocols, vec![ALPN_POSTGRESQL.to_vec()]);
    }

    #[test]
    fn missing_certificate_file_names_the_path() {
        let err = client_facing(
            Path::new("/nonexistent/cert.pem"),
            Path::new("/nonexistent/key.pem"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/cert.pem"), "{err}");
    }

    #[test]
    fn certificate_and_key_load_and_keep_the_leaf() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("c.pem"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("k.pem"), key.serialize_pem()).unwrap();
        let tls = client_facing(&dir.path().join("c.pem"), &dir.path().join("k.pem")).unwrap();
        assert_eq!(tls.leaf.as_ref(), cert.der().as_ref());
        assert_eq!(tls.config.alpn_protocols, vec![ALPN_POSTGRESQL.to_vec()]);
    }
}
