//! The protocol edges (issue 18): request lines and headers as large as kube-apiserver takes,
//! and clear, never retried answers beyond what the proxy can take, on HTTP/1.1 and HTTP/2.

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::Value;
use support::apiserver::apiserver;
use support::client::{Conn, collect, tls_connect};
use support::h2raw;
use support::issuer::{KeyKind, issuer};
use support::proxy::{Cred, TestProxy, proxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn setup() -> (TestProxy, String, support::apiserver::FakeApi) {
    let iss = issuer().key_kind(KeyKind::EcP256).run().await;
    let a = apiserver().name("a").run().await;
    let p = proxy(&iss)
        .arg("--oidc-signing-algs=ES256")
        .cluster("a", &a, "", Cred::Token("t".into()))
        .run()
        .await;
    let token = iss.token().groups(&["a:devops"]).sign();
    // The issuer must outlive the proxy's key fetches.
    std::mem::forget(iss);
    (p, token, a)
}

/// A label selector of about `len` bytes: `x in (v00000,v00001,...)`.
fn selector_path(len: usize) -> String {
    let mut values = Vec::new();
    let mut n = 0;
    let mut size = 0;
    while size < len {
        let v = format!("v{n:05}");
        size += v.len() + 3;
        values.push(v);
        n += 1;
    }
    format!(
        "/a/api/v1/namespaces/dev/configmaps?labelSelector=x+in+%28{}%29",
        values.join("%2C")
    )
}

fn status(body: &[u8]) -> Value {
    let v: Value = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("not a Status ({e}): {}", String::from_utf8_lossy(body)));
    assert_eq!(v["kind"], "Status", "{v}");
    v
}

#[tokio::test]
async fn a_uri_too_long_for_http1_gets_a_414_status_at_once() {
    let (p, token, _a) = setup().await;
    let path = selector_path(72_000);
    assert!(path.len() > 65_534);
    let started = Instant::now();
    let mut tls = tls_connect(p.addr, p.tls()).await.expect("connect");
    let req = format!("GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {token}\r\n\r\n");
    tls.write_all(req.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut out))
        .await
        .expect("answered and closed")
        .ok();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 414 "), "{text}");
    let (_, body) = text.split_once("\r\n\r\n").expect("head");
    let s = status(body.as_bytes());
    assert_eq!(s["code"], 414);
    assert!(s["message"].as_str().unwrap_or("").contains("65534 bytes"), "{s}");
    // Counted and logged like any refusal.
    p.wait_log("AuFail src:[127.0.0.1 / ] URI:<request-uri-too-long>")
        .await;
    let metrics = p.probe_text("/metrics").await;
    assert!(
        metrics.lines().any(|l| l.starts_with("kop_requests_total{")
            && l.contains("code_class=\"4xx\"")
            && l.contains("verb=\"other\"")),
        "{metrics}"
    );
}

#[tokio::test]
async fn selectors_and_headers_as_large_as_kube_apiserver_takes_pass_on_both_protocols() {
    let (p, token, a) = setup().await;
    let auth = format!("Bearer {token}");
    // A 56 KB selector (the URI type holds 65,534 bytes) and a 900 KB header: both within
    // kube-apiserver's 1 MiB, both beyond hyper's defaults (about 400 KB of head).
    let path = selector_path(56_000);
    let big = "b".repeat(900_000);
    for tls in [p.tls(), p.tls_h2()] {
        let mut conn = Conn::connect(p.addr, tls).await.expect("connect");
        let h2 = conn.is_h2();
        let resp = tokio::time::timeout(
            Duration::from_secs(10),
            conn.get(&path, &[("authorization", &auth)]),
        )
        .await
        .unwrap_or_else(|_| panic!("long selector answered (h2={h2})"))
        .expect("long selector");
        assert_eq!(resp.status(), 200, "h2={h2}");
        let _ = collect(resp.into_body()).await;
        assert_eq!(a.last().uri.len(), path.len() - "/a".len(), "h2={h2}");
        let resp = tokio::time::timeout(
            Duration::from_secs(10),
            conn.get(
                "/a/api/v1/namespaces/dev/configmaps",
                &[("authorization", &auth), ("x-big", &big)],
            ),
        )
        .await
        .unwrap_or_else(|_| panic!("big header answered (h2={h2})"))
        .expect("big header");
        assert_eq!(resp.status(), 200, "h2={h2}");
        let _ = collect(resp.into_body()).await;
        assert_eq!(a.last().header("x-big").map(str::len), Some(big.len()), "h2={h2}");
    }
    // Well beyond 1 MiB on HTTP/1.1: a 431 Status naming the limit. (hyper checks its limit
    // between reads, so a head may pass it by up to one read; 2.5 MB never passes.)
    let too_big = "b".repeat(2_500_000);
    let mut conn = Conn::connect(p.addr, p.tls()).await.expect("connect");
    let resp = conn
        .get(
            "/a/api/v1/namespaces/dev/configmaps",
            &[("authorization", &auth), ("x-big", &too_big)],
        )
        .await
        .expect("answered");
    assert_eq!(resp.status(), 431);
    let s = status(&collect(resp.into_body()).await);
    assert!(
        s["message"].as_str().unwrap_or("").contains("1048576 bytes"),
        "{s}"
    );
}

#[tokio::test]
async fn up_to_100_header_fields_pass_over_http1_and_more_get_a_431_status() {
    let (p, token, a) = setup().await;
    // hyper's own limit (the proxy leaves it at its default rather than set the same number:
    // a configured limit costs an initialised array per request). Written by hand, so every
    // field is counted: host, authorization and connection, then the extra ones. (The fake API
    // server behind is a hyper server too, and the proxy adds its own fields: 95 stay clear of
    // that one's limit.)
    for (extra, want) in [(92, "200"), (98, "431")] {
        let mut head = format!(
            "GET /a/api/v1/namespaces/dev/configmaps HTTP/1.1\r\nhost: 127.0.0.1\r\n\
             authorization: Bearer {token}\r\nconnection: close\r\n"
        );
        for i in 0..extra {
            head.push_str(&format!("x-h{i}: v\r\n"));
        }
        head.push_str("\r\n");
        let mut tls = tls_connect(p.addr, p.tls()).await.expect("connect");
        tls.write_all(head.as_bytes()).await.expect("write");
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut out))
            .await
            .expect("answered and closed")
            .ok();
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.starts_with(&format!("HTTP/1.1 {want} ")),
            "{} fields: {text}",
            extra + 3
        );
        if want == "431" {
            let (_, body) = text.split_once("\r\n\r\n").expect("head");
            let s = status(body.as_bytes());
            assert!(
                s["message"].as_str().unwrap_or("").contains("100 header fields"),
                "{s}"
            );
        } else {
            assert_eq!(a.last().header(&format!("x-h{}", extra - 1)), Some("v"));
        }
    }
}

#[tokio::test]
async fn a_uri_too_long_for_http2_gets_a_414_status_not_a_reset_and_the_connection_lives_on() {
    let (p, token, a) = setup().await;
    let started = Instant::now();
    // The `http` crate cannot even build such a request: frames by hand.
    let mut conn = h2raw::Conn::open(p.addr, p.tls_h2()).await;
    let long_path = selector_path(72_000);
    let mut out = h2raw::headers(1, &h2raw::request_block(&long_path, &token));
    out.extend(h2raw::headers(
        3,
        &h2raw::request_block("/a/api/v1/namespaces/dev/configmaps", &token),
    ));
    conn.send(&out).await.expect("write");
    let ended = |c: &h2raw::Conn| {
        [1, 3]
            .iter()
            .all(|s| c.streams.get(s).is_some_and(|v| v.ended || v.reset.is_some()))
    };
    assert!(
        conn.read_until(Duration::from_secs(5), ended).await,
        "no answer: {:?}",
        conn.streams
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(conn.goaway, None);
    let long = &conn.streams[&1];
    assert_eq!(
        long.reset, None,
        "a reset is what Go's client retries without end"
    );
    assert!(long.headers && long.ended);
    let s = status(&long.data);
    assert_eq!(s["code"], 414);
    let message = s["message"].as_str().unwrap_or("");
    assert!(
        message.contains(&format!("is {} bytes long", long_path.len())),
        "{message}"
    );
    assert!(message.contains("65534 bytes"), "{message}");
    // The same connection serves the next request.
    let next = &conn.streams[&3];
    assert!(next.headers && next.ended && next.reset.is_none(), "{next:?}");
    assert_eq!(a.last().uri, "/api/v1/namespaces/dev/configmaps");
    p.wait_log("uri-too-long").await;
}

#[tokio::test]
async fn a_connection_sends_bytes_unchanged_through_the_http2_guard() {
    // A POST with a body over HTTP/2: the guard passes DATA as it came.
    let (p, token, a) = setup().await;
    let mut conn = Conn::connect(p.addr, p.tls_h2()).await.expect("connect");
    assert!(conn.is_h2());
    let body = Bytes::from(vec![b'x'; 300_000]);
    let req = http::Request::post("/a/api/v1/namespaces/dev/configmaps")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(support::full(body.clone()))
        .expect("request");
    let resp = conn.send(req).await.expect("send");
    assert!(resp.status().is_success(), "{}", resp.status());
    let _ = collect(resp.into_body()).await;
    assert_eq!(a.last().body, body);
}

#[tokio::test]
async fn a_write_declaring_more_than_kube_apiserver_reads_gets_413_before_its_body_is_sent() {
    let (p, token, a) = setup().await;
    // 3 MiB (kube-apiserver's --max-request-body-bytes default) passes whole.
    let mut conn = Conn::connect(p.addr, p.tls()).await.expect("connect");
    let body = Bytes::from(vec![b' '; 3 << 20]);
    let req = http::Request::post("/a/api/v1/namespaces/dev/configmaps")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(support::full(body.clone()))
        .expect("request");
    let resp = conn.send(req).await.expect("send");
    assert!(resp.status().is_success(), "{}", resp.status());
    let _ = collect(resp.into_body()).await;
    assert_eq!(a.last().body.len(), body.len());
    a.clear_requests();

    // One byte more, declared: refused at once, with only the head sent.
    let started = Instant::now();
    let mut tls = tls_connect(p.addr, p.tls()).await.expect("connect");
    let head = format!(
        "POST /a/api/v1/namespaces/dev/configmaps HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {token}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{{",
        (3 << 20) + 1
    );
    tls.write_all(head.as_bytes()).await.expect("write");
    let mut got = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(2), tls.read(&mut got))
        .await
        .expect("answered before the body")
        .expect("read");
    assert!(started.elapsed() < Duration::from_secs(1));
    let text = String::from_utf8_lossy(&got[..n]);
    assert!(text.starts_with("HTTP/1.1 413 "), "{text}");
    let (_, body) = text.split_once("\r\n\r\n").expect("head");
    let s = status(body.trim_end().as_bytes());
    assert_eq!(s["reason"], "RequestEntityTooLarge");
    assert!(
        s["message"].as_str().unwrap_or("").contains("3145728 bytes"),
        "{s}"
    );
    assert!(
        a.requests().iter().all(|r| r.method != "POST"),
        "nothing was forwarded"
    );
}

#[tokio::test]
async fn clusters_by_host_name_and_by_path_at_once_never_disagreeing() {
    let iss = issuer().key_kind(KeyKind::EcP256).run().await;
    let a = apiserver().name("a").run().await;
    let b = apiserver().name("b").run().await;
    let p = proxy(&iss)
        .arg("--oidc-signing-algs=ES256")
        .arg("--cluster-host-suffix=.proxy.test")
        .cluster("a", &a, "", Cred::Token("t".into()))
        .cluster("b", &b, "/prefix", Cred::Token("t".into()))
        .run()
        .await;
    let token = iss.token().groups(&["a:devops", "b:devops"]).sign();
    let port = p.addr.port();

    // HTTP/1.1: the Host header names the cluster; the whole path goes upstream.
    let h1 = |host: String, path: &'static str| {
        let (addr, tls, token) = (p.addr, p.tls(), token.clone());
        async move {
            let mut s = tls_connect(addr, tls).await.expect("connect");
            let req = format!(
                "GET {path} HTTP/1.1\r\nhost: {host}\r\nauthorization: Bearer {token}\r\nconnection: close\r\n\r\n"
            );
            s.write_all(req.as_bytes()).await.expect("write");
            let mut out = Vec::new();
            let _ = s.read_to_end(&mut out).await;
            let text = String::from_utf8_lossy(&out).into_owned();
            let code: u16 = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
            (code, text)
        }
    };
    let (code, _) = h1(format!("b.proxy.test:{port}"), "/api/v1/namespaces/dev/pods").await;
    assert_eq!(code, 200);
    assert_eq!(b.last().uri, "/prefix/api/v1/namespaces/dev/pods");
    // Both styles at once: the same cluster in the path is fine...
    let (code, _) = h1(format!("a.proxy.test:{port}"), "/a/api/v1/namespaces/dev/pods").await;
    assert_eq!(code, 200);
    assert_eq!(a.last().uri, "/api/v1/namespaces/dev/pods");
    // ...another one is refused, naming both.
    let before = (a.requests().len(), b.requests().len());
    let (code, text) = h1(format!("a.proxy.test:{port}"), "/b/api/v1/namespaces/dev/pods").await;
    assert_eq!(code, 400, "{text}");
    assert!(
        text.contains(r#"the host names cluster \"a\" and the path cluster \"b\""#),
        "{text}"
    );
    assert_eq!(
        (a.requests().len(), b.requests().len()),
        before,
        "nothing forwarded"
    );
    // A host under the suffix that is no served cluster: 404, as an unknown path cluster.
    let (code, _) = h1(format!("c.proxy.test:{port}"), "/api/v1/pods").await;
    assert_eq!(code, 404);
    // Any other host: path routing as always.
    let (code, _) = h1(format!("127.0.0.1:{port}"), "/a/api/v1/namespaces/dev/pods").await;
    assert_eq!(code, 200);

    // HTTP/2: `:authority` names the cluster.
    let mut conn = h2raw::Conn::open(p.addr, p.tls_h2()).await;
    let block = h2raw::request_block_to(
        &format!("b.proxy.test:{port}"),
        "/api/v1/namespaces/kube-system/pods",
        &token,
    );
    conn.send(&h2raw::headers(1, &block)).await.expect("send");
    assert!(
        conn.read_until(Duration::from_secs(5), |c| c
            .streams
            .get(&1)
            .is_some_and(|s| s.ended))
            .await
    );
    assert_eq!(conn.streams[&1].reset, None);
    assert_eq!(b.last().uri, "/prefix/api/v1/namespaces/kube-system/pods");
}

#[tokio::test]
async fn a_host_name_never_widens_a_narrow_grant() {
    // ann may use cluster a only. Naming b by host, or a by host and b by path, must neither
    // reach b with the proxy's credentials nor be read as a request to a.
    let iss = issuer().key_kind(KeyKind::EcP256).run().await;
    let a = apiserver().name("a").run().await;
    let b = apiserver().name("b").run().await;
    let p = proxy(&iss)
        .arg("--oidc-signing-algs=ES256")
        .arg("--cluster-host-suffix=.proxy.test")
        .cluster("a", &a, "", Cred::Token("t".into()))
        .cluster("b", &b, "", Cred::Token("t".into()))
        .run()
        .await;
    let token = iss.token().groups(&["a:devops"]).sign();
    let port = p.addr.port();
    let ask = |host: String, path: &'static str| {
        let (addr, tls, token) = (p.addr, p.tls(), token.clone());
        async move {
            let mut s = tls_connect(addr, tls).await.expect("connect");
            let req = format!(
                "GET {path} HTTP/1.1\r\nhost: {host}\r\nauthorization: Bearer {token}\r\nconnection: close\r\n\r\n"
            );
            s.write_all(req.as_bytes()).await.expect("write");
            let mut out = Vec::new();
            let _ = s.read_to_end(&mut out).await;
            String::from_utf8_lossy(&out)
                .get(9..12)
                .and_then(|c| c.parse::<u16>().ok())
                .unwrap_or(0)
        }
    };
    assert_eq!(
        ask(format!("b.proxy.test:{port}"), "/api/v1/namespaces/dev/pods").await,
        403
    );
    assert_eq!(
        ask(format!("a.proxy.test:{port}"), "/b/api/v1/namespaces/dev/pods").await,
        400
    );
    assert_eq!(
        ask(format!("b.proxy.test:{port}"), "/a/api/v1/namespaces/dev/pods").await,
        400
    );
    assert!(
        b.requests().iter().all(|r| !r.uri.contains("/pods")),
        "nothing reached cluster b"
    );
    // The grant still works by host.
    assert_eq!(
        ask(format!("a.proxy.test:{port}"), "/api/v1/namespaces/dev/pods").await,
        200
    );
}

/// `--request-header-timeout` over HTTP/1.1 (slowloris): a head that never ends and a keep-alive
/// connection left idle are closed once the timeout has passed; an answer slower than the
/// timeout, a second request on the same connection and a watch streaming for longer are not cut.
#[tokio::test]
async fn http1_request_heads_are_timed_and_answers_are_not() {
    let iss = issuer().key_kind(KeyKind::EcP256).run().await;
    // Every answer takes twice the header timeout to start.
    let a = apiserver()
        .name("a")
        .delay_headers(Duration::from_millis(800))
        .run()
        .await;
    let p = proxy(&iss)
        .arg("--oidc-signing-algs=ES256")
        .arg("--request-header-timeout=400ms")
        .cluster("a", &a, "", Cred::Token("t".into()))
        .run()
        .await;
    let token = iss.token().groups(&["a:devops"]).sign();
    std::mem::forget(iss);
    let auth = format!("Bearer {token}");

    // Half a head, then nothing: closed, unanswered, after the timeout.
    let mut tls = tls_connect(p.addr, p.tls()).await.expect("connect");
    tls.write_all(b"GET /a/api/v1/namespaces/dev/configmaps HTTP/1.1\r\nhost: 127.0.0.1\r\n")
        .await
        .expect("write");
    let started = Instant::now();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut out))
        .await
        .expect("the proxy closes a connection whose head never ends")
        .ok();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(390) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert!(out.is_empty(), "{}", String::from_utf8_lossy(&out));

    // Two slow answers on one keep-alive connection: both arrive.
    let mut conn = Conn::connect(p.addr, p.tls()).await.expect("connect");
    assert!(!conn.is_h2());
    for _ in 0..2 {
        let resp = (conn.get("/a/api/v1/namespaces/dev/configmaps", &[("authorization", &auth)]))
            .await
            .expect("answered although slower than the header timeout");
        assert_eq!(resp.status(), 200);
        collect(resp.into_body()).await;
    }
    // Then left idle for longer than the timeout: closed.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        (conn.get("/a/api/v1/namespaces/dev/configmaps", &[("authorization", &auth)]))
            .await
            .is_err(),
        "an idle keep-alive connection outlived the header timeout"
    );

    // A watch whose events come after more than the timeout.
    let mut conn = Conn::connect(p.addr, p.tls()).await.expect("connect");
    let before = a.open_watches();
    let resp = (conn.get(
        "/a/api/v1/namespaces/dev/configmaps?watch=true",
        &[("authorization", &auth)],
    ))
    .await
    .expect("watch");
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    a.wait_watches(before + 1).await;
    for i in 0..2 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        a.send_watch_event(&format!(
            r#"{{"type":"ADDED","object":{{"kind":"ConfigMap","metadata":{{"name":"c{i}"}}}}}}"#
        ));
        let got = support::client::next_data(&mut body, 5)
            .await
            .expect("the watch still streams");
        assert!(String::from_utf8_lossy(&got).contains(&format!("\"c{i}\"")));
    }
}
