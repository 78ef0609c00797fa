//! Turns RBAC objects into a [`Snapshot`]: resolve each binding's roleRef once, then file the
//! resolved rules under every subject of the binding.

use std::collections::HashMap;
use std::sync::Arc;

use super::snapshot::{Grants, Rules, Snapshot};
use super::types::{
    ClusterRole, ClusterRoleBinding, RbacObjects, Role, RoleBinding, RoleRefKind, Subject, SubjectKind,
};

/// Who defined an object: the cluster itself (its own RBAC, watched) or the proxy (built-in
/// roles, the role file, role resources of the management cluster).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Cluster,
    Proxy,
}

/// Collects objects (borrowed: nothing is copied but the rules, once per role) and builds a
/// snapshot.
///
/// Authority has one direction: a binding the proxy defines resolves its roleRef among the
/// proxy's roles first, so nothing written inside a managed cluster changes what it grants; only
/// a role the proxy does not define is looked up in the cluster. A binding of the cluster's own
/// resolves among the cluster's roles only, as kube-apiserver resolves it: a binding left
/// dangling in a cluster (its role deleted after the binding passed kube's escalation check on
/// an empty role of that name) must not pick up a role the proxy defines. Within one origin, when two roles of the
/// same kind share a name (and namespace) the first one added wins, as with the Go proxy's static
/// resolver: add the sources in order of precedence.
#[derive(Debug, Default)]
pub struct SnapshotBuilder<'a> {
    /// Indexed by origin: `[cluster, proxy]`.
    cluster_roles: [HashMap<&'a str, Rules>; 2],
    roles: [HashMap<(&'a str, &'a str), Rules>; 2],
    cluster_role_bindings: Vec<(Origin, &'a ClusterRoleBinding)>,
    role_bindings: Vec<(Origin, &'a RoleBinding)>,
}

/// The tables to look a roleRef up in, in order, for a binding of `origin`.
fn lookup_order(origin: Origin) -> &'static [usize] {
    match origin {
        Origin::Cluster => &[0],
        Origin::Proxy => &[1, 0],
    }
}

impl<'a> SnapshotBuilder<'a> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Objects the proxy defines (built-in roles, role file, role resources).
    pub fn add_objects(&mut self, objects: &'a RbacObjects) -> &mut Self {
        for r in &objects.cluster_roles {
            self.cluster_role_of(Origin::Proxy, r);
        }
        for r in &objects.roles {
            self.role_of(Origin::Proxy, r);
        }
        self.cluster_role_bindings
            .extend(objects.cluster_role_bindings.iter().map(|b| (Origin::Proxy, b)));
        self.role_bindings
            .extend(objects.role_bindings.iter().map(|b| (Origin::Proxy, b)));
        self
    }

    /// Objects the cluster itself holds, all at once (tests and benches; the watch cache adds
    /// its objects one by one).
    pub fn add_cluster_objects(&mut self, objects: &'a RbacObjects) -> &mut Self {
        for r in &objects.cluster_roles {
            self.add_cluster_role(r);
        }
        for r in &objects.roles {
            self.add_role(r);
        }
        for b in &objects.cluster_role_bindings {
            self.add_cluster_role_binding(b);
        }
        for b in &objects.role_bindings {
            self.add_role_binding(b);
        }
        self
    }

    /// One of the cluster's own ClusterRoles.
    pub fn add_cluster_role(&mut self, role: &'a ClusterRole) -> &mut Self {
        self.cluster_role_of(Origin::Cluster, role)
    }

    /// One of the cluster's own Roles.
    pub fn add_role(&mut self, role: &'a Role) -> &mut Self {
        self.role_of(Origin::Cluster, role)
    }

    /// One of the cluster's own ClusterRoleBindings.
    pub fn add_cluster_role_binding(&mut self, binding: &'a ClusterRoleBinding) -> &mut Self {
        self.cluster_role_bindings.push((Origin::Cluster, binding));
        self
    }

    /// One of the cluster's own RoleBindings.
    pub fn add_role_binding(&mut self, binding: &'a RoleBinding) -> &mut Self {
        self.role_bindings.push((Origin::Cluster, binding));
        self
    }

    fn cluster_role_of(&mut self, origin: Origin, role: &'a ClusterRole) -> &mut Self {
        self.cluster_roles[origin as usize]
            .entry(role.metadata.name.as_str())
            .or_insert_with(|| Arc::from(role.rules.as_slice()));
        self
    }

    fn role_of(&mut self, origin: Origin, role: &'a Role) -> &mut Self {
        let key = (role.metadata.namespace.as_str(), role.metadata.name.as_str());
        self.roles[origin as usize]
            .entry(key)
            .or_insert_with(|| Arc::from(role.rules.as_slice()));
        self
    }

    fn cluster_role(&self, origin: Origin, name: &str) -> Option<&Rules> {
        lookup_order(origin)
            .iter()
            .find_map(|&i| self.cluster_roles[i].get(name))
    }

    fn role(&self, origin: Origin, namespace: &'a str, name: &'a str) -> Option<&Rules> {
        lookup_order(origin)
            .iter()
            .find_map(|&i| self.roles[i].get(&(namespace, name)))
    }

    /// Roles the cluster defines under a name the proxy defines too (`ClusterRole NAME`,
    /// `Role NS/NAME`), sorted: the proxy's bindings ignore the cluster's, which deserves a word
    /// to the operator.
    pub fn collisions(&self) -> Vec<String> {
        let [cluster, proxy] = &self.cluster_roles;
        let mut out: Vec<String> = cluster
            .keys()
            .filter(|n| proxy.contains_key(*n))
            .map(|n| format!("ClusterRole {n}"))
            .collect();
        let [cluster, proxy] = &self.roles;
        out.extend(
            cluster
                .keys()
                .filter(|k| proxy.contains_key(*k))
                .map(|(ns, n)| format!("Role {ns}/{n}")),
        );
        out.sort();
        out
    }

    /// Resolves and indexes. A binding whose role does not exist grants nothing; so does a
    /// ClusterRoleBinding to a Role, and a RoleBinding without namespace (Kubernetes never
    /// visits either).
    pub fn build(&self) -> Snapshot {
        let mut snapshot = Snapshot::default();
        for (origin, binding) in &self.cluster_role_bindings {
            let rules = match binding.role_ref.kind {
                RoleRefKind::ClusterRole => self.cluster_role(*origin, binding.role_ref.name.as_str()),
                RoleRefKind::Role | RoleRefKind::Unsupported => None,
            };
            if let Some(rules) = rules.filter(|r| !r.is_empty()) {
                for subject in &binding.subjects {
                    grant(&mut snapshot, subject, None, rules);
                }
            }
        }
        for (origin, binding) in &self.role_bindings {
            let namespace = binding.metadata.namespace.as_str();
            if namespace.is_empty() {
                continue;
            }
            let name = binding.role_ref.name.as_str();
            let rules = match binding.role_ref.kind {
                RoleRefKind::Role => self.role(*origin, namespace, name),
                RoleRefKind::ClusterRole => self.cluster_role(*origin, name),
                RoleRefKind::Unsupported => None,
            };
            if let Some(rules) = rules.filter(|r| !r.is_empty()) {
                for subject in &binding.subjects {
                    grant(&mut snapshot, subject, Some(namespace), rules);
                }
            }
        }
        // As a binding written in the cluster will resolve: among the cluster's roles only.
        let cluster = Origin::Cluster as usize;
        for (name, rules) in &self.cluster_roles[cluster] {
            snapshot.cluster_roles.insert(Box::from(*name), Arc::clone(rules));
        }
        for ((namespace, name), rules) in &self.roles[cluster] {
            snapshot
                .roles
                .insert(format!("{namespace}/{name}").into_boxed_str(), Arc::clone(rules));
        }
        snapshot.collisions = self.collisions();
        snapshot
    }
}

impl Snapshot {
    /// Builds a snapshot from one set of objects, as if a cluster held them all (with one
    /// origin, grants are the same either way; the roles are then what `role_rules` sees).
    pub fn build(objects: &RbacObjects) -> Snapshot {
        SnapshotBuilder::new().add_cluster_objects(objects).build()
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
