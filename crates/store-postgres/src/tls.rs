//! Connection options: `sslmode` and `sslrootcert` are read from the URL here (the
//! driver's own parser knows neither `verify-full` nor rustls) and turned into a
//! rustls client configuration.
//!
//! - `disable` (the default when absent): plain TCP, for loopback and sockets.
//! - `require`: TLS is mandatory, the certificate is not verified (libpq semantics).
//! - `verify-full`: TLS with the chain checked against `sslrootcert` (a PEM file)
//!   or the system roots, and the host name checked.

use std::sync::Arc;

use diesel::ConnectionError;
use diesel_async::AsyncPgConnection;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Require,
    VerifyFull,
}

/// A database URL that could not be used. The message never repeats the URL
/// (it may hold a password).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UrlError(pub String);

#[derive(Clone)]
pub struct ConnectOptions {
    config: tokio_postgres::Config,
    tls: Option<Arc<ClientConfig>>,
    pub mode: SslMode,
}

impl ConnectOptions {
    pub fn parse(url: &str) -> Result<Self, UrlError> {
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut mode = SslMode::Disable;
        let mut root_cert = None;
        let mut rest = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("sslmode", v)) => {
                    mode = match v {
                        "disable" => SslMode::Disable,
                        "require" => SslMode::Require,
                        "verify-full" => SslMode::VerifyFull,
                        other => {
                            return Err(UrlError(format!(
                                "sslmode `{other}` is not supported: use disable, require or verify-full"
                            )));
                        }
                    }
                }
                Some(("sslrootcert", v)) => root_cert = Some(v.to_owned()),
                _ => rest.push(pair),
            }
        }
        let stripped = if rest.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", rest.join("&"))
        };
        let mut config: tokio_postgres::Config = stripped
            .parse()
            .map_err(|_| UrlError("the database URL could not be parsed".into()))?;
        let tls = match mode {
            SslMode::Disable => {
                config.ssl_mode(tokio_postgres::config::SslMode::Disable);
                None
            }
            SslMode::Require => {
                config.ssl_mode(tokio_postgres::config::SslMode::Require);
                Some(Arc::new(unverified_config()?))
            }
            SslMode::VerifyFull => {
                config.ssl_mode(tokio_postgres::config::SslMode::Require);
                Some(Arc::new(verified_config(root_cert.as_deref())?))
            }
        };
        Ok(ConnectOptions { config, tls, mode })
    }

    pub(crate) async fn establish(&self) -> Result<AsyncPgConnection, ConnectionError> {
        let bad = |e: tokio_postgres::Error| ConnectionError::BadConnection(e.to_string());
        match &self.tls {
            None => {
                let (client, conn) = self
                    .config
                    .connect(tokio_postgres::NoTls)
                    .await
                    .map_err(bad)?;
                AsyncPgConnection::try_from_client_and_connection(client, conn).await
            }
            Some(tls) => {
                let tls = tokio_postgres_rustls::MakeRustlsConnect::new((**tls).clone());
                let (client, conn) = self.config.connect(tls).await.map_err(bad)?;
                AsyncPgConnection::try_from_client_and_connection(client, conn).await
            }
        }
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn verified_config(root_cert: Option<&str>) -> Result<ClientConfig, UrlError> {
    let mut roots = RootCertStore::empty();
    match root_cert {
        Some(path) => {
            for cert in CertificateDer::pem_file_iter(path)
                .map_err(|_| UrlError("sslrootcert could not be read".into()))?
            {
                let cert = cert.map_err(|_| UrlError("sslrootcert is not valid PEM".into()))?;
                roots
                    .add(cert)
                    .map_err(|_| UrlError("sslrootcert holds an unusable certificate".into()))?;
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    if roots.is_empty() {
        return Err(UrlError(
            "sslmode=verify-full found no root certificate".into(),
        ));
    }
    ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| UrlError(format!("TLS configuration: {e}")))
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
}

fn unverified_config() -> Result<ClientConfig, UrlError> {
    let provider = provider();
    let verifier = Arc::new(EncryptOnly(provider.signature_verification_algorithms));
    ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| UrlError(format!("TLS configuration: {e}")))
        .map(|b| {
            b.dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_no_client_auth()
        })
}

/// `sslmode=require`: the channel is encrypted and the handshake signature is
/// checked, but the certificate chain is not (as libpq does for `require`).
#[derive(Debug)]
struct EncryptOnly(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
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
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_is_parsed_and_stripped() {
        let o = ConnectOptions::parse("postgres://u:p@db.example/h?sslmode=require").unwrap();
        assert_eq!(o.mode, SslMode::Require);
        assert_eq!(o.config.get_dbname(), Some("h"));
        let o = ConnectOptions::parse("postgres://u@127.0.0.1:5/h").unwrap();
        assert_eq!(o.mode, SslMode::Disable);
        let e = ConnectOptions::parse("postgres://u:secret@h/db?sslmode=allow")
            .err()
            .unwrap();
        assert!(e.0.contains("allow") && !e.0.contains("secret"));
        let e =
            ConnectOptions::parse("postgres://u@h/db?sslmode=verify-full&sslrootcert=/nonexistent")
                .err()
                .unwrap();
        assert!(e.0.contains("sslrootcert"));
    }
}
