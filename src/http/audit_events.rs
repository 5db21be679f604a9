//! `GET [base]/AuditEvent` and `GET [base]/AuditEvent/[id]`: the audit log as
//! FHIR `AuditEvent`s (IHE BALP shape), for callers with the `admin:audit`
//! permission (the guard classifies every `AuditEvent` request as audit
//! administration). Reading the log is itself a request, so it is audited too.
//! The log is written by the server only: other methods answer 405.
//!
//! Search parameters: `date` (with `ge`/`gt`/`le`/`lt`/`eq` and any FHIR date
//! precision), `patient`, `entity` (a reference), `altid` (user name or client
//! id), `outcome`, `subtype`, `action`, `_count`; results are in the order they
//! were recorded, with `next` links.

use actix_web::{HttpRequest, HttpResponse, web};
use hearth_store::Store;

use super::{AppState, base_url, negotiate, send};
use crate::error::ApiError;
use crate::json::{Json, Object};
use crate::store::DEFAULT_TENANT;

const DEFAULT_COUNT: usize = 20;
const MAX_COUNT: usize = 1000;
/// Rows read per store query while searching.
const SCAN: i64 = 1000;

pub async fn read(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let format = negotiate(&req)?;
    let id = path.into_inner();
    let seq: i64 = id
        .parse()
        .ok()
        .filter(|s| *s > 0)
        .ok_or_else(|| ApiError::not_found(format!("no AuditEvent {id}")))?;
    let rows = state
        .service
        .store()
        .audit_events(DEFAULT_TENANT, seq - 1, 1)
        .await?;
    let row = rows
        .into_iter()
        .find(|r| r.seq == seq)
        .ok_or_else(|| ApiError::not_found(format!("no AuditEvent {id}")))?;
    Ok(send(
        HttpResponse::Ok(),
        format,
        crate::audit::to_fhir(&row).to_bytes(),
    ))
}

/// One `date` condition: a prefix and the range of instants the value covers.
struct DateCondition {
    prefix: String,
    low: i64,
    high: i64,
}

impl DateCondition {
    fn parse(value: &str) -> Result<DateCondition, ApiError> {
        let (prefix, rest) = match value.get(..2) {
            Some(p @ ("eq" | "ne" | "gt" | "ge" | "lt" | "le")) => (p.to_owned(), &value[2..]),
            _ => ("eq".to_owned(), value),
        };
        let (low, high) = crate::search::extract::date_range(rest)
            .ok_or_else(|| ApiError::invalid(format!("date: {rest} is not a FHIR date")))?;
        Ok(DateCondition { prefix, low, high })
    }

    fn matches(&self, t: i64) -> bool {
        match self.prefix.as_str() {
            "gt" => t > self.high,
            "ge" => t >= self.low,
            "lt" => t < self.low,
            "le" => t <= self.high,
            "ne" => t < self.low || t > self.high,
            _ => t >= self.low && t <= self.high,
        }
    }
}

pub async fn search(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let format = negotiate(&req)?;
    let mut count = DEFAULT_COUNT;
    let mut after = 0i64;
    let mut dates = Vec::new();
    let mut wanted: Vec<(String, String)> = Vec::new();
    let mut kept: Vec<(String, String)> = Vec::new();
    for (k, v) in super::search::pairs(req.query_string()) {
        match k.as_str() {
            "_count" => {
                count = v
                    .parse::<usize>()
                    .map_err(|_| ApiError::invalid("_count must be a number"))?
                    .clamp(1, MAX_COUNT);
                kept.push((k, v));
            }
            "_after" => {
                after = v
                    .parse()
                    .map_err(|_| ApiError::invalid("_after must be a number"))?;
            }
            "date" => {
                dates.push(DateCondition::parse(&v)?);
                kept.push((k, v));
            }
            "patient" | "entity" | "altid" | "outcome" | "subtype" | "action" => {
                wanted.push((k.clone(), v.clone()));
                kept.push((k, v));
            }
            _ => {}
        }
    }
    let store = state.service.store();
    let mut found = Vec::new();
    let mut cursor = after;
    let mut more = false;
    'scan: loop {
        let rows = store.audit_events(DEFAULT_TENANT, cursor, SCAN).await?;
        let full = rows.len() as i64 == SCAN;
        for row in rows {
            cursor = row.seq;
            if !dates.iter().all(|d| d.matches(row.recorded_at)) {
                continue;
            }
            let event = crate::audit::to_fhir(&row);
            if !wanted.iter().all(|(k, v)| matches(&event, &row, k, v)) {
                continue;
            }
            if found.len() == count {
                more = true;
                break 'scan;
            }
            found.push((row.seq, event));
        }
        if !full {
            break;
        }
    }
    let base = base_url(&req, &state);
    let query = |extra: Option<i64>| {
        let mut q: Vec<String> = kept
            .iter()
            .map(|(k, v)| format!("{k}={}", super::search::encode(v)))
            .collect();
        if let Some(a) = extra {
            q.push(format!("_after={a}"));
        }
        format!("{base}/AuditEvent?{}", q.join("&"))
    };
    let mut links = vec![("self", query((after > 0).then_some(after)))];
    if more && let Some((last, _)) = found.last() {
        links.push(("next", query(Some(*last))));
    }
    let out = super::write_bundle("searchset", &links, None, found.len(), |i, out| {
        let (seq, event) = &found[i];
        let mut entry = Object::default();
        entry.push("fullUrl", Json::string(format!("{base}/AuditEvent/{seq}")));
        entry.push("resource", event.clone());
        let mut search = Object::default();
        search.push("mode", Json::string("match"));
        entry.push("search", Json::Object(search));
        Json::Object(entry).write(out);
    })?;
    Ok(send(HttpResponse::Ok(), format, out))
}

fn matches(event: &Json, row: &hearth_store::schema::AuditEvent, k: &str, v: &str) -> bool {
    let field = |name: &str| match event {
        Json::Object(o) => o.get(name).cloned(),
        _ => None,
    };
    v.split(',').any(|v| match k {
        "patient" => row.patient.as_deref() == Some(v.trim_start_matches("Patient/")),
        // `Type/id` matches the row's resource with or without its version.
        "entity" => row
            .resource
            .as_deref()
            .is_some_and(|r| r.split("/_history/").next() == Some(v)),
        "altid" => row.user_name.as_deref() == Some(v) || row.client_id.as_deref() == Some(v),
        "outcome" => field("outcome").as_ref().and_then(Json::as_str) == Some(v),
        "action" => field("action").as_ref().and_then(Json::as_str) == Some(v),
        "subtype" => {
            let code = v.rsplit('|').next().unwrap_or(v);
            matches!(field("subtype"), Some(Json::Array(items)) if items.iter().any(|c| matches!(c, Json::Object(o) if o.get("code").and_then(Json::as_str) == Some(code))))
        }
        _ => false,
    })
}
