//! The FHIR REST listener (actix-web): routing, content negotiation, request ids,
//! access logging, and the one place where [`ApiError`] becomes a response.
//! Handlers are adapters, one file per interaction: extract, call the service,
//! respond.

pub mod admin;
pub(crate) mod audit;
mod audit_events;
mod bundle;
mod create;
mod delete;
mod export;
mod guard;
mod history;
mod metadata;
mod read;
mod reindex;
mod search;
mod update;
mod validate;
mod xml;

pub use audit::{RequestId, audit_requests};
pub use guard::{Access, guard};
pub use xml::xml_responses;

pub use metadata::Capability;

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, HttpResponseBuilder, ResponseError, web};
use futures_util::StreamExt;
use tracing::Instrument;

use crate::error::{ApiError, ErrorKind};
use crate::json::{self, Json, Object};
use crate::service::{ResourceVersion, Service};

pub const FHIR_JSON: &str = "application/fhir+json";

/// The DER certificate a TLS client presented (verified by the handshake).
#[derive(Clone, Debug)]
pub struct PeerCertificate(pub Vec<u8>);

/// Everything handlers share (one per listener; the service is shared).
#[derive(Clone)]
pub struct AppState {
    pub service: Service,
    pub base_path: String,
    pub public_url: Option<String>,
    /// The CapabilityStatement (rendered again when search parameters change).
    pub capability: std::sync::Arc<metadata::Capability>,
    pub max_body_bytes: usize,
    pub max_bundle_entries: usize,
    pub default_page_size: u32,
    pub default_search_count: u32,
    pub max_page_size: u32,
    pub search_drive_below: u32,
    /// See `FhirConfig::max_sorted_in_memory`.
    pub max_sorted_in_memory: u32,
    /// See `FhirConfig::conditional_delete_multiple`.
    pub conditional_delete_multiple: bool,
    /// See `FhirConfig::max_conditional_deletes`.
    pub max_conditional_deletes: u32,
    /// See `FhirConfig::export_part_bytes`.
    pub export_part_bytes: usize,
    /// The listener's chain of security modules (`security`).
    pub auth: std::sync::Arc<crate::auth::Authenticator>,
    /// Every configured module (another listener builds its chain from them).
    pub modules: std::sync::Arc<crate::auth::Modules>,
    /// Where every request's audit row goes.
    pub audit: crate::audit::AuditLog,
    /// The listener's name in audit rows.
    pub listener: String,
    /// What the listener serves (the FHIR API or the Admin API).
    pub kind: crate::config::ListenerKind,
    /// Proxies whose `X-Forwarded-For` names the caller (`http.trusted_proxies`).
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Failed sign-ins per address and user (429 past the limits).
    pub throttle: std::sync::Arc<crate::auth::Throttle>,
}

/// The handler of a known path asked with a method it does not take.
pub(crate) fn method_not_allowed() -> actix_web::Route {
    web::to(|| async {
        Err::<HttpResponse, _>(ApiError::new(
            ErrorKind::MethodNotAllowed,
            "this method is not allowed here",
        ))
    })
}

/// Registers the FHIR routes under the base path.
pub fn routes(cfg: &mut web::ServiceConfig, base_path: &str) {
    let scope = web::scope(if base_path == "/" { "" } else { base_path })
        .service(
            web::resource("/metadata")
                .route(web::get().to(metadata::capabilities))
                .default_service(method_not_allowed()),
        )
        .service(
            web::resource(["", "/"])
                .route(web::get().to(search::system))
                .route(web::post().to(bundle::post))
                .default_service(method_not_allowed()),
        )
        .service(
            web::resource("/_search")
                .route(web::post().to(search::system_post))
                .default_service(method_not_allowed()),
        )
        .service(
            web::resource("/_history")
                .route(web::get().to(history::system))
                .default_service(method_not_allowed()),
        )
        .service(
            web::resource("/{type}/_search")
                .route(web::post().to(search::post))
                .default_service(method_not_allowed()),
        )
        .service(
            web::resource("/{type}/_history")
                .route(web::get().to(history::type_level))
                .default_service(method_not_allowed()),
        )
        .service(
            web::resource("/{type}/{id}/_history")
                .route(web::get().to(history::instance))
                .default_service(method_not_allowed()),
        )
        .service(
            web::resource("/{type}/{id}/_history/{vid}")
                .route(web::get().to(read::vread))
                .default_service(method_not_allowed()),
        )
        .service(
            web::resource("/$reindex")
                .route(web::get().to(reindex::status))
                .default_service(method_not_allowed()),
        )
        .service(
            web::resource("/$export")
                .route(web::get().to(export::system))
                .default_service(method_not_allowed()),
        )
        .service(
            web::resource("/Patient/$export")
                .route(web::get().to(export::patient))
                .default_service(method_not_allowed()),
        )
        .service(
            web::resource("/Group/{id}/$export")
                .route(web::get().to(export::group))
                .default_service(method_not_allowed()),
        )
        .service(
            web::resource("/$export-status/{id}")
                .route(web::get().to(export::status))
                .route(web::delete().to(export::cancel))
                .default_service(method_not_allowed()),
        )
        .service(
            web::resource("/$export-file/{id}/{file}")
                .route(web::get().to(export::file))
                .default_service(method_not_allowed()),
        )
        .service(
            web::resource("/{type}/$validate")
                .route(web::post().to(validate::type_level))
                .default_service(method_not_allowed()),
        )
        .service(
            web::resource("/{type}/{id}/$validate")
                .route(web::post().to(validate::instance))
                .default_service(method_not_allowed()),
        )
        .service(
            web::resource("/Patient/{id}/$everything")
                .route(web::get().to(search::everything))
                .default_service(method_not_allowed()),
        )
        // The audit log (read-only; the guard asks for admin:audit).
        .service(
            web::resource("/AuditEvent")
                .route(web::get().to(audit_events::search))
                .default_service(method_not_allowed()),
        )
        .service(
            web::resource("/AuditEvent/{id}")
                .route(web::get().to(audit_events::read))
                .default_service(method_not_allowed()),
        )
        .service(
            web::resource("/{compartment}/{id}/{type}")
                .route(web::get().to(search::compartment))
                .default_service(method_not_allowed()),
        )
        .service(
            web::resource("/{type}/{id}")
                .route(web::get().to(read::read))
                .route(web::head().to(read::read))
                .route(web::put().to(update::update))
                .route(web::patch().to(update::patch))
                .route(web::delete().to(delete::delete))
                .default_service(method_not_allowed()),
        )
        .service(
            web::resource("/{type}")
                .route(web::post().to(create::create))
                .route(web::get().to(search::get))
                .route(web::put().to(update::conditional))
                .route(web::delete().to(delete::conditional))
                .default_service(method_not_allowed()),
        );
    cfg.service(scope);
}

/// Answers every unmatched path with a FHIR 404.
pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::not_found("no such endpoint"))
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        if let Some(source) = &self.source {
            // The source is for operators; it never carries request content.
            tracing::error!(status = self.status(), error = %source, "request failed");
        }
        HttpResponse::build(self.status_code())
            .insert_header((header::CONTENT_TYPE, format!("{FHIR_JSON}; charset=utf-8")))
            .body(self.to_operation_outcome().to_bytes())
    }
}

/// The concrete R4 resource type named in the URL, or 404.
pub fn resource_type(t: &str) -> Result<&str, ApiError> {
    if crate::fhir::model::r4().is_resource_type(t) {
        Ok(t)
    } else {
        Err(ApiError::not_found("unknown resource type"))
    }
}

/// A resource id from the URL: 1–64 of `[A-Za-z0-9\-.]`, else 400.
pub fn resource_id(id: &str) -> Result<&str, ApiError> {
    crate::fhir::primitive::check_id(id).map_err(ApiError::invalid)?;
    Ok(id)
}

/// The response format chosen from `_format`, `Accept` and `_pretty`.
/// Handlers always write JSON; when the client asked for XML, `xml` names the
/// media type and [`xml_responses`] converts the body on the way out.
#[derive(Clone, Copy, Debug)]
pub struct Format {
    pub mime: &'static str,
    pub pretty: bool,
    pub xml: Option<&'static str>,
}

pub const FHIR_XML: &str = "application/fhir+xml";

fn query_param<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.query_string()
        .split('&')
        .filter_map(|p| p.split_once('=').or(Some((p, ""))))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

pub fn negotiate(req: &HttpRequest) -> Result<Format, ApiError> {
    let pretty = query_param(req, "_pretty") == Some("true");
    let wanted = match query_param(req, "_format") {
        Some(f) => percent_decode(f),
        None => req
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned(),
    };
    let mut mime = None;
    let mut any = wanted.trim().is_empty();
    for item in wanted.split(',') {
        let m = item
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        // The first acceptable type named wins.
        let choice = match m.as_str() {
            "application/fhir+json" | "json" | "fhir+json" => Some((FHIR_JSON, None)),
            "application/json" => Some(("application/json", None)),
            "application/fhir+xml" | "xml" | "fhir+xml" => Some((FHIR_JSON, Some(FHIR_XML))),
            "application/xml" | "text/xml" => Some((FHIR_JSON, Some("application/xml"))),
            "*/*" | "application/*" | "" => {
                any = true;
                None
            }
            _ => None,
        };
        if mime.is_none() {
            mime = choice;
        }
    }
    match (mime, any) {
        (Some((mime, xml)), _) => Ok(Format { mime, pretty, xml }),
        (None, true) => Ok(Format {
            mime: FHIR_JSON,
            pretty,
            xml: None,
        }),
        (None, false) => Err(ApiError::new(
            ErrorKind::NotAcceptable,
            "ask for application/fhir+json, application/json or application/fhir+xml",
        )),
    }
}

pub(crate) fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads the request body up to the configured limit (413 beyond it) as FHIR
/// JSON: a body declared as XML is converted (so every handler reads JSON);
/// any other declared type is a 415.
pub async fn read_body(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> Result<Vec<u8>, ApiError> {
    match content_type(req).as_deref() {
        None | Some("application/fhir+json" | "application/json") => {
            read_raw_body(req, payload, state).await
        }
        Some(ct) if is_xml(ct) => {
            let body = read_raw_body(req, payload, state).await?;
            xml::to_json(&body)
        }
        Some(_) => Err(ApiError::new(
            ErrorKind::UnsupportedMediaType,
            "send resources as application/fhir+json, application/json or application/fhir+xml",
        )),
    }
}

/// Whether a request media type is FHIR XML.
pub fn is_xml(content_type: &str) -> bool {
    matches!(
        content_type,
        "application/fhir+xml" | "application/xml" | "text/xml"
    )
}

/// The media type of the request body (lower case, without parameters).
pub fn content_type(req: &HttpRequest) -> Option<String> {
    req.headers().get(header::CONTENT_TYPE).map(|ct| {
        ct.to_str()
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    })
}

/// The request body whatever its type, within `http.max_body_bytes`.
pub async fn read_raw_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    state: &AppState,
) -> Result<Vec<u8>, ApiError> {
    let too_large = || {
        ApiError::new(
            ErrorKind::PayloadTooLarge,
            format!(
                "the request body is larger than the limit of {} bytes",
                state.max_body_bytes
            ),
        )
    };
    if let Some(len) = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
        && len > state.max_body_bytes
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| ApiError::invalid("the request body could not be read"))?;
        if body.len() + chunk.len() > state.max_body_bytes {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Writes a Bundle of `kind` (`history`, `searchset`) with its links and total,
/// and `entries` entry objects written by `write_entry(i, out)` straight into the
/// output, so stored resource bodies are copied, never re-parsed.
pub fn write_bundle(
    kind: &str,
    links: &[(&str, String)],
    total: Option<u64>,
    entries: usize,
    mut write_entry: impl FnMut(usize, &mut Vec<u8>),
) -> Result<Vec<u8>, ApiError> {
    let mut head = Object::default();
    head.push("resourceType", Json::string("Bundle"));
    head.push("id", Json::string(crate::service::new_id()?));
    let mut meta = Object::default();
    meta.push(
        "lastUpdated",
        Json::string(crate::time::format_instant(crate::time::now_micros())),
    );
    head.push("meta", Json::Object(meta));
    head.push("type", Json::string(kind));
    if let Some(n) = total {
        head.push("total", Json::Number(n.to_string().into()));
    }
    let links = links
        .iter()
        .map(|(rel, url)| {
            let mut l = Object::default();
            l.push("relation", Json::string(*rel));
            l.push("url", Json::string(url.clone()));
            Json::Object(l)
        })
        .collect();
    head.push("link", Json::Array(links));
    let mut out = Json::Object(head).to_bytes();
    if entries == 0 {
        return Ok(out);
    }
    out.pop(); // reopen the object to append the entries
    out.extend_from_slice(b",\"entry\":[");
    for i in 0..entries {
        if i > 0 {
            out.push(b',');
        }
        write_entry(i, &mut out);
    }
    out.extend_from_slice(b"]}");
    Ok(out)
}

/// Reads a form body (for `_search`) up to the configured limit.
pub async fn read_form(mut payload: web::Payload, state: &AppState) -> Result<String, ApiError> {
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| ApiError::invalid("the request body could not be read"))?;
        if body.len() + chunk.len() > state.max_body_bytes {
            return Err(ApiError::new(
                ErrorKind::PayloadTooLarge,
                "the form body is too large",
            ));
        }
        body.extend_from_slice(&chunk);
    }
    String::from_utf8(body).map_err(|_| ApiError::invalid("the form body is not UTF-8"))
}

/// The absolute base URL of the FHIR API for links and `Location`.
pub fn base_url(req: &HttpRequest, state: &AppState) -> String {
    if let Some(u) = &state.public_url {
        return u.trim_end_matches('/').to_owned();
    }
    let info = req.connection_info();
    let base = if state.base_path == "/" {
        ""
    } else {
        state.base_path.as_str()
    };
    format!("{}://{}{}", info.scheme(), info.host(), base)
}

/// `ETag: W/"n"`
pub fn etag(version: i64) -> String {
    format!("W/\"{version}\"")
}

/// A version from `If-Match` / `If-None-Match`: `W/"3"` or `"3"`.
pub fn parse_etag(v: &str) -> Option<i64> {
    let v = v.trim();
    let v = v.strip_prefix("W/").unwrap_or(v);
    v.strip_prefix('"')?.strip_suffix('"')?.parse().ok()
}

/// What the client asked for with `Prefer: return=…`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Return {
    Minimal,
    Representation,
    OperationOutcome,
}

pub fn prefer_return(req: &HttpRequest) -> Return {
    let prefer = req
        .headers()
        .get_all("prefer")
        .filter_map(|v| v.to_str().ok());
    for p in prefer {
        for part in p.split([',', ';']) {
            match part.trim().to_ascii_lowercase().as_str() {
                "return=minimal" => return Return::Minimal,
                "return=operationoutcome" => return Return::OperationOutcome,
                "return=representation" => return Return::Representation,
                _ => {}
            }
        }
    }
    Return::Representation
}

/// A body in the negotiated format (pretty-printed on request, else as stored).
pub fn send(mut builder: HttpResponseBuilder, format: Format, body: Vec<u8>) -> HttpResponse {
    let body = if format.pretty {
        json::pretty(&body)
    } else {
        body
    };
    builder
        .insert_header((
            header::CONTENT_TYPE,
            format!("{}; charset=utf-8", format.mime),
        ))
        .body(body)
}

/// Version headers of a resource: `ETag`, `Last-Modified`.
pub fn version_headers(builder: &mut HttpResponseBuilder, version: i64, last_updated: i64) {
    builder.insert_header((header::ETAG, etag(version)));
    builder.insert_header((
        header::LAST_MODIFIED,
        header::HttpDate::from(crate::time::to_system_time(last_updated)).to_string(),
    ));
}

/// The response to a create or update, honouring `Prefer: return`.
pub fn write_response(
    req: &HttpRequest,
    state: &AppState,
    status: StatusCode,
    rv: ResourceVersion,
) -> Result<HttpResponse, ApiError> {
    let format = negotiate(req)?;
    let mut builder = HttpResponse::build(status);
    version_headers(&mut builder, rv.version, rv.last_updated);
    let location = format!(
        "{}/{}/{}/_history/{}",
        base_url(req, state),
        rv.res_type,
        rv.id,
        rv.version
    );
    builder.insert_header((header::LOCATION, location.clone()));
    Ok(match prefer_return(req) {
        Return::Minimal => builder.finish(),
        Return::Representation => send(builder, format, rv.body),
        Return::OperationOutcome => {
            let verb = if status == StatusCode::CREATED {
                "created"
            } else {
                "updated"
            };
            let oo = crate::error::operation_outcome(&[crate::error::OutcomeIssue::information(
                format!("{}/{} {verb} as version {}", rv.res_type, rv.id, rv.version),
            )]);
            send(builder, format, oo.to_bytes())
        }
    })
}

/// The usual security headers on every response; HSTS when the listener
/// speaks TLS.
pub fn security_headers(tls: bool) -> actix_web::middleware::DefaultHeaders {
    let headers = actix_web::middleware::DefaultHeaders::new()
        .add(("X-Content-Type-Options", "nosniff"))
        .add(("X-Frame-Options", "DENY"))
        .add(("Referrer-Policy", "no-referrer"))
        .add((
            "Content-Security-Policy",
            "default-src 'none'; frame-ancestors 'none'",
        ))
        .add(("Cache-Control", "no-store"));
    if tls {
        headers.add(("Strict-Transport-Security", "max-age=31536000"))
    } else {
        headers
    }
}

/// A request id per request, a span around it, and one access-log line that
/// names the route pattern (never the query string or body).
pub async fn request_context(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    // A caller's own X-Request-Id is kept when it is a plain token, so traces join up.
    let incoming = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        .map(str::to_owned);
    let request_id = match incoming {
        Some(id) => id,
        None => crate::service::new_id().unwrap_or_else(|_| "unknown".into()),
    };
    let method = req.method().to_string();
    let route = req.match_pattern().unwrap_or_else(|| "unmatched".into());
    req.extensions_mut()
        .insert(audit::RequestId(request_id.clone()));
    let span = tracing::info_span!("request", request_id = %request_id);
    let mut res = next.call(req).instrument(span).await?;
    let status = res.status().as_u16();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        res.headers_mut()
            .insert(header::HeaderName::from_static("x-request-id"), v);
    }
    tracing::info!(
        request_id = %request_id,
        method = %method,
        route = %route,
        status,
        elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
        "request"
    );
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_parse() {
        assert_eq!(parse_etag("W/\"3\""), Some(3));
        assert_eq!(parse_etag("\"12\""), Some(12));
        assert_eq!(parse_etag("3"), None);
        assert_eq!(parse_etag("W/\"x\""), None);
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(
            percent_decode("application%2Ffhir%2Bjson"),
            "application/fhir+json"
        );
        assert_eq!(percent_decode("a+b%"), "a b%");
    }
}
