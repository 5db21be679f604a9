//! Bulk Data export (Bulk Data Access IG 2.0) over HTTP: kick-off
//! (`GET [base]/$export`, `[base]/Patient/$export`, `[base]/Group/[id]/$export`
//! with `Prefer: respond-async`) answers 202 and a status URL; the status URL
//! answers 202 with `X-Progress` while the job runs, then the manifest;
//! `DELETE` on it cancels; each output file is served as NDJSON, one sealed
//! part at a time.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};

use super::{AppState, base_url, resource_id, send};
use crate::error::{ApiError, OutcomeIssue};
use crate::export::{ExportRequest, Level};
use crate::json::{Json, Object};
use crate::store::DEFAULT_TENANT;

fn respond_async(req: &HttpRequest) -> bool {
    req.headers()
        .get_all("prefer")
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split([',', ';'])
                .any(|p| p.trim().eq_ignore_ascii_case("respond-async"))
        })
}

fn kick_off_request(
    req: &HttpRequest,
    level: Level,
    state: &AppState,
) -> Result<ExportRequest, ApiError> {
    if !respond_async(req) {
        return Err(ApiError::invalid(
            "a Bulk Data export runs asynchronously: send Prefer: respond-async",
        ));
    }
    let mut request = ExportRequest {
        level,
        types: Vec::new(),
        since: None,
        type_filters: Vec::new(),
        request_url: {
            let path = req.path();
            let rel = path
                .strip_prefix(state.base_path.trim_end_matches('/'))
                .unwrap_or(path);
            let q = req.query_string();
            let sep = if q.is_empty() { "" } else { "?" };
            format!("{}{rel}{sep}{q}", base_url(req, state))
        },
    };
    for (k, v) in super::search::pairs(req.query_string()) {
        match k.as_str() {
            "_outputFormat" => {
                if !matches!(
                    v.as_str(),
                    "application/fhir+ndjson" | "application/ndjson" | "ndjson"
                ) {
                    return Err(ApiError::invalid(format!(
                        "_outputFormat {v} is not supported; this server writes application/fhir+ndjson"
                    )));
                }
            }
            "_type" => request
                .types
                .extend(v.split(',').filter(|t| !t.is_empty()).map(str::to_owned)),
            "_since" => {
                request.since = Some(crate::time::parse_instant(&v).ok_or_else(|| {
                    ApiError::invalid("_since must be an instant such as 2024-01-01T00:00:00Z")
                })?);
            }
            "_typeFilter" => {
                for f in v.split(',').filter(|f| !f.is_empty()) {
                    let (t, query) = f.split_once('?').ok_or_else(|| {
                        ApiError::invalid(format!(
                            "_typeFilter {f} must be [type]?[search parameters]"
                        ))
                    })?;
                    request
                        .type_filters
                        .push((t.to_owned(), super::search::pairs(query)));
                }
            }
            "_format" | "_pretty" => {}
            other => {
                return Err(ApiError::invalid(format!(
                    "{other} is not a parameter of $export this server supports"
                )));
            }
        }
    }
    Ok(request)
}

async fn kick_off(
    req: HttpRequest,
    level: Level,
    state: &AppState,
) -> Result<HttpResponse, ApiError> {
    let request = kick_off_request(&req, level, state)?;
    let id = state
        .service
        .start_export(DEFAULT_TENANT, request, state.export_part_bytes)
        .await?;
    Ok(HttpResponse::Accepted()
        .insert_header((
            header::CONTENT_LOCATION,
            format!("{}/$export-status/{id}", base_url(&req, state)),
        ))
        .finish())
}

pub async fn system(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    kick_off(req, Level::System, &state).await
}

pub async fn patient(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    kick_off(req, Level::Patient, &state).await
}

pub async fn group(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = resource_id(&path)?.to_owned();
    kick_off(req, Level::Group(id), &state).await
}

/// `GET [base]/$export-status/[id]`.
pub async fn status(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let job = state.service.export_status(DEFAULT_TENANT, &path).await?;
    match job.status.as_str() {
        "done" => {
            let base = base_url(&req, &state);
            let files = match crate::json::parse(job.output.as_bytes()) {
                Ok(Json::Array(files)) => files,
                _ => return Err(ApiError::internal("an export's manifest is not JSON")),
            };
            let output: Vec<Json> = files
                .into_iter()
                .filter_map(|f| match f {
                    Json::Object(o) => {
                        let t = o.get("type").and_then(Json::as_str)?.to_owned();
                        let mut entry = Object::default();
                        entry.push("type", Json::string(t.clone()));
                        entry.push(
                            "url",
                            Json::string(format!("{base}/$export-file/{}/{t}.ndjson", job.id)),
                        );
                        if let Some(n) = o.get("count") {
                            entry.push("count", n.clone());
                        }
                        Some(Json::Object(entry))
                    }
                    _ => None,
                })
                .collect();
            let mut manifest = Object::default();
            manifest.push(
                "transactionTime",
                Json::string(crate::time::format_instant(job.transaction_time)),
            );
            manifest.push("request", Json::string(job.request.clone()));
            // Files are served with the same authorization as the data.
            manifest.push("requiresAccessToken", Json::Bool(true));
            manifest.push("output", Json::Array(output));
            manifest.push("error", Json::Array(Vec::new()));
            Ok(HttpResponse::Ok()
                .insert_header((header::CONTENT_TYPE, "application/json"))
                .insert_header((header::EXPIRES, "0"))
                .body(Json::Object(manifest).to_bytes()))
        }
        "failed" => {
            let oo = crate::error::operation_outcome(&[OutcomeIssue::error(
                crate::error::IssueType::Exception,
                format!("the export failed: {}", job.error),
            )]);
            Ok(send(
                HttpResponse::build(StatusCode::INTERNAL_SERVER_ERROR),
                super::negotiate(&req)?,
                oo.to_bytes(),
            ))
        }
        _ => Ok(HttpResponse::Accepted()
            .insert_header(("X-Progress", job.progress.clone()))
            .insert_header((header::RETRY_AFTER, "2"))
            .finish()),
    }
}

/// `DELETE [base]/$export-status/[id]`: cancels, and the files go.
pub async fn cancel(
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    state.service.cancel_export(DEFAULT_TENANT, &path).await?;
    Ok(HttpResponse::Accepted().finish())
}

/// `GET [base]/$export-file/[id]/[type].ndjson`: the file, streamed part by
/// part (one part in memory at a time).
pub async fn file(
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (id, name) = path.into_inner();
    let job = state.service.export_status(DEFAULT_TENANT, &id).await?;
    let file = name
        .strip_suffix(".ndjson")
        .filter(|t| job.status == "done" && crate::fhir::model::r4().is_resource_type(t))
        .ok_or_else(|| ApiError::not_found(format!("export {id} has no file {name}")))?
        .to_owned();
    let first = state
        .service
        .export_file_part(DEFAULT_TENANT, &id, &file, 0)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("export {id} has no file {name}")))?;
    let service = state.service.clone();
    // A part that cannot be read ends the stream with an error, so the
    // client sees a broken transfer rather than a short file.
    let parts = futures_util::stream::unfold(
        (Some(Ok(first)), 1i64),
        move |(current, next): (Option<Result<Vec<u8>, ApiError>>, i64)| {
            let (service, id, file) = (service.clone(), id.clone(), file.clone());
            async move {
                let data = match current? {
                    Ok(data) => data,
                    Err(e) => {
                        tracing::error!(export = %id, error = %e, "an export file could not be read");
                        return Some((
                            Err(actix_web::error::ErrorInternalServerError(
                                "an export file could not be read",
                            )),
                            (None, next),
                        ));
                    }
                };
                let following = service
                    .export_file_part(DEFAULT_TENANT, &id, &file, next)
                    .await
                    .transpose();
                Some((Ok(web::Bytes::from(data)), (following, next + 1)))
            }
        },
    );
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "application/fhir+ndjson"))
        .streaming(parts))
}
