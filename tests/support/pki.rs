//! A throwaway PKI: one CA per test, ECDSA P-256 leaves, and the rustls
//! configs that go with them.
//!
//! Keys are P-256 because generating them is instant; RSA is only used where
//! a test is about RSA (the issuer's RS256 signing key).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The crypto provider every config here is built with. Never the process
/// default: the proxy under test may or may not have installed one.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A certificate authority that can issue server and client certificates.
pub struct Ca {
    issuer: rcgen::Issuer<'static, KeyPair>,
    cert_pem: String,
    cert_der: CertificateDer<'static>,
}

/// A leaf certificate and its private key, both PEM (key is PKCS#8).
#[derive(Clone, Debug)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let key = KeyPair::generate().expect("generate CA key");
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).expect("self-sign CA");
        Ca {
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    pub fn cert_pem(&self) -> String {
        self.cert_pem.clone()
    }

    pub fn cert_der(&self) -> CertificateDer<'static> {
        self.cert_der.clone()
    }

    /// A root store holding only this CA.
    pub fn roots(&self) -> Arc<rustls::RootCertStore> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.cert_der()).expect("add CA to root store");
        Arc::new(roots)
    }

    /// A server certificate for `sans`; entries that parse as IP addresses
    /// become IP SANs, the rest DNS SANs. The first SAN is also the CN.
    pub fn issue_server(&self, sans: &[&str]) -> Issued {
        let names: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("valid SANs");
        params.distinguished_name = rcgen::DistinguishedName::new();
        if let Some(first) = sans.first() {
            params.distinguished_name.push(DnType::CommonName, *first);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(params)
    }

    /// A client certificate with subject CN=`cn`, O=each of `orgs` (the
    /// Kubernetes user name and groups).
    ///
    /// rcgen keeps one value per attribute type, so a second organisation is
    /// written through a custom attribute with the same OID (2.5.4.10);
    /// more than two organisations cannot be expressed and panic.
    pub fn issue_client(&self, cn: &str, orgs: &[&str]) -> Issued {
        assert!(orgs.len() <= 2, "issue_client supports at most 2 orgs");
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, cn);
        if let Some(o) = orgs.first() {
            params.distinguished_name.push(DnType::OrganizationName, *o);
        }
        if let Some(o) = orgs.get(1) {
            let org_oid = DnType::CustomDnType(vec![2, 5, 4, 10]);
            params.distinguished_name.push(org_oid, *o);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params)
    }

    fn sign(&self, mut params: CertificateParams) -> Issued {
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().expect("generate leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign leaf");
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// A client config that trusts only this CA, with no ALPN.
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        self.client_config_alpn(&[])
    }

    /// A client config that trusts only this CA and offers `alpn`.
    pub fn client_config_alpn(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        let mut cfg = client_builder()
            .with_root_certificates(self.roots())
            .with_no_client_auth();
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(cfg)
    }

    /// A client config that trusts this CA and presents `client` (mTLS).
    pub fn client_config_with_cert(&self, client: &Issued, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        let mut cfg = client_builder()
            .with_root_certificates(self.roots())
            .with_client_auth_cert(client.cert_chain(), client.key_der())
            .expect("client cert and key match");
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(cfg)
    }
}

fn client_builder() -> rustls::ConfigBuilder<rustls::ClientConfig, rustls::WantsVerifier> {
    rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("provider supports default versions")
}

impl Issued {
    pub fn cert_chain(&self) -> Vec<CertificateDer<'static>> {
        CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .expect("parse cert PEM")
    }

    pub fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).expect("parse key PEM")
    }

    /// A server config presenting this certificate, no client auth.
    pub fn server_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ServerConfig> {
        self.server_config_client_roots(alpn, None)
    }

    /// A server config that requires a client certificate chaining to
    /// `client_ca`; clients without one fail the handshake.
    pub fn server_config_mtls(&self, alpn: &[&[u8]], client_ca: &Ca) -> Arc<rustls::ServerConfig> {
        self.server_config_client_roots(alpn, Some(client_ca.roots()))
    }

    /// As `server_config_mtls`, from a root store (`None`: no client auth).
    pub fn server_config_client_roots(
        &self,
        alpn: &[&[u8]],
        client_roots: Option<Arc<rustls::RootCertStore>>,
    ) -> Arc<rustls::ServerConfig> {
        self.server_config_client_auth(alpn, client_roots, true)
    }

    /// As [`Ca::server_config_client_roots`]; with `required` false a client certificate is
    /// asked for but a client without one is served too.
    pub fn server_config_client_auth(
        &self,
        alpn: &[&[u8]],
        client_roots: Option<Arc<rustls::RootCertStore>>,
        required: bool,
    ) -> Arc<rustls::ServerConfig> {
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("provider supports default versions");
        let builder = match client_roots {
            None => builder.with_no_client_auth(),
            Some(roots) => {
                let mut verifier =
                    rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider());
                if !required {
                    verifier = verifier.allow_unauthenticated();
                }
                let verifier = verifier.build().expect("client verifier");
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut cfg = builder
            .with_single_cert(self.cert_chain(), self.key_der())
            .expect("server cert and key match");
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(cfg)
    }

    /// Write `{stem}.crt` and `{stem}.key` into `dir`; returns (cert, key).
    pub fn write_to(&self, dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{stem}.crt"));
        let key = dir.join(format!("{stem}.key"));
        std::fs::write(&cert, &self.cert_pem).expect("write cert");
        std::fs::write(&key, &self.key_pem).expect("write key");
        (cert, key)
    }
}

/// The subject CN and O values of a DER certificate.
///
/// A hand-rolled walk over the few DER structures on the way to the subject,
/// because no X.509 parser is among the project's dependencies. It returns
/// `None` for anything it does not understand; good enough for certs rcgen
/// made.
pub fn subject_cn_and_orgs(cert_der: &[u8]) -> Option<(Option<String>, Vec<String>)> {
    let (_, cert, _) = tlv(cert_der)?;
    let (_, tbs, _) = tlv(cert)?;
    let mut rest = tbs;
    let (tag, _, after) = tlv(rest)?;
    if tag == 0xA0 {
        rest = after; // explicit [0] version
    }
    // serial, signature algorithm, issuer, validity; then the subject
    for _ in 0..4 {
        rest = tlv(rest)?.2;
    }
    let (_, mut rdns, _) = tlv(rest)?;
    let (mut cn, mut orgs) = (None, Vec::new());
    while !rdns.is_empty() {
        let (_, set, next) = tlv(rdns)?;
        rdns = next;
        let (_, attr, _) = tlv(set)?;
        let (_, oid, value) = tlv(attr)?;
        let (_, text, _) = tlv(value)?;
        let text = String::from_utf8_lossy(text).into_owned();
        match oid {
            [0x55, 0x04, 0x03] => cn = Some(text),
            [0x55, 0x04, 0x0a] => orgs.push(text),
            _ => {}
        }
    }
    Some((cn, orgs))
}

/// Split one DER TLV off the front: (tag, contents, rest).
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, input) = input.split_first()?;
    let (&first, mut input) = input.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || input.len() < n {
            return None;
        }
        let len = input[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        input = &input[n..];
        len
    };
    if input.len() < len {
        return None;
    }
    Some((tag, &input[..len], &input[len..]))
}
