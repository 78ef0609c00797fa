//! The one request handler. Each phase is a small function; the handler reads top to bottom as
//! the life of a request.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use http::{HeaderName, HeaderValue, Request, Response, StatusCode, Version};
use http_body_util::Either;
use hyper::body::Incoming;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use time::OffsetDateTime;

use super::{
    ProxyBody,
    headers::{self, TrustedProxies},
    route,
    status::{self, status},
    upgrade::Streams,
};
use crate::{
    audit::access_log::{self, Sink},
    authn::{Authenticator, User},
    cluster::{Cluster, Registry, UpstreamError},
};

/// Behaviour switches of the request path, from flags.
#[derive(Clone, Default)]
pub struct ProxyOptions {
    pub trusted_proxies: TrustedProxies,
    /// Send Impersonate-* for the authenticated user (`--impersonate-upstream`).
    pub impersonate: bool,
    pub extra_user_headers: Vec<(String, String)>,
    pub extra_user_header_client_ip: bool,
}

pub struct Proxy {
    pub authn: Arc<Authenticator>,
    pub clusters: Arc<Registry>,
    pub access_log: Arc<dyn Sink>,
    pub opts: ProxyOptions,
    pub streams: Streams,
}

/// What the record phase needs, captured before the request is taken apart.
struct Ctx {
    peer: SocketAddr,
    uri: String,
    forwarded_for: Option<String>,
}

impl Proxy {
    pub async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<ProxyBody> {
        let ctx = Ctx {
            peer,
            uri: req
                .uri()
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/")
                .to_string(),
            forwarded_for: req
                .headers()
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
        };

        // authenticate: before anything else, so an unauthenticated client learns nothing.
        let Some(user) = self.authenticate(&req).await else {
            return self.fail(&ctx, status::unauthorized());
        };

        // route
        let route = match route::parse(req.uri().path(), req.uri().query()) {
            Ok(r) => r,
            Err(e) => {
                return self.fail(
                    &ctx,
                    status(StatusCode::BAD_REQUEST, "BadRequest", &e.to_string()),
                );
            }
        };
        let Some(cluster) = self.clusters.get(route.cluster) else {
            return self.fail(&ctx, status::unknown_cluster(route.cluster));
        };
        if headers::has_impersonation(req.headers()) {
            let msg = "impersonation (kubectl --as) is not supported through this proxy";
            return self.fail(&ctx, status(StatusCode::FORBIDDEN, "Forbidden", msg));
        }
        let upstream_uri = match cluster.upstream.uri_for(route.path, route.query) {
            Ok(u) => u,
            Err(_) => {
                return self.fail(
                    &ctx,
                    status(StatusCode::BAD_REQUEST, "BadRequest", "invalid request path"),
                );
            }
        };

        // forward
        self.forward(req, upstream_uri, &cluster, &user, &ctx).await
    }

    async fn authenticate(&self, req: &Request<Incoming>) -> Option<Arc<User>> {
        let token = headers::bearer_token(req.headers())?;
        match self.authn.authenticate(&token).await {
            Ok(user) => Some(user),
            Err(e) => {
                // The reason helps an operator; the token itself never reaches a log.
                tracing::debug!(error = %e, "authentication failed");
                None
            }
        }
    }

    async fn forward(
        &self,
        mut req: Request<Incoming>,
        uri: http::Uri,
        cluster: &Arc<Cluster>,
        user: &User,
        ctx: &Ctx,
    ) -> Response<ProxyBody> {
        let upgrade = headers::wants_upgrade(req.version(), req.headers());
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));

        let (mut parts, body) = req.into_parts();
        parts.uri = uri;
        parts.version = Version::HTTP_11;
        headers::clean_request(&mut parts.headers, upgrade);
        if let Some(xff) = headers::forwarded_for(
            ctx.forwarded_for
                .as_deref()
                .and_then(|v| HeaderValue::from_str(v).ok())
                .as_ref(),
            ctx.peer.ip(),
            &self.opts.trusted_proxies,
        ) {
            parts
                .headers
                .insert(HeaderName::from_static("x-forwarded-for"), xff);
        }
        if self.opts.impersonate
            && let Err(msg) = self.add_impersonation(&mut parts.headers, user, ctx)
        {
            return self.fail(ctx, status(StatusCode::BAD_REQUEST, "BadRequest", msg));
        }
        let up_req = Request::from_parts(parts, Either::Left(body));

        self.record_success(ctx, user);
        let mut resp = match cluster.upstream.send(up_req).await {
            Ok(resp) => resp,
            Err(e) => return self.upstream_failed(ctx, cluster, e),
        };

        let switched = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
        if let (Some(client_upgrade), true) = (client_upgrade, switched) {
            let server_upgrade = hyper::upgrade::on(&mut resp);
            self.streams
                .splice(client_upgrade, server_upgrade, cluster.name.clone());
        }
        let (mut parts, body) = resp.into_parts();
        headers::clean_response(&mut parts.headers, upgrade && switched);
        Response::from_parts(parts, Either::Left(body))
    }

    fn add_impersonation(&self, h: &mut http::HeaderMap, user: &User, ctx: &Ctx) -> Result<(), &'static str> {
        const BAD: &str = "user information cannot be sent as headers";
        let value = |s: &str| HeaderValue::from_str(s).map_err(|_| BAD);
        h.insert(HeaderName::from_static("impersonate-user"), value(&user.name)?);
        for g in &user.groups {
            h.append(HeaderName::from_static("impersonate-group"), value(g)?);
        }
        if !user.uid.is_empty() {
            h.insert(HeaderName::from_static("impersonate-uid"), value(&user.uid)?);
        }
        let mut extras: Vec<(&str, String)> = user
            .extra
            .iter()
            .flat_map(|(k, vs)| vs.iter().map(move |v| (k.as_str(), v.clone())))
            .collect();
        extras.extend(
            self.opts
                .extra_user_headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.clone())),
        );
        if self.opts.extra_user_header_client_ip {
            extras.push(("Remote-Client-IP", ctx.peer.ip().to_string()));
        }
        for (k, v) in extras {
            let name = format!("impersonate-extra-{}", utf8_percent_encode(k, EXTRA_KEY));
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| BAD)?;
            h.append(name, value(&v)?);
        }
        Ok(())
    }

    fn upstream_failed(&self, ctx: &Ctx, cluster: &Cluster, e: UpstreamError) -> Response<ProxyBody> {
        tracing::warn!(cluster = %cluster.name, server = %cluster.upstream.server, error = %e, "upstream request failed");
        let name = &cluster.name;
        let resp = match e {
            UpstreamError::Connect(_) => status(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                &format!("the API server of cluster {name:?} is unreachable"),
            ),
            UpstreamError::Timeout(d) => status(
                StatusCode::GATEWAY_TIMEOUT,
                "Timeout",
                &format!(
                    "the API server of cluster {name:?} did not answer within {}",
                    fmt_secs(d)
                ),
            ),
            UpstreamError::Failed(_) | UpstreamError::Kubeconfig(_) => status(
                StatusCode::BAD_GATEWAY,
                "InternalError",
                &format!("the request to the API server of cluster {name:?} failed"),
            ),
        };
        self.fail(ctx, resp)
    }

    fn record_success(&self, ctx: &Ctx, user: &User) {
        let client = access_log::Client {
            ip: ctx.peer.ip(),
            forwarded_for: ctx.forwarded_for.as_deref(),
            uri: &ctx.uri,
        };
        self.access_log.line(&access_log::success_line(
            OffsetDateTime::now_utc(),
            &client,
            user,
        ));
    }

    fn fail(&self, ctx: &Ctx, resp: Response<ProxyBody>) -> Response<ProxyBody> {
        let client = access_log::Client {
            ip: ctx.peer.ip(),
            forwarded_for: ctx.forwarded_for.as_deref(),
            uri: &ctx.uri,
        };
        self.access_log
            .line(&access_log::fail_line(OffsetDateTime::now_utc(), &client));
        resp
    }
}

/// Impersonate-Extra-* keys are percent-encoded as kube-apiserver decodes them.
const EXTRA_KEY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn fmt_secs(d: Duration) -> String {
    format!("{}s", d.as_secs())
}
