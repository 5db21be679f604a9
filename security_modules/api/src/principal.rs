//! Who is calling: the output of authentication and the input of [`crate::access`].
//!
//! An authentication module builds a `Principal` once per request, from a session,
//! a password check or a validated token, and nothing changes it afterwards:
//!
//! ```
//! use hearth_security::{Permission, Principal, parse_scopes};
//!
//! let read_all: Permission = "read:*".parse().unwrap();
//! let (scopes, _refused) = parse_scopes("launch/patient patient/Observation.rs");
//! let p = Principal::user("alice")
//!     .with_role("clinician")
//!     .with_permission(read_all)
//!     .via_client("growth-chart")
//!     .with_scopes(scopes)
//!     .with_launch_patient("123");
//! assert!(p.has_token());
//! ```

use crate::permission::Permission;
use crate::scope::Scope;

/// The kind of caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PrincipalKind {
    /// A person, possibly through an app (`client_id`) holding a token for them.
    User,
    /// A SMART/OIDC client acting for itself (client credentials, `system/` scopes).
    Client,
    /// Nobody authenticated.
    Anonymous,
}

/// The authenticated caller and its rights.
///
/// `permissions` are the caller's configured rights (resolved by the authentication
/// module, for instance from `roles`; the engine reads permissions, not roles).
/// `scopes` is `Some` when the caller presented a SMART/OAuth token, even one without
/// resource scopes; the scopes then limit the permissions (see [`crate::access`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    kind: PrincipalKind,
    user: Option<String>,
    client_id: Option<String>,
    roles: Vec<String>,
    permissions: Vec<Permission>,
    scopes: Option<Vec<Scope>>,
    launch_patient: Option<String>,
}

impl Principal {
    fn new(kind: PrincipalKind) -> Principal {
        Principal {
            kind,
            user: None,
            client_id: None,
            roles: Vec::new(),
            permissions: Vec::new(),
            scopes: None,
            launch_patient: None,
        }
    }

    /// Nobody: no permissions, no token.
    pub fn anonymous() -> Principal {
        Principal::new(PrincipalKind::Anonymous)
    }

    /// A signed-in user, with no permissions yet.
    pub fn user(name: impl Into<String>) -> Principal {
        Principal {
            user: Some(name.into()),
            ..Principal::new(PrincipalKind::User)
        }
    }

    /// A client acting for itself, with no permissions yet.
    pub fn client(client_id: impl Into<String>) -> Principal {
        Principal {
            client_id: Some(client_id.into()),
            ..Principal::new(PrincipalKind::Client)
        }
    }

    /// The app (OAuth client) a user's token was issued to.
    pub fn via_client(mut self, client_id: impl Into<String>) -> Principal {
        self.client_id = Some(client_id.into());
        self
    }

    pub fn with_role(mut self, role: impl Into<String>) -> Principal {
        self.roles.push(role.into());
        self
    }

    pub fn with_permission(mut self, permission: Permission) -> Principal {
        self.permissions.push(permission);
        self
    }

    pub fn with_permissions(
        mut self,
        permissions: impl IntoIterator<Item = Permission>,
    ) -> Principal {
        self.permissions.extend(permissions);
        self
    }

    /// Marks the principal as holding a token with these scopes (possibly none).
    pub fn with_scopes(mut self, scopes: impl IntoIterator<Item = Scope>) -> Principal {
        self.scopes.get_or_insert_with(Vec::new).extend(scopes);
        self
    }

    /// The patient of a SMART patient launch (the id of `Patient/<id>`).
    pub fn with_launch_patient(mut self, patient_id: impl Into<String>) -> Principal {
        self.launch_patient = Some(patient_id.into());
        self
    }

    pub fn kind(&self) -> PrincipalKind {
        self.kind
    }

    pub fn user_name(&self) -> Option<&str> {
        self.user.as_deref()
    }

    pub fn client_id(&self) -> Option<&str> {
        self.client_id.as_deref()
    }

    pub fn roles(&self) -> &[String] {
        &self.roles
    }

    pub fn permissions(&self) -> &[Permission] {
        &self.permissions
    }

    /// The token's scopes; `None` when the principal holds no token.
    pub fn scopes(&self) -> Option<&[Scope]> {
        self.scopes.as_deref()
    }

    pub fn has_token(&self) -> bool {
        self.scopes.is_some()
    }

    pub fn launch_patient(&self) -> Option<&str> {
        self.launch_patient.as_deref()
    }

    /// A short description for logs and audit: `user alice via app`, `client app`,
    /// `anonymous`.
    pub fn describe(&self) -> String {
        match (self.kind, &self.user, &self.client_id) {
            (PrincipalKind::Anonymous, _, _) => "anonymous".to_owned(),
            (PrincipalKind::Client, _, Some(c)) => format!("client {c}"),
            (PrincipalKind::Client, _, None) => "client".to_owned(),
            (PrincipalKind::User, Some(u), Some(c)) => format!("user {u} via {c}"),
            (PrincipalKind::User, Some(u), None) => format!("user {u}"),
            (PrincipalKind::User, None, _) => "user".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders() {
        let a = Principal::anonymous();
        assert_eq!(a.kind(), PrincipalKind::Anonymous);
        assert!(!a.has_token() && a.permissions().is_empty());
        assert_eq!(a.describe(), "anonymous");

        let u = Principal::user("alice")
            .with_role("nurse")
            .with_permission(Permission::Superuser)
            .via_client("app");
        assert_eq!(u.user_name(), Some("alice"));
        assert_eq!(u.roles(), ["nurse".to_owned()]);
        assert_eq!(u.describe(), "user alice via app");
        assert_eq!(u.scopes(), None);

        let c = Principal::client("backend")
            .with_scopes([])
            .with_launch_patient("9");
        assert_eq!(c.scopes(), Some(&[][..]));
        assert_eq!(c.launch_patient(), Some("9"));
        assert_eq!(c.describe(), "client backend");
    }
}
