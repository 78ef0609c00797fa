//! The role file (multi-document YAML of Roles, ClusterRoles and bindings) on any text: it
//! loads or fails with an error naming the file, never panics, and what loads builds a
//! snapshot.

use std::path::Path;

use kube_oidc_proxy::{authz::rbac::Snapshot, config::role_file};

pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match role_file::parse(Path::new("fuzz-roles.yaml"), text) {
        Ok(file) => {
            for cluster in ["k8s", "kind", "*"] {
                if let Some(objects) = file.for_cluster(cluster) {
                    let _ = Snapshot::build(objects);
                }
            }
        }
        Err(e) => assert!(e.to_string().contains("fuzz-roles.yaml"), "{e}"),
    }
}
