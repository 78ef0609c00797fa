//! Benchmark client for the workloads a stock load generator cannot drive: a distinct token per
//! request, thousands of idle watches held open, large lists read to the end, and raw bytes
//! through an upgraded (exec / port-forward style) connection. Also writes the bench PKI.
//!
//! ```text
//! bench-client pki --dir DIR
//! bench-client tokens  --url https://127.0.0.1:P/bench --ca ca.crt --tokens-file T --count N [--conns 8]
//!                      [--offset K] [--same-token] [--cycle] [--user-namespaces U]
//!   --cycle              request i uses token (offset + i) mod (tokens in the file): many users,
//!                        each token seen again every round (the cached case at size)
//!   --user-namespaces U  token k is user k mod U (bench-issuer --users U); each asks in its own
//!                        namespace ns<user mod 100>, where the upstream's RoleBinding rb<user>
//!                        grants it (bench-upstream --rbac-objects)
//! bench-client watches --url ... --ca ... --tokens-file T --count N [--h1] [--streams-per-conn 500] --ready-file F [--hold 3600]
//!                      [--drain]  (read the watch streams as events arrive, instead of only holding them)
//! bench-client list    --url ... --ca ... --tokens-file T --requests N [--conns 2]
//! bench-client upgrade --url ... --ca ... --tokens-file T [--conns 4] [--mb-per-conn 64] [--chunk 65536]
//! ```
//! Each workload prints one JSON object with its figures on stdout.

#[path = "common/mod.rs"]
mod common;

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use common::{Args, die};
use http::{Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tokio_rustls::{TlsConnector, client::TlsStream};

struct Target {
    addr: SocketAddr,
    host: String,
    /// Path prefix of the cluster, e.g. `/bench`, or empty.
    base: String,
    tls_h1: Arc<rustls::ClientConfig>,
    tls_h2: Arc<rustls::ClientConfig>,
    tokens: Vec<String>,
}

impl Target {
    fn from_args(args: &Args) -> Target {
        let url: Uri = args
            .req("url")
            .parse()
            .unwrap_or_else(|e| die(&format!("--url: {e}")));
        let host = url.host().unwrap_or_else(|| die("--url has no host")).to_string();
        let port = url.port_u16().unwrap_or(443);
        let addr = format!("{host}:{port}")
            .parse()
            .unwrap_or_else(|e| die(&format!("--url host must be an IP: {e}")));
        let ca = PathBuf::from(args.req("ca"));
        let tokens_file = args.req("tokens-file");
        let tokens: Vec<String> = std::fs::read_to_string(&tokens_file)
            .unwrap_or_else(|e| die(&format!("{tokens_file}: {e}")))
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        if tokens.is_empty() {
            die("no tokens");
        }
        Target {
            addr,
            host: format!("{host}:{port}"),
            base: url.path().trim_end_matches('/').to_string(),
            tls_h1: common::client_config(&ca, &[b"http/1.1"]),
            tls_h2: common::client_config(&ca, &[b"h2"]),
            tokens,
        }
    }

    async fn tls(&self, h2: bool) -> std::io::Result<TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(self.addr).await?;
        tcp.set_nodelay(true)?;
        let cfg = if h2 {
            self.tls_h2.clone()
        } else {
            self.tls_h1.clone()
        };
        let name = rustls_pki_types::ServerName::try_from(self.addr.ip().to_string())
            .map_err(std::io::Error::other)?;
        TlsConnector::from(cfg).connect(name, tcp).await
    }

    async fn h1(&self) -> std::io::Result<hyper::client::conn::http1::SendRequest<Empty<Bytes>>> {
        let io = TokioIo::new(self.tls(false).await?);
        let (send, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(std::io::Error::other)?;
        tokio::spawn(conn);
        Ok(send)
    }

    async fn h2(&self) -> std::io::Result<hyper::client::conn::http2::SendRequest<Empty<Bytes>>> {
        let io = TokioIo::new(self.tls(true).await?);
        let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .initial_stream_window_size(1 << 20)
            .initial_connection_window_size(8 << 20)
            .handshake(io)
            .await
            .map_err(std::io::Error::other)?;
        tokio::spawn(conn);
        Ok(send)
    }

    /// A GET for `path` (below the cluster prefix); absolute-form for h2, origin-form for h1.
    fn get(&self, path: &str, token: &str, h2: bool) -> Request<Empty<Bytes>> {
        let uri = if h2 {
            format!("https://{}{}{}", self.host, self.base, path)
        } else {
            format!("{}{}", self.base, path)
        };
        let mut b = Request::get(uri).header(header::AUTHORIZATION, format!("Bearer {token}"));
        if !h2 {
            b = b.header(header::HOST, self.host.as_str());
        }
        b.body(Empty::new()).expect("request")
    }
}

fn percentiles(mut us: Vec<u64>) -> serde_json::Value {
    if us.is_empty() {
        return json!({});
    }
    us.sort_unstable();
    let at = |q: f64| us[((us.len() as f64 * q).ceil() as usize).clamp(1, us.len()) - 1] as f64 / 1000.0;
    json!({"p50_ms": at(0.50), "p90_ms": at(0.90), "p99_ms": at(0.99), "max_ms": at(1.0)})
}

async fn read_body(mut body: Incoming) -> Result<u64, hyper::Error> {
    let mut n = 0u64;
    while let Some(frame) = body.frame().await {
        if let Some(d) = frame?.data_ref() {
            n += d.len() as u64;
        }
    }
    Ok(n)
}

/// One GET per token; `--same-token` repeats the first token instead (the cached case).
async fn tokens(t: Arc<Target>, args: &Args) -> serde_json::Value {
    let count: usize = args.num("count", 1000);
    let conns: usize = args.num("conns", 8);
    let same = args.bool("same-token");
    // Repeats use fresh tokens: run k uses tokens 1 + offset .. 1 + offset + count.
    let offset: usize = args.num("offset", 0);
    let path = args.str("path", "/api/v1/namespaces/default/configmaps/small");
    let cycle = args.bool("cycle");
    let user_ns: usize = args.num("user-namespaces", 0);
    // Token 0 is the one the other workloads use (it is cached by now); distinct ones follow.
    if !same && !cycle && t.tokens.len() < offset + count + 1 {
        die(&format!(
            "need {} tokens, have {}",
            offset + count + 1,
            t.tokens.len()
        ));
    }
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (t, next, path) = (t.clone(), next.clone(), path.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0usize;
            let mut send = match t.h1().await {
                Ok(s) => s,
                Err(e) => die(&format!("connect: {e}")),
            };
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    break;
                }
                let k = if same {
                    0
                } else if cycle {
                    (offset + i) % t.tokens.len()
                } else {
                    offset + i + 1
                };
                let token = &t.tokens[k];
                let req = if user_ns > 0 {
                    let ns = (k % user_ns) % 100;
                    t.get(
                        &format!("/api/v1/namespaces/ns{ns}/configmaps/small"),
                        token,
                        false,
                    )
                } else {
                    t.get(&path, token, false)
                };
                let t0 = Instant::now();
                // A keep-alive connection takes the next request only once the last one is done.
                let sent = match send.ready().await {
                    Ok(()) => send.send_request(req).await,
                    Err(e) => Err(e),
                };
                let ok = match sent {
                    Ok(resp) => {
                        let status = resp.status();
                        read_body(resp.into_body()).await.is_ok() && status == StatusCode::OK
                    }
                    Err(_) => false,
                };
                lat.push(t0.elapsed().as_micros() as u64);
                if !ok {
                    errors += 1;
                    send = match t.h1().await {
                        Ok(s) => s,
                        Err(e) => die(&format!("reconnect: {e}")),
                    };
                }
            }
            (lat, errors)
        }));
    }
    let mut lat = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (l, e) = task.await.expect("task");
        lat.extend(l);
        errors += e;
    }
    let secs = started.elapsed().as_secs_f64();
    let mut out = json!({"workload": "tokens", "requests": count, "errors": errors, "secs": secs,
                         "rps": count as f64 / secs, "same_token": same});
    merge(&mut out, percentiles(lat));
    out
}

/// Opens `--count` watches and holds them; writes `--ready-file` once all have answered.
async fn watches(t: Arc<Target>, args: &Args) -> serde_json::Value {
    let count: usize = args.num("count", 1000);
    let use_h1 = args.bool("h1");
    let per_conn: usize = args.num("streams-per-conn", 500);
    let parallel: usize = args.num("parallel", 128);
    let hold: u64 = args.num("hold", 3600);
    let drain = args.bool("drain");
    let ready_file = args.get("ready-file").map(PathBuf::from);
    let path = args.str(
        "path",
        "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion=1&allowWatchBookmarks=true",
    );
    let started = Instant::now();
    let gate = Arc::new(tokio::sync::Semaphore::new(parallel));
    let mut tasks = Vec::new();
    let mut h2_conns = Vec::new();
    if !use_h1 {
        for _ in 0..count.div_ceil(per_conn) {
            h2_conns.push(t.h2().await.unwrap_or_else(|e| die(&format!("h2 connect: {e}"))));
        }
    }
    for i in 0..count {
        let (t, gate, path) = (t.clone(), gate.clone(), path.clone());
        let h2 = (!use_h1).then(|| h2_conns[i / per_conn].clone());
        tasks.push(tokio::spawn(async move {
            let permit = gate.acquire_owned().await.expect("semaphore");
            let token = &t.tokens[0];
            let resp = match h2 {
                Some(mut send) => {
                    let req = t.get(&path, token, true);
                    match send.ready().await {
                        Ok(()) => send.send_request(req).await.map(|r| (r, None)),
                        Err(e) => Err(e),
                    }
                }
                None => {
                    let mut send = match t.h1().await {
                        Ok(s) => s,
                        Err(_) => return None,
                    };
                    let req = t.get(&path, token, false);
                    send.send_request(req).await.map(|r| (r, Some(send)))
                }
            };
            drop(permit);
            match resp {
                Ok((r, keep)) if r.status() == StatusCode::OK => Some((r, keep)),
                _ => None,
            }
        }));
    }
    let mut held = Vec::new();
    let mut failed = 0usize;
    for task in tasks {
        match task.await.expect("task") {
            Some((resp, keep)) if drain => {
                held.push(tokio::spawn(async move {
                    let _keep = keep;
                    let _ = read_body(resp.into_body()).await;
                }));
            }
            Some(w) => held.push(tokio::spawn(async move {
                let _w = w;
                std::future::pending::<()>().await;
            })),
            None => failed += 1,
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let out = json!({"workload": "watches", "requested": count, "opened": held.len(), "failed": failed,
                     "secs_to_open": secs, "h2": !use_h1});
    if let Some(f) = &ready_file {
        common::write_atomic(f, &out.to_string());
    }
    println!("{out}");
    tokio::time::sleep(Duration::from_secs(hold)).await;
    drop(held);
    out
}

/// Reads a large list `--requests` times over `--conns` connections.
async fn list(t: Arc<Target>, args: &Args) -> serde_json::Value {
    let requests: usize = args.num("requests", 20);
    let conns: usize = args.num("conns", 2);
    let path = args.str("path", "/api/v1/namespaces/default/pods");
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (t, next, path) = (t.clone(), next.clone(), path.clone());
        tasks.push(tokio::spawn(async move {
            let mut send = t.h1().await.unwrap_or_else(|e| die(&format!("connect: {e}")));
            let (mut total, mut ttfb, mut bytes, mut errors) = (Vec::new(), Vec::new(), 0u64, 0usize);
            while next.fetch_add(1, Ordering::Relaxed) < requests {
                let t0 = Instant::now();
                let sent = match send.ready().await {
                    Ok(()) => send.send_request(t.get(&path, &t.tokens[0], false)).await,
                    Err(e) => Err(e),
                };
                match sent {
                    Ok(resp) if resp.status() == StatusCode::OK => {
                        ttfb.push(t0.elapsed().as_micros() as u64);
                        match read_body(resp.into_body()).await {
                            Ok(n) => bytes += n,
                            Err(_) => errors += 1,
                        }
                        total.push(t0.elapsed().as_micros() as u64);
                    }
                    _ => errors += 1,
                }
            }
            (total, ttfb, bytes, errors)
        }));
    }
    let (mut total, mut ttfb, mut bytes, mut errors) = (Vec::new(), Vec::new(), 0u64, 0usize);
    for task in tasks {
        let (a, b, n, e) = task.await.expect("task");
        total.extend(a);
        ttfb.extend(b);
        bytes += n;
        errors += e;
    }
    let secs = started.elapsed().as_secs_f64();
    let ttfb = percentiles(ttfb);
    let mut out = json!({"workload": "list", "requests": requests, "errors": errors, "bytes": bytes,
                         "secs": secs, "mb_per_s": bytes as f64 / secs / 1e6,
                         "ttfb_p50_ms": ttfb["p50_ms"], "ttfb_p99_ms": ttfb["p99_ms"]});
    merge(&mut out, percentiles(total));
    out
}

/// Raw bytes through a 101 echo: `--conns` upgraded connections, each sends `--mb-per-conn` MB
/// and reads it back.
async fn upgrade(t: Arc<Target>, args: &Args) -> serde_json::Value {
    let conns: usize = args.num("conns", 4);
    let mb: usize = args.num("mb-per-conn", 64);
    let chunk: usize = args.num("chunk", 64 * 1024);
    let path = args.str(
        "path",
        "/api/v1/namespaces/default/pods/web-000001/portforward?ports=8080",
    );
    let per_conn = (mb * 1024 * 1024) as u64;
    // Establish every upgrade first, then time the byte transfer only.
    let mut streams = Vec::new();
    for _ in 0..conns {
        let mut s = t
            .tls(false)
            .await
            .unwrap_or_else(|e| die(&format!("connect: {e}")));
        let head = format!(
            "POST {}{} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nConnection: Upgrade\r\n\
             Upgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: portforward.k8s.io\r\nContent-Length: 0\r\n\r\n",
            t.base, path, t.host, t.tokens[0]
        );
        s.write_all(head.as_bytes()).await.expect("write upgrade request");
        let mut buf = Vec::new();
        let mut byte = [0u8; 1];
        while !buf.ends_with(b"\r\n\r\n") {
            if s.read(&mut byte).await.expect("read response head") == 0 {
                die(&format!(
                    "connection closed in response head: {}",
                    String::from_utf8_lossy(&buf)
                ));
            }
            buf.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&buf);
        if !head.starts_with("HTTP/1.1 101") {
            die(&format!("upgrade refused: {head}"));
        }
        streams.push(s);
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for s in streams {
        tasks.push(tokio::spawn(async move {
            let (mut rd, mut wr) = tokio::io::split(s);
            let writer = tokio::spawn(async move {
                let data = vec![0x5au8; chunk];
                let mut sent = 0u64;
                while sent < per_conn {
                    let n = (per_conn - sent).min(chunk as u64) as usize;
                    wr.write_all(&data[..n]).await.expect("write");
                    sent += n as u64;
                }
                wr.flush().await.expect("flush");
                wr
            });
            let mut buf = vec![0u8; 256 * 1024];
            let mut got = 0u64;
            while got < per_conn {
                let n = rd.read(&mut buf).await.expect("read echo");
                if n == 0 {
                    break;
                }
                got += n as u64;
            }
            let _wr = writer.await.expect("writer");
            got
        }));
    }
    let mut echoed = 0u64;
    for task in tasks {
        echoed += task.await.expect("task");
    }
    let secs = started.elapsed().as_secs_f64();
    json!({"workload": "upgrade", "conns": conns, "bytes_each_way": echoed, "secs": secs,
           "mb_per_s": echoed as f64 / secs / 1e6, "complete": echoed == per_conn * conns as u64})
}

fn merge(into: &mut serde_json::Value, from: serde_json::Value) {
    if let (Some(a), serde_json::Value::Object(b)) = (into.as_object_mut(), from) {
        a.extend(b);
    }
}

fn main() {
    let args = Args::parse();
    let Some(cmd) = args.words.first().cloned() else {
        die("usage: bench-client pki|tokens|watches|list|upgrade [flags]")
    };
    if cmd == "pki" {
        common::write_pki(&PathBuf::from(args.req("dir")));
        return;
    }
    let workers: usize = args.num("workers", 0);
    let out = common::tokio_runtime(workers).block_on(async {
        let t = Arc::new(Target::from_args(&args));
        match cmd.as_str() {
            "tokens" => tokens(t, &args).await,
            "watches" => watches(t, &args).await,
            "list" => list(t, &args).await,
            "upgrade" => upgrade(t, &args).await,
            other => die(&format!("unknown workload {other}")),
        }
    });
    if cmd != "watches" {
        println!("{out}");
    }
}
