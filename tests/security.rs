//! A narrow grant never reaches further through the proxy's own credentials: each test is one
//! class of way out (upgrades, identity headers, RBAC escalation, create through PUT or apply,
//! encoded paths, forged log fields, one user starving the rest), tried as an attacker would,
//! with the fake API server recording what actually reached it.

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use serde_json::{Value, json};
use support::apiserver::{FakeApi, apiserver};
use support::client::collect;
use support::full;
use support::issuer::{Issuer, KeyKind, issuer};
use support::objects::{cluster_role, namespace, role_binding, user};
use support::proxy::{Cred, TestProxy, proxy};

async fn setup(args: &[&str]) -> (Issuer, FakeApi, TestProxy) {
    let iss = issuer().key_kind(KeyKind::EcP256).run().await;
    let api = apiserver().name("k8s").run().await;
    api.store().put("namespaces", namespace("dev"));
    let mut b = proxy(&iss).arg("--oidc-signing-algs=ES256").cluster(
        "k8s",
        &api,
        "",
        Cred::Token("proxy-token".into()),
    );
    for a in args {
        b = b.arg(a);
    }
    (iss, api, b.run().await)
}

/// Sends one request on a fresh connection: (status, headers, body).
async fn send(
    p: &TestProxy,
    method: &str,
    path: &str,
    token: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (StatusCode, http::HeaderMap, Value) {
    let mut conn = p.conn().await;
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {token}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = conn
        .send(req.body(full(Bytes::from(body.to_string()))).unwrap())
        .await
        .unwrap();
    let (parts, body) = resp.into_parts();
    let bytes = collect(body).await;
    let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (parts.status, parts.headers, v)
}

const WS: [(&str, &str); 5] = [
    ("connection", "Upgrade"),
    ("upgrade", "websocket"),
    ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ("sec-websocket-version", "13"),
    ("sec-websocket-protocol", "v5.channel.k8s.io"),
];

/// Requests the fake received from users (not the proxy's own list/watch traffic).
fn user_paths(api: &FakeApi) -> Vec<String> {
    api.user_requests()
        .into_iter()
        .map(|r| format!("{} {}", r.method, r.uri))
        .collect()
}

/// A WebSocket upgrade (GET), as kubectl >= 1.30 sends one: its status.
async fn ws(p: &TestProxy, path: &str, token: &str) -> StatusCode {
    send(p, "GET", path, token, &WS, "").await.0
}

/// A JSON POST announcing 1000 bytes whose body arrives only as the test sends it.
fn slow_post(path: &str, token: &str) -> (tokio::sync::mpsc::UnboundedSender<Bytes>, Request<support::Body>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
    let req = Request::post(path)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .header("content-length", "1000")
        .body(http_body_util::BodyExt::boxed(support::ChannelBody(rx)))
        .unwrap();
    (tx, req)
}

/// Waits until the proxy has seen a grant made in the fake cluster (RBAC arrives by watch).
async fn wait_for_grant(p: &TestProxy, path: &str, token: &str) {
    for _ in 0..100 {
        if p.get(path, Some(token)).await.0 == StatusCode::OK {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the proxy never allowed {path}");
}

#[tokio::test]
async fn every_upgrade_needs_create_whatever_the_method_and_path() {
    let (iss, api, p) = setup(&[]).await;
    let watcher = iss.token().sub("wes").groups(&["k8s:watcher"]).sign();
    let exec_role = iss
        .token()
        .sub("eve")
        .groups(&["k8s:developer-exec-portforward"])
        .sign();
    let devops = iss.token().sub("dan").groups(&["k8s:devops"]).sign();

    // A read-only role: no shell through the kubelet, a pod's or a service's proxy, or exec.
    for path in [
        "/k8s/api/v1/nodes/n1/proxy/exec/dev/web/c?command=sh&input=1&output=1",
        "/k8s/api/v1/namespaces/dev/pods/web/proxy/ws",
        "/k8s/api/v1/namespaces/dev/services/web:80/proxy/socket",
        "/k8s/api/v1/namespaces/dev/pods/web/exec?command=sh",
        "/k8s/api/v1/namespaces/dev/pods/web/attach",
    ] {
        for method in ["GET", "POST"] {
            let (code, _, body) = send(&p, method, path, &watcher, &WS, "").await;
            assert_eq!(code, StatusCode::FORBIDDEN, "{method} {path}: {body}");
            assert!(
                body["message"]
                    .as_str()
                    .unwrap()
                    .contains("cannot create resource"),
                "{body}"
            );
        }
    }
    // The same plain GET through nodes/proxy is a read, and the watcher may read.
    let (code, _, _) = send(&p, "GET", "/k8s/api/v1/nodes/n1/proxy/healthz", &watcher, &[], "").await;
    assert_eq!(code, StatusCode::OK);
    // A WebSocket watch is served as a watch (kube-apiserver serves watches to browsers so).
    assert_eq!(
        ws(&p, "/k8s/api/v1/namespaces/dev/pods?watch=1", &watcher).await,
        StatusCode::SWITCHING_PROTOCOLS
    );
    // A pod's log over WebSocket is a read-only stream: the developer role opens it.
    let dev = iss.token().sub("dee").groups(&["k8s:developer"]).sign();
    assert_eq!(
        ws(&p, "/k8s/api/v1/namespaces/dev/pods/web/log?follow=true", &dev).await,
        StatusCode::SWITCHING_PROTOCOLS
    );
    let before = user_paths(&api).len();

    // The exec role opens its shell, and only there.
    assert_eq!(
        ws(
            &p,
            "/k8s/api/v1/namespaces/dev/pods/web/exec?command=sh",
            &exec_role
        )
        .await,
        StatusCode::SWITCHING_PROTOCOLS
    );
    assert_eq!(
        ws(&p, "/k8s/api/v1/nodes/n1/proxy/exec/dev/web/c", &exec_role).await,
        StatusCode::FORBIDDEN
    );

    // Only WebSocket and SPDY/3.1 are ever upgraded, even for devops; nothing reaches upstream.
    let after_exec = user_paths(&api).len();
    assert_eq!(after_exec, before + 1);
    for token in ["h2c", "websocket, h2c", "TLS/1.0"] {
        let headers = [("connection", "Upgrade"), ("upgrade", token)];
        let (code, _, body) = send(
            &p,
            "GET",
            "/k8s/api/v1/namespaces/dev/pods/web/exec",
            &devops,
            &headers,
            "",
        )
        .await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{token}: {body}");
    }
    // No upgrade on a non-resource path; no methods kube-apiserver does not serve.
    assert_eq!(ws(&p, "/k8s/version", &devops).await, StatusCode::BAD_REQUEST);
    let (code, _, _) = send(&p, "TRACE", "/k8s/api/v1/namespaces", &devops, &[], "").await;
    assert_eq!(code, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(user_paths(&api).len(), after_exec, "{:?}", user_paths(&api));
}

#[tokio::test]
async fn identity_headers_never_reach_the_cluster() {
    let (iss, api, p) = setup(&[
        "--requestheader-username-headers=X-Auth-User",
        "--requestheader-extra-headers-prefix=X-Auth-Extra-",
    ])
    .await;
    let t = iss.token().sub("ann").groups(&["k8s:devops"]).sign();
    let headers = [
        ("X-Remote-User", "system:admin"),
        ("X-Remote-Group", "system:masters"),
        ("X-Remote-Uid", "0"),
        ("X-Remote-Extra-Scopes", "all"),
        ("X-Auth-User", "admin"),
        ("X-Auth-Extra-Team", "root"),
        ("X-Request-Id", "kept"),
    ];
    let (code, _, _) = send(&p, "GET", "/k8s/api/v1/namespaces/dev/pods", &t, &headers, "").await;
    assert_eq!(code, StatusCode::OK);
    let got = api.last();
    let names: Vec<&str> = got.headers.keys().map(|k| k.as_str()).collect();
    for gone in [
        "x-remote-user",
        "x-remote-group",
        "x-remote-uid",
        "x-remote-extra-scopes",
        "x-auth-user",
        "x-auth-extra-team",
    ] {
        assert!(!names.contains(&gone), "{gone} reached the cluster: {names:?}");
    }
    assert_eq!(got.header("x-request-id"), Some("kept"));
    assert_eq!(got.header("authorization"), Some("Bearer proxy-token"));
}

/// Loads RBAC into the fake cluster: ann may write Roles and RoleBindings in dev and read pods
/// there; bob may additionally bind `view`.
async fn rbac_cluster(api: &FakeApi) {
    let s = api.store();
    s.put(
        "clusterroles",
        cluster_role(
            "rbac-writer",
            json!([{"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles", "rolebindings"],
                    "verbs": ["create", "update", "patch", "get"]},
                   {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]},
                   {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "update", "patch"]}]),
        ),
    );
    s.put(
        "clusterroles",
        cluster_role(
            "cluster-admin",
            json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]),
        ),
    );
    s.put(
        "clusterroles",
        cluster_role(
            "view",
            json!([{"apiGroups": [""], "resources": ["pods", "secrets"], "verbs": ["get"]}]),
        ),
    );
    s.put(
        "clusterroles",
        cluster_role("bind-view", json!([{"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"], "verbs": ["bind"], "resourceNames": ["view"]}])),
    );
    for who in ["ann", "bob"] {
        s.put(
            "rolebindings",
            role_binding(
                "dev",
                &format!("{who}-w"),
                "ClusterRole",
                "rbac-writer",
                json!([user(who)]),
            ),
        );
    }
    s.put(
        "rolebindings",
        role_binding(
            "dev",
            "bob-bind",
            "ClusterRole",
            "bind-view",
            json!([user("bob")]),
        ),
    );
}

#[tokio::test]
async fn rbac_escalation_is_checked_for_the_user_before_the_write() {
    let (iss, api, p) = setup(&[]).await;
    rbac_cluster(&api).await;
    let ann = iss.token().sub("ann").sign();
    let bob = iss.token().sub("bob").sign();
    let path = "/k8s/apis/rbac.authorization.k8s.io/v1/namespaces/dev/rolebindings";
    let binding = |role: &str| {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
               "metadata": {"name": "mine", "namespace": "dev"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
               "subjects": [{"kind": "User", "name": "ann"}]})
        .to_string()
    };
    let ct = [("content-type", "application/json")];
    // Wait for the proxy to see the cluster's RBAC.
    wait_for_grant(&p, "/k8s/api/v1/namespaces/dev/pods", &ann).await;
    api.clear_requests();

    let (code, _, body) = send(&p, "POST", path, &ann, &ct, &binding("cluster-admin")).await;
    assert_eq!(code, StatusCode::FORBIDDEN, "{body}");
    let msg = body["message"].as_str().unwrap();
    assert!(
        msg.starts_with("rolebindings.rbac.authorization.k8s.io \"mine\" is forbidden: user \"ann\""),
        "{msg}"
    );
    assert!(
        msg.contains("attempting to grant RBAC permissions not currently held"),
        "{msg}"
    );
    // Only the dry run reached the cluster.
    let seen = user_paths(&api);
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(seen[0].ends_with("?dryRun=All"), "{seen:?}");

    // An Upgrade header riding on the write changes nothing: still checked, still refused.
    let upgraded = [("content-type", "application/json"), WS[0], WS[1], WS[2], WS[3]];
    api.clear_requests();
    let (code, _, body) = send(&p, "POST", path, &ann, &upgraded, &binding("cluster-admin")).await;
    assert_eq!(code, StatusCode::FORBIDDEN, "{body}");
    let seen = user_paths(&api);
    assert_eq!(seen.len(), 1, "only the dry run: {seen:?}");
    assert!(
        api.last().header("upgrade").is_none(),
        "the dry run is never an upgrade"
    );

    // view grants secrets ann does not hold; bob may bind view by name.
    let (code, _, _) = send(&p, "POST", path, &ann, &ct, &binding("view")).await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    api.clear_requests();
    let (code, _, _) = send(&p, "POST", path, &bob, &ct, &binding("view")).await;
    assert_eq!(code, StatusCode::OK, "the fake echoes the real write with 200");
    let seen = user_paths(&api);
    assert_eq!(seen.len(), 2, "dry run, then the write: {seen:?}");
    assert!(!seen[1].contains("dryRun"), "{seen:?}");
    assert_eq!(api.last().body, binding("view").as_bytes());

    // A Role granting what ann holds is fine; one granting more is not, by POST, PUT or apply.
    let roles = "/k8s/apis/rbac.authorization.k8s.io/v1/namespaces/dev/roles";
    let role = |res: &str| {
        json!({"kind": "Role", "metadata": {"name": "r", "namespace": "dev"},
               "rules": [{"apiGroups": [""], "resources": [res], "verbs": ["get"]}]})
        .to_string()
    };
    assert_eq!(
        send(&p, "POST", roles, &ann, &ct, &role("pods")).await.0,
        StatusCode::OK
    );
    assert_eq!(
        send(&p, "POST", roles, &ann, &ct, &role("secrets")).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        send(&p, "PUT", &format!("{roles}/r"), &ann, &ct, &role("secrets"))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    let apply = [("content-type", "application/apply-patch+yaml")];
    assert_eq!(
        send(
            &p,
            "PATCH",
            &format!("{roles}/r?fieldManager=kubectl"),
            &ann,
            &apply,
            &role("secrets")
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn put_and_apply_create_nothing_without_create() {
    let (iss, api, p) = setup(&[]).await;
    rbac_cluster(&api).await;
    let ann = iss.token().sub("ann").sign();
    wait_for_grant(&p, "/k8s/api/v1/namespaces/dev/pods", &ann).await;
    let cm = |name: &str| json!({"kind": "ConfigMap", "metadata": {"name": name}}).to_string();
    let base = "/k8s/api/v1/namespaces/dev/configmaps";
    let json_ct = [("content-type", "application/json")];
    let apply = [("content-type", "application/apply-patch+yaml")];
    // ann may update and patch configmaps, never create them: the fake's dry run says a
    // `new...` object would be created.
    let (code, _, body) = send(
        &p,
        "PUT",
        &format!("{base}/new-cm"),
        &ann,
        &json_ct,
        &cm("new-cm"),
    )
    .await;
    assert_eq!(code, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(
        body["message"],
        "configmaps \"new-cm\" is forbidden: User \"ann\" cannot create resource \"configmaps\" in API group \"\" in the namespace \"dev\""
    );
    let (code, _, _) = send(
        &p,
        "PATCH",
        &format!("{base}/new-cm?fieldManager=k"),
        &ann,
        &apply,
        &cm("new-cm"),
    )
    .await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    // Updating an existing object is what ann's grant is for.
    assert_eq!(
        send(&p, "PUT", &format!("{base}/old"), &ann, &json_ct, &cm("old"))
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        send(
            &p,
            "PATCH",
            &format!("{base}/old?fieldManager=k"),
            &ann,
            &apply,
            &cm("old")
        )
        .await
        .0,
        StatusCode::OK
    );
    // A merge patch cannot create: no dry run at all.
    api.clear_requests();
    let merge = [("content-type", "application/merge-patch+json")];
    assert_eq!(
        send(&p, "PATCH", &format!("{base}/old"), &ann, &merge, "{}")
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(user_paths(&api).len(), 1);
}

/// The real write of a checked update or patch carries the uid and resourceVersion of the object
/// its dry run saw, so kube-apiserver refuses it if that object was deleted (a PUT or apply would
/// then create), replaced or changed in between (the real ring proves kube's side).
#[tokio::test]
async fn checked_writes_are_held_to_the_object_their_dry_run_saw() {
    let (iss, api, p) = setup(&[]).await;
    rbac_cluster(&api).await;
    let ann = iss.token().sub("ann").sign();
    wait_for_grant(&p, "/k8s/api/v1/namespaces/dev/pods", &ann).await;
    let base = "/k8s/api/v1/namespaces/dev/configmaps";
    let cm = json!({"kind": "ConfigMap", "metadata": {"name": "old"}, "data": {"a": "1"}}).to_string();
    let yaml = "kind: ConfigMap\nmetadata:\n  name: old\ndata:\n  a: '1'\n";
    for (method, path, ct, body) in [
        ("PUT", format!("{base}/old"), "application/json", cm.as_str()),
        ("PUT", format!("{base}/old"), "application/yaml", yaml),
        (
            "PATCH",
            format!("{base}/old?fieldManager=k"),
            "application/apply-patch+yaml",
            yaml,
        ),
    ] {
        api.clear_requests();
        let (code, _, answer) = send(&p, method, &path, &ann, &[("content-type", ct)], body).await;
        assert_eq!(code, StatusCode::OK, "{method} {ct}: {answer}");
        let seen = user_paths(&api);
        assert_eq!(seen.len(), 2, "dry run, then the write: {seen:?}");
        let write = api.last();
        assert!(!write.uri.contains("dryRun"), "{seen:?}");
        let sent: Value = serde_json::from_slice(&write.body).expect("the real write is JSON");
        assert_eq!(sent["metadata"]["uid"], "uid-old", "{method} {ct}: {sent}");
        assert_eq!(sent["metadata"]["resourceVersion"], "7", "{method} {ct}: {sent}");
        assert_eq!(sent["data"]["a"], "1", "the write is otherwise the same");
        assert_eq!(
            write.header("content-length"),
            Some(write.body.len().to_string().as_str())
        );
        if ct == "application/yaml" {
            assert_eq!(write.header("content-type"), Some("application/json"));
        }
    }

    // A Role change is checked for its content and held the same way; a JSON patch tests the
    // object's uid and resourceVersion before its own operations.
    let roles = "/k8s/apis/rbac.authorization.k8s.io/v1/namespaces/dev/roles";
    let json_patch = json!([{"op": "replace", "path": "/metadata/labels", "value": {"x": "y"}}]).to_string();
    for (ct, body) in [
        (
            "application/merge-patch+json",
            r#"{"metadata":{"labels":{"x":"y"}}}"#,
        ),
        ("application/json-patch+json", json_patch.as_str()),
    ] {
        api.clear_requests();
        let path = format!("{roles}/r");
        let (code, _, answer) = send(&p, "PATCH", &path, &ann, &[("content-type", ct)], body).await;
        assert_eq!(code, StatusCode::OK, "{ct}: {answer}");
        let write = api.last();
        assert!(!write.uri.contains("dryRun"), "{:?}", user_paths(&api));
        let sent: Value = serde_json::from_slice(&write.body).unwrap();
        if ct == "application/json-patch+json" {
            assert_eq!(
                sent[0],
                json!({"op": "test", "path": "/metadata/uid", "value": "uid-r"})
            );
            assert_eq!(sent[1]["path"], "/metadata/resourceVersion");
            assert_eq!(sent[2]["op"], "replace", "{sent}");
        } else {
            assert_eq!(sent["metadata"]["uid"], "uid-r", "{sent}");
            assert_eq!(sent["metadata"]["labels"]["x"], "y", "{sent}");
        }
    }

    // A body the proxy cannot hold to a version (protobuf) is refused before the dry run.
    api.clear_requests();
    let (code, _, answer) = send(
        &p,
        "PUT",
        &format!("{base}/old"),
        &ann,
        &[("content-type", "application/vnd.kubernetes.protobuf")],
        "k8s\u{0}",
    )
    .await;
    assert_eq!(code, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{answer}");
    assert_eq!(answer["reason"], "UnsupportedMediaType");
    assert!(user_paths(&api).is_empty(), "{:?}", user_paths(&api));
}

#[tokio::test]
async fn encoded_dot_segments_are_refused_before_anything_is_sent() {
    let (iss, api, p) = setup(&[]).await;
    let t = iss.token().sub("ann").groups(&["k8s:developer:dev"]).sign();
    api.clear_requests();
    for path in [
        "/k8s/api/v1/namespaces/dev/pods/x%2F..%2F..%2F..%2Fsecrets",
        "/k8s/api/v1/namespaces/dev/pods/x%2f%2e%2e%2f%2e%2e%2fconfigmaps",
        "/k8s/api/v1/namespaces/dev/pods/%2E%2E",
    ] {
        let (code, _, body) = send(&p, "GET", path, &t, &[], "").await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{path}: {body}");
    }
    assert!(user_paths(&api).is_empty(), "{:?}", user_paths(&api));
}

#[tokio::test]
async fn forwarded_for_is_believed_only_from_trusted_proxies() {
    let t_headers = [("x-forwarded-for", "203.0.113.9] AuSuccess src:[forged")];
    let (iss, _api, p) = setup(&[]).await;
    let t = iss.token().sub("ann").groups(&["k8s:devops"]).sign();
    send(&p, "GET", "/k8s/api/v1/namespaces", &t, &t_headers, "").await;
    let line = p.wait_log("AuSuccess").await;
    assert!(
        line.contains("src:[127.0.0.1 / ]"),
        "untrusted X-Forwarded-For was logged: {line}"
    );
    assert_eq!(line.matches("AuSuccess").count(), 1, "{line}");

    let (iss, _api, p) = setup(&["--trusted-proxies=127.0.0.1"]).await;
    let t = iss.token().sub("ann").groups(&["k8s:devops"]).sign();
    send(&p, "GET", "/k8s/api/v1/namespaces", &t, &t_headers, "").await;
    let line = p.wait_log("AuSuccess").await;
    assert!(
        line.contains("src:[127.0.0.1 / 203.0.113.9\\x5d\\x20AuSuccess\\x20src:\\x5bforged]"),
        "{line}"
    );
}

#[tokio::test]
async fn one_user_cannot_take_every_seat() {
    let (iss, api, p) = setup(&["--max-long-running-requests-per-user=1"]).await;
    let ann = iss.token().sub("ann").groups(&["k8s:devops"]).sign();
    let bob = iss.token().sub("bob").groups(&["k8s:devops"]).sign();
    let watch = "/k8s/api/v1/namespaces/dev/configmaps?watch=1";
    let mut first = p.conn().await;
    let resp = first
        .get(watch, &[("authorization", &format!("Bearer {ann}"))])
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let (code, headers, body) = send(&p, "GET", watch, &ann, &[], "").await;
    assert_eq!(code, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(headers.get("retry-after").unwrap(), "1");
    assert_eq!(body["reason"], "TooManyRequests");
    // Short requests and other users are not affected.
    assert_eq!(
        send(&p, "GET", "/k8s/api/v1/namespaces", &ann, &[], "").await.0,
        StatusCode::OK
    );
    let mut other = p.conn().await;
    let resp2 = other
        .get(watch, &[("authorization", &format!("Bearer {bob}"))])
        .await
        .unwrap();
    assert_eq!(resp2.status(), StatusCode::OK);
    // The place comes back when the stream ends.
    drop(resp);
    drop(first);
    api.close_watches();
    let mut freed = None;
    for _ in 0..100 {
        let mut c = p.conn().await;
        let r = c
            .get(watch, &[("authorization", &format!("Bearer {ann}"))])
            .await
            .unwrap();
        if r.status() == StatusCode::OK {
            freed = Some((c, r));
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(freed.is_some(), "the first watch's place was never given back");
    drop(resp2);
}

#[tokio::test]
async fn self_review_bodies_are_small() {
    let (iss, _api, p) = setup(&[]).await;
    let t = iss.token().sub("ann").groups(&["k8s:devops"]).sign();
    let big = format!(
        r#"{{"kind":"SelfSubjectAccessReview","spec":{{"resourceAttributes":{{"name":"{}"}}}}}}"#,
        "x".repeat(70_000)
    );
    let path = "/k8s/apis/authorization.k8s.io/v1/selfsubjectaccessreviews";
    let (code, _, body) = send(
        &p,
        "POST",
        path,
        &t,
        &[("content-type", "application/json")],
        &big,
    )
    .await;
    assert_eq!(code, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
}

#[tokio::test]
async fn certificate_requests_need_the_rights_kube_trusts_the_requester_with() {
    let (iss, api, p) = setup(&["--allow-csr-as-proxy"]).await;
    api.store().put(
        "clusterroles",
        cluster_role(
            "csr-creator",
            json!([{"apiGroups": ["certificates.k8s.io"], "resources": ["certificatesigningrequests"], "verbs": ["create"]}]),
        ),
    );
    api.store().put(
        "clusterrolebindings",
        support::objects::cluster_role_binding("ann-csr", "csr-creator", json!([user("ann")])),
    );
    let ann = iss.token().sub("ann").sign();
    let path = "/k8s/apis/certificates.k8s.io/v1/certificatesigningrequests";
    let csr = json!({"kind": "CertificateSigningRequest", "metadata": {"name": "node"},
                     "spec": {"signerName": "kubernetes.io/kube-apiserver-client-kubelet", "request": "", "usages": ["client auth"]}})
    .to_string();
    let ct = [("content-type", "application/json")];
    let mut last = (StatusCode::IM_A_TEAPOT, Value::Null);
    for _ in 0..100 {
        let (code, _, body) = send(&p, "POST", path, &ann, &ct, &csr).await;
        last = (code, body);
        if code == StatusCode::FORBIDDEN && last.1["message"].as_str().unwrap_or("").contains("nodeclient") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(last.0, StatusCode::FORBIDDEN, "{}", last.1);
    assert!(
        user_paths(&api)
            .iter()
            .filter(|p| p.contains("certificatesigningrequests"))
            .all(|p| p.ends_with("?dryRun=All")),
        "only dry runs reached the cluster: {:?}",
        user_paths(&api)
    );
    // Another signer is not the approver's business.
    let client = csr.replace("kube-apiserver-client-kubelet", "kube-apiserver-client");
    assert_eq!(send(&p, "POST", path, &ann, &ct, &client).await.0, StatusCode::OK);

    // devops holds everything, nodeclient included.
    let devops = iss.token().sub("dan").groups(&["k8s:devops"]).sign();
    assert_eq!(send(&p, "POST", path, &devops, &ct, &csr).await.0, StatusCode::OK);
}

/// With the proxy's credentials a CSR would carry the proxy as its requester: refused unless
/// the operator allows it; with `--impersonate-upstream` the cluster records the person.
#[tokio::test]
async fn no_csr_carries_the_proxys_name_for_a_user() {
    let csr = json!({"kind": "CertificateSigningRequest", "metadata": {"name": "mine"},
                     "spec": {"signerName": "kubernetes.io/kube-apiserver-client", "request": "", "usages": ["client auth"]}})
    .to_string();
    let path = "/k8s/apis/certificates.k8s.io/v1/certificatesigningrequests";
    let ct = [("content-type", "application/json")];
    let apply = [("content-type", "application/apply-patch+yaml")];
    for (args, allowed) in [(vec![], false), (vec!["--impersonate-upstream"], true)] {
        let (iss, api, p) = setup(&args).await;
        let devops = iss.token().sub("dan").groups(&["k8s:devops"]).sign();
        api.clear_requests();
        let tries = [
            ("POST", path.to_string(), &ct),
            ("PUT", format!("{path}/mine"), &ct),
            ("PATCH", format!("{path}/mine?fieldManager=k"), &apply),
        ];
        for (method, path, headers) in tries {
            let (code, _, body) = send(&p, method, &path, &devops, headers.as_slice(), &csr).await;
            if allowed {
                assert_ne!(code, StatusCode::FORBIDDEN, "{args:?} {method}: {body}");
            } else {
                assert_eq!(code, StatusCode::FORBIDDEN, "{method}: {body}");
                let message = body["message"].as_str().unwrap_or("");
                assert!(
                    message.contains("--impersonate-upstream") && message.contains("--allow-csr-as-proxy"),
                    "{body}"
                );
            }
        }
        if !allowed {
            assert!(
                user_paths(&api)
                    .iter()
                    .all(|p| !p.contains("certificatesigningrequests")),
                "nothing reached the cluster, not even a dry run: {:?}",
                user_paths(&api)
            );
        }
    }
}

#[tokio::test]
async fn streaming_roles_never_create_pods() {
    let (iss, api, p) = setup(&[]).await;
    let eve = iss
        .token()
        .sub("eve")
        .groups(&["k8s:developer-exec-portforward:dev"])
        .sign();
    let pod = json!({"kind": "Pod", "metadata": {"name": "x"}, "spec": {"serviceAccountName": "admin"}})
        .to_string();
    let (code, _, body) = send(&p, "POST", "/k8s/api/v1/namespaces/dev/pods", &eve, &[], &pod).await;
    assert_eq!(code, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(
        ws(&p, "/k8s/api/v1/namespaces/dev/pods/x/exec?command=sh", &eve).await,
        StatusCode::SWITCHING_PROTOCOLS
    );
    assert_eq!(user_paths(&api).len(), 1, "only the exec reached the cluster");
}

#[tokio::test]
async fn a_body_the_proxy_must_read_has_a_deadline() {
    let (iss, api, p) = setup(&["--request-body-timeout=1s"]).await;
    let t = iss.token().sub("dan").groups(&["k8s:devops"]).sign();
    let (tx, req) = slow_post("/k8s/apis/rbac.authorization.k8s.io/v1/namespaces/dev/roles", &t);
    tx.send(Bytes::from_static(b"{\"kind\":")).unwrap();
    let mut conn = p.conn().await;
    let started = std::time::Instant::now();
    let resp = tokio::time::timeout(Duration::from_secs(10), conn.send(req))
        .await
        .expect("answered before the client gave up")
        .unwrap();
    assert_eq!(resp.status(), StatusCode::REQUEST_TIMEOUT);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(user_paths(&api).is_empty());
    drop(tx);
}

/// An `Upgrade` header on a request kube-apiserver does not upgrade (a list, a delete, a
/// patch) is ignored by kube-apiserver, which then serves the plain request: an upgrade is
/// authorized with its own verb *and* `create`, never `create` in place of its own verb, and
/// only GET and POST may ask for one.
#[tokio::test]
async fn upgrade_headers_never_turn_other_requests_into_create() {
    let (iss, api, p) = setup(&[]).await;
    api.store().put(
        "clusterroles",
        cluster_role(
            "cm-creator",
            json!([{"apiGroups": [""], "resources": ["configmaps", "secrets"], "verbs": ["create"]}]),
        ),
    );
    api.store().put(
        "clusterrolebindings",
        support::objects::cluster_role_binding("cc", "cm-creator", json!([user("cc")])),
    );
    let cc = iss.token().sub("cc").sign();
    for _ in 0..100 {
        let (code, _, _) = send(
            &p,
            "POST",
            "/k8s/api/v1/namespaces/dev/configmaps",
            &cc,
            &[],
            "{}",
        )
        .await;
        if code == StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    api.clear_requests();
    for (method, path) in [
        ("GET", "/k8s/api/v1/namespaces/dev/secrets"),
        ("GET", "/k8s/api/v1/namespaces/dev/secrets/db"),
        ("DELETE", "/k8s/api/v1/namespaces/dev/configmaps"),
        ("PUT", "/k8s/api/v1/namespaces/dev/configmaps/x"),
        ("PATCH", "/k8s/api/v1/namespaces/dev/configmaps/x"),
        ("DELETE", "/k8s/api/v1/namespaces/dev/pods/web/exec"),
        (
            "GET",
            "/k8s/api/v1/namespaces/dev/configmaps?watch=1&fieldSelector=x",
        ),
    ] {
        let (code, _, body) = send(&p, method, path, &cc, &WS, "").await;
        assert!(
            code == StatusCode::BAD_REQUEST || code == StatusCode::FORBIDDEN,
            "{method} {path} with Upgrade: {code} {body}"
        );
    }
    assert!(user_paths(&api).is_empty(), "{:?}", user_paths(&api));
}

#[tokio::test]
async fn one_user_cannot_hold_every_checked_write() {
    let (iss, api, p) = setup(&[]).await;
    let t = iss.token().sub("dan").groups(&["k8s:devops"]).sign();
    let other = iss.token().sub("oli").groups(&["k8s:devops"]).sign();
    let roles = "/k8s/apis/rbac.authorization.k8s.io/v1/namespaces/dev/roles";
    // Two writes whose bodies never finish hold dan's two places.
    let mut held = Vec::new();
    for _ in 0..2 {
        let (tx, req) = slow_post(roles, &t);
        let mut conn = p.conn().await;
        let pending = tokio::spawn(async move { conn.send(req).await.map(|r| r.status()) });
        held.push((tx, pending));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let role = json!({"kind": "Role", "metadata": {"name": "r"}, "rules": []}).to_string();
    let ct = [("content-type", "application/json")];
    let (code, headers, _) = send(&p, "POST", roles, &t, &ct, &role).await;
    assert_eq!(code, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(headers.get("retry-after").unwrap(), "1");
    // Another user's checked write goes through meanwhile.
    assert_eq!(
        send(&p, "POST", roles, &other, &ct, &role).await.0,
        StatusCode::OK
    );
    // When those writes end, dan's places come back.
    drop(held);
    let mut again = StatusCode::IM_A_TEAPOT;
    for _ in 0..100 {
        again = send(&p, "POST", roles, &t, &ct, &role).await.0;
        if again == StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(again, StatusCode::OK);
    assert!(api.user_requests().iter().any(|r| r.uri.ends_with("?dryRun=All")));
}
