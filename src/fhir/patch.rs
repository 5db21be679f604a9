//! PATCH documents applied to a resource's JSON: JSON Patch (RFC 6902,
//! `application/json-patch+json`) and FHIRPath Patch (a `Parameters` resource,
//! R4 3.1.0.6.3 / fhirpatch.html).
//!
//! A patch yields a new tree or an error; the caller validates the result like
//! any update. A document that is not a patch is a 400; a patch that cannot be
//! applied to this resource (a path that is not there, a failed `test`) a 422.

use crate::error::{ApiError, ErrorKind};
use crate::json::{Json, Object};

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::invalid(msg)
}

fn unapplicable(msg: impl Into<String>) -> ApiError {
    ApiError::new(ErrorKind::Unprocessable, msg)
}

/// A JSON Pointer (RFC 6901) as its reference tokens.
fn pointer(text: &str) -> Result<Vec<String>, ApiError> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let rest = text
        .strip_prefix('/')
        .ok_or_else(|| bad(format!("the JSON Pointer {text} must start with /")))?;
    Ok(rest
        .split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect())
}

/// An array index token (`-` only where `end_ok`: one past the end).
fn index(token: &str, len: usize, end_ok: bool) -> Result<usize, ApiError> {
    if end_ok && token == "-" {
        return Ok(len);
    }
    let valid = !token.is_empty()
        && token.bytes().all(|b| b.is_ascii_digit())
        && (token == "0" || !token.starts_with('0'));
    let i: usize = token
        .parse()
        .ok()
        .filter(|_| valid)
        .ok_or_else(|| unapplicable(format!("{token} is not an array index")))?;
    let limit = if end_ok { len } else { len.saturating_sub(1) };
    if i > limit || (!end_ok && len == 0) {
        return Err(unapplicable(format!("array index {i} is out of range")));
    }
    Ok(i)
}

fn get_mut<'a>(root: &'a mut Json, tokens: &[String]) -> Result<&'a mut Json, ApiError> {
    let mut at = root;
    for t in tokens {
        at = match at {
            Json::Object(o) => {
                o.0.iter_mut()
                    .find(|(k, _)| k == t)
                    .map(|(_, v)| v)
                    .ok_or_else(|| unapplicable(format!("no element {t} at this path")))?
            }
            Json::Array(a) => {
                let i = index(t, a.len(), false)?;
                &mut a[i]
            }
            _ => return Err(unapplicable(format!("no element {t} at this path"))),
        };
    }
    Ok(at)
}

fn get<'a>(root: &'a Json, tokens: &[String]) -> Result<&'a Json, ApiError> {
    let mut at = root;
    for t in tokens {
        at = match at {
            Json::Object(o) => o
                .get(t)
                .ok_or_else(|| unapplicable(format!("no element {t} at this path")))?,
            Json::Array(a) => &a[index(t, a.len(), false)?],
            _ => return Err(unapplicable(format!("no element {t} at this path"))),
        };
    }
    Ok(at)
}

fn add(root: &mut Json, tokens: &[String], value: Json) -> Result<(), ApiError> {
    let Some((last, parent)) = tokens.split_last() else {
        *root = value;
        return Ok(());
    };
    match get_mut(root, parent)? {
        Json::Object(o) => {
            match o.0.iter_mut().find(|(k, _)| k == last) {
                Some((_, v)) => *v = value,
                None => o.push(last.clone(), value),
            }
            Ok(())
        }
        Json::Array(a) => {
            let i = index(last, a.len(), true)?;
            a.insert(i, value);
            Ok(())
        }
        _ => Err(unapplicable(
            "the parent of this path is not an object or array",
        )),
    }
}

fn remove(root: &mut Json, tokens: &[String]) -> Result<Json, ApiError> {
    let Some((last, parent)) = tokens.split_last() else {
        return Err(bad("the whole resource cannot be removed"));
    };
    match get_mut(root, parent)? {
        Json::Object(o) => o
            .remove(last)
            .ok_or_else(|| unapplicable(format!("no element {last} to remove"))),
        Json::Array(a) => {
            let i = index(last, a.len(), false)?;
            Ok(a.remove(i))
        }
        _ => Err(unapplicable(
            "the parent of this path is not an object or array",
        )),
    }
}

/// Equal as JSON values (numbers by value: `1.0` equals `1`).
fn same(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => {
            x == y || matches!((x.parse::<f64>(), y.parse::<f64>()), (Ok(p), Ok(q)) if p == q)
        }
        (Json::Array(x), Json::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q))
        }
        (Json::Object(x), Json::Object(y)) => {
            x.0.len() == y.0.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// Applies a JSON Patch document (an array of operations) to `resource`.
pub fn json_patch(resource: &mut Json, document: &Json) -> Result<(), ApiError> {
    let Json::Array(ops) = document else {
        return Err(bad("a JSON Patch document is an array of operations"));
    };
    for (n, op) in ops.iter().enumerate() {
        let at = |e: ApiError| {
            let mut e = e;
            for issue in &mut e.issues {
                issue.diagnostics = format!("operation {n}: {}", issue.diagnostics);
            }
            e
        };
        let Json::Object(o) = op else {
            return Err(at(bad("an operation is an object")));
        };
        let text = |name: &str| -> Result<&str, ApiError> {
            o.get(name)
                .and_then(Json::as_str)
                .ok_or_else(|| at(bad(format!("the operation needs \"{name}\""))))
        };
        let value = || {
            o.get("value")
                .cloned()
                .ok_or_else(|| at(bad("the operation needs \"value\"")))
        };
        let path = pointer(text("path")?).map_err(at)?;
        match text("op")? {
            "add" => add(resource, &path, value()?).map_err(at)?,
            "remove" => {
                remove(resource, &path).map_err(at)?;
            }
            "replace" => {
                let v = value()?;
                *get_mut(resource, &path).map_err(at)? = v;
            }
            "move" => {
                let from = pointer(text("from")?).map_err(at)?;
                if path.starts_with(&from) && path.len() > from.len() {
                    return Err(at(bad("an element cannot be moved into itself")));
                }
                let v = remove(resource, &from).map_err(at)?;
                add(resource, &path, v).map_err(at)?;
            }
            "copy" => {
                let from = pointer(text("from")?).map_err(at)?;
                let v = get(resource, &from).map_err(at)?.clone();
                add(resource, &path, v).map_err(at)?;
            }
            "test" => {
                let want = value()?;
                if !same(get(resource, &path).map_err(at)?, &want) {
                    return Err(at(unapplicable("test failed: the value differs")));
                }
            }
            other => return Err(at(bad(format!("unknown JSON Patch operation {other}")))),
        }
    }
    Ok(())
}

/// The members of a `Parameters` part list, by name.
fn part<'a>(parts: &'a [Json], name: &str) -> Option<&'a Object> {
    parts.iter().find_map(|p| match p {
        Json::Object(o) if o.get("name").and_then(Json::as_str) == Some(name) => Some(o),
        _ => None,
    })
}

/// The `value[x]` of a parameter, with its type suffix, or a complex value
/// written as parts (each part a member).
fn value_of(p: &Object) -> Option<(Option<String>, Json)> {
    for (k, v) in p.iter() {
        if let Some(suffix) = k.strip_prefix("value")
            && !suffix.is_empty()
        {
            return Some((Some(suffix.to_owned()), v.clone()));
        }
    }
    let Some(Json::Array(parts)) = p.get("part") else {
        return None;
    };
    let mut o = Object::default();
    for q in parts {
        let Json::Object(q) = q else { continue };
        let Some(name) = q.get("name").and_then(Json::as_str) else {
            continue;
        };
        if let Some((_, v)) = value_of(q) {
            o.push(name, v);
        }
    }
    Some((None, Json::Object(o)))
}

/// Where a node is in the tree: the JSON Pointer tokens of the node at
/// `target`'s address.
fn locate(root: &Json, target: *const Json, at: &mut Vec<String>) -> bool {
    if std::ptr::eq(root, target) {
        return true;
    }
    match root {
        Json::Object(o) => {
            for (k, v) in o.iter() {
                at.push(k.to_owned());
                if locate(v, target, at) {
                    return true;
                }
                at.pop();
            }
            false
        }
        Json::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                at.push(i.to_string());
                if locate(v, target, at) {
                    return true;
                }
                at.pop();
            }
            false
        }
        _ => false,
    }
}

/// The locations (pointers) of what `path` selects in `resource`, with the
/// type of each.
fn select(resource: &Json, path: &str) -> Result<Vec<(Vec<String>, String)>, ApiError> {
    use crate::fhir::fhirpath::{self, Ty, Value};
    let expr = fhirpath::compile(path).map_err(|e| {
        bad(format!(
            "path {path} is not a FHIRPath expression this server evaluates: {}",
            e.0
        ))
    })?;
    let mut out = Vec::new();
    for v in fhirpath::evaluate_resource(&expr, resource) {
        let Value::Node(node, ty) = v else {
            return Err(unapplicable(format!(
                "path {path} selects a computed value, not an element"
            )));
        };
        let mut at = Vec::new();
        if !locate(resource, node, &mut at) {
            return Err(ApiError::internal(
                "a selected element is not in the resource",
            ));
        }
        let ty = match ty {
            Ty::Complex(t) | Ty::Primitive(t) | Ty::Resource(t) => t.to_owned(),
        };
        out.push((at, ty));
    }
    Ok(out)
}

/// The one element `path` selects (422 for none or several).
fn select_one(resource: &Json, path: &str) -> Result<(Vec<String>, String), ApiError> {
    let mut found = select(resource, path)?;
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(unapplicable(format!("path {path} selects nothing"))),
        _ => Err(unapplicable(format!(
            "path {path} selects more than one element"
        ))),
    }
}

/// The array an `insert`/`move` path names: the path's last step under the
/// one element its other steps select.
fn list_at(resource: &mut Json, path: &str, create: bool) -> Result<Vec<String>, ApiError> {
    let (parent, name) = path
        .rsplit_once('.')
        .ok_or_else(|| bad(format!("path {path} must name an element under its parent")))?;
    let (mut at, _) = select_one(resource, parent)?;
    let Json::Object(o) = get_mut(resource, &at)? else {
        return Err(unapplicable(format!(
            "{parent} is not an element with children"
        )));
    };
    match o.get(name) {
        Some(Json::Array(_)) => {}
        None if create => o.push(name, Json::Array(Vec::new())),
        _ => return Err(unapplicable(format!("{path} is not a list"))),
    }
    at.push(name.to_owned());
    Ok(at)
}

fn integer(p: &[Json], name: &str) -> Result<usize, ApiError> {
    part(p, name)
        .and_then(|o| o.get("valueInteger"))
        .and_then(|v| match v {
            Json::Number(n) => n.parse().ok(),
            _ => None,
        })
        .ok_or_else(|| {
            bad(format!(
                "the operation needs {name} (a non-negative valueInteger)"
            ))
        })
}

/// The member name for `name` with a value of type `suffix` under an element
/// of type `parent`: `deceased` + `Boolean` is `deceasedBoolean` where the
/// element is a choice.
fn member_name(parent: &str, name: &str, suffix: Option<&str>) -> String {
    match suffix {
        Some(s) if crate::fhir::model::r4().is_choice(parent, name) => format!("{name}{s}"),
        _ => name.to_owned(),
    }
}

/// Applies a FHIRPath Patch (`Parameters` with `operation` parameters).
pub fn fhirpath_patch(resource: &mut Json, parameters: &Json) -> Result<(), ApiError> {
    let Json::Object(p) = parameters else {
        return Err(bad("a FHIRPath Patch is a Parameters resource"));
    };
    if p.get("resourceType").and_then(Json::as_str) != Some("Parameters") {
        return Err(bad("a FHIRPath Patch is a Parameters resource"));
    }
    let ops: Vec<&Object> = match p.get("parameter") {
        Some(Json::Array(a)) => a
            .iter()
            .filter_map(|x| match x {
                Json::Object(o) => Some(o),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    for (n, op) in ops.iter().enumerate() {
        let at = |e: ApiError| {
            let mut e = e;
            for issue in &mut e.issues {
                issue.diagnostics = format!("operation {n}: {}", issue.diagnostics);
            }
            e
        };
        if op.get("name").and_then(Json::as_str) != Some("operation") {
            return Err(at(bad(
                "each parameter of a FHIRPath Patch is an operation",
            )));
        }
        let Some(Json::Array(parts)) = op.get("part") else {
            return Err(at(bad("an operation has parts")));
        };
        let text = |name: &str| -> Result<String, ApiError> {
            part(parts, name)
                .and_then(|o| {
                    o.iter()
                        .find(|(k, _)| k.starts_with("value"))
                        .and_then(|(_, v)| v.as_str())
                })
                .map(str::to_owned)
                .ok_or_else(|| at(bad(format!("the operation needs {name}"))))
        };
        let value = || -> Result<(Option<String>, Json), ApiError> {
            part(parts, "value")
                .and_then(value_of)
                .ok_or_else(|| at(bad("the operation needs a value")))
        };
        let path = text("path")?;
        match text("type")?.as_str() {
            "add" => {
                let name = text("name")?;
                let (suffix, v) = value()?;
                let (mut target, ty) = select_one(resource, &path).map_err(at)?;
                let member = member_name(&ty, &name, suffix.as_deref());
                let Json::Object(o) = get_mut(resource, &target).map_err(at)? else {
                    return Err(at(unapplicable(format!(
                        "{path} is not an element with children"
                    ))));
                };
                match o.0.iter_mut().find(|(k, _)| *k == member) {
                    Some((_, Json::Array(a))) => a.push(v),
                    Some(_) => {
                        return Err(at(unapplicable(format!(
                            "{path}.{member} is already there; use replace"
                        ))));
                    }
                    None => {
                        let list = crate::fhir::model::r4().is_list(&ty, &name);
                        o.push(member.clone(), if list { Json::Array(vec![v]) } else { v });
                    }
                }
                target.push(member);
            }
            "insert" => {
                let (_, v) = value()?;
                let i = integer(parts, "index").map_err(at)?;
                let list = list_at(resource, &path, true).map_err(at)?;
                let Json::Array(a) = get_mut(resource, &list).map_err(at)? else {
                    return Err(at(ApiError::internal("not a list")));
                };
                if i > a.len() {
                    return Err(at(unapplicable(format!(
                        "index {i} is past the end of {path}"
                    ))));
                }
                a.insert(i, v);
            }
            "delete" => {
                let found = select(resource, &path).map_err(at)?;
                match found.as_slice() {
                    [] => {}
                    [(target, _)] => {
                        remove(resource, target).map_err(at)?;
                        // A list left empty goes too (FHIR has no empty arrays).
                        if let Some((_, parent)) = target.split_last()
                            && matches!(get(resource, parent), Ok(Json::Array(a)) if a.is_empty())
                        {
                            remove(resource, parent).map_err(at)?;
                        }
                    }
                    _ => {
                        return Err(at(unapplicable(format!(
                            "path {path} selects more than one element"
                        ))));
                    }
                }
            }
            "replace" => {
                let (_, v) = value()?;
                let (target, _) = select_one(resource, &path).map_err(at)?;
                *get_mut(resource, &target).map_err(at)? = v;
            }
            "move" => {
                let from = integer(parts, "source").map_err(at)?;
                let to = integer(parts, "destination").map_err(at)?;
                let list = list_at(resource, &path, false).map_err(at)?;
                let Json::Array(a) = get_mut(resource, &list).map_err(at)? else {
                    return Err(at(ApiError::internal("not a list")));
                };
                if from >= a.len() || to >= a.len() {
                    return Err(at(unapplicable(format!(
                        "{path} has no item at that index"
                    ))));
                }
                let item = a.remove(from);
                a.insert(to, item);
            }
            other => {
                return Err(at(bad(format!(
                    "unknown FHIRPath Patch operation type {other}"
                ))));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::parse;

    fn patched(resource: &str, patch: &str) -> Result<String, ApiError> {
        let mut r = parse(resource.as_bytes()).unwrap();
        json_patch(&mut r, &parse(patch.as_bytes()).unwrap())?;
        Ok(String::from_utf8(r.to_bytes()).unwrap())
    }

    #[test]
    fn json_patch_operations() {
        let r = r#"{"resourceType":"Patient","name":[{"family":"A","given":["x"]}],"active":true}"#;
        assert_eq!(
            patched(r, r#"[{"op":"add","path":"/name/0/given/-","value":"y"},{"op":"replace","path":"/active","value":false},{"op":"remove","path":"/name/0/family"}]"#).unwrap(),
            r#"{"resourceType":"Patient","name":[{"given":["x","y"]}],"active":false}"#
        );
        assert_eq!(
            patched(r, r#"[{"op":"copy","from":"/name/0","path":"/name/-"},{"op":"move","from":"/name/1/given","path":"/contact"}]"#).unwrap(),
            r#"{"resourceType":"Patient","name":[{"family":"A","given":["x"]},{"family":"A"}],"active":true,"contact":["x"]}"#
        );
        assert!(patched(r, r#"[{"op":"test","path":"/active","value":true}]"#).is_ok());
        let failed = patched(r, r#"[{"op":"test","path":"/active","value":false}]"#).unwrap_err();
        assert_eq!(failed.status(), 422);
        assert_eq!(
            patched(r, r#"[{"op":"remove","path":"/nope"}]"#)
                .unwrap_err()
                .status(),
            422
        );
        assert_eq!(
            patched(r, r#"[{"op":"add","path":"/name/5","value":{}}]"#)
                .unwrap_err()
                .status(),
            422
        );
        assert_eq!(
            patched(r, r#"[{"op":"jump","path":"/x"}]"#)
                .unwrap_err()
                .status(),
            400
        );
        assert_eq!(patched(r, r#"{"op":"add"}"#).unwrap_err().status(), 400);
        assert_eq!(
            patched(r, r#"[{"op":"add","path":"name","value":1}]"#)
                .unwrap_err()
                .status(),
            400
        );
        assert_eq!(
            patched(
                r#"{"a/b":{"m~n":1}}"#,
                r#"[{"op":"replace","path":"/a~1b/m~0n","value":2}]"#
            )
            .unwrap(),
            r#"{"a/b":{"m~n":2}}"#
        );
    }

    fn fp(resource: &str, ops: &str) -> Result<String, ApiError> {
        let mut r = parse(resource.as_bytes()).unwrap();
        let p = format!(r#"{{"resourceType":"Parameters","parameter":[{ops}]}}"#);
        fhirpath_patch(&mut r, &parse(p.as_bytes()).unwrap())?;
        Ok(String::from_utf8(r.to_bytes()).unwrap())
    }

    fn op(parts: &str) -> String {
        format!(r#"{{"name":"operation","part":[{parts}]}}"#)
    }

    #[test]
    fn fhirpath_patch_operations() {
        let r = r#"{"resourceType":"Patient","id":"p","name":[{"family":"A","given":["x","y"]}],"active":true}"#;
        let replace = op(
            r#"{"name":"type","valueCode":"replace"},{"name":"path","valueString":"Patient.active"},{"name":"value","valueBoolean":false}"#,
        );
        assert!(fp(r, &replace).unwrap().contains(r#""active":false"#));
        let add = op(
            r#"{"name":"type","valueCode":"add"},{"name":"path","valueString":"Patient"},{"name":"name","valueString":"deceased"},{"name":"value","valueBoolean":true}"#,
        );
        assert!(fp(r, &add).unwrap().ends_with(r#""deceasedBoolean":true}"#));
        let add_list = op(
            r#"{"name":"type","valueCode":"add"},{"name":"path","valueString":"Patient"},{"name":"name","valueString":"identifier"},{"name":"value","part":[{"name":"system","valueUri":"urn:s"},{"name":"value","valueString":"1"}]}"#,
        );
        assert!(
            fp(r, &add_list)
                .unwrap()
                .ends_with(r#""identifier":[{"system":"urn:s","value":"1"}]}"#)
        );
        let insert = op(
            r#"{"name":"type","valueCode":"insert"},{"name":"path","valueString":"Patient.name[0].given"},{"name":"index","valueInteger":0},{"name":"value","valueString":"w"}"#,
        );
        assert!(fp(r, &insert).unwrap().contains(r#""given":["w","x","y"]"#));
        let delete = op(
            r#"{"name":"type","valueCode":"delete"},{"name":"path","valueString":"Patient.name[0].given[1]"}"#,
        );
        assert!(fp(r, &delete).unwrap().contains(r#""given":["x"]"#));
        let delete_all = op(
            r#"{"name":"type","valueCode":"delete"},{"name":"path","valueString":"Patient.name"}"#,
        );
        assert!(!fp(r, &delete_all).unwrap().contains("name"));
        let moved = op(
            r#"{"name":"type","valueCode":"move"},{"name":"path","valueString":"Patient.name[0].given"},{"name":"source","valueInteger":1},{"name":"destination","valueInteger":0}"#,
        );
        assert!(fp(r, &moved).unwrap().contains(r#""given":["y","x"]"#));
        // Failures: nothing selected, several selected, bad documents.
        let missing = op(
            r#"{"name":"type","valueCode":"replace"},{"name":"path","valueString":"Patient.gender"},{"name":"value","valueCode":"male"}"#,
        );
        assert_eq!(fp(r, &missing).unwrap_err().status(), 422);
        let several = op(
            r#"{"name":"type","valueCode":"replace"},{"name":"path","valueString":"Patient.name.given"},{"name":"value","valueString":"z"}"#,
        );
        assert_eq!(fp(r, &several).unwrap_err().status(), 422);
        let unknown =
            op(r#"{"name":"type","valueCode":"explode"},{"name":"path","valueString":"Patient"}"#);
        assert_eq!(fp(r, &unknown).unwrap_err().status(), 400);
        assert_eq!(fp(r, r#"{"name":"other"}"#).unwrap_err().status(), 400);
    }
}
