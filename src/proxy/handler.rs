//! The one request handler. Each phase is a small function; the handler reads top to bottom as
//! the life of a request.

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode, Version, header};
use http_body_util::{Either, Full};
use hyper::body::Incoming;

use super::{
    ProxyBody,
    headers::{self, IdentityHeaders, TrustedProxies},
    inspect,
    limits::{self, UserLimits},
    record::Ctx,
    route,
    status::{self, status},
    upgrade::Streams,
};
use crate::{
    audit::{
        access_log::{Format, Sink},
        webhook::{
            AuditDecision, AuditHandle, OMITTED_CREDENTIALS, carries_credentials, omitted_body,
            precheck_body, request_body_field,
        },
    },
    authn::{Authenticator, User},
    authz::{
        rbac::{Decision, Snapshot},
        request_info::RequestInfo,
        requester::{self, Refused, Requester, WritePlan},
        reviews::{self, SelfReview, UserView},
    },
    cluster::{Cluster, Registry, UpstreamError, upstream::UpBody},
    metrics::{self, Metrics},
};

/// Behaviour switches of the request path, from flags.
#[derive(Clone)]
pub struct ProxyOptions {
    pub trusted_proxies: TrustedProxies,
    /// Send Impersonate-* for the authenticated user (`--impersonate-upstream`).
    pub impersonate: bool,
    pub extra_user_headers: Vec<(String, String)>,
    pub extra_user_header_client_ip: bool,
    pub log_format: Format,
    /// Largest JSON body copied into an audit event.
    pub audit_max_body: usize,
    /// Identity headers a client may never send upstream (front-proxy `X-Remote-*` and more).
    pub identity_headers: IdentityHeaders,
    /// Per-user in-flight limits.
    pub limits: UserLimits,
    /// The longest the proxy waits for a request body it reads itself.
    pub body_timeout: Duration,
    /// Checked writes in flight at once, across all users: each holds its body, the dry run's
    /// answer and its parsed form.
    pub checked_writes: Arc<tokio::sync::Semaphore>,
    /// Checked writes one user may have in flight, so no one user holds every global place.
    pub checked_writes_per_user: UserLimits,
}

impl Default for ProxyOptions {
    fn default() -> Self {
        ProxyOptions {
            trusted_proxies: TrustedProxies::default(),
            impersonate: false,
            extra_user_headers: Vec::new(),
            extra_user_header_client_ip: false,
            log_format: Format::default(),
            audit_max_body: 0,
            identity_headers: IdentityHeaders::default(),
            limits: UserLimits::default(),
            body_timeout: Duration::from_secs(30),
            checked_writes: Arc::new(tokio::sync::Semaphore::new(MAX_CHECKED_WRITES)),
            checked_writes_per_user: UserLimits::new(MAX_CHECKED_WRITES_PER_USER, 0),
        }
    }
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

/// A write checked by a dry run before it is sent (see [`super::inspect`]).
struct Checked {
    plan: WritePlan,
    snapshot: Arc<Snapshot>,
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
        if !inspect::method_allowed(req.method()) {
            let msg = format!("method {} is not served", req.method());
            let resp = status(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", &msg);
            return self.fail(&mut ctx, metrics::Decision::Error, resp);
        }
        let upgrade = headers::wants_upgrade(req.version(), req.headers());
        if upgrade && !headers::upgrade_tokens_allowed(req.headers()) {
            let msg = "only WebSocket and SPDY/3.1 upgrades are served";
            return self.fail(&mut ctx, metrics::Decision::Error, bad_request(msg));
        }

        // authorize
        let k8s_path = if route.path.is_empty() { "/" } else { route.path };
        // Exec, attach and port-forward need `create` for any GET as well as for POST: a GET
        // there exists only to be upgraded, and a read-only role must never open a shell.
        let stream_intent = upgrade || req.method() == http::Method::GET;
        let info = match RequestInfo::parse(req.method().as_str(), k8s_path, route.query, stream_intent) {
            Ok(info) => info,
            Err(e) => return self.fail(&mut ctx, metrics::Decision::Error, bad_request(&e.to_string())),
        };
        // Besides its own verb, an upgrade needs `create` unless it is a read-only stream.
        let mut also_create = false;
        if upgrade {
            match upgrade_rule(req.method(), &info) {
                Some(UpgradeRule::ReadOnlyStream) => {}
                Some(UpgradeRule::Create) => also_create = info.verb != "create",
                None => {
                    let msg = "protocol upgrades are only served by GET or POST on API resources";
                    return self.fail(&mut ctx, metrics::Decision::Error, bad_request(msg));
                }
            }
        }
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
        let denied = if snapshot.authorize(&user.name, &user.groups, &info) == Decision::Deny {
            Some(info.clone())
        } else if also_create {
            let mut create = info.clone();
            create.verb = "create".into();
            (snapshot.authorize(&user.name, &user.groups, &create) == Decision::Deny).then_some(create)
        } else {
            None
        };
        if let Some(denied) = denied {
            tracing::debug!(cluster = %cluster.name, user = %user.name, verb = %denied.verb,
                resource = %denied.resource, namespace = %denied.namespace, request_id = %ctx.request_id, "denied");
            self.audit(&ctx, &user, &denied, AuditDecision::Deny, None);
            return self.fail(
                &mut ctx,
                metrics::Decision::Deny,
                status::forbidden(&user.name, &denied),
            );
        }
        // The checks kube-apiserver makes inside its handlers with the requester's identity.
        // With --impersonate-upstream it makes them itself, for the real user.
        let checked = if self.opts.impersonate {
            None
        } else {
            let content_type = req.headers().get(header::CONTENT_TYPE).map(HeaderValue::as_bytes);
            let who = Requester {
                name: &user.name,
                groups: &user.groups,
            };
            match requester::plan(&info, content_type, who, &snapshot) {
                Ok(None) => None,
                Ok(Some(plan)) => Some(Checked {
                    plan,
                    snapshot: arc_swap::Guard::into_inner(snapshot),
                }),
                Err(refused) => return self.refuse(&mut ctx, &user, &info, refused),
            }
        };

        // One user cannot take every seat the proxy's identity has in the cluster.
        let long = limits::is_long_running(&info, upgrade);
        match self.opts.limits.acquire(&user.name, long) {
            Some(slot) => ctx.slot = slot,
            None => return self.fail(&mut ctx, metrics::Decision::Error, status::too_many_requests()),
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
            Forward {
                upgrade,
                watch,
                uri: upstream_uri,
                checked,
            },
            &cluster,
            &user,
            &info,
            &mut ctx,
        )
        .await
    }

    /// A write refused by a requester check: a 403 worded as kube-apiserver's, audited.
    fn refuse(
        &self,
        ctx: &mut Ctx,
        user: &User,
        info: &RequestInfo,
        refused: Refused,
    ) -> Response<ProxyBody> {
        tracing::debug!(user = %user.name, verb = %info.verb, resource = %info.resource,
            request_id = %ctx.request_id, reason = %refused.message, "write refused");
        self.audit(ctx, user, info, AuditDecision::Deny, None);
        let mut details = serde_json::json!({ "kind": refused.kind });
        if !refused.group.is_empty() {
            details["group"] = refused.group.into();
        }
        if !refused.name.is_empty() {
            details["name"] = refused.name.into();
        }
        let resp = status::status_with_details(
            StatusCode::FORBIDDEN,
            "Forbidden",
            &refused.message,
            Some(details),
        );
        self.fail(ctx, metrics::Decision::Deny, resp)
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
            // Anyone can write X-Forwarded-For: only a trusted proxy's reaches logs and audit.
            forwarded_for: req.headers().get("x-forwarded-for").filter(|_| trusted).cloned(),
            request_id,
            started: Instant::now(),
            cluster: None,
            verb: metrics::Verb::from_method(req.method()),
            inflight: Some(self.metrics.inflight()),
            slot: None,
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
        let body = match inspect::read_body(req.into_body(), MAX_REVIEW_BODY, self.opts.body_timeout).await {
            Ok(b) => b,
            Err(e) => return self.body_failed(ctx, &e),
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

    async fn forward(
        &self,
        mut req: Request<Incoming>,
        fwd: Forward,
        cluster: &Arc<Cluster>,
        user: &User,
        info: &RequestInfo,
        ctx: &mut Ctx,
    ) -> Response<ProxyBody> {
        let Forward {
            upgrade,
            watch,
            uri,
            checked,
        } = fwd;
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));

        let (mut parts, body) = req.into_parts();
        // A checked write is read whole (bounded, with a deadline): it is sent twice. Few are
        // held at once, whoever sends them, so they cannot add up to the machine's memory.
        let _permits = if checked.is_some() {
            // A user at their own limit is told at once; the global places are waited for.
            let Some(mine) = self.opts.checked_writes_per_user.acquire(&user.name, false) else {
                return self.fail(ctx, metrics::Decision::Error, status::too_many_requests());
            };
            let global = self.opts.checked_writes.clone();
            match tokio::time::timeout(self.opts.body_timeout, global.acquire_owned()).await {
                Ok(Ok(permit)) => Some((mine, permit)),
                _ => return self.fail(ctx, metrics::Decision::Error, status::too_many_requests()),
            }
        } else {
            None
        };
        let (body, audit_field, whole) = if checked.is_some() {
            match inspect::read_body(body, inspect::MAX_INSPECTED_BODY, self.opts.body_timeout).await {
                Ok(bytes) => {
                    let field = self.audit.as_ref().map(|_| {
                        if carries_credentials(info) {
                            return omitted_body(OMITTED_CREDENTIALS);
                        }
                        let ct = parts
                            .headers
                            .get(header::CONTENT_TYPE)
                            .and_then(|v| v.to_str().ok());
                        request_body_field(ct, &bytes, self.opts.audit_max_body)
                    });
                    (Either::Right(Full::new(bytes.clone())), field, Some(bytes))
                }
                Err(e) => return self.body_failed(ctx, &e),
            }
        } else if self.audit.is_some() && info.is_resource_request {
            // The audit event carries small JSON bodies; those are read here and sent on as
            // they came. Anything else streams through untouched and is marked as omitted.
            match self.audit_body(&parts, body, info).await {
                Ok((body, field)) => (body, Some(field), None),
                Err(e) => return self.body_failed(ctx, &e),
            }
        } else {
            (Either::Left(body), None, None)
        };

        parts.uri = uri;
        parts.version = Version::HTTP_11;
        headers::clean_request(&mut parts.headers, upgrade, &self.opts.identity_headers);
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
        if let (Some(checked), Some(whole)) = (checked, whole)
            && let Some(answer) = self
                .check_write(&parts, whole, &checked, cluster, user, info, ctx)
                .await
        {
            return answer;
        }
        if let Some(field) = audit_field {
            self.audit(ctx, user, info, AuditDecision::Allow, Some(field));
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
            let guard = (self.metrics.upgraded_stream_opened(), ctx.slot.take());
            self.streams
                .splice(client_upgrade, server_upgrade, cluster.name.clone(), guard);
        }
        headers::clean_response(resp.headers_mut(), upgrade && switched);
        self.observe(ctx, resp, watch)
    }

    /// Dry-runs a checked write and checks its result for the user. `Some(answer)` ends the
    /// request: a refusal, or the dry run's own failure (what the write would have answered).
    #[allow(clippy::too_many_arguments)]
    async fn check_write(
        &self,
        parts: &http::request::Parts,
        whole: Bytes,
        checked: &Checked,
        cluster: &Arc<Cluster>,
        user: &User,
        info: &RequestInfo,
        ctx: &mut Ctx,
    ) -> Option<Response<ProxyBody>> {
        let dry = match inspect::dry_run(cluster, parts, whole, self.opts.body_timeout).await {
            Ok(d) => d,
            Err(inspect::DryRunError::Upstream(e)) => return Some(self.upstream_failed(ctx, cluster, e)),
            Err(inspect::DryRunError::Body(e)) => {
                tracing::warn!(cluster = %cluster.name, request_id = %ctx.request_id, error = %e, "dry run failed");
                let msg = format!(
                    "the request to the API server of cluster {:?} failed",
                    cluster.name
                );
                let resp = status(StatusCode::BAD_GATEWAY, "InternalError", &msg);
                return Some(self.fail(ctx, metrics::Decision::Error, resp));
            }
        };
        if !dry.status.is_success() {
            // What the write itself would have answered (conflict, invalid, not found ...).
            self.audit(ctx, user, info, AuditDecision::Allow, None);
            self.log_success(ctx, user, dry.status.as_u16());
            let mut resp = Response::new(Either::Right(Full::new(dry.body)));
            *resp.status_mut() = dry.status;
            if let Some(ct) = dry.content_type {
                resp.headers_mut().insert(header::CONTENT_TYPE, ct);
            }
            return Some(self.local_success(ctx, resp));
        }
        let created = dry.status == StatusCode::CREATED;
        if checked.plan.content.is_none() {
            // Only "would it create" was asked: the status says it.
            if checked.plan.refuse_create && created {
                let refused = requester::refuse_create(info, &user.name);
                return Some(self.refuse(ctx, user, info, refused));
            }
            return None;
        }
        let object: serde_json::Value = match serde_json::from_slice(&dry.body) {
            Ok(v) => v,
            Err(_) => {
                tracing::warn!(cluster = %cluster.name, request_id = %ctx.request_id, "dry run answer is not JSON");
                let msg = format!(
                    "the request to the API server of cluster {:?} failed",
                    cluster.name
                );
                let resp = status(StatusCode::BAD_GATEWAY, "InternalError", &msg);
                return Some(self.fail(ctx, metrics::Decision::Error, resp));
            }
        };
        let who = Requester {
            name: &user.name,
            groups: &user.groups,
        };
        match requester::check(&checked.plan, info, created, &object, who, &checked.snapshot) {
            Ok(()) => None,
            Err(refused) => Some(self.refuse(ctx, user, info, refused)),
        }
    }

    fn body_failed(&self, ctx: &mut Ctx, e: &inspect::BodyError) -> Response<ProxyBody> {
        let resp = match e {
            inspect::BodyError::TooLarge(_) => status(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestEntityTooLarge",
                &e.to_string(),
            ),
            inspect::BodyError::Timeout(_) => status(StatusCode::REQUEST_TIMEOUT, "Timeout", &e.to_string()),
            inspect::BodyError::Failed => bad_request(&e.to_string()),
        };
        self.fail(ctx, metrics::Decision::Error, resp)
    }

    /// Reads a small JSON body for the audit event; returns the body to send upstream and the
    /// audit field.
    async fn audit_body(
        &self,
        parts: &http::request::Parts,
        body: Incoming,
        info: &RequestInfo,
    ) -> Result<(UpBody, AuditBody), inspect::BodyError> {
        if carries_credentials(info) {
            return Ok((Either::Left(body), omitted_body(OMITTED_CREDENTIALS)));
        }
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
        let bytes = inspect::read_body(body, limit.max(1), self.opts.body_timeout).await?;
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

/// What an upgrade request needs besides its own verb.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum UpgradeRule {
    /// A stream kube-apiserver only ever writes to (a watch, a pod's log, both served over
    /// WebSocket to browsers): its own verb is enough.
    ReadOnlyStream,
    /// Anything else: `create` as well. An upgraded connection carries whatever the far end
    /// speaks (a shell through `nodes/proxy` and the kubelet, a pod's port, a service, an
    /// aggregated API's console), as SPDY's POST always did. Requiring the request's own verb
    /// too means an `Upgrade` header kube-apiserver ignores (on a list, say) gains nothing.
    Create,
}

/// `None` when the request may not upgrade at all: only GET (WebSocket) and POST (SPDY) on API
/// resources do.
pub(super) fn upgrade_rule(method: &http::Method, info: &RequestInfo) -> Option<UpgradeRule> {
    if (*method != http::Method::GET && *method != http::Method::POST) || !info.is_resource_request {
        return None;
    }
    let read_only = *method == http::Method::GET
        && ((info.verb == "watch" && info.subresource.is_empty())
            || (info.resource == "pods" && info.subresource == "log"));
    Some(if read_only {
        UpgradeRule::ReadOnlyStream
    } else {
        UpgradeRule::Create
    })
}

/// Checked writes held at once: each holds up to a 3 MiB body, a 3 MiB answer and its parse.
pub const MAX_CHECKED_WRITES: usize = 16;
/// Checked writes one user may have in flight.
pub const MAX_CHECKED_WRITES_PER_USER: u32 = 2;

/// Self-review bodies are small objects (a few hundred bytes from kubectl); anything bigger is
/// refused before it is all read.
const MAX_REVIEW_BODY: usize = 64 << 10;

/// The `request_body` field of an audit event and why it was left out, if it was.
type AuditBody = (serde_json::Value, Option<&'static str>);

/// How the request leaves, decided by the handler.
struct Forward {
    upgrade: bool,
    watch: bool,
    uri: http::Uri,
    checked: Option<Checked>,
}

fn bad_request(msg: &str) -> Response<ProxyBody> {
    status(StatusCode::BAD_REQUEST, "BadRequest", msg)
}
