//! Validation of a resource on write against the R4 model: known elements,
//! JSON kinds, array shape, cardinality, primitive formats, choice types, and
//! required code bindings whose value sets are enumerable.
//!
//! Structural problems (the body is not FHIR JSON of that type) are
//! [`IssueClass::Structure`] and answered with 400; content problems (a
//! well-formed body that breaks a rule) are [`IssueClass::Content`], 422.

use super::model::{ElementDef, JsonKind, Model, TypeRef, r4};
use super::primitive;
use crate::error::{IssueType, OutcomeIssue};
use crate::json::{Json, Object};

/// Stop collecting after this many issues.
const MAX_ISSUES: usize = 50;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IssueClass {
    Structure,
    Content,
}

#[derive(Debug, Default)]
pub struct Report {
    pub issues: Vec<(IssueClass, OutcomeIssue)>,
}

impl Report {
    pub fn is_valid(&self) -> bool {
        self.issues.is_empty()
    }

    /// 400 when anything is structural, else 422.
    pub fn has_structure_issue(&self) -> bool {
        self.issues.iter().any(|(c, _)| *c == IssueClass::Structure)
    }

    fn add(&mut self, class: IssueClass, code: IssueType, path: &str, msg: impl Into<String>) {
        if self.issues.len() < MAX_ISSUES {
            self.issues
                .push((class, OutcomeIssue::error(code, msg).at(path)));
        }
    }
}

/// Validates a resource whose `resourceType` was already checked to be a concrete type.
pub fn validate_resource(resource: &Object, resource_type: &str) -> Report {
    let mut w = Walker {
        model: r4(),
        report: Report::default(),
    };
    w.resource_body(resource, resource_type, resource_type);
    w.report
}

struct Walker {
    model: &'static Model,
    report: Report,
}

fn join(path: &str, name: &str) -> String {
    let mut p = String::with_capacity(path.len() + name.len() + 1);
    p.push_str(path);
    p.push('.');
    p.push_str(name);
    p
}

impl Walker {
    fn structure(&mut self, path: &str, msg: impl Into<String>) {
        self.report
            .add(IssueClass::Structure, IssueType::Structure, path, msg);
    }

    fn resource_body(&mut self, obj: &Object, resource_type: &str, path: &str) {
        if let Some(Json::String(id)) = obj.get("id")
            && let Err(why) = primitive::check_id(id)
        {
            self.report.add(
                IssueClass::Content,
                IssueType::Value,
                &join(path, "id"),
                why,
            );
        }
        self.complex(resource_type, obj, path, true);
    }

    /// A nested resource (`contained`, `Bundle.entry.resource`).
    fn nested_resource(&mut self, v: &Json, path: &str) {
        let Json::Object(obj) = v else {
            self.structure(path, "a resource must be a JSON object");
            return;
        };
        match obj.get("resourceType") {
            Some(Json::String(t)) if self.model.is_resource_type(t) => {
                self.resource_body(obj, t, path);
            }
            Some(Json::String(_)) => {
                self.structure(&join(path, "resourceType"), "unknown resource type")
            }
            _ => self.structure(&join(path, "resourceType"), "resourceType is missing"),
        }
    }

    fn complex(&mut self, owner: &str, obj: &Object, path: &str, is_resource: bool) {
        let Some(def) = self.model.type_def(owner) else {
            self.structure(path, "no definition for this element");
            return;
        };
        if obj.0.is_empty() {
            self.structure(path, "an element must not be an empty object");
            return;
        }
        for (key, value) in obj.iter() {
            if is_resource && key == "resourceType" {
                continue;
            }
            let (name, companion) = match key.strip_prefix('_') {
                Some(n) => (n, true),
                None => (key, false),
            };
            let child_path = join(path, key);
            let Some((el, t)) = def.property(name) else {
                self.structure(&child_path, format!("unknown element '{key}'"));
                continue;
            };
            if companion {
                if !matches!(t, TypeRef::Primitive(_)) {
                    self.structure(&child_path, format!("unknown element '{key}'"));
                    continue;
                }
                self.companion(el, value, &child_path);
            } else {
                let partner = obj
                    .iter()
                    .find(|(k, _)| k.strip_prefix('_') == Some(key))
                    .map(|(_, v)| v);
                self.element(el, t, value, partner, &child_path);
            }
        }
        for el in &def.elements {
            let present: Vec<&str> = el
                .json_names
                .iter()
                .map(String::as_str)
                .filter(|n| {
                    obj.0
                        .iter()
                        .any(|(k, _)| k == n || k.strip_prefix('_') == Some(n))
                })
                .collect();
            if el.is_choice() && present.len() > 1 {
                self.structure(
                    &join(path, present[1]),
                    format!("only one type of {} may be given", el.name),
                );
            }
            if el.min > 0 && present.is_empty() {
                let name = el.name.trim_end_matches("[x]");
                self.report.add(
                    IssueClass::Content,
                    IssueType::Required,
                    &join(path, name),
                    format!("required element '{name}' is missing"),
                );
            }
        }
    }

    fn element(
        &mut self,
        el: &ElementDef,
        t: TypeRef,
        v: &Json,
        partner: Option<&Json>,
        path: &str,
    ) {
        if el.repeats {
            let Json::Array(items) = v else {
                self.structure(
                    path,
                    format!("'{}' repeats: it must be a JSON array", el.name),
                );
                return;
            };
            if items.is_empty() {
                self.structure(path, "arrays must not be empty");
                return;
            }
            for (i, item) in items.iter().enumerate() {
                let item_path = format!("{path}[{i}]");
                if matches!(item, Json::Null) {
                    let has_partner = matches!(partner, Some(Json::Array(p))
                        if p.get(i).is_some_and(|x| !matches!(x, Json::Null)));
                    if !(matches!(t, TypeRef::Primitive(_)) && has_partner) {
                        self.structure(
                            &item_path,
                            "null is only allowed where the _ element has a value",
                        );
                    }
                    continue;
                }
                self.value(el, t, item, &item_path);
            }
        } else {
            if matches!(v, Json::Array(_)) {
                self.structure(
                    path,
                    format!("'{}' does not repeat: it must not be an array", el.name),
                );
                return;
            }
            self.value(el, t, v, path);
        }
    }

    /// The `_name` companion of a primitive: an Element (id, extension), or an
    /// array of them (with nulls) when the primitive repeats.
    fn companion(&mut self, el: &ElementDef, v: &Json, path: &str) {
        let one = |w: &mut Self, v: &Json, p: &str| match v {
            Json::Object(o) => w.complex("Element", o, p, false),
            _ => w.structure(p, "must be a JSON object"),
        };
        match (el.repeats, v) {
            (true, Json::Array(items)) if !items.is_empty() => {
                for (i, item) in items.iter().enumerate() {
                    if !matches!(item, Json::Null) {
                        one(self, item, &format!("{path}[{i}]"));
                    }
                }
            }
            (true, _) => self.structure(path, "must be a non-empty JSON array"),
            (false, v) => one(self, v, path),
        }
    }

    fn value(&mut self, el: &ElementDef, t: TypeRef, v: &Json, path: &str) {
        match t {
            TypeRef::Primitive(name) => self.primitive(el, name, v, path),
            TypeRef::Complex(owner) => match v {
                Json::Object(o) => self.complex(owner, o, path, false),
                _ => self.structure(path, format!("'{}' must be a JSON object", el.name)),
            },
            TypeRef::Resource => self.nested_resource(v, path),
        }
    }

    fn primitive(&mut self, el: &ElementDef, name: &str, v: &Json, path: &str) {
        let kind = self.model.primitive_kind(name).unwrap_or(JsonKind::String);
        let result = match (kind, v) {
            (JsonKind::Boolean, Json::Bool(_)) => Ok(()),
            (JsonKind::Number, Json::Number(text)) => primitive::check_number(name, text),
            (JsonKind::String, Json::String(s)) => primitive::check_string(name, s),
            (_, Json::Null) => {
                self.structure(path, "null is not a value");
                return;
            }
            (kind, _) => {
                let want = match kind {
                    JsonKind::Boolean => "true or false",
                    JsonKind::Number => "a JSON number",
                    JsonKind::String => "a JSON string",
                };
                self.structure(path, format!("a {name} must be {want}"));
                return;
            }
        };
        match result {
            Err(why) => self
                .report
                .add(IssueClass::Content, IssueType::Value, path, why),
            Ok(()) => {
                if let (Some(codes), Json::String(code)) = (&el.required_codes, v)
                    && !codes.contains(&code.as_str())
                {
                    self.report.add(
                        IssueClass::Content,
                        IssueType::CodeInvalid,
                        path,
                        format!("the code is not in the required value set of '{}'", el.name),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::parse;

    fn check(body: &str) -> Vec<(IssueClass, String)> {
        let Json::Object(o) = parse(body.as_bytes()).unwrap() else {
            panic!()
        };
        let t = o
            .get("resourceType")
            .and_then(Json::as_str)
            .unwrap()
            .to_owned();
        validate_resource(&o, &t)
            .issues
            .into_iter()
            .map(|(c, i)| (c, i.expression.unwrap_or_default()))
            .collect()
    }

    #[test]
    fn valid_resources_pass() {
        assert!(check(r#"{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":1.50},"effectiveDateTime":"2020-01-01"}"#).is_empty());
        assert!(check(r#"{"resourceType":"Patient","name":[{"given":["a",null],"_given":[null,{"extension":[{"url":"http://x","valueString":"y"}]}]}],"_birthDate":{"id":"b"},"contained":[{"resourceType":"Organization","id":"o1","name":"Org"}]}"#).is_empty());
        assert!(check(r#"{"resourceType":"Questionnaire","status":"draft","item":[{"linkId":"1","type":"group","item":[{"linkId":"1.1","type":"string"}]}]}"#).is_empty());
    }

    #[test]
    fn issues_point_at_elements() {
        use IssueClass::*;
        let cases: &[(&str, IssueClass, &str)] = &[
            (
                r#"{"resourceType":"Patient","foo":1}"#,
                Structure,
                "Patient.foo",
            ),
            (
                r#"{"resourceType":"Patient","name":{"family":"x"}}"#,
                Structure,
                "Patient.name",
            ),
            (
                r#"{"resourceType":"Patient","gender":["male"]}"#,
                Structure,
                "Patient.gender",
            ),
            (
                r#"{"resourceType":"Patient","active":"true"}"#,
                Structure,
                "Patient.active",
            ),
            (
                r#"{"resourceType":"Patient","name":[{"given":["a",null]}]}"#,
                Structure,
                "Patient.name[0].given[1]",
            ),
            (
                r#"{"resourceType":"Patient","deceasedString":"x"}"#,
                Structure,
                "Patient.deceasedString",
            ),
            (
                r#"{"resourceType":"Patient","name":[{}]}"#,
                Structure,
                "Patient.name[0]",
            ),
            (
                r#"{"resourceType":"Patient","birthDate":"1990-13-01"}"#,
                Content,
                "Patient.birthDate",
            ),
            (
                r#"{"resourceType":"Patient","gender":"man"}"#,
                Content,
                "Patient.gender",
            ),
            (
                r#"{"resourceType":"Observation","code":{"text":"x"}}"#,
                Content,
                "Observation.status",
            ),
            (
                r#"{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":"1"}}"#,
                Structure,
                "Observation.valueQuantity.value",
            ),
            (
                r#"{"resourceType":"Patient","contained":[{"resourceType":"Patient","id":"bad_id!"}]}"#,
                Content,
                "Patient.contained[0].id",
            ),
            (
                r#"{"resourceType":"Patient","extension":[{"valueString":"x"}]}"#,
                Content,
                "Patient.extension[0].url",
            ),
        ];
        for (body, class, expr) in cases {
            let issues = check(body);
            assert_eq!(issues.first(), Some(&(*class, expr.to_string())), "{body}");
        }
    }
}
