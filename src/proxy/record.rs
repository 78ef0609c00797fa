//! The record phase: access line, audit event and metrics for every decision. Nothing here
//! waits: the access line is appended to the log writer's buffer, the audit event goes to a
//! bounded queue, metrics are atomics.

use std::{cell::RefCell, time::Instant};

use http::{HeaderValue, Response, uri::PathAndQuery};
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
    metrics::{ClusterLabel, Decision, GaugeGuard, Verb},
};

/// What the record phase needs, captured before the request is taken apart. The request's
/// parts are shared (`Bytes`-backed), not copied.
pub(super) struct Ctx {
    pub peer: std::net::SocketAddr,
    pub uri: Option<PathAndQuery>,
    pub forwarded_for: Option<HeaderValue>,
    pub request_id: String,
    pub started: Instant,
    /// Set once routing found the cluster (metrics never label an unknown name).
    pub cluster: Option<ClusterLabel>,
    /// The method's verb until the request is parsed, then the Kubernetes verb.
    pub verb: Verb,
    pub inflight: Option<GaugeGuard>,
    /// The user's in-flight place, once taken; held until the response (or stream) ends.
    pub slot: Option<super::limits::UserSlot>,
}

impl Ctx {
    fn client(&self) -> Client<'_> {
        Client {
            ip: self.peer.ip(),
            forwarded_for: self.forwarded_for.as_ref().and_then(|v| v.to_str().ok()),
            uri: self.uri.as_ref().map_or("/", PathAndQuery::as_str),
        }
    }

    fn extra(&self, code: u16) -> Extra<'_> {
        Extra {
            request_id: &self.request_id,
            cluster: self.cluster.as_ref().map(ClusterLabel::as_str),
            code,
        }
    }
}

thread_local! {
    /// Each worker thread formats its access lines in one reused buffer.
    static LINE: RefCell<String> = RefCell::new(String::with_capacity(512));
}

/// Formats one access line with `write` and hands it to the sink.
fn emit(sink: &dyn access_log::Sink, write: impl FnOnce(&mut String)) {
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

impl Proxy {
    pub(super) fn log_success(&self, ctx: &Ctx, user: &User, code: u16) {
        let format = self.opts.log_format;
        emit(&*self.access_log, |line| {
            let now = OffsetDateTime::now_utc();
            access_log::write_success(line, format, now, &ctx.client(), user, &ctx.extra(code));
        });
    }

    /// A refusal or failure made by the proxy itself: AuFail, metrics, and the Status response.
    pub(super) fn fail(
        &self,
        ctx: &mut Ctx,
        decision: Decision,
        mut resp: Response<ProxyBody>,
    ) -> Response<ProxyBody> {
        let code = resp.status().as_u16();
        let format = self.opts.log_format;
        emit(&*self.access_log, |line| {
            let now = OffsetDateTime::now_utc();
            access_log::write_fail(line, format, now, &ctx.client(), &ctx.extra(code));
        });
        let elapsed = ctx.started.elapsed();
        self.metrics
            .request_done(ctx.cluster.as_ref(), ctx.verb, code, decision, elapsed, elapsed);
        ctx.inflight.take();
        ctx.slot.take();
        set_audit_id(&mut resp, &ctx.request_id);
        resp
    }

    /// An answer the proxy made itself for an allowed request (self-reviews).
    pub(super) fn local_success(&self, ctx: &mut Ctx, mut resp: Response<ProxyBody>) -> Response<ProxyBody> {
        let elapsed = ctx.started.elapsed();
        self.metrics.request_done(
            ctx.cluster.as_ref(),
            ctx.verb,
            resp.status().as_u16(),
            Decision::Allow,
            elapsed,
            elapsed,
        );
        ctx.inflight.take();
        ctx.slot.take();
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
            cluster: ctx.cluster.clone(),
            verb: ctx.verb,
            code: parts.status.as_u16(),
            decision: Decision::Allow,
            started: ctx.started,
            first_byte: ctx.started.elapsed(),
            guards,
            slot: ctx.slot.take(),
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
        let (Some(audit), Some(cluster)) = (&self.audit, &ctx.cluster) else {
            return;
        };
        if !info.is_resource_request {
            return;
        }
        let mut event = AuditEvent::new(cluster.as_str(), user, info, decision, &ctx.request_id);
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

/// 128 random bits as a UUID-shaped string (what kube-apiserver's Audit-ID looks like), built
/// in one allocation.
pub(super) fn new_request_id() -> String {
    let mut b = [0u8; 16];
    if !random_bytes(&mut b) {
        // Without randomness, fall back to time: unique enough for log correlation.
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        b = n.to_le_bytes();
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut id = String::with_capacity(36);
    for (i, x) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            id.push('-');
        }
        id.push(char::from(HEX[usize::from(x >> 4)]));
        id.push(char::from(HEX[usize::from(x & 0x0f)]));
    }
    id
}

/// Random bytes from aws-lc's generator, drawn 512 at a time per thread: one `RAND_bytes` call
/// costs about a microsecond whatever its size, and this runs for every request.
fn random_bytes(out: &mut [u8; 16]) -> bool {
    struct Pool {
        buf: [u8; 512],
        used: usize,
    }
    thread_local! {
        static POOL: RefCell<Pool> = const { RefCell::new(Pool { buf: [0; 512], used: 512 }) };
    }
    POOL.try_with(|pool| {
        let Ok(mut pool) = pool.try_borrow_mut() else {
            return aws_lc_rs::rand::fill(out).is_ok();
        };
        if pool.used + out.len() > pool.buf.len() {
            if aws_lc_rs::rand::fill(&mut pool.buf).is_err() {
                return false;
            }
            pool.used = 0;
        }
        let start = pool.used;
        out.copy_from_slice(&pool.buf[start..start + 16]);
        // Each byte is handed out once.
        pool.buf[start..start + 16].fill(0);
        pool.used += 16;
        true
    })
    .unwrap_or_else(|_| aws_lc_rs::rand::fill(out).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_random_version_4_uuids() {
        let a = new_request_id();
        let b = new_request_id();
        assert_ne!(a, b);
        // Across refills of the per-thread pool, no ID repeats.
        let many: std::collections::HashSet<String> = (0..200).map(|_| new_request_id()).collect();
        assert_eq!(many.len(), 200);
        for id in [&a, &b] {
            let groups: Vec<&str> = id.split('-').collect();
            let lens: Vec<usize> = groups.iter().map(|g| g.len()).collect();
            assert_eq!(lens, [8, 4, 4, 4, 12], "{id}");
            assert!(
                id.chars().all(|c| c == '-' || matches!(c, '0'..='9' | 'a'..='f')),
                "{id}"
            );
            assert!(groups[2].starts_with('4'), "version nibble: {id}");
            assert!(
                matches!(groups[3].as_bytes()[0], b'8' | b'9' | b'a' | b'b'),
                "variant: {id}"
            );
        }
    }
}
