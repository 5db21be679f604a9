//! The cached key set and the rules for fetching it again.
//!
//! - The set is fetched at first use (or by [`crate::OidcValidator::refresh`]).
//! - A token whose key is not in the set triggers a fetch, but only if the
//!   last fetch (successful or not) started at least
//!   `jwks_refresh_min_interval` ago: tokens with made-up `kid`s cannot make
//!   the validator hammer the issuer. A failed first fetch is retried on the
//!   same schedule; until then validations answer `Unavailable`.
//! - A set older than `jwks_max_age` is fetched again at the next
//!   validation; if that fetch fails the old set keeps serving (and the fetch
//!   is retried after the minimum interval), so a short outage of the issuer
//!   does not refuse every token.
//! - One fetch at a time: validations that need a fetch while one is under
//!   way wait for it and use its result instead of fetching again.
//!
//! Validations that find their key in a fresh cached set never wait for a
//! fetch.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::Mutex;
use url::Url;

use crate::TokenError;
use crate::http::Fetcher;
use crate::jwks::KeySet;

/// A key set as fetched at one moment.
pub(crate) struct Snapshot {
    /// Increases with every successful fetch (the first is 1).
    pub generation: u64,
    pub fetched_at: Instant,
    pub keys: KeySet,
}

/// Why a fetch is wanted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    /// No key set yet.
    First,
    /// The cached set is older than the maximum age.
    Stale,
    /// The token's key is not in the cached set.
    UnknownKey,
    /// Asked for explicitly: not rate limited.
    Forced,
}

/// The state of fetching, one fetch at a time.
struct FetchState {
    last_attempt: Option<Instant>,
    last_failure: Option<String>,
    /// The key set's URL found through discovery.
    jwks_uri: Option<Url>,
    generation: u64,
}

pub(crate) struct KeyCache {
    fetcher: Fetcher,
    current: RwLock<Option<Arc<Snapshot>>>,
    fetching: Mutex<FetchState>,
    min_interval: Duration,
    max_age: Duration,
}

impl KeyCache {
    pub fn new(fetcher: Fetcher, min_interval: Duration, max_age: Duration) -> KeyCache {
        KeyCache {
            fetcher,
            current: RwLock::new(None),
            fetching: Mutex::new(FetchState {
                last_attempt: None,
                last_failure: None,
                jwks_uri: None,
                generation: 0,
            }),
            min_interval,
            max_age,
        }
    }

    fn current(&self) -> Option<Arc<Snapshot>> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The key set to check a token with: the cached one while it is fresh.
    pub async fn keys(&self) -> Result<Arc<Snapshot>, TokenError> {
        match self.current() {
            Some(snapshot) if snapshot.fetched_at.elapsed() < self.max_age => Ok(snapshot),
            Some(snapshot) => self.fetch(snapshot.generation, Need::Stale).await,
            None => self.fetch(0, Need::First).await,
        }
    }

    /// The key set to look again in, after `seen` had no key for a token: a
    /// newer one if another validation fetched meanwhile, a new fetch if the
    /// last one is old enough, `seen` itself otherwise.
    pub async fn after_unknown_key(&self, seen: &Snapshot) -> Result<Arc<Snapshot>, TokenError> {
        self.fetch(seen.generation, Need::UnknownKey).await
    }

    /// Fetches now, whatever the rate limit (still one fetch at a time).
    pub async fn refresh(&self) -> Result<Arc<Snapshot>, TokenError> {
        self.fetch(0, Need::Forced).await
    }

    /// Fetches the key set unless another validation did since `seen`
    /// (a generation) or the rate limit says no.
    async fn fetch(&self, seen: u64, need: Need) -> Result<Arc<Snapshot>, TokenError> {
        let mut state = self.fetching.lock().await;
        let current = self.current();
        if need != Need::Forced {
            if let Some(snapshot) = current.as_ref().filter(|s| s.generation != seen) {
                return Ok(snapshot.clone());
            }
            let recent = state
                .last_attempt
                .is_some_and(|at| at.elapsed() < self.min_interval);
            if recent {
                return match (current, &state.last_failure, need) {
                    // The last fetch failed: a key we lack may well exist.
                    (_, Some(why), Need::First | Need::UnknownKey) | (None, Some(why), _) => {
                        Err(TokenError::Unavailable(why.clone()))
                    }
                    (Some(snapshot), _, _) => Ok(snapshot),
                    (None, None, _) => Err(TokenError::Unavailable(
                        "the key set has not been fetched".to_owned(),
                    )),
                };
            }
        }

        // Recorded once the fetch is over: a fetch abandoned half-way (the
        // validation's future dropped) leaves the next caller free to fetch.
        let started = Instant::now();
        let fetched = self.fetcher.key_set(&mut state.jwks_uri).await;
        state.last_attempt = Some(started);
        match fetched {
            Ok(keys) => {
                state.generation += 1;
                state.last_failure = None;
                if keys.len() == 0 {
                    tracing::warn!(
                        skipped = keys.skipped,
                        "the OIDC issuer's key set holds no usable signature key"
                    );
                } else {
                    tracing::debug!(
                        keys = keys.len(),
                        skipped = keys.skipped,
                        ?need,
                        "fetched the OIDC issuer's key set"
                    );
                }
                let snapshot = Arc::new(Snapshot {
                    generation: state.generation,
                    fetched_at: Instant::now(),
                    keys,
                });
                *self.current.write().unwrap_or_else(PoisonError::into_inner) =
                    Some(snapshot.clone());
                Ok(snapshot)
            }
            Err(why) => {
                tracing::warn!(reason = %why, ?need, "cannot fetch the OIDC issuer's key set");
                state.last_failure = Some(why.clone());
                match (need, current) {
                    (Need::Stale, Some(snapshot)) => Ok(snapshot),
                    _ => Err(TokenError::Unavailable(why)),
                }
            }
        }
    }
}
