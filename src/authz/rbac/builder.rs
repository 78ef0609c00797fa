//! Turns RBAC objects into a [`Snapshot`]: resolve each binding's roleRef once, then file the
//! resolved rules under every subject of the binding.

use std::collections::HashMap;
use std::sync::Arc;

use super::snapshot::{Grants, Rules, Snapshot};
use super::types::{
    ClusterRole, ClusterRoleBinding, RbacObjects, Role, RoleBinding, RoleRefKind, Subject, SubjectKind,
};

/// Collects objects (borrowed: nothing is copied but the rules, once per role) and builds a
/// snapshot. When two roles of the same kind share a name (and namespace), the first one added
/// wins, as with the Go proxy's static resolver: add the sources in order of precedence.
#[derive(Debug, Default)]
pub struct SnapshotBuilder<'a> {
    cluster_roles: HashMap<&'a str, Rules>,
    roles: HashMap<(&'a str, &'a str), Rules>,
    cluster_role_bindings: Vec<&'a ClusterRoleBinding>,
    role_bindings: Vec<&'a RoleBinding>,
}

impl<'a> SnapshotBuilder<'a> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add_objects(&mut self, objects: &'a RbacObjects) -> &mut Self {
        objects.cluster_roles.iter().for_each(|r| {
            self.add_cluster_role(r);
        });
        objects.roles.iter().for_each(|r| {
            self.add_role(r);
        });
        self.cluster_role_bindings
            .extend(objects.cluster_role_bindings.iter());
        self.role_bindings.extend(objects.role_bindings.iter());
        self
    }

    pub fn add_cluster_role(&mut self, role: &'a ClusterRole) -> &mut Self {
        self.cluster_roles
            .entry(role.metadata.name.as_str())
            .or_insert_with(|| Arc::from(role.rules.as_slice()));
        self
    }

    pub fn add_role(&mut self, role: &'a Role) -> &mut Self {
        let key = (role.metadata.namespace.as_str(), role.metadata.name.as_str());
        self.roles
            .entry(key)
            .or_insert_with(|| Arc::from(role.rules.as_slice()));
        self
    }

    pub fn add_cluster_role_binding(&mut self, binding: &'a ClusterRoleBinding) -> &mut Self {
        self.cluster_role_bindings.push(binding);
        self
    }

    pub fn add_role_binding(&mut self, binding: &'a RoleBinding) -> &mut Self {
        self.role_bindings.push(binding);
        self
    }

    /// Resolves and indexes. A binding whose role does not exist grants nothing; so does a
    /// ClusterRoleBinding to a Role, and a RoleBinding without namespace (Kubernetes never
    /// visits either).
    pub fn build(&self) -> Snapshot {
        let mut snapshot = Snapshot::default();
        for binding in &self.cluster_role_bindings {
            let rules = match binding.role_ref.kind {
                RoleRefKind::ClusterRole => self.cluster_roles.get(binding.role_ref.name.as_str()),
                RoleRefKind::Role | RoleRefKind::Unsupported => None,
            };
            if let Some(rules) = rules.filter(|r| !r.is_empty()) {
                for subject in &binding.subjects {
                    grant(&mut snapshot, subject, None, rules);
                }
            }
        }
        for binding in &self.role_bindings {
            let namespace = binding.metadata.namespace.as_str();
            if namespace.is_empty() {
                continue;
            }
            let name = binding.role_ref.name.as_str();
            let rules = match binding.role_ref.kind {
                RoleRefKind::Role => self.roles.get(&(namespace, name)),
                RoleRefKind::ClusterRole => self.cluster_roles.get(name),
                RoleRefKind::Unsupported => None,
            };
            if let Some(rules) = rules.filter(|r| !r.is_empty()) {
                for subject in &binding.subjects {
                    grant(&mut snapshot, subject, Some(namespace), rules);
                }
            }
        }
        for (name, rules) in &self.cluster_roles {
            snapshot.cluster_roles.insert(Box::from(*name), Arc::clone(rules));
        }
        for ((namespace, name), rules) in &self.roles {
            snapshot
                .roles
                .insert(format!("{namespace}/{name}").into_boxed_str(), Arc::clone(rules));
        }
        snapshot
    }
}

impl Snapshot {
    /// Builds a snapshot from one set of objects.
    pub fn build(objects: &RbacObjects) -> Snapshot {
        SnapshotBuilder::new().add_objects(objects).build()
    }
}

/// Files `rules` under the user or group `subject` names, cluster-wide (`namespace == None`)
/// or in one namespace.
fn grant(snapshot: &mut Snapshot, subject: &Subject, namespace: Option<&str>, rules: &Rules) {
    let (index, key) = match subject.kind {
        SubjectKind::User => (&mut snapshot.users, subject.name.clone()),
        SubjectKind::Group => (&mut snapshot.groups, subject.name.clone()),
        SubjectKind::ServiceAccount => {
            // A ServiceAccount without namespace means the binding's namespace; in a
            // ClusterRoleBinding it matches nobody.
            let sa_namespace = match (subject.namespace.as_str(), namespace) {
                ("", Some(ns)) => ns,
                (ns, _) => ns,
            };
            if sa_namespace.is_empty() {
                return;
            }
            let user = format!("system:serviceaccount:{sa_namespace}:{}", subject.name);
            (&mut snapshot.users, user)
        }
        SubjectKind::Unsupported => return,
    };
    let grants: &mut Grants = index.entry(key.into_boxed_str()).or_default();
    let lists = match namespace {
        None => &mut grants.cluster,
        Some(ns) => grants.namespaced.entry(Box::from(ns)).or_default(),
    };
    if !lists.iter().any(|seen| Arc::ptr_eq(seen, rules)) {
        lists.push(Arc::clone(rules));
    }
}
