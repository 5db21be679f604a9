//! The claims of a token whose signature verified: the checks (issuer,
//! audience, time) and the mapping to a [`VerifiedToken`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hearth_security::{Principal, parse_scopes};
use serde_json::{Map, Value};

use crate::TokenError;
use crate::config::Settings;

/// What a valid token says about its holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    /// `sub`: the user, or the client itself for client-credentials tokens.
    pub subject: String,
    /// The value of the configured user claim (`sub` by default).
    pub user: String,
    /// `iss` (the configured issuer).
    pub issuer: String,
    /// The OAuth client the token was issued to: `client_id` (RFC 9068),
    /// else `azp` (OpenID Connect).
    pub client_id: Option<String>,
    /// From the configured roles claim; empty without one.
    pub roles: Vec<String>,
    /// The granted scopes as the token states them (`scope`, or `scp`),
    /// unparsed: SMART scopes are parsed by [`VerifiedToken::principal`].
    pub scopes: Vec<String>,
    /// `exp`.
    pub expires_at: SystemTime,
    /// `jti`.
    pub token_id: Option<String>,
    /// SMART's `fhirUser` claim (`Practitioner/123`), when present.
    pub fhir_user: Option<String>,
    /// SMART's `patient` claim (the launch patient's id), when present.
    pub patient: Option<String>,
}

impl VerifiedToken {
    /// Whether the token is held by a client acting for itself (client
    /// credentials: its `sub` is its own `client_id`, RFC 9068 section 2.2).
    pub fn is_client(&self) -> bool {
        self.client_id.as_deref() == Some(self.subject.as_str())
    }

    /// The caller as [`hearth_security`] sees it, **without permissions**:
    /// the caller resolves those (from `roles`, its own configuration) and
    /// adds them with `Principal::with_permissions`. A client-credentials
    /// token becomes `Principal::client`, any other `Principal::user(user)`
    /// via its client. The scopes are parsed as SMART scopes (the principal
    /// holds a token even with none); the strings that are not SMART scopes
    /// are returned beside it. The `patient` claim is the launch patient.
    pub fn principal(&self) -> (Principal, Vec<String>) {
        let mut principal = match &self.client_id {
            Some(client) if self.is_client() => Principal::client(client.clone()),
            Some(client) => Principal::user(self.user.clone()).via_client(client.clone()),
            None => Principal::user(self.user.clone()),
        };
        for role in &self.roles {
            principal = principal.with_role(role.clone());
        }
        let (scopes, refused) = parse_scopes(&self.scopes.join(" "));
        principal = principal.with_scopes(scopes);
        if let Some(patient) = &self.patient {
            principal = principal.with_launch_patient(patient.clone());
        }
        (principal, refused)
    }
}

/// Checks the claims at `now` and maps them.
pub(crate) fn check(
    claims: &Map<String, Value>,
    settings: &Settings,
    now: SystemTime,
) -> Result<VerifiedToken, TokenError> {
    let issuer = required_string(claims, "iss")?;
    if issuer != settings.issuer {
        return Err(TokenError::WrongIssuer);
    }
    check_audience(claims, &settings.audience)?;

    let now = now
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs_f64();
    let leeway = settings.leeway.as_secs_f64();
    let exp = numeric_date(claims, "exp")?.ok_or_else(|| missing("exp"))?;
    if now >= exp + leeway {
        return Err(TokenError::Expired);
    }
    if let Some(nbf) = numeric_date(claims, "nbf")?
        && now + leeway < nbf
    {
        return Err(TokenError::NotYetValid);
    }
    match (numeric_date(claims, "iat")?, settings.max_token_age) {
        (Some(iat), _) if iat > now + leeway => return Err(TokenError::IssuedInFuture),
        (Some(iat), Some(max_age)) if now - iat > max_age.as_secs_f64() + leeway => {
            return Err(TokenError::TooOld);
        }
        (None, Some(_)) => return Err(missing("iat")),
        _ => {}
    }
    let expires_at = Duration::try_from_secs_f64(exp)
        .ok()
        .and_then(|d| UNIX_EPOCH.checked_add(d))
        .ok_or_else(|| invalid("exp"))?;

    let subject = required_string(claims, "sub")?;
    let user = match lookup(claims, &settings.user_claim) {
        Some(Value::String(user)) if !user.is_empty() => user.clone(),
        Some(Value::String(_)) | None | Some(Value::Null) => {
            return Err(TokenError::MissingClaim(settings.user_claim.clone()));
        }
        Some(_) => return Err(TokenError::InvalidClaim(settings.user_claim.clone())),
    };
    let client_id = match optional_string(claims, "client_id")? {
        Some(id) => Some(id),
        None => optional_string(claims, "azp")?,
    };
    let scopes = match lookup(claims, &settings.scope_claim) {
        Some(value) if !value.is_null() => word_list(value, &settings.scope_claim)?,
        _ => match claims.get("scp") {
            Some(value) if !value.is_null() => word_list(value, "scp")?,
            _ => Vec::new(),
        },
    };
    let roles = match &settings.roles_claim {
        Some(name) => match lookup(claims, name) {
            Some(value) if !value.is_null() => word_list(value, name)?,
            _ => Vec::new(),
        },
        None => Vec::new(),
    };

    Ok(VerifiedToken {
        subject,
        user,
        issuer,
        client_id,
        roles,
        scopes,
        expires_at,
        token_id: optional_string(claims, "jti")?,
        fhir_user: optional_string(claims, "fhirUser")?,
        patient: optional_string(claims, "patient")?,
    })
}

fn missing(name: &str) -> TokenError {
    TokenError::MissingClaim(name.to_owned())
}

fn invalid(name: &str) -> TokenError {
    TokenError::InvalidClaim(name.to_owned())
}

/// The claim `name`: a top-level claim of that exact name, else the dotted
/// path through nested objects (`realm_access.roles`).
fn lookup<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    if let Some(value) = claims.get(name) {
        return Some(value);
    }
    let mut parts = name.split('.');
    let mut value = claims.get(parts.next()?)?;
    for part in parts {
        value = value.as_object()?.get(part)?;
    }
    Some(value)
}

fn required_string(claims: &Map<String, Value>, name: &str) -> Result<String, TokenError> {
    optional_string(claims, name)?
        .filter(|s| !s.is_empty())
        .ok_or_else(|| missing(name))
}

fn optional_string(claims: &Map<String, Value>, name: &str) -> Result<Option<String>, TokenError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(invalid(name)),
    }
}

/// A NumericDate (seconds since the epoch, possibly fractional).
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<f64>, TokenError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(t) if t.is_finite() && t >= 0.0 => Ok(Some(t)),
            _ => Err(invalid(name)),
        },
        Some(_) => Err(invalid(name)),
    }
}

/// `aud`: one string or a list of strings; one must be accepted.
fn check_audience(claims: &Map<String, Value>, accepted: &[String]) -> Result<(), TokenError> {
    let found = match claims.get("aud") {
        None | Some(Value::Null) => return Err(missing("aud")),
        Some(Value::String(aud)) => accepted.contains(aud),
        Some(Value::Array(list)) => {
            let mut found = false;
            for aud in list {
                let aud = aud.as_str().ok_or_else(|| invalid("aud"))?;
                found |= accepted.iter().any(|a| a == aud);
            }
            found
        }
        Some(_) => return Err(invalid("aud")),
    };
    if found {
        Ok(())
    } else {
        Err(TokenError::WrongAudience)
    }
}

/// A list of strings, or one space-separated string.
fn word_list(value: &Value, name: &str) -> Result<Vec<String>, TokenError> {
    match value {
        Value::String(text) => Ok(text.split_ascii_whitespace().map(str::to_owned).collect()),
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::String(s) => Ok(s.clone()),
                _ => Err(invalid(name)),
            })
            .collect(),
        _ => Err(invalid(name)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::OidcConfig;
    use hearth_security::PrincipalKind;
    use serde_json::json;

    const ISS: &str = "https://idp.example.org";
    const NOW: u64 = 1_800_000_000;

    fn settings(edit: impl FnOnce(&mut OidcConfig)) -> Settings {
        let mut config = OidcConfig::new(ISS, ["api", "https://fhir.example.org"]);
        edit(&mut config);
        Settings::check(&config).unwrap()
    }

    fn claims(extra: Value) -> Map<String, Value> {
        let mut base = json!({
            "iss": ISS,
            "aud": "api",
            "sub": "alice",
            "exp": NOW + 300,
            "iat": NOW - 10,
        });
        let (Value::Object(map), Value::Object(extra)) = (&mut base, extra) else {
            unreachable!()
        };
        for (k, v) in extra {
            if v == json!("<remove>") {
                map.remove(&k);
            } else {
                map.insert(k, v);
            }
        }
        base.as_object().unwrap().clone()
    }

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    fn run(extra: Value) -> Result<VerifiedToken, TokenError> {
        check(&claims(extra), &settings(|_| {}), at(NOW))
    }

    #[test]
    fn maps_a_user_token() {
        let t = check(
            &claims(json!({
                "azp": "growth-chart",
                "preferred_username": "Alice.W",
                "realm_access": {"roles": ["nurse", "admin"]},
                "scope": "openid  patient/Observation.rs launch/patient bogus",
                "jti": "t-1",
                "fhirUser": "Practitioner/7",
                "patient": "123",
            })),
            &settings(|c| {
                c.user_claim = "preferred_username".into();
                c.roles_claim = Some("realm_access.roles".into());
            }),
            at(NOW),
        )
        .unwrap();
        assert_eq!(t.subject, "alice");
        assert_eq!(t.user, "Alice.W");
        assert_eq!(t.issuer, ISS);
        assert_eq!(t.client_id.as_deref(), Some("growth-chart"));
        assert_eq!(t.roles, ["nurse", "admin"]);
        assert_eq!(
            t.scopes,
            [
                "openid",
                "patient/Observation.rs",
                "launch/patient",
                "bogus"
            ]
        );
        assert_eq!(t.expires_at, at(NOW + 300));
        assert_eq!(t.token_id.as_deref(), Some("t-1"));
        assert_eq!(t.fhir_user.as_deref(), Some("Practitioner/7"));
        assert_eq!(t.patient.as_deref(), Some("123"));
        assert!(!t.is_client());

        let (p, refused) = t.principal();
        assert_eq!(p.kind(), PrincipalKind::User);
        assert_eq!(p.describe(), "user Alice.W via growth-chart");
        assert_eq!(p.roles(), ["nurse".to_owned(), "admin".to_owned()]);
        assert_eq!(p.scopes().map(<[_]>::len), Some(3));
        assert_eq!(p.launch_patient(), Some("123"));
        assert!(p.permissions().is_empty());
        assert_eq!(refused, ["bogus"]);
    }

    #[test]
    fn client_credentials_become_a_client() {
        let t = run(json!({"sub": "backend", "client_id": "backend", "azp": "other"})).unwrap();
        assert!(t.is_client());
        assert_eq!(t.client_id.as_deref(), Some("backend"));
        let (p, _) = t.principal();
        assert_eq!(p.kind(), PrincipalKind::Client);
        assert!(p.has_token());
        assert_eq!(p.describe(), "client backend");
    }

    #[test]
    fn issuer_and_audience() {
        assert_eq!(
            run(json!({"iss": "https://idp.example.org/"})),
            Err(TokenError::WrongIssuer)
        );
        assert_eq!(run(json!({"iss": "<remove>"})), Err(missing("iss")));
        assert_eq!(run(json!({"iss": 1})), Err(invalid("iss")));
        assert_eq!(run(json!({"aud": "other"})), Err(TokenError::WrongAudience));
        assert_eq!(run(json!({"aud": []})), Err(TokenError::WrongAudience));
        assert_eq!(run(json!({"aud": "<remove>"})), Err(missing("aud")));
        assert_eq!(run(json!({"aud": ["x", 1]})), Err(invalid("aud")));
        assert!(run(json!({"aud": ["x", "https://fhir.example.org"]})).is_ok());
    }

    #[test]
    fn time_claims_with_leeway() {
        let s = settings(|c| c.leeway = Duration::from_secs(60));
        let check_at = |extra, now| check(&claims(extra), &s, at(now));
        // exp: valid until exp + leeway (exclusive).
        assert!(check_at(json!({"exp": NOW}), NOW + 59).is_ok());
        assert_eq!(
            check_at(json!({"exp": NOW}), NOW + 60),
            Err(TokenError::Expired)
        );
        assert_eq!(
            check_at(json!({"exp": "<remove>"}), NOW),
            Err(missing("exp"))
        );
        assert_eq!(check_at(json!({"exp": "soon"}), NOW), Err(invalid("exp")));
        assert_eq!(check_at(json!({"exp": -5}), NOW), Err(invalid("exp")));
        assert_eq!(check_at(json!({"exp": 1e300}), NOW), Err(invalid("exp")));
        assert!(check_at(json!({"exp": (NOW + 10) as f64 + 0.5}), NOW).is_ok());
        // nbf
        assert!(check_at(json!({"nbf": NOW + 60}), NOW).is_ok());
        assert_eq!(
            check_at(json!({"nbf": NOW + 61}), NOW),
            Err(TokenError::NotYetValid)
        );
        // iat
        assert!(check_at(json!({"iat": NOW + 60}), NOW).is_ok());
        assert_eq!(
            check_at(json!({"iat": NOW + 61}), NOW),
            Err(TokenError::IssuedInFuture)
        );
        assert!(check_at(json!({"iat": "<remove>"}), NOW).is_ok());

        let s = settings(|c| {
            c.leeway = Duration::ZERO;
            c.max_token_age = Some(Duration::from_secs(3600));
        });
        let check_at = |extra, now| check(&claims(extra), &s, at(now));
        assert!(check_at(json!({"iat": NOW - 3600, "exp": NOW + 10}), NOW).is_ok());
        assert_eq!(
            check_at(json!({"iat": NOW - 3601, "exp": NOW + 10}), NOW),
            Err(TokenError::TooOld)
        );
        assert_eq!(
            check_at(json!({"iat": "<remove>"}), NOW),
            Err(missing("iat"))
        );
    }

    #[test]
    fn subject_and_user() {
        assert_eq!(run(json!({"sub": "<remove>"})), Err(missing("sub")));
        assert_eq!(run(json!({"sub": ""})), Err(missing("sub")));
        let s = settings(|c| c.user_claim = "preferred_username".into());
        assert_eq!(
            check(&claims(json!({})), &s, at(NOW)),
            Err(missing("preferred_username"))
        );
        assert_eq!(
            check(&claims(json!({"preferred_username": ["a"]})), &s, at(NOW)),
            Err(invalid("preferred_username"))
        );
    }

    #[test]
    fn scopes_and_roles_shapes() {
        let t = run(json!({"scope": "a b"})).unwrap();
        assert_eq!(t.scopes, ["a", "b"]);
        let t = run(json!({"scope": ["a", "b c"]})).unwrap();
        assert_eq!(t.scopes, ["a", "b c"]);
        let t = run(json!({"scp": ["x", "y"]})).unwrap();
        assert_eq!(t.scopes, ["x", "y"]);
        let t = run(json!({"scp": "x y"})).unwrap();
        assert_eq!(t.scopes, ["x", "y"]);
        let t = run(json!({"scope": "a", "scp": ["x"]})).unwrap();
        assert_eq!(t.scopes, ["a"]);
        assert!(run(json!({})).unwrap().scopes.is_empty());
        assert_eq!(run(json!({"scope": 5})), Err(invalid("scope")));

        let s = settings(|c| c.roles_claim = Some("https://example.org/roles".into()));
        let t = check(
            &claims(json!({"https://example.org/roles": "a  b"})),
            &s,
            at(NOW),
        )
        .unwrap();
        assert_eq!(t.roles, ["a", "b"]);
        assert!(
            check(&claims(json!({})), &s, at(NOW))
                .unwrap()
                .roles
                .is_empty()
        );

        let s = settings(|c| c.roles_claim = Some("resource_access.fhir.roles".into()));
        let t = check(
            &claims(json!({"resource_access": {"fhir": {"roles": ["r1"]}}})),
            &s,
            at(NOW),
        )
        .unwrap();
        assert_eq!(t.roles, ["r1"]);
        assert!(
            check(&claims(json!({"resource_access": "x"})), &s, at(NOW))
                .unwrap()
                .roles
                .is_empty()
        );
        assert_eq!(
            check(
                &claims(json!({"resource_access": {"fhir": {"roles": [1]}}})),
                &s,
                at(NOW)
            ),
            Err(invalid("resource_access.fhir.roles"))
        );
    }

    #[test]
    fn optional_claims_must_be_strings() {
        assert_eq!(run(json!({"jti": 5})), Err(invalid("jti")));
        assert_eq!(run(json!({"fhirUser": {}})), Err(invalid("fhirUser")));
        assert_eq!(run(json!({"patient": 123})), Err(invalid("patient")));
        assert_eq!(run(json!({"client_id": true})), Err(invalid("client_id")));
        let t = run(json!({})).unwrap();
        assert_eq!(
            (t.client_id, t.token_id, t.fhir_user, t.patient),
            (None, None, None, None)
        );
    }
}
