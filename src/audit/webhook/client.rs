//! The HTTP side of the sender: one pooled client for the webhook URL, its TLS settings, and the
//! bearer token file.

use std::{
    error::Error as _,
    path::{Path, PathBuf},
    sync::Mutex,
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{HeaderValue, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioTimer},
};
use rustls::{ClientConfig, RootCertStore};

use super::{AuditError, WEBHOOK_PATH, WebhookConfig};
use crate::tls::{self, TlsError};

/// How much of a response body is read (and thrown away) so the connection can be reused.
const MAX_RESPONSE_BODY: usize = 64 * 1024;
/// A token file larger than this is not a token.
const MAX_TOKEN_FILE: u64 = 64 * 1024;
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// What one attempt came back with.
pub(super) enum Outcome {
    Status {
        status: StatusCode,
        retry_after: Option<Duration>,
    },
    /// Connection, TLS or protocol failure; the message has the whole cause chain.
    Transport(String),
}

pub(super) struct WebhookClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    uri: Uri,
    token: Option<TokenFile>,
}

impl WebhookClient {
    pub(super) fn new(cfg: &WebhookConfig, token_refresh: Duration) -> Result<Self, AuditError> {
        let uri = webhook_uri(&cfg.url)?;
        let https = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
        if !https {
            tracing::warn!(
                url = %cfg.url,
                bearer_token = cfg.bearer_token_file.is_some(),
                "audit webhook uses plain http: events (and the bearer token, if any) travel unencrypted"
            );
            if cfg.ca_file.is_some() || cfg.client_cert_file.is_some() {
                tracing::warn!("audit webhook TLS settings are ignored for an http URL");
            }
        }
        let tls = tls_config(cfg, https)?;
        let mut connector = HttpConnector::new();
        connector.enforce_http(false);
        connector.set_connect_timeout(Some(cfg.timeout));
        connector.set_nodelay(true);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        let client = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_max_idle_per_host(super::MAX_IN_FLIGHT)
            .build(connector);
        let token = match &cfg.bearer_token_file {
            Some(path) => Some(TokenFile::load(path.clone(), token_refresh)?),
            None => None,
        };
        Ok(WebhookClient { client, uri, token })
    }

    /// One POST of an already serialized event. The caller bounds it with a timeout.
    pub(super) async fn post(&self, body: Bytes) -> Outcome {
        let mut req = match Request::post(self.uri.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .header(
                header::USER_AGENT,
                concat!("kube-oidc-proxy/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(body))
        {
            Ok(req) => req,
            Err(e) => return Outcome::Transport(e.to_string()),
        };
        if let Some(token) = &self.token
            && let Some(value) = token.current().await
        {
            req.headers_mut().insert(header::AUTHORIZATION, value);
        }
        let resp = match self.client.request(req).await {
            Ok(resp) => resp,
            Err(e) => return Outcome::Transport(error_chain(&e)),
        };
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        // Read what the webhook answered so the connection goes back to the pool; its content
        // does not matter.
        let _ = Limited::new(resp.into_body(), MAX_RESPONSE_BODY).collect().await;
        Outcome::Status { status, retry_after }
    }
}

/// `<base>/api/v1/k8s-audit-log/webhook`; only http and https with a host are accepted.
fn webhook_uri(base: &str) -> Result<Uri, AuditError> {
    let bad = |reason: &str| AuditError::Url {
        url: base.to_string(),
        reason: reason.to_string(),
    };
    let full = format!("{}{WEBHOOK_PATH}", base.trim_end_matches('/'));
    let uri: Uri = full
        .parse()
        .map_err(|e: http::uri::InvalidUri| bad(&e.to_string()))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(bad("scheme must be http or https")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(bad("no host"));
    }
    if uri.query().is_some() {
        return Err(bad("a query string is not allowed"));
    }
    Ok(uri)
}

fn tls_config(cfg: &WebhookConfig, https: bool) -> Result<ClientConfig, AuditError> {
    let mut roots = RootCertStore::empty();
    match &cfg.ca_file {
        Some(path) => {
            let what = path.display().to_string();
            for cert in tls::certs_from_pem(&read(path, "CA file")?, &what)? {
                roots.add(cert).map_err(|source| TlsError::BadAnchor {
                    what: what.clone(),
                    source,
                })?;
            }
        }
        // A plain http webhook never looks at roots; do not insist that the image has some.
        None if https => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(TlsError::Config("no usable system root certificates".into()).into());
            }
        }
        None => {}
    }
    let builder = ClientConfig::builder_with_provider(tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::from)?
        .with_root_certificates(roots);
    let config = match (&cfg.client_cert_file, &cfg.client_key_file) {
        (Some(cert), Some(key)) => {
            let certs = tls::certs_from_pem(&read(cert, "client certificate")?, &cert.display().to_string())?;
            let key = tls::key_from_pem(&read(key, "client key")?, &key.display().to_string())?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(TlsError::from)?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err(AuditError::Config(
                "a client certificate and its key must be given together".into(),
            ));
        }
    };
    Ok(config)
}

fn read(path: &Path, what: &'static str) -> Result<Vec<u8>, AuditError> {
    std::fs::read(path).map_err(|source| AuditError::ReadFile {
        what,
        path: path.to_path_buf(),
        source,
    })
}

/// The bearer token, re-read from its file at most once per `refresh` so that a rotated token
/// (projected service account tokens, Vault agents) is picked up without a restart. A failed
/// re-read keeps the previous token. The token is never logged.
struct TokenFile {
    path: PathBuf,
    refresh: Duration,
    state: Mutex<TokenState>,
}

struct TokenState {
    value: HeaderValue,
    read_at: Instant,
}

impl TokenFile {
    /// The first read happens at start, so a missing or empty file is a startup error.
    fn load(path: PathBuf, refresh: Duration) -> Result<Self, AuditError> {
        let bytes = read(&path, "bearer token file")?;
        let value = header_value(&bytes).map_err(|reason| AuditError::Token(path.clone(), reason))?;
        Ok(TokenFile {
            path,
            refresh,
            state: Mutex::new(TokenState {
                value,
                read_at: Instant::now(),
            }),
        })
    }

    async fn current(&self) -> Option<HeaderValue> {
        let (value, stale) = {
            let state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            (state.value.clone(), state.read_at.elapsed() >= self.refresh)
        };
        if !stale {
            return Some(value);
        }
        // Concurrent posts may both re-read; harmless, and no lock is held across the read.
        let fresh = match read_limited(&self.path).await {
            Ok(bytes) => header_value(&bytes),
            Err(_) => Err("cannot be read"),
        };
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        state.read_at = Instant::now();
        match fresh {
            Ok(fresh) => state.value = fresh,
            Err(reason) => tracing::warn!(
                path = %self.path.display(),
                reason,
                "audit webhook bearer token file could not be re-read; keeping the previous token"
            ),
        }
        Some(state.value.clone())
    }
}

async fn read_limited(path: &Path) -> std::io::Result<Vec<u8>> {
    use tokio::io::AsyncReadExt as _;
    let file = tokio::fs::File::open(path).await?;
    let mut bytes = Vec::new();
    file.take(MAX_TOKEN_FILE + 1).read_to_end(&mut bytes).await?;
    Ok(bytes)
}

fn header_value(bytes: &[u8]) -> Result<HeaderValue, &'static str> {
    if bytes.len() as u64 > MAX_TOKEN_FILE {
        return Err("is too large to hold a token");
    }
    let token = std::str::from_utf8(bytes).map_err(|_| "is not UTF-8")?.trim();
    if token.is_empty() {
        return Err("is empty");
    }
    let mut value = HeaderValue::try_from(format!("Bearer {token}"))
        .map_err(|_| "holds characters not allowed in a header")?;
    value.set_sensitive(true);
    Ok(value)
}

/// `e` with its causes: hyper-util's own message alone ("client error (Connect)") says little.
fn error_chain(e: &hyper_util::client::legacy::Error) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        msg.push_str(": ");
        msg.push_str(&cause.to_string());
        source = cause.source();
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_from_base() {
        let uri = webhook_uri("https://siem.example:8443/base/").expect("valid");
        assert_eq!(
            uri.to_string(),
            "https://siem.example:8443/base/api/v1/k8s-audit-log/webhook"
        );
        let uri = webhook_uri("http://127.0.0.1:9000").expect("valid");
        assert_eq!(
            uri.to_string(),
            "http://127.0.0.1:9000/api/v1/k8s-audit-log/webhook"
        );
        for bad in [
            "ftp://x",
            "siem.example",
            "",
            "https://",
            "http://x/?a=b",
            "http://a b",
        ] {
            assert!(webhook_uri(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn token_header_values() {
        let v = header_value(b"abc.def\n").expect("valid");
        assert_eq!(v, "Bearer abc.def");
        assert!(v.is_sensitive());
        assert!(header_value(b"  \n").is_err());
        assert!(header_value(b"a\nb").is_err());
        assert!(header_value(&[0xff, 0xfe]).is_err());
    }
}
