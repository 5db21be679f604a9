//! `$validate` (R4 operation-resource-validate): `POST [base]/[type]/$validate`
//! and `POST [base]/[type]/[id]/$validate`, with the resource as the body or
//! in a `Parameters` (`resource`, `mode`); `mode` also as a query parameter.
//! Answers 200 with an OperationOutcome whether or not the resource is valid
//! (the checks are those of a write: structure, cardinality, primitive
//! formats, required bindings); a 4xx means the validation could not be done.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};

use super::{AppState, negotiate, read_body, resource_id, resource_type, send};
use crate::error::{ApiError, ErrorKind, OutcomeIssue, operation_outcome};
use crate::fhir::{self, Expect};
use crate::json::Json;
use crate::store::DEFAULT_TENANT;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// No mode: the resource as it stands.
    Any,
    Create,
    Update,
    Delete,
}

fn mode(text: &str) -> Result<Mode, ApiError> {
    match text {
        "create" => Ok(Mode::Create),
        "update" => Ok(Mode::Update),
        "delete" => Ok(Mode::Delete),
        other => Err(ApiError::invalid(format!(
            "mode must be create, update or delete, not {other}"
        ))),
    }
}

pub async fn type_level(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let t = resource_type(&path)?;
    run(req, t, None, payload, &state).await
}

pub async fn instance(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (t, id) = path.into_inner();
    let (t, id) = (resource_type(&t)?, resource_id(&id)?);
    run(req, t, Some(id), payload, &state).await
}

async fn run(
    req: HttpRequest,
    t: &str,
    id: Option<&str>,
    payload: web::Payload,
    state: &AppState,
) -> Result<HttpResponse, ApiError> {
    let format = negotiate(&req)?;
    let mut chosen = Mode::Any;
    for (k, v) in super::search::pairs(req.query_string()) {
        if k == "mode" {
            chosen = mode(&v)?;
        }
    }
    let body = read_body(&req, payload, state).await?;
    // A Parameters body carries the resource (and perhaps the mode).
    let mut resource = None;
    if let Ok(Json::Object(o)) = crate::json::parse(&body)
        && o.get("resourceType").and_then(Json::as_str) == Some("Parameters")
        && t != "Parameters"
    {
        if let Some(Json::Array(params)) = o.get("parameter") {
            for p in params {
                let Json::Object(p) = p else { continue };
                match p.get("name").and_then(Json::as_str) {
                    Some("resource") => resource = p.get("resource").map(Json::to_bytes),
                    Some("mode") => {
                        if let Some(m) = p.get("valueCode").and_then(Json::as_str) {
                            chosen = mode(m)?;
                        }
                    }
                    _ => {}
                }
            }
        }
        if resource.is_none() && chosen != Mode::Delete {
            return Err(ApiError::invalid(
                "a Parameters body to $validate needs a resource parameter",
            ));
        }
    }
    let resource = resource.unwrap_or(body);
    let issues = match chosen {
        Mode::Delete => {
            let Some(id) = id else {
                return Err(ApiError::invalid(
                    "mode=delete validates an instance: [type]/[id]/$validate",
                ));
            };
            state.service.read(DEFAULT_TENANT, t, id).await?;
            vec![OutcomeIssue::information(format!(
                "{t}/{id} can be deleted"
            ))]
        }
        m => {
            let expect = match (m, id) {
                (Mode::Create, _) => Expect::Create { res_type: t },
                (Mode::Update, Some(id)) => Expect::Update { res_type: t, id },
                (Mode::Update, None) => {
                    return Err(ApiError::invalid(
                        "mode=update validates an instance: [type]/[id]/$validate",
                    ));
                }
                (_, Some(id)) => Expect::Update { res_type: t, id },
                (_, None) => Expect::ConditionalUpdate { res_type: t },
            };
            match fhir::parse_resource(&resource, expect) {
                Ok(_) => vec![OutcomeIssue::information("no issues found")],
                Err(e) if matches!(e.kind, ErrorKind::Invalid | ErrorKind::Unprocessable) => {
                    e.issues
                }
                Err(e) => return Err(e),
            }
        }
    };
    Ok(send(
        HttpResponse::build(StatusCode::OK),
        format,
        operation_outcome(&issues).to_bytes(),
    ))
}
