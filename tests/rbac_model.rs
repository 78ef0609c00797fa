//! Model check of the RBAC engine: random policies from every source (the cluster's own
//! objects, the role file, the built-in roles) and random requests, decided by the proxy's
//! indexed snapshot exactly as a cluster's snapshot is built (`ClusterObjects::snapshot`), and
//! by a brute-force evaluator written straight from Kubernetes' RBAC authorizer
//! (`plugin/pkg/auth/authorizer/rbac`: `VisitRulesFor`, `appliesTo`, `RuleAllows` and the
//! `*Matches` helpers), which walks every binding of every source with no index and no
//! shortcut. The two must agree on every request.
//!
//! Pools of names are small on purpose, so that generated bindings, roles and requests meet.

use std::path::Path;

use kube_oidc_proxy::{
    authz::{
        capi::CapiPolicy,
        default_roles::default_role_objects,
        rbac::{
            ClusterRole, ClusterRoleBinding, Decision, ObjectMeta, PolicyRule, RbacObjects, Role,
            RoleBinding, RoleRef, RoleRefKind, Subject, SubjectKind,
        },
        request_info::RequestInfo,
    },
    cluster::{
        rbac::{Change, ClusterObjects},
        watch_cache::Event,
    },
    config::role_file,
};
use proptest::{prelude::*, sample::select};

const CLUSTER: &str = "k8s";
const NAMESPACES: [&str; 2] = ["dev", "prod"];
const ROLE_NAMES: [&str; 4] = ["r1", "r2", "devops", "k8s:watcher"];
const USERS: [&str; 4] = [
    "ann",
    "bob",
    "system:serviceaccount:dev:bot",
    "system:serviceaccount:prod:bot",
];
const GROUPS: [&str; 6] = [
    "devs",
    "ops",
    "k8s:devops",
    "k8s:watcher:dev",
    "k8s:developer",
    "other:devops",
];

fn strings(pool: &'static [&'static str], max: usize) -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(select(pool).prop_map(str::to_owned), 0..=max)
}

/// At least one: Kubernetes' validation requires verbs, and apiGroups and resources in a
/// resource rule (or nonResourceURLs in the other kind), so clusters and role files only hold
/// such rules.
fn some(pool: &'static [&'static str], max: usize) -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(select(pool).prop_map(str::to_owned), 1..=max)
}

fn resource_rule() -> impl Strategy<Value = PolicyRule> {
    (
        some(
            &["get", "list", "watch", "create", "delete", "impersonate", "*"],
            3,
        ),
        some(&["", "apps", "*"], 2),
        some(
            &[
                "pods",
                "pods/log",
                "*/log",
                "pods/*",
                "deployments",
                "secrets",
                "*",
            ],
            3,
        ),
        prop_oneof![3 => Just(Vec::new()), 1 => some(&["web", "db"], 2)],
    )
        .prop_map(|(verbs, api_groups, resources, resource_names)| PolicyRule {
            verbs,
            api_groups,
            resources,
            resource_names,
            non_resource_urls: Vec::new(),
        })
}

fn url_rule() -> impl Strategy<Value = PolicyRule> {
    (
        some(&["get", "post", "*"], 2),
        some(&["/healthz", "/logs/*", "/logs", "*", "/metrics", "/api/*"], 2),
    )
        .prop_map(|(verbs, non_resource_urls)| PolicyRule {
            verbs,
            non_resource_urls,
            ..PolicyRule::default()
        })
}

fn meta(name: &str, namespace: &str) -> ObjectMeta {
    ObjectMeta {
        name: name.into(),
        namespace: namespace.into(),
        ..ObjectMeta::default()
    }
}

fn cluster_role() -> impl Strategy<Value = ClusterRole> {
    (
        select(&ROLE_NAMES[..]),
        prop::collection::vec(prop_oneof![3 => resource_rule(), 1 => url_rule()], 0..3),
    )
        .prop_map(|(name, rules)| ClusterRole {
            metadata: meta(name, ""),
            rules,
        })
}

fn role() -> impl Strategy<Value = Role> {
    (
        select(&ROLE_NAMES[..]),
        select(&NAMESPACES[..]),
        prop::collection::vec(resource_rule(), 0..3),
    )
        .prop_map(|(name, ns, rules)| Role {
            metadata: meta(name, ns),
            rules,
        })
}

fn subject() -> impl Strategy<Value = Subject> {
    prop_oneof![
        select(&USERS[..]).prop_map(|n| Subject {
            kind: SubjectKind::User,
            api_group: "rbac.authorization.k8s.io".into(),
            name: n.into(),
            namespace: String::new(),
        }),
        select(&GROUPS[..]).prop_map(|n| Subject {
            kind: SubjectKind::Group,
            api_group: "rbac.authorization.k8s.io".into(),
            name: n.into(),
            namespace: String::new(),
        }),
        select(&["", "dev", "prod"][..]).prop_map(|ns| Subject {
            kind: SubjectKind::ServiceAccount,
            api_group: String::new(),
            name: "bot".into(),
            namespace: ns.into(),
        }),
    ]
}

fn role_ref() -> impl Strategy<Value = RoleRef> {
    (
        prop_oneof![Just(RoleRefKind::Role), Just(RoleRefKind::ClusterRole)],
        select(&ROLE_NAMES[..]),
    )
        .prop_map(|(kind, name)| RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind,
            name: name.into(),
        })
}

fn role_binding() -> impl Strategy<Value = RoleBinding> {
    (
        select(&["b1", "b2", "b3"][..]),
        select(&NAMESPACES[..]),
        role_ref(),
        prop::collection::vec(subject(), 0..3),
    )
        .prop_map(|(name, ns, role_ref, subjects)| RoleBinding {
            metadata: meta(name, ns),
            role_ref,
            subjects,
        })
}

fn cluster_role_binding() -> impl Strategy<Value = ClusterRoleBinding> {
    (
        select(&["b1", "b2", "b3"][..]),
        // Kubernetes' validation: a ClusterRoleBinding refers to a ClusterRole.
        role_ref().prop_map(|r| RoleRef {
            kind: RoleRefKind::ClusterRole,
            ..r
        }),
        // ... and names the namespace of a ServiceAccount subject.
        prop::collection::vec(
            subject().prop_filter("namespaced", |s| {
                s.kind != SubjectKind::ServiceAccount || !s.namespace.is_empty()
            }),
            0..3,
        ),
    )
        .prop_map(|(name, role_ref, subjects)| ClusterRoleBinding {
            metadata: meta(name, ""),
            role_ref,
            subjects,
        })
}

fn objects() -> impl Strategy<Value = RbacObjects> {
    (
        prop::collection::vec(role(), 0..4),
        prop::collection::vec(cluster_role(), 0..4),
        prop::collection::vec(role_binding(), 0..4),
        prop::collection::vec(cluster_role_binding(), 0..4),
    )
        .prop_map(
            |(roles, cluster_roles, role_bindings, cluster_role_bindings)| RbacObjects {
                roles,
                cluster_roles,
                role_bindings,
                cluster_role_bindings,
            },
        )
}

/// Keeps the first object of each kind, namespace and name: a cluster (or a role file) holds
/// one object per name.
fn unique(mut o: RbacObjects) -> RbacObjects {
    fn first<T>(v: &mut Vec<T>, key: impl Fn(&T) -> (String, String)) {
        let mut seen = std::collections::HashSet::new();
        v.retain(|x| seen.insert(key(x)));
    }
    first(&mut o.roles, |r| {
        (r.metadata.namespace.clone(), r.metadata.name.clone())
    });
    first(&mut o.cluster_roles, |r| (String::new(), r.metadata.name.clone()));
    first(&mut o.role_bindings, |b| {
        (b.metadata.namespace.clone(), b.metadata.name.clone())
    });
    first(&mut o.cluster_role_bindings, |b| {
        (String::new(), b.metadata.name.clone())
    });
    o
}

#[derive(Debug, Clone)]
struct Request {
    method: &'static str,
    path: String,
    query: Option<&'static str>,
    user: &'static str,
    groups: Vec<String>,
}

fn request() -> impl Strategy<Value = Request> {
    let resource_path = (
        select(&["/api/v1", "/apis/apps/v1", "/apis/batch/v1"][..]),
        select(&["", "dev", "prod"][..]),
        select(&["pods", "deployments", "secrets", "namespaces"][..]),
        select(&["", "web", "db"][..]),
        select(&["", "log", "exec", "scale"][..]),
    )
        .prop_map(|(prefix, ns, resource, name, sub)| {
            let mut p = prefix.to_string();
            if !ns.is_empty() {
                p += &format!("/namespaces/{ns}");
            }
            p += &format!("/{resource}");
            if !name.is_empty() {
                p += &format!("/{name}");
                if !sub.is_empty() {
                    p += &format!("/{sub}");
                }
            }
            p
        });
    let url_path = select(
        &[
            "/healthz",
            "/logs",
            "/logs/kubelet.log",
            "/metrics",
            "/version",
            "/api",
        ][..],
    )
    .prop_map(str::to_owned);
    (
        select(&["GET", "POST", "PUT", "PATCH", "DELETE"][..]),
        prop_oneof![3 => resource_path, 1 => url_path],
        // A list or watch naming one object by field selector is about that name, as
        // kube-apiserver's RequestInfo has it (resourceNames rules then apply).
        select(
            &[
                None,
                Some("watch=true"),
                Some("fieldSelector=metadata.name%3Dweb"),
                Some("watch=true&fieldSelector=metadata.name%3Ddb"),
            ][..],
        ),
        select(&USERS[..]),
        strings(&GROUPS, 3),
    )
        .prop_map(|(method, path, query, user, mut groups)| {
            groups.push("system:authenticated".into());
            Request {
                method,
                path,
                query,
                user,
                groups,
            }
        })
}

// ---- The brute-force evaluator: Kubernetes' RBAC authorizer, line by line. ----

struct Model<'a> {
    /// In order of precedence, each marked `true` when the proxy defines it (role file, built-in
    /// roles) and `false` for the cluster's own objects. Authority runs one way: a binding the
    /// proxy defines gets the first role of its name among the proxy's sources, then the
    /// cluster's; a binding of the cluster's own gets the cluster's role only.
    sources: Vec<(&'a RbacObjects, bool)>,
}

impl Model<'_> {
    fn allows(&self, user: &str, groups: &[String], info: &RequestInfo) -> bool {
        for &(source, proxy) in &self.sources {
            for binding in &source.cluster_role_bindings {
                if binding.subjects.iter().any(|s| applies_to(s, user, groups, ""))
                    && self
                        .rules(&binding.role_ref, "", proxy)
                        .is_some_and(|rules| rules.iter().any(|r| rule_allows(info, r)))
                {
                    return true;
                }
            }
        }
        if info.namespace.is_empty() {
            return false;
        }
        for &(source, proxy) in &self.sources {
            for binding in &source.role_bindings {
                if binding.metadata.namespace != info.namespace.as_str() {
                    continue;
                }
                let ns = binding.metadata.namespace.as_str();
                if binding.subjects.iter().any(|s| applies_to(s, user, groups, ns))
                    && self
                        .rules(&binding.role_ref, ns, proxy)
                        .is_some_and(|rules| rules.iter().any(|r| rule_allows(info, r)))
                {
                    return true;
                }
            }
        }
        false
    }

    /// `GetRoleReferenceRules`: a Role in the binding's namespace (none for a cluster binding)
    /// or a ClusterRole; the first of its name across the sources the binding may look in.
    fn rules(&self, role_ref: &RoleRef, namespace: &str, proxy_binding: bool) -> Option<&[PolicyRule]> {
        let proxy_first = self.sources.iter().filter(|(_, p)| *p);
        let cluster = self.sources.iter().filter(|(_, p)| !*p);
        let looked_in: Vec<&RbacObjects> = match proxy_binding {
            true => proxy_first.chain(cluster).map(|(s, _)| *s).collect(),
            false => cluster.map(|(s, _)| *s).collect(),
        };
        match role_ref.kind {
            RoleRefKind::ClusterRole => looked_in
                .iter()
                .flat_map(|s| &s.cluster_roles)
                .find(|r| r.metadata.name == role_ref.name)
                .map(|r| r.rules.as_slice()),
            RoleRefKind::Role if !namespace.is_empty() => looked_in
                .iter()
                .flat_map(|s| &s.roles)
                .find(|r| r.metadata.namespace == namespace && r.metadata.name == role_ref.name)
                .map(|r| r.rules.as_slice()),
            _ => None,
        }
    }
}

/// `appliesToUser`.
fn applies_to(s: &Subject, user: &str, groups: &[String], namespace: &str) -> bool {
    match s.kind {
        SubjectKind::User => user == s.name,
        SubjectKind::Group => groups.contains(&s.name),
        SubjectKind::ServiceAccount => {
            let ns = if s.namespace.is_empty() {
                namespace
            } else {
                &s.namespace
            };
            !ns.is_empty() && user == format!("system:serviceaccount:{ns}:{}", s.name)
        }
        SubjectKind::Unsupported => false,
    }
}

/// `RuleAllows`.
fn rule_allows(info: &RequestInfo, rule: &PolicyRule) -> bool {
    let verb = rule.verbs.iter().any(|v| v == "*" || *v == info.verb.as_str());
    if info.is_resource_request {
        let combined = if info.subresource.is_empty() {
            info.resource.to_string()
        } else {
            format!("{}/{}", info.resource, info.subresource)
        };
        verb && rule
            .api_groups
            .iter()
            .any(|g| g == "*" || *g == info.api_group.as_str())
            && rule.resources.iter().any(|r| {
                r == "*"
                    || *r == combined
                    || (!info.subresource.is_empty()
                        && r.len() == info.subresource.len() + 2
                        && r.starts_with("*/")
                        && r.ends_with(info.subresource.as_str()))
            })
            && (rule.resource_names.is_empty()
                || rule.resource_names.iter().any(|n| *n == info.name.as_str()))
    } else {
        verb && rule.non_resource_urls.iter().any(|u| {
            u == "*"
                || *u == info.path
                || (u.ends_with('*') && info.path.starts_with(u.trim_end_matches('*')))
        })
    }
}

// ---- The proxy's side: the cluster's watch caches, a role file, the built-in roles. ----

fn listed<T>(items: Vec<(String, T)>, wrap: fn(Event<T>) -> Change, objects: &mut ClusterObjects) {
    objects.apply(wrap(Event::Init)).unwrap();
    for (key, item) in items {
        objects.apply(wrap(Event::Put(key, item))).unwrap();
    }
    objects.apply(wrap(Event::InitDone)).unwrap();
}

fn cluster_objects(own: &RbacObjects, namespaces: &[&str]) -> ClusterObjects {
    let key = |m: &ObjectMeta| {
        if m.namespace.is_empty() {
            m.name.clone()
        } else {
            format!("{}/{}", m.namespace, m.name)
        }
    };
    let mut objects = ClusterObjects::default();
    listed(
        own.roles.iter().map(|r| (key(&r.metadata), r.clone())).collect(),
        Change::Role,
        &mut objects,
    );
    listed(
        own.cluster_roles
            .iter()
            .map(|r| (key(&r.metadata), r.clone()))
            .collect(),
        Change::ClusterRole,
        &mut objects,
    );
    listed(
        own.role_bindings
            .iter()
            .map(|b| (key(&b.metadata), b.clone()))
            .collect(),
        Change::RoleBinding,
        &mut objects,
    );
    listed(
        own.cluster_role_bindings
            .iter()
            .map(|b| (key(&b.metadata), b.clone()))
            .collect(),
        Change::ClusterRoleBinding,
        &mut objects,
    );
    listed(
        namespaces.iter().map(|n| (n.to_string(), ())).collect(),
        Change::Namespace,
        &mut objects,
    );
    assert!(objects.listed());
    objects
}

/// The role file as a user would write it: one document per object, each naming its cluster.
fn role_file_text(mine: &RbacObjects, other_cluster: &RbacObjects) -> String {
    let mut docs = Vec::new();
    for (objects, cluster) in [(mine, CLUSTER), (other_cluster, "other")] {
        let mut push = |kind: &str, value: serde_json::Value| {
            let mut v = value;
            v["apiVersion"] = "rbac.authorization.k8s.io/v1".into();
            v["kind"] = kind.into();
            v["metadata"]["clusterName"] = cluster.into();
            docs.push(v.to_string());
        };
        objects
            .roles
            .iter()
            .for_each(|o| push("Role", serde_json::to_value(o).unwrap()));
        objects
            .cluster_roles
            .iter()
            .for_each(|o| push("ClusterRole", serde_json::to_value(o).unwrap()));
        objects
            .role_bindings
            .iter()
            .for_each(|o| push("RoleBinding", serde_json::to_value(o).unwrap()));
        objects
            .cluster_role_bindings
            .iter()
            .for_each(|o| push("ClusterRoleBinding", serde_json::to_value(o).unwrap()));
    }
    docs.join("\n---\n")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn the_snapshot_decides_as_kubernetes_rbac(
        own in objects().prop_map(unique),
        file in objects().prop_map(unique),
        elsewhere in objects().prop_map(unique),
        namespaces in prop::sample::subsequence(NAMESPACES.to_vec(), 0..=2),
        requests in prop::collection::vec(request(), 1..40),
    ) {
        let cluster = cluster_objects(&own, &namespaces);
        let text = role_file_text(&file, &elsewhere);
        let roles = role_file::parse(Path::new("roles.yaml"), &text)
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        let snapshot = cluster.snapshot(CLUSTER, &roles, &CapiPolicy::default());

        let defaults = default_role_objects(CLUSTER, &namespaces);
        let model = Model { sources: vec![(&own, false), (&file, true), (&defaults, true)] };
        for r in &requests {
            let Ok(info) = RequestInfo::parse(r.method, &r.path, r.query, false) else {
                continue;
            };
            let proxy = snapshot.authorize(r.user, &r.groups, &info) == Decision::Allow;
            let kubernetes = model.allows(r.user, &r.groups, &info);
            prop_assert_eq!(proxy, kubernetes, "{} {} as {} {:?}", r.method, r.path, r.user, r.groups);
        }
    }
}
