//! The serving certificate and the TLS settings of the listener. The certificate is held in an
//! atomic slot that a poller refreshes when the files change: new handshakes get the new
//! certificate, open connections are left alone, and a broken file keeps the last good pair.

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use arc_swap::ArcSwap;
use rustls::{
    ServerConfig, SupportedCipherSuite,
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
    version::{TLS12, TLS13},
};
use tokio_util::sync::CancellationToken;

use crate::tls::{TlsError, certs_from_pem, key_from_pem, provider};

pub struct CertResolver {
    current: ArcSwap<CertifiedKey>,
}

impl fmt::Debug for CertResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CertResolver")
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// Reads a certificate chain and its key; errors name the file.
pub fn load_pair(cert: &Path, key: &Path) -> Result<(CertifiedKey, Vec<u8>), TlsError> {
    let read = |p: &Path| {
        std::fs::read(p).map_err(|e| TlsError::Config(format!("cannot read {}: {e}", p.display())))
    };
    let cert_pem = read(cert)?;
    let key_pem = read(key)?;
    let chain = certs_from_pem(&cert_pem, &cert.display().to_string())?;
    let der = key_from_pem(&key_pem, &key.display().to_string())?;
    let signing = provider()
        .key_provider
        .load_private_key(der)
        .map_err(|e| TlsError::Config(format!("unusable private key in {}: {e}", key.display())))?;
    let ck = CertifiedKey::new(chain, signing);
    ck.keys_match().map_err(|e| {
        TlsError::Config(format!(
            "{} does not match {}: {e}",
            key.display(),
            cert.display()
        ))
    })?;
    let mut fingerprint = cert_pem;
    fingerprint.extend_from_slice(&key_pem);
    Ok((ck, fingerprint))
}

pub struct ServingCert {
    pub resolver: Arc<CertResolver>,
    cert: PathBuf,
    key: PathBuf,
    loaded: std::sync::Mutex<Vec<u8>>,
}

impl ServingCert {
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<Self>, TlsError> {
        let (ck, fp) = load_pair(cert, key)?;
        Ok(Arc::new(ServingCert {
            resolver: Arc::new(CertResolver {
                current: ArcSwap::from_pointee(ck),
            }),
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            loaded: std::sync::Mutex::new(fp),
        }))
    }

    /// Re-reads the files; swaps the certificate in if they changed and are valid.
    pub fn reload(&self) {
        match load_pair(&self.cert, &self.key) {
            Ok((ck, fp)) => {
                let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
                if *loaded != fp {
                    self.resolver.current.store(Arc::new(ck));
                    *loaded = fp;
                    tracing::info!(cert = %self.cert.display(), "serving certificate reloaded");
                }
            }
            // Mid-rotation a pair can be inconsistent for a moment; keep serving the old one.
            Err(e) => {
                tracing::warn!(error = %e, "serving certificate not reloaded; keeping the previous one")
            }
        }
    }

    pub fn spawn_reloader(self: &Arc<Self>, every: Duration, cancel: CancellationToken) {
        let this = self.clone();
        crate::config::reload::poll_until_cancelled(every, cancel, move || this.reload());
    }
}

/// `--tls-min-version`, with Go's names. TLS 1.0 and 1.1 are named so that a command line
/// written for the Go proxy gets a clear refusal rather than "unknown value".
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TlsVersion {
    #[value(name = "VersionTLS10")]
    Tls10,
    #[value(name = "VersionTLS11")]
    Tls11,
    #[value(name = "VersionTLS12")]
    Tls12,
    #[value(name = "VersionTLS13")]
    Tls13,
}

/// The listener's rustls config from `--tls-min-version` and `--tls-cipher-suites`, offering
/// h2 and http/1.1 by ALPN.
pub fn server_config(
    resolver: Arc<CertResolver>,
    min_version: TlsVersion,
    cipher_suites: &[String],
) -> Result<ServerConfig, TlsError> {
    let versions: &[&'static rustls::SupportedProtocolVersion] = match min_version {
        TlsVersion::Tls12 => &[&TLS13, &TLS12],
        TlsVersion::Tls13 => &[&TLS13],
        TlsVersion::Tls10 | TlsVersion::Tls11 => {
            let name = if min_version == TlsVersion::Tls10 {
                "VersionTLS10"
            } else {
                "VersionTLS11"
            };
            return Err(TlsError::Config(format!(
                "--tls-min-version {name} is not supported (TLS 1.2 is the minimum)"
            )));
        }
    };
    let mut provider = (*provider()).clone();
    if !cipher_suites.is_empty() {
        provider.cipher_suites = select_suites(&provider.cipher_suites, cipher_suites)?;
    }
    let mut config = ServerConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(versions)?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Go names TLS 1.2 suites as IANA does; TLS 1.3 suites are not configurable in Go and stay on
/// here too unless named.
fn select_suites(
    all: &[SupportedCipherSuite],
    names: &[String],
) -> Result<Vec<SupportedCipherSuite>, TlsError> {
    let name_of = |s: &SupportedCipherSuite| format!("{:?}", s.suite()).replace("TLS13_", "TLS_");
    let mut chosen = Vec::new();
    for wanted in names {
        let Some(s) = all.iter().find(|s| name_of(s) == *wanted) else {
            let known: Vec<String> = all.iter().map(name_of).collect();
            return Err(TlsError::Config(format!(
                "cipher suite {wanted:?} is not supported; supported: {}",
                known.join(", ")
            )));
        };
        chosen.push(*s);
    }
    if !chosen.iter().any(|s| s.version() == &TLS13) {
        chosen.extend(all.iter().filter(|s| s.version() == &TLS13).copied());
    }
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cipher_suite_names_follow_go() {
        let all = provider().cipher_suites.clone();
        let picked = select_suites(&all, &["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256".into()]).unwrap();
        assert!(
            picked
                .iter()
                .any(|s| format!("{:?}", s.suite()) == "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256")
        );
        assert!(
            picked
                .iter()
                .all(|s| s.version() == &TLS13 || format!("{:?}", s.suite()).contains("AES_128"))
        );
        let err = select_suites(&all, &["TLS_RSA_WITH_RC4_128_SHA".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("not supported"), "{err}");
        assert!(select_suites(&all, &["TLS_AES_256_GCM_SHA384".into()]).is_ok());
    }
}
