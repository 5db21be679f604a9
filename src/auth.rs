//! Inbound security: the configured modules that turn a request's credentials
//! into a [`Principal`], the local user table behind the `basic` module, and
//! the bootstrap administrator.
//!
//! A request with no credentials is anonymous (with the listener's anonymous
//! permissions, none by default). A request with credentials is either
//! authenticated by a module of the listener's chain or refused: a module
//! that cannot answer (its store or directory is down) refuses; nothing
//! fails open.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use hearth_auth_local::{CredentialCache, LocalSource, LocalUser, UserDirectory};
use hearth_security::{CredentialError, CredentialSource, Permission, Principal, VerifiedUser};
use hearth_store::Store;
use hearth_store::schema::{User, UserChange};

use crate::config::{Config, ModuleConfig};
use crate::store::{AnyStore, DEFAULT_TENANT};
use crate::time::now_micros;

/// The user table of a tenant, as the local credential source sees it.
#[derive(Clone)]
pub struct StoreDirectory {
    store: AnyStore,
    tenant: String,
    max_failures: i32,
    lock_micros: i64,
}

impl UserDirectory for StoreDirectory {
    async fn user(&self, name: &str) -> Result<Option<LocalUser>, String> {
        let user = self
            .store
            .user(&self.tenant, name)
            .await
            .map_err(|e| e.to_string())?;
        Ok(user.map(|u| LocalUser {
            name: u.name,
            password_hash: u.password_hash,
            roles: u.roles.split_whitespace().map(str::to_owned).collect(),
            locked: u.locked,
            locked_until: u.locked_until,
            failed_logins: u.failed_logins,
        }))
    }

    async fn record_failure(&self, name: &str) -> Result<(), String> {
        self.store
            .record_login_failure(
                &self.tenant,
                name,
                now_micros(),
                self.max_failures,
                self.lock_micros,
            )
            .await
            .map_err(|e| e.to_string())
    }

    async fn record_success(&self, name: &str) -> Result<(), String> {
        self.store
            .record_login_success(&self.tenant, name)
            .await
            .map_err(|e| e.to_string())
    }
}

enum Source {
    Local(LocalSource<StoreDirectory>),
    Ldap(Arc<hearth_auth_ldap::LdapSource>),
}

impl Source {
    async fn verify(&self, user: &str, password: &str) -> Result<VerifiedUser, CredentialError> {
        match self {
            Source::Local(s) => s.verify(user, password).await,
            Source::Ldap(s) => s.verify(user, password).await,
        }
    }
}

// A handful of these live for the whole process: their size does not matter.
#[allow(clippy::large_enum_variant)]
enum ModuleImpl {
    Basic {
        source: Source,
        cache: CredentialCache,
    },
    Oidc {
        validator: Box<hearth_auth_oidc::OidcValidator>,
    },
    Certificate {
        roles: Vec<String>,
    },
}

struct Module {
    name: String,
    imp: ModuleImpl,
}

/// Why a request's credentials were refused (texts safe for logs and audit).
#[derive(Debug, Clone)]
pub struct Refusal {
    /// The module that refused, if one recognised the credentials.
    pub module: Option<String>,
    /// The user name the caller claimed, when there was one.
    pub user: Option<String>,
    pub reason: String,
    /// A source could not answer: 503 rather than 401.
    pub unavailable: bool,
}

/// The modules of one listener's chain, with what they share.
pub struct Authenticator {
    chain: Vec<Arc<Module>>,
    roles: BTreeMap<String, Vec<Permission>>,
    anonymous: Vec<Permission>,
    store: AnyStore,
}

/// How often the local user table is looked at for changes that must drop
/// cached credentials.
const USER_WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// Every configured module, built once and shared by the listeners that name it.
pub struct Modules {
    by_name: BTreeMap<String, Arc<Module>>,
    roles: BTreeMap<String, Vec<Permission>>,
    store: AnyStore,
}

fn source_is_plaintext(l: &crate::config::LdapModuleConfig) -> bool {
    l.url.starts_with("ldap://") && !l.starttls
}

fn parse_permissions(list: &[String]) -> Result<Vec<Permission>, String> {
    list.iter()
        .map(|p| p.parse::<Permission>().map_err(|e| e.to_string()))
        .collect()
}

impl Modules {
    pub fn new(config: &Config, store: &AnyStore) -> Result<Modules, String> {
        let mut roles = BTreeMap::new();
        for (role, list) in &config.security.roles {
            roles.insert(role.clone(), parse_permissions(list)?);
        }
        let directory = StoreDirectory {
            store: store.clone(),
            tenant: DEFAULT_TENANT.to_owned(),
            max_failures: i32::try_from(config.security.max_failed_logins).unwrap_or(i32::MAX),
            lock_micros: i64::try_from(config.security.lockout_minutes)
                .unwrap_or(i64::MAX / 60_000_000)
                .saturating_mul(60_000_000),
        };
        let mut directories = BTreeMap::new();
        for m in &config.security.modules {
            if let ModuleConfig::Ldap(l) = m {
                let source = hearth_auth_ldap::LdapSource::new(l.to_source_config()?)
                    .map_err(|e| format!("ldap module {}: {e}", l.name))?;
                if source_is_plaintext(l) {
                    tracing::warn!(
                        module = %l.name,
                        "LDAP without TLS: passwords cross the network in clear; use ldaps:// or starttls"
                    );
                }
                directories.insert(l.name.clone(), Arc::new(source));
            }
        }
        let mut by_name = BTreeMap::new();
        for m in &config.security.modules {
            if let ModuleConfig::Certificate { name, roles } = m {
                by_name.insert(
                    name.clone(),
                    Arc::new(Module {
                        name: name.clone(),
                        imp: ModuleImpl::Certificate {
                            roles: roles.clone(),
                        },
                    }),
                );
                tracing::info!(module = %name, kind = "certificate", "security module enabled");
                continue;
            }
            if let ModuleConfig::Oidc(o) = m {
                let validator = hearth_auth_oidc::OidcValidator::new(o.to_validator_config())
                    .map_err(|e| format!("oidc module {}: {e}", o.name))?;
                by_name.insert(
                    o.name.clone(),
                    Arc::new(Module {
                        name: o.name.clone(),
                        imp: ModuleImpl::Oidc {
                            validator: Box::new(validator),
                        },
                    }),
                );
                tracing::info!(module = %o.name, kind = "oidc", "security module enabled");
                continue;
            }
            let ModuleConfig::Basic { name, source } = m else {
                continue;
            };
            let source = if source == "local" {
                Source::Local(LocalSource::new(directory.clone(), now_micros)?)
            } else {
                Source::Ldap(
                    directories
                        .get(source)
                        .cloned()
                        .ok_or_else(|| format!("no ldap module is named {source}"))?,
                )
            };
            let imp = ModuleImpl::Basic {
                source,
                cache: CredentialCache::new(Duration::from_secs(
                    config.security.credential_cache_seconds,
                ))?,
            };
            by_name.insert(
                name.clone(),
                Arc::new(Module {
                    name: name.clone(),
                    imp,
                }),
            );
            tracing::info!(module = %name, kind = "basic", "security module enabled");
        }
        Ok(Modules {
            by_name,
            roles,
            store: store.clone(),
        })
    }

    /// The permissions a role grants (none for a role not configured).
    pub fn role_permissions(&self, role: &str) -> &[Permission] {
        self.roles.get(role).map_or(&[], Vec::as_slice)
    }

    /// Drops a user's cached credentials from every `basic` module at once
    /// (the Admin API changed the user; other processes notice within a
    /// second through [`Modules::watch_users`]).
    pub fn forget_user(&self, name: &str) {
        for m in self.by_name.values() {
            if let ModuleImpl::Basic { cache, .. } = &m.imp {
                cache.forget_user(name);
            }
        }
    }

    /// Keeps the credential caches of `basic` modules over the local user
    /// table true to it: every second, users changed since (a new password,
    /// roles, a lock, by this process or another) are dropped from them, so
    /// a change takes effect within about a second. Runs until the process
    /// ends.
    pub fn watch_users(&self) {
        let local: Vec<Arc<Module>> = self
            .by_name
            .values()
            .filter(|m| {
                matches!(
                    m.imp,
                    ModuleImpl::Basic {
                        source: Source::Local(_),
                        ..
                    }
                )
            })
            .cloned()
            .collect();
        if local.is_empty() {
            return;
        }
        let store = self.store.clone();
        tokio::spawn(async move {
            // Changes are looked for with an overlap, so a change committed
            // late, or stamped by a clock a little behind, is not missed;
            // dropping an entry twice costs one more password check.
            const OVERLAP_MICROS: i64 = 5_000_000;
            let mut since = now_micros() - OVERLAP_MICROS;
            let mut tick = tokio::time::interval(USER_WATCH_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let started = now_micros();
                match store.users_changed_since(DEFAULT_TENANT, since).await {
                    Ok(names) => {
                        for m in &local {
                            if let ModuleImpl::Basic { cache, .. } = &m.imp {
                                for name in &names {
                                    cache.forget_user(name);
                                }
                            }
                        }
                        since = started - OVERLAP_MICROS;
                    }
                    Err(e) => {
                        // Until the table answers again, nothing is trusted
                        // from the cache.
                        tracing::warn!(error = %e, "user changes could not be read; credential caches cleared");
                        for m in &local {
                            if let ModuleImpl::Basic { cache, .. } = &m.imp {
                                cache.clear();
                            }
                        }
                    }
                }
            }
        });
    }

    /// The authenticator of a listener: its chain (module names) and the
    /// permissions of its anonymous callers.
    pub fn authenticator(
        &self,
        chain: &[String],
        anonymous: &[String],
    ) -> Result<Authenticator, String> {
        let chain = chain
            .iter()
            .map(|n| {
                self.by_name
                    .get(n)
                    .cloned()
                    .ok_or_else(|| format!("no security module is named {n}"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Authenticator {
            chain,
            roles: self.roles.clone(),
            anonymous: parse_permissions(anonymous)?,
            store: self.store.clone(),
        })
    }
}

impl Authenticator {
    /// The principal of a request, from its `Authorization` header or (when
    /// the chain has a `certificate` module and there is no header) the TLS
    /// client certificate the handshake verified.
    pub async fn authenticate(
        &self,
        authorization: Option<&str>,
        certificate: Option<&[u8]>,
    ) -> Result<Principal, Refusal> {
        let Some(header) = authorization else {
            if let Some(der) = certificate {
                for module in &self.chain {
                    if let ModuleImpl::Certificate { roles } = &module.imp {
                        let user = certificate_user(der).ok_or_else(|| Refusal {
                            module: Some(module.name.clone()),
                            user: None,
                            reason: "the client certificate names no subject common name".into(),
                            unavailable: false,
                        })?;
                        return Ok(self.principal(&VerifiedUser {
                            name: user,
                            roles: roles.clone(),
                            source: "certificate",
                            external_id: None,
                        }));
                    }
                }
            }
            return Ok(Principal::anonymous().with_permissions(self.anonymous.iter().cloned()));
        };
        for module in &self.chain {
            match &module.imp {
                // Credentials in a header are not this module's.
                ModuleImpl::Certificate { .. } => continue,
                ModuleImpl::Oidc { validator } => {
                    let Some(token) = hearth_auth_oidc::bearer_token(header) else {
                        continue;
                    };
                    return match validator.validate(token).await {
                        Ok(verified) => {
                            let (principal, _) = verified.principal();
                            let principal = principal.with_permissions(
                                verified
                                    .roles
                                    .iter()
                                    .filter_map(|r| self.roles.get(r))
                                    .flatten()
                                    .cloned()
                                    .collect::<Vec<_>>(),
                            );
                            if !verified.is_client() {
                                let user = VerifiedUser {
                                    name: verified.user.clone(),
                                    roles: verified.roles.clone(),
                                    source: "oidc",
                                    external_id: Some(format!(
                                        "{}|{}",
                                        verified.issuer, verified.subject
                                    )),
                                };
                                self.shadow(&user).await.map_err(|e| Refusal {
                                    module: Some(module.name.clone()),
                                    user: Some(verified.user.clone()),
                                    reason: format!(
                                        "the shadow user row could not be written: {e}"
                                    ),
                                    unavailable: true,
                                })?;
                            }
                            Ok(principal)
                        }
                        Err(e) => Err(Refusal {
                            module: Some(module.name.clone()),
                            user: None,
                            unavailable: e.is_unavailable(),
                            reason: e.to_string(),
                        }),
                    };
                }
                ModuleImpl::Basic { source, cache } => {
                    let Some((user, password)) = hearth_auth_local::parse_basic(header) else {
                        continue;
                    };
                    if let Some(verified) = cache.get(&user, &password) {
                        return Ok(self.principal(&verified));
                    }
                    let generation = cache.generation();
                    return match source.verify(&user, &password).await {
                        Ok(verified) => {
                            if verified.source != "local" {
                                self.shadow(&verified).await.map_err(|e| Refusal {
                                    module: Some(module.name.clone()),
                                    user: Some(user.clone()),
                                    reason: format!(
                                        "the shadow user row could not be written: {e}"
                                    ),
                                    unavailable: true,
                                })?;
                            }
                            cache.put(&user, &password, verified.clone(), generation);
                            Ok(self.principal(&verified))
                        }
                        Err(e) => Err(Refusal {
                            module: Some(module.name.clone()),
                            user: Some(user),
                            unavailable: matches!(e, CredentialError::Unavailable(_)),
                            reason: e.to_string(),
                        }),
                    };
                }
            }
        }
        Err(Refusal {
            module: None,
            user: None,
            reason: "no security module of this listener accepts these credentials".into(),
            unavailable: false,
        })
    }

    /// Whether a module of the chain takes HTTP Basic (for the challenge).
    pub fn offers_basic(&self) -> bool {
        self.chain
            .iter()
            .any(|m| matches!(m.imp, ModuleImpl::Basic { .. }))
    }

    /// Whether a module of the chain takes bearer tokens (for the challenge).
    pub fn offers_bearer(&self) -> bool {
        self.chain
            .iter()
            .any(|m| matches!(m.imp, ModuleImpl::Oidc { .. }))
    }

    /// Keeps a row for a user an external source verified, so audit rows and
    /// administrators can name them (no password hash: such users cannot
    /// sign in against the local store).
    async fn shadow(&self, user: &VerifiedUser) -> Result<(), String> {
        let now = now_micros();
        let existing = self
            .store
            .user(DEFAULT_TENANT, &user.name)
            .await
            .map_err(|e| e.to_string())?;
        if let Some(e) = &existing
            && e.source == "local"
        {
            // A local account of the same name stays as it is; the directory's
            // answer still decides this sign-in.
            return Ok(());
        }
        let roles = user.roles.join(" ");
        if existing
            .as_ref()
            .is_some_and(|e| e.roles == roles && e.external_id == user.external_id)
        {
            return Ok(());
        }
        self.store
            .save_user(User {
                tenant: DEFAULT_TENANT.to_owned(),
                name: user.name.clone(),
                source: user.source.to_owned(),
                password_hash: None,
                external_id: user.external_id.clone(),
                roles,
                locked: false,
                locked_until: None,
                failed_logins: 0,
                created_at: existing.map_or(now, |e| e.created_at),
                updated_at: now,
            })
            .await
            .map_err(|e| e.to_string())
    }

    fn principal(&self, user: &VerifiedUser) -> Principal {
        let permissions = user
            .roles
            .iter()
            .filter_map(|r| self.roles.get(r))
            .flatten()
            .cloned()
            .collect::<Vec<_>>();
        let mut p = Principal::user(user.name.clone()).with_permissions(permissions);
        for r in &user.roles {
            p = p.with_role(r.clone());
        }
        p
    }
}

/// Why a change to a user was not made.
#[derive(Debug)]
pub enum UserError {
    /// The request itself is wrong (a bad name, role or password).
    Invalid(String),
    NotFound(String),
    /// The user comes from a directory and is managed there.
    Managed(String),
    /// The store could not do it (for the log, not the caller).
    Failed(String),
}

impl std::fmt::Display for UserError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UserError::Invalid(m)
            | UserError::NotFound(m)
            | UserError::Managed(m)
            | UserError::Failed(m) => f.write_str(m),
        }
    }
}

impl From<UserError> for String {
    fn from(e: UserError) -> String {
        e.to_string()
    }
}

fn store_failed(e: impl std::fmt::Display) -> UserError {
    UserError::Failed(e.to_string())
}

/// Adds or replaces a local user (the password checked against the policy,
/// administrators' more strictly).
pub async fn set_local_user(
    store: &AnyStore,
    name: &str,
    password: &str,
    roles: &[String],
) -> Result<(), UserError> {
    if name.is_empty()
        || name.len() > 128
        || name.contains(char::is_whitespace)
        || name.contains(':')
    {
        return Err(UserError::Invalid(
            "a user name must be 1-128 characters without spaces or ':'".into(),
        ));
    }
    if roles
        .iter()
        .any(|r| r.is_empty() || r.contains(char::is_whitespace))
    {
        return Err(UserError::Invalid(
            "a role name cannot be empty or hold spaces".into(),
        ));
    }
    let admin = roles.iter().any(|r| r == "admin");
    hearth_auth_local::check_password(password, admin)
        .map_err(|e| UserError::Invalid(e.to_owned()))?;
    let password = password.to_owned();
    let hash = tokio::task::spawn_blocking(move || hearth_auth_local::hash_password(&password))
        .await
        .map_err(store_failed)?
        .map_err(UserError::Failed)?;
    let now = now_micros();
    let existing = store
        .user(DEFAULT_TENANT, name)
        .await
        .map_err(store_failed)?;
    if let Some(u) = &existing
        && u.source != "local"
    {
        return Err(UserError::Managed(format!(
            "{name} comes from the {} directory and is managed there",
            u.source
        )));
    }
    if existing.is_some() {
        // Only these columns: a new password ends a lockout after failed
        // sign-ins, not a lock an administrator set, even one set meanwhile.
        let change = UserChange {
            password_hash: Some(Some(hash)),
            roles: Some(roles.join(" ")),
            locked_until: Some(None),
            failed_logins: Some(0),
            updated_at: Some(now),
            ..UserChange::default()
        };
        return changed(store, name, change).await;
    }
    store
        .save_user(User {
            tenant: DEFAULT_TENANT.to_owned(),
            name: name.to_owned(),
            source: "local".to_owned(),
            password_hash: Some(hash),
            external_id: None,
            roles: roles.join(" "),
            locked: false,
            locked_until: None,
            failed_logins: 0,
            created_at: now,
            updated_at: now,
        })
        .await
        .map_err(store_failed)
}

/// Makes a change to a local user's row in one statement.
async fn changed(store: &AnyStore, name: &str, change: UserChange) -> Result<(), UserError> {
    match store.change_user(DEFAULT_TENANT, name, change).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(UserError::NotFound(format!(
            "there is no local user {name}"
        ))),
        Err(e) => Err(store_failed(e)),
    }
}

/// An existing user the local store manages (not one a directory does).
async fn managed_user(store: &AnyStore, name: &str) -> Result<User, UserError> {
    let user = store
        .user(DEFAULT_TENANT, name)
        .await
        .map_err(store_failed)?
        .ok_or_else(|| UserError::NotFound(format!("there is no user {name}")))?;
    if user.source != "local" {
        return Err(UserError::Managed(format!(
            "{name} comes from the {} directory and is managed there",
            user.source
        )));
    }
    Ok(user)
}

/// Replaces the roles of an existing user (its password stays).
pub async fn set_user_roles(
    store: &AnyStore,
    name: &str,
    roles: &[String],
) -> Result<(), UserError> {
    managed_user(store, name).await?;
    if roles
        .iter()
        .any(|r| r.is_empty() || r.contains(char::is_whitespace))
    {
        return Err(UserError::Invalid(
            "a role name cannot be empty or hold spaces".into(),
        ));
    }
    let change = UserChange {
        roles: Some(roles.join(" ")),
        updated_at: Some(now_micros()),
        ..UserChange::default()
    };
    changed(store, name, change).await
}

/// Locks or unlocks a user (a locked user cannot sign in; unlocking also
/// clears a lockout after failed sign-ins). Running servers drop the user's
/// cached credentials within about a second.
pub async fn set_user_locked(store: &AnyStore, name: &str, locked: bool) -> Result<(), UserError> {
    managed_user(store, name).await?;
    let change = if locked {
        UserChange {
            locked: Some(true),
            updated_at: Some(now_micros()),
            ..UserChange::default()
        }
    } else {
        UserChange {
            locked: Some(false),
            locked_until: Some(None),
            failed_logins: Some(0),
            updated_at: Some(now_micros()),
            ..UserChange::default()
        }
    };
    changed(store, name, change).await
}

/// Creates the bootstrap administrator `admin` when it does not exist: with
/// the configured password, or a generated one printed once on standard error.
pub async fn bootstrap_admin(config: &Config, store: &AnyStore) -> Result<(), String> {
    if store
        .user(DEFAULT_TENANT, "admin")
        .await
        .map_err(|e| e.to_string())?
        .is_some()
    {
        return Ok(());
    }
    let (password, generated) = match &config.security.bootstrap_admin_password {
        Some(p) => (p.expose().to_owned(), false),
        None => (generate_password()?, true),
    };
    set_local_user(store, "admin", &password, &["admin".to_owned()]).await?;
    if generated {
        // Deliberately not through the log: it is a secret, shown once to
        // whoever started the server.
        eprintln!(
            "\nCreated the administrator `admin` with the password\n\n    {password}\n\n\
             It is shown only this once. Set HEARTH_BOOTSTRAP_ADMIN_PASSWORD to choose it instead.\n"
        );
    }
    tracing::info!(user = "admin", "created the bootstrap administrator");
    Ok(())
}

/// 20 random characters from letters and digits (with at least one of each
/// kind the administrator policy needs).
fn generate_password() -> Result<String, String> {
    use aws_lc_rs::rand::{SecureRandom, SystemRandom};
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let rng = SystemRandom::new();
    loop {
        let mut bytes = [0u8; 20];
        rng.fill(&mut bytes)
            .map_err(|_| "no randomness for the administrator password".to_owned())?;
        // 57 symbols: reject bytes that would bias the choice.
        if bytes.iter().any(|b| usize::from(*b) >= 57 * 4) {
            continue;
        }
        let p: String = bytes
            .iter()
            .map(|b| char::from(ALPHABET[usize::from(*b) % 57]))
            .collect();
        if hearth_auth_local::check_password(&p, true).is_ok() {
            return Ok(p);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn generated_passwords_meet_the_admin_policy() {
        for _ in 0..20 {
            let p = super::generate_password().unwrap_or_default();
            assert_eq!(p.len(), 20);
            assert!(hearth_auth_local::check_password(&p, true).is_ok());
        }
    }
}

/// Brute-force protection: failed sign-ins counted per source address and per
/// claimed user name in a fixed window; past the limit, further attempts are
/// answered 429 (without checking the password, so an attack cannot make the
/// server pay argon2 for it) until the window ends.
pub struct Throttle {
    window: Duration,
    per_source: u32,
    per_user: u32,
    counts: std::sync::Mutex<BTreeMap<ThrottleKey, (u32, std::time::Instant)>>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum ThrottleKey {
    Source(String),
    User(String),
}

/// Keys tracked at most; beyond, expired windows are dropped, then all.
const THROTTLE_MAX_KEYS: usize = 100_000;

impl Throttle {
    pub fn new(window: Duration, per_source: u32, per_user: u32) -> Throttle {
        Throttle {
            window,
            per_source,
            per_user,
            counts: std::sync::Mutex::new(BTreeMap::new()),
        }
    }

    fn keys(source: &str, user: Option<&str>) -> Vec<(ThrottleKey, bool)> {
        let mut keys = vec![(ThrottleKey::Source(source.to_owned()), true)];
        if let Some(u) = user {
            keys.push((ThrottleKey::User(u.to_owned()), false));
        }
        keys
    }

    /// When attempts from `source` (or for `user`) are blocked: how long
    /// still, and which limit.
    pub fn blocked(&self, source: &str, user: Option<&str>) -> Option<(Duration, &'static str)> {
        let counts = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = std::time::Instant::now();
        for (key, is_source) in Self::keys(source, user) {
            let limit = if is_source {
                self.per_source
            } else {
                self.per_user
            };
            if let Some((n, start)) = counts.get(&key)
                && *n >= limit
                && now < *start + self.window
            {
                let why = if is_source {
                    "too many failed sign-ins from this address"
                } else {
                    "too many failed sign-ins for this user"
                };
                return Some((*start + self.window - now, why));
            }
        }
        None
    }

    /// Counts a failed sign-in.
    pub fn failed(&self, source: &str, user: Option<&str>) {
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = std::time::Instant::now();
        if counts.len() >= THROTTLE_MAX_KEYS {
            counts.retain(|_, (_, start)| now < *start + self.window);
            if counts.len() >= THROTTLE_MAX_KEYS {
                counts.clear();
            }
        }
        for (key, _) in Self::keys(source, user) {
            let entry = counts.entry(key).or_insert((0, now));
            if now >= entry.1 + self.window {
                *entry = (0, now);
            }
            entry.0 += 1;
        }
    }

    /// A user signed in: their count starts again (the address's does not).
    pub fn succeeded(&self, user: &str) {
        self.counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&ThrottleKey::User(user.to_owned()));
    }
}

#[cfg(test)]
mod throttle_tests {
    use super::Throttle;
    use std::time::Duration;

    #[test]
    fn blocks_by_address_and_by_user_until_the_window_ends() {
        let t = Throttle::new(Duration::from_millis(200), 3, 2);
        assert!(t.blocked("10.0.0.1", Some("alice")).is_none());
        t.failed("10.0.0.1", Some("alice"));
        t.failed("10.0.0.2", Some("alice"));
        let (_, why) = t.blocked("10.0.0.3", Some("alice")).unwrap_or_default();
        assert_eq!(why, "too many failed sign-ins for this user");
        assert!(t.blocked("10.0.0.3", Some("bob")).is_none());
        t.succeeded("alice");
        assert!(t.blocked("10.0.0.3", Some("alice")).is_none());
        for u in ["a", "b", "c"] {
            t.failed("10.0.0.9", Some(u));
        }
        let (retry, why) = t.blocked("10.0.0.9", Some("zed")).unwrap_or_default();
        assert_eq!(why, "too many failed sign-ins from this address");
        assert!(retry <= Duration::from_millis(200));
        std::thread::sleep(Duration::from_millis(250));
        assert!(t.blocked("10.0.0.9", Some("zed")).is_none());
    }
}

/// The subject common name of a DER certificate.
fn certificate_user(der: &[u8]) -> Option<String> {
    use x509_cert::der::Decode;
    let cert = x509_cert::Certificate::from_der(der).ok()?;
    const CN: x509_cert::der::asn1::ObjectIdentifier =
        x509_cert::der::asn1::ObjectIdentifier::new_unwrap("2.5.4.3");
    cert.tbs_certificate
        .subject
        .0
        .iter()
        .flat_map(|rdn| rdn.0.iter())
        .find(|atv| atv.oid == CN)
        .and_then(|atv| {
            atv.value
                .decode_as::<x509_cert::der::asn1::Utf8StringRef<'_>>()
                .map(|s| s.as_str().to_owned())
                .or_else(|_| {
                    atv.value
                        .decode_as::<x509_cert::der::asn1::PrintableStringRef<'_>>()
                        .map(|s| s.as_str().to_owned())
                })
                .ok()
        })
        .filter(|n| !n.is_empty() && !n.contains(char::is_control))
}
