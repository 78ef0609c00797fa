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

/// The namespace of the management cluster's kubeconfigs Secret in tests.
pub const SECRET_NAMESPACE: &str = "kube-oidc-proxy";

/// The role resource collections, answered 404 (as for a CRD that is not installed) until
/// [`Store::install_crds`].
const CRD_COLLECTIONS: [&str; 4] = [
    "capiroles",
    "capiclusterroles",
    "capirolebindings",
    "capiclusterrolebindings",
];

/// Collections served, by list path.
const COLLECTIONS: [(&str, &str, &str); 10] = [
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
    (
        "/api/v1/namespaces/kube-oidc-proxy/secrets",
        "secrets",
        "SecretList",
    ),
    (
        "/apis/rbac.platformengineers.io/v1/capiroles",
        "capiroles",
        "CAPIRoleList",
    ),
    (
        "/apis/rbac.platformengineers.io/v1/capiclusterroles",
        "capiclusterroles",
        "CAPIClusterRoleList",
    ),
    (
        "/apis/rbac.platformengineers.io/v1/capirolebindings",
        "capirolebindings",
        "CAPIRoleBindingList",
    ),
    (
        "/apis/rbac.platformengineers.io/v1/capiclusterrolebindings",
        "capiclusterrolebindings",
        "CAPIClusterRoleBindingList",
    ),
];

#[derive(Default)]
pub struct Store {
    inner: Mutex<Inner>,
}

/// An open watch stream and its `metadata.name` field selector, if any.
type Watcher = (mpsc::UnboundedSender<Bytes>, Option<String>);

#[derive(Default)]
struct Inner {
    version: u64,
    /// collection -> "ns/name" -> object
    objects: BTreeMap<&'static str, BTreeMap<String, Value>>,
    /// Open watches, each with its `metadata.name` field selector if any.
    watchers: BTreeMap<&'static str, Vec<Watcher>>,
    /// Every event ever sent, so a watch resumed from a resourceVersion replays what it missed,
    /// as an API server does from its watch cache.
    history: Vec<(u64, &'static str, Bytes, String)>,
    /// Watches from before this version get 410 Gone (the watch cache was compacted).
    compacted: u64,
    crds_installed: bool,
    /// Lists and watches answered, per collection.
    lists: BTreeMap<&'static str, u64>,
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

    /// Forgets the event history and ends every watch: a client resuming from an older
    /// resourceVersion gets 410 Gone and has to relist.
    pub fn compact(&self) {
        let mut inner = self.inner.lock().unwrap();
        inner.compacted = inner.version;
        inner.history.clear();
        inner.watchers.clear();
    }

    /// Serves the role resource collections from now on (404 before).
    pub fn install_crds(&self) {
        self.inner.lock().unwrap().crds_installed = true;
    }

    /// How many lists (not watches) of collection `kind` were answered.
    pub fn lists_of(&self, kind: &str) -> u64 {
        let c = collection(kind);
        self.inner.lock().unwrap().lists.get(c).copied().unwrap_or(0)
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
        if CRD_COLLECTIONS.contains(c) && !inner.crds_installed {
            return Some(super::apiserver::status_json(404, "NotFound"));
        }
        // `fieldSelector=metadata.name=N` (percent-encoded), as the proxy asks for its Secret.
        let only_name: Option<String> = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("fieldSelector="))
            .map(|v| v.replace("%3D", "=").replace("%3d", "="))
            .and_then(|v| v.strip_prefix("metadata.name=").map(str::to_owned));
        let wanted = |key: &str| {
            only_name
                .as_deref()
                .is_none_or(|n| key.rsplit('/').next() == Some(n))
        };
        if watch {
            let (tx, rx) = mpsc::unbounded_channel();
            let since: u64 = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("resourceVersion="))
                .and_then(|v| v.parse().ok())
                .unwrap_or(inner.version);
            if since < inner.compacted {
                let gone = json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1",
                    "status": "Failure", "reason": "Expired", "code": 410,
                    "message": format!("too old resource version: {since} ({})", inner.compacted)}});
                let _ = tx.send(Bytes::from(format!("{gone}\n")));
                drop(tx);
                return Some(
                    Response::builder()
                        .header(header::CONTENT_TYPE, "application/json")
                        .body(ChannelBody(rx).boxed())
                        .expect("valid response"),
                );
            }
            for (v, coll, line, key) in &inner.history {
                if *v > since && coll == c && wanted(key) {
                    let _ = tx.send(line.clone());
                }
            }
            let filter = only_name.clone();
            inner.watchers.entry(c).or_default().push((tx, filter));
            return Some(
                Response::builder()
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(ChannelBody(rx).boxed())
                    .expect("valid response"),
            );
        }
        *inner.lists.entry(c).or_default() += 1;
        let items: Vec<Value> = inner
            .objects
            .get(c)
            .map(|m| {
                m.iter()
                    .filter(|(k, _)| wanted(k))
                    .map(|(_, v)| v.clone())
                    .collect()
            })
            .unwrap_or_default();
        Some(json(
            200,
            &json!({
                "kind": list_kind,
                "apiVersion": match *c {
                    "namespaces" | "secrets" => "v1",
                    c if c.starts_with("capi") => "rbac.platformengineers.io/v1",
                    _ => "rbac.authorization.k8s.io/v1",
                },
                "metadata": {"resourceVersion": inner.version.to_string()},
                "items": items,
            }),
        ))
    }
}

impl Inner {
    fn notify(&mut self, c: &'static str, kind: &str, obj: &Value) {
        let line = Bytes::from(format!("{}\n", json!({"type": kind, "object": obj})));
        let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
        self.history.push((self.version, c, line.clone(), key(obj)));
        if let Some(ws) = self.watchers.get_mut(c) {
            ws.retain(|(tx, only)| {
                if only.as_deref().is_some_and(|n| n != name) {
                    return !tx.is_closed();
                }
                tx.send(line.clone()).is_ok()
            });
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

/// The kubeconfigs Secret with the given keys (values are kubeconfig texts).
pub fn kubeconfigs_secret(name: &str, data: &[(&str, &str)]) -> Value {
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let data: serde_json::Map<String, Value> =
        data.iter().map(|(k, v)| (k.to_string(), json!(b64(v)))).collect();
    json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
           "metadata": {"name": name, "namespace": SECRET_NAMESPACE}, "data": data})
}

/// A role resource of group rbac.platformengineers.io (`kind` is e.g. CAPIClusterRoleBinding).
pub fn capi(kind: &str, namespace: Option<&str>, name: &str, spec: Value) -> Value {
    let mut metadata = json!({"name": name});
    if let Some(ns) = namespace {
        metadata["namespace"] = json!(ns);
    }
    json!({"apiVersion": "rbac.platformengineers.io/v1", "kind": kind, "metadata": metadata, "spec": spec})
}
