//! The fake API server's object store for the collections the proxy lists and watches itself
//! (namespaces and RBAC). It speaks the list-then-watch protocol kube-runtime's watcher uses:
//! lists carry `metadata.resourceVersion`, watches from that version get ADDED / MODIFIED /
//! DELETED events as tests change objects.

use std::collections::BTreeMap;
use std::sync::Mutex;

use bytes::Bytes;
use http::{Response, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::{Body, ChannelBody, json};

/// Collections served, by list path.
const COLLECTIONS: [(&str, &str, &str); 5] = [
    ("/api/v1/namespaces", "namespaces", "NamespaceList"),
    ("/apis/rbac.authorization.k8s.io/v1/roles", "roles", "RoleList"),
    (
        "/apis/rbac.authorization.k8s.io/v1/clusterroles",
        "clusterroles",
        "ClusterRoleList",
    ),
    (
        "/apis/rbac.authorization.k8s.io/v1/rolebindings",
        "rolebindings",
        "RoleBindingList",
    ),
    (
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
        "clusterrolebindings",
        "ClusterRoleBindingList",
    ),
];

#[derive(Default)]
pub struct Store {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    version: u64,
    /// collection -> "ns/name" -> object
    objects: BTreeMap<&'static str, BTreeMap<String, Value>>,
    watchers: BTreeMap<&'static str, Vec<mpsc::UnboundedSender<Bytes>>>,
    /// Every event ever sent, so a watch resumed from a resourceVersion replays what it missed,
    /// as an API server does from its watch cache.
    history: Vec<(u64, &'static str, Bytes)>,
}

fn collection(name: &str) -> &'static str {
    COLLECTIONS
        .iter()
        .find(|c| c.1 == name)
        .map(|c| c.1)
        .unwrap_or_else(|| panic!("unknown collection {name}"))
}

fn key(obj: &Value) -> String {
    let ns = obj["metadata"]["namespace"].as_str().unwrap_or("");
    let name = obj["metadata"]["name"].as_str().unwrap_or("");
    format!("{ns}/{name}")
}

impl Store {
    /// Creates or replaces an object (`kind` is the collection: namespaces, roles, ...).
    pub fn put(&self, kind: &str, mut obj: Value) {
        let c = collection(kind);
        let mut inner = self.inner.lock().unwrap();
        inner.version += 1;
        obj["metadata"]["resourceVersion"] = json!(inner.version.to_string());
        let k = key(&obj);
        let existed = inner
            .objects
            .entry(c)
            .or_default()
            .insert(k, obj.clone())
            .is_some();
        let kind = if existed { "MODIFIED" } else { "ADDED" };
        inner.notify(c, kind, &obj);
    }

    pub fn delete(&self, kind: &str, namespace: &str, name: &str) {
        let c = collection(kind);
        let mut inner = self.inner.lock().unwrap();
        let Some(mut obj) = inner
            .objects
            .entry(c)
            .or_default()
            .remove(&format!("{namespace}/{name}"))
        else {
            return;
        };
        inner.version += 1;
        obj["metadata"]["resourceVersion"] = json!(inner.version.to_string());
        inner.notify(c, "DELETED", &obj);
    }

    /// Ends every watch stream, as an API server does when a watch times out: the client must
    /// resume (or relist) without losing or duplicating anything.
    pub fn close_watches(&self) {
        self.inner.lock().unwrap().watchers.clear();
    }

    /// Answers a request on one of the store's collections; `None` for other paths.
    pub fn handle(&self, method: &str, path: &str, query: &str) -> Option<Response<Body>> {
        // Served under any path prefix, as behind a Rancher-style server URL.
        let (_, c, list_kind) = COLLECTIONS.iter().find(|c| path.ends_with(c.0))?;
        if method != "GET" {
            return None;
        }
        let watch = query.split('&').any(|kv| kv == "watch=true" || kv == "watch=1");
        let mut inner = self.inner.lock().unwrap();
        if watch {
            let (tx, rx) = mpsc::unbounded_channel();
            let since: u64 = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("resourceVersion="))
                .and_then(|v| v.parse().ok())
                .unwrap_or(inner.version);
            for (v, coll, line) in &inner.history {
                if *v > since && coll == c {
                    let _ = tx.send(line.clone());
                }
            }
            inner.watchers.entry(c).or_default().push(tx);
            return Some(
                Response::builder()
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(ChannelBody(rx).boxed())
                    .expect("valid response"),
            );
        }
        let items: Vec<Value> = inner
            .objects
            .get(c)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        Some(json(
            200,
            &json!({
                "kind": list_kind,
                "apiVersion": if *c == "namespaces" { "v1" } else { "rbac.authorization.k8s.io/v1" },
                "metadata": {"resourceVersion": inner.version.to_string()},
                "items": items,
            }),
        ))
    }
}

impl Inner {
    fn notify(&mut self, c: &'static str, kind: &str, obj: &Value) {
        let line = Bytes::from(format!("{}\n", json!({"type": kind, "object": obj})));
        self.history.push((self.version, c, line.clone()));
        if let Some(ws) = self.watchers.get_mut(c) {
            ws.retain(|tx| tx.send(line.clone()).is_ok());
        }
    }
}

/// True for the store's own collections (the proxy's list/watch traffic).
pub fn is_collection_path(path: &str) -> bool {
    COLLECTIONS.iter().any(|c| path.ends_with(c.0))
}

/// Lets every authenticated user read every non-resource URL, as a real cluster's discovery
/// roles (system:discovery, system:public-info-viewer) do for the paths kubectl reads.
pub fn grant_discovery(store: &Store) {
    store.put(
        "clusterroles",
        cluster_role("discovery", json!([{"nonResourceURLs": ["*"], "verbs": ["get"]}])),
    );
    store.put(
        "clusterrolebindings",
        cluster_role_binding("discovery", "discovery", json!([group("system:authenticated")])),
    );
}

/// Helpers to write objects tersely in tests.
pub fn namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
}

pub fn cluster_role(name: &str, rules: Value) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
           "metadata": {"name": name}, "rules": rules})
}

pub fn role(ns: &str, name: &str, rules: Value) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
           "metadata": {"name": name, "namespace": ns}, "rules": rules})
}

pub fn cluster_role_binding(name: &str, role: &str, subjects: Value) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
           "metadata": {"name": name},
           "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
           "subjects": subjects})
}

pub fn role_binding(ns: &str, name: &str, role_kind: &str, role: &str, subjects: Value) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
           "metadata": {"name": name, "namespace": ns},
           "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role},
           "subjects": subjects})
}

pub fn user(name: &str) -> Value {
    json!({"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": name})
}

pub fn group(name: &str) -> Value {
    json!({"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": name})
}
