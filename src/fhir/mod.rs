//! FHIR R4 knowledge: the type model, primitive rules, validation, and the
//! shaping of incoming resources into their stored form.

pub mod fhirpath;
pub mod model;
pub mod patch;
pub mod primitive;
pub mod search_params;
pub mod subset;
pub mod validate;
pub mod valueset;
pub mod xml;

use crate::error::{ApiError, ErrorKind, OutcomeIssue};
use crate::json::{self, Json, Object, ParseErrorKind, PathStep};

pub const FHIR_VERSION: &str = "4.0.1";

/// What the URL says the body must be.
#[derive(Clone, Copy, Debug)]
pub enum Expect<'a> {
    /// `POST [type]`: any `id` in the body is ignored (R4 3.1.0.4.1).
    Create { res_type: &'a str },
    /// `PUT [type]/[id]`: the body must carry the same id (R4 3.1.0.4.2).
    Update { res_type: &'a str, id: &'a str },
    /// `PUT [type]?criteria`: the body may carry an id (checked against the
    /// match by the caller).
    ConditionalUpdate { res_type: &'a str },
}

impl Expect<'_> {
    fn res_type(&self) -> &str {
        match self {
            Expect::Create { res_type }
            | Expect::Update { res_type, .. }
            | Expect::ConditionalUpdate { res_type } => res_type,
        }
    }
}

fn json_path(root: &str, steps: &[PathStep]) -> String {
    let mut s = root.to_owned();
    for step in steps {
        match step {
            PathStep::Key(k) => {
                s.push('.');
                s.push_str(k);
            }
            PathStep::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// Parses and validates a request body. Returns the resource object, with any
/// client `id` removed on create. Errors are 400 (not FHIR JSON of that type) or
/// 422 (content rules), each pointing at the element.
pub fn parse_resource(body: &[u8], expect: Expect<'_>) -> Result<Object, ApiError> {
    let res_type = expect.res_type();
    let value = json::parse(body).map_err(|e| {
        if e.kind == ParseErrorKind::DuplicateKey {
            ApiError::invalid_at(json_path(res_type, &e.path), format!("invalid JSON: {e}"))
        } else {
            ApiError::invalid(format!("invalid JSON: {e}"))
        }
    })?;
    check_resource(value, expect)
}

/// Validates a parsed resource as [`parse_resource`] does (a bundle entry's
/// resource comes this way).
pub fn check_resource(value: Json, expect: Expect<'_>) -> Result<Object, ApiError> {
    let res_type = expect.res_type();
    let Json::Object(mut obj) = value else {
        return Err(ApiError::invalid(
            "the body must be a JSON object (a FHIR resource)",
        ));
    };
    match obj.get("resourceType") {
        Some(Json::String(t)) if t == res_type => {}
        Some(Json::String(t)) if model::r4().is_resource_type(t) => {
            return Err(ApiError::invalid_at(
                "resourceType",
                format!("resourceType {t} does not match the URL, which names {res_type}"),
            ));
        }
        Some(_) => {
            return Err(ApiError::invalid_at(
                "resourceType",
                "resourceType is not a known R4 resource type",
            ));
        }
        None => {
            return Err(ApiError::invalid_at(
                "resourceType",
                "resourceType is missing",
            ));
        }
    }
    match expect {
        Expect::Create { .. } => {
            obj.remove("id");
        }
        Expect::ConditionalUpdate { .. } => {
            if obj.get("id").is_some_and(|id| id.as_str().is_none()) {
                return Err(ApiError::invalid_at(
                    format!("{res_type}.id"),
                    "id must be a string",
                ));
            }
        }
        Expect::Update { id, .. } => match obj.get("id") {
            Some(Json::String(body_id)) if body_id == id => {}
            Some(_) => {
                return Err(ApiError::invalid_at(
                    format!("{res_type}.id"),
                    "the id in the body differs from the id in the URL",
                ));
            }
            None => {
                return Err(ApiError::invalid_at(
                    format!("{res_type}.id"),
                    "an update must carry the resource id in the body",
                ));
            }
        },
    }
    let report = validate::validate_resource(&obj, res_type);
    if !report.is_valid() {
        let kind = if report.has_structure_issue() {
            ErrorKind::Invalid
        } else {
            ErrorKind::Unprocessable
        };
        let issues: Vec<OutcomeIssue> = report.issues.into_iter().map(|(_, i)| i).collect();
        return Err(ApiError::with_issues(kind, issues));
    }
    Ok(obj)
}

/// The stored form of a resource: `resourceType`, `id`, `meta` (with the
/// server-owned `versionId` and `lastUpdated` replaced) first, then the rest in
/// the order received. Compact JSON, decimals as written.
pub fn stored_form(
    mut obj: Object,
    res_type: &str,
    id: &str,
    version: i64,
    last_updated: &str,
) -> Vec<u8> {
    obj.remove("resourceType");
    obj.remove("id");
    let client_meta = match obj.remove("meta") {
        Some(Json::Object(m)) => m.0,
        _ => Vec::new(),
    };
    let mut meta = Object::default();
    meta.push("versionId", Json::string(version.to_string()));
    meta.push("lastUpdated", Json::string(last_updated));
    meta.0.extend(
        client_meta
            .into_iter()
            .filter(|(k, _)| k != "versionId" && k != "lastUpdated"),
    );
    let mut out = Object(Vec::with_capacity(obj.0.len() + 3));
    out.push("resourceType", Json::string(res_type));
    out.push("id", Json::string(id));
    out.push("meta", Json::Object(meta));
    out.0.extend(obj.0);
    Json::Object(out).to_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_form_puts_server_fields_first() {
        let obj = parse_resource(
            br#"{"resourceType":"Patient","id":"client","meta":{"versionId":"9","tag":[{"code":"t"}]},"birthDate":"2000-01-01"}"#,
            Expect::Create { res_type: "Patient" },
        )
        .unwrap();
        let out = stored_form(obj, "Patient", "abc", 2, "2020-01-01T00:00:00.000Z");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"resourceType":"Patient","id":"abc","meta":{"versionId":"2","lastUpdated":"2020-01-01T00:00:00.000Z","tag":[{"code":"t"}]},"birthDate":"2000-01-01"}"#
        );
    }

    #[test]
    fn update_requires_the_url_id() {
        let e = parse_resource(
            br#"{"resourceType":"Patient"}"#,
            Expect::Update {
                res_type: "Patient",
                id: "a",
            },
        )
        .unwrap_err();
        assert_eq!(e.issues[0].expression.as_deref(), Some("Patient.id"));
        let e = parse_resource(
            br#"{"resourceType":"Patient","id":"a","id":"b"}"#,
            Expect::Update {
                res_type: "Patient",
                id: "a",
            },
        )
        .unwrap_err();
        assert_eq!(e.issues[0].expression.as_deref(), Some("Patient.id"));
    }
}
