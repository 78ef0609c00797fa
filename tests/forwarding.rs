//! The proxy between a client and fake API servers: routing, credentials, header rules,
//! streaming, upgrades, failures. Real TLS on both legs.

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use serde_json::Value;
use support::apiserver::apiserver;
use support::client::{collect, next_data};
use support::issuer::{KeyKind, issuer};
use support::pki::Ca;
use support::proxy::{Cred, proxy};
use support::{full, wait_until};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn json(b: &Bytes) -> Value {
    serde_json::from_slice(b).unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(b)))
}

#[tokio::test]
async fn two_clusters_routed_with_their_own_credentials_and_prefixes() {
    let iss = issuer().key_kind(KeyKind::EcP256).run().await;
    let client_ca = Ca::new("client-ca");
    let a = apiserver().name("a").require_bearer(Some("tok-a")).run().await;
    let b = apiserver().name("b").require_client_cert(&client_ca).run().await;
    let p = proxy(&iss)
        .arg("--oidc-signing-algs=ES256")
        .cluster("a", &a, "", Cred::Token("tok-a".into()))
        .cluster(
            "b",
            &b,
            "/k8s/clusters/c-b",
            Cred::ClientCert(client_ca.issue_client("kop", &["proxy"])),
        )
        .run()
        .await;
    let token = iss.token().groups(&["a:devops", "b:devops"]).sign();

    let (code, _, body) = p
        .get(
            "/a/api/v1/namespaces/dev/pods?limit=500&labelSelector=x%3Dy",
            Some(&token),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert_eq!(json(&body)["server"], "a");
    let got = a.last();
    assert_eq!(
        got.uri,
        "/api/v1/namespaces/dev/pods?limit=500&labelSelector=x%3Dy"
    );
    assert_eq!(
        got.header("authorization"),
        Some("Bearer tok-a"),
        "cluster credentials, not the user's"
    );

    let (code, _, body) = p.get("/b/apis/apps/v1/deployments", Some(&token)).await;
    assert_eq!(code, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert_eq!(json(&body)["server"], "b");
    let got = b.last();
    assert_eq!(
        got.uri, "/k8s/clusters/c-b/apis/apps/v1/deployments",
        "server path prefix kept"
    );
    assert_eq!(got.client_cert_cn.as_deref(), Some("kop"));
    assert_eq!(
        got.header("authorization"),
        None,
        "the user's token never reaches upstream"
    );
    assert!(
        a.user_requests().iter().all(|r| !r.uri.contains("deployments")),
        "b's request not sent to a"
    );
}

#[tokio::test]
async fn client_credentials_impersonation_and_hop_by_hop_headers_never_reach_upstream() {
    let iss = issuer().key_kind(KeyKind::EcP256).run().await;
    let a = apiserver().name("a").run().await;
    let p = proxy(&iss)
        .arg("--oidc-signing-algs=ES256")
        .cluster("a", &a, "", Cred::Token("tok-a".into()))
        .run()
        .await;
    let token = iss.token().groups(&["a:devops"]).sign();
    let auth = format!("Bearer {token}");

    let mut conn = p.conn().await;
    let req = Request::get("/a/api/v1/pods")
        .header("authorization", &auth)
        .header("connection", "keep-alive, x-drop-me, authorization")
        .header("x-drop-me", "1")
        .header("keep-alive", "timeout=5")
        .header("proxy-authorization", "Basic Zm9vOmJhcg==")
        .header("te", "trailers")
        .header("x-keep-me", "2")
        .header("x-forwarded-for", "203.0.113.9")
        .body(full(Bytes::new()))
        .unwrap();
    let resp = conn.send(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let got = a.last();
    assert_eq!(got.header("authorization"), Some("Bearer tok-a"));
    for gone in ["x-drop-me", "keep-alive", "proxy-authorization", "te"] {
        assert_eq!(got.header(gone), None, "{gone} must be stripped");
    }
    assert_eq!(got.header("x-keep-me"), Some("2"));
    assert_eq!(
        got.header("x-forwarded-for"),
        Some("127.0.0.1"),
        "untrusted peer's XFF is replaced"
    );

    // kubectl --as without an impersonate grant (a watcher reads everything, impersonates
    // nobody): refused, and nothing reaches the API server.
    a.clear_requests();
    let watcher = format!("Bearer {}", iss.token().groups(&["a:watcher"]).sign());
    let (code, _, body) = {
        let mut conn = p.conn().await;
        let resp = conn
            .get(
                "/a/api/v1/pods",
                &[
                    ("authorization", &watcher),
                    ("impersonate-user", "admin"),
                    ("impersonate-group", "system:masters"),
                ],
            )
            .await
            .unwrap();
        let status = resp.status();
        (status, (), collect(resp.into_body()).await)
    };
    assert_eq!(code, StatusCode::FORBIDDEN);
    assert_eq!(json(&body)["kind"], "Status");
    assert!(
        json(&body)["message"]
            .as_str()
            .unwrap()
            .contains("cannot impersonate resource \"users\""),
        "{}",
        json(&body)
    );
    assert!(
        a.user_requests().is_empty(),
        "impersonation attempt must not be forwarded"
    );
}

#[tokio::test]
async fn unauthenticated_gets_401_before_routing_and_unknown_cluster_404() {
    let iss = issuer().key_kind(KeyKind::EcP256).run().await;
    let a = apiserver().name("a").run().await;
    let p = proxy(&iss)
        .arg("--oidc-signing-algs=ES256")
        .cluster("a", &a, "", Cred::Token("t".into()))
        .run()
        .await;
    let token = iss.token().groups(&["a:devops"]).sign();

    for path in ["/a/api/v1/pods", "/nope/api/v1/pods", "/../etc", "/"] {
        let (code, headers, body) = p.get(path, None).await;
        assert_eq!(code, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(
            json(&body)["message"],
            "Unauthorized",
            "no detail leaks for {path}"
        );
        assert!(headers.get("www-authenticate").is_some());
        let (code, _, body) = p.get(path, Some("not-a-jwt")).await;
        assert_eq!(code, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(json(&body)["message"], "Unauthorized");
    }
    let (code, _, body) = p.get("/nope/api/v1/pods", Some(&token)).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    let status = json(&body);
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["code"], 404);
    assert!(
        status["message"].as_str().unwrap().contains("\"nope\""),
        "{status}"
    );

    for bad in [
        "/a%2Fb/api/v1/pods",
        "/%2e%2e/api",
        "//api/v1/pods",
        "/a/../b/api",
    ] {
        let (code, _, _) = p.get(bad, Some(&token)).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{bad}");
    }
    assert!(a.user_requests().is_empty());
    let fails = p
        .log
        .lines()
        .iter()
        .filter(|l| l.contains("] AuFail src:[127.0.0.1 / ] URI:"))
        .count();
    assert!(
        fails >= 12,
        "every refusal is logged as AuFail: {:?}",
        p.log.lines()
    );
    assert!(
        p.log.lines().iter().all(|l| !l.contains(&token)),
        "tokens never logged"
    );
}

#[tokio::test]
async fn upstream_failures_are_statuses_not_hangs() {
    let iss = issuer().key_kind(KeyKind::EcP256).run().await;
    let slow = apiserver()
        .name("slow")
        .delay_headers(Duration::from_secs(5))
        .run()
        .await;
    let down = apiserver().name("down").run().await;
    let p = proxy(&iss)
        .arg("--oidc-signing-algs=ES256")
        .arg("--upstream-response-header-timeout=1s")
        .cluster("slow", &slow, "", Cred::Token("t".into()))
        .cluster("down", &down, "", Cred::Token("t".into()))
        .run()
        .await;
    let token = iss.token().groups(&["slow:devops", "down:devops"]).sign();
    down.shutdown();

    let (code, _, body) = p.get("/down/api/v1/pods", Some(&token)).await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
    let status = json(&body);
    assert_eq!(status["kind"], "Status");
    assert!(
        !status["message"].as_str().unwrap().contains("127.0.0.1"),
        "no internal detail: {status}"
    );

    // HTTP/1.1's wait is watched by its connection's clock, HTTP/2's by a timer of its own:
    // both answer 504 once the second has passed, not before, and not at the upstream's pace.
    let auth = format!("Bearer {token}");
    for (tls, proto) in [(p.tls(), "h1"), (p.tls_h2(), "h2")] {
        let started = std::time::Instant::now();
        let (code, _, _) =
            support::client::get(p.addr, tls, "/slow/api/v1/pods", &[("authorization", &auth)]).await;
        let waited = started.elapsed();
        assert_eq!(code, StatusCode::GATEWAY_TIMEOUT, "{proto}");
        assert!(
            waited >= Duration::from_secs(1) && waited < Duration::from_secs(4),
            "{proto}: {waited:?}"
        );
    }
    p.wait_log("AuFail src:[127.0.0.1 / ] URI:/down/api/v1/pods")
        .await;
}

#[tokio::test]
async fn watch_events_stream_through_one_by_one_on_h1_and_h2() {
    let iss = issuer().key_kind(KeyKind::EcP256).run().await;
    let a = apiserver().name("a").run().await;
    let p = proxy(&iss)
        .arg("--oidc-signing-algs=ES256")
        .cluster("a", &a, "", Cred::Token("t".into()))
        .run()
        .await;
    let token = iss.token().groups(&["a:devops"]).sign();
    let auth = format!("Bearer {token}");

    for tls in [p.tls(), p.tls_h2()] {
        let mut conn = support::client::Conn::connect(p.addr, tls).await.unwrap();
        let before = a.open_watches();
        let resp = conn
            .get(
                "/a/api/v1/namespaces/dev/pods?watch=true",
                &[("authorization", &auth)],
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let mut body = resp.into_body();
        a.wait_watches(before + 1).await;
        for i in 0..3 {
            let event =
                format!(r#"{{"type":"ADDED","object":{{"kind":"Pod","metadata":{{"name":"p{i}"}}}}}}"#);
            a.send_watch_event(&event);
            // The event must arrive while the upstream stream is still open.
            let got = next_data(&mut body, 5).await.expect("event before end of stream");
            assert_eq!(
                String::from_utf8_lossy(&got).trim(),
                event,
                "conn h2={}",
                conn.is_h2()
            );
        }
        a.close_watches();
        assert_eq!(
            next_data(&mut body, 5).await,
            None,
            "stream ends when upstream ends"
        );
        assert_eq!(
            a.last().version,
            http::Version::HTTP_11,
            "upstream is always HTTP/1.1"
        );
    }
}

#[tokio::test]
async fn large_bodies_stream_without_loss() {
    let iss = issuer().key_kind(KeyKind::EcP256).run().await;
    let a = apiserver().name("a").run().await;
    support::objects::grant_discovery(a.store());
    let p = proxy(&iss)
        .arg("--oidc-signing-algs=ES256")
        .cluster("a", &a, "", Cred::Token("t".into()))
        .run()
        .await;
    let token = iss.token().groups(&["a:devops"]).sign();
    let (code, _, body) = p.get("/a/big/3000000", Some(&token)).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(body.len(), 3_000_000);
    assert_eq!(&body[..], &support::big_body(3_000_000)[..]);
}

#[tokio::test]
async fn upgrades_are_spliced_both_ways() {
    let iss = issuer().key_kind(KeyKind::EcP256).run().await;
    let a = apiserver().name("a").run().await;
    let p = proxy(&iss)
        .arg("--oidc-signing-algs=ES256")
        .cluster("a", &a, "", Cred::Token("tok-a".into()))
        .run()
        .await;
    let token = iss.token().groups(&["a:devops"]).sign();

    for (method, upgrade, path) in [
        (
            "POST",
            "SPDY/3.1",
            "/a/api/v1/namespaces/dev/pods/p/exec?command=sh&stdin=true",
        ),
        (
            "GET",
            "websocket",
            "/a/api/v1/namespaces/dev/pods/p/portforward?ports=80",
        ),
    ] {
        let mut conn = p.conn().await;
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {token}"))
            .header("connection", "Upgrade")
            .header("upgrade", upgrade)
            .header("x-stream-protocol-version", "v4.channel.k8s.io")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-protocol", "v5.channel.k8s.io")
            .body(full(Bytes::new()))
            .unwrap();
        let mut resp = conn.send(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS, "{upgrade}");
        if upgrade == "websocket" {
            assert_eq!(
                resp.headers().get("sec-websocket-accept").unwrap(),
                "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
                "handshake headers pass through"
            );
            assert_eq!(
                resp.headers().get("sec-websocket-protocol").unwrap(),
                "v5.channel.k8s.io"
            );
        }
        let got = a.last();
        assert_eq!(got.header("authorization"), Some("Bearer tok-a"));
        assert_eq!(got.header("upgrade"), Some(upgrade));
        let upgraded = hyper::upgrade::on(&mut resp).await.expect("client side upgraded");
        let mut io = hyper_util::rt::TokioIo::new(upgraded);
        for chunk in [&b"hello"[..], &[0u8, 1, 2, 255][..], &vec![7u8; 100_000][..]] {
            io.write_all(chunk).await.unwrap();
            let mut back = vec![0u8; chunk.len()];
            tokio::time::timeout(Duration::from_secs(5), io.read_exact(&mut back))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(back, chunk, "{upgrade} echo");
        }
        io.shutdown().await.unwrap();
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), io.read_to_end(&mut rest)).await;
        wait_until("upstream side closed", 5, || a.open_upgrades() == 0).await;
    }
}

#[tokio::test]
async fn serving_certificate_is_reloaded_when_its_files_change() {
    let iss = issuer().key_kind(KeyKind::EcP256).run().await;
    let a = apiserver().name("a").run().await;
    support::objects::grant_discovery(a.store());
    let p = proxy(&iss)
        .arg("--oidc-signing-algs=ES256")
        .arg("--tls-reload-interval=200ms")
        .cluster("a", &a, "", Cred::Token("t".into()))
        .run()
        .await;
    let token = iss.token().groups(&["a:devops"]).sign();
    let new_ca = Ca::new("rotated-ca");
    let new_tls = new_ca.client_config_alpn(&[b"http/1.1"]);
    assert!(
        support::client::Conn::connect(p.addr, new_tls.clone())
            .await
            .is_err(),
        "new CA not trusted yet"
    );

    // A broken write is ignored: the old certificate keeps serving.
    std::fs::write(&p.cert, "garbage").unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(p.get("/a/version", Some(&token)).await.0, StatusCode::OK);

    let issued = new_ca.issue_server(&["127.0.0.1"]);
    std::fs::write(&p.key, &issued.key_pem).unwrap();
    std::fs::write(&p.cert, &issued.cert_pem).unwrap();
    let mut switched = false;
    for _ in 0..50 {
        if support::client::Conn::connect(p.addr, new_tls.clone())
            .await
            .is_ok()
        {
            switched = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(switched, "new certificate served after reload");
    let (code, _, _) = support::client::get(
        p.addr,
        new_tls,
        "/a/version",
        &[("authorization", &format!("Bearer {token}"))],
    )
    .await;
    assert_eq!(code, StatusCode::OK);
}

#[tokio::test]
async fn graceful_shutdown_finishes_requests_and_closes_streams_at_the_deadline() {
    let iss = issuer().key_kind(KeyKind::EcP256).run().await;
    let slow = apiserver()
        .name("slow")
        .delay_headers(Duration::from_millis(800))
        .run()
        .await;
    let a = apiserver().name("a").run().await;
    let p = proxy(&iss)
        .arg("--oidc-signing-algs=ES256")
        .cluster("slow", &slow, "", Cred::Token("t".into()))
        .cluster("a", &a, "", Cred::Token("t".into()))
        .run()
        .await;
    let token = iss.token().groups(&["slow:devops", "a:devops"]).sign();
    let auth = format!("Bearer {token}");

    // A watch that will still be open at the deadline (grace period 3s in tests).
    let mut watch_conn = p.conn().await;
    let watch = watch_conn
        .get("/a/api/v1/pods?watch=1", &[("authorization", &auth)])
        .await
        .unwrap();
    let mut watch_body = watch.into_body();
    a.wait_watches(1).await;

    // An idle keep-alive connection, after one answer.
    let mut idle_conn = p.conn().await;
    let resp = idle_conn
        .get("/a/api/v1/pods", &[("authorization", &auth)])
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    collect(resp.into_body()).await;

    // An in-flight request when SIGTERM arrives.
    let mut slow_conn = p.conn().await;
    let auth2 = auth.clone();
    let in_flight = tokio::spawn(async move {
        let resp = slow_conn
            .get("/slow/api/v1/pods", &[("authorization", &auth2)])
            .await
            .unwrap();
        (resp.status(), collect(resp.into_body()).await)
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    p.running().begin_shutdown();
    let (code, body) = in_flight.await.unwrap();
    assert_eq!(
        code,
        StatusCode::OK,
        "in-flight request finishes: {}",
        String::from_utf8_lossy(&body)
    );

    assert_eq!(
        p.probe_status("/ready").await,
        503,
        "not ready while shutting down"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        support::client::Conn::connect(p.addr, p.tls()).await.is_err(),
        "no new connections"
    );
    // Drained at once, long before the deadline.
    assert!(
        idle_conn
            .get("/a/api/v1/pods", &[("authorization", &auth)])
            .await
            .is_err(),
        "an idle keep-alive connection is closed when draining starts"
    );

    // The watch stays open until the deadline, then is closed.
    let end = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(_)) = http_body_util::BodyExt::frame(&mut watch_body).await {}
    })
    .await;
    assert!(end.is_ok(), "watch closed at the deadline");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(2500),
        "watch closed only at the deadline, after {waited:?}"
    );
    p.shutdown().await;
}

#[tokio::test]
async fn probes() {
    let iss = issuer().key_kind(KeyKind::EcP256).run().await;
    iss.set_jwks_status(500);
    let a = apiserver().name("a").run().await;
    let p = proxy(&iss)
        .arg("--oidc-signing-algs=ES256")
        .cluster("a", &a, "", Cred::Token("t".into()))
        .no_wait()
        .run()
        .await;
    assert_eq!(p.probe_status("/live").await, 200);
    assert_eq!(
        p.probe_status("/ready").await,
        503,
        "not ready before the issuer's keys load"
    );
    assert_eq!(p.probe_status("/nope").await, 404);
    iss.set_jwks_status(200);
    p.wait_ready().await;
    assert_eq!(p.probe_status("/ready").await, 200);
}

#[tokio::test]
async fn kubeconfig_credentials_exec_plugin_token_file_and_insecure_skip_verify() {
    use base64::Engine as _;
    let iss = issuer().key_kind(KeyKind::EcP256).run().await;
    let by_exec = apiserver()
        .name("exec")
        .require_bearer(Some("from-plugin"))
        .run()
        .await;
    let by_file = apiserver()
        .name("file")
        .require_bearer(Some("from-file"))
        .run()
        .await;
    let insecure = apiserver().name("insecure").require_bearer(Some("t")).run().await;
    let dir = support::TempDir::new("kop-creds");
    // No trailing newline: kube-rs sends a token file verbatim, so the proxy refuses (and names)
    // a file with one; see `a_token_file_with_a_trailing_newline_is_reported_and_skipped`.
    let token_file = dir.write("token", "from-file");
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    // An exec credential plugin, as kubectl runs them (here a shell one-liner).
    let exec_kc = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\n    certificate-authority-data: {}\nusers:\n- name: u\n  user:\n    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: /bin/sh\n      args: [\"-c\", \"echo '{{\\\"apiVersion\\\":\\\"client.authentication.k8s.io/v1\\\",\\\"kind\\\":\\\"ExecCredential\\\",\\\"status\\\":{{\\\"token\\\":\\\"from-plugin\\\"}}}}'\"]\n      interactiveMode: Never\ncontexts:\n- name: x\n  context: {{cluster: c, user: u}}\ncurrent-context: x\n",
        by_exec.url(),
        b64(&by_exec.ca_pem())
    );
    let file_kc = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\n    certificate-authority-data: {}\nusers:\n- name: u\n  user:\n    tokenFile: {}\ncontexts:\n- name: x\n  context: {{cluster: c, user: u}}\ncurrent-context: x\n",
        by_file.url(),
        b64(&by_file.ca_pem()),
        token_file.display()
    );
    let insecure_kc = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\n    insecure-skip-tls-verify: true\nusers:\n- name: u\n  user:\n    token: t\ncontexts:\n- name: x\n  context: {{cluster: c, user: u}}\ncurrent-context: x\n",
        insecure.url()
    );
    for api in [&by_exec, &by_file, &insecure] {
        support::objects::grant_discovery(api.store());
    }
    let p = proxy(&iss)
        .arg("--oidc-signing-algs=ES256")
        .raw_cluster("exec", &exec_kc)
        .raw_cluster("file", &file_kc)
        .raw_cluster("insecure", &insecure_kc)
        .run()
        .await;
    let token = iss
        .token()
        .groups(&["exec:devops", "file:devops", "insecure:devops"])
        .sign();
    for (cluster, api, cred) in [
        ("exec", &by_exec, "Bearer from-plugin"),
        ("file", &by_file, "Bearer from-file"),
        ("insecure", &insecure, "Bearer t"),
    ] {
        let (code, _, body) = p.get(&format!("/{cluster}/api/v1/pods"), Some(&token)).await;
        assert_eq!(
            code,
            StatusCode::OK,
            "{cluster}: {}",
            String::from_utf8_lossy(&body)
        );
        assert_eq!(api.last().header("authorization"), Some(cred), "{cluster}");
    }
}

#[tokio::test]
async fn a_token_file_with_a_trailing_newline_is_reported_and_skipped() {
    use base64::Engine as _;
    let api = apiserver().name("nl").run().await;
    let dir = support::TempDir::new("kop-nl");
    let token_file = dir.write("token", "tok\n");
    let kc = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\n    certificate-authority-data: {}\nusers:\n- name: u\n  user:\n    tokenFile: {}\ncontexts:\n- name: x\n  context: {{cluster: c, user: u}}\ncurrent-context: x\n",
        api.url(),
        base64::engine::general_purpose::STANDARD.encode(api.ca_pem()),
        token_file.display()
    );
    let err = match kube_oidc_proxy::cluster::Upstream::from_kubeconfig(
        serde_saphyr::from_str(&kc).expect("kubeconfig parses"),
        Default::default(),
    )
    .await
    {
        Ok(_) => panic!("a token file with a newline must be refused"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("trailing whitespace") && err.contains("token"),
        "{err}"
    );
}
