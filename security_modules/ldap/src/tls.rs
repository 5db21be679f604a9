//! The rustls client configuration for `ldaps://` and StartTLS.
//!
//! Built once, when the source is created, with aws-lc-rs named explicitly as
//! the crypto provider (the only one in Hearth's graph; ldap3's own default
//! configuration would rely on a process-wide default). Certificates are
//! always verified: there is no switch to turn verification off.

use std::path::Path;
use std::sync::Arc;

use rustls::ClientConfig;

use crate::config::LdapConfigError;

/// A client configuration trusting the CAs in `ca_file` (PEM), or the system
/// trust store when there is none. TLS 1.2 and 1.3 only.
pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, LdapConfigError> {
    let err = |message: String| LdapConfigError::new("ca_file", message);
    let roots = match ca_file {
        Some(path) => hearth_tls::roots_from_pem(path).map_err(err)?,
        None => hearth_tls::system_roots(),
    };
    if roots.is_empty() {
        return Err(err(
            "the system trust store holds no CA certificate; name the directory's CA in ca_file"
                .into(),
        ));
    }
    hearth_tls::client_config(roots).map(Arc::new).map_err(err)
}
