//! Plumbing shared by the benchmark programs in `bench/` (built as cargo examples) and the
//! criterion benches that include it with `#[path]`: a throwaway PKI, rustls configs on the
//! aws-lc-rs provider, a TLS accept loop on hyper-util's auto builder, tiny argument parsing and
//! RS256 token minting.
//!
//! Nothing here is used by the proxy itself; it exists so every program of the benchmark speaks
//! real TLS with the same stack as the proxy.

#![allow(dead_code)]

use std::{
    convert::Infallible,
    future::Future,
    net::SocketAddr,
    path::{Path, PathBuf},
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::{
    Request, Response,
    body::{Frame, Incoming},
};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

pub type Body = BoxBody<Bytes, Infallible>;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

// ---------------------------------------------------------------------------------------------
// arguments

/// `--name=value` / `--name value` flags and bare words, nothing more.
pub struct Args {
    pub flags: Vec<(String, String)>,
    pub words: Vec<String>,
}

impl Args {
    pub fn parse() -> Args {
        let mut flags = Vec::new();
        let mut words = Vec::new();
        let mut it = std::env::args().skip(1).peekable();
        while let Some(a) = it.next() {
            if let Some(f) = a.strip_prefix("--") {
                if let Some((k, v)) = f.split_once('=') {
                    flags.push((k.to_string(), v.to_string()));
                } else if it.peek().is_some_and(|n| !n.starts_with("--")) {
                    flags.push((f.to_string(), it.next().unwrap_or_default()));
                } else {
                    flags.push((f.to_string(), "true".to_string()));
                }
            } else {
                words.push(a);
            }
        }
        Args { flags, words }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.flags
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn str(&self, name: &str, default: &str) -> String {
        self.get(name).unwrap_or(default).to_string()
    }

    pub fn req(&self, name: &str) -> String {
        self.get(name)
            .unwrap_or_else(|| die(&format!("--{name} is required")))
            .to_string()
    }

    pub fn num<T: std::str::FromStr>(&self, name: &str, default: T) -> T {
        match self.get(name) {
            None => default,
            Some(v) => v
                .parse()
                .unwrap_or_else(|_| die(&format!("--{name}: not a number: {v}"))),
        }
    }

    pub fn bool(&self, name: &str) -> bool {
        matches!(self.get(name), Some("true" | "1" | "yes"))
    }
}

pub fn die(msg: &str) -> ! {
    eprintln!("error: {msg}");
    std::process::exit(2)
}

/// Writes `contents` to `path` atomically (temp file + rename), so a script polling for the
/// file never reads half of it.
pub fn write_atomic(path: &Path, contents: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).unwrap_or_else(|e| die(&format!("write {}: {e}", tmp.display())));
    std::fs::rename(&tmp, path).unwrap_or_else(|e| die(&format!("rename {}: {e}", path.display())));
}

pub fn tokio_runtime(workers: usize) -> tokio::runtime::Runtime {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    if workers > 0 {
        b.worker_threads(workers);
    }
    b.enable_all().build().expect("tokio runtime")
}

// ---------------------------------------------------------------------------------------------
// PKI

/// Writes `ca.crt`, `server.crt` and `server.key` (P-256, SANs 127.0.0.1, localhost, ::1).
pub fn write_pki(dir: &Path) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
    };
    std::fs::create_dir_all(dir).unwrap_or_else(|e| die(&format!("mkdir {}: {e}", dir.display())));
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::default();
    ca.distinguished_name.push(DnType::CommonName, "kop-bench-ca");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    let ca_cert = ca.self_signed(&ca_key).expect("self-sign CA");
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let sans = vec![
        "127.0.0.1".to_string(),
        "localhost".to_string(),
        "::1".to_string(),
    ];
    let mut leaf = CertificateParams::new(sans).expect("SANs");
    leaf.distinguished_name.push(DnType::CommonName, "127.0.0.1");
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.use_authority_key_identifier_extension = true;
    let leaf_key = KeyPair::generate().expect("leaf key");
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).expect("sign leaf");
    std::fs::write(dir.join("ca.crt"), ca_cert.pem()).expect("write ca.crt");
    std::fs::write(dir.join("server.crt"), leaf_cert.pem()).expect("write server.crt");
    std::fs::write(dir.join("server.key"), leaf_key.serialize_pem()).expect("write server.key");
}

pub fn server_config(cert: &Path, key: &Path) -> Arc<rustls::ServerConfig> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .unwrap_or_else(|e| die(&format!("{}: {e}", cert.display())))
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| die(&format!("{}: {e}", cert.display())));
    let key = PrivateKeyDer::from_pem_file(key).unwrap_or_else(|e| die(&format!("{}: {e}", key.display())));
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap_or_else(|e| die(&format!("server cert: {e}")));
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(cfg)
}

pub fn client_config(ca: &Path, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap_or_else(|e| die(&format!("{}: {e}", ca.display()))) {
        roots.add(c.expect("CA PEM")).expect("add CA");
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(cfg)
}

// ---------------------------------------------------------------------------------------------
// serving

/// Binds `listen`, writes the bound address to `addr_file` (if any) and serves HTTPS (h2 or
/// HTTP/1.1 by ALPN, upgrades on) until the process ends.
pub async fn serve_tls<H, F, B>(
    listen: &str,
    tls: Arc<rustls::ServerConfig>,
    addr_file: Option<PathBuf>,
    handler: H,
) where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let listener = TcpListener::bind(listen)
        .await
        .unwrap_or_else(|e| die(&format!("bind {listen}: {e}")));
    let addr = listener.local_addr().expect("local addr");
    if let Some(f) = addr_file {
        write_atomic(&f, &addr.to_string());
    }
    serve_tls_on(listener, tls, handler).await
}

/// Serves HTTPS on an already bound listener.
pub async fn serve_tls_on<H, F, B>(listener: TcpListener, tls: Arc<rustls::ServerConfig>, handler: H)
where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let addr = listener.local_addr().expect("local addr");
    eprintln!("listening on https://{addr}");
    let acceptor = TlsAcceptor::from(tls);
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(p) => p,
            Err(e) => {
                eprintln!("accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let handler = handler.clone();
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
            let svc = hyper::service::service_fn(move |req| {
                let fut = handler(req, peer);
                async move { Ok::<_, Infallible>(fut.await) }
            });
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            if h2 {
                builder = builder.http2_only();
                builder.http2().max_concurrent_streams(1000);
            } else {
                builder = builder.http1_only();
            }
            let _ = builder
                .serve_connection_with_upgrades(TokioIo::new(tls), svc)
                .await;
        });
    }
}

/// A body that never yields: an idle watch.
pub struct Idle;

impl hyper::body::Body for Idle {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Pending
    }
}

/// Streams one shared buffer in `chunk`-sized frames (zero-copy slices).
pub struct Chunked {
    data: Bytes,
    chunk: usize,
}

impl Chunked {
    pub fn new(data: Bytes, chunk: usize) -> Chunked {
        Chunked { data, chunk }
    }
}

impl hyper::body::Body for Chunked {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.data.is_empty() {
            return Poll::Ready(None);
        }
        let n = self.chunk.min(self.data.len());
        let frame = self.data.split_to(n);
        Poll::Ready(Some(Ok(Frame::data(frame))))
    }
    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.data.len() as u64)
    }
}

// ---------------------------------------------------------------------------------------------
// tokens

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub fn b64url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// An RSA-2048 RS256 signing key with its JWK.
pub struct Rs256Key {
    pub kid: String,
    pair: aws_lc_rs::signature::RsaKeyPair,
}

impl Rs256Key {
    pub fn generate(kid: &str) -> Rs256Key {
        let pair =
            aws_lc_rs::signature::RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("RSA key");
        Rs256Key {
            kid: kid.to_string(),
            pair,
        }
    }

    pub fn jwk(&self) -> serde_json::Value {
        use aws_lc_rs::signature::KeyPair as _;
        let parts = aws_lc_rs::signature::RsaPublicKeyComponents::<Vec<u8>>::from(self.pair.public_key());
        serde_json::json!({"kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.kid,
                           "n": b64url(&parts.n), "e": b64url(&parts.e)})
    }

    /// Public key as (n, e), base64url, for jsonwebtoken's `DecodingKey::from_rsa_components`.
    pub fn components(&self) -> (String, String) {
        let jwk = self.jwk();
        (
            jwk["n"].as_str().unwrap_or_default().to_string(),
            jwk["e"].as_str().unwrap_or_default().to_string(),
        )
    }

    pub fn sign(&self, claims: &serde_json::Value) -> String {
        let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "kid": self.kid});
        let input = format!(
            "{}.{}",
            b64url(header.to_string().as_bytes()),
            b64url(claims.to_string().as_bytes())
        );
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let mut sig = vec![0; self.pair.public_modulus_len()];
        self.pair
            .sign(
                &aws_lc_rs::signature::RSA_PKCS1_SHA256,
                &rng,
                input.as_bytes(),
                &mut sig,
            )
            .expect("RSA sign");
        format!("{input}.{}", b64url(&sig))
    }
}

/// Claims of a typical Keycloak ID token for the bench user, made distinct by `jti`.
pub fn bench_claims(
    issuer: &str,
    client_id: &str,
    groups: &[String],
    n: usize,
    ttl: u64,
) -> serde_json::Value {
    let now = unix_now();
    serde_json::json!({
        "iss": issuer,
        "aud": client_id,
        "azp": client_id,
        "sub": "3f2a5e1c-bench-user",
        "preferred_username": "bench",
        "email": "bench@example.com",
        "email_verified": true,
        "name": "Bench User",
        "groups": groups,
        "iat": now,
        "nbf": now - 5,
        "auth_time": now,
        "exp": now + ttl,
        "jti": format!("bench-{n:08}-{now}"),
        "typ": "ID",
    })
}
