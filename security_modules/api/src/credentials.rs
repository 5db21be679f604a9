//! Password credential sources: where a user name and password are checked
//! (the local user store, an LDAP directory). The HTTP Basic module asks a
//! source and turns what it answers into a [`crate::Principal`].
//!
//! A source never fails open: anything other than a positive answer from the
//! authority (wrong password, unknown user, a directory that is down, a
//! missing group) is an error, and the request is refused.

use std::future::Future;

/// A user whose password a source accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedUser {
    /// The user name as the source knows it (normalised as the source does).
    pub name: String,
    /// Roles from the source (LDAP groups mapped through configuration, the
    /// local store's roles); the caller turns roles into permissions.
    pub roles: Vec<String>,
    /// The kind of source that accepted the password (`local`, `ldap`).
    pub source: &'static str,
    /// The directory entry or other stable identifier, for the shadow user row.
    pub external_id: Option<String>,
}

/// Why a source refused. `Display` texts are safe for logs and audit rows:
/// they never hold the password, and name the user only when the caller does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialError {
    /// Unknown user or wrong password (deliberately not told apart).
    BadCredentials,
    /// An empty password: refused before any bind or hash (an LDAP simple bind
    /// with an empty password is an anonymous bind that "succeeds").
    EmptyPassword,
    /// The account is locked (too many failures, or by an administrator).
    Locked,
    /// The password was right but the user lacks a group the source requires.
    MissingGroup,
    /// The source could not answer (directory down, TLS failure, timeout): the
    /// request is refused, never let through.
    Unavailable(String),
}

impl std::fmt::Display for CredentialError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CredentialError::BadCredentials => f.write_str("unknown user or wrong password"),
            CredentialError::EmptyPassword => f.write_str("empty passwords are refused"),
            CredentialError::Locked => f.write_str("the account is locked"),
            CredentialError::MissingGroup => {
                f.write_str("the user is not in the group this source requires")
            }
            CredentialError::Unavailable(why) => {
                write!(f, "the credential source is unavailable: {why}")
            }
        }
    }
}

impl std::error::Error for CredentialError {}

/// Checks a user name and password.
pub trait CredentialSource: Send + Sync {
    fn verify(
        &self,
        user: &str,
        password: &str,
    ) -> impl Future<Output = Result<VerifiedUser, CredentialError>> + Send;
}
