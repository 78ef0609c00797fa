//! RBAC inside the proxy, fed by the fake API server's own RBAC objects and namespaces, which
//! change while the proxy runs.

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use serde_json::{Value, json};
use support::apiserver::{FakeApi, apiserver};
use support::client::collect;
use support::full;
use support::issuer::{Issuer, KeyKind, issuer};
use support::objects::{cluster_role, cluster_role_binding, group, namespace, role, role_binding, user};
use support::proxy::{Cred, TestProxy, proxy};

async fn setup(args: &[&str]) -> (Issuer, FakeApi, TestProxy) {
    let iss = issuer().key_kind(KeyKind::EcP256).run().await;
    let api = apiserver().name("k8s").run().await;
    for ns in ["dev", "prod"] {
        api.store().put("namespaces", namespace(ns));
    }
    let mut b =
        proxy(&iss)
            .arg("--oidc-signing-algs=ES256")
            .cluster("k8s", &api, "", Cred::Token("t".into()));
    for a in args {
        b = b.arg(a);
    }
    let p = b.run().await;
    (iss, api, p)
}

/// Polls until `path` answers `want` (RBAC changes arrive by watch, a few ms later).
async fn eventually(p: &TestProxy, path: &str, token: &str, want: StatusCode) -> Bytes {
    let mut last = (StatusCode::IM_A_TEAPOT, Bytes::new());
    for _ in 0..100 {
        let (code, _, body) = p.get(path, Some(token)).await;
        if code == want {
            return body;
        }
        last = (code, body);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "{path}: wanted {want}, last got {} {}",
        last.0,
        String::from_utf8_lossy(&last.1)
    );
}

fn message(body: &Bytes) -> String {
    let v: Value = serde_json::from_slice(body).expect("Status JSON");
    v["message"].as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn namespace_roles_grant_only_their_namespace_with_kube_apiserver_messages() {
    let (iss, api, p) = setup(&[]).await;
    let t = iss.token().sub("ann").groups(&["k8s:developer:dev"]).sign();
    assert_eq!(
        p.get("/k8s/api/v1/namespaces/dev/pods", Some(&t)).await.0,
        StatusCode::OK
    );
    assert_eq!(
        p.get("/k8s/api/v1/namespaces/dev/pods/web/log?follow=true", Some(&t))
            .await
            .0,
        StatusCode::OK
    );

    let (code, _, body) = p.get("/k8s/api/v1/namespaces/prod/pods", Some(&t)).await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    assert_eq!(
        message(&body),
        r#"pods is forbidden: User "ann" cannot list resource "pods" in API group "" in the namespace "prod""#
    );
    let status: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status["reason"], "Forbidden");
    assert_eq!(status["details"]["kind"], "pods");

    let (code, _, body) = p.get("/k8s/api/v1/pods", Some(&t)).await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    assert_eq!(
        message(&body),
        r#"pods is forbidden: User "ann" cannot list resource "pods" in API group "" at the cluster scope"#
    );
    let (code, _, body) = p.get("/k8s/api/v1/namespaces/dev/secrets/s1", Some(&t)).await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    assert_eq!(
        message(&body),
        r#"secrets "s1" is forbidden: User "ann" cannot get resource "secrets" in API group "" in the namespace "dev""#
    );
    assert!(
        api.user_requests()
            .iter()
            .all(|r| !r.uri.contains("prod") && !r.uri.contains("secrets")),
        "denied requests never leave"
    );

    // Namespaces come and go: the built-in roles follow them.
    let qa = iss.token().sub("ann").groups(&["k8s:developer:qa"]).sign();
    assert_eq!(
        p.get("/k8s/api/v1/namespaces/qa/pods", Some(&qa)).await.0,
        StatusCode::FORBIDDEN
    );
    api.store().put("namespaces", namespace("qa"));
    eventually(&p, "/k8s/api/v1/namespaces/qa/pods", &qa, StatusCode::OK).await;
    api.store().delete("namespaces", "", "qa");
    eventually(&p, "/k8s/api/v1/namespaces/qa/pods", &qa, StatusCode::FORBIDDEN).await;
}

#[tokio::test]
async fn cluster_rbac_changes_are_followed_including_after_a_watch_ends() {
    let (iss, api, p) = setup(&[]).await;
    let t = iss.token().sub("bob").sign();
    let path = "/k8s/api/v1/namespaces/dev/configmaps";
    assert_eq!(p.get(path, Some(&t)).await.0, StatusCode::FORBIDDEN);

    api.store().put(
        "roles",
        role(
            "dev",
            "cm-reader",
            json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}]),
        ),
    );
    api.store().put(
        "rolebindings",
        role_binding("dev", "bob-reads", "Role", "cm-reader", json!([user("bob")])),
    );
    eventually(&p, path, &t, StatusCode::OK).await;

    // Modify the role: the verb is gone, so is the access.
    api.store().put(
        "roles",
        role(
            "dev",
            "cm-reader",
            json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]),
        ),
    );
    eventually(&p, path, &t, StatusCode::FORBIDDEN).await;

    // The API server ends the watches (as at a timeout); changes after that still arrive.
    api.store().close_watches();
    api.store().put(
        "roles",
        role(
            "dev",
            "cm-reader",
            json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}]),
        ),
    );
    eventually(&p, path, &t, StatusCode::OK).await;

    // Revoking in the cluster revokes through the proxy.
    api.store().delete("rolebindings", "dev", "bob-reads");
    eventually(&p, path, &t, StatusCode::FORBIDDEN).await;

    // ClusterRoleBinding to a ClusterRole, by group.
    api.store().put(
        "clusterroles",
        cluster_role(
            "ns-lister",
            json!([{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list"]}]),
        ),
    );
    api.store().put(
        "clusterrolebindings",
        cluster_role_binding("listers", "ns-lister", json!([group("listers")])),
    );
    let g = iss.token().sub("carl").groups(&["listers"]).sign();
    eventually(&p, "/k8s/api/v1/namespaces", &g, StatusCode::OK).await;
}

async fn upgrade_status(p: &TestProxy, token: &str, method: &str, upgrade: &str, path: &str) -> StatusCode {
    let mut conn = p.conn().await;
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {token}"))
        .header("connection", "Upgrade")
        .header("upgrade", upgrade)
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-protocol", "v5.channel.k8s.io")
        .header("x-stream-protocol-version", "v4.channel.k8s.io")
        .body(full(Bytes::new()))
        .unwrap();
    conn.send(req).await.unwrap().status()
}

#[tokio::test]
async fn read_only_roles_can_never_open_a_shell() {
    let (iss, _api, p) = setup(&[]).await;
    let watcher = iss.token().sub("wendy").groups(&["k8s:watcher"]).sign();
    let execer = iss
        .token()
        .sub("eve")
        .groups(&["k8s:developer-exec-portforward:dev"])
        .sign();
    let exec = "/k8s/api/v1/namespaces/dev/pods/web/exec?command=sh&stdin=true&tty=true";
    let pf = "/k8s/api/v1/namespaces/dev/pods/web/portforward?ports=8080";
    for (method, upgrade) in [("GET", "websocket"), ("POST", "SPDY/3.1")] {
        assert_eq!(
            upgrade_status(&p, &watcher, method, upgrade, exec).await,
            StatusCode::FORBIDDEN,
            "watcher {upgrade} exec"
        );
        assert_eq!(
            upgrade_status(&p, &watcher, method, upgrade, pf).await,
            StatusCode::FORBIDDEN,
            "watcher {upgrade} pf"
        );
        assert_eq!(
            upgrade_status(&p, &execer, method, upgrade, exec).await,
            StatusCode::SWITCHING_PROTOCOLS,
            "exec role {upgrade}"
        );
        assert_eq!(
            upgrade_status(&p, &execer, method, upgrade, pf).await,
            StatusCode::SWITCHING_PROTOCOLS,
            "exec role {upgrade} pf"
        );
    }
    // The watcher still reads everything.
    assert_eq!(
        p.get("/k8s/api/v1/namespaces/prod/pods/web/log", Some(&watcher))
            .await
            .0,
        StatusCode::OK
    );
    let (code, _, body) = p.get(exec, Some(&watcher)).await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    assert_eq!(
        message(&body),
        r#"pods "web" is forbidden: User "wendy" cannot create resource "pods/exec" in API group "" in the namespace "dev""#
    );
}

/// A ClusterRole created inside the cluster with a built-in role's name changes nothing the
/// built-in groups grant: the watcher still cannot exec, devops still deletes. The collision is
/// shown on `/clusters` and counted on `/metrics`.
#[tokio::test]
async fn roles_written_in_the_cluster_cannot_redefine_built_in_roles() {
    let (iss, api, p) = setup(&[]).await;
    let watcher = iss.token().sub("wendy").groups(&["k8s:watcher"]).sign();
    let devops = iss.token().sub("dan").groups(&["k8s:devops"]).sign();
    let carl = iss.token().sub("carl").sign();
    api.store().put(
        "clusterroles",
        cluster_role(
            "k8s:watcher",
            json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]),
        ),
    );
    api.store().put(
        "clusterroles",
        cluster_role(
            "k8s:devops",
            json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]),
        ),
    );
    // The cluster's own binding of the colliding name gets the cluster's role.
    api.store().put(
        "clusterrolebindings",
        cluster_role_binding("carl-watcher", "k8s:watcher", json!([user("carl")])),
    );
    eventually(&p, "/k8s/api/v1/namespaces/dev/secrets", &carl, StatusCode::OK).await;
    let exec = "/k8s/api/v1/namespaces/dev/pods/web/exec?command=sh&stdin=true&tty=true";
    assert_eq!(
        upgrade_status(&p, &watcher, "GET", "websocket", exec).await,
        StatusCode::FORBIDDEN,
        "the watcher still cannot exec"
    );
    assert_eq!(
        p.get("/k8s/api/v1/namespaces/dev/pods", Some(&watcher)).await.0,
        StatusCode::OK
    );
    let mut conn = p.conn().await;
    let del = Request::delete("/k8s/api/v1/namespaces/dev/configmaps/x")
        .header("authorization", format!("Bearer {devops}"))
        .body(full(Bytes::new()))
        .unwrap();
    assert_ne!(
        conn.send(del).await.unwrap().status(),
        StatusCode::FORBIDDEN,
        "devops still deletes"
    );
    let clusters = p.probe_json("/clusters").await;
    assert_eq!(
        clusters["clusters"][0]["roleNameCollisions"],
        json!(["ClusterRole k8s:devops", "ClusterRole k8s:watcher"]),
        "{clusters}"
    );
    let metrics = p.probe_text("/metrics").await;
    assert!(
        metrics.contains(r#"kop_rbac_role_name_collisions{cluster="k8s"} 2"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn non_resource_urls_and_review_apis_are_authorized() {
    let (iss, api, p) = setup(&[]).await;
    let t = iss.token().sub("ann").groups(&["k8s:developer:dev"]).sign();
    let (code, _, body) = p.get("/k8s/version", Some(&t)).await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    assert_eq!(
        message(&body),
        r#"forbidden: User "ann" cannot get path "/version""#
    );
    api.store().put(
        "clusterroles",
        cluster_role(
            "system:public-info-viewer",
            json!([{"nonResourceURLs": ["/version", "/healthz", "/api", "/api/*"], "verbs": ["get"]}]),
        ),
    );
    api.store().put(
        "clusterrolebindings",
        cluster_role_binding(
            "system:public-info-viewer",
            "system:public-info-viewer",
            json!([group("system:authenticated")]),
        ),
    );
    eventually(&p, "/k8s/version", &t, StatusCode::OK).await;
    assert_eq!(p.get("/k8s/api/v1", Some(&t)).await.0, StatusCode::OK);

    // Reviews other than the self-reviews are ordinary resources.
    let mut conn = p.conn().await;
    let req = Request::post("/k8s/apis/authorization.k8s.io/v1/subjectaccessreviews")
        .header("authorization", format!("Bearer {t}"))
        .header("content-type", "application/json")
        .body(full(
            r#"{"spec":{"user":"admin","resourceAttributes":{"verb":"delete","resource":"nodes"}}}"#,
        ))
        .unwrap();
    assert_eq!(conn.send(req).await.unwrap().status(), StatusCode::FORBIDDEN);
}

async fn post_json(p: &TestProxy, token: &str, path: &str, body: Value) -> (StatusCode, Value) {
    let mut conn = p.conn().await;
    let req = Request::post(path)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(full(body.to_string()))
        .unwrap();
    let resp = conn.send(req).await.unwrap();
    let code = resp.status();
    let body = collect(resp.into_body()).await;
    (code, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn self_reviews_tell_the_truth_about_the_proxy() {
    let (iss, api, p) = setup(&[]).await;
    let t = iss.token().sub("wendy").groups(&["k8s:watcher", "team-a"]).sign();
    let review = |verb: &str, sub: &str| {
        json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
               "spec": {"resourceAttributes": {"namespace": "dev", "verb": verb, "resource": "pods", "subresource": sub}}})
    };
    let ssar = "/k8s/apis/authorization.k8s.io/v1/selfsubjectaccessreviews";
    let (code, v) = post_json(&p, &t, ssar, review("create", "exec")).await;
    assert_eq!(code, StatusCode::CREATED, "{v}");
    assert_eq!(v["status"]["allowed"], false, "{v}");
    let (_, v) = post_json(&p, &t, ssar, review("list", "")).await;
    assert_eq!(v["status"]["allowed"], true, "{v}");

    let (code, v) = post_json(
        &p,
        &t,
        "/k8s/apis/authentication.k8s.io/v1/selfsubjectreviews",
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED, "{v}");
    assert_eq!(v["status"]["userInfo"]["username"], "wendy");
    assert_eq!(
        v["status"]["userInfo"]["groups"],
        json!(["k8s:watcher", "team-a", "system:authenticated"])
    );

    let (code, v) = post_json(
        &p,
        &t,
        "/k8s/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
        json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectRulesReview", "spec": {"namespace": "dev"}}),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED, "{v}");
    let rules = v["status"]["resourceRules"].as_array().expect("resourceRules");
    assert!(
        rules
            .iter()
            .any(|r| r["verbs"] == json!(["get", "list", "watch"])),
        "{v}"
    );
    assert!(
        api.user_requests().is_empty(),
        "self-reviews are answered by the proxy, never forwarded"
    );
}

#[tokio::test]
async fn role_file_grants_and_reloads_keeping_the_last_good_version() {
    let dir = support::TempDir::new("kop-roles");
    let good = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: node-reader, clusterName: k8s}
rules:
- apiGroups: [""]
  resources: [nodes]
  verbs: [get, list]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: ops-nodes, clusterName: k8s}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: node-reader}
subjects:
- {kind: Group, name: ops, apiGroup: rbac.authorization.k8s.io}
"#;
    let file = dir.write("roles.yaml", good);
    let arg = format!("--role-config={}", file.display());
    let (iss, _api, p) = setup(&[&arg, "--config-reload-interval=100ms"]).await;
    let t = iss.token().sub("olga").groups(&["ops"]).sign();
    assert_eq!(p.get("/k8s/api/v1/nodes", Some(&t)).await.0, StatusCode::OK);

    // A broken edit is refused; the last good file stays in force.
    std::fs::write(&file, "kind: ClusterRoleBinding\nmetadata: [oops\n").unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(p.get("/k8s/api/v1/nodes", Some(&t)).await.0, StatusCode::OK);

    // A good edit that drops the binding takes the access away.
    std::fs::write(&file, &good[..good.find("---").unwrap()]).unwrap();
    eventually(&p, "/k8s/api/v1/nodes", &t, StatusCode::FORBIDDEN).await;
}

#[tokio::test]
async fn an_unreachable_cluster_is_reported_and_does_not_hold_back_the_others() {
    let iss = issuer().key_kind(KeyKind::EcP256).run().await;
    let good = apiserver().name("good").run().await;
    let gone = apiserver().name("gone").run().await;
    gone.shutdown();
    let p = proxy(&iss)
        .arg("--oidc-signing-algs=ES256")
        .arg("--cluster-ready-timeout=2s")
        .cluster("good", &good, "", Cred::Token("t".into()))
        .cluster("gone", &gone, "", Cred::Token("t".into()))
        .raw_cluster("broken", "this is not a kubeconfig")
        .no_wait()
        .run()
        .await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(p.probe_status("/ready").await, 503, "waiting for cluster gone");
    p.wait_ready().await;
    let t = iss
        .token()
        .groups(&["good:devops", "gone:devops", "broken:devops"])
        .sign();
    assert_eq!(p.get("/good/api/v1/pods", Some(&t)).await.0, StatusCode::OK);
    assert_eq!(
        p.get("/gone/api/v1/pods", Some(&t)).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        p.get("/broken/api/v1/pods", Some(&t)).await.0,
        StatusCode::NOT_FOUND,
        "a broken entry is skipped"
    );
}
