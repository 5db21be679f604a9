//! Parsing of search requests (R4 3.1.1): parameters with modifiers, chains and
//! `_has`; values with prefixes, OR lists and escapes; and the result parameters.
//! Knows the parameter types from the registry, so `ge2015` is a prefix only where
//! prefixes exist. Unknown parameters are collected (ignored, or refused under
//! `Prefer: handling=strict`).

use crate::error::ApiError;
use crate::fhir::search_params::{ParamType, r4};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prefix {
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    Sa,
    Eb,
    Ap,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Modifier {
    Missing,
    Exact,
    Contains,
    Text,
    Not,
    Above,
    Below,
    In,
    NotIn,
    OfType,
    Identifier,
    /// `:[type]` on a reference parameter.
    Type(String),
}

impl Modifier {
    fn parse(s: &str) -> Option<Modifier> {
        Some(match s {
            "missing" => Modifier::Missing,
            "exact" => Modifier::Exact,
            "contains" => Modifier::Contains,
            "text" => Modifier::Text,
            "not" => Modifier::Not,
            "above" => Modifier::Above,
            "below" => Modifier::Below,
            "in" => Modifier::In,
            "not-in" => Modifier::NotIn,
            "of-type" => Modifier::OfType,
            "identifier" => Modifier::Identifier,
            t if crate::fhir::model::r4().is_resource_type(t) => Modifier::Type(t.to_owned()),
            _ => return None,
        })
    }

    /// Whether the modifier applies to a parameter of this type.
    fn allowed_on(&self, kind: ParamType) -> bool {
        use ParamType as P;
        match self {
            Modifier::Missing => true,
            Modifier::Exact | Modifier::Contains => {
                kind == P::String || (kind == P::Uri && *self == Modifier::Contains)
            }
            Modifier::Text | Modifier::Not | Modifier::In | Modifier::NotIn | Modifier::OfType => {
                kind == P::Token
            }
            Modifier::Above | Modifier::Below => matches!(kind, P::Token | P::Uri | P::Reference),
            Modifier::Identifier | Modifier::Type(_) => kind == P::Reference,
        }
    }
}

/// One value of an OR list, split by parameter type.
#[derive(Clone, Debug, PartialEq)]
pub enum SearchValue {
    /// string, uri, and anything without structure.
    Text(String),
    /// `[system]|[code]`: `system` is `Some("")` for `|code` (no system).
    Token {
        system: Option<String>,
        code: Option<String>,
    },
    Date {
        prefix: Prefix,
        value: String,
    },
    Number {
        prefix: Prefix,
        value: String,
    },
    Quantity {
        prefix: Prefix,
        value: String,
        system: Option<String>,
        code: Option<String>,
    },
    /// `Type/id`, `id`, or an absolute URL.
    Reference {
        target_type: Option<String>,
        id: String,
        url: Option<String>,
    },
    /// `true`/`false` for `:missing`.
    Missing(bool),
    /// A composite value: per component, its own parameter code, type and value.
    Composite(Vec<(String, ParamType, SearchValue)>),
}

/// `subject:Patient.name=…`: each link names a reference parameter and the target
/// types it may lead to (the one given, or every target that defines the next
/// parameter).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainLink {
    pub param: String,
    pub target_types: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Criterion {
    /// Reference parameters to follow first, from the searched type outwards.
    pub chain: Vec<ChainLink>,
    /// The resource type the parameter belongs to (the searched type, or the last
    /// chain target).
    pub resource_type: String,
    pub param: String,
    pub kind: ParamType,
    pub modifier: Option<Modifier>,
    /// OR-ed values; criteria repeat for AND.
    pub values: Vec<SearchValue>,
}

/// `_has:Observation:patient:code=…`: resources referred to by `patient` of an
/// Observation that matches the inner criterion (which may itself be a `_has`).
#[derive(Clone, Debug, PartialEq)]
pub struct Has {
    pub source_type: String,
    pub reference_param: String,
    pub inner: Box<Filter>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Filter {
    Criterion(Criterion),
    Has(Has),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Total {
    #[default]
    None,
    Estimate,
    Accurate,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Summary {
    True,
    Text,
    Data,
    Count,
    False,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Include {
    pub source_type: String,
    /// `None` for `*`.
    pub param: Option<String>,
    pub target_type: Option<String>,
    pub iterate: bool,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct SearchRequest {
    pub resource_type: String,
    /// AND-ed filters.
    pub filters: Vec<Filter>,
    pub count: Option<u32>,
    /// Parameter codes, `true` for descending.
    pub sort: Vec<(String, bool)>,
    pub include: Vec<Include>,
    pub revinclude: Vec<Include>,
    pub total: Total,
    pub summary: Option<Summary>,
    pub elements: Vec<String>,
    /// Parameters this server does not know (left out of the `self` link).
    pub ignored: Vec<String>,
    /// `_list`: per repetition (AND), the List ids (OR).
    pub lists: Vec<Vec<String>>,
    /// Per `_list` repetition, the ids of the searched type its Lists hold;
    /// filled from the store before planning.
    pub list_members: Vec<Vec<String>>,
    /// The expansions of the value sets `:in` and `:not-in` name, by canonical
    /// URL as written; filled from the store before planning.
    pub value_sets: std::collections::HashMap<String, Vec<crate::fhir::valueset::Member>>,
}

impl SearchRequest {
    /// The value sets named by `:in` and `:not-in` anywhere in the filters.
    pub fn value_set_urls(&self) -> Vec<String> {
        fn walk(f: &Filter, out: &mut Vec<String>) {
            match f {
                Filter::Has(h) => walk(&h.inner, out),
                Filter::Criterion(c) => {
                    if matches!(c.modifier, Some(Modifier::In | Modifier::NotIn)) {
                        for v in &c.values {
                            if let SearchValue::Text(url) = v
                                && !out.contains(url)
                            {
                                out.push(url.clone());
                            }
                        }
                    }
                }
            }
        }
        let mut out = Vec::new();
        for f in &self.filters {
            walk(f, &mut out);
        }
        out
    }

    /// The codes `:above` and `:below` name on tokens, as (modifier, system,
    /// code), anywhere in the filters.
    pub fn subsumption_codes(&self) -> Vec<(Modifier, String, String)> {
        fn walk(f: &Filter, out: &mut Vec<(Modifier, String, String)>) {
            match f {
                Filter::Has(h) => walk(&h.inner, out),
                Filter::Criterion(c) => {
                    let Some(m @ (Modifier::Above | Modifier::Below)) = &c.modifier else {
                        return;
                    };
                    if c.kind != ParamType::Token {
                        return;
                    }
                    for v in &c.values {
                        if let SearchValue::Token {
                            system: Some(system),
                            code: Some(code),
                        } = v
                        {
                            let key = (m.clone(), system.clone(), code.clone());
                            if !out.contains(&key) {
                                out.push(key);
                            }
                        }
                    }
                }
            }
        }
        let mut out = Vec::new();
        for f in &self.filters {
            walk(f, &mut out);
        }
        out
    }
}

/// The key under which the codes a subsumption names are kept in
/// `SearchRequest::value_sets`.
pub fn subsumption_key(modifier: &Modifier, system: &str, code: &str) -> String {
    let m = if *modifier == Modifier::Above {
        "above"
    } else {
        "below"
    };
    format!("{m}:{system}|{code}")
}

/// Splits on unescaped `sep`; an escaped `sep` loses its backslash, other escapes
/// stay for the next stage (see [`unescape`]).
fn split_escaped(s: &str, sep: char) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(n @ (',' | '$' | '|' | '\\')) if n != sep => {
                    if let Some(last) = parts.last_mut() {
                        last.push('\\');
                        last.push(n);
                    }
                }
                Some(n) => {
                    if let Some(last) = parts.last_mut() {
                        last.push(n);
                    }
                }
                None => {}
            },
            c if c == sep => parts.push(String::new()),
            c => {
                if let Some(last) = parts.last_mut() {
                    last.push(c);
                }
            }
        }
    }
    parts
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    out
}

fn prefix_of(v: &str) -> (Prefix, &str) {
    let table = [
        ("eq", Prefix::Eq),
        ("ne", Prefix::Ne),
        ("gt", Prefix::Gt),
        ("lt", Prefix::Lt),
        ("ge", Prefix::Ge),
        ("le", Prefix::Le),
        ("sa", Prefix::Sa),
        ("eb", Prefix::Eb),
        ("ap", Prefix::Ap),
    ];
    for (p, prefix) in table {
        if let Some(rest) = v.strip_prefix(p)
            && rest.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '.')
        {
            return (prefix, rest);
        }
    }
    (Prefix::Eq, v)
}

fn parse_value(
    kind: ParamType,
    modifier: Option<&Modifier>,
    raw: &str,
    name: &str,
) -> Result<SearchValue, ApiError> {
    let bad = |why: &str| ApiError::invalid(format!("search parameter {name}: {why}"));
    if modifier == Some(&Modifier::Missing) {
        return match raw {
            "true" => Ok(SearchValue::Missing(true)),
            "false" => Ok(SearchValue::Missing(false)),
            _ => Err(bad(":missing takes true or false")),
        };
    }
    Ok(match kind {
        // A value set's canonical URL (possibly `|version`).
        ParamType::Token if matches!(modifier, Some(Modifier::In | Modifier::NotIn)) => {
            SearchValue::Text(unescape(raw))
        }
        ParamType::Token | ParamType::Reference
            if modifier != Some(&Modifier::Text)
                && (kind == ParamType::Token || modifier == Some(&Modifier::Identifier)) =>
        {
            let parts = split_escaped(raw, '|');
            match parts.as_slice() {
                [code] => SearchValue::Token {
                    system: None,
                    code: Some(unescape(code)),
                },
                [system, code] => SearchValue::Token {
                    system: Some(unescape(system)),
                    code: (!code.is_empty()).then(|| unescape(code)),
                },
                // :of-type is type-system|type-code|value
                [a, b, c] if modifier == Some(&Modifier::OfType) => SearchValue::Token {
                    system: Some(format!("{}|{}", unescape(a), unescape(b))),
                    code: Some(unescape(c)),
                },
                _ => return Err(bad("a token is [system]|[code]")),
            }
        }
        ParamType::Date => {
            let (prefix, value) = prefix_of(raw);
            if crate::search::extract::date_range(value).is_none() {
                return Err(bad("not a valid date"));
            }
            SearchValue::Date {
                prefix,
                value: value.to_owned(),
            }
        }
        ParamType::Number => {
            let (prefix, value) = prefix_of(raw);
            if crate::search::normalize::decimal_range(value).is_none() {
                return Err(bad("not a number"));
            }
            SearchValue::Number {
                prefix,
                value: value.to_owned(),
            }
        }
        ParamType::Quantity => {
            let parts = split_escaped(raw, '|');
            let (prefix, value) = prefix_of(&parts[0]);
            if crate::search::normalize::decimal_range(value).is_none() {
                return Err(bad("a quantity is [prefix]number|[system]|[code]"));
            }
            let field = |i: usize| parts.get(i).filter(|s| !s.is_empty()).map(|s| unescape(s));
            SearchValue::Quantity {
                prefix,
                value: value.to_owned(),
                system: field(1),
                code: field(2),
            }
        }
        ParamType::Reference if modifier != Some(&Modifier::Identifier) => {
            let v = unescape(raw);
            let typed = match modifier {
                Some(Modifier::Type(t)) => Some(t.clone()),
                _ => None,
            };
            if v.contains("://") {
                SearchValue::Reference {
                    target_type: typed,
                    id: String::new(),
                    url: Some(v),
                }
            } else {
                match v.split_once('/') {
                    Some((t, id)) => SearchValue::Reference {
                        target_type: Some(t.to_owned()),
                        id: id.to_owned(),
                        url: None,
                    },
                    None => SearchValue::Reference {
                        target_type: typed,
                        id: v,
                        url: None,
                    },
                }
            }
        }
        _ => SearchValue::Text(unescape(raw)),
    })
}

/// Parses `name[:modifier]` chains: `subject:Patient.name:exact`.
/// `code$value`: one value per component, each parsed as its own parameter.
fn parse_composite(
    def: &crate::fhir::search_params::SearchParam,
    raw: &str,
    name: &str,
) -> Result<SearchValue, ApiError> {
    let parts = split_escaped(raw, '$');
    if parts.len() != def.components.len() {
        return Err(ApiError::invalid(format!(
            "search parameter {name}: a value has {} parts separated by $",
            def.components.len()
        )));
    }
    let mut out = Vec::new();
    for (component, part) in def.components.iter().zip(&parts) {
        let component_def = component
            .definition_id
            .and_then(|id| r4().by_id(id))
            .ok_or_else(|| {
                ApiError::new(
                    crate::error::ErrorKind::NotSupported,
                    format!("search parameter {name}: a component has no definition"),
                )
            })?;
        let value = parse_value(component_def.kind, None, part, component_def.code)?;
        out.push((component_def.code.to_owned(), component_def.kind, value));
    }
    Ok(SearchValue::Composite(out))
}

fn parse_criterion(
    resource_type: &str,
    name: &str,
    raw: &str,
) -> Result<Option<Criterion>, ApiError> {
    let registry = r4();
    let links: Vec<&str> = name.split('.').collect();
    let mut current = resource_type.to_owned();
    let mut chain = Vec::new();
    for (i, link) in links.iter().enumerate() {
        let (code, modifier) = match link.split_once(':') {
            Some((c, m)) => (c, Some(m)),
            None => (*link, None),
        };
        let Some(def) = registry.get(&current, code) else {
            return Ok(None);
        };
        if i + 1 < links.len() {
            // A chain link: a reference parameter, with an optional target type.
            if def.kind != ParamType::Reference {
                return Err(ApiError::invalid(format!(
                    "{code} is not a reference parameter and cannot be chained"
                )));
            }
            let next_code = links[i + 1].split(':').next().unwrap_or("");
            let candidates: Vec<String> = match modifier {
                Some(t) => vec![t.to_owned()],
                None => def.targets.iter().map(|t| (*t).to_owned()).collect(),
            };
            let targets: Vec<String> = candidates
                .into_iter()
                .filter(|t| registry.get(t, next_code).is_some())
                .collect();
            let Some(first) = targets.first().cloned() else {
                return Ok(None);
            };
            chain.push(ChainLink {
                param: code.to_owned(),
                target_types: targets,
            });
            current = first;
            continue;
        }
        let modifier = match modifier {
            None => None,
            Some(m) => {
                let parsed = Modifier::parse(m)
                    .ok_or_else(|| ApiError::invalid(format!("unknown modifier :{m}")))?;
                if !parsed.allowed_on(def.kind) {
                    return Err(ApiError::invalid(format!(
                        "modifier :{m} does not apply to {code}"
                    )));
                }
                Some(parsed)
            }
        };
        let values = if def.kind == ParamType::Composite && modifier.is_none() {
            split_escaped(raw, ',')
                .iter()
                .map(|v| parse_composite(def, v, code))
                .collect::<Result<Vec<_>, _>>()?
        } else {
            split_escaped(raw, ',')
                .iter()
                .map(|v| parse_value(def.kind, modifier.as_ref(), v, code))
                .collect::<Result<Vec<_>, _>>()?
        };
        return Ok(Some(Criterion {
            chain,
            resource_type: current,
            param: code.to_owned(),
            kind: def.kind,
            modifier,
            values,
        }));
    }
    Ok(None)
}

/// `_has:Type:refparam:rest` where rest is a parameter or another `_has`.
fn parse_has(target_type: &str, spec: &str, raw: &str) -> Result<Option<Has>, ApiError> {
    let mut parts = spec.splitn(3, ':');
    let (Some(source_type), Some(reference_param), Some(rest)) =
        (parts.next(), parts.next(), parts.next())
    else {
        return Err(ApiError::invalid(
            "_has is _has:Type:reference:parameter=value",
        ));
    };
    if !crate::fhir::model::r4().is_resource_type(source_type) {
        return Err(ApiError::invalid(format!(
            "_has names an unknown resource type {source_type}"
        )));
    }
    match r4().get(source_type, reference_param) {
        Some(p)
            if p.kind == ParamType::Reference
                && (p.targets.is_empty() || p.targets.contains(&target_type)) => {}
        _ => {
            return Err(ApiError::invalid(format!(
                "_has: {reference_param} is not a reference from {source_type} to {target_type}"
            )));
        }
    }
    let inner = match rest.strip_prefix("_has:") {
        Some(nested) => parse_has(source_type, nested, raw)?.map(Filter::Has),
        None => parse_criterion(source_type, rest, raw)?.map(Filter::Criterion),
    };
    Ok(inner.map(|inner| Has {
        source_type: source_type.to_owned(),
        reference_param: reference_param.to_owned(),
        inner: Box::new(inner),
    }))
}

fn parse_include(v: &str, iterate: bool) -> Result<Include, ApiError> {
    let parts: Vec<&str> = v.split(':').collect();
    let (source, param, target) = match parts.as_slice() {
        [s, "*"] => (*s, None, None),
        [s, p] => (*s, Some(*p), None),
        [s, p, t] => (*s, Some(*p), Some(*t)),
        _ => {
            return Err(ApiError::invalid(
                "an include is Type:parameter[:targetType] or Type:*",
            ));
        }
    };
    if !crate::fhir::model::r4().is_resource_type(source) {
        return Err(ApiError::invalid(format!(
            "include names an unknown resource type {source}"
        )));
    }
    if let Some(p) = param
        && !r4()
            .get(source, p)
            .is_some_and(|d| d.kind == ParamType::Reference)
    {
        return Err(ApiError::invalid(format!(
            "include: {p} is not a reference parameter of {source}"
        )));
    }
    Ok(Include {
        source_type: source.to_owned(),
        param: param.map(str::to_owned),
        target_type: target.map(str::to_owned),
        iterate,
    })
}

/// Parses decoded `(name, value)` pairs of a search on `resource_type`.
pub fn parse(resource_type: &str, pairs: &[(String, String)]) -> Result<SearchRequest, ApiError> {
    let mut req = SearchRequest {
        resource_type: resource_type.to_owned(),
        ..SearchRequest::default()
    };
    for (name, value) in pairs {
        let bad = |why: &str| ApiError::invalid(format!("{name}: {why}"));
        match name.as_str() {
            "_count" => {
                req.count = Some(
                    value
                        .parse()
                        .map_err(|_| bad("must be a non-negative integer"))?,
                )
            }
            "_sort" => {
                for key in value.split(',').filter(|k| !k.is_empty()) {
                    let (code, desc) = key.strip_prefix('-').map_or((key, false), |k| (k, true));
                    if r4().get(resource_type, code).is_none() {
                        return Err(bad(&format!("unknown parameter {code}")));
                    }
                    req.sort.push((code.to_owned(), desc));
                }
            }
            "_include" | "_include:iterate" | "_include:recurse" => {
                req.include.push(parse_include(value, name != "_include")?);
            }
            "_revinclude" | "_revinclude:iterate" | "_revinclude:recurse" => {
                req.revinclude
                    .push(parse_include(value, name != "_revinclude")?);
            }
            "_total" => {
                req.total = match value.as_str() {
                    "none" => Total::None,
                    "estimate" => Total::Estimate,
                    "accurate" => Total::Accurate,
                    _ => return Err(bad("must be none, estimate or accurate")),
                }
            }
            "_summary" => {
                req.summary = Some(match value.as_str() {
                    "true" => Summary::True,
                    "text" => Summary::Text,
                    "data" => Summary::Data,
                    "count" => Summary::Count,
                    "false" => Summary::False,
                    _ => return Err(bad("must be true, text, data, count or false")),
                })
            }
            "_list" => req
                .lists
                .push(value.split(',').map(str::to_owned).collect()),
            "_elements" => {
                req.elements = value
                    .split(',')
                    .filter(|e| !e.is_empty())
                    .map(str::to_owned)
                    .collect()
            }
            "_format" | "_pretty" => {}
            n => {
                let filter = match n.strip_prefix("_has:") {
                    Some(spec) => parse_has(resource_type, spec, value)?.map(Filter::Has),
                    None => parse_criterion(resource_type, n, value)?.map(Filter::Criterion),
                };
                match filter {
                    Some(f) => req.filters.push(f),
                    None => req.ignored.push(n.to_owned()),
                }
            }
        }
    }
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(t: &str, query: &[(&str, &str)]) -> SearchRequest {
        let pairs: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        parse(t, &pairs).unwrap()
    }

    fn criterion(r: &SearchRequest, i: usize) -> &Criterion {
        match &r.filters[i] {
            Filter::Criterion(c) => c,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn values_by_type() {
        let r = q(
            "Observation",
            &[
                ("code", "http://loinc.org|8867-4,|x"),
                ("date", "ge2015-01"),
                ("value-quantity", "lt5.4|http://unitsofmeasure.org|mg"),
                ("subject", "Patient/123"),
            ],
        );
        assert_eq!(
            criterion(&r, 0).values,
            [
                SearchValue::Token {
                    system: Some("http://loinc.org".into()),
                    code: Some("8867-4".into())
                },
                SearchValue::Token {
                    system: Some(String::new()),
                    code: Some("x".into())
                },
            ]
        );
        assert_eq!(
            criterion(&r, 1).values,
            [SearchValue::Date {
                prefix: Prefix::Ge,
                value: "2015-01".into()
            }]
        );
        assert_eq!(
            criterion(&r, 2).values,
            [SearchValue::Quantity {
                prefix: Prefix::Lt,
                value: "5.4".into(),
                system: Some("http://unitsofmeasure.org".into()),
                code: Some("mg".into())
            }]
        );
        assert_eq!(
            criterion(&r, 3).values,
            [SearchValue::Reference {
                target_type: Some("Patient".into()),
                id: "123".into(),
                url: None
            }]
        );
    }

    #[test]
    fn escapes_modifiers_and_unknowns() {
        let r = q(
            "Patient",
            &[
                ("name:exact", r"Smith\,John,Doe"),
                ("unknown-param", "x"),
                ("gender:missing", "true"),
            ],
        );
        let c = criterion(&r, 0);
        assert_eq!(c.modifier, Some(Modifier::Exact));
        assert_eq!(
            c.values,
            [
                SearchValue::Text("Smith,John".into()),
                SearchValue::Text("Doe".into())
            ]
        );
        assert_eq!(r.ignored, ["unknown-param"]);
        assert_eq!(criterion(&r, 1).values, [SearchValue::Missing(true)]);
        let pairs = vec![("name:below".to_owned(), "x".to_owned())];
        assert!(
            parse("Patient", &pairs).is_err(),
            ":below does not apply to strings"
        );
        let pairs = vec![("birthdate".to_owned(), "ge19xx".to_owned())];
        assert!(parse("Patient", &pairs).is_err());
    }

    #[test]
    fn chains_and_has() {
        let r = q("Encounter", &[("subject:Patient.name", "peter")]);
        let c = criterion(&r, 0);
        assert_eq!(
            c.chain,
            [ChainLink {
                param: "subject".into(),
                target_types: vec!["Patient".into()]
            }]
        );
        assert_eq!(
            (c.resource_type.as_str(), c.param.as_str()),
            ("Patient", "name")
        );
        let r = q("Observation", &[("patient.organization.name", "acme")]);
        assert_eq!(criterion(&r, 0).chain.len(), 2);
        let r = q("Encounter", &[("subject.name", "peter")]);
        assert_eq!(
            criterion(&r, 0).chain[0].target_types,
            ["Patient"],
            "only Patient of subject's targets has name"
        );
        let r = q("Encounter", &[("subject.no-such-param", "x")]);
        assert_eq!(r.ignored, ["subject.no-such-param"]);
        let pairs = vec![("status.name".to_owned(), "x".to_owned())];
        assert!(
            parse("Encounter", &pairs).is_err(),
            "status is not a reference"
        );
        let r = q("Patient", &[("_has:Observation:patient:code", "1234-5")]);
        match &r.filters[0] {
            Filter::Has(h) => {
                assert_eq!(
                    (h.source_type.as_str(), h.reference_param.as_str()),
                    ("Observation", "patient")
                );
                assert!(matches!(&*h.inner, Filter::Criterion(c) if c.param == "code"));
            }
            other => panic!("{other:?}"),
        }
        let r = q(
            "Patient",
            &[(
                "_has:Observation:patient:_has:AuditEvent:entity:agent",
                "Practitioner/1",
            )],
        );
        assert!(matches!(&r.filters[0], Filter::Has(h) if matches!(&*h.inner, Filter::Has(_))));
    }

    #[test]
    fn result_parameters() {
        let r = q(
            "Observation",
            &[
                ("_count", "10"),
                ("_sort", "-date,code"),
                ("_include", "Observation:subject"),
                ("_revinclude:iterate", "Provenance:target"),
                ("_total", "accurate"),
                ("_summary", "count"),
            ],
        );
        assert_eq!(r.count, Some(10));
        assert_eq!(
            r.sort,
            [("date".to_owned(), true), ("code".to_owned(), false)]
        );
        assert_eq!(r.include[0].param.as_deref(), Some("subject"));
        assert!(r.revinclude[0].iterate);
        assert_eq!(
            (r.total, r.summary),
            (Total::Accurate, Some(Summary::Count))
        );
        let pairs = vec![("_sort".to_owned(), "nonsense".to_owned())];
        assert!(parse("Observation", &pairs).is_err());
    }
}
