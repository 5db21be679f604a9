//! From extracted values to stored index rows, and from a parsed search request to
//! a store query. In clear the index keeps only codes, references, dates,
//! numbers, quantities and URIs. Identifying values are kept only as keyed hashes:
//! strings (names, addresses) by their prefixes and exact text, identifiers and
//! telecom by `system|value` (docs/adr/0005). Birth dates are not indexed yet, and
//! searches on them answer 501 rather than a wrong result.

use hearth_store::search::{
    Condition, Cursor, DateOp, IndexTable, MAX_SORT_KEYS, NumberOp, NumberTest, SearchQuery, SortBy,
};
use hearth_store::{BASE_UNIT_SUFFIX, IndexRow};

use super::extract::{IndexEntry, IndexValue, date_range};
use super::query::{Criterion, Filter, Modifier, Prefix, SearchRequest, SearchValue};
use super::{normalize, ucum};
use crate::error::{ApiError, ErrorKind};
use crate::fhir::search_params::{ParamType, SearchParam, custom_ready, r4};

/// Whether a parameter's values identify a person, so that they may not be
/// stored in clear.
pub fn is_identifying(p: &SearchParam) -> bool {
    let expr = p.expression_text.unwrap_or("");
    match p.kind {
        ParamType::String => true,
        ParamType::Token => {
            expr.contains(".identifier")
                || expr.contains(".telecom")
                || matches!(p.code, "identifier" | "telecom" | "phone" | "email")
        }
        ParamType::Date => p.code == "birthdate" || p.code == "death-date",
        _ => false,
    }
}

/// Whether searches on this parameter can be answered (its values are indexed).
pub fn is_searchable(p: &SearchParam) -> bool {
    let indexed = match p.kind {
        ParamType::String
        | ParamType::Token
        | ParamType::Number
        | ParamType::Quantity
        | ParamType::Uri => true,
        // Identifying dates are indexed by year and checked exactly afterwards.
        ParamType::Date => true,
        ParamType::Reference => !is_identifying(p),
        // Through its components, each a parameter of its own.
        ParamType::Composite => {
            !p.components.is_empty()
                && p.components.iter().all(|c| {
                    c.expression.is_ok()
                        && c.definition_id
                            .and_then(|id| r4().by_id(id))
                            .is_some_and(|d| d.kind != ParamType::Composite && is_searchable(d))
                })
        }
        _ => false,
    };
    p.code == "_id"
        || p.code == "_lastUpdated"
        || (matches!(p.expression, Some(Ok(_))) && indexed && custom_ready(p))
}

/// Longest normalised string prefix that is hashed into the index.
pub const MAX_STRING_PREFIX: usize = 64;

/// What is hashed for the default (starts-with) string match.
pub fn prefix_hash_input(param: &str, normalized_prefix: &str) -> Vec<u8> {
    format!("p\0{param}\0{normalized_prefix}").into_bytes()
}

/// What is hashed for each three-character window of a normalised string,
/// for `:contains` (the candidates are checked exactly afterwards).
pub fn trigram_hash_input(param: &str, trigram: &str) -> Vec<u8> {
    format!("g\0{param}\0{trigram}").into_bytes()
}

/// The distinct three-character windows of a normalised string.
fn trigrams(normalized: &str) -> Vec<String> {
    let chars: Vec<char> = normalized.chars().collect();
    let mut seen = std::collections::HashSet::new();
    chars
        .windows(3)
        .map(|w| w.iter().collect::<String>())
        .filter(|t| seen.insert(t.clone()))
        .collect()
}

/// The shortest `:contains` value: shorter ones have no trigram to look up.
pub const MIN_CONTAINS: usize = 3;

/// What is hashed for `:exact`.
pub fn exact_hash_input(param: &str, exact: &str) -> Vec<u8> {
    format!("e\0{param}\0{exact}").into_bytes()
}

/// The hash inputs of one string value: every prefix (up to the limit) of the
/// normalised value and of each of its words, and the exact text.
fn string_hash_inputs(param: &str, normalized: &str, exact: &str) -> Vec<Vec<u8>> {
    let mut out = vec![exact_hash_input(param, exact)];
    for t in trigrams(normalized) {
        out.push(trigram_hash_input(param, &t));
    }
    out.extend(prefix_hash_inputs(param, normalized, MAX_STRING_PREFIX));
    out
}

/// The name under which identifier types of `param` are hashed (`:of-type`).
fn of_type_param(param: &str) -> String {
    format!("{param}:of-type")
}

/// The name under which the display texts of token `param` are hashed (`:text`).
fn text_param(param: &str) -> String {
    format!("{param}:text")
}

/// Every prefix (up to `max` characters) of a normalised value, and of each
/// of its later words (within the word: a query that starts mid-value matches
/// a single word's start, not a run of words, which keeps the rows per value
/// near twice its length instead of its length times its words).
fn prefix_hash_inputs(param: &str, normalized: &str, max: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for word in std::iter::once(normalized).chain(later_words(normalized)) {
        for (i, c) in word.char_indices().take(max) {
            let prefix = &word[..i + c.len_utf8()];
            if seen.insert(prefix) {
                out.push(prefix_hash_input(param, prefix));
            }
        }
    }
    out
}

/// Longest prefix of a token's display text that is hashed (`:text`); a
/// longer query looks up this many characters, and the candidates' texts are
/// checked in full ([`Recheck::Text`]).
pub const MAX_TEXT_PREFIX: usize = 12;

/// The hash inputs of a token's display text in the text dictionary: the
/// prefixes, up to [`MAX_TEXT_PREFIX`] characters, of the text and of each
/// later word.
fn text_hash_inputs(param: &str, normalized: &str) -> Vec<Vec<u8>> {
    prefix_hash_inputs(param, normalized, MAX_TEXT_PREFIX)
}

/// What is hashed for a whole display text (the row its resource keeps; the
/// dictionary files it under its prefixes).
fn text_input(param: &str, normalized: &str) -> Vec<u8> {
    format!("t\0{param}\0{normalized}").into_bytes()
}

/// Whether a normalised display text meets a normalised `:text` query: the
/// text, or one of its later words, starts with it (what the prefix hashes
/// of [`text_hash_inputs`] find, without the length limit).
pub fn text_matches(normalized: &str, query: &str) -> bool {
    normalized.starts_with(query) || later_words(normalized).any(|w| w.starts_with(query))
}

fn is_word_separator(c: char) -> bool {
    c == ' ' || c == '-'
}

/// The words of a normalised value after the first.
fn later_words(normalized: &str) -> impl Iterator<Item = &str> {
    normalized
        .split(is_word_separator)
        .skip(1)
        .filter(|w| !w.is_empty())
}

/// The part of a `:text` query that is looked up in the index.
fn text_lookup(normalized: &str) -> &str {
    match normalized.char_indices().nth(MAX_TEXT_PREFIX) {
        Some((i, _)) => &normalized[..i],
        None => normalized,
    }
}

/// What is hashed for an identifying token (`Identifier`, `ContactPoint`):
/// `system|code`, with `*` standing for "any" on either side.
pub fn token_hash_input(param: &str, system: &str, code: &str) -> Vec<u8> {
    format!("t\0{param}\0{system}|{code}").into_bytes()
}

/// The hash inputs of an identifying token: exact, any system, and any code in
/// the system.
fn token_hash_inputs(param: &str, system: Option<&str>, code: &str) -> Vec<Vec<u8>> {
    let system = system.unwrap_or("");
    let mut out = vec![
        token_hash_input(param, system, code),
        token_hash_input(param, "*", code),
    ];
    if !system.is_empty() {
        out.push(token_hash_input(param, system, "*"));
    }
    out
}

/// The hash input a searched protected token (`system|code`, `code`, `system|`)
/// matches, under the name `name`.
fn searched_token_input(
    name: &str,
    system: &Option<String>,
    code: &Option<String>,
    param: &str,
) -> Result<Vec<u8>, ApiError> {
    Ok(match (system.as_deref(), code.as_deref()) {
        (None, Some(code)) => token_hash_input(name, "*", code),
        (Some(system), Some(code)) => token_hash_input(name, system, code),
        (Some(system), None) if !system.is_empty() => token_hash_input(name, system, "*"),
        _ => return Err(ApiError::invalid(format!("{param} needs a value"))),
    })
}

/// The name under which `Reference.identifier` values of `param` are hashed.
fn identifier_param(param: &str) -> String {
    format!("{param}:identifier")
}

/// Index rows without duplicates; keyed hashes (most of the rows) are
/// looked up in a set, the few others compared in turn.
#[derive(Default)]
struct RowSet {
    rows: Vec<IndexRow>,
    hashes: std::collections::HashSet<(String, Vec<u8>)>,
    prefixes: std::collections::HashSet<(Vec<u8>, Vec<u8>)>,
}

impl RowSet {
    fn push(&mut self, row: IndexRow) {
        let new = match &row {
            IndexRow::StringHash { param, hash } => {
                self.hashes.insert((param.clone(), hash.clone()))
            }
            IndexRow::TextPrefix { prefix, text } => {
                self.prefixes.insert((prefix.clone(), text.clone()))
            }
            other => !self.rows.contains(other),
        };
        if new {
            self.rows.push(row);
        }
    }
}

/// A keyed hash function (see `KeyRing::search_hash`).
pub type Hasher<'a> = dyn Fn(&[u8]) -> Result<Vec<u8>, ApiError> + 'a;

/// The index rows kept for a resource of type `res_type`; `hash` keys the hashes
/// of identifying strings.
/// `local_base` is the server's public base URL, when configured: absolute
/// references under it are local (`Type/id`); any other absolute reference
/// points at another server and is indexed by its URL only.
pub fn index_rows(
    res_type: &str,
    entries: &[IndexEntry],
    hash: &Hasher<'_>,
    local_base: Option<&str>,
) -> Result<Vec<IndexRow>, ApiError> {
    let registry = r4();
    let mut rows = RowSet::default();
    for e in entries {
        if e.param == "_id" || e.param == "_lastUpdated" {
            continue; // answered from the resource row
        }
        let Some(def) = registry.get(res_type, e.param) else {
            continue;
        };
        if let IndexValue::String { normalized, exact } = &e.value {
            for input in string_hash_inputs(e.param, normalized, exact) {
                let row = IndexRow::StringHash {
                    param: e.param.to_owned(),
                    hash: hash(&input)?,
                };
                rows.push(row);
            }
            continue;
        }
        if let IndexValue::Token {
            text: Some(text), ..
        } = &e.value
        {
            // Display texts may be free text: the resource keeps a keyed hash
            // of the text; the tenant's dictionary files that under keyed
            // hashes of its first characters (longer queries are checked on
            // the candidates), once for every resource with the same text.
            let name = text_param(e.param);
            let text_hash = hash(&text_input(&name, text))?;
            for input in text_hash_inputs(&name, text) {
                rows.push(IndexRow::TextPrefix {
                    prefix: hash(&input)?,
                    text: text_hash.clone(),
                });
            }
            rows.push(IndexRow::StringHash {
                param: e.param.to_owned(),
                hash: text_hash,
            });
        }
        if let IndexValue::Reference {
            identifier: Some((system, value)),
            ..
        } = &e.value
        {
            // A logical reference's identifier identifies, like any identifier.
            for input in token_hash_inputs(&identifier_param(e.param), system.as_deref(), value) {
                let row = IndexRow::StringHash {
                    param: e.param.to_owned(),
                    hash: hash(&input)?,
                };
                rows.push(row);
            }
        }
        if is_identifying(def) {
            if let (
                ParamType::Token,
                IndexValue::Token {
                    system,
                    code: Some(code),
                    of_type,
                    ..
                },
            ) = (def.kind, &e.value)
            {
                let mut inputs = token_hash_inputs(e.param, system.as_deref(), code);
                // `:of-type`: type system|code, then the value.
                for (ts, tc) in of_type {
                    inputs.push(token_hash_input(
                        &of_type_param(e.param),
                        &format!("{ts}|{tc}"),
                        code,
                    ));
                }
                for input in inputs {
                    let row = IndexRow::StringHash {
                        param: e.param.to_owned(),
                        hash: hash(&input)?,
                    };
                    rows.push(row);
                }
            }
            // A birth or death date: only the years it spans are stored.
            if let IndexValue::Date { low, high } = &e.value {
                let row = IndexRow::Date {
                    param: e.param.to_owned(),
                    low: year_floor(*low),
                    high: year_ceil(*high),
                };
                rows.push(row);
            }
            continue;
        }
        let row = match &e.value {
            IndexValue::Token {
                system,
                code: Some(code),
                ..
            } => IndexRow::Token {
                param: e.param.to_owned(),
                system: system.clone().unwrap_or_default(),
                code: code.clone(),
            },
            IndexValue::Reference {
                target_type,
                target_id,
                url,
                ..
            } => {
                let local = !url.contains("://")
                    || local_base.is_some_and(|b| {
                        url.strip_prefix(b.trim_end_matches('/'))
                            .is_some_and(|rest| rest.starts_with('/'))
                    });
                let (target_type, target_id) = if local {
                    (
                        target_type.clone().unwrap_or_default(),
                        target_id.clone().unwrap_or_default(),
                    )
                } else {
                    (String::new(), String::new())
                };
                IndexRow::Reference {
                    param: e.param.to_owned(),
                    target_type,
                    target_id,
                    url: url.clone(),
                }
            }
            IndexValue::Date { low, high } => IndexRow::Date {
                param: e.param.to_owned(),
                low: *low,
                high: *high,
            },
            IndexValue::Number { value, low, high } => IndexRow::Number {
                param: e.param.to_owned(),
                value: *value,
                low: *low,
                high: *high,
            },
            IndexValue::Quantity {
                value,
                low,
                high,
                system,
                code,
                unit,
                canonical,
            } => {
                // A UCUM unit of `ucum` is also kept in its base unit.
                if let Some(c) = canonical {
                    rows.push(IndexRow::Quantity {
                        param: format!("{}{BASE_UNIT_SUFFIX}", e.param),
                        value: c.value,
                        low: c.low,
                        high: c.high,
                        system: ucum::SYSTEM.to_owned(),
                        code: c.code.to_owned(),
                        unit: String::new(),
                        base: true,
                    });
                }
                IndexRow::Quantity {
                    param: e.param.to_owned(),
                    value: *value,
                    low: *low,
                    high: *high,
                    system: system.clone().unwrap_or_default(),
                    code: code.clone().unwrap_or_default(),
                    unit: unit.clone().unwrap_or_default(),
                    base: false,
                }
            }
            IndexValue::Uri(value) => IndexRow::Uri {
                param: e.param.to_owned(),
                value: value.clone(),
            },
            _ => continue,
        };
        rows.push(row);
    }
    let mut rows = rows.rows;
    let memberships = compartment_rows(res_type, &rows);
    for row in memberships {
        if !rows.contains(&row) {
            rows.push(row);
        }
    }
    Ok(rows)
}

/// The compartments a resource belongs to: those whose definition names one of
/// its reference parameters that points at a resource of the compartment's type.
fn compartment_rows(res_type: &str, rows: &[IndexRow]) -> Vec<IndexRow> {
    let registry = r4();
    let mut out = Vec::new();
    for row in rows {
        let IndexRow::Reference {
            param,
            target_type,
            target_id,
            ..
        } = row
        else {
            continue;
        };
        if target_id.is_empty() || !COMPARTMENTS.contains(&target_type.as_str()) {
            continue;
        }
        if registry
            .compartment_params(target_type, res_type)
            .contains(&param.as_str())
        {
            out.push(IndexRow::Compartment {
                compartment: target_type.clone(),
                id: target_id.clone(),
            });
        }
    }
    out
}

/// The R4 compartment types.
pub const COMPARTMENTS: [&str; 5] = [
    "Patient",
    "Encounter",
    "RelatedPerson",
    "Practitioner",
    "Device",
];

/// A URI and every ancestor of it on `/` boundaries, for `:above` (the stored
/// value is the searched one or one of its ancestors).
fn uri_ancestors(uri: &str) -> Vec<String> {
    let mut out: Vec<String> = uri
        .char_indices()
        .filter(|&(i, c)| c == '/' && i > 0 && !uri[..i].ends_with(['/', ':']))
        .map(|(i, _)| uri[..i].to_owned())
        .collect();
    out.push(uri.to_owned());
    out
}

fn not_yet(what: String) -> ApiError {
    ApiError::new(
        ErrorKind::NotSupported,
        format!("{what} is not supported by this server yet"),
    )
}

pub(crate) fn date_op(prefix: Prefix) -> DateOp {
    match prefix {
        Prefix::Eq => DateOp::Within,
        Prefix::Ne => DateOp::NotWithin,
        Prefix::Gt => DateOp::EndsAfter,
        Prefix::Lt => DateOp::StartsBefore,
        Prefix::Ge => DateOp::EndsAfterStart,
        Prefix::Le => DateOp::StartsBeforeEnd,
        Prefix::Sa => DateOp::StartsAfter,
        Prefix::Eb => DateOp::EndsBefore,
        Prefix::Ap => DateOp::Overlaps,
    }
}

pub(crate) fn number_test(prefix: Prefix, text: &str) -> Option<NumberTest> {
    let (value, low, high) = normalize::decimal_range(text)?;
    Some(number_test_of(prefix, value, low, high))
}

fn number_test_of(prefix: Prefix, value: f64, low: f64, high: f64) -> NumberTest {
    let op = match prefix {
        Prefix::Eq => NumberOp::Eq,
        Prefix::Ne => NumberOp::Ne,
        Prefix::Gt | Prefix::Sa => NumberOp::Gt,
        Prefix::Lt | Prefix::Eb => NumberOp::Lt,
        Prefix::Ge => NumberOp::Ge,
        Prefix::Le => NumberOp::Le,
        Prefix::Ap => NumberOp::Approx,
    };
    NumberTest {
        op,
        value,
        low,
        high,
    }
}

/// The start of the (UTC) year holding `micros`; open ends stay open.
fn year_floor(micros: i64) -> i64 {
    if micros == i64::MIN || micros == i64::MAX {
        return micros;
    }
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000) else {
        return i64::MIN;
    };
    year_start(t.year()).unwrap_or(i64::MIN)
}

/// The end (exclusive) of the year holding the last instant before `micros`.
fn year_ceil(micros: i64) -> i64 {
    if micros == i64::MIN || micros == i64::MAX {
        return micros;
    }
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros - 1) * 1000)
    else {
        return i64::MAX;
    };
    year_start(t.year() + 1).unwrap_or(i64::MAX)
}

fn year_start(year: i32) -> Option<i64> {
    let d = time::Date::from_calendar_date(year, time::Month::January, 1).ok()?;
    let t = time::PrimitiveDateTime::new(d, time::Time::MIDNIGHT).assume_utc();
    i64::try_from(t.unix_timestamp_nanos() / 1000).ok()
}

/// A condition the index can only narrow down: checked again on each
/// candidate's decrypted body.
#[derive(Clone, Debug, PartialEq)]
pub enum Recheck {
    /// Identifying dates, indexed by year: any of these must hold for one of
    /// the resource's exact values.
    Date {
        param: String,
        any_of: Vec<(DateOp, i64, i64)>,
    },
    /// `:contains`, looked up by trigrams: one of the resource's normalised
    /// values must contain one of these.
    Contains { param: String, any_of: Vec<String> },
    /// `:text` on a token, looked up by the first characters: one of the
    /// resource's display texts must meet one of these ([`text_matches`]).
    Text { param: String, any_of: Vec<String> },
    /// A composite, looked up by its components one by one: one element of the
    /// resource must meet every component of one of the values.
    Composite {
        res_type: String,
        param: String,
        any_of: Vec<Vec<(String, ParamType, SearchValue)>>,
    },
}

impl Recheck {
    /// Whether the exact values of a resource (its extracted index entries)
    /// meet the condition.
    pub fn holds(&self, entries: &[IndexEntry], resource: &crate::json::Json) -> bool {
        match self {
            Recheck::Composite {
                res_type,
                param,
                any_of,
            } => composite_holds(resource, res_type, param, any_of),
            Recheck::Date { param, any_of } => entries.iter().any(|e| {
                e.param == param
                    && matches!(e.value, IndexValue::Date { low, high }
                        if any_of.iter().any(|(op, from, to)| op.holds(low, high, *from, *to)))
            }),
            Recheck::Text { param, any_of } => entries.iter().any(|e| {
                e.param == param
                    && matches!(&e.value, IndexValue::Token { text: Some(t), .. }
                        if any_of.iter().any(|q| text_matches(t, q)))
            }),
            Recheck::Contains { param, any_of } => entries.iter().any(|e| {
                e.param == param
                    && matches!(&e.value, IndexValue::String { normalized, .. }
                        if any_of.iter().any(|n| normalized.contains(n.as_str())))
            }),
        }
    }
}

/// Whether one element that the composite's expression selects meets every
/// component of one of the values.
fn composite_holds(
    resource: &crate::json::Json,
    res_type: &str,
    param: &str,
    any_of: &[Vec<(String, ParamType, SearchValue)>],
) -> bool {
    use crate::fhir::fhirpath::{self, Ty, Value};
    let registry = r4();
    let Some(def) = registry.get(res_type, param) else {
        return false;
    };
    let Some(Ok(expr)) = &def.expression else {
        return false;
    };
    let Some(t) = fhirpath::resource_type(resource) else {
        return false;
    };
    let root = Value::Node(resource, Ty::Resource(t));
    let elements = fhirpath::evaluate(expr, std::slice::from_ref(&root), &root);
    elements.iter().any(|element| {
        any_of.iter().any(|value| {
            value
                .iter()
                .zip(&def.components)
                .all(|((_, kind, wanted), component)| {
                    let Ok(cexpr) = &component.expression else {
                        return false;
                    };
                    crate::search::extract::values_at(*kind, cexpr, element, &root)
                        .iter()
                        .any(|have| value_matches(have, wanted))
                })
        })
    })
}

/// Whether an extracted value meets a searched one (the SQL of each type's
/// condition, in Rust, for values checked after decryption).
fn value_matches(have: &IndexValue, wanted: &SearchValue) -> bool {
    let passes = |v: f64, t: NumberTest| match t.op {
        NumberOp::Eq => v >= t.low && v < t.high,
        NumberOp::Ne => !(v >= t.low && v < t.high),
        NumberOp::Gt => v > t.value,
        NumberOp::Lt => v < t.value,
        NumberOp::Ge => v >= t.value,
        NumberOp::Le => v <= t.value,
        NumberOp::Approx => (v - t.value).abs() <= (t.value * 0.1).abs(),
    };
    let number = |v: f64, prefix: Prefix, text: &str| {
        number_test(prefix, text).is_some_and(|t| passes(v, t))
    };
    match (have, wanted) {
        (
            IndexValue::Token { system, code, .. },
            SearchValue::Token {
                system: ws,
                code: wc,
            },
        ) => {
            let system_ok = match ws.as_deref() {
                None => true,
                Some("") => system.is_none(),
                Some(s) => system.as_deref() == Some(s),
            };
            system_ok && (wc.is_none() || code == wc)
        }
        (
            IndexValue::Quantity {
                value,
                system,
                code,
                unit,
                canonical,
                ..
            },
            SearchValue::Quantity {
                prefix,
                value: text,
                system: ws,
                code: wc,
            },
        ) => {
            // A UCUM unit with a base unit is compared in that.
            if let (Some(ucum::SYSTEM), Some(c)) = (ws.as_deref(), wc.as_deref())
                && let Some(base) = ucum::canonical(text, c)
            {
                return canonical.as_ref().is_some_and(|have| {
                    have.code == base.code
                        && passes(
                            have.value,
                            number_test_of(*prefix, base.value, base.low, base.high),
                        )
                });
            }
            let units_ok = match (ws, wc) {
                (Some(s), Some(c)) => system.as_ref() == Some(s) && code.as_ref() == Some(c),
                (None, Some(c)) => code.as_ref() == Some(c) || unit.as_ref() == Some(c),
                (Some(s), None) => system.as_ref() == Some(s),
                (None, None) => true,
            };
            units_ok && number(*value, *prefix, text)
        }
        (
            IndexValue::Number { value, .. },
            SearchValue::Number {
                prefix,
                value: text,
            },
        ) => number(*value, *prefix, text),
        (IndexValue::Date { low, high }, wanted @ SearchValue::Date { .. }) => {
            dates(std::slice::from_ref(wanted))
                .iter()
                .any(|(op, from, to)| op.holds(*low, *high, *from, *to))
        }
        (IndexValue::String { normalized, .. }, SearchValue::Text(text)) => {
            let needle = normalize::string(text);
            normalized.starts_with(&needle) || normalized.contains(&format!(" {needle}"))
        }
        (IndexValue::Uri(u), SearchValue::Text(text)) => u == text,
        (
            IndexValue::Reference {
                target_type,
                target_id,
                url,
                ..
            },
            SearchValue::Reference {
                target_type: wt,
                id,
                url: wu,
            },
        ) => match wu {
            Some(wu) => url == wu,
            None => {
                target_id.as_deref() == Some(id.as_str()) && (wt.is_none() || target_type == wt)
            }
        },
        _ => false,
    }
}

/// The exact checks a request needs after the store's answer: one per
/// identifying-date criterion (top level only; elsewhere they answer 501).
pub fn rechecks(req: &SearchRequest) -> Result<Vec<Recheck>, ApiError> {
    let registry = r4();
    let identifying_date = |c: &Criterion| {
        c.kind == ParamType::Date
            && c.modifier.is_none()
            && registry
                .get(&c.resource_type, &c.param)
                .is_some_and(is_identifying)
    };
    let contains = |c: &Criterion| c.modifier == Some(Modifier::Contains);
    let text_values = |c: &Criterion| -> Vec<String> {
        c.values
            .iter()
            .filter_map(|v| match v {
                SearchValue::Text(t) => Some(normalize::string(t)),
                _ => None,
            })
            .collect()
    };
    // Only a query longer than the indexed prefix needs its text checked.
    let long_text = |c: &Criterion| {
        c.kind == ParamType::Token
            && c.modifier == Some(Modifier::Text)
            && text_values(c)
                .iter()
                .any(|t| t.chars().count() > MAX_TEXT_PREFIX)
    };
    let composite = |c: &Criterion| c.kind == ParamType::Composite && c.modifier.is_none();
    let checked =
        |c: &Criterion| identifying_date(c) || contains(c) || composite(c) || long_text(c);
    fn nested(f: &Filter, found: &dyn Fn(&Criterion) -> bool) -> bool {
        match f {
            Filter::Criterion(c) => found(c),
            Filter::Has(h) => nested(&h.inner, found),
        }
    }
    let mut out = Vec::new();
    for f in &req.filters {
        match f {
            Filter::Criterion(c) if c.chain.is_empty() && identifying_date(c) => {
                out.push(Recheck::Date {
                    param: c.param.clone(),
                    any_of: dates(&c.values),
                });
            }
            Filter::Criterion(c) if c.chain.is_empty() && contains(c) => {
                out.push(Recheck::Contains {
                    param: c.param.clone(),
                    any_of: c
                        .values
                        .iter()
                        .filter_map(|v| match v {
                            SearchValue::Text(t) => Some(normalize::string(t)),
                            _ => None,
                        })
                        .collect(),
                });
            }
            Filter::Criterion(c) if c.chain.is_empty() && long_text(c) => {
                out.push(Recheck::Text {
                    param: c.param.clone(),
                    any_of: text_values(c),
                });
            }
            Filter::Criterion(c) if c.chain.is_empty() && composite(c) => {
                out.push(Recheck::Composite {
                    res_type: c.resource_type.clone(),
                    param: c.param.clone(),
                    any_of: c
                        .values
                        .iter()
                        .filter_map(|v| match v {
                            SearchValue::Composite(parts) => Some(parts.clone()),
                            _ => None,
                        })
                        .collect(),
                });
            }
            Filter::Criterion(c) if c.chain.is_empty() => {}
            f if nested(f, &checked) => {
                return Err(not_yet(
                    "birth and death dates, :contains, long :text values and composites in chains and _has".to_owned(),
                ));
            }
            _ => {}
        }
    }
    Ok(out)
}

fn dates(values: &[SearchValue]) -> Vec<(DateOp, i64, i64)> {
    values
        .iter()
        .filter_map(|v| match v {
            SearchValue::Date { prefix, value } => {
                let (from, to) = date_range(value)?;
                Some((date_op(*prefix), from, to))
            }
            _ => None,
        })
        .collect()
}

/// The store condition of one filter: a criterion (wrapped in its chain, from
/// the last link outwards) or a `_has`.
/// The expansions of value sets by canonical URL (see `SearchRequest::value_sets`).
type ValueSets = std::collections::HashMap<String, Vec<crate::fhir::valueset::Member>>;

fn filter_condition(
    f: &Filter,
    hash: &Hasher<'_>,
    value_sets: &ValueSets,
) -> Result<Condition, ApiError> {
    match f {
        Filter::Criterion(c) => {
            let mut condition = criterion_condition(c, hash, value_sets)?;
            for link in c.chain.iter().rev() {
                condition = Condition::Chain {
                    param: link.param.clone(),
                    target_types: link.target_types.clone(),
                    inner: Box::new(condition),
                };
            }
            Ok(condition)
        }
        Filter::Has(h) => Ok(Condition::Has {
            source_type: h.source_type.clone(),
            param: h.reference_param.clone(),
            inner: Box::new(filter_condition(&h.inner, hash, value_sets)?),
        }),
    }
}

/// The store condition of one parameter on `c.resource_type`, ignoring its chain.
fn criterion_condition(
    c: &Criterion,
    hash: &Hasher<'_>,
    value_sets: &ValueSets,
) -> Result<Condition, ApiError> {
    let registry = r4();
    let param = c.param.clone();
    if param == "_id" {
        let ids = c
            .values
            .iter()
            .filter_map(|v| match v {
                SearchValue::Token {
                    system: None,
                    code: Some(id),
                } => Some(id.clone()),
                _ => None,
            })
            .collect();
        return Ok(Condition::Id(ids));
    }
    if param == "_lastUpdated" {
        return Ok(Condition::LastUpdated(dates(&c.values)));
    }
    let def = registry
        .get(&c.resource_type, &param)
        .ok_or_else(|| ApiError::invalid(format!("unknown search parameter {param}")))?;
    if !is_searchable(def) {
        return Err(not_yet(format!("search parameter {param}")));
    }
    // Identifying dates are kept by year in the date table, not hashed.
    let hashed = c.kind == ParamType::String || (is_identifying(def) && c.kind != ParamType::Date);
    let table = match c.kind {
        _ if hashed => IndexTable::StringHash,
        ParamType::Token => IndexTable::Token,
        ParamType::Number => IndexTable::Number,
        ParamType::Quantity => IndexTable::Quantity,
        ParamType::Uri => IndexTable::Uri,
        ParamType::Reference => IndexTable::Reference,
        _ => IndexTable::Date,
    };
    let condition = match (&c.modifier, c.kind) {
        (Some(Modifier::Missing), _) => Condition::Missing {
            param,
            table,
            missing: matches!(c.values.first(), Some(SearchValue::Missing(true))),
        },
        (Some(Modifier::Identifier), ParamType::Reference) => {
            let mut any_of = Vec::new();
            for v in &c.values {
                let SearchValue::Token { system, code } = v else {
                    continue;
                };
                let input = searched_token_input(&identifier_param(&param), system, code, &param)?;
                any_of.push(hash(&input)?);
            }
            Condition::StringHash { param, any_of }
        }
        (None | Some(Modifier::Not), ParamType::Token) if hashed => {
            let mut any_of = Vec::new();
            for v in &c.values {
                let SearchValue::Token { system, code } = v else {
                    continue;
                };
                let input = searched_token_input(&param, system, code, &param)?;
                any_of.push(hash(&input)?);
            }
            let matches = Condition::StringHash { param, any_of };
            if c.modifier == Some(Modifier::Not) {
                Condition::Not(Box::new(matches))
            } else {
                matches
            }
        }
        (Some(m @ (Modifier::Above | Modifier::Below)), ParamType::Token) if !hashed => {
            let mut any_of = Vec::new();
            for v in &c.values {
                let SearchValue::Token {
                    system: Some(system),
                    code: Some(code),
                } = v
                else {
                    return Err(ApiError::invalid(format!(
                        "{param}:above and :below take system|code"
                    )));
                };
                let key = super::query::subsumption_key(m, system, code);
                let members = value_sets.get(&key).ok_or_else(|| {
                    ApiError::invalid(format!("{param}: no code system {system} on this server"))
                })?;
                any_of.extend(members.iter().cloned());
            }
            Condition::Token {
                param,
                any_of,
                negate: false,
            }
        }
        (Some(m @ (Modifier::In | Modifier::NotIn)), ParamType::Token) if !hashed => {
            let mut any_of = Vec::new();
            for v in &c.values {
                let SearchValue::Text(url) = v else { continue };
                let members = value_sets.get(url).ok_or_else(|| {
                    ApiError::invalid(format!("{param}: no value set {url} on this server"))
                })?;
                for (system, code) in members {
                    // A whole code system: any code of it.
                    any_of.push((system.clone(), code.clone()));
                }
            }
            Condition::Token {
                param,
                any_of,
                negate: *m == Modifier::NotIn,
            }
        }
        (None | Some(Modifier::Not), ParamType::Token) if !hashed => Condition::Token {
            param,
            any_of: c
                .values
                .iter()
                .filter_map(|v| match v {
                    SearchValue::Token { system, code } => Some((system.clone(), code.clone())),
                    _ => None,
                })
                .collect(),
            negate: c.modifier == Some(Modifier::Not),
        },
        (None | Some(Modifier::Type(_)), ParamType::Reference) => {
            let mut by_target = Vec::new();
            let mut by_url = Vec::new();
            for v in &c.values {
                if let SearchValue::Reference {
                    target_type,
                    id,
                    url,
                } = v
                {
                    match url {
                        Some(u) => by_url.push(u.clone()),
                        None => by_target.push((target_type.clone(), id.clone())),
                    }
                }
            }
            if !by_url.is_empty() && !by_target.is_empty() {
                return Err(not_yet(format!("mixing URLs and ids in one {param} list")));
            }
            if by_url.is_empty() {
                Condition::Reference {
                    param,
                    any_of: by_target,
                }
            } else {
                Condition::ReferenceUrl {
                    param,
                    any_of: by_url,
                }
            }
        }
        // Identifying dates are stored by year: ask what the years can answer
        // (`rechecks` has the exact test).
        (None, ParamType::Date) if is_identifying(def) => Condition::Date {
            param,
            any_of: dates(&c.values)
                .into_iter()
                .map(|(op, from, to)| op.widened(from, to))
                .collect(),
        },
        (None, ParamType::Date) => Condition::Date {
            param,
            any_of: dates(&c.values),
        },
        (None, ParamType::Number) => Condition::Number {
            param,
            any_of: c
                .values
                .iter()
                .filter_map(|v| match v {
                    SearchValue::Number { prefix, value } => number_test(*prefix, value),
                    _ => None,
                })
                .collect(),
        },
        (None, ParamType::Quantity) => {
            // Values in UCUM units with a base unit look at the values kept
            // in that; the others at the values as written.
            let (mut based, mut plain) = (Vec::new(), Vec::new());
            for v in &c.values {
                let SearchValue::Quantity {
                    prefix,
                    value,
                    system,
                    code,
                } = v
                else {
                    continue;
                };
                if let (Some(ucum::SYSTEM), Some(unit)) = (system.as_deref(), code.as_deref())
                    && let Some(base) = ucum::canonical(value, unit)
                {
                    based.push((
                        number_test_of(*prefix, base.value, base.low, base.high),
                        system.clone(),
                        Some(base.code.to_owned()),
                    ));
                } else if let Some(test) = number_test(*prefix, value) {
                    plain.push((test, system.clone(), code.clone()));
                }
            }
            let based = Condition::Quantity {
                param: format!("{param}{BASE_UNIT_SUFFIX}"),
                any_of: based,
            };
            match plain.is_empty() {
                true => based,
                false => {
                    let plain = Condition::Quantity {
                        param,
                        any_of: plain,
                    };
                    match &based {
                        Condition::Quantity { any_of, .. } if any_of.is_empty() => plain,
                        _ => Condition::AnyOf(vec![based, plain]),
                    }
                }
            }
        }
        (Some(Modifier::Above), ParamType::Uri) => Condition::Uri {
            param,
            any_of: c
                .values
                .iter()
                .filter_map(|v| match v {
                    SearchValue::Text(t) => Some(uri_ancestors(t)),
                    _ => None,
                })
                .flatten()
                .collect(),
            below: false,
        },
        (None | Some(Modifier::Below), ParamType::Uri) => Condition::Uri {
            param,
            any_of: c
                .values
                .iter()
                .filter_map(|v| match v {
                    SearchValue::Text(t) => Some(t.clone()),
                    _ => None,
                })
                .collect(),
            below: c.modifier == Some(Modifier::Below),
        },
        (None | Some(Modifier::Exact), ParamType::String) => {
            let mut any_of = Vec::new();
            for v in &c.values {
                let SearchValue::Text(text) = v else { continue };
                let input = if c.modifier == Some(Modifier::Exact) {
                    exact_hash_input(&param, text)
                } else {
                    let normalized = normalize::string(text);
                    if normalized.chars().count() > MAX_STRING_PREFIX {
                        return Err(not_yet(format!(
                            "{param} values longer than {MAX_STRING_PREFIX} characters"
                        )));
                    }
                    prefix_hash_input(&param, &normalized)
                };
                any_of.push(hash(&input)?);
            }
            Condition::StringHash { param, any_of }
        }
        (Some(Modifier::OfType), ParamType::Token) if hashed => {
            let mut any_of = Vec::new();
            for v in &c.values {
                // Parsed as system = "type-system|type-code", code = value.
                let SearchValue::Token {
                    system: Some(type_coding),
                    code: Some(value),
                } = v
                else {
                    return Err(ApiError::invalid(format!(
                        "{param}:of-type takes type-system|type-code|value"
                    )));
                };
                if !type_coding.contains('|') {
                    return Err(ApiError::invalid(format!(
                        "{param}:of-type takes type-system|type-code|value"
                    )));
                }
                any_of.push(hash(&token_hash_input(
                    &of_type_param(&param),
                    type_coding,
                    value,
                ))?);
            }
            Condition::StringHash { param, any_of }
        }
        (Some(Modifier::Text), ParamType::Token) => {
            let mut any_of = Vec::new();
            for v in &c.values {
                let SearchValue::Text(text) = v else { continue };
                let normalized = normalize::string(text);
                any_of.push(hash(&prefix_hash_input(
                    &text_param(&param),
                    text_lookup(&normalized),
                ))?);
            }
            Condition::Text { param, any_of }
        }
        // Each component as a condition of its own parameter (a superset: the
        // components may come from different elements; `rechecks` checks).
        (None, ParamType::Composite) => {
            let mut alternatives = Vec::new();
            for v in &c.values {
                let SearchValue::Composite(parts) = v else {
                    continue;
                };
                let mut all = Vec::new();
                for (code, kind, value) in parts {
                    let part = Criterion {
                        chain: Vec::new(),
                        resource_type: c.resource_type.clone(),
                        param: code.clone(),
                        kind: *kind,
                        modifier: None,
                        values: vec![value.clone()],
                    };
                    all.push(criterion_condition(&part, hash, value_sets)?);
                }
                alternatives.push(Condition::AllOf(all));
            }
            Condition::AnyOf(alternatives)
        }
        (Some(Modifier::Contains), ParamType::String) => {
            let mut alternatives = Vec::new();
            for v in &c.values {
                let SearchValue::Text(text) = v else { continue };
                let normalized = normalize::string(text);
                if normalized.chars().count() < MIN_CONTAINS {
                    return Err(ApiError::invalid(format!(
                        "{param}:contains needs at least {MIN_CONTAINS} characters"
                    )));
                }
                let mut all = Vec::new();
                for t in trigrams(&normalized) {
                    all.push(Condition::StringHash {
                        param: param.clone(),
                        any_of: vec![hash(&trigram_hash_input(&param, &t))?],
                    });
                }
                alternatives.push(Condition::AllOf(all));
            }
            Condition::AnyOf(alternatives)
        }
        (Some(m), _) => return Err(not_yet(format!("modifier {m:?} on {param}"))),
        _ => return Err(not_yet(format!("search parameter {param}"))),
    };
    Ok(condition)
}

/// The sort of a request: up to three keys, each `_lastUpdated` or a
/// parameter with sort keys kept on write (or sorted in memory), then id;
/// `_id` ascending ends the list. Other keys answer 501.
fn sort(req: &SearchRequest) -> Result<Vec<SortBy>, ApiError> {
    if req.sort.len() > MAX_SORT_KEYS {
        return Err(not_yet(format!(
            "_sort on more than {MAX_SORT_KEYS} parameters"
        )));
    }
    let mut out = Vec::new();
    for (code, descending) in &req.sort {
        let code = code.as_str();
        match code {
            "_lastUpdated" => {}
            // Ids are unique and every sort ends in id order: an ascending
            // `_id` key ends the sort (keys after it cannot matter).
            "_id" if !*descending => break,
            "_id" => {
                return Err(not_yet("_sort on -_id (descending id order)".into()));
            }
            _ => {
                let def = r4()
                    .get(&req.resource_type, code)
                    .ok_or_else(|| ApiError::invalid(format!("unknown sort parameter {code}")))?;
                // Identifying values (kept as keyed hashes or by year only)
                // are sorted in memory (`MemorySort`).
                let sortable = matches!(
                    def.kind,
                    ParamType::Date
                        | ParamType::Number
                        | ParamType::Quantity
                        | ParamType::Token
                        | ParamType::Reference
                        | ParamType::Uri
                        | ParamType::String
                ) && is_searchable(def);
                if !sortable {
                    return Err(not_yet(format!("_sort on {code}")));
                }
            }
        }
        if out.iter().any(|s: &SortBy| s.param == code) {
            return Err(ApiError::invalid(format!("_sort names {code} twice")));
        }
        out.push(SortBy {
            param: code.to_owned(),
            descending: *descending,
        });
    }
    Ok(out)
}

/// A sort the store cannot walk in order: by a parameter whose values the
/// index keeps only as keyed hashes or by year (strings, identifiers, birth
/// and death dates). Such a search reads every match, up to a bound, and
/// sorts them by values taken from the decrypted resources.
#[derive(Clone, Debug)]
pub struct MemorySort {
    /// `(parameter, descending)`, as `_sort` names them.
    keys: Vec<(String, bool)>,
}

/// The sort of `req` when it must be done in memory (see [`MemorySort`]).
pub fn memory_sort(req: &SearchRequest) -> Result<Option<MemorySort>, ApiError> {
    let sort = sort(req)?;
    let registry = r4();
    let in_memory = sort.iter().any(|s| {
        registry
            .get(&req.resource_type, &s.param)
            .is_some_and(|def| def.kind == ParamType::String || is_identifying(def))
    });
    Ok(in_memory.then(|| MemorySort {
        keys: sort.into_iter().map(|s| (s.param, s.descending)).collect(),
    }))
}

/// An `i64` as bytes in the same order.
fn ordered_int(v: i64) -> Vec<u8> {
    ((v as u64) ^ (1 << 63)).to_be_bytes().to_vec()
}

/// An `f64` (not NaN) as bytes in the same order.
fn ordered_float(v: f64) -> Vec<u8> {
    let bits = v.to_bits();
    let bits = if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    };
    bits.to_be_bytes().to_vec()
}

/// What an index value sorts by: (ascending, descending) keys — a date by its
/// start going up and by its end going down.
fn sort_value(v: &IndexValue) -> Option<(Vec<u8>, Vec<u8>)> {
    let same = |b: Vec<u8>| Some((b.clone(), b));
    match v {
        IndexValue::String { normalized, .. } => same(normalized.as_bytes().to_vec()),
        IndexValue::Token {
            system,
            code: Some(code),
            ..
        } => same(
            [
                code.as_bytes(),
                b"\0",
                system.as_deref().unwrap_or("").as_bytes(),
            ]
            .concat(),
        ),
        IndexValue::Date { low, high } => Some((ordered_int(*low), ordered_int(*high))),
        IndexValue::Number { value, .. } if !value.is_nan() => same(ordered_float(*value)),
        IndexValue::Quantity {
            value, canonical, ..
        } => {
            let v = canonical.as_ref().map_or(*value, |c| c.value);
            (!v.is_nan()).then(|| ordered_float(v)).and_then(same)
        }
        IndexValue::Reference {
            target_type: Some(t),
            target_id: Some(id),
            ..
        } => same(format!("{t}/{id}").into_bytes()),
        IndexValue::Reference { url, .. } => same(url.as_bytes().to_vec()),
        IndexValue::Uri(u) => same(u.as_bytes().to_vec()),
        _ => None,
    }
}

impl MemorySort {
    /// A resource's sort keys, one per `_sort` parameter: `0` and the value
    /// (the least for ascending, the greatest for descending), or `1` when
    /// it has none (sorted last either way).
    pub fn keys(&self, resource: &crate::json::Json, last_updated: i64) -> Vec<Vec<u8>> {
        let entries = crate::search::extract::extract(resource);
        self.keys
            .iter()
            .map(|(param, descending)| {
                let value = if param == "_lastUpdated" {
                    Some(ordered_int(last_updated))
                } else {
                    let values = entries
                        .iter()
                        .filter(|e| e.param == param.as_str())
                        .filter_map(|e| sort_value(&e.value));
                    if *descending {
                        values.map(|(_, high)| high).max()
                    } else {
                        values.map(|(low, _)| low).min()
                    }
                };
                match value {
                    Some(v) => [vec![0], v].concat(),
                    None => vec![1],
                }
            })
            .collect()
    }

    /// The order of two positions (keys from [`MemorySort::keys`], then id).
    pub fn compare(&self, a: (&[Vec<u8>], &str), b: (&[Vec<u8>], &str)) -> std::cmp::Ordering {
        for (i, (_, descending)) in self.keys.iter().enumerate() {
            let (x, y) = (a.0.get(i), b.0.get(i));
            // A missing value (`1`) sorts after any value in both directions.
            let missing = |k: Option<&Vec<u8>>| k.is_none_or(|k| k.first() != Some(&0));
            let order = match (missing(x), missing(y)) {
                (true, true) => std::cmp::Ordering::Equal,
                (true, false) => std::cmp::Ordering::Greater,
                (false, true) => std::cmp::Ordering::Less,
                (false, false) if *descending => y.cmp(&x),
                (false, false) => x.cmp(&y),
            };
            if order.is_ne() {
                return order;
            }
        }
        a.1.cmp(b.1)
    }

    /// How many keys a position of this sort holds.
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }
}

/// Translates a parsed request into a store query (the page after `after`);
/// a sort done in memory ([`memory_sort`]) leaves the store's order by id.
pub fn store_query(
    req: &SearchRequest,
    after: Option<Cursor>,
    limit: u32,
    hash: &Hasher<'_>,
) -> Result<SearchQuery, ApiError> {
    // Identifying dates only at the top level, where they can be checked again.
    rechecks(req)?;
    let mut conditions = Vec::new();
    for f in &req.filters {
        conditions.push(filter_condition(f, hash, &req.value_sets)?);
    }
    // A lone alternative, and the parts of an AND at the top, become conditions
    // of their own, so the store can pick the most selective to drive.
    let mut flat = Vec::new();
    let mut stack: Vec<Condition> = conditions.into_iter().rev().collect();
    while let Some(c) = stack.pop() {
        match c {
            Condition::AnyOf(mut one) if one.len() == 1 => stack.extend(one.pop()),
            Condition::AllOf(all) => stack.extend(all.into_iter().rev()),
            c => flat.push(c),
        }
    }
    let mut conditions = flat;
    for ids in &req.list_members {
        conditions.push(Condition::Id(ids.clone()));
    }
    Ok(SearchQuery {
        res_type: req.resource_type.clone(),
        conditions,
        sort: match memory_sort(req)? {
            Some(_) => Vec::new(),
            None => sort(req)?,
        },
        after,
        limit,
        drive_below: hearth_store::search::DEFAULT_DRIVE_BELOW,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::parse;
    use crate::search::extract::extract;

    #[test]
    fn prefixes_of_the_value_and_of_each_later_word() {
        let inputs = prefix_hash_inputs("p", "body mass-index", MAX_STRING_PREFIX);
        let has = |prefix: &str| inputs.contains(&prefix_hash_input("p", prefix));
        assert!(has("b") && has("body mass-index") && has("body m"));
        assert!(has("m") && has("mass") && has("i") && has("index"));
        assert!(!has("mass-") && !has("mass-index"), "within the word only");
        // 15 prefixes of the value, 4 of "mass" and 5 of "index", none twice.
        assert_eq!(inputs.len(), 15 + 4 + 5);
        // Display texts: the first 12 characters, checked in full beyond.
        let text = text_hash_inputs("p", "hemoglobin a1c/hemoglobin.total");
        assert_eq!(text.len(), 12 + 12);
        assert_eq!(text_lookup("hemoglobin a1c/hemo"), "hemoglobin a");
        assert!(text_matches(
            "hemoglobin a1c/hemoglobin.total",
            "hemoglobin a1c/hemo"
        ));
        assert!(text_matches(
            "hemoglobin a1c/hemoglobin.total",
            "a1c/hemoglobin.t"
        ));
        assert!(!text_matches(
            "hemoglobin a1c/hemoglobin.total",
            "a1c/hemoglobin.x"
        ));
    }

    #[test]
    fn identifying_values_are_not_stored() {
        let p = parse(br#"{"resourceType":"Patient","identifier":[{"system":"urn:mrn","value":"123456"}],"name":[{"family":"Zyxwvutsrq"}],"telecom":[{"system":"phone","value":"555-0100"}],"birthDate":"1970-01-01","gender":"female","generalPractitioner":[{"reference":"Practitioner/7"}]}"#).unwrap();
        let fake_hash = |b: &[u8]| Ok(b.iter().map(|x| x.wrapping_add(1)).collect::<Vec<u8>>());
        let rows = index_rows("Patient", &extract(&p), &fake_hash, None).unwrap();
        let text = format!("{rows:?}");
        for secret in ["123456", "Zyxwvutsrq", "555-0100", "1970"] {
            assert!(
                !text.contains(secret),
                "{secret} would be stored in clear: {text}"
            );
        }
        assert!(rows.contains(&IndexRow::Token {
            param: "gender".into(),
            system: String::new(),
            code: "female".into()
        }));
        assert!(rows.iter().any(|r| matches!(r, IndexRow::Reference { param, target_id, .. } if param == "general-practitioner" && target_id == "7")));
        let o = parse(br#"{"resourceType":"Observation","status":"final","code":{"text":"x"},"effectiveDateTime":"2020"}"#).unwrap();
        assert!(
            index_rows("Observation", &extract(&o), &fake_hash, None)
                .unwrap()
                .iter()
                .any(|r| matches!(r, IndexRow::Date { param, .. } if param == "date"))
        );
    }

    #[test]
    fn compartment_membership_follows_the_definitions() {
        let o = parse(
            br#"{"resourceType":"Observation","status":"final","code":{"text":"x"},
            "subject":{"reference":"Patient/p2"},"performer":[{"reference":"Practitioner/d1"}],
            "encounter":{"reference":"Encounter/e1"},"focus":[{"reference":"Patient/p9"}]}"#,
        )
        .unwrap();
        let fake_hash = |b: &[u8]| Ok(b.to_vec());
        let rows = index_rows("Observation", &extract(&o), &fake_hash, None).unwrap();
        let mut members: Vec<(String, String)> = rows
            .iter()
            .filter_map(|r| match r {
                IndexRow::Compartment { compartment, id } => {
                    Some((compartment.clone(), id.clone()))
                }
                _ => None,
            })
            .collect();
        members.sort();
        // focus is not a Patient-compartment parameter of Observation.
        assert_eq!(
            members,
            [
                ("Encounter", "e1"),
                ("Patient", "p2"),
                ("Practitioner", "d1")
            ]
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
        );
    }
}
