//! The real `kube-oidc-proxy` binary: flags, exit codes, access lines on stdout, SIGTERM.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::TempDir;
use support::apiserver::apiserver;
use support::issuer::{KeyKind, issuer};
use support::pki::Ca;
use support::proxy::{Cred, kubeconfig};

const BIN: &str = env!("CARGO_BIN_EXE_kube-oidc-proxy");

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().expect("run binary");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_lists_every_compatible_flag_with_its_default() {
    let (code, out, _) = run(&["--help"]);
    assert_eq!(code, 0);
    for flag in [
        "--clusters-config",
        "--role-config",
        "--oidc-issuer-url",
        "--oidc-client-id",
        "--oidc-ca-file",
        "--oidc-signing-algs",
        "--oidc-username-claim",
        "--oidc-username-prefix",
        "--oidc-groups-claim",
        "--oidc-groups-prefix",
        "--oidc-required-claim",
        "--tls-cert-file",
        "--tls-private-key-file",
        "--bind-address",
        "--secure-port",
        "--readiness-probe-port",
        "--audit-webhook-server",
        "--token-passthrough",
        "--token-passthrough-audiences",
        "--disable-impersonation",
        "--extra-user-headers",
        "--extra-user-header-client-ip",
        "--flush-interval",
        "--secret-namespace",
        "--secret-name",
        "--tls-min-version",
        "--tls-cipher-suites",
        "--http2-max-streams-per-connection",
        "-v",
    ] {
        assert!(out.contains(flag), "--help lacks {flag}");
    }
    for default in [
        "[default: RS256]",
        "[default: sub]",
        "[default: groups]",
        "[default: 6443]",
        "[default: 8080]",
        "[default: 0.0.0.0]",
        "[default: kube-oidc-proxy-kubeconfigs]",
        "[default: 50ms]",
        "[default: VersionTLS12]",
    ] {
        assert!(out.contains(default), "--help lacks {default}");
    }
}

#[test]
fn bad_configuration_exits_non_zero_naming_file_line_and_field() {
    let dir = TempDir::new("kop-bin");
    let ca = Ca::new("c");
    let (cert, key) = ca.issue_server(&["127.0.0.1"]).write_to(dir.path(), "s");
    let clusters = dir.write(
        "clusters.yaml",
        "clusters:\n  - name: a\n    kubeconfig: x\n    colour: red\n",
    );
    let common = [
        "--oidc-issuer-url=https://127.0.0.1:1".to_string(),
        "--oidc-client-id=kube".into(),
        format!("--tls-cert-file={}", cert.display()),
        format!("--tls-private-key-file={}", key.display()),
        "--secure-port=0".into(),
        "--readiness-probe-port=0".into(),
        "--bind-address=127.0.0.1".into(),
    ];
    let mut args: Vec<String> = common.to_vec();
    args.push(format!("--clusters-config={}", clusters.display()));
    let (code, _, err) = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_ne!(code, 0);
    assert!(
        err.contains(&format!("{}:4", clusters.display())),
        "names file and line: {err}"
    );
    assert!(err.contains("colour"), "names the field: {err}");

    let roles = dir.write("roles.yaml", "kind: Role\napiVersion: rbac.authorization.k8s.io/v1\nmetadata:\n  name: r\n  namespace: dev\nrules: []\n");
    let mut args: Vec<String> = common.to_vec();
    args.push(format!("--role-config={}", roles.display()));
    let (code, _, err) = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_ne!(code, 0);
    assert!(err.contains("roles.yaml:"), "{err}");
    assert!(err.contains("clusterName"), "{err}");

    let (code, _, err) = run(&["--oidc-client-id=kube"]);
    assert_ne!(code, 0);
    assert!(err.contains("--oidc-issuer-url"), "{err}");
    let (code, _, err) = run(&[
        "--oidc-issuer-url=http://plain",
        "--oidc-client-id=kube",
        "--secure-port=1",
        "--readiness-probe-port=1",
    ]);
    assert_ne!(code, 0, "{err}");
}

#[test]
fn version_names_the_commit_and_build_date() {
    let (code, out, _) = run(&["--version"]);
    assert_eq!(code, 0);
    assert!(
        out.starts_with(&format!("kube-oidc-proxy {}", env!("CARGO_PKG_VERSION"))),
        "{out}"
    );
    assert!(out.contains("(commit ") && out.contains(", build date "), "{out}");
}

#[test]
fn kubeconfig_subcommand_prints_a_kubeconfig_or_a_clear_error() {
    let (code, out, _) = run(&[
        "kubeconfig",
        "--proxy-url=https://proxy:8443",
        "--clusters=a,b",
        "--oidc-issuer-url=https://issuer",
        "--oidc-client-id=kube",
    ]);
    assert_eq!(code, 0);
    assert!(out.contains("server: \"https://proxy:8443/b\""), "{out}");
    let (code, _, err) = run(&[
        "kubeconfig",
        "--proxy-url=http://proxy",
        "--clusters=a",
        "--oidc-issuer-url=https://issuer",
        "--oidc-client-id=kube",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("https://"), "{err}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn access_lines_go_to_stdout_and_sigterm_shuts_down_cleanly() {
    let iss = issuer().key_kind(KeyKind::EcP256).run().await;
    let api = apiserver().name("k8s").run().await;
    let dir = TempDir::new("kop-bin-run");
    let ca = Ca::new("proxy");
    let (cert, key) = ca.issue_server(&["127.0.0.1"]).write_to(dir.path(), "serving");
    let kc = dir.write(
        "k8s.kubeconfig",
        &kubeconfig(&api.url(), &api.ca_pem(), &Cred::Token("tok".into())),
    );
    let clusters = dir.write(
        "clusters.yaml",
        &format!("clusters:\n- name: k8s\n  kubeconfig: {}\n", kc.display()),
    );
    let (port, probe) = (free_port(), free_port());
    let child = Command::new(BIN)
        .args([
            "--bind-address=127.0.0.1".to_string(),
            format!("--secure-port={port}"),
            format!("--readiness-probe-port={probe}"),
            format!("--oidc-issuer-url={}", iss.url()),
            format!("--oidc-client-id={}", iss.client_id()),
            format!("--oidc-ca-file={}", iss.ca_file().display()),
            "--oidc-signing-algs=ES256".into(),
            format!("--tls-cert-file={}", cert.display()),
            format!("--tls-private-key-file={}", key.display()),
            format!("--clusters-config={}", clusters.display()),
            "--shutdown-grace-period=2s".into(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn proxy");
    // Killed on any panic below, so a failing test never leaves a proxy running.
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = KillOnDrop(child);
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });

    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let token = iss.token().sub("ann").groups(&["k8s:devops", "team"]).sign();
    let tls = ca.client_config_alpn(&[b"http/1.1"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let code = loop {
        if Instant::now() > deadline {
            panic!("binary never served");
        }
        if support::client::Conn::connect(addr, tls.clone()).await.is_ok() {
            let auth = format!("Bearer {token}");
            let (code, _, _) = support::client::get(
                addr,
                tls.clone(),
                "/k8s/api/v1/pods?limit=1",
                &[("authorization", &auth)],
            )
            .await;
            if code == 200 {
                break code;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(code, 200);
    let _ = support::client::get(addr, tls.clone(), "/k8s/api/v1/pods", &[]).await;

    let mut lines = Vec::new();
    let done = |lines: &[String]| {
        lines
            .iter()
            .any(|l| l.contains("AuSuccess") && l.contains("limit=1"))
            && lines
                .iter()
                .any(|l| l.contains("AuFail") && l.ends_with("URI:/k8s/api/v1/pods"))
    };
    while !done(&lines) {
        lines.push(
            rx.recv_timeout(Duration::from_secs(5))
                .expect("access line on stdout"),
        );
    }
    let ok = lines
        .iter()
        .find(|l| l.contains("AuSuccess") && l.contains("URI:/k8s/api/v1/pods?limit=1"))
        .expect("AuSuccess line");
    let ts = r"^\[\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+0000\] ";
    let re_ok = format!(
        "{ts}AuSuccess src:\\[127.0.0.1 / \\] URI:/k8s/api/v1/pods\\?limit=1 inbound:\\[ann / k8s:devops\\|team / \\]$"
    );
    assert!(matches(&re_ok, ok), "{ok}");
    let fail = lines
        .iter()
        .find(|l| l.contains("AuFail") && l.ends_with("URI:/k8s/api/v1/pods"))
        .unwrap();
    assert!(
        matches(
            &format!("{ts}AuFail src:\\[127.0.0.1 / \\] URI:/k8s/api/v1/pods$"),
            fail
        ),
        "{fail}"
    );
    assert!(lines.iter().all(|l| !l.contains(&token)), "no token on stdout");

    // Lines are written in batches by a background thread: a burst right before SIGTERM must
    // still be complete on stdout once the process has exited.
    for i in 0..25 {
        let _ = support::client::get(addr, tls.clone(), &format!("/k8s/api/v1/pods?burst={i}"), &[]).await;
    }

    // SIGTERM: the process drains and exits 0 within the grace period.
    let started = Instant::now();
    let _ = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status();
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status:?}");
    lines.extend(rx.iter());
    for i in 0..25 {
        let uri = format!("URI:/k8s/api/v1/pods?burst={i}");
        assert_eq!(
            lines.iter().filter(|l| l.ends_with(&uri)).count(),
            1,
            "{uri} logged exactly once"
        );
    }
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.0.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!err.contains(&token), "no token on stderr");
}

/// A tiny anchored matcher for the few regex features used above (literal text, `\d`, `\[`,
/// `\]`, `\|`, `\?`, `\+`, `{n}`), so the test needs no regex crate.
fn matches(pattern: &str, s: &str) -> bool {
    let p = pattern.trim_start_matches('^').trim_end_matches('$');
    let mut toks: Vec<Option<char>> = Vec::new(); // None = digit class
    let mut it = p.chars().peekable();
    while let Some(c) = it.next() {
        match c {
            '\\' => match it.next() {
                Some('d') => toks.push(None),
                Some(other) => toks.push(Some(other)),
                None => return false,
            },
            '{' => {
                let n: String = it.by_ref().take_while(|c| *c != '}').collect();
                let n: usize = n.parse().unwrap_or(1);
                let last = toks.pop().unwrap_or(Some('{'));
                toks.extend(std::iter::repeat_n(last, n));
            }
            c => toks.push(Some(c)),
        }
    }
    let chars: Vec<char> = s.chars().collect();
    chars.len() == toks.len()
        && chars.iter().zip(&toks).all(|(c, t)| match t {
            None => c.is_ascii_digit(),
            Some(t) => c == t,
        })
}
