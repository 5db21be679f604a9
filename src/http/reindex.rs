//! `GET [base]/$reindex`: the reindex jobs and where each stands, as a
//! `Parameters` resource (one `job` per job: name, reason, done, processed,
//! and the last resource done).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};

use super::{AppState, negotiate, send};
use crate::error::ApiError;
use crate::json::{Json, Object};

fn part(name: &str, kind: &str, value: Json) -> Json {
    let mut p = Object::default();
    p.push("name", Json::string(name));
    p.push(kind, value);
    Json::Object(p)
}

pub async fn status(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let format = negotiate(&req)?;
    let jobs = state.service.reindex_jobs().await?;
    let params = jobs
        .into_iter()
        .map(|j| {
            let mut job = Object::default();
            job.push("name", Json::string("job"));
            let mut parts = vec![
                part("name", "valueString", Json::string(j.name)),
                part("reason", "valueString", Json::string(j.reason)),
                part("done", "valueBoolean", Json::Bool(j.done)),
                part(
                    "processed",
                    "valueInteger",
                    Json::Number(j.processed.to_string().into()),
                ),
            ];
            if !j.after.0.is_empty() {
                parts.push(part(
                    "position",
                    "valueString",
                    Json::string(format!("{}/{}", j.after.0, j.after.1)),
                ));
            }
            job.push("part", Json::Array(parts));
            Json::Object(job)
        })
        .collect();
    let mut out = Object::default();
    out.push("resourceType", Json::string("Parameters"));
    out.push("parameter", Json::Array(params));
    Ok(send(
        HttpResponse::build(StatusCode::OK),
        format,
        Json::Object(out).to_bytes(),
    ))
}
