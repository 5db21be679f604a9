//! Subsets of a resource for `_summary` and `_elements` (R4 3.1.1.5.8–9): only
//! top-level elements are chosen, `resourceType`, `id` and `meta` are always
//! kept, and the result carries the `SUBSETTED` tag so no client mistakes it
//! for the whole resource.

use crate::error::ApiError;
use crate::fhir::model;
use crate::json::{Json, Object};

/// Which part of each resource a response carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subset {
    /// `_summary=true`: the elements the definition marks as summary.
    Summary,
    /// `_summary=text`: the narrative and the mandatory elements.
    Text,
    /// `_summary=data`: everything but the narrative.
    Data,
    /// `_elements=a,b`: the named elements.
    Elements(Vec<String>),
}

const SUBSETTED_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue";

/// The subset of a stored resource body (JSON), re-serialised.
pub fn apply(body: &[u8], res_type: &str, how: &Subset) -> Result<Vec<u8>, ApiError> {
    let Json::Object(obj) = crate::json::parse(body)
        .map_err(|_| ApiError::internal(format!("a stored {res_type} is not JSON")))?
    else {
        return Err(ApiError::internal(format!(
            "a stored {res_type} is not an object"
        )));
    };
    let model = model::r4();
    let def = model.type_def(res_type);
    let summary = model.summary_elements(res_type);
    let keep = |key: &str| -> bool {
        if matches!(key, "resourceType" | "id" | "meta") {
            return true;
        }
        // `_name` carries the id and extensions of primitive `name`.
        let name = key.strip_prefix('_').unwrap_or(key);
        let element = def.and_then(|d| d.property(name)).map(|(e, _)| e);
        match how {
            Subset::Data => name != "text",
            Subset::Text => name == "text" || element.is_some_and(|e| e.min >= 1),
            Subset::Summary => element.is_some_and(|e| summary.contains(&e.name)),
            Subset::Elements(names) => element.is_some_and(|e| {
                let base = e.name.trim_end_matches("[x]");
                names.iter().any(|n| n == base)
            }),
        }
    };
    let mut out = Object::default();
    for (k, v) in obj.0 {
        if keep(&k) {
            out.push(k, v);
        }
    }
    tag_subsetted(&mut out);
    Ok(Json::Object(out).to_bytes())
}

/// Adds the `SUBSETTED` tag to `meta` (creating it when absent).
fn tag_subsetted(resource: &mut Object) {
    let mut tag = Object::default();
    tag.push("system", Json::string(SUBSETTED_SYSTEM));
    tag.push("code", Json::string("SUBSETTED"));
    let meta = match resource.remove("meta") {
        Some(Json::Object(m)) => m,
        _ => Object::default(),
    };
    let mut meta = meta;
    let mut tags = match meta.remove("tag") {
        Some(Json::Array(t)) => t,
        _ => Vec::new(),
    };
    tags.push(Json::Object(tag));
    meta.push("tag", Json::Array(tags));
    // `meta` goes back where readers expect it: after `id`.
    let at = resource
        .0
        .iter()
        .position(|(k, _)| k == "id")
        .map_or(0, |i| i + 1);
    resource
        .0
        .insert(at, ("meta".to_owned(), Json::Object(meta)));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(body: &[u8]) -> Vec<String> {
        let Ok(Json::Object(o)) = crate::json::parse(body) else {
            panic!("not an object");
        };
        o.iter().map(|(k, _)| k.to_owned()).collect()
    }

    const PATIENT: &[u8] = br#"{"resourceType":"Patient","id":"p1","meta":{"versionId":"1"},"text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"},"gender":"female","_gender":{"extension":[]},"birthDate":"1970","maritalStatus":{"text":"M"},"deceasedBoolean":false,"communication":[{"language":{"text":"en"}}]}"#;

    #[test]
    fn summary_keeps_summary_elements() {
        let out = apply(PATIENT, "Patient", &Subset::Summary).unwrap();
        assert_eq!(
            keys(&out),
            [
                "resourceType",
                "id",
                "meta",
                "gender",
                "_gender",
                "birthDate",
                "deceasedBoolean"
            ]
        );
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("SUBSETTED"), "{text}");
    }

    #[test]
    fn text_data_and_elements() {
        let text = apply(PATIENT, "Patient", &Subset::Text).unwrap();
        assert_eq!(keys(&text), ["resourceType", "id", "meta", "text"]);
        let data = apply(PATIENT, "Patient", &Subset::Data).unwrap();
        assert!(!keys(&data).contains(&"text".to_owned()));
        assert!(keys(&data).contains(&"communication".to_owned()));
        let els = Subset::Elements(vec!["birthDate".into(), "deceased".into()]);
        let out = apply(PATIENT, "Patient", &els).unwrap();
        assert_eq!(
            keys(&out),
            ["resourceType", "id", "meta", "birthDate", "deceasedBoolean"]
        );
        // Mandatory elements stay with text (Observation.status and code).
        let obs = br#"{"resourceType":"Observation","id":"o","status":"final","code":{"text":"x"},"valueString":"v"}"#;
        let out = apply(obs, "Observation", &Subset::Text).unwrap();
        assert_eq!(keys(&out), ["resourceType", "id", "meta", "status", "code"]);
    }
}
