//! FHIR JSON: a small tree that keeps what FHIR needs and generic JSON libraries drop.
//!
//! - Numbers keep their exact text (`1.50` stays `1.50`, `0.00001230` stays as is):
//!   FHIR decimals carry precision in their digits.
//! - Object members keep their order, and duplicate names are an error.
//! - Nesting depth is bounded so hostile input cannot exhaust the stack.
//!
//! The writer emits compact JSON; [`pretty`] re-indents compact JSON without
//! building a tree, so a stored body can be served pretty without parsing it.

use std::fmt;

/// Deepest nesting accepted by [`parse`].
pub const MAX_DEPTH: usize = 100;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Json {
    Null,
    Bool(bool),
    /// The number exactly as written (already checked against the JSON grammar).
    Number(Box<str>),
    String(String),
    Array(Vec<Json>),
    Object(Object),
}

/// A JSON object with members in document order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Object(pub Vec<(String, Json)>);

impl Object {
    pub fn get(&self, name: &str) -> Option<&Json> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    pub fn remove(&mut self, name: &str) -> Option<Json> {
        let i = self.0.iter().position(|(k, _)| k == name)?;
        Some(self.0.remove(i).1)
    }

    pub fn push(&mut self, name: impl Into<String>, value: Json) {
        self.0.push((name.into(), value));
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Json)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }
}

impl Json {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn string(s: impl Into<String>) -> Json {
        Json::String(s.into())
    }

    /// Compact serialisation, as text.
    pub fn to_text(&self) -> String {
        String::from_utf8(self.to_bytes()).unwrap_or_default()
    }

    /// Compact serialisation.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        self.write(&mut out);
        out
    }

    pub fn write(&self, out: &mut Vec<u8>) {
        match self {
            Json::Null => out.extend_from_slice(b"null"),
            Json::Bool(true) => out.extend_from_slice(b"true"),
            Json::Bool(false) => out.extend_from_slice(b"false"),
            Json::Number(n) => out.extend_from_slice(n.as_bytes()),
            Json::String(s) => write_string(s, out),
            Json::Array(items) => {
                out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    item.write(out);
                }
                out.push(b']');
            }
            Json::Object(obj) => {
                out.push(b'{');
                for (i, (k, v)) in obj.0.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write_string(k, out);
                    out.push(b':');
                    v.write(out);
                }
                out.push(b'}');
            }
        }
    }
}

/// Writes `s` as a JSON string literal (non-ASCII stays raw UTF-8).
pub fn write_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: Option<&[u8]> = match b {
            b'"' => Some(b"\\\""),
            b'\\' => Some(b"\\\\"),
            b'\n' => Some(b"\\n"),
            b'\r' => Some(b"\\r"),
            b'\t' => Some(b"\\t"),
            0x08 => Some(b"\\b"),
            0x0c => Some(b"\\f"),
            0..=0x1f => None,
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        match escape {
            Some(e) => out.extend_from_slice(e),
            None => out.extend_from_slice(format!("\\u{b:04x}").as_bytes()),
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Where and why parsing failed. The message never quotes the input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub column: usize,
    pub kind: ParseErrorKind,
    /// Path of members leading to a duplicate name (for [`ParseErrorKind::DuplicateKey`]).
    pub path: Vec<PathStep>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathStep {
    Key(String),
    Index(usize),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseErrorKind {
    UnexpectedEnd,
    UnexpectedChar,
    InvalidNumber,
    InvalidEscape,
    ControlCharInString,
    InvalidUtf8,
    TooDeep,
    TrailingCharacters,
    DuplicateKey,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            ParseErrorKind::UnexpectedEnd => "unexpected end of input",
            ParseErrorKind::UnexpectedChar => "unexpected character",
            ParseErrorKind::InvalidNumber => "invalid number",
            ParseErrorKind::InvalidEscape => "invalid escape sequence in string",
            ParseErrorKind::ControlCharInString => "unescaped control character in string",
            ParseErrorKind::InvalidUtf8 => "invalid UTF-8",
            ParseErrorKind::TooDeep => "nesting too deep",
            ParseErrorKind::TrailingCharacters => "trailing characters after the JSON value",
            ParseErrorKind::DuplicateKey => "duplicate property name",
        };
        write!(f, "{what} at line {}, column {}", self.line, self.column)
    }
}

impl std::error::Error for ParseError {}

/// Parses one JSON value (surrounded by optional whitespace).
pub fn parse(input: &[u8]) -> Result<Json, ParseError> {
    let mut p = Parser {
        s: input,
        i: 0,
        path: Vec::new(),
    };
    p.skip_ws();
    let v = p.value(0)?;
    p.skip_ws();
    if p.i != p.s.len() {
        return Err(p.err(ParseErrorKind::TrailingCharacters));
    }
    Ok(v)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    path: Vec<PathStep>,
}

impl Parser<'_> {
    fn err(&self, kind: ParseErrorKind) -> ParseError {
        let upto = &self.s[..self.i.min(self.s.len())];
        let line = upto.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = upto.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
        ParseError {
            line,
            column: self.i - line_start + 1,
            kind,
            path: if kind == ParseErrorKind::DuplicateKey {
                self.path.clone()
            } else {
                Vec::new()
            },
        }
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.s.get(self.i) {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn expect_literal(&mut self, lit: &[u8], v: Json) -> Result<Json, ParseError> {
        if self.s[self.i..].starts_with(lit) {
            self.i += lit.len();
            Ok(v)
        } else if self.s.len() - self.i < lit.len() && lit.starts_with(&self.s[self.i..]) {
            self.i = self.s.len();
            Err(self.err(ParseErrorKind::UnexpectedEnd))
        } else {
            Err(self.err(ParseErrorKind::UnexpectedChar))
        }
    }

    fn value(&mut self, depth: usize) -> Result<Json, ParseError> {
        if depth > MAX_DEPTH {
            return Err(self.err(ParseErrorKind::TooDeep));
        }
        match self.peek() {
            None => Err(self.err(ParseErrorKind::UnexpectedEnd)),
            Some(b'{') => self.object(depth),
            Some(b'[') => self.array(depth),
            Some(b'"') => self.string().map(Json::String),
            Some(b't') => self.expect_literal(b"true", Json::Bool(true)),
            Some(b'f') => self.expect_literal(b"false", Json::Bool(false)),
            Some(b'n') => self.expect_literal(b"null", Json::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.err(ParseErrorKind::UnexpectedChar)),
        }
    }

    fn object(&mut self, depth: usize) -> Result<Json, ParseError> {
        self.i += 1;
        let mut members: Vec<(String, Json)> = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(Json::Object(Object(members)));
        }
        loop {
            self.skip_ws();
            match self.peek() {
                Some(b'"') => {}
                None => return Err(self.err(ParseErrorKind::UnexpectedEnd)),
                Some(_) => return Err(self.err(ParseErrorKind::UnexpectedChar)),
            }
            let key_at = self.i;
            let key = self.string()?;
            if members.iter().any(|(k, _)| *k == key) {
                self.path.push(PathStep::Key(key));
                self.i = key_at;
                return Err(self.err(ParseErrorKind::DuplicateKey));
            }
            self.skip_ws();
            match self.peek() {
                Some(b':') => self.i += 1,
                None => return Err(self.err(ParseErrorKind::UnexpectedEnd)),
                Some(_) => return Err(self.err(ParseErrorKind::UnexpectedChar)),
            }
            self.skip_ws();
            self.path.push(PathStep::Key(key));
            let v = self.value(depth + 1)?;
            let Some(PathStep::Key(key)) = self.path.pop() else {
                unreachable!("path pushed above")
            };
            members.push((key, v));
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(Json::Object(Object(members)));
                }
                None => return Err(self.err(ParseErrorKind::UnexpectedEnd)),
                Some(_) => return Err(self.err(ParseErrorKind::UnexpectedChar)),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Json, ParseError> {
        self.i += 1;
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.i += 1;
            return Ok(Json::Array(items));
        }
        loop {
            self.skip_ws();
            self.path.push(PathStep::Index(items.len()));
            let v = self.value(depth + 1)?;
            self.path.pop();
            items.push(v);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    return Ok(Json::Array(items));
                }
                None => return Err(self.err(ParseErrorKind::UnexpectedEnd)),
                Some(_) => return Err(self.err(ParseErrorKind::UnexpectedChar)),
            }
        }
    }

    fn number(&mut self) -> Result<Json, ParseError> {
        let start = self.i;
        let digits = |p: &mut Self| {
            let from = p.i;
            while let Some(b'0'..=b'9') = p.peek() {
                p.i += 1;
            }
            p.i - from
        };
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                digits(self);
            }
            _ => return Err(self.err(ParseErrorKind::InvalidNumber)),
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if digits(self) == 0 {
                return Err(self.err(ParseErrorKind::InvalidNumber));
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            if digits(self) == 0 {
                return Err(self.err(ParseErrorKind::InvalidNumber));
            }
        }
        if let Some(b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-') = self.peek() {
            return Err(self.err(ParseErrorKind::InvalidNumber));
        }
        // The slice is ASCII by construction.
        let text = String::from_utf8_lossy(&self.s[start..self.i]);
        Ok(Json::Number(text.into()))
    }

    fn hex4(&mut self) -> Result<u32, ParseError> {
        let Some(h) = self.s.get(self.i..self.i + 4) else {
            self.i = self.s.len();
            return Err(self.err(ParseErrorKind::UnexpectedEnd));
        };
        let mut v = 0u32;
        for &c in h {
            let d = match c {
                b'0'..=b'9' => c - b'0',
                b'a'..=b'f' => c - b'a' + 10,
                b'A'..=b'F' => c - b'A' + 10,
                _ => return Err(self.err(ParseErrorKind::InvalidEscape)),
            };
            v = v * 16 + u32::from(d);
        }
        self.i += 4;
        Ok(v)
    }

    fn string(&mut self) -> Result<String, ParseError> {
        self.i += 1; // opening quote
        let mut out: Vec<u8> = Vec::new();
        loop {
            let run_start = self.i;
            while let Some(&b) = self.s.get(self.i) {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.i += 1;
            }
            out.extend_from_slice(&self.s[run_start..self.i]);
            match self.peek() {
                None => return Err(self.err(ParseErrorKind::UnexpectedEnd)),
                Some(b'"') => {
                    self.i += 1;
                    break;
                }
                Some(b'\\') => {
                    self.i += 1;
                    let Some(e) = self.peek() else {
                        return Err(self.err(ParseErrorKind::UnexpectedEnd));
                    };
                    self.i += 1;
                    let c = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => self.unicode_escape()?,
                        _ => {
                            self.i -= 1;
                            return Err(self.err(ParseErrorKind::InvalidEscape));
                        }
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
                Some(_) => return Err(self.err(ParseErrorKind::ControlCharInString)),
            }
        }
        String::from_utf8(out).map_err(|_| self.err(ParseErrorKind::InvalidUtf8))
    }

    fn unicode_escape(&mut self) -> Result<char, ParseError> {
        let hi = self.hex4()?;
        let code = if (0xD800..0xDC00).contains(&hi) {
            if !self.s[self.i..].starts_with(b"\\u") {
                return Err(self.err(ParseErrorKind::InvalidEscape));
            }
            self.i += 2;
            let lo = self.hex4()?;
            if !(0xDC00..0xE000).contains(&lo) {
                return Err(self.err(ParseErrorKind::InvalidEscape));
            }
            0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
        } else {
            hi
        };
        char::from_u32(code).ok_or_else(|| self.err(ParseErrorKind::InvalidEscape))
    }
}

/// Re-indents compact (or any valid) JSON with two spaces, copying strings and
/// numbers byte for byte. Input must be valid JSON (it is: only stored bodies,
/// written by [`Json::write`], come here).
pub fn pretty(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() * 2);
    let mut indent = 0usize;
    let mut i = 0;
    let newline = |out: &mut Vec<u8>, indent: usize| {
        out.push(b'\n');
        out.resize(out.len() + indent * 2, b' ');
    };
    while i < input.len() {
        let b = input[i];
        match b {
            b'"' => {
                let start = i;
                i += 1;
                while i < input.len() && input[i] != b'"' {
                    if input[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                out.extend_from_slice(&input[start..(i + 1).min(input.len())]);
            }
            b'{' | b'[' => {
                let close = if b == b'{' { b'}' } else { b']' };
                let mut j = i + 1;
                while j < input.len() && input[j].is_ascii_whitespace() {
                    j += 1;
                }
                if input.get(j) == Some(&close) {
                    out.push(b);
                    out.push(close);
                    i = j;
                } else {
                    out.push(b);
                    indent += 1;
                    newline(&mut out, indent);
                }
            }
            b'}' | b']' => {
                indent = indent.saturating_sub(1);
                newline(&mut out, indent);
                out.push(b);
            }
            b',' => {
                out.push(b',');
                newline(&mut out, indent);
            }
            b':' => out.extend_from_slice(b": "),
            b' ' | b'\n' | b'\r' | b'\t' => {}
            _ => out.push(b),
        }
        i += 1;
    }
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(s: &str) -> String {
        String::from_utf8(parse(s.as_bytes()).unwrap().to_bytes()).unwrap()
    }

    #[test]
    fn numbers_keep_their_text() {
        for n in [
            "1.50",
            "0.00001230",
            "-0",
            "12345678901234567890.123456789",
            "1e5",
            "-2.5E-3",
        ] {
            assert_eq!(roundtrip(&format!("[{n}]")), format!("[{n}]"));
        }
    }

    #[test]
    fn bad_numbers_are_rejected() {
        for n in [
            "01", "1.", ".5", "-", "1e", "+1", "1.5.2", "0x10", "NaN", "Infinity",
        ] {
            let e = parse(format!("[{n}]").as_bytes());
            assert!(e.is_err(), "{n} accepted");
        }
    }

    #[test]
    fn strings_unescape_and_escape() {
        let v = parse(br#""a\"b\\c\/d\n\u00e9\ud83d\ude00\u0001""#).unwrap();
        assert_eq!(v, Json::String("a\"b\\c/d\né😀\u{1}".into()));
        assert_eq!(
            String::from_utf8(v.to_bytes()).unwrap(),
            r#""a\"b\\c/d\né😀\u0001""#
        );
        assert_eq!(roundtrip("\"Zyxwvutsrq 李 Ñ\""), "\"Zyxwvutsrq 李 Ñ\"");
    }

    #[test]
    fn malformed_input_is_rejected_with_a_position() {
        let cases: &[(&[u8], ParseErrorKind)] = &[
            (b"{\"a\":1,}", ParseErrorKind::UnexpectedChar),
            (b"{\"a\":1", ParseErrorKind::UnexpectedEnd),
            (b"{'a':1}", ParseErrorKind::UnexpectedChar),
            (b"{a:1}", ParseErrorKind::UnexpectedChar),
            (b"\"\\x\"", ParseErrorKind::InvalidEscape),
            (b"\"a\x01\"", ParseErrorKind::ControlCharInString),
            (b"\"\xff\"", ParseErrorKind::InvalidUtf8),
            (b"{} x", ParseErrorKind::TrailingCharacters),
            (b"\"\\ud800\"", ParseErrorKind::InvalidEscape),
            (b"tru", ParseErrorKind::UnexpectedEnd),
            (b"nul!", ParseErrorKind::UnexpectedChar),
        ];
        for (input, kind) in cases {
            let e = parse(input).unwrap_err();
            assert_eq!(e.kind, *kind, "{}", String::from_utf8_lossy(input));
        }
        let e = parse(b"{\n  \"a\": [1,\n  2,,]}").unwrap_err();
        assert_eq!((e.line, e.column), (3, 5));
    }

    #[test]
    fn duplicate_keys_report_their_path() {
        let e = parse(br#"{"name":[{"family":"a","family":"b"}]}"#).unwrap_err();
        assert_eq!(e.kind, ParseErrorKind::DuplicateKey);
        assert_eq!(
            e.path,
            vec![
                PathStep::Key("name".into()),
                PathStep::Index(0),
                PathStep::Key("family".into())
            ]
        );
    }

    #[test]
    fn depth_is_bounded() {
        let deep = "[".repeat(MAX_DEPTH + 2) + &"]".repeat(MAX_DEPTH + 2);
        assert_eq!(
            parse(deep.as_bytes()).unwrap_err().kind,
            ParseErrorKind::TooDeep
        );
        let ok = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert!(parse(ok.as_bytes()).is_ok());
    }

    #[test]
    fn pretty_keeps_tokens() {
        let compact = br#"{"a":[1.50,{"b":"x, y: {z}"}],"c":{},"d":[],"e":"q\"}"}"#;
        let p = pretty(compact);
        assert_eq!(parse(&p).unwrap(), parse(compact).unwrap());
        assert!(
            String::from_utf8(p)
                .unwrap()
                .contains("\n  \"a\": [\n    1.50,")
        );
    }
}
