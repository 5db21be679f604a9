//! SearchParameter resources as search parameters: a stored, active
//! SearchParameter whose expression the FHIRPath subset compiles becomes a
//! parameter of its base types (registered at start-up and on each write), and
//! a reindex job indexes the resources stored before it; until that job is done
//! the parameter is not searchable (501).

use crate::error::{ApiError, ErrorKind};
use crate::fhir::search_params::ParamType;
use crate::json::{Json, Object};

/// What a SearchParameter resource defines, when it defines something this
/// server can index.
#[derive(Clone, Debug, PartialEq)]
pub struct Definition {
    pub url: String,
    pub code: String,
    pub kind: ParamType,
    pub bases: Vec<String>,
    pub targets: Vec<String>,
    pub expression: String,
}

fn text(o: &Object, name: &str) -> Option<String> {
    match o.get(name) {
        Some(Json::String(s)) => Some(s.clone()),
        _ => None,
    }
}

fn texts(o: &Object, name: &str) -> Vec<String> {
    match o.get(name) {
        Some(Json::Array(a)) => a
            .iter()
            .filter_map(|v| match v {
                Json::String(s) => Some(s.clone()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

impl Definition {
    /// Registers this definition as SearchParameter `resource_id`'s parameter
    /// (not searchable until its reindex job is done).
    pub fn register(&self, resource_id: &str) {
        crate::fhir::search_params::register_custom(
            resource_id,
            &self.url,
            &self.code,
            self.kind,
            &self.bases,
            &self.targets,
            &self.expression,
        );
    }
}

/// The definition of an active SearchParameter, `None` when it is not active
/// or has no expression; 422 when it is active but cannot be indexed here.
pub fn definition(sp: &Object) -> Result<Option<Definition>, ApiError> {
    if text(sp, "status").as_deref() != Some("active") {
        return Ok(None);
    }
    let Some(expression) = text(sp, "expression") else {
        return Ok(None);
    };
    let refuse = |why: String| {
        ApiError::new(
            ErrorKind::Unprocessable,
            format!("SearchParameter cannot be used for search here: {why}"),
        )
    };
    let kind_text = text(sp, "type").unwrap_or_default();
    let kind = ParamType::parse(&kind_text)
        .filter(|k| !matches!(k, ParamType::Composite | ParamType::Special))
        .ok_or_else(|| {
            refuse(format!(
                "type {kind_text} is not supported for added parameters"
            ))
        })?;
    if let Err(e) = crate::fhir::fhirpath::compile(&expression) {
        return Err(refuse(format!(
            "the expression is outside the supported FHIRPath subset ({e})"
        )));
    }
    let code = text(sp, "code").ok_or_else(|| refuse("no code".into()))?;
    let bases = texts(sp, "base");
    if let Some(b) = bases
        .iter()
        .find(|b| !crate::fhir::model::r4().is_resource_type(b))
    {
        return Err(refuse(format!("base {b} is not a resource type")));
    }
    Ok(Some(Definition {
        url: text(sp, "url").unwrap_or_default(),
        code,
        kind,
        bases,
        targets: texts(sp, "target"),
        expression,
    }))
}

/// The name of the reindex job that indexes version `version` of
/// SearchParameter `id`.
pub fn job_name(id: &str, version: i64) -> String {
    format!("{}:v{version}", crate::fhir::search_params::custom_id(id))
}
