//! OIDC / OAuth 2.0 bearer tokens from an external issuer: [`OidcValidator`]
//! checks a JWT access token (RFC 9068, or any signed JWT the issuer hands
//! out) against the issuer's published keys and answers a [`VerifiedToken`]
//! (user, client, roles, scopes, SMART launch context) or a [`TokenError`].
//!
//! ```no_run
//! # async fn demo(authorization: &str) -> Result<(), Box<dyn std::error::Error>> {
//! use hearth_auth_oidc::{OidcConfig, OidcValidator, bearer_token};
//!
//! let mut config = OidcConfig::new("https://idp.example.org/realms/fhir", ["https://fhir.example.org"]);
//! config.user_claim = "preferred_username".into();
//! config.roles_claim = Some("realm_access.roles".into());
//! let validator = OidcValidator::new(config)?; // checks the configuration, no I/O
//!
//! let token = bearer_token(authorization).ok_or("not a bearer token")?;
//! let verified = validator.validate(token).await?;
//! let (principal, _not_smart_scopes) = verified.principal(); // add permissions from roles
//! # Ok(()) }
//! ```
//!
//! # What is checked, in order
//!
//! 1. The token is a compact JWS (three base64url parts, at most 16 KiB) with
//!    a JSON header (else [`TokenError::Malformed`]; a JWE is refused).
//! 2. The header's `alg` is in the configured allow-list, which holds only
//!    asymmetric algorithms: `none` and `HS256/384/512` are refused here,
//!    before any key is looked at ([`TokenError::UnsupportedAlgorithm`]).
//!    This is what defeats the key-confusion attack (an `HS256` token whose
//!    HMAC secret is the issuer's *public* key): no symmetric verification
//!    ever happens, and symmetric (`oct`) keys of the key set are discarded
//!    when it is read. A `crit` header is refused; `jwk`, `jku`, `x5u` and
//!    `x5c` headers are ignored (keys come only from the configured issuer).
//! 3. A key of the issuer's key set fits the token: same `kid` (any key of
//!    the right type when the token has none), a type matching `alg` (RSA
//!    for `RS*`/`PS*`, P-256 for `ES256`, P-384 for `ES384`, Ed25519 for
//!    `EdDSA`), `use` absent or `sig`, and the key's `alg` absent or equal to
//!    the token's. If none does, the key set is fetched again — at most once
//!    per `jwks_refresh_min_interval` — and looked at once more
//!    ([`TokenError::UnknownKey`]).
//! 4. The signature verifies with that key ([`TokenError::BadSignature`]);
//!    aws-lc-rs checks it (RSA keys of 2048 bits at least).
//! 5. Only now is the payload read: `iss` equals the configured issuer
//!    exactly, `aud` (a string or a list) holds an accepted audience, `exp`
//!    has not passed, `nbf` (if present) has, `iat` (if present) is not in
//!    the future and, with `max_token_age`, not too old — all with `leeway`.
//!    `sub` and the user claim are required strings.
//!
//! # Never fail open
//!
//! Every error is a refusal. When the key set (or the discovery document)
//! cannot be fetched — unreachable, TLS failure, timeout, a status other than
//! 200, not a key set, a discovery document naming another issuer — the
//! answer is [`TokenError::Unavailable`] (a 503 for the caller, not a 401),
//! never an acceptance. A cached key set that has grown stale keeps serving
//! while the issuer cannot be reached (see the key cache below).
//!
//! # Key cache
//!
//! The key set is fetched at first use, or eagerly with
//! [`OidcValidator::refresh`], and cached. A token with an unknown key
//! triggers a new fetch only if the last one is at least
//! `jwks_refresh_min_interval` old (default 30 s), so made-up `kid`s cannot
//! make the validator hammer the issuer; a set older than `jwks_max_age`
//! (default 15 minutes) is fetched again at the next validation, so removed
//! keys stop being trusted. One fetch runs at a time: validations needing a
//! fetch while one is under way wait for its result. Validations whose key is
//! in a fresh set never wait.
//!
//! # HTTP
//!
//! reqwest over rustls with aws-lc-rs named explicitly (no process-wide
//! provider needed; `ring` is not in the graph). `https://` only, except
//! `http://` on loopback addresses (tests, a sidecar). Certificates are
//! always verified, against `ca_file` when set, else the system trust store.
//! Redirects are not followed; answers are bounded to 512 KiB; each request
//! is bounded by `timeout`. `HTTPS_PROXY`/`NO_PROXY` are honoured, except
//! for an issuer on a loopback address, which is always reached directly.
//!
//! Needs a tokio runtime (reqwest).

mod bearer;
mod cache;
mod claims;
mod config;
mod error;
mod http;
mod jwks;
mod jws;

use std::time::SystemTime;

pub use bearer::bearer_token;
pub use claims::VerifiedToken;
pub use config::{ConfigError, OidcConfig};
pub use error::TokenError;
pub use jws::MAX_TOKEN_BYTES;

use cache::KeyCache;
use config::Settings;
use http::Fetcher;
use jwks::Check;
use jws::Jws;

/// A validator for one issuer's tokens. Cheap to share (`Arc` it); it holds
/// the key cache and an HTTP client.
pub struct OidcValidator {
    settings: Settings,
    keys: KeyCache,
}

impl OidcValidator {
    /// Checks `config` and builds the HTTP client (reading `ca_file`). No
    /// network I/O: the keys are fetched at first use or by
    /// [`refresh`](Self::refresh). Every mistake is an error naming its field:
    /// a URL that is not `https://` (or loopback `http://`), both or neither
    /// of `discovery` and `jwks_uri`, no audience, an algorithm that is
    /// symmetric, `none` or unknown, a leeway over 10 minutes, a zero
    /// duration, an empty claim name, an unreadable CA file.
    pub fn new(config: OidcConfig) -> Result<OidcValidator, ConfigError> {
        let settings = Settings::check(&config)?;
        let fetcher = Fetcher::new(&settings, config.ca_file.as_deref())?;
        let keys = KeyCache::new(
            fetcher,
            settings.refresh_min_interval,
            settings.jwks_max_age,
        );
        Ok(OidcValidator { settings, keys })
    }

    /// The configured issuer.
    pub fn issuer(&self) -> &str {
        &self.settings.issuer
    }

    /// Validates a bearer token (the text after `Bearer `). See the crate
    /// documentation for the checks and their order.
    pub async fn validate(&self, token: &str) -> Result<VerifiedToken, TokenError> {
        let jws = Jws::parse(token, &self.settings.algorithms)?;
        let mut keys = self.keys.keys().await?;
        let mut outcome = keys.keys.check(&jws);
        if outcome == Check::NoKey {
            keys = self.keys.after_unknown_key(&keys).await?;
            outcome = keys.keys.check(&jws);
        }
        match outcome {
            Check::Verified => {}
            Check::NoKey => return Err(TokenError::UnknownKey),
            Check::BadSignature => return Err(TokenError::BadSignature),
        }
        claims::check(&jws.claims()?, &self.settings, SystemTime::now())
    }

    /// Fetches the key set now (discovery first, if configured), ignoring the
    /// rate limit; answers how many signature keys it holds. Useful at
    /// start-up, to fail early on a wrong configuration.
    pub async fn refresh(&self) -> Result<usize, TokenError> {
        Ok(self.keys.refresh().await?.keys.len())
    }
}

impl std::fmt::Debug for OidcValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcValidator")
            .field("issuer", &self.settings.issuer)
            .finish_non_exhaustive()
    }
}
