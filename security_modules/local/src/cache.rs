//! The verified-credential cache of the HTTP `basic` module: a request must
//! not pay the argon2 cost every time. An entry is keyed by an HMAC-SHA256 of
//! the user name and password under a key made at start-up and held only in
//! memory, so the cache never holds a password or a hash that could be
//! attacked offline. Entries live a short time (`ttl`), and are dropped at
//! once for a user whose password, lock or roles change ([`Self::forget_user`]).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_lc_rs::hmac;
use hearth_security::VerifiedUser;

/// Entries kept at most; when full, expired entries go, then everything.
const MAX_ENTRIES: usize = 10_000;

type Key = [u8; 32];

struct Entry {
    user: VerifiedUser,
    /// The name the caller sent (the key of `forget_user`).
    login: String,
    expires: Instant,
}

pub struct CredentialCache {
    key: hmac::Key,
    ttl: Duration,
    entries: Mutex<HashMap<Key, Entry>>,
    /// Bumped before every drop: a verification that began before a drop
    /// does not put what it read (possibly the user's old row) back.
    generation: AtomicU64,
}

impl CredentialCache {
    /// A cache whose entries live `ttl` (zero turns caching off).
    pub fn new(ttl: Duration) -> Result<CredentialCache, String> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &rng)
            .map_err(|_| "no randomness for the credential cache key".to_owned())?;
        Ok(CredentialCache {
            key,
            ttl,
            entries: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
        })
    }

    fn key_of(&self, login: &str, password: &str) -> Key {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(&(login.len() as u64).to_be_bytes());
        ctx.update(login.as_bytes());
        ctx.update(password.as_bytes());
        let tag = ctx.sign();
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Entry>> {
        // A panic while holding the lock cannot leave a half-written entry
        // that matters (the worst is a missing entry): keep using the map.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The user these credentials were verified as, if that is recent.
    pub fn get(&self, login: &str, password: &str) -> Option<VerifiedUser> {
        if self.ttl.is_zero() {
            return None;
        }
        let key = self.key_of(login, password);
        let mut entries = self.lock();
        match entries.get(&key) {
            Some(e) if e.expires > Instant::now() => Some(e.user.clone()),
            Some(_) => {
                entries.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Take before asking the source; give to [`Self::put`].
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Remembers credentials a source has just accepted, unless entries were
    /// dropped since `generation` was taken (the source may have answered
    /// from a row that has changed since).
    pub fn put(&self, login: &str, password: &str, user: VerifiedUser, generation: u64) {
        if self.ttl.is_zero() {
            return;
        }
        let key = self.key_of(login, password);
        let now = Instant::now();
        let mut entries = self.lock();
        if self.generation.load(Ordering::Acquire) != generation {
            return;
        }
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, e| e.expires > now);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(
            key,
            Entry {
                user,
                login: login.to_owned(),
                expires: now + self.ttl,
            },
        );
    }

    /// Drops every entry of a user (password, lock or role change).
    pub fn forget_user(&self, login: &str) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.lock()
            .retain(|_, e| e.login != login && e.user.name != login);
    }

    /// Drops everything.
    pub fn clear(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.lock().clear();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn user(name: &str) -> VerifiedUser {
        VerifiedUser {
            name: name.into(),
            roles: vec![],
            source: "local",
            external_id: None,
        }
    }

    #[test]
    fn remembers_forgets_and_expires() {
        let c = CredentialCache::new(Duration::from_secs(60)).unwrap();
        assert!(c.get("alice", "pw1").is_none());
        c.put("alice", "pw1", user("alice"), c.generation());
        c.put("bob", "pw2", user("bob"), c.generation());
        assert_eq!(c.get("alice", "pw1").unwrap().name, "alice");
        assert!(c.get("alice", "pw2").is_none(), "another password");
        assert!(c.get("alicepw1", "").is_none(), "no ambiguity in the key");
        c.forget_user("alice");
        assert!(c.get("alice", "pw1").is_none());
        assert!(c.get("bob", "pw2").is_some());

        let short = CredentialCache::new(Duration::from_millis(1)).unwrap();
        short.put("alice", "pw1", user("alice"), short.generation());
        std::thread::sleep(Duration::from_millis(5));
        assert!(short.get("alice", "pw1").is_none());

        let off = CredentialCache::new(Duration::ZERO).unwrap();
        off.put("alice", "pw1", user("alice"), off.generation());
        assert!(off.get("alice", "pw1").is_none());

        // A verification that began before a drop does not put back what it read.
        let c = CredentialCache::new(Duration::from_secs(60)).unwrap();
        let before = c.generation();
        c.forget_user("carol");
        c.put("carol", "old-pw", user("carol"), before);
        assert!(c.get("carol", "old-pw").is_none());
        c.put("carol", "new-pw", user("carol"), c.generation());
        assert!(c.get("carol", "new-pw").is_some());
    }
}
