//! `capabilities` (R4 3.1.0.5): `GET [base]/metadata`, rendered by
//! [`capability_statement`] from what this server implements, and rendered
//! again when search parameters are added or removed at run time.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};

use super::{AppState, negotiate, send};
use crate::error::ApiError;
use crate::fhir::search_params::{self, SearchParam};
use crate::fhir::{FHIR_VERSION, model};
use crate::json::{Json, Object};
use crate::search::plan;

pub async fn capabilities(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let format = negotiate(&req)?;
    Ok(send(
        HttpResponse::build(StatusCode::OK),
        format,
        state.capability.current(),
    ))
}

/// The rendered CapabilityStatement, with the generation of the added search
/// parameters it shows.
pub struct Capability {
    started: String,
    /// `conditionalDelete`: `multiple` or `single`.
    delete_multiple: bool,
    rendered: std::sync::RwLock<(u64, Vec<u8>)>,
}

impl Capability {
    /// `started` is the server's start time, the statement's `date`;
    /// `delete_multiple` is `fhir.conditional_delete_multiple`.
    pub fn new(started: String, delete_multiple: bool) -> Self {
        let generation = search_params::custom_generation();
        let body = capability_statement(&started, delete_multiple);
        Capability {
            started,
            delete_multiple,
            rendered: std::sync::RwLock::new((generation, body)),
        }
    }

    /// The statement as of now (rendered again when parameters changed).
    pub fn current(&self) -> Vec<u8> {
        let generation = search_params::custom_generation();
        if let Ok(r) = self.rendered.read()
            && r.0 == generation
        {
            return r.1.clone();
        }
        let body = capability_statement(&self.started, self.delete_multiple);
        if let Ok(mut w) = self.rendered.write() {
            *w = (generation, body.clone());
        }
        body
    }
}

const CORE: &str = "http://hl7.org/fhir/OperationDefinition";
const BULK: &str = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition";

fn operation(name: &str, definition: &str) -> Json {
    let mut op = Object::default();
    op.push("name", Json::string(name));
    op.push("definition", Json::string(definition));
    Json::Object(op)
}

fn strings(items: &[&str]) -> Json {
    Json::Array(items.iter().map(|s| Json::string(*s)).collect())
}

fn codes(key: &str, items: &[&str]) -> Json {
    Json::Array(
        items
            .iter()
            .map(|c| {
                let mut o = Object::default();
                o.push(key, Json::string(*c));
                Json::Object(o)
            })
            .collect(),
    )
}

/// `AuditEvent` is the server's audit log: read and searched (with the
/// `admin:audit` permission), never written by clients.
fn audit_event_resource() -> Json {
    let mut r = Object::default();
    r.push("type", Json::string("AuditEvent"));
    r.push(
        "profile",
        Json::string("https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit.Read"),
    );
    r.push("interaction", codes("code", &["read", "search-type"]));
    r.push(
        "documentation",
        Json::string("The server's audit log (IHE BALP shape); requires the admin:audit permission; written by the server only."),
    );
    let params = [
        ("date", "date"),
        ("patient", "reference"),
        ("entity", "reference"),
        ("altid", "token"),
        ("outcome", "token"),
        ("subtype", "token"),
        ("action", "token"),
    ];
    r.push(
        "searchParam",
        Json::Array(
            params
                .iter()
                .map(|(name, kind)| {
                    let mut o = Object::default();
                    o.push("name", Json::string(*name));
                    o.push(
                        "definition",
                        Json::string(format!(
                            "http://hl7.org/fhir/SearchParameter/AuditEvent-{name}"
                        )),
                    );
                    o.push("type", Json::string(*kind));
                    Json::Object(o)
                })
                .collect(),
        ),
    );
    Json::Object(r)
}

/// An honest CapabilityStatement: only the interactions that are implemented.
pub fn capability_statement(date: &str, delete_multiple: bool) -> Vec<u8> {
    let resources = model::r4()
        .resource_types()
        .iter()
        .map(|t| {
            if *t == "AuditEvent" {
                return audit_event_resource();
            }
            let mut r = Object::default();
            r.push("type", Json::string(*t));
            r.push(
                "interaction",
                codes(
                    "code",
                    &[
                        "read",
                        "vread",
                        "update",
                        "patch",
                        "delete",
                        "history-instance",
                        "history-type",
                        "create",
                        "search-type",
                    ],
                ),
            );
            r.push("versioning", Json::string("versioned-update"));
            r.push("readHistory", Json::Bool(true));
            r.push("updateCreate", Json::Bool(true));
            r.push("conditionalCreate", Json::Bool(true));
            r.push("conditionalRead", Json::string("full-support"));
            r.push("conditionalUpdate", Json::Bool(true));
            r.push(
                "conditionalDelete",
                Json::string(if delete_multiple {
                    "multiple"
                } else {
                    "single"
                }),
            );
            let mut params: Vec<&SearchParam> = search_params::r4()
                .for_type(t)
                .filter(|p| plan::is_searchable(p))
                .collect();
            params.sort_by_key(|p| p.code);
            r.push(
                "searchParam",
                Json::Array(
                    params
                        .into_iter()
                        .map(|p| {
                            let mut o = Object::default();
                            o.push("name", Json::string(p.code));
                            o.push("definition", Json::string(p.url));
                            o.push("type", Json::string(p.kind.code()));
                            Json::Object(o)
                        })
                        .collect(),
                ),
            );
            let mut operations = Vec::new();
            if *t == "Patient" {
                operations.push(operation(
                    "everything",
                    &format!("{CORE}/Patient-everything"),
                ));
                operations.push(operation("export", &format!("{BULK}/patient-export")));
            }
            if *t == "Group" {
                operations.push(operation("export", &format!("{BULK}/group-export")));
            }
            operations.push(operation("validate", &format!("{CORE}/Resource-validate")));
            r.push("operation", Json::Array(operations));
            Json::Object(r)
        })
        .collect();
    let mut rest = Object::default();
    rest.push("mode", Json::string("server"));
    rest.push("resource", Json::Array(resources));
    rest.push(
        "operation",
        Json::Array(vec![operation("export", &format!("{BULK}/export"))]),
    );
    rest.push(
        "interaction",
        codes(
            "code",
            &["transaction", "batch", "search-system", "history-system"],
        ),
    );
    let mut software = Object::default();
    software.push("name", Json::string("Hearth"));
    software.push("version", Json::string(env!("CARGO_PKG_VERSION")));
    let mut implementation = Object::default();
    implementation.push("description", Json::string("Hearth FHIR R4 server"));
    let mut cs = Object::default();
    cs.push("resourceType", Json::string("CapabilityStatement"));
    cs.push("status", Json::string("active"));
    cs.push("date", Json::string(date));
    cs.push("publisher", Json::string("Hearth"));
    cs.push("kind", Json::string("instance"));
    cs.push("software", Json::Object(software));
    cs.push("implementation", Json::Object(implementation));
    cs.push("fhirVersion", Json::string(FHIR_VERSION));
    cs.push(
        "format",
        strings(&[
            "application/fhir+json",
            "application/json",
            "application/fhir+xml",
            "application/xml",
        ]),
    );
    cs.push("rest", Json::Array(vec![Json::Object(rest)]));
    Json::Object(cs).to_bytes()
}
