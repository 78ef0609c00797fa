//! The one request handler. [`Proxy::serve`] reads top to bottom as the life of a request, one
//! call per phase; every way out that the proxy decides itself is a [`Refusal`] returned with
//! `?`, and the [`Recorder`] writes what each exit leaves behind.

use std::{net::SocketAddr, sync::Arc, time::Instant};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, Version, header, request::Parts};
use http_body_util::{Either, Full};
use hyper::body::Incoming;

use super::{
    ProxyBody,
    headers::{self, Peer},
    impersonation,
    inspect::{self, Verdict},
    limits,
    options::ProxyOptions,
    precondition,
    record::{Ctx, Recorder},
    refusal::Refusal,
    request_body,
    request_id::new_request_id,
    route::{self, Route},
    upgrade::{Streams, UpgradeRule, upgrade_rule},
};
use crate::{
    audit::webhook::AuditDecision,
    authn::{Issuers, User, issuers::ConnMemo},
    authz::{
        rbac::{Decision, Snapshot},
        request_info::RequestInfo,
        requester::{self, Requester, WritePlan},
        reviews::{self, SelfReview, UserView},
    },
    cluster::{
        Cluster, Registry,
        token_review::{ReviewError, TokenReviewer},
        upstream::Watchdog,
    },
    config::clusters::Identity,
    metrics,
};

pub struct Proxy {
    pub authn: Arc<Issuers>,
    /// `--token-passthrough`: tokens the issuer does not vouch for are reviewed by the cluster.
    pub reviewer: Option<TokenReviewer>,
    pub clusters: Arc<Registry>,
    pub recorder: Recorder,
    pub opts: ProxyOptions,
    pub streams: Streams,
}

/// What the connection a request came on keeps for its requests.
#[derive(Clone, Copy)]
pub struct Conn<'a> {
    /// The connection's last token and its user.
    pub memo: Option<&'a ConnMemo>,
    /// Wakes the request while it waits for the upstream's response headers (HTTP/1.1: the
    /// connection's clock); without one, the wait keeps a timer of its own.
    pub watchdog: Option<&'a dyn Watchdog>,
}

/// A write checked by a dry run before it is sent (see [`super::inspect`]).
struct Checked {
    plan: WritePlan,
    snapshot: Arc<Snapshot>,
}

/// How an authorized request leaves.
struct Forward {
    upgrade: bool,
    watch: bool,
    /// A watch, log follow, exec, proxy stream ...: ended when its cluster is retired.
    long: bool,
    uri: http::Uri,
    checked: Option<Checked>,
    carry: Carry,
}

/// Whose credentials the request carries upstream.
enum Carry {
    /// The proxy's, nothing about the user.
    Proxy,
    /// The proxy's, with `Impersonate-*` for the user (and the person behind a `kubectl --as`).
    Impersonate { original: Option<Arc<User>> },
    /// The user's own `Authorization` header and none of the proxy's; a `kubectl --as` goes on
    /// as asked, for the cluster to check again.
    UserToken {
        authorization: HeaderValue,
        asked: Option<impersonation::Requested>,
    },
}

/// How the user was authenticated.
struct Authenticated {
    user: Arc<User>,
    /// By the cluster's TokenReview (`--token-passthrough`): the token goes upstream as it is.
    reviewed: bool,
}

/// Self-review bodies are small objects (a few hundred bytes from kubectl); anything bigger is
/// refused before it is all read.
const MAX_REVIEW_BODY: usize = 64 << 10;

impl Proxy {
    /// A request the HTTP/1.1 server refused before it was read (its head too large, its URI
    /// too long, or not HTTP): an AuFail line and the metrics, as for any refusal.
    pub fn edge_refused(&self, peer: SocketAddr, code: u16) {
        self.recorder.edge_refused(peer, code);
    }

    /// One request, with what its connection keeps for it: the token memo, and on HTTP/1.1 the
    /// clock that watches the wait for the upstream's answer.
    pub async fn handle_on(
        &self,
        req: Request<Incoming>,
        peer: &Arc<Peer>,
        conn: Conn<'_>,
    ) -> Response<ProxyBody> {
        let mut ctx = self.context(&req, peer);
        match self.serve(req, &mut ctx, conn).await {
            Ok(resp) => resp,
            Err(refusal) => self.recorder.refused(&mut ctx, refusal),
        }
    }

    /// The life of a request: authenticate, route, authorize, rewrite, forward.
    async fn serve(
        &self,
        req: Request<Incoming>,
        ctx: &mut Ctx,
        conn: Conn<'_>,
    ) -> Result<Response<ProxyBody>, Refusal> {
        // A path the HTTP/2 guard put in place of one too long to hold: a 414 for anyone.
        if let Some(len) = super::size::uri_too_long(req.uri().path()) {
            return Err(Refusal::UriTooLong(Some(len)));
        }
        // Before anything else, so an unauthenticated client learns nothing.
        let Authenticated { user, reviewed } = self.authenticate(&req, conn.memo, ctx).await?;
        ctx.user = Some(user.clone());
        let route = self.route(&req).map_err(|e| Refusal::BadRequest(e.to_string()))?;
        let cluster = (self.clusters.get(route.cluster))
            .ok_or_else(|| Refusal::UnknownCluster(route.cluster.into()))?;
        ctx.cluster = Some(metrics::ClusterLabel::from(cluster.name.clone()));
        let upgrade = protocol(&req)?;
        let (info, upgrade_rule) = request_info(&req, &route, upgrade)?;
        ctx.verb = metrics::Verb::from_kube(&info.verb);
        if !cluster.rbac.is_ready() {
            return Err(Refusal::NotReady(cluster.name.clone()));
        }
        let snapshot = cluster.rbac.snapshot.load();
        let caller = user;
        let asked = impersonation::requested(req.headers(), &self.opts.extra_user_headers)
            .map_err(Refusal::BadRequest)?;
        let user = act_as(&caller, asked.as_ref(), &snapshot, ctx)?;
        if let Some(review) = reviews::is_self_review(&info) {
            return self.self_review(req, review, &info, &user, &snapshot, ctx).await;
        }
        authorize(&user, &info, upgrade_rule, &snapshot)?;
        refuse_large_write(&req, &info, self.opts.max_request_body)?;
        let carry = carry(&req, &cluster, reviewed, &caller, asked)?;
        let checked = match carry {
            // kube-apiserver makes its in-handler checks with the real identity itself.
            Carry::Proxy => self.plan_write(&req, &info, &user, snapshot)?,
            _ => None,
        };
        // One person cannot take every seat the proxy's identity has in the cluster (counted
        // for the person, whoever they act as).
        let long = limits::is_long_running(&info, upgrade);
        ctx.slot = (self.opts.limits.acquire(&caller.name, long)).ok_or(Refusal::TooManyRequests)?;
        let uri = (cluster.upstream.uri_for(route.path, route.query))
            .map_err(|_| Refusal::BadRequest("invalid request path".into()))?;
        let watch = info.verb == "watch";
        let fwd = Forward {
            upgrade,
            watch,
            long,
            uri,
            checked,
            carry,
        };
        self.forward(req, fwd, &cluster, &user, &info, ctx, conn.watchdog)
            .await
    }

    /// The cluster and Kubernetes path of a request: from the path, or from the host name with
    /// `--cluster-host-suffix` (HTTP/2's `:authority`, HTTP/1.1's `Host`).
    fn route<'a>(&self, req: &'a Request<Incoming>) -> Result<route::Route<'a>, route::RouteError> {
        let host_cluster = self.opts.cluster_host_suffix.as_deref().and_then(|suffix| {
            let host = match req.uri().authority() {
                Some(a) => a.as_str(),
                None => req.headers().get(header::HOST)?.to_str().ok()?,
            };
            route::cluster_of_host(host, suffix)
        });
        route::parse_with_host(host_cluster, req.uri().path(), req.uri().query(), |c| {
            self.clusters.get(c).is_some()
        })
    }

    fn context(&self, req: &Request<Incoming>, peer: &Arc<Peer>) -> Ctx {
        let trusted = self.opts.trusted_proxies.contains(peer.addr.ip());
        // An Audit-ID from a trusted front proxy ties its logs to ours; anyone else's is ignored.
        let request_id = (trusted.then(|| req.headers().get(headers::AUDIT_ID)).flatten())
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty() && v.len() <= 128)
            .map(str::to_string)
            .unwrap_or_else(new_request_id);
        Ctx {
            peer: peer.clone(),
            uri: req.uri().path_and_query().cloned(),
            // Anyone can write X-Forwarded-For: only a trusted proxy's reaches logs and audit.
            forwarded_for: trusted.then(|| forwarded_chain(req.headers())).flatten(),
            request_id,
            started: Instant::now(),
            user: None,
            impersonator: None,
            cluster: None,
            verb: metrics::Verb::from_method(req.method()),
            inflight: Some(self.recorder.metrics.inflight()),
            slot: None,
        }
    }

    /// The issuer's token first; with `--token-passthrough`, the target cluster's TokenReview
    /// for anything else. Every failure is the same bare 401.
    async fn authenticate(
        &self,
        req: &Request<Incoming>,
        memo: Option<&ConnMemo>,
        ctx: &Ctx,
    ) -> Result<Authenticated, Refusal> {
        let token = headers::bearer_token(req.headers()).ok_or(Refusal::Unauthenticated)?;
        match self.authn.authenticate_on(&token, memo).await {
            Ok(user) => {
                return Ok(Authenticated {
                    user,
                    reviewed: false,
                });
            }
            // The reason helps an operator; the token itself never reaches a log.
            Err(e) => tracing::debug!(error = %e, "authentication failed"),
        }
        let reviewer = self.reviewer.as_ref().ok_or(Refusal::Unauthenticated)?;
        let token = std::str::from_utf8(&token).map_err(|_| Refusal::Unauthenticated)?;
        if self.authn.claims_our_issuer(token) {
            return Err(Refusal::Unauthenticated);
        }
        let cluster = self
            .route(req)
            .ok()
            .and_then(|r| self.clusters.get(r.cluster))
            .ok_or(Refusal::Unauthenticated)?;
        match reviewer.review(&cluster, token, client_address(ctx)).await {
            Ok(Some(user)) => Ok(Authenticated { user, reviewed: true }),
            Ok(None) => Err(Refusal::Unauthenticated),
            Err(ReviewError::RateLimited(_)) => Err(Refusal::TooManyRequests),
            Err(e) => {
                tracing::warn!(cluster = %cluster.name, error = %e, "token passthrough: cannot review the token");
                Err(Refusal::Unauthenticated)
            }
        }
    }

    /// The checks kube-apiserver makes inside its handlers with the requester's identity, for a
    /// request that reaches it with the proxy's (with the user's, it makes them itself).
    fn plan_write(
        &self,
        req: &Request<Incoming>,
        info: &RequestInfo,
        user: &User,
        snapshot: arc_swap::Guard<Arc<Snapshot>>,
    ) -> Result<Option<Checked>, Refusal> {
        let content_type = req.headers().get(header::CONTENT_TYPE).map(HeaderValue::as_bytes);
        let refused = |refused| Refusal::WriteRefused {
            info: Box::new(info.clone()),
            refused: Box::new(refused),
        };
        if !self.opts.allow_csr_as_proxy {
            requester::refuse_csr_as_proxy(info, content_type, requester_of(user)).map_err(refused)?;
        }
        let plan = requester::plan(info, content_type, requester_of(user), &snapshot).map_err(refused)?;
        Ok(plan.map(|plan| Checked {
            plan,
            snapshot: arc_swap::Guard::into_inner(snapshot),
        }))
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
    ) -> Result<Response<ProxyBody>, Refusal> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        let protobuf = reviews::protobuf::is_protobuf(content_type);
        let body = request_body::read_body(req.into_body(), MAX_REVIEW_BODY, self.opts.body_timeout).await?;
        // kubectl sends protobuf; the answer is JSON, which its Accept header also allows.
        let body = if protobuf {
            Bytes::from(
                reviews::protobuf::to_json(review, &body).map_err(|e| Refusal::BadRequest(e.to_string()))?,
            )
        } else {
            body
        };
        let view = UserView {
            name: &user.name,
            uid: &user.uid,
            groups: &user.groups,
            extra: &user.extra,
        };
        let (code, json) = reviews::answer(review, info, &body, &view, snapshot).map_err(Refusal::Review)?;
        self.recorder.success_line(ctx, user, code);
        let mut resp = Response::new(Either::Right(Full::new(Bytes::from(json))));
        *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::CREATED);
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        Ok(self.recorder.answered(ctx, resp))
    }

    #[allow(clippy::too_many_arguments)]
    async fn forward(
        &self,
        mut req: Request<Incoming>,
        fwd: Forward,
        cluster: &Arc<Cluster>,
        user: &User,
        info: &RequestInfo,
        ctx: &mut Ctx,
        watchdog: Option<&dyn Watchdog>,
    ) -> Result<Response<ProxyBody>, Refusal> {
        let client_upgrade = fwd.upgrade.then(|| hyper::upgrade::on(&mut req));
        let (mut parts, body) = req.into_parts();
        // A checked write is read whole (bounded, with a deadline): it is sent twice. Few are
        // held at once, two per user, so they cannot add up to the machine's memory.
        // Counted for the person, whoever they act as.
        let person = ctx.impersonator.clone();
        let _permits = match &fwd.checked {
            Some(_) => Some(
                self.checked_write_places(person.as_deref().unwrap_or(user))
                    .await?,
            ),
            None => None,
        };
        let limit = self.opts.audit_max_body;
        let auditing = self.recorder.audit.is_some();
        let (mut body, audit_field, whole) = if fwd.checked.is_some() {
            let bytes =
                request_body::read_body(body, self.opts.max_request_body, self.opts.body_timeout).await?;
            let field = auditing.then(|| request_body::audit_field(&parts.headers, info, &bytes, limit));
            (Either::Right(Full::new(bytes.clone())), field, Some(bytes))
        } else if auditing {
            // The audit event carries small JSON bodies, sent on as they came; anything else
            // streams through untouched and is marked as omitted.
            let (body, field) =
                request_body::for_audit(&parts.headers, body, info, limit, self.opts.body_timeout).await?;
            (body, Some(field), None)
        } else {
            (Either::Left(body), None, None)
        };

        self.rewrite(&mut parts, fwd.uri, fwd.upgrade, user, &fwd.carry, ctx)?;
        if let (Some(checked), Some(mut whole)) = (&fwd.checked, whole) {
            if precondition::held(&info.verb) {
                // The dry run and the real write carry the same bytes (YAML made JSON), in a
                // media type whose real write can be held to what the dry run saw.
                whole = precondition::prepare(&mut parts.headers, whole).map_err(Refusal::Precondition)?;
                body = Either::Right(Full::new(whole.clone()));
            }
            let deadline = self.opts.body_timeout;
            let (plan, snapshot) = (&checked.plan, &checked.snapshot);
            // Boxed: the largest state of any await here, held by every request's future
            // (copied at each hand-over) though only checked writes reach it.
            let verdict = Box::pin(inspect::check_write(
                cluster,
                &parts,
                whole.clone(),
                plan,
                snapshot,
                info,
                requester_of(user),
                deadline,
            ))
            .await?;
            match verdict {
                Verdict::Answer(resp) => {
                    self.recorder.audit(ctx, user, info, AuditDecision::Allow, None);
                    self.recorder.success_line(ctx, user, resp.status().as_u16());
                    return Ok(self.recorder.answered(ctx, *resp));
                }
                // The real write changes the object the dry run saw, or nothing.
                Verdict::Proceed(Some(seen)) => {
                    #[cfg(debug_assertions)]
                    precondition::e2e_pause(&info.name).await;
                    let held = precondition::hold_to(&mut parts.headers, &whole, &seen)
                        .map_err(Refusal::Precondition)?;
                    body = Either::Right(Full::new(held));
                }
                Verdict::Proceed(None) => {}
            }
        }
        if let Some(field) = audit_field {
            self.recorder
                .audit(ctx, user, info, AuditDecision::Allow, Some(field));
        }

        let up_req = Request::from_parts(parts, body);
        let sent = match fwd.carry {
            Carry::UserToken { .. } => cluster.upstream.send_as_user(up_req, watchdog).await,
            _ => cluster.upstream.send(up_req, watchdog).await,
        };
        let mut resp = sent.map_err(|error| Refusal::Upstream {
            cluster: cluster.name.clone(),
            error,
        })?;
        self.recorder.success_line(ctx, user, resp.status().as_u16());
        let switched = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
        if let (Some(client_upgrade), true) = (client_upgrade, switched) {
            let server_upgrade = hyper::upgrade::on(&mut resp);
            let guard = (self.recorder.metrics.upgraded_stream_opened(), ctx.slot.take());
            self.streams.splice(
                client_upgrade,
                server_upgrade,
                cluster.name.clone(),
                cluster.retired.clone(),
                guard,
            );
        }
        headers::clean_response(resp.headers_mut(), fwd.upgrade && switched);
        // A stream that used the cluster's credentials ends with them (removed or replaced).
        let ends = fwd.long.then(|| cluster.retired.clone());
        Ok(self.recorder.observe(ctx, resp, fwd.watch, ends))
    }

    /// Client headers cleaned, the proxy's added (after the cleaning, so `Connection` can never
    /// name them away), the upstream URI set.
    fn rewrite(
        &self,
        parts: &mut Parts,
        uri: http::Uri,
        upgrade: bool,
        user: &User,
        carry: &Carry,
        ctx: &Ctx,
    ) -> Result<(), Refusal> {
        parts.uri = uri;
        parts.version = Version::HTTP_11;
        headers::clean_request(&mut parts.headers, upgrade, &self.opts.identity_headers);
        let trusted = &self.opts.trusted_proxies;
        if let Some(xff) = headers::forwarded_for(ctx.forwarded_for.as_ref(), &ctx.peer, trusted) {
            parts.headers.insert(headers::X_FORWARDED_FOR, xff);
        }
        if let Ok(id) = HeaderValue::from_str(&ctx.request_id) {
            parts.headers.insert(headers::AUDIT_ID, id);
        }
        let bad = |msg: &str| Refusal::BadRequest(msg.into());
        match carry {
            Carry::Proxy => {}
            Carry::Impersonate { original } => {
                let client_ip = self.opts.extra_user_header_client_ip.then(|| ctx.peer.addr.ip());
                let mut extra = self.opts.extra_user_headers.clone();
                if let Some(original) = original {
                    extra.extend(headers::original_user_extras(original));
                }
                headers::add_impersonation(&mut parts.headers, user, &extra, client_ip).map_err(bad)?;
            }
            Carry::UserToken { authorization, asked } => {
                parts.headers.insert(header::AUTHORIZATION, authorization.clone());
                if let Some(asked) = asked {
                    headers::add_impersonation(&mut parts.headers, &asked.as_asked(), &[], None)
                        .map_err(bad)?;
                }
            }
        }
        Ok(())
    }

    /// A place for a checked write: the user's own (told at once when taken), then a global one
    /// (waited for up to the body deadline).
    async fn checked_write_places(
        &self,
        user: &User,
    ) -> Result<(Option<limits::UserSlot>, tokio::sync::OwnedSemaphorePermit), Refusal> {
        let mine =
            (self.opts.checked_writes_per_user.acquire(&user.name, false)).ok_or(Refusal::TooManyRequests)?;
        let global = self.opts.checked_writes.clone();
        match tokio::time::timeout(self.opts.body_timeout, global.acquire_owned()).await {
            Ok(Ok(permit)) => Ok((mine, permit)),
            _ => Err(Refusal::TooManyRequests),
        }
    }
}

/// Every `X-Forwarded-For` field as one chain (RFC 9110: fields of one name are one
/// comma-separated list). A front proxy that appends its own field after the client's (HAProxy's
/// `option forwardfor`) leaves the address it saw last, where [`client_address`] reads it.
fn forwarded_chain(h: &http::HeaderMap) -> Option<HeaderValue> {
    let mut all = h.get_all(headers::X_FORWARDED_FOR).iter();
    let first = all.next()?;
    let Some(second) = all.next() else {
        return Some(first.clone());
    };
    let mut joined = first.as_bytes().to_vec();
    for v in std::iter::once(second).chain(all) {
        joined.extend_from_slice(b", ");
        joined.extend_from_slice(v.as_bytes());
    }
    HeaderValue::from_bytes(&joined).ok()
}

/// The address a client is counted under: the peer, or for a trusted front proxy the address it
/// says it received the request from (the last `X-Forwarded-For` entry).
fn client_address(ctx: &Ctx) -> std::net::IpAddr {
    (ctx.forwarded_for.as_ref())
        .and_then(|v| v.to_str().ok())
        .and_then(|chain| chain.rsplit(',').next())
        .and_then(|last| last.trim().parse().ok())
        .unwrap_or(ctx.peer.addr.ip())
}

/// Whose credentials go upstream: the user's own token when the cluster reviewed it or the
/// cluster's mode says so, else the proxy's, impersonating the user when the mode says so.
fn carry(
    req: &Request<Incoming>,
    cluster: &Cluster,
    reviewed: bool,
    caller: &Arc<User>,
    asked: Option<impersonation::Requested>,
) -> Result<Carry, Refusal> {
    if reviewed || cluster.identity == Identity::PassthroughUserToken {
        return Ok(Carry::UserToken {
            authorization: user_authorization(req)?,
            asked,
        });
    }
    Ok(match cluster.identity {
        Identity::Impersonate => Carry::Impersonate {
            original: asked.is_some().then(|| caller.clone()),
        },
        _ => Carry::Proxy,
    })
}

/// The client's bearer token as an `Authorization` value (also when it came in a WebSocket
/// subprotocol), marked sensitive.
fn user_authorization(req: &Request<Incoming>) -> Result<HeaderValue, Refusal> {
    let token = headers::bearer_token(req.headers()).ok_or(Refusal::Unauthenticated)?;
    let value = [b"Bearer ".as_slice(), &token].concat();
    let mut value =
        HeaderValue::from_maybe_shared(Bytes::from(value)).map_err(|_| Refusal::Unauthenticated)?;
    value.set_sensitive(true);
    Ok(value)
}

/// Refuses what the proxy does not serve: methods kube-apiserver does not serve, upgrades to
/// anything but WebSocket and SPDY/3.1. True when the request upgrades.
fn protocol(req: &Request<Incoming>) -> Result<bool, Refusal> {
    if !headers::method_allowed(req.method()) {
        return Err(Refusal::MethodNotAllowed(req.method().to_string()));
    }
    let upgrade = headers::wants_upgrade(req.version(), req.headers());
    if upgrade && !headers::upgrade_tokens_allowed(req.headers()) {
        return Err(Refusal::BadRequest(
            "only WebSocket and SPDY/3.1 upgrades are served".into(),
        ));
    }
    Ok(upgrade)
}

/// What the request asks for, and for an upgrade what else it needs.
fn request_info(
    req: &Request<Incoming>,
    route: &Route<'_>,
    upgrade: bool,
) -> Result<(RequestInfo, Option<UpgradeRule>), Refusal> {
    let k8s_path = if route.path.is_empty() { "/" } else { route.path };
    // Exec, attach and port-forward need `create` for any GET as well as for POST: a GET there
    // exists only to be upgraded, and a read-only role must never open a shell.
    let stream_intent = upgrade || req.method() == http::Method::GET;
    let info = RequestInfo::parse(req.method().as_str(), k8s_path, route.query, stream_intent)
        .map_err(|e| Refusal::BadRequest(e.to_string()))?;
    let rule = match upgrade {
        false => None,
        true => Some(upgrade_rule(req.method(), &info).ok_or_else(|| {
            Refusal::BadRequest("protocol upgrades are only served by GET or POST on API resources".into())
        })?),
    };
    Ok((info, rule))
}

/// The RBAC decision for the request's own verb and, for an upgrade that is not a read-only
/// stream, for `create` as well.
fn authorize(
    user: &User,
    info: &RequestInfo,
    upgrade: Option<UpgradeRule>,
    snapshot: &Snapshot,
) -> Result<(), Refusal> {
    let also_create = upgrade == Some(UpgradeRule::Create) && info.verb != "create";
    let denied = if snapshot.authorize(&user.name, &user.groups, info) == Decision::Deny {
        Some(info.clone())
    } else if also_create {
        let mut create = info.clone();
        create.verb = "create".into();
        (snapshot.authorize(&user.name, &user.groups, &create) == Decision::Deny).then_some(create)
    } else {
        None
    };
    match denied {
        None => Ok(()),
        Some(info) => Err(Refusal::Forbidden {
            user: user.name.clone(),
            info: Box::new(info),
        }),
    }
}

fn requester_of(user: &User) -> Requester<'_> {
    Requester {
        name: &user.name,
        groups: &user.groups,
    }
}

/// `kubectl --as`: the user the request is decided, logged and audited as from here on: the
/// caller, or the target the caller may impersonate (kube-apiserver's checks, on the proxy's
/// snapshot).
fn act_as(
    caller: &Arc<User>,
    asked: Option<&impersonation::Requested>,
    snapshot: &Snapshot,
    ctx: &mut Ctx,
) -> Result<Arc<User>, Refusal> {
    let Some(asked) = asked else {
        return Ok(caller.clone());
    };
    if let Some(denied) = asked.denied(caller, snapshot) {
        return Err(Refusal::Forbidden {
            user: caller.name.clone(),
            info: Box::new(denied),
        });
    }
    let target = Arc::new(asked.target());
    ctx.impersonator = Some(caller.clone());
    ctx.user = Some(target.clone());
    Ok(target)
}

/// kube-apiserver reads at most `--max-request-body-bytes` of a write's body (its create,
/// update, patch and delete handlers); the streams of `exec`, `attach`, `portforward` and
/// `proxy` have no such limit. A write that declares a longer body is refused here, with the
/// same 413, before any of it is read or forwarded.
fn refuse_large_write(req: &Request<Incoming>, info: &RequestInfo, limit: usize) -> Result<(), Refusal> {
    let write = matches!(
        info.verb.as_str(),
        "create" | "update" | "patch" | "delete" | "deletecollection"
    );
    let stream = matches!(
        info.subresource.as_str(),
        "exec" | "attach" | "portforward" | "proxy"
    );
    if !info.is_resource_request || !write || stream {
        return Ok(());
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(n) if n > limit as u64 => Err(Refusal::Body(request_body::BodyError::TooLarge(limit))),
        _ => Ok(()),
    }
}
