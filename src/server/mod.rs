//! Listeners: the TLS proxy port and the plain-HTTP probe port, and graceful shutdown.

mod drive;
pub mod edge;
mod head_clock;
pub mod probe;
pub mod tls;

use std::{convert::Infallible, sync::Arc, time::Duration};

use hyper::service::service_fn;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

pub use self::drive::Connections;
use self::{
    drive::drive,
    head_clock::{Answered, HeadClock},
};
use crate::{
    authn::issuers::ConnMemo,
    proxy::{Conn, Proxy, headers::Peer},
};

/// Listener settings from flags.
#[derive(Debug, Clone, Copy)]
pub struct ServeOptions {
    pub http2_max_streams: u32,
    pub header_read_timeout: Duration,
    pub handshake_timeout: Duration,
    /// `--upstream-response-header-timeout`: an HTTP/1.1 connection's clock watches that wait
    /// for its requests.
    pub upstream_header_timeout: Duration,
}

/// HTTP/1.1 and HTTP/2 servers, chosen per connection by the ALPN result rather than by sniffing.
struct Builders {
    h1: auto::Builder<TokioExecutor>,
    h2: auto::Builder<TokioExecutor>,
}

impl Builders {
    fn new(opts: ServeOptions) -> Self {
        let mut h1 = auto::Builder::new(TokioExecutor::new()).http1_only();
        // hyper's own header timeout is off (see below); the timer stays set because hyper panics
        // if a timeout is ever configured without one, and it costs nothing while none is.
        h1.http1()
            .timer(TokioTimer::new())
            // kube-apiserver's 1 MiB of request line and headers (Go adds 4 KiB of slack too).
            .max_buf_size(edge::MAX_HEAD_BYTES + 4096)
            // hyper's default of edge::MAX_H1_HEADERS (100) header fields is left unset: setting
            // any limit, even that one, costs an initialised array of that size per request.
            // The header timeout is the connection's `HeadClock` (one timer per connection, not
            // one per request); hyper's own, on by default, stays off.
            .header_read_timeout(None)
            .keep_alive(true);
        let mut h2 = auto::Builder::new(TokioExecutor::new()).http2_only();
        let streams = if opts.http2_max_streams == 0 {
            1000
        } else {
            opts.http2_max_streams
        };
        // client-go multiplexes every watch of a process over one connection: allow many streams,
        // and large header lists (big groups claims).
        h2.http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(streams)
            .max_header_list_size(edge::MAX_HEAD_BYTES as u32)
            .max_pending_accept_reset_streams(Some(200))
            .keep_alive_interval(Some(Duration::from_secs(30)))
            .keep_alive_timeout(Duration::from_secs(20));
        Builders { h1, h2 }
    }
}

/// Accepts TLS connections until `stop` fires, then hands back the open connections so shutdown
/// can drain them or drop them.
pub async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    proxy: Arc<Proxy>,
    opts: ServeOptions,
    stop: CancellationToken,
) -> Connections {
    let connections = Connections::default();
    let builders = Arc::new(Builders::new(opts));
    loop {
        let (tcp, peer) = tokio::select! {
            _ = stop.cancelled() => return connections,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Usually EMFILE: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, proxy, builders, (drain, hard)) = (
            acceptor.clone(),
            proxy.clone(),
            builders.clone(),
            connections.signals(),
        );
        connections.spawn(async move {
            let tls = match tokio::time::timeout(opts.handshake_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
            let edge_proxy = proxy.clone();
            // The connection's last token and its user (see `ConnMemo`), and its peer.
            let memo = Arc::new(ConnMemo::default());
            let peer_info = Arc::new(Peer::new(peer));
            // Both protocols' edges answer what the libraries refuse (see `edge`).
            let result = if h2 {
                // Each HTTP/2 stream's future is moved into a task of its own: boxed, the
                // request's several KiB of state move once instead of at every hand-over.
                let svc = service_fn(move |req| {
                    let (proxy, memo, peer) = (proxy.clone(), memo.clone(), peer_info.clone());
                    async move {
                        let conn = Conn {
                            memo: Some(&memo),
                            watchdog: None,
                        };
                        Ok::<_, Infallible>(Box::pin(proxy.handle_on(req, &peer, conn)).await)
                    }
                });
                let io = edge::H2PathGuard::new(tls);
                let conn = builders.h2.serve_connection_with_upgrades(TokioIo::new(io), svc);
                drive(conn.into_owned(), &drain, &hard).await
            } else {
                // With neither limit (0) the clock is kept but never looked at.
                let clock = Arc::new(HeadClock::new(
                    opts.header_read_timeout,
                    opts.upstream_header_timeout,
                ));
                let svc = {
                    let clock = clock.clone();
                    service_fn(move |req| {
                        clock.head_read();
                        let (proxy, memo, clock) = (proxy.clone(), memo.clone(), clock.clone());
                        let peer = peer_info.clone();
                        async move {
                            let conn = Conn {
                                memo: Some(&memo),
                                watchdog: Some(&*clock),
                            };
                            let resp = proxy.handle_on(req, &peer, conn).await;
                            Ok::<_, Infallible>(resp.map(|body| Answered::new(body, clock)))
                        }
                    })
                };
                let io = edge::H1Answers::new(tls, Box::new(move |code| edge_proxy.edge_refused(peer, code)));
                let conn = builders.h1.serve_connection_with_upgrades(TokioIo::new(io), svc);
                tokio::select! {
                    biased;
                    r = drive(conn.into_owned(), &drain, &hard) => r,
                    // A request head awaited for the whole timeout (slowloris, or idle keep-alive).
                    _ = clock.expired(), if clock.keeps_time() => {
                        tracing::debug!(%peer, "request header timeout: connection closed");
                        Ok(())
                    }
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}
