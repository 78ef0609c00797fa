//! `rbac.authorization.k8s.io/v1` objects, as much of them as authorization reads, in the JSON
//! (and YAML) shape Kubernetes uses. Unknown fields are ignored and `null` reads as empty, so
//! objects straight from a watch or a role file deserialize.

use serde::{Deserialize, Deserializer, Serialize};

/// One rule of a Role or ClusterRole.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRule {
    #[serde(default, deserialize_with = "null_as_empty")]
    pub verbs: Vec<String>,
    #[serde(
        default,
        deserialize_with = "null_as_empty",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub api_groups: Vec<String>,
    #[serde(
        default,
        deserialize_with = "null_as_empty",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub resources: Vec<String>,
    #[serde(
        default,
        deserialize_with = "null_as_empty",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub resource_names: Vec<String>,
    #[serde(
        rename = "nonResourceURLs",
        default,
        deserialize_with = "null_as_empty",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub non_resource_urls: Vec<String>,
}

#[cfg(test)]
impl PolicyRule {
    /// A resource rule, for tests: `PolicyRule::resource(&["get"], &[""], &["pods"], &[])`.
    pub fn resource(verbs: &[&str], groups: &[&str], resources: &[&str], names: &[&str]) -> Self {
        let v = |xs: &[&str]| xs.iter().map(|s| (*s).to_owned()).collect();
        PolicyRule {
            verbs: v(verbs),
            api_groups: v(groups),
            resources: v(resources),
            resource_names: v(names),
            non_resource_urls: Vec::new(),
        }
    }

    /// A non-resource rule, for tests.
    pub fn urls(verbs: &[&str], urls: &[&str]) -> Self {
        PolicyRule {
            verbs: verbs.iter().map(|s| (*s).to_owned()).collect(),
            non_resource_urls: urls.iter().map(|s| (*s).to_owned()).collect(),
            ..PolicyRule::default()
        }
    }
}

/// The part of `metadata` that RBAC reads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    #[serde(default, deserialize_with = "null_as_empty")]
    pub name: String,
    #[serde(
        default,
        deserialize_with = "null_as_empty",
        skip_serializing_if = "String::is_empty"
    )]
    pub namespace: String,
    /// Only the role file (`--role-config`) sets this, to name the cluster an object is for.
    #[serde(
        default,
        deserialize_with = "null_as_empty",
        skip_serializing_if = "String::is_empty"
    )]
    pub cluster_name: String,
}

/// A namespaced set of rules.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub rules: Vec<PolicyRule>,
}

/// A cluster-wide set of rules. `aggregationRule` is not read: the controller manager already
/// writes the aggregated rules into `rules`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterRole {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub rules: Vec<PolicyRule>,
}

/// Grants a Role (of its own namespace) or a ClusterRole, in its namespace only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleBinding {
    #[serde(default)]
    pub metadata: ObjectMeta,
    pub role_ref: RoleRef,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub subjects: Vec<Subject>,
}

/// Grants a ClusterRole everywhere.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterRoleBinding {
    #[serde(default)]
    pub metadata: ObjectMeta,
    pub role_ref: RoleRef,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub subjects: Vec<Subject>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleRef {
    /// Not checked, as Kubernetes does not check it when authorizing.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub api_group: String,
    pub kind: RoleRefKind,
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RoleRefKind {
    Role,
    ClusterRole,
    /// Anything else: the binding grants nothing.
    #[serde(other)]
    Unsupported,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subject {
    pub kind: SubjectKind,
    #[serde(
        default,
        deserialize_with = "null_as_empty",
        skip_serializing_if = "String::is_empty"
    )]
    pub api_group: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub name: String,
    /// For ServiceAccount subjects; empty means the binding's own namespace.
    #[serde(
        default,
        deserialize_with = "null_as_empty",
        skip_serializing_if = "String::is_empty"
    )]
    pub namespace: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SubjectKind {
    User,
    Group,
    ServiceAccount,
    /// Anything else: never matches anyone.
    #[serde(other)]
    Unsupported,
}

/// A cluster's RBAC objects, from wherever they came (the cluster, the role file, the custom
/// resources, the built-in roles).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RbacObjects {
    pub roles: Vec<Role>,
    pub cluster_roles: Vec<ClusterRole>,
    pub role_bindings: Vec<RoleBinding>,
    pub cluster_role_bindings: Vec<ClusterRoleBinding>,
}

impl RbacObjects {
    /// Appends all of `other`.
    pub fn extend(&mut self, other: RbacObjects) {
        self.roles.extend(other.roles);
        self.cluster_roles.extend(other.cluster_roles);
        self.role_bindings.extend(other.role_bindings);
        self.cluster_role_bindings.extend(other.cluster_role_bindings);
    }
}

/// A resource rule as SelfSubjectRulesReview reports it (`authorization.k8s.io/v1`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceRule {
    pub verbs: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub api_groups: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resource_names: Vec<String>,
}

/// A non-resource rule as SelfSubjectRulesReview reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NonResourceRule {
    pub verbs: Vec<String>,
    #[serde(rename = "nonResourceURLs", skip_serializing_if = "Vec::is_empty")]
    pub non_resource_urls: Vec<String>,
}

/// Kubernetes writes `null` for empty lists in places; read it as empty.
fn null_as_empty<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deserializes_kubernetes_json() -> Result<(), serde_json::Error> {
        let role: ClusterRole = serde_json::from_str(
            r#"{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRole",
                "metadata":{"name":"view","uid":"x","labels":{"a":"b"}},
                "aggregationRule":{"clusterRoleSelectors":[]},
                "rules":[{"apiGroups":[""],"resources":["pods","pods/log"],"verbs":["get","list"]},
                         {"nonResourceURLs":["/healthz","/api/*"],"verbs":["get"]},
                         {"apiGroups":["apps"],"resources":["deployments"],"resourceNames":["web"],
                          "verbs":["get"]}]}"#,
        )?;
        assert_eq!(role.metadata.name, "view");
        assert_eq!(role.rules.len(), 3);
        assert_eq!(role.rules[0].api_groups, vec![""]);
        assert_eq!(role.rules[0].resources, vec!["pods", "pods/log"]);
        assert_eq!(role.rules[1].non_resource_urls, vec!["/healthz", "/api/*"]);
        assert_eq!(role.rules[2].resource_names, vec!["web"]);

        let binding: RoleBinding = serde_json::from_str(
            r#"{"metadata":{"name":"b","namespace":"dev","clusterName":"k8s"},
                "roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"view"},
                "subjects":[{"kind":"User","apiGroup":"rbac.authorization.k8s.io","name":"ann"},
                            {"kind":"Group","name":"devs"},
                            {"kind":"ServiceAccount","name":"ci","namespace":"tools"},
                            {"kind":"Robot","name":"r2"}]}"#,
        )?;
        assert_eq!(binding.metadata.namespace, "dev");
        assert_eq!(binding.metadata.cluster_name, "k8s");
        assert_eq!(binding.role_ref.kind, RoleRefKind::ClusterRole);
        let kinds: Vec<_> = binding.subjects.iter().map(|s| s.kind).collect();
        assert_eq!(
            kinds,
            vec![
                SubjectKind::User,
                SubjectKind::Group,
                SubjectKind::ServiceAccount,
                SubjectKind::Unsupported
            ]
        );
        assert_eq!(binding.subjects[2].namespace, "tools");

        let odd: ClusterRoleBinding = serde_json::from_str(
            r#"{"metadata":{"name":"x"},"roleRef":{"kind":"Other","name":"y"},"subjects":null}"#,
        )?;
        assert_eq!(odd.role_ref.kind, RoleRefKind::Unsupported);
        assert!(odd.subjects.is_empty());

        let nulls: Role = serde_json::from_str(
            r#"{"metadata":{"name":"r","namespace":null},"rules":[{"verbs":null,"apiGroups":null}]}"#,
        )?;
        assert_eq!(nulls.rules, vec![PolicyRule::default()]);
        assert_eq!(nulls.metadata.namespace, "");
        Ok(())
    }

    #[test]
    fn binding_without_role_ref_is_an_error() {
        let r: Result<RoleBinding, _> = serde_json::from_str(r#"{"metadata":{"name":"b"}}"#);
        assert!(r.is_err());
    }

    #[test]
    fn rules_serialize_in_kubernetes_shape() -> Result<(), serde_json::Error> {
        let rule = ResourceRule {
            verbs: vec!["get".into()],
            api_groups: vec![String::new()],
            resources: vec!["pods".into()],
            resource_names: vec![],
        };
        assert_eq!(
            serde_json::to_string(&rule)?,
            r#"{"verbs":["get"],"apiGroups":[""],"resources":["pods"]}"#
        );
        let rule = NonResourceRule {
            verbs: vec!["get".into()],
            non_resource_urls: vec!["/api".into()],
        };
        assert_eq!(
            serde_json::to_string(&rule)?,
            r#"{"verbs":["get"],"nonResourceURLs":["/api"]}"#
        );
        let policy = PolicyRule {
            verbs: vec!["get".into()],
            non_resource_urls: vec!["/x".into()],
            ..PolicyRule::default()
        };
        assert_eq!(
            serde_json::to_string(&policy)?,
            r#"{"verbs":["get"],"nonResourceURLs":["/x"]}"#
        );
        Ok(())
    }
}
