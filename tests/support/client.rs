//! A bare HTTPS client for tests: one TLS connection, HTTP/1.1 or h2 by
//! ALPN, upgrades enabled. Deliberately not a pooled client, so a test
//! controls exactly which connection each request uses.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::{Body, full};

/// Open TCP + TLS to `addr`, verifying the server as "127.0.0.1".
/// Fails (rather than panics) so tests can assert on handshake errors.
pub async fn tls_connect(
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::IpAddress(addr.ip().into());
    TlsConnector::from(tls).connect(name, tcp).await
}

pub enum Conn {
    H1(http1::SendRequest<Body>, SocketAddr),
    H2(http2::SendRequest<Body>, SocketAddr),
}

impl Conn {
    /// Connect and speak whatever ALPN settled on (HTTP/1.1 if none).
    pub async fn connect(addr: SocketAddr, tls: Arc<rustls::ClientConfig>) -> std::io::Result<Conn> {
        let stream = tls_connect(addr, tls).await?;
        let is_h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
        let io = TokioIo::new(stream);
        let conn = if is_h2 {
            let (send, conn) = http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(std::io::Error::other)?;
            tokio::spawn(conn);
            Conn::H2(send, addr)
        } else {
            let (send, conn) = http1::handshake(io).await.map_err(std::io::Error::other)?;
            // Without with_upgrades the connection task would keep the
            // socket after a 101 and hyper::upgrade::on would never resolve.
            tokio::spawn(conn.with_upgrades());
            Conn::H1(send, addr)
        };
        Ok(conn)
    }

    pub fn is_h2(&self) -> bool {
        matches!(self, Conn::H2(..))
    }

    /// Send `req`; its URI may be just a path. The URI is made absolute for
    /// h2 (which needs :authority) and a Host header added for HTTP/1.1.
    pub async fn send(&mut self, mut req: Request<Body>) -> hyper::Result<Response<Incoming>> {
        let path = req.uri().path_and_query().map_or("/", |p| p.as_str()).to_owned();
        match self {
            Conn::H1(send, addr) => {
                let host = http::HeaderValue::from_str(&addr.to_string()).expect("host");
                req.headers_mut().entry(http::header::HOST).or_insert(host);
                *req.uri_mut() = path.parse().expect("path");
                send.ready().await?;
                send.send_request(req).await
            }
            Conn::H2(send, addr) => {
                *req.uri_mut() = format!("https://{addr}{path}").parse().expect("uri");
                send.ready().await?;
                send.send_request(req).await
            }
        }
    }

    /// GET `path` with extra headers.
    pub async fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> hyper::Result<Response<Incoming>> {
        let mut req = Request::get(path);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.send(req.body(full(Bytes::new())).expect("request")).await
    }
}

/// One-shot GET on a fresh connection: (status, headers, whole body).
pub async fn get(
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    path: &str,
    headers: &[(&str, &str)],
) -> (http::StatusCode, http::HeaderMap, Bytes) {
    let mut conn = Conn::connect(addr, tls).await.expect("connect");
    let resp = conn.get(path, headers).await.expect("send request");
    let (parts, body) = resp.into_parts();
    (parts.status, parts.headers, collect(body).await)
}

/// The whole body (panics on a transport error).
pub async fn collect(body: Incoming) -> Bytes {
    body.collect().await.expect("read body").to_bytes()
}

/// Next non-empty data frame of a streaming body, `None` at end of stream;
/// panics if none comes within `secs` (a watch event that never arrives).
/// Empty frames are skipped: an h2 stream typically ends with an empty DATA
/// frame carrying END_STREAM.
pub async fn next_data(body: &mut Incoming, secs: u64) -> Option<Bytes> {
    let wait = Duration::from_secs(secs);
    loop {
        let frame = tokio::time::timeout(wait, body.frame())
            .await
            .expect("timed out waiting for a body frame")?
            .expect("body error");
        if let Ok(data) = frame.into_data()
            && !data.is_empty()
        {
            return Some(data);
        }
    }
}
