//! Every issuer the proxy trusts, and the one cache of verified tokens in front of them.
//!
//! A repeat token is answered from the cache before anything else (one SHA-256 and a map
//! lookup, whatever the number of issuers). A new token is routed by the `iss` it claims,
//! read without verifying anything, to that issuer alone: a token of an unknown issuer costs a
//! base64 decode and a JSON parse, never a signature check or a key fetch.
//!
//! With `--authentication-config` the set is replaced when the file changes: issuers whose
//! entry is unchanged are kept with their keys, new ones start fetching theirs, removed ones
//! stop, and the set comes with a new, empty cache, so no user mapped under the old rules
//! outlives the change (a verification still running under the old set fills the old cache).

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use arc_swap::ArcSwap;
use secrecy::{ExposeSecret, SecretSlice};
use tokio_util::sync::CancellationToken;

use super::{Authenticator, AuthnError, TokenCache, User, cache, unix_now, unverified_issuer};

struct Running {
    authn: Arc<Authenticator>,
    /// Stops this issuer's key refresher when it leaves the set.
    stop: CancellationToken,
}

/// The issuers in force, by URL, and the users their rules mapped: a new set starts with an
/// empty cache, and a verification still running under an older set can only fill that set's
/// cache, which nobody reads any more.
struct Set {
    by_url: HashMap<String, Running>,
    cache: TokenCache,
    /// Distinct for every set ever made, so a connection's memo made under an older set is
    /// never taken for this one's (an address could be reused; a generation is not).
    generation: u64,
}

static GENERATION: AtomicU64 = AtomicU64::new(1);

fn next_generation() -> u64 {
    GENERATION.fetch_add(1, Ordering::Relaxed)
}

/// The last token a connection presented and whom it mapped to. kubectl and client-go send the
/// same token on a connection again and again; with the memo those requests skip both the
/// token's SHA-256 (the shared cache's key) and the cache's shard lock, which every worker takes
/// for the same hot token. It obeys the cache's rules: the entry's expiry, and the issuer set it
/// was made under. The token is held as a secret (zeroed when replaced or when the connection
/// ends) and compared in constant time, so another user behind the same front proxy connection
/// learns nothing from the time a comparison takes.
#[derive(Default)]
pub struct ConnMemo(std::sync::Mutex<Option<Memo>>);

/// Longer tokens are not kept per connection (they still hit the shared cache).
const MEMO_MAX_TOKEN: usize = 16 * 1024;

struct Memo {
    token: SecretSlice<u8>,
    user: Arc<User>,
    expires: Instant,
    generation: u64,
}

impl ConnMemo {
    fn get(&self, token: &[u8], generation: u64, now: Instant) -> Option<Arc<User>> {
        let memo = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let m = memo.as_ref()?;
        let same = same_secret(m.token.expose_secret(), token);
        (same && m.generation == generation && m.expires > now).then(|| m.user.clone())
    }

    fn put(&self, token: &[u8], user: Arc<User>, expires: Instant, generation: u64) {
        let memo = (token.len() <= MEMO_MAX_TOKEN).then(|| Memo {
            token: SecretSlice::from(token.to_vec()),
            user,
            expires,
            generation,
        });
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = memo;
    }
}

/// Whether two secrets are equal, in a time that depends only on their length (which a
/// token's sender knows): every word is compared, the differences gathered with `|` (a fold with
/// no early exit) and looked at once at the end.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let ((a8, a1), (b8, b1)) = (a.as_chunks::<8>(), b.as_chunks::<8>());
    let words = a8.iter().zip(b8).fold(0u64, |d, (x, y)| {
        d | (u64::from_ne_bytes(*x) ^ u64::from_ne_bytes(*y))
    });
    let bytes = a1.iter().zip(b1).fold(0u8, |d, (x, y)| d | (x ^ y));
    // Opaque to the optimiser, so no branch on a partial result can be derived from it.
    std::hint::black_box(words | u64::from(bytes)) == 0
}

/// One issuer's state, for `/ready`, `/clusters`-style reports and metrics.
#[derive(Debug, Clone)]
pub struct IssuerState {
    pub url: String,
    pub ready: bool,
    pub key_fetches: u64,
    pub key_fetch_failures: u64,
    pub accepted: u64,
    pub refused: u64,
}

pub struct Issuers {
    set: ArcSwap<Set>,
    cache_size: usize,
    /// Route by the `iss` a token claims (`--authentication-config`). Off for the `--oidc-*`
    /// flags' one issuer, which checks `iss` itself.
    route_by_iss: bool,
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    /// Parent of the issuers' refreshers; `None` until [`Issuers::start`].
    background: std::sync::Mutex<Option<CancellationToken>>,
}

impl Issuers {
    /// The issuers (their keys not loaded yet) and a cache of `cache_size` tokens.
    pub fn new(issuers: Vec<Arc<Authenticator>>, cache_size: usize, route_by_iss: bool) -> Arc<Issuers> {
        let by_url = issuers
            .into_iter()
            .map(|a| {
                let running = Running {
                    authn: a.clone(),
                    stop: CancellationToken::new(),
                };
                (a.issuer_url().to_string(), running)
            })
            .collect();
        Arc::new(Issuers {
            set: ArcSwap::from_pointee(Set {
                by_url,
                cache: TokenCache::new(cache_size),
                generation: next_generation(),
            }),
            cache_size,
            route_by_iss,
            cache_hits: AtomicU64::new(0),
            cache_misses: AtomicU64::new(0),
            background: std::sync::Mutex::new(None),
        })
    }

    /// Starts every issuer's key refresher; they stop when `background` fires.
    pub fn start(&self, background: CancellationToken) {
        let set = self.set.load();
        for r in set.by_url.values() {
            spawn_refresher(&background, r);
        }
        *self.background.lock().unwrap_or_else(|e| e.into_inner()) = Some(background);
    }

    /// Verifies a bearer token and maps it to a user; repeat tokens come from the cache.
    pub async fn authenticate(&self, token: &str) -> Result<Arc<User>, AuthnError> {
        self.authenticate_on(token.as_bytes(), None).await
    }

    /// [`Issuers::authenticate`] for a request on a connection with `memo`: the connection's
    /// last token is answered from the memo, any other goes through the cache and becomes the
    /// memo. The token is matched as bytes and read as text only when it must be verified.
    pub async fn authenticate_on(
        &self,
        token: &[u8],
        memo: Option<&ConnMemo>,
    ) -> Result<Arc<User>, AuthnError> {
        let now = Instant::now();
        // The set (and its cache) this token is answered under, start to end.
        let set = self.set.load();
        if let Some(memo) = memo
            && let Some(user) = memo.get(token, set.generation, now)
        {
            self.cache_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(user);
        }
        let key = TokenCache::key(token);
        if let Some((user, expires)) = set.cache.entry(&key, now) {
            self.cache_hits.fetch_add(1, Ordering::Relaxed);
            if let Some(memo) = memo {
                memo.put(token, user.clone(), expires, set.generation);
            }
            return Ok(user);
        }
        self.cache_misses.fetch_add(1, Ordering::Relaxed);
        let token = std::str::from_utf8(token)
            .map_err(|_| AuthnError::Invalid("the token is not UTF-8 text".into()))?;
        let set = arc_swap::Guard::into_inner(set);
        let authn = self
            .issuer_of(&set, token)
            .ok_or_else(|| AuthnError::Invalid("the token's issuer is not one this proxy trusts".into()))?;
        let (user, exp) = authn.verify(token).await?;
        let user = Arc::new(user);
        // `exp` can be any number the issuer signed (1e300 included): cap before adding to an
        // Instant, which panics on overflow.
        let remaining = Duration::from_secs(exp.saturating_sub(unix_now())).min(cache::MAX_ENTRY_AGE);
        set.cache.insert(key, user.clone(), now + remaining, now);
        if let Some(memo) = memo
            && set.cache.enabled()
            && !remaining.is_zero()
        {
            memo.put(token.as_bytes(), user.clone(), now + remaining, set.generation);
        }
        Ok(user)
    }

    /// The issuer a token claims to come from, if the proxy trusts it.
    fn issuer_of(&self, set: &Set, token: &str) -> Option<Arc<Authenticator>> {
        if !self.route_by_iss {
            // The `--oidc-*` flags' one issuer: its own check refuses another `iss`.
            return set.by_url.values().next().map(|r| r.authn.clone());
        }
        let iss = unverified_issuer(token)?;
        set.by_url.get(&iss).map(|r| r.authn.clone())
    }

    /// Whether `token` claims (unverified) to come from one of the trusted issuers. Such a token
    /// is never handed to a cluster's TokenReview (`--token-passthrough`): if its issuer refused
    /// it (expired, wrong audience), nobody else should be asked, or shown it.
    pub fn claims_our_issuer(&self, token: &str) -> bool {
        unverified_issuer(token).is_some_and(|iss| self.set.load().by_url.contains_key(&iss))
    }

    /// Each issuer's state, by URL.
    pub fn states(&self) -> Vec<IssuerState> {
        let set = self.set.load();
        let mut states: Vec<IssuerState> = set
            .by_url
            .values()
            .map(|r| {
                let s = &r.authn.stats;
                let read = |c: &AtomicU64| c.load(Ordering::Relaxed);
                IssuerState {
                    url: r.authn.issuer_url().to_string(),
                    ready: r.authn.is_ready(),
                    key_fetches: read(&s.key_fetches),
                    key_fetch_failures: read(&s.key_fetch_failures),
                    accepted: read(&s.accepted),
                    refused: read(&s.refused),
                }
            })
            .collect();
        states.sort_by(|a, b| a.url.cmp(&b.url));
        states
    }

    /// True once every issuer has loaded its keys (the flags' single issuer included).
    pub fn is_ready(&self) -> bool {
        self.set.load().by_url.values().all(|r| r.authn.is_ready())
    }

    /// Replaces the set with `issuers`: an issuer whose URL and fingerprint are unchanged is
    /// kept (keys, refresher, counters), the others start or stop. The new set starts with an
    /// empty token cache.
    pub fn replace(&self, issuers: Vec<Arc<Authenticator>>) {
        let old = self.set.load_full();
        let background = self.background.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut by_url = HashMap::new();
        let (mut kept, mut started) = (0, 0);
        for authn in issuers {
            let url = authn.issuer_url().to_string();
            let running = match old.by_url.get(&url) {
                Some(r) if r.authn.fingerprint() == authn.fingerprint() => {
                    kept += 1;
                    Running {
                        authn: r.authn.clone(),
                        stop: r.stop.clone(),
                    }
                }
                other => {
                    started += 1;
                    if let Some(old) = other {
                        authn.adopt_keys(&old.authn);
                    }
                    let r = Running {
                        authn,
                        stop: CancellationToken::new(),
                    };
                    if let Some(bg) = &background {
                        spawn_refresher(bg, &r);
                    }
                    r
                }
            };
            by_url.insert(url, running);
        }
        let mut stopped = 0;
        for (url, r) in &old.by_url {
            let same = by_url
                .get(url)
                .is_some_and(|n: &Running| Arc::ptr_eq(&n.authn, &r.authn));
            if !same {
                r.stop.cancel();
                stopped += 1;
            }
        }
        self.set.store(Arc::new(Set {
            by_url,
            cache: TokenCache::new(self.cache_size),
            generation: next_generation(),
        }));
        tracing::info!(kept, started, stopped, "authentication configuration applied");
    }

    pub fn cache_figures(&self) -> (u64, u64) {
        (
            self.cache_hits.load(Ordering::Relaxed),
            self.cache_misses.load(Ordering::Relaxed),
        )
    }
}

fn spawn_refresher(background: &CancellationToken, r: &Running) {
    // Stops with the process (background) or when the issuer leaves the set (its own token).
    let stop = r.stop.clone();
    let both = background.child_token();
    let watch = both.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = stop.cancelled() => watch.cancel(),
            _ = watch.cancelled() => {}
        }
    });
    r.authn.spawn_refresher(both);
}

impl crate::metrics::AuthnCounters for Issuers {
    fn authn_figures(&self) -> crate::metrics::AuthnFigures {
        let (cache_hits, cache_misses) = self.cache_figures();
        let issuers = self.states();
        crate::metrics::AuthnFigures {
            cache_hits,
            cache_misses,
            key_fetches: issuers.iter().map(|i| i.key_fetches).sum(),
            key_fetch_failures: issuers.iter().map(|i| i.key_fetch_failures).sum(),
            issuers: issuers
                .into_iter()
                .map(|i| crate::metrics::IssuerFigures {
                    issuer: i.url,
                    ready: i.ready,
                    key_fetches: i.key_fetches,
                    key_fetch_failures: i.key_fetch_failures,
                    accepted: i.accepted,
                    refused: i.refused,
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::Arc,
        time::{Duration, Instant},
    };

    use proptest::prelude::*;

    use super::{ConnMemo, MEMO_MAX_TOKEN, User, same_secret};

    fn user(name: &str) -> Arc<User> {
        Arc::new(User {
            name: name.into(),
            ..User::default()
        })
    }

    #[test]
    fn memo_answers_only_the_same_token_under_the_same_set_before_expiry() {
        let memo = ConnMemo::default();
        let now = Instant::now();
        let later = now + Duration::from_secs(60);
        memo.put(b"token-of-alice", user("alice"), later, 7);
        assert_eq!(memo.get(b"token-of-alice", 7, now).unwrap().name, "alice");
        // Another token of the same length, a prefix, a longer one: never alice.
        assert!(memo.get(b"token-of-alicf", 7, now).is_none());
        assert!(memo.get(b"token-of-alic", 7, now).is_none());
        assert!(memo.get(b"token-of-alice2", 7, now).is_none());
        // Another issuer set, or the entry's expiry reached.
        assert!(memo.get(b"token-of-alice", 8, now).is_none());
        assert!(memo.get(b"token-of-alice", 7, later).is_none());
        // A new token replaces the old one.
        memo.put(b"token-of-bob", user("bob"), later, 7);
        assert!(memo.get(b"token-of-alice", 7, now).is_none());
        assert_eq!(memo.get(b"token-of-bob", 7, now).unwrap().name, "bob");
    }

    #[test]
    fn memo_does_not_keep_an_oversized_token() {
        let memo = ConnMemo::default();
        let now = Instant::now();
        let later = now + Duration::from_secs(60);
        memo.put(b"small", user("alice"), later, 1);
        let big = "x".repeat(MEMO_MAX_TOKEN + 1);
        memo.put(big.as_bytes(), user("bob"), later, 1);
        assert!(memo.get(big.as_bytes(), 1, now).is_none());
        // And the earlier token is gone too: the memo only ever holds the connection's last one.
        assert!(memo.get(b"small", 1, now).is_none());
    }

    proptest! {
        /// The word-at-a-time compare answers as `==` does, for any lengths and for strings
        /// that differ in one byte anywhere (the tail past the last whole word included).
        #[test]
        fn same_secret_is_equality(a in proptest::collection::vec(any::<u8>(), 0..80), at in any::<usize>(), flip in 1u8..) {
            prop_assert!(same_secret(&a, &a.clone()));
            if !a.is_empty() {
                let mut b = a.clone();
                b[at % a.len()] ^= flip;
                prop_assert!(!same_secret(&a, &b));
                prop_assert!(!same_secret(&a, &a[..a.len() - 1]));
            }
        }
    }
}
