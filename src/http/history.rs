//! `history` at instance, type and system level (R4 3.1.0.11): newest first,
//! `_since` and `_count`, keyset paging through `_page` (the position of the
//! last entry shown), so pages stay stable while writes happen.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use hearth_store::HistoryQuery;

use super::{AppState, base_url, negotiate, resource_id, resource_type, send};
use crate::error::ApiError;
use crate::json::{Json, Object, write_string};
use crate::service::{HistoryItem, Service};
use crate::store::DEFAULT_TENANT;
use crate::time::{format_instant, parse_instant};

#[derive(Debug, Default)]
struct Params {
    count: Option<u32>,
    since: Option<(String, i64)>,
    page: Option<i64>,
}

fn params(req: &HttpRequest) -> Result<Params, ApiError> {
    let mut p = Params::default();
    for pair in req.query_string().split('&').filter(|s| !s.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = super::percent_decode(v);
        match k {
            "_count" => {
                p.count = Some(
                    v.parse()
                        .map_err(|_| ApiError::invalid("_count must be a non-negative integer"))?,
                );
            }
            "_since" => {
                let t = parse_instant(&v).ok_or_else(|| {
                    ApiError::invalid("_since must be an instant such as 2024-01-01T00:00:00Z")
                })?;
                p.since = Some((v, t));
            }
            "_page" => {
                p.page = Some(
                    v.parse()
                        .map_err(|_| ApiError::invalid("_page is not a valid page position"))?,
                );
            }
            _ => {}
        }
    }
    Ok(p)
}

async fn history(
    req: HttpRequest,
    state: web::Data<AppState>,
    res_type: Option<&str>,
    id: Option<&str>,
) -> Result<HttpResponse, ApiError> {
    let format = negotiate(&req)?;
    let p = params(&req)?;
    let count = p
        .count
        .unwrap_or(state.default_page_size)
        .min(state.max_page_size);
    let query = HistoryQuery {
        scope: Service::history_scope(res_type, id),
        since: p.since.as_ref().map(|(_, t)| *t),
        before_seq: p.page,
        limit: count + 1,
    };
    let mut items = state.service.history(DEFAULT_TENANT, &query).await?;
    let next = if items.len() > count as usize {
        items.truncate(count as usize);
        items.last().map(|i| i.seq)
    } else {
        None
    };
    let base = base_url(&req, &state);
    let mut here = base.clone();
    for part in [res_type, id].into_iter().flatten() {
        here.push('/');
        here.push_str(part);
    }
    here.push_str("/_history");
    let link = |page: Option<i64>| {
        let mut url = format!("{here}?_count={count}");
        if let Some((text, _)) = &p.since {
            url.push_str("&_since=");
            url.push_str(&text.replace('+', "%2B"));
        }
        if let Some(page) = page {
            url.push_str(&format!("&_page={page}"));
        }
        url
    };
    let mut links = vec![("self", link(p.page))];
    if let Some(n) = next {
        links.push(("next", link(Some(n))));
    }
    let body = bundle(&base, &links, &items)?;
    Ok(send(HttpResponse::build(StatusCode::OK), format, body))
}

/// Writes the history Bundle around the stored bodies, which are copied as they are.
fn bundle(
    base: &str,
    links: &[(&str, String)],
    items: &[HistoryItem],
) -> Result<Vec<u8>, ApiError> {
    super::write_bundle("history", links, None, items.len(), |i, out| {
        let item = &items[i];
        out.extend_from_slice(b"{\"fullUrl\":");
        write_string(&format!("{base}/{}/{}", item.res_type, item.id), out);
        if let Some(body) = &item.body {
            out.extend_from_slice(b",\"resource\":");
            out.extend_from_slice(body);
        }
        let (method, status) = match (&item.body, item.version) {
            (None, _) => ("DELETE", "204"),
            (Some(_), 1) => ("POST", "201"),
            (Some(_), _) => ("PUT", "200"),
        };
        let url = if method == "POST" {
            item.res_type.clone()
        } else {
            format!("{}/{}", item.res_type, item.id)
        };
        let mut request = Object::default();
        request.push("method", Json::string(method));
        request.push("url", Json::string(url));
        let mut response = Object::default();
        response.push("status", Json::string(status));
        response.push("etag", Json::string(super::etag(item.version)));
        response.push(
            "lastModified",
            Json::string(format_instant(item.last_updated)),
        );
        out.extend_from_slice(b",\"request\":");
        Json::Object(request).write(out);
        out.extend_from_slice(b",\"response\":");
        Json::Object(response).write(out);
        out.push(b'}');
    })
}

pub async fn system(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    history(req, state, None, None).await
}

pub async fn type_level(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let t = resource_type(&path)?;
    history(req, state.clone(), Some(t), None).await
}

pub async fn instance(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (t, id) = path.into_inner();
    let (t, id) = (resource_type(&t)?, resource_id(&id)?);
    if !state.service.exists(DEFAULT_TENANT, t, id).await? {
        return Err(ApiError::not_found(format!("{t}/{id} is not known")));
    }
    history(req, state.clone(), Some(t), Some(id)).await
}
