//! FHIR XML at the edge: request bodies declared as XML are converted to JSON
//! before any handler sees them ([`to_json`]), and FHIR JSON responses to a
//! client that asked for XML are converted on the way out ([`xml_responses`]),
//! error OperationOutcomes included. Handlers only ever speak JSON.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpResponse, ResponseError};

use super::{FHIR_JSON, negotiate};
use crate::error::ApiError;
use crate::fhir::xml;

/// A FHIR XML request body as FHIR JSON, or a 400 saying what is wrong and where.
pub fn to_json(body: &[u8]) -> Result<Vec<u8>, ApiError> {
    match xml::parse(body) {
        Ok(json) => Ok(json.to_bytes()),
        Err(e) => Err(match e.location {
            Some(at) => ApiError::invalid_at(at, e.message),
            None => ApiError::invalid(e.message),
        }),
    }
}

/// Converts FHIR JSON responses to XML when the request asked for XML
/// (`Accept` or `_format`). Other responses (NDJSON, the export manifest,
/// empty bodies) pass through.
pub async fn xml_responses(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let wanted = negotiate(req.request())
        .ok()
        .and_then(|f| f.xml.map(|mime| (mime, f.pretty)));
    let res = next.call(req).await?;
    let Some((mime, pretty)) = wanted else {
        return Ok(res.map_into_boxed_body());
    };
    let is_fhir_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with(FHIR_JSON));
    if !is_fhir_json {
        return Ok(res.map_into_boxed_body());
    }
    let (req, res) = res.into_parts();
    let (head, body) = res.into_parts();
    let Ok(bytes) = actix_web::body::to_bytes(body).await else {
        let e = ApiError::internal("a response body could not be read for XML conversion");
        return Ok(ServiceResponse::new(req, e.error_response()));
    };
    if bytes.is_empty() {
        return Ok(ServiceResponse::new(
            req,
            head.set_body(BoxBody::new(bytes)),
        ));
    }
    let converted = crate::json::parse(&bytes)
        .map_err(|_| "the response is not JSON".to_owned())
        .and_then(|json| xml::write(&json, pretty).map_err(|e| e.to_string()));
    let res: HttpResponse = match converted {
        Ok(body) => {
            let mut res = head.set_body(BoxBody::new(body));
            if let Ok(v) = HeaderValue::from_str(&format!("{mime}; charset=utf-8")) {
                res.headers_mut().insert(header::CONTENT_TYPE, v);
            }
            res
        }
        Err(e) => ApiError::internal(format!("a response could not be written as XML: {e}"))
            .error_response(),
    };
    Ok(ServiceResponse::new(req, res))
}
