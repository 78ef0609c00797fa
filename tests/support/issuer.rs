//! An in-process OIDC issuer over real TLS: discovery, JWKS, key rotation,
//! fetch counters and injectable failures. Tokens and signing keys live in
//! `token.rs`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use super::pki::Ca;
use super::token::{SigningKey, TokenBuilder};
use super::{Served, TempDir, bind_local, full, json, serve_tls};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// RSA 2048, signs RS256.
    Rsa2048,
    /// ECDSA P-256, signs ES256.
    EcP256,
}

pub fn issuer() -> IssuerBuilder {
    IssuerBuilder {
        client_id: "kube".into(),
        key_kind: KeyKind::Rsa2048,
        discovery_issuer: None,
        jwks_max_age: None,
        path: String::new(),
    }
}

pub struct IssuerBuilder {
    client_id: String,
    key_kind: KeyKind,
    discovery_issuer: Option<String>,
    jwks_max_age: Option<u32>,
    path: String,
}

impl IssuerBuilder {
    pub fn client_id(mut self, id: &str) -> Self {
        self.client_id = id.into();
        self
    }

    pub fn key_kind(mut self, kind: KeyKind) -> Self {
        self.key_kind = kind;
        self
    }

    /// Serve a discovery document whose `issuer` is this instead of `url()`.
    pub fn discovery_issuer_override(mut self, issuer: Option<String>) -> Self {
        self.discovery_issuer = issuer;
        self
    }

    /// Send `Cache-Control: max-age=N` with the JWKS.
    pub fn jwks_max_age(mut self, secs: Option<u32>) -> Self {
        self.jwks_max_age = secs;
        self
    }

    /// Put the issuer under a path, e.g. "/realms/test" (Keycloak style), so
    /// `url()` is `https://127.0.0.1:PORT/realms/test`.
    pub fn path(mut self, path: &str) -> Self {
        self.path = path.trim_end_matches('/').into();
        self
    }

    pub async fn run(self) -> Issuer {
        let ca = Ca::new("fake-oidc-ca");
        let tls = ca
            .issue_server(&["127.0.0.1", "localhost", "::1"])
            .server_config(&[b"h2", b"http/1.1"]);
        let listener = bind_local().await;
        let port = listener.local_addr().expect("local addr").port();
        let url = format!("https://127.0.0.1:{port}{}", self.path);
        let first = Arc::new(SigningKey::generate(self.key_kind));
        let shared = Arc::new(Shared {
            url,
            client_id: self.client_id,
            kind: self.key_kind,
            discovery_issuer: self.discovery_issuer,
            jwks_max_age: self.jwks_max_age,
            path: self.path,
            jwks_fetches: AtomicUsize::new(0),
            discovery_fetches: AtomicUsize::new(0),
            keys: Mutex::new(Keys {
                published: vec![first.clone()],
                signing: first,
                pending: None,
                jwks_status: 200,
                discovery_status: 200,
            }),
        });
        let handler_state = shared.clone();
        let served = serve_tls(listener, tls, move |req, _conn| {
            let shared = handler_state.clone();
            async move { shared.handle(req.uri().path()) }
        });
        let dir = TempDir::new("kop-issuer");
        let ca_file = dir.write("issuer-ca.crt", &ca.cert_pem());
        Issuer {
            shared,
            served,
            ca,
            ca_file,
            _dir: dir,
        }
    }
}

/// A running issuer. Dropping it stops the server and deletes `ca_file()`.
pub struct Issuer {
    shared: Arc<Shared>,
    served: Served,
    ca: Ca,
    ca_file: PathBuf,
    _dir: TempDir,
}

impl Issuer {
    /// `https://127.0.0.1:PORT` (plus the builder's path), no trailing slash.
    pub fn url(&self) -> String {
        self.shared.url.clone()
    }
    pub fn addr(&self) -> std::net::SocketAddr {
        self.served.addr
    }
    pub fn client_id(&self) -> String {
        self.shared.client_id.clone()
    }
    pub fn ca_pem(&self) -> String {
        self.ca.cert_pem()
    }
    pub fn ca_file(&self) -> PathBuf {
        self.ca_file.clone()
    }
    /// The CA that signed the issuer's serving certificate.
    pub fn ca(&self) -> &Ca {
        &self.ca
    }
    /// Requests to `/keys`, failed ones included.
    pub fn jwks_fetches(&self) -> usize {
        self.shared.jwks_fetches.load(Ordering::SeqCst)
    }
    /// Requests to the discovery document, failed ones included.
    pub fn discovery_fetches(&self) -> usize {
        self.shared.discovery_fetches.load(Ordering::SeqCst)
    }

    /// A token pre-filled with valid claims, signed by the current key.
    pub fn token(&self) -> TokenBuilder {
        TokenBuilder::new(self.shared.clone())
    }

    /// kid of the key that `sign()` uses now.
    pub fn current_kid(&self) -> String {
        self.shared.keys().signing.kid.clone()
    }
    /// SPKI PEM of the current signing key's public half.
    pub fn public_key_pem(&self) -> String {
        self.shared.keys().signing.public_pem.clone()
    }
    /// kids currently in the JWKS, oldest first.
    pub fn published_kids(&self) -> Vec<String> {
        let keys = self.shared.keys();
        keys.published.iter().map(|k| k.kid.clone()).collect()
    }
    /// The JWKS document exactly as `/keys` serves it.
    pub fn jwks_json(&self) -> Value {
        self.shared.jwks()
    }

    /// New signing key with a new kid; the JWKS publishes old and new.
    pub fn rotate(&self) {
        let key = Arc::new(SigningKey::generate(self.shared.kind));
        let mut keys = self.shared.keys();
        keys.published.push(key.clone());
        keys.signing = key;
    }
    /// New signing key whose kid is not in the JWKS until `publish_pending`.
    pub fn rotate_unpublished(&self) {
        let key = Arc::new(SigningKey::generate(self.shared.kind));
        let mut keys = self.shared.keys();
        keys.pending = Some(key.clone());
        keys.signing = key;
    }
    pub fn publish_pending(&self) {
        let mut keys = self.shared.keys();
        if let Some(key) = keys.pending.take() {
            keys.published.push(key);
        }
    }
    /// Unpublish every key except the current signing key.
    pub fn drop_old_keys(&self) {
        let mut keys = self.shared.keys();
        let current = keys.signing.kid.clone();
        keys.published.retain(|k| k.kid == current);
    }

    /// Make `/keys` answer with this status (200 restores normal service).
    pub fn set_jwks_status(&self, status: u16) {
        self.shared.keys().jwks_status = status;
    }
    /// Make the discovery document answer with this status (200 restores).
    pub fn set_discovery_status(&self, status: u16) {
        self.shared.keys().discovery_status = status;
    }

    /// Stop accepting and drop open connections (dropping does the same).
    pub fn shutdown(&self) {
        self.served.shutdown();
    }
}

/// State shared by the server task, the `Issuer` handle and token builders.
pub(super) struct Shared {
    pub(super) url: String,
    pub(super) client_id: String,
    kind: KeyKind,
    discovery_issuer: Option<String>,
    jwks_max_age: Option<u32>,
    path: String,
    jwks_fetches: AtomicUsize,
    discovery_fetches: AtomicUsize,
    keys: Mutex<Keys>,
}

struct Keys {
    published: Vec<Arc<SigningKey>>,
    signing: Arc<SigningKey>,
    pending: Option<Arc<SigningKey>>,
    jwks_status: u16,
    discovery_status: u16,
}

impl Shared {
    fn keys(&self) -> std::sync::MutexGuard<'_, Keys> {
        // A panicking test thread must not wedge the server for the others.
        self.keys.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn kind(&self) -> KeyKind {
        self.kind
    }

    pub(super) fn signing_key(&self) -> Arc<SigningKey> {
        self.keys().signing.clone()
    }

    fn jwks(&self) -> Value {
        let keys = self.keys();
        json!({ "keys": keys.published.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() })
    }

    fn handle(&self, path: &str) -> http::Response<super::Body> {
        let path = path.strip_prefix(self.path.as_str()).unwrap_or("");
        match path {
            "/.well-known/openid-configuration" => {
                self.discovery_fetches.fetch_add(1, Ordering::SeqCst);
                let status = self.keys().discovery_status;
                if status != 200 {
                    return error(status);
                }
                let url = &self.url;
                let alg = self.signing_key().alg;
                json(
                    200,
                    &json!({
                        "issuer": self.discovery_issuer.clone().unwrap_or_else(|| url.clone()),
                        "jwks_uri": format!("{url}/keys"),
                        "authorization_endpoint": format!("{url}/auth"),
                        "token_endpoint": format!("{url}/token"),
                        "response_types_supported": ["code", "id_token"],
                        "subject_types_supported": ["public"],
                        "id_token_signing_alg_values_supported": [alg],
                    }),
                )
            }
            "/keys" => {
                self.jwks_fetches.fetch_add(1, Ordering::SeqCst);
                let status = self.keys().jwks_status;
                if status != 200 {
                    return error(status);
                }
                let mut resp = json(200, &self.jwks());
                if let Some(age) = self.jwks_max_age {
                    let value =
                        http::HeaderValue::from_str(&format!("public, max-age={age}")).expect("valid header");
                    resp.headers_mut().insert(http::header::CACHE_CONTROL, value);
                }
                resp
            }
            _ => error(404),
        }
    }
}

fn error(status: u16) -> http::Response<super::Body> {
    let mut resp = http::Response::new(full(format!("fake issuer error {status}\n")));
    *resp.status_mut() = http::StatusCode::from_u16(status).expect("valid status code");
    resp
}
