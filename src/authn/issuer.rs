//! Fetching the issuer's discovery document and JWKS over HTTPS.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioTimer},
};
use jsonwebtoken::jwk::JwkSet;
use serde::Deserialize;

use super::AuthnError;
use crate::tls;

/// Largest discovery document or key set we accept.
const MAX_DOCUMENT: usize = 1 << 20;
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

/// HTTPS client bound to one issuer.
pub struct IssuerClient {
    /// The discovery document's URL.
    discovery: String,
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
}

impl IssuerClient {
    /// `discovery_url`: where discovery is read when it is not under the issuer's URL
    /// (`discoveryURL` of an authentication configuration, used exactly as given).
    /// `ca_pem`: the `--oidc-ca-file` contents; `None` trusts the system roots.
    pub fn new(issuer: &str, discovery_url: Option<&str>, ca_pem: Option<&[u8]>) -> Result<Self, AuthnError> {
        let config = tls::client_config(ca_pem).map_err(|e| AuthnError::Config(e.to_string()))?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(FETCH_TIMEOUT));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_only()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .build(https);
        let discovery = match discovery_url {
            Some(url) => url.to_string(),
            None => format!(
                "{}/.well-known/openid-configuration",
                issuer.trim_end_matches('/')
            ),
        };
        Ok(IssuerClient { discovery, client })
    }

    /// Reads discovery; the document must name exactly our issuer. Returns the JWKS URI.
    pub async fn discover(&self, configured_issuer: &str) -> Result<String, AuthnError> {
        let url = &self.discovery;
        let body = self.get(url).await?;
        let doc: Discovery = serde_json::from_slice(&body)
            .map_err(|e| AuthnError::Fetch(format!("discovery document from {url}: {e}")))?;
        if doc.issuer != configured_issuer {
            return Err(AuthnError::Fetch(format!(
                "discovery names issuer {:?}, expected {configured_issuer:?}",
                doc.issuer
            )));
        }
        if !doc.jwks_uri.starts_with("https://") {
            return Err(AuthnError::Fetch(format!(
                "jwks_uri {:?} is not https",
                doc.jwks_uri
            )));
        }
        Ok(doc.jwks_uri)
    }

    pub async fn keys(&self, jwks_uri: &str) -> Result<JwkSet, AuthnError> {
        let body = self.get(jwks_uri).await?;
        serde_json::from_slice(&body).map_err(|e| AuthnError::Fetch(format!("key set from {jwks_uri}: {e}")))
    }

    async fn get(&self, url: &str) -> Result<Bytes, AuthnError> {
        let uri: Uri = url
            .parse()
            .map_err(|e| AuthnError::Fetch(format!("bad URL {url}: {e}")))?;
        let req = Request::get(uri)
            .header(http::header::ACCEPT, "application/json")
            .body(Empty::new())
            .map_err(|e| AuthnError::Fetch(e.to_string()))?;
        let fetch = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| AuthnError::Fetch(format!("GET {url}: {e}")))?;
            if resp.status() != StatusCode::OK {
                return Err(AuthnError::Fetch(format!("GET {url}: status {}", resp.status())));
            }
            let body = Limited::new(resp.into_body(), MAX_DOCUMENT)
                .collect()
                .await
                .map_err(|e| AuthnError::Fetch(format!("GET {url}: {e}")))?;
            Ok(body.to_bytes())
        };
        tokio::time::timeout(FETCH_TIMEOUT, fetch)
            .await
            .map_err(|_| AuthnError::Fetch(format!("GET {url}: timed out")))?
    }
}
