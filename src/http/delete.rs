//! `delete` (R4 3.1.0.7): afterwards `read` answers 410 Gone; deleting a deleted
//! resource changes nothing and succeeds. Conditional delete
//! `DELETE [base]/[type]?[search parameters]` (R4 3.1.0.7.1) deletes the match;
//! several matches answer 412 unless `fhir.conditional_delete_multiple`.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};

use super::{AppState, etag, negotiate, resource_id, resource_type, send};
use crate::error::{ApiError, OutcomeIssue, operation_outcome};
use crate::service::DeleteResult;
use crate::store::DEFAULT_TENANT;

pub async fn delete(
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (t, id) = path.into_inner();
    let (t, id) = (resource_type(&t)?, resource_id(&id)?);
    match state.service.delete(DEFAULT_TENANT, t, id).await? {
        DeleteResult::Deleted { version } => Ok(HttpResponse::NoContent()
            .insert_header((header::ETAG, etag(version)))
            .finish()),
        DeleteResult::AlreadyDeleted => Ok(HttpResponse::NoContent().finish()),
    }
}

/// `DELETE [base]/[type]?[search parameters]`: 200 with an OperationOutcome
/// saying how many resources were deleted (none when nothing matched).
pub async fn conditional(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let t = resource_type(&path)?;
    let format = negotiate(&req)?;
    let criteria: Vec<(String, String)> = super::search::pairs(req.query_string())
        .into_iter()
        .filter(|(k, _)| k != "_format" && k != "_pretty")
        .collect();
    if criteria.is_empty() {
        return Err(ApiError::invalid(
            "a delete names the resource: DELETE [type]/[id], or DELETE [type]?[search parameters]",
        ));
    }
    let done = state
        .service
        .conditional_delete(
            DEFAULT_TENANT,
            t,
            &criteria,
            state.conditional_delete_multiple,
            state.max_conditional_deletes,
        )
        .await?;
    let message = match done.deleted {
        0 => format!("no {t} matched; nothing was deleted"),
        1 => format!("deleted 1 {t}"),
        n => format!("deleted {n} {t} resources"),
    };
    let oo = operation_outcome(&[OutcomeIssue::information(message)]);
    Ok(send(
        HttpResponse::build(StatusCode::OK),
        format,
        oo.to_bytes(),
    ))
}
