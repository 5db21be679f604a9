//! SMART App Launch scopes (v1 and v2), parsed once when a token is accepted.
//!
//! Resource scopes are `<context>/<type>.<permissions>[?<filter>]`:
//!
//! - context: `patient`, `user` or `system`;
//! - type: a resource type name or `*`;
//! - permissions: SMART 1.0 `read` (= r s), `write` (= c u d) or `*` (= c r u d s), or
//!   SMART 2.x letters from `cruds`, in that order and without repeats (`rs`, `cud`);
//! - filter (2.x only): search parameter `name=value` pairs joined by `&`, kept as pairs
//!   in their order, not percent-decoded (`patient/Observation.rs?category=…|laboratory`).
//!
//! The other scopes SMART defines (`openid`, `fhirUser`, `profile`, `launch`,
//! `launch/patient`, `launch/encounter`, `offline_access`, `online_access`) parse as
//! such; anything else is refused. [`parse_scopes`] parses a space-separated scope
//! string and returns the refused strings beside the parsed scopes.

use std::fmt;
use std::str::FromStr;

use crate::permission::TypeSelector;

/// A set of the five SMART interactions: create, read, update, delete, search.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Ops(u8);

impl Ops {
    pub const NONE: Ops = Ops(0);
    pub const CREATE: Ops = Ops(1);
    pub const READ: Ops = Ops(2);
    pub const UPDATE: Ops = Ops(4);
    pub const DELETE: Ops = Ops(8);
    pub const SEARCH: Ops = Ops(16);
    /// SMART 1.0 `read`.
    pub const V1_READ: Ops = Ops(2 | 16);
    /// SMART 1.0 `write`.
    pub const V1_WRITE: Ops = Ops(1 | 4 | 8);
    pub const ALL: Ops = Ops(31);

    /// The letters in SMART 2.x order, with the single-letter sets they name.
    const LETTERS: [(char, Ops); 5] = [
        ('c', Ops::CREATE),
        ('r', Ops::READ),
        ('u', Ops::UPDATE),
        ('d', Ops::DELETE),
        ('s', Ops::SEARCH),
    ];

    pub const fn union(self, other: Ops) -> Ops {
        Ops(self.0 | other.0)
    }

    pub const fn intersection(self, other: Ops) -> Ops {
        Ops(self.0 & other.0)
    }

    /// Whether every operation of `other` is in `self`.
    pub const fn contains(self, other: Ops) -> bool {
        self.0 & other.0 == other.0
    }

    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Parses SMART 2.x letters (`cruds` order, no repeats, not empty).
    pub fn parse_letters(text: &str) -> Option<Ops> {
        let mut ops = Ops::NONE;
        let mut next = 0;
        for c in text.chars() {
            let i = next + Ops::LETTERS[next..].iter().position(|(l, _)| *l == c)?;
            ops = ops.union(Ops::LETTERS[i].1);
            next = i + 1;
        }
        (!ops.is_empty()).then_some(ops)
    }

    /// The word naming a single operation, for messages (`read`, `search`, …).
    pub fn word(self) -> &'static str {
        match self {
            Ops::CREATE => "create",
            Ops::READ => "read",
            Ops::UPDATE => "update",
            Ops::DELETE => "delete",
            Ops::SEARCH => "search",
            _ => "access",
        }
    }
}

/// The letters, in `cruds` order (`-` when empty).
impl fmt::Display for Ops {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("-");
        }
        for (letter, op) in Ops::LETTERS {
            if self.contains(op) {
                write!(f, "{letter}")?;
            }
        }
        Ok(())
    }
}

/// Whose data a resource scope is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScopeContext {
    /// The launch patient's compartment.
    Patient,
    /// What the signed-in user may access.
    User,
    /// A client acting for itself (backend services).
    System,
}

impl ScopeContext {
    pub fn as_str(self) -> &'static str {
        match self {
            ScopeContext::Patient => "patient",
            ScopeContext::User => "user",
            ScopeContext::System => "system",
        }
    }
}

/// Which SMART version's permission syntax a scope used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScopeVersion {
    V1,
    V2,
}

/// `patient/Observation.rs?category=…`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ResourceScope {
    pub context: ScopeContext,
    pub types: TypeSelector,
    pub ops: Ops,
    /// SMART 2.x search-parameter filter; `None` when the scope has none.
    pub filter: Option<Vec<(String, String)>>,
    pub version: ScopeVersion,
}

/// A granted SMART scope.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    Resource(ResourceScope),
    OpenId,
    FhirUser,
    Profile,
    Launch,
    LaunchPatient,
    LaunchEncounter,
    OfflineAccess,
    OnlineAccess,
}

impl Scope {
    const NAMED: [(&'static str, Scope); 8] = [
        ("openid", Scope::OpenId),
        ("fhirUser", Scope::FhirUser),
        ("profile", Scope::Profile),
        ("launch", Scope::Launch),
        ("launch/patient", Scope::LaunchPatient),
        ("launch/encounter", Scope::LaunchEncounter),
        ("offline_access", Scope::OfflineAccess),
        ("online_access", Scope::OnlineAccess),
    ];

    pub fn as_resource(&self) -> Option<&ResourceScope> {
        match self {
            Scope::Resource(r) => Some(r),
            _ => None,
        }
    }
}

/// A scope string that was refused, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeError {
    pub scope: String,
    pub message: &'static str,
}

impl fmt::Display for ScopeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid SMART scope `{}`: {}", self.scope, self.message)
    }
}

impl std::error::Error for ScopeError {}

impl FromStr for Scope {
    type Err = ScopeError;

    fn from_str(text: &str) -> Result<Scope, ScopeError> {
        if let Some((_, scope)) = Scope::NAMED.iter().find(|(name, _)| *name == text) {
            return Ok(scope.clone());
        }
        parse_resource_scope(text)
            .map(Scope::Resource)
            .map_err(|message| ScopeError {
                scope: text.to_owned(),
                message,
            })
    }
}

fn parse_resource_scope(text: &str) -> Result<ResourceScope, &'static str> {
    let Some((context, rest)) = text.split_once('/') else {
        return Err("not a scope SMART defines");
    };
    let context = match context {
        "patient" => ScopeContext::Patient,
        "user" => ScopeContext::User,
        "system" => ScopeContext::System,
        _ => return Err("unknown context (expected patient, user or system)"),
    };
    let (body, query) = match rest.split_once('?') {
        Some((body, query)) => (body, Some(query)),
        None => (rest, None),
    };
    let Some((types, permissions)) = body.split_once('.') else {
        return Err("expected `<type>.<permissions>` after the context");
    };
    let types =
        TypeSelector::parse(types).ok_or("the resource type is neither `*` nor a type name")?;
    let (ops, version) = match permissions {
        "read" => (Ops::V1_READ, ScopeVersion::V1),
        "write" => (Ops::V1_WRITE, ScopeVersion::V1),
        "*" => (Ops::ALL, ScopeVersion::V1),
        letters => (
            Ops::parse_letters(letters).ok_or(
                "permissions must be read, write, * or letters c, r, u, d, s in that order without repeats",
            )?,
            ScopeVersion::V2,
        ),
    };
    let filter = match query {
        None => None,
        Some(_) if version == ScopeVersion::V1 => {
            return Err("a filter needs SMART 2.x permission letters");
        }
        Some(query) => Some(parse_filter(query)?),
    };
    Ok(ResourceScope {
        context,
        types,
        ops,
        filter,
        version,
    })
}

fn parse_filter(query: &str) -> Result<Vec<(String, String)>, &'static str> {
    query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, value)) if !name.is_empty() && !value.is_empty() => {
                Ok((name.to_owned(), value.to_owned()))
            }
            _ => Err("the filter must be name=value pairs joined by &"),
        })
        .collect()
}

impl fmt::Display for ResourceScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}.", self.context.as_str(), self.types)?;
        match (self.version, self.ops) {
            (ScopeVersion::V1, Ops::V1_READ) => f.write_str("read")?,
            (ScopeVersion::V1, Ops::V1_WRITE) => f.write_str("write")?,
            (ScopeVersion::V1, Ops::ALL) => f.write_str("*")?,
            (_, ops) => write!(f, "{ops}")?,
        }
        if let Some(pairs) = &self.filter {
            for (i, (name, value)) in pairs.iter().enumerate() {
                let sep = if i == 0 { '?' } else { '&' };
                write!(f, "{sep}{name}={value}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Scope::Resource(r) = self {
            return r.fmt(f);
        }
        let name = Scope::NAMED
            .iter()
            .find(|(_, s)| s == self)
            .map_or("?", |(name, _)| name);
        f.write_str(name)
    }
}

/// Parses a space-separated scope string (an OAuth `scope` value): the scopes
/// understood, and the strings refused (unknown or malformed), in order.
pub fn parse_scopes(text: &str) -> (Vec<Scope>, Vec<String>) {
    let mut scopes = Vec::new();
    let mut refused = Vec::new();
    for item in text.split_ascii_whitespace() {
        match item.parse::<Scope>() {
            Ok(scope) => scopes.push(scope),
            Err(_) => refused.push(item.to_owned()),
        }
    }
    (scopes, refused)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(text: &str) -> ResourceScope {
        match text.parse::<Scope>() {
            Ok(Scope::Resource(r)) => r,
            other => panic!("`{text}`: {other:?}"),
        }
    }

    #[test]
    fn v1_scopes() {
        let cases = [
            (
                "patient/Observation.read",
                ScopeContext::Patient,
                "Observation",
                Ops::V1_READ,
            ),
            ("user/*.write", ScopeContext::User, "*", Ops::V1_WRITE),
            ("system/*.*", ScopeContext::System, "*", Ops::ALL),
            ("patient/*.read", ScopeContext::Patient, "*", Ops::V1_READ),
        ];
        for (text, context, types, ops) in cases {
            let r = resource(text);
            assert_eq!(r.context, context, "{text}");
            assert_eq!(r.types.to_string(), types, "{text}");
            assert_eq!(r.ops, ops, "{text}");
            assert_eq!(r.version, ScopeVersion::V1, "{text}");
            assert_eq!(r.filter, None, "{text}");
            assert_eq!(r.to_string(), text);
        }
        assert_eq!(Ops::V1_READ.to_string(), "rs");
        assert_eq!(Ops::V1_WRITE.to_string(), "cud");
    }

    #[test]
    fn v2_scopes() {
        let cases = [
            ("patient/Observation.rs", "rs"),
            ("user/*.cruds", "cruds"),
            ("system/Patient.c", "c"),
            ("user/Patient.r", "r"),
            ("user/Patient.u", "u"),
            ("user/Patient.d", "d"),
            ("user/Patient.s", "s"),
            ("user/Patient.cud", "cud"),
            ("user/Patient.rd", "rd"),
        ];
        for (text, letters) in cases {
            let r = resource(text);
            assert_eq!(r.ops.to_string(), letters, "{text}");
            assert_eq!(r.version, ScopeVersion::V2, "{text}");
            assert_eq!(r.to_string(), text);
        }
    }

    #[test]
    fn v2_filters_are_kept_as_pairs() {
        let text = "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory";
        let r = resource(text);
        assert_eq!(
            r.filter,
            Some(vec![(
                "category".to_owned(),
                "http://terminology.hl7.org/CodeSystem/observation-category|laboratory".to_owned()
            )])
        );
        assert_eq!(r.to_string(), text);

        let r = resource("user/Observation.s?category=vital-signs&status=final");
        assert_eq!(
            r.filter,
            Some(vec![
                ("category".to_owned(), "vital-signs".to_owned()),
                ("status".to_owned(), "final".to_owned()),
            ])
        );
    }

    #[test]
    fn non_resource_scopes() {
        let (scopes, refused) = parse_scopes(
            "openid fhirUser profile launch launch/patient launch/encounter offline_access online_access",
        );
        assert!(refused.is_empty(), "{refused:?}");
        assert_eq!(
            scopes,
            vec![
                Scope::OpenId,
                Scope::FhirUser,
                Scope::Profile,
                Scope::Launch,
                Scope::LaunchPatient,
                Scope::LaunchEncounter,
                Scope::OfflineAccess,
                Scope::OnlineAccess,
            ]
        );
        for s in &scopes {
            assert_eq!(s.to_string().parse::<Scope>().as_ref(), Ok(s));
        }
    }

    #[test]
    fn bad_scopes_are_refused_with_a_reason() {
        let cases = [
            ("email", "not a scope SMART defines"),
            ("OpenID", "not a scope SMART defines"),
            ("launch/practitioner", "unknown context"),
            ("patients/Observation.read", "unknown context"),
            ("Patient/Observation.read", "unknown context"),
            ("patient/Observation", "expected `<type>.<permissions>`"),
            ("patient/observation.read", "neither `*` nor a type name"),
            ("patient/.read", "neither `*` nor a type name"),
            ("patient/Observation.", "permissions must be"),
            ("patient/Observation.sr", "permissions must be"),
            ("patient/Observation.rr", "permissions must be"),
            ("patient/Observation.crudsx", "permissions must be"),
            ("patient/Observation.x", "permissions must be"),
            ("patient/Observation.R", "permissions must be"),
            ("patient/Observation.dc", "permissions must be"),
            ("patient/Observation.ReAd", "permissions must be"),
            ("patient/Observation.read?category=x", "needs SMART 2.x"),
            ("patient/Observation.rs?", "name=value pairs"),
            ("patient/Observation.rs?category", "name=value pairs"),
            ("patient/Observation.rs?=x", "name=value pairs"),
            ("patient/Observation.rs?category=", "name=value pairs"),
            ("patient/Observation.rs?a=b&&c=d", "name=value pairs"),
        ];
        for (text, message) in cases {
            match text.parse::<Scope>() {
                Ok(s) => panic!("`{text}` parsed as {s:?}"),
                Err(e) => assert!(e.message.contains(message), "`{text}`: {e}"),
            }
        }
    }

    #[test]
    fn a_scope_string_reports_what_it_refused() {
        let (scopes, refused) =
            parse_scopes("  openid patient/Observation.rs  bogus\tuser/*.xyz launch/patient ");
        assert_eq!(scopes.len(), 3);
        assert_eq!(refused, vec!["bogus".to_owned(), "user/*.xyz".to_owned()]);
        let (scopes, refused) = parse_scopes("");
        assert!(scopes.is_empty() && refused.is_empty());
    }

    #[test]
    fn ops_letters() {
        assert_eq!(Ops::parse_letters("cruds"), Some(Ops::ALL));
        assert_eq!(Ops::parse_letters(""), None);
        assert_eq!(Ops::parse_letters("rc"), None);
        assert!(Ops::ALL.contains(Ops::V1_READ));
        assert!(!Ops::V1_READ.contains(Ops::CREATE));
        assert_eq!(Ops::V1_READ.intersection(Ops::V1_WRITE), Ops::NONE);
        assert_eq!(Ops::NONE.to_string(), "-");
    }
}
