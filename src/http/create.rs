//! `create` (R4 3.1.0.8): `POST [base]/[type]`, server-assigned id, 201 + Location.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};

use super::{AppState, negotiate, read_body, resource_type, write_response};
use crate::error::ApiError;
use crate::store::DEFAULT_TENANT;

pub async fn create(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let t = resource_type(&path)?;
    negotiate(&req)?;
    let body = read_body(&req, payload, &state).await?;
    let rv = state.service.create(DEFAULT_TENANT, t, &body).await?;
    write_response(&req, &state, StatusCode::CREATED, rv)
}
