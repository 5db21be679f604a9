//! Expanding a ValueSet stored on the server into codes, for the `:in` and
//! `:not-in` token modifiers: a stored `expansion`, or the concept lists of
//! `compose` (whole code systems included by system alone). Filters and
//! imported value sets need a terminology service and are refused.

use crate::error::{ApiError, ErrorKind};
use crate::json::Json;

/// A member of an expansion: `(system, code)`; `code` is `None` for every code
/// of the system.
pub type Member = (Option<String>, Option<String>);

fn unsupported(url: &str, what: &str) -> ApiError {
    ApiError::new(
        ErrorKind::NotSupported,
        format!("value set {url} uses {what}, which this server cannot expand yet"),
    )
}

fn text(v: Option<&Json>) -> Option<String> {
    match v {
        Some(Json::String(s)) => Some(s.clone()),
        _ => None,
    }
}

fn items(v: Option<&Json>) -> &[Json] {
    match v {
        Some(Json::Array(a)) => a,
        _ => &[],
    }
}

/// The members of a ValueSet resource.
pub fn expand(vs: &Json, url: &str) -> Result<Vec<Member>, ApiError> {
    let Json::Object(vs) = vs else {
        return Err(ApiError::internal("a stored ValueSet is not an object"));
    };
    if let Some(Json::Object(expansion)) = vs.get("expansion") {
        let mut out = Vec::new();
        let mut stack: Vec<&Json> = items(expansion.get("contains")).iter().collect();
        while let Some(Json::Object(c)) = stack.pop() {
            if let Some(code) = text(c.get("code")) {
                out.push((text(c.get("system")), Some(code)));
            }
            stack.extend(items(c.get("contains")));
        }
        return Ok(out);
    }
    let Some(Json::Object(compose)) = vs.get("compose") else {
        return Ok(Vec::new());
    };
    let members = |part: &str| -> Result<Vec<Member>, ApiError> {
        let mut out = Vec::new();
        for inc in items(compose.get(part)) {
            let Json::Object(inc) = inc else { continue };
            if inc.get("filter").is_some() {
                return Err(unsupported(url, "a filter"));
            }
            if inc.get("valueSet").is_some() {
                return Err(unsupported(url, "another value set"));
            }
            let system = text(inc.get("system"));
            let concepts = items(inc.get("concept"));
            if concepts.is_empty() {
                if system.is_none() {
                    continue;
                }
                out.push((system, None));
                continue;
            }
            for c in concepts {
                if let Json::Object(c) = c
                    && let Some(code) = text(c.get("code"))
                {
                    out.push((system.clone(), Some(code)));
                }
            }
        }
        Ok(out)
    };
    let include = members("include")?;
    let exclude = members("exclude")?;
    if exclude.iter().any(|(_, code)| code.is_none()) {
        return Err(unsupported(url, "a whole code system in exclude"));
    }
    Ok(include
        .into_iter()
        .filter(|m| !exclude.contains(m))
        .collect())
}

/// The codes of a CodeSystem that `code` subsumes (`below`: itself and its
/// descendants) or that subsume it (`above`: itself and its ancestors), from
/// the nesting of `concept`. `None` when the code is not in the system.
pub fn subsumed(code_system: &Json, code: &str, below: bool) -> Option<Vec<String>> {
    fn walk<'a>(
        concepts: &'a [Json],
        code: &str,
        path: &mut Vec<&'a str>,
    ) -> Option<(Vec<String>, &'a [Json])> {
        for c in concepts {
            let Json::Object(c) = c else { continue };
            let Some(Json::String(this)) = c.get("code") else {
                continue;
            };
            let children = items(c.get("concept"));
            if this == code {
                let mut ancestors: Vec<String> = path.iter().map(|s| (*s).to_owned()).collect();
                ancestors.push(this.clone());
                return Some((ancestors, children));
            }
            path.push(this);
            if let Some(found) = walk(children, code, path) {
                return Some(found);
            }
            path.pop();
        }
        None
    }
    fn descendants(concepts: &[Json], out: &mut Vec<String>) {
        for c in concepts {
            if let Json::Object(c) = c {
                if let Some(Json::String(code)) = c.get("code") {
                    out.push(code.clone());
                }
                descendants(items(c.get("concept")), out);
            }
        }
    }
    let Json::Object(cs) = code_system else {
        return None;
    };
    let (ancestors, children) = walk(items(cs.get("concept")), code, &mut Vec::new())?;
    if below {
        let mut out = vec![code.to_owned()];
        descendants(children, &mut out);
        Some(out)
    } else {
        Some(ancestors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compose_and_expansion() {
        let vs = crate::json::parse(
            br#"{"resourceType":"ValueSet","compose":{"include":[
                {"system":"http://loinc.org","concept":[{"code":"1"},{"code":"2"}]},
                {"system":"urn:all"}],
              "exclude":[{"system":"http://loinc.org","concept":[{"code":"2"}]}]}}"#,
        )
        .unwrap();
        assert_eq!(
            expand(&vs, "u").unwrap(),
            vec![
                (Some("http://loinc.org".into()), Some("1".into())),
                (Some("urn:all".into()), None)
            ]
        );
        let vs = crate::json::parse(
            br#"{"resourceType":"ValueSet","expansion":{"contains":[{"system":"s","code":"a",
                "contains":[{"system":"s","code":"b"}]}]}}"#,
        )
        .unwrap();
        let mut got = expand(&vs, "u").unwrap();
        got.sort();
        assert_eq!(
            got,
            vec![
                (Some("s".into()), Some("a".into())),
                (Some("s".into()), Some("b".into()))
            ]
        );
        let vs = crate::json::parse(
            br#"{"resourceType":"ValueSet","compose":{"include":[{"system":"s","filter":[{}]}]}}"#,
        )
        .unwrap();
        assert_eq!(expand(&vs, "u").unwrap_err().status(), 501);
    }

    #[test]
    fn subsumption_follows_the_concept_tree() {
        let cs = crate::json::parse(
            br#"{"resourceType":"CodeSystem","concept":[{"code":"a","concept":[
                {"code":"b","concept":[{"code":"c"}]},{"code":"d"}]},{"code":"e"}]}"#,
        )
        .unwrap();
        assert_eq!(subsumed(&cs, "a", true).unwrap(), ["a", "b", "c", "d"]);
        assert_eq!(subsumed(&cs, "c", false).unwrap(), ["a", "b", "c"]);
        assert_eq!(subsumed(&cs, "e", true).unwrap(), ["e"]);
        assert!(subsumed(&cs, "zz", true).is_none());
    }
}
