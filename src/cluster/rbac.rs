//! One cluster's RBAC as the proxy sees it: the cluster's own Roles, ClusterRoles and bindings
//! (listed, then watched with resume and relist by kube-runtime), the built-in roles for every
//! namespace that exists, and the role file's objects for this cluster. Every change rebuilds an
//! immutable snapshot that requests read without a lock.

use std::{
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
use kube::{Api, Resource, runtime::watcher};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::watch_cache::{self, Event, KindCache};
use crate::authz::capi::CapiPolicy;
use crate::authz::{
    default_roles::default_role_objects,
    rbac::{self, Snapshot, SnapshotBuilder},
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
    /// Role-name collisions already logged (each once, while it lasts).
    logged_collisions: Mutex<Vec<String>>,
}

impl Default for ClusterRbac {
    fn default() -> Self {
        ClusterRbac {
            snapshot: ArcSwap::from_pointee(Snapshot::empty()),
            ready: AtomicBool::new(false),
            last_error: Mutex::new(None),
            built_at: ArcSwap::from_pointee(None),
            counts: ArcSwap::from_pointee(Vec::new()),
            logged_collisions: Mutex::new(Vec::new()),
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

/// The five kinds a cluster's RBAC is built from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Roles,
    ClusterRoles,
    RoleBindings,
    ClusterRoleBindings,
    Namespaces,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Roles => "roles",
            Kind::ClusterRoles => "clusterroles",
            Kind::RoleBindings => "rolebindings",
            Kind::ClusterRoleBindings => "clusterrolebindings",
            Kind::Namespaces => "namespaces",
        }
    }
}

/// One watch event of one kind, or a watch failure.
#[derive(Debug)]
pub enum Change {
    Role(Event<rbac::Role>),
    ClusterRole(Event<rbac::ClusterRole>),
    RoleBinding(Event<rbac::RoleBinding>),
    ClusterRoleBinding(Event<rbac::ClusterRoleBinding>),
    /// Only the name of a namespace matters (the built-in roles are made for each).
    Namespace(Event<()>),
    Failed(Kind, String),
}

/// The cluster's own objects, one typed cache per kind.
#[derive(Debug, Default)]
pub struct ClusterObjects {
    roles: KindCache<rbac::Role>,
    cluster_roles: KindCache<rbac::ClusterRole>,
    role_bindings: KindCache<rbac::RoleBinding>,
    cluster_role_bindings: KindCache<rbac::ClusterRoleBinding>,
    namespaces: KindCache<()>,
}

impl ClusterObjects {
    /// Applies one change: `Ok(true)` when the objects a snapshot is built from changed,
    /// `Err` with the kind and message when a watch failed.
    pub fn apply(&mut self, change: Change) -> Result<bool, (Kind, String)> {
        Ok(match change {
            Change::Role(ev) => self.roles.apply(ev),
            Change::ClusterRole(ev) => self.cluster_roles.apply(ev),
            Change::RoleBinding(ev) => self.role_bindings.apply(ev),
            Change::ClusterRoleBinding(ev) => self.cluster_role_bindings.apply(ev),
            Change::Namespace(ev) => self.namespaces.apply(ev),
            Change::Failed(kind, message) => return Err((kind, message)),
        })
    }

    /// Whether every kind has been listed once: before that a snapshot would deny what the
    /// cluster grants.
    pub fn listed(&self) -> bool {
        self.roles.listed()
            && self.cluster_roles.listed()
            && self.role_bindings.listed()
            && self.cluster_role_bindings.listed()
            && self.namespaces.listed()
    }

    /// Builds the snapshot for cluster `name`: the cluster's objects first, then the role file's
    /// for this cluster, then the built-in roles for every namespace, then the role resources'
    /// of the management cluster (the first role of a name wins). The cluster's objects are
    /// borrowed, not copied.
    pub fn snapshot(&self, name: &str, file: &RoleFile, capi: &CapiPolicy) -> Snapshot {
        let namespaces: Vec<&str> = self.namespaces.keys().collect();
        let managed = capi.objects_for(
            name,
            |ns, role| self.roles.get(&format!("{ns}/{role}")).is_some(),
            |role| self.cluster_roles.get(role).is_some(),
        );
        let defaults = default_role_objects(name, &namespaces);
        let mut builder = SnapshotBuilder::new();
        self.cluster_roles.values().for_each(|r| {
            builder.add_cluster_role(r);
        });
        self.roles.values().for_each(|r| {
            builder.add_role(r);
        });
        self.cluster_role_bindings.values().for_each(|b| {
            builder.add_cluster_role_binding(b);
        });
        self.role_bindings.values().for_each(|b| {
            builder.add_role_binding(b);
        });
        if let Some(extra) = file.for_cluster(name) {
            builder.add_objects(extra);
        }
        // The built-in roles before the role resources: a CAPIClusterRole named `C:R` cannot
        // redefine what the group `C:R` grants.
        builder.add_objects(&defaults);
        builder.add_objects(&managed);
        builder.build()
    }

    pub fn counts(&self) -> Vec<(RbacKind, u64)> {
        vec![
            (RbacKind::Role, self.roles.len() as u64),
            (RbacKind::ClusterRole, self.cluster_roles.len() as u64),
            (RbacKind::RoleBinding, self.role_bindings.len() as u64),
            (
                RbacKind::ClusterRoleBinding,
                self.cluster_role_bindings.len() as u64,
            ),
            (RbacKind::Namespace, self.namespaces.len() as u64),
        ]
    }
}

/// Watches one kind, converting its objects through their JSON form.
fn watch_kind<K, T>(
    client: &kube::Client,
    wrap: fn(Event<T>) -> Change,
    kind: Kind,
) -> BoxStream<'static, Change>
where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug
        + Send
        + 'static,
    T: DeserializeOwned + Send + 'static,
{
    let api: Api<K> = Api::all(client.clone());
    watch_cache::watch(api, watcher::Config::default(), watch_cache::via_json::<K, T>)
        .map(move |ev| match ev {
            Ok(ev) => wrap(ev),
            Err(e) => Change::Failed(kind, e),
        })
        .boxed()
}

fn all_watches(client: &kube::Client) -> impl Stream<Item = Change> + Send + 'static {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespaces = watch_cache::watch(namespaces, watcher::Config::default(), |_| Some(()))
        .map(|ev| match ev {
            Ok(ev) => Change::Namespace(ev),
            Err(e) => Change::Failed(Kind::Namespaces, e),
        })
        .boxed();
    futures_util::stream::select_all(vec![
        watch_kind::<Role, _>(client, Change::Role, Kind::Roles),
        watch_kind::<ClusterRole, _>(client, Change::ClusterRole, Kind::ClusterRoles),
        watch_kind::<RoleBinding, _>(client, Change::RoleBinding, Kind::RoleBindings),
        watch_kind::<ClusterRoleBinding, _>(client, Change::ClusterRoleBinding, Kind::ClusterRoleBindings),
        namespaces,
    ])
}

/// Keeps `rbac` up to date for cluster `name` until `cancel` fires.
pub fn spawn(
    name: String,
    client: kube::Client,
    rbac: Arc<ClusterRbac>,
    mut role_file: watch::Receiver<Arc<RoleFile>>,
    mut capi: watch::Receiver<Arc<CapiPolicy>>,
    cancel: CancellationToken,
) {
    tokio::spawn(async move {
        let mut watches = Box::pin(all_watches(&client));
        let mut objects = ClusterObjects::default();
        let mut dirty = false;
        // Without --role-config (or a management cluster) nobody ever sends on the channel;
        // stop listening once it closes.
        let mut role_file_open = true;
        let mut capi_open = true;
        loop {
            let flush = watch_cache::settle(dirty, COALESCE);
            tokio::select! {
                _ = cancel.cancelled() => return,
                change = watches.next() => match change.map(|c| objects.apply(c)) {
                    Some(Ok(changed)) => dirty |= changed,
                    Some(Err((kind, e))) => {
                        tracing::warn!(cluster = %name, kind = kind.name(), error = %e, "RBAC watch failed; retrying");
                        if let Ok(mut last) = rbac.last_error.lock() {
                            *last = Some(format!("{}: {e}", kind.name()));
                        }
                    }
                    None => return,
                },
                changed = role_file.changed(), if role_file_open => match changed {
                    Ok(()) => dirty = true,
                    Err(_) => role_file_open = false,
                },
                changed = capi.changed(), if capi_open => match changed {
                    Ok(()) => dirty = true,
                    Err(_) => capi_open = false,
                },
                _ = flush => {
                    dirty = false;
                    if objects.listed() {
                        let file = role_file.borrow().clone();
                        let managed = capi.borrow().clone();
                        publish(&name, &rbac, &objects, &file, &managed);
                    }
                }
            }
        }
    });
}

/// Each role of the cluster that has the name of one of the proxy's, once while it lasts.
fn log_collisions(name: &str, rbac: &ClusterRbac, collisions: &[String]) {
    let Ok(mut logged) = rbac.logged_collisions.lock() else {
        return;
    };
    for c in collisions {
        if !logged.contains(c) {
            tracing::warn!(
                cluster = %name,
                role = %c,
                "the cluster defines a role with the name of one the proxy defines: the proxy's bindings \
                 (built-in groups, role file, role resources) keep the proxy's role; only the cluster's own \
                 bindings use the cluster's"
            );
        }
    }
    *logged = collisions.to_vec();
}

fn publish(name: &str, rbac: &ClusterRbac, objects: &ClusterObjects, file: &RoleFile, capi: &CapiPolicy) {
    let started = Instant::now();
    let snapshot = objects.snapshot(name, file, capi);
    let counts = objects.counts();
    tracing::debug!(
        cluster = %name,
        counts = ?counts,
        took_ms = started.elapsed().as_secs_f64() * 1e3,
        "RBAC snapshot rebuilt"
    );
    log_collisions(name, rbac, snapshot.collisions());
    rbac.snapshot.store(Arc::new(snapshot));
    rbac.built_at.store(Arc::new(Some(Instant::now())));
    rbac.counts.store(Arc::new(counts));
    if !rbac.ready.swap(true, Ordering::AcqRel) {
        tracing::info!(cluster = %name, namespaces = objects.namespaces.len(), "RBAC snapshot ready");
    }
    if let Ok(mut last) = rbac.last_error.lock() {
        *last = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authz::{rbac::Decision, request_info::RequestInfo};

    fn put<K: DeserializeOwned + serde::Serialize + Resource, T: DeserializeOwned>(
        v: serde_json::Value,
    ) -> Event<T> {
        let k: K = serde_json::from_value(v).expect("k8s object");
        Event::Put(
            watch_cache::key_of(&k),
            watch_cache::via_json(&k).expect("convert"),
        )
    }

    fn list_empty<T>(objects: &mut ClusterObjects, wrap: fn(Event<T>) -> Change) {
        assert_eq!(objects.apply(wrap(Event::Init)), Ok(false));
        assert_eq!(objects.apply(wrap(Event::InitDone)), Ok(true));
    }

    fn list_all_empty(objects: &mut ClusterObjects) {
        list_empty(objects, Change::Role);
        list_empty(objects, Change::ClusterRole);
        list_empty(objects, Change::RoleBinding);
        list_empty(objects, Change::ClusterRoleBinding);
        list_empty(objects, Change::Namespace);
    }

    #[test]
    fn events_build_a_snapshot_that_follows_changes() {
        let rbac = ClusterRbac::default();
        let mut objects = ClusterObjects::default();
        assert!(!objects.listed());
        list_all_empty(&mut objects);
        assert!(objects.listed());
        for ns in ["dev", "prod"] {
            let ev = Event::Put(ns.to_string(), ());
            assert_eq!(objects.apply(Change::Namespace(ev)), Ok(true));
        }
        let role = put::<Role, _>(serde_json::json!({"metadata": {"name": "r", "namespace": "dev"},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}]}));
        assert_eq!(objects.apply(Change::Role(role)), Ok(true));
        let binding =
            put::<RoleBinding, _>(serde_json::json!({"metadata": {"name": "b", "namespace": "dev"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"},
            "subjects": [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "bob"}]}));
        assert_eq!(objects.apply(Change::RoleBinding(binding)), Ok(true));
        publish(
            "k8s",
            &rbac,
            &objects,
            &RoleFile::default(),
            &CapiPolicy::default(),
        );
        let info = RequestInfo::parse("GET", "/api/v1/namespaces/dev/configmaps", None, false).unwrap();
        let groups = ["system:authenticated".to_string()];
        assert_eq!(
            rbac.snapshot.load().authorize("bob", &groups, &info),
            Decision::Allow
        );
        assert!(rbac.is_ready());
        assert!(rbac.counts().contains(&(RbacKind::Namespace, 2)));

        let delete = Change::RoleBinding(Event::Delete("dev/b".into()));
        assert_eq!(objects.apply(delete), Ok(true));
        publish(
            "k8s",
            &rbac,
            &objects,
            &RoleFile::default(),
            &CapiPolicy::default(),
        );
        assert_eq!(
            rbac.snapshot.load().authorize("bob", &groups, &info),
            Decision::Deny
        );
    }

    #[test]
    fn a_watch_failure_names_its_kind() {
        let mut objects = ClusterObjects::default();
        let failed = Change::Failed(Kind::ClusterRoleBindings, "gone".into());
        assert_eq!(
            objects.apply(failed),
            Err((Kind::ClusterRoleBindings, "gone".to_string()))
        );
        assert_eq!(Kind::ClusterRoleBindings.name(), "clusterrolebindings");
    }

    /// Authority has one direction: a ClusterRole created in the cluster with the name of a
    /// built-in or role-file role changes nothing the proxy's bindings grant; the cluster's own
    /// bindings use the cluster's role where it has one, and the proxy's where it has none.
    #[test]
    fn roles_written_in_the_cluster_cannot_redefine_the_proxys() {
        let mut objects = ClusterObjects::default();
        list_all_empty(&mut objects);
        let _ = objects.apply(Change::Namespace(Event::Put("team".into(), ())));
        let everything = serde_json::json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]);
        for name in ["k8s:watcher", "file-impersonate-bob"] {
            let role =
                put::<ClusterRole, _>(serde_json::json!({"metadata": {"name": name}, "rules": everything}));
            assert_eq!(objects.apply(Change::ClusterRole(role)), Ok(true));
        }
        // The cluster's own binding of the colliding name, and one of a role only the proxy has
        // (dangling in the cluster: it grants nothing, as kube-apiserver would grant nothing).
        for (binding, role, user) in [
            ("mine", "k8s:watcher", "carl"),
            ("borrowed", "k8s:developer", "dora"),
        ] {
            let b = put::<ClusterRoleBinding, _>(serde_json::json!({"metadata": {"name": binding},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
                "subjects": [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": user}]}));
            assert_eq!(objects.apply(Change::ClusterRoleBinding(b)), Ok(true));
        }
        let file = crate::config::role_file::parse(
            std::path::Path::new("roles.yaml"),
            r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: file-impersonate-bob, clusterName: k8s}
rules: [{apiGroups: [""], resources: [users], resourceNames: [bob], verbs: [impersonate]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: ann-impersonates, clusterName: k8s}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: file-impersonate-bob}
subjects: [{kind: User, apiGroup: rbac.authorization.k8s.io, name: ann}]
"#,
        )
        .expect("role file");
        let rbac = ClusterRbac::default();
        publish("k8s", &rbac, &objects, &file, &CapiPolicy::default());
        let snapshot = rbac.snapshot.load();
        let req = |method: &str, path: &str| RequestInfo::parse(method, path, None, true).unwrap();
        let exec = req("POST", "/api/v1/namespaces/team/pods/web/exec");
        let list = req("GET", "/api/v1/namespaces/team/pods");
        let watcher = ["k8s:watcher".to_string()];
        assert_eq!(
            snapshot.authorize("w", &watcher, &exec),
            Decision::Deny,
            "watcher cannot exec"
        );
        assert_eq!(snapshot.authorize("w", &watcher, &list), Decision::Allow);
        let impersonate = |who: &str| {
            let mut i = req("GET", "/api/v1/pods");
            i.verb = "impersonate".into();
            i.resource = "users".into();
            i.name = who.into();
            i
        };
        let none: [String; 0] = [];
        assert_eq!(
            snapshot.authorize("ann", &none, &impersonate("bob")),
            Decision::Allow
        );
        assert_eq!(
            snapshot.authorize("ann", &none, &impersonate("admin")),
            Decision::Deny,
            "the role file's grant stays 'impersonate bob only'"
        );
        // The cluster's binding to its own role: the cluster's rules.
        assert_eq!(snapshot.authorize("carl", &none, &exec), Decision::Allow);
        // The cluster's binding to a role only the proxy defines: nothing.
        assert_eq!(snapshot.authorize("dora", &none, &list), Decision::Deny);
        assert_eq!(snapshot.role_rules("", "k8s:developer"), None);
        assert_eq!(
            snapshot.collisions(),
            ["ClusterRole file-impersonate-bob", "ClusterRole k8s:watcher"]
        );
        // A binding written through the proxy resolves as the cluster's own bindings do.
        assert_eq!(snapshot.role_rules("", "k8s:watcher").map(<[_]>::len), Some(1));
        assert!(
            snapshot.role_rules("", "k8s:watcher").unwrap()[0]
                .verbs
                .contains(&"*".to_string())
        );
    }

    #[test]
    fn role_resources_cannot_redefine_a_built_in_role() {
        let mut objects = ClusterObjects::default();
        list_all_empty(&mut objects);
        let _ = objects.apply(Change::Namespace(Event::Put("team".into(), ())));
        let mut capi = CapiPolicy::default();
        let spec = serde_json::from_value(serde_json::json!({
            "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}], "targetClusters": ["*"]
        }))
        .unwrap();
        capi.cluster_roles.insert(
            "k8s:watcher".into(),
            crate::authz::capi::Named {
                name: "k8s:watcher".into(),
                spec,
            },
        );
        let delete = RequestInfo::parse("DELETE", "/api/v1/namespaces/team/pods/web", None, false).unwrap();
        let groups = ["k8s:watcher:team".to_string()];
        let snapshot = objects.snapshot("k8s", &RoleFile::default(), &capi);
        assert_eq!(snapshot.authorize("ann", &groups, &delete), Decision::Deny);
    }

    #[test]
    fn the_built_in_roles_follow_the_namespaces() {
        let mut objects = ClusterObjects::default();
        list_all_empty(&mut objects);
        let info = RequestInfo::parse("GET", "/api/v1/namespaces/team/pods", None, false).unwrap();
        let groups = ["k8s:watcher:team".to_string()];
        let file = RoleFile::default();
        assert_eq!(
            objects
                .snapshot("k8s", &file, &CapiPolicy::default())
                .authorize("ann", &groups, &info),
            Decision::Deny
        );
        let _ = objects.apply(Change::Namespace(Event::Put("team".into(), ())));
        assert_eq!(
            objects
                .snapshot("k8s", &file, &CapiPolicy::default())
                .authorize("ann", &groups, &info),
            Decision::Allow
        );
    }
}
