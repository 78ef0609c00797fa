//! Label values of the proxy's metrics: each an enum, so the set of values is fixed at compile
//! time whatever clients send.

use std::{fmt, sync::Arc};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};

/// What the proxy decided about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    /// Authorized and forwarded (whatever the API server then answered).
    Allow,
    /// Authenticated but refused by RBAC.
    Deny,
    /// No valid token.
    Unauthenticated,
    /// Refused for another reason: unknown cluster, bad request, upstream failure.
    Error,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
            Decision::Unauthenticated => "unauthenticated",
            Decision::Error => "error",
        }
    }
}

/// The Kubernetes verbs, and `other` for anything else a client sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Delete,
    DeleteCollection,
    Proxy,
    Other,
}

impl Verb {
    /// Maps a Kubernetes verb (RequestInfo's `verb`, or a lowercase HTTP method for non-resource
    /// requests); anything unknown is `Other`, so clients cannot add label values.
    pub fn from_kube(verb: &str) -> Verb {
        match verb {
            "get" => Verb::Get,
            "list" => Verb::List,
            "watch" => Verb::Watch,
            "create" => Verb::Create,
            "update" => Verb::Update,
            "patch" => Verb::Patch,
            "delete" => Verb::Delete,
            "deletecollection" => Verb::DeleteCollection,
            "proxy" => Verb::Proxy,
            _ => Verb::Other,
        }
    }

    /// The verb of a request not yet parsed (or not parseable): the lowercase method, mapped as
    /// [`Verb::from_kube`] would map it, without building the lowercase string.
    pub fn from_method(method: &http::Method) -> Verb {
        match *method {
            http::Method::GET => Verb::Get,
            http::Method::DELETE => Verb::Delete,
            http::Method::PATCH => Verb::Patch,
            _ => Verb::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
            Verb::DeleteCollection => "deletecollection",
            Verb::Proxy => "proxy",
            Verb::Other => "other",
        }
    }
}

/// The kinds counted by `kop_rbac_objects`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RbacKind {
    Role,
    ClusterRole,
    RoleBinding,
    ClusterRoleBinding,
    Namespace,
}

impl RbacKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RbacKind::Role => "Role",
            RbacKind::ClusterRole => "ClusterRole",
            RbacKind::RoleBinding => "RoleBinding",
            RbacKind::ClusterRoleBinding => "ClusterRoleBinding",
            RbacKind::Namespace => "Namespace",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum CodeClass {
    Informational,
    Success,
    Redirection,
    ClientError,
    ServerError,
}

impl CodeClass {
    /// 101 (exec, attach, port-forward upgrades) is `1xx`; anything above 599 is `5xx`.
    pub(super) fn of(code: u16) -> CodeClass {
        match code {
            0..=199 => CodeClass::Informational,
            200..=299 => CodeClass::Success,
            300..=399 => CodeClass::Redirection,
            400..=499 => CodeClass::ClientError,
            _ => CodeClass::ServerError,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            CodeClass::Informational => "1xx",
            CodeClass::Success => "2xx",
            CodeClass::Redirection => "3xx",
            CodeClass::ClientError => "4xx",
            CodeClass::ServerError => "5xx",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Phase {
    FirstByte,
    Total,
}

impl Phase {
    fn as_str(self) -> &'static str {
        match self {
            Phase::FirstByte => "first_byte",
            Phase::Total => "total",
        }
    }
}

macro_rules! label_value {
    ($($t:ty),*) => {$(
        impl EncodeLabelValue for $t {
            fn encode(&self, encoder: &mut LabelValueEncoder) -> fmt::Result {
                fmt::Write::write_str(encoder, self.as_str())
            }
        }
    )*};
}
label_value!(Decision, Verb, RbacKind, CodeClass, Phase);

/// A cluster name as a label value, shared: recording a request clones a pointer instead of
/// copying the name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClusterLabel(Arc<str>);

impl ClusterLabel {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The same label value, not only an equal one (a handle cache holding one keeps its
    /// address from being reused).
    pub(super) fn is(&self, other: &ClusterLabel) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl From<Arc<str>> for ClusterLabel {
    fn from(name: Arc<str>) -> Self {
        ClusterLabel(name)
    }
}

impl From<&str> for ClusterLabel {
    fn from(name: &str) -> Self {
        ClusterLabel(Arc::from(name))
    }
}

impl EncodeLabelValue for ClusterLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> fmt::Result {
        self.as_str().encode(encoder)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct RequestLabels {
    pub(super) cluster: ClusterLabel,
    pub(super) verb: Verb,
    pub(super) code_class: CodeClass,
    pub(super) decision: Decision,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct DurationLabels {
    pub(super) cluster: ClusterLabel,
    pub(super) phase: Phase,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct ClusterLabels {
    pub(super) cluster: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct IssuerLabels {
    pub(super) issuer: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct SourceLabels {
    pub(super) cluster: String,
    pub(super) source: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct ObjectLabels {
    pub(super) cluster: String,
    pub(super) kind: RbacKind,
}
