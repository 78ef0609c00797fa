//! Micro-benchmarks of the authentication hot path (README, "Performance"):
//!
//! - the first request of a token: `Authenticator::authenticate` with the cache disabled, so
//!   every call verifies (header, kid lookup, RS256 signature, claims, user mapping) against keys
//!   loaded from a real issuer over TLS (target: <= 60 µs extra CPU over a cached request);
//! - a cached request: `authenticate` on a token already in the cache;
//! - the token cache itself: SHA-256 key of a ~1 KB token, lookup with 10k entries, insert;
//! - jsonwebtoken alone with the proxy's `Validation`, the library floor of a verification;
//! - claims to user: the `--oidc-*` flag mapping against an `--authentication-config` entry with
//!   the CEL rules of kube-apiserver's documentation (claim rule, username, groups, extra, user
//!   rule), and a first request under those rules: the per-token cost of CEL.
//!
//! The issuer is the benchmark's own (bench/common: an RSA-2048 key, discovery and JWKS over
//! TLS on 127.0.0.1), so the `Authenticator` is built and fed exactly as in production.

#[path = "../bench/common/mod.rs"]
mod common;

use std::{
    hint::black_box,
    sync::Arc,
    time::{Duration, Instant},
};

use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use kube_oidc_proxy::authn::{Authenticator, ClaimMapping, Issuers, Mapping, OidcConfig, TokenCache, User};
use serde_json::{Map, Value};

const CLIENT_ID: &str = "kube";

struct Setup {
    rt: tokio::runtime::Runtime,
    issuer_url: String,
    ca_pem: Vec<u8>,
    key: Arc<common::Rs256Key>,
    tokens: Vec<String>,
    _dir: tempfile::TempDir,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("temp dir");
    common::write_pki(dir.path());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let issuer_url = format!("https://{}", listener.local_addr().expect("addr"));
    let key = Arc::new(common::Rs256Key::generate("bench-key-1"));
    let discovery = bytes::Bytes::from(
        serde_json::json!({"issuer": issuer_url, "jwks_uri": format!("{issuer_url}/keys")}).to_string(),
    );
    let jwks = bytes::Bytes::from(serde_json::json!({"keys": [key.jwk()]}).to_string());
    let tls = common::server_config(&dir.path().join("server.crt"), &dir.path().join("server.key"));
    rt.spawn(common::serve_tls_on(listener, tls, move |req, _| {
        let body = if req.uri().path() == "/keys" {
            jwks.clone()
        } else {
            discovery.clone()
        };
        async move { http::Response::new(common::full(body)) }
    }));
    let groups = vec!["bench:devops".to_string(), "developers".to_string()];
    let tokens = (0..256)
        .map(|i| key.sign(&common::bench_claims(&issuer_url, CLIENT_ID, &groups, i, 3600)))
        .collect();
    Setup {
        ca_pem: std::fs::read(dir.path().join("ca.crt")).expect("ca"),
        rt,
        issuer_url,
        key,
        tokens,
        _dir: dir,
    }
}

fn flag_mapping() -> ClaimMapping {
    ClaimMapping {
        username_claim: "email".into(),
        username_prefix: String::new(),
        groups_claim: "groups".into(),
        groups_prefix: String::new(),
        required_claims: Vec::new(),
    }
}

fn authenticator(s: &Setup, cache_size: usize) -> Arc<Issuers> {
    issuers(s, cache_size, Mapping::Flags(flag_mapping()))
}

/// An `--authentication-config` entry with the expressions kube-apiserver's documentation uses.
fn cel_rules(issuer_url: &str) -> Mapping {
    let yaml = format!(
        "apiVersion: apiserver.config.k8s.io/v1
kind: AuthenticationConfiguration
jwt:
- issuer:
    url: {issuer_url}
    audiences: [{CLIENT_ID}]
  claimValidationRules:
  - expression: 'claims.exp - claims.nbf <= 86400'
    message: total token lifetime must not exceed 24 hours
  claimMappings:
    username:
      expression: 'claims.email_verified ? claims.email : claims.sub'
    groups:
      expression: 'claims.groups.map(g, g.lowerAscii())'
    uid:
      claim: sub
    extra:
    - key: example.com/name
      valueExpression: claims.name
  userValidationRules:
  - expression: \"!user.username.startsWith('system:')\"
    message: 'username cannot use the reserved system: prefix'
"
    );
    let cfg = kube_oidc_proxy::config::authentication::parse(std::path::Path::new("bench.yaml"), &yaml)
        .expect("the bench config is valid");
    Mapping::Rules(cfg.jwt[0].rules.clone())
}

fn issuers(s: &Setup, cache_size: usize, mapping: Mapping) -> Arc<Issuers> {
    let authn = Authenticator::new(OidcConfig {
        issuer_url: s.issuer_url.clone(),
        discovery_url: None,
        audiences: vec![CLIENT_ID.into()],
        ca_pem: Some(s.ca_pem.clone()),
        signing_algs: vec![Algorithm::RS256],
        mapping,
        refresh_interval: Duration::from_secs(3600),
        min_refetch_interval: Duration::from_secs(10),
        fingerprint: 0,
    })
    .expect("authenticator");
    s.rt.block_on(authn.refresh()).expect("keys load");
    Issuers::new(vec![authn], cache_size, false)
}

/// The `Validation` the proxy builds (src/authn/mod.rs), for the library-only figure.
fn proxy_validation(issuer: &str) -> Validation {
    let mut v = Validation::new(Algorithm::RS256);
    v.set_issuer(&[issuer]);
    v.set_audience(&[CLIENT_ID]);
    v.validate_nbf = true;
    v.leeway = 30;
    v.required_spec_claims = ["exp", "iss", "aud"].iter().map(|s| s.to_string()).collect();
    v
}

fn bench(c: &mut Criterion) {
    let s = setup();
    let local = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");

    // First request of a token: no cache, so every call is a full verification.
    let uncached = authenticator(&s, 0);
    let user = local
        .block_on(uncached.authenticate(&s.tokens[0]))
        .expect("token verifies");
    assert_eq!(user.name, "bench@example.com");
    let mut i = 0usize;
    c.bench_function("authn_first_request_rs256", |b| {
        b.iter(|| {
            i = (i + 1) % s.tokens.len();
            local
                .block_on(uncached.authenticate(black_box(&s.tokens[i])))
                .expect("verifies")
        })
    });

    // Cached request: the same token again (SHA-256 of the token, shard lock, map lookup).
    let cached = authenticator(&s, 10_000);
    local
        .block_on(cached.authenticate(&s.tokens[0]))
        .expect("verifies");
    c.bench_function("authn_cached_token", |b| {
        b.iter(|| {
            local
                .block_on(cached.authenticate(black_box(&s.tokens[0])))
                .expect("cached")
        })
    });

    // Claims to user: what a first request pays for its mapping, flags against CEL rules.
    let claims: Map<String, Value> = {
        let payload = s.tokens[0].split('.').nth(1).expect("payload");
        let json =
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload).expect("b64");
        serde_json::from_slice(&json).expect("claims")
    };
    let flags = flag_mapping();
    let rules = cel_rules(&s.issuer_url);
    let Mapping::Rules(jwt_rules) = &rules else {
        unreachable!("cel_rules builds rules")
    };
    assert_eq!(jwt_rules.user(&claims).expect("maps").name, "bench@example.com");
    c.bench_function("claims_to_user_flags", |b| {
        b.iter(|| flags.user(black_box(&claims)).expect("maps"))
    });
    c.bench_function("claims_to_user_cel_rules", |b| {
        b.iter(|| jwt_rules.user(black_box(&claims)).expect("maps"))
    });
    let uncached_cel = issuers(&s, 0, rules);
    let mut i = 0usize;
    c.bench_function("authn_first_request_rs256_cel_rules", |b| {
        b.iter(|| {
            i = (i + 1) % s.tokens.len();
            local
                .block_on(uncached_cel.authenticate(black_box(&s.tokens[i])))
                .expect("verifies")
        })
    });

    // The cache alone.
    let cache = TokenCache::new(10_000);
    let now = Instant::now();
    let user = Arc::new(User {
        name: "bench@example.com".into(),
        groups: vec!["bench:devops".into(), "system:authenticated".into()],
        ..Default::default()
    });
    let keys: Vec<_> = (0..10_000)
        .map(|i| TokenCache::key(format!("{}{i}", s.tokens[0])))
        .collect();
    for k in &keys {
        cache.insert(*k, user.clone(), now + Duration::from_secs(600), now);
    }
    c.bench_function("token_cache_key_sha256", |b| {
        b.iter(|| TokenCache::key(black_box(&s.tokens[0])))
    });
    let hit = keys[4321];
    c.bench_function("token_cache_get_hit_10k", |b| {
        b.iter(|| cache.get(black_box(&hit), now))
    });
    // Distinct new keys into a cache with room (the first request of a token stores its user).
    c.bench_function("token_cache_insert", |b| {
        b.iter_custom(|iters| {
            let fresh = TokenCache::new(iters as usize + 16);
            let keys: Vec<_> = (0..iters).map(|i| TokenCache::key(i.to_string())).collect();
            let started = Instant::now();
            for k in keys {
                fresh.insert(k, user.clone(), now + Duration::from_secs(600), now);
            }
            started.elapsed()
        })
    });
    // Inserting into a full cache (10k live tokens): the eviction path of a busy proxy.
    c.bench_function("token_cache_insert_full_10k", |b| {
        b.iter_custom(|iters| {
            let full = TokenCache::new(10_000);
            for k in &keys {
                full.insert(*k, user.clone(), now + Duration::from_secs(600), now);
            }
            let fresh_keys: Vec<_> = (0..iters).map(|i| TokenCache::key(format!("new{i}"))).collect();
            let started = Instant::now();
            for k in fresh_keys {
                full.insert(k, user.clone(), now + Duration::from_secs(600), now);
            }
            started.elapsed()
        })
    });

    // The library floor: jsonwebtoken with the same validation, no proxy code around it.
    let (n_b64, e_b64) = s.key.components();
    let decoding = DecodingKey::from_rsa_components(&n_b64, &e_b64).expect("decoding key");
    let validation = proxy_validation(&s.issuer_url);
    c.bench_function("jsonwebtoken_decode_rs256", |b| {
        b.iter(|| {
            jsonwebtoken::decode::<Map<String, Value>>(black_box(&s.tokens[0]), &decoding, &validation)
                .expect("verifies")
        })
    });
    c.bench_function("jsonwebtoken_decode_header", |b| {
        b.iter(|| jsonwebtoken::decode_header(black_box(&s.tokens[0])).expect("header"))
    });
    println!("token length: {} bytes", s.tokens[0].len());
}

criterion_group!(benches, bench);
criterion_main!(benches);
