//! The JSON Admin API, served by listeners of kind `admin`: local users and
//! the audit chain. Requests pass the same guard as FHIR ones (each path is
//! an administration area: `users` needs `admin:users`, `audit` needs
//! `admin:audit`) and each leaves an audit row. Errors are the usual
//! `OperationOutcome`.
//!
//! - `GET /users`, `GET /users/{name}`: users without any secret.
//! - `PUT /users/{name}` with `{"password": "…", "roles": ["…"]}`: adds a
//!   local user or replaces its password and roles (the password may be left
//!   out to change only the roles of an existing user).
//! - `POST /users/{name}/lock`, `POST /users/{name}/unlock`.
//! - `GET /audit/verify`: the result of walking the audit chain.
//!
//! A change drops the user's cached credentials at once in this process,
//! and within about a second in the others.

use actix_web::http::{Method, StatusCode, header};
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use hearth_security::{AdminArea, Interaction};
use hearth_store::Store;
use hearth_store::schema::User;

use super::AppState;
use crate::error::{ApiError, ErrorKind};
use crate::json::{Json, Object};
use crate::store::DEFAULT_TENANT;

/// The administration area a request below the base path belongs to.
pub fn classify(_method: &Method, rel: &str) -> Option<Interaction> {
    let segments: Vec<&str> = rel.split('/').filter(|s| !s.is_empty()).collect();
    match segments.as_slice() {
        ["users", ..] => Some(Interaction::admin(AdminArea::Users)),
        ["audit", ..] => Some(Interaction::admin(AdminArea::Audit)),
        _ => None,
    }
}

pub fn routes(cfg: &mut web::ServiceConfig, base_path: &str) {
    use super::method_not_allowed;
    cfg.service(
        web::scope(if base_path == "/" { "" } else { base_path })
            .service(
                web::resource("/users")
                    .route(web::get().to(list_users))
                    .default_service(method_not_allowed()),
            )
            .service(
                web::resource("/users/{name}")
                    .route(web::get().to(get_user))
                    .route(web::put().to(put_user))
                    .default_service(method_not_allowed()),
            )
            .service(
                web::resource("/users/{name}/lock")
                    .route(web::post().to(lock_user))
                    .default_service(method_not_allowed()),
            )
            .service(
                web::resource("/users/{name}/unlock")
                    .route(web::post().to(unlock_user))
                    .default_service(method_not_allowed()),
            )
            .service(
                web::resource("/audit/verify")
                    .route(web::get().to(verify_audit))
                    .default_service(method_not_allowed()),
            ),
    );
}

fn json_response(status: StatusCode, body: Json) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::CONTENT_TYPE, "application/json"))
        .body(body.to_bytes())
}

fn object(members: Vec<(&str, Json)>) -> Json {
    let mut o = Object::default();
    for (k, v) in members {
        o.push(k, v);
    }
    Json::Object(o)
}

/// A user as the API shows it: never its password hash.
fn user_json(u: &User) -> Json {
    object(vec![
        ("name", Json::string(&u.name)),
        ("source", Json::string(&u.source)),
        (
            "roles",
            Json::Array(u.roles.split_whitespace().map(Json::string).collect()),
        ),
        ("locked", Json::Bool(u.locked)),
        (
            "lockedUntil",
            u.locked_until
                .map_or(Json::Null, |t| Json::string(crate::time::format_instant(t))),
        ),
        (
            "failedLogins",
            Json::Number(u.failed_logins.to_string().into()),
        ),
        (
            "created",
            Json::string(crate::time::format_instant(u.created_at)),
        ),
        (
            "updated",
            Json::string(crate::time::format_instant(u.updated_at)),
        ),
    ])
}

async fn find(state: &AppState, name: &str) -> Result<Option<User>, ApiError> {
    Ok(state.service.store().user(DEFAULT_TENANT, name).await?)
}

fn no_such_user(name: &str) -> ApiError {
    ApiError::not_found(format!("there is no user {name}"))
}

async fn list_users(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let users = state.service.store().users(DEFAULT_TENANT).await?;
    Ok(json_response(
        StatusCode::OK,
        object(vec![(
            "users",
            Json::Array(users.iter().map(user_json).collect()),
        )]),
    ))
}

async fn get_user(
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let name = path.into_inner();
    let user = find(&state, &name)
        .await?
        .ok_or_else(|| no_such_user(&name))?;
    Ok(json_response(StatusCode::OK, user_json(&user)))
}

/// The body of `PUT /users/{name}`.
struct UserChange {
    password: Option<String>,
    roles: Vec<String>,
}

fn user_change(body: &[u8]) -> Result<UserChange, ApiError> {
    let json = crate::json::parse(body)
        .map_err(|e| ApiError::invalid(format!("the body is not JSON: {e}")))?;
    let Json::Object(o) = json else {
        return Err(ApiError::invalid("the body must be a JSON object"));
    };
    let mut change = UserChange {
        password: None,
        roles: Vec::new(),
    };
    let mut roles_given = false;
    for (key, value) in o.iter() {
        match (key, value) {
            ("password", Json::String(p)) => change.password = Some(p.clone()),
            ("roles", Json::Array(list)) => {
                roles_given = true;
                for r in list {
                    let Json::String(r) = r else {
                        return Err(ApiError::invalid("roles must be strings"));
                    };
                    change.roles.push(r.clone());
                }
            }
            ("password" | "roles", _) => {
                return Err(ApiError::invalid(format!("{key} has the wrong type")));
            }
            (other, _) => return Err(ApiError::invalid(format!("unknown member {other}"))),
        }
    }
    if !roles_given {
        return Err(ApiError::invalid("roles is required (it may be empty)"));
    }
    Ok(change)
}

/// Whether the caller may manage a user holding `roles`: a superuser may
/// manage anyone; anyone else only users whose roles carry no
/// administration right the caller lacks (so `admin:users` cannot make, or
/// take over, a superuser).
fn may_manage(req: &HttpRequest, state: &AppState, roles: &[String]) -> Result<(), ApiError> {
    use hearth_security::Permission;
    let access = req
        .extensions()
        .get::<super::Access>()
        .cloned()
        .ok_or_else(|| ApiError::internal("an admin request without an access decision"))?;
    let mine = access.principal.permissions();
    if mine.contains(&Permission::Superuser) {
        return Ok(());
    }
    for role in roles {
        for p in state.modules.role_permissions(role) {
            let beyond = match p {
                Permission::Superuser => true,
                Permission::Admin(_) => !mine.contains(p),
                _ => false,
            };
            if beyond {
                return Err(ApiError::new(
                    ErrorKind::Forbidden,
                    format!(
                        "access denied: the role {role} carries rights this caller does not have"
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn user_error(e: crate::auth::UserError) -> ApiError {
    use crate::auth::UserError as E;
    match e {
        E::Invalid(m) => ApiError::invalid(m),
        E::NotFound(m) => ApiError::not_found(m),
        E::Managed(m) => ApiError::new(ErrorKind::Conflict, m),
        E::Failed(m) => ApiError::internal(m),
    }
}

fn roles_of(user: &User) -> Vec<String> {
    user.roles.split_whitespace().map(str::to_owned).collect()
}

/// Notes what a change did in the request's audit row (never a password).
fn audit_detail(req: &HttpRequest, detail: String) {
    if let Some(facts) = req.extensions_mut().get_mut::<super::audit::AuditFacts>() {
        facts.detail = detail;
    }
}

fn from_directory(user: &User) -> ApiError {
    ApiError::new(
        ErrorKind::Conflict,
        format!(
            "{} comes from the {} directory and is managed there",
            user.name, user.source
        ),
    )
}

async fn put_user(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let name = path.into_inner();
    let change = user_change(&body)?;
    let existing = find(&state, &name).await?;
    if let Some(u) = &existing {
        if u.source != "local" {
            return Err(from_directory(u));
        }
        may_manage(&req, &state, &roles_of(u))?;
    }
    may_manage(&req, &state, &change.roles)?;
    let store = state.service.store();
    match (&change.password, &existing) {
        (Some(password), _) => {
            crate::auth::set_local_user(store, &name, password, &change.roles)
                .await
                .map_err(user_error)?;
        }
        (None, Some(u)) => {
            // An administrator's password must meet the stricter policy:
            // becoming one takes a new password.
            let admin = |roles: &[String]| roles.iter().any(|r| r == "admin");
            if admin(&change.roles) && !admin(&roles_of(u)) {
                return Err(ApiError::invalid(
                    "a user who becomes an administrator needs a new password",
                ));
            }
            crate::auth::set_user_roles(store, &name, &change.roles)
                .await
                .map_err(user_error)?;
        }
        (None, None) => {
            return Err(ApiError::invalid("a new user needs a password"));
        }
    }
    audit_detail(
        &req,
        format!(
            "user {name}: roles [{}]{}",
            change.roles.join(" "),
            if change.password.is_some() {
                ", password set"
            } else {
                ""
            }
        ),
    );
    state.modules.forget_user(&name);
    let user = find(&state, &name)
        .await?
        .ok_or_else(|| ApiError::internal("a saved user is missing"))?;
    let status = if existing.is_some() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok(json_response(status, user_json(&user)))
}

async fn set_locked(
    req: HttpRequest,
    name: String,
    state: web::Data<AppState>,
    locked: bool,
) -> Result<HttpResponse, ApiError> {
    let user = find(&state, &name)
        .await?
        .ok_or_else(|| no_such_user(&name))?;
    if user.source != "local" {
        return Err(from_directory(&user));
    }
    may_manage(&req, &state, &roles_of(&user))?;
    crate::auth::set_user_locked(state.service.store(), &name, locked)
        .await
        .map_err(user_error)?;
    audit_detail(
        &req,
        format!(
            "user {name}: {}",
            if locked { "locked" } else { "unlocked" }
        ),
    );
    state.modules.forget_user(&name);
    let user = find(&state, &name)
        .await?
        .ok_or_else(|| no_such_user(&name))?;
    Ok(json_response(StatusCode::OK, user_json(&user)))
}

async fn lock_user(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    set_locked(req, path.into_inner(), state, true).await
}

async fn unlock_user(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    set_locked(req, path.into_inner(), state, false).await
}

async fn verify_audit(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let keys = state.service.keys();
    let verdict = crate::audit::verify(state.service.store(), &keys, DEFAULT_TENANT)
        .await
        .map_err(ApiError::internal)?;
    let body = match verdict {
        crate::audit::Verdict::Intact { rows } => object(vec![
            ("intact", Json::Bool(true)),
            ("rows", Json::Number(rows.to_string().into())),
        ]),
        crate::audit::Verdict::Broken { seq, reason } => object(vec![
            ("intact", Json::Bool(false)),
            ("brokenAt", Json::Number(seq.to_string().into())),
            ("reason", Json::string(reason)),
        ]),
    };
    Ok(json_response(StatusCode::OK, body))
}
