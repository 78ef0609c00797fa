//! The `--role-config` file: extra RBAC objects for named clusters.
//!
//! The file is multi-document YAML. Each document is a `Role`, `ClusterRole`, `RoleBinding` or
//! `ClusterRoleBinding` of `apiVersion: rbac.authorization.k8s.io/v1`, as `kubectl apply` would
//! take it, plus `metadata.clusterName`: the name of the cluster the object is added to. The
//! name must equal a cluster's name exactly; `"*"` is not a wildcard here (it names a cluster
//! called `*`), unlike `targetClusters` of the custom resources. Every rule field counts,
//! `resourceNames` and `nonResourceURLs` included (the Go proxy dropped them).
//!
//! The whole file is validated at load, with the checks kube-apiserver makes on these objects
//! that matter to authorization, and the first problem is reported with the file, the line and
//! the field: `roles.yaml:12: documents[2].metadata.clusterName: missing cluster name`.
//! `documents[i]` counts the documents that have content, from 0: empty documents (an empty
//! file, a lone or trailing `---`, only comments) are skipped. Unknown fields are ignored, so
//! objects exported from a cluster load as they are.

mod raw;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::authz::rbac::RbacObjects;
use raw::{Object, RawDocument};

/// The parsed file: the objects of each cluster, by cluster name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoleFile {
    pub by_cluster: HashMap<String, RbacObjects>,
}

impl RoleFile {
    /// The objects the file has for cluster `name`, if any.
    pub fn for_cluster(&self, name: &str) -> Option<&RbacObjects> {
        self.by_cluster.get(name)
    }
}

/// Why the file was refused. The Display names the file and, when known, the line.
#[derive(Debug, thiserror::Error)]
pub enum RoleFileError {
    #[error("{}: cannot read the role file: {source}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Not YAML, or not the shape of an object (a list where a string belongs, ...).
    #[error("{}{}: {message}", .path.display(), AtLine(*.line))]
    Yaml {
        path: PathBuf,
        line: Option<u64>,
        message: String,
    },
    /// A well-formed document that is not a valid object. `field` is a path such as
    /// `documents[2].metadata.clusterName`.
    #[error("{}:{line}: {field}: {message}", .path.display())]
    Invalid {
        path: PathBuf,
        line: u64,
        field: String,
        message: String,
    },
}

/// Re-reads the role file when it changes. A broken edit keeps the last good version and says
/// why (file, line, field), so a typo never drops everyone's access.
pub fn spawn_reloader(
    path: PathBuf,
    initial: Vec<u8>,
    every: std::time::Duration,
    tx: tokio::sync::watch::Sender<std::sync::Arc<RoleFile>>,
    cancel: tokio_util::sync::CancellationToken,
) {
    let last = std::sync::Mutex::new(Some(initial));
    let empty = super::reload::EmptyGate::default();
    super::reload::poll_until_cancelled(every, cancel, move || {
        let unchanged =
            |bytes: Vec<u8>| last.lock().unwrap_or_else(|e| e.into_inner()).as_ref() == Some(&bytes);
        if std::fs::read(&path).is_ok_and(unchanged) {
            return;
        }
        let bytes = match super::reload::read_settled(&path) {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "role file cannot be read; keeping the last good version");
                return;
            }
        };
        if !empty.pass(&path, &bytes) {
            return;
        }
        let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
        if last.as_ref() == Some(&bytes) {
            return;
        }
        let text = String::from_utf8_lossy(&bytes).into_owned();
        *last = Some(bytes);
        match parse(&path, &text) {
            Ok(file) => {
                tracing::info!(file = %path.display(), "role file reloaded");
                tx.send_replace(std::sync::Arc::new(file));
            }
            Err(e) => tracing::error!("role file not reloaded, keeping the last good version: {e}"),
        }
    });
}

/// The configuration files' one error type: the same file, line and field, the same text.
impl From<RoleFileError> for super::ConfigError {
    fn from(e: RoleFileError) -> Self {
        let located = |file: PathBuf, line: u64, field: String, message: String| super::ConfigError {
            file,
            line,
            field,
            message,
        };
        match e {
            RoleFileError::Read { path, source } => located(
                path,
                0,
                String::new(),
                format!("cannot read the role file: {source}"),
            ),
            RoleFileError::Yaml { path, line, message } => {
                located(path, line.unwrap_or(0), String::new(), message)
            }
            RoleFileError::Invalid {
                path,
                line,
                field,
                message,
            } => located(path, line, field, message),
        }
    }
}

/// `:<line>` when the line is known.
struct AtLine(Option<u64>);

impl fmt::Display for AtLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(line) => write!(f, ":{line}"),
            None => Ok(()),
        }
    }
}

/// Reads and parses the file at `path`.
pub fn load(path: &Path) -> Result<RoleFile, RoleFileError> {
    load_with_bytes(path).map(|(file, _)| file)
}

/// [`load`], also returning the bytes it parsed (the reloader's starting point).
pub fn load_with_bytes(path: &Path) -> Result<(RoleFile, Vec<u8>), RoleFileError> {
    let bytes = std::fs::read(path).map_err(|source| RoleFileError::Read {
        path: path.to_owned(),
        source,
    })?;
    let text = std::str::from_utf8(&bytes).map_err(|e| RoleFileError::Read {
        path: path.to_owned(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
    })?;
    let file = parse(path, text)?;
    Ok((file, bytes))
}

/// Parses `text`, the contents of the file at `path` (used in errors only).
pub fn parse(path: &Path, text: &str) -> Result<RoleFile, RoleFileError> {
    let documents: Vec<serde_saphyr::Spanned<RawDocument>> =
        serde_saphyr::from_multiple(text).map_err(|e| yaml_error(path, &e))?;
    let mut file = RoleFile::default();
    // (cluster, kind, namespace, name) -> line of the first definition.
    let mut seen: HashMap<(String, &'static str, String, String), u64> = HashMap::new();
    for (index, document) in documents.into_iter().enumerate() {
        let line = document.referenced.line();
        let invalid = |p: raw::Problem| RoleFileError::Invalid {
            path: path.to_owned(),
            line: p.line,
            field: format!("documents[{index}].{}", p.field),
            message: p.message,
        };
        let object = document.value.validate(line).map_err(invalid)?;
        let meta = object.metadata();
        let key = (
            meta.cluster_name.clone(),
            object.kind(),
            meta.namespace.clone(),
            meta.name.clone(),
        );
        match seen.entry(key) {
            Entry::Occupied(first) => {
                let (cluster, kind, namespace, name) = first.key();
                let what = if namespace.is_empty() {
                    format!("{kind} {name:?}")
                } else {
                    format!("{kind} {name:?} in namespace {namespace:?}")
                };
                return Err(invalid(raw::Problem {
                    line,
                    field: "metadata.name".to_owned(),
                    message: format!(
                        "duplicate {what} for cluster {cluster:?}, first defined at line {}",
                        first.get()
                    ),
                }));
            }
            Entry::Vacant(slot) => {
                slot.insert(line);
            }
        }
        let objects = file.by_cluster.entry(meta.cluster_name.clone()).or_default();
        match object {
            Object::Role(o) => objects.roles.push(o),
            Object::ClusterRole(o) => objects.cluster_roles.push(o),
            Object::RoleBinding(o) => objects.role_bindings.push(o),
            Object::ClusterRoleBinding(o) => objects.cluster_role_bindings.push(o),
        }
    }
    Ok(file)
}

/// serde-saphyr's message without its snippet and without the trailing
/// ` at line L, column C`, which the Display puts in front instead.
fn yaml_error(path: &Path, error: &serde_saphyr::Error) -> RoleFileError {
    let location = error.location().filter(|l| l.line() > 0);
    let mut message = error.without_snippet().to_string();
    if let Some(l) = location {
        let suffix = format!(" at line {}, column {}", l.line(), l.column());
        if let Some(stripped) = message.strip_suffix(&suffix) {
            message = stripped.to_owned();
        }
    }
    RoleFileError::Yaml {
        path: path.to_owned(),
        line: location.map(|l| l.line()),
        message,
    }
}
