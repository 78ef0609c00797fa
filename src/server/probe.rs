//! The plain-HTTP probe port: `GET /ready` and `GET /live` as the Go proxy served them, `/metrics`,
//! and `/clusters` (each cluster's source and state, and the management cluster's watches, as JSON).

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
/// Renders `/clusters` (JSON).
pub type RenderStatus = Arc<dyn Fn() -> String + Send + Sync>;

/// The probe port's answers.
#[derive(Clone)]
pub struct Endpoints {
    pub ready: ReadyCheck,
    pub metrics: RenderMetrics,
    pub clusters: RenderStatus,
}

pub async fn serve(listener: TcpListener, endpoints: Endpoints, stop: CancellationToken) {
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
        let endpoints = endpoints.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let endpoints = endpoints.clone();
                async move { Ok::<_, Infallible>(answer(&req, &endpoints)) }
            });
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10))
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

fn answer(req: &Request<Incoming>, endpoints: &Endpoints) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed\n".into(),
            "text/plain",
        );
    }
    match req.uri().path() {
        "/live" => reply(StatusCode::OK, "{}\n".into(), JSON),
        "/metrics" => reply(
            StatusCode::OK,
            (endpoints.metrics)(),
            crate::metrics::CONTENT_TYPE,
        ),
        "/clusters" => reply(StatusCode::OK, (endpoints.clusters)(), JSON),
        "/ready" => {
            let full = req
                .uri()
                .query()
                .is_some_and(|q| q.split('&').any(|kv| kv == "full=1" || kv == "full=true"));
            match (endpoints.ready)() {
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
    authn: Arc<crate::authn::Issuers>,
    registry: Arc<crate::cluster::Registry>,
    started: std::time::Instant,
    cluster_wait: std::time::Duration,
    shutting_down: Arc<std::sync::atomic::AtomicBool>,
) -> ReadyCheck {
    Arc::new(move || {
        let mut reasons = Vec::new();
        let waiting = started.elapsed() < cluster_wait;
        // Every issuer's keys, as the one issuer's before; past the wait, an issuer still
        // unreachable no longer holds back the others (its own tokens are refused meanwhile).
        let issuers = authn.states();
        let any_ready = issuers.iter().any(|i| i.ready);
        for i in issuers.iter().filter(|i| !i.ready) {
            if waiting || !any_ready {
                reasons.push(format!("OIDC issuer {} keys are not loaded yet", i.url));
            } else {
                tracing::debug!(issuer = %i.url, "issuer keys still not loaded");
            }
        }
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
    authn: Arc<crate::authn::Issuers>,
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
                source: c.source.as_str(),
                synced: c.rbac.is_ready() && c.rbac.last_error().is_none(),
                snapshot_age: c.rbac.built_at.load().map(|t| t.elapsed()),
                objects: c.rbac.counts(),
                collisions: c.rbac.snapshot.load().collisions().len() as u64,
            })
            .collect();
        let failing = registry
            .changes()
            .into_iter()
            .filter(|(_, c)| c.error.is_some())
            .map(|(name, c)| (name, c.source.as_str()))
            .collect();
        metrics.render(&Sources {
            authn: Some(authn.as_ref()),
            audit: Some(&*audit_stats),
            rbac,
            failing,
        })
    })
}

/// `/clusters`: every cluster name the proxy knows, with its source, whether it serves, whether
/// its RBAC is synced, its last error and when it last changed; and the management cluster's
/// watches.
pub fn cluster_status(
    registry: Arc<crate::cluster::Registry>,
    management: Option<Arc<crate::management::Status>>,
) -> RenderStatus {
    Arc::new(move || {
        let changes = registry.changes();
        let serving = registry.all();
        let mut names: Vec<&String> = changes.keys().collect();
        let serving_names: Vec<String> = serving.iter().map(|c| c.name.to_string()).collect();
        for n in &serving_names {
            if !changes.contains_key(n) {
                names.push(n);
            }
        }
        names.sort();
        let clusters: Vec<serde_json::Value> = names
            .into_iter()
            .map(|name| {
                let cluster = serving.iter().find(|c| &*c.name == name.as_str());
                let change = changes.get(name);
                let rbac_error = cluster.and_then(|c| c.rbac.last_error());
                serde_json::json!({
                    "name": name,
                    "source": cluster.map(|c| c.source).or(change.map(|c| c.source)),
                    "serving": cluster.is_some(),
                    "identity": cluster.map(|c| c.identity.as_str()),
                    "server": cluster.map(|c| c.upstream.server.clone()),
                    "connected": cluster.is_some_and(|c| c.rbac.is_ready() && rbac_error.is_none()),
                    "rbacSynced": cluster.is_some_and(|c| c.rbac.is_ready()),
                    "lastError": change.and_then(|c| c.error.clone()).or(rbac_error),
                    "changedAt": change.map(|c| c.at),
                    // Roles of the cluster named like the proxy's: the proxy's bindings keep theirs.
                    "roleNameCollisions": cluster.map(|c| c.rbac.snapshot.load().collisions().to_vec()),
                })
            })
            .collect();
        let body = serde_json::json!({
            "clusters": clusters,
            "management": management.as_ref().map(|m| m.snapshot()),
        });
        format!("{body:#}\n")
    })
}
