//! One cluster's RBAC as the proxy sees it: the cluster's own Roles, ClusterRoles and bindings
//! (listed, then watched with resume and relist by kube-runtime), the built-in roles for every
//! namespace that exists, and the role file's objects for this cluster. Every change rebuilds an
//! immutable snapshot that requests read without a lock.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use arc_swap::ArcSwap;
use futures_util::{Stream, StreamExt, stream::BoxStream};
use k8s_openapi::api::{
    core::v1::Namespace,
    rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding},
};
use kube::{
    Api, Resource, ResourceExt,
    runtime::{WatchStreamExt, watcher},
};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::authz::{
    default_roles::default_role_objects,
    rbac::{RbacObjects, Snapshot, SnapshotBuilder},
};
use crate::config::role_file::RoleFile;
use crate::metrics::RbacKind;

/// Changes arriving within this window are folded into one rebuild.
const COALESCE: Duration = Duration::from_millis(50);

/// What requests read, and what readiness asks.
pub struct ClusterRbac {
    pub snapshot: ArcSwap<Snapshot>,
    /// Set once the first complete snapshot (all five lists) is in place.
    ready: AtomicBool,
    /// The last watch error, for the readiness report.
    last_error: Mutex<Option<String>>,
    pub built_at: ArcSwap<Option<Instant>>,
    /// Object counts of the last snapshot, for metrics.
    counts: ArcSwap<Vec<(RbacKind, u64)>>,
}

impl Default for ClusterRbac {
    fn default() -> Self {
        ClusterRbac {
            snapshot: ArcSwap::from_pointee(Snapshot::empty()),
            ready: AtomicBool::new(false),
            last_error: Mutex::new(None),
            built_at: ArcSwap::from_pointee(None),
            counts: ArcSwap::from_pointee(Vec::new()),
        }
    }
}

impl ClusterRbac {
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub fn counts(&self) -> Vec<(RbacKind, u64)> {
        self.counts.load().as_ref().clone()
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }
}

/// The cluster's own objects, keyed by namespace/name so a relist or a repeated event can never
/// duplicate one.
#[derive(Default)]
struct Objects {
    roles: BTreeMap<String, crate::authz::rbac::Role>,
    cluster_roles: BTreeMap<String, crate::authz::rbac::ClusterRole>,
    role_bindings: BTreeMap<String, crate::authz::rbac::RoleBinding>,
    cluster_role_bindings: BTreeMap<String, crate::authz::rbac::ClusterRoleBinding>,
    namespaces: BTreeSet<String>,
}

enum Kind {
    Roles,
    ClusterRoles,
    RoleBindings,
    ClusterRoleBindings,
    Namespaces,
}

const KINDS: usize = 5;

/// One watch event, already converted to our types.
enum Change {
    Event(usize, WatchEvent),
    Error(usize, String),
}

enum WatchEvent {
    Init,
    Put(String, Obj),
    Delete(String),
    InitDone,
}

enum Obj {
    Role(crate::authz::rbac::Role),
    ClusterRole(crate::authz::rbac::ClusterRole),
    RoleBinding(crate::authz::rbac::RoleBinding),
    ClusterRoleBinding(crate::authz::rbac::ClusterRoleBinding),
    Namespace,
}

fn kind_of(i: usize) -> Kind {
    match i {
        0 => Kind::Roles,
        1 => Kind::ClusterRoles,
        2 => Kind::RoleBindings,
        3 => Kind::ClusterRoleBindings,
        _ => Kind::Namespaces,
    }
}

/// Watches one resource type and converts its objects through their JSON form (Kubernetes'
/// own shape, which our RBAC types read).
fn watch_kind<K>(client: &kube::Client, index: usize) -> BoxStream<'static, Change>
where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug
        + Send
        + 'static,
{
    let api: Api<K> = Api::all(client.clone());
    let cfg = watcher::Config::default();
    watcher(api, cfg)
        .default_backoff()
        .map(move |ev| match ev {
            Ok(watcher::Event::Init) => Change::Event(index, WatchEvent::Init),
            Ok(watcher::Event::InitDone) => Change::Event(index, WatchEvent::InitDone),
            Ok(watcher::Event::InitApply(o)) | Ok(watcher::Event::Apply(o)) => match convert(index, &o) {
                Some(obj) => Change::Event(index, WatchEvent::Put(key_of(&o), obj)),
                None => Change::Error(index, format!("cannot read {}", key_of(&o))),
            },
            Ok(watcher::Event::Delete(o)) => Change::Event(index, WatchEvent::Delete(key_of(&o))),
            Err(e) => Change::Error(index, e.to_string()),
        })
        .boxed()
}

fn key_of<K: Resource>(o: &K) -> String {
    format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any())
}

fn convert<K: serde::Serialize>(index: usize, o: &K) -> Option<Obj> {
    let v = serde_json::to_value(o).ok()?;
    Some(match kind_of(index) {
        Kind::Roles => Obj::Role(serde_json::from_value(v).ok()?),
        Kind::ClusterRoles => Obj::ClusterRole(serde_json::from_value(v).ok()?),
        Kind::RoleBindings => Obj::RoleBinding(serde_json::from_value(v).ok()?),
        Kind::ClusterRoleBindings => Obj::ClusterRoleBinding(serde_json::from_value(v).ok()?),
        Kind::Namespaces => Obj::Namespace,
    })
}

fn all_watches(client: &kube::Client) -> impl Stream<Item = Change> + Send + 'static {
    futures_util::stream::select_all(vec![
        watch_kind::<Role>(client, 0),
        watch_kind::<ClusterRole>(client, 1),
        watch_kind::<RoleBinding>(client, 2),
        watch_kind::<ClusterRoleBinding>(client, 3),
        watch_kind::<Namespace>(client, 4),
    ])
}

/// Keeps `rbac` up to date for cluster `name` until `cancel` fires.
pub fn spawn(
    name: String,
    client: kube::Client,
    rbac: Arc<ClusterRbac>,
    mut role_file: watch::Receiver<Arc<RoleFile>>,
    cancel: CancellationToken,
) {
    tokio::spawn(async move {
        let mut watches = Box::pin(all_watches(&client));
        let mut live = Objects::default();
        // During a (re)list, objects go to a staging copy that replaces the live one at
        // InitDone, so requests never see a half-listed cluster.
        let mut staging: [Option<Objects>; KINDS] = Default::default();
        let mut listed = [false; KINDS];
        let mut dirty = false;
        // Without --role-config nobody ever sends on the channel; stop listening once it closes.
        let mut role_file_open = true;
        loop {
            let flush = async {
                if dirty {
                    tokio::time::sleep(COALESCE).await
                } else {
                    std::future::pending().await
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => return,
                change = watches.next() => match change {
                    Some(Change::Event(i, ev)) => {
                        dirty |= apply(&mut live, &mut staging[i], i, ev, &mut listed);
                    }
                    Some(Change::Error(i, e)) => {
                        tracing::warn!(cluster = %name, kind = KIND_NAMES[i], error = %e, "RBAC watch failed; retrying");
                        if let Ok(mut last) = rbac.last_error.lock() {
                            *last = Some(format!("{}: {e}", KIND_NAMES[i]));
                        }
                    }
                    None => return,
                },
                changed = role_file.changed(), if role_file_open => match changed {
                    Ok(()) => dirty = true,
                    Err(_) => role_file_open = false,
                },
                _ = flush => {
                    dirty = false;
                    if listed.iter().all(|l| *l) {
                        let file = role_file.borrow().clone();
                        publish(&name, &rbac, &live, &file);
                    }
                }
            }
        }
    });
}

const KIND_NAMES: [&str; KINDS] = [
    "roles",
    "clusterroles",
    "rolebindings",
    "clusterrolebindings",
    "namespaces",
];

/// Applies one event; returns whether the live objects changed.
fn apply(
    live: &mut Objects,
    staging: &mut Option<Objects>,
    i: usize,
    ev: WatchEvent,
    listed: &mut [bool; KINDS],
) -> bool {
    match ev {
        WatchEvent::Init => {
            *staging = Some(Objects::default());
            false
        }
        WatchEvent::InitDone => {
            let fresh = staging.take().unwrap_or_default();
            match kind_of(i) {
                Kind::Roles => live.roles = fresh.roles,
                Kind::ClusterRoles => live.cluster_roles = fresh.cluster_roles,
                Kind::RoleBindings => live.role_bindings = fresh.role_bindings,
                Kind::ClusterRoleBindings => live.cluster_role_bindings = fresh.cluster_role_bindings,
                Kind::Namespaces => live.namespaces = fresh.namespaces,
            }
            listed[i] = true;
            true
        }
        WatchEvent::Put(key, obj) => {
            let target = staging.as_mut().unwrap_or(live);
            match obj {
                Obj::Role(r) => drop(target.roles.insert(key, r)),
                Obj::ClusterRole(r) => drop(target.cluster_roles.insert(key, r)),
                Obj::RoleBinding(b) => drop(target.role_bindings.insert(key, b)),
                Obj::ClusterRoleBinding(b) => drop(target.cluster_role_bindings.insert(key, b)),
                Obj::Namespace => drop(target.namespaces.insert(name_part(&key))),
            }
            staging.is_none()
        }
        WatchEvent::Delete(key) => {
            let target = staging.as_mut().unwrap_or(live);
            match kind_of(i) {
                Kind::Roles => drop(target.roles.remove(&key)),
                Kind::ClusterRoles => drop(target.cluster_roles.remove(&key)),
                Kind::RoleBindings => drop(target.role_bindings.remove(&key)),
                Kind::ClusterRoleBindings => drop(target.cluster_role_bindings.remove(&key)),
                Kind::Namespaces => drop(target.namespaces.remove(&name_part(&key))),
            }
            staging.is_none()
        }
    }
}

fn name_part(key: &str) -> String {
    key.rsplit_once('/').map(|(_, n)| n).unwrap_or(key).to_string()
}

fn publish(name: &str, rbac: &ClusterRbac, live: &Objects, file: &RoleFile) {
    let own = RbacObjects {
        roles: live.roles.values().cloned().collect(),
        cluster_roles: live.cluster_roles.values().cloned().collect(),
        role_bindings: live.role_bindings.values().cloned().collect(),
        cluster_role_bindings: live.cluster_role_bindings.values().cloned().collect(),
    };
    let namespaces: Vec<&str> = live.namespaces.iter().map(String::as_str).collect();
    let defaults = default_role_objects(name, &namespaces);
    let mut builder = SnapshotBuilder::new();
    builder.add_objects(&own);
    if let Some(extra) = file.for_cluster(name) {
        builder.add_objects(extra);
    }
    builder.add_objects(&defaults);
    let snapshot = builder.build();
    tracing::debug!(
        cluster = %name,
        roles = own.roles.len(),
        cluster_roles = own.cluster_roles.len(),
        role_bindings = own.role_bindings.len(),
        cluster_role_bindings = own.cluster_role_bindings.len(),
        namespaces = namespaces.len(),
        "RBAC snapshot rebuilt"
    );
    rbac.snapshot.store(Arc::new(snapshot));
    rbac.built_at.store(Arc::new(Some(Instant::now())));
    rbac.counts.store(Arc::new(vec![
        (RbacKind::Role, own.roles.len() as u64),
        (RbacKind::ClusterRole, own.cluster_roles.len() as u64),
        (RbacKind::RoleBinding, own.role_bindings.len() as u64),
        (
            RbacKind::ClusterRoleBinding,
            own.cluster_role_bindings.len() as u64,
        ),
        (RbacKind::Namespace, namespaces.len() as u64),
    ]));
    if !rbac.ready.swap(true, Ordering::AcqRel) {
        tracing::info!(cluster = %name, namespaces = namespaces.len(), "RBAC snapshot ready");
    }
    if let Ok(mut last) = rbac.last_error.lock() {
        *last = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authz::{rbac::Decision, request_info::RequestInfo};

    fn obj<K: DeserializeOwned + serde::Serialize>(index: usize, v: serde_json::Value) -> (String, Obj) {
        let k: K = serde_json::from_value(v).expect("k8s object");
        let json = serde_json::to_value(&k).expect("serialize");
        let key = format!(
            "{}/{}",
            json["metadata"]["namespace"].as_str().unwrap_or(""),
            json["metadata"]["name"].as_str().unwrap_or("")
        );
        (key, convert(index, &k).expect("convert"))
    }

    #[test]
    fn events_build_a_snapshot_that_follows_changes() {
        let rbac = ClusterRbac::default();
        let mut live = Objects::default();
        let mut staging: [Option<Objects>; KINDS] = Default::default();
        let mut listed = [false; KINDS];
        for (i, stage) in staging.iter_mut().enumerate() {
            apply(&mut live, stage, i, WatchEvent::Init, &mut listed);
            apply(&mut live, stage, i, WatchEvent::InitDone, &mut listed);
        }
        for ns in ["dev", "prod"] {
            apply(
                &mut live,
                &mut staging[4],
                4,
                WatchEvent::Put(format!("/{ns}"), Obj::Namespace),
                &mut listed,
            );
        }
        let (k, o) = obj::<Role>(
            0,
            serde_json::json!({"metadata": {"name": "r", "namespace": "dev"},
                "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}]}),
        );
        assert!(apply(
            &mut live,
            &mut staging[0],
            0,
            WatchEvent::Put(k, o),
            &mut listed
        ));
        let (k, o) = obj::<RoleBinding>(
            2,
            serde_json::json!({"metadata": {"name": "b", "namespace": "dev"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"},
                "subjects": [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "bob"}]}),
        );
        assert!(apply(
            &mut live,
            &mut staging[2],
            2,
            WatchEvent::Put(k, o),
            &mut listed
        ));
        publish("k8s", &rbac, &live, &RoleFile::default());
        let info = RequestInfo::parse("GET", "/api/v1/namespaces/dev/configmaps", None, false).unwrap();
        let groups = ["system:authenticated".to_string()];
        assert_eq!(
            rbac.snapshot.load().authorize("bob", &groups, &info),
            Decision::Allow
        );
        assert!(rbac.is_ready());

        apply(
            &mut live,
            &mut staging[2],
            2,
            WatchEvent::Delete("dev/b".into()),
            &mut listed,
        );
        publish("k8s", &rbac, &live, &RoleFile::default());
        assert_eq!(
            rbac.snapshot.load().authorize("bob", &groups, &info),
            Decision::Deny
        );
    }
}
