//! ID tokens for the fake issuer: valid ones with adjustable claims, the
//! hostile forms a verifier must reject, and the signing keys.
//!
//! Signing is done with aws-lc-rs directly rather than jsonwebtoken, so the
//! fake controls every header byte and so that the self-tests, which verify
//! with jsonwebtoken, actually check two independent implementations.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::hmac;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self as sig, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Map, Value, json};

use super::issuer::{KeyKind, Shared};

/// Claims and header for one token. Start from `Issuer::token()`, which fills
/// in iss, aud, sub="ann", iat=now, nbf=now-5, exp=now+600 and groups=[].
#[derive(Clone)]
pub struct TokenBuilder {
    shared: Arc<Shared>,
    claims: Map<String, Value>,
    /// `None`: use the signing key's kid. `Some(None)`: no kid header.
    kid: Option<Option<String>>,
    /// Extra JOSE header fields (`crit`, `b64`, ...).
    header_extra: Map<String, Value>,
}

fn now() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    i64::try_from(secs).expect("time fits i64")
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

impl TokenBuilder {
    pub(super) fn new(shared: Arc<Shared>) -> TokenBuilder {
        let now = now();
        let claims = json!({
            "iss": shared.url,
            "aud": shared.client_id,
            "sub": "ann",
            "iat": now,
            "nbf": now - 5,
            "exp": now + 600,
            "groups": [],
        });
        let Value::Object(claims) = claims else {
            unreachable!("json! object literal")
        };
        TokenBuilder {
            shared,
            claims,
            kid: None,
            header_extra: Map::new(),
        }
    }

    // The spec'd name; it is the JWT claim, not arithmetic.
    #[allow(clippy::should_implement_trait)]
    pub fn sub(self, sub: &str) -> Self {
        self.claim("sub", json!(sub))
    }
    /// Sets `email`, and `email_verified` when `verified` is `Some`.
    pub fn email(self, email: &str, verified: Option<bool>) -> Self {
        let this = self.claim("email", json!(email));
        match verified {
            Some(v) => this.claim("email_verified", json!(v)),
            None => this.without("email_verified"),
        }
    }
    pub fn groups(self, groups: &[&str]) -> Self {
        self.claim("groups", json!(groups))
    }
    /// `groups` as any JSON value, e.g. a bare string or a number.
    pub fn groups_value(self, value: Value) -> Self {
        self.claim("groups", value)
    }
    pub fn aud(self, aud: &str) -> Self {
        self.claim("aud", json!(aud))
    }
    pub fn aud_list(self, auds: &[&str]) -> Self {
        self.claim("aud", json!(auds))
    }
    pub fn iss(self, iss: &str) -> Self {
        self.claim("iss", json!(iss))
    }
    /// exp = now + secs (negative for an expired token).
    pub fn exp_in(self, secs: i64) -> Self {
        self.claim("exp", json!(now() + secs))
    }
    pub fn nbf_in(self, secs: i64) -> Self {
        self.claim("nbf", json!(now() + secs))
    }
    pub fn iat_in(self, secs: i64) -> Self {
        self.claim("iat", json!(now() + secs))
    }
    pub fn claim(mut self, key: &str, value: Value) -> Self {
        self.claims.insert(key.into(), value);
        self
    }
    pub fn without(mut self, key: &str) -> Self {
        self.claims.remove(key);
        self
    }
    /// Override the header kid; `None` leaves the header without one.
    /// Adds a field to the JOSE header (signed like the rest).
    pub fn header_field(mut self, name: &str, value: Value) -> Self {
        self.header_extra.insert(name.into(), value);
        self
    }

    pub fn kid(mut self, kid: Option<&str>) -> Self {
        self.kid = Some(kid.map(str::to_owned));
        self
    }

    /// The claims as they will be signed.
    pub fn claims(&self) -> Value {
        Value::Object(self.claims.clone())
    }

    /// A valid token signed by the issuer's current signing key.
    pub fn sign(&self) -> String {
        let key = self.shared.signing_key();
        self.sign_with(&key, &key.kid)
    }

    /// `{"alg":"none"}` and an empty signature: "header.payload.".
    pub fn sign_alg_none(&self) -> String {
        let header = self.header("none", &self.shared.signing_key().kid);
        format!("{}.{}.", b64(header.as_bytes()), self.payload())
    }

    /// HS256 keyed with the PEM of the current public key (SPKI, as served
    /// by most JWKS-to-PEM tools): the classic algorithm-confusion attack.
    /// The kid is the real one, so a verifier that picks the key by kid and
    /// the algorithm from the header would accept it.
    pub fn sign_hs256_with_public_key(&self) -> String {
        let key = self.shared.signing_key();
        let input = format!(
            "{}.{}",
            b64(self.header("HS256", &key.kid).as_bytes()),
            self.payload()
        );
        let mac_key = hmac::Key::new(hmac::HMAC_SHA256, key.public_pem.as_bytes());
        let mac = hmac::sign(&mac_key, input.as_bytes());
        format!("{input}.{}", b64(mac.as_ref()))
    }

    /// Signed by a fresh key that is not in the JWKS, under the kid that is.
    pub fn sign_with_foreign_key(&self) -> String {
        let kid = self.shared.signing_key().kid.clone();
        let foreign = SigningKey::generate_with_kid(self.shared.kind(), kid.clone());
        self.sign_with(&foreign, &kid)
    }

    /// A validly signed token whose payload is then swapped for one with
    /// `sub` = "admin"; header and signature are the original ones.
    pub fn sign_tampered(&self) -> String {
        let token = self.sign();
        let mut claims = self.claims.clone();
        claims.insert("sub".into(), json!("admin"));
        let payload = b64(&serde_json::to_vec(&claims).expect("claims serialize"));
        let mut parts = token.split('.');
        let (header, _, signature) = (parts.next(), parts.next(), parts.next());
        format!(
            "{}.{payload}.{}",
            header.expect("header"),
            signature.expect("signature")
        )
    }

    fn sign_with(&self, key: &SigningKey, default_kid: &str) -> String {
        let header = self.header(key.alg, default_kid);
        let input = format!("{}.{}", b64(header.as_bytes()), self.payload());
        let signature = key.sign(input.as_bytes());
        format!("{input}.{}", b64(&signature))
    }

    fn header(&self, alg: &str, default_kid: &str) -> String {
        let kid = match &self.kid {
            None => Some(default_kid.to_owned()),
            Some(over) => over.clone(),
        };
        let mut header = json!({"alg": alg, "typ": "JWT"});
        if let Some(kid) = kid {
            header["kid"] = json!(kid);
        }
        for (k, v) in &self.header_extra {
            header[k.as_str()] = v.clone();
        }
        header.to_string()
    }

    fn payload(&self) -> String {
        b64(&serde_json::to_vec(&self.claims).expect("claims serialize"))
    }
}

/// One signing key with its public forms precomputed.
pub(super) struct SigningKey {
    pub(super) kid: String,
    pub(super) alg: &'static str,
    material: Material,
    pub(super) jwk: Value,
    /// SubjectPublicKeyInfo PEM, the bytes an HS256 confusion attack uses.
    pub(super) public_pem: String,
}

enum Material {
    Rsa(sig::RsaKeyPair),
    Ec(sig::EcdsaKeyPair),
}

impl SigningKey {
    /// A fresh key with a process-unique kid, so two issuers in one test
    /// never publish the same kid by accident.
    pub(super) fn generate(kind: KeyKind) -> SigningKey {
        static SEQ: AtomicUsize = AtomicUsize::new(1);
        let kid = format!("fake-key-{}", SEQ.fetch_add(1, Ordering::Relaxed));
        Self::generate_with_kid(kind, kid)
    }

    pub(super) fn generate_with_kid(kind: KeyKind, kid: String) -> SigningKey {
        let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
        match kind {
            KeyKind::Rsa2048 => {
                let kp =
                    sig::RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("generate RSA key");
                let public = kp.public_key();
                let parts = sig::RsaPublicKeyComponents::<Vec<u8>>::from(public);
                let spki = public.as_der().expect("RSA SPKI");
                SigningKey {
                    jwk: json!({"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
                                "n": b64(&parts.n), "e": b64(&parts.e)}),
                    public_pem: pem("PUBLIC KEY", spki.as_ref()),
                    kid,
                    alg: "RS256",
                    material: Material::Rsa(kp),
                }
            }
            KeyKind::EcP256 => {
                let kp = sig::EcdsaKeyPair::generate(&sig::ECDSA_P256_SHA256_FIXED_SIGNING)
                    .expect("generate P-256 key");
                // Uncompressed point: 0x04 || x (32 bytes) || y (32 bytes).
                let point = kp.public_key().as_ref().to_vec();
                let spki = kp.public_key().as_der().expect("EC SPKI");
                SigningKey {
                    jwk: json!({"kty": "EC", "use": "sig", "alg": "ES256", "kid": kid,
                                "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..65])}),
                    public_pem: pem("PUBLIC KEY", spki.as_ref()),
                    kid,
                    alg: "ES256",
                    material: Material::Ec(kp),
                }
            }
        }
    }

    /// The JWS signature over `msg` (PKCS#1 v1.5 for RS256, r||s for ES256).
    pub(super) fn sign(&self, msg: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match &self.material {
            Material::Rsa(kp) => {
                let mut out = vec![0; kp.public_modulus_len()];
                kp.sign(&sig::RSA_PKCS1_SHA256, &rng, msg, &mut out)
                    .expect("RSA sign");
                out
            }
            Material::Ec(kp) => kp.sign(&rng, msg).expect("EC sign").as_ref().to_vec(),
        }
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ascii"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}
