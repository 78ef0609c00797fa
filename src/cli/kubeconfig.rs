//! `kube-oidc-proxy kubeconfig`: the kubeconfig a user needs, with one cluster and context per
//! cluster the proxy serves (`https://<proxy>/<cluster>`), the proxy's CA, and a user whose
//! credentials come from the issuer through kubelogin (`kubectl oidc-login get-token`).

use std::path::PathBuf;

use base64::Engine as _;

/// What the kubeconfig is made of.
#[derive(Debug, Clone, clap::Args)]
pub struct KubeconfigArgs {
    /// The proxy's URL as users reach it (https://proxy.example.com:8443).
    #[arg(long)]
    pub proxy_url: String,
    /// Clusters to include (repeatable or comma-separated); default: every entry of
    /// --clusters-config.
    #[arg(long, value_delimiter = ',')]
    pub clusters: Vec<String>,
    /// The clusters file to take the cluster names from when --clusters is not given.
    #[arg(long)]
    pub clusters_config: Option<PathBuf>,
    /// PEM file of the CA that signed the proxy's serving certificate (embedded as
    /// certificate-authority-data); without it the system roots are used.
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// The OIDC issuer users log in with.
    #[arg(long)]
    pub oidc_issuer_url: String,
    /// The OIDC client ID.
    #[arg(long)]
    pub oidc_client_id: String,
    /// The credential plugin: `kubectl` (runs `kubectl oidc-login get-token`) or a path to the
    /// kubelogin binary (runs `kubelogin get-token`).
    #[arg(long, default_value = "kubectl")]
    pub kubelogin_command: String,
    /// Extra kubelogin option, repeatable (`--kubelogin-arg=--oidc-extra-scope=groups`).
    #[arg(long = "kubelogin-arg", allow_hyphen_values = true)]
    pub kubelogin_args: Vec<String>,
    /// Name of the user entry (and the prefix of nothing else).
    #[arg(long, default_value = "oidc")]
    pub user: String,
    /// Host-name style (the proxy's `--cluster-host-suffix`): each cluster's server is
    /// `https://<cluster><suffix>[:port of --proxy-url]` with no path, instead of
    /// `<proxy-url>/<cluster>`.
    #[arg(long)]
    pub cluster_host_suffix: Option<String>,
}

/// A YAML scalar that reads back as exactly `s` (a JSON string is valid YAML).
fn q(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// The kubeconfig text, or why it cannot be made.
pub fn render(a: &KubeconfigArgs) -> Result<String, String> {
    let proxy = a.proxy_url.trim_end_matches('/');
    if !proxy.starts_with("https://") {
        return Err(format!("--proxy-url {proxy:?} must be an https:// URL"));
    }
    let clusters: Vec<String> = if !a.clusters.is_empty() {
        a.clusters.clone()
    } else if let Some(path) = &a.clusters_config {
        let loaded = crate::config::clusters::load(path).map_err(|e| e.to_string())?;
        loaded.clusters.into_iter().map(|c| c.name).collect()
    } else {
        return Err("name the clusters with --clusters or --clusters-config".into());
    };
    if clusters.is_empty() {
        return Err("no clusters to write".into());
    }
    if let Some(problem) = clusters
        .iter()
        .find_map(|c| crate::config::cluster_name_problem(c))
    {
        return Err(problem);
    }
    let ca = match &a.ca_file {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| format!("--ca-file {}: {e}", path.display()))?;
            if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
                return Err(format!("--ca-file {}: no PEM certificate in it", path.display()));
            }
            Some(base64::engine::general_purpose::STANDARD.encode(pem))
        }
        None => None,
    };
    let plugin_is_kubectl = std::path::Path::new(&a.kubelogin_command)
        .file_name()
        .is_some_and(|n| n == "kubectl");
    let mut args: Vec<String> = if plugin_is_kubectl {
        vec!["oidc-login".into(), "get-token".into()]
    } else {
        vec!["get-token".into()]
    };
    args.push(format!("--oidc-issuer-url={}", a.oidc_issuer_url));
    args.push(format!("--oidc-client-id={}", a.oidc_client_id));
    args.extend(a.kubelogin_args.iter().cloned());

    let port = proxy
        .strip_prefix("https://")
        .and_then(|rest| rest.split('/').next())
        .and_then(|authority| authority.rsplit_once(':'))
        .map(|(_, p)| p)
        .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    // The proxy's own check of --cluster-host-suffix, so both accept the same suffixes.
    let suffix = (a.cluster_host_suffix.as_deref())
        .map(super::parse_host_suffix)
        .transpose()
        .map_err(|e| format!("--cluster-host-suffix {e}"))?;
    let server = |c: &str| match &suffix {
        Some(suffix) => match port {
            Some(p) => format!("https://{c}{suffix}:{p}"),
            None => format!("https://{c}{suffix}"),
        },
        None => format!("{proxy}/{c}"),
    };
    let mut out = String::from("apiVersion: v1\nkind: Config\nclusters:\n");
    for c in &clusters {
        out.push_str(&format!(
            "- name: {}\n  cluster:\n    server: {}\n",
            q(c),
            q(&server(c))
        ));
        if let Some(ca) = &ca {
            out.push_str(&format!("    certificate-authority-data: {ca}\n"));
        }
    }
    out.push_str(&format!(
        "users:\n- name: {}\n  user:\n    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: {}\n      interactiveMode: IfAvailable\n      args:\n",
        q(&a.user),
        q(&a.kubelogin_command)
    ));
    for arg in &args {
        out.push_str(&format!("      - {}\n", q(arg)));
    }
    out.push_str("contexts:\n");
    for c in &clusters {
        out.push_str(&format!(
            "- name: {}\n  context:\n    cluster: {}\n    user: {}\n",
            q(c),
            q(c),
            q(&a.user)
        ));
    }
    out.push_str(&format!("current-context: {}\n", q(&clusters[0])));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use kube::config::Kubeconfig;

    use super::*;

    fn args() -> KubeconfigArgs {
        KubeconfigArgs {
            proxy_url: "https://proxy.example.com:8443/".into(),
            clusters: vec!["k8s".into(), "kind".into()],
            clusters_config: None,
            ca_file: None,
            oidc_issuer_url: "https://kc.example.com/realms/k8s".into(),
            oidc_client_id: "kube".into(),
            kubelogin_command: "kubectl".into(),
            kubelogin_args: vec!["--oidc-extra-scope=groups".into()],
            user: "oidc".into(),
            cluster_host_suffix: None,
        }
    }

    #[test]
    fn host_name_style_servers_carry_no_path() {
        let mut a = args();
        a.cluster_host_suffix = Some(".proxy.example.com".into());
        let k = Kubeconfig::from_yaml(&render(&a).unwrap()).unwrap();
        let servers: Vec<_> = k
            .clusters
            .iter()
            .map(|c| c.cluster.as_ref().unwrap().server.clone().unwrap())
            .collect();
        assert_eq!(
            servers,
            [
                "https://k8s.proxy.example.com:8443",
                "https://kind.proxy.example.com:8443"
            ]
        );
        a.proxy_url = "https://proxy.example.com".into();
        assert!(
            render(&a)
                .unwrap()
                .contains("server: \"https://k8s.proxy.example.com\"\n")
        );
        a.cluster_host_suffix = Some("proxy.example.com".into());
        assert!(render(&a).unwrap_err().contains("must start with a dot"));
    }

    #[test]
    fn one_cluster_and_context_per_cluster_with_a_kubelogin_user() {
        let k = Kubeconfig::from_yaml(&render(&args()).unwrap()).unwrap();
        let servers: Vec<_> = k
            .clusters
            .iter()
            .map(|c| c.cluster.as_ref().unwrap().server.clone().unwrap())
            .collect();
        assert_eq!(
            servers,
            [
                "https://proxy.example.com:8443/k8s",
                "https://proxy.example.com:8443/kind"
            ]
        );
        assert_eq!(k.contexts.len(), 2);
        assert_eq!(k.current_context.as_deref(), Some("k8s"));
        let exec = k.auth_infos[0].auth_info.as_ref().unwrap().exec.as_ref().unwrap();
        assert_eq!(exec.command.as_deref(), Some("kubectl"));
        assert_eq!(
            exec.args.as_deref().unwrap(),
            [
                "oidc-login",
                "get-token",
                "--oidc-issuer-url=https://kc.example.com/realms/k8s",
                "--oidc-client-id=kube",
                "--oidc-extra-scope=groups"
            ]
        );
    }

    #[test]
    fn the_ca_is_embedded_and_a_kubelogin_binary_takes_get_token_directly() {
        let dir = std::env::temp_dir().join(format!("kop-kc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = dir.join("ca.pem");
        std::fs::write(
            &ca,
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let mut a = args();
        a.ca_file = Some(ca.clone());
        a.kubelogin_command = "/usr/local/bin/kubelogin".into();
        let k = Kubeconfig::from_yaml(&render(&a).unwrap()).unwrap();
        let data = k.clusters[0]
            .cluster
            .as_ref()
            .unwrap()
            .certificate_authority_data
            .clone()
            .unwrap();
        let pem = base64::engine::general_purpose::STANDARD.decode(data).unwrap();
        assert!(String::from_utf8(pem).unwrap().contains("BEGIN CERTIFICATE"));
        let exec = k.auth_infos[0].auth_info.as_ref().unwrap().exec.as_ref().unwrap();
        assert_eq!(exec.args.as_deref().unwrap()[0], "get-token");
        std::fs::write(&ca, "not a certificate").unwrap();
        assert!(render(&a).unwrap_err().contains("no PEM certificate"));
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn clusters_come_from_the_clusters_file_and_bad_input_is_named() {
        let dir = std::env::temp_dir().join(format!("kop-kc-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("clusters.yaml");
        std::fs::write(
            &file,
            "clusters:\n- name: prod\n  kubeconfig: /x\n- name: dev\n  kubeconfig: /y\n",
        )
        .unwrap();
        let mut a = args();
        a.clusters = vec![];
        a.clusters_config = Some(file);
        let k = Kubeconfig::from_yaml(&render(&a).unwrap()).unwrap();
        let names: Vec<_> = k.contexts.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["prod", "dev"]);
        std::fs::remove_dir_all(&dir).ok();

        let mut a = args();
        a.proxy_url = "http://proxy".into();
        assert!(render(&a).unwrap_err().contains("https://"));
        let mut a = args();
        a.clusters = vec!["../x".into()];
        assert!(render(&a).unwrap_err().contains("invalid cluster name \"../x\""));
        a.clusters = vec!["apis".into()];
        assert!(render(&a).unwrap_err().contains("\"apis\" is reserved"));
        let mut a = args();
        a.clusters = vec![];
        assert!(render(&a).unwrap_err().contains("--clusters"));
    }
}
