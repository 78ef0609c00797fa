//! Kubernetes RBAC evaluated inside the proxy, with exactly Kubernetes' semantics, over an
//! immutable snapshot indexed by subject.

mod builder;
mod hash;
mod matching;
mod snapshot;
#[cfg(test)]
mod tests;
mod types;

pub use builder::SnapshotBuilder;
pub use matching::{
    api_group_matches, non_resource_url_matches, resource_matches, resource_name_matches, rule_allows,
    verb_matches,
};
pub use snapshot::{Decision, Snapshot};
pub use types::{
    ClusterRole, ClusterRoleBinding, NonResourceRule, ObjectMeta, PolicyRule, RbacObjects, ResourceRule,
    Role, RoleBinding, RoleRef, RoleRefKind, Subject, SubjectKind,
};
