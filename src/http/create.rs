//! `create` (R4 3.1.0.8): `POST [base]/[type]`, server-assigned id, 201 + Location.
//! With `If-None-Exist: [search parameters]` (conditional create): a match is
//! answered 200 with that resource and nothing is written; several, 412.

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
    let condition = match req.headers().get("if-none-exist") {
        None => None,
        Some(v) => {
            let text = v
                .to_str()
                .map_err(|_| ApiError::invalid("If-None-Exist must be search parameters"))?;
            // `identifier=x`, also written `Patient?identifier=x` or `?identifier=x`.
            let query = text.split_once('?').map_or(text, |(_, q)| q);
            let criteria = super::search::pairs(query);
            if criteria.is_empty() {
                return Err(ApiError::invalid(
                    "If-None-Exist must name search parameters",
                ));
            }
            Some(criteria)
        }
    };
    let body = read_body(&req, payload, &state).await?;
    let (rv, created) = match condition {
        None => (state.service.create(DEFAULT_TENANT, t, &body).await?, true),
        Some(criteria) => {
            state
                .service
                .create_unless_exists(DEFAULT_TENANT, t, &body, &criteria)
                .await?
        }
    };
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    write_response(&req, &state, status, rv)
}
