//! Per-user in-flight limits. In the default mode every user reaches the cluster as the proxy,
//! so kube-apiserver's API Priority and Fairness sees one flow: a single user with a busy script
//! could take all of the proxy's seats and starve everyone else. The proxy therefore bounds each
//! user's concurrent requests itself, separately for short requests and for long-running ones
//! (watches, logs, exec, attach, port-forward, proxy), and answers 429 with `Retry-After` as
//! kube-apiserver's max-in-flight filter does, which client-go retries by itself.

use std::{
    collections::HashMap,
    hash::BuildHasher,
    sync::{Arc, Mutex},
};

/// User names come from verified tokens, not from whoever sends a request: a fast hasher with a
/// per-process seed (foldhash) is enough, and SipHash cost two hashes of the name per request.
type RandomState = foldhash::fast::RandomState;

use crate::authz::request_info::RequestInfo;

const SHARDS: usize = 16;
/// A shard keeps idle users' entries (to avoid an allocation per request) until it holds this
/// many, then drops the idle ones.
const PRUNE_AT: usize = 4096;

/// Kubernetes' `LongRunningRequestCheck` for kube-apiserver: these verbs and subresources hold
/// a request open for as long as the client wants.
pub fn is_long_running(info: &RequestInfo, upgrade: bool) -> bool {
    upgrade
        || matches!(info.verb.as_str(), "watch" | "proxy")
        || matches!(
            info.subresource.as_str(),
            "attach" | "exec" | "proxy" | "log" | "portforward"
        )
}

/// One user's places in flight; `name` is shared with every slot, so taking a place does not
/// allocate.
struct Counts {
    name: Arc<str>,
    short: u32,
    long: u32,
}

struct Shared {
    short_max: u32,
    long_max: u32,
    hasher: RandomState,
    shards: [Mutex<HashMap<Arc<str>, Counts, RandomState>>; SHARDS],
}

/// The limiter; cheap to clone. A limit of 0 means no limit.
#[derive(Clone)]
pub struct UserLimits(Option<Arc<Shared>>);

impl Default for UserLimits {
    fn default() -> Self {
        Self::new(0, 0)
    }
}

/// One request's place; given back when dropped, however the request or stream ends.
#[must_use = "the place is given back when the slot is dropped"]
pub struct UserSlot {
    shared: Arc<Shared>,
    shard: usize,
    user: Arc<str>,
    long: bool,
}

impl UserLimits {
    pub fn new(short_max: u32, long_max: u32) -> Self {
        if short_max == 0 && long_max == 0 {
            return UserLimits(None);
        }
        UserLimits(Some(Arc::new(Shared {
            short_max,
            long_max,
            hasher: RandomState::default(),
            shards: std::array::from_fn(|_| Mutex::new(HashMap::with_hasher(RandomState::default()))),
        })))
    }

    /// Takes a place for `user`, or `None` when the user is at the limit of that class.
    /// `Some(None)`: no limit is configured.
    pub fn acquire(&self, user: &str, long: bool) -> Option<Option<UserSlot>> {
        let Some(shared) = &self.0 else {
            return Some(None);
        };
        let max = if long { shared.long_max } else { shared.short_max };
        if max == 0 {
            return Some(None);
        }
        let shard = (shared.hasher.hash_one(user) as usize) % SHARDS;
        let mut map = shared.shards[shard].lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= PRUNE_AT && !map.contains_key(user) {
            map.retain(|_, c| c.short > 0 || c.long > 0);
        }
        let counts = match map.get_mut(user) {
            Some(c) => c,
            None => {
                let name: Arc<str> = Arc::from(user);
                map.entry(name.clone()).or_insert(Counts {
                    name,
                    short: 0,
                    long: 0,
                })
            }
        };
        let n = if long { &mut counts.long } else { &mut counts.short };
        if *n >= max {
            return None;
        }
        *n += 1;
        let user = counts.name.clone();
        Some(Some(UserSlot {
            shared: shared.clone(),
            shard,
            user,
            long,
        }))
    }

    /// Requests `user` has in flight now (short, long).
    #[cfg(test)]
    pub fn in_flight(&self, user: &str) -> (u32, u32) {
        let Some(shared) = &self.0 else { return (0, 0) };
        let shard = (shared.hasher.hash_one(user) as usize) % SHARDS;
        let map = shared.shards[shard].lock().unwrap_or_else(|e| e.into_inner());
        map.get(user).map_or((0, 0), |c| (c.short, c.long))
    }
}

impl Drop for UserSlot {
    fn drop(&mut self) {
        let mut map = self.shared.shards[self.shard]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(c) = map.get_mut(&*self.user) {
            let n = if self.long { &mut c.long } else { &mut c.short };
            *n = n.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_user_and_class_has_its_own_limit() {
        let limits = UserLimits::new(2, 1);
        let a1 = limits.acquire("ann", false).unwrap();
        let a2 = limits.acquire("ann", false).unwrap();
        assert!(limits.acquire("ann", false).is_none(), "third short request");
        let w = limits.acquire("ann", true).unwrap();
        assert!(limits.acquire("ann", true).is_none(), "second stream");
        // Another user is not affected.
        let b = limits.acquire("bob", false).unwrap();
        assert_eq!(limits.in_flight("ann"), (2, 1));
        drop(a1);
        assert_eq!(limits.in_flight("ann"), (1, 1));
        assert!(limits.acquire("ann", false).is_some());
        drop((a2, w, b));
        assert_eq!(limits.in_flight("ann"), (0, 0));
    }

    #[test]
    fn zero_means_unlimited() {
        let limits = UserLimits::new(0, 1);
        for _ in 0..100 {
            assert!(matches!(limits.acquire("ann", false), Some(None)));
        }
        let _s = limits.acquire("ann", true).unwrap();
        assert!(limits.acquire("ann", true).is_none());
        assert!(matches!(UserLimits::default().acquire("x", true), Some(None)));
    }

    #[test]
    fn idle_users_are_pruned() {
        let limits = UserLimits::new(1, 1);
        for i in 0..(PRUNE_AT * SHARDS * 2) {
            drop(limits.acquire(&format!("u{i}"), false).unwrap());
        }
        let Some(shared) = &limits.0 else {
            panic!("limited")
        };
        for shard in &shared.shards {
            assert!(shard.lock().unwrap().len() <= PRUNE_AT);
        }
    }

    #[test]
    fn long_running_requests() {
        let parse = |m: &str, p: &str| RequestInfo::parse(m, p, None, false).unwrap();
        let watch = RequestInfo::parse("GET", "/api/v1/pods", Some("watch=1"), false).unwrap();
        assert!(is_long_running(&watch, false));
        assert!(is_long_running(&parse("GET", "/api/v1/watch/pods"), false));
        assert!(is_long_running(
            &parse("GET", "/api/v1/namespaces/d/pods/p/log"),
            false
        ));
        assert!(is_long_running(
            &parse("POST", "/api/v1/namespaces/d/pods/p/exec"),
            false
        ));
        assert!(is_long_running(
            &parse("GET", "/api/v1/nodes/n/proxy/logs"),
            false
        ));
        assert!(is_long_running(&parse("GET", "/api/v1/namespaces/d/pods"), true));
        assert!(!is_long_running(
            &parse("GET", "/api/v1/namespaces/d/pods"),
            false
        ));
        assert!(!is_long_running(
            &parse("DELETE", "/api/v1/namespaces/d/pods/p"),
            false
        ));
    }
}
