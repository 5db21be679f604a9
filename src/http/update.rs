//! `update` (R4 3.1.0.6): `PUT [base]/[type]/[id]`, create-on-update with a client
//! id, `If-Match` for version-aware updates (412 on mismatch); conditional
//! update `PUT [base]/[type]?[search parameters]` (R4 3.1.0.6.1); `PATCH
//! [base]/[type]/[id]` with a JSON Patch or a FHIRPath Patch (R4 3.1.0.6.2).

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};

use super::{
    AppState, negotiate, parse_etag, read_body, resource_id, resource_type, write_response,
};
use crate::error::ApiError;
use crate::service::PatchKind;
use crate::store::DEFAULT_TENANT;

pub async fn update(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (t, id) = path.into_inner();
    let (t, id) = (resource_type(&t)?, resource_id(&id)?);
    negotiate(&req)?;
    let if_match = if_match(&req)?;
    let body = read_body(&req, payload, &state).await?;
    let (rv, created) = state
        .service
        .update(DEFAULT_TENANT, t, id, &body, if_match)
        .await?;
    respond(&req, &state, rv, created)
}

/// `PUT [base]/[type]?[search parameters]`: no match creates, one match is
/// updated, several answer 412.
pub async fn conditional(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let t = resource_type(&path)?;
    negotiate(&req)?;
    let criteria = super::search::pairs(req.query_string());
    let criteria: Vec<(String, String)> = criteria
        .into_iter()
        .filter(|(k, _)| k != "_format" && k != "_pretty")
        .collect();
    if criteria.is_empty() {
        return Err(ApiError::invalid(
            "an update names the resource: PUT [type]/[id], or PUT [type]?[search parameters]",
        ));
    }
    let if_match = if_match(&req)?;
    let body = read_body(&req, payload, &state).await?;
    let (rv, created) = state
        .service
        .conditional_update(DEFAULT_TENANT, t, &body, &criteria, if_match)
        .await?;
    respond(&req, &state, rv, created)
}

/// `PATCH [base]/[type]/[id]`: `application/json-patch+json` is a JSON Patch,
/// `application/fhir+json` (or `application/json`) a FHIRPath Patch
/// (`Parameters`). The result is validated like any update.
pub async fn patch(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (t, id) = path.into_inner();
    let (t, id) = (resource_type(&t)?, resource_id(&id)?);
    negotiate(&req)?;
    let kind = match super::content_type(&req).as_deref() {
        Some("application/json-patch+json") => PatchKind::Json,
        Some("application/fhir+json" | "application/json") => PatchKind::FhirPath,
        Some(ct) if super::is_xml(ct) => PatchKind::FhirPath,
        _ => {
            return Err(ApiError::new(
                crate::error::ErrorKind::UnsupportedMediaType,
                "send a JSON Patch as application/json-patch+json, or a FHIRPath Patch \
                 (Parameters) as application/fhir+json or application/fhir+xml",
            ));
        }
    };
    let if_match = if_match(&req)?;
    let body = match super::content_type(&req).as_deref() {
        Some(ct) if super::is_xml(ct) => super::read_body(&req, payload, &state).await?,
        _ => super::read_raw_body(&req, payload, &state).await?,
    };
    let rv = state
        .service
        .patch(DEFAULT_TENANT, t, id, kind, &body, if_match)
        .await?;
    respond(&req, &state, rv, false)
}

fn if_match(req: &HttpRequest) -> Result<Option<i64>, ApiError> {
    Ok(match req.headers().get(header::IF_MATCH) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(parse_etag)
                .ok_or_else(|| ApiError::invalid("If-Match must be an ETag such as W/\"3\""))?,
        ),
    })
}

fn respond(
    req: &HttpRequest,
    state: &AppState,
    rv: crate::service::ResourceVersion,
    created: bool,
) -> Result<HttpResponse, ApiError> {
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    write_response(req, state, status, rv)
}
