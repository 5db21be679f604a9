//! What a principal is allowed to do, as configured: `Permission` and its text form.
//!
//! | Text                   | Meaning                                                     |
//! |------------------------|-------------------------------------------------------------|
//! | `read:*`               | read and search every resource type                         |
//! | `write:Observation`    | create, update, patch and delete Observations               |
//! | `read:*@Patient/123`   | read and search, only within the compartment of Patient/123 |
//! | `admin:audit`          | the audit administration area                               |
//! | `superuser`            | everything, administration included                         |
//!
//! Read covers the read, vread, history and search interactions; write covers create,
//! update, patch and delete. Neither implies the other.

use std::fmt;
use std::str::FromStr;

/// One resource type, or all of them (`*`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TypeSelector {
    All,
    One(String),
}

impl TypeSelector {
    /// Parses `*` or a resource type name (`Observation`).
    pub fn parse(text: &str) -> Option<TypeSelector> {
        if text == "*" {
            Some(TypeSelector::All)
        } else if is_resource_type_name(text) {
            Some(TypeSelector::One(text.to_owned()))
        } else {
            None
        }
    }

    /// Whether resources of `res_type` are selected.
    pub fn covers(&self, res_type: &str) -> bool {
        match self {
            TypeSelector::All => true,
            TypeSelector::One(t) => t == res_type,
        }
    }

    /// The types both selectors select, if any.
    pub fn intersect(&self, other: &TypeSelector) -> Option<TypeSelector> {
        match (self, other) {
            (TypeSelector::All, x) | (x, TypeSelector::All) => Some(x.clone()),
            (TypeSelector::One(a), TypeSelector::One(b)) => (a == b).then(|| self.clone()),
        }
    }
}

impl fmt::Display for TypeSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TypeSelector::All => f.write_str("*"),
            TypeSelector::One(t) => f.write_str(t),
        }
    }
}

/// An administration area of the server (not FHIR resources).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AdminArea {
    Users,
    Clients,
    Audit,
    Keys,
    Config,
}

impl AdminArea {
    pub const ALL: [AdminArea; 5] = [
        AdminArea::Users,
        AdminArea::Clients,
        AdminArea::Audit,
        AdminArea::Keys,
        AdminArea::Config,
    ];

    /// The lower-case name used in the text forms (`users`, `clients`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            AdminArea::Users => "users",
            AdminArea::Clients => "clients",
            AdminArea::Audit => "audit",
            AdminArea::Keys => "keys",
            AdminArea::Config => "config",
        }
    }

    pub fn parse(text: &str) -> Option<AdminArea> {
        AdminArea::ALL.into_iter().find(|a| a.as_str() == text)
    }
}

impl fmt::Display for AdminArea {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A configured right. `patient` limits a resource permission to the compartment
/// of `Patient/<patient>` (the id only is stored).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Permission {
    Read {
        types: TypeSelector,
        patient: Option<String>,
    },
    Write {
        types: TypeSelector,
        patient: Option<String>,
    },
    Admin(AdminArea),
    Superuser,
}

/// A permission text that could not be parsed; the message says what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PermissionError {
    pub text: String,
    pub message: String,
}

impl fmt::Display for PermissionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid permission `{}`: {}", self.text, self.message)
    }
}

impl std::error::Error for PermissionError {}

impl FromStr for Permission {
    type Err = PermissionError;

    fn from_str(text: &str) -> Result<Permission, PermissionError> {
        let err = |message: String| PermissionError {
            text: text.to_owned(),
            message,
        };
        if text == "superuser" {
            return Ok(Permission::Superuser);
        }
        let Some((kind, rest)) = text.split_once(':') else {
            return Err(err(
                "expected `read:<type>`, `write:<type>`, `admin:<area>` or `superuser`".to_owned(),
            ));
        };
        match kind {
            "admin" => AdminArea::parse(rest).map(Permission::Admin).ok_or_else(|| {
                err(format!(
                    "unknown admin area `{rest}` (expected users, clients, audit, keys or config)"
                ))
            }),
            "read" | "write" => {
                let (selector, patient) = match rest.split_once('@') {
                    None => (rest, None),
                    Some((selector, compartment)) => {
                        let Some(id) = compartment.strip_prefix("Patient/") else {
                            return Err(err(format!(
                                "`@{compartment}`: only a Patient compartment (`@Patient/<id>`) can limit a permission"
                            )));
                        };
                        if !is_valid_id(id) {
                            return Err(err(format!(
                                "`{id}` is not a valid resource id (1-64 of A-Z a-z 0-9 - .)"
                            )));
                        }
                        (selector, Some(id.to_owned()))
                    }
                };
                let Some(types) = TypeSelector::parse(selector) else {
                    return Err(err(format!(
                        "`{selector}` is neither `*` nor a resource type name"
                    )));
                };
                Ok(if kind == "read" {
                    Permission::Read { types, patient }
                } else {
                    Permission::Write { types, patient }
                })
            }
            _ => Err(err(format!(
                "unknown permission kind `{kind}` (expected read, write, admin or superuser)"
            ))),
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, types, patient) = match self {
            Permission::Superuser => return f.write_str("superuser"),
            Permission::Admin(area) => return write!(f, "admin:{area}"),
            Permission::Read { types, patient } => ("read", types, patient),
            Permission::Write { types, patient } => ("write", types, patient),
        };
        write!(f, "{kind}:{types}")?;
        if let Some(id) = patient {
            write!(f, "@Patient/{id}")?;
        }
        Ok(())
    }
}

/// A FHIR resource type name as it appears in URLs: an upper-case ASCII letter then
/// ASCII letters and digits. Whether the type exists is not checked here.
pub fn is_resource_type_name(text: &str) -> bool {
    let mut chars = text.chars();
    chars.next().is_some_and(|c| c.is_ascii_uppercase()) && chars.all(|c| c.is_ascii_alphanumeric())
}

/// A FHIR logical id: 1 to 64 of `A-Z a-z 0-9 - .`.
pub fn is_valid_id(text: &str) -> bool {
    (1..=64).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Permission, PermissionError> {
        text.parse()
    }

    #[test]
    fn good_texts_parse_and_print_back() {
        let cases = [
            (
                "read:*",
                Permission::Read {
                    types: TypeSelector::All,
                    patient: None,
                },
            ),
            (
                "write:Observation",
                Permission::Write {
                    types: TypeSelector::One("Observation".into()),
                    patient: None,
                },
            ),
            (
                "read:*@Patient/123",
                Permission::Read {
                    types: TypeSelector::All,
                    patient: Some("123".into()),
                },
            ),
            (
                "write:Condition@Patient/a-b.c",
                Permission::Write {
                    types: TypeSelector::One("Condition".into()),
                    patient: Some("a-b.c".into()),
                },
            ),
            ("admin:users", Permission::Admin(AdminArea::Users)),
            ("admin:clients", Permission::Admin(AdminArea::Clients)),
            ("admin:audit", Permission::Admin(AdminArea::Audit)),
            ("admin:keys", Permission::Admin(AdminArea::Keys)),
            ("admin:config", Permission::Admin(AdminArea::Config)),
            ("superuser", Permission::Superuser),
        ];
        for (text, expected) in cases {
            assert_eq!(parse(text), Ok(expected.clone()), "{text}");
            assert_eq!(expected.to_string(), text);
        }
    }

    #[test]
    fn bad_texts_are_refused_with_a_message() {
        let cases = [
            ("", "expected `read:<type>`"),
            ("read", "expected `read:<type>`"),
            ("Superuser", "expected `read:<type>`"),
            ("delete:Observation", "unknown permission kind `delete`"),
            ("read:", "neither `*` nor a resource type"),
            ("read:observation", "neither `*` nor a resource type"),
            ("read:Obs-ervation", "neither `*` nor a resource type"),
            ("write:**", "neither `*` nor a resource type"),
            ("read:*@Encounter/1", "only a Patient compartment"),
            ("read:*@Patient/", "not a valid resource id"),
            ("read:*@Patient/a b", "not a valid resource id"),
            ("admin:everything", "unknown admin area `everything`"),
            ("admin:", "unknown admin area"),
            (" read:*", "unknown permission kind"),
        ];
        for (text, message) in cases {
            match parse(text) {
                Ok(p) => panic!("`{text}` parsed as {p:?}"),
                Err(e) => {
                    assert!(e.message.contains(message), "`{text}`: {e}");
                    assert!(e.to_string().contains(text), "`{text}`: {e}");
                }
            }
        }
    }

    #[test]
    fn selectors_intersect() {
        let obs = TypeSelector::One("Observation".into());
        let pat = TypeSelector::One("Patient".into());
        assert_eq!(TypeSelector::All.intersect(&obs), Some(obs.clone()));
        assert_eq!(obs.intersect(&TypeSelector::All), Some(obs.clone()));
        assert_eq!(obs.intersect(&obs), Some(obs.clone()));
        assert_eq!(obs.intersect(&pat), None);
        assert!(TypeSelector::All.covers("Anything"));
        assert!(!obs.covers("Patient"));
    }
}
