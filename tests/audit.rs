//! The audit webhook and metrics as operators see them: payloads field by field, a slow or
//! failing webhook never slowing requests, overflow counted, shutdown flushing, /metrics moving.

mod support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use serde_json::{Value, json};
use support::apiserver::{FakeApi, apiserver};
use support::issuer::{Issuer, KeyKind, issuer};
use support::proxy::{Cred, TestProxy, proxy};
use support::webhook::{Receiver, receiver};
use support::{full, wait_until};

async fn setup(extra: &[&str]) -> (Issuer, FakeApi, Receiver, TestProxy) {
    let iss = issuer().key_kind(KeyKind::EcP256).run().await;
    let api = apiserver().name("k8s").run().await;
    api.store().put("namespaces", support::objects::namespace("dev"));
    let hook = receiver().await;
    let mut b = proxy(&iss)
        .arg("--oidc-signing-algs=ES256")
        .arg(&format!("--audit-webhook-server={}", hook.url))
        .cluster("k8s", &api, "", Cred::Token("t".into()));
    for a in extra {
        b = b.arg(a);
    }
    let p = b.run().await;
    (iss, api, hook, p)
}

async fn post(p: &TestProxy, token: &str, path: &str, body: &str, content_type: &str) -> StatusCode {
    let mut conn = p.conn().await;
    let req = Request::post(path)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", content_type)
        .body(full(Bytes::from(body.to_string())))
        .unwrap();
    conn.send(req).await.unwrap().status()
}

#[tokio::test]
async fn events_carry_the_seed_fields_and_the_request_id() {
    let (iss, api, hook, p) = setup(&[]).await;
    let t = iss
        .token()
        .sub("ann")
        .groups(&["k8s:developer:dev", "k8s:devops"])
        .sign();
    let cm = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cfg"},"data":{"a":"1"}}"#;
    let code = post(
        &p,
        &t,
        "/k8s/api/v1/namespaces/dev/configmaps?fieldManager=kubectl",
        cm,
        "application/json",
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    let upstream = api.last();
    assert_eq!(
        upstream.body,
        cm.as_bytes(),
        "the body still reaches the API server unchanged"
    );
    let request_id = upstream
        .header("audit-id")
        .expect("Audit-ID sent upstream")
        .to_string();

    wait_until("event delivered", 5, || !hook.events().is_empty()).await;
    let (path, auth, ev) = hook.events().remove(0);
    assert_eq!(path, "/api/v1/k8s-audit-log/webhook");
    assert_eq!(auth, None);
    let expected = json!({
        "cluster_name": "k8s",
        "email": "ann",
        "uid": "ann",
        "groups": ["k8s:developer:dev", "k8s:devops"],
        "extra": {},
        "is_resource_request": true,
        "request_path": "/api/v1/namespaces/dev/configmaps",
        "verb": "create",
        "api_prefix": "api",
        "api_group": "",
        "api_version": "v1",
        "namespace": "dev",
        "resource": "configmaps",
        "sub_resource": "",
        "name": "",
        "parts": ["configmaps"],
        "field_selector": "",
        "label_selector": "",
        "request_body": serde_json::from_str::<Value>(cm).unwrap(),
        "decision": "allow",
        "request_id": request_id,
    });
    for (k, v) in expected.as_object().unwrap() {
        assert_eq!(&ev[k], v, "field {k} in {ev}");
    }
    assert!(ev["timestamp"].as_str().unwrap().ends_with('Z'), "{ev}");
    let line = p.wait_log("AuSuccess").await;
    assert!(
        line.contains("URI:/k8s/api/v1/namespaces/dev/configmaps?fieldManager=kubectl"),
        "{line}"
    );

    // Non-JSON bodies are never copied; the event says so and still goes out.
    let code = post(
        &p,
        &t,
        "/k8s/api/v1/namespaces/dev/configmaps",
        "kind: ConfigMap",
        "application/yaml",
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    wait_until("second event", 5, || hook.events().len() >= 2).await;
    let ev = &hook.events()[1].2;
    assert_eq!(ev["request_body"], json!({}));
    assert_eq!(ev["request_body_omitted"], "not-json");

    // Denials are audited too, so failed attempts reach the SIEM.
    let reader = iss.token().sub("bob").groups(&["k8s:watcher"]).sign();
    let (code, _, _) = p
        .get(
            "/k8s/api/v1/namespaces/dev/secrets?labelSelector=app%3Ddb",
            Some(&reader),
        )
        .await;
    assert_eq!(code, StatusCode::OK);
    let code = post(
        &p,
        &reader,
        "/k8s/api/v1/namespaces/dev/secrets",
        "{}",
        "application/json",
    )
    .await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    wait_until("deny event", 5, || {
        hook.events().iter().any(|e| e.2["decision"] == "deny")
    })
    .await;
    let evs = hook.events();
    let list = evs.iter().find(|e| e.2["verb"] == "list").expect("list event");
    assert_eq!(list.2["label_selector"], "app=db");
    let deny = evs.iter().find(|e| e.2["decision"] == "deny").unwrap();
    assert_eq!(deny.2["email"], "bob");
    assert_eq!(deny.2["verb"], "create");
    assert_eq!(deny.2["resource"], "secrets");
}

/// kube-apiserver audits non-resource requests; so does the proxy, allowed and denied alike.
#[tokio::test]
async fn non_resource_requests_are_audited() {
    let (iss, api, hook, p) = setup(&[]).await;
    api.store().put(
        "clusterroles",
        support::objects::cluster_role(
            "version-reader",
            json!([{"nonResourceURLs": ["/version"], "verbs": ["get"]}]),
        ),
    );
    api.store().put(
        "clusterrolebindings",
        support::objects::cluster_role_binding(
            "version-readers",
            "version-reader",
            json!([support::objects::group("system:authenticated")]),
        ),
    );
    let t = iss.token().sub("ann").sign();
    let mut code = StatusCode::IM_A_TEAPOT;
    for _ in 0..100 {
        code = p.get("/k8s/version", Some(&t)).await.0;
        if code == StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(code, StatusCode::OK);
    assert_eq!(
        p.get("/k8s/logs/kube-apiserver.log", Some(&t)).await.0,
        StatusCode::FORBIDDEN
    );
    wait_until("both events", 5, || {
        let evs = hook.events();
        evs.iter()
            .any(|e| e.2["request_path"] == "/version" && e.2["decision"] == "allow")
            && evs
                .iter()
                .any(|e| e.2["request_path"] == "/logs/kube-apiserver.log")
    })
    .await;
    let evs = hook.events();
    let version = evs.iter().find(|e| e.2["request_path"] == "/version").unwrap();
    assert_eq!(version.2["is_resource_request"], false, "{}", version.2);
    assert_eq!(version.2["verb"], "get");
    assert_eq!(version.2["email"], "ann");
    let logs = evs
        .iter()
        .find(|e| e.2["request_path"] == "/logs/kube-apiserver.log")
        .unwrap();
    assert_eq!(logs.2["decision"], "deny", "{}", logs.2);
}

#[tokio::test]
async fn a_stalled_or_failing_webhook_never_slows_requests_and_loses_nothing_within_the_queue() {
    let (iss, _api, hook, p) = setup(&["--audit-webhook-queue-size=100"]).await;
    let t = iss.token().sub("ann").groups(&["k8s:devops"]).sign();
    // Warm up (connection pools, token cache).
    assert_eq!(p.get("/k8s/api/v1/pods", Some(&t)).await.0, StatusCode::OK);
    wait_until("warm-up event", 5, || hook.events().len() == 1).await;

    hook.stall(true);
    let mut worst = Duration::ZERO;
    for i in 0..30 {
        let started = Instant::now();
        let (code, _, _) = p
            .get(&format!("/k8s/api/v1/namespaces/dev/pods/p{i}"), Some(&t))
            .await;
        assert_eq!(code, StatusCode::OK);
        worst = worst.max(started.elapsed());
    }
    assert!(
        worst < Duration::from_millis(500),
        "worst request latency with the webhook stalled: {worst:?}"
    );
    hook.fail_next(3);
    hook.stall(false);
    wait_until(
        "all 31 events delivered after the stall and three 500s",
        15,
        || hook.events().len() == 31,
    )
    .await;
    let stats = &p.running().audit_stats;
    assert_eq!(stats.dropped.load(Ordering::Relaxed), 0);
    assert!(stats.retried.load(Ordering::Relaxed) >= 3);
    let mut names: Vec<String> = hook
        .events()
        .iter()
        .filter_map(|e| e.2["name"].as_str().map(str::to_string))
        .collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 31, "each event once: {names:?}");
}

#[tokio::test]
async fn overflow_is_counted_and_shutdown_flushes_what_is_queued() {
    let (iss, _api, hook, p) = setup(&["--audit-webhook-queue-size=5"]).await;
    let t = iss.token().sub("ann").groups(&["k8s:devops"]).sign();
    hook.stall(true);
    for i in 0..40 {
        assert_eq!(
            p.get(&format!("/k8s/api/v1/namespaces/dev/pods/p{i}"), Some(&t))
                .await
                .0,
            StatusCode::OK
        );
    }
    let dropped = p.running().audit_stats.dropped.load(Ordering::Relaxed);
    // What the queue (5) and the POSTs held by the stalled webhook cannot take.
    let in_flight = kube_oidc_proxy::audit::webhook::MAX_IN_FLIGHT as u64;
    assert!(dropped >= 40 - 5 - in_flight, "dropped {dropped}");
    assert!(dropped > 0, "the overflow is dropped and counted");

    let metrics = scrape(&p).await;
    assert!(
        metrics.contains(&format!("kop_audit_events_dropped_total {dropped}")),
        "{metrics}"
    );

    // Shutdown waits for the queue: unstall while it is draining.
    let held = 40 - dropped as usize;
    p.running().begin_shutdown();
    tokio::time::sleep(Duration::from_millis(200)).await;
    hook.stall(false);
    wait_until("queued events flushed at shutdown", 10, || {
        hook.events().len() == held
    })
    .await;
    p.shutdown().await;
}

async fn scrape(p: &TestProxy) -> String {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::{client::legacy::Client, rt::TokioExecutor};
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let resp = client
        .get(format!("http://{}/metrics", p.probe).parse().unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

#[tokio::test]
async fn metrics_follow_the_traffic() {
    let (iss, api, _hook, p) = setup(&[]).await;
    let t = iss.token().sub("ann").groups(&["k8s:developer:dev"]).sign();
    let before = scrape(&p).await;
    assert!(before.contains("kop_inflight_requests 0"), "{before}");
    assert_eq!(
        p.get("/k8s/api/v1/namespaces/dev/pods", Some(&t)).await.0,
        StatusCode::OK
    );
    assert_eq!(
        p.get("/k8s/api/v1/namespaces/dev/secrets", Some(&t)).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        p.get("/k8s/api/v1/namespaces/dev/pods", None).await.0,
        StatusCode::UNAUTHORIZED
    );

    // An open watch shows in the gauge until it ends.
    let mut conn = p.conn().await;
    let resp = conn
        .get(
            "/k8s/api/v1/namespaces/dev/pods?watch=true",
            &[("authorization", &format!("Bearer {t}"))],
        )
        .await
        .unwrap();
    api.wait_watches(1).await;
    let during = scrape(&p).await;
    assert!(during.contains("kop_open_watches 1"), "{during}");
    api.close_watches();
    let _ = support::client::collect(resp.into_body()).await;

    let m = scrape(&p).await;
    for want in [
        r#"kop_requests_total{cluster="k8s",verb="list",code_class="2xx",decision="allow"} 1"#,
        r#"kop_requests_total{cluster="k8s",verb="list",code_class="4xx",decision="deny"} 1"#,
        r#"kop_requests_total{cluster="unknown",verb="get",code_class="4xx",decision="unauthenticated"} 1"#,
        r#"kop_requests_total{cluster="k8s",verb="watch",code_class="2xx",decision="allow"} 1"#,
        "kop_open_watches 0",
        "kop_token_cache_hits_total",
        r#"kop_rbac_objects{cluster="k8s",kind="Namespace"} 1"#,
    ] {
        assert!(m.contains(want), "missing {want} in\n{m}");
    }
    assert!(!m.contains("ann"), "no user names in metrics");
}

/// Bodies that carry credentials never reach the webhook, however small and JSON they are:
/// the event goes out, says the body was withheld and why, and the request itself is intact.
#[tokio::test]
async fn credential_bodies_are_withheld_from_events() {
    let (iss, api, hook, p) = setup(&[]).await;
    let t = iss.token().sub("ann").groups(&["k8s:devops"]).sign();
    let cases = [
        (
            "/k8s/api/v1/namespaces/dev/secrets",
            r#"{"kind":"Secret","metadata":{"name":"db"},"stringData":{"password":"hunter2"}}"#,
        ),
        (
            "/k8s/apis/authentication.k8s.io/v1/tokenreviews",
            r#"{"kind":"TokenReview","spec":{"token":"hunter2"}}"#,
        ),
        (
            "/k8s/api/v1/namespaces/dev/serviceaccounts/ci/token",
            r#"{"kind":"TokenRequest","spec":{"audiences":["hunter2"]}}"#,
        ),
    ];
    for (i, (path, body)) in cases.iter().enumerate() {
        // kube-apiserver (and the fake) answer a TokenReview with 201.
        let code = post(&p, &t, path, body, "application/json").await;
        assert!(code.is_success(), "{path}: {code}");
        wait_until("event", 5, || hook.events().len() > i).await;
        let ev = &hook.events()[i].2;
        assert_eq!(ev["request_body"], json!({}), "{path}: {ev}");
        assert_eq!(ev["request_body_omitted"], "credentials", "{path}");
        assert!(!ev.to_string().contains("hunter2"), "{ev}");
        // The API server got the body unchanged.
        assert_eq!(api.last().body, body.as_bytes(), "{path}");
    }
}
