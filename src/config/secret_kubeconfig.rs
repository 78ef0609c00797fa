//! Kubeconfigs from the management cluster's Secret (checked here, watched by `management`).
//! Whoever can write that Secret chooses the clusters the proxy serves, but must not be able to
//! make the proxy run a command or read its own files: exec plugins, auth providers and every field that names a file are refused; tokens,
//! client certificates and CA data inline are what such a kubeconfig may use. Errors never quote
//! the kubeconfig.

use kube::config::Kubeconfig;

/// Parses and checks one Secret value.
pub fn kubeconfig(bytes: &[u8]) -> Result<Kubeconfig, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "the kubeconfig is not UTF-8 text".to_string())?;
    // The parser's own message can quote the document (a token in a type error): say only where.
    let config = Kubeconfig::from_yaml(text).map_err(|e| {
        let at = yaml_location(&e).unwrap_or_default();
        format!("the kubeconfig is not valid YAML of a kubeconfig{at}")
    })?;
    check(&config)?;
    Ok(config)
}

fn yaml_location(e: &kube::config::KubeconfigError) -> Option<String> {
    let text = e.to_string();
    // serde_yaml ends its messages with "at line L column C".
    let at = text.rfind(" at line ")?;
    let tail = &text[at..];
    tail.split_whitespace()
        .all(|w| w == "at" || w == "line" || w == "column" || w.trim_end_matches(',').parse::<u64>().is_ok())
        .then(|| tail.trim_end_matches(',').to_string())
}

/// Refuses what a kubeconfig from a Secret may not use.
pub fn check(config: &Kubeconfig) -> Result<(), String> {
    for named in &config.clusters {
        let Some(c) = &named.cluster else { continue };
        if c.certificate_authority.as_deref().is_some_and(|p| !p.is_empty()) {
            return Err(format!(
                "cluster entry {:?} names a CA file (certificate-authority); use certificate-authority-data",
                named.name
            ));
        }
    }
    for named in &config.auth_infos {
        let Some(a) = &named.auth_info else { continue };
        let refused = if a.exec.is_some() {
            Some("an exec credential plugin")
        } else if a.auth_provider.is_some() {
            Some("an auth provider")
        } else if a.token_file.as_deref().is_some_and(|p| !p.is_empty()) {
            Some("a token file (tokenFile); use token")
        } else if a.client_certificate.as_deref().is_some_and(|p| !p.is_empty()) {
            Some("a client certificate file (client-certificate); use client-certificate-data")
        } else if a.client_key.as_deref().is_some_and(|p| !p.is_empty()) {
            Some("a client key file (client-key); use client-key-data")
        } else {
            None
        };
        if let Some(what) = refused {
            return Err(format!(
                "user entry {:?} uses {what}, which a kubeconfig from the Secret may not",
                named.name
            ));
        }
    }
    let Some(current) = config.current_context.as_deref().filter(|c| !c.is_empty()) else {
        return Err("the kubeconfig has no current-context".into());
    };
    if !config.contexts.iter().any(|c| c.name == current) {
        return Err(format!(
            "the kubeconfig's current-context {current:?} is not among its contexts"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(user: &str, cluster: &str) -> String {
        format!(
            "apiVersion: v1
kind: Config
current-context: c
contexts:
- name: c
  context: {{cluster: k, user: u}}
clusters:
- name: k
  cluster:
    server: https://127.0.0.1:6443
{cluster}
users:
- name: u
  user:
{user}
"
        )
    }

    #[test]
    fn inline_credentials_are_accepted() {
        let ok = config("    token: abc.def", "    certificate-authority-data: Zm9v");
        kubeconfig(ok.as_bytes()).expect("token and CA data are fine");
        let cert = config(
            "    client-certificate-data: Zm9v\n    client-key-data: YmFy",
            "    insecure-skip-tls-verify: true",
        );
        kubeconfig(cert.as_bytes()).expect("client certificate data is fine");
    }

    #[test]
    fn commands_and_files_are_refused() {
        for (user, cluster, expect) in [
            (
                "    exec: {apiVersion: client.authentication.k8s.io/v1, command: /bin/sh, args: [-c, id]}",
                "",
                "exec credential plugin",
            ),
            ("    auth-provider: {name: oidc, config: {}}", "", "auth provider"),
            (
                "    tokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token",
                "",
                "token file",
            ),
            (
                "    client-certificate: /etc/tls/cert.pem",
                "",
                "client certificate file",
            ),
            ("    client-key: /etc/tls/key.pem", "", "client key file"),
            (
                "    token: x",
                "    certificate-authority: /etc/ssl/ca.pem",
                "CA file",
            ),
        ] {
            let text = config(user, cluster);
            let err = kubeconfig(text.as_bytes()).expect_err(expect);
            assert!(err.contains(expect), "{err}");
        }
    }

    #[test]
    fn errors_never_quote_the_document() {
        let secret = "s3cr3t-token-value";
        for text in [
            format!("users: {secret}"),
            format!("{{{secret}"),
            format!("current-context: [{secret}]"),
        ] {
            let err = kubeconfig(text.as_bytes()).expect_err("invalid");
            assert!(!err.contains(secret), "{err}");
        }
        let err = kubeconfig(b"\xff\xfe").expect_err("binary");
        assert!(err.contains("UTF-8"), "{err}");
    }

    #[test]
    fn the_current_context_must_exist() {
        let text = config("    token: x", "").replace("current-context: c", "current-context: gone");
        let err = kubeconfig(text.as_bytes()).expect_err("missing context");
        assert!(err.contains("not among its contexts"), "{err}");
    }
}
