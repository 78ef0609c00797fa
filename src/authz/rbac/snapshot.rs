//! One cluster's RBAC, resolved and indexed by subject once, then read by every request.
//!
//! Kubernetes' RBAC authorizer walks every ClusterRoleBinding, then every RoleBinding of the
//! request's namespace, and resolves each binding's role on the way. We do that walk once, at
//! build time: every user and group name maps to the rule lists granted to it, cluster-wide or
//! per namespace. A decision is then a handful of hash lookups (the user, each group) and a
//! scan of the rules granted to those names only, with no allocation.

use std::sync::Arc;

use super::hash::FastMap;
use super::matching::rule_allows;
use super::types::{NonResourceRule, PolicyRule, ResourceRule};
use crate::authz::request_info::RequestInfo;

/// The rules of one role, shared by every binding that grants it.
pub(super) type Rules = Arc<[PolicyRule]>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny,
}

/// What one user or group name was granted.
#[derive(Debug, Default)]
pub(super) struct Grants {
    /// From ClusterRoleBindings: apply in every namespace and at the cluster scope.
    pub(super) cluster: Vec<Rules>,
    /// From RoleBindings: apply in that namespace only.
    pub(super) namespaced: FastMap<Box<str>, Vec<Rules>>,
}

impl Grants {
    fn allows(&self, info: &RequestInfo) -> bool {
        if any_rule_allows(&self.cluster, info) {
            return true;
        }
        // Non-resource and cluster-scoped requests have no namespace, so RoleBindings (even
        // to ClusterRoles with nonResourceURLs) never count for them, as in Kubernetes.
        !info.namespace.is_empty()
            && self
                .namespaced
                .get(info.namespace.as_str())
                .is_some_and(|lists| any_rule_allows(lists, info))
    }
}

fn any_rule_allows(lists: &[Rules], info: &RequestInfo) -> bool {
    lists
        .iter()
        .any(|rules| rules.iter().any(|rule| rule_allows(rule, info)))
}

/// An immutable, indexed view of one cluster's RBAC. Build it with
/// [`SnapshotBuilder`](super::SnapshotBuilder) or [`Snapshot::build`]; share it with `Arc`.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// User names, including `system:serviceaccount:<ns>:<name>` for ServiceAccount subjects.
    pub(super) users: FastMap<Box<str>, Grants>,
    pub(super) groups: FastMap<Box<str>, Grants>,
    /// The cluster's own ClusterRoles by name and Roles by `namespace/name`, as the cluster's
    /// bindings resolve them: a binding written through the proxy is looked up here, so the
    /// escalation check sees exactly the rules the proxy will grant through that binding.
    pub(super) cluster_roles: FastMap<Box<str>, Rules>,
    pub(super) roles: FastMap<Box<str>, Rules>,
    /// Roles the cluster defines under a name the proxy defines too (see
    /// [`SnapshotBuilder::collisions`](super::SnapshotBuilder::collisions)).
    pub(super) collisions: Vec<String>,
}

impl Snapshot {
    /// A snapshot that allows nothing.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Allow when any rule granted to `user` or to one of `groups` allows the request.
    ///
    /// `groups` must be the complete list the API server would see, `system:authenticated`
    /// included, or discovery roles bound to that group will not apply.
    pub fn authorize<G: AsRef<str>>(&self, user: &str, groups: &[G], info: &RequestInfo) -> Decision {
        let by_user = self.users.get(user).is_some_and(|g| g.allows(info));
        if by_user
            || groups
                .iter()
                .any(|group| self.groups.get(group.as_ref()).is_some_and(|g| g.allows(info)))
        {
            Decision::Allow
        } else {
            Decision::Deny
        }
    }

    /// The rules that apply to `user` with `groups` in `namespace` (empty: cluster scope only),
    /// for SelfSubjectRulesReview. As Kubernetes, a rule with both resources and URLs appears in
    /// both lists. Unlike Kubernetes, URL rules granted by a RoleBinding are left out: they
    /// never allow anything, and the review should tell the truth.
    pub fn rules_for<G: AsRef<str>>(
        &self,
        user: &str,
        groups: &[G],
        namespace: &str,
    ) -> (Vec<ResourceRule>, Vec<NonResourceRule>) {
        let grants = self.grants_of(user, groups);
        // Cluster-wide lists first, then the namespace's; each list once, even when a role is
        // granted both ways or to several of the user's names.
        let mut lists: Vec<&Rules> = Vec::new();
        let mut local: Vec<&Rules> = Vec::new();
        for g in grants {
            push_unique(&mut lists, &g.cluster);
            if !namespace.is_empty()
                && let Some(namespaced) = g.namespaced.get(namespace)
            {
                local.extend(namespaced);
            }
        }
        let cluster_wide = lists.len();
        for rules in local {
            push_unique(&mut lists, std::slice::from_ref(rules));
        }
        let mut resource_rules = Vec::new();
        let mut non_resource_rules = Vec::new();
        for (i, rules) in lists.iter().enumerate() {
            let from_cluster_binding = i < cluster_wide;
            for rule in rules.iter() {
                if !rule.resources.is_empty() {
                    resource_rules.push(ResourceRule {
                        verbs: rule.verbs.clone(),
                        api_groups: rule.api_groups.clone(),
                        resources: rule.resources.clone(),
                        resource_names: rule.resource_names.clone(),
                    });
                }
                if from_cluster_binding && !rule.non_resource_urls.is_empty() {
                    non_resource_rules.push(NonResourceRule {
                        verbs: rule.verbs.clone(),
                        non_resource_urls: rule.non_resource_urls.clone(),
                    });
                }
            }
        }
        (resource_rules, non_resource_rules)
    }

    /// Every rule that applies to `user` with `groups` in `namespace` (empty: cluster scope),
    /// whatever it allows: kube's `RulesFor`, the owner's side of an escalation check.
    pub fn rules_of<G: AsRef<str>>(&self, user: &str, groups: &[G], namespace: &str) -> Vec<&PolicyRule> {
        let grants = self.grants_of(user, groups);
        let mut lists: Vec<&Rules> = Vec::new();
        for g in grants {
            push_unique(&mut lists, &g.cluster);
            if !namespace.is_empty()
                && let Some(namespaced) = g.namespaced.get(namespace)
            {
                push_unique(&mut lists, namespaced);
            }
        }
        lists.iter().flat_map(|rules| rules.iter()).collect()
    }

    /// Roles of the cluster named like roles of the proxy (`ClusterRole NAME`, `Role NS/NAME`):
    /// the proxy's bindings keep the proxy's.
    pub fn collisions(&self) -> &[String] {
        &self.collisions
    }

    /// The rules of the ClusterRole `name`, or of the Role `namespace/name` when `namespace` is
    /// not empty; `None` when no source defines it.
    pub fn role_rules(&self, namespace: &str, name: &str) -> Option<&[PolicyRule]> {
        if namespace.is_empty() {
            self.cluster_roles.get(name).map(|r| &r[..])
        } else {
            self.roles
                .get(format!("{namespace}/{name}").as_str())
                .map(|r| &r[..])
        }
    }

    /// What the user's name and each of its groups were granted.
    fn grants_of<'a, 'g, G: AsRef<str>>(
        &'a self,
        user: &str,
        groups: &'g [G],
    ) -> impl Iterator<Item = &'a Grants> + use<'a, 'g, G> {
        self.users
            .get(user)
            .into_iter()
            .chain(groups.iter().filter_map(|g| self.groups.get(g.as_ref())))
    }

    /// How many user and group names have grants (for metrics and logs).
    pub fn subject_count(&self) -> usize {
        self.users.len() + self.groups.len()
    }
}

/// Appends the lists not yet in `out` (same role, same `Arc`).
fn push_unique<'a>(out: &mut Vec<&'a Rules>, lists: &'a [Rules]) {
    for rules in lists {
        if !out.iter().any(|seen| Arc::ptr_eq(seen, rules)) {
            out.push(rules);
        }
    }
}
