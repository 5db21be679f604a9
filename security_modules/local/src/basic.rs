//! HTTP Basic (RFC 7617) credentials from an `Authorization` header value.

use base64::Engine;

/// The user name and password of a `Basic` authorization, or None when the
/// header is not Basic or is malformed (not base64, not UTF-8, no colon).
pub fn parse_basic(header: &str) -> Option<(String, String)> {
    let (scheme, rest) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::parse_basic;

    #[test]
    fn basic_headers() {
        // "alice:pa:ss" — the password may hold colons.
        assert_eq!(
            parse_basic("Basic YWxpY2U6cGE6c3M="),
            Some(("alice".into(), "pa:ss".into()))
        );
        assert_eq!(
            parse_basic("basic YWxpY2U6"),
            Some(("alice".into(), String::new()))
        );
        assert_eq!(parse_basic("Bearer abc"), None);
        assert_eq!(parse_basic("Basic !!!"), None);
        assert_eq!(parse_basic("Basic YWxpY2U="), None); // no colon
        assert_eq!(parse_basic("Basic"), None);
    }
}
