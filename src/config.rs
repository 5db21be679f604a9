//! Typed configuration: a TOML file (`HEARTH_CONFIG`) with environment overrides,
//! validated before anything starts. Unknown keys and bad values stop start-up with
//! a message naming them; secrets are masked whenever configuration is shown.
//!
//! Environment contract:
//! `HEARTH_CONFIG`, `HEARTH_DATA_DIR`, `HEARTH_DATABASE_URL`, `HEARTH_HTTP_ADDR`,
//! `HEARTH_MASTER_KEY_FILE`, `HEARTH_LOG`, `HEARTH_BOOTSTRAP_ADMIN_PASSWORD`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize, Serializer};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("configuration file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: &'static str, message: String },
    #[error("configuration key `{key}`: {message}")]
    Invalid { key: &'static str, message: String },
}

/// A value that must never be printed.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"****\"")
    }
}

/// Database URLs are shown with the password masked.
impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&mask_url(&self.0))
    }
}

/// `postgres://user:pw@host/db` → `postgres://user:****@host/db`; anything that is
/// not such a URL is masked entirely.
pub fn mask_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "****".into();
    };
    let (authority, tail) = rest.split_once('/').map_or((rest, ""), |(a, t)| (a, t));
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            format!("{user}:****@{host}")
        }
        None => authority.to_owned(),
    };
    let tail = tail
        .split_once('?')
        .map_or(tail.to_owned(), |(path, query)| {
            let q: Vec<String> = query
                .split('&')
                .map(|p| match p.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=****"),
                    _ => p.to_owned(),
                })
                .collect();
            format!("{path}?{}", q.join("&"))
        });
    format!("{scheme}://{authority}/{tail}")
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Directory of the embedded database and of a generated development master key.
    pub data_dir: PathBuf,
    pub database: DatabaseConfig,
    pub crypto: CryptoConfig,
    pub http: HttpConfig,
    pub log: LogConfig,
    pub fhir: FhirConfig,
    pub security: SecurityConfig,
    /// More FHIR listeners beside `[http]`, each with its own address, base
    /// path, TLS and chain of security modules (`[[listeners]]`).
    pub listeners: Vec<HttpConfig>,
    pub audit: AuditConfig,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Audit rows older than this are deleted (daily, and at start-up); the
    /// chain stays checkable from the last deleted row.
    pub retention_days: u32,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            retention_days: 365,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./hearth-data"),
            database: DatabaseConfig::default(),
            crypto: CryptoConfig::default(),
            http: HttpConfig::default(),
            log: LogConfig::default(),
            fhir: FhirConfig::default(),
            security: SecurityConfig::default(),
            listeners: Vec::new(),
            audit: AuditConfig::default(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `postgres://…` selects PostgreSQL; absent means the embedded SQLite file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<Secret>,
    pub max_connections: usize,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: None,
            max_connections: 16,
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CryptoConfig {
    /// File holding the 32-byte master key (raw or base64).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub master_key_file: Option<PathBuf>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// The listener's name in logs and audit rows.
    pub name: String,
    /// What it serves: the FHIR REST API (`fhir`, the default) or the JSON
    /// Admin API (`admin`: local users, the audit chain). `[http]` is always
    /// a FHIR listener.
    pub kind: ListenerKind,
    pub addr: SocketAddr,
    /// Base path of the FHIR API, e.g. `/fhir`.
    pub base_path: String,
    /// Public base URL for links (`https://fhir.example.org/fhir`); derived from the
    /// request's Host header when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Worker threads; 0 means one per core.
    pub workers: usize,
    /// The inbound security modules that guard this listener, in order (names
    /// of `[[security.modules]]`). The first that recognises a request's
    /// credentials decides; a request without credentials is anonymous.
    pub security: Vec<String>,
    /// Permissions of unauthenticated callers (`read:Patient`, …); none by
    /// default. `/metadata` and `/.well-known/smart-configuration` are always open.
    pub anonymous: Vec<String>,
    /// Reverse proxies whose `X-Forwarded-For` is believed for the caller's
    /// address in audit rows; from anyone else it is ignored.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Plain HTTP on an address other than loopback (behind a TLS-terminating
    /// proxy on a private network): refused unless this is set, and warned about.
    pub allow_insecure_http: bool,
}

/// What a listener serves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ListenerKind {
    #[default]
    Fhir,
    Admin,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            name: "fhir".into(),
            kind: ListenerKind::Fhir,
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            base_path: "/fhir".into(),
            public_url: None,
            tls: None,
            max_body_bytes: 16 * 1024 * 1024,
            workers: 0,
            security: vec!["basic".into()],
            anonymous: Vec::new(),
            trusted_proxies: Vec::new(),
            allow_insecure_http: false,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// PEM CA certificates whose client certificates the listener accepts
    /// (a `certificate` module in the chain turns them into principals).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ca: Option<PathBuf>,
    /// With `client_ca`: refuse the handshake without a client certificate.
    #[serde(default)]
    pub require_client_cert: bool,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// JSON when standard error is not a terminal, text otherwise.
    #[default]
    Auto,
    Json,
    Text,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A tracing filter such as `info` or `hearth=debug,info`.
    pub filter: String,
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            filter: "info".into(),
            format: LogFormat::Auto,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FhirConfig {
    /// Page size of history bundles when `_count` is absent.
    pub default_page_size: u32,
    /// Page size of search results when `_count` is absent.
    pub default_search_count: u32,
    /// Largest `_count` honoured.
    pub max_page_size: u32,
    /// A search condition matching fewer resources than this drives the query;
    /// when every condition matches more, results are found by walking the
    /// resources in result order. 0 always walks.
    pub search_drive_below: u32,
    /// Most entries accepted in a batch or transaction Bundle (413 beyond).
    pub max_bundle_entries: usize,
    /// Most matches a search sorted in memory reads (`_sort` on a string,
    /// identifier or birth date: values the index keeps only as keyed
    /// hashes); a search matching more is refused as too costly.
    pub max_sorted_in_memory: u32,
    /// Whether a conditional delete may delete several matches (412 if not).
    pub conditional_delete_multiple: bool,
    /// Most resources one conditional delete deletes (412 beyond).
    pub max_conditional_deletes: u32,
    /// Largest part of a Bulk Data export file held in memory and stored at
    /// once, in bytes (a larger single resource is a part alone).
    pub export_part_bytes: usize,
}

impl Default for FhirConfig {
    fn default() -> Self {
        FhirConfig {
            default_page_size: 50,
            default_search_count: 20,
            max_page_size: 1000,
            search_drive_below: hearth_store::search::DEFAULT_DRIVE_BELOW,
            max_bundle_entries: 10_000,
            max_sorted_in_memory: 10_000,
            conditional_delete_multiple: false,
            max_conditional_deletes: 1_000,
            export_part_bytes: 1 << 20,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityConfig {
    /// Password of the bootstrap administrator `admin`, created at first start
    /// (`HEARTH_BOOTSTRAP_ADMIN_PASSWORD`); generated and printed once when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bootstrap_admin_password: Option<Secret>,
    /// How long verified HTTP Basic credentials are remembered (0: never).
    pub credential_cache_seconds: u64,
    /// Failed sign-ins in a row that lock an account.
    pub max_failed_logins: u32,
    /// How long such a lock lasts.
    pub lockout_minutes: u64,
    /// Failed sign-ins from one address within `failure_window_minutes` after
    /// which its attempts are answered 429 until the window ends (per user
    /// name, `max_failed_logins` applies the same way).
    pub max_failures_per_source: u32,
    pub failure_window_minutes: u64,
    /// Role → permissions (`read:*`, `write:Observation`, `read:*@Patient/1`,
    /// `admin:audit`, `superuser`). Users and directory groups carry roles.
    pub roles: BTreeMap<String, Vec<String>>,
    /// Named instances of inbound security modules.
    pub modules: Vec<ModuleConfig>,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        SecurityConfig {
            bootstrap_admin_password: None,
            credential_cache_seconds: 60,
            max_failed_logins: 5,
            lockout_minutes: 15,
            max_failures_per_source: 50,
            failure_window_minutes: 5,
            roles: BTreeMap::from([
                ("admin".to_owned(), vec!["superuser".to_owned()]),
                ("reader".to_owned(), vec!["read:*".to_owned()]),
                (
                    "writer".to_owned(),
                    vec!["read:*".to_owned(), "write:*".to_owned()],
                ),
            ]),
            modules: vec![ModuleConfig::Basic {
                name: "basic".into(),
                source: "local".into(),
            }],
        }
    }
}

/// A named instance of an inbound security module.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum ModuleConfig {
    /// HTTP Basic against a credential source: `local` (the user table) or
    /// the name of an `ldap` module.
    Basic { name: String, source: String },
    /// An LDAP / Active Directory directory, used as a Basic module's source.
    Ldap(Box<LdapModuleConfig>),
    /// Bearer JWTs from an external OpenID Connect issuer.
    Oidc(Box<OidcModuleConfig>),
    /// The TLS client certificate (verified by the listener against its
    /// `client_ca`): the user is the certificate's subject common name, with
    /// these roles.
    Certificate { name: String, roles: Vec<String> },
}

impl ModuleConfig {
    pub fn name(&self) -> &str {
        match self {
            ModuleConfig::Basic { name, .. } => name,
            ModuleConfig::Ldap(l) => &l.name,
            ModuleConfig::Oidc(o) => &o.name,
            ModuleConfig::Certificate { name, .. } => name,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LdapModuleConfig {
    pub name: String,
    /// `ldaps://host:636` or `ldap://host:389` (with `starttls = true`).
    pub url: String,
    #[serde(default)]
    pub starttls: bool,
    /// PEM CA certificates to trust instead of the system's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Bind directly as this DN (`{user}` replaced): `uid={user},ou=people,dc=example,dc=org`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_dn_template: Option<String>,
    /// Or search for the user under this base with this filter (`(uid={user})`)
    /// as the service account, then bind as the DN found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_search_base: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_search_filter: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_dn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_password: Option<Secret>,
    /// A group DN users must be members of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_group: Option<String>,
    /// Where groups are searched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_base_dn: Option<String>,
    /// Group DN → role (roles map to permissions in `security.roles`).
    #[serde(default)]
    pub group_roles: BTreeMap<String, String>,
    /// The group attribute listing members (`member`, `uniqueMember`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub membership_attribute: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OidcModuleConfig {
    pub name: String,
    /// The issuer (`iss`), exactly; its discovery document gives the key set
    /// unless `jwks_uri` is set.
    pub issuer: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// Accepted `aud` values (this server's identifier at the issuer).
    pub audience: Vec<String>,
    /// Accepted signature algorithms (asymmetric only); all of them when empty.
    #[serde(default)]
    pub algorithms: Vec<String>,
    /// Clock skew allowed on `exp`, `nbf` and `iat`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leeway_seconds: Option<u64>,
    /// The claim naming the user (`sub` by default; `preferred_username`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_claim: Option<String>,
    /// A claim holding roles (a list or a space-separated string; a dotted
    /// path such as `realm_access.roles`); roles map to permissions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles_claim: Option<String>,
    /// PEM CA certificates to trust for the issuer instead of the system's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
}

impl OidcModuleConfig {
    /// The validator's own configuration (checked when it is built).
    pub fn to_validator_config(&self) -> hearth_auth_oidc::OidcConfig {
        let mut c = hearth_auth_oidc::OidcConfig::new(self.issuer.clone(), self.audience.clone());
        if let Some(uri) = &self.jwks_uri {
            c = c.with_jwks_uri(uri.clone());
        }
        if !self.algorithms.is_empty() {
            c.algorithms = self.algorithms.clone();
        }
        if let Some(l) = self.leeway_seconds {
            c.leeway = std::time::Duration::from_secs(l);
        }
        if let Some(u) = &self.user_claim {
            c.user_claim = u.clone();
        }
        c.roles_claim = self.roles_claim.clone();
        c.ca_file = self.ca_file.clone();
        if let Some(t) = self.timeout_seconds {
            c.timeout = std::time::Duration::from_secs(t);
        }
        c
    }
}

impl LdapModuleConfig {
    /// The LDAP source's own configuration (checked by the source when built).
    pub fn to_source_config(&self) -> Result<hearth_auth_ldap::LdapConfig, String> {
        use hearth_auth_ldap::{BindMode, LdapConfig};
        let bind = match (
            &self.user_dn_template,
            &self.user_search_base,
            &self.user_search_filter,
            &self.service_dn,
            &self.service_password,
        ) {
            (Some(t), None, None, None, None) => BindMode::DnTemplate(t.clone()),
            (None, Some(base), Some(filter), Some(dn), Some(pw)) => BindMode::Search {
                base_dn: base.clone(),
                filter: filter.clone(),
                service_dn: dn.clone(),
                service_password: pw.expose().to_owned(),
            },
            _ => {
                return Err(format!(
                    "module {}: set either user_dn_template, or user_search_base, \
                     user_search_filter, service_dn and service_password",
                    self.name
                ));
            }
        };
        let mut c = LdapConfig::new(self.url.clone(), bind);
        c.starttls = self.starttls;
        c.ca_file = self.ca_file.clone();
        c.required_group = self.required_group.clone();
        c.group_base_dn = self.group_base_dn.clone();
        c.group_roles = self
            .group_roles
            .iter()
            .map(|(g, r)| (g.clone(), r.clone()))
            .collect();
        if let Some(a) = &self.membership_attribute {
            c.membership_attribute = a.clone();
        }
        if let Some(t) = self.timeout_seconds {
            c.timeout = std::time::Duration::from_secs(t);
        }
        Ok(c)
    }
}

/// Where the environment comes from (a map in tests, the process otherwise).
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var_os(name).map(|v| v.to_string_lossy().into_owned())
    }
}

impl<const N: usize> Env for [(&str, &str); N] {
    fn var(&self, name: &str) -> Option<String> {
        self.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
    }
}

impl Config {
    /// Reads `HEARTH_CONFIG` (if set), applies the environment, validates.
    pub fn load(env: &impl Env) -> Result<Config, ConfigError> {
        let mut config = match env.var("HEARTH_CONFIG") {
            Some(path) => Self::from_file(Path::new(&path))?,
            None => Config::default(),
        };
        config.apply_env(env)?;
        config.validate()?;
        Ok(config)
    }

    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })
    }

    pub fn from_toml(text: &str) -> Result<Config, String> {
        // toml's messages name the key and line; they quote the offending line,
        // so a secret written in the wrong place could appear: strip the excerpt.
        toml::from_str(text).map_err(|e: toml::de::Error| {
            let keys = e.message().to_owned();
            match e.span() {
                Some(span) => {
                    let line = text[..span.start].matches('\n').count() + 1;
                    format!("line {line}: {keys}")
                }
                None => keys,
            }
        })
    }

    fn apply_env(&mut self, env: &impl Env) -> Result<(), ConfigError> {
        if let Some(v) = env.var("HEARTH_DATA_DIR") {
            self.data_dir = PathBuf::from(v);
        }
        if let Some(v) = env.var("HEARTH_DATABASE_URL") {
            self.database.url = (!v.is_empty()).then(|| Secret::new(v));
        }
        if let Some(v) = env.var("HEARTH_HTTP_ADDR") {
            self.http.addr = v.parse().map_err(|_| ConfigError::Env {
                var: "HEARTH_HTTP_ADDR",
                message: "must be an IP address and port, such as 127.0.0.1:8080".into(),
            })?;
        }
        if let Some(v) = env.var("HEARTH_MASTER_KEY_FILE") {
            self.crypto.master_key_file = Some(PathBuf::from(v));
        }
        if let Some(v) = env.var("HEARTH_LOG") {
            self.log.filter = v;
        }
        if let Some(v) = env.var("HEARTH_BOOTSTRAP_ADMIN_PASSWORD") {
            self.security.bootstrap_admin_password = (!v.is_empty()).then(|| Secret::new(v));
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, message: &str| {
            Err(ConfigError::Invalid {
                key,
                message: message.to_owned(),
            })
        };
        if let Some(url) = &self.database.url
            && !(url.expose().starts_with("postgres://")
                || url.expose().starts_with("postgresql://"))
        {
            return invalid(
                "database.url",
                "must be a postgres:// URL (leave it unset for the embedded store)",
            );
        }
        if self.database.max_connections == 0 {
            return invalid("database.max_connections", "must be at least 1");
        }
        let bp = &self.http.base_path;
        if !bp.starts_with('/') || (bp.len() > 1 && bp.ends_with('/')) {
            return invalid("http.base_path", "must start with '/' and not end with '/'");
        }
        if let Some(u) = &self.http.public_url
            && !(u.starts_with("http://") || u.starts_with("https://"))
        {
            return invalid("http.public_url", "must be an http:// or https:// URL");
        }
        if self.fhir.max_bundle_entries == 0 {
            return invalid("fhir.max_bundle_entries", "must be at least 1");
        }
        if self.http.max_body_bytes < 1024 {
            return invalid("http.max_body_bytes", "must be at least 1024");
        }
        if self.fhir.default_page_size == 0 || self.fhir.default_page_size > self.fhir.max_page_size
        {
            return invalid(
                "fhir.default_page_size",
                "must be between 1 and fhir.max_page_size",
            );
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.filter).is_err() {
            return invalid(
                "log.filter",
                "is not a valid log filter (e.g. `info` or `hearth=debug`)",
            );
        }
        for (role, permissions) in &self.security.roles {
            for p in permissions {
                if let Err(e) = p.parse::<hearth_security::Permission>() {
                    return Err(ConfigError::Invalid {
                        key: "security.roles",
                        message: format!("role {role}: {e}"),
                    });
                }
            }
        }
        for p in &self.http.anonymous {
            match p.parse::<hearth_security::Permission>() {
                Ok(hearth_security::Permission::Read { .. }) => {}
                Ok(_) => return invalid("http.anonymous", "may only grant read permissions"),
                Err(e) => {
                    return Err(ConfigError::Invalid {
                        key: "http.anonymous",
                        message: e.to_string(),
                    });
                }
            }
        }
        let mut names = std::collections::BTreeSet::new();
        let ldap: std::collections::BTreeSet<&str> = self
            .security
            .modules
            .iter()
            .filter_map(|m| match m {
                ModuleConfig::Ldap(l) => Some(l.name.as_str()),
                ModuleConfig::Basic { .. }
                | ModuleConfig::Oidc(_)
                | ModuleConfig::Certificate { .. } => None,
            })
            .collect();
        for m in &self.security.modules {
            if !names.insert(m.name()) {
                return invalid("security.modules", "two modules share a name");
            }
            match m {
                ModuleConfig::Basic { source, .. }
                    if source != "local" && !ldap.contains(source.as_str()) =>
                {
                    return Err(ConfigError::Invalid {
                        key: "security.modules",
                        message: format!(
                            "basic module {}: source must be `local` or the name of an ldap module",
                            m.name()
                        ),
                    });
                }
                ModuleConfig::Basic { .. } | ModuleConfig::Certificate { .. } => {}
                ModuleConfig::Oidc(o) => {
                    if let Err(e) = hearth_auth_oidc::OidcValidator::new(o.to_validator_config()) {
                        return Err(ConfigError::Invalid {
                            key: "security.modules",
                            message: format!("oidc module {}: {e}", o.name),
                        });
                    }
                }
                ModuleConfig::Ldap(l) => {
                    let source = l
                        .to_source_config()
                        .map_err(|message| ConfigError::Invalid {
                            key: "security.modules",
                            message,
                        })?;
                    if let Err(e) = hearth_auth_ldap::LdapSource::new(source) {
                        return Err(ConfigError::Invalid {
                            key: "security.modules",
                            message: format!("ldap module {}: {e}", l.name),
                        });
                    }
                }
            }
        }
        for name in &self.http.security {
            if ldap.contains(name.as_str()) {
                return Err(ConfigError::Invalid {
                    key: "http.security",
                    message: format!(
                        "{name} is an ldap module: name a basic module whose source it is"
                    ),
                });
            }
        }
        for name in &self.http.security {
            if !names.contains(name.as_str()) {
                return Err(ConfigError::Invalid {
                    key: "http.security",
                    message: format!("no security module is named {name}"),
                });
            }
        }
        if self.http.kind != ListenerKind::Fhir {
            return Err(ConfigError::Invalid {
                key: "http.kind",
                message: "the main listener serves FHIR; add an admin listener under [[listeners]]"
                    .into(),
            });
        }
        let mut listener_names = std::collections::BTreeSet::from([self.http.name.as_str()]);
        let mut addrs = std::collections::BTreeSet::from([self.http.addr]);
        for l in &self.listeners {
            let bad = |message: String| {
                Err(ConfigError::Invalid {
                    key: "listeners",
                    message: format!("listener {}: {message}", l.name),
                })
            };
            if !listener_names.insert(l.name.as_str()) {
                return bad("two listeners share this name".into());
            }
            if l.kind == ListenerKind::Admin && !l.anonymous.is_empty() {
                return bad("an admin listener has no anonymous access".into());
            }
            if !addrs.insert(l.addr) {
                return bad(format!("another listener already uses {}", l.addr));
            }
            let bp = &l.base_path;
            if !bp.starts_with('/') || (bp.len() > 1 && bp.ends_with('/')) {
                return bad("base_path must start with '/' and not end with '/'".into());
            }
            if l.max_body_bytes < 1024 {
                return bad("max_body_bytes must be at least 1024".into());
            }
            for p in &l.anonymous {
                match p.parse::<hearth_security::Permission>() {
                    Ok(hearth_security::Permission::Read { .. }) => {}
                    Ok(_) => return bad("anonymous may only grant read permissions".into()),
                    Err(e) => return bad(e.to_string()),
                }
            }
            for name in &l.security {
                if !names.contains(name.as_str()) || ldap.contains(name.as_str()) {
                    return bad(format!("no basic or oidc module is named {name}"));
                }
            }
        }
        if self.audit.retention_days == 0 {
            return invalid("audit.retention_days", "must be at least 1");
        }
        if self.security.max_failed_logins == 0 {
            return invalid("security.max_failed_logins", "must be at least 1");
        }
        if let Some(p) = &self.security.bootstrap_admin_password
            && let Err(e) = hearth_auth_local::check_password(p.expose(), true)
        {
            return Err(ConfigError::Invalid {
                key: "security.bootstrap_admin_password",
                message: e.to_owned(),
            });
        }
        if self.is_postgres() && self.crypto.master_key_file.is_none() {
            return invalid(
                "crypto.master_key_file",
                "PostgreSQL needs an explicit master key: set HEARTH_MASTER_KEY_FILE",
            );
        }
        Ok(())
    }

    pub fn is_postgres(&self) -> bool {
        self.database.url.is_some()
    }

    /// The effective configuration as TOML, with secrets masked.
    pub fn to_masked_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot render configuration: {e}\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_environment() {
        let c = Config::load(&[
            ("HEARTH_HTTP_ADDR", "127.0.0.1:9999"),
            ("HEARTH_DATA_DIR", "/tmp/x"),
        ])
        .unwrap();
        assert_eq!(c.http.addr.port(), 9999);
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(c.http.base_path, "/fhir");
        assert!(!c.is_postgres());
    }

    #[test]
    fn security_modules_parse_and_are_checked() {
        let c = Config::from_toml(
            r#"
[http]
security = ["corp"]
anonymous = ["read:Organization"]

[[security.modules]]
kind = "basic"
name = "corp"
source = "directory"

[[security.modules]]
kind = "ldap"
name = "directory"
url = "ldaps://ldap.example.org"
user_search_base = "ou=people,dc=example,dc=org"
user_search_filter = "(uid={user})"
service_dn = "cn=svc,dc=example,dc=org"
service_password = "svc-secret"
group_base_dn = "ou=groups,dc=example,dc=org"
group_roles = { "cn=fhir-admins,ou=groups,dc=example,dc=org" = "admin" }
"#,
        )
        .unwrap();
        c.validate().unwrap();
        let shown = c.to_masked_toml();
        assert!(!shown.contains("svc-secret"), "{shown}");
        assert!(shown.contains("ldaps://ldap.example.org"));

        let mut bad = c.clone();
        bad.http.security = vec!["directory".into()];
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("ldap module")
        );
        let mut bad = c.clone();
        bad.http.security = vec!["nope".into()];
        assert!(bad.validate().unwrap_err().to_string().contains("nope"));
        let mut bad = c.clone();
        bad.http.anonymous = vec!["write:*".into()];
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("http.anonymous")
        );
        let mut bad = c;
        bad.security.bootstrap_admin_password = Some(Secret::new("weakpass1"));
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("bootstrap_admin_password")
        );
        let e = Config::from_toml("[[security.modules]]\nkind = \"magic\"\nname = \"x\"\n")
            .unwrap_err();
        assert!(e.contains("magic") || e.contains("variant"), "{e}");
    }

    #[test]
    fn bad_values_name_their_key() {
        let e = Config::load(&[("HEARTH_HTTP_ADDR", "nowhere")]).unwrap_err();
        assert!(e.to_string().contains("HEARTH_HTTP_ADDR"), "{e}");
        let e = Config::load(&[("HEARTH_DATABASE_URL", "postgres://u:pw@h/db")]).unwrap_err();
        assert!(e.to_string().contains("master_key_file"), "{e}");
        assert!(!e.to_string().contains("pw"));
        let e = Config::from_toml("[http]\nadress = \"x\"\n").unwrap_err();
        assert!(e.contains("adress") && e.contains("line 2"), "{e}");
        let e = Config::from_toml("[http]\naddr = \"x\"\n").unwrap_err();
        assert!(e.contains("line 2"), "{e}");
        let e = Config::from_toml("[fhir]\nmax_page_size = \"many\"\n").unwrap_err();
        assert!(e.contains("line 2"), "{e}");
    }

    #[test]
    fn listener_kinds() {
        let admin = "[[listeners]]\nname = \"admin\"\nkind = \"admin\"\naddr = \"127.0.0.1:8082\"\nbase_path = \"/admin\"\n";
        let c = Config::from_toml(admin).unwrap();
        assert_eq!(c.listeners[0].kind, ListenerKind::Admin);
        let invalid = |text: &str| {
            Config::from_toml(text)
                .unwrap()
                .validate()
                .unwrap_err()
                .to_string()
        };
        let e = invalid(&format!("{admin}anonymous = [\"read:*\"]\n"));
        assert!(e.contains("no anonymous access"), "{e}");
        let e = invalid("[http]\nkind = \"admin\"\n");
        assert!(e.contains("main listener serves FHIR"), "{e}");
        let e =
            Config::from_toml(&admin.replace("\"admin\"\naddr", "\"console\"\naddr")).unwrap_err();
        assert!(e.to_string().contains("console"), "{e}");
    }

    #[test]
    fn the_example_file_is_valid() {
        let c = Config::from_toml(include_str!("../docs/hearth.example.toml")).unwrap();
        assert_eq!(c.http.base_path, "/fhir");
    }

    #[test]
    fn secrets_are_masked() {
        let c = Config::load(&[
            (
                "HEARTH_DATABASE_URL",
                "postgres://hearth:s3cret@db:5432/hearth?sslmode=require",
            ),
            ("HEARTH_MASTER_KEY_FILE", "/keys/master"),
        ])
        .unwrap();
        let shown = c.to_masked_toml();
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(
            shown.contains("postgres://hearth:****@db:5432/hearth?sslmode=require"),
            "{shown}"
        );
        assert!(!format!("{c:?}").contains("s3cret"));
        assert_eq!(
            mask_url("postgres://h/db?password=x"),
            "postgres://h/db?password=****"
        );
    }
}
