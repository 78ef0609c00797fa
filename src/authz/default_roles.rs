//! The five built-in roles (README, "Authorization"), instantiated in memory for each cluster `C`:
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

/// One rule of a built-in role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefaultRule {
    pub api_groups: &'static [&'static str],
    pub resources: &'static [&'static str],
    pub verbs: &'static [&'static str],
}

/// One built-in role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefaultRole {
    pub name: &'static str,
    pub rules: &'static [DefaultRule],
}

const READ: &[&str] = &["get", "list", "watch"];
/// The streaming subresources need `create` (SPDY's POST, and the WebSocket GET that the proxy
/// authorizes as `create`) and `get` (kube-apiserver before 1.35 checked `get` for WebSocket).
const STREAM: &[&str] = &["get", "create"];

/// The Go proxy gave the port-forward and exec roles one rule listing `pods` beside the streaming
/// subresources with `create`, so a holder could also create any pod, with any service account
/// of the namespace: a far wider grant than the role's name says. Here the streaming
/// subresources get their own rule, and `pods` keeps only the read verbs.
pub const DEFAULT_ROLES: [DefaultRole; 5] = [
    DefaultRole {
        name: "devops",
        rules: &[DefaultRule {
            api_groups: &["*"],
            resources: &["*"],
            verbs: &["*"],
        }],
    },
    DefaultRole {
        name: "developer",
        rules: &[DefaultRule {
            api_groups: &["*"],
            resources: &["pods", "pods/log"],
            verbs: READ,
        }],
    },
    DefaultRole {
        name: "developer-portforward",
        rules: &[
            DefaultRule {
                api_groups: &[""],
                resources: &["pods", "pods/log"],
                verbs: READ,
            },
            DefaultRule {
                api_groups: &[""],
                resources: &["pods/portforward"],
                verbs: STREAM,
            },
        ],
    },
    DefaultRole {
        name: "watcher",
        rules: &[DefaultRule {
            api_groups: &["*"],
            resources: &["*"],
            verbs: READ,
        }],
    },
    DefaultRole {
        name: "developer-exec-portforward",
        rules: &[
            DefaultRule {
                api_groups: &["", "metrics.k8s.io"],
                resources: &["pods", "pods/log"],
                verbs: READ,
            },
            DefaultRule {
                api_groups: &[""],
                resources: &["pods/portforward", "pods/exec"],
                verbs: STREAM,
            },
        ],
    },
];

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

impl DefaultRule {
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

impl DefaultRole {
    pub fn policy_rules(&self) -> Vec<PolicyRule> {
        self.rules.iter().map(DefaultRule::rule).collect()
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
            rules: role.policy_rules(),
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

/// Manifests that grant *in the cluster* what the built-in roles grant through the proxy, for a
/// cluster served with `--impersonate-upstream` (where kube-apiserver authorizes the real user
/// and its groups `C:R`, `C:R:N` mean nothing unless bound): a ClusterRole per role
/// (`kube-oidc-proxy:R`), a ClusterRoleBinding for group `C:R`, and for each namespace N a
/// RoleBinding for group `C:R:N`. YAML, one document per object, ready for `kubectl apply -f -`.
pub fn mirror_manifests<S: AsRef<str>>(cluster: &str, namespaces: &[S]) -> String {
    let q = |s: &str| serde_json::Value::from(s).to_string();
    let list = |xs: &[&str]| format!("[{}]", xs.iter().map(|x| q(x)).collect::<Vec<_>>().join(", "));
    let mut out = format!(
        "# Built-in roles of kube-oidc-proxy for cluster {}, for --impersonate-upstream.\n",
        q(cluster)
    );
    let labels = "  labels:\n    app.kubernetes.io/managed-by: kube-oidc-proxy\n";
    for role in &DEFAULT_ROLES {
        let role_name = format!("kube-oidc-proxy:{}", role.name);
        out.push_str(&format!(
            "---\napiVersion: {RBAC_GROUP}/v1\nkind: ClusterRole\nmetadata:\n  name: {}\n{labels}rules:\n",
            q(&role_name)
        ));
        for r in role.rules {
            out.push_str(&format!(
                "- apiGroups: {}\n  resources: {}\n  verbs: {}\n",
                list(r.api_groups),
                list(r.resources),
                list(r.verbs)
            ));
        }
        let group = format!("{cluster}:{}", role.name);
        out.push_str(&format!(
            "---\napiVersion: {RBAC_GROUP}/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: {}\n{labels}\
             roleRef:\n  apiGroup: {RBAC_GROUP}\n  kind: ClusterRole\n  name: {}\n\
             subjects:\n- apiGroup: {RBAC_GROUP}\n  kind: Group\n  name: {}\n",
            q(&format!("kube-oidc-proxy:{group}")),
            q(&role_name),
            q(&group)
        ));
        for ns in namespaces {
            let ns = ns.as_ref();
            let group = format!("{cluster}:{}:{ns}", role.name);
            out.push_str(&format!(
                "---\napiVersion: {RBAC_GROUP}/v1\nkind: RoleBinding\nmetadata:\n  name: {}\n  namespace: {}\n{labels}\
                 roleRef:\n  apiGroup: {RBAC_GROUP}\n  kind: ClusterRole\n  name: {}\n\
                 subjects:\n- apiGroup: {RBAC_GROUP}\n  kind: Group\n  name: {}\n",
                q(&format!("kube-oidc-proxy:{group}")),
                q(ns),
                q(&role_name),
                q(&group)
            ));
        }
    }
    out
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
            // The Go proxy's single rule let these roles create pods; ours never do.
            ("k8s:developer-portforward", "POST", "/api/v1/namespaces/dev/pods", false, Deny),
            ("k8s:developer-portforward", "GET", "/api/v1/namespaces/dev/pods/web", false, Allow),
            ("k8s:developer-portforward", "DELETE", "/api/v1/namespaces/dev/pods/web", false, Deny),
            ("k8s:developer-exec-portforward", "POST", "/api/v1/namespaces/dev/pods", false, Deny),
            ("k8s:developer-exec-portforward", "PATCH", "/api/v1/namespaces/dev/pods/web", false, Deny),
            ("k8s:developer-exec-portforward", "POST", "/apis/metrics.k8s.io/v1beta1/namespaces/dev/pods/web/exec", true, Deny),
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

    /// The printed manifests, read back as RBAC objects, decide exactly as the built-in roles do.
    #[test]
    fn mirror_manifests_grant_what_the_built_in_roles_grant() {
        let yaml = mirror_manifests("k8s", &["dev"]);
        let mut objects = RbacObjects::default();
        for doc in yaml.split("\n---\n").skip(1) {
            let v: serde_json::Value = serde_saphyr::from_str(doc).expect("YAML document");
            match v["kind"].as_str() {
                Some("ClusterRole") => objects.cluster_roles.push(serde_json::from_value(v).unwrap()),
                Some("ClusterRoleBinding") => objects
                    .cluster_role_bindings
                    .push(serde_json::from_value(v).unwrap()),
                Some("RoleBinding") => objects.role_bindings.push(serde_json::from_value(v).unwrap()),
                other => panic!("unexpected kind {other:?}"),
            }
        }
        assert_eq!(objects.cluster_roles.len(), 5);
        assert_eq!(objects.cluster_role_bindings.len(), 5);
        assert_eq!(objects.role_bindings.len(), 5);
        let mirrored = Snapshot::build(&objects);
        let builtin = Snapshot::build(&default_role_objects("k8s", &["dev"]));
        let urls = [
            ("GET", "/api/v1/namespaces/dev/pods"),
            ("POST", "/api/v1/namespaces/dev/pods"),
            ("POST", "/api/v1/namespaces/dev/pods/web/exec"),
            ("POST", "/api/v1/namespaces/dev/pods/web/portforward"),
            ("GET", "/api/v1/namespaces/prod/pods"),
            ("DELETE", "/api/v1/namespaces/dev/secrets/s"),
            ("GET", "/apis/metrics.k8s.io/v1beta1/namespaces/dev/pods"),
            ("GET", "/api/v1/nodes"),
        ];
        for role in DEFAULT_ROLES {
            for group in [format!("k8s:{}", role.name), format!("k8s:{}:dev", role.name)] {
                for (m, u) in urls {
                    assert_eq!(
                        decide(&mirrored, &group, m, u, false),
                        decide(&builtin, &group, m, u, false),
                        "{group} {m} {u}"
                    );
                }
            }
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
