//! LDAP / Active Directory credential source: [`LdapSource`] checks a user
//! name and password by binding to a directory as that user, reads the user's
//! groups, and answers a [`VerifiedUser`] whose roles come from configured
//! group → role pairs.
//!
//! # Never fail open
//!
//! Only a successful bind **as the user, with the password given** is an
//! acceptance; everything else is a refusal:
//!
//! - an empty password is refused before any network I/O
//!   ([`CredentialError::EmptyPassword`]): an LDAP simple bind with a DN and
//!   an empty password is an *unauthenticated* bind that servers answer with
//!   success;
//! - a user name that is empty, too long, has control characters or leading
//!   or trailing spaces is refused without I/O (`BadCredentials`);
//! - invalid credentials (result code 49) and a user that search mode cannot
//!   find (or finds more than once) are the same `BadCredentials`;
//! - an Active Directory lockout (49 with `data 775`) is `Locked`;
//! - a directory that cannot be reached, a TLS failure, a timeout, a refused
//!   service account, a failed group search or any other result code is
//!   `Unavailable` — never "no groups", never "accepted";
//! - a user outside `required_group` is `MissingGroup`.
//!
//! User names are escaped for the context they are pasted into: RFC 4514 in a
//! DN template, RFC 4515 in a search filter ([`escape`]). The user's DN is
//! itself escaped for the group filter.
//!
//! # Connections
//!
//! Each verification opens its own connection and closes it when done; no
//! connection is pooled, so none bound as one user can ever serve another.
//! A pool would save the TCP and TLS handshakes but would have to rebind
//! (as the service account, or anonymously) between users and decide what a
//! half-failed rebind means; a cache of successful verifications in the
//! caller (keyed by a hash of the password) is the better place to save
//! round trips. `timeout` bounds a whole verification: connect, TLS or
//! StartTLS, every bind and search.
//!
//! # Exchange
//!
//! - `DnTemplate`: bind as the template DN; if groups are configured, search
//!   them bound as the user (the user must be allowed to read groups).
//! - `Search`: bind as the service account, search the user (at most one
//!   entry), bind as the DN found; if groups are configured, bind again as
//!   the service account and search them.
//!
//! Groups are found with a subtree search under `group_base_dn` for
//! `(<membership_attribute>=<user DN>)`; configured group DNs are compared
//! with the DNs returned ignoring case and spacing ([`escape::DnKey`]).
//!
//! Needs a tokio runtime (the connection is driven by a spawned task).

mod config;
pub mod escape;
mod tls;

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use hearth_security::{CredentialError, CredentialSource, VerifiedUser};
use ldap3::asn1::{PL, StructureTag};
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapResult, ResultEntry, Scope, SearchOptions};

pub use config::{BindMode, LdapConfig, LdapConfigError, USER_PLACEHOLDER};
use escape::DnKey;

/// The `source` named in every [`VerifiedUser`] this crate returns.
pub const SOURCE: &str = "ldap";

/// The longest user name sent to the directory (bytes).
pub const MAX_USER_NAME_BYTES: usize = 256;

/// LDAP result codes this source tells apart (RFC 4511, appendix A).
mod rc {
    pub const SUCCESS: u32 = 0;
    pub const SIZE_LIMIT_EXCEEDED: u32 = 4;
    pub const INVALID_DN_SYNTAX: u32 = 34;
    pub const INVALID_CREDENTIALS: u32 = 49;
}

/// A validated LDAP credential source. Cheap to share (`Arc` it); every
/// [`verify`](CredentialSource::verify) opens its own connection.
pub struct LdapSource {
    url: String,
    starttls: bool,
    tls: Option<Arc<rustls::ClientConfig>>,
    bind: BindMode,
    groups: Option<GroupLookup>,
    timeout: Duration,
}

/// The group part of the configuration, with group DNs parsed for comparison.
struct GroupLookup {
    base_dn: String,
    attribute: String,
    required: Option<DnKey>,
    roles: Vec<(DnKey, String)>,
}

impl LdapSource {
    /// Validates `config` and builds the TLS client configuration (reading
    /// `ca_file`). Every mistake is an error naming its field: a URL other
    /// than `ldap://host[:port]` or `ldaps://host[:port]`, StartTLS on
    /// `ldaps://`, a CA file without TLS, a template or filter without
    /// `{user}` or that does not parse, a service account without password,
    /// groups without `group_base_dn`, a zero timeout.
    pub fn new(config: LdapConfig) -> Result<LdapSource, LdapConfigError> {
        let url = config.url.trim().to_owned();
        let secure_scheme = check_url(&url)?;
        if config.starttls && secure_scheme {
            return Err(LdapConfigError::new(
                "starttls",
                "StartTLS is for ldap:// URLs; ldaps:// is TLS from the start",
            ));
        }
        let uses_tls = secure_scheme || config.starttls;
        if config.ca_file.is_some() && !uses_tls {
            return Err(LdapConfigError::new(
                "ca_file",
                "set, but the connection is plain ldap:// without StartTLS",
            ));
        }
        let tls = if uses_tls {
            Some(tls::client_config(config.ca_file.as_deref())?)
        } else {
            None
        };
        check_bind(&config.bind)?;
        let groups = group_lookup(&config)?;
        if config.timeout.is_zero() {
            return Err(LdapConfigError::new("timeout", "must be more than zero"));
        }
        Ok(LdapSource {
            url,
            starttls: config.starttls,
            tls,
            bind: config.bind,
            groups,
            timeout: config.timeout,
        })
    }

    /// The whole exchange with the directory, on a fresh connection.
    async fn exchange(&self, user: &str, password: &str) -> Result<VerifiedUser, CredentialError> {
        let mut ldap = self.connect().await?;
        let outcome = self.authenticate(&mut ldap, user, password).await;
        // Close politely without making the caller wait for it.
        tokio::spawn(async move {
            let _ = ldap.unbind().await;
        });
        outcome
    }

    async fn connect(&self) -> Result<Ldap, CredentialError> {
        let mut settings = LdapConnSettings::new();
        if let Some(tls) = &self.tls {
            settings = settings.set_config(tls.clone()).set_starttls(self.starttls);
        }
        let (conn, ldap) = LdapConnAsync::with_settings(settings, &self.url)
            .await
            .map_err(|e| unavailable("cannot connect to the directory", e))?;
        tokio::spawn(async move {
            if let Err(e) = conn.drive().await {
                tracing::debug!(error = %e, "LDAP connection ended with an error");
            }
        });
        Ok(ldap)
    }

    async fn authenticate(
        &self,
        ldap: &mut Ldap,
        user: &str,
        password: &str,
    ) -> Result<VerifiedUser, CredentialError> {
        let dn = match &self.bind {
            BindMode::DnTemplate(template) => {
                template.replace(USER_PLACEHOLDER, &escape::dn_value(user))
            }
            BindMode::Search {
                base_dn,
                filter,
                service_dn,
                service_password,
            } => {
                service_bind(ldap, service_dn, service_password).await?;
                let filter = filter.replace(USER_PLACEHOLDER, &escape::filter_value(user));
                find_user(ldap, base_dn, &filter).await?
            }
        };
        // An empty DN with a password is an anonymous bind to some servers.
        if dn.trim().is_empty() {
            return Err(CredentialError::BadCredentials);
        }
        let result = ldap
            .simple_bind(&dn, password)
            .await
            .map_err(|e| unavailable("the bind failed", e))?;
        user_bind_outcome(&result)?;

        let mut roles = Vec::new();
        if let Some(lookup) = &self.groups {
            if let BindMode::Search {
                service_dn,
                service_password,
                ..
            } = &self.bind
            {
                service_bind(ldap, service_dn, service_password).await?;
            }
            let groups = member_of(ldap, lookup, &dn).await?;
            if let Some(required) = &lookup.required
                && !groups.contains(required)
            {
                return Err(CredentialError::MissingGroup);
            }
            roles = lookup
                .roles
                .iter()
                .filter(|(group, _)| groups.contains(group))
                .map(|(_, role)| role.clone())
                .collect();
            roles.sort();
            roles.dedup();
        }
        Ok(VerifiedUser {
            name: user.to_owned(),
            roles,
            source: SOURCE,
            external_id: Some(dn),
        })
    }
}

impl CredentialSource for LdapSource {
    async fn verify(&self, user: &str, password: &str) -> Result<VerifiedUser, CredentialError> {
        // Before anything else, and before any I/O: see the crate docs.
        if password.is_empty() {
            return Err(CredentialError::EmptyPassword);
        }
        if !plausible_user_name(user) {
            return Err(CredentialError::BadCredentials);
        }
        match tokio::time::timeout(self.timeout, self.exchange(user, password)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(CredentialError::Unavailable(format!(
                "no answer from the directory within {} ms",
                self.timeout.as_millis()
            ))),
        }
    }
}

impl fmt::Debug for LdapSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LdapSource")
            .field("url", &self.url)
            .field("starttls", &self.starttls)
            .field("tls", &self.tls.is_some())
            .field("bind", &self.bind)
            .field("groups", &self.groups.is_some())
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// A name worth sending: not empty, not too long, no control characters (NUL
/// included), no leading or trailing white space (directories ignore it when
/// matching, so ` alice` would verify as `alice` under another name).
fn plausible_user_name(user: &str) -> bool {
    !user.is_empty()
        && user.len() <= MAX_USER_NAME_BYTES
        && !user.chars().any(char::is_control)
        && user.trim() == user
}

fn unavailable(context: &str, error: impl fmt::Display) -> CredentialError {
    CredentialError::Unavailable(format!("{context}: {error}"))
}

/// What the answer to the user's own bind means.
fn user_bind_outcome(result: &LdapResult) -> Result<(), CredentialError> {
    match result.rc {
        rc::SUCCESS => Ok(()),
        rc::INVALID_CREDENTIALS if ad_sub_code(&result.text) == Some("775") => {
            Err(CredentialError::Locked)
        }
        // A name that made a DN the server rejects is a wrong name.
        rc::INVALID_CREDENTIALS | rc::INVALID_DN_SYNTAX => Err(CredentialError::BadCredentials),
        code => Err(CredentialError::Unavailable(format!(
            "the directory refused the bind (result code {code})"
        ))),
    }
}

/// The sub-code Active Directory puts in the diagnostic text of a failed
/// bind (`…AcceptSecurityContext error, data 775, v4563`): 775 is a locked
/// account; 52e (wrong password), 525 (no such user), 530–533, 701, 773
/// stay `BadCredentials`.
fn ad_sub_code(text: &str) -> Option<&str> {
    let rest = &text[text.find("data ")? + "data ".len()..];
    let end = rest
        .find(|c: char| !c.is_ascii_hexdigit())
        .unwrap_or(rest.len());
    Some(&rest[..end])
}

async fn service_bind(ldap: &mut Ldap, dn: &str, password: &str) -> Result<(), CredentialError> {
    let result = ldap
        .simple_bind(dn, password)
        .await
        .map_err(|e| unavailable("the service account bind failed", e))?;
    if result.rc != rc::SUCCESS {
        return Err(CredentialError::Unavailable(format!(
            "the directory refused the service account (result code {})",
            result.rc
        )));
    }
    Ok(())
}

/// The DN of the one entry `filter` finds under `base_dn`.
async fn find_user(
    ldap: &mut Ldap,
    base_dn: &str,
    filter: &str,
) -> Result<String, CredentialError> {
    // Two is enough to know the answer is ambiguous.
    let search = ldap
        .with_search_options(SearchOptions::new().sizelimit(2))
        .search(base_dn, Scope::Subtree, filter, vec!["1.1"])
        .await
        .map_err(|e| unavailable("the user search failed", e))?;
    let (entries, result) = (search.0, search.1);
    match result.rc {
        rc::SUCCESS => {}
        // More than the two entries asked for.
        rc::SIZE_LIMIT_EXCEEDED => return Err(ambiguous()),
        code => {
            return Err(CredentialError::Unavailable(format!(
                "the user search failed (result code {code})"
            )));
        }
    }
    match entries.as_slice() {
        [] => Err(CredentialError::BadCredentials),
        [entry] => entry_dn(entry).ok_or_else(|| {
            CredentialError::Unavailable("the directory returned an unreadable DN".to_owned())
        }),
        _ => Err(ambiguous()),
    }
}

/// A user search that found several entries: refused like an unknown user,
/// and logged (without the name) because the operator needs to know.
fn ambiguous() -> CredentialError {
    tracing::warn!("LDAP user search matched more than one entry; refusing the login");
    CredentialError::BadCredentials
}

/// The groups (under the configured base) listing `dn` as a member.
async fn member_of(
    ldap: &mut Ldap,
    lookup: &GroupLookup,
    dn: &str,
) -> Result<HashSet<DnKey>, CredentialError> {
    let filter = format!("({}={})", lookup.attribute, escape::filter_value(dn));
    let search = ldap
        .search(&lookup.base_dn, Scope::Subtree, &filter, vec!["1.1"])
        .await
        .map_err(|e| unavailable("the group search failed", e))?;
    if search.1.rc != rc::SUCCESS {
        // A partial answer could drop a group; refuse instead.
        return Err(CredentialError::Unavailable(format!(
            "the group search failed (result code {})",
            search.1.rc
        )));
    }
    Ok(search
        .0
        .iter()
        .filter_map(entry_dn)
        .filter_map(|dn| DnKey::parse(&dn))
        .collect())
}

/// The DN of a SearchResultEntry (`[APPLICATION 4] SEQUENCE { objectName,
/// attributes }`), read without ldap3's `SearchEntry::construct`, which
/// panics on a DN that is not UTF-8.
fn entry_dn(entry: &ResultEntry) -> Option<String> {
    let StructureTag {
        id: 4,
        payload: PL::C(parts),
        ..
    } = &entry.0
    else {
        return None;
    };
    match &parts.first()?.payload {
        PL::P(bytes) => String::from_utf8(bytes.clone()).ok(),
        PL::C(_) => None,
    }
}

// ---- configuration checks ----

/// Checks the URL's shape; `true` for `ldaps://`.
fn check_url(raw: &str) -> Result<bool, LdapConfigError> {
    let fail = |why: &str| LdapConfigError::new("url", why.to_owned());
    let url = url::Url::parse(raw).map_err(|e| fail(&format!("not a URL: {e}")))?;
    let secure = match url.scheme() {
        "ldap" => false,
        "ldaps" => true,
        _ => return Err(fail("the scheme must be ldap:// or ldaps://")),
    };
    if url.host_str().is_none_or(str::is_empty) {
        return Err(fail("names no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(fail("must not hold credentials (use the bind settings)"));
    }
    if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
        return Err(fail(
            "only ldap[s]://host[:port] (base DN and filter are separate settings)",
        ));
    }
    Ok(secure)
}

fn check_dn(field: &'static str, dn: &str) -> Result<DnKey, LdapConfigError> {
    DnKey::parse(dn).ok_or_else(|| LdapConfigError::new(field, format!("`{dn}` is not a DN")))
}

fn check_bind(bind: &BindMode) -> Result<(), LdapConfigError> {
    match bind {
        BindMode::DnTemplate(template) => {
            if !template.contains(USER_PLACEHOLDER) {
                return Err(LdapConfigError::new(
                    "bind.dn_template",
                    "must contain {user}",
                ));
            }
            // A UPN (`{user}@example.org`) is not a DN: Active Directory
            // needs search mode.
            check_dn("bind.dn_template", &template.replace(USER_PLACEHOLDER, "x"))?;
        }
        BindMode::Search {
            base_dn,
            filter,
            service_dn,
            service_password,
        } => {
            check_dn("bind.base_dn", base_dn)?;
            check_dn("bind.service_dn", service_dn)?;
            if !filter.contains(USER_PLACEHOLDER) {
                return Err(LdapConfigError::new("bind.filter", "must contain {user}"));
            }
            if ldap3::parse_filter(filter.replace(USER_PLACEHOLDER, "x")).is_err() {
                return Err(LdapConfigError::new(
                    "bind.filter",
                    format!("`{filter}` is not an LDAP filter"),
                ));
            }
            // The same rule as for users: an empty password would make the
            // "service" bind an anonymous one.
            if service_password.is_empty() {
                return Err(LdapConfigError::new(
                    "bind.service_password",
                    "must not be empty",
                ));
            }
        }
    }
    Ok(())
}

fn group_lookup(config: &LdapConfig) -> Result<Option<GroupLookup>, LdapConfigError> {
    if config.required_group.is_none() && config.group_roles.is_empty() {
        return Ok(None);
    }
    let base_dn = config.group_base_dn.as_deref().ok_or_else(|| {
        LdapConfigError::new(
            "group_base_dn",
            "required when required_group or group_roles is set",
        )
    })?;
    check_dn("group_base_dn", base_dn)?;
    let attribute = config.membership_attribute.trim();
    let plain = attribute
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | ';' | '.' | ':'));
    if attribute.is_empty() || !plain || ldap3::parse_filter(format!("({attribute}=x)")).is_err() {
        return Err(LdapConfigError::new(
            "membership_attribute",
            format!("`{attribute}` is not an attribute description"),
        ));
    }
    let required = match &config.required_group {
        Some(dn) => Some(check_dn("required_group", dn)?),
        None => None,
    };
    let mut roles = Vec::new();
    for (group, role) in &config.group_roles {
        let role = role.trim();
        if role.is_empty() {
            return Err(LdapConfigError::new(
                "group_roles",
                format!("the role for `{group}` is empty"),
            ));
        }
        roles.push((check_dn("group_roles", group)?, role.to_owned()));
    }
    Ok(Some(GroupLookup {
        base_dn: base_dn.to_owned(),
        attribute: attribute.to_owned(),
        required,
        roles,
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn result(rc: u32, text: &str) -> LdapResult {
        LdapResult {
            rc,
            matched: String::new(),
            text: text.to_owned(),
            refs: Vec::new(),
            ctrls: Vec::new(),
        }
    }

    fn template() -> BindMode {
        BindMode::DnTemplate("uid={user},ou=people,dc=example,dc=org".to_owned())
    }

    fn search() -> BindMode {
        BindMode::Search {
            base_dn: "ou=people,dc=example,dc=org".to_owned(),
            filter: "(uid={user})".to_owned(),
            service_dn: "cn=svc,dc=example,dc=org".to_owned(),
            service_password: "s3cret-service".to_owned(),
        }
    }

    fn refused(config: LdapConfig) -> &'static str {
        LdapSource::new(config).unwrap_err().field
    }

    #[test]
    fn bind_results_map_to_refusals() {
        assert_eq!(user_bind_outcome(&result(0, "")), Ok(()));
        assert_eq!(
            user_bind_outcome(&result(49, "")),
            Err(CredentialError::BadCredentials)
        );
        assert_eq!(
            user_bind_outcome(&result(34, "invalid DN")),
            Err(CredentialError::BadCredentials)
        );
        let ad = "80090308: LdapErr: DSID-0C09044E, comment: AcceptSecurityContext error, data ";
        assert_eq!(
            user_bind_outcome(&result(49, &format!("{ad}775, v4563"))),
            Err(CredentialError::Locked)
        );
        assert_eq!(
            user_bind_outcome(&result(49, &format!("{ad}52e, v4563"))),
            Err(CredentialError::BadCredentials)
        );
        assert!(matches!(
            user_bind_outcome(&result(53, "unwilling")),
            Err(CredentialError::Unavailable(_))
        ));
        assert!(matches!(
            user_bind_outcome(&result(51, "busy")),
            Err(CredentialError::Unavailable(_))
        ));
    }

    #[test]
    fn user_names_worth_sending() {
        assert!(plausible_user_name("alice"));
        assert!(plausible_user_name("o'brien, (ops)*"));
        assert!(plausible_user_name("ålice"));
        for bad in ["", " alice", "alice ", "\talice", "al\0ice", "al\nice"] {
            assert!(!plausible_user_name(bad), "{bad:?}");
        }
        assert!(!plausible_user_name(&"a".repeat(MAX_USER_NAME_BYTES + 1)));
    }

    #[tokio::test]
    async fn empty_password_and_bad_names_need_no_directory() {
        // Port 1 on loopback: nothing listens, so any I/O would be Unavailable.
        let source = LdapSource::new(LdapConfig::new("ldap://127.0.0.1:1", template())).unwrap();
        assert_eq!(
            source.verify("alice", "").await,
            Err(CredentialError::EmptyPassword)
        );
        assert_eq!(
            source.verify("", "pw").await,
            Err(CredentialError::BadCredentials)
        );
        assert_eq!(
            source.verify("alice\0", "pw").await,
            Err(CredentialError::BadCredentials)
        );
    }

    #[test]
    fn valid_configurations_are_accepted() {
        LdapSource::new(LdapConfig::new("ldap://localhost", template())).unwrap();
        LdapSource::new(LdapConfig::new("ldap://10.0.0.1:3389/", search())).unwrap();
        let mut config = LdapConfig::new("ldap://ldap.example.org", search());
        config.required_group = Some("cn=fhir-users,ou=groups,dc=example,dc=org".to_owned());
        config.group_roles = vec![(
            "cn=admins,ou=groups,dc=example,dc=org".into(),
            "admin".into(),
        )];
        config.group_base_dn = Some("ou=groups,dc=example,dc=org".to_owned());
        config.membership_attribute = "member:1.2.840.113556.1.4.1941:".to_owned();
        LdapSource::new(config).unwrap();
    }

    #[test]
    fn urls_are_checked() {
        for url in [
            "http://ldap.example.org",
            "ldap://",
            "ldap://user:pw@ldap.example.org",
            "ldap://ldap.example.org/dc=example,dc=org",
            "ldap://ldap.example.org/??sub?(uid=x)",
            "ldapi:///var/run/slapd.sock",
            "ldap.example.org:389",
        ] {
            assert_eq!(refused(LdapConfig::new(url, template())), "url", "{url}");
        }
    }

    #[test]
    fn tls_settings_are_checked() {
        let mut config = LdapConfig::new("ldaps://ldap.example.org", template());
        config.starttls = true;
        assert_eq!(refused(config), "starttls");
        let mut config = LdapConfig::new("ldap://ldap.example.org", template());
        config.ca_file = Some("/nonexistent/ca.pem".into());
        assert_eq!(refused(config), "ca_file");
        let mut config = LdapConfig::new("ldaps://ldap.example.org", template());
        config.ca_file = Some("/nonexistent/ca.pem".into());
        let error = LdapSource::new(config).unwrap_err();
        assert_eq!(error.field, "ca_file");
        assert!(error.to_string().contains("/nonexistent/ca.pem"), "{error}");
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let mut config = LdapConfig::new("ldaps://ldap.example.org", template());
        config.ca_file = Some(path);
        assert_eq!(refused(config), "ca_file");
    }

    #[test]
    fn bind_settings_are_checked() {
        let bad_template = |t: &str| {
            refused(LdapConfig::new(
                "ldap://h",
                BindMode::DnTemplate(t.to_owned()),
            ))
        };
        assert_eq!(bad_template("uid=alice,dc=org"), "bind.dn_template");
        assert_eq!(bad_template("{user}@example.org"), "bind.dn_template");

        let with = |f: &dyn Fn(&mut BindMode)| {
            let mut bind = search();
            f(&mut bind);
            refused(LdapConfig::new("ldap://h", bind))
        };
        let set_filter = |value: &'static str| {
            move |b: &mut BindMode| {
                if let BindMode::Search { filter, .. } = b {
                    *filter = value.to_owned();
                }
            }
        };
        assert_eq!(with(&set_filter("(uid=alice)")), "bind.filter");
        assert_eq!(with(&set_filter("(uid={user}")), "bind.filter");
        assert_eq!(
            with(&|b| {
                if let BindMode::Search {
                    service_password, ..
                } = b
                {
                    service_password.clear();
                }
            }),
            "bind.service_password"
        );
        assert_eq!(
            with(&|b| {
                if let BindMode::Search { base_dn, .. } = b {
                    *base_dn = "not a dn".to_owned();
                }
            }),
            "bind.base_dn"
        );
    }

    #[test]
    fn group_settings_are_checked() {
        let mut config = LdapConfig::new("ldap://h", template());
        config.required_group = Some("cn=g,dc=org".to_owned());
        assert_eq!(refused(config.clone()), "group_base_dn");
        config.group_base_dn = Some("dc=org".to_owned());
        config.membership_attribute = "member)(cn=*".to_owned();
        assert_eq!(refused(config.clone()), "membership_attribute");
        config.membership_attribute = "uniqueMember".to_owned();
        config.group_roles = vec![("cn=g,dc=org".into(), " ".into())];
        assert_eq!(refused(config.clone()), "group_roles");
        config.group_roles = vec![("g".into(), "role".into())];
        assert_eq!(refused(config.clone()), "group_roles");
        config.group_roles.clear();
        config.timeout = Duration::ZERO;
        assert_eq!(refused(config), "timeout");
    }

    #[test]
    fn debug_output_hides_the_service_password() {
        let config = LdapConfig::new("ldap://h", search());
        assert!(!format!("{config:?}").contains("s3cret-service"));
        let source = LdapSource::new(config).unwrap();
        assert!(!format!("{source:?}").contains("s3cret-service"));
    }

    #[test]
    fn plaintext_is_reported() {
        assert!(LdapConfig::new("ldap://h", template()).is_plaintext());
        assert!(!LdapConfig::new("LDAPS://h", template()).is_plaintext());
        let mut config = LdapConfig::new("ldap://h", template());
        config.starttls = true;
        assert!(!config.is_plaintext());
    }
}
