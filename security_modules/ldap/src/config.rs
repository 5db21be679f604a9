//! The configuration of an LDAP source, and its validation.
//!
//! `LdapConfig` is plain data (the application fills it from its own typed
//! configuration); [`crate::LdapSource::new`] validates it and refuses to build
//! a source from a configuration it would have to guess about.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// The placeholder replaced by the (escaped) user name in a DN template or a
/// search filter.
pub const USER_PLACEHOLDER: &str = "{user}";

/// How to reach, trust and query the directory.
#[derive(Clone)]
pub struct LdapConfig {
    /// `ldap://host:port` or `ldaps://host:port` (no DN, filter or other URL
    /// parts). The host is also the name checked in the server certificate.
    pub url: String,
    /// Upgrade an `ldap://` connection with StartTLS before anything is sent.
    /// Not allowed with `ldaps://` (already TLS).
    pub starttls: bool,
    /// PEM file of the CA certificate(s) that sign the directory's certificate.
    /// When set, only these CAs are trusted; when unset, the system's trust
    /// store is used. Only meaningful with `ldaps://` or `starttls`.
    pub ca_file: Option<PathBuf>,
    /// How the user's DN is found and the password checked.
    pub bind: BindMode,
    /// DN of a group the user must be a member of (otherwise
    /// [`hearth_security::CredentialError::MissingGroup`]).
    pub required_group: Option<String>,
    /// Group DN → role name. A user receives the role of every group they are a
    /// member of.
    pub group_roles: Vec<(String, String)>,
    /// Where groups are searched (subtree). Required when `required_group` or
    /// `group_roles` is set.
    pub group_base_dn: Option<String>,
    /// The group attribute that lists members by DN: `member` (groupOfNames,
    /// Active Directory), `uniqueMember` (groupOfUniqueNames). For nested
    /// groups in Active Directory, `member:1.2.840.113556.1.4.1941:`.
    pub membership_attribute: String,
    /// Bound on a whole verification: connecting, TLS, and every operation.
    pub timeout: Duration,
}

/// How a user name becomes a DN to bind as.
#[derive(Clone)]
pub enum BindMode {
    /// Bind directly as the DN made by replacing `{user}` with the user name
    /// (escaped for a DN), e.g. `uid={user},ou=people,dc=example,dc=org`.
    DnTemplate(String),
    /// Bind as a service account, search for the user, then bind as the DN
    /// found. The only choice for Active Directory (`(sAMAccountName={user})`)
    /// and for directories where users live in several branches.
    Search {
        /// Where users are searched (subtree).
        base_dn: String,
        /// Filter with `{user}` replaced by the user name (escaped for a
        /// filter), e.g. `(uid={user})` or `(&(objectClass=user)(sAMAccountName={user}))`.
        filter: String,
        /// The service account's DN.
        service_dn: String,
        /// The service account's password (never printed by `Debug`).
        service_password: String,
    },
}

impl LdapConfig {
    /// The default bound on a verification.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
    /// The default membership attribute.
    pub const DEFAULT_MEMBERSHIP_ATTRIBUTE: &'static str = "member";

    /// A configuration with the defaults: no TLS settings, no groups, the
    /// `member` attribute and a 5 s timeout.
    pub fn new(url: impl Into<String>, bind: BindMode) -> LdapConfig {
        LdapConfig {
            url: url.into(),
            starttls: false,
            ca_file: None,
            bind,
            required_group: None,
            group_roles: Vec::new(),
            group_base_dn: None,
            membership_attribute: Self::DEFAULT_MEMBERSHIP_ATTRIBUTE.to_owned(),
            timeout: Self::DEFAULT_TIMEOUT,
        }
    }

    /// Whether passwords travel in clear (`ldap://` without StartTLS): the
    /// application should refuse or loudly warn unless the directory is on
    /// the same host.
    pub fn is_plaintext(&self) -> bool {
        !self.starttls
            && !self
                .url
                .trim_start()
                .to_ascii_lowercase()
                .starts_with("ldaps:")
    }
}

impl fmt::Debug for LdapConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LdapConfig")
            .field("url", &self.url)
            .field("starttls", &self.starttls)
            .field("ca_file", &self.ca_file)
            .field("bind", &self.bind)
            .field("required_group", &self.required_group)
            .field("group_roles", &self.group_roles)
            .field("group_base_dn", &self.group_base_dn)
            .field("membership_attribute", &self.membership_attribute)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl fmt::Debug for BindMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BindMode::DnTemplate(template) => f.debug_tuple("DnTemplate").field(template).finish(),
            BindMode::Search {
                base_dn,
                filter,
                service_dn,
                service_password: _,
            } => f
                .debug_struct("Search")
                .field("base_dn", base_dn)
                .field("filter", filter)
                .field("service_dn", service_dn)
                .field("service_password", &"***")
                .finish(),
        }
    }
}

/// Why a configuration was refused. The text names the setting (by its
/// field name) and never holds a password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LdapConfigError {
    /// The field at fault (`url`, `bind.filter`, `ca_file`, …).
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

impl LdapConfigError {
    pub(crate) fn new(field: &'static str, reason: impl Into<String>) -> LdapConfigError {
        LdapConfigError {
            field,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for LdapConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ldap.{}: {}", self.field, self.reason)
    }
}

impl std::error::Error for LdapConfigError {}
