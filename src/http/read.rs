//! `read` and `vread` (R4 3.1.0.3, 3.1.0.4), with conditional read:
//! `If-None-Match` and `If-Modified-Since` answer 304 when nothing changed.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, Header, IfModifiedSince};
use actix_web::{HttpRequest, HttpResponse, web};

use super::{AppState, negotiate, parse_etag, resource_id, resource_type, send, version_headers};
use crate::error::ApiError;
use crate::service::ResourceVersion;
use crate::store::DEFAULT_TENANT;

fn not_modified(req: &HttpRequest, version: i64, last_updated: i64) -> bool {
    if let Some(inm) = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
    {
        return inm
            .split(',')
            .any(|t| t.trim() == "*" || parse_etag(t) == Some(version));
    }
    if let Ok(IfModifiedSince(since)) = IfModifiedSince::parse(req) {
        let since = std::time::SystemTime::from(since);
        let modified =
            crate::time::to_system_time(last_updated - last_updated.rem_euclid(1_000_000));
        return modified <= since;
    }
    false
}

fn respond(req: &HttpRequest, rv: ResourceVersion) -> Result<HttpResponse, ApiError> {
    let format = negotiate(req)?;
    let mut builder = HttpResponse::build(StatusCode::OK);
    version_headers(&mut builder, rv.version, rv.last_updated);
    Ok(send(builder, format, rv.body))
}

pub async fn read(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (t, id) = path.into_inner();
    let (t, id) = (resource_type(&t)?, resource_id(&id)?);
    negotiate(&req)?;
    let conditional = req.headers().contains_key(header::IF_NONE_MATCH)
        || req.headers().contains_key(header::IF_MODIFIED_SINCE);
    if conditional {
        let (version, last_updated) = state.service.current_version(DEFAULT_TENANT, t, id).await?;
        if not_modified(&req, version, last_updated) {
            let mut builder = HttpResponse::build(StatusCode::NOT_MODIFIED);
            version_headers(&mut builder, version, last_updated);
            return Ok(builder.finish());
        }
    }
    let rv = state.service.read(DEFAULT_TENANT, t, id).await?;
    respond(&req, rv)
}

pub async fn vread(
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (t, id, vid) = path.into_inner();
    let (t, id) = (resource_type(&t)?, resource_id(&id)?);
    let version: i64 = vid
        .parse()
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| ApiError::invalid("the version id must be a positive integer"))?;
    let rv = state.service.vread(DEFAULT_TENANT, t, id, version).await?;
    respond(&req, rv)
}
