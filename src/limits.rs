//! The limits on the writes of the request being served: a patient
//! compartment, a SMART 2.x filter. The guard runs every request inside
//! [`scope`]; for a caller who may not write everything, each write of
//! [`crate::service::Service`] (create, update, patch, delete, conditional
//! writes, every Bundle entry) is then decided for that resource on its own
//! ([`Limits::check_write`]): the caller's rights for that kind of write on
//! that type, the new content and the version it replaces within them, and
//! the write made conditional on the version checked, so a concurrent change
//! cannot slip in between. A write the service did not check is refused at
//! the store call ([`assert_checked`]): nothing under limits reaches the
//! store unchecked.
//!
//! Every request runs in a scope; so does work the operator starts
//! ([`trusted`]). A write made outside any scope is refused: a path that
//! loses the scope (a spawned task) fails closed.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use hearth_security::{Decision, Interaction, Ops, Principal, ResourceFacts, TypeSelector};
use hearth_store::Precondition;

use crate::error::{ApiError, ErrorKind};
use crate::json::Json;
use crate::search::extract::IndexValue;

/// Who the writes being made are for.
pub struct Limits {
    /// The caller of the request being served; `None` for work the operator
    /// started ([`trusted`]: `hearth import`).
    principal: Option<Principal>,
    /// The caller may write everything (or the work is trusted): nothing to
    /// check beyond the store's own preconditions.
    unlimited: bool,
    /// Resources (type, id) whose write was checked.
    checked: Mutex<HashSet<(String, String)>>,
}

tokio::task_local! {
    static LIMITS: Arc<Limits>;
}

/// Whether a caller may do `ops` on every resource, without limits.
pub fn may_do_everything(principal: &Principal, ops: Ops) -> bool {
    hearth_security::effective_grants(principal)
        .iter()
        .any(|g| {
            g.ops.contains(ops)
                && g.types == TypeSelector::All
                && g.patient.is_none()
                && g.filter.is_none()
        })
}

/// Whether a caller may create, update and delete anything (no limits).
pub fn writes_everything(principal: &Principal) -> bool {
    may_do_everything(principal, Ops::V1_WRITE)
}

/// Runs `f` (the rest of a request) with its writes checked for `principal`.
/// The guard runs every request in one: a write made outside any scope (a
/// task spawned from a request, say) is refused.
pub async fn scope<F: std::future::Future>(principal: Principal, f: F) -> F::Output {
    let unlimited = writes_everything(&principal);
    let limits = Arc::new(Limits {
        principal: Some(principal),
        unlimited,
        checked: Mutex::new(HashSet::new()),
    });
    LIMITS.scope(limits, f).await
}

/// Runs `f`, work the operator started from the command line (`hearth
/// import`), with its writes unlimited.
pub async fn trusted<F: std::future::Future>(f: F) -> F::Output {
    let limits = Arc::new(Limits {
        principal: None,
        unlimited: true,
        checked: Mutex::new(HashSet::new()),
    });
    LIMITS.scope(limits, f).await
}

/// The limits of the writes being made; `None` outside any scope.
pub fn current() -> Option<Arc<Limits>> {
    LIMITS.try_with(Arc::clone).ok()
}

/// A write with no scope: refused, whatever made it.
pub fn unscoped() -> ApiError {
    ApiError::internal("a write was made outside any request or trusted job")
}

/// What a write replaces.
pub enum Stored<'a> {
    /// A live version: its body and number.
    Live(&'a [u8], i64),
    /// A deleted resource: the version of its deletion.
    Deleted(i64),
    /// Nothing ever.
    Absent,
}

fn outside(what: &str) -> ApiError {
    ApiError::new(
        ErrorKind::Forbidden,
        format!("access denied: {what} is outside the compartments this caller may write"),
    )
}

fn within(
    narrowing: &hearth_security::Narrowing,
    res_type: &str,
    id: &str,
    resource: &Json,
) -> bool {
    let matches = |_: &str, pairs: &[(String, String)]| matches_filter(resource, pairs);
    let facts =
        ResourceFacts::new(res_type, id, patients_of(res_type, resource)).with_filter(&matches);
    hearth_security::check_write(narrowing, &facts)
}

impl Limits {
    /// Decides one write of `res_type/id`: a delete when `new` is `None`,
    /// else a create (nothing live stored) or an update. The new content and
    /// the stored version must both be within the caller's limits for that
    /// kind of write. Returns the precondition to write with: only over the
    /// version checked (a live one, a deletion), or, when nothing was ever
    /// stored, only if still nothing is.
    pub fn check_write(
        &self,
        res_type: &str,
        id: &str,
        new: Option<&Json>,
        stored: Stored<'_>,
        precondition: Precondition,
    ) -> Result<Precondition, ApiError> {
        let Some(principal) = self.principal.as_ref().filter(|_| !self.unlimited) else {
            // Nothing to check, nothing to remember (an import writes many).
            return Ok(precondition);
        };
        let live = matches!(stored, Stored::Live(..));
        let interaction = match (new, live) {
            (None, _) => Interaction::delete(res_type, id),
            (Some(_), true) => Interaction::update(res_type, id),
            (Some(_), false) => Interaction::create(res_type),
        };
        let narrowing = match hearth_security::decide(principal, &interaction) {
            Decision::Allow { narrowing } => narrowing,
            Decision::Deny { reason } => {
                return Err(ApiError::new(
                    ErrorKind::Forbidden,
                    format!("access denied: {reason}"),
                ));
            }
        };
        if !narrowing.is_unrestricted() {
            if let Some(new) = new
                && !within(&narrowing, res_type, id, new)
            {
                return Err(outside("the new content"));
            }
            if let Stored::Live(body, _) = stored {
                let json = crate::json::parse(body)
                    .map_err(|_| ApiError::internal("a stored resource is not JSON"))?;
                if !within(&narrowing, res_type, id, &json) {
                    return Err(outside("the stored resource"));
                }
            }
        }
        // The write is made only over exactly what was checked: a caller's
        // own `If-Match` naming another version fails now, not later against
        // a version nobody checked.
        let precondition = match (precondition, stored) {
            (Precondition::VersionIs(asked), Stored::Live(_, version)) if asked != version => {
                return Err(ApiError::new(
                    ErrorKind::PreconditionFailed,
                    format!("{res_type}/{id} is at version {version}, not {asked}"),
                ));
            }
            (Precondition::None | Precondition::VersionIs(_), Stored::Live(_, version)) => {
                Precondition::VersionIs(version)
            }
            (Precondition::None, Stored::Deleted(version)) => Precondition::DeletedAt(version),
            (Precondition::None, Stored::Absent) => Precondition::Absent,
            // Absent, or a version that is not live: the store refuses the
            // write unless nothing changed, which is what was checked.
            (other, _) => other,
        };
        self.mark(res_type, id);
        Ok(precondition)
    }

    /// Whether writes need the stored version to be checked (a caller with
    /// limits).
    pub fn limited(&self) -> bool {
        !self.unlimited
    }

    fn mark(&self, res_type: &str, id: &str) {
        if let Ok(mut c) = self.checked.lock() {
            c.insert((res_type.to_owned(), id.to_owned()));
        }
    }
}

/// What the search of a condition (conditional writes, conditional
/// references, `ifNoneExist`) may see of a type, so that what the caller
/// may not see behaves as absent and a condition reveals nothing of it.
pub enum SearchScope {
    /// Everything.
    All,
    /// Only these patients' compartments (or these Patients).
    Patients(Vec<String>),
    /// Conditions on this type cannot be narrowed for the caller: refused.
    Refused(String),
}

impl Limits {
    pub fn search_scope(&self, res_type: &str) -> SearchScope {
        let Some(principal) = self.principal.as_ref().filter(|_| !self.unlimited) else {
            return SearchScope::All;
        };
        let interaction = Interaction::search_type(res_type);
        let narrowing = match hearth_security::decide(principal, &interaction) {
            Decision::Allow { narrowing } => narrowing,
            Decision::Deny { reason } => {
                return SearchScope::Refused(format!(
                    "access denied: a condition searches {res_type}: {reason}"
                ));
            }
        };
        if narrowing.is_unrestricted() {
            return SearchScope::All;
        }
        if narrowing.filters_for(res_type).is_some() {
            return SearchScope::Refused(
                "access denied: conditions are not supported under SMART filter limits".into(),
            );
        }
        match narrowing.patients_for(res_type) {
            Some(ids) => SearchScope::Patients(ids.into_iter().collect()),
            None => SearchScope::All,
        }
    }
}

/// Refuses a store write that was not checked, or made outside any scope.
pub fn assert_checked<'a>(
    writes: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<(), ApiError> {
    let Some(limits) = current() else {
        return Err(unscoped());
    };
    if limits.unlimited {
        return Ok(());
    }
    let checked = limits
        .checked
        .lock()
        .map_err(|_| ApiError::internal("the write limits are unusable"))?;
    for (t, id) in writes {
        if !checked.contains(&(t.to_owned(), id.to_owned())) {
            return Err(ApiError::new(
                ErrorKind::Forbidden,
                "access denied: this write is not supported under compartment or filter limits",
            ));
        }
    }
    Ok(())
}

/// Whether a resource matches SMART 2.x filter pairs (`category=…&…`): every
/// pair must match, as a search of the resource's type would. Parameters are
/// read like any search (`search::query`) and matched on the resource's own
/// index values: tokens (`code`, `system|code`, `|code`, `system|`), strings
/// (starts with, ignoring case and accents), URIs (exactly), references
/// (`Type/id`, `id`, an absolute URL), dates, numbers and quantities (every
/// prefix; a quantity's unit as written, without conversion), each with comma
/// alternatives. A filter with a modifier, a chain, `_has`, a composite, or a
/// parameter this type does not have matches nothing, so a filter this
/// server cannot evaluate hides rather than shows.
pub fn matches_filter(resource: &Json, pairs: &[(String, String)]) -> bool {
    use crate::search::query::{Filter, SearchValue};
    let res_type = match resource {
        Json::Object(o) => o.get("resourceType").and_then(Json::as_str).unwrap_or(""),
        _ => return false,
    };
    let Ok(request) = crate::search::query::parse(res_type, pairs) else {
        return false;
    };
    if !request.ignored.is_empty() || request.filters.len() != pairs.len() {
        return false;
    }
    let entries = crate::search::extract::extract(resource);
    request.filters.iter().all(|filter| {
        let Filter::Criterion(c) = filter else {
            return false;
        };
        if !c.chain.is_empty() || c.modifier.is_some() {
            return false;
        }
        let values: Vec<&IndexValue> = entries
            .iter()
            .filter(|e| e.param == c.param)
            .map(|e| &e.value)
            .collect();
        c.values.iter().any(|wanted| match wanted {
            SearchValue::Token { system, code } => values
                .iter()
                .any(|v| token_matches(v, system.as_deref(), code.as_deref().unwrap_or(""))),
            SearchValue::Text(text) => values.iter().any(|v| match v {
                IndexValue::String { normalized, .. } => {
                    normalized.starts_with(&crate::search::normalize::string(text))
                }
                IndexValue::Uri(uri) => uri == text,
                _ => false,
            }),
            SearchValue::Reference {
                target_type,
                id,
                url,
            } => values.iter().any(|v| match v {
                IndexValue::Reference {
                    target_type: t,
                    target_id,
                    url: written,
                    ..
                } => match url {
                    Some(url) => written == url,
                    None => {
                        target_id.as_deref() == Some(id.as_str())
                            && target_type
                                .as_deref()
                                .is_none_or(|want| t.as_deref() == Some(want))
                    }
                },
                _ => false,
            }),
            SearchValue::Number { prefix, value } => {
                let Some(test) = crate::search::plan::number_test(*prefix, value) else {
                    return false;
                };
                values
                    .iter()
                    .any(|v| matches!(v, IndexValue::Number { value, .. } if test.holds(*value)))
            }
            SearchValue::Quantity {
                prefix,
                value,
                system,
                code,
            } => {
                let Some(test) = crate::search::plan::number_test(*prefix, value) else {
                    return false;
                };
                let wanted_system = system.as_deref().filter(|s| !s.is_empty());
                let wanted_code = code.as_deref().filter(|c| !c.is_empty());
                values.iter().any(|v| match v {
                    IndexValue::Quantity {
                        value,
                        system,
                        code,
                        unit,
                        ..
                    } => {
                        test.holds(*value)
                            && wanted_system.is_none_or(|w| system.as_deref() == Some(w))
                            && wanted_code.is_none_or(|w| {
                                code.as_deref() == Some(w) || unit.as_deref() == Some(w)
                            })
                    }
                    _ => false,
                })
            }
            SearchValue::Date { prefix, value } => {
                let Some((from, to)) = crate::search::extract::date_range(value) else {
                    return false;
                };
                let op = crate::search::plan::date_op(*prefix);
                values.iter().any(|v| match v {
                    IndexValue::Date { low, high } => op.holds(*low, *high, from, to),
                    _ => false,
                })
            }
            _ => false,
        })
    })
}

fn token_matches(value: &IndexValue, system: Option<&str>, code: &str) -> bool {
    let IndexValue::Token {
        system: s, code: c, ..
    } = value
    else {
        return false;
    };
    let system_ok = match system {
        None => true,
        Some("") => s.is_none(),
        Some(want) => s.as_deref() == Some(want),
    };
    let code_ok = code.is_empty() || c.as_deref() == Some(code);
    system_ok && code_ok && !(code.is_empty() && system.is_none())
}

/// The patients whose compartment a resource is in (by the R4 Patient
/// CompartmentDefinition's parameters).
pub fn patients_of(res_type: &str, resource: &Json) -> Vec<String> {
    let params = crate::fhir::search_params::r4().compartment_params("Patient", res_type);
    if params.is_empty() {
        return Vec::new();
    }
    let mut out: Vec<String> = crate::search::extract::extract(resource)
        .into_iter()
        .filter(|e| params.contains(&e.param))
        .filter_map(|e| match e.value {
            crate::search::extract::IndexValue::Reference {
                target_type: Some(t),
                target_id: Some(id),
                ..
            } if t == "Patient" => Some(id),
            _ => None,
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smart_filters_match_tokens() {
        let obs = crate::json::parse(
            br#"{"resourceType":"Observation","status":"final","code":{"text":"x"},
                "category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"laboratory"}]}]}"#,
        )
        .unwrap_or(Json::Null);
        let pairs = |v: &str| vec![("category".to_owned(), v.to_owned())];
        assert!(matches_filter(&obs, &pairs("laboratory")));
        assert!(matches_filter(
            &obs,
            &pairs("http://terminology.hl7.org/CodeSystem/observation-category|laboratory")
        ));
        assert!(matches_filter(&obs, &pairs("vital-signs,laboratory")));
        assert!(!matches_filter(&obs, &pairs("vital-signs")));
        assert!(!matches_filter(&obs, &pairs("http://other|laboratory")));
        assert!(matches_filter(
            &obs,
            &[("status".to_owned(), "final".to_owned())]
        ));
        // A modifier, an unknown parameter: never.
        assert!(!matches_filter(
            &obs,
            &[("category:not".to_owned(), "vital-signs".to_owned())]
        ));
        assert!(!matches_filter(
            &obs,
            &[("nonsense".to_owned(), "x".to_owned())]
        ));
    }

    #[test]
    fn smart_filters_match_numbers_and_quantities() {
        let obs = crate::json::parse(
            br#"{"resourceType":"Observation","status":"final","code":{"text":"x"},
                "valueQuantity":{"value":5.4,"system":"http://unitsofmeasure.org","code":"mg","unit":"milligram"}}"#,
        )
        .unwrap_or(Json::Null);
        let one = |k: &str, v: &str| matches_filter(&obs, &[(k.to_owned(), v.to_owned())]);
        assert!(one("value-quantity", "5.4"));
        assert!(one("value-quantity", "gt5"));
        assert!(!one("value-quantity", "lt5"));
        assert!(one("value-quantity", "5.4|http://unitsofmeasure.org|mg"));
        assert!(one("value-quantity", "5.4||milligram"));
        assert!(!one("value-quantity", "5.4|http://unitsofmeasure.org|g"));
        assert!(!one("value-quantity", "5.4|http://other|mg"));
        assert!(one("value-quantity", "ap5.2"));
        assert!(one("value-quantity", "5"), "5 means 4.5 up to 5.5");
        assert!(!one("value-quantity", "6"));
        assert!(!one("value-quantity", "x"));
        let risk = crate::json::parse(
            br#"{"resourceType":"RiskAssessment","status":"final","subject":{"reference":"Patient/p1"},
                "prediction":[{"probabilityDecimal":0.25}]}"#,
        )
        .unwrap_or(Json::Null);
        let r = |v: &str| matches_filter(&risk, &[("probability".to_owned(), v.to_owned())]);
        assert!(r("0.25"));
        assert!(r("ge0.2"));
        assert!(!r("gt0.3"));
        assert!(!r("0.2"));
    }

    #[test]
    fn smart_filters_match_strings_references_uris_and_dates() {
        let obs = crate::json::parse(
            br#"{"resourceType":"Observation","status":"final","code":{"text":"x"},
                "subject":{"reference":"Patient/p1"},"effectiveDateTime":"2021-03-04",
                "performer":[{"reference":"http://other.example/fhir/Practitioner/9"}]}"#,
        )
        .unwrap_or(Json::Null);
        let one = |k: &str, v: &str| matches_filter(&obs, &[(k.to_owned(), v.to_owned())]);
        assert!(one("subject", "Patient/p1"));
        assert!(one("subject", "p1"));
        assert!(one("patient", "p1"));
        assert!(!one("subject", "Patient/p2"));
        assert!(!one("subject", "Group/p1"));
        assert!(one("performer", "http://other.example/fhir/Practitioner/9"));
        assert!(one("date", "2021"));
        assert!(one("date", "ge2021-03-01"));
        assert!(!one("date", "lt2021-03-01"));
        assert!(one("date", "2020,2021-03"));
        assert!(!one("date", "2022"));
        assert!(!one("date", "not-a-date"));
        let patient = crate::json::parse(
            br#"{"resourceType":"Patient","name":[{"family":"\u00c9lan","given":["Zo\u00eb"]}],
                "gender":"female"}"#,
        )
        .unwrap_or(Json::Null);
        let p = |k: &str, v: &str| matches_filter(&patient, &[(k.to_owned(), v.to_owned())]);
        assert!(p("family", "elan"));
        assert!(p("name", "zo"));
        assert!(!p("family", "lan"));
        assert!(p("gender", "female"));
        // Every pair must match.
        assert!(!matches_filter(
            &patient,
            &[
                ("gender".to_owned(), "female".to_owned()),
                ("family".to_owned(), "smith".to_owned())
            ]
        ));
        let vs = crate::json::parse(
            br#"{"resourceType":"ValueSet","status":"active","url":"http://example.org/vs/1"}"#,
        )
        .unwrap_or(Json::Null);
        assert!(matches_filter(
            &vs,
            &[("url".to_owned(), "http://example.org/vs/1".to_owned())]
        ));
        assert!(!matches_filter(
            &vs,
            &[("url".to_owned(), "http://example.org/vs".to_owned())]
        ));
    }
}
