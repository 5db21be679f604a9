//! The one error vocabulary of the server and its one mapping to an HTTP status
//! and a FHIR `OperationOutcome`.
//!
//! Use [`ApiError`] for anything a handler or the domain returns. Build it with the
//! constructors here; [`ApiError::internal`] keeps its source for the log and sends
//! only a generic message. Nothing else turns errors into responses.

use crate::json::{Json, Object};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// 400: not acceptable as FHIR at all (syntax, structure, bad parameters).
    Invalid,
    /// 422: well-formed but breaks a content rule.
    Unprocessable,
    NotFound,
    Gone,
    Conflict,
    PreconditionFailed,
    MethodNotAllowed,
    NotAcceptable,
    UnsupportedMediaType,
    PayloadTooLarge,
    /// 400: a request this server refuses to carry out at its size (a client
    /// can narrow it).
    TooCostly,
    /// 501: a FHIR interaction this server does not implement.
    NotSupported,
    /// 401: no acceptable credentials (the response carries a challenge).
    Unauthorized,
    /// 403: authenticated, but the access rules refuse the interaction.
    Forbidden,
    /// 429: too many failed attempts; try again later.
    TooManyRequests,
    Unavailable,
    Internal,
}

impl ErrorKind {
    pub fn status(self) -> u16 {
        match self {
            ErrorKind::Invalid => 400,
            ErrorKind::Unprocessable => 422,
            ErrorKind::NotFound => 404,
            ErrorKind::Gone => 410,
            ErrorKind::Conflict => 409,
            ErrorKind::PreconditionFailed => 412,
            ErrorKind::MethodNotAllowed => 405,
            ErrorKind::NotAcceptable => 406,
            ErrorKind::UnsupportedMediaType => 415,
            ErrorKind::PayloadTooLarge => 413,
            ErrorKind::TooCostly => 400,
            ErrorKind::NotSupported => 501,
            ErrorKind::Unauthorized => 401,
            ErrorKind::Forbidden => 403,
            ErrorKind::TooManyRequests => 429,
            ErrorKind::Unavailable => 503,
            ErrorKind::Internal => 500,
        }
    }

    fn default_issue_type(self) -> IssueType {
        match self {
            ErrorKind::Invalid | ErrorKind::Unprocessable => IssueType::Invalid,
            ErrorKind::NotFound | ErrorKind::Gone => IssueType::NotFound,
            ErrorKind::Conflict | ErrorKind::PreconditionFailed => IssueType::Conflict,
            ErrorKind::MethodNotAllowed | ErrorKind::NotSupported => IssueType::NotSupported,
            ErrorKind::NotAcceptable | ErrorKind::UnsupportedMediaType => IssueType::NotSupported,
            ErrorKind::PayloadTooLarge | ErrorKind::TooCostly => IssueType::TooCostly,
            ErrorKind::Unauthorized => IssueType::Login,
            ErrorKind::Forbidden => IssueType::Forbidden,
            ErrorKind::TooManyRequests => IssueType::Throttled,
            ErrorKind::Unavailable => IssueType::Transient,
            ErrorKind::Internal => IssueType::Exception,
        }
    }
}

/// FHIR `IssueType` codes used by this server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IssueType {
    Invalid,
    Structure,
    Required,
    Value,
    CodeInvalid,
    NotFound,
    Deleted,
    Conflict,
    NotSupported,
    TooCostly,
    Transient,
    Exception,
    Informational,
    Login,
    Forbidden,
    Throttled,
}

impl IssueType {
    pub fn code(self) -> &'static str {
        match self {
            IssueType::Invalid => "invalid",
            IssueType::Structure => "structure",
            IssueType::Required => "required",
            IssueType::Value => "value",
            IssueType::CodeInvalid => "code-invalid",
            IssueType::NotFound => "not-found",
            IssueType::Deleted => "deleted",
            IssueType::Conflict => "conflict",
            IssueType::NotSupported => "not-supported",
            IssueType::TooCostly => "too-costly",
            IssueType::Transient => "transient",
            IssueType::Exception => "exception",
            IssueType::Informational => "informational",
            IssueType::Login => "login",
            IssueType::Forbidden => "forbidden",
            IssueType::Throttled => "throttled",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Error,
    Information,
}

/// One issue of an OperationOutcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutcomeIssue {
    pub severity: Severity,
    pub code: IssueType,
    pub diagnostics: String,
    pub expression: Option<String>,
}

impl OutcomeIssue {
    pub fn error(code: IssueType, diagnostics: impl Into<String>) -> Self {
        OutcomeIssue {
            severity: Severity::Error,
            code,
            diagnostics: diagnostics.into(),
            expression: None,
        }
    }

    pub fn information(diagnostics: impl Into<String>) -> Self {
        OutcomeIssue {
            severity: Severity::Information,
            code: IssueType::Informational,
            diagnostics: diagnostics.into(),
            expression: None,
        }
    }

    pub fn at(mut self, expression: impl Into<String>) -> Self {
        self.expression = Some(expression.into());
        self
    }
}

/// Renders an `OperationOutcome`.
pub fn operation_outcome(issues: &[OutcomeIssue]) -> Json {
    let mut oo = Object::default();
    oo.push("resourceType", Json::string("OperationOutcome"));
    let list = issues
        .iter()
        .map(|i| {
            let mut o = Object::default();
            let severity = match i.severity {
                Severity::Error => "error",
                Severity::Information => "information",
            };
            o.push("severity", Json::string(severity));
            o.push("code", Json::string(i.code.code()));
            o.push("diagnostics", Json::string(i.diagnostics.clone()));
            if let Some(e) = &i.expression {
                o.push("expression", Json::Array(vec![Json::string(e.clone())]));
            }
            Json::Object(o)
        })
        .collect();
    oo.push("issue", Json::Array(list));
    Json::Object(oo)
}

type Source = Box<dyn std::error::Error + Send + Sync>;

/// An error on its way to the client.
#[derive(Debug)]
pub struct ApiError {
    pub kind: ErrorKind,
    pub issues: Vec<OutcomeIssue>,
    /// For the server log only (internal errors); never sent.
    pub source: Option<Source>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.issues.first() {
            Some(i) => write!(f, "{}: {}", self.kind.status(), i.diagnostics),
            None => write!(f, "{}", self.kind.status()),
        }
    }
}

impl std::error::Error for ApiError {}

impl ApiError {
    pub fn new(kind: ErrorKind, diagnostics: impl Into<String>) -> Self {
        ApiError {
            kind,
            issues: vec![OutcomeIssue::error(kind.default_issue_type(), diagnostics)],
            source: None,
        }
    }

    pub fn with_issues(kind: ErrorKind, issues: Vec<OutcomeIssue>) -> Self {
        ApiError {
            kind,
            issues,
            source: None,
        }
    }

    pub fn invalid(diagnostics: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, diagnostics)
    }

    /// A 400 pointing at an element.
    pub fn invalid_at(expression: impl Into<String>, diagnostics: impl Into<String>) -> Self {
        Self::with_issues(
            ErrorKind::Invalid,
            vec![OutcomeIssue::error(IssueType::Structure, diagnostics).at(expression)],
        )
    }

    pub fn not_found(diagnostics: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, diagnostics)
    }

    /// An internal failure: the client sees a generic message, the log sees the source.
    pub fn internal(source: impl Into<Source>) -> Self {
        ApiError {
            kind: ErrorKind::Internal,
            issues: vec![OutcomeIssue::error(
                IssueType::Exception,
                "internal server error; the server log has details under this request's id",
            )],
            source: Some(source.into()),
        }
    }

    pub fn unavailable(source: impl Into<Source>) -> Self {
        ApiError {
            kind: ErrorKind::Unavailable,
            issues: vec![OutcomeIssue::error(
                IssueType::Transient,
                "the database is unavailable; retry later",
            )],
            source: Some(source.into()),
        }
    }

    pub fn status(&self) -> u16 {
        self.kind.status()
    }

    pub fn to_operation_outcome(&self) -> Json {
        operation_outcome(&self.issues)
    }
}

impl From<hearth_store::StoreError> for ApiError {
    fn from(e: hearth_store::StoreError) -> Self {
        use hearth_store::StoreError as S;
        match e {
            S::PreconditionFailed { current } => {
                let msg = match current {
                    Some(v) => format!("version mismatch: the current version is {v}"),
                    None => "version mismatch: the resource has no current version".to_owned(),
                };
                ApiError::new(ErrorKind::PreconditionFailed, msg)
            }
            S::Conflict => ApiError::new(
                ErrorKind::Conflict,
                "a concurrent write to the same resource won; read it again and retry",
            ),
            S::Unavailable(source) => ApiError::unavailable(source),
            S::Seal(source) | S::Internal(source) => ApiError::internal(source),
        }
    }
}
