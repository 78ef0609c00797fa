//! Runs the real proxy (the library's `start_with_sink`, the same code path as the binary) on
//! ephemeral ports, in front of fake API servers and a fake issuer, with real TLS everywhere.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use clap::Parser;
use kube_oidc_proxy::{Running, audit::access_log::Sink, cli::Args};

use super::apiserver::FakeApi;
use super::client::Conn;
use super::issuer::Issuer;
use super::pki::{Ca, Issued};
use super::{TempDir, wait_until};

/// Access lines, kept in memory so tests can assert on them.
#[derive(Default)]
pub struct MemSink(Mutex<Vec<String>>);

impl Sink for MemSink {
    fn line(&self, line: &str) {
        self.0.lock().unwrap().push(line.to_string());
    }
}

impl MemSink {
    pub fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

/// How the proxy authenticates to a fake API server.
pub enum Cred {
    Token(String),
    ClientCert(Issued),
}

pub struct ProxyBuilder {
    issuer_url: String,
    issuer_ca: PathBuf,
    client_id: String,
    clusters: Vec<(String, String, String, Cred)>,
    raw_clusters: Vec<(String, String)>,
    /// `identity:` of a cluster entry.
    identities: Vec<(String, String)>,
    args: Vec<String>,
    wait_ready: bool,
    /// `--authentication-config` text instead of the `--oidc-*` flags.
    authentication_config: Option<String>,
}

pub fn proxy(issuer: &Issuer) -> ProxyBuilder {
    ProxyBuilder {
        issuer_url: issuer.url(),
        issuer_ca: issuer.ca_file(),
        client_id: issuer.client_id(),
        clusters: Vec::new(),
        raw_clusters: Vec::new(),
        identities: Vec::new(),
        args: Vec::new(),
        wait_ready: true,
        authentication_config: None,
    }
}

impl ProxyBuilder {
    /// Serves `api` as cluster `name`; `server_path` is appended to its URL (a Rancher-style
    /// path prefix), usually "".
    pub fn cluster(mut self, name: &str, api: &FakeApi, server_path: &str, cred: Cred) -> Self {
        self.clusters.push((
            name.into(),
            format!("{}{server_path}", api.url()),
            api.ca_pem(),
            cred,
        ));
        self
    }

    /// Sets the `identity:` of cluster `name`'s entry.
    pub fn identity(mut self, name: &str, identity: &str) -> Self {
        self.identities.push((name.into(), identity.into()));
        self
    }

    /// A cluster entry whose kubeconfig is the given text (to test broken entries).
    pub fn raw_cluster(mut self, name: &str, kubeconfig_yaml: &str) -> Self {
        self.raw_clusters.push((name.into(), kubeconfig_yaml.into()));
        self
    }

    pub fn arg(mut self, a: &str) -> Self {
        self.args.push(a.into());
        self
    }

    /// Trusts the issuers of this AuthenticationConfiguration (written to `authn.yaml` in the
    /// proxy's directory) instead of the `--oidc-*` flags' one.
    pub fn authentication_config(mut self, yaml: &str) -> Self {
        self.authentication_config = Some(yaml.into());
        self
    }

    pub fn no_wait(mut self) -> Self {
        self.wait_ready = false;
        self
    }

    pub async fn run(self) -> TestProxy {
        // Operational logs show up in a failing test's output (set RUST_LOG for more).
        let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "warn,kube_oidc_proxy=info".into());
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter(filter)
            .try_init();
        let dir = TempDir::new("kop-proxy");
        let ca = Ca::new("proxy-ca");
        let serving = ca.issue_server(&["127.0.0.1", "localhost", "::1"]);
        let (cert, key) = serving.write_to(dir.path(), "serving");
        let mut clusters_yaml = String::from("clusters:\n");
        for (name, server, ca_pem, cred) in &self.clusters {
            let kc = kubeconfig(server, ca_pem, cred);
            let path = dir.write(&format!("{name}.kubeconfig"), &kc);
            clusters_yaml.push_str(&format!("  - name: {name}\n    kubeconfig: {}\n", path.display()));
            if let Some((_, id)) = self.identities.iter().find(|(n, _)| n == name) {
                clusters_yaml.push_str(&format!("    identity: {id}\n"));
            }
        }
        for (name, text) in &self.raw_clusters {
            let path = dir.write(&format!("{name}.kubeconfig"), text);
            clusters_yaml.push_str(&format!("  - name: {name}\n    kubeconfig: {}\n", path.display()));
        }
        let clusters_file = dir.write("clusters.yaml", &clusters_yaml);
        let mut argv = vec![
            "kube-oidc-proxy".to_string(),
            "--bind-address=127.0.0.1".into(),
            "--secure-port=0".into(),
            "--readiness-probe-port=0".into(),
            format!("--tls-cert-file={}", cert.display()),
            format!("--tls-private-key-file={}", key.display()),
            format!("--clusters-config={}", clusters_file.display()),
            "--shutdown-grace-period=3s".into(),
        ];
        match &self.authentication_config {
            Some(yaml) => {
                let path = dir.write("authn.yaml", yaml);
                argv.push(format!("--authentication-config={}", path.display()));
            }
            None => argv.extend([
                format!("--oidc-issuer-url={}", self.issuer_url),
                format!("--oidc-client-id={}", self.client_id),
                format!("--oidc-ca-file={}", self.issuer_ca.display()),
            ]),
        }
        // A developer's KUBECONFIG must never become a test's management cluster.
        if !self.args.iter().any(|a| a.starts_with("--management-kubeconfig")) {
            argv.push("--management-kubeconfig=".into());
        }
        argv.extend(self.args);
        let args = Args::try_parse_from(&argv).expect("test flags parse");
        let log = Arc::new(MemSink::default());
        let running = kube_oidc_proxy::start_with_sink(args, log.clone())
            .await
            .expect("proxy starts");
        let p = TestProxy {
            addr: running.addr,
            probe: running.probe_addr,
            running: Some(running),
            log,
            ca,
            dir,
            cert,
            key,
        };
        if self.wait_ready {
            p.wait_ready().await;
        }
        p
    }
}

/// A kubeconfig for one fake API server.
pub fn kubeconfig(server: &str, ca_pem: &str, cred: &Cred) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let user = match cred {
        Cred::Token(t) => format!("    token: {t}\n"),
        Cred::ClientCert(c) => format!(
            "    client-certificate-data: {}\n    client-key-data: {}\n",
            b64(&c.cert_pem),
            b64(&c.key_pem)
        ),
    };
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\n    certificate-authority-data: {}\nusers:\n- name: u\n  user:\n{user}contexts:\n- name: ctx\n  context:\n    cluster: c\n    user: u\ncurrent-context: ctx\n",
        b64(ca_pem)
    )
}

pub struct TestProxy {
    pub addr: SocketAddr,
    pub probe: SocketAddr,
    running: Option<Running>,
    pub log: Arc<MemSink>,
    pub ca: Ca,
    pub dir: TempDir,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TestProxy {
    pub fn tls(&self) -> Arc<rustls::ClientConfig> {
        self.ca.client_config_alpn(&[b"http/1.1"])
    }

    pub fn tls_h2(&self) -> Arc<rustls::ClientConfig> {
        self.ca.client_config_alpn(&[b"h2"])
    }

    pub async fn conn(&self) -> Conn {
        Conn::connect(self.addr, self.tls())
            .await
            .expect("connect to proxy")
    }

    /// GET on a fresh connection with a bearer token (or none).
    pub async fn get(
        &self,
        path: &str,
        token: Option<&str>,
    ) -> (http::StatusCode, http::HeaderMap, bytes::Bytes) {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = Vec::new();
        if let Some(a) = &auth {
            headers.push(("authorization", a.as_str()));
        }
        super::client::get(self.addr, self.tls(), path, &headers).await
    }

    pub async fn probe_status(&self, path: &str) -> u16 {
        let url = format!("http://{}{path}", self.probe);
        probe_get(&url).await
    }

    /// The probe port's answer to `path` as text (`/metrics`).
    pub async fn probe_text(&self, path: &str) -> String {
        String::from_utf8_lossy(&self.probe_body(path).await).into_owned()
    }

    /// The probe port's answer to `path` as JSON (`/clusters`).
    pub async fn probe_json(&self, path: &str) -> serde_json::Value {
        serde_json::from_slice(&self.probe_body(path).await).expect("probe JSON")
    }

    async fn probe_body(&self, path: &str) -> bytes::Bytes {
        use http_body_util::{BodyExt, Empty};
        use hyper_util::{client::legacy::Client, rt::TokioExecutor};
        let client: Client<_, Empty<bytes::Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let url = format!("http://{}{path}", self.probe);
        let resp = client
            .get(url.parse().expect("url"))
            .await
            .expect("probe answers");
        resp.into_body().collect().await.expect("probe body").to_bytes()
    }

    pub async fn wait_ready(&self) {
        for _ in 0..200 {
            if self.probe_status("/ready").await == 200 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("proxy never became ready");
    }

    pub fn running(&self) -> &Running {
        self.running.as_ref().expect("proxy running")
    }

    pub async fn shutdown(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
    }

    pub async fn wait_log(&self, needle: &str) -> String {
        let mut found = None;
        wait_until(&format!("access line containing {needle:?}"), 5, || {
            found = self.log.lines().into_iter().find(|l| l.contains(needle));
            found.is_some()
        })
        .await;
        found.unwrap_or_default()
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        if let Some(r) = &self.running {
            r.begin_shutdown();
        }
    }
}

/// Plain HTTP GET returning the status code (probe port).
async fn probe_get(url: &str) -> u16 {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::{client::legacy::Client, rt::TokioExecutor};
    let client: Client<_, Empty<bytes::Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    match client.get(url.parse().expect("url")).await {
        Ok(resp) => {
            let code = resp.status().as_u16();
            let _ = resp.into_body().collect().await;
            code
        }
        Err(_) => 0,
    }
}
