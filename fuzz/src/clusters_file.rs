//! The clusters file and a kubeconfig from the management Secret, on any text: each loads or
//! fails with a message, never panics; an accepted Secret kubeconfig runs no command and reads
//! no file.

use std::path::Path;

use kube_oidc_proxy::config::{clusters, secret_kubeconfig};

pub fn run(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data)
        && let Err(e) = clusters::parse(Path::new("fuzz-clusters.yaml"), text)
    {
        assert!(e.to_string().contains("fuzz-clusters.yaml"), "{e}");
    }
    if let Ok(config) = secret_kubeconfig::kubeconfig(data) {
        for info in config.auth_infos.iter().filter_map(|a| a.auth_info.as_ref()) {
            let no_file = |f: &Option<String>| f.as_deref().is_none_or(str::is_empty);
            assert!(info.exec.is_none() && info.auth_provider.is_none());
            assert!(no_file(&info.client_certificate) && no_file(&info.client_key));
            assert!(no_file(&info.token_file));
        }
        for cluster in config.clusters.iter().filter_map(|c| c.cluster.as_ref()) {
            assert!(cluster.certificate_authority.as_deref().is_none_or(str::is_empty));
        }
    }
}
