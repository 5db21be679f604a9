//! The configuration of an OIDC validator, and its validation.
//!
//! `OidcConfig` is plain data (the application fills it from its own typed
//! configuration); [`crate::OidcValidator::new`] checks it and refuses to
//! build a validator from a configuration it would have to guess about.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use url::Url;

/// Which issuer to trust, where its keys are, and how its tokens map to a
/// caller. Start from [`OidcConfig::new`], which sets the defaults.
#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// The issuer identifier, compared byte for byte with each token's `iss`
    /// (`https://idp.example.org/realms/fhir`; a trailing slash matters).
    /// `https://`, or `http://` on a loopback address (for tests); no query
    /// or fragment.
    pub issuer: String,
    /// Find the key set through `{issuer}/.well-known/openid-configuration`
    /// (its `jwks_uri`; the document must name the same issuer). Exactly one
    /// of `discovery` and `jwks_uri` is set.
    pub discovery: bool,
    /// The issuer's JSON Web Key Set, named directly (no discovery).
    pub jwks_uri: Option<String>,
    /// Accepted `aud` values: a token must name at least one. Required.
    pub audience: Vec<String>,
    /// The signature algorithms accepted (JWS names). Asymmetric only:
    /// `RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 EdDSA` (Ed25519).
    /// `none` and `HS*` are configuration errors.
    pub algorithms: Vec<String>,
    /// Clock skew tolerated on `exp`, `nbf` and `iat` (at most 10 minutes).
    pub leeway: Duration,
    /// Refuse tokens issued (`iat`) longer ago than this, whatever their
    /// `exp`; tokens must then carry `iat`.
    pub max_token_age: Option<Duration>,
    /// Fetch the key set again at most this often: a token signed with an
    /// unknown key triggers a fetch only when the last one is older.
    pub jwks_refresh_min_interval: Duration,
    /// Fetch the key set again when the cached one is older than this, so
    /// keys the issuer removed stop being trusted.
    pub jwks_max_age: Duration,
    /// PEM file of the CA certificate(s) the issuer's HTTPS certificates
    /// chain to. When set, only these CAs are trusted; otherwise the system
    /// trust store.
    pub ca_file: Option<PathBuf>,
    /// Bound on each HTTP request (discovery, key set), connecting included.
    pub timeout: Duration,
    /// The claim naming the user (`sub`, `preferred_username`, `email`…).
    /// May be a dotted path into nested objects.
    pub user_claim: String,
    /// The claim holding the roles: a list of strings or one space-separated
    /// string. May be a dotted path (`realm_access.roles`); a claim whose
    /// name itself holds dots (`https://example.org/roles`) is found first.
    /// A token without it has no roles.
    pub roles_claim: Option<String>,
    /// The claim holding the granted scopes: a space-separated string or a
    /// list. When it is absent, `scp` (Azure AD, Okta) is read instead.
    pub scope_claim: String,
}

impl OidcConfig {
    /// Every algorithm accepted by default (all asymmetric ones supported).
    pub const DEFAULT_ALGORITHMS: [&'static str; 9] = [
        "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
    ];
    pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(60);
    pub const DEFAULT_JWKS_REFRESH_MIN_INTERVAL: Duration = Duration::from_secs(30);
    pub const DEFAULT_JWKS_MAX_AGE: Duration = Duration::from_secs(15 * 60);
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
    /// The most `leeway` allowed.
    pub const MAX_LEEWAY: Duration = Duration::from_secs(600);

    /// A configuration with the defaults: discovery on, every asymmetric
    /// algorithm, 60 s leeway, no age bound, key set refetched at most every
    /// 30 s and at least every 15 minutes, the system trust store, 5 s
    /// timeout, the user from `sub`, no roles, scopes from `scope`.
    pub fn new<A: Into<String>>(
        issuer: impl Into<String>,
        audience: impl IntoIterator<Item = A>,
    ) -> OidcConfig {
        OidcConfig {
            issuer: issuer.into(),
            discovery: true,
            jwks_uri: None,
            audience: audience.into_iter().map(Into::into).collect(),
            algorithms: Self::DEFAULT_ALGORITHMS.map(str::to_owned).to_vec(),
            leeway: Self::DEFAULT_LEEWAY,
            max_token_age: None,
            jwks_refresh_min_interval: Self::DEFAULT_JWKS_REFRESH_MIN_INTERVAL,
            jwks_max_age: Self::DEFAULT_JWKS_MAX_AGE,
            ca_file: None,
            timeout: Self::DEFAULT_TIMEOUT,
            user_claim: "sub".to_owned(),
            roles_claim: None,
            scope_claim: "scope".to_owned(),
        }
    }

    /// The same configuration with an explicit key set instead of discovery.
    pub fn with_jwks_uri(mut self, jwks_uri: impl Into<String>) -> OidcConfig {
        self.discovery = false;
        self.jwks_uri = Some(jwks_uri.into());
        self
    }
}

/// A configuration mistake, naming the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub field: &'static str,
    pub message: String,
}

impl ConfigError {
    pub(crate) fn new(field: &'static str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            field,
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "oidc `{}`: {}", self.field, self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Where the key set is found.
#[derive(Debug, Clone)]
pub(crate) enum KeySource {
    /// The discovery document's URL; its `jwks_uri` is read at first use.
    Discovery(Url),
    Jwks(Url),
}

/// The configuration once checked.
#[derive(Debug)]
pub(crate) struct Settings {
    pub issuer: String,
    pub source: KeySource,
    pub audience: Vec<String>,
    pub algorithms: Vec<Algorithm>,
    pub leeway: Duration,
    pub max_token_age: Option<Duration>,
    pub refresh_min_interval: Duration,
    pub jwks_max_age: Duration,
    pub timeout: Duration,
    pub user_claim: String,
    pub roles_claim: Option<String>,
    pub scope_claim: String,
    /// Whether a configured URL is `https://` (the trust store must not be
    /// empty then).
    pub needs_tls: bool,
    /// Whether the issuer is on a loopback address (reached without proxy).
    pub loopback: bool,
}

impl Settings {
    pub fn check(config: &OidcConfig) -> Result<Settings, ConfigError> {
        let issuer_url = check_url("issuer", &config.issuer)?;
        if issuer_url.query().is_some() || issuer_url.fragment().is_some() {
            return Err(ConfigError::new(
                "issuer",
                "an issuer identifier has no query or fragment",
            ));
        }
        let source = match (config.discovery, &config.jwks_uri) {
            (true, None) => KeySource::Discovery(discovery_url(&config.issuer)?),
            (false, Some(uri)) => KeySource::Jwks(check_url("jwks_uri", uri)?),
            (true, Some(_)) => {
                return Err(ConfigError::new(
                    "jwks_uri",
                    "set together with discovery: choose one",
                ));
            }
            (false, None) => {
                return Err(ConfigError::new("jwks_uri", "needed when discovery is off"));
            }
        };
        let needs_tls = issuer_url.scheme() == "https"
            || matches!(&source, KeySource::Jwks(u) if u.scheme() == "https");

        if config.audience.is_empty() {
            return Err(ConfigError::new(
                "audience",
                "name at least one accepted `aud` value",
            ));
        }
        if config.audience.iter().any(|a| a.trim().is_empty()) {
            return Err(ConfigError::new("audience", "holds an empty value"));
        }

        let algorithms = check_algorithms(&config.algorithms)?;

        if config.leeway > OidcConfig::MAX_LEEWAY {
            return Err(ConfigError::new("leeway", "at most 10 minutes"));
        }
        if config.max_token_age.is_some_and(|d| d.is_zero()) {
            return Err(ConfigError::new("max_token_age", "must be more than zero"));
        }
        for (field, value) in [
            (
                "jwks_refresh_min_interval",
                config.jwks_refresh_min_interval,
            ),
            ("jwks_max_age", config.jwks_max_age),
            ("timeout", config.timeout),
        ] {
            if value.is_zero() {
                return Err(ConfigError::new(field, "must be more than zero"));
            }
        }
        for (field, value) in [
            ("user_claim", Some(&config.user_claim)),
            ("roles_claim", config.roles_claim.as_ref()),
            ("scope_claim", Some(&config.scope_claim)),
        ] {
            if value.is_some_and(|v| v.trim().is_empty() || v.split('.').any(str::is_empty)) {
                return Err(ConfigError::new(
                    field,
                    "must name a claim (a name, or a dotted path without empty parts)",
                ));
            }
        }

        Ok(Settings {
            issuer: config.issuer.clone(),
            source,
            audience: config.audience.clone(),
            algorithms,
            leeway: config.leeway,
            max_token_age: config.max_token_age,
            refresh_min_interval: config.jwks_refresh_min_interval,
            jwks_max_age: config.jwks_max_age,
            timeout: config.timeout,
            user_claim: config.user_claim.clone(),
            roles_claim: config.roles_claim.clone(),
            scope_claim: config.scope_claim.clone(),
            needs_tls,
            loopback: is_loopback(&issuer_url),
        })
    }
}

/// `{issuer}/.well-known/openid-configuration` (OpenID Connect Discovery 1.0,
/// section 4: any trailing `/` of the issuer is removed first).
fn discovery_url(issuer: &str) -> Result<Url, ConfigError> {
    let text = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    check_url("issuer", &text)
}

/// An `https://` URL, or `http://` on a loopback host; no user information.
pub(crate) fn check_url(field: &'static str, text: &str) -> Result<Url, ConfigError> {
    let url =
        Url::parse(text.trim()).map_err(|e| ConfigError::new(field, format!("not a URL: {e}")))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ConfigError::new(field, "must not hold credentials"));
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback(&url) => Ok(url),
        "http" => Err(ConfigError::new(
            field,
            "must be https:// (plain http:// only on a loopback address)",
        )),
        other => Err(ConfigError::new(
            field,
            format!("unsupported scheme `{other}`: use https://"),
        )),
    }
}

pub(crate) fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// Parses the allow-list: known asymmetric JWS names only.
fn check_algorithms(names: &[String]) -> Result<Vec<Algorithm>, ConfigError> {
    if names.is_empty() {
        return Err(ConfigError::new(
            "algorithms",
            "name at least one algorithm",
        ));
    }
    let mut algorithms = Vec::new();
    for name in names {
        let name = name.trim();
        let algorithm = match asymmetric_algorithm(name) {
            Some(a) => a,
            None if name.eq_ignore_ascii_case("none")
                || name.to_ascii_uppercase().starts_with("HS") =>
            {
                return Err(ConfigError::new(
                    "algorithms",
                    format!(
                        "`{name}` is refused: only asymmetric signatures verify a token from another party"
                    ),
                ));
            }
            None => {
                return Err(ConfigError::new(
                    "algorithms",
                    format!(
                        "unknown algorithm `{name}` (supported: {})",
                        OidcConfig::DEFAULT_ALGORITHMS.join(", ")
                    ),
                ));
            }
        };
        if !algorithms.contains(&algorithm) {
            algorithms.push(algorithm);
        }
    }
    Ok(algorithms)
}

/// The asymmetric algorithm of this exact JWS name.
pub(crate) fn asymmetric_algorithm(name: &str) -> Option<Algorithm> {
    Some(match name {
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> OidcConfig {
        OidcConfig::new(
            "https://idp.example.org/realms/fhir",
            ["https://fhir.example.org"],
        )
    }

    fn error(config: &OidcConfig) -> ConfigError {
        Settings::check(config).unwrap_err()
    }

    #[test]
    fn defaults_are_valid() {
        let settings = Settings::check(&base()).unwrap();
        assert_eq!(settings.algorithms.len(), 9);
        assert!(settings.needs_tls);
        match settings.source {
            KeySource::Discovery(url) => assert_eq!(
                url.as_str(),
                "https://idp.example.org/realms/fhir/.well-known/openid-configuration"
            ),
            KeySource::Jwks(_) => panic!("expected discovery"),
        }
        let mut slash = base();
        slash.issuer.push('/');
        match Settings::check(&slash).unwrap().source {
            KeySource::Discovery(url) => assert!(
                url.path()
                    .ends_with("/realms/fhir/.well-known/openid-configuration")
            ),
            KeySource::Jwks(_) => panic!("expected discovery"),
        }
    }

    #[test]
    fn symmetric_and_none_algorithms_are_refused() {
        for name in ["HS256", "HS384", "HS512", "none", "None", "hs256"] {
            let mut c = base();
            c.algorithms = vec!["RS256".into(), name.into()];
            let e = error(&c);
            assert_eq!(e.field, "algorithms");
            assert!(e.message.contains("only asymmetric"), "{name}: {e}");
        }
        let mut c = base();
        c.algorithms = vec!["ES512".into()];
        assert!(error(&c).message.contains("unknown algorithm"));
        c.algorithms = Vec::new();
        assert_eq!(error(&c).field, "algorithms");
    }

    #[test]
    fn urls_must_be_https_except_on_loopback() {
        for issuer in [
            "http://idp.example.org",
            "ftp://idp.example.org",
            "idp.example.org",
        ] {
            let mut c = base();
            c.issuer = issuer.into();
            assert_eq!(error(&c).field, "issuer", "{issuer}");
        }
        for issuer in [
            "http://127.0.0.1:8080",
            "http://[::1]:80/x",
            "http://localhost:9",
        ] {
            let mut c = base();
            c.issuer = issuer.into();
            let s = Settings::check(&c).unwrap();
            assert!(!s.needs_tls, "{issuer}");
        }
        let mut c = base();
        c.issuer = "https://idp.example.org/?realm=x".into();
        assert!(error(&c).message.contains("no query"));
        c.issuer = "https://user:pw@idp.example.org".into();
        assert!(error(&c).message.contains("credentials"));

        let c = base().with_jwks_uri("http://idp.example.org/keys");
        assert_eq!(error(&c).field, "jwks_uri");
    }

    #[test]
    fn key_source_is_discovery_xor_jwks_uri() {
        let mut c = base();
        c.jwks_uri = Some("https://idp.example.org/keys".into());
        assert!(error(&c).message.contains("choose one"));
        c.discovery = false;
        assert!(matches!(
            Settings::check(&c).unwrap().source,
            KeySource::Jwks(_)
        ));
        c.jwks_uri = None;
        assert!(error(&c).message.contains("needed"));
    }

    #[test]
    fn other_fields() {
        let mut c = base();
        c.audience = Vec::new();
        assert_eq!(error(&c).field, "audience");
        c.audience = vec![" ".into()];
        assert_eq!(error(&c).field, "audience");

        let mut c = base();
        c.leeway = Duration::from_secs(601);
        assert_eq!(error(&c).field, "leeway");

        let mut c = base();
        c.max_token_age = Some(Duration::ZERO);
        assert_eq!(error(&c).field, "max_token_age");

        for field in ["jwks_refresh_min_interval", "jwks_max_age", "timeout"] {
            let mut c = base();
            match field {
                "jwks_refresh_min_interval" => c.jwks_refresh_min_interval = Duration::ZERO,
                "jwks_max_age" => c.jwks_max_age = Duration::ZERO,
                _ => c.timeout = Duration::ZERO,
            }
            assert_eq!(error(&c).field, field);
        }

        let mut c = base();
        c.roles_claim = Some("realm_access..roles".into());
        assert_eq!(error(&c).field, "roles_claim");
        c.roles_claim = Some("realm_access.roles".into());
        c.user_claim = String::new();
        assert_eq!(error(&c).field, "user_claim");
    }
}
