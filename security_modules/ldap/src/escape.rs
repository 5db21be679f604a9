//! Escaping of user input for the two LDAP string contexts, and the DN
//! comparison used for group membership.
//!
//! A user name reaches the directory in two places: inside a DN (the
//! `DnTemplate` bind mode, RFC 4514) and inside a search filter (the `Search`
//! bind mode, and the user's DN inside the group filter, RFC 4515). Each
//! context has its own special characters, so each has its own function; a
//! value is escaped for the context it is pasted into, right where it is
//! pasted, never earlier.

/// Escapes `value` as an attribute value inside a DN (RFC 4514, section 2.4).
///
/// Escaped: `"` `+` `,` `;` `<` `>` `\` `=` (with a backslash), NUL and other
/// ASCII control characters (as `\XX`), a leading `#` or space and a trailing
/// space. `=` need not be escaped by RFC 4514 but may be, and escaping it
/// keeps directories with lenient DN parsers from reading a second attribute.
pub fn dn_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' | '=' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            c if c.is_ascii_control() => push_hex(&mut out, c as u8),
            c => out.push(c),
        }
    }
    out
}

/// Escapes `value` as an assertion value inside a search filter (RFC 4515,
/// section 3): `*` `(` `)` `\` and NUL become `\2a` `\28` `\29` `\5c` `\00`.
/// A user name can then neither widen a filter (`*`) nor close it and add
/// conditions of its own (`alice)(uid=*`).
pub fn filter_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        match c {
            '*' | '(' | ')' | '\\' | '\0' => push_hex(&mut out, c as u8),
            c => out.push(c),
        }
    }
    out
}

fn push_hex(out: &mut String, byte: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('\\');
    out.push(char::from(HEX[usize::from(byte >> 4)]));
    out.push(char::from(HEX[usize::from(byte & 0x0f)]));
}

/// A DN in a form fit for comparison: its RDNs in order, each a sorted list of
/// (attribute type, value) pairs, types and values lowercased, values
/// unescaped and stripped of the spaces around separators.
///
/// This is how configured group DNs (`required_group`, `group_roles`) are
/// matched against the DNs the directory returns: `CN=FHIR-Users, ou=groups`
/// and `cn=fhir-users,ou=groups` are the same group. Comparing values without
/// case is right for the attributes that name groups in practice (`cn`, `ou`,
/// `dc`, `o`); attribute types are compared by name (not OID).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DnKey(Vec<Vec<(String, String)>>);

impl DnKey {
    /// Parses `dn`; `None` when it is not a well-formed string DN (an empty
    /// RDN, an attribute without `=`, a dangling or malformed escape).
    pub fn parse(dn: &str) -> Option<DnKey> {
        let mut rdns = Vec::new();
        for rdn in split_unescaped(dn, ',')? {
            let mut avas = Vec::new();
            for ava in split_unescaped(&rdn, '+')? {
                let (attr, value) = split_once_unescaped(&ava, '=')?;
                let attr = attr.trim().to_lowercase();
                if attr.is_empty() {
                    return None;
                }
                avas.push((attr, unescape_value(value)?.to_lowercase()));
            }
            avas.sort();
            rdns.push(avas);
        }
        Some(DnKey(rdns))
    }
}

/// Splits `s` on `sep` where it is not escaped by a backslash. `None` for an
/// empty part (`a,,b`, a leading or trailing separator) or an empty input.
fn split_unescaped(s: &str, sep: char) -> Option<Vec<String>> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            current.push(c);
            current.push(chars.next()?);
        } else if c == sep {
            parts.push(std::mem::take(&mut current));
        } else {
            current.push(c);
        }
    }
    parts.push(current);
    if parts.iter().any(|p| p.trim().is_empty()) {
        return None;
    }
    Some(parts)
}

fn split_once_unescaped(s: &str, sep: char) -> Option<(&str, &str)> {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == sep {
            return Some((&s[..i], &s[i + c.len_utf8()..]));
        }
    }
    None
}

/// Unescapes an RFC 4514 attribute value (`\,`, `\2C`, UTF-8 in `\XX`
/// pairs) and drops unescaped leading and trailing spaces. Values written as
/// `#` and hex (BER encodings) are kept as their text.
fn unescape_value(value: &str) -> Option<String> {
    // Spaces before the value are never significant unless escaped.
    let value = value.trim_start_matches(' ');
    let mut bytes = Vec::with_capacity(value.len());
    // Length of `bytes` after the last escaped character: trailing spaces
    // before that point are significant.
    let mut keep = 0;
    let mut iter = value.bytes();
    while let Some(b) = iter.next() {
        if b != b'\\' {
            bytes.push(b);
            if b != b' ' {
                keep = bytes.len();
            }
            continue;
        }
        let first = iter.next()?;
        if first.is_ascii_hexdigit() {
            let second = iter.next()?;
            let pair = [first, second];
            let hex = std::str::from_utf8(&pair).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
        } else {
            bytes.push(first);
        }
        keep = bytes.len();
    }
    bytes.truncate(keep);
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn dn_value_escapes_every_rfc4514_special() {
        assert_eq!(dn_value("alice"), "alice");
        assert_eq!(dn_value("a,b"), "a\\,b");
        assert_eq!(dn_value("a+b"), "a\\+b");
        assert_eq!(dn_value("a\"b"), "a\\\"b");
        assert_eq!(dn_value("a\\b"), "a\\\\b");
        assert_eq!(dn_value("a<b>c"), "a\\<b\\>c");
        assert_eq!(dn_value("a;b"), "a\\;b");
        assert_eq!(dn_value("a=b"), "a\\=b");
        assert_eq!(dn_value("a\0b"), "a\\00b");
        assert_eq!(dn_value("a\nb"), "a\\0ab");
    }

    #[test]
    fn dn_value_escapes_leading_hash_and_edge_spaces_only() {
        assert_eq!(dn_value("#admin"), "\\#admin");
        assert_eq!(dn_value("a#b"), "a#b");
        assert_eq!(dn_value(" alice"), "\\ alice");
        assert_eq!(dn_value("alice "), "alice\\ ");
        assert_eq!(dn_value("al ice"), "al ice");
        assert_eq!(dn_value(" "), "\\ ");
        assert_eq!(dn_value(""), "");
    }

    #[test]
    fn dn_value_keeps_filter_specials_and_unicode() {
        // `*`, `(` and `)` mean nothing in a DN.
        assert_eq!(dn_value("a*(b)"), "a*(b)");
        assert_eq!(dn_value("ålice"), "ålice");
    }

    #[test]
    fn dn_value_cannot_add_an_rdn() {
        // The classic injection: end the value and name another entry.
        let dn = format!(
            "uid={},ou=people,dc=example,dc=org",
            dn_value("x,ou=admins")
        );
        let key = DnKey::parse(&dn).unwrap();
        assert_eq!(key.0.len(), 4);
        assert_eq!(key.0[0], vec![("uid".into(), "x,ou=admins".into())]);
    }

    #[test]
    fn filter_value_escapes_every_rfc4515_special() {
        assert_eq!(filter_value("alice"), "alice");
        assert_eq!(filter_value("*"), "\\2a");
        assert_eq!(filter_value("a(b)"), "a\\28b\\29");
        assert_eq!(filter_value("a\\b"), "a\\5cb");
        assert_eq!(filter_value("a\0b"), "a\\00b");
        assert_eq!(filter_value("alice)(uid=*"), "alice\\29\\28uid=\\2a");
        // DN specials mean nothing in a filter value.
        assert_eq!(filter_value(",+\"<>;=# "), ",+\"<>;=# ");
    }

    #[test]
    fn escaped_filters_parse_as_one_equality_match() {
        for hostile in [
            "*",
            "alice)(uid=*",
            "*)(|(objectClass=*",
            "\\",
            "a\0b",
            "(",
            ")",
        ] {
            let filter = format!("(uid={})", filter_value(hostile));
            let parsed = ldap3::parse_filter(&filter);
            assert!(parsed.is_ok(), "{filter} does not parse");
            // An equality match, not a presence or substring match: the
            // context tag of the parsed filter is 3 (equalityMatch).
            match parsed.unwrap() {
                ldap3::asn1::Tag::Sequence(seq) => assert_eq!(seq.id, 3, "{filter}"),
                other => panic!("{filter} parsed as {other:?}"),
            }
        }
    }

    #[test]
    fn dn_keys_ignore_case_spacing_and_escape_form() {
        let a = DnKey::parse("cn=fhir-users,ou=groups,dc=example,dc=org").unwrap();
        let b = DnKey::parse("CN=FHIR-Users, ou = groups ,DC=Example,dc=org").unwrap();
        assert_eq!(a, b);
        let c = DnKey::parse("cn=a\\,b,dc=org").unwrap();
        let d = DnKey::parse("cn=a\\2Cb,dc=org").unwrap();
        assert_eq!(c, d);
        let e = DnKey::parse("cn=a+sn=b,dc=org").unwrap();
        let f = DnKey::parse("sn=b+cn=a,dc=org").unwrap();
        assert_eq!(e, f);
        assert_ne!(
            a,
            DnKey::parse("cn=fhir-admins,ou=groups,dc=example,dc=org").unwrap()
        );
        // An escaped trailing space is significant, an unescaped one is not.
        assert_eq!(DnKey::parse("cn=a ,dc=org"), DnKey::parse("cn=a,dc=org"));
        assert_ne!(DnKey::parse("cn=a\\ ,dc=org"), DnKey::parse("cn=a,dc=org"));
    }

    #[test]
    fn dn_keys_of_escaped_values_round_trip() {
        let raw = "#o'brien, (ops)*+=;<>\"\\ x ";
        let key = DnKey::parse(&format!("uid={},dc=org", dn_value(raw))).unwrap();
        assert_eq!(key.0[0][0].1, raw.to_lowercase());
    }

    #[test]
    fn malformed_dns_do_not_parse() {
        for bad in [
            "",
            "cn",
            "cn=a,",
            ",cn=a",
            "cn=a,,dc=org",
            "=a",
            "cn=a\\",
            "cn=a\\4",
        ] {
            assert_eq!(DnKey::parse(bad), None, "{bad:?}");
        }
    }
}
