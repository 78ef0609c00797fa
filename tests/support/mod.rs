//! In-process fakes for the integration tests: a throwaway PKI, an OIDC
//! issuer and a Kubernetes API server, all speaking real TLS on 127.0.0.1.
//!
//! This module also holds the plumbing the two servers share: a TLS accept
//! loop on hyper-util's auto builder, response helpers and a temp dir.

// Every test binary that says `mod support;` compiles all of this but uses
// only part of it; without this, `-D warnings` fails on the unused rest.
#![allow(dead_code)]

pub mod apiserver;
pub mod client;
pub mod h2raw;
pub mod issuer;
pub mod objects;
pub mod pki;
pub mod proxy;
pub mod token;
pub mod webhook;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::CertificateDer;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

/// Response body used by every fake: full bodies and streams alike.
pub type Body = BoxBody<Bytes, Infallible>;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

/// A JSON response with the given status.
pub fn json(status: u16, value: &serde_json::Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(full(serde_json::to_vec(value).expect("serialize json")))
        .expect("valid response")
}

/// What the accept loop knows about a connection, handed to every request.
#[derive(Clone)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    /// Leaf certificate the client presented (only when client auth is on).
    pub client_cert: Option<CertificateDer<'static>>,
    /// Flips to `true` (or its sender drops) when the server shuts down;
    /// tasks spawned off a request (upgrade echoes) watch it to end too.
    pub stop: watch::Receiver<bool>,
}

impl ConnInfo {
    /// Resolves once the owning server is shut down or dropped.
    pub async fn stopped(&mut self) {
        let _ = self.stop.wait_for(|s| *s).await;
    }
}

/// A running TLS server. Dropping it stops it: the accept loop ends and every
/// connection task is aborted, which closes their sockets.
pub struct Served {
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
}

impl Served {
    pub fn shutdown(&self) {
        self.stop.send_replace(true);
    }
}

/// A listener on 127.0.0.1 with a free port. Binding is separate from
/// serving so a fake can learn its URL before building its handler.
pub async fn bind_local() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0")
}

/// Serve HTTPS (h2 or HTTP/1.1, with upgrades) on `listener`.
pub fn serve_tls<H, F>(listener: TcpListener, tls: Arc<rustls::ServerConfig>, handler: H) -> Served
where
    H: Fn(Request<Incoming>, ConnInfo) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let addr = listener.local_addr().expect("local addr");
    let (stop_tx, stop_rx) = watch::channel(false);
    let acceptor = TlsAcceptor::from(tls);
    tokio::spawn(async move {
        // Owning the connection tasks here means dropping the set on shutdown
        // aborts them all; a plain tokio::spawn would leak live sockets.
        let mut conns = JoinSet::new();
        let mut stop = stop_rx.clone();
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                accepted = listener.accept() => {
                    let Ok((tcp, peer)) = accepted else { continue };
                    let acceptor = acceptor.clone();
                    let handler = handler.clone();
                    let stop = stop_rx.clone();
                    conns.spawn(serve_conn(acceptor, tcp, peer, handler, stop));
                }
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
    });
    Served { addr, stop: stop_tx }
}

async fn serve_conn<H, F>(
    acceptor: TlsAcceptor,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    handler: H,
    stop: watch::Receiver<bool>,
) where
    H: Fn(Request<Incoming>, ConnInfo) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    // A failed handshake (untrusted or missing client cert) just ends here;
    // the client sees the TLS alert, which is what the mTLS tests look for.
    let Ok(tls) = acceptor.accept(tcp).await else {
        return;
    };
    let client_cert = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .map(|c| c.clone().into_owned());
    let info = ConnInfo {
        peer,
        client_cert,
        stop,
    };
    let service = hyper::service::service_fn(move |req| {
        let fut = handler(req, info.clone());
        async move { Ok::<_, Infallible>(fut.await) }
    });
    // The auto builder picks h2 or HTTP/1.1 from the connection preface, so
    // ALPN "h2" and prior-knowledge clients both work. Upgrades must be on,
    // or the connection future ends right after writing a 101.
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    // kube-apiserver's limits: 1 MiB of request line and headers on both protocols.
    builder.http1().max_buf_size((1 << 20) + 4096);
    builder.http2().max_header_list_size(1 << 20);
    let _ = builder
        .serve_connection_with_upgrades(TokioIo::new(tls), service)
        .await;
}

/// A directory under the system temp dir, removed when dropped. The fakes
/// keep one alive to hold the PEM files they hand out as paths.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!(
            "{prefix}-{}-{}-{nanos}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Write `contents` to `name` inside the directory and return its path.
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.path.join(name);
        std::fs::write(&path, contents).expect("write temp file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Poll `cond` every 10 ms until it holds, panicking after `secs` seconds.
/// Tests use it to wait for server-side state (an open watch, a fetch count)
/// instead of sleeping for a guessed time.
pub async fn wait_until(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {secs}s waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// The body `/big/<n>` serves: byte i is `b'a' + i % 26`.
pub fn big_body(n: usize) -> Vec<u8> {
    (0..n).map(big_byte).collect()
}

fn big_byte(i: usize) -> u8 {
    b'a' + u8::try_from(i % 26).expect("i % 26 fits u8")
}

/// Streams `total` bytes in 16 KiB frames, produced lazily so a large
/// response really is a stream through the proxy, not one buffer.
pub struct BigBody {
    sent: usize,
    total: usize,
}

impl BigBody {
    pub fn new(total: usize) -> BigBody {
        BigBody { sent: 0, total }
    }
}

impl hyper::body::Body for BigBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.sent >= self.total {
            return Poll::Ready(None);
        }
        let len = (self.total - self.sent).min(16 * 1024);
        let chunk: Vec<u8> = (self.sent..self.sent + len).map(big_byte).collect();
        self.sent += len;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(chunk)))))
    }
}

/// A watch stream: each pushed event is one data frame; ends when the
/// sender is dropped (`close_watches`).
pub struct ChannelBody(pub mpsc::UnboundedReceiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|event| event.map(|b| Ok(Frame::data(b))))
    }
}
