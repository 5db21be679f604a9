//! The audit middleware: after every request (allowed, refused,
//! unauthenticated, malformed, failed) one row goes to the audit log
//! (`crate::audit`). A response whose row cannot be written is not sent: the
//! caller gets a 503 instead.
//!
//! The guard leaves what it learnt in the request's extensions
//! ([`AuditFacts`]); the status and, for writes, the resource's new version
//! come from the response. A write made while serving the request has
//! already left a pending row in its own transaction ([`RequestAudit`]); the
//! row written here replaces it.

use std::net::IpAddr;

use actix_web::HttpMessage;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{ResponseError, web};

use super::AppState;
use crate::audit::{Record, RequestAudit};
use crate::error::ApiError;
use crate::store::DEFAULT_TENANT;

/// The request id of [`super::request_context`].
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

/// The caller's address, worked out once (see [`source_addr`]) for the audit
/// row and the guard's brute-force counts.
#[derive(Clone, Debug)]
pub struct SourceAddr(pub String);

/// What the guard knew about a request, for its audit row.
#[derive(Clone, Debug, Default)]
pub struct AuditFacts {
    pub user: Option<String>,
    pub client: Option<String>,
    pub interaction: String,
    pub resource: Option<String>,
    pub patient: Option<String>,
    pub detail: String,
}

/// The caller's address: the peer, or, when the peer is a trusted proxy, the
/// last address in `X-Forwarded-For` that is not one.
fn source_addr(req: &ServiceRequest, trusted: &[IpAddr]) -> String {
    let Some(peer) = req.peer_addr().map(|a| a.ip()) else {
        return "unknown".into();
    };
    if !trusted.contains(&peer) {
        return peer.to_string();
    }
    let forwarded: Vec<IpAddr> = req
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|a| a.trim().parse().ok())
        .collect();
    forwarded
        .iter()
        .rev()
        .find(|a| !trusted.contains(a))
        .map_or_else(|| peer.to_string(), ToString::to_string)
}

/// `Type/id/_history/n` from a `Location` header, when it names one.
fn written_version(res: &ServiceResponse<BoxBody>, base: &str) -> Option<String> {
    let location = res.headers().get(header::LOCATION)?.to_str().ok()?;
    let at = location
        .find(base.trim_end_matches('/'))
        .map_or(0, |i| i + base.len());
    let rel = location.get(at..)?.trim_start_matches('/');
    let parts: Vec<&str> = rel.split('/').collect();
    match parts.as_slice() {
        [t, id, "_history", v] if crate::fhir::model::r4().is_resource_type(t) => {
            Some(format!("{t}/{id}/_history/{v}"))
        }
        _ => None,
    }
}

pub async fn audit_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    let method = req.method().to_string();
    let source = source_addr(&req, &state.trusted_proxies);
    req.extensions_mut().insert(SourceAddr(source.clone()));
    let request_id = req
        .extensions()
        .get::<RequestId>()
        .map_or_else(|| "unknown".to_owned(), |r| r.0.clone());
    // Writes made while serving the request leave a pending row in their
    // own transaction; the row below replaces it.
    let context = RequestAudit::new(&state.listener, &request_id, &source, &method);
    let res = context.scope(next.call(req)).await?.map_into_boxed_body();
    let facts = res
        .request()
        .extensions()
        .get::<AuditFacts>()
        .cloned()
        .unwrap_or_else(|| AuditFacts {
            interaction: "unclassified".into(),
            ..AuditFacts::default()
        });
    let resource = written_version(&res, &state.base_path).or(facts.resource);
    let record = Record {
        listener: state.listener.clone(),
        request_id,
        user_name: facts.user,
        client_id: facts.client,
        source_addr: source,
        method,
        interaction: facts.interaction,
        resource,
        patient: facts.patient,
        status: res.status().as_u16(),
        detail: facts.detail,
    };
    match state
        .audit
        .append(DEFAULT_TENANT, record, context.replaces())
        .await
    {
        Ok(_) => Ok(res),
        Err(e) => {
            let (req, _) = res.into_parts();
            let err = ApiError::unavailable(format!("the request could not be audited: {e}"));
            Ok(ServiceResponse::new(req, err.error_response()))
        }
    }
}
