//! A fake Kubernetes API server over real TLS (h2 and HTTP/1.1 by ALPN).
//! It records every request before answering, streams watch events the test
//! pushes, answers upgrades with 101 and then echoes bytes, and has a few
//! fixed routes (see `route`).

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::objects::Store;
use super::pki::{Ca, subject_cn_and_orgs};
use super::{BigBody, Body, ChannelBody, ConnInfo, Served, TempDir, bind_local, full, json, serve_tls};

pub fn apiserver() -> ApiBuilder {
    ApiBuilder {
        name: "fake".into(),
        bearer: None,
        client_roots: None,
        client_cert_required: true,
        delay: None,
    }
}

pub struct ApiBuilder {
    name: String,
    bearer: Option<String>,
    client_roots: Option<Arc<rustls::RootCertStore>>,
    client_cert_required: bool,
    delay: Option<Duration>,
}

impl ApiBuilder {
    /// Echoed in responses so tests can tell clusters apart.
    pub fn name(mut self, name: &str) -> Self {
        self.name = name.into();
        self
    }
    /// Answer 401 unless `Authorization: Bearer <token>` matches exactly.
    pub fn require_bearer(mut self, token: Option<&str>) -> Self {
        self.bearer = token.map(str::to_owned);
        self
    }
    /// Require a TLS client certificate chaining to `ca`.
    pub fn require_client_cert(mut self, ca: &Ca) -> Self {
        self.client_roots = Some(ca.roots());
        self
    }
    /// Ask for a TLS client certificate chaining to `ca`, but serve clients without one (to see
    /// which requests carry it).
    pub fn accept_client_cert(mut self, ca: &Ca) -> Self {
        self.client_roots = Some(ca.roots());
        self.client_cert_required = false;
        self
    }
    /// Sleep this long (after recording) before sending response headers.
    pub fn delay_headers(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    pub async fn run(self) -> FakeApi {
        let ca = Ca::new(&format!("fake-apiserver-ca-{}", self.name));
        let tls = ca
            .issue_server(&["127.0.0.1", "localhost", "::1"])
            .server_config_client_auth(
                &[b"h2", b"http/1.1"],
                self.client_roots,
                self.client_cert_required,
            );
        let shared = Arc::new(ApiShared {
            name: self.name,
            bearer: self.bearer,
            delay: self.delay,
            requests: Mutex::new(Vec::new()),
            watches: Mutex::new(Vec::new()),
            upgrades: Arc::new(AtomicUsize::new(0)),
            store: Store::default(),
            tokens: Mutex::new(std::collections::HashMap::new()),
            review_delay: Mutex::new(None),
        });
        let state = shared.clone();
        let listener = bind_local().await;
        let served = serve_tls(listener, tls, move |req, conn| {
            let shared = state.clone();
            async move { shared.handle(req, conn).await }
        });
        let dir = TempDir::new("kop-apiserver");
        let ca_file = dir.write("apiserver-ca.crt", &ca.cert_pem());
        FakeApi {
            shared,
            served,
            ca,
            ca_file,
            _dir: dir,
        }
    }
}

/// One request as the fake received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    /// Path and query exactly as received (origin form, also for h2).
    pub uri: String,
    pub version: http::Version,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub client_cert_cn: Option<String>,
    pub client_cert_orgs: Vec<String>,
}

impl Recorded {
    /// First value of `name`, if present and valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    /// Every value of `name`, in order.
    pub fn header_all(&self, name: &str) -> Vec<String> {
        let values = self.headers.get_all(name).iter();
        values
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect()
    }
}

/// A running fake apiserver. Dropping it stops it and deletes `ca_file()`.
pub struct FakeApi {
    shared: Arc<ApiShared>,
    served: Served,
    ca: Ca,
    ca_file: PathBuf,
    _dir: TempDir,
}

impl FakeApi {
    pub fn url(&self) -> String {
        format!("https://{}", self.served.addr)
    }
    pub fn addr(&self) -> std::net::SocketAddr {
        self.served.addr
    }
    pub fn name(&self) -> String {
        self.shared.name.clone()
    }
    pub fn ca_pem(&self) -> String {
        self.ca.cert_pem()
    }
    pub fn ca_file(&self) -> PathBuf {
        self.ca_file.clone()
    }
    /// The CA that signed the serving certificate.
    pub fn ca(&self) -> &Ca {
        &self.ca
    }

    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.shared.requests).clone()
    }
    /// The most recent request; panics if there was none.
    /// The most recent request that was not the proxy's own RBAC or namespace watch; panics
    /// if there was none.
    pub fn last(&self) -> Recorded {
        let requests = lock(&self.shared.requests);
        requests
            .iter()
            .rev()
            .find(|r| !is_store_request(r))
            .cloned()
            .expect("fake apiserver got no request")
    }
    pub fn clear_requests(&self) {
        lock(&self.shared.requests).clear();
    }

    /// Push one event (`json_line` + "\n") to every open watch stream;
    /// returns how many streams it reached.
    pub fn send_watch_event(&self, json_line: &str) -> usize {
        let line = Bytes::from(format!("{}\n", json_line.trim_end_matches('\n')));
        let mut watches = lock(&self.shared.watches);
        watches.retain(|tx| tx.send(line.clone()).is_ok());
        watches.len()
    }
    /// Watch streams whose client is still connected (as far as hyper knows).
    pub fn open_watches(&self) -> usize {
        let mut watches = lock(&self.shared.watches);
        watches.retain(|tx| !tx.is_closed());
        watches.len()
    }
    /// Wait (up to 10 s) until at least `n` watch streams are open, so an
    /// event sent next is not lost to a race with the proxy's request.
    pub async fn wait_watches(&self, n: usize) {
        super::wait_until("open watches", 10, || self.open_watches() >= n).await;
    }
    /// End every watch stream cleanly (terminating chunk on HTTP/1.1).
    pub fn close_watches(&self) {
        lock(&self.shared.watches).clear();
    }
    /// Upgraded connections whose echo loop is still running.
    pub fn open_upgrades(&self) -> usize {
        self.shared.upgrades.load(Ordering::SeqCst)
    }

    /// Makes its TokenReview authenticate `token` as `username` with `groups` (plus
    /// system:authenticated, as kube-apiserver reports).
    pub fn accept_token(&self, token: &str, username: &str, groups: &[&str]) {
        let mut groups: Vec<&str> = groups.to_vec();
        groups.push("system:authenticated");
        lock(&self.shared.tokens).insert(
            token.to_string(),
            json!({"username": username, "uid": format!("uid-{username}"), "groups": groups}),
        );
    }

    /// Makes every TokenReview wait `delay` before it is answered.
    pub fn delay_token_reviews(&self, delay: Duration) {
        *lock(&self.shared.review_delay) = Some(delay);
    }

    /// TokenReviews received so far.
    pub fn token_reviews(&self) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.uri.ends_with("/apis/authentication.k8s.io/v1/tokenreviews"))
            .count()
    }

    /// The namespaces and RBAC objects this server lists and watches.
    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    /// Requests other than the proxy's own list/watch of namespaces and RBAC.
    pub fn user_requests(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| !is_store_request(r))
            .collect()
    }

    /// Stop accepting and drop every connection, upgraded ones included.
    pub fn shutdown(&self) {
        self.close_watches();
        self.served.shutdown();
    }
}

struct ApiShared {
    name: String,
    bearer: Option<String>,
    delay: Option<Duration>,
    requests: Mutex<Vec<Recorded>>,
    watches: Mutex<Vec<mpsc::UnboundedSender<Bytes>>>,
    upgrades: Arc<AtomicUsize>,
    store: Store,
    /// Tokens its TokenReview authenticates, with the user it reports.
    tokens: Mutex<std::collections::HashMap<String, Value>>,
    /// How long a TokenReview waits before its answer (a hanging cluster).
    review_delay: Mutex<Option<Duration>>,
}

/// A token the fake's TokenReview answers 500 for (a review error, never cached).
pub const REVIEW_FAILS: &str = "review-fails";

/// Lock, ignoring poison: one failed test must not cascade into the others.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ApiShared {
    async fn handle(&self, mut req: Request<Incoming>, conn: ConnInfo) -> Response<Body> {
        // The upgrade handle travels in the request's extensions, so it has
        // to be taken before the request is split up.
        let on_upgrade = hyper::upgrade::on(&mut req);
        let (parts, body) = req.into_parts();
        let body = match body.collect().await {
            Ok(collected) => collected.to_bytes().to_vec(),
            Err(_) => Vec::new(),
        };
        let subject = conn.client_cert.as_deref().and_then(subject_cn_and_orgs);
        let (client_cert_cn, client_cert_orgs) = subject.unwrap_or_default();
        let uri = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        let recorded = Recorded {
            method: parts.method.to_string(),
            uri: uri.to_owned(),
            version: parts.version,
            headers: parts.headers.clone(),
            body,
            client_cert_cn,
            client_cert_orgs,
        };
        lock(&self.requests).push(recorded.clone());

        if let Some(delay) = self.delay {
            tokio::time::sleep(delay).await;
        }
        let review_delay = *lock(&self.review_delay);
        if let Some(delay) =
            review_delay.filter(|_| recorded.uri.ends_with("/authentication.k8s.io/v1/tokenreviews"))
        {
            tokio::time::sleep(delay).await;
        }
        if let Some(token) = &self.bearer {
            let expected = format!("Bearer {token}");
            if recorded.header("authorization") != Some(expected.as_str()) {
                return status_json(401, "Unauthorized");
            }
        }
        if let Some(protocol) = upgrade_protocol(&parts.headers) {
            return self.upgrade(&recorded, protocol, on_upgrade, conn);
        }
        self.route(&recorded)
    }

    fn route(&self, req: &Recorded) -> Response<Body> {
        let (path, query) = req.uri.split_once('?').unwrap_or((&req.uri, ""));
        let dry_run = query.split('&').any(|kv| kv == "dryRun=All");
        if dry_run && matches!(req.method.as_str(), "POST" | "PUT" | "PATCH") {
            return dry_run_echo(req, path);
        }
        if let Some(resp) = self.store.handle(&req.method, path, query) {
            return resp;
        }
        if req.method == "POST" && path.ends_with("/apis/authentication.k8s.io/v1/tokenreviews") {
            return self.token_review(req);
        }
        let watch = query.split('&').any(|kv| kv == "watch=true" || kv == "watch=1");
        if watch {
            let (tx, rx) = mpsc::unbounded_channel();
            lock(&self.watches).push(tx);
            // No Content-Length: hyper frames it as chunked on HTTP/1.1 and
            // writes every pushed event as its own chunk straight away.
            return Response::builder()
                .header(header::CONTENT_TYPE, "application/json")
                .body(ChannelBody(rx).boxed())
                .expect("valid response");
        }
        if req.method == "GET" && path == "/version" {
            let git = format!("v1.35.0-fake-{}", self.name);
            return json(200, &json!({"major": "1", "minor": "35", "gitVersion": git}));
        }
        if let Some(code) = path.strip_prefix("/status/") {
            return match code.parse::<u16>() {
                Ok(code) if (200..=599).contains(&code) => status_json(code, "Requested"),
                _ => status_json(400, "BadRequest"),
            };
        }
        if let Some(n) = path.strip_prefix("/big/").and_then(|n| n.parse().ok()) {
            let body = BigBody::new(n);
            return Response::new(body.boxed());
        }
        json(
            200,
            &json!({"kind": "Echo", "server": self.name, "method": req.method,
                    "uri": req.uri, "version": format!("{:?}", req.version)}),
        )
    }

    fn upgrade(
        &self,
        req: &Recorded,
        protocol: HeaderValue,
        on_upgrade: hyper::upgrade::OnUpgrade,
        mut conn: ConnInfo,
    ) -> Response<Body> {
        let mut resp = Response::builder()
            .status(101)
            .header(header::CONNECTION, "Upgrade")
            .header(header::UPGRADE, protocol.clone());
        let proto = protocol.to_str().unwrap_or("").to_ascii_lowercase();
        if proto == "websocket" {
            if let Some(key) = req.header("sec-websocket-key") {
                resp = resp.header("sec-websocket-accept", websocket_accept(key));
            }
            let offered = req.header_all("sec-websocket-protocol");
            if let Some(first) = offered.iter().flat_map(|v| v.split(',')).next() {
                resp = resp.header("sec-websocket-protocol", first.trim());
            }
        } else if proto.starts_with("spdy/")
            && let Some(first) = req.header_all("x-stream-protocol-version").first()
        {
            resp = resp.header("x-stream-protocol-version", first.as_str());
        }
        let upgrades = self.upgrades.clone();
        tokio::spawn(async move {
            let Ok(upgraded) = on_upgrade.await else {
                return;
            };
            upgrades.fetch_add(1, Ordering::SeqCst);
            // Echo on the same stream: split it, copy read half into write
            // half. tokio's copy flushes whenever the reader has nothing.
            let (mut rd, mut wr) = tokio::io::split(TokioIo::new(upgraded));
            let echo = async {
                let _ = tokio::io::copy(&mut rd, &mut wr).await;
                let _ = tokio::io::AsyncWriteExt::shutdown(&mut wr).await;
            };
            tokio::select! {
                _ = echo => {}
                _ = conn.stopped() => {}
            }
            upgrades.fetch_sub(1, Ordering::SeqCst);
        });
        resp.body(full(Bytes::new())).expect("valid 101 response")
    }
}

/// A dry run answered as kube-apiserver would for an object that is the request body (enough for
/// the proxy's checks; patch semantics are the real ring's business): 201 for a create, and for
/// PUT or PATCH 201 when the object "does not exist yet" (its name starts with `new`), else 200
/// with the existing object's uid (`uid-<name>`) and resourceVersion (`7`).
impl ApiShared {
    fn token_review(&self, req: &Recorded) -> Response<Body> {
        let review: Value = serde_json::from_slice(&req.body).unwrap_or_default();
        let token = review["spec"]["token"].as_str().unwrap_or("");
        if token == REVIEW_FAILS {
            return status_json(500, "InternalError");
        }
        let status = match lock(&self.tokens).get(token) {
            Some(user) => {
                json!({"authenticated": true, "user": user, "audiences": review["spec"]["audiences"]})
            }
            None => json!({"authenticated": false, "error": "invalid bearer token"}),
        };
        json(
            201,
            &json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "status": status}),
        )
    }
}

fn dry_run_echo(req: &Recorded, path: &str) -> Response<Body> {
    // A JSON patch (an array) is echoed as an empty object of the path's name.
    let mut object: Value = serde_json::from_slice(&req.body)
        .ok()
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    let last = path.rsplit('/').next().unwrap_or("");
    if req.method != "POST" && object.pointer("/metadata/name").is_none() {
        object["metadata"] = json!({"name": last});
    }
    let created = req.method == "POST" || last.starts_with("new");
    if !created && object.is_object() {
        // The existing object's identity, as kube-apiserver's dry run of an update returns it.
        let name = object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or(last)
            .to_string();
        let metadata = &mut object["metadata"];
        if metadata.get("uid").is_none() {
            metadata["uid"] = format!("uid-{name}").into();
        }
        if metadata.get("resourceVersion").is_none() {
            metadata["resourceVersion"] = "7".into();
        }
    }
    json(if created { 201 } else { 200 }, &object)
}

fn is_store_request(r: &Recorded) -> bool {
    super::objects::is_collection_path(r.uri.split('?').next().unwrap_or(""))
}

/// `Some(Upgrade value)` when the request asks to switch protocols.
fn upgrade_protocol(headers: &HeaderMap) -> Option<HeaderValue> {
    let wants_upgrade = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    let protocol = headers.get(header::UPGRADE)?;
    wants_upgrade.then(|| protocol.clone())
}

/// RFC 6455: base64(SHA-1(key + GUID)).
fn websocket_accept(key: &str) -> String {
    const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    let input = format!("{key}{GUID}");
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, input.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}

/// A Kubernetes `Status` object with `code`.
pub fn status_json(code: u16, reason: &str) -> Response<Body> {
    let failed = code >= 400;
    json(
        code,
        &json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": if failed { "Failure" } else { "Success" },
            "message": format!("fake apiserver status {code}"),
            "reason": reason,
            "code": code,
        }),
    )
}
