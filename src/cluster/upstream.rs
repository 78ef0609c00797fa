//! The client for one cluster's API server, built from its kubeconfig (current context): server
//! URL with its path prefix, CA, client certificate, bearer token or token file, exec plugins,
//! `tls-server-name` and `insecure-skip-tls-verify` all come from kube's own kubeconfig code.
//!
//! Upstream is HTTP/1.1 only: one pooled connection per in-flight request, so a long watch never
//! queues other requests behind it (an h2 connection would), and upgrades always work.

use std::{
    future::Future,
    path::Path,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use futures_util::{FutureExt, TryFutureExt, future};
use http::{
    HeaderValue, Request, Response, Uri,
    uri::{self, Authority, PathAndQuery, Scheme},
};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioTimer},
};
use kube::{
    Config,
    client::ConfigExt,
    config::{KubeConfigOptions, Kubeconfig},
};
use secrecy::ExposeSecret;
use tower::{BoxError, Service, ServiceBuilder, ServiceExt, util::BoxCloneSyncService};

/// Request bodies sent upstream: the client's own body, streamed, or one the proxy made.
pub type UpBody = Either<Incoming, Full<Bytes>>;
type UpService = BoxCloneSyncService<Request<UpBody>, Response<Incoming>, BoxError>;
type HyperClient = Client<TimedConnect<hyper_rustls::HttpsConnector<HttpConnector>>, UpBody>;

/// How a request reaches the API server.
enum Sender {
    /// Credentials that never change (client certificate, inline bearer token) and no extra
    /// headers: the hyper client is called directly, without kube's tower layers (two boxed
    /// futures and a service clone per request).
    Direct {
        client: Box<HyperClient>,
        authorization: Option<HeaderValue>,
    },
    /// Exec plugins, auth providers, token files, basic auth, kubeconfig impersonation: kube's
    /// own layers, which refresh and add what is needed.
    Layered(UpService),
}

/// Timeouts towards API servers (`--upstream-*`).
#[derive(Debug, Clone, Copy)]
pub struct UpstreamOptions {
    pub connect_timeout: Duration,
    pub tls_handshake_timeout: Duration,
    /// Zero means no limit.
    pub response_header_timeout: Duration,
}

impl Default for UpstreamOptions {
    fn default() -> Self {
        UpstreamOptions {
            connect_timeout: Duration::from_secs(10),
            tls_handshake_timeout: Duration::from_secs(10),
            response_header_timeout: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("kubeconfig: {0}")]
    Kubeconfig(String),
    /// No connection could be made (refused, DNS, TLS handshake, timeout).
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("no response headers within {0:?}")]
    Timeout(Duration),
    /// The connection failed after it was made (reset, malformed response).
    #[error("upstream failed: {0}")]
    Failed(String),
}

pub struct Upstream {
    base: Base,
    sender: Sender,
    /// The same server, CA and TLS settings without any of the proxy's credentials: for requests
    /// that carry the user's own token (`passthrough-user-token`, `--token-passthrough`).
    bare: Box<HyperClient>,
    header_timeout: Duration,
    /// The server URL as it may be shown (no userinfo, no query), for logs and `/clusters`.
    pub server: String,
}

/// The server URL's scheme, authority and path, parsed once: a request's URI is put together
/// from them and its own path and query, of which only the latter is parsed per request (the
/// whole URI parsed again from text was a thousand instructions of every request).
struct Base {
    scheme: Scheme,
    authority: Authority,
    /// The server URL's path without a trailing slash (e.g. Rancher's `/k8s/clusters/c-x`).
    path_prefix: String,
}

impl Base {
    /// The URI `scheme://authority{path_prefix}{path}?{query}`, checked as `Uri`'s own parser
    /// checks it (the path and query by the same parser that reads them from a whole URI).
    fn uri_for(&self, path: &str, query: Option<&str>) -> Result<Uri, http::Error> {
        let path = if path.is_empty() { "/" } else { path };
        let q = query.map_or(0, |q| q.len() + 1);
        let mut pq = Vec::with_capacity(self.path_prefix.len() + path.len() + q);
        pq.extend_from_slice(self.path_prefix.as_bytes());
        pq.extend_from_slice(path.as_bytes());
        if let Some(q) = query {
            pq.push(b'?');
            pq.extend_from_slice(q.as_bytes());
        }
        let mut parts = uri::Parts::default();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(self.authority.clone());
        parts.path_and_query = Some(PathAndQuery::from_maybe_shared(Bytes::from(pq))?);
        Ok(Uri::from_parts(parts)?)
    }
}

impl Upstream {
    /// Loads a kubeconfig file and builds the proxy client for its current context, plus a kube
    /// client (same credentials) for the proxy's own watches.
    pub async fn from_kubeconfig_file(
        path: &Path,
        opts: UpstreamOptions,
    ) -> Result<(Upstream, kube::Client), UpstreamError> {
        let path = path.to_path_buf();
        let kubeconfig = tokio::task::spawn_blocking(move || Kubeconfig::read_from(&path))
            .await
            .map_err(|e| UpstreamError::Kubeconfig(e.to_string()))?
            .map_err(|e| UpstreamError::Kubeconfig(error_chain(&e)))?;
        Self::from_kubeconfig(kubeconfig, opts).await
    }

    pub async fn from_kubeconfig(
        kubeconfig: Kubeconfig,
        opts: UpstreamOptions,
    ) -> Result<(Upstream, kube::Client), UpstreamError> {
        let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .map_err(|e| UpstreamError::Kubeconfig(error_chain(&e)))?;
        if let Some(path) = config.auth_info.token_file.as_deref()
            && let Ok(token) = tokio::fs::read_to_string(path).await
            && token.trim() != token
        {
            // kube-rs sends a token file verbatim (client-go trims it): say so instead of
            // leaving the operator with "failed to parse header value" on every request.
            return Err(UpstreamError::Kubeconfig(format!(
                "token file {path} has leading or trailing whitespace (often a final newline); remove it"
            )));
        }
        // Exec credential plugins run synchronously inside auth_layer(): keep them off the
        // async workers.
        tokio::task::spawn_blocking(move || {
            let upstream = Self::from_config(&config, opts)?;
            let client =
                kube::Client::try_from(config).map_err(|e| UpstreamError::Kubeconfig(error_chain(&e)))?;
            Ok((upstream, client))
        })
        .await
        .map_err(|e| UpstreamError::Kubeconfig(e.to_string()))?
    }

    fn from_config(config: &Config, opts: UpstreamOptions) -> Result<Upstream, UpstreamError> {
        let kube_err = |e: kube::Error| UpstreamError::Kubeconfig(error_chain(&e));
        let url = &config.cluster_url;
        let (Some(scheme), Some(authority)) = (url.scheme(), url.authority()) else {
            return Err(UpstreamError::Kubeconfig(format!(
                "server URL {} has no scheme or host",
                super::shown::server_url(url)
            )));
        };
        let client = hyper_client(config, opts)?;
        // No client certificate, token or exec plugin: only the server's CA and TLS settings.
        let mut bare_config = config.clone();
        bare_config.auth_info = Default::default();
        let bare = Box::new(hyper_client(&bare_config, opts)?);
        let sender = match credentials(config)? {
            Credentials::Token(value) => Sender::Direct {
                client: Box::new(client),
                authorization: Some(value),
            },
            Credentials::ClientCertOnly => Sender::Direct {
                client: Box::new(client),
                authorization: None,
            },
            Credentials::Layered => {
                let stack = ServiceBuilder::new()
                    .layer(config.extra_headers_layer().map_err(kube_err)?)
                    .option_layer(config.auth_layer().map_err(kube_err)?)
                    .service(ServiceExt::<Request<UpBody>>::map_err(client, box_error));
                Sender::Layered(BoxCloneSyncService::new(stack))
            }
        };
        Ok(Upstream {
            base: Base {
                scheme: scheme.clone(),
                authority: authority.clone(),
                path_prefix: url.path().trim_end_matches('/').to_string(),
            },
            sender,
            bare,
            header_timeout: opts.response_header_timeout,
            server: super::shown::server_url(url),
        })
    }

    /// The upstream URI for a Kubernetes path (starting with `/`, or empty) and raw query.
    pub fn uri_for(&self, path: &str, query: Option<&str>) -> Result<Uri, http::Error> {
        self.base.uri_for(path, query)
    }

    /// Sends one request that carries the user's own credentials (its `Authorization` header),
    /// with none of the proxy's.
    pub fn send_as_user<'w>(
        &self,
        req: Request<UpBody>,
        watchdog: Option<&'w dyn Watchdog>,
    ) -> impl Future<Output = Result<Response<Incoming>, UpstreamError>> + use<'w> {
        let call = self.bare.request(req).map_err(box_error);
        within_header_timeout(self.header_timeout, call, watchdog)
    }

    /// Sends one request with the proxy's credentials. Only the wait for response headers is
    /// limited; the body streams for as long as the API server keeps it open. A `watchdog` that
    /// wakes the caller's task by the deadline spares the wait a timer of its own.
    pub fn send<'w>(
        &self,
        mut req: Request<UpBody>,
        watchdog: Option<&'w dyn Watchdog>,
    ) -> impl Future<Output = Result<Response<Incoming>, UpstreamError>> + use<'w> {
        let call = match &self.sender {
            Sender::Direct {
                client,
                authorization,
            } => {
                if let Some(value) = authorization {
                    req.headers_mut()
                        .insert(http::header::AUTHORIZATION, value.clone());
                }
                future::Either::Left(client.request(req).map_err(box_error))
            }
            Sender::Layered(service) => future::Either::Right(service.clone().oneshot(req)),
        };
        within_header_timeout(self.header_timeout, call, watchdog)
    }
}

/// Wakes the task of a request that waits for response headers by the deadline it was told, so
/// the wait needs no timer of its own: the HTTP/1.1 connection's clock (`server::head_clock`)
/// keeps one timer for the whole connection, and a tokio timer per request costs its
/// registration in the timer wheel and its removal (about 1k instructions, a tenth of what the
/// proxy adds to a small GET).
pub trait Watchdog: Sync {
    /// A request now waits for headers until `deadline`; the task is woken by then.
    fn watch(&self, deadline: tokio::time::Instant);
    /// The wait has ended (answered, failed, timed out or dropped).
    fn unwatch(&self);
}

/// `call` with its wait for response headers limited to `limit` (none when zero), and its error
/// sorted. Combinators rather than `async fn`s: every request's future holds this one, and each
/// `async fn` layer is one more state machine copied into the next at every hand-over.
pub(crate) fn within_header_timeout<'w, F>(
    limit: Duration,
    call: F,
    watchdog: Option<&'w dyn Watchdog>,
) -> impl Future<Output = Result<Response<Incoming>, UpstreamError>> + use<'w, F>
where
    F: Future<Output = Result<Response<Incoming>, BoxError>> + Unpin,
{
    match (limit.is_zero(), watchdog) {
        (true, _) => future::Either::Left(call.map_err(classify)),
        (false, Some(watchdog)) => future::Either::Right(future::Either::Left(Watched {
            call,
            deadline: tokio::time::Instant::now() + limit,
            limit,
            watchdog,
            watching: false,
        })),
        (false, None) => future::Either::Right(future::Either::Right(tokio::time::timeout(limit, call).map(
            move |timed| match timed {
                Ok(r) => r.map_err(classify),
                Err(_) => Err(UpstreamError::Timeout(limit)),
            },
        ))),
    }
}

/// A wait for response headers that a [`Watchdog`] wakes by its deadline: every poll that finds
/// no answer yet looks at the clock.
struct Watched<'w, F> {
    call: F,
    deadline: tokio::time::Instant,
    limit: Duration,
    watchdog: &'w dyn Watchdog,
    watching: bool,
}

impl<F> Drop for Watched<'_, F> {
    fn drop(&mut self) {
        if self.watching {
            self.watchdog.unwatch();
        }
    }
}

impl<F> Future for Watched<'_, F>
where
    F: Future<Output = Result<Response<Incoming>, BoxError>> + Unpin,
{
    type Output = Result<Response<Incoming>, UpstreamError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let answer = match Pin::new(&mut this.call).poll(cx) {
            Poll::Ready(r) => r.map_err(classify),
            Poll::Pending if tokio::time::Instant::now() < this.deadline => {
                if !this.watching {
                    this.watchdog.watch(this.deadline);
                    this.watching = true;
                }
                return Poll::Pending;
            }
            Poll::Pending => Err(UpstreamError::Timeout(this.limit)),
        };
        if std::mem::take(&mut this.watching) {
            this.watchdog.unwatch();
        }
        Poll::Ready(answer)
    }
}

/// The pooled HTTP/1.1 client for a kubeconfig's server, CA, TLS settings and client
/// certificate (if its user has one).
fn hyper_client(config: &Config, opts: UpstreamOptions) -> Result<HyperClient, UpstreamError> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_keepalive(Some(Duration::from_secs(30)));
    http.set_connect_timeout(Some(opts.connect_timeout));
    let https = config
        .rustls_https_connector_with_connector(http)
        .map_err(|e| UpstreamError::Kubeconfig(error_chain(&e)))?;
    let connector = TimedConnect {
        inner: https,
        limit: opts.connect_timeout + opts.tls_handshake_timeout,
    };
    Ok(Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(64)
        .build(connector))
}

/// How a cluster's kubeconfig authenticates the proxy.
#[derive(Debug)]
enum Credentials {
    /// An inline token: its `Authorization` value, precomputed and marked sensitive, as kube's
    /// `AddAuthorizationLayer` would send it.
    Token(HeaderValue),
    /// A client certificate only (in the TLS connector): nothing to add per request.
    ClientCertOnly,
    /// Exec plugins, auth providers, token files, basic auth, extra headers or impersonation:
    /// kube's layers add them per request.
    Layered,
}

fn credentials(config: &Config) -> Result<Credentials, UpstreamError> {
    let a = &config.auth_info;
    let dynamic = a.auth_provider.is_some()
        || a.exec.is_some()
        || (a.username.is_some() && a.password.is_some())
        || (a.token.is_none() && a.token_file.is_some());
    let extra_headers = !config.headers.is_empty()
        || a.impersonate.is_some()
        || a.impersonate_uid.is_some()
        || a.impersonate_groups.is_some()
        || a.impersonate_user_extra.is_some();
    if dynamic || extra_headers {
        return Ok(Credentials::Layered);
    }
    let Some(token) = &a.token else {
        return Ok(Credentials::ClientCertOnly);
    };
    let mut value = HeaderValue::try_from(format!("Bearer {}", token.expose_secret()))
        .map_err(|_| UpstreamError::Kubeconfig("the user's token is not a valid header value".into()))?;
    value.set_sensitive(true);
    Ok(Credentials::Token(value))
}

fn box_error(e: hyper_util::client::legacy::Error) -> BoxError {
    Box::new(e)
}

fn classify(e: BoxError) -> UpstreamError {
    let text = error_chain(&*e);
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&*e);
    while let Some(err) = source {
        if let Some(h) = err.downcast_ref::<hyper_util::client::legacy::Error>()
            && h.is_connect()
        {
            return UpstreamError::Connect(text);
        }
        if err.is::<ConnectTimeout>() {
            return UpstreamError::Connect(text);
        }
        source = err.source();
    }
    UpstreamError::Failed(text)
}

/// `a: b: c` from an error and its sources, for logs, with no credential in it.
pub use super::shown::error_chain;

#[derive(Debug, thiserror::Error)]
#[error("connect and TLS handshake took longer than {0:?}")]
struct ConnectTimeout(Duration);

/// Bounds TCP connect plus TLS handshake, which hyper-rustls does not limit by itself.
#[derive(Clone)]
struct TimedConnect<C> {
    inner: C,
    limit: Duration,
}

impl<C> Service<Uri> for TimedConnect<C>
where
    C: Service<Uri> + Clone + Send + 'static,
    C::Future: Send + 'static,
    C::Error: Into<BoxError>,
{
    type Response = C::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<C::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let fut = self.inner.call(uri);
        let limit = self.limit;
        Box::pin(async move {
            match tokio::time::timeout(limit, fut).await {
                Ok(r) => r.map_err(Into::into),
                Err(_) => Err(Box::new(ConnectTimeout(limit)) as BoxError),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use kube::config::AuthInfo;

    use super::*;

    proptest::proptest! {
        /// A request URI put together from parts is the one parsed from the whole text: the
        /// same URI, or refused alike. Paths and queries with any byte a client could send.
        #[test]
        fn uri_from_parts_is_the_uri_parsed_whole(
            prefix in "(/[a-z0-9-]{1,8}){0,2}",
            path in "(/[ -~\\x80-\\xff%#?]{0,12}){0,4}",
            query in proptest::option::of("[ -~]{0,16}"),
        ) {
            for server in ["https://127.0.0.1:6443", "http://[::1]:8080", "https://kube.example"] {
                let whole = format!("{server}{prefix}");
                let url: Uri = whole.parse().unwrap();
                let base = Base {
                    scheme: url.scheme().unwrap().clone(),
                    authority: url.authority().unwrap().clone(),
                    path_prefix: url.path().trim_end_matches('/').to_string(),
                };
                let path_or_root = if path.is_empty() { "/" } else { &path };
                let text = match &query {
                    Some(q) => format!("{server}{prefix}{path_or_root}?{q}"),
                    None => format!("{server}{prefix}{path_or_root}"),
                };
                let parsed = Uri::try_from(text).ok();
                let built = base.uri_for(&path, query.as_deref()).ok();
                proptest::prop_assert_eq!(&built, &parsed);
                if let Some(u) = built {
                    proptest::prop_assert_eq!(u.scheme(), url.scheme());
                    proptest::prop_assert_eq!(u.authority(), url.authority());
                }
            }
        }
    }

    fn config(auth_info: AuthInfo) -> Config {
        let mut c = Config::new("https://127.0.0.1:6443".parse().unwrap());
        c.auth_info = auth_info;
        c
    }

    #[test]
    fn only_static_credentials_skip_kube_layers() {
        let token = AuthInfo {
            token: Some("abc".to_string().into()),
            ..Default::default()
        };
        let Ok(Credentials::Token(header)) = credentials(&config(token.clone())) else {
            panic!("an inline token is a static credential");
        };
        assert_eq!(header, "Bearer abc");
        assert!(header.is_sensitive(), "the token never shows in debug output");

        // A client certificate alone lives in the TLS connector: no header at all.
        let cert_only = AuthInfo {
            client_certificate: Some("/c.crt".into()),
            client_key: Some("/c.key".into()),
            ..Default::default()
        };
        assert!(matches!(
            credentials(&config(cert_only)),
            Ok(Credentials::ClientCertOnly)
        ));

        // An inline token wins over a token file, as in kube and client-go.
        let both = AuthInfo {
            token_file: Some("/t".into()),
            ..token.clone()
        };
        assert!(matches!(credentials(&config(both)), Ok(Credentials::Token(_))));

        // Anything that changes over time or adds headers goes through kube's layers.
        let layered = [
            AuthInfo {
                token_file: Some("/var/run/secrets/token".into()),
                ..Default::default()
            },
            AuthInfo {
                exec: Some(serde_json::from_value(serde_json::json!({"command": "x"})).unwrap()),
                ..Default::default()
            },
            AuthInfo {
                username: Some("u".into()),
                password: Some("p".to_string().into()),
                ..Default::default()
            },
            AuthInfo {
                impersonate: Some("someone".into()),
                ..token.clone()
            },
            AuthInfo {
                impersonate_groups: Some(vec!["g".into()]),
                ..token.clone()
            },
            AuthInfo {
                impersonate_user_extra: Some([("scopes".to_string(), vec!["a".to_string()])].into()),
                ..token.clone()
            },
        ];
        for a in layered {
            assert!(
                matches!(credentials(&config(a.clone())), Ok(Credentials::Layered)),
                "{a:?}"
            );
        }
        let mut with_headers = config(token);
        with_headers.headers.push((
            http::HeaderName::from_static("x-extra"),
            HeaderValue::from_static("1"),
        ));
        assert!(matches!(credentials(&with_headers), Ok(Credentials::Layered)));
    }
}
