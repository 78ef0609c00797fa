//! The sender against an in-process webhook receiver that records what it got and can be told to
//! fail, stall or require a client certificate.

mod receiver;

use std::{
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use serde_json::json;
use tokio::net::TcpListener;

use super::*;
use receiver::Receiver;

fn event(n: usize) -> AuditEvent {
    AuditEvent {
        cluster_name: "c1".into(),
        email: "oidc:ann@example.com".into(),
        uid: "sub-123".into(),
        groups: vec!["c1:developer".into(), "admins".into()],
        extra: [("scopes".to_string(), vec!["a".to_string(), "b".to_string()])].into(),
        is_resource_request: true,
        request_path: "/api/v1/namespaces/ns1/pods".into(),
        verb: "create".into(),
        api_prefix: "api".into(),
        api_group: String::new(),
        api_version: "v1".into(),
        namespace: "ns1".into(),
        resource: "pods".into(),
        sub_resource: String::new(),
        name: String::new(),
        parts: vec!["pods".into()],
        field_selector: "status.phase=Running".into(),
        label_selector: "app=web".into(),
        request_body: json!({"kind": "Pod", "metadata": {"name": "p1"}}),
        decision: AuditDecision::Allow,
        request_id: format!("req-{n}"),
        timestamp: "2025-01-02T10:11:12Z".into(),
        request_body_omitted: None,
        impersonated_by: None,
    }
}

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn load(c: &std::sync::atomic::AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

#[tokio::test]
async fn delivers_the_event_field_by_field() {
    let rx = Receiver::start().await;
    let stats = Arc::new(AuditStats::default());
    let (handle, task) = AuditSender::start(rx.config(), stats.clone()).expect("start");
    handle.send(event(1));
    assert_eq!(handle.shutdown(Duration::from_secs(5)).await, 0);
    task.await.expect("sender task ends");

    let hits = rx.hits();
    assert_eq!(hits.len(), 1);
    let hit = &hits[0];
    assert_eq!(hit.method, "POST");
    assert_eq!(hit.path, "/api/v1/k8s-audit-log/webhook");
    assert_eq!(hit.headers["content-type"], "application/json");
    assert!(hit.headers.get("authorization").is_none());
    let b = &hit.body;
    assert_eq!(b["cluster_name"], "c1");
    assert_eq!(b["email"], "oidc:ann@example.com");
    assert_eq!(b["uid"], "sub-123");
    assert_eq!(b["groups"], json!(["c1:developer", "admins"]));
    assert_eq!(b["extra"], json!({"scopes": ["a", "b"]}));
    assert_eq!(b["is_resource_request"], true);
    assert_eq!(b["request_path"], "/api/v1/namespaces/ns1/pods");
    assert_eq!(b["verb"], "create");
    assert_eq!(b["api_prefix"], "api");
    assert_eq!(b["api_group"], "");
    assert_eq!(b["api_version"], "v1");
    assert_eq!(b["namespace"], "ns1");
    assert_eq!(b["resource"], "pods");
    assert_eq!(b["sub_resource"], "");
    assert_eq!(b["name"], "");
    assert_eq!(b["parts"], json!(["pods"]));
    assert_eq!(b["field_selector"], "status.phase=Running");
    assert_eq!(b["label_selector"], "app=web");
    assert_eq!(
        b["request_body"],
        json!({"kind": "Pod", "metadata": {"name": "p1"}})
    );
    assert_eq!(b["decision"], "allow");
    assert_eq!(b["request_id"], "req-1");
    assert_eq!(b["timestamp"], "2025-01-02T10:11:12Z");
    assert!(b.get("request_body_omitted").is_none());
    assert_eq!(b.as_object().map(|o| o.len()), Some(22));

    assert_eq!(load(&stats.sent), 1);
    assert_eq!(load(&stats.retried), 0);
    assert_eq!(load(&stats.failed), 0);
    assert_eq!(load(&stats.dropped), 0);
    assert_eq!(stats.queued.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn retries_server_errors_then_delivers_once() {
    let rx = Receiver::start().await;
    rx.fail_next(&[500, 500]);
    let stats = Arc::new(AuditStats::default());
    let (handle, _task) = AuditSender::start(rx.config(), stats.clone()).expect("start");
    handle.send(event(1));
    assert_eq!(handle.shutdown(Duration::from_secs(5)).await, 0);
    let answered: Vec<u16> = rx.hits().iter().map(|h| h.answered).collect();
    assert_eq!(answered, [500, 500, 200]);
    assert_eq!(rx.delivered().len(), 1);
    assert_eq!(load(&stats.sent), 1);
    assert_eq!(load(&stats.retried), 2);
    assert_eq!(load(&stats.failed), 0);
}

#[tokio::test]
async fn retries_429_and_gives_up_on_other_4xx() {
    let rx = Receiver::start().await;
    rx.fail_next(&[429, 400]);
    let stats = Arc::new(AuditStats::default());
    let (handle, _task) = AuditSender::start(rx.config(), stats.clone()).expect("start");
    handle.send(event(1));
    assert_eq!(handle.shutdown(Duration::from_secs(5)).await, 0);
    let answered: Vec<u16> = rx.hits().iter().map(|h| h.answered).collect();
    assert_eq!(answered, [429, 400]);
    assert_eq!(load(&stats.sent), 0);
    assert_eq!(load(&stats.retried), 1);
    assert_eq!(load(&stats.failed), 1);
}

#[tokio::test]
async fn gives_up_after_max_retries() {
    let rx = Receiver::start().await;
    rx.fail_next(&[500; 10]);
    let stats = Arc::new(AuditStats::default());
    let cfg = WebhookConfig {
        max_retries: 2,
        ..rx.config()
    };
    let (handle, _task) = AuditSender::start(cfg, stats.clone()).expect("start");
    handle.send(event(1));
    assert_eq!(handle.shutdown(Duration::from_secs(5)).await, 0);
    assert_eq!(rx.hits().len(), 3);
    assert_eq!(load(&stats.retried), 2);
    assert_eq!(load(&stats.failed), 1);
    assert_eq!(load(&stats.sent), 0);
}

#[tokio::test]
async fn an_event_the_webhook_never_takes_gives_up_its_slot_once_others_go_through() {
    // A sink that crashes on one event behind a load balancer answering 502: the webhook is
    // not unavailable, that event is the problem, so it uses up max_retries and fails.
    let rx = Receiver::start().await;
    rx.poison("req-1", 502);
    let stats = Arc::new(AuditStats::default());
    let cfg = WebhookConfig {
        max_retries: 3,
        ..rx.config()
    };
    let (handle, _task) = AuditSender::start(cfg, stats.clone()).expect("start");
    handle.send(event(1));
    tokio::time::sleep(Duration::from_millis(50)).await;
    for i in 2..=5 {
        handle.send(event(i));
    }
    assert_eq!(handle.shutdown(Duration::from_secs(10)).await, 0);
    assert_eq!(load(&stats.sent), 4);
    assert_eq!(load(&stats.failed), 1, "the poisonous event gave up");
    assert_eq!(load(&stats.dropped), 0);
}

#[tokio::test]
async fn an_unavailable_webhook_is_waited_for_beyond_max_retries() {
    // Unreachable (nothing listens on a port we bound and released): retried until shutdown,
    // then counted as dropped, never as failed.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        l.local_addr().expect("addr").port()
    };
    let stats = Arc::new(AuditStats::default());
    let cfg = WebhookConfig {
        max_retries: 1,
        initial_backoff: Duration::from_millis(1),
        ..WebhookConfig::new(format!("http://127.0.0.1:{port}"))
    };
    let (handle, _task) = AuditSender::start(cfg, stats.clone()).expect("start");
    handle.send(event(1));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        handle.shutdown(Duration::from_millis(200)).await,
        1,
        "left unsent"
    );
    assert!(load(&stats.retried) > 1, "{}", load(&stats.retried));
    assert_eq!(load(&stats.failed), 0);
    assert_eq!(load(&stats.dropped), 1);

    // No answer in time, then 503s from a load balancer, then the webhook is back: delivered,
    // although that took more attempts than max_retries.
    let rx = Receiver::start().await;
    rx.set_stalled(true);
    let stats = Arc::new(AuditStats::default());
    let cfg = WebhookConfig {
        max_retries: 1,
        timeout: Duration::from_millis(100),
        initial_backoff: Duration::from_millis(10),
        ..rx.config()
    };
    let (handle, _task) = AuditSender::start(cfg, stats.clone()).expect("start");
    handle.send(event(1));
    tokio::time::sleep(Duration::from_millis(350)).await;
    rx.fail_next(&[503, 502, 429]);
    rx.set_stalled(false);
    assert_eq!(handle.shutdown(Duration::from_secs(10)).await, 0);
    assert_eq!(load(&stats.sent), 1);
    assert_eq!(load(&stats.failed), 0);
    assert!(load(&stats.retried) >= 4, "{}", load(&stats.retried));
}

#[tokio::test]
async fn a_stalled_webhook_never_slows_send_and_overflow_is_counted() {
    let rx = Receiver::start().await;
    rx.set_stalled(true);
    let stats = Arc::new(AuditStats::default());
    let cfg = WebhookConfig {
        queue_size: 100,
        timeout: Duration::from_secs(30),
        ..rx.config()
    };
    let (handle, _task) = AuditSender::start(cfg, stats.clone()).expect("start");
    // Let the sender pick up its first events and block on the stalled webhook.
    for n in 0..MAX_IN_FLIGHT {
        handle.send(event(n));
    }
    wait_until("posts in flight", || stats.queued.load(Ordering::Relaxed) == 0).await;

    let events: Vec<AuditEvent> = (0..1000).map(event).collect();
    let started = Instant::now();
    for ev in events {
        handle.send(ev);
    }
    // A send that waited for the stalled webhook would take its 30 s timeout; the bound is far
    // from both that and from what a busy machine needs for 1000 sends (this is not a speed
    // test: 50 ms here once failed on a machine running a build beside it).
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "1000 sends took {took:?}");
    assert_eq!(stats.queued.load(Ordering::Relaxed), 100);
    assert_eq!(load(&stats.dropped), 900);
    assert_eq!(load(&stats.sent), 0);

    // Nothing within the queue bound is lost once the webhook recovers.
    rx.set_stalled(false);
    assert_eq!(handle.shutdown(Duration::from_secs(10)).await, 0);
    assert_eq!(load(&stats.sent), 100 + MAX_IN_FLIGHT as u64);
    assert_eq!(rx.delivered().len(), 100 + MAX_IN_FLIGHT);
    assert_eq!(load(&stats.dropped), 900);
    assert_eq!(stats.queued.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn shutdown_flushes_the_queue() {
    let rx = Receiver::start().await;
    // Hold everything back until shutdown has begun, so the flush is what delivers it.
    rx.set_stalled(true);
    let stats = Arc::new(AuditStats::default());
    let (handle, task) = AuditSender::start(rx.config(), stats.clone()).expect("start");
    for n in 0..50 {
        handle.send(event(n));
    }
    let release = {
        let rx = rx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            rx.set_stalled(false);
        })
    };
    assert_eq!(handle.shutdown(Duration::from_secs(10)).await, 0);
    release.await.expect("release");
    task.await.expect("sender task ends");
    assert_eq!(load(&stats.sent), 50);
    let mut ids: Vec<String> = rx
        .delivered()
        .iter()
        .filter_map(|h| h.body["request_id"].as_str().map(str::to_string))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 50);
}

#[tokio::test]
async fn shutdown_deadline_reports_and_counts_what_was_left() {
    let rx = Receiver::start().await;
    rx.set_stalled(true);
    let stats = Arc::new(AuditStats::default());
    let (handle, task) = AuditSender::start(rx.config(), stats.clone()).expect("start");
    let other = handle.clone();
    for n in 0..10 {
        handle.send(event(n));
    }
    let started = Instant::now();
    assert_eq!(handle.shutdown(Duration::from_millis(200)).await, 10);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    task.await.expect("sender task ends");
    assert_eq!(load(&stats.dropped), 10);
    assert_eq!(stats.queued.load(Ordering::Relaxed), 0);

    // A clone still held by a request after shutdown drops without blocking.
    other.send(event(11));
    assert_eq!(load(&stats.dropped), 11);
    assert_eq!(load(&stats.sent), 0);
}

#[tokio::test]
async fn bearer_token_is_sent_and_re_read_after_rotation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "first-token\n").expect("write token");
    let rx = Receiver::start().await;
    let stats = Arc::new(AuditStats::default());
    let cfg = WebhookConfig {
        bearer_token_file: Some(token_file.clone()),
        ..rx.config()
    };
    let refresh = Duration::from_millis(100);
    let (handle, _task) = AuditSender::start_with_token_refresh(cfg, stats.clone(), refresh).expect("start");
    handle.send(event(1));
    wait_until("first delivery", || load(&stats.sent) == 1).await;

    std::fs::write(&token_file, "second-token").expect("rotate token");
    tokio::time::sleep(refresh + Duration::from_millis(50)).await;
    handle.send(event(2));
    wait_until("second delivery", || load(&stats.sent) == 2).await;

    // A broken rotation keeps the last good token.
    std::fs::write(&token_file, "").expect("empty token");
    tokio::time::sleep(refresh + Duration::from_millis(50)).await;
    handle.send(event(3));
    assert_eq!(handle.shutdown(Duration::from_secs(5)).await, 0);

    let auth: Vec<String> = rx
        .hits()
        .iter()
        .map(|h| {
            h.headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert_eq!(
        auth,
        ["Bearer first-token", "Bearer second-token", "Bearer second-token"]
    );
}

#[tokio::test]
async fn https_with_ca_file_and_client_certificate() {
    use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair};
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

    let provider = || Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA cert");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf = |sans: Vec<String>, usage| {
        let key = KeyPair::generate().expect("leaf key");
        let mut params = CertificateParams::new(sans).expect("leaf params");
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &issuer).expect("sign leaf");
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = leaf(vec!["127.0.0.1".into()], ExtendedKeyUsagePurpose::ServerAuth);
    let (client_cert, client_key) = leaf(vec!["audit-client".into()], ExtendedKeyUsagePurpose::ClientAuth);

    let mut client_roots = rustls::RootCertStore::empty();
    client_roots.add(ca_cert.der().clone()).expect("add CA");
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(client_roots.into(), provider())
            .build()
            .expect("client verifier");
    let server_config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            CertificateDer::pem_slice_iter(server_cert.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .expect("server cert"),
            PrivateKeyDer::from_pem_slice(server_key.as_bytes()).expect("server key"),
        )
        .expect("server config");
    let rx = Receiver::start_tls(Arc::new(server_config)).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, pem: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, pem).expect("write PEM");
        path
    };
    let cfg = WebhookConfig {
        ca_file: Some(write("ca.crt", &ca_cert.pem())),
        client_cert_file: Some(write("client.crt", &client_cert)),
        client_key_file: Some(write("client.key", &client_key)),
        ..rx.config()
    };
    let stats = Arc::new(AuditStats::default());
    let (handle, _task) = AuditSender::start(cfg.clone(), stats.clone()).expect("start");
    handle.send(event(1));
    assert_eq!(handle.shutdown(Duration::from_secs(5)).await, 0);
    assert_eq!(load(&stats.sent), 1);
    let hits = rx.hits();
    assert_eq!(hits.len(), 1);
    assert!(hits[0].client_cert);
    assert_eq!(hits[0].body["request_id"], "req-1");

    // Without the client certificate the handshake fails: a transport error, so the webhook
    // counts as unavailable and the event waits, until the shutdown deadline drops it.
    let cfg = WebhookConfig {
        client_cert_file: None,
        client_key_file: None,
        max_retries: 1,
        initial_backoff: Duration::from_millis(20),
        ..cfg
    };
    let stats = Arc::new(AuditStats::default());
    let (handle, _task) = AuditSender::start(cfg, stats.clone()).expect("start");
    handle.send(event(2));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(handle.shutdown(Duration::from_millis(300)).await, 1);
    assert_eq!(load(&stats.sent), 0);
    assert!(load(&stats.retried) >= 2, "{}", load(&stats.retried));
    assert_eq!((load(&stats.failed), load(&stats.dropped)), (0, 1));
    assert_eq!(rx.hits().len(), 1);
}

#[tokio::test]
async fn start_rejects_bad_configs() {
    let stats = || Arc::new(AuditStats::default());
    let base = WebhookConfig::new("http://127.0.0.1:1");
    let cases = [
        WebhookConfig {
            queue_size: 0,
            ..base.clone()
        },
        WebhookConfig {
            timeout: Duration::ZERO,
            ..base.clone()
        },
        WebhookConfig {
            batch_max: 0,
            ..base.clone()
        },
        WebhookConfig {
            batch_max: MAX_BATCH + 1,
            ..base.clone()
        },
        WebhookConfig {
            batch_wait: Duration::from_millis(10),
            ..base.clone()
        },
        WebhookConfig {
            batch_max: 8,
            batch_wait: MAX_BATCH_WAIT + Duration::from_millis(1),
            ..base.clone()
        },
        WebhookConfig::new("ftp://siem.example"),
        WebhookConfig::new("not a url"),
        WebhookConfig {
            client_cert_file: Some("/nonexistent/client.crt".into()),
            ..base.clone()
        },
        WebhookConfig {
            ca_file: Some("/nonexistent/ca.crt".into()),
            ..base.clone()
        },
        WebhookConfig {
            bearer_token_file: Some("/nonexistent/token".into()),
            ..base.clone()
        },
    ];
    for cfg in cases {
        let shown = format!("{cfg:?}");
        assert!(AuditSender::start(cfg, stats()).is_err(), "{shown}");
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let empty = dir.path().join("token");
    std::fs::write(&empty, "\n").expect("write");
    let cfg = WebhookConfig {
        bearer_token_file: Some(empty),
        ..base.clone()
    };
    let err = AuditSender::start(cfg, stats())
        .err()
        .expect("empty token refused");
    assert!(err.to_string().contains("is empty"), "{err}");
}

#[test]
fn start_outside_a_runtime_is_an_error_not_a_panic() {
    let cfg = WebhookConfig::new("http://127.0.0.1:1");
    assert!(AuditSender::start(cfg, Arc::new(AuditStats::default())).is_err());
}

#[test]
fn handle_is_shareable_across_tasks() {
    fn send_sync<T: Clone + Send + Sync + 'static>() {}
    send_sync::<AuditHandle>();
}

#[tokio::test]
async fn batched_mode_posts_arrays_of_what_is_queued_and_counts_each_event_once() {
    let rx = Receiver::start().await;
    // While the receiver stalls, the delivery slots fill and the rest of the events queue up:
    // once it answers again they leave in arrays of at most `batch_max`.
    rx.set_stalled(true);
    let stats = Arc::new(AuditStats::default());
    let mut cfg = rx.config();
    cfg.batch_max = 8;
    let (handle, task) = AuditSender::start(cfg, stats.clone()).expect("start");
    for n in 0..50 {
        handle.send(event(n));
    }
    // Every slot holds a POST the receiver sits on; the rest waits in the queue.
    wait_until("the delivery slots to fill", || {
        stats.queued.load(Ordering::Relaxed) <= (50 - MAX_IN_FLIGHT_BATCHED) as i64
    })
    .await;
    rx.set_stalled(false);
    assert_eq!(handle.shutdown(Duration::from_secs(10)).await, 0);
    task.await.expect("sender task ends");

    let posts = rx.delivered();
    let mut ids = Vec::new();
    for post in &posts {
        let events = post
            .body
            .as_array()
            .expect("every POST is a JSON array in batched mode");
        assert!((1..=8).contains(&events.len()), "batch of {}", events.len());
        for ev in events {
            assert_eq!(ev["cluster_name"], "c1");
            ids.push(ev["request_id"].as_str().expect("request_id").to_string());
        }
    }
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 50, "each event delivered once");
    assert_eq!(load(&stats.sent), 50);
    assert_eq!(stats.queued.load(Ordering::Relaxed), 0);
    // At most one POST per slot that was not full, the rest full batches of 8.
    assert!(
        posts.len() <= MAX_IN_FLIGHT_BATCHED + 50usize.div_ceil(8),
        "{} POSTs",
        posts.len()
    );
}

#[tokio::test]
async fn a_refused_batch_counts_every_event_in_it_as_failed() {
    let rx = Receiver::start().await;
    rx.set_stalled(true);
    let stats = Arc::new(AuditStats::default());
    let mut cfg = rx.config();
    cfg.batch_max = 16;
    let (handle, task) = AuditSender::start(cfg, stats.clone()).expect("start");
    for n in 0..20 {
        handle.send(event(n));
    }
    wait_until("the delivery slots to fill", || {
        stats.queued.load(Ordering::Relaxed) <= (20 - MAX_IN_FLIGHT_BATCHED) as i64
    })
    .await;
    // The held POSTs and the batch behind them are all refused.
    rx.fail_next(&[400; 20]);
    rx.set_stalled(false);
    assert_eq!(handle.shutdown(Duration::from_secs(10)).await, 0);
    task.await.expect("sender task ends");
    assert_eq!(load(&stats.sent), 0);
    assert_eq!(load(&stats.failed), 20);
    assert_eq!(load(&stats.dropped), 0);
}

#[tokio::test]
async fn one_event_per_post_stays_a_json_object_by_default() {
    let rx = Receiver::start().await;
    let stats = Arc::new(AuditStats::default());
    let (handle, task) = AuditSender::start(rx.config(), stats.clone()).expect("start");
    for n in 0..5 {
        handle.send(event(n));
    }
    assert_eq!(handle.shutdown(Duration::from_secs(5)).await, 0);
    task.await.expect("sender task ends");
    let posts = rx.delivered();
    assert_eq!(posts.len(), 5);
    assert!(posts.iter().all(|p| p.body.is_object()));
}

#[tokio::test]
async fn a_batch_waits_for_more_events_up_to_the_batch_wait_but_never_past_full_or_shutdown() {
    let rx = Receiver::start().await;
    let stats = Arc::new(AuditStats::default());
    let mut cfg = rx.config();
    cfg.batch_max = 8;
    cfg.batch_wait = Duration::from_millis(400);
    let (handle, task) = AuditSender::start(cfg, stats.clone()).expect("start");
    // Five events 20 ms apart leave together, once the wait is over.
    let started = Instant::now();
    for n in 0..5 {
        handle.send(event(n));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_until("the first batch", || load(&stats.sent) == 5).await;
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );
    let posts = rx.delivered();
    assert_eq!(posts.len(), 1, "one POST");
    assert_eq!(posts[0].body.as_array().map(Vec::len), Some(5));
    // A full batch does not wait.
    let started = Instant::now();
    for n in 10..18 {
        handle.send(event(n));
    }
    wait_until("the full batch", || load(&stats.sent) == 13).await;
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    // Nor does a batch that fills while the sender waits: the last event wakes it.
    let started = Instant::now();
    handle.send(event(20));
    tokio::time::sleep(Duration::from_millis(50)).await;
    for n in 21..28 {
        handle.send(event(n));
    }
    wait_until("the batch filled during the wait", || load(&stats.sent) == 21).await;
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(rx.delivered()[2].body.as_array().map(Vec::len), Some(8));
    // Nor does shutdown: the batch in hand goes at once.
    handle.send(event(30));
    tokio::time::sleep(Duration::from_millis(20)).await;
    let started = Instant::now();
    assert_eq!(handle.shutdown(Duration::from_secs(10)).await, 0);
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    task.await.expect("sender task ends");
    assert_eq!(load(&stats.sent), 22);
    assert_eq!(rx.delivered().len(), 4);
}
