//! Self-tests for the fake apiserver: routing and recording, watches,
//! upgrades, bearer and mTLS checks. In the main repo this file sits next to
//! `support/` and the `#[path]` attribute goes away.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::apiserver::apiserver;
use support::big_body;
use support::client::{Conn, collect, get, next_data, tls_connect};
use support::pki::Ca;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ALPN_BOTH: &[&[u8]] = &[b"h2", b"http/1.1"];

#[tokio::test]
async fn apiserver_records_and_routes_over_h1_and_h2() {
    let api = apiserver().name("a").run().await;
    for alpn in [&[b"http/1.1".as_slice()][..], ALPN_BOTH] {
        let mut conn = Conn::connect(api.addr(), api.ca().client_config_alpn(alpn))
            .await
            .unwrap();
        let req = http::Request::post("/api/v1/namespaces/x/pods?limit=5&x=%2F")
            .header("impersonate-group", "g1")
            .header("impersonate-group", "g2")
            .body(support::full("payload"))
            .unwrap();
        let resp = conn.send(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        let echo: Value = serde_json::from_slice(&collect(resp.into_body()).await).unwrap();
        assert_eq!(echo["server"], "a");
        assert_eq!(echo["method"], "POST");
        assert_eq!(echo["uri"], "/api/v1/namespaces/x/pods?limit=5&x=%2F");
        let rec = api.last();
        assert_eq!(rec.uri, "/api/v1/namespaces/x/pods?limit=5&x=%2F");
        assert_eq!(rec.body, b"payload");
        assert_eq!(rec.header_all("impersonate-group"), ["g1", "g2"]);
        assert_eq!(rec.version == http::Version::HTTP_2, conn.is_h2());
        assert_eq!(rec.client_cert_cn, None);
    }

    let tls = api.ca().client_config();
    let (status, _, body) = get(api.addr(), tls.clone(), "/version", &[]).await;
    assert_eq!(status, 200);
    let version: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(version["gitVersion"], "v1.35.0-fake-a");
    let (status, _, body) = get(api.addr(), tls.clone(), "/status/418", &[]).await;
    assert_eq!(status, 418);
    let st: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (st["kind"].as_str(), st["code"].as_u64()),
        (Some("Status"), Some(418))
    );
    let (status, headers, body) = get(api.addr(), tls, "/big/100000", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(headers["transfer-encoding"], "chunked");
    assert_eq!(body.as_ref(), big_body(100_000).as_slice());
    assert_eq!(api.requests().len(), 5);
}

#[tokio::test]
async fn apiserver_bearer_and_delay() {
    let api = apiserver()
        .require_bearer(Some("tok-a"))
        .delay_headers(Duration::from_millis(300))
        .run()
        .await;
    let tls = api.ca().client_config();
    let started = Instant::now();
    let (status, _, body) = get(api.addr(), tls.clone(), "/api", &[]).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(status, 401);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["reason"],
        "Unauthorized"
    );
    let auth = [("authorization", "Bearer tok-a")];
    let (status, _, _) = get(api.addr(), tls.clone(), "/api", &auth).await;
    assert_eq!(status, 200);
    assert_eq!(api.requests().len(), 2, "rejected requests are recorded too");
}

#[tokio::test]
async fn apiserver_watch_streams_events_until_closed() {
    let api = apiserver().run().await;
    for alpn in [&[b"http/1.1".as_slice()][..], ALPN_BOTH] {
        let mut conn = Conn::connect(api.addr(), api.ca().client_config_alpn(alpn))
            .await
            .unwrap();
        let resp = conn.get("/api/v1/pods?watch=true", &[]).await.unwrap();
        assert_eq!(resp.status(), 200);
        if !conn.is_h2() {
            assert_eq!(resp.headers()["transfer-encoding"], "chunked");
        }
        let mut body = resp.into_body();
        api.wait_watches(1).await;
        assert_eq!(api.send_watch_event(r#"{"type":"ADDED"}"#), 1);
        let event = next_data(&mut body, 5).await.expect("first event");
        assert_eq!(event.as_ref(), b"{\"type\":\"ADDED\"}\n");
        api.send_watch_event(r#"{"type":"DELETED"}"#);
        let event = next_data(&mut body, 5).await.expect("second event");
        assert_eq!(event.as_ref(), b"{\"type\":\"DELETED\"}\n");
        api.close_watches();
        let end = next_data(&mut body, 5).await;
        assert!(end.is_none(), "stream ends, h2={} got {end:?}", conn.is_h2());
        assert_eq!(api.open_watches(), 0);
    }
    // A client that goes away is noticed.
    let mut conn = Conn::connect(api.addr(), api.ca().client_config()).await.unwrap();
    let resp = conn.get("/api/v1/pods?watch=1", &[]).await.unwrap();
    api.wait_watches(1).await;
    drop((resp, conn));
    support::wait_until("watch closed", 5, || api.open_watches() == 0).await;
}

#[tokio::test]
async fn apiserver_upgrade_echoes_bytes() {
    let api = apiserver().run().await;
    let mut conn = Conn::connect(api.addr(), api.ca().client_config()).await.unwrap();
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    let headers = [
        ("connection", "Upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", key),
        ("sec-websocket-protocol", "v5.channel.k8s.io, v4.channel.k8s.io"),
    ];
    let mut resp = conn
        .get("/api/v1/namespaces/d/pods/p/exec?command=sh", &headers)
        .await
        .unwrap();
    assert_eq!(resp.status(), 101);
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    assert_eq!(resp.headers()["sec-websocket-accept"], accept.as_str());
    assert_eq!(resp.headers()["sec-websocket-protocol"], "v5.channel.k8s.io");
    assert_eq!(api.last().header("upgrade"), Some("websocket"));
    let upgraded = hyper::upgrade::on(&mut resp).await.unwrap();
    let mut io = hyper_util::rt::TokioIo::new(upgraded);
    support::wait_until("echo task", 5, || api.open_upgrades() == 1).await;
    io.write_all(b"hello\x00\xffworld").await.unwrap();
    let mut buf = [0u8; 12];
    io.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"hello\x00\xffworld");
    io.shutdown().await.unwrap();
    let mut rest = Vec::new();
    io.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty(), "server closes after echoing EOF");

    // SPDY, then a server shutdown ends the upgraded stream.
    let mut conn = Conn::connect(api.addr(), api.ca().client_config()).await.unwrap();
    let headers = [
        ("connection", "Upgrade"),
        ("upgrade", "SPDY/3.1"),
        ("x-stream-protocol-version", "v4.channel.k8s.io"),
        ("x-stream-protocol-version", "v3.channel.k8s.io"),
    ];
    let mut resp = conn
        .get("/api/v1/namespaces/d/pods/p/attach", &headers)
        .await
        .unwrap();
    assert_eq!(resp.status(), 101);
    assert_eq!(resp.headers()["upgrade"], "SPDY/3.1");
    assert_eq!(resp.headers()["x-stream-protocol-version"], "v4.channel.k8s.io");
    let mut io = hyper_util::rt::TokioIo::new(hyper::upgrade::on(&mut resp).await.unwrap());
    io.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    io.read_exact(&mut buf).await.unwrap();
    api.shutdown();
    let mut rest = Vec::new();
    // Dropped without close_notify, so the read may end in an error: only
    // that it ends matters.
    let read = tokio::time::timeout(Duration::from_secs(5), io.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "shutdown closes the upgraded stream");
    support::wait_until("echo task ends", 5, || api.open_upgrades() == 0).await;
    assert!(Conn::connect(api.addr(), api.ca().client_config()).await.is_err());
}

#[tokio::test]
async fn apiserver_mtls_requires_a_client_cert_from_the_ca() {
    let client_ca = Ca::new("client-ca");
    let api = apiserver().require_client_cert(&client_ca).run().await;

    // No cert: TLS 1.3 reports the server's rejection on the first read.
    let mut conn = Conn::connect(api.addr(), api.ca().client_config()).await;
    if let Ok(c) = conn.as_mut() {
        assert!(c.get("/version", &[]).await.is_err());
    }
    // A cert from another CA is refused as well.
    let stranger = Ca::new("other").issue_client("eve", &[]);
    let tls = api.ca().client_config_with_cert(&stranger, &[]);
    let mut stream = tls_connect(api.addr(), tls).await.unwrap();
    let mut buf = [0u8; 1];
    assert!(stream.read(&mut buf).await.is_err());

    let cert = client_ca.issue_client("proxy", &["system:masters"]);
    let tls = api.ca().client_config_with_cert(&cert, ALPN_BOTH);
    let (status, _, _) = get(api.addr(), tls, "/version", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(api.requests().len(), 1);
    assert_eq!(api.last().client_cert_cn.as_deref(), Some("proxy"));
    assert_eq!(api.last().client_cert_orgs, ["system:masters"]);
}
