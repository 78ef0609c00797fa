//! The five built-in roles (DESIGN.md section 3), instantiated in memory for each cluster `C`:
//! group `C:R` grants role `R` in all of `C`, group `C:R:N` grants it in namespace `N` only.
//!
//! The Go proxy made a ClusterRole + ClusterRoleBinding `C:R` and, per namespace, a Role +
//! RoleBinding `C:R:N`. We make the same ClusterRole and ClusterRoleBinding, and per namespace
//! only a RoleBinding `C:R:N` to the ClusterRole `C:R`: a RoleBinding to a ClusterRole grants
//! its rules in the binding's namespace only, so the decisions are identical, and the rules are
//! stored once per cluster instead of once per namespace.

use crate::authz::rbac::{
    ClusterRole, ClusterRoleBinding, ObjectMeta, PolicyRule, RbacObjects, RoleBinding, RoleRef, RoleRefKind,
    Subject, SubjectKind,
};

/// One built-in role: a single rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefaultRole {
    pub name: &'static str,
    pub api_groups: &'static [&'static str],
    pub resources: &'static [&'static str],
    pub verbs: &'static [&'static str],
}

pub const DEFAULT_ROLES: [DefaultRole; 5] = [
    DefaultRole {
        name: "devops",
        api_groups: &["*"],
        resources: &["*"],
        verbs: &["*"],
    },
    DefaultRole {
        name: "developer",
        api_groups: &["*"],
        resources: &["pods", "pods/log"],
        verbs: &["get", "list", "watch"],
    },
    DefaultRole {
        name: "developer-portforward",
        api_groups: &[""],
        resources: &["pods", "pods/log", "pods/portforward"],
        verbs: &["get", "list", "watch", "create"],
    },
    DefaultRole {
        name: "watcher",
        api_groups: &["*"],
        resources: &["*"],
        verbs: &["get", "list", "watch"],
    },
    DefaultRole {
        name: "developer-exec-portforward",
        api_groups: &["", "metrics.k8s.io"],
        resources: &["pods", "pods/log", "pods/portforward", "pods/exec"],
        verbs: &["get", "list", "watch", "create"],
    },
];

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

impl DefaultRole {
    pub fn rule(&self) -> PolicyRule {
        let owned = |xs: &[&str]| xs.iter().map(|s| (*s).to_owned()).collect();
        PolicyRule {
            verbs: owned(self.verbs),
            api_groups: owned(self.api_groups),
            resources: owned(self.resources),
            resource_names: Vec::new(),
            non_resource_urls: Vec::new(),
        }
    }
}

/// The objects granting the built-in roles of `cluster` across `namespaces` (the namespaces
/// that exist now: rebuild when one appears or goes).
pub fn default_role_objects<S: AsRef<str>>(cluster: &str, namespaces: &[S]) -> RbacObjects {
    let mut objects = RbacObjects {
        cluster_roles: Vec::with_capacity(DEFAULT_ROLES.len()),
        cluster_role_bindings: Vec::with_capacity(DEFAULT_ROLES.len()),
        role_bindings: Vec::with_capacity(DEFAULT_ROLES.len() * namespaces.len()),
        roles: Vec::new(),
    };
    for role in &DEFAULT_ROLES {
        let cluster_wide = format!("{cluster}:{}", role.name);
        objects.cluster_roles.push(ClusterRole {
            metadata: meta(&cluster_wide, ""),
            rules: vec![role.rule()],
        });
        objects.cluster_role_bindings.push(ClusterRoleBinding {
            metadata: meta(&cluster_wide, ""),
            role_ref: cluster_role_ref(&cluster_wide),
            subjects: vec![group(cluster_wide.clone())],
        });
        for namespace in namespaces {
            let namespace = namespace.as_ref();
            let per_namespace = format!("{cluster_wide}:{namespace}");
            objects.role_bindings.push(RoleBinding {
                metadata: meta(&per_namespace, namespace),
                role_ref: cluster_role_ref(&cluster_wide),
                subjects: vec![group(per_namespace)],
            });
        }
    }
    objects
}

fn meta(name: &str, namespace: &str) -> ObjectMeta {
    ObjectMeta {
        name: name.to_owned(),
        namespace: namespace.to_owned(),
        cluster_name: String::new(),
    }
}

fn cluster_role_ref(name: &str) -> RoleRef {
    RoleRef {
        api_group: RBAC_GROUP.to_owned(),
        kind: RoleRefKind::ClusterRole,
        name: name.to_owned(),
    }
}

fn group(name: String) -> Subject {
    Subject {
        kind: SubjectKind::Group,
        api_group: RBAC_GROUP.to_owned(),
        name,
        namespace: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authz::rbac::{Decision, Snapshot};
    use crate::authz::request_info::RequestInfo;

    fn decide(snapshot: &Snapshot, group: &str, method: &str, url: &str, upgrade: bool) -> Decision {
        let (path, query) = url.split_once('?').map_or((url, None), |(p, q)| (p, Some(q)));
        let info = match RequestInfo::parse(method, path, query, upgrade) {
            Ok(i) => i,
            Err(e) => panic!("{url}: {e}"),
        };
        snapshot.authorize("ann", &[group, "system:authenticated"], &info)
    }

    #[test]
    fn objects_have_the_expected_names() {
        let objects = default_role_objects("k8s", &["dev", "prod"]);
        let names = |v: Vec<&ObjectMeta>| {
            v.into_iter()
                .map(|m| format!("{}/{}", m.namespace, m.name))
                .collect::<Vec<_>>()
        };
        assert_eq!(objects.cluster_roles.len(), 5);
        assert_eq!(objects.cluster_role_bindings.len(), 5);
        assert!(objects.roles.is_empty());
        assert_eq!(
            names(
                objects
                    .role_bindings
                    .iter()
                    .take(2)
                    .map(|b| &b.metadata)
                    .collect()
            ),
            vec!["dev/k8s:devops:dev", "prod/k8s:devops:prod"]
        );
        assert_eq!(objects.role_bindings.len(), 10);
        assert_eq!(objects.role_bindings[0].role_ref.name, "k8s:devops");
        assert_eq!(objects.role_bindings[0].subjects[0].name, "k8s:devops:dev");
        assert_eq!(
            objects.cluster_role_bindings[4].subjects[0].name,
            "k8s:developer-exec-portforward"
        );
        assert_eq!(
            objects.cluster_roles[1].rules[0].resources,
            vec!["pods", "pods/log"]
        );
    }

    #[test]
    fn decisions() {
        let snapshot = Snapshot::build(&default_role_objects("k8s", &["dev", "prod"]));
        use Decision::{Allow, Deny};
        let exec = "/api/v1/namespaces/dev/pods/web/exec?command=sh";
        let pf = "/api/v1/namespaces/dev/pods/web/portforward";
        #[rustfmt::skip]
        let cases: &[(&str, &str, &str, bool, Decision)] = &[
            ("k8s:devops", "DELETE", "/api/v1/namespaces/prod/secrets/s", false, Allow),
            ("k8s:devops", "GET", "/api/v1/nodes", false, Allow),
            ("k8s:devops", "GET", exec, true, Allow),
            ("k8s:devops", "GET", "/metrics", false, Deny),
            ("k8s:devops:dev", "DELETE", "/api/v1/namespaces/dev/secrets/s", false, Allow),
            ("k8s:devops:dev", "GET", "/api/v1/namespaces/dev", false, Allow),
            ("k8s:devops:dev", "DELETE", "/api/v1/namespaces/prod/secrets/s", false, Deny),
            ("k8s:devops:dev", "GET", "/api/v1/nodes", false, Deny),
            ("k8s:devops:dev", "GET", "/api/v1/pods", false, Deny),
            ("k8s:devops:staging", "GET", "/api/v1/namespaces/staging/pods", false, Deny),
            ("other:devops", "GET", "/api/v1/namespaces/dev/pods", false, Deny),
            ("k8s:developer", "GET", "/api/v1/namespaces/prod/pods", false, Allow),
            ("k8s:developer", "GET", "/api/v1/pods?watch=1", false, Allow),
            ("k8s:developer", "GET", "/api/v1/namespaces/dev/pods/web/log", false, Allow),
            ("k8s:developer", "GET", "/apis/metrics.k8s.io/v1beta1/namespaces/dev/pods", false, Allow),
            ("k8s:developer", "GET", "/api/v1/namespaces/dev/secrets", false, Deny),
            ("k8s:developer", "DELETE", "/api/v1/namespaces/dev/pods/web", false, Deny),
            ("k8s:developer", "GET", exec, true, Deny),
            ("k8s:developer", "GET", pf, true, Deny),
            ("k8s:developer:dev", "GET", "/api/v1/namespaces/dev/pods/web/log", false, Allow),
            ("k8s:developer:dev", "GET", "/api/v1/namespaces/prod/pods", false, Deny),
            ("k8s:developer-portforward", "GET", pf, true, Allow),
            ("k8s:developer-portforward", "POST", pf, true, Allow),
            ("k8s:developer-portforward", "GET", exec, true, Deny),
            ("k8s:developer-portforward", "POST", exec, true, Deny),
            ("k8s:developer-portforward", "POST", "/api/v1/namespaces/dev/pods", false, Allow),
            ("k8s:developer-portforward", "GET", "/apis/metrics.k8s.io/v1beta1/namespaces/dev/pods", false, Deny),
            ("k8s:developer-portforward:prod", "GET", pf, true, Deny),
            ("k8s:watcher", "GET", "/api/v1/namespaces/dev/secrets/s", false, Allow),
            ("k8s:watcher", "GET", "/api/v1/nodes", false, Allow),
            ("k8s:watcher", "GET", exec, true, Deny),
            ("k8s:watcher", "GET", "/api/v1/namespaces/dev/pods/web/attach", true, Deny),
            ("k8s:watcher", "GET", pf, true, Deny),
            ("k8s:watcher", "PATCH", "/api/v1/namespaces/dev/pods/web", false, Deny),
            ("k8s:watcher:dev", "GET", "/api/v1/namespaces/dev/configmaps", false, Allow),
            ("k8s:watcher:dev", "GET", exec, true, Deny),
            ("k8s:developer-exec-portforward", "GET", exec, true, Allow),
            ("k8s:developer-exec-portforward", "POST", exec, true, Allow),
            ("k8s:developer-exec-portforward", "GET", "/apis/metrics.k8s.io/v1beta1/namespaces/dev/pods", false, Allow),
            ("k8s:developer-exec-portforward", "GET", "/api/v1/namespaces/dev/pods/web/attach", true, Deny),
            ("k8s:developer-exec-portforward", "GET", "/apis/apps/v1/namespaces/dev/deployments", false, Deny),
            ("k8s:developer-exec-portforward:dev", "GET", exec, true, Allow),
            ("k8s:developer-exec-portforward:prod", "GET", exec, true, Deny),
        ];
        for &(group, method, url, upgrade, want) in cases {
            assert_eq!(
                decide(&snapshot, group, method, url, upgrade),
                want,
                "{group} {method} {url} upgrade={upgrade}"
            );
        }
    }

    #[test]
    fn namespaces_come_and_go_with_the_list() {
        let before = Snapshot::build(&default_role_objects("k8s", &["dev"]));
        let after = Snapshot::build(&default_role_objects("k8s", &["new"]));
        let url = "/api/v1/namespaces/new/pods";
        assert_eq!(
            decide(&before, "k8s:developer:new", "GET", url, false),
            Decision::Deny
        );
        assert_eq!(
            decide(&after, "k8s:developer:new", "GET", url, false),
            Decision::Allow
        );
        let url = "/api/v1/namespaces/dev/pods";
        assert_eq!(
            decide(&before, "k8s:developer:dev", "GET", url, false),
            Decision::Allow
        );
        assert_eq!(
            decide(&after, "k8s:developer:dev", "GET", url, false),
            Decision::Deny
        );
    }
}
