//! The issuer's JSON Web Key Set (RFC 7517): the signature keys kept from
//! it, how a token's key is chosen, and the signature check.
//!
//! A key is kept only if it can verify an asymmetric signature: `use` absent
//! or `sig`, `key_ops` absent or holding `verify`, `alg` absent or a
//! supported asymmetric algorithm matching its type, and the key type one of
//! RSA, EC P-256 / P-384, OKP Ed25519. Symmetric (`oct`) keys are never
//! kept, whatever a token claims. Entries that do not parse are skipped and
//! counted; the rest of the set still serves.
//!
//! Signatures are checked by jsonwebtoken's aws-lc-rs provider, named
//! explicitly (not the process default, which another crate of the binary
//! could change).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use serde_json::Value;

use crate::config::asymmetric_algorithm;
use crate::jws::Jws;

/// The most keys read from one set (the rest are ignored).
pub const MAX_KEYS: usize = 64;

/// The key types a signature key can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl KeyKind {
    /// Whether `alg` signs with a key of this type.
    fn fits(self, alg: Algorithm) -> bool {
        matches!(
            (self, alg),
            (
                KeyKind::Rsa,
                Algorithm::RS256
                    | Algorithm::RS384
                    | Algorithm::RS512
                    | Algorithm::PS256
                    | Algorithm::PS384
                    | Algorithm::PS512
            ) | (KeyKind::P256, Algorithm::ES256)
                | (KeyKind::P384, Algorithm::ES384)
                | (KeyKind::Ed25519, Algorithm::EdDSA)
        )
    }
}

/// One signature key of the set.
pub(crate) struct SigningKey {
    kid: Option<String>,
    alg: Option<Algorithm>,
    kind: KeyKind,
    key: DecodingKey,
}

impl SigningKey {
    fn accepts(&self, kid: Option<&str>, alg: Algorithm) -> bool {
        self.kind.fits(alg)
            && self.alg.is_none_or(|a| a == alg)
            && kid.is_none_or(|kid| self.kid.as_deref() == Some(kid))
    }

    fn verifies(&self, jws: &Jws<'_>) -> bool {
        match (DEFAULT_PROVIDER.verifier_factory)(&jws.alg, &self.key) {
            Ok(verifier) => verifier
                .verify(jws.signing_input.as_bytes(), &jws.signature)
                .is_ok(),
            Err(_) => false,
        }
    }
}

/// The signature keys of a key set.
pub(crate) struct KeySet {
    keys: Vec<SigningKey>,
    /// Entries skipped (other uses, symmetric, unsupported or broken).
    pub skipped: usize,
}

/// The outcome of checking a signature against a key set.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Check {
    Verified,
    /// Some key fits the token's `kid` and `alg`; none verifies it.
    BadSignature,
    /// No key fits the token's `kid` and `alg`.
    NoKey,
}

impl KeySet {
    /// Parses a JWK Set document. Only a document that is not a key set at
    /// all is an error; unusable entries are skipped.
    pub fn parse(bytes: &[u8]) -> Result<KeySet, &'static str> {
        let document: Value =
            serde_json::from_slice(bytes).map_err(|_| "the key set is not JSON")?;
        let Some(Value::Array(entries)) = document.get("keys") else {
            return Err("the document is not a JWK set (no `keys` list)");
        };
        let mut keys = Vec::new();
        let mut skipped = entries.len().saturating_sub(MAX_KEYS);
        for entry in entries.iter().take(MAX_KEYS) {
            match signing_key(entry) {
                Some(key) => keys.push(key),
                None => skipped += 1,
            }
        }
        Ok(KeySet { keys, skipped })
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Checks the token's signature with the keys that fit its `kid` and
    /// `alg` (every key of a fitting type when it has no `kid`).
    pub fn check(&self, jws: &Jws<'_>) -> Check {
        let mut fitting = self
            .keys
            .iter()
            .filter(|k| k.accepts(jws.kid.as_deref(), jws.alg))
            .peekable();
        if fitting.peek().is_none() {
            return Check::NoKey;
        }
        if fitting.any(|k| k.verifies(jws)) {
            Check::Verified
        } else {
            Check::BadSignature
        }
    }
}

/// The members of a JWK this crate reads.
#[derive(Deserialize)]
struct Jwk {
    kty: String,
    kid: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    key_ops: Option<Vec<String>>,
    alg: Option<String>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

fn signing_key(entry: &Value) -> Option<SigningKey> {
    let jwk = Jwk::deserialize(entry).ok()?;
    if jwk.use_.as_deref().is_some_and(|u| u != "sig") {
        return None;
    }
    if jwk
        .key_ops
        .as_ref()
        .is_some_and(|ops| !ops.iter().any(|op| op == "verify"))
    {
        return None;
    }
    let alg = match &jwk.alg {
        None => None,
        Some(name) => Some(asymmetric_algorithm(name)?),
    };
    let (kind, key) = match (jwk.kty.as_str(), jwk.crv.as_deref()) {
        ("RSA", _) => {
            let (n, e) = (jwk.n.as_deref()?, jwk.e.as_deref()?);
            (KeyKind::Rsa, DecodingKey::from_rsa_components(n, e).ok()?)
        }
        ("EC", Some(curve @ ("P-256" | "P-384"))) => {
            let (kind, size) = if curve == "P-256" {
                (KeyKind::P256, 32)
            } else {
                (KeyKind::P384, 48)
            };
            let (x, y) = (jwk.x.as_deref()?, jwk.y.as_deref()?);
            if decoded_len(x)? != size || decoded_len(y)? != size {
                return None;
            }
            (kind, DecodingKey::from_ec_components(x, y).ok()?)
        }
        ("OKP", Some("Ed25519")) => {
            let x = jwk.x.as_deref()?;
            if decoded_len(x)? != 32 {
                return None;
            }
            (KeyKind::Ed25519, DecodingKey::from_ed_components(x).ok()?)
        }
        _ => return None,
    };
    if alg.is_some_and(|a| !kind.fits(a)) {
        return None;
    }
    Some(SigningKey {
        kid: jwk.kid,
        alg,
        kind,
        key,
    })
}

fn decoded_len(b64: &str) -> Option<usize> {
    URL_SAFE_NO_PAD.decode(b64).ok().map(|v| v.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // A P-256 point and an Ed25519 key (public values from RFC 7515 A.3 and
    // RFC 8037 A.2); an RSA modulus needs no validity to be kept.
    const P256_X: &str = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
    const P256_Y: &str = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";
    const ED_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";

    fn set(keys: Value) -> KeySet {
        KeySet::parse(json!({ "keys": keys }).to_string().as_bytes()).unwrap()
    }

    #[test]
    fn keeps_signature_keys_only() {
        let keys = set(json!([
            {"kty": "RSA", "kid": "r", "n": "AQAB", "e": "AQAB"},
            {"kty": "RSA", "kid": "r-alg", "alg": "PS256", "use": "sig", "n": "AQAB", "e": "AQAB"},
            {"kty": "EC", "kid": "e", "crv": "P-256", "x": P256_X, "y": P256_Y, "key_ops": ["verify"]},
            {"kty": "OKP", "kid": "d", "crv": "Ed25519", "x": ED_X},
            // skipped:
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB"},
            {"kty": "RSA", "kid": "oaep", "alg": "RSA-OAEP", "n": "AQAB", "e": "AQAB"},
            {"kty": "RSA", "kid": "ops", "key_ops": ["encrypt"], "n": "AQAB", "e": "AQAB"},
            {"kty": "RSA", "kid": "mismatch", "alg": "ES256", "n": "AQAB", "e": "AQAB"},
            {"kty": "RSA", "kid": "no-n", "e": "AQAB"},
            {"kty": "oct", "kid": "sym", "k": "c2VjcmV0"},
            {"kty": "oct", "kid": "sym-alg", "alg": "HS256", "k": "c2VjcmV0"},
            {"kty": "EC", "kid": "p521", "crv": "P-521", "x": P256_X, "y": P256_Y},
            {"kty": "EC", "kid": "short", "crv": "P-256", "x": "AQAB", "y": P256_Y},
            {"kty": "OKP", "kid": "x25519", "crv": "X25519", "x": ED_X},
            {"kty": "XYZ"},
            {"kid": "no-kty"},
            "not a key",
            42
        ]));
        assert_eq!(keys.len(), 4);
        assert_eq!(keys.skipped, 14);
        let kids: Vec<_> = keys
            .keys
            .iter()
            .map(|k| k.kid.as_deref().unwrap())
            .collect();
        assert_eq!(kids, ["r", "r-alg", "e", "d"]);
    }

    #[test]
    fn a_key_fits_by_kid_type_and_alg() {
        let keys = set(json!([
            {"kty": "RSA", "kid": "r", "n": "AQAB", "e": "AQAB"},
            {"kty": "RSA", "kid": "r-ps", "alg": "PS256", "n": "AQAB", "e": "AQAB"},
            {"kty": "EC", "kid": "e", "crv": "P-256", "x": P256_X, "y": P256_Y},
        ]));
        let fits = |kid: Option<&str>, alg| {
            keys.keys
                .iter()
                .filter(|k| k.accepts(kid, alg))
                .map(|k| k.kid.clone().unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(fits(Some("r"), Algorithm::RS256), ["r"]);
        assert_eq!(fits(Some("r"), Algorithm::PS512), ["r"]);
        assert!(fits(Some("r"), Algorithm::ES256).is_empty());
        assert!(fits(Some("r-ps"), Algorithm::RS256).is_empty());
        assert!(fits(Some("e"), Algorithm::ES384).is_empty());
        assert!(fits(Some("zz"), Algorithm::RS256).is_empty());
        assert_eq!(fits(None, Algorithm::RS256), ["r"]);
        assert_eq!(fits(None, Algorithm::ES256), ["e"]);
    }

    #[test]
    fn documents_that_are_not_key_sets() {
        for doc in [&b"not json"[..], b"[]", b"{}", br#"{"keys": {}}"#] {
            assert!(KeySet::parse(doc).is_err());
        }
        let many: Vec<Value> = (0..MAX_KEYS + 3)
            .map(|i| json!({"kty": "RSA", "kid": i.to_string(), "n": "AQAB", "e": "AQAB"}))
            .collect();
        let keys = set(Value::Array(many));
        assert_eq!((keys.len(), keys.skipped), (MAX_KEYS, 3));
    }
}
