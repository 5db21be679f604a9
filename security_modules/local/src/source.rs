//! The `local` credential source over the application's user table.

use std::future::Future;

use hearth_security::{CredentialError, CredentialSource, VerifiedUser};

/// A user row as the source needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalUser {
    pub name: String,
    /// PHC argon2id string; None for users that exist only as shadows of an
    /// external identity (LDAP, OIDC) and cannot sign in with a password here.
    pub password_hash: Option<String>,
    pub roles: Vec<String>,
    /// Locked by an administrator, or by too many failures until `locked_until`.
    pub locked: bool,
    /// Microseconds since the epoch until which failures keep the account locked.
    pub locked_until: Option<i64>,
    pub failed_logins: i32,
}

/// The user table, implemented by the application over its store.
pub trait UserDirectory: Send + Sync {
    fn user(&self, name: &str) -> impl Future<Output = Result<Option<LocalUser>, String>> + Send;

    /// Counts a failed sign-in (and locks the account when the policy says so).
    fn record_failure(&self, name: &str) -> impl Future<Output = Result<(), String>> + Send;

    /// Clears the failure count after a successful sign-in.
    fn record_success(&self, name: &str) -> impl Future<Output = Result<(), String>> + Send;
}

/// Verifies passwords against the user table.
pub struct LocalSource<D> {
    directory: D,
    /// A hash verified for unknown users, so that "no such user" takes as long
    /// as "wrong password".
    decoy: String,
    now_micros: fn() -> i64,
}

impl<D: UserDirectory> LocalSource<D> {
    pub fn new(directory: D, now_micros: fn() -> i64) -> Result<Self, String> {
        Ok(LocalSource {
            directory,
            decoy: crate::hash_password("decoy password 1")?,
            now_micros,
        })
    }

    pub fn directory(&self) -> &D {
        &self.directory
    }
}

async fn verify_off_thread(password: &str, hash: &str) -> bool {
    let (p, h) = (password.to_owned(), hash.to_owned());
    tokio::task::spawn_blocking(move || crate::verify_password(&p, &h))
        .await
        .unwrap_or(false)
}

impl<D: UserDirectory> CredentialSource for LocalSource<D> {
    async fn verify(&self, user: &str, password: &str) -> Result<VerifiedUser, CredentialError> {
        if password.is_empty() {
            return Err(CredentialError::EmptyPassword);
        }
        let row = self
            .directory
            .user(user)
            .await
            .map_err(CredentialError::Unavailable)?;
        let Some(row) = row else {
            verify_off_thread(password, &self.decoy).await;
            return Err(CredentialError::BadCredentials);
        };
        let Some(hash) = row.password_hash.as_deref() else {
            verify_off_thread(password, &self.decoy).await;
            return Err(CredentialError::BadCredentials);
        };
        if row.locked || row.locked_until.is_some_and(|t| t > (self.now_micros)()) {
            return Err(CredentialError::Locked);
        }
        if verify_off_thread(password, hash).await {
            if row.failed_logins > 0 {
                self.directory
                    .record_success(&row.name)
                    .await
                    .map_err(CredentialError::Unavailable)?;
            }
            Ok(VerifiedUser {
                name: row.name,
                roles: row.roles,
                source: "local",
                external_id: None,
            })
        } else {
            self.directory
                .record_failure(&row.name)
                .await
                .map_err(CredentialError::Unavailable)?;
            Err(CredentialError::BadCredentials)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::Mutex;

    struct Memory(Mutex<Vec<LocalUser>>);

    impl UserDirectory for Memory {
        async fn user(&self, name: &str) -> Result<Option<LocalUser>, String> {
            Ok(self
                .0
                .lock()
                .unwrap()
                .iter()
                .find(|u| u.name == name)
                .cloned())
        }
        async fn record_failure(&self, name: &str) -> Result<(), String> {
            for u in self.0.lock().unwrap().iter_mut().filter(|u| u.name == name) {
                u.failed_logins += 1;
                if u.failed_logins >= 3 {
                    u.locked_until = Some(i64::MAX);
                }
            }
            Ok(())
        }
        async fn record_success(&self, name: &str) -> Result<(), String> {
            for u in self.0.lock().unwrap().iter_mut().filter(|u| u.name == name) {
                u.failed_logins = 0;
            }
            Ok(())
        }
    }

    fn now() -> i64 {
        0
    }

    #[tokio::test]
    async fn verifies_counts_and_locks() {
        let alice = LocalUser {
            name: "alice".into(),
            password_hash: Some(crate::hash_password("secret-pw1").unwrap()),
            roles: vec!["clinician".into()],
            locked: false,
            locked_until: None,
            failed_logins: 0,
        };
        let src = LocalSource::new(Memory(Mutex::new(vec![alice])), now).unwrap();
        let ok = src.verify("alice", "secret-pw1").await.unwrap();
        assert_eq!((ok.name.as_str(), ok.source), ("alice", "local"));
        assert_eq!(ok.roles, ["clinician"]);
        assert_eq!(
            src.verify("alice", "").await,
            Err(CredentialError::EmptyPassword)
        );
        assert_eq!(
            src.verify("nobody", "secret-pw1").await,
            Err(CredentialError::BadCredentials)
        );
        for _ in 0..3 {
            assert_eq!(
                src.verify("alice", "wrong-pw1").await,
                Err(CredentialError::BadCredentials)
            );
        }
        // Locked now, even with the right password.
        assert_eq!(
            src.verify("alice", "secret-pw1").await,
            Err(CredentialError::Locked)
        );
    }
}
