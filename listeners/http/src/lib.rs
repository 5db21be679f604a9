//! HTTP(S) listener plumbing shared by every HTTP listener kind: the bind policy
//! and the rustls server configuration (TLS 1.2 and 1.3 only, aws-lc-rs).
//! Knows nothing of FHIR, stores or security modules.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum ListenerError {
    #[error(
        "refusing to serve plain HTTP on {0}, which is not a loopback address: configure TLS (http.tls.cert and http.tls.key) or bind 127.0.0.1"
    )]
    InsecureBind(SocketAddr),
    #[error("TLS certificate {path}: {message}")]
    Certificate { path: String, message: String },
    #[error("TLS private key {path}: {message}")]
    PrivateKey { path: String, message: String },
    #[error("TLS configuration: {0}")]
    Tls(String),
}

/// Plain HTTP only on loopback, or where the configuration says so
/// explicitly (`allow_insecure`, e.g. behind a TLS-terminating proxy on a
/// private network); anything else needs TLS.
pub fn check_bind(addr: SocketAddr, tls: bool, allow_insecure: bool) -> Result<(), ListenerError> {
    if tls || allow_insecure || addr.ip().is_loopback() {
        Ok(())
    } else {
        Err(ListenerError::InsecureBind(addr))
    }
}

/// A rustls server configuration from PEM files: TLS 1.2 and 1.3 only, the
/// provider's default (strong) cipher suites. With `client_ca`, clients may
/// (or, with `require_client_cert`, must) present a certificate issued by one
/// of its CAs; one that does not verify ends the handshake.
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
    require_client_cert: bool,
) -> Result<Arc<ServerConfig>, ListenerError> {
    let cert_err = |message: String| ListenerError::Certificate {
        path: cert.display().to_string(),
        message,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| cert_err(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| cert_err(e.to_string()))?;
    if certs.is_empty() {
        return Err(cert_err("no certificate found".into()));
    }
    // The key error never includes file content.
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|_| ListenerError::PrivateKey {
        path: key.display().to_string(),
        message: "no readable PEM private key".into(),
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| ListenerError::Tls(e.to_string()))?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let ca_err = |message: String| ListenerError::Certificate {
                path: ca.display().to_string(),
                message,
            };
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(ca).map_err(|e| ca_err(e.to_string()))? {
                roots
                    .add(c.map_err(|e| ca_err(e.to_string()))?)
                    .map_err(|e| ca_err(e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(ca_err("no CA certificate found".into()));
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            );
            let verifier = if require_client_cert {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            builder.with_client_cert_verifier(
                verifier
                    .build()
                    .map_err(|e| ListenerError::Tls(e.to_string()))?,
            )
        }
    };
    let config = builder
        .with_single_cert(certs, key_der)
        .map_err(|e| ListenerError::Tls(e.to_string()))?;
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_on_loopback() {
        assert!(check_bind("127.0.0.1:8080".parse().unwrap(), false, false).is_ok());
        assert!(check_bind("[::1]:8080".parse().unwrap(), false, false).is_ok());
        assert!(check_bind("0.0.0.0:8080".parse().unwrap(), false, false).is_err());
        assert!(check_bind("0.0.0.0:8080".parse().unwrap(), false, true).is_ok());
        assert!(check_bind("10.1.2.3:8080".parse().unwrap(), true, false).is_ok());
    }

    #[test]
    fn missing_files_are_named() {
        let e = server_config(
            Path::new("/nonexistent/cert.pem"),
            Path::new("/nonexistent/key.pem"),
            None,
            false,
        )
        .unwrap_err();
        assert!(e.to_string().contains("/nonexistent/cert.pem"));
    }
}
