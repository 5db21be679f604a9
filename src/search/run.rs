//! Searches run in the service layer: what a search names on this server
//! (value sets, code systems, lists) resolved from the stored resources, and
//! candidates the index can only narrow (birth dates by year) checked exactly.
//! The REST search, the conditional interactions and Bundle entries use it.

use hearth_store::search::{Condition, Cursor};

use crate::error::ApiError;
use crate::search::{plan, query};
use crate::service::{ResourceVersion, Service};

/// Candidates read at a time when matches are counted one by one.
const COUNT_BATCH: u32 = 1000;

/// Runs searches for one tenant.
pub struct Searcher<'a> {
    pub service: &'a Service,
    pub tenant: &'a str,
    /// See `SearchQuery::drive_below`.
    pub drive_below: u32,
}

impl Searcher<'_> {
    /// Resolves what the criteria name on this server (value sets, code
    /// systems, lists).
    pub async fn resolve(&self, parsed: &mut query::SearchRequest) -> Result<(), ApiError> {
        self.resolve_value_sets(parsed).await?;
        self.resolve_lists(parsed).await
    }

    /// The first page of a search in a Bundle entry (`GET [type]?…`): the
    /// matches in the order asked for (`_sort` on parameters the index keeps
    /// in order), up to `_count` (`default_count` without, at most
    /// `max_count`). Unknown parameters are refused, and what only the REST
    /// search does (includes, summaries, totals, sorts done in memory)
    /// answers 501.
    pub async fn first_page(
        &self,
        res_type: &str,
        criteria: &[(String, String)],
        default_count: u32,
        max_count: u32,
    ) -> Result<Vec<ResourceVersion>, ApiError> {
        let mut parsed = query::parse(res_type, criteria)?;
        if !parsed.ignored.is_empty() {
            return Err(ApiError::invalid(format!(
                "unknown search parameters: {}",
                parsed.ignored.join(", ")
            )));
        }
        if !parsed.include.is_empty()
            || !parsed.revinclude.is_empty()
            || parsed.summary.is_some()
            || !parsed.elements.is_empty()
            || parsed.total != query::Total::None
            || plan::memory_sort(&parsed)?.is_some()
        {
            return Err(ApiError::new(
                crate::error::ErrorKind::NotSupported,
                "_include, _revinclude, _summary, _elements, _total and _sort on strings, \
                 identifiers or birth dates are not supported in Bundle entries yet",
            ));
        }
        self.resolve(&mut parsed).await?;
        let count = parsed.count.unwrap_or(default_count).min(max_count);
        let mut q = plan::store_query(&parsed, None, count, &|input| {
            self.service.search_hash(self.tenant, input)
        })?;
        q.drive_below = self.drive_below;
        let found = self.search_checked(&q, &plan::rechecks(&parsed)?).await?;
        Ok(found.into_iter().map(|(r, _)| r).collect())
    }

    /// The store conditions of a filter (`_typeFilter`): search parameters
    /// only; unknown parameters, result parameters (`_sort`, `_count`, …) and
    /// conditions the index can only narrow (birth dates) are refused.
    pub async fn conditions(
        &self,
        res_type: &str,
        criteria: &[(String, String)],
    ) -> Result<Vec<Condition>, ApiError> {
        let mut parsed = query::parse(res_type, criteria)?;
        let controls = parsed.count.is_some()
            || !parsed.sort.is_empty()
            || !parsed.include.is_empty()
            || !parsed.revinclude.is_empty()
            || parsed.summary.is_some()
            || !parsed.elements.is_empty();
        if !parsed.ignored.is_empty() || controls {
            return Err(ApiError::invalid(format!(
                "a filter on {res_type} takes search parameters only{}",
                if parsed.ignored.is_empty() {
                    String::new()
                } else {
                    format!(" (unknown: {})", parsed.ignored.join(", "))
                }
            )));
        }
        if !plan::rechecks(&parsed)?.is_empty() {
            return Err(ApiError::invalid(format!(
                "a filter on {res_type} cannot search birth or death dates"
            )));
        }
        self.resolve(&mut parsed).await?;
        Ok(plan::store_query(&parsed, None, 1, &|input| {
            self.service.search_hash(self.tenant, input)
        })?
        .conditions)
    }

    /// The resources of `res_type` that match `criteria` (the search of a
    /// conditional interaction), up to `limit`, in id order. Unknown
    /// parameters are refused: a condition must not match more than it says.
    /// Under the request's limits ([`crate::limits`]) only what the caller
    /// may see can match.
    pub async fn matching(
        &self,
        res_type: &str,
        criteria: &[(String, String)],
        limit: u32,
    ) -> Result<Vec<ResourceVersion>, ApiError> {
        let mut parsed = query::parse(res_type, criteria)?;
        if !parsed.ignored.is_empty() {
            return Err(ApiError::invalid(format!(
                "unknown search parameters in a condition: {}",
                parsed.ignored.join(", ")
            )));
        }
        // Under the caller's limits, what it may not see does not match.
        let within = match crate::limits::current().map(|l| l.search_scope(res_type)) {
            None | Some(crate::limits::SearchScope::All) => None,
            Some(crate::limits::SearchScope::Patients(ids)) if res_type == "Patient" => {
                Some(Condition::Id(ids))
            }
            Some(crate::limits::SearchScope::Patients(ids)) => Some(Condition::InCompartment {
                compartment: "Patient".to_owned(),
                ids: Some(ids),
            }),
            Some(crate::limits::SearchScope::Refused(why)) => {
                return Err(ApiError::new(crate::error::ErrorKind::Forbidden, why));
            }
        };
        // Chains and `_has` search other types, which the narrowing above
        // does not reach: for a caller with any limits they are refused.
        let crosses_types = parsed.filters.iter().any(|f| match f {
            query::Filter::Has(_) => true,
            query::Filter::Criterion(c) => !c.chain.is_empty(),
        });
        if crosses_types && crate::limits::current().is_some_and(|l| l.limited()) {
            return Err(ApiError::new(
                crate::error::ErrorKind::Forbidden,
                "access denied: a condition under compartment or filter limits cannot use chains or _has",
            ));
        }
        self.resolve(&mut parsed).await?;
        let mut q = plan::store_query(&parsed, None, limit, &|input| {
            self.service.search_hash(self.tenant, input)
        })?;
        q.conditions.extend(within);
        q.sort = Vec::new();
        q.drive_below = self.drive_below;
        let found = self.search_checked(&q, &plan::rechecks(&parsed)?).await?;
        Ok(found.into_iter().map(|(r, _)| r).collect())
    }

    /// The first resource of `res_type` whose `url` is `url` (and, when given,
    /// whose `version` is `version`), as JSON.
    pub async fn find_by_url(
        &self,
        res_type: &str,
        url: &str,
        version: Option<&str>,
    ) -> Result<Option<crate::json::Json>, ApiError> {
        let q = hearth_store::search::SearchQuery {
            res_type: res_type.to_owned(),
            conditions: vec![Condition::Uri {
                param: "url".to_owned(),
                any_of: vec![url.to_owned()],
                below: false,
            }],
            sort: Vec::new(),
            after: None,
            limit: 50,
            drive_below: self.drive_below,
        };
        for (rv, _) in self.service.search(self.tenant, &q).await? {
            let json = crate::json::parse(&rv.body)
                .map_err(|_| ApiError::internal(format!("a stored {res_type} is not JSON")))?;
            let matches = match (version, &json) {
                (None, _) => true,
                (Some(want), crate::json::Json::Object(o)) => {
                    o.get("version").and_then(crate::json::Json::as_str) == Some(want)
                }
                _ => false,
            };
            if matches {
                return Ok(Some(json));
            }
        }
        Ok(None)
    }

    /// Expands the value sets `:in` and `:not-in` name, from the ValueSets stored
    /// on this server (by canonical URL, `|version` choosing among versions), and
    /// the codes `:above` and `:below` name, from the CodeSystems stored here.
    pub async fn resolve_value_sets(
        &self,
        parsed: &mut query::SearchRequest,
    ) -> Result<(), ApiError> {
        for canonical in parsed.value_set_urls() {
            let (url, version) = match canonical.split_once('|') {
                Some((u, v)) => (u, Some(v)),
                None => (canonical.as_str(), None),
            };
            let vs = self
                .find_by_url("ValueSet", url, version)
                .await?
                .ok_or_else(|| {
                    ApiError::invalid(format!("no value set {canonical} on this server"))
                })?;
            let members = crate::fhir::valueset::expand(&vs, &canonical)?;
            parsed.value_sets.insert(canonical, members);
        }
        for (modifier, system, code) in parsed.subsumption_codes() {
            let cs = self
                .find_by_url("CodeSystem", &system, None)
                .await?
                .ok_or_else(|| {
                    ApiError::invalid(format!(
                        "no CodeSystem {system} on this server to follow :above or :below in"
                    ))
                })?;
            let below = modifier == query::Modifier::Below;
            // A code the system does not hold subsumes only itself.
            let codes = crate::fhir::valueset::subsumed(&cs, &code, below)
                .unwrap_or_else(|| vec![code.clone()]);
            parsed.value_sets.insert(
                query::subsumption_key(&modifier, &system, &code),
                codes
                    .into_iter()
                    .map(|c| (Some(system.clone()), Some(c)))
                    .collect(),
            );
        }
        Ok(())
    }

    /// `_list`: the ids of the searched type that the named Lists hold (`entry.item`
    /// references); an unknown or deleted List holds nothing.
    pub async fn resolve_lists(&self, parsed: &mut query::SearchRequest) -> Result<(), ApiError> {
        let prefix = format!("{}/", parsed.resource_type);
        for group in parsed.lists.clone() {
            let mut ids = Vec::new();
            for list_id in group {
                let list = match self.service.read(self.tenant, "List", &list_id).await {
                    Ok(l) => l,
                    Err(e)
                        if matches!(
                            e.kind,
                            crate::error::ErrorKind::NotFound | crate::error::ErrorKind::Gone
                        ) =>
                    {
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                let json = crate::json::parse(&list.body)
                    .map_err(|_| ApiError::internal("a stored List is not JSON"))?;
                for value in crate::search::extract::extract(&json) {
                    if value.param != "item" {
                        continue;
                    }
                    if let crate::search::extract::IndexValue::Reference { url, .. } = value.value
                        && let Some(id) = url.strip_prefix(&prefix)
                        && !id.contains('/')
                        && !ids.iter().any(|i| i == id)
                    {
                        ids.push(id.to_owned());
                    }
                }
            }
            parsed.list_members.push(ids);
        }
        Ok(())
    }

    /// A page of a search whose index conditions are only a first cut (birth
    /// dates by year): candidates are checked exactly, and further batches read
    /// until the page is full or the store has no more.
    pub async fn search_checked(
        &self,
        q: &hearth_store::search::SearchQuery,
        checks: &[plan::Recheck],
    ) -> Result<Vec<(ResourceVersion, Cursor)>, ApiError> {
        if checks.is_empty() {
            return self.service.search(self.tenant, q).await;
        }
        let want = q.limit as usize;
        let backward = q.after.as_ref().is_some_and(|c| c.backward);
        let mut q = q.clone();
        let mut kept = Vec::new();
        loop {
            let batch = self.service.search(self.tenant, &q).await?;
            let full = batch.len() == q.limit as usize;
            let last = batch.last().map(|(_, c)| c.toward(backward));
            for (r, c) in batch {
                if passes(&r, checks)? {
                    kept.push((r, c));
                }
            }
            if kept.len() >= want || !full {
                kept.truncate(want);
                return Ok(kept);
            }
            q.after = last;
        }
    }

    /// The number of matches, counted exactly when candidates need checking.
    pub async fn count_checked(
        &self,
        q: &hearth_store::search::SearchQuery,
        checks: &[plan::Recheck],
    ) -> Result<u64, ApiError> {
        if checks.is_empty() {
            return self.service.count(self.tenant, q).await;
        }
        let mut q = q.clone();
        q.sort = Vec::new();
        q.after = None;
        q.limit = COUNT_BATCH;
        let mut n = 0u64;
        loop {
            let batch = self.service.search(self.tenant, &q).await?;
            let full = batch.len() == q.limit as usize;
            let last = batch.last().map(|(_, c)| c.clone());
            for (r, _) in &batch {
                if passes(r, checks)? {
                    n += 1;
                }
            }
            if !full {
                return Ok(n);
            }
            q.after = last;
        }
    }
}

/// Whether a found resource passes the exact checks the index could not make.
pub fn passes(r: &ResourceVersion, checks: &[plan::Recheck]) -> Result<bool, ApiError> {
    if checks.is_empty() {
        return Ok(true);
    }
    let json = crate::json::parse(&r.body)
        .map_err(|_| ApiError::internal(format!("a stored {} is not JSON", r.res_type)))?;
    let entries = crate::search::extract::extract(&json);
    Ok(checks.iter().all(|c| c.holds(&entries, &json)))
}
