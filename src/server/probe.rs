//! The plain-HTTP probe port: `GET /ready` and `GET /live`, as the Go proxy served them.

use std::{convert::Infallible, sync::Arc};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Answers `Ok` when ready, or the reasons it is not.
pub type ReadyCheck = Arc<dyn Fn() -> Result<(), Vec<String>> + Send + Sync>;
/// Renders `/metrics` (OpenMetrics text).
pub type RenderMetrics = Arc<dyn Fn() -> String + Send + Sync>;

pub async fn serve(
    listener: TcpListener,
    ready: ReadyCheck,
    metrics: RenderMetrics,
    stop: CancellationToken,
) {
    loop {
        let (tcp, _) = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept() => match r {
                Ok(pair) => pair,
                Err(_) => {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (ready, metrics) = (ready.clone(), metrics.clone());
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let (ready, metrics) = (ready.clone(), metrics.clone());
                async move { Ok::<_, Infallible>(answer(&req, &ready, &metrics)) }
            });
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10))
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

fn answer(req: &Request<Incoming>, ready: &ReadyCheck, metrics: &RenderMetrics) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed\n".into(),
            "text/plain",
        );
    }
    match req.uri().path() {
        "/live" => reply(StatusCode::OK, "{}\n".into(), JSON),
        "/metrics" => reply(StatusCode::OK, metrics(), crate::metrics::CONTENT_TYPE),
        "/ready" => {
            let full = req
                .uri()
                .query()
                .is_some_and(|q| q.split('&').any(|kv| kv == "full=1" || kv == "full=true"));
            match ready() {
                Ok(()) if full => reply(StatusCode::OK, "{\"status\": \"OK\"}\n".into(), JSON),
                Ok(()) => reply(StatusCode::OK, "{}\n".into(), JSON),
                Err(reasons) if full => {
                    let body = serde_json::json!({ "status": "not ready", "reasons": reasons });
                    reply(StatusCode::SERVICE_UNAVAILABLE, format!("{body:#}\n"), JSON)
                }
                Err(_) => reply(StatusCode::SERVICE_UNAVAILABLE, "{}\n".into(), JSON),
            }
        }
        _ => reply(StatusCode::NOT_FOUND, "404 page not found\n".into(), "text/plain"),
    }
}

const JSON: &str = "application/json; charset=utf-8";

fn reply(code: StatusCode, body: String, content_type: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = code;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    r
}

/// `/ready`: the issuer's keys are loaded, every cluster's first RBAC snapshot is in place (a
/// cluster still unreachable after `cluster_wait` is reported but no longer holds the others
/// back), and no shutdown has begun.
pub fn readiness(
    authn: Arc<crate::authn::Authenticator>,
    registry: Arc<crate::cluster::Registry>,
    started: std::time::Instant,
    cluster_wait: std::time::Duration,
    shutting_down: Arc<std::sync::atomic::AtomicBool>,
) -> ReadyCheck {
    Arc::new(move || {
        let mut reasons = Vec::new();
        if !authn.is_ready() {
            reasons.push("OIDC issuer keys are not loaded yet".to_string());
        }
        let waiting = started.elapsed() < cluster_wait;
        for c in registry.all().iter().filter(|c| !c.rbac.is_ready()) {
            let why = c.rbac.last_error().unwrap_or_else(|| "not loaded yet".into());
            if waiting {
                reasons.push(format!("cluster {}: RBAC {why}", c.name));
            } else {
                tracing::debug!(cluster = %c.name, "RBAC still not loaded: {why}");
            }
        }
        if shutting_down.load(std::sync::atomic::Ordering::Acquire) {
            reasons.push("shutting down".to_string());
        }
        if reasons.is_empty() { Ok(()) } else { Err(reasons) }
    })
}

/// `/metrics`: the proxy's own metrics plus what authentication, the audit sender and each
/// cluster's RBAC report at scrape time.
pub fn metrics_renderer(
    metrics: Arc<crate::metrics::Metrics>,
    authn: Arc<crate::authn::Authenticator>,
    registry: Arc<crate::cluster::Registry>,
    audit_stats: Arc<crate::audit::webhook::AuditStats>,
) -> RenderMetrics {
    use crate::metrics::{RbacSource, Sources};
    Arc::new(move || {
        let rbac = registry
            .all()
            .iter()
            .map(|c| RbacSource {
                cluster: c.name.to_string(),
                snapshot_age: c.rbac.built_at.load().map(|t| t.elapsed()),
                objects: c.rbac.counts(),
            })
            .collect();
        metrics.render(&Sources {
            authn: Some(&authn.stats),
            audit: Some(&*audit_stats),
            rbac,
        })
    })
}
