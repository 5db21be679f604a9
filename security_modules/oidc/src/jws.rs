//! The compact JWS form of a token: three base64url parts, a JSON header
//! whose algorithm is checked against the allow-list before anything else,
//! and a payload read only once the signature has verified.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use crate::TokenError;
use crate::config::asymmetric_algorithm;

/// The longest token accepted (bytes). Access tokens with many scopes or
/// roles reach a few kilobytes; HTTP servers cap header sizes anyway.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// A token split and its header checked; the payload is still unread.
#[derive(Debug)]
pub(crate) struct Jws<'a> {
    pub alg: Algorithm,
    pub kid: Option<String>,
    /// `header.payload`, the bytes the signature covers.
    pub signing_input: &'a str,
    pub signature: Vec<u8>,
    payload: &'a str,
}

impl<'a> Jws<'a> {
    /// Splits `token` and checks its header: the algorithm must be in
    /// `allowed` (never `none` nor `HS*`), and no `crit` extension is
    /// understood. Header parameters that point at keys (`jwk`, `jku`,
    /// `x5u`, `x5c`) are ignored: keys come from the configured key set only.
    pub fn parse(token: &'a str, allowed: &[Algorithm]) -> Result<Jws<'a>, TokenError> {
        if token.is_empty() {
            return Err(TokenError::Malformed("empty"));
        }
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::Malformed("longer than 16 KiB"));
        }
        if !token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return Err(TokenError::Malformed("not base64url parts joined by dots"));
        }
        let parts: Vec<&str> = token.split('.').collect();
        let [header, payload, signature] = parts[..] else {
            return Err(if parts.len() == 5 {
                TokenError::Malformed("an encrypted token (JWE) is not accepted")
            } else {
                TokenError::Malformed("not three parts")
            });
        };
        // `header.payload`, as sent: what the signature covers.
        let signing_input = &token[..header.len() + 1 + payload.len()];
        let header =
            json_object(header).ok_or(TokenError::Malformed("the header is not a JSON object"))?;
        let alg = match header.get("alg") {
            Some(Value::String(name)) => check_algorithm(name, allowed)?,
            _ => return Err(TokenError::Malformed("the header has no `alg`")),
        };
        if header.contains_key("crit") {
            return Err(TokenError::Malformed(
                "critical header extensions are not supported",
            ));
        }
        let kid = match header.get("kid") {
            None | Some(Value::Null) => None,
            Some(Value::String(kid)) => Some(kid.clone()),
            Some(_) => return Err(TokenError::Malformed("the `kid` is not a string")),
        };
        if signature.is_empty() {
            return Err(TokenError::Malformed("no signature"));
        }
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| TokenError::Malformed("the signature is not base64url"))?;
        Ok(Jws {
            alg,
            kid,
            signing_input,
            signature,
            payload,
        })
    }

    /// The claims; call only once the signature has verified.
    pub fn claims(&self) -> Result<Map<String, Value>, TokenError> {
        json_object(self.payload).ok_or(TokenError::Malformed("the payload is not a JSON object"))
    }
}

fn json_object(part: &str) -> Option<Map<String, Value>> {
    let bytes = URL_SAFE_NO_PAD.decode(part).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

/// The algorithm named `name`, if it is allowed; otherwise the refusal,
/// naming it only when it is a known name (never echoing token text).
fn check_algorithm(name: &str, allowed: &[Algorithm]) -> Result<Algorithm, TokenError> {
    if let Some(alg) = asymmetric_algorithm(name)
        && allowed.contains(&alg)
    {
        return Ok(alg);
    }
    const KNOWN: [&str; 13] = [
        "none", "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
        "ES256", "ES384", "EdDSA",
    ];
    let shown = KNOWN
        .iter()
        .find(|k| k.eq_ignore_ascii_case(name))
        .copied()
        .unwrap_or("unknown");
    Err(TokenError::UnsupportedAlgorithm(shown))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(text: &str) -> String {
        URL_SAFE_NO_PAD.encode(text)
    }

    fn token(header: &str, payload: &str, signature: &str) -> String {
        format!("{}.{}.{}", b64(header), b64(payload), signature)
    }

    const ALL: [Algorithm; 3] = [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA];

    #[test]
    fn splits_a_token() {
        let t = token(
            r#"{"alg":"RS256","kid":"k1","typ":"at+jwt"}"#,
            r#"{"sub":"a"}"#,
            "c2ln",
        );
        let jws = Jws::parse(&t, &ALL).unwrap();
        assert_eq!(jws.alg, Algorithm::RS256);
        assert_eq!(jws.kid.as_deref(), Some("k1"));
        assert_eq!(jws.signature, b"sig");
        assert_eq!(jws.signing_input, &t[..t.rfind('.').unwrap()]);
        assert_eq!(jws.claims().unwrap()["sub"], "a");
    }

    #[test]
    fn none_and_symmetric_algorithms_are_refused_first() {
        for (alg, shown) in [
            ("none", "none"),
            ("NONE", "none"),
            ("HS256", "HS256"),
            ("HS512", "HS512"),
            ("RS384", "RS384"),
            ("ES512", "unknown"),
            ("rs256", "RS256"),
        ] {
            // An empty signature too: `alg` is decided before anything else.
            let t = token(&format!(r#"{{"alg":"{alg}"}}"#), "{}", "");
            assert_eq!(
                Jws::parse(&t, &ALL).unwrap_err(),
                TokenError::UnsupportedAlgorithm(shown),
                "{alg}"
            );
        }
    }

    #[test]
    fn malformed_tokens() {
        let long = "a".repeat(MAX_TOKEN_BYTES + 1);
        let cases = [
            String::new(),
            long,
            "abc".into(),
            "a.b".into(),
            "a.b.c.d".into(),
            "a.b.c.d.e".into(),
            "a b.c.d".into(),
            "YQ==.e30.c2ln".into(),
            token("[1]", "{}", "c2ln"),
            token("{}", "{}", "c2ln"),
            token(r#"{"alg":5}"#, "{}", "c2ln"),
            token(
                r#"{"alg":"RS256","crit":["b64"],"b64":false}"#,
                "{}",
                "c2ln",
            ),
            token(r#"{"alg":"RS256","kid":7}"#, "{}", "c2ln"),
            token(r#"{"alg":"RS256"}"#, "{}", ""),
        ];
        for t in cases {
            assert!(
                matches!(Jws::parse(&t, &ALL), Err(TokenError::Malformed(_))),
                "{t:.40}"
            );
        }
        let t = token(r#"{"alg":"RS256"}"#, "[]", "c2ln");
        assert!(matches!(
            Jws::parse(&t, &ALL).unwrap().claims(),
            Err(TokenError::Malformed(_))
        ));
    }
}
