//! The record phase: access line, audit event and metrics for every finished request, written by
//! one [`Recorder`] that the handler calls once per exit. Nothing here waits: the access line is
//! appended to the log writer's buffer, the audit event goes to a bounded queue, metrics are
//! atomics.

use std::{cell::RefCell, sync::Arc, time::Instant};

use http::{HeaderValue, Response, uri::PathAndQuery};
use http_body_util::Either;
use hyper::body::Incoming;
use time::OffsetDateTime;

use super::{
    ProxyBody,
    body::{Finish, Observed},
    headers::Peer,
    limits::UserSlot,
    refusal::Refusal,
};
use crate::{
    audit::{
        access_log::{self, Client, Extra, Format, Sink},
        webhook::{AuditDecision, AuditEventView, AuditHandle, timestamp_now},
    },
    authn::User,
    authz::request_info::RequestInfo,
    metrics::{ClusterLabel, Decision, GaugeGuard, Metrics, Verb},
};

/// What the record phase needs, captured as the request goes. The request's parts are shared
/// (`Bytes`-backed), not copied.
pub struct Ctx {
    pub peer: Arc<Peer>,
    pub uri: Option<PathAndQuery>,
    /// Only from a trusted proxy.
    pub forwarded_for: Option<HeaderValue>,
    pub request_id: String,
    pub started: Instant,
    /// Set once authentication succeeded; the impersonation target once one is allowed.
    pub user: Option<Arc<User>>,
    /// The authenticated person when they act as `user` (`kubectl --as`).
    pub impersonator: Option<Arc<User>>,
    /// Set once routing found the cluster (metrics never label an unknown name).
    pub cluster: Option<ClusterLabel>,
    /// The method's verb until the request is parsed, then the Kubernetes verb.
    pub verb: Verb,
    pub inflight: Option<GaugeGuard>,
    /// The user's in-flight place, once taken; held until the response (or stream) ends.
    pub slot: Option<UserSlot>,
}

impl Ctx {
    fn client(&self) -> Client<'_> {
        Client {
            ip: &self.peer.text,
            forwarded_for: self.forwarded_for.as_ref().and_then(|v| v.to_str().ok()),
            uri: self.uri.as_ref().map_or("/", PathAndQuery::as_str),
        }
    }

    fn extra(&self, code: u16) -> Extra<'_> {
        Extra {
            request_id: &self.request_id,
            cluster: self.cluster.as_ref().map(ClusterLabel::as_str),
            code,
            impersonator: self.impersonator.as_deref(),
        }
    }
}

/// Writes what a finished request leaves behind.
pub struct Recorder {
    pub access_log: Arc<dyn Sink>,
    pub audit: Option<AuditHandle>,
    pub metrics: Arc<Metrics>,
    pub format: Format,
}

thread_local! {
    /// Each worker thread formats its access lines in one reused buffer.
    static LINE: RefCell<String> = RefCell::new(String::with_capacity(512));
}

/// Formats one access line with `write` and hands it to the sink.
fn emit(sink: &dyn Sink, write: impl FnOnce(&mut String)) {
    let mut write = Some(write);
    let _ = LINE.try_with(|buf| {
        if let Ok(mut line) = buf.try_borrow_mut() {
            line.clear();
            if let Some(w) = write.take() {
                w(&mut line);
            }
            sink.line(&line);
            if line.capacity() > 64 * 1024 {
                *line = String::with_capacity(512);
            }
        }
    });
    // Only while the thread is being torn down (or re-entered): a fresh buffer.
    if let Some(w) = write {
        let mut line = String::new();
        w(&mut line);
        sink.line(&line);
    }
}

impl Recorder {
    /// The AuSuccess line of an allowed request, when its answer's status is known.
    pub fn success_line(&self, ctx: &Ctx, user: &User, code: u16) {
        let format = self.format;
        emit(&*self.access_log, |line| {
            let now = OffsetDateTime::now_utc();
            access_log::write_success(line, format, now, &ctx.client(), user, &ctx.extra(code));
        });
    }

    /// A refusal made by the proxy itself: AuFail, metrics, the audit event of a denial, and
    /// the Status answer.
    pub fn refused(&self, ctx: &mut Ctx, refusal: Refusal) -> Response<ProxyBody> {
        let cluster = ctx.cluster.as_ref().map_or("", ClusterLabel::as_str);
        let id = &ctx.request_id;
        match &refusal {
            Refusal::Upstream { error, .. } => {
                tracing::warn!(%cluster, request_id = %id, %error, "upstream request failed")
            }
            Refusal::DryRunUnreadable(_) => {
                tracing::warn!(%cluster, request_id = %id, "the dry run's answer is not JSON")
            }
            Refusal::Forbidden { user, info } => tracing::debug!(%cluster, %user, verb = %info.verb,
                resource = %info.resource, namespace = %info.namespace, request_id = %id, "denied"),
            Refusal::WriteRefused { info, refused } => tracing::debug!(%cluster, verb = %info.verb,
                resource = %info.resource, request_id = %id, reason = %refused.message, "write refused"),
            _ => {}
        }
        if let (Some(info), Some(user)) = (refusal.denied(), ctx.user.clone()) {
            self.audit(ctx, &user, info, AuditDecision::Deny, None);
        }
        let decision = refusal.decision();
        let mut resp = refusal.into_response();
        let code = resp.status().as_u16();
        let format = self.format;
        emit(&*self.access_log, |line| {
            let now = OffsetDateTime::now_utc();
            access_log::write_fail(line, format, now, &ctx.client(), &ctx.extra(code));
        });
        self.finish_local(ctx, code, decision);
        set_audit_id(&mut resp, &ctx.request_id);
        resp
    }

    /// A request refused by the HTTP layer before its head could be read: an AuFail line with
    /// what happened in place of the URI, and metrics (no cluster, verb `other`).
    pub fn edge_refused(&self, peer: std::net::SocketAddr, code: u16) {
        let what = match code {
            414 => "<request-uri-too-long>",
            431 => "<request-head-too-large>",
            _ => "<request-head-not-http>",
        };
        let ip = peer.ip().to_string();
        let client = Client {
            ip: &ip,
            forwarded_for: None,
            uri: what,
        };
        let extra = Extra {
            request_id: "",
            cluster: None,
            code,
            impersonator: None,
        };
        let format = self.format;
        emit(&*self.access_log, |line| {
            access_log::write_fail(line, format, OffsetDateTime::now_utc(), &client, &extra);
        });
        let zero = std::time::Duration::ZERO;
        self.metrics
            .request_done(None, Verb::Other, code, Decision::Error, zero, zero);
    }

    /// An answer the proxy made itself for an allowed request (self-reviews, a failed dry
    /// run); its AuSuccess line is written by the caller, who knows the user.
    pub fn answered(&self, ctx: &mut Ctx, mut resp: Response<ProxyBody>) -> Response<ProxyBody> {
        self.finish_local(ctx, resp.status().as_u16(), Decision::Allow);
        set_audit_id(&mut resp, &ctx.request_id);
        resp
    }

    fn finish_local(&self, ctx: &mut Ctx, code: u16, decision: Decision) {
        let elapsed = ctx.started.elapsed();
        self.metrics
            .request_done(ctx.cluster.as_ref(), ctx.verb, code, decision, elapsed, elapsed);
        ctx.inflight.take();
        ctx.slot.take();
    }

    /// Wraps a proxied response so its metrics are recorded (and the user's place given back)
    /// when the stream ends; a long-running one also ends when `ends` fires.
    pub fn observe(
        &self,
        ctx: &mut Ctx,
        resp: Response<Incoming>,
        watch: bool,
        ends: Option<tokio_util::sync::CancellationToken>,
    ) -> Response<ProxyBody> {
        let (parts, body) = resp.into_parts();
        let mut guards: Vec<GaugeGuard> = ctx.inflight.take().into_iter().collect();
        if watch && parts.status.is_success() {
            guards.push(self.metrics.watch_opened());
        }
        let finish = Finish {
            metrics: self.metrics.clone(),
            cluster: ctx.cluster.clone(),
            verb: ctx.verb,
            code: parts.status.as_u16(),
            decision: Decision::Allow,
            started: ctx.started,
            first_byte: ctx.started.elapsed(),
            guards,
            slot: ctx.slot.take(),
        };
        let observed = Observed::new(body, finish);
        let observed = match ends {
            Some(token) => observed.ending_with(token),
            None => observed,
        };
        Response::from_parts(parts, Either::Left(observed))
    }

    /// The audit event of a request: resource and non-resource (`/version`, `/logs/...`) alike,
    /// as kube-apiserver audits both.
    pub fn audit(
        &self,
        ctx: &Ctx,
        user: &User,
        info: &RequestInfo,
        decision: AuditDecision,
        body: Option<(serde_json::Value, Option<&'static str>)>,
    ) {
        let (Some(audit), Some(cluster)) = (&self.audit, &ctx.cluster) else {
            return;
        };
        let timestamp = timestamp_now();
        let mut event = AuditEventView::new(
            cluster.as_str(),
            user,
            info,
            decision,
            &ctx.request_id,
            &timestamp,
        );
        if let Some(original) = &ctx.impersonator {
            event = event.impersonated_by(original);
        }
        if let Some((value, omitted)) = &body {
            event = event.with_body(value, *omitted);
        }
        audit.send_view(&event);
    }
}

fn set_audit_id(resp: &mut Response<ProxyBody>, id: &str) {
    if let Ok(v) = HeaderValue::from_str(id) {
        resp.headers_mut().insert(super::headers::AUDIT_ID, v);
    }
}
