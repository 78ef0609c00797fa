//! An in-process webhook receiver on 127.0.0.1 that records what it got and can be told to
//! fail, stall, or (over TLS) require a client certificate.

use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, service::service_fn};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::{net::TcpListener, sync::watch};

use super::super::WebhookConfig;

#[derive(Debug, Clone)]
pub(super) struct Hit {
    pub(super) method: String,
    pub(super) path: String,
    pub(super) headers: HeaderMap,
    pub(super) body: Value,
    pub(super) answered: u16,
    pub(super) client_cert: bool,
}

/// A webhook receiver on 127.0.0.1. Answers the scripted statuses first, then 200.
#[derive(Clone)]
pub(super) struct Receiver {
    addr: SocketAddr,
    https: bool,
    hits: Arc<Mutex<Vec<Hit>>>,
    script: Arc<Mutex<VecDeque<u16>>>,
    /// Events with this request_id are always answered with this status.
    poison: Arc<Mutex<Option<(String, u16)>>>,
    stall: watch::Sender<bool>,
}

impl Receiver {
    pub(super) async fn start() -> Receiver {
        Self::start_inner(None).await
    }

    pub(super) async fn start_tls(config: Arc<rustls::ServerConfig>) -> Receiver {
        Self::start_inner(Some(tokio_rustls::TlsAcceptor::from(config))).await
    }

    async fn start_inner(tls: Option<tokio_rustls::TlsAcceptor>) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let rx = Receiver {
            addr: listener.local_addr().expect("addr"),
            https: tls.is_some(),
            hits: Arc::default(),
            script: Arc::default(),
            poison: Arc::default(),
            stall: watch::channel(false).0,
        };
        let server = rx.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let server = server.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    match tls {
                        None => server.serve(TokioIo::new(tcp), false).await,
                        Some(acceptor) => {
                            let Ok(stream) = acceptor.accept(tcp).await else {
                                return;
                            };
                            let client_cert = stream.get_ref().1.peer_certificates().is_some();
                            server.serve(TokioIo::new(stream), client_cert).await;
                        }
                    }
                });
            }
        });
        rx
    }

    async fn serve<IO>(&self, io: TokioIo<IO>, client_cert: bool)
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let this = self.clone();
        let svc = service_fn(move |req: Request<Incoming>| {
            let this = this.clone();
            async move { Ok::<_, std::convert::Infallible>(this.answer(req, client_cert).await) }
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(io, svc)
            .await;
    }

    async fn answer(&self, req: Request<Incoming>, client_cert: bool) -> Response<Full<Bytes>> {
        let mut stalled = self.stall.subscribe();
        let _ = stalled.wait_for(|s| !*s).await;
        let (parts, body) = req.into_parts();
        let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let poisoned = self
            .poison
            .lock()
            .expect("lock")
            .as_ref()
            .filter(|(id, _)| parsed["request_id"] == id.as_str())
            .map(|(_, status)| *status);
        let status = match poisoned {
            Some(status) => status,
            None => self.script.lock().expect("lock").pop_front().unwrap_or(200),
        };
        self.hits.lock().expect("lock").push(Hit {
            method: parts.method.to_string(),
            path: parts.uri.path().to_string(),
            headers: parts.headers,
            body: parsed,
            answered: status,
            client_cert,
        });
        let mut resp = Response::new(Full::new(Bytes::from_static(b"{}")));
        *resp.status_mut() = StatusCode::from_u16(status).expect("valid status");
        resp
    }

    pub(super) fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.addr.port())
    }

    pub(super) fn config(&self) -> WebhookConfig {
        WebhookConfig {
            timeout: Duration::from_secs(5),
            initial_backoff: Duration::from_millis(10),
            ..WebhookConfig::new(self.url())
        }
    }

    pub(super) fn fail_next(&self, statuses: &[u16]) {
        self.script.lock().expect("lock").extend(statuses);
    }

    /// Answers `status` to every event with `request_id`, forever.
    pub(super) fn poison(&self, request_id: &str, status: u16) {
        *self.poison.lock().expect("lock") = Some((request_id.to_string(), status));
    }

    pub(super) fn set_stalled(&self, stalled: bool) {
        self.stall.send_replace(stalled);
    }

    pub(super) fn hits(&self) -> Vec<Hit> {
        self.hits.lock().expect("lock").clone()
    }

    pub(super) fn delivered(&self) -> Vec<Hit> {
        self.hits().into_iter().filter(|h| h.answered == 200).collect()
    }
}
