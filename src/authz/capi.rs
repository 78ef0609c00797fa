//! The role resources of group `rbac.platformengineers.io/v1` (CAPIRole, CAPIClusterRole,
//! CAPIRoleBinding, CAPIClusterRoleBinding), as written in the management cluster, and the RBAC
//! objects they become inside the proxy for each target cluster. Pure: the watches that fill
//! [`CapiPolicy`] live in `management`.
//!
//! The naming and roleRef rules are the Go proxy's (its README, "CAPI roles"):
//! - a CAPIRole becomes, in each target namespace, a Role of the same name with its rules;
//! - a CAPIClusterRole becomes a ClusterRole of the same name;
//! - a CAPIRoleBinding becomes, in each target namespace and for each `roleRef` entry `r`, a
//!   RoleBinding `<name>-<r>` to the Role `r` when that namespace has one in this cluster,
//!   else to the ClusterRole `r` when this cluster has one, else to the Role `r` (which may come
//!   later);
//! - a CAPIClusterRoleBinding becomes, for each `roleRef` entry `r`, a ClusterRoleBinding
//!   `<name>-<r>` to the ClusterRole `r`;
//! - `targetClusters` containing `"*"` means every cluster, including clusters added later; an
//!   empty list means none.
//!
//! Fixed against the Go proxy: objects are computed from the resources as they are now, so an
//! update or a deletion removes exactly what the resource created (two resources of the same name
//! in different namespaces no longer collide); the roleRef kind is decided per target cluster,
//! not across all clusters; a cluster's own Role or ClusterRole of the same name is never
//! replaced (the cluster's objects come first when the snapshot is built).

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::authz::rbac::{
    ClusterRole, ClusterRoleBinding, ObjectMeta, PolicyRule, RbacObjects, Role, RoleBinding, RoleRef,
    RoleRefKind, Subject, SubjectKind,
};

pub const GROUP: &str = "rbac.platformengineers.io";
pub const VERSION: &str = "v1";

/// The four kinds, with their plural names and scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CapiKind {
    Role,
    ClusterRole,
    RoleBinding,
    ClusterRoleBinding,
}

impl CapiKind {
    pub const ALL: [CapiKind; 4] = [
        CapiKind::Role,
        CapiKind::ClusterRole,
        CapiKind::RoleBinding,
        CapiKind::ClusterRoleBinding,
    ];

    pub fn kind(self) -> &'static str {
        match self {
            CapiKind::Role => "CAPIRole",
            CapiKind::ClusterRole => "CAPIClusterRole",
            CapiKind::RoleBinding => "CAPIRoleBinding",
            CapiKind::ClusterRoleBinding => "CAPIClusterRoleBinding",
        }
    }

    pub fn plural(self) -> &'static str {
        match self {
            CapiKind::Role => "capiroles",
            CapiKind::ClusterRole => "capiclusterroles",
            CapiKind::RoleBinding => "capirolebindings",
            CapiKind::ClusterRoleBinding => "capiclusterrolebindings",
        }
    }

    pub fn namespaced(self) -> bool {
        matches!(self, CapiKind::Role | CapiKind::RoleBinding)
    }
}

/// `spec` of a CAPIRole or CAPIClusterRole.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleSpec {
    #[serde(default)]
    pub rules: Vec<PolicyRule>,
    #[serde(default)]
    pub target_clusters: Vec<String>,
    #[serde(default)]
    pub target_namespaces: Vec<String>,
}

/// `spec` of a CAPIRoleBinding or CAPIClusterRoleBinding.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BindingSpec {
    #[serde(default)]
    pub role_ref: Vec<String>,
    #[serde(default)]
    pub subjects: Vec<CapiSubject>,
    #[serde(default)]
    pub target_clusters: Vec<String>,
    #[serde(default)]
    pub target_namespaces: Vec<String>,
}

/// One subject: the first non-empty of `group`, `user`, `serviceAccount`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CapiSubject {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub service_account: String,
}

impl CapiSubject {
    fn to_subject(&self) -> Option<Subject> {
        let (kind, name) = if !self.group.is_empty() {
            (SubjectKind::Group, &self.group)
        } else if !self.user.is_empty() {
            (SubjectKind::User, &self.user)
        } else if !self.service_account.is_empty() {
            (SubjectKind::ServiceAccount, &self.service_account)
        } else {
            return None;
        };
        Some(Subject {
            kind,
            api_group: if kind == SubjectKind::ServiceAccount {
                String::new()
            } else {
                "rbac.authorization.k8s.io".into()
            },
            name: name.clone(),
            namespace: String::new(),
        })
    }
}

/// One resource: its name (the objects it makes are named after it) and its spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named<S> {
    pub name: String,
    pub spec: S,
}

/// Every role resource of the management cluster, keyed by `namespace/name` (or `name`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CapiPolicy {
    pub roles: BTreeMap<String, Named<RoleSpec>>,
    pub cluster_roles: BTreeMap<String, Named<RoleSpec>>,
    pub role_bindings: BTreeMap<String, Named<BindingSpec>>,
    pub cluster_role_bindings: BTreeMap<String, Named<BindingSpec>>,
}

/// Whether a resource's `targetClusters` covers `cluster`.
fn targets(target_clusters: &[String], cluster: &str) -> bool {
    target_clusters.iter().any(|c| c == "*" || c == cluster)
}

fn meta(name: &str, namespace: &str) -> ObjectMeta {
    ObjectMeta {
        name: name.to_owned(),
        namespace: namespace.to_owned(),
        ..ObjectMeta::default()
    }
}

impl CapiPolicy {
    pub fn is_empty(&self) -> bool {
        self.roles.is_empty()
            && self.cluster_roles.is_empty()
            && self.role_bindings.is_empty()
            && self.cluster_role_bindings.is_empty()
    }

    /// The objects for cluster `cluster`. `cluster_has_role(namespace, name)` and
    /// `cluster_has_cluster_role(name)` say what the cluster itself holds, for the roleRef kind.
    pub fn objects_for(
        &self,
        cluster: &str,
        cluster_has_role: impl Fn(&str, &str) -> bool,
        cluster_has_cluster_role: impl Fn(&str) -> bool,
    ) -> RbacObjects {
        let mut out = RbacObjects::default();
        for r in self
            .roles
            .values()
            .filter(|r| targets(&r.spec.target_clusters, cluster))
        {
            for ns in &r.spec.target_namespaces {
                out.roles.push(Role {
                    metadata: meta(&r.name, ns),
                    rules: r.spec.rules.clone(),
                });
            }
        }
        for r in self
            .cluster_roles
            .values()
            .filter(|r| targets(&r.spec.target_clusters, cluster))
        {
            out.cluster_roles.push(ClusterRole {
                metadata: meta(&r.name, ""),
                rules: r.spec.rules.clone(),
            });
        }
        // The kind of a roleRef is told by the proxy's own role resources first: a Role created
        // in the cluster under a CAPIClusterRole's name must not turn the platform's binding
        // into a binding to the cluster's Role. Only a name the proxy does not define is
        // looked up in the cluster.
        let proxy_role = |ns: &str, name: &str| {
            (out.roles.iter()).any(|r| r.metadata.namespace == ns && r.metadata.name == name)
        };
        let proxy_cluster_role = |name: &str| out.cluster_roles.iter().any(|r| r.metadata.name == name);
        let has_role = |ns: &str, name: &str| {
            proxy_role(ns, name) || (!proxy_cluster_role(name) && cluster_has_role(ns, name))
        };
        let has_cluster_role = |name: &str| proxy_cluster_role(name) || cluster_has_cluster_role(name);
        let mut role_bindings = Vec::new();
        for b in self
            .role_bindings
            .values()
            .filter(|b| targets(&b.spec.target_clusters, cluster))
        {
            let subjects: Vec<Subject> = b
                .spec
                .subjects
                .iter()
                .filter_map(CapiSubject::to_subject)
                .collect();
            for ns in &b.spec.target_namespaces {
                for r in &b.spec.role_ref {
                    let kind = if has_role(ns, r) {
                        RoleRefKind::Role
                    } else if has_cluster_role(r) {
                        RoleRefKind::ClusterRole
                    } else {
                        RoleRefKind::Role
                    };
                    role_bindings.push(RoleBinding {
                        metadata: meta(&format!("{}-{r}", b.name), ns),
                        role_ref: role_ref(kind, r),
                        subjects: subjects.clone(),
                    });
                }
            }
        }
        out.role_bindings = role_bindings;
        for b in self
            .cluster_role_bindings
            .values()
            .filter(|b| targets(&b.spec.target_clusters, cluster))
        {
            let subjects: Vec<Subject> = b
                .spec
                .subjects
                .iter()
                .filter_map(CapiSubject::to_subject)
                .collect();
            for r in &b.spec.role_ref {
                out.cluster_role_bindings.push(ClusterRoleBinding {
                    metadata: meta(&format!("{}-{r}", b.name), ""),
                    role_ref: role_ref(RoleRefKind::ClusterRole, r),
                    subjects: subjects.clone(),
                });
            }
        }
        out
    }
}

fn role_ref(kind: RoleRefKind, name: &str) -> RoleRef {
    RoleRef {
        api_group: "rbac.authorization.k8s.io".into(),
        kind,
        name: name.to_owned(),
    }
}

/// What is wrong with a resource that will make it grant nothing, for a warning.
pub fn role_problem(spec: &RoleSpec, namespaced: bool) -> Option<&'static str> {
    if spec.target_clusters.is_empty() {
        Some("it has no targetClusters")
    } else if namespaced && spec.target_namespaces.is_empty() {
        Some("it has no targetNamespaces")
    } else {
        None
    }
}

/// As [`role_problem`], for bindings.
pub fn binding_problem(spec: &BindingSpec, namespaced: bool) -> Option<&'static str> {
    if spec.target_clusters.is_empty() {
        Some("it has no targetClusters")
    } else if namespaced && spec.target_namespaces.is_empty() {
        Some("it has no targetNamespaces")
    } else if spec.role_ref.is_empty() {
        Some("its roleRef is empty")
    } else if spec.subjects.iter().all(|s| s.to_subject().is_none()) {
        Some("none of its subjects names a group, user or serviceAccount")
    } else {
        None
    }
}

#[cfg(test)]
mod tests;
