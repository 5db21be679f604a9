//! `search-type` (R4 3.1.1): `GET [base]/[type]?…` and `POST [base]/[type]/_search`
//! with a form body, and compartment search. Answers a `searchset` Bundle ordered
//! by id (or by the `_sort` key, then id), with keyset paging (`_page` holds the
//! position of the last entry shown) so pages stay stable while writes happen.
//! Unknown parameters are ignored and left out of the `self` link, unless the
//! client sent `Prefer: handling=strict`.

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};

use super::{AppState, base_url, negotiate, percent_decode, read_form, resource_type, send};
use crate::error::ApiError;
use crate::fhir::subset::Subset;
use crate::json::write_string;
use crate::search::query::{Summary, Total};
use crate::search::run::Searcher;
use crate::search::{plan, query};
use crate::service::ResourceVersion;
use crate::store::DEFAULT_TENANT;
use hearth_store::search::{Condition, Cursor};

/// The service-level search runner for this request's tenant.
fn searcher(state: &AppState) -> Searcher<'_> {
    state.service.searcher(DEFAULT_TENANT)
}

/// The `name=value` pairs of a query string, decoded.
pub(super) fn pairs(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn strict(req: &HttpRequest) -> bool {
    req.headers()
        .get_all("prefer")
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split([',', ';'])
                .any(|p| p.trim().eq_ignore_ascii_case("handling=strict"))
        })
}

pub(super) fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'-'
            | b'.'
            | b'_'
            | b'~'
            | b':'
            | b'|'
            | b','
            | b'/' => out.push(char::from(b)),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Parses the criteria of a search of type `t`, resolves what they name on
/// this server (value sets, code systems, lists), and refuses unknown
/// parameters under `Prefer: handling=strict`.
async fn parse_request(
    req: &HttpRequest,
    t: &str,
    criteria: &[(String, String)],
    state: &AppState,
) -> Result<query::SearchRequest, ApiError> {
    let mut parsed = query::parse(t, criteria)?;
    if strict(req) && !parsed.ignored.is_empty() {
        return Err(ApiError::invalid(format!(
            "unknown search parameters: {}",
            parsed.ignored.join(", ")
        )));
    }
    searcher(state).resolve(&mut parsed).await?;
    Ok(parsed)
}

/// A search sorted in memory (`plan::MemorySort`): every match (refused as
/// too costly beyond `fhir.max_sorted_in_memory`), sorted by values from the
/// resources; returns how many matched and up to `count + 1` of them after
/// `after` in the direction it reads (backward: nearest first), each with its
/// position.
async fn sorted_in_memory(
    state: &AppState,
    q: &hearth_store::search::SearchQuery,
    checks: &[plan::Recheck],
    sort: &plan::MemorySort,
    after: Option<&Cursor>,
    count: u32,
) -> Result<(u64, Vec<(ResourceVersion, Cursor)>), ApiError> {
    let all = searcher(state).search_checked(q, checks).await?;
    let max = state.max_sorted_in_memory as usize;
    if all.len() > max {
        return Err(ApiError::new(
            crate::error::ErrorKind::TooCostly,
            format!(
                "this _sort is done on the server's copy of the values and is limited to \
                 searches matching at most {max} resources (fhir.max_sorted_in_memory); \
                 narrow the search"
            ),
        ));
    }
    let mut keyed = Vec::with_capacity(all.len());
    for (r, _) in all {
        let json = crate::json::parse(&r.body)
            .map_err(|_| ApiError::internal(format!("a stored {} is not JSON", r.res_type)))?;
        let cursor = Cursor {
            keys: sort.keys(&json, r.last_updated),
            id: r.id.clone(),
            backward: false,
        };
        keyed.push((r, cursor));
    }
    let order = |a: &Cursor, b: &Cursor| sort.compare((&a.keys, &a.id), (&b.keys, &b.id));
    keyed.sort_by(|(_, a), (_, b)| order(a, b));
    let total = keyed.len() as u64;
    let want = count as usize + 1;
    let page = match after {
        Some(p) if p.backward => {
            let mut before: Vec<_> = keyed
                .into_iter()
                .filter(|(_, c)| order(c, p).is_lt())
                .collect();
            let from = before.len().saturating_sub(want);
            let mut page = before.split_off(from);
            page.reverse();
            page
        }
        Some(p) => keyed
            .into_iter()
            .filter(|(_, c)| order(c, p).is_gt())
            .take(want)
            .collect(),
        None => keyed.into_iter().take(want).collect(),
    };
    Ok((total, page))
}

/// A resource type named in `_type` (400, not 404, when it is not one).
fn type_parameter(t: &str) -> Result<String, ApiError> {
    resource_type(t)
        .map(str::to_owned)
        .map_err(|_| ApiError::invalid(format!("_type: {t} is not an R4 resource type")))
}

/// The URL of a page: `path` under the base (empty: the base itself), the kept
/// parameters (already encoded), `_count` and the position.
fn page_link(base: &str, path: &str, kept: &[String], count: u32, page: Option<&str>) -> String {
    let mut url = if path.is_empty() {
        format!("{base}?")
    } else {
        format!("{base}/{path}?")
    };
    for p in kept {
        url.push_str(p);
        url.push('&');
    }
    url.push_str(&format!("_count={count}"));
    if let Some(p) = page {
        url.push_str("&_page=");
        url.push_str(&encode(p));
    }
    url
}

/// The `self`, `next` and `previous` links of a page, from the positions of
/// each (`self` is always there, without a position on the first page).
fn page_links(
    base: &str,
    path: &str,
    kept: &[String],
    count: u32,
    [this, next, previous]: [Option<String>; 3],
) -> Vec<(&'static str, String)> {
    let mut links = vec![("self", page_link(base, path, kept, count, this.as_deref()))];
    for (rel, position) in [("next", next), ("previous", previous)] {
        if let Some(p) = position {
            links.push((rel, page_link(base, path, kept, count, Some(&p))));
        }
    }
    links
}

/// `GET [base]?_type=A,B&…` and `POST [base]/_search` (R4 3.1.1.2): the
/// parameters apply to each type (all types without `_type`), results come by
/// type, then id, a page at a time. Includes and `_sort` are not supported here.
pub async fn system(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let all = pairs(req.query_string());
    run_system(req, all, &state).await
}

pub async fn system_post(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let body = form_body(&req, payload, &state).await?;
    let mut all = pairs(req.query_string());
    all.extend(pairs(&body));
    run_system(req, all, &state).await
}

async fn run_system(
    req: HttpRequest,
    all: Vec<(String, String)>,
    state: &AppState,
) -> Result<HttpResponse, ApiError> {
    let format = negotiate(&req)?;
    let mut types: Vec<String> = Vec::new();
    let mut page = None;
    let mut criteria = Vec::new();
    for (k, v) in all {
        match k.as_str() {
            "_type" => {
                for t in v.split(',') {
                    types.push(type_parameter(t)?);
                }
            }
            "_page" => {
                page = Some(
                    Cursor::decode(&v)
                        .filter(|c| c.keys.len() == 1)
                        .ok_or_else(|| ApiError::invalid("_page is not a valid page position"))?,
                );
            }
            "_sort" | "_include" | "_revinclude" => {
                return Err(ApiError::new(
                    crate::error::ErrorKind::NotSupported,
                    format!("{k} on a search across types is not supported by this server yet"),
                ));
            }
            _ => criteria.push((k, v)),
        }
    }
    if types.is_empty() {
        types = crate::fhir::model::r4()
            .resource_types()
            .iter()
            .map(|t| (*t).to_owned())
            .collect();
    }
    types.sort();
    types.dedup();
    let (after_type, after_id) = match &page {
        Some(c) => (
            String::from_utf8_lossy(&c.keys[0]).into_owned(),
            c.id.clone(),
        ),
        None => (String::new(), String::new()),
    };
    let mut parsed_all = Vec::new();
    for t in &types {
        let parsed = parse_request(&req, t, &criteria, state).await?;
        parsed_all.push(parsed);
    }
    let Some(first) = parsed_all.first() else {
        return Err(ApiError::invalid("_type names no resource type"));
    };
    let count = first
        .count
        .unwrap_or(state.default_search_count)
        .min(state.max_page_size);
    let (only_count, want_total) = (
        first.summary == Some(Summary::Count),
        first.total != Total::None,
    );
    let hasher = |input: &[u8]| state.service.search_hash(DEFAULT_TENANT, input);
    let mut total = (only_count || want_total).then_some(0u64);
    if let Some(n) = total.as_mut() {
        for parsed in &parsed_all {
            let mut q = plan::store_query(parsed, None, 1, &hasher)?;
            q.drive_below = state.search_drive_below;
            *n += searcher(state)
                .count_checked(&q, &plan::rechecks(parsed)?)
                .await?;
        }
    }
    // The types in reading order from the position's on (backward: down from
    // it, each read from its end, nearest first), up to one more than a page.
    let backward = page.as_ref().is_some_and(|c| c.backward);
    let mut hits: Vec<(ResourceVersion, String)> = Vec::new();
    let in_order: Vec<&query::SearchRequest> = if backward {
        parsed_all.iter().rev().collect()
    } else {
        parsed_all.iter().collect()
    };
    for parsed in in_order {
        let t = parsed.resource_type.as_str();
        let passed = if backward {
            t > after_type.as_str()
        } else {
            t < after_type.as_str()
        };
        if only_count || passed || hits.len() > count as usize {
            continue;
        }
        let after = if t == after_type {
            Some(Cursor {
                keys: Vec::new(),
                id: after_id.clone(),
                backward,
            })
        } else {
            backward.then(Cursor::end)
        };
        let room = count as usize + 1 - hits.len();
        let mut q = plan::store_query(
            parsed,
            after,
            u32::try_from(room).unwrap_or(u32::MAX),
            &hasher,
        )?;
        q.drive_below = state.search_drive_below;
        let rows = searcher(state)
            .search_checked(&q, &plan::rechecks(parsed)?)
            .await?;
        hits.extend(rows.into_iter().map(|(r, _)| (r, t.to_owned())));
    }
    let more = hits.len() > count as usize;
    hits.truncate(count as usize);
    if backward {
        hits.reverse();
    }
    let position = |(r, t): &(ResourceVersion, String), backward| {
        Cursor {
            keys: vec![t.as_bytes().to_vec()],
            id: r.id.clone(),
            backward,
        }
        .encode()
    };
    let (next, previous) = if backward {
        // After the last result shown; with none, everything from the start.
        (
            Some(hits.last().map_or_else(
                || Cursor::before_every_type().encode(),
                |h| position(h, false),
            )),
            hits.first().filter(|_| more).map(|h| position(h, true)),
        )
    } else {
        (
            hits.last().filter(|_| more).map(|h| position(h, false)),
            hits.first()
                .filter(|_| page.is_some())
                .map(|h| position(h, true)),
        )
    };
    let mut found: Vec<ResourceVersion> = hits.into_iter().map(|(r, _)| r).collect();
    if let Some(how) = subset(first) {
        for r in &mut found {
            r.body = crate::fhir::subset::apply(&r.body, &r.res_type, &how)?;
        }
    }
    let base = base_url(&req, state);
    let mut kept: Vec<String> = criteria
        .iter()
        .filter(|(k, _)| {
            !first.ignored.contains(k) && k != "_count" && k != "_format" && k != "_pretty"
        })
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect();
    if !types.is_empty() && types.len() < crate::fhir::model::r4().resource_types().len() {
        kept.insert(0, format!("_type={}", encode(&types.join(","))));
    }
    let self_page = page.as_ref().map(Cursor::encode);
    let links = page_links(&base, "", &kept, count, [self_page, next, previous]);
    Ok(send(
        HttpResponse::build(StatusCode::OK),
        format,
        bundle(&base, &links, total, &found, &[])?,
    ))
}

/// Runs a search of type `t`; `within` restricts it (a compartment) and `path`
/// is what the links repeat (`Observation`, `Patient/1/Observation`).
/// A caller limited to some patients' compartments (a compartment-limited
/// permission, a `patient/` scope) searches only there: the limit is a
/// condition of the query, so pages are full and totals count only what the
/// caller may see (`check_resource` still runs on what is returned).
fn narrowed_to_patients(req: &HttpRequest, t: &str) -> Option<Condition> {
    use actix_web::HttpMessage;
    let ext = req.extensions();
    let access = ext.get::<super::Access>()?;
    let patients = access.decision.narrowing()?.patients_for(t)?;
    let ids: Vec<String> = patients.into_iter().collect();
    Some(if t == "Patient" {
        Condition::Id(ids)
    } else {
        Condition::InCompartment {
            compartment: "Patient".to_owned(),
            ids: Some(ids),
        }
    })
}

async fn run(
    req: HttpRequest,
    t: &str,
    path: &str,
    within: Option<Condition>,
    all: Vec<(String, String)>,
    state: &AppState,
) -> Result<HttpResponse, ApiError> {
    let format = negotiate(&req)?;
    let page = all
        .iter()
        .find(|(k, _)| k == "_page")
        .map(|(_, v)| v.clone());
    let criteria: Vec<(String, String)> = all.into_iter().filter(|(k, _)| k != "_page").collect();
    let parsed = parse_request(&req, t, &criteria, state).await?;
    let count = parsed
        .count
        .unwrap_or(state.default_search_count)
        .min(state.max_page_size);
    let memory = plan::memory_sort(&parsed)?;
    // Positions of a sort done in memory hold resource values: sealed.
    let after = match &page {
        None => None,
        Some(p) => {
            let text = match memory {
                Some(_) => state.service.open_page(DEFAULT_TENANT, p),
                None => Some(p.clone()),
            };
            Some(
                text.as_deref()
                    .and_then(Cursor::decode)
                    .ok_or_else(|| ApiError::invalid("_page is not a valid page position"))?,
            )
        }
    };
    let keys = memory.as_ref().map(plan::MemorySort::key_count);
    let (store_after, limit) = match memory {
        Some(_) => (None, state.max_sorted_in_memory.saturating_add(1)),
        None => (after.clone(), count + 1),
    };
    let mut q = plan::store_query(&parsed, store_after, limit, &|input| {
        state.service.search_hash(DEFAULT_TENANT, input)
    })?;
    // A position must come from a page of the same ordering.
    if let Some(after) = &after
        && after.keys.len() != keys.unwrap_or(q.sort.len())
    {
        return Err(ApiError::invalid("_page does not belong to this search"));
    }
    q.conditions.extend(within);
    q.conditions.extend(narrowed_to_patients(&req, t));
    q.drive_below = state.search_drive_below;
    let checks = plan::rechecks(&parsed)?;
    let only_count = parsed.summary == Some(Summary::Count);
    let (total, mut hits) = match &memory {
        Some(m) if !only_count => {
            let (total, hits) =
                sorted_in_memory(state, &q, &checks, m, after.as_ref(), count).await?;
            ((parsed.total != Total::None).then_some(total), hits)
        }
        _ => {
            let total = if only_count || parsed.total != Total::None {
                Some(searcher(state).count_checked(&q, &checks).await?)
            } else {
                None
            };
            let hits = if only_count {
                Vec::new()
            } else {
                searcher(state).search_checked(&q, &checks).await?
            };
            (total, hits)
        }
    };
    // One more row than shown says whether there is more in the direction read.
    let more = hits.len() > count as usize;
    hits.truncate(count as usize);
    let backward = after.as_ref().is_some_and(|c| c.backward);
    if backward {
        hits.reverse();
    }
    let link = |c: &Cursor, backward: bool| -> Result<String, ApiError> {
        let text = c.toward(backward).encode();
        match memory {
            Some(_) => state.service.seal_page(DEFAULT_TENANT, &text),
            None => Ok(text),
        }
    };
    let (next, previous) = if backward {
        (
            hits.last().map(|(_, c)| link(c, false)).transpose()?,
            hits.first()
                .filter(|_| more)
                .map(|(_, c)| link(c, true))
                .transpose()?,
        )
    } else {
        (
            hits.last()
                .filter(|_| more)
                .map(|(_, c)| link(c, false))
                .transpose()?,
            hits.first()
                .filter(|_| after.is_some())
                .map(|(_, c)| link(c, true))
                .transpose()?,
        )
    };
    let mut found: Vec<ResourceVersion> = hits.into_iter().map(|(r, _)| r).collect();
    let included = if only_count {
        Vec::new()
    } else {
        includes(&parsed, &found, state).await?
    };
    // Subsets come last: includes follow references the subset may drop.
    if let Some(how) = subset(&parsed) {
        for r in &mut found {
            r.body = crate::fhir::subset::apply(&r.body, &r.res_type, &how)?;
        }
    }
    let base = base_url(&req, state);
    let kept: Vec<String> = criteria
        .iter()
        .filter(|(k, _)| {
            !parsed.ignored.contains(k) && k != "_count" && k != "_format" && k != "_pretty"
        })
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect();
    let links = page_links(&base, path, &kept, count, [page, next, previous]);
    Ok(send(
        HttpResponse::build(StatusCode::OK),
        format,
        bundle(&base, &links, total, &found, &included)?,
    ))
}

fn bundle(
    base: &str,
    links: &[(&str, String)],
    total: Option<u64>,
    found: &[ResourceVersion],
    included: &[ResourceVersion],
) -> Result<Vec<u8>, ApiError> {
    let entries: Vec<(&ResourceVersion, &str)> = found
        .iter()
        .map(|r| (r, "match"))
        .chain(included.iter().map(|r| (r, "include")))
        .collect();
    super::write_bundle("searchset", links, total, entries.len(), |i, out| {
        let (r, mode) = entries[i];
        out.extend_from_slice(b"{\"fullUrl\":");
        write_string(&format!("{base}/{}/{}", r.res_type, r.id), out);
        out.extend_from_slice(b",\"resource\":");
        out.extend_from_slice(&r.body);
        out.extend_from_slice(b",\"search\":{\"mode\":");
        write_string(mode, out);
        out.extend_from_slice(b"}}");
    })
}

pub async fn get(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let t = resource_type(&path)?;
    let all = pairs(req.query_string());
    run(req, t, t, None, all, &state).await
}

pub async fn post(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let t = resource_type(&path)?;
    let body = form_body(&req, payload, &state).await?;
    let mut all = pairs(req.query_string());
    all.extend(pairs(&body));
    run(req, t, t, None, all, &state).await
}

/// The form body of a `_search` POST (415 for any other content type).
async fn form_body(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> Result<String, ApiError> {
    let is_form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return Err(ApiError::new(
            crate::error::ErrorKind::UnsupportedMediaType,
            "_search takes an application/x-www-form-urlencoded body",
        ));
    }
    read_form(payload, state).await
}

/// Compartment search (R4 3.1.1.3.2): `GET [base]/Patient/[id]/[type]?…` finds the
/// resources of `type` that the compartment definition links to that patient.
pub async fn compartment(
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (comp, id, t) = path.into_inner();
    let (comp, id, t) = (
        resource_type(&comp)?,
        super::resource_id(&id)?,
        resource_type(&t)?,
    );
    let params = crate::fhir::search_params::r4().compartment_params(comp, t);
    if params.is_empty() {
        return Err(ApiError::not_found(format!(
            "{t} is not in the {comp} compartment"
        )));
    }
    let links: Vec<Condition> = params
        .iter()
        .map(|p| match *p {
            "{def}" => Condition::Id(vec![id.to_owned()]),
            p => Condition::Reference {
                param: p.to_owned(),
                any_of: vec![(Some(comp.to_owned()), id.to_owned())],
            },
        })
        .collect();
    let all = pairs(req.query_string());
    let path = format!("{comp}/{id}/{t}");
    run(req, t, &path, Some(Condition::AnyOf(links)), all, &state).await
}

/// `GET [base]/Patient/[id]/$everything` (R4 Patient-everything): the patient,
/// then every live resource of its compartment in (type, id) order, a page at a
/// time. `_since` keeps versions updated at or after an instant, `_type` limits
/// the types (comma-separated), `_count` the page size.
pub async fn everything(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let format = negotiate(&req)?;
    let id = super::resource_id(&path)?.to_owned();
    let all = pairs(req.query_string());
    let (mut since, mut types, mut count, mut page) = (None, Vec::new(), None, None);
    let mut kept = Vec::new();
    for (k, v) in &all {
        match k.as_str() {
            "_since" => {
                since = Some(crate::time::parse_instant(v).ok_or_else(|| {
                    ApiError::invalid("_since must be an instant such as 2024-01-01T00:00:00Z")
                })?);
            }
            "_type" => {
                for t in v.split(',') {
                    types.push(type_parameter(t)?);
                }
            }
            "_count" => {
                count = Some(
                    v.parse::<u32>()
                        .map_err(|_| ApiError::invalid("_count must be a non-negative integer"))?,
                );
            }
            "_page" => {
                page = Some(
                    Cursor::decode(v)
                        .filter(|c| c.keys.len() == 1)
                        .ok_or_else(|| ApiError::invalid("_page is not a valid page position"))?,
                );
                continue;
            }
            "_format" | "_pretty" => continue,
            _ => {
                if strict(&req) {
                    return Err(ApiError::invalid(format!(
                        "unknown $everything parameter: {k}"
                    )));
                }
                continue;
            }
        }
        if k != "_count" {
            kept.push(format!("{}={}", encode(k), encode(v)));
        }
    }
    let count = count
        .unwrap_or(state.default_search_count)
        .clamp(1, state.max_page_size);
    // The patient itself comes first, before every member (404/410 when it
    // is not there); the position before the first member is `start`.
    let start = Cursor::before_every_type();
    let wanted = types.is_empty() || types.iter().any(|t| t == "Patient");
    let patient = async {
        let patient = state.service.read(DEFAULT_TENANT, "Patient", &id).await?;
        Ok::<_, ApiError>(
            (wanted && since.is_none_or(|s| patient.last_updated >= s)).then_some(patient),
        )
    };
    let members = |limit: u32| hearth_store::search::CompartmentQuery {
        compartment: "Patient".to_owned(),
        id: id.clone(),
        types: types.clone(),
        since,
        after: page.clone(),
        limit,
    };
    let backward = page.as_ref().is_some_and(|c| c.backward);
    let mut found = Vec::new();
    let (next, previous);
    if backward {
        // The members before the position, nearest first; the patient opens
        // the page when the read reaches the start and there is room.
        let q = members(count + 1);
        let mut hits = state.service.compartment_page(DEFAULT_TENANT, &q).await?;
        let more = hits.len() > count as usize;
        hits.truncate(count as usize);
        hits.reverse();
        let mut patient_left = false;
        if !more && let Some(p) = patient.await? {
            if hits.len() < count as usize {
                found.push(p);
            } else {
                patient_left = true;
            }
        }
        previous = hits
            .first()
            .filter(|_| more || patient_left)
            .map(|(_, c)| c.toward(true).encode());
        next = Some(
            hits.last()
                .map_or(&start, |(_, c)| c)
                .toward(false)
                .encode(),
        );
        found.extend(hits.into_iter().map(|(r, _)| r));
    } else {
        if page.is_none() {
            found.extend(patient.await?);
        }
        let q = members(count + 1 - u32::try_from(found.len()).unwrap_or(0));
        let mut hits = state.service.compartment_page(DEFAULT_TENANT, &q).await?;
        let room = count as usize - found.len();
        next = if hits.len() > room {
            hits.truncate(room);
            // After the last member shown, or (the patient alone filled the
            // page) before the first.
            Some(hits.last().map_or(&start, |(_, c)| c).encode())
        } else {
            None
        };
        // Every page after the first has one before it: the results before
        // its first member.
        previous = hits
            .first()
            .filter(|_| page.is_some())
            .map(|(_, c)| c.toward(true).encode());
        found.extend(hits.into_iter().map(|(r, _)| r));
    }
    let base = base_url(&req, &state);
    let path = format!("Patient/{id}/$everything");
    let self_page = page.as_ref().map(Cursor::encode);
    let links = page_links(&base, &path, &kept, count, [self_page, next, previous]);
    Ok(send(
        HttpResponse::build(StatusCode::OK),
        format,
        bundle(&base, &links, None, &found, &[])?,
    ))
}

/// The part of each match a search returns (`_summary` wins over `_elements`).
fn subset(parsed: &query::SearchRequest) -> Option<Subset> {
    match parsed.summary {
        Some(Summary::True) => Some(Subset::Summary),
        Some(Summary::Text) => Some(Subset::Text),
        Some(Summary::Data) => Some(Subset::Data),
        Some(Summary::False) => None,
        Some(Summary::Count) | None if !parsed.elements.is_empty() => {
            Some(Subset::Elements(parsed.elements.clone()))
        }
        Some(Summary::Count) | None => None,
    }
}

/// The reference parameters an include names (`*`: all of the source type).
fn reference_params(inc: &query::Include) -> Vec<String> {
    match &inc.param {
        Some(p) => vec![p.clone()],
        None => crate::fhir::search_params::r4()
            .for_type(&inc.source_type)
            .filter(|p| p.kind == crate::fhir::search_params::ParamType::Reference)
            .map(|p| p.code.to_owned())
            .collect(),
    }
}

/// At most this many rounds of `:iterate` after the first.
const MAX_ITERATE_ROUNDS: usize = 4;

/// `_include` and `_revinclude`: the resources the matches refer to, and the
/// resources that refer to the matches; those marked `:iterate` apply again to
/// what they added, round after round, until nothing new comes (or a bound).
async fn includes(
    parsed: &query::SearchRequest,
    found: &[ResourceVersion],
    state: &AppState,
) -> Result<Vec<ResourceVersion>, ApiError> {
    let mut out: Vec<ResourceVersion> = Vec::new();
    let all_inc: Vec<&query::Include> = parsed.include.iter().collect();
    let all_rev: Vec<&query::Include> = parsed.revinclude.iter().collect();
    let added = include_round(&all_inc, &all_rev, found, found, &out, state).await?;
    let mut frontier_start = out.len();
    out.extend(added);
    let iter_inc: Vec<&query::Include> = parsed.include.iter().filter(|i| i.iterate).collect();
    let iter_rev: Vec<&query::Include> = parsed.revinclude.iter().filter(|i| i.iterate).collect();
    for _ in 0..MAX_ITERATE_ROUNDS {
        if (iter_inc.is_empty() && iter_rev.is_empty()) || frontier_start == out.len() {
            break;
        }
        let sources = out[frontier_start..].to_vec();
        let added = include_round(&iter_inc, &iter_rev, &sources, found, &out, state).await?;
        frontier_start = out.len();
        out.extend(added);
        if out.len() >= state.max_page_size as usize {
            break;
        }
    }
    Ok(out)
}

/// One round of includes from `sources`: the resources not yet in `found` or
/// `out` that they refer to (`inc`) or that refer to them (`rev`).
async fn include_round(
    inc: &[&query::Include],
    rev: &[&query::Include],
    sources: &[ResourceVersion],
    found: &[ResourceVersion],
    out: &[ResourceVersion],
    state: &AppState,
) -> Result<Vec<ResourceVersion>, ApiError> {
    let mut added: Vec<ResourceVersion> = Vec::new();
    let seen = |added: &[ResourceVersion], t: &str, id: &str| {
        found
            .iter()
            .chain(out.iter())
            .chain(added.iter())
            .any(|r| r.res_type == t && r.id == id)
    };
    for inc in inc {
        let params = reference_params(inc);
        let mut targets: Vec<(String, String)> = Vec::new();
        for r in sources.iter().filter(|r| r.res_type == inc.source_type) {
            let Ok(json) = crate::json::parse(&r.body) else {
                continue;
            };
            for e in crate::search::extract::extract(&json) {
                if !params.iter().any(|p| p == e.param) {
                    continue;
                }
                if let crate::search::extract::IndexValue::Reference {
                    target_type: Some(tt),
                    target_id: Some(tid),
                    ..
                } = e.value
                    && inc.target_type.as_ref().is_none_or(|want| *want == tt)
                    && !targets.contains(&(tt.clone(), tid.clone()))
                {
                    targets.push((tt, tid));
                }
            }
        }
        for (tt, tid) in targets {
            if seen(&added, &tt, &tid) {
                continue;
            }
            match state.service.read(DEFAULT_TENANT, &tt, &tid).await {
                Ok(rv) => added.push(rv),
                Err(e)
                    if matches!(
                        e.kind,
                        crate::error::ErrorKind::NotFound | crate::error::ErrorKind::Gone
                    ) => {}
                Err(e) => return Err(e),
            }
        }
    }
    for inc in rev {
        let targets: Vec<(Option<String>, String)> = sources
            .iter()
            .map(|r| (Some(r.res_type.clone()), r.id.clone()))
            .collect();
        if targets.is_empty() {
            continue;
        }
        let links = reference_params(inc)
            .into_iter()
            .map(|param| Condition::Reference {
                param,
                any_of: targets.clone(),
            })
            .collect();
        let q = hearth_store::search::SearchQuery {
            res_type: inc.source_type.clone(),
            conditions: vec![Condition::AnyOf(links)],
            sort: Vec::new(),
            after: None,
            limit: state.max_page_size,
            drive_below: state.search_drive_below,
        };
        for (rv, _) in state.service.search(DEFAULT_TENANT, &q).await? {
            if !seen(&added, &rv.res_type, &rv.id) {
                added.push(rv);
            }
        }
    }
    Ok(added)
}
