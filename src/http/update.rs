//! `update` (R4 3.1.0.6): `PUT [base]/[type]/[id]`, create-on-update with a client
//! id, `If-Match` for version-aware updates (412 on mismatch).

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};

use super::{
    AppState, negotiate, parse_etag, read_body, resource_id, resource_type, write_response,
};
use crate::error::ApiError;
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
    let if_match = match req.headers().get(header::IF_MATCH) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(parse_etag)
                .ok_or_else(|| ApiError::invalid("If-Match must be an ETag such as W/\"3\""))?,
        ),
    };
    let body = read_body(&req, payload, &state).await?;
    let (rv, created) = state
        .service
        .update(DEFAULT_TENANT, t, id, &body, if_match)
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    write_response(&req, &state, status, rv)
}
