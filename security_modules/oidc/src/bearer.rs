//! The bearer token of an `Authorization` header (RFC 6750, section 2.1).

/// The token of an `Authorization` header value `Bearer <token>`: the scheme
/// in any case, one or more spaces, then a `b64token` (letters, digits and
/// `-._~+/`, then optional `=`). `None` for any other scheme, an empty or
/// ill-formed token, or anything after it.
///
/// ```
/// use hearth_auth_oidc::bearer_token;
///
/// assert_eq!(bearer_token("Bearer abc.def.ghi"), Some("abc.def.ghi"));
/// assert_eq!(bearer_token("bearer  abc"), Some("abc"));
/// assert_eq!(bearer_token("Basic YWxpY2U6cHc="), None);
/// ```
pub fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, rest) = authorization.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("Bearer") {
        return None;
    }
    let token = rest.trim_start_matches(' ');
    let body = token.trim_end_matches('=');
    let well_formed = !body.is_empty()
        && body.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        });
    well_formed.then_some(token)
}

#[cfg(test)]
mod tests {
    use super::bearer_token;

    #[test]
    fn bearer_tokens() {
        let cases = [
            ("Bearer abc", Some("abc")),
            ("BEARER abc", Some("abc")),
            ("bearer    a.b.c", Some("a.b.c")),
            ("  Bearer abc  ", Some("abc")),
            ("Bearer ab+/c~d==", Some("ab+/c~d==")),
            ("Bearer", None),
            ("Bearer ", None),
            ("Bearer ===", None),
            ("Bearer a b", None),
            ("Bearer a\tb", None),
            ("Bearer\tabc", None),
            ("Bearer a=b", None),
            ("Bearer a,b", None),
            ("Basic abc", None),
            ("Bearerabc", None),
            ("", None),
            ("Bearer é", None),
        ];
        for (header, expected) in cases {
            assert_eq!(bearer_token(header), expected, "{header:?}");
        }
    }
}
