use serde_json::json;

use super::*;
use crate::authz::rbac::{Decision, Snapshot};
use crate::authz::request_info::RequestInfo;

/// `key` is `namespace/name` or `name`.
fn role(key: &str, spec: serde_json::Value) -> (String, Named<RoleSpec>) {
    let spec = serde_json::from_value(spec).expect("role spec");
    let name = key.rsplit('/').next().unwrap_or(key);
    (
        key.to_string(),
        Named {
            name: name.into(),
            spec,
        },
    )
}

fn binding(key: &str, name: &str, spec: serde_json::Value) -> (String, Named<BindingSpec>) {
    let spec = serde_json::from_value(spec).expect("binding spec");
    (
        key.to_string(),
        Named {
            name: name.into(),
            spec,
        },
    )
}

fn nothing(_: &str, _: &str) -> bool {
    false
}

fn decide(objects: &RbacObjects, user: &str, groups: &[&str], method: &str, path: &str) -> Decision {
    let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
    let info = RequestInfo::parse(method, path, None, false).expect("request info");
    Snapshot::build(objects).authorize(user, &groups, &info)
}

#[test]
fn a_role_and_its_binding_land_in_each_target_namespace() {
    let mut p = CapiPolicy::default();
    p.roles.extend([role(
        "mgmt/reader",
        json!({"rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}],
               "targetClusters": ["a"], "targetNamespaces": ["dev", "qa"]}),
    )]);
    p.role_bindings.extend([binding(
        "mgmt/readers",
        "readers",
        json!({"roleRef": ["reader"], "subjects": [{"group": "team"}],
               "targetClusters": ["a"], "targetNamespaces": ["dev"]}),
    )]);
    let objects = p.objects_for("a", nothing, |_| false);
    let names: Vec<(&str, &str)> = objects
        .roles
        .iter()
        .map(|r| (r.metadata.namespace.as_str(), r.metadata.name.as_str()))
        .collect();
    assert_eq!(names, [("dev", "reader"), ("qa", "reader")]);
    assert_eq!(objects.role_bindings.len(), 1);
    let b = &objects.role_bindings[0];
    assert_eq!(
        (b.metadata.namespace.as_str(), b.metadata.name.as_str()),
        ("dev", "readers-reader")
    );
    assert_eq!(b.role_ref.kind, RoleRefKind::Role);
    let get = |ns: &str| format!("/api/v1/namespaces/{ns}/configmaps/x");
    assert_eq!(
        decide(&objects, "ann", &["team"], "GET", &get("dev")),
        Decision::Allow
    );
    assert_eq!(
        decide(&objects, "ann", &["team"], "GET", &get("qa")),
        Decision::Deny,
        "bound in dev only"
    );
    assert_eq!(
        decide(&objects, "ann", &["team"], "DELETE", &get("dev")),
        Decision::Deny
    );
    assert_eq!(
        decide(&objects, "ann", &["other"], "GET", &get("dev")),
        Decision::Deny
    );
    assert!(
        p.objects_for("b", nothing, |_| false) == RbacObjects::default(),
        "cluster b is not a target"
    );
}

#[test]
fn the_role_ref_kind_is_decided_per_target_cluster() {
    let mut p = CapiPolicy::default();
    p.role_bindings.extend([binding(
        "mgmt/viewers",
        "viewers",
        json!({"roleRef": ["view"], "subjects": [{"user": "bob"}],
               "targetClusters": ["*"], "targetNamespaces": ["dev"]}),
    )]);
    // Cluster a has a Role "view" in dev; cluster b only the ClusterRole "view".
    let in_a = p.objects_for("a", |ns, r| ns == "dev" && r == "view", |r| r == "view");
    let in_b = p.objects_for("b", nothing, |r| r == "view");
    let in_c = p.objects_for("c", nothing, |_| false);
    assert_eq!(in_a.role_bindings[0].role_ref.kind, RoleRefKind::Role);
    assert_eq!(in_b.role_bindings[0].role_ref.kind, RoleRefKind::ClusterRole);
    assert_eq!(
        in_c.role_bindings[0].role_ref.kind,
        RoleRefKind::Role,
        "neither exists: Role"
    );
    assert_eq!(in_b.role_bindings[0].subjects[0].kind, SubjectKind::User);
}

#[test]
fn a_managed_role_counts_for_the_role_ref_kind() {
    let mut p = CapiPolicy::default();
    p.roles.extend([role(
        "x/edit",
        json!({"rules": [], "targetClusters": ["a"], "targetNamespaces": ["dev"]}),
    )]);
    p.role_bindings.extend([binding(
        "x/editors",
        "editors",
        json!({"roleRef": ["edit"], "subjects": [{"group": "g"}],
               "targetClusters": ["a"], "targetNamespaces": ["dev"]}),
    )]);
    let objects = p.objects_for("a", nothing, |r| r == "edit");
    assert_eq!(objects.role_bindings[0].role_ref.kind, RoleRefKind::Role);
}

/// A Role created in the cluster under a CAPIClusterRole's name does not turn the platform's
/// CAPIRoleBinding into a binding to the cluster's Role: the proxy's own role resources decide
/// the kind first.
#[test]
fn a_role_written_in_the_cluster_cannot_redirect_a_binding() {
    let mut p = CapiPolicy::default();
    p.cluster_roles.extend([role(
        "viewer",
        json!({"rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}], "targetClusters": ["*"]}),
    )]);
    p.role_bindings.extend([binding(
        "x/viewers",
        "viewers",
        json!({"roleRef": ["viewer"], "subjects": [{"group": "g"}],
               "targetClusters": ["*"], "targetNamespaces": ["team"]}),
    )]);
    let objects = p.objects_for("a", |ns, r| ns == "team" && r == "viewer", |_| false);
    assert_eq!(objects.role_bindings[0].role_ref.kind, RoleRefKind::ClusterRole);
}

#[test]
fn cluster_bindings_and_targets() {
    let mut p = CapiPolicy::default();
    p.cluster_roles.extend([role(
        "nodes-reader",
        json!({"rules": [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["list"]}],
               "targetClusters": ["*"]}),
    )]);
    p.cluster_role_bindings.extend([
        binding(
            "admins",
            "admins",
            json!({"roleRef": ["nodes-reader", "view"], "subjects": [{"group": "ops"}, {}, {"serviceAccount": "robot"}],
                   "targetClusters": ["a", "b"]}),
        ),
        binding(
            "nobody",
            "nobody",
            json!({"roleRef": ["nodes-reader"], "subjects": [{"group": "x"}], "targetClusters": []}),
        ),
    ]);
    let objects = p.objects_for("b", nothing, |_| false);
    let names: Vec<&str> = objects
        .cluster_role_bindings
        .iter()
        .map(|b| b.metadata.name.as_str())
        .collect();
    assert_eq!(names, ["admins-nodes-reader", "admins-view"]);
    let subjects = &objects.cluster_role_bindings[0].subjects;
    assert_eq!(subjects.len(), 2, "the empty subject is dropped: {subjects:?}");
    assert_eq!(subjects[1].kind, SubjectKind::ServiceAccount);
    assert_eq!(
        decide(&objects, "u", &["ops"], "GET", "/api/v1/nodes"),
        Decision::Allow
    );
    assert_eq!(
        decide(&objects, "u", &["x"], "GET", "/api/v1/nodes"),
        Decision::Deny
    );
    // The ClusterRole reaches a cluster added later ("*"); the binding does not.
    let later = p.objects_for("zz", nothing, |_| false);
    assert_eq!(later.cluster_roles.len(), 1);
    assert!(later.cluster_role_bindings.is_empty());
}

#[test]
fn problems_are_named() {
    let spec: BindingSpec = serde_json::from_value(json!({"roleRef": ["r"], "subjects": [{}],
        "targetClusters": ["a"], "targetNamespaces": ["n"]}))
    .unwrap();
    assert_eq!(
        binding_problem(&spec, true),
        Some("none of its subjects names a group, user or serviceAccount")
    );
    let spec: RoleSpec = serde_json::from_value(json!({"targetClusters": ["a"]})).unwrap();
    assert_eq!(role_problem(&spec, true), Some("it has no targetNamespaces"));
    assert_eq!(role_problem(&spec, false), None);
}
