//! Extraction of search index values (R4 3.1.1): every search parameter of the
//! resource's type is evaluated, and what its expression finds is turned into
//! typed values by the parameter type: strings (normalised), tokens
//! (system/code/text), dates (a low–high range from the precision given),
//! numbers and quantities (a range from the significant digits), references
//! (type/id/version and the URL) and URIs.

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

use super::normalize;
use crate::fhir::fhirpath::{Ty, Value, evaluate_resource, resource_type};
use crate::fhir::search_params::{ParamType, r4};
use crate::json::{Json, Object};

#[derive(Clone, Debug, PartialEq)]
pub enum IndexValue {
    String {
        /// Case- and accent-folded form for default and `:contains` matching.
        normalized: String,
        /// The text as written, for `:exact`.
        exact: String,
    },
    Token {
        system: Option<String>,
        code: Option<String>,
        /// Normalised display or text, for `:text`.
        text: Option<String>,
        /// An identifier's type codings as (system, code), for `:of-type`.
        of_type: Vec<(String, String)>,
    },
    /// Microseconds since the epoch: `low` inclusive, `high` exclusive.
    Date {
        low: i64,
        high: i64,
    },
    Number {
        value: f64,
        low: f64,
        high: f64,
    },
    Quantity {
        value: f64,
        low: f64,
        high: f64,
        system: Option<String>,
        code: Option<String>,
        unit: Option<String>,
        /// In its kind's base unit, for the UCUM units of `ucum`.
        canonical: Option<super::ucum::Canonical>,
    },
    Reference {
        target_type: Option<String>,
        target_id: Option<String>,
        version: Option<String>,
        /// The reference as written (absolute URLs, canonicals, `urn:uuid:`).
        url: String,
        /// `Reference.identifier` as (system, value), for `:identifier`.
        identifier: Option<(Option<String>, String)>,
    },
    Uri(String),
}

#[derive(Clone, Debug, PartialEq)]
pub struct IndexEntry {
    /// The search parameter code (`code`, `subject`, `birthdate`).
    pub param: &'static str,
    pub value: IndexValue,
}

fn text(o: &Object, key: &str) -> Option<String> {
    o.get(key).and_then(Json::as_str).map(str::to_owned)
}

fn strings<'a>(o: &'a Object, key: &str) -> Vec<&'a str> {
    match o.get(key) {
        Some(Json::String(s)) => vec![s.as_str()],
        Some(Json::Array(items)) => items.iter().filter_map(Json::as_str).collect(),
        _ => Vec::new(),
    }
}

fn number_text(o: &Object, key: &str) -> Option<String> {
    match o.get(key) {
        Some(Json::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

/// The precision range of a FHIR date, dateTime or instant, in microseconds.
pub fn date_range(s: &str) -> Option<(i64, i64)> {
    let micros = |t: OffsetDateTime| i64::try_from(t.unix_timestamp_nanos() / 1000).ok();
    let day_start = |d: Date| micros(PrimitiveDateTime::new(d, Time::MIDNIGHT).assume_utc());
    if s.contains('T') {
        let low = crate::time::parse_instant(s)?;
        // Seconds, or the fraction given: the range is one unit of the last digit.
        let fraction = s
            .split_once('.')
            .map_or(0, |(_, f)| f.bytes().take_while(u8::is_ascii_digit).count());
        let unit = 1_000_000i64 / 10i64.pow(u32::try_from(fraction.min(6)).ok()?);
        return Some((low, low + unit.max(1)));
    }
    let parts: Vec<&str> = s.split('-').collect();
    let year: i32 = parts.first()?.parse().ok()?;
    match parts.len() {
        1 => {
            let low = day_start(Date::from_calendar_date(year, Month::January, 1).ok()?)?;
            let high = day_start(Date::from_calendar_date(year + 1, Month::January, 1).ok()?)?;
            Some((low, high))
        }
        2 => {
            let month = Month::try_from(parts[1].parse::<u8>().ok()?).ok()?;
            let first = Date::from_calendar_date(year, month, 1).ok()?;
            let next = if month == Month::December {
                Date::from_calendar_date(year + 1, Month::January, 1).ok()?
            } else {
                Date::from_calendar_date(year, month.next(), 1).ok()?
            };
            Some((day_start(first)?, day_start(next)?))
        }
        3 => {
            let month = Month::try_from(parts[1].parse::<u8>().ok()?).ok()?;
            let d = Date::from_calendar_date(year, month, parts[2].parse().ok()?).ok()?;
            Some((day_start(d)?, day_start(d.next_day()?)?))
        }
        _ => None,
    }
}

/// Parses `Type/id`, `Type/id/_history/v`, or an absolute URL ending so.
fn parse_reference(r: &str) -> (Option<String>, Option<String>, Option<String>) {
    if r.starts_with('#') || r.starts_with("urn:") {
        return (None, None, None);
    }
    let mut parts: Vec<&str> = r.split('/').collect();
    let mut version = None;
    if parts.len() >= 4 && parts[parts.len() - 2] == "_history" {
        version = parts.pop().map(str::to_owned);
        parts.pop();
    }
    match parts.as_slice() {
        [.., t, id] if crate::fhir::model::r4().is_resource_type(t) => {
            (Some((*t).to_owned()), Some((*id).to_owned()), version)
        }
        _ => (None, None, None),
    }
}

fn token(system: Option<String>, code: Option<String>, display: Option<String>) -> IndexValue {
    IndexValue::Token {
        system,
        code,
        text: display.map(|d| normalize::string(&d)),
        of_type: Vec::new(),
    }
}

fn string_value(s: &str) -> IndexValue {
    IndexValue::String {
        normalized: normalize::string(s),
        exact: s.to_owned(),
    }
}

fn quantity(o: &Object, value_key: &str, code_key: &str) -> Option<IndexValue> {
    let number = number_text(o, value_key)?;
    let (value, low, high) = normalize::decimal_range(&number)?;
    let (system, code) = (text(o, "system"), text(o, code_key));
    let canonical = match (system.as_deref(), code.as_deref()) {
        (Some(super::ucum::SYSTEM), Some(c)) => super::ucum::canonical(&number, c),
        _ => None,
    };
    Some(IndexValue::Quantity {
        value,
        low,
        high,
        system,
        code,
        unit: text(o, "unit"),
        canonical,
    })
}

/// The index values of `expr` evaluated on `this` (a composite's element),
/// for a parameter of type `kind`.
pub fn values_at<'a>(
    kind: ParamType,
    expr: &crate::fhir::fhirpath::Expr,
    this: &Value<'a>,
    root: &Value<'a>,
) -> Vec<IndexValue> {
    let mut out = Vec::new();
    for v in crate::fhir::fhirpath::evaluate(expr, std::slice::from_ref(this), root) {
        values_of(kind, &v, &mut out);
    }
    out
}

/// The index values of one node for a parameter type.
fn values_of(kind: ParamType, v: &Value<'_>, out: &mut Vec<IndexValue>) {
    let Value::Node(json, ty) = v else { return };
    let type_name = match ty {
        Ty::Complex(n) | Ty::Primitive(n) => *n,
        Ty::Resource(_) => return,
    };
    match (kind, json) {
        (ParamType::String, Json::String(s)) => out.push(string_value(s)),
        (ParamType::String, Json::Object(o)) => {
            let keys: &[&str] = match type_name {
                "HumanName" => &["family", "given", "prefix", "suffix", "text"],
                "Address" => &[
                    "line",
                    "city",
                    "district",
                    "state",
                    "postalCode",
                    "country",
                    "text",
                ],
                _ => &[],
            };
            for k in keys {
                out.extend(strings(o, k).into_iter().map(string_value));
            }
        }
        (ParamType::Token, Json::String(s)) => out.push(token(None, Some(s.clone()), None)),
        (ParamType::Token, Json::Bool(b)) => out.push(token(None, Some(b.to_string()), None)),
        (ParamType::Token, Json::Object(o)) => match type_name {
            "Coding" => out.push(token(
                text(o, "system"),
                text(o, "code"),
                text(o, "display"),
            )),
            "CodeableConcept" => {
                if let Some(Json::Array(codings)) = o.get("coding") {
                    for c in codings.iter().filter_map(|c| match c {
                        Json::Object(c) => Some(c),
                        _ => None,
                    }) {
                        out.push(token(
                            text(c, "system"),
                            text(c, "code"),
                            text(c, "display"),
                        ));
                    }
                }
                if let Some(t) = text(o, "text") {
                    out.push(token(None, None, Some(t)));
                }
            }
            "Identifier" => {
                let type_text = o.get("type").and_then(|t| match t {
                    Json::Object(t) => text(t, "text"),
                    _ => None,
                });
                let mut value = token(text(o, "system"), text(o, "value"), type_text);
                if let (IndexValue::Token { of_type, .. }, Some(Json::Object(t))) =
                    (&mut value, o.get("type"))
                    && let Some(Json::Array(codings)) = t.get("coding")
                {
                    for c in codings {
                        if let Json::Object(c) = c
                            && let (Some(s), Some(k)) = (text(c, "system"), text(c, "code"))
                        {
                            of_type.push((s, k));
                        }
                    }
                }
                out.push(value);
            }
            "ContactPoint" => out.push(token(text(o, "system"), text(o, "value"), None)),
            _ => {}
        },
        (ParamType::Reference, Json::String(s)) => out.push(IndexValue::Reference {
            target_type: None,
            target_id: None,
            version: s.split_once('|').map(|(_, v)| v.to_owned()),
            url: s.split_once('|').map_or(s.as_str(), |(u, _)| u).to_owned(),
            identifier: None,
        }),
        (ParamType::Reference, Json::Object(o)) => {
            let identifier = match o.get("identifier") {
                Some(Json::Object(i)) => text(i, "value").map(|v| (text(i, "system"), v)),
                _ => None,
            };
            let reference = text(o, "reference");
            if reference.is_some() || identifier.is_some() {
                let r = reference.unwrap_or_default();
                let (t, id, version) = parse_reference(&r);
                let target_type = t.or_else(|| text(o, "type"));
                out.push(IndexValue::Reference {
                    target_type,
                    target_id: id,
                    version,
                    url: r,
                    identifier,
                });
            }
        }
        (ParamType::Date, Json::String(s)) => {
            if let Some((low, high)) = date_range(s) {
                out.push(IndexValue::Date { low, high });
            }
        }
        (ParamType::Date, Json::Object(o)) => match type_name {
            "Period" => {
                let low = text(o, "start")
                    .and_then(|s| date_range(&s))
                    .map_or(i64::MIN, |r| r.0);
                let high = text(o, "end")
                    .and_then(|s| date_range(&s))
                    .map_or(i64::MAX, |r| r.1);
                out.push(IndexValue::Date { low, high });
            }
            "Timing" => {
                for e in strings(o, "event") {
                    if let Some((low, high)) = date_range(e) {
                        out.push(IndexValue::Date { low, high });
                    }
                }
            }
            _ => {}
        },
        (ParamType::Number, Json::Number(n)) => {
            if let Some((value, low, high)) = normalize::decimal_range(n) {
                out.push(IndexValue::Number { value, low, high });
            }
        }
        (ParamType::Quantity, Json::Object(o)) => match type_name {
            "Money" => out.extend(quantity(o, "value", "currency")),
            "Range" => {
                let bound = |k: &str| match o.get(k) {
                    Some(Json::Object(q)) => quantity(q, "value", "code"),
                    _ => None,
                };
                if let (
                    Some(IndexValue::Quantity {
                        low,
                        system,
                        code,
                        unit,
                        canonical: low_canonical,
                        ..
                    }),
                    high,
                ) = (bound("low"), bound("high"))
                {
                    // `high_canonical`: None without a high end, Some(None)
                    // for a high end in a unit without a canonical form.
                    let (high, high_canonical) = match high {
                        Some(IndexValue::Quantity {
                            high, canonical, ..
                        }) => (high, Some(canonical)),
                        _ => (f64::INFINITY, None),
                    };
                    // In base units when both ends are (in the same one).
                    let canonical = match (low_canonical, high_canonical) {
                        (Some(l), None) => Some((l, f64::INFINITY)),
                        (Some(l), Some(Some(h))) if h.code == l.code => Some((l, h.high)),
                        _ => None,
                    }
                    .map(|(l, high)| super::ucum::Canonical {
                        value: l.low,
                        low: l.low,
                        high,
                        code: l.code,
                    });
                    out.push(IndexValue::Quantity {
                        value: low,
                        low,
                        high,
                        system,
                        code,
                        unit,
                        canonical,
                    });
                }
            }
            _ => out.extend(quantity(o, "value", "code")),
        },
        (ParamType::Uri, Json::String(s)) => out.push(IndexValue::Uri(s.clone())),
        _ => {}
    }
}

/// All index entries of a resource, in no particular order.
pub fn extract(resource: &Json) -> Vec<IndexEntry> {
    let Some(t) = resource_type(resource) else {
        return Vec::new();
    };
    let mut entries = Vec::new();
    for p in r4().for_type(t) {
        let Some(Ok(expr)) = &p.expression else {
            continue;
        };
        let mut values = Vec::new();
        for v in evaluate_resource(expr, resource) {
            values_of(p.kind, &v, &mut values);
        }
        entries.extend(values.into_iter().map(|value| IndexEntry {
            param: p.code,
            value,
        }));
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::parse;

    fn entries(body: &str, param: &str) -> Vec<IndexValue> {
        let r = parse(body.as_bytes()).unwrap();
        extract(&r)
            .into_iter()
            .filter(|e| e.param == param)
            .map(|e| e.value)
            .collect()
    }

    const OBS: &str = r#"{"resourceType":"Observation","id":"o1","status":"final",
        "code":{"coding":[{"system":"http://loinc.org","code":"8867-4","display":"Heart rate"}],"text":"HR"},
        "subject":{"reference":"Patient/p1/_history/3"},"encounter":{"reference":"http://other.example/fhir/Encounter/e9"},
        "effectivePeriod":{"start":"2015-02-07T13:28:17-05:00"},
        "valueQuantity":{"value":72.50,"unit":"beats/min","system":"http://unitsofmeasure.org","code":"/min"}}"#;

    #[test]
    fn tokens_references_dates_quantities() {
        assert_eq!(
            entries(OBS, "code"),
            [
                token(
                    Some("http://loinc.org".into()),
                    Some("8867-4".into()),
                    Some("Heart rate".into())
                ),
                token(None, None, Some("HR".into())),
            ]
        );
        assert_eq!(
            entries(OBS, "status"),
            [token(None, Some("final".into()), None)]
        );
        assert_eq!(
            entries(OBS, "patient"),
            [IndexValue::Reference {
                target_type: Some("Patient".into()),
                target_id: Some("p1".into()),
                version: Some("3".into()),
                url: "Patient/p1/_history/3".into(),
                identifier: None,
            }]
        );
        let enc = entries(OBS, "encounter");
        assert!(
            matches!(&enc[..], [IndexValue::Reference { target_id: Some(id), .. }] if id == "e9")
        );
        let start = crate::time::parse_instant("2015-02-07T13:28:17-05:00").unwrap();
        assert_eq!(
            entries(OBS, "date"),
            [IndexValue::Date {
                low: start,
                high: i64::MAX
            }]
        );
        match &entries(OBS, "value-quantity")[..] {
            [
                IndexValue::Quantity {
                    value,
                    low,
                    high,
                    code,
                    ..
                },
            ] => {
                assert_eq!((*value, code.as_deref()), (72.5, Some("/min")));
                assert!((low - 72.495).abs() < 1e-9 && (high - 72.505).abs() < 1e-9);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(entries(OBS, "_id"), [token(None, Some("o1".into()), None)]);
    }

    #[test]
    fn names_and_partial_dates() {
        let p = r#"{"resourceType":"Patient","name":[{"family":"Zyxwvutsrq-Ñáéíóú","given":["Ann","Marie"]}],"birthDate":"1974-12"}"#;
        let names = entries(p, "name");
        assert_eq!(names.len(), 3);
        assert_eq!(
            names[0],
            IndexValue::String {
                normalized: "zyxwvutsrq-naeiou".into(),
                exact: "Zyxwvutsrq-Ñáéíóú".into()
            }
        );
        let (low, high) = (
            crate::time::parse_instant("1974-12-01T00:00:00Z").unwrap(),
            crate::time::parse_instant("1975-01-01T00:00:00Z").unwrap(),
        );
        assert_eq!(entries(p, "birthdate"), [IndexValue::Date { low, high }]);
        assert_eq!(entries(p, "family").len(), 1);
    }

    #[test]
    fn date_ranges() {
        let r = |s| date_range(s).unwrap();
        assert_eq!(r("2020").1 - r("2020").0, 366 * 86_400_000_000);
        assert_eq!(r("2021-02").1 - r("2021-02").0, 28 * 86_400_000_000);
        assert_eq!(r("2021-12-31").1 - r("2021-12-31").0, 86_400_000_000);
        assert_eq!(
            r("2021-12-31T23:59:59Z").1 - r("2021-12-31T23:59:59Z").0,
            1_000_000
        );
        assert_eq!(
            r("2021-12-31T23:59:59.12Z").1 - r("2021-12-31T23:59:59.12Z").0,
            10_000
        );
        assert!(date_range("2021-13").is_none());
    }
}
