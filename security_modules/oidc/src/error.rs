//! Why a token was refused.

use std::fmt;

/// Why a token was refused. Every variant is a refusal; only
/// [`TokenError::Unavailable`] says the validator could not decide (the
/// issuer's keys could not be fetched: answer 503, not 401).
///
/// `Display` texts are short and safe for logs: they never hold the token nor
/// any value read from it (claim names come from the configuration, algorithm
/// names from a fixed list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// Not a compact JWS with a JSON header and payload (a JWE, wrong
    /// base64url, too long, a `crit` header…).
    Malformed(&'static str),
    /// The header's `alg` is `none`, symmetric (`HS*`), unknown, or not in
    /// the configured allow-list. Refused before any key is looked up. Holds
    /// the algorithm name when it is a known one, `unknown` otherwise.
    UnsupportedAlgorithm(&'static str),
    /// No key of the issuer's key set matches the token's `kid` and `alg`,
    /// even after a (rate-limited) refetch of the key set.
    UnknownKey,
    /// The signature does not verify with the issuer's key (tampered token,
    /// or signed by someone else).
    BadSignature,
    /// `exp` has passed (beyond the leeway).
    Expired,
    /// `nbf` is still to come (beyond the leeway).
    NotYetValid,
    /// `iat` is in the future (beyond the leeway).
    IssuedInFuture,
    /// `iat` is older than `max_token_age`.
    TooOld,
    /// `iss` is not the configured issuer.
    WrongIssuer,
    /// No `aud` value is an accepted audience.
    WrongAudience,
    /// A required claim is absent (or empty): `iss`, `aud`, `exp`, `sub`, the
    /// user claim, or `iat` when `max_token_age` is set.
    MissingClaim(String),
    /// A claim is present with the wrong type (a string `exp`, a number in the
    /// roles list…).
    InvalidClaim(String),
    /// The key set (or the discovery document) cannot be fetched or read: the
    /// token is refused, never let through.
    Unavailable(String),
}

impl TokenError {
    /// Whether the refusal is the validator's inability to decide (503)
    /// rather than a bad token (401).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, TokenError::Unavailable(_))
    }
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenError::Malformed(why) => write!(f, "malformed token: {why}"),
            TokenError::UnsupportedAlgorithm(alg) => {
                write!(f, "token algorithm `{alg}` is not accepted")
            }
            TokenError::UnknownKey => {
                f.write_str("token signed with a key the issuer does not publish")
            }
            TokenError::BadSignature => f.write_str("token signature does not verify"),
            TokenError::Expired => f.write_str("token expired"),
            TokenError::NotYetValid => f.write_str("token not valid yet (nbf)"),
            TokenError::IssuedInFuture => f.write_str("token issued in the future (iat)"),
            TokenError::TooOld => f.write_str("token older than the maximum age (iat)"),
            TokenError::WrongIssuer => f.write_str("token from another issuer"),
            TokenError::WrongAudience => f.write_str("token not meant for this server (aud)"),
            TokenError::MissingClaim(name) => write!(f, "token lacks the `{name}` claim"),
            TokenError::InvalidClaim(name) => write!(f, "token claim `{name}` has the wrong type"),
            TokenError::Unavailable(why) => write!(f, "the issuer's keys are unavailable: {why}"),
        }
    }
}

impl std::error::Error for TokenError {}
