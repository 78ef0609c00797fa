//! How a cluster's RBAC objects are held between watch events, measured with 10,000 bindings
//! (5,000 RoleBindings in 100 namespaces, 5,000 ClusterRoleBindings) and 1,000 roles, as the API
//! server sends them (uid, resourceVersion, creationTimestamp, one managedFields entry):
//!
//! - `typed`: what the proxy does (`cluster::watch_cache::KindCache` per kind): each object is
//!   converted once when its event arrives, and a rebuild borrows the converted objects;
//! - `reflector`: kube-runtime's reflector stores of the Kubernetes objects, with one rebuild
//!   trigger that converts every object again on each rebuild.
//!
//! Memory is the heap the held objects occupy (a counting allocator), printed once; the rebuild
//! time is criterion's.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    hint::black_box,
    sync::atomic::{AtomicIsize, Ordering},
};

use criterion::{Criterion, criterion_group, criterion_main};
use k8s_openapi::api::{
    core::v1::Namespace,
    rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding},
};
use kube::runtime::{reflector::store::Writer, watcher};
use kube_oidc_proxy::authz::capi::CapiPolicy;
use kube_oidc_proxy::authz::{
    default_roles::default_role_objects,
    rbac::{RbacObjects, Snapshot, SnapshotBuilder},
    request_info::RequestInfo,
};
use kube_oidc_proxy::cluster::{
    rbac::{Change, ClusterObjects},
    watch_cache::{Event, key_of, via_json},
};
use kube_oidc_proxy::config::role_file::RoleFile;
use serde::{Serialize, de::DeserializeOwned};
use serde_json::{Value, json};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const NAMESPACES: usize = 100;

/// Metadata as kube-apiserver returns it for an object written by `kubectl create`.
fn meta(name: &str, namespace: Option<&str>, i: usize, fields: Value) -> Value {
    let mut m = json!({
        "name": name,
        "uid": format!("5f0c6a3e-{i:04x}-4b1e-9d1f-6c2b7e9a{i:04x}"),
        "resourceVersion": format!("{}", 100_000 + i),
        "creationTimestamp": "2026-11-30T09:12:44Z",
        "managedFields": [{
            "manager": "kubectl-create",
            "operation": "Update",
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "time": "2026-11-30T09:12:44Z",
            "fieldsType": "FieldsV1",
            "fieldsV1": fields
        }]
    });
    if let Some(ns) = namespace {
        m["namespace"] = ns.into();
    }
    m
}

fn rules(i: usize) -> Value {
    json!([
        {"apiGroups": [""], "resources": [format!("res{i}"), "configmaps"], "verbs": ["get", "list"]},
        {"apiGroups": ["apps"], "resources": ["deployments", "replicasets"], "verbs": ["get"]},
        {"apiGroups": ["batch"], "resources": ["jobs"], "resourceNames": [format!("job{i}")], "verbs": ["delete"]},
        {"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list", "watch"]},
    ])
}

fn parse<K: DeserializeOwned>(v: Value) -> K {
    serde_json::from_value(v).expect("k8s object")
}

/// The cluster as the watches list it.
struct Cluster {
    roles: Vec<Role>,
    cluster_roles: Vec<ClusterRole>,
    role_bindings: Vec<RoleBinding>,
    cluster_role_bindings: Vec<ClusterRoleBinding>,
    namespaces: Vec<Namespace>,
}

fn cluster() -> Cluster {
    let rule_fields = json!({"f:rules": {}});
    let binding_fields = json!({"f:roleRef": {}, "f:subjects": {}});
    let ns = |i: usize| format!("ns{}", i % NAMESPACES);
    Cluster {
        roles: (0..500)
            .map(|i| parse(json!({"metadata": meta(&format!("role{i}"), Some(&ns(i)), i, rule_fields.clone()), "rules": rules(i)})))
            .collect(),
        cluster_roles: (0..500)
            .map(|i| parse(json!({"metadata": meta(&format!("crole{i}"), None, i, rule_fields.clone()), "rules": rules(i)})))
            .collect(),
        role_bindings: (0..5000)
            .map(|i| {
                let r = i % 500;
                parse(json!({
                    "metadata": meta(&format!("rb{i}"), Some(&ns(r)), i, binding_fields.clone()),
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": format!("role{r}")},
                    "subjects": [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": format!("user{i}")},
                                 {"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": format!("team{}", i % 700)}]
                }))
            })
            .collect(),
        cluster_role_bindings: (0..5000)
            .map(|i| {
                parse(json!({
                    "metadata": meta(&format!("crb{i}"), None, i, binding_fields.clone()),
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": format!("crole{}", i % 500)},
                    "subjects": [{"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": format!("group{i}")}]
                }))
            })
            .collect(),
        namespaces: (0..NAMESPACES)
            .map(|i| parse(json!({"metadata": meta(&format!("ns{i}"), None, i, json!({}))})))
            .collect(),
    }
}

fn list_typed<K, T>(
    objects: &mut ClusterObjects,
    wrap: fn(Event<T>) -> Change,
    items: &[K],
    convert: fn(&K) -> Option<T>,
) where
    K: kube::Resource,
{
    let _ = objects.apply(wrap(Event::Init));
    for o in items {
        let _ = objects.apply(wrap(Event::Put(key_of(o), convert(o).expect("convert"))));
    }
    let _ = objects.apply(wrap(Event::InitDone));
}

fn typed(c: &Cluster) -> ClusterObjects {
    let mut objects = ClusterObjects::default();
    list_typed(&mut objects, Change::Role, &c.roles, via_json);
    list_typed(&mut objects, Change::ClusterRole, &c.cluster_roles, via_json);
    list_typed(&mut objects, Change::RoleBinding, &c.role_bindings, via_json);
    list_typed(
        &mut objects,
        Change::ClusterRoleBinding,
        &c.cluster_role_bindings,
        via_json,
    );
    list_typed(&mut objects, Change::Namespace, &c.namespaces, |_| Some(()));
    objects
}

struct Reflectors {
    roles: Writer<Role>,
    cluster_roles: Writer<ClusterRole>,
    role_bindings: Writer<RoleBinding>,
    cluster_role_bindings: Writer<ClusterRoleBinding>,
    namespaces: Writer<Namespace>,
}

fn list_reflector<K>(items: &[K]) -> Writer<K>
where
    K: kube::Resource<DynamicType = ()> + Clone,
{
    let mut w = Writer::default();
    w.apply_watcher_event(&watcher::Event::Init);
    for o in items {
        w.apply_watcher_event(&watcher::Event::InitApply(o.clone()));
    }
    w.apply_watcher_event(&watcher::Event::InitDone);
    w
}

fn reflectors(c: &Cluster) -> Reflectors {
    Reflectors {
        roles: list_reflector(&c.roles),
        cluster_roles: list_reflector(&c.cluster_roles),
        role_bindings: list_reflector(&c.role_bindings),
        cluster_role_bindings: list_reflector(&c.cluster_role_bindings),
        namespaces: list_reflector(&c.namespaces),
    }
}

fn converted<K, T>(w: &Writer<K>) -> Vec<T>
where
    K: kube::Resource<DynamicType = ()> + Clone + Serialize,
    T: DeserializeOwned,
{
    w.as_reader()
        .state()
        .iter()
        .filter_map(|o| via_json(o.as_ref()))
        .collect()
}

fn rebuild_from_reflectors(r: &Reflectors, name: &str) -> Snapshot {
    let own = RbacObjects {
        roles: converted(&r.roles),
        cluster_roles: converted(&r.cluster_roles),
        role_bindings: converted(&r.role_bindings),
        cluster_role_bindings: converted(&r.cluster_role_bindings),
    };
    let namespaces: Vec<String> = r
        .namespaces
        .as_reader()
        .state()
        .iter()
        .map(|n| n.metadata.name.clone().unwrap_or_default())
        .collect();
    let defaults = default_role_objects(name, &namespaces);
    SnapshotBuilder::new()
        .add_objects(&own)
        .add_objects(&defaults)
        .build()
}

/// Heap bytes `make` leaves allocated in what it returns.
fn held<T>(make: impl FnOnce() -> T) -> (T, isize) {
    let before = LIVE.load(Ordering::Relaxed);
    let value = make();
    (value, LIVE.load(Ordering::Relaxed) - before)
}

fn bench(c: &mut Criterion) {
    let cluster = cluster();
    let file = RoleFile::default();
    let (objects, typed_bytes) = held(|| typed(&cluster));
    let (reflectors, reflector_bytes) = held(|| reflectors(&cluster));
    let (snapshot, snapshot_bytes) = held(|| objects.snapshot("k8s", &file, &CapiPolicy::default()));
    let mib = |b: isize| b as f64 / (1024.0 * 1024.0);
    println!(
        "held objects, 10k bindings + 1k roles: typed caches {:.1} MiB, reflector stores {:.1} MiB; \
         the snapshot built from them {:.1} MiB",
        mib(typed_bytes),
        mib(reflector_bytes),
        mib(snapshot_bytes)
    );
    // Both paths must decide alike before their speed means anything.
    let from_reflectors = rebuild_from_reflectors(&reflectors, "k8s");
    for (user, group, path) in [
        ("user7", "none", "/api/v1/namespaces/ns7/configmaps"),
        ("user7", "none", "/api/v1/namespaces/ns8/configmaps"),
        (
            "nobody",
            "group4321",
            "/apis/apps/v1/namespaces/ns1/deployments/web",
        ),
        ("nobody", "k8s:watcher:ns42", "/api/v1/namespaces/ns42/pods"),
    ] {
        let info = RequestInfo::parse("GET", path, None, false).expect("request info");
        let groups = [group.to_string()];
        let decision = snapshot.authorize(user, &groups, &info);
        assert_eq!(
            decision,
            from_reflectors.authorize(user, &groups, &info),
            "{user} {path}"
        );
    }
    drop((snapshot, from_reflectors));

    c.bench_function("rbac_rebuild_10k_bindings_typed", |b| {
        b.iter(|| black_box(objects.snapshot(black_box("k8s"), &file, &CapiPolicy::default())))
    });
    c.bench_function("rbac_rebuild_10k_bindings_reflector", |b| {
        b.iter(|| black_box(rebuild_from_reflectors(black_box(&reflectors), "k8s")))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench
}
criterion_main!(benches);
