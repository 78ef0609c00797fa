//! rustls plumbing shared by the server and the clients. aws-lc-rs is the only crypto provider in
//! the build; every config is built with it explicitly so nothing depends on a process default.

use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore, crypto::CryptoProvider};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("no PEM certificate found in {0}")]
    NoCertificate(String),
    #[error("cannot parse certificates in {what}: {source}")]
    BadCertificate {
        what: String,
        source: rustls_pki_types::pem::Error,
    },
    #[error("cannot parse private key in {what}: {source}")]
    BadKey {
        what: String,
        source: rustls_pki_types::pem::Error,
    },
    #[error("certificate in {what} is not a usable trust anchor: {source}")]
    BadAnchor { what: String, source: rustls::Error },
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("{0}")]
    Config(String),
}

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// All certificates in a PEM bundle; an empty bundle is an error (a typo'd CA file must not
/// silently mean "trust nothing" or "trust everything").
pub fn certs_from_pem(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::BadCertificate {
            what: what.to_string(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(what.to_string()));
    }
    Ok(certs)
}

pub fn key_from_pem(pem: &[u8], what: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|source| TlsError::BadKey {
        what: what.to_string(),
        source,
    })
}

/// Client config trusting `ca_pem`, or the system's roots when `None`.
pub fn client_config(ca_pem: Option<&[u8]>) -> Result<ClientConfig, TlsError> {
    let mut roots = RootCertStore::empty();
    match ca_pem {
        Some(pem) => {
            for cert in certs_from_pem(pem, "CA bundle")? {
                roots.add(cert).map_err(|source| TlsError::BadAnchor {
                    what: "CA bundle".into(),
                    source,
                })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(TlsError::Config("no usable system root certificates".into()));
            }
        }
    }
    Ok(ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
