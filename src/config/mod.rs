//! Configuration files: read once at start, validated with errors that name file, line and field.

pub mod authentication;
pub mod clusters;
pub mod reload;
pub mod role_file;
pub mod secret_kubeconfig;

use std::{fmt, path::PathBuf};

/// A problem in a configuration file, located as precisely as the file allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based; 0 when the problem is not tied to a line (e.g. the file cannot be read).
    pub line: u64,
    /// Dotted path of the field, e.g. `clusters[1].name`; empty for the whole file.
    pub field: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// The first path segments of what kube-apiserver serves at its root. With
/// `--cluster-host-suffix` both routing styles work at once, so a cluster named like one of these
/// would make the first segment of every host-style request (`/api/v1/...`) name that cluster.
/// Such names are refused wherever clusters come from.
pub const RESERVED_CLUSTER_NAMES: &[&str] = &[
    "api",
    "apis",
    "version",
    "healthz",
    "livez",
    "readyz",
    "statusz",
    "flagz",
    "openapi",
    "openid",
    ".well-known",
    "metrics",
    "logs",
    "debug",
    "swagger.json",
    "swagger-2.0.0.json",
    "swagger-2.0.0.pb-v1",
    "swaggerapi",
    "swagger-ui",
    "ui",
];

/// Why `name` cannot be a cluster's name (see [`valid_cluster_name`] and
/// [`RESERVED_CLUSTER_NAMES`]), worded for an error message; `None` when it can.
pub fn cluster_name_problem(name: &str) -> Option<String> {
    if !valid_cluster_name(name) {
        return Some(format!(
            "invalid cluster name {name:?} (use letters, digits, '-', '.', '_')"
        ));
    }
    RESERVED_CLUSTER_NAMES.contains(&name).then(|| {
        format!("cluster name {name:?} is reserved: it is the first segment of Kubernetes API paths")
    })
}

/// Valid cluster names are URL path segments that need no escaping and cannot walk the path:
/// `[-._a-zA-Z0-9]+`, but not `.` or `..`. The same rule applies to routing.
pub fn valid_cluster_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
}
