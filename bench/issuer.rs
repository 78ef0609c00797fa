//! Benchmark OIDC issuer: an RSA-2048 key, discovery and JWKS over TLS, and RS256 tokens minted
//! at start-up.
//!
//! ```text
//! bench-issuer --cert server.crt --key server.key --addr-file issuer.url \
//!              --mint 5001 --tokens-file tokens.txt [--groups bench:devops] [--client-id kube]
//!              [--users N]
//! ```
//! With `--users N`, token i is for user `bench-user-<i mod N>`; without, all are for one user.
//! Writes `--mint` distinct tokens (one per line) to `--tokens-file`, then `host:port` to
//! `--addr-file` (so a script that sees the address can use the tokens; the issuer URL is
//! `https://host:port`), then serves until killed.

#[path = "common/mod.rs"]
mod common;

use std::{path::PathBuf, sync::Arc};

use common::{Args, Rs256Key, bench_claims, full, write_atomic};
use http::{Response, header};
use tokio::net::TcpListener;

fn main() {
    let args = Args::parse();
    let cert = PathBuf::from(args.req("cert"));
    let key = PathBuf::from(args.req("key"));
    let listen = args.str("listen", "127.0.0.1:0");
    let addr_file = args.get("addr-file").map(PathBuf::from);
    let mint: usize = args.num("mint", 1);
    let tokens_file = args.get("tokens-file").map(PathBuf::from);
    let client_id = args.str("client-id", "kube");
    let ttl: u64 = args.num("ttl", 3 * 3600);
    // `--users N`: token i is for user i mod N (sub and preferred_username); 0: all one user.
    let users: usize = args.num("users", 0);
    let groups: Vec<String> = args
        .str("groups", "bench:devops")
        .split(',')
        .filter(|g| !g.is_empty())
        .map(str::to_string)
        .collect();

    let rt = common::tokio_runtime(1);
    rt.block_on(async move {
        // Bind first: the issuer URL carries the port, and tokens carry the URL.
        let listener = TcpListener::bind(&listen)
            .await
            .unwrap_or_else(|e| common::die(&format!("bind {listen}: {e}")));
        let addr = listener.local_addr().expect("local addr");
        let url = format!("https://{addr}");
        let signing = Arc::new(Rs256Key::generate("bench-key-1"));

        if let Some(path) = &tokens_file {
            let started = std::time::Instant::now();
            let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
            let per = mint.div_ceil(threads.max(1));
            let mut handles = Vec::new();
            for t in 0..threads {
                let (signing, url, client_id, groups) =
                    (signing.clone(), url.clone(), client_id.clone(), groups.clone());
                handles.push(std::thread::spawn(move || {
                    let from = t * per;
                    let to = ((t + 1) * per).min(mint);
                    (from..to)
                        .map(|i| {
                            let mut claims = bench_claims(&url, &client_id, &groups, i, ttl);
                            if users > 0 {
                                let user = format!("bench-user-{:05}", i % users);
                                claims["sub"] = user.clone().into();
                                claims["preferred_username"] = user.into();
                            }
                            signing.sign(&claims)
                        })
                        .collect::<Vec<_>>()
                }));
            }
            let mut out = String::new();
            for h in handles {
                for tok in h.join().expect("minting thread") {
                    out.push_str(&tok);
                    out.push('\n');
                }
            }
            write_atomic(path, &out);
            eprintln!("minted {mint} tokens in {:?}", started.elapsed());
        }

        let discovery = serde_json::to_vec(&serde_json::json!({
            "issuer": url,
            "jwks_uri": format!("{url}/keys"),
            "authorization_endpoint": format!("{url}/auth"),
            "token_endpoint": format!("{url}/token"),
            "response_types_supported": ["code", "id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
        }))
        .expect("json");
        let jwks = serde_json::to_vec(&serde_json::json!({"keys": [signing.jwk()]})).expect("json");
        let (discovery, jwks) = (bytes::Bytes::from(discovery), bytes::Bytes::from(jwks));

        let tls = common::server_config(&cert, &key);
        if let Some(f) = &addr_file {
            write_atomic(f, &addr.to_string());
        }
        common::serve_tls_on(listener, tls, move |req, _peer| {
            let (discovery, jwks) = (discovery.clone(), jwks.clone());
            async move {
                let body = match req.uri().path() {
                    "/.well-known/openid-configuration" => discovery,
                    "/keys" => jwks,
                    _ => {
                        let mut r = Response::new(full("not found\n"));
                        *r.status_mut() = http::StatusCode::NOT_FOUND;
                        return r;
                    }
                };
                let mut r = Response::new(full(body));
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                );
                r
            }
        })
        .await;
    });
}
