//! The TLS client set-up of Hearth's outbound connections (an LDAP
//! directory, an OIDC issuer): rustls with aws-lc-rs named as the crypto
//! provider (the only one in the graph), TLS 1.2 and 1.3, certificates
//! always verified — there is no switch to turn verification off.
//!
//! Errors are texts for the caller to put in its own configuration error
//! (they name the file, never its content).

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, RootCertStore};

/// A client configuration trusting `roots`.
pub fn client_config(roots: RootCertStore) -> Result<ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS set-up failed: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The CA certificates of a PEM file; at least one.
pub fn roots_from_pem(path: &Path) -> Result<RootCertStore, String> {
    let shown = path.display();
    let fail = |why: String| format!("{shown}: {why}");
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

/// The system trust store's certificates (possibly none: the caller decides
/// whether that will do).
pub fn system_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    roots
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_file_without_certificates_is_refused() {
        let dir = std::env::temp_dir().join(format!("hearth-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = roots_from_pem(&empty).err().unwrap();
        assert!(e.contains("holds no PEM certificate"), "{e}");
        let e = roots_from_pem(&dir.join("missing.pem")).err().unwrap();
        assert!(e.contains("missing.pem"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
