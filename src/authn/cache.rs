//! A bounded cache of verified tokens so a chatty client pays for one signature check, not one
//! per request. Keys are SHA-256 digests: the cache never holds a token itself.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use aws_lc_rs::digest;

use super::user::User;

const SHARDS: usize = 16;
/// An entry is re-verified at least this often, so a key removed from the issuer's JWKS stops
/// being honoured soon even for long-lived tokens.
pub const MAX_ENTRY_AGE: Duration = Duration::from_secs(300);

pub type Key = [u8; 32];

struct Entry {
    user: Arc<User>,
    expires: Instant,
}

/// Sharded so the two workers of a small pod rarely touch the same lock; each lock is held for
/// a map lookup only, never across an await.
pub struct TokenCache {
    shards: Vec<Mutex<HashMap<Key, Entry>>>,
    per_shard: usize,
}

impl TokenCache {
    /// `capacity` 0 disables caching.
    pub fn new(capacity: usize) -> Self {
        let per_shard = capacity.div_ceil(SHARDS);
        TokenCache {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard,
        }
    }

    /// False for a cache of size 0 (`--token-cache-size 0`): then nothing is remembered, by
    /// the cache or by a connection's memo.
    pub fn enabled(&self) -> bool {
        self.per_shard > 0
    }

    pub fn key(token: impl AsRef<[u8]>) -> Key {
        let d = digest::digest(&digest::SHA256, token.as_ref());
        let mut k = [0u8; 32];
        k.copy_from_slice(d.as_ref());
        k
    }

    fn shard(&self, key: &Key) -> &Mutex<HashMap<Key, Entry>> {
        &self.shards[key[0] as usize % SHARDS]
    }

    pub fn get(&self, key: &Key, now: Instant) -> Option<Arc<User>> {
        self.entry(key, now).map(|(user, _)| user)
    }

    /// The user of a live entry and when the entry expires.
    pub fn entry(&self, key: &Key, now: Instant) -> Option<(Arc<User>, Instant)> {
        if self.per_shard == 0 {
            return None;
        }
        let mut map = self.shard(key).lock().unwrap_or_else(|p| p.into_inner());
        match map.get(key) {
            Some(e) if e.expires > now => Some((e.user.clone(), e.expires)),
            Some(_) => {
                map.remove(key);
                None
            }
            None => None,
        }
    }

    /// Keeps `user` until `expires` (the token's own expiry, capped at [`MAX_ENTRY_AGE`]).
    pub fn insert(&self, key: Key, user: Arc<User>, expires: Instant, now: Instant) {
        if self.per_shard == 0 || expires <= now {
            return;
        }
        let expires = expires.min(now + MAX_ENTRY_AGE);
        let mut map = self.shard(&key).lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= self.per_shard && !map.contains_key(&key) {
            map.retain(|_, e| e.expires > now);
            if map.len() >= self.per_shard {
                // Still full of live tokens: drop an arbitrary one rather than grow.
                if let Some(victim) = map.keys().next().copied() {
                    map.remove(&victim);
                }
            }
        }
        map.insert(key, Entry { user, expires });
    }

    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map(|m| m.len()).unwrap_or(0))
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(n: &str) -> Arc<User> {
        Arc::new(User {
            name: n.into(),
            ..Default::default()
        })
    }

    #[test]
    fn hit_until_expiry() {
        let c = TokenCache::new(100);
        let now = Instant::now();
        let k = TokenCache::key("t1");
        c.insert(k, user("ann"), now + Duration::from_secs(10), now);
        assert_eq!(c.get(&k, now).unwrap().name, "ann");
        assert!(c.get(&TokenCache::key("t2"), now).is_none());
        assert!(c.get(&k, now + Duration::from_secs(11)).is_none());
        assert!(c.is_empty(), "expired entry removed on lookup");
    }

    #[test]
    fn entry_age_is_capped() {
        let c = TokenCache::new(100);
        let now = Instant::now();
        let k = TokenCache::key("t");
        c.insert(k, user("ann"), now + Duration::from_secs(86400), now);
        assert!(c.get(&k, now + MAX_ENTRY_AGE - Duration::from_secs(1)).is_some());
        assert!(c.get(&k, now + MAX_ENTRY_AGE + Duration::from_secs(1)).is_none());
    }

    #[test]
    fn bounded() {
        let c = TokenCache::new(32);
        let now = Instant::now();
        for i in 0..1000 {
            c.insert(
                TokenCache::key(format!("t{i}")),
                user("u"),
                now + Duration::from_secs(60),
                now,
            );
        }
        assert!(c.len() <= 32, "len {}", c.len());
        let disabled = TokenCache::new(0);
        disabled.insert(
            TokenCache::key("t"),
            user("u"),
            now + Duration::from_secs(60),
            now,
        );
        assert!(disabled.get(&TokenCache::key("t"), now).is_none());
    }
}
