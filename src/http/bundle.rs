//! `batch` and `transaction` (R4 3.1.0.11): `POST [base]` with a Bundle; the
//! response is a `batch-response` or `transaction-response` Bundle with one
//! entry per request entry, in order.

use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};

use super::{AppState, Return, base_url, etag, negotiate, prefer_return, read_body, send};
use crate::bundle::{BundleKind, BundleRequest, EntryResult};
use crate::error::ApiError;
use crate::json::{Json, Object};
use crate::store::DEFAULT_TENANT;
use crate::time::format_instant;

pub async fn post(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let format = negotiate(&req)?;
    let body = read_body(&req, payload, &state).await?;
    let bundle =
        crate::json::parse(&body).map_err(|e| ApiError::invalid(format!("invalid JSON: {e}")))?;
    let base = base_url(&req, &state);
    let mut request = BundleRequest::parse(bundle, state.max_bundle_entries, Some(&base))?;
    // Each entry is checked as if it were sent alone; a transaction needs
    // every entry allowed, a batch refuses the entries that are not.
    let access = req
        .extensions()
        .get::<super::Access>()
        .cloned()
        .ok_or_else(|| {
            ApiError::internal("a Bundle reached its handler without an access decision")
        })?;
    for (i, interaction) in request.interactions().into_iter().enumerate() {
        let Some(interaction) = interaction else {
            continue;
        };
        let decision = hearth_security::decide(&access.principal, &interaction);
        // Writes under compartment or filter limits are checked again on
        // their content and stored version as they are made (`crate::limits`).
        let refusal = match &decision {
            hearth_security::Decision::Deny { reason } => Some(reason.clone()),
            hearth_security::Decision::Allow { .. } => None,
        };
        if let Some(reason) = refusal {
            match request.kind {
                BundleKind::Transaction => {
                    return Err(ApiError::new(
                        crate::error::ErrorKind::Forbidden,
                        format!("Bundle.entry[{i}]: access denied: {reason}"),
                    ));
                }
                BundleKind::Batch => request.refuse(
                    i,
                    ApiError::new(
                        crate::error::ErrorKind::Forbidden,
                        format!("access denied: {reason}"),
                    ),
                ),
            }
        }
    }
    let kind = match request.kind {
        BundleKind::Batch => "batch-response",
        BundleKind::Transaction => "transaction-response",
    };
    let results = state.service.bundle(DEFAULT_TENANT, request, None).await?;
    let with_resource = prefer_return(&req) == Return::Representation;
    let out = super::write_bundle(kind, &[], None, results.len(), |i, out| {
        write_entry(&results[i], &base, with_resource, out);
    })?;
    Ok(send(HttpResponse::Ok(), format, out))
}

/// One response entry: `fullUrl`, the resource when asked for, `response`.
fn write_entry(result: &EntryResult, base: &str, with_resource: bool, out: &mut Vec<u8>) {
    let mut response = Object::default();
    response.push("status", Json::string(result.status()));
    let mut entry = Object::default();
    let mut resource = None;
    let mut searchset: Option<Vec<u8>> = None;
    match result {
        EntryResult::Written { rv, .. } | EntryResult::Read(rv) | EntryResult::Matched(rv) => {
            entry.push(
                "fullUrl",
                Json::string(format!("{base}/{}/{}", rv.res_type, rv.id)),
            );
            if matches!(
                result,
                EntryResult::Written { .. } | EntryResult::Matched(_)
            ) {
                response.push(
                    "location",
                    Json::string(format!("{}/{}/_history/{}", rv.res_type, rv.id, rv.version)),
                );
            }
            response.push("etag", Json::string(etag(rv.version)));
            response.push(
                "lastModified",
                Json::string(format_instant(rv.last_updated)),
            );
            if with_resource || matches!(result, EntryResult::Read(_)) {
                resource = Some(rv.body.as_slice());
            }
        }
        EntryResult::SearchSet(found) => {
            let bytes = super::write_bundle("searchset", &[], None, found.len(), |i, out| {
                let r = &found[i];
                out.extend_from_slice(b"{\"fullUrl\":");
                crate::json::write_string(&format!("{base}/{}/{}", r.res_type, r.id), out);
                out.extend_from_slice(b",\"resource\":");
                out.extend_from_slice(&r.body);
                out.extend_from_slice(b",\"search\":{\"mode\":\"match\"}}");
            });
            searchset = bytes.ok();
        }
        EntryResult::Deleted { .. } => {}
        EntryResult::Failed(e) => response.push("outcome", e.to_operation_outcome()),
    }
    entry.push("response", Json::Object(response));
    let bytes = Json::Object(entry).to_bytes();
    match resource.or(searchset.as_deref()) {
        // The stored body is copied as it is, never re-parsed.
        Some(body) => {
            out.extend_from_slice(&bytes[..bytes.len() - 1]);
            out.extend_from_slice(b",\"resource\":");
            out.extend_from_slice(body);
            out.push(b'}');
        }
        None => out.extend_from_slice(&bytes),
    }
}
