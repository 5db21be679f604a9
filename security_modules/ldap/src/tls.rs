//! The rustls client configuration for `ldaps://` and StartTLS.
//!
//! Built once, when the source is created, with aws-lc-rs named explicitly as
//! the crypto provider (the only one in Hearth's graph; ldap3's own default
//! configuration would rely on a process-wide default). Certificates are
//! always verified: there is no switch to turn verification off.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, RootCertStore};

use crate::config::LdapConfigError;

/// A client configuration trusting the CAs in `ca_file` (PEM), or the system
/// trust store when there is none. TLS 1.2 and 1.3 only.
pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, LdapConfigError> {
    let roots = match ca_file {
        Some(path) => roots_from_pem(path)?,
        None => system_roots()?,
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| LdapConfigError::new("ca_file", format!("TLS set-up failed: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn roots_from_pem(path: &Path) -> Result<RootCertStore, LdapConfigError> {
    let shown = path.display();
    let fail = |why: String| LdapConfigError::new("ca_file", format!("{shown}: {why}"));
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path).map_err(|e| fail(e.to_string()))?;
    for cert in certs {
        let cert = cert.map_err(|e| fail(e.to_string()))?;
        roots
            .add(cert)
            .map_err(|e| fail(format!("not a usable CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(fail("holds no PEM certificate".to_owned()));
    }
    Ok(roots)
}

fn system_roots() -> Result<RootCertStore, LdapConfigError> {
    let mut roots = RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        return Err(LdapConfigError::new(
            "ca_file",
            "the system trust store holds no CA certificate; name the directory's CA in ca_file",
        ));
    }
    Ok(roots)
}
