//! The door of the FHIR listener: every request is classified once (what
//! interaction it is), its caller authenticated by the listener's chain of
//! security modules, and the access engine (`hearth_security::decide`)
//! consulted before any handler runs. Deny by default: a path that cannot be
//! classified is not served.
//!
//! Reads are also checked on what they return: unless the caller may read
//! everything, each resource of a response (a read, the entries of a search,
//! history or `$everything` Bundle, `_include`d resources, Bundle entries) is
//! checked with `check_resource`, and hidden when it is not visible.

use actix_web::HttpMessage;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpResponse, ResponseError, web};
use hearth_security::{Decision, Interaction, Narrowing, Ops, Principal, ResourceFacts};

use super::audit::AuditFacts;
use super::{AppState, FHIR_JSON};
use crate::error::{ApiError, ErrorKind};
use crate::json::{Json, Object};
use crate::limits::{matches_filter, patients_of};

/// What the guard decided, for handlers that check more (Bundle entries).
#[derive(Clone, Debug)]
pub struct Access {
    pub principal: Principal,
    pub interaction: Interaction,
    pub decision: Decision,
}

fn is_type(s: &str) -> bool {
    crate::fhir::model::r4().is_resource_type(s)
}

/// The interaction a request asks for, from its method and its path below
/// the base path; None for what the FHIR API does not serve.
pub fn classify(method: &Method, rel: &str) -> Option<Interaction> {
    let segments: Vec<&str> = rel.split('/').filter(|s| !s.is_empty()).collect();
    let get = *method == Method::GET || *method == Method::HEAD;
    let post = *method == Method::POST;
    let op = |s: &str| s.strip_prefix('$').map(str::to_owned);
    Some(match segments.as_slice() {
        // The audit log is administration, whatever is asked of it.
        ["AuditEvent", ..] => Interaction::admin(hearth_security::AdminArea::Audit),
        [] if get => Interaction::search_system(),
        [] if post => Interaction::transaction(),
        ["metadata"] if get => Interaction::capabilities(),
        [".well-known", "smart-configuration"] if get => Interaction::smart_configuration(),
        ["_history"] if get => Interaction::history_system(),
        ["_search"] if post => Interaction::search_system(),
        // An export's status and files are its data: the kick-off's rule
        // (read on every type without limits) applies to them too. Jobs do not
        // yet record who started them.
        ["$export-status", ..] | ["$export-file", ..] => Interaction::operation_system("export"),
        [s, ..] if s.starts_with('$') => Interaction::operation_system(&op(s)?),
        [t] if is_type(t) => match *method {
            _ if get => Interaction::search_type(t),
            Method::POST => Interaction::create(t),
            Method::PUT | Method::PATCH => Interaction::update_conditional(t),
            Method::DELETE => Interaction::delete_conditional(t),
            _ => return None,
        },
        [t, "_search"] if post && is_type(t) => Interaction::search_type(t),
        [t, "_history"] if get && is_type(t) => Interaction::history_type(t),
        [t, s] if is_type(t) && s.starts_with('$') => Interaction::operation_type(t, &op(s)?),
        [t, id] if is_type(t) => match *method {
            _ if get => Interaction::read(t, id),
            Method::PUT => Interaction::update(t, id),
            Method::PATCH => Interaction::patch(t, id),
            Method::DELETE => Interaction::delete(t, id),
            _ => return None,
        },
        [t, id, "_history"] if get && is_type(t) => Interaction::history_instance(t, id),
        [t, id, "_history", _] if get && is_type(t) => Interaction::vread(t, id),
        [t, id, s] if is_type(t) && s.starts_with('$') => {
            Interaction::operation_instance(t, id, &op(s)?)
        }
        [c, id, t] if get && is_type(c) && is_type(t) => Interaction::search_compartment(c, id, t),
        _ => return None,
    })
}

/// Which challenges a 401 carries (RFC 7235: one `WWW-Authenticate` per scheme).
#[derive(Clone, Copy)]
struct Challenges {
    basic: bool,
    bearer: bool,
}

fn refuse(kind: ErrorKind, message: impl Into<String>, challenges: Challenges) -> HttpResponse {
    let mut res = ApiError::new(kind, message).error_response();
    if kind == ErrorKind::Unauthorized {
        if challenges.basic {
            res.headers_mut().append(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"Hearth\", charset=\"UTF-8\""),
            );
        }
        if challenges.bearer {
            res.headers_mut().append(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"Hearth\""),
            );
        }
    }
    res
}

/// The guard middleware of the FHIR listener.
pub async fn guard(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return Ok(req
            .into_response(ApiError::internal("no application state").error_response())
            .map_into_boxed_body());
    };
    let base = state.base_path.trim_end_matches('/');
    // The path as the router sees it (percent-encoded unreserved characters
    // decoded): what is classified is what will be served.
    let path = req.match_info().as_str().to_owned();
    let Some(rel) = path
        .strip_prefix(base)
        .filter(|r| r.is_empty() || r.starts_with('/'))
    else {
        // Outside the API nothing is served: the 404 is answered here, so
        // no handler is ever reached around the guard.
        let facts = AuditFacts {
            interaction: "unclassified".into(),
            detail: "outside the listener's base path".into(),
            ..AuditFacts::default()
        };
        req.extensions_mut().insert(facts);
        return Ok(req
            .into_response(ApiError::not_found("no such endpoint").error_response())
            .map_into_boxed_body());
    };
    let interaction = match state.kind {
        crate::config::ListenerKind::Fhir => classify(req.method(), rel),
        crate::config::ListenerKind::Admin => super::admin::classify(req.method(), rel),
    };
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let challenges = Challenges {
        basic: state.auth.offers_basic(),
        bearer: state.auth.offers_bearer(),
    };
    // What the audit row will say; filled in as the guard learns more.
    let mut facts = AuditFacts {
        interaction: interaction
            .as_ref()
            .map_or_else(|| "unclassified".to_owned(), label),
        resource: match state.kind {
            crate::config::ListenerKind::Fhir => interaction.as_ref().and_then(resource_of),
            // What an administration request touches is its path
            // (`users/nina/lock`).
            crate::config::ListenerKind::Admin => {
                Some(rel.trim_matches('/').to_owned()).filter(|r| !r.is_empty())
            }
        },
        patient: interaction.as_ref().and_then(patient_of),
        ..AuditFacts::default()
    };
    let respond = |req: ServiceRequest, facts: AuditFacts, res: HttpResponse| {
        req.extensions_mut().insert(facts);
        Ok(req.into_response(res).map_into_boxed_body())
    };
    let source = req
        .extensions()
        .get::<super::audit::SourceAddr>()
        .map_or_else(|| "unknown".to_owned(), |s| s.0.clone());
    let claimed = authorization
        .as_deref()
        .and_then(hearth_auth_local::parse_basic)
        .map(|(u, _)| u);
    if authorization.is_some()
        && let Some((retry, why)) = state.throttle.blocked(&source, claimed.as_deref())
    {
        tracing::warn!(reason = why, "sign-in attempts throttled");
        facts.user = claimed;
        facts.detail = format!("security event: {why}");
        let mut res = refuse(
            ErrorKind::TooManyRequests,
            "too many failed sign-in attempts; try again later",
            challenges,
        );
        if let Ok(v) = HeaderValue::from_str(&retry.as_secs().max(1).to_string()) {
            res.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return respond(req, facts, res);
    }
    let certificate = req
        .conn_data::<super::PeerCertificate>()
        .map(|c| c.0.clone());
    let principal = match state
        .auth
        .authenticate(authorization.as_deref(), certificate.as_deref())
        .await
    {
        Ok(p) => {
            if authorization.is_some()
                && let Some(u) = p.user_name()
            {
                state.throttle.succeeded(u);
            }
            p
        }
        Err(refusal) => {
            if !refusal.unavailable {
                state.throttle.failed(&source, refusal.user.as_deref());
            }
            tracing::warn!(
                module = refusal.module.as_deref().unwrap_or("none"),
                reason = %refusal.reason,
                "authentication refused"
            );
            facts.user = refusal.user.clone();
            facts.detail = format!("authentication refused: {}", refusal.reason);
            let res = if refusal.unavailable {
                refuse(
                    ErrorKind::Unavailable,
                    "authentication is unavailable; try again later",
                    challenges,
                )
            } else {
                refuse(ErrorKind::Unauthorized, "authentication failed", challenges)
            };
            return respond(req, facts, res);
        }
    };
    facts.user = principal.user_name().map(str::to_owned);
    facts.client = principal.client_id().map(str::to_owned);
    let anonymous = principal.kind() == hearth_security::PrincipalKind::Anonymous;
    let Some(interaction) = interaction else {
        let res = if anonymous {
            facts.detail = "authentication required".into();
            refuse(
                ErrorKind::Unauthorized,
                "authentication required",
                challenges,
            )
        } else {
            facts.detail = "not an endpoint of the FHIR API".into();
            ApiError::not_found("no such endpoint").error_response()
        };
        return respond(req, facts, res);
    };
    let describes_server = matches!(
        interaction.kind,
        hearth_security::InteractionKind::Capabilities
            | hearth_security::InteractionKind::SmartConfiguration
    );
    // Bundles enter the engine unchecked (their entries are checked one by
    // one); a caller with no rights at all is asked to sign in instead.
    if anonymous && principal.permissions().is_empty() && !describes_server {
        facts.detail = "authentication required".into();
        let res = refuse(
            ErrorKind::Unauthorized,
            "authentication required",
            challenges,
        );
        return respond(req, facts, res);
    }
    let decision = hearth_security::decide(&principal, &interaction);
    if let Decision::Deny { reason } = &decision {
        facts.detail = format!("access denied: {reason}");
        let res = if anonymous {
            refuse(
                ErrorKind::Unauthorized,
                "authentication required",
                challenges,
            )
        } else {
            tracing::info!(reason = %reason, "access denied");
            refuse(
                ErrorKind::Forbidden,
                format!("access denied: {reason}"),
                challenges,
            )
        };
        return respond(req, facts, res);
    }
    // Limits the engine puts on an allowed decision (a compartment, a SMART
    // filter) are applied to what reads return (below) and to every write
    // (`crate::limits`, checked by the service). Counts that the query
    // itself cannot narrow are refused rather than let through.
    if let Some(n) = decision.narrowing()
        && !n.is_unrestricted()
    {
        let counting = req
            .query_string()
            .split('&')
            .any(|p| matches!(p, "_summary=count" | "_total=accurate" | "_total=estimate"));
        // A type search limited to patients' compartments only (no SMART
        // filter) is narrowed in the query itself, so its counts are exact.
        let narrowed_in_query = interaction.kind == hearth_security::InteractionKind::SearchType
            && interaction
                .res_type
                .as_deref()
                .is_some_and(|t| n.filters_for(t).is_none());
        // The writes of these interactions are checked one by one by the
        // service (`crate::limits`: the new content and the stored version);
        // an operation that writes is refused.
        let checked_write = matches!(
            interaction.kind,
            hearth_security::InteractionKind::Create
                | hearth_security::InteractionKind::Update
                | hearth_security::InteractionKind::Patch
                | hearth_security::InteractionKind::Delete
                | hearth_security::InteractionKind::Transaction
                | hearth_security::InteractionKind::Batch
        );
        let why = if interaction.writes() && !checked_write {
            Some("this write is not supported under compartment or filter limits")
        } else if counting && !narrowed_in_query {
            Some("counts are not available under compartment or filter limits")
        } else {
            None
        };
        if let Some(why) = why {
            facts.detail = format!("access denied: {why}");
            let res = refuse(
                ErrorKind::Forbidden,
                format!("access denied: {why}"),
                challenges,
            );
            return respond(req, facts, res);
        }
    }
    // The capability statement and the SMART configuration describe the
    // server, not data: nothing in them to check.
    let administers = matches!(interaction.kind, hearth_security::InteractionKind::Admin(_));
    let filter = !describes_server && !administers && !reads_everything(&principal);
    crate::audit::note_request(
        facts.user.as_deref(),
        facts.client.as_deref(),
        &facts.interaction,
        facts.patient.as_deref(),
    );
    req.extensions_mut().insert(facts);
    req.extensions_mut().insert(Access {
        principal: principal.clone(),
        interaction,
        decision: decision.clone(),
    });
    // Every write of a caller who may not write everything is decided on
    // its own resource by the service (`crate::limits`); a write made
    // outside this scope is refused.
    let res = crate::limits::scope(principal.clone(), next.call(req)).await?;
    if !filter {
        return Ok(res.map_into_boxed_body());
    }
    let Some(narrowing) = decision.narrowing().cloned() else {
        return Ok(res.map_into_boxed_body());
    };
    filter_response(res, &principal, &narrowing).await
}

/// A short name of an interaction for the audit log (`read`, `search-type`,
/// `operation:everything`, …).
pub fn label(i: &Interaction) -> String {
    use hearth_security::{HistoryLevel, InteractionKind as K, OperationLevel};
    match &i.kind {
        K::Read => "read".into(),
        K::VRead => "vread".into(),
        K::History(HistoryLevel::Instance) => "history-instance".into(),
        K::History(HistoryLevel::Type) => "history-type".into(),
        K::History(HistoryLevel::System) => "history-system".into(),
        K::SearchType if i.compartment.is_some() => "search-compartment".into(),
        K::SearchType => "search-type".into(),
        K::SearchSystem => "search-system".into(),
        K::Create => "create".into(),
        K::Update if i.id.is_none() => "update-conditional".into(),
        K::Update => "update".into(),
        K::Patch => "patch".into(),
        K::Delete if i.id.is_none() => "delete-conditional".into(),
        K::Delete => "delete".into(),
        K::Capabilities => "capabilities".into(),
        K::SmartConfiguration => "smart-configuration".into(),
        K::Transaction => "transaction".into(),
        K::Batch => "batch".into(),
        K::Operation { name, level } => format!(
            "operation:{name}{}",
            match level {
                OperationLevel::System => "",
                OperationLevel::Type => "@type",
                OperationLevel::Instance => "@instance",
            }
        ),
        K::Admin(area) => format!("admin:{area}"),
    }
}

fn resource_of(i: &Interaction) -> Option<String> {
    match (&i.res_type, &i.id) {
        (Some(t), Some(id)) => Some(format!("{t}/{id}")),
        (Some(t), None) => Some(t.clone()),
        _ => None,
    }
}

fn patient_of(i: &Interaction) -> Option<String> {
    match (&i.compartment, i.res_type.as_deref(), &i.id) {
        (Some((c, id)), _, _) if c == "Patient" => Some(id.clone()),
        (_, Some("Patient"), Some(id)) => Some(id.clone()),
        _ => None,
    }
}

/// Whether the caller may read every resource, so responses need no check.
fn reads_everything(principal: &Principal) -> bool {
    crate::limits::may_do_everything(principal, Ops::READ)
}

/// Hides what the caller may not see in a successful FHIR JSON response.
async fn filter_response(
    res: ServiceResponse<impl MessageBody + 'static>,
    principal: &Principal,
    narrowing: &Narrowing,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let is_fhir_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with(FHIR_JSON));
    if !res.status().is_success() || !is_fhir_json {
        return Ok(res.map_into_boxed_body());
    }
    let (req, res) = res.into_parts();
    let (head, body) = res.into_parts();
    let Ok(bytes) = actix_web::body::to_bytes(body).await else {
        let e = ApiError::internal("a response body could not be read for access checks");
        return Ok(ServiceResponse::new(req, e.error_response()));
    };
    let Ok(mut json) = crate::json::parse(&bytes) else {
        return Ok(ServiceResponse::new(
            req,
            head.set_body(BoxBody::new(bytes)),
        ));
    };
    let visible = |r: &Json| visible(principal, narrowing, r);
    let kind = match &json {
        Json::Object(o) => o
            .get("resourceType")
            .and_then(Json::as_str)
            .map(str::to_owned),
        _ => None,
    };
    let res = match kind.as_deref() {
        Some("Bundle") => {
            if let Json::Object(o) = &mut json {
                filter_bundle(o, &visible);
            }
            head.set_body(BoxBody::new(json.to_bytes()))
        }
        Some("OperationOutcome") => head.set_body(BoxBody::new(bytes)),
        _ if visible(&json) => head.set_body(BoxBody::new(bytes)),
        _ => ApiError::not_found("not found").error_response(),
    };
    Ok(ServiceResponse::new(req, res))
}

/// Removes the entries whose resource is not visible (nested Bundles, as in
/// batch responses, are filtered too); a total no longer matching goes.
fn filter_bundle(bundle: &mut Object, visible: &dyn Fn(&Json) -> bool) {
    let Some(Json::Array(entries)) = bundle
        .0
        .iter_mut()
        .find(|(k, _)| k == "entry")
        .map(|(_, v)| v)
    else {
        return;
    };
    let before = entries.len();
    entries.retain_mut(|entry| {
        let Json::Object(e) = entry else { return true };
        let Some(resource) =
            e.0.iter_mut()
                .find(|(k, _)| k == "resource")
                .map(|(_, v)| v)
        else {
            return true;
        };
        match resource {
            Json::Object(r) if r.get("resourceType").and_then(Json::as_str) == Some("Bundle") => {
                filter_bundle(r, visible);
                true
            }
            Json::Object(r)
                if r.get("resourceType").and_then(Json::as_str) == Some("OperationOutcome") =>
            {
                true
            }
            r => visible(r),
        }
    });
    if entries.len() != before {
        bundle.remove("total");
    }
}

fn visible(principal: &Principal, narrowing: &Narrowing, resource: &Json) -> bool {
    let Json::Object(o) = resource else {
        return false;
    };
    let res_type = o.get("resourceType").and_then(Json::as_str).unwrap_or("");
    let id = o.get("id").and_then(Json::as_str).unwrap_or("");
    let matches = |_: &str, pairs: &[(String, String)]| matches_filter(resource, pairs);
    let facts =
        ResourceFacts::new(res_type, id, patients_of(res_type, resource)).with_filter(&matches);
    hearth_security::check_resource(principal, narrowing, &facts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(method: Method, path: &str) -> Option<String> {
        classify(&method, path).map(|i| {
            format!(
                "{:?} {:?} {:?} {:?}",
                i.kind, i.res_type, i.id, i.compartment
            )
        })
    }

    #[test]
    fn classification() {
        assert!(
            c(Method::GET, "/metadata")
                .unwrap()
                .starts_with("Capabilities")
        );
        assert!(c(Method::GET, "/Patient/1").unwrap().starts_with("Read"));
        assert!(
            c(Method::GET, "/Patient/1/_history/2")
                .unwrap()
                .starts_with("VRead")
        );
        assert!(c(Method::PUT, "/Patient/1").unwrap().starts_with("Update"));
        assert!(c(Method::PATCH, "/Patient/1").unwrap().starts_with("Patch"));
        assert!(c(Method::DELETE, "/Patient").unwrap().starts_with("Delete"));
        assert!(c(Method::POST, "/").unwrap().starts_with("Transaction"));
        assert!(
            c(Method::GET, "/Patient/1/Observation")
                .unwrap()
                .contains("Some((\"Patient\", \"1\"))")
        );
        assert!(
            c(Method::GET, "/Patient/1/$everything")
                .unwrap()
                .contains("everything")
        );
        for path in ["/$export-status/abc", "/$export-file/abc/Patient.ndjson"] {
            let i = c(Method::GET, path).unwrap();
            assert!(i.contains("name: \"export\""), "{i}");
        }
        assert_eq!(c(Method::GET, "/NotAType/1"), None);
        assert_eq!(c(Method::GET, "/Patient/1/x/y/z"), None);
        assert_eq!(c(Method::POST, "/Patient/1"), None);
    }
}
