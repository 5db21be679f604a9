//! Value rules of the R4 primitive types (the regular expressions of the R4
//! StructureDefinitions, written out as code so errors can say what is wrong).

/// Checks the text of a string-kind primitive. `Err` says what is wrong, never the value.
pub fn check_string(type_name: &str, s: &str) -> Result<(), &'static str> {
    if s.is_empty() {
        return Err("empty strings are not allowed");
    }
    // No type may hold characters below U+0020 other than tab, CR and LF:
    // XML cannot carry them.
    if type_name != "string"
        && type_name != "markdown"
        && s.chars()
            .any(|c| c < '\u{20}' && !matches!(c, '\r' | '\n' | '\t'))
    {
        return Err("control characters are not allowed");
    }
    match type_name {
        // R4 2.1.28.0.1: strings SHOULD NOT contain characters below U+0020 other
        // than tab, CR and LF. C1 controls are accepted: HL7's own published code
        // systems contain them.
        "string" | "markdown" => {
            if s.chars()
                .any(|c| c < '\u{20}' && !matches!(c, '\r' | '\n' | '\t'))
            {
                return Err("control characters are not allowed");
            }
            Ok(())
        }
        "code" => {
            let trimmed_ok = !s.starts_with(char::is_whitespace)
                && !s.ends_with(char::is_whitespace)
                && !s.contains("  ")
                && !s.chars().any(|c| c.is_whitespace() && c != ' ');
            if trimmed_ok {
                Ok(())
            } else {
                Err("a code must not have leading, trailing or repeated whitespace")
            }
        }
        "id" => check_id(s),
        "uri" | "url" | "canonical" => {
            if s.chars().any(char::is_whitespace) {
                Err("whitespace is not allowed in a URI")
            } else {
                Ok(())
            }
        }
        "oid" => {
            let ok = s.strip_prefix("urn:oid:").is_some_and(|rest| {
                let mut parts = rest.split('.');
                matches!(parts.next(), Some("0" | "1" | "2"))
                    && rest.contains('.')
                    && parts.all(|p| {
                        !p.is_empty()
                            && p.bytes().all(|b| b.is_ascii_digit())
                            && (p == "0" || !p.starts_with('0'))
                    })
            });
            if ok {
                Ok(())
            } else {
                Err("an oid must look like urn:oid:1.2.3")
            }
        }
        "uuid" => {
            let ok = s.strip_prefix("urn:uuid:").is_some_and(|u| {
                u.len() == 36
                    && u.bytes().enumerate().all(|(i, b)| match i {
                        8 | 13 | 18 | 23 => b == b'-',
                        _ => b.is_ascii_digit() || (b'a'..=b'f').contains(&b),
                    })
            });
            if ok {
                Ok(())
            } else {
                Err("a uuid must look like urn:uuid: followed by a lower-case UUID")
            }
        }
        "base64Binary" => {
            let mut n = 0usize;
            for b in s.bytes() {
                match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'+' | b'/' | b'=' => n += 1,
                    b' ' | b'\t' | b'\r' | b'\n' => {}
                    _ => return Err("not valid base64"),
                }
            }
            if n.is_multiple_of(4) {
                Ok(())
            } else {
                Err("not valid base64 (length)")
            }
        }
        "date" => check_date(s).map(|_| ()),
        "dateTime" => check_date_time(s),
        "instant" => check_instant(s),
        "time" => check_time(s),
        // Well-formed, a <div> in the XHTML namespace, and none of what R4
        // excludes from narrative (so it can be written into XML as is).
        "xhtml" => super::xml::check_xhtml(s),
        _ => Ok(()),
    }
}

/// Resource ids: 1–64 of `[A-Za-z0-9\-.]`.
pub fn check_id(s: &str) -> Result<(), &'static str> {
    if !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        Ok(())
    } else {
        Err("an id must be 1-64 characters of A-Z, a-z, 0-9, '-' and '.'")
    }
}

/// Checks the text of a number-kind primitive (already valid JSON number syntax).
pub fn check_number(type_name: &str, text: &str) -> Result<(), &'static str> {
    if type_name == "decimal" {
        return Ok(());
    }
    let is_integer_text = {
        let digits = text.strip_prefix('-').unwrap_or(text);
        !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
    };
    if !is_integer_text {
        return Err("an integer must not have a fraction or exponent");
    }
    let v: i32 = text
        .parse()
        .map_err(|_| "integer out of the 32-bit range")?;
    match type_name {
        "positiveInt" if v < 1 => Err("a positiveInt must be 1 or more"),
        "unsignedInt" if v < 0 => Err("an unsignedInt must be 0 or more"),
        _ => Ok(()),
    }
}

fn digits(s: &str, n: usize) -> Option<u32> {
    (s.len() == n && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok())?
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// `YYYY`, `YYYY-MM` or `YYYY-MM-DD`; returns the number of parts.
fn check_date(s: &str) -> Result<usize, &'static str> {
    const MSG: &str = "a date must be YYYY, YYYY-MM or YYYY-MM-DD with a real month and day";
    let parts: Vec<&str> = s.split('-').collect();
    let year = parts.first().and_then(|y| digits(y, 4)).ok_or(MSG)?;
    if parts.len() > 3 {
        return Err(MSG);
    }
    if let Some(m) = parts.get(1) {
        let month = digits(m, 2).filter(|m| (1..=12).contains(m)).ok_or(MSG)?;
        if let Some(d) = parts.get(2) {
            digits(d, 2)
                .filter(|d| (1..=days_in_month(year, month)).contains(d))
                .ok_or(MSG)?;
        }
    }
    Ok(parts.len())
}

/// `hh:mm:ss(.fraction)?`
fn check_time(s: &str) -> Result<(), &'static str> {
    const MSG: &str = "a time must be hh:mm:ss with an optional fraction";
    let (main, frac) = s.split_once('.').map_or((s, None), |(m, f)| (m, Some(f)));
    if let Some(f) = frac
        && (f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(MSG);
    }
    let p: Vec<&str> = main.split(':').collect();
    let ok = p.len() == 3
        && digits(p[0], 2).is_some_and(|h| h < 24)
        && digits(p[1], 2).is_some_and(|m| m < 60)
        && digits(p[2], 2).is_some_and(|s| s <= 60);
    if ok { Ok(()) } else { Err(MSG) }
}

fn check_zone(z: &str) -> bool {
    if z == "Z" {
        return true;
    }
    let Some(rest) = z.strip_prefix('+').or_else(|| z.strip_prefix('-')) else {
        return false;
    };
    let p: Vec<&str> = rest.split(':').collect();
    p.len() == 2
        && digits(p[0], 2).is_some_and(|h| h <= 14)
        && digits(p[1], 2).is_some_and(|m| m < 60)
}

/// A full date and time with seconds and a zone.
fn check_full_date_time(s: &str) -> bool {
    let Some((date, rest)) = s.split_once('T') else {
        return false;
    };
    if check_date(date) != Ok(3) {
        return false;
    }
    let zone_at = rest.find(['Z', '+', '-']);
    let Some(zone_at) = zone_at else {
        return false;
    };
    check_time(&rest[..zone_at]).is_ok() && check_zone(&rest[zone_at..])
}

fn check_date_time(s: &str) -> Result<(), &'static str> {
    if !s.contains('T') {
        return check_date(s).map(|_| ()).map_err(|_| {
            "a dateTime must be a date (YYYY, YYYY-MM, YYYY-MM-DD) or a full date and time with seconds and a time zone"
        });
    }
    if check_full_date_time(s) {
        Ok(())
    } else {
        Err("a dateTime with a time must have seconds and a time zone (e.g. 2020-01-01T10:00:00Z)")
    }
}

fn check_instant(s: &str) -> Result<(), &'static str> {
    if check_full_date_time(s) {
        Ok(())
    } else {
        Err("an instant must be a full date and time with seconds and a time zone")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_times() {
        for ok in ["2020", "2020-02", "2020-02-29", "2000-02-29"] {
            assert!(check_string("date", ok).is_ok(), "{ok}");
        }
        for bad in [
            "20",
            "2020-13",
            "2021-02-29",
            "1900-02-29",
            "2020-1-01",
            "2020-01-01T00:00:00Z",
        ] {
            assert!(check_string("date", bad).is_err(), "{bad}");
        }
        for ok in [
            "2020",
            "2020-01-01T10:00:00Z",
            "2020-01-01T10:00:00.123+02:00",
            "2016-12-31T23:59:60Z",
        ] {
            assert!(check_string("dateTime", ok).is_ok(), "{ok}");
        }
        for bad in [
            "2020-01-01T10:00",
            "2020-01-01T10:00:00",
            "2020-01-01T25:00:00Z",
            "2020-01-01T10:00:00+2:00",
        ] {
            assert!(check_string("dateTime", bad).is_err(), "{bad}");
        }
        assert!(check_string("instant", "2020-01-01").is_err());
        assert!(check_string("instant", "2020-01-01T00:00:00.000Z").is_ok());
        assert!(check_string("time", "23:59:59.5").is_ok());
        assert!(check_string("time", "24:00:00").is_err());
    }

    #[test]
    fn numbers() {
        assert!(check_number("integer", "-2147483648").is_ok());
        assert!(check_number("integer", "2147483648").is_err());
        assert!(check_number("integer", "1.0").is_err());
        assert!(check_number("positiveInt", "0").is_err());
        assert!(check_number("unsignedInt", "0").is_ok());
        assert!(check_number("unsignedInt", "-1").is_err());
        assert!(check_number("decimal", "1.50e3").is_ok());
    }

    #[test]
    fn strings() {
        assert!(check_string("code", "a b").is_ok());
        for bad in [" male", "male ", "a  b", "a\tb", ""] {
            assert!(check_string("code", bad).is_err(), "{bad:?}");
        }
        assert!(check_string("id", "a-B.9").is_ok());
        assert!(check_string("id", "bad_id!").is_err());
        assert!(check_string("id", &"a".repeat(65)).is_err());
        assert!(check_string("uri", "http://a b").is_err());
        assert!(check_string("oid", "urn:oid:1.2.840.113619").is_ok());
        assert!(check_string("oid", "urn:oid:3.2").is_err());
        assert!(check_string("uuid", "urn:uuid:c757873d-ec9a-4326-a141-556f43239520").is_ok());
        assert!(check_string("uuid", "urn:uuid:C757873D-ec9a-4326-a141-556f43239520").is_err());
        assert!(check_string("base64Binary", "aGVsbG8=").is_ok());
        assert!(check_string("base64Binary", "aGVsbG8").is_err());
        assert!(check_string("string", "line\nnext").is_ok());
        assert!(check_string("string", "bell\u{7}").is_err());
        assert!(check_string("string", "c1 \u{99} control").is_ok());
    }
}
