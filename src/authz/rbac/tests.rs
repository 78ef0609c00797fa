//! Snapshot semantics: which bindings count where, for whom. Tables compare exact decisions.

mod scale;

use super::*;
use crate::authz::request_info::RequestInfo;
use Decision::{Allow, Deny};

pub(super) fn strings(xs: &[&str]) -> Vec<String> {
    xs.iter().map(|s| (*s).to_owned()).collect()
}

pub(super) fn rule(verbs: &[&str], groups: &[&str], resources: &[&str]) -> PolicyRule {
    PolicyRule {
        verbs: strings(verbs),
        api_groups: strings(groups),
        resources: strings(resources),
        ..PolicyRule::default()
    }
}

fn url_rule(verbs: &[&str], urls: &[&str]) -> PolicyRule {
    PolicyRule {
        verbs: strings(verbs),
        non_resource_urls: strings(urls),
        ..PolicyRule::default()
    }
}

pub(super) fn meta(namespace: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: name.to_owned(),
        namespace: namespace.to_owned(),
        cluster_name: String::new(),
    }
}

pub(super) fn cluster_role(name: &str, rules: Vec<PolicyRule>) -> ClusterRole {
    ClusterRole {
        metadata: meta("", name),
        rules,
    }
}

pub(super) fn role(namespace: &str, name: &str, rules: Vec<PolicyRule>) -> Role {
    Role {
        metadata: meta(namespace, name),
        rules,
    }
}

pub(super) fn role_ref(kind: RoleRefKind, name: &str) -> RoleRef {
    RoleRef {
        api_group: "rbac.authorization.k8s.io".to_owned(),
        kind,
        name: name.to_owned(),
    }
}

pub(super) fn subject(kind: SubjectKind, name: &str, namespace: &str) -> Subject {
    Subject {
        kind,
        api_group: String::new(),
        name: name.to_owned(),
        namespace: namespace.to_owned(),
    }
}

pub(super) fn crb(name: &str, kind: RoleRefKind, role: &str, subjects: Vec<Subject>) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: meta("", name),
        role_ref: role_ref(kind, role),
        subjects,
    }
}

pub(super) fn rb(ns: &str, name: &str, kind: RoleRefKind, role: &str, subjects: Vec<Subject>) -> RoleBinding {
    RoleBinding {
        metadata: meta(ns, name),
        role_ref: role_ref(kind, role),
        subjects,
    }
}

pub(super) fn req(method: &str, url: &str) -> RequestInfo {
    let (path, query) = url.split_once('?').map_or((url, None), |(p, q)| (p, Some(q)));
    match RequestInfo::parse(method, path, query, false) {
        Ok(i) => i,
        Err(e) => panic!("{url}: {e}"),
    }
}

#[rustfmt::skip]
fn fixture() -> RbacObjects {
    use RoleRefKind::{ClusterRole as CR, Role as R, Unsupported};
    use SubjectKind::{Group, ServiceAccount, Unsupported as Robot, User};
    RbacObjects {
        cluster_roles: vec![
            cluster_role("pod-reader", vec![rule(&["get", "list"], &[""], &["pods"])]),
            cluster_role("discovery", vec![
                url_rule(&["get"], &["/api", "/api/*", "/version"]),
                rule(&["get"], &[""], &["nodes"]),
            ]),
            cluster_role("empty", vec![]),
            // Duplicate name: the first one added wins.
            cluster_role("pod-reader", vec![rule(&["*"], &["*"], &["*"])]),
        ],
        roles: vec![
            role("dev", "secret-reader", vec![rule(&["get"], &[""], &["secrets"])]),
            role("prod", "only-in-prod", vec![rule(&["get"], &[""], &["configmaps"])]),
        ],
        cluster_role_bindings: vec![
            crb("readers", CR, "pod-reader", vec![subject(User, "ann", ""), subject(Group, "readers", "")]),
            crb("discovery", CR, "discovery", vec![subject(Group, "system:authenticated", "")]),
            crb("to-role", R, "secret-reader", vec![subject(User, "crb-to-role", "")]),
            crb("dangling", CR, "missing", vec![subject(User, "dangling", "")]),
            crb("sa-no-ns", CR, "pod-reader", vec![subject(ServiceAccount, "lost", "")]),
            crb("sa-ns", CR, "pod-reader", vec![subject(ServiceAccount, "ci", "tools")]),
            crb("robot", CR, "pod-reader", vec![subject(Robot, "r2", "")]),
            crb("odd-ref", Unsupported, "pod-reader", vec![subject(User, "odd", "")]),
            crb("empty", CR, "empty", vec![subject(User, "empty", "")]),
        ],
        role_bindings: vec![
            rb("dev", "bob-pods", CR, "pod-reader", vec![subject(User, "bob", "")]),
            rb("dev", "bob-secrets", R, "secret-reader", vec![subject(User, "bob", "")]),
            rb("dev", "cross-ns", R, "only-in-prod", vec![subject(User, "cross", "")]),
            rb("dev", "urls", CR, "discovery", vec![subject(User, "url-dev", "")]),
            rb("dev", "sa-local", R, "secret-reader", vec![subject(ServiceAccount, "builder", "")]),
            rb("dev", "sa-other", R, "secret-reader", vec![subject(ServiceAccount, "deployer", "ops")]),
            rb("", "no-ns", CR, "pod-reader", vec![subject(User, "nons", "")]),
            rb("dev", "team", CR, "pod-reader", vec![subject(Group, "team-dev", "")]),
        ],
    }
}

#[test]
fn decisions() {
    let snapshot = Snapshot::build(&fixture());
    let pods_dev = "/api/v1/namespaces/dev/pods";
    let pods_prod = "/api/v1/namespaces/prod/pods";
    let secret_dev = "/api/v1/namespaces/dev/secrets/s";
    // (user, groups, method, url, decision)
    #[rustfmt::skip]
    let cases: &[(&str, &[&str], &str, &str, Decision)] = &[
        // ClusterRoleBinding: every namespace and the cluster scope.
        ("ann", &[], "GET", pods_dev, Allow),
        ("ann", &[], "GET", pods_prod, Allow),
        ("ann", &[], "GET", "/api/v1/pods", Allow),
        ("ann", &[], "GET", "/api/v1/namespaces/dev/pods/x", Allow),
        ("ann", &[], "DELETE", "/api/v1/namespaces/dev/pods/x", Deny),
        ("ann", &[], "GET", secret_dev, Deny),
        ("Ann", &[], "GET", pods_dev, Deny),
        ("nobody", &["readers"], "GET", pods_prod, Allow),
        ("nobody", &["Readers"], "GET", pods_prod, Deny),
        ("nobody", &[], "GET", pods_prod, Deny),
        // The first of two same-named ClusterRoles wins: not "*".
        ("ann", &[], "DELETE", pods_dev, Deny),
        // RoleBinding to a ClusterRole: that namespace only.
        ("bob", &[], "GET", pods_dev, Allow),
        ("bob", &[], "GET", pods_prod, Deny),
        ("bob", &[], "GET", "/api/v1/pods", Deny),
        ("bob", &[], "GET", secret_dev, Allow),
        ("bob", &[], "GET", "/api/v1/namespaces/prod/secrets/s", Deny),
        ("nobody", &["team-dev"], "GET", pods_dev, Allow),
        ("nobody", &["team-dev"], "GET", pods_prod, Deny),
        ("nobody", &["x", "team-dev"], "GET", pods_dev, Allow),
        // A RoleBinding resolves Roles of its own namespace only.
        ("cross", &[], "GET", "/api/v1/namespaces/dev/configmaps/c", Deny),
        ("cross", &[], "GET", "/api/v1/namespaces/prod/configmaps/c", Deny),
        // A ClusterRoleBinding to a Role, a dangling ref, an unknown ref kind, an empty role.
        ("crb-to-role", &[], "GET", secret_dev, Deny),
        ("dangling", &[], "GET", pods_dev, Deny),
        ("odd", &[], "GET", pods_dev, Deny),
        ("empty", &[], "GET", pods_dev, Deny),
        // A RoleBinding without namespace is never visited.
        ("nons", &[], "GET", pods_dev, Deny),
        ("nons", &[], "GET", "/api/v1/pods", Deny),
        // ServiceAccounts.
        ("system:serviceaccount:tools:ci", &[], "GET", pods_prod, Allow),
        ("system:serviceaccount:dev:ci", &[], "GET", pods_prod, Deny),
        ("system:serviceaccount::lost", &[], "GET", pods_prod, Deny),
        ("system:serviceaccount:dev:builder", &[], "GET", secret_dev, Allow),
        ("system:serviceaccount:dev:builder", &[], "GET", "/api/v1/namespaces/prod/secrets/s", Deny),
        ("system:serviceaccount:ops:deployer", &[], "GET", secret_dev, Allow),
        ("system:serviceaccount:dev:deployer", &[], "GET", secret_dev, Deny),
        ("builder", &[], "GET", secret_dev, Deny),
        // Unknown subject kinds match nobody.
        ("r2", &["r2"], "GET", pods_dev, Deny),
        // Non-resource URLs: from ClusterRoleBindings only.
        ("x", &["system:authenticated"], "GET", "/api", Allow),
        ("x", &["system:authenticated"], "GET", "/api/v1", Allow),
        ("x", &["system:authenticated"], "GET", "/version", Allow),
        ("x", &["system:authenticated"], "POST", "/version", Deny),
        ("x", &["system:authenticated"], "GET", "/apis", Deny),
        ("x", &["system:authenticated"], "GET", "/metrics", Deny),
        ("x", &["system:authenticated"], "GET", "/api/v1/nodes/n1", Allow),
        ("url-dev", &[], "GET", "/api", Deny),
        ("url-dev", &[], "GET", "/version", Deny),
        // ...while its resource rules do apply in the binding's namespace.
        ("url-dev", &[], "GET", "/api/v1/namespaces/dev/nodes/n1", Allow),
        ("url-dev", &[], "GET", "/api/v1/nodes/n1", Deny),
    ];
    for &(user, groups, method, url, want) in cases {
        let got = snapshot.authorize(user, groups, &req(method, url));
        assert_eq!(got, want, "{user} {groups:?} {method} {url}");
    }
}

#[test]
fn empty_snapshot_denies_everything() {
    let snapshot = Snapshot::empty();
    assert_eq!(
        snapshot.authorize("ann", &["system:authenticated"], &req("GET", "/api")),
        Deny
    );
    assert_eq!(snapshot.subject_count(), 0);
}

#[test]
fn index_holds_only_reachable_grants() {
    let snapshot = Snapshot::build(&fixture());
    let mut users: Vec<&str> = snapshot.users.keys().map(|k| &**k).collect();
    users.sort_unstable();
    assert_eq!(
        users,
        vec![
            "ann",
            "bob",
            "system:serviceaccount:dev:builder",
            "system:serviceaccount:ops:deployer",
            "system:serviceaccount:tools:ci",
            "url-dev",
        ]
    );
    let mut groups: Vec<&str> = snapshot.groups.keys().map(|k| &**k).collect();
    groups.sort_unstable();
    assert_eq!(groups, vec!["readers", "system:authenticated", "team-dev"]);
    let bob = snapshot
        .users
        .get("bob")
        .map(|g| (g.cluster.len(), g.namespaced.len()));
    assert_eq!(bob, Some((0, 1)));
}

#[test]
fn builder_takes_sources_in_order() {
    let first = RbacObjects {
        cluster_roles: vec![cluster_role("r", vec![rule(&["get"], &[""], &["pods"])])],
        ..RbacObjects::default()
    };
    let second = RbacObjects {
        cluster_roles: vec![cluster_role("r", vec![rule(&["*"], &["*"], &["*"])])],
        cluster_role_bindings: vec![crb(
            "b",
            RoleRefKind::ClusterRole,
            "r",
            vec![subject(SubjectKind::User, "ann", "")],
        )],
        ..RbacObjects::default()
    };
    let snapshot = SnapshotBuilder::new()
        .add_objects(&first)
        .add_objects(&second)
        .build();
    assert_eq!(
        snapshot.authorize("ann", &[] as &[&str], &req("GET", "/api/v1/pods/p")),
        Allow
    );
    assert_eq!(
        snapshot.authorize("ann", &[] as &[&str], &req("DELETE", "/api/v1/pods/p")),
        Deny
    );
    let groups: Vec<String> = vec!["x".into()];
    assert_eq!(
        snapshot.authorize("ann", &groups, &req("GET", "/api/v1/pods/p")),
        Allow
    );
}

#[test]
fn rules_for_reports_what_applies() {
    let snapshot = Snapshot::build(&fixture());
    let summary = |rules: &[ResourceRule]| -> Vec<(String, String, String)> {
        rules
            .iter()
            .map(|r| (r.verbs.join(","), r.api_groups.join(","), r.resources.join(",")))
            .collect()
    };
    let own = |xs: &[(&str, &str, &str)]| -> Vec<(String, String, String)> {
        xs.iter()
            .map(|(a, b, c)| ((*a).to_owned(), (*b).to_owned(), (*c).to_owned()))
            .collect()
    };
    // Cluster-wide grants first (discovery via system:authenticated, pod-reader via readers),
    // then bob's RoleBindings in dev; pod-reader, granted both ways, is reported once.
    let (resource, non_resource) = snapshot.rules_for("bob", &["system:authenticated", "readers"], "dev");
    assert_eq!(
        summary(&resource),
        own(&[
            ("get", "", "nodes"),
            ("get,list", "", "pods"),
            ("get", "", "secrets")
        ])
    );
    assert_eq!(
        non_resource,
        vec![NonResourceRule {
            verbs: strings(&["get"]),
            non_resource_urls: strings(&["/api", "/api/*", "/version"]),
        }]
    );
    // Another namespace: only the cluster-wide part.
    let (resource, _) = snapshot.rules_for("bob", &["readers"], "prod");
    assert_eq!(summary(&resource), own(&[("get,list", "", "pods")]));
    // At the cluster scope only ClusterRoleBindings count.
    let (resource, non_resource) = snapshot.rules_for("bob", &[] as &[&str], "");
    assert!(resource.is_empty() && non_resource.is_empty());
    // URL rules reached through a RoleBinding never allow anything, so they are not reported.
    let (resource, non_resource) = snapshot.rules_for("url-dev", &[] as &[&str], "dev");
    assert_eq!(summary(&resource), own(&[("get", "", "nodes")]));
    assert!(non_resource.is_empty());
    // Nothing for strangers.
    let (resource, non_resource) = snapshot.rules_for("nobody", &["nope"], "dev");
    assert!(resource.is_empty() && non_resource.is_empty());
}

#[test]
fn snapshot_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<Snapshot>();
    assert_send_sync::<std::sync::Arc<Snapshot>>();
}
