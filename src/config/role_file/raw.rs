//! One document as written, with the line of every field that validation may complain about,
//! and its validation into an RBAC object. The checks are kube-apiserver's
//! (`pkg/apis/rbac/validation`) where they affect what a binding grants, so that an object the
//! cluster would refuse is refused here too instead of silently granting nothing.

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::authz::rbac::{
    ClusterRole, ClusterRoleBinding, ObjectMeta, PolicyRule, Role, RoleBinding, RoleRef, RoleRefKind,
    Subject, SubjectKind,
};

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";
const API_VERSION: &str = "rbac.authorization.k8s.io/v1";
const KINDS: &str = "Role, ClusterRole, RoleBinding or ClusterRoleBinding";

type Field = Option<Spanned<String>>;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RawDocument {
    api_version: Field,
    kind: Field,
    metadata: Option<Spanned<RawMeta>>,
    rules: Option<Vec<Spanned<PolicyRule>>>,
    role_ref: Option<Spanned<RawRoleRef>>,
    subjects: Option<Vec<Spanned<RawSubject>>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawMeta {
    name: Field,
    namespace: Field,
    cluster_name: Field,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRoleRef {
    api_group: Field,
    kind: Field,
    name: Field,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawSubject {
    kind: Field,
    api_group: Field,
    name: Field,
    namespace: Field,
}

/// What is wrong, where: `field` is relative to the document.
#[derive(Debug)]
pub(super) struct Problem {
    pub(super) line: u64,
    pub(super) field: String,
    pub(super) message: String,
}

fn problem(line: u64, field: impl Into<String>, message: impl Into<String>) -> Problem {
    Problem {
        line,
        field: field.into(),
        message: message.into(),
    }
}

/// The value of a field and its line; an absent, null or empty string is `None`. An absent or
/// null field is reported at `fallback`, the line of the enclosing mapping.
fn value(field: &Field, fallback: u64) -> (Option<&str>, u64) {
    match field {
        Some(s) => (
            Some(s.value.as_str()).filter(|v| !v.is_empty()),
            s.referenced.line(),
        ),
        None => (None, fallback),
    }
}

fn text(field: &Field) -> String {
    field.as_ref().map(|s| s.value.clone()).unwrap_or_default()
}

pub(super) enum Object {
    Role(Role),
    ClusterRole(ClusterRole),
    RoleBinding(RoleBinding),
    ClusterRoleBinding(ClusterRoleBinding),
}

impl Object {
    pub(super) fn kind(&self) -> &'static str {
        match self {
            Self::Role(_) => "Role",
            Self::ClusterRole(_) => "ClusterRole",
            Self::RoleBinding(_) => "RoleBinding",
            Self::ClusterRoleBinding(_) => "ClusterRoleBinding",
        }
    }

    pub(super) fn metadata(&self) -> &ObjectMeta {
        match self {
            Self::Role(o) => &o.metadata,
            Self::ClusterRole(o) => &o.metadata,
            Self::RoleBinding(o) => &o.metadata,
            Self::ClusterRoleBinding(o) => &o.metadata,
        }
    }
}

impl RawDocument {
    /// Validates the document that starts at `line`.
    pub(super) fn validate(self, line: u64) -> Result<Object, Problem> {
        let kind = match value(&self.kind, line) {
            (Some(k @ ("Role" | "ClusterRole" | "RoleBinding" | "ClusterRoleBinding")), _) => k.to_owned(),
            (Some(other), at) => {
                return Err(problem(
                    at,
                    "kind",
                    format!("unsupported kind {other:?} (want {KINDS})"),
                ));
            }
            (None, at) => return Err(problem(at, "kind", format!("missing kind (want {KINDS})"))),
        };
        match value(&self.api_version, line) {
            (Some(API_VERSION), _) => {}
            (Some(other), at) => {
                return Err(problem(
                    at,
                    "apiVersion",
                    format!("unsupported apiVersion {other:?} (want {API_VERSION})"),
                ));
            }
            (None, at) => {
                return Err(problem(
                    at,
                    "apiVersion",
                    format!("missing apiVersion (want {API_VERSION})"),
                ));
            }
        }
        let namespaced = kind == "Role" || kind == "RoleBinding";
        let metadata = self.metadata(line, &kind, namespaced)?;
        Ok(match kind.as_str() {
            "Role" => Object::Role(Role {
                metadata,
                rules: validate_rules(self.rules, true)?,
            }),
            "ClusterRole" => Object::ClusterRole(ClusterRole {
                metadata,
                rules: validate_rules(self.rules, false)?,
            }),
            _ => {
                let role_ref = validate_role_ref(self.role_ref, line, namespaced)?;
                let subjects = validate_subjects(self.subjects, namespaced)?;
                if namespaced {
                    Object::RoleBinding(RoleBinding {
                        metadata,
                        role_ref,
                        subjects,
                    })
                } else {
                    Object::ClusterRoleBinding(ClusterRoleBinding {
                        metadata,
                        role_ref,
                        subjects,
                    })
                }
            }
        })
    }

    fn metadata(&self, line: u64, kind: &str, namespaced: bool) -> Result<ObjectMeta, Problem> {
        let Some(meta) = &self.metadata else {
            return Err(problem(line, "metadata.name", "missing name"));
        };
        let at = meta.referenced.line();
        let (name, name_line) = value(&meta.value.name, at);
        let Some(name) = name else {
            return Err(problem(name_line, "metadata.name", "missing name"));
        };
        // A name that kube would refuse (with `/` or `%`) could never be referred to.
        if let Some(reason) = invalid_path_segment(name) {
            return Err(problem(
                name_line,
                "metadata.name",
                format!("invalid name {name:?}: {reason}"),
            ));
        }
        if let (None, line) = value(&meta.value.cluster_name, at) {
            return Err(problem(line, "metadata.clusterName", "missing cluster name"));
        }
        let namespace = if namespaced {
            match value(&meta.value.namespace, at) {
                (Some(ns), _) => ns.to_owned(),
                (None, line) => {
                    return Err(problem(
                        line,
                        "metadata.namespace",
                        format!("missing namespace (a {kind} is namespaced)"),
                    ));
                }
            }
        } else {
            // kube-apiserver clears the namespace of cluster-scoped objects.
            String::new()
        };
        Ok(ObjectMeta {
            name: name.to_owned(),
            namespace,
            cluster_name: text(&meta.value.cluster_name),
        })
    }
}

/// kube's `ValidatePolicyRule`, with its messages.
fn validate_rules(
    rules: Option<Vec<Spanned<PolicyRule>>>,
    namespaced: bool,
) -> Result<Vec<PolicyRule>, Problem> {
    let rules = rules.unwrap_or_default();
    let mut out = Vec::with_capacity(rules.len());
    for (i, rule) in rules.into_iter().enumerate() {
        let line = rule.referenced.line();
        let r = rule.value;
        let field = |name: &str| format!("rules[{i}].{name}");
        if r.verbs.is_empty() {
            return Err(problem(
                line,
                field("verbs"),
                "verbs must contain at least one value",
            ));
        }
        if !r.non_resource_urls.is_empty() {
            if namespaced {
                return Err(problem(
                    line,
                    field("nonResourceURLs"),
                    "namespaced rules cannot apply to non-resource URLs",
                ));
            }
            if !r.api_groups.is_empty() || !r.resources.is_empty() || !r.resource_names.is_empty() {
                return Err(problem(
                    line,
                    field("nonResourceURLs"),
                    "rules cannot apply to both regular resources and non-resource URLs",
                ));
            }
        } else if r.api_groups.is_empty() {
            return Err(problem(
                line,
                field("apiGroups"),
                "resource rules must supply at least one api group",
            ));
        } else if r.resources.is_empty() {
            return Err(problem(
                line,
                field("resources"),
                "resource rules must supply at least one resource",
            ));
        }
        out.push(r);
    }
    Ok(out)
}

fn validate_role_ref(
    role_ref: Option<Spanned<RawRoleRef>>,
    line: u64,
    namespaced: bool,
) -> Result<RoleRef, Problem> {
    let Some(role_ref) = role_ref else {
        return Err(problem(line, "roleRef", "missing roleRef"));
    };
    let at = role_ref.referenced.line();
    let r = role_ref.value;
    // kube requires the group; the Go proxy ignored it, so an empty one is let through.
    if let (Some(group), line) = value(&r.api_group, at)
        && group != RBAC_GROUP
    {
        return Err(problem(
            line,
            "roleRef.apiGroup",
            format!("unsupported apiGroup {group:?} (want {RBAC_GROUP})"),
        ));
    }
    let kind = match value(&r.kind, at) {
        (Some("ClusterRole"), _) => RoleRefKind::ClusterRole,
        (Some("Role"), _) if namespaced => RoleRefKind::Role,
        (Some("Role"), line) => {
            return Err(problem(
                line,
                "roleRef.kind",
                "a ClusterRoleBinding can only refer to a ClusterRole",
            ));
        }
        (Some(other), line) => {
            return Err(problem(
                line,
                "roleRef.kind",
                format!("unsupported kind {other:?} (want Role or ClusterRole)"),
            ));
        }
        (None, line) => {
            return Err(problem(
                line,
                "roleRef.kind",
                "missing kind (want Role or ClusterRole)",
            ));
        }
    };
    let (name, name_line) = value(&r.name, at);
    let Some(name) = name else {
        return Err(problem(name_line, "roleRef.name", "missing name"));
    };
    Ok(RoleRef {
        api_group: text(&r.api_group),
        kind,
        name: name.to_owned(),
    })
}

/// kube's `ValidateRoleBindingSubject`, except that User and Group may leave `apiGroup` empty
/// (the v1 API defaults it).
fn validate_subjects(
    subjects: Option<Vec<Spanned<RawSubject>>>,
    namespaced: bool,
) -> Result<Vec<Subject>, Problem> {
    let subjects = subjects.unwrap_or_default();
    let mut out = Vec::with_capacity(subjects.len());
    for (i, subject) in subjects.into_iter().enumerate() {
        let at = subject.referenced.line();
        let s = subject.value;
        let field = |name: &str| format!("subjects[{i}].{name}");
        let (kind, kind_line) = value(&s.kind, at);
        let kind = match kind {
            Some("User") => SubjectKind::User,
            Some("Group") => SubjectKind::Group,
            Some("ServiceAccount") => SubjectKind::ServiceAccount,
            Some(other) => {
                return Err(problem(
                    kind_line,
                    field("kind"),
                    format!("unsupported kind {other:?} (want User, Group or ServiceAccount)"),
                ));
            }
            None => {
                return Err(problem(
                    kind_line,
                    field("kind"),
                    "missing kind (want User, Group or ServiceAccount)",
                ));
            }
        };
        let (name, name_line) = value(&s.name, at);
        let Some(name) = name else {
            return Err(problem(name_line, field("name"), "missing name"));
        };
        let (group, group_line) = value(&s.api_group, at);
        match (kind, group) {
            (_, None) => {}
            (SubjectKind::User | SubjectKind::Group, Some(RBAC_GROUP)) => {}
            (SubjectKind::ServiceAccount, Some(g)) => {
                return Err(problem(
                    group_line,
                    field("apiGroup"),
                    format!("unsupported apiGroup {g:?} for a ServiceAccount (want \"\")"),
                ));
            }
            (_, Some(g)) => {
                return Err(problem(
                    group_line,
                    field("apiGroup"),
                    format!("unsupported apiGroup {g:?} (want {RBAC_GROUP})"),
                ));
            }
        }
        if kind == SubjectKind::ServiceAccount && !namespaced && value(&s.namespace, at).0.is_none() {
            return Err(problem(
                at,
                field("namespace"),
                "missing namespace (a ServiceAccount subject of a ClusterRoleBinding needs one)",
            ));
        }
        out.push(Subject {
            kind,
            api_group: text(&s.api_group),
            name: name.to_owned(),
            namespace: text(&s.namespace),
        });
    }
    Ok(out)
}

/// kube's `IsValidPathSegmentName`, which is what it checks RBAC object names with.
fn invalid_path_segment(name: &str) -> Option<&'static str> {
    match name {
        "." | ".." => Some("may not be '.' or '..'"),
        _ if name.contains('/') => Some("may not contain '/'"),
        _ if name.contains('%') => Some("may not contain '%'"),
        _ => None,
    }
}
