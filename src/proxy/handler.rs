//! The one request handler. Each phase is a small function; the handler reads top to bottom as
//! the life of a request.

use std::{net::SocketAddr, sync::Arc, time::Instant};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode, Version, header};
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::Incoming;

use super::{
    ProxyBody,
    headers::{self, TrustedProxies},
    record::Ctx,
    route,
    status::{self, status},
    upgrade::Streams,
};
use crate::{
    audit::{
        access_log::{Format, Sink},
        webhook::{AuditDecision, AuditHandle, omitted_body, precheck_body, request_body_field},
    },
    authn::{Authenticator, User},
    authz::{
        rbac::{Decision, Snapshot},
        request_info::RequestInfo,
        reviews::{self, SelfReview, UserView},
    },
    cluster::{Cluster, Registry, UpstreamError},
    metrics::{self, Metrics},
};

/// Behaviour switches of the request path, from flags.
#[derive(Clone, Default)]
pub struct ProxyOptions {
    pub trusted_proxies: TrustedProxies,
    /// Send Impersonate-* for the authenticated user (`--impersonate-upstream`).
    pub impersonate: bool,
    pub extra_user_headers: Vec<(String, String)>,
    pub extra_user_header_client_ip: bool,
    pub log_format: Format,
    /// Largest JSON body copied into an audit event.
    pub audit_max_body: usize,
}

pub struct Proxy {
    pub authn: Arc<Authenticator>,
    pub clusters: Arc<Registry>,
    pub access_log: Arc<dyn Sink>,
    pub audit: Option<AuditHandle>,
    pub metrics: Arc<Metrics>,
    pub opts: ProxyOptions,
    pub streams: Streams,
}

impl Proxy {
    pub async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<ProxyBody> {
        let mut ctx = self.context(&req, peer);

        // authenticate: before anything else, so an unauthenticated client learns nothing.
        let Some(user) = self.authenticate(&req).await else {
            return self.fail(
                &mut ctx,
                metrics::Decision::Unauthenticated,
                status::unauthorized(),
            );
        };

        // route
        let route = match route::parse(req.uri().path(), req.uri().query()) {
            Ok(r) => r,
            Err(e) => return self.fail(&mut ctx, metrics::Decision::Error, bad_request(&e.to_string())),
        };
        let Some(cluster) = self.clusters.get(route.cluster) else {
            return self.fail(
                &mut ctx,
                metrics::Decision::Error,
                status::unknown_cluster(route.cluster),
            );
        };
        ctx.cluster = Some(metrics::ClusterLabel::from(cluster.name.clone()));
        if headers::has_impersonation(req.headers()) {
            let msg = "impersonation (kubectl --as) is not supported through this proxy";
            return self.fail(
                &mut ctx,
                metrics::Decision::Deny,
                status(StatusCode::FORBIDDEN, "Forbidden", msg),
            );
        }

        // authorize
        let upgrade = headers::wants_upgrade(req.version(), req.headers());
        let k8s_path = if route.path.is_empty() { "/" } else { route.path };
        // Exec, attach and port-forward need `create` for any GET as well as for POST: a GET
        // there exists only to be upgraded, and a read-only role must never open a shell.
        let stream_intent = upgrade || req.method() == http::Method::GET;
        let info = match RequestInfo::parse(req.method().as_str(), k8s_path, route.query, stream_intent) {
            Ok(info) => info,
            Err(e) => return self.fail(&mut ctx, metrics::Decision::Error, bad_request(&e.to_string())),
        };
        ctx.verb = metrics::Verb::from_kube(&info.verb);
        if !cluster.rbac.is_ready() {
            let msg = format!(
                "authorization data of cluster {:?} is not loaded yet",
                cluster.name
            );
            let resp = status(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", &msg);
            return self.fail(&mut ctx, metrics::Decision::Error, resp);
        }
        let snapshot = cluster.rbac.snapshot.load();
        if let Some(review) = reviews::is_self_review(&info) {
            return self
                .self_review(req, review, &info, &user, &snapshot, &mut ctx)
                .await;
        }
        if snapshot.authorize(&user.name, &user.groups, &info) == Decision::Deny {
            tracing::debug!(cluster = %cluster.name, user = %user.name, verb = %info.verb,
                resource = %info.resource, namespace = %info.namespace, request_id = %ctx.request_id, "denied");
            self.audit(&ctx, &user, &info, AuditDecision::Deny, None);
            return self.fail(
                &mut ctx,
                metrics::Decision::Deny,
                status::forbidden(&user.name, &info),
            );
        }

        // rewrite + forward
        let upstream_uri = match cluster.upstream.uri_for(route.path, route.query) {
            Ok(u) => u,
            Err(_) => {
                return self.fail(
                    &mut ctx,
                    metrics::Decision::Error,
                    bad_request("invalid request path"),
                );
            }
        };
        let watch = info.verb == "watch";
        self.forward(
            req,
            upgrade,
            watch,
            upstream_uri,
            &cluster,
            &user,
            &info,
            &mut ctx,
        )
        .await
    }

    fn context(&self, req: &Request<Incoming>, peer: SocketAddr) -> Ctx {
        let trusted = self.opts.trusted_proxies.contains(peer.ip());
        // An Audit-ID from a trusted front proxy ties its logs to ours; anyone else's is ignored.
        let request_id = req
            .headers()
            .get("audit-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| trusted && !v.is_empty() && v.len() <= 128)
            .map(str::to_string)
            .unwrap_or_else(super::record::new_request_id);
        Ctx {
            peer,
            uri: req.uri().path_and_query().cloned(),
            forwarded_for: req.headers().get("x-forwarded-for").cloned(),
            request_id,
            started: Instant::now(),
            cluster: None,
            verb: metrics::Verb::from_method(req.method()),
            inflight: Some(self.metrics.inflight()),
        }
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
        ctx: &mut Ctx,
    ) -> Response<ProxyBody> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        let protobuf = reviews::protobuf::is_protobuf(content_type);
        let body = match Limited::new(req.into_body(), MAX_REVIEW_BODY).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => {
                let resp = bad_request("request body is too large or could not be read");
                return self.fail(ctx, metrics::Decision::Error, resp);
            }
        };
        // kubectl sends protobuf; the answer is JSON, which its Accept header also allows.
        let body = if protobuf {
            match reviews::protobuf::to_json(review, &body) {
                Ok(json) => Bytes::from(json),
                Err(e) => return self.fail(ctx, metrics::Decision::Error, bad_request(&e.to_string())),
            }
        } else {
            body
        };
        let view = UserView {
            name: &user.name,
            uid: &user.uid,
            groups: &user.groups,
            extra: &user.extra,
        };
        match reviews::answer(review, info, &body, &view, snapshot) {
            Ok((code, json)) => {
                self.log_success(ctx, user, code);
                let mut resp = Response::new(Either::Right(Full::new(Bytes::from(json))));
                *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::CREATED);
                resp.headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                self.local_success(ctx, resp)
            }
            Err(e) => {
                let code = StatusCode::from_u16(e.code()).unwrap_or(StatusCode::BAD_REQUEST);
                self.fail(
                    ctx,
                    metrics::Decision::Error,
                    status(code, e.reason(), &e.to_string()),
                )
            }
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

    #[allow(clippy::too_many_arguments)]
    async fn forward(
        &self,
        mut req: Request<Incoming>,
        upgrade: bool,
        watch: bool,
        uri: http::Uri,
        cluster: &Arc<Cluster>,
        user: &User,
        info: &RequestInfo,
        ctx: &mut Ctx,
    ) -> Response<ProxyBody> {
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));

        let (mut parts, body) = req.into_parts();
        // The audit event carries small JSON bodies; those are read here and sent on as they
        // came. Anything else streams through untouched and is marked as omitted.
        let body = if self.audit.is_some() && info.is_resource_request {
            match self.audit_body(&parts, body).await {
                Ok((body, field)) => {
                    self.audit(ctx, user, info, AuditDecision::Allow, Some(field));
                    body
                }
                Err(()) => {
                    let resp = bad_request("the request body could not be read");
                    return self.fail(ctx, metrics::Decision::Error, resp);
                }
            }
        } else {
            Either::Left(body)
        };

        parts.uri = uri;
        parts.version = Version::HTTP_11;
        headers::clean_request(&mut parts.headers, upgrade);
        if let Some(xff) = headers::forwarded_for(
            ctx.forwarded_for.as_ref(),
            ctx.peer.ip(),
            &self.opts.trusted_proxies,
        ) {
            parts
                .headers
                .insert(HeaderName::from_static("x-forwarded-for"), xff);
        }
        if let Ok(id) = HeaderValue::from_str(&ctx.request_id) {
            parts.headers.insert(HeaderName::from_static("audit-id"), id);
        }
        let client_ip = self.opts.extra_user_header_client_ip.then(|| ctx.peer.ip());
        if self.opts.impersonate
            && let Err(msg) =
                headers::add_impersonation(&mut parts.headers, user, &self.opts.extra_user_headers, client_ip)
        {
            return self.fail(ctx, metrics::Decision::Error, bad_request(msg));
        }
        let up_req = Request::from_parts(parts, body);

        let mut resp = match cluster.upstream.send(up_req).await {
            Ok(resp) => resp,
            Err(e) => return self.upstream_failed(ctx, cluster, e),
        };
        self.log_success(ctx, user, resp.status().as_u16());

        let switched = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
        if let (Some(client_upgrade), true) = (client_upgrade, switched) {
            let server_upgrade = hyper::upgrade::on(&mut resp);
            let guard = self.metrics.upgraded_stream_opened();
            self.streams
                .splice(client_upgrade, server_upgrade, cluster.name.clone(), guard);
        }
        headers::clean_response(resp.headers_mut(), upgrade && switched);
        self.observe(ctx, resp, watch)
    }

    /// Reads a small JSON body for the audit event; returns the body to send upstream and the
    /// audit field.
    async fn audit_body(
        &self,
        parts: &http::request::Parts,
        body: Incoming,
    ) -> Result<
        (
            crate::cluster::upstream::UpBody,
            (serde_json::Value, Option<&'static str>),
        ),
        (),
    > {
        let content_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        let length = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        let limit = self.opts.audit_max_body;
        // Only bodies whose length is announced and small are read: a chunked upload of unknown
        // size streams through, so the proxy never holds more than the limit.
        let skip = match length {
            None => Some(crate::audit::webhook::OMITTED_TOO_LARGE),
            Some(0) => None,
            Some(_) => precheck_body(content_type, length, limit),
        };
        if let Some(reason) = skip {
            return Ok((Either::Left(body), omitted_body(reason)));
        }
        let bytes = Limited::new(body, limit.max(1))
            .collect()
            .await
            .map_err(|_| ())?
            .to_bytes();
        let field = request_body_field(content_type, &bytes, limit);
        Ok((Either::Right(Full::new(bytes)), field))
    }

    fn upstream_failed(&self, ctx: &mut Ctx, cluster: &Cluster, e: UpstreamError) -> Response<ProxyBody> {
        tracing::warn!(cluster = %cluster.name, server = %cluster.upstream.server, request_id = %ctx.request_id,
            error = %e, "upstream request failed");
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
                    "the API server of cluster {name:?} did not answer within {}s",
                    d.as_secs()
                ),
            ),
            UpstreamError::Failed(_) | UpstreamError::Kubeconfig(_) => status(
                StatusCode::BAD_GATEWAY,
                "InternalError",
                &format!("the request to the API server of cluster {name:?} failed"),
            ),
        };
        self.fail(ctx, metrics::Decision::Error, resp)
    }
}

/// Self-review bodies are small JSON objects; anything bigger is refused.
const MAX_REVIEW_BODY: usize = 1 << 20;

fn bad_request(msg: &str) -> Response<ProxyBody> {
    status(StatusCode::BAD_REQUEST, "BadRequest", msg)
}
