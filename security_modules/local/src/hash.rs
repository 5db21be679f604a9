//! Password hashes: argon2id (RFC 9106) with the OWASP-recommended cost
//! (19 MiB, 2 passes, 1 lane), stored as PHC strings. A hash records its own
//! parameters, so raising the cost later still verifies old hashes.

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};

fn hasher() -> Result<Argon2<'static>, String> {
    let params = Params::new(19 * 1024, 2, 1, None).map_err(|e| e.to_string())?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashes a password with a fresh random salt (tens of milliseconds: call it
/// off the async executor).
pub fn hash_password(password: &str) -> Result<String, String> {
    hasher()?
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| format!("hashing failed: {e}"))
}

/// Whether `password` matches the PHC string `hash`. A malformed hash never matches.
pub fn verify_password(password: &str, hash: &str) -> bool {
    hasher().is_ok_and(|h| h.verify_password(password.as_bytes(), hash).is_ok())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn hashes_verify_and_differ() {
        let a = hash_password("correct horse 1").unwrap();
        let b = hash_password("correct horse 1").unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert_ne!(a, b, "salted");
        assert!(verify_password("correct horse 1", &a));
        assert!(!verify_password("correct horse 2", &a));
        assert!(!verify_password("correct horse 1", "not a hash"));
    }
}
