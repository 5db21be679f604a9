//! `delete` (R4 3.1.0.7): afterwards `read` answers 410 Gone; deleting a deleted
//! resource changes nothing and succeeds.

use actix_web::http::header;
use actix_web::{HttpResponse, web};

use super::{AppState, etag, resource_id, resource_type};
use crate::error::ApiError;
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
