//! The record phase: access line, audit event and metrics for every decision. Nothing here
//! waits: the access line is one write, the audit event goes to a bounded queue, metrics are
//! atomics.

use std::{sync::Arc, time::Instant};

use http::{HeaderValue, Response};
use http_body_util::Either;
use hyper::body::Incoming;
use time::OffsetDateTime;

use super::{
    ProxyBody,
    body::{Finish, Observed},
    handler::Proxy,
};
use crate::{
    audit::{
        access_log::{self, Client, Extra},
        webhook::{AuditDecision, AuditEvent},
    },
    authn::User,
    authz::request_info::RequestInfo,
    metrics::{Decision, GaugeGuard, UNKNOWN_CLUSTER},
};

/// What the record phase needs, captured before the request is taken apart.
pub(super) struct Ctx {
    pub peer: std::net::SocketAddr,
    pub uri: String,
    pub forwarded_for: Option<String>,
    pub request_id: String,
    pub started: Instant,
    /// Set once routing found the cluster (metrics never label an unknown name).
    pub cluster: Option<Arc<str>>,
    pub verb: String,
    pub inflight: Option<GaugeGuard>,
}

impl Ctx {
    fn client(&self) -> Client<'_> {
        Client {
            ip: self.peer.ip(),
            forwarded_for: self.forwarded_for.as_deref(),
            uri: &self.uri,
        }
    }

    fn cluster_label(&self) -> String {
        self.cluster.as_deref().unwrap_or(UNKNOWN_CLUSTER).to_string()
    }
}

impl Proxy {
    pub(super) fn log_success(&self, ctx: &Ctx, user: &User, code: u16) {
        let extra = Extra {
            request_id: &ctx.request_id,
            cluster: ctx.cluster.as_deref(),
            code,
        };
        let line = access_log::success(
            self.opts.log_format,
            OffsetDateTime::now_utc(),
            &ctx.client(),
            user,
            &extra,
        );
        self.access_log.line(&line);
    }

    /// A refusal or failure made by the proxy itself: AuFail, metrics, and the Status response.
    pub(super) fn fail(
        &self,
        ctx: &mut Ctx,
        decision: Decision,
        mut resp: Response<ProxyBody>,
    ) -> Response<ProxyBody> {
        let code = resp.status().as_u16();
        let extra = Extra {
            request_id: &ctx.request_id,
            cluster: ctx.cluster.as_deref(),
            code,
        };
        let line = access_log::fail(
            self.opts.log_format,
            OffsetDateTime::now_utc(),
            &ctx.client(),
            &extra,
        );
        self.access_log.line(&line);
        let elapsed = ctx.started.elapsed();
        self.metrics
            .request_done(&ctx.cluster_label(), &ctx.verb, code, decision, elapsed, elapsed);
        ctx.inflight.take();
        set_audit_id(&mut resp, &ctx.request_id);
        resp
    }

    /// An answer the proxy made itself for an allowed request (self-reviews).
    pub(super) fn local_success(&self, ctx: &mut Ctx, mut resp: Response<ProxyBody>) -> Response<ProxyBody> {
        let elapsed = ctx.started.elapsed();
        self.metrics.request_done(
            &ctx.cluster_label(),
            &ctx.verb,
            resp.status().as_u16(),
            Decision::Allow,
            elapsed,
            elapsed,
        );
        ctx.inflight.take();
        set_audit_id(&mut resp, &ctx.request_id);
        resp
    }

    /// Wraps a proxied response so its metrics are recorded when the stream ends.
    pub(super) fn observe(
        &self,
        ctx: &mut Ctx,
        resp: Response<Incoming>,
        watch: bool,
    ) -> Response<ProxyBody> {
        let (parts, body) = resp.into_parts();
        let mut guards: Vec<GaugeGuard> = ctx.inflight.take().into_iter().collect();
        if watch && parts.status.is_success() {
            guards.push(self.metrics.watch_opened());
        }
        let finish = Finish {
            metrics: self.metrics.clone(),
            cluster: ctx.cluster_label(),
            verb: std::mem::take(&mut ctx.verb),
            code: parts.status.as_u16(),
            decision: Decision::Allow,
            started: ctx.started,
            first_byte: ctx.started.elapsed(),
            guards,
        };
        Response::from_parts(parts, Either::Left(Observed::new(body, finish)))
    }

    pub(super) fn audit(
        &self,
        ctx: &Ctx,
        user: &User,
        info: &RequestInfo,
        decision: AuditDecision,
        body: Option<(serde_json::Value, Option<&'static str>)>,
    ) {
        let (Some(audit), Some(cluster)) = (&self.audit, ctx.cluster.as_deref()) else {
            return;
        };
        if !info.is_resource_request {
            return;
        }
        let mut event = AuditEvent::new(cluster, user, info, decision, &ctx.request_id);
        if let Some(b) = body {
            event = event.with_body(b);
        }
        audit.send(event);
    }
}

fn set_audit_id(resp: &mut Response<ProxyBody>, id: &str) {
    if let Ok(v) = HeaderValue::from_str(id) {
        resp.headers_mut().insert("audit-id", v);
    }
}

/// 128 random bits as a UUID-shaped string (what kube-apiserver's Audit-ID looks like).
pub(super) fn new_request_id() -> String {
    let mut b = [0u8; 16];
    if aws_lc_rs::rand::fill(&mut b).is_err() {
        // Without randomness, fall back to time: unique enough for log correlation.
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        b = n.to_le_bytes();
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}
