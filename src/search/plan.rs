//! From extracted values to stored index rows, and from a parsed search request to
//! a store query. Only the value classes kept in clear (docs/adr/0005) are stored
//! and searchable so far: tokens of codes, references and dates. Parameters whose
//! values identify a person (strings, identifiers, telecom, birth dates) are
//! refused with 501 until their keyed-hash index exists, rather than answered
//! wrongly.

use hearth_store::IndexRow;
use hearth_store::search::{Condition, DateOp, IndexTable, SearchQuery};

use super::extract::{IndexEntry, IndexValue, date_range};
use super::query::{Filter, Modifier, Prefix, SearchRequest, SearchValue, Summary, Total};
use crate::error::{ApiError, ErrorKind};
use crate::fhir::search_params::{ParamType, SearchParam, r4};

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
    p.code == "_id"
        || p.code == "_lastUpdated"
        || (matches!(p.expression, Some(Ok(_)))
            && matches!(
                p.kind,
                ParamType::Token | ParamType::Reference | ParamType::Date
            )
            && !is_identifying(p))
}

/// The index rows kept for a resource of type `res_type`.
pub fn index_rows(res_type: &str, entries: &[IndexEntry]) -> Vec<IndexRow> {
    let registry = r4();
    let mut rows = Vec::new();
    for e in entries {
        if e.param == "_id" || e.param == "_lastUpdated" {
            continue; // answered from the resource row
        }
        match registry.get(res_type, e.param) {
            Some(p) if !is_identifying(p) => {}
            _ => continue,
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
            } => IndexRow::Reference {
                param: e.param.to_owned(),
                target_type: target_type.clone().unwrap_or_default(),
                target_id: target_id.clone().unwrap_or_default(),
                url: url.clone(),
            },
            IndexValue::Date { low, high } => IndexRow::Date {
                param: e.param.to_owned(),
                low: *low,
                high: *high,
            },
            _ => continue,
        };
        if !rows.contains(&row) {
            rows.push(row);
        }
    }
    rows
}

fn not_yet(what: String) -> ApiError {
    ApiError::new(
        ErrorKind::NotSupported,
        format!("{what} is not supported by this server yet"),
    )
}

fn date_op(prefix: Prefix) -> DateOp {
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

/// Translates a parsed request into a store query (the first page after `after_id`).
pub fn store_query(
    req: &SearchRequest,
    after_id: Option<String>,
    limit: u32,
) -> Result<SearchQuery, ApiError> {
    if !req.include.is_empty() || !req.revinclude.is_empty() {
        return Err(not_yet("_include and _revinclude".into()));
    }
    if !req.sort.is_empty() {
        return Err(not_yet("_sort".into()));
    }
    if req.total != Total::None {
        return Err(not_yet("_total".into()));
    }
    if req.summary.is_some_and(|s| s != Summary::False) || !req.elements.is_empty() {
        return Err(not_yet("_summary and _elements".into()));
    }
    let registry = r4();
    let mut conditions = Vec::new();
    for f in &req.filters {
        let c = match f {
            Filter::Has(_) => return Err(not_yet("_has".into())),
            Filter::Criterion(c) => c,
        };
        if !c.chain.is_empty() {
            return Err(not_yet("chained parameters".into()));
        }
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
            conditions.push(Condition::Id(ids));
            continue;
        }
        if param == "_lastUpdated" {
            conditions.push(Condition::LastUpdated(dates(&c.values)));
            continue;
        }
        let def = registry
            .get(&req.resource_type, &param)
            .ok_or_else(|| ApiError::invalid(format!("unknown search parameter {param}")))?;
        if !is_searchable(def) {
            return Err(not_yet(format!("search parameter {param}")));
        }
        let table = match c.kind {
            ParamType::Token => IndexTable::Token,
            ParamType::Reference => IndexTable::Reference,
            _ => IndexTable::Date,
        };
        let condition = match (&c.modifier, c.kind) {
            (Some(Modifier::Missing), _) => Condition::Missing {
                param,
                table,
                missing: matches!(c.values.first(), Some(SearchValue::Missing(true))),
            },
            (None | Some(Modifier::Not), ParamType::Token) => Condition::Token {
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
            (None, ParamType::Date) => Condition::Date {
                param,
                any_of: dates(&c.values),
            },
            (Some(m), _) => return Err(not_yet(format!("modifier {m:?} on {param}"))),
            _ => return Err(not_yet(format!("search parameter {param}"))),
        };
        conditions.push(condition);
    }
    Ok(SearchQuery {
        res_type: req.resource_type.clone(),
        conditions,
        after_id,
        limit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::parse;
    use crate::search::extract::extract;

    #[test]
    fn identifying_values_are_not_stored() {
        let p = parse(br#"{"resourceType":"Patient","identifier":[{"system":"urn:mrn","value":"123456"}],"name":[{"family":"Zyxwvutsrq"}],"telecom":[{"system":"phone","value":"555-0100"}],"birthDate":"1970-01-01","gender":"female","generalPractitioner":[{"reference":"Practitioner/7"}]}"#).unwrap();
        let rows = index_rows("Patient", &extract(&p));
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
            index_rows("Observation", &extract(&o))
                .iter()
                .any(|r| matches!(r, IndexRow::Date { param, .. } if param == "date"))
        );
    }
}
