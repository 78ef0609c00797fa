//! Baseline for the benchmark: a plain TLS-to-TLS reverse proxy with no authentication and no
//! authorization, built from the same stack as kube-oidc-proxy (hyper 1, hyper-util's auto
//! server and legacy pooled client, hyper-rustls, rustls on aws-lc-rs) and configured the way the
//! proxy configures it (HTTP/1.1 upstream, TCP_NODELAY, keep-alive pool of 64 per host, bodies
//! streamed frame by frame, upgrades spliced with `copy_bidirectional`).
//!
//! ```text
//! bench-passthrough --cert server.crt --key server.key --upstream https://127.0.0.1:PORT \
//!                   --ca ca.crt --addr-file passthrough.addr [--strip-prefix /bench]
//! ```
//! Whatever kube-oidc-proxy does beyond this program is the cost of its own features.

#[path = "common/mod.rs"]
mod common;

use std::{path::PathBuf, sync::Arc, time::Duration};

use common::{Args, Body, full};
use http::{HeaderMap, Request, Response, StatusCode, Uri, Version, header};
use http_body_util::Either;
use hyper::body::Incoming;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioIo, TokioTimer},
};

type Https = hyper_rustls::HttpsConnector<HttpConnector>;
/// Upstream bodies pass through untouched; only local errors are made here.
type PassBody = Either<Incoming, Body>;

struct Pass {
    client: Client<Https, Incoming>,
    upstream: String,
    strip: String,
    /// `--spin-us`: user CPU burnt per request, to see how added work changes the kernel and
    /// scheduling cost per request (an experiment, not a baseline).
    spin: Duration,
}

const HOP_BY_HOP: [&str; 7] = [
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
];

fn clean(headers: &mut HeaderMap, upgrade: bool) {
    for h in HOP_BY_HOP {
        headers.remove(h);
    }
    if !upgrade {
        headers.remove(header::CONNECTION);
        headers.remove(header::UPGRADE);
    }
}

fn wants_upgrade(req: &Request<Incoming>) -> bool {
    req.version() == Version::HTTP_11
        && req.headers().contains_key(header::UPGRADE)
        && req
            .headers()
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

fn error(code: StatusCode, msg: String) -> Response<PassBody> {
    let mut r = Response::new(Either::Right(full(msg)));
    *r.status_mut() = code;
    r
}

impl Pass {
    async fn handle(&self, mut req: Request<Incoming>) -> Response<PassBody> {
        if !self.spin.is_zero() {
            let start = std::time::Instant::now();
            while start.elapsed() < self.spin {
                std::hint::spin_loop();
            }
        }
        let upgrade = wants_upgrade(&req);
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        let (mut parts, body) = req.into_parts();
        let path = parts.uri.path();
        let path = match path.strip_prefix(self.strip.as_str()) {
            Some(rest) if !self.strip.is_empty() && (rest.is_empty() || rest.starts_with('/')) => rest,
            _ => path,
        };
        let mut uri = String::with_capacity(self.upstream.len() + path.len() + 64);
        uri.push_str(&self.upstream);
        uri.push_str(if path.is_empty() { "/" } else { path });
        if let Some(q) = parts.uri.query() {
            uri.push('?');
            uri.push_str(q);
        }
        parts.uri = match Uri::try_from(uri) {
            Ok(u) => u,
            Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
        };
        parts.version = Version::HTTP_11;
        parts.headers.remove(header::HOST);
        clean(&mut parts.headers, upgrade);
        let mut resp = match self.client.request(Request::from_parts(parts, body)).await {
            Ok(r) => r,
            Err(e) => return error(StatusCode::BAD_GATEWAY, format!("upstream: {e}")),
        };
        let switched = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
        if let (Some(client_upgrade), true) = (client_upgrade, switched) {
            let server_upgrade = hyper::upgrade::on(&mut resp);
            tokio::spawn(async move {
                if let Ok((c, s)) = tokio::try_join!(client_upgrade, server_upgrade) {
                    let _ = tokio::io::copy_bidirectional(&mut TokioIo::new(c), &mut TokioIo::new(s)).await;
                }
            });
        }
        clean(resp.headers_mut(), upgrade && switched);
        resp.map(Either::Left)
    }
}

fn main() {
    let args = Args::parse();
    let cert = PathBuf::from(args.req("cert"));
    let key = PathBuf::from(args.req("key"));
    let ca = PathBuf::from(args.req("ca"));
    let upstream = args.req("upstream").trim_end_matches('/').to_string();
    let listen = args.str("listen", "127.0.0.1:0");
    let addr_file = args.get("addr-file").map(PathBuf::from);
    let strip = args.str("strip-prefix", "/bench");
    let workers: usize = args.num("workers", 0);
    let spin = Duration::from_micros(args.num("spin-us", 0));

    common::tokio_runtime(workers).block_on(async move {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_keepalive(Some(Duration::from_secs(30)));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*common::client_config(&ca, &[])).clone())
            .https_only()
            .enable_http1()
            .wrap_connector(http);
        let client: Client<Https, Incoming> = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(64)
            .build(https);
        let pass = Arc::new(Pass {
            client,
            upstream,
            strip,
            spin,
        });
        let tls = common::server_config(&cert, &key);
        common::serve_tls(&listen, tls, addr_file, move |req, _| {
            let pass = pass.clone();
            async move { pass.handle(req).await }
        })
        .await;
    });
}
