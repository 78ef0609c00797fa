//! `--token-passthrough`: a bearer token that is not a valid token of the OIDC issuer (a
//! ServiceAccount token, a token of an issuer only the cluster trusts) is reviewed by the target
//! cluster (`TokenReview`, with the proxy's credentials there). An authenticated token's user is
//! then authorized by the proxy's RBAC like anyone else, and the request goes upstream with the
//! token unchanged and none of the proxy's credentials.
//!
//! Answers are cached briefly per cluster and token (by SHA-256 digest: the cache never holds a
//! token): allowed for `ALLOW_TTL`, refused for `DENY_TTL`; errors are never cached. One review
//! per cluster and token is in flight at a time; concurrent requests wait for its answer. The
//! cache is bounded, and so is the rate of reviews actually sent, per client address and in
//! total ([`super::review_rate`]): a review over either bound is not sent (429).

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{Request, header};
use http_body_util::{BodyExt, Either, Full, Limited};
use serde::Deserialize;
use tokio::sync::OnceCell;

use super::Cluster;
use super::review_rate::{ReviewLimiter, ReviewRates};
use crate::authn::{TokenCache, User};

/// How long an authenticated answer is reused.
pub const ALLOW_TTL: Duration = Duration::from_secs(10);
/// How long a refusal is reused (short: a token may become valid, and a flood of bad tokens
/// must not turn into a flood of reviews).
pub const DENY_TTL: Duration = Duration::from_secs(2);
/// Reviews that take longer fail (and are not cached).
const REVIEW_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest TokenReview answer read.
const MAX_ANSWER: usize = 256 << 10;
/// Reviews sent at once, across all clusters: a flood of made-up tokens (anyone can send one)
/// cannot turn into a flood of requests with the proxy's credentials.
const MAX_REVIEWS_IN_FLIGHT: usize = 32;

type Key = (Arc<str>, [u8; 32]);

#[derive(Clone)]
enum Reviewed {
    Allowed(Arc<User>),
    Denied,
}

struct Slot {
    cell: Arc<OnceCell<(Reviewed, Instant)>>,
}

/// Why a review could not be made (never cached; the client gets 401, the log the reason).
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("TokenReview failed: {0}")]
    Upstream(String),
    #[error("TokenReview answered {0}")]
    Status(u16),
    #[error("TokenReview answer unreadable: {0}")]
    Unreadable(String),
    #[error("TokenReview timed out")]
    Timeout,
    #[error("too many tokens under review")]
    Busy,
    /// Over the review rate of the client's address or of the process: ask again after this.
    #[error("too many TokenReviews; retry after {0:?}")]
    RateLimited(Duration),
}

pub struct TokenReviewer {
    audiences: Vec<String>,
    capacity: usize,
    slots: Mutex<HashMap<Key, Slot>>,
    in_flight: tokio::sync::Semaphore,
    rate: ReviewLimiter,
}

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    status: AnswerStatus,
}

#[derive(Deserialize, Default)]
struct AnswerStatus {
    #[serde(default)]
    authenticated: bool,
    #[serde(default)]
    user: AnswerUser,
    #[serde(default)]
    audiences: Vec<String>,
    #[serde(default)]
    error: String,
}

#[derive(Deserialize, Default)]
struct AnswerUser {
    #[serde(default)]
    username: String,
    #[serde(default)]
    uid: String,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    extra: std::collections::BTreeMap<String, Vec<String>>,
}

impl TokenReviewer {
    pub fn new(audiences: Vec<String>, capacity: usize, rates: ReviewRates) -> Self {
        TokenReviewer {
            audiences,
            capacity: capacity.max(1),
            slots: Mutex::new(HashMap::new()),
            in_flight: tokio::sync::Semaphore::new(MAX_REVIEWS_IN_FLIGHT),
            rate: ReviewLimiter::new(rates),
        }
    }

    /// The cluster's verdict on `token`, presented by `client`: `Ok(Some(user))` authenticated,
    /// `Ok(None)` not.
    pub async fn review(
        &self,
        cluster: &Cluster,
        token: &str,
        client: IpAddr,
    ) -> Result<Option<Arc<User>>, ReviewError> {
        let key: Key = (cluster.name.clone(), TokenCache::key(token));
        let cell = self.slot(&key).ok_or(ReviewError::Busy)?;
        let init = cell.get_or_try_init(|| async {
            // Counted only here, where a review is really about to be sent.
            self.rate.admit(client).map_err(ReviewError::RateLimited)?;
            let review = async {
                let _place = self.in_flight.acquire().await.map_err(|_| ReviewError::Busy)?;
                self.ask(cluster, token).await
            };
            let r = tokio::time::timeout(REVIEW_TIMEOUT, review)
                .await
                .map_err(|_| ReviewError::Timeout)??;
            Ok::<_, ReviewError>((r, Instant::now()))
        });
        // A failed review lets the next waiter try its own: bound each caller's whole wait too,
        // or the last of N callers on a hanging cluster would wait N reviews in a row.
        let answer = tokio::time::timeout(REVIEW_TIMEOUT, init)
            .await
            .unwrap_or(Err(ReviewError::Timeout));
        let (reviewed, _) = match answer {
            Ok(a) => a,
            Err(e) => {
                // Errors are never cached: the empty slot goes, unless a newer one took its place.
                let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
                if slots
                    .get(&key)
                    .is_some_and(|s| Arc::ptr_eq(&s.cell, &cell) && s.cell.get().is_none())
                {
                    slots.remove(&key);
                }
                return Err(e);
            }
        };
        Ok(match reviewed {
            Reviewed::Allowed(user) => Some(user.clone()),
            Reviewed::Denied => None,
        })
    }

    /// The cell for `key`: the cached one while fresh, else a new one; `None` when the cache is
    /// full of reviews still in flight.
    fn slot(&self, key: &Key) -> Option<Arc<OnceCell<(Reviewed, Instant)>>> {
        let now = Instant::now();
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let fresh = |s: &Slot| match s.cell.get() {
            None => true, // in flight
            Some((Reviewed::Allowed(_), at)) => now.duration_since(*at) < ALLOW_TTL,
            Some((Reviewed::Denied, at)) => now.duration_since(*at) < DENY_TTL,
        };
        if let Some(s) = slots.get(key).filter(|s| fresh(s)) {
            return Some(s.cell.clone());
        }
        if slots.len() >= self.capacity {
            slots.retain(|_, s| fresh(s));
        }
        if slots.len() >= self.capacity {
            // Still full: refusals go first, then authenticated answers; reviews in flight stay.
            slots.retain(|_, s| !matches!(s.cell.get(), Some((Reviewed::Denied, _))));
        }
        if slots.len() >= self.capacity {
            slots.retain(|_, s| s.cell.get().is_none());
        }
        if slots.len() >= self.capacity {
            return None;
        }
        let cell = Arc::new(OnceCell::new());
        slots.insert(key.clone(), Slot { cell: cell.clone() });
        Some(cell)
    }

    async fn ask(&self, cluster: &Cluster, token: &str) -> Result<Reviewed, ReviewError> {
        let body = serde_json::json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": token, "audiences": self.audiences},
        });
        let uri = cluster
            .upstream
            .uri_for("/apis/authentication.k8s.io/v1/tokenreviews", None)
            .map_err(|e| ReviewError::Upstream(e.to_string()))?;
        let req = Request::post(uri)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json")
            .body(Either::Right(Full::new(Bytes::from(body.to_string()))))
            .map_err(|e| ReviewError::Upstream(e.to_string()))?;
        let resp = cluster
            .upstream
            .send(req, None)
            .await
            .map_err(|e| ReviewError::Upstream(e.to_string()))?;
        let code = resp.status().as_u16();
        if code != 200 && code != 201 {
            return Err(ReviewError::Status(code));
        }
        let bytes = Limited::new(resp.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| ReviewError::Unreadable(e.to_string()))?
            .to_bytes();
        let answer: Answer =
            serde_json::from_slice(&bytes).map_err(|e| ReviewError::Unreadable(e.to_string()))?;
        Ok(self.verdict(answer.status))
    }

    fn verdict(&self, status: AnswerStatus) -> Reviewed {
        if !status.authenticated || status.user.username.is_empty() {
            if !status.error.is_empty() {
                tracing::debug!(error = %status.error, "TokenReview refused the token");
            }
            return Reviewed::Denied;
        }
        // Asked for audiences: the token must be valid for at least one of them (the Go proxy
        // never checked).
        if !self.audiences.is_empty() && !status.audiences.iter().any(|a| self.audiences.contains(a)) {
            tracing::debug!("TokenReview authenticated the token for other audiences");
            return Reviewed::Denied;
        }
        let mut groups = status.user.groups;
        if !groups
            .iter()
            .any(|g| g == crate::authn::user::SYSTEM_AUTHENTICATED)
        {
            groups.push(crate::authn::user::SYSTEM_AUTHENTICATED.to_string());
        }
        Reviewed::Allowed(Arc::new(User {
            name: status.user.username,
            uid: status.user.uid,
            groups,
            extra: status.user.extra,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATES: ReviewRates = ReviewRates {
        total: 100,
        per_client: 10,
    };

    fn status(v: serde_json::Value) -> AnswerStatus {
        serde_json::from_value::<Answer>(serde_json::json!({"status": v}))
            .unwrap()
            .status
    }

    #[test]
    fn verdicts() {
        let r = TokenReviewer::new(vec![], 10, RATES);
        let ok = status(serde_json::json!({"authenticated": true,
            "user": {"username": "system:serviceaccount:ci:robot", "uid": "u1",
                     "groups": ["system:serviceaccounts", "system:serviceaccounts:ci", "system:authenticated"]}}));
        match r.verdict(ok) {
            Reviewed::Allowed(u) => {
                assert_eq!(u.name, "system:serviceaccount:ci:robot");
                assert_eq!(
                    u.groups.iter().filter(|g| *g == "system:authenticated").count(),
                    1
                );
            }
            Reviewed::Denied => panic!("authenticated"),
        }
        assert!(matches!(
            r.verdict(status(
                serde_json::json!({"authenticated": false, "error": "expired"})
            )),
            Reviewed::Denied
        ));
        assert!(matches!(
            r.verdict(status(serde_json::json!({"authenticated": true, "user": {}}))),
            Reviewed::Denied
        ));
        let aud = TokenReviewer::new(vec!["kop".into()], 10, RATES);
        let other = status(
            serde_json::json!({"authenticated": true, "audiences": ["api"], "user": {"username": "x"}}),
        );
        assert!(matches!(aud.verdict(other), Reviewed::Denied), "wrong audience");
        let right = status(
            serde_json::json!({"authenticated": true, "audiences": ["kop"], "user": {"username": "x"}}),
        );
        assert!(matches!(aud.verdict(right), Reviewed::Allowed(_)));
    }

    #[test]
    fn the_cache_is_bounded() {
        let r = TokenReviewer::new(vec![], 3, RATES);
        let name: Arc<str> = Arc::from("c");
        for i in 0..10u8 {
            let cell = r
                .slot(&(name.clone(), [i; 32]))
                .expect("room after evicting answers");
            let _ = cell.set((Reviewed::Denied, Instant::now()));
        }
        assert!(r.slots.lock().unwrap().len() <= 3);
        // Full of reviews in flight: no new slot, the map does not grow.
        let busy = TokenReviewer::new(vec![], 2, RATES);
        assert!(busy.slot(&(name.clone(), [1; 32])).is_some());
        assert!(busy.slot(&(name.clone(), [2; 32])).is_some());
        assert!(busy.slot(&(name.clone(), [3; 32])).is_none());
        assert_eq!(busy.slots.lock().unwrap().len(), 2);
    }
}
