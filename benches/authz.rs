//! Micro-benchmarks of the authorization hot path: RequestInfo parsing and one RBAC decision
//! against a snapshot of 10,000 bindings and 1,000 roles (README, "Performance": < 1 µs, no allocation
//! on the allow path).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use kube_oidc_proxy::authz::requester::{self, Requester};
use kube_oidc_proxy::authz::{
    default_roles::default_role_objects,
    rbac::{Decision, RbacObjects, Snapshot},
    request_info::RequestInfo,
};
use kube_oidc_proxy::proxy::limits::UserLimits;
use serde_json::json;

/// 1,000 roles (half Roles spread over 50 namespaces, half ClusterRoles) with 4 rules each, and
/// 10,000 bindings (users and groups) pointing at them.
fn big_snapshot() -> Snapshot {
    let rules = |i: usize| {
        json!([
            {"apiGroups": [""], "resources": [format!("res{i}"), "configmaps"], "verbs": ["get", "list"]},
            {"apiGroups": ["apps"], "resources": ["deployments", "replicasets"], "verbs": ["get"]},
            {"apiGroups": ["batch"], "resources": ["jobs"], "resourceNames": [format!("job{i}")], "verbs": ["delete"]},
            {"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list", "watch"]},
        ])
    };
    let mut objects =
        json!({"roles": [], "cluster_roles": [], "role_bindings": [], "cluster_role_bindings": []});
    let mut roles = Vec::new();
    let mut cluster_roles = Vec::new();
    for i in 0..500 {
        roles.push(json!({"metadata": {"name": format!("role{i}"), "namespace": format!("ns{}", i % 50)}, "rules": rules(i)}));
        cluster_roles.push(json!({"metadata": {"name": format!("crole{i}")}, "rules": rules(i)}));
    }
    let mut role_bindings = Vec::new();
    let mut cluster_role_bindings = Vec::new();
    for i in 0..5000 {
        let r = i % 500;
        role_bindings.push(json!({
            "metadata": {"name": format!("rb{i}"), "namespace": format!("ns{}", r % 50)},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": format!("role{r}")},
            "subjects": [{"kind": "User", "name": format!("user{i}")}, {"kind": "Group", "name": format!("team{}", i % 700)}]
        }));
        cluster_role_bindings.push(json!({
            "metadata": {"name": format!("crb{i}")},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": format!("crole{r}")},
            "subjects": [{"kind": "Group", "name": format!("group{i}")}]
        }));
    }
    objects["roles"] = roles.into();
    objects["cluster_roles"] = cluster_roles.into();
    objects["role_bindings"] = role_bindings.into();
    objects["cluster_role_bindings"] = cluster_role_bindings.into();
    let mut objs = RbacObjects {
        roles: serde_json::from_value(objects["roles"].take()).expect("roles"),
        cluster_roles: serde_json::from_value(objects["cluster_roles"].take()).expect("cluster roles"),
        role_bindings: serde_json::from_value(objects["role_bindings"].take()).expect("role bindings"),
        cluster_role_bindings: serde_json::from_value(objects["cluster_role_bindings"].take()).expect("crbs"),
    };
    let namespaces: Vec<String> = (0..50).map(|i| format!("ns{i}")).collect();
    objs.extend(default_role_objects("k8s", &namespaces));
    Snapshot::build(&objs)
}

fn bench(c: &mut Criterion) {
    let snapshot = big_snapshot();
    let groups: Vec<String> = ["team7", "group4321", "k8s:developer:ns3", "system:authenticated"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let allow = RequestInfo::parse("GET", "/api/v1/namespaces/ns7/pods/web/log", None, false).expect("info");
    let deny = RequestInfo::parse("DELETE", "/api/v1/namespaces/ns9/secrets/db", None, false).expect("info");
    assert_eq!(snapshot.authorize("user7", &groups, &allow), Decision::Allow);
    assert_eq!(snapshot.authorize("user7", &groups, &deny), Decision::Deny);

    c.bench_function("rbac_decision_allow_10k_bindings", |b| {
        b.iter(|| snapshot.authorize(black_box("user7"), black_box(&groups), black_box(&allow)))
    });
    c.bench_function("rbac_decision_deny_10k_bindings", |b| {
        b.iter(|| snapshot.authorize(black_box("user7"), black_box(&groups), black_box(&deny)))
    });
    // What issue 10 added to every forwarded request: the requester-check plan (an early
    // return for reads) and the per-user in-flight place, taken and given back.
    let who = Requester {
        name: "user7",
        groups: &groups,
    };
    c.bench_function("requester_plan_read", |b| {
        b.iter(|| requester::plan(black_box(&allow), None, who, black_box(&snapshot)))
    });
    let limits = UserLimits::new(200, 1000);
    c.bench_function("user_limits_acquire_release", |b| {
        b.iter(|| drop(limits.acquire(black_box("user7"), false)))
    });
    c.bench_function("request_info_parse_pod_log", |b| {
        b.iter(|| {
            RequestInfo::parse(
                black_box("GET"),
                black_box("/api/v1/namespaces/dev/pods/web-5d9c/log"),
                black_box(Some("follow=true&container=app")),
                false,
            )
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
