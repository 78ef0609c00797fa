//! The one request handler. Each phase is a small function; the handler reads top to bottom as
//! the life of a request.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Either, Full, Limited};
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
    authz::{
        forbidden::forbidden_message,
        rbac::{Decision, Snapshot},
        request_info::RequestInfo,
        reviews::{self, SelfReview, UserView},
    },
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

        // authorize
        let upgrade = headers::wants_upgrade(req.version(), req.headers());
        let k8s_path = if route.path.is_empty() { "/" } else { route.path };
        // Exec, attach and port-forward need `create` for any GET as well as for POST: a GET
        // there exists only to be upgraded, and a read-only role must never open a shell.
        let stream_intent = upgrade || req.method() == http::Method::GET;
        let info = match RequestInfo::parse(req.method().as_str(), k8s_path, route.query, stream_intent) {
            Ok(info) => info,
            Err(e) => {
                return self.fail(
                    &ctx,
                    status(StatusCode::BAD_REQUEST, "BadRequest", &e.to_string()),
                );
            }
        };
        if !cluster.rbac.is_ready() {
            let msg = format!(
                "authorization data of cluster {:?} is not loaded yet",
                cluster.name
            );
            return self.fail(
                &ctx,
                status(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", &msg),
            );
        }
        let snapshot = cluster.rbac.snapshot.load();
        if let Some(review) = reviews::is_self_review(&info) {
            return self.self_review(req, review, &info, &user, &snapshot, &ctx).await;
        }
        if snapshot.authorize(&user.name, &user.groups, &info) == Decision::Deny {
            tracing::debug!(cluster = %cluster.name, user = %user.name, groups = ?user.groups, verb = %info.verb,
                resource = %info.resource, namespace = %info.namespace, subjects = snapshot.subject_count(), "denied");
            return self.fail(&ctx, forbidden(&user.name, &info));
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
        self.forward(req, upgrade, upstream_uri, &cluster, &user, &ctx)
            .await
    }

    /// Self-reviews are answered from the proxy's own decision and identity: forwarding them
    /// would answer for the proxy's cluster credentials instead of the user.
    async fn self_review(
        &self,
        req: Request<Incoming>,
        review: SelfReview,
        info: &RequestInfo,
        user: &User,
        snapshot: &Snapshot,
        ctx: &Ctx,
    ) -> Response<ProxyBody> {
        let body = match Limited::new(req.into_body(), MAX_REVIEW_BODY).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => {
                let msg = "request body is too large or could not be read";
                return self.fail(ctx, status(StatusCode::BAD_REQUEST, "BadRequest", msg));
            }
        };
        let view = UserView {
            name: &user.name,
            uid: &user.uid,
            groups: &user.groups,
            extra: &user.extra,
        };
        match reviews::answer(review, info, &body, &view, snapshot) {
            Ok((code, json)) => {
                self.record_success(ctx, user);
                let mut resp = Response::new(Either::Right(Full::new(Bytes::from(json))));
                *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::CREATED);
                resp.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                resp
            }
            Err(e) => self.fail(ctx, status(StatusCode::BAD_REQUEST, "BadRequest", &e.to_string())),
        }
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
        upgrade: bool,
        uri: http::Uri,
        cluster: &Arc<Cluster>,
        user: &User,
        ctx: &Ctx,
    ) -> Response<ProxyBody> {
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

/// Self-review bodies are small JSON objects; anything bigger is refused.
const MAX_REVIEW_BODY: usize = 1 << 20;

/// The 403 kube-apiserver would give, word for word, so scripts and users see the same thing.
fn forbidden(user: &str, info: &RequestInfo) -> Response<ProxyBody> {
    let details = if info.is_resource_request {
        let mut d = serde_json::json!({ "kind": info.resource });
        if !info.api_group.is_empty() {
            d["group"] = info.api_group.clone().into();
        }
        if !info.name.is_empty() {
            d["name"] = info.name.clone().into();
        }
        Some(d)
    } else {
        None
    };
    status::status_with_details(
        StatusCode::FORBIDDEN,
        "Forbidden",
        &forbidden_message(user, info),
        details,
    )
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
