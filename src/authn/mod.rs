//! Authentication: OIDC ID tokens verified as kube-apiserver verifies them with its `--oidc-*`
//! flags, against keys fetched from the issuer and refreshed in the background.

pub mod cache;
pub mod cel;
pub mod claims;
pub mod issuer;
pub mod issuers;
pub mod jws;
pub mod keys;
pub mod rules;
pub mod user;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use arc_swap::ArcSwap;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

pub use cache::TokenCache;
pub use claims::ClaimMapping;
pub use issuers::{IssuerState, Issuers};
pub use user::User;

use issuer::IssuerClient;
use keys::KeySet;

/// Clock skew tolerated on `exp`, `nbf` and `iat`.
pub const LEEWAY_SECS: u64 = 30;

/// Requests with an unknown `kid` that may wait for the next key fetch at once.
pub const MAX_HELD: usize = 1024;

/// The longest such a request waits for that fetch, in all (the fetch included): with
/// `--oidc-jwks-min-refetch-interval` above it, a token arriving early in the window is refused
/// as before.
pub const MAX_HOLD: Duration = Duration::from_secs(15);

/// Why a token was refused, or why the issuer could not be used. The details go to debug logs
/// only: a client always gets a bare 401.
#[derive(Debug, thiserror::Error)]
pub enum AuthnError {
    #[error("token is not a well-formed JWT")]
    Malformed,
    #[error("signing algorithm {0:?} is not allowed")]
    Algorithm(String),
    #[error("no key of the issuer matches the token")]
    UnknownKey,
    #[error("invalid token: {0}")]
    Invalid(String),
    #[error("token claims: {0}")]
    Claims(String),
    #[error("issuer keys are not loaded yet")]
    NotReady,
    #[error("fetching from the issuer: {0}")]
    Fetch(String),
    #[error("OIDC configuration: {0}")]
    Config(String),
}

/// One issuer: from the `--oidc-*` flags, or one `jwt` entry of `--authentication-config`.
#[derive(Debug, Clone)]
pub struct OidcConfig {
    pub issuer_url: String,
    /// Where discovery is read; `None`: `{issuer_url}/.well-known/openid-configuration`.
    pub discovery_url: Option<String>,
    /// A token's `aud` must name at least one of these (`--oidc-client-id`: exactly one).
    pub audiences: Vec<String>,
    pub ca_pem: Option<Vec<u8>>,
    pub signing_algs: Vec<Algorithm>,
    pub mapping: Mapping,
    pub refresh_interval: Duration,
    /// Shortest time between two key fetches triggered by unknown `kid`s.
    pub min_refetch_interval: Duration,
    /// Identifies the configuration this issuer was built from, so a reload that leaves it
    /// unchanged keeps it (and its keys) rather than building it again.
    pub fingerprint: u64,
}

/// How verified claims become a user.
#[derive(Debug, Clone)]
pub enum Mapping {
    /// The `--oidc-*` claim flags.
    Flags(ClaimMapping),
    /// A `jwt` entry's claim rules and mappings (CEL included).
    Rules(Arc<rules::JwtRules>),
}

/// Every algorithm the proxy verifies: what an `--authentication-config` issuer accepts, as
/// kube-apiserver accepts every asymmetric algorithm there (ES512 is not supported yet).
pub const ALL_SIGNING_ALGS: [Algorithm; 8] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

/// Parses `--oidc-signing-algs`. Symmetric algorithms and `none` are refused outright.
pub fn parse_signing_algs(names: &[String]) -> Result<Vec<Algorithm>, AuthnError> {
    let mut algs = Vec::new();
    for name in names {
        let alg = match name.as_str() {
            "RS256" => Algorithm::RS256,
            "RS384" => Algorithm::RS384,
            "RS512" => Algorithm::RS512,
            "ES256" => Algorithm::ES256,
            "ES384" => Algorithm::ES384,
            "PS256" => Algorithm::PS256,
            "PS384" => Algorithm::PS384,
            "PS512" => Algorithm::PS512,
            "ES512" => {
                return Err(AuthnError::Config(
                    "signing alg ES512 is not supported yet".into(),
                ));
            }
            other => return Err(AuthnError::Config(format!("unsupported signing alg: {other:?}"))),
        };
        if !algs.contains(&alg) {
            algs.push(alg);
        }
    }
    if algs.is_empty() {
        return Err(AuthnError::Config("--oidc-signing-algs is empty".into()));
    }
    Ok(algs)
}

/// One issuer's counters, read at scrape time.
#[derive(Default)]
pub struct IssuerStats {
    pub key_fetches: AtomicU64,
    pub key_fetch_failures: AtomicU64,
    pub accepted: AtomicU64,
    pub refused: AtomicU64,
}

/// Key fetches, numbered in the order they start.
#[derive(Default)]
struct Fetches {
    last_start: Option<Instant>,
    started: u64,
    /// The highest number of a finished fetch (they can finish out of order).
    finished: u64,
    /// A fetch for an unknown kid is waiting for its turn or running.
    scheduled: bool,
}

/// One issuer: its keys, their refresh, and how its tokens are checked and mapped. Tokens reach
/// it through [`Issuers`], which routes them by `iss` and caches the users.
pub struct Authenticator {
    cfg: OidcConfig,
    client: IssuerClient,
    /// `--oidc-signing-algs`: a token's header must name one of these.
    algorithms: Vec<Algorithm>,
    keys: ArcSwap<KeySet>,
    jwks_uri: ArcSwap<Option<String>>,
    ready: AtomicBool,
    /// When key fetches started and finished, and whether one is scheduled for an unknown kid.
    fetches: std::sync::Mutex<Fetches>,
    /// The highest sequence number of a finished fetch, for requests waiting on one.
    fetched: tokio::sync::watch::Sender<u64>,
    /// Places for requests held until the next permitted fetch (see [`MAX_HELD`]).
    held: tokio::sync::Semaphore,
    pub stats: IssuerStats,
}

impl Authenticator {
    pub fn new(cfg: OidcConfig) -> Result<Arc<Self>, AuthnError> {
        if !cfg.issuer_url.starts_with("https://") {
            return Err(AuthnError::Config(format!(
                "--oidc-issuer-url {:?} must be https",
                cfg.issuer_url
            )));
        }
        if cfg.audiences.iter().all(String::is_empty) {
            return Err(AuthnError::Config("--oidc-client-id is required".into()));
        }
        let client = IssuerClient::new(
            &cfg.issuer_url,
            cfg.discovery_url.as_deref(),
            cfg.ca_pem.as_deref(),
        )?;
        let algorithms = cfg.signing_algs.clone();
        Ok(Arc::new(Authenticator {
            client,
            algorithms,
            keys: ArcSwap::from_pointee(KeySet::default()),
            jwks_uri: ArcSwap::from_pointee(None),
            ready: AtomicBool::new(false),
            fetches: std::sync::Mutex::new(Fetches::default()),
            fetched: tokio::sync::watch::Sender::new(0),
            held: tokio::sync::Semaphore::new(MAX_HELD),
            stats: IssuerStats::default(),
            cfg,
        }))
    }

    /// True once the issuer's keys have been loaded (and from then on).
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub fn issuer_url(&self) -> &str {
        &self.cfg.issuer_url
    }

    pub fn fingerprint(&self) -> u64 {
        self.cfg.fingerprint
    }

    /// Takes the keys `old` has loaded when both fetch them from the same place (issuer,
    /// discovery URL, CA): an issuer whose rules changed then serves its tokens at once,
    /// instead of refusing them until its first fetch.
    pub fn adopt_keys(&self, old: &Authenticator) {
        let same_source = self.cfg.issuer_url == old.cfg.issuer_url
            && self.cfg.discovery_url == old.cfg.discovery_url
            && self.cfg.ca_pem == old.cfg.ca_pem;
        if same_source && old.is_ready() {
            self.keys.store(old.keys.load_full());
            self.jwks_uri.store(old.jwks_uri.load_full());
            self.ready.store(true, Ordering::Release);
        }
    }

    /// Verifies a token of this issuer and maps it to a user; returns the user and `exp`.
    pub async fn verify(self: &Arc<Self>, token: &str) -> Result<(User, u64), AuthnError> {
        let result = self.verify_uncounted(token).await;
        let counter = if result.is_ok() {
            &self.stats.accepted
        } else {
            &self.stats.refused
        };
        counter.fetch_add(1, Ordering::Relaxed);
        result
    }

    async fn verify_uncounted(self: &Arc<Self>, token: &str) -> Result<(User, u64), AuthnError> {
        if !self.is_ready() {
            return Err(AuthnError::NotReady);
        }
        if let Mapping::Rules(rules) = &self.cfg.mapping
            && rules.uses_cel()
            && token.split('.').nth(1).map_or(0, |p| p.len() / 4 * 3) > cel::MAX_CLAIMS_BYTES
        {
            // CEL's cost is linear in the claims' size: that size is bounded too.
            return Err(AuthnError::Claims(format!(
                "the claims are larger than the {} bytes allowed with CEL rules",
                cel::MAX_CLAIMS_BYTES
            )));
        }
        let jws = jws::parse(token, &self.algorithms)?;
        // Only a token that says it is ours may cost a fetch: a ServiceAccount token on its way
        // to a TokenReview (--token-passthrough) has a kid too, and must not wait for one.
        if let Some(kid) = jws.header.kid.as_deref()
            && !self.keys.load().has_kid(kid)
            && self.claims_our_issuer(token)
        {
            self.refetch_for_unknown_kid(kid).await;
        }
        let claims = jws::verify(&self.keys.load(), &jws)?;
        jws::check_registered_claims(&claims, &self.cfg.issuer_url, &self.cfg.audiences, unix_now())?;
        self.accept(claims)
    }

    /// Whether `token` claims (unverified) to come from this issuer.
    pub fn claims_our_issuer(&self, token: &str) -> bool {
        unverified_issuer(token).as_deref() == Some(self.cfg.issuer_url.as_str())
    }

    fn accept(&self, claims: Map<String, Value>) -> Result<(User, u64), AuthnError> {
        let now = unix_now();
        if let Some(iat) = claims.get("iat") {
            let iat = iat
                .as_f64()
                .ok_or_else(|| AuthnError::Invalid("iat is not a number".into()))?;
            if iat > (now + LEEWAY_SECS) as f64 {
                return Err(AuthnError::Invalid("token issued in the future".into()));
            }
        }
        let exp = claims.get("exp").and_then(Value::as_f64).unwrap_or(0.0).max(0.0) as u64;
        let user = match &self.cfg.mapping {
            Mapping::Flags(m) => m.user(&claims)?,
            Mapping::Rules(r) => r.user(&claims)?,
        };
        Ok((user, exp))
    }

    /// An unknown `kid` usually means the issuer rotated keys: fetch again, but at most once per
    /// `min_refetch_interval` however many unknown kids arrive, and only one such fetch at a
    /// time. A token that arrives inside the window waits for the next permitted fetch rather
    /// than being refused, so a rotation never costs a valid token a 401; every request
    /// waiting when that fetch ends takes its answer from it, so a flood of made-up kids still
    /// causes one fetch per window. The fetch runs in a task of its own: a client that goes
    /// away cannot cancel it for the others. At most [`MAX_HELD`] requests wait, each for at
    /// most [`MAX_HOLD`] in all; past either bound the token is checked against the keys at
    /// hand (and refused while its kid is unknown).
    async fn refetch_for_unknown_kid(self: &Arc<Self>, kid: &str) {
        let Ok(_place) = self.held.try_acquire() else {
            return;
        };
        let deadline = tokio::time::Instant::now() + MAX_HOLD;
        let mut finished = self.fetched.subscribe();
        let arrived = self.lock_fetches().started;
        loop {
            if self.keys.load().has_kid(kid) {
                return;
            }
            {
                let mut f = self.lock_fetches();
                if f.finished > arrived {
                    return; // a fetch that began after this token arrived has ended
                }
                if !f.scheduled {
                    let wait = f.last_start.map_or(Duration::ZERO, |t| {
                        self.cfg.min_refetch_interval.saturating_sub(t.elapsed())
                    });
                    if tokio::time::Instant::now() + wait > deadline {
                        return;
                    }
                    f.scheduled = true;
                    let this = self.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(wait).await;
                        this.fetch_for_unknown_kid().await;
                    });
                }
            }
            match tokio::time::timeout_at(deadline, finished.changed()).await {
                Ok(Ok(())) => {}
                _ => return,
            }
        }
    }

    async fn fetch_for_unknown_kid(&self) {
        let seq = self.begin_fetch();
        let uri = self.jwks_uri.load_full();
        let result = match uri.as_ref() {
            Some(uri) => self.fetch_keys(uri).await,
            None => Err(AuthnError::Fetch(
                "the issuer's discovery has not answered yet".into(),
            )),
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "refetching issuer keys for an unknown kid failed");
        }
        self.lock_fetches().scheduled = false;
        self.end_fetch(seq);
    }

    fn lock_fetches(&self) -> std::sync::MutexGuard<'_, Fetches> {
        self.fetches.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Numbers a fetch that starts now.
    fn begin_fetch(&self) -> u64 {
        let mut f = self.lock_fetches();
        f.started += 1;
        f.last_start = Some(Instant::now());
        f.started
    }

    /// Marks fetch `seq` finished (keys stored or not) and wakes the requests waiting on one.
    fn end_fetch(&self, seq: u64) {
        let finished = {
            let mut f = self.lock_fetches();
            f.finished = f.finished.max(seq);
            f.finished
        };
        self.fetched.send_replace(finished);
    }

    async fn fetch_keys(&self, jwks_uri: &str) -> Result<(), AuthnError> {
        self.stats.key_fetches.fetch_add(1, Ordering::Relaxed);
        let result = self.client.keys(jwks_uri).await.and_then(|set| {
            let keys = KeySet::from_jwks(&set);
            if keys.is_empty() {
                Err(AuthnError::Fetch(format!(
                    "{jwks_uri} holds no usable signing key"
                )))
            } else {
                Ok(keys)
            }
        });
        match result {
            Ok(keys) => {
                tracing::debug!(keys = keys.len(), "issuer keys loaded");
                self.keys.store(Arc::new(keys));
                self.ready.store(true, Ordering::Release);
                Ok(())
            }
            Err(e) => {
                self.stats.key_fetch_failures.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    /// Discovery plus keys; used at start and for the periodic refresh.
    pub async fn refresh(&self) -> Result<(), AuthnError> {
        let seq = self.begin_fetch();
        let result = async {
            let uri = self
                .client
                .discover(&self.cfg.issuer_url)
                .await
                .inspect_err(|_| {
                    self.stats.key_fetch_failures.fetch_add(1, Ordering::Relaxed);
                })?;
            self.jwks_uri.store(Arc::new(Some(uri.clone())));
            self.fetch_keys(&uri).await
        }
        .await;
        self.end_fetch(seq);
        result
    }

    /// Loads the keys (retrying with backoff until it works) and then refreshes them
    /// periodically, until `cancel` fires.
    pub fn spawn_refresher(self: &Arc<Self>, cancel: CancellationToken) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(500);
            loop {
                let wait = match this.refresh().await {
                    Ok(()) => {
                        backoff = Duration::from_millis(500);
                        this.cfg.refresh_interval
                    }
                    Err(e) => {
                        tracing::warn!(issuer = %this.cfg.issuer_url, error = %e, "cannot load issuer keys; retrying");
                        let wait = backoff;
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                        wait
                    }
                };
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        })
    }
}

/// The `iss` a token claims, read without verifying anything: what routes a token to its
/// issuer before any signature work. `None` for anything that is not a JWT with a string `iss`.
pub fn unverified_issuer(token: &str) -> Option<String> {
    let mut parts = token.split('.');
    let (Some(_), Some(payload), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    #[derive(serde::Deserialize)]
    struct Iss {
        iss: Option<String>,
    }
    let json = URL_SAFE_NO_PAD.decode(payload).ok()?;
    serde_json::from_slice::<Iss>(&json).ok()?.iss
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signing_algs_allow_list() {
        let algs = parse_signing_algs(&["RS256".into(), "ES256".into(), "RS256".into()]).unwrap();
        assert_eq!(algs, [Algorithm::RS256, Algorithm::ES256]);
        for bad in ["HS256", "none", "ES512", "rs256", ""] {
            assert!(parse_signing_algs(&[bad.into()]).is_err(), "{bad}");
        }
        assert!(parse_signing_algs(&[]).is_err());
    }
}
