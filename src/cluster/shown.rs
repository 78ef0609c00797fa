//! What of a kubeconfig may be shown: on the unauthenticated `/clusters` page, in logs, in
//! errors and in Status messages. A kubeconfig carries secrets in places a careless message
//! reaches: a password in the server URL (`https://user:pass@host`), the environment and input
//! of an exec plugin (kube-rs words a failed plugin as the whole `Command`, `KUBERNETES_EXEC_INFO`
//! and every `env` value included, and the plugin's output as a `Debug` dump), and YAML parse
//! errors that quote the line they failed on. Everything shown passes through here.

use std::error::Error;

use http::Uri;
use kube::{client::AuthError, config::KubeconfigError};

/// The most of a failing exec plugin's stderr that is shown.
pub const MAX_STDERR: usize = 512;

/// A server URL as it may be shown: scheme, host, port and path; never userinfo or a query.
pub fn server_url(url: &Uri) -> String {
    let mut s = String::new();
    if let Some(scheme) = url.scheme_str() {
        s.push_str(scheme);
        s.push_str("://");
    }
    if let Some(host) = url.host() {
        s.push_str(host);
    }
    if let Some(port) = url.port_u16() {
        s.push(':');
        s.push_str(&port.to_string());
    }
    s.push_str(url.path());
    s
}

/// `a: b: c` from an error and its sources, each worded so that no credential shows: an exec
/// plugin's failure as its command, exit status and a bounded stderr; a YAML error as its place.
pub fn error_chain(e: &(dyn Error + 'static)) -> String {
    let mut chain: Vec<&(dyn Error + 'static)> = vec![e];
    let mut source = e.source();
    while let Some(inner) = source {
        chain.push(inner);
        source = inner.source();
    }
    // An error whose text could carry a secret is worded here, and so is everything above it
    // (whose text repeats it): the chain is shown from that error on.
    if let Some(i) = chain.iter().position(|e| unsafe_to_show(*e)) {
        let mut s = safe_text(chain[i]);
        if let Some(place) = chain[i + 1..].iter().find_map(|e| yaml_place(*e)) {
            s.push_str(": ");
            s.push_str(&place);
        }
        return s;
    }
    let mut s = e.to_string();
    for inner in &chain[1..] {
        let t = inner.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
    }
    s
}

fn unsafe_to_show(e: &(dyn Error + 'static)) -> bool {
    matches!(
        e.downcast_ref::<AuthError>(),
        Some(AuthError::AuthExecRun { .. } | AuthError::AuthExecParse(_) | AuthError::AuthExec(_))
    ) || matches!(
        e.downcast_ref::<KubeconfigError>(),
        Some(KubeconfigError::Parse(_))
    ) || e.is::<serde_saphyr::Error>()
}

fn safe_text(e: &(dyn Error + 'static)) -> String {
    match e.downcast_ref::<AuthError>() {
        Some(AuthError::AuthExecRun { cmd, out }) => exec_failure(cmd, &out.status, &out.stderr),
        Some(AuthError::AuthExecParse(_)) => {
            "the exec plugin's output is not an ExecCredential (its output is not shown)".into()
        }
        Some(AuthError::AuthExec(_)) => "the exec credential plugin failed (details withheld)".into(),
        // kube-rs keeps the YAML error inside without naming it as the source, and its text
        // quotes the lines around the error (a token among them).
        _ => match e.downcast_ref::<KubeconfigError>() {
            Some(KubeconfigError::Parse(y)) => format!("kubeconfig: {}", place(y)),
            _ => yaml_place(e).unwrap_or_else(|| "invalid YAML".into()),
        },
    }
}

/// `exec plugin "aws" exited with status 1: <stderr>`.
fn exec_failure(cmd: &str, status: &std::process::ExitStatus, stderr: &[u8]) -> String {
    let program = program_of(cmd).unwrap_or_else(|| "?".into());
    let code = match status.code() {
        Some(c) => format!("exit code {c}"),
        None => "no exit code (killed by a signal)".into(),
    };
    let err = bounded(stderr);
    if err.is_empty() {
        format!("exec plugin {program:?} failed with {code}, no stderr")
    } else {
        format!("exec plugin {program:?} failed with {code}: stderr: {err}")
    }
}

/// The program of a `Command` as its `Debug` writes it: `KEY="value" ... "program" "arg" ...`
/// (environment changes first, unquoted names; program and arguments quoted).
fn program_of(debug: &str) -> Option<String> {
    let start = debug.char_indices().find_map(|(i, c)| {
        let at_token = i == 0 || debug[..i].ends_with(' ');
        (c == '"' && at_token).then_some(i + 1)
    })?;
    let mut out = String::new();
    let mut chars = debug[start..].chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => out.push(chars.next()?),
            c => out.push(c),
        }
    }
    None
}

/// At most [`MAX_STDERR`] bytes of `bytes`, as text on one line (control characters as spaces).
fn bounded(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(MAX_STDERR)];
    let text = String::from_utf8_lossy(cut);
    let mut s: String = text
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if bytes.len() > MAX_STDERR {
        s.push_str(" ...");
    }
    s
}

fn yaml_place(e: &(dyn Error + 'static)) -> Option<String> {
    e.downcast_ref::<serde_saphyr::Error>().map(place)
}

fn place(y: &serde_saphyr::Error) -> String {
    match y.location() {
        Some(l) => format!("invalid YAML at line {}, column {}", l.line(), l.column()),
        None => "invalid YAML".into(),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;
    use std::process::{Command, ExitStatus, Output};

    use super::*;

    #[test]
    fn server_urls_lose_userinfo_and_query() {
        let u: Uri = "https://admin:hunter2@k8s.example.com:6443/k8s/clusters/c-1?token=x"
            .parse()
            .unwrap();
        assert_eq!(server_url(&u), "https://k8s.example.com:6443/k8s/clusters/c-1");
        let u: Uri = "https://[::1]:443/".parse().unwrap();
        assert_eq!(server_url(&u), "https://[::1]:443/");
    }

    #[test]
    fn a_failed_exec_plugin_shows_its_command_exit_code_and_bounded_stderr() {
        let mut cmd = Command::new("aws");
        cmd.args(["eks", "get-token", "--cluster-name", "prod"]);
        cmd.env("AWS_SECRET_ACCESS_KEY", "s3cr3t");
        cmd.env(
            "KUBERNETES_EXEC_INFO",
            r#"{"spec":{"cluster":{"certificate-authority-data":"Q0E="}}}"#,
        );
        let long = "x".repeat(4000);
        let err = kube::Error::Auth(AuthError::AuthExecRun {
            cmd: format!("{cmd:?}"),
            out: Box::new(Output {
                status: ExitStatus::from_raw(3 << 8),
                stdout: b"{\"status\":{\"token\":\"stdout-token\"}}".to_vec(),
                stderr: format!("An error occurred (ExpiredToken)\n{long}").into_bytes(),
            }),
        });
        let shown = error_chain(&err);
        assert!(
            shown.starts_with(
                "exec plugin \"aws\" failed with exit code 3: stderr: An error occurred (ExpiredToken) xxx"
            ),
            "{shown}"
        );
        for secret in [
            "s3cr3t",
            "KUBERNETES_EXEC_INFO",
            "Q0E=",
            "stdout-token",
            "Output {",
        ] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.len() < MAX_STDERR + 100, "{}", shown.len());
    }

    #[test]
    fn programs_are_read_from_a_commands_debug_form() {
        assert_eq!(
            program_of(r#"A="1 \"x\"" "gke-gcloud-auth-plugin""#).as_deref(),
            Some("gke-gcloud-auth-plugin")
        );
        assert_eq!(
            program_of(r#""kubelogin" "get-token""#).as_deref(),
            Some("kubelogin")
        );
        assert_eq!(program_of("no quotes"), None);
    }

    #[test]
    fn a_kubeconfig_that_does_not_parse_shows_no_line_of_it() {
        let text = "apiVersion: v1\nusers:\n- name: u\n  user:\n    token: abc123secret\n    bad: [\n";
        let e = kube::config::Kubeconfig::from_yaml(text).unwrap_err();
        assert!(
            e.to_string().contains("abc123secret"),
            "kube-rs quotes the line: {e}"
        );
        let shown = error_chain(&e);
        assert!(shown.starts_with("kubeconfig: invalid YAML"), "{shown}");
        assert!(!shown.contains("abc123secret"), "{shown}");
    }

    #[test]
    fn yaml_errors_show_their_place_not_their_text() {
        let secret = "token: abc123secret\n  bad: [";
        let e = serde_saphyr::from_str::<serde_json::Value>(secret).unwrap_err();
        let shown = error_chain(&e);
        assert!(shown.starts_with("invalid YAML"), "{shown}");
        assert!(!shown.contains("abc123secret"), "{shown}");
    }
}
