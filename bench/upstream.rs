//! Benchmark upstream: a fast fake Kubernetes API server over TLS (h2 and HTTP/1.1 by ALPN).
//!
//! ```text
//! bench-upstream --cert server.crt --key server.key --addr-file upstream.addr \
//!                [--list-mb 8] [--workers 0] [--listen 127.0.0.1:0] [--rbac-objects 0]
//! ```
//! Every answer is precomputed; a leading `/bench` path segment is ignored, so clients use the
//! same URLs against the upstream, the pass-through and kube-oidc-proxy (`/bench` is the cluster).
//!
//! - `GET` of namespaces and of the four RBAC collections: an empty list (resourceVersion 1),
//!   so the proxy's RBAC snapshot becomes ready; with `--rbac-objects N`, N objects as a real
//!   cluster sends them (a tenth roles, the rest bindings, over 100 namespaces) for `bench/memory`;
//! - any request with `watch=true` (or `watch=1`): `200`, then a stream that stays idle;
//! - `GET .../pods` (a pod list): a `--list-mb` MB PodList, streamed in 64 KiB frames;
//! - any request with `Connection: Upgrade`: `101`, then every byte is echoed back;
//! - anything else: a small JSON object (a ConfigMap of about 600 bytes).

#[path = "common/mod.rs"]
mod common;

use std::{path::PathBuf, sync::Arc};

use bytes::Bytes;
use common::{Args, Body, Chunked, Idle, full};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::{Body as _, Incoming};
use hyper_util::rt::TokioIo;
use serde_json::json;

const COLLECTIONS: [(&str, &str, &str); 5] = [
    ("/api/v1/namespaces", "NamespaceList", "v1"),
    (
        "/apis/rbac.authorization.k8s.io/v1/roles",
        "RoleList",
        "rbac.authorization.k8s.io/v1",
    ),
    (
        "/apis/rbac.authorization.k8s.io/v1/clusterroles",
        "ClusterRoleList",
        "rbac.authorization.k8s.io/v1",
    ),
    (
        "/apis/rbac.authorization.k8s.io/v1/rolebindings",
        "RoleBindingList",
        "rbac.authorization.k8s.io/v1",
    ),
    (
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
        "ClusterRoleBindingList",
        "rbac.authorization.k8s.io/v1",
    ),
];

struct Canned {
    small: Bytes,
    list: Bytes,
    empty_lists: Vec<(&'static str, Bytes)>,
}

fn small_object() -> Bytes {
    let v = json!({
        "kind": "ConfigMap", "apiVersion": "v1",
        "metadata": {
            "name": "small", "namespace": "default", "uid": "6f1f0c5e-6a2b-4f7e-9a51-3b1d2c4e5f60",
            "resourceVersion": "123456", "creationTimestamp": "2026-01-01T00:00:00Z",
            "labels": {"app": "bench", "tier": "backend"},
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}
        },
        "data": {"key1": "value1", "key2": "a moderately sized value for the benchmark", "key3": "x".repeat(200)}
    });
    Bytes::from(serde_json::to_vec(&v).expect("json"))
}

/// A PodList of about `mb` megabytes of realistic-looking pods.
fn pod_list(mb: usize) -> Bytes {
    let target = mb * 1024 * 1024;
    let mut out = Vec::with_capacity(target + 4096);
    out.extend_from_slice(
        br#"{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"123456"},"items":["#,
    );
    let mut i = 0usize;
    while out.len() < target {
        if i > 0 {
            out.push(b',');
        }
        let pod = json!({
            "metadata": {"name": format!("web-{i:06}"), "namespace": "default",
                         "uid": format!("00000000-0000-4000-8000-{i:012}"), "resourceVersion": format!("{}", 100000 + i),
                         "labels": {"app": "web", "pod-template-hash": "5d9c7b"},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5d9c7b", "uid": "1", "controller": true}]},
            "spec": {"containers": [{"name": "app", "image": "registry.example.com/web:1.2.3",
                                     "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                                     "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}],
                     "nodeName": format!("node-{}", i % 50), "serviceAccountName": "default"},
            "status": {"phase": "Running", "podIP": format!("10.0.{}.{}", (i / 250) % 250, i % 250),
                       "conditions": [{"type": "Ready", "status": "True"}]}
        });
        out.extend_from_slice(&serde_json::to_vec(&pod).expect("json"));
        i += 1;
    }
    out.extend_from_slice(b"]}");
    Bytes::from(out)
}

fn json_response(body: Bytes) -> Response<Body> {
    let mut r = Response::new(full(body));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn wants_upgrade(headers: &HeaderMap) -> Option<HeaderValue> {
    let conn_upgrade = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    headers.get(header::UPGRADE).filter(|_| conn_upgrade).cloned()
}

fn websocket_accept(key: &str) -> String {
    use base64::Engine as _;
    let input = format!("{key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, input.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(d.as_ref())
}

async fn handle(canned: Arc<Canned>, mut req: Request<Incoming>) -> Response<Body> {
    if let Some(proto) = wants_upgrade(req.headers()) {
        let on_upgrade = hyper::upgrade::on(&mut req);
        let mut resp = Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(header::CONNECTION, "Upgrade")
            .header(header::UPGRADE, proto.clone());
        if proto.as_bytes().eq_ignore_ascii_case(b"websocket") {
            if let Some(k) = req
                .headers()
                .get("sec-websocket-key")
                .and_then(|v| v.to_str().ok())
            {
                resp = resp.header("sec-websocket-accept", websocket_accept(k));
            }
        } else if let Some(v) = req.headers().get("x-stream-protocol-version") {
            resp = resp.header("x-stream-protocol-version", v.clone());
        }
        tokio::spawn(async move {
            let Ok(up) = on_upgrade.await else { return };
            let (mut rd, mut wr) = tokio::io::split(TokioIo::new(up));
            let _ = tokio::io::copy(&mut rd, &mut wr).await;
            let _ = tokio::io::AsyncWriteExt::shutdown(&mut wr).await;
        });
        return resp.body(full(Bytes::new())).expect("101");
    }
    let path = req.uri().path();
    let path = match path.strip_prefix("/bench") {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => rest,
        _ => path,
    };
    let query = req.uri().query().unwrap_or("");
    let watch = query.split('&').any(|kv| kv == "watch=true" || kv == "watch=1");
    if watch {
        let mut r = Response::new(Idle.boxed());
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        return r;
    }
    if path == "/apis/authentication.k8s.io/v1/tokenreviews" && req.method() == http::Method::POST {
        return token_review(req).await;
    }
    if let Some((_, body)) = canned.empty_lists.iter().find(|(p, _)| *p == path) {
        return json_response(body.clone());
    }
    if path.ends_with("/pods") {
        let mut r = Response::new(Chunked::new(canned.list.clone(), 64 * 1024).boxed());
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        return r;
    }
    // Small GETs (and anything else): drain a request body if there is one, answer small.
    if !req.body().is_end_stream() {
        let _ = req.into_body().collect().await;
    }
    json_response(canned.small.clone())
}

/// A TokenReview, as `--token-passthrough` sends it: tokens `sa-<n>` are the service account
/// `bench:<n>` in group `bench:devops` (the built-in devops role of cluster `bench`), anything
/// else is refused.
/// `n` RBAC objects spread over the collections as a cluster's are: a tenth roles (half Roles in
/// 100 namespaces, half ClusterRoles), the rest bindings (half each kind), with the metadata
/// kube-apiserver sends (uid, resourceVersion, creationTimestamp, one managedFields entry).
fn rbac_items(path: &str, n: usize) -> Vec<serde_json::Value> {
    let roles = n / 10;
    let bindings = n - roles;
    let meta = |name: String, ns: Option<String>, i: usize| {
        let mut m = json!({"name": name, "uid": format!("0f1e2d3c-{i:04x}-4b5a-8c7d-{i:012x}"),
            "resourceVersion": format!("{}", 1000 + i), "creationTimestamp": "2026-11-30T09:12:44Z",
            "managedFields": [{"manager": "kubectl-create", "operation": "Update",
                "apiVersion": "rbac.authorization.k8s.io/v1", "time": "2026-11-30T09:12:44Z",
                "fieldsType": "FieldsV1", "fieldsV1": {"f:roleRef": {}, "f:subjects": {}}}]});
        if let Some(ns) = ns {
            m["namespace"] = json!(ns);
        }
        m
    };
    let ns = |i: usize| format!("ns{}", i % 100);
    let rules = |i: usize| {
        json!([{"apiGroups": [""], "resources": [format!("res{i}"), "configmaps"], "verbs": ["get", "list"]},
               {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get"]}])
    };
    match path {
        "/api/v1/namespaces" if n > 0 => (0..100)
            .map(|i| json!({"metadata": meta(format!("ns{i}"), None, i)}))
            .collect(),
        "/apis/rbac.authorization.k8s.io/v1/roles" => (0..roles / 2)
            .map(|i| json!({"metadata": meta(format!("role{i}"), Some(ns(i)), i), "rules": rules(i)}))
            .collect(),
        "/apis/rbac.authorization.k8s.io/v1/clusterroles" => (0..roles - roles / 2)
            .map(|i| json!({"metadata": meta(format!("crole{i}"), None, i), "rules": rules(i)}))
            .collect(),
        // RoleBinding i, in namespace ns<i mod 100>, binds user `bench-user-<i>` (bench-issuer
        // --users) to a Role of that same namespace, which grants get on configmaps there.
        "/apis/rbac.authorization.k8s.io/v1/rolebindings" => (0..bindings / 2)
            .map(|i| {
                let same_ns = ((roles / 2) / 100 * 100).max(1);
                json!({"metadata": meta(format!("rb{i}"), Some(ns(i)), i),
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": format!("role{}", i % same_ns)},
                    "subjects": [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": format!("bench-user-{i:05}")},
                                 {"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": format!("team{}", i % 700)}]})
            })
            .collect(),
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings" => (0..bindings - bindings / 2)
            .map(|i| {
                json!({"metadata": meta(format!("crb{i}"), None, i),
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": format!("crole{}", i % (roles - roles / 2).max(1))},
                    "subjects": [{"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": format!("group{i}")}]})
            })
            .collect(),
        _ => Vec::new(),
    }
}

async fn token_review(req: Request<Incoming>) -> Response<Body> {
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let review: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let token = review["spec"]["token"].as_str().unwrap_or("");
    let status = match token.strip_prefix("sa-") {
        Some(n) => serde_json::json!({"authenticated": true, "user": {
            "username": format!("system:serviceaccount:bench:{n}"),
            "groups": ["bench:devops", "system:serviceaccounts", "system:authenticated"]}}),
        None => serde_json::json!({"authenticated": false}),
    };
    let answer = serde_json::json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "status": status});
    let mut r = json_response(Bytes::from(answer.to_string()));
    *r.status_mut() = StatusCode::CREATED;
    r
}

fn main() {
    let args = Args::parse();
    let cert = PathBuf::from(args.req("cert"));
    let key = PathBuf::from(args.req("key"));
    let listen = args.str("listen", "127.0.0.1:0");
    let addr_file = args.get("addr-file").map(PathBuf::from);
    let list_mb: usize = args.num("list-mb", 8);
    let workers: usize = args.num("workers", 0);
    let rbac_objects: usize = args.num("rbac-objects", 0);
    let empty_lists = COLLECTIONS
        .iter()
        .map(|(p, kind, api)| {
            let items = rbac_items(p, rbac_objects);
            let v = json!({"kind": kind, "apiVersion": api, "metadata": {"resourceVersion": "1"}, "items": items});
            (*p, Bytes::from(serde_json::to_vec(&v).expect("json")))
        })
        .collect();
    let canned = Arc::new(Canned {
        small: small_object(),
        list: pod_list(list_mb),
        empty_lists,
    });
    eprintln!(
        "small GET body {} bytes, pod list {} bytes",
        canned.small.len(),
        canned.list.len()
    );
    let tls = common::server_config(&cert, &key);
    common::tokio_runtime(workers).block_on(common::serve_tls(&listen, tls, addr_file, move |req, _| {
        handle(canned.clone(), req)
    }));
}
