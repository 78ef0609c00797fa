//! The issuer's verification keys, as an immutable set indexed by `kid`. Each key is parsed
//! into aws-lc's form once per key fetch, for every algorithm it may verify: verifying a new
//! token then costs the signature check alone, not a rebuild of the key (about 5 µs for RSA).

use std::collections::HashMap;

use aws_lc_rs::signature::{self as sig, ParsedPublicKey, UnparsedPublicKey, VerificationAlgorithm};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{
    Algorithm,
    jwk::{AlgorithmParameters, EllipticCurve, JwkSet, PublicKeyUse},
};

/// One usable key, ready to verify with each algorithm it may verify.
pub struct VerifyKey {
    /// The JWK's own `alg` when it states one; tokens must then use exactly that.
    pub alg: Option<Algorithm>,
    parsed: Vec<(Algorithm, ParsedPublicKey)>,
}

impl VerifyKey {
    pub fn accepts(&self, alg: Algorithm) -> bool {
        self.alg.is_none_or(|a| a == alg) && self.parsed.iter().any(|(a, _)| *a == alg)
    }

    /// Checks a JWS signature over `message` (`header.payload`, as sent) with `alg`.
    pub fn verifies(&self, alg: Algorithm, message: &[u8], signature: &[u8]) -> bool {
        self.alg.is_none_or(|a| a == alg)
            && self
                .parsed
                .iter()
                .any(|(a, k)| *a == alg && k.verify_sig(message, signature).is_ok())
    }
}

const RSA_ALGS: [(Algorithm, &sig::RsaParameters); 6] = [
    (Algorithm::RS256, &sig::RSA_PKCS1_2048_8192_SHA256),
    (Algorithm::RS384, &sig::RSA_PKCS1_2048_8192_SHA384),
    (Algorithm::RS512, &sig::RSA_PKCS1_2048_8192_SHA512),
    (Algorithm::PS256, &sig::RSA_PSS_2048_8192_SHA256),
    (Algorithm::PS384, &sig::RSA_PSS_2048_8192_SHA384),
    (Algorithm::PS512, &sig::RSA_PSS_2048_8192_SHA512),
];

/// The key in aws-lc's form for every algorithm it can verify; empty when it is unusable
/// (malformed, an RSA modulus under 2048 bits, a curve other than P-256 and P-384).
fn parse_jwk(params: &AlgorithmParameters) -> Vec<(Algorithm, ParsedPublicKey)> {
    let parse = |alg: Algorithm, v: &'static dyn VerificationAlgorithm, der: &[u8]| {
        UnparsedPublicKey::new(v, der).parse().ok().map(|k| (alg, k))
    };
    match params {
        AlgorithmParameters::RSA(rsa) => {
            let (Ok(n), Ok(e)) = (URL_SAFE_NO_PAD.decode(&rsa.n), URL_SAFE_NO_PAD.decode(&rsa.e)) else {
                return Vec::new();
            };
            // aws-lc checks the size when verifying; refusing here keeps such a key out of the
            // set (and out of `accepts`) altogether.
            let n_bytes = &n[n.iter().take_while(|b| **b == 0).count()..];
            let bits =
                (n_bytes.len() * 8).saturating_sub(n_bytes.first().map_or(8, |b| b.leading_zeros() as usize));
            if !(2048..=8192).contains(&bits) {
                return Vec::new();
            }
            let der = rsa_public_key_der(&n, &e);
            RSA_ALGS
                .iter()
                .filter_map(|(alg, v)| parse(*alg, *v, &der))
                .collect()
        }
        AlgorithmParameters::EllipticCurve(ec) => {
            let (alg, v, len): (_, &'static dyn VerificationAlgorithm, _) = match ec.curve {
                EllipticCurve::P256 => (Algorithm::ES256, &sig::ECDSA_P256_SHA256_FIXED, 32),
                EllipticCurve::P384 => (Algorithm::ES384, &sig::ECDSA_P384_SHA384_FIXED, 48),
                _ => return Vec::new(),
            };
            let (Ok(x), Ok(y)) = (URL_SAFE_NO_PAD.decode(&ec.x), URL_SAFE_NO_PAD.decode(&ec.y)) else {
                return Vec::new();
            };
            if x.len() != len || y.len() != len {
                return Vec::new();
            }
            // An uncompressed point: 0x04 || x || y.
            let mut point = Vec::with_capacity(1 + 2 * len);
            point.push(4);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            parse(alg, v, &point).into_iter().collect()
        }
        _ => Vec::new(),
    }
}

/// PKCS#1 `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }` in DER.
fn rsa_public_key_der(n: &[u8], e: &[u8]) -> Vec<u8> {
    fn len(out: &mut Vec<u8>, n: usize) {
        if n < 0x80 {
            out.push(n as u8);
        } else {
            let bytes = n.to_be_bytes();
            let skip = bytes.iter().take_while(|b| **b == 0).count();
            out.push(0x80 | (bytes.len() - skip) as u8);
            out.extend_from_slice(&bytes[skip..]);
        }
    }
    fn uint(out: &mut Vec<u8>, v: &[u8]) {
        let v = &v[v.iter().take_while(|b| **b == 0).count()..];
        // A leading 1 bit would make the INTEGER negative: prefix a zero byte.
        let pad = v.first().is_none_or(|b| b & 0x80 != 0);
        out.push(0x02);
        len(out, v.len() + usize::from(pad));
        if pad {
            out.push(0);
        }
        out.extend_from_slice(v);
    }
    let mut body = Vec::with_capacity(n.len() + e.len() + 16);
    uint(&mut body, n);
    uint(&mut body, e);
    let mut out = Vec::with_capacity(body.len() + 8);
    out.push(0x30);
    len(&mut out, body.len());
    out.extend_from_slice(&body);
    out
}

/// Keys by `kid`; keys published without a `kid` are tried when a token has none.
#[derive(Default)]
pub struct KeySet {
    by_kid: HashMap<String, Vec<VerifyKey>>,
    without_kid: Vec<VerifyKey>,
}

impl KeySet {
    /// Keeps only signature keys of asymmetric families: `oct` keys and encryption keys can never
    /// verify an ID token (that would open the HS256-with-public-key confusion).
    pub fn from_jwks(set: &JwkSet) -> KeySet {
        let mut keys = KeySet::default();
        for jwk in &set.keys {
            if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
                continue;
            }
            if !matches!(
                jwk.algorithm,
                AlgorithmParameters::RSA(_) | AlgorithmParameters::EllipticCurve(_)
            ) {
                continue;
            }
            let parsed = parse_jwk(&jwk.algorithm);
            if parsed.is_empty() {
                continue;
            }
            let alg = jwk
                .common
                .key_algorithm
                .and_then(|a| a.to_string().parse::<Algorithm>().ok());
            let vk = VerifyKey { alg, parsed };
            match &jwk.common.key_id {
                Some(kid) => keys.by_kid.entry(kid.clone()).or_default().push(vk),
                None => keys.without_kid.push(vk),
            }
        }
        keys
    }

    pub fn len(&self) -> usize {
        self.by_kid.values().map(Vec::len).sum::<usize>() + self.without_kid.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn has_kid(&self, kid: &str) -> bool {
        self.by_kid.contains_key(kid)
    }

    /// Candidate keys for a token header. A token with a `kid` must match a published `kid`; one
    /// without may be checked against every key of the right family.
    pub fn candidates<'a>(
        &'a self,
        kid: Option<&'a str>,
        alg: Algorithm,
    ) -> Box<dyn Iterator<Item = &'a VerifyKey> + 'a> {
        match kid {
            Some(kid) => Box::new(
                self.by_kid
                    .get(kid)
                    .into_iter()
                    .flatten()
                    .filter(move |k| k.accepts(alg)),
            ),
            None => Box::new(
                self.without_kid
                    .iter()
                    .chain(self.by_kid.values().flatten())
                    .filter(move |k| k.accepts(alg)),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::{
        rand::SystemRandom,
        rsa::KeySize,
        signature::{
            ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, RSA_PKCS1_SHA256, RSA_PSS_SHA256,
            RsaKeyPair,
        },
    };
    use jsonwebtoken::jwk::{EllipticCurveKeyParameters, EllipticCurveKeyType, RSAKeyParameters, RSAKeyType};

    use super::*;

    /// One DER element: (tag, contents, rest).
    fn der(b: &[u8]) -> (u8, &[u8], &[u8]) {
        let (tag, first) = (b[0], b[1] as usize);
        let (len, start) = if first < 0x80 {
            (first, 2)
        } else {
            let n = first & 0x7f;
            (
                b[2..2 + n].iter().fold(0usize, |a, x| a << 8 | *x as usize),
                2 + n,
            )
        };
        (tag, &b[start..start + len], &b[start + len..])
    }

    fn rsa_jwk() -> (RsaKeyPair, AlgorithmParameters) {
        let pair = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
        let pkcs1 = pair.public_key().as_ref().to_vec();
        let (_, seq, _) = der(&pkcs1);
        let (_, n, rest) = der(seq);
        let (_, e, _) = der(rest);
        // Our encoder rebuilds exactly the DER aws-lc produced from the JWK's n and e.
        assert_eq!(rsa_public_key_der(n, e), pkcs1);
        let params = AlgorithmParameters::RSA(RSAKeyParameters {
            key_type: RSAKeyType::RSA,
            n: URL_SAFE_NO_PAD.encode(n.strip_prefix(&[0]).unwrap_or(n)),
            e: URL_SAFE_NO_PAD.encode(e),
        });
        (pair, params)
    }

    #[test]
    fn rsa_keys_verify_pkcs1_and_pss_signatures_only() {
        let (pair, params) = rsa_jwk();
        let key = VerifyKey {
            alg: None,
            parsed: parse_jwk(&params),
        };
        let algs: Vec<Algorithm> = key.parsed.iter().map(|(a, _)| *a).collect();
        assert_eq!(algs.len(), 6, "{algs:?}");
        assert!(!key.accepts(Algorithm::ES256));
        let rng = SystemRandom::new();
        let msg = b"header.payload";
        let mut sig = vec![0; pair.public_modulus_len()];
        pair.sign(&RSA_PKCS1_SHA256, &rng, msg, &mut sig).unwrap();
        assert!(key.verifies(Algorithm::RS256, msg, &sig));
        assert!(!key.verifies(Algorithm::RS384, msg, &sig), "wrong hash");
        assert!(!key.verifies(Algorithm::PS256, msg, &sig), "wrong padding");
        assert!(
            !key.verifies(Algorithm::RS256, b"header.payloaD", &sig),
            "tampered"
        );
        pair.sign(&RSA_PSS_SHA256, &rng, msg, &mut sig).unwrap();
        assert!(key.verifies(Algorithm::PS256, msg, &sig));
        // A JWK that names its algorithm verifies nothing else.
        let pinned = VerifyKey {
            alg: Some(Algorithm::RS256),
            parsed: parse_jwk(&params),
        };
        assert!(!pinned.accepts(Algorithm::PS256));
        assert!(!pinned.verifies(Algorithm::PS256, msg, &sig));
    }

    #[test]
    fn ec_keys_verify_es256() {
        let rng = SystemRandom::new();
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let point = pair.public_key().as_ref();
        let params = AlgorithmParameters::EllipticCurve(EllipticCurveKeyParameters {
            key_type: EllipticCurveKeyType::EC,
            curve: EllipticCurve::P256,
            x: URL_SAFE_NO_PAD.encode(&point[1..33]),
            y: URL_SAFE_NO_PAD.encode(&point[33..65]),
        });
        let key = VerifyKey {
            alg: None,
            parsed: parse_jwk(&params),
        };
        assert!(
            key.accepts(Algorithm::ES256) && !key.accepts(Algorithm::ES384) && !key.accepts(Algorithm::RS256)
        );
        let sig = pair.sign(&rng, b"h.p").unwrap();
        assert!(key.verifies(Algorithm::ES256, b"h.p", sig.as_ref()));
        assert!(!key.verifies(Algorithm::ES256, b"h.q", sig.as_ref()));
        // The same coordinates labelled P-384 are not a key.
        let AlgorithmParameters::EllipticCurve(mut wrong) = params else {
            unreachable!()
        };
        wrong.curve = EllipticCurve::P384;
        assert!(parse_jwk(&AlgorithmParameters::EllipticCurve(wrong)).is_empty());
    }

    #[test]
    fn unusable_keys_are_dropped() {
        let bad = AlgorithmParameters::RSA(RSAKeyParameters {
            key_type: RSAKeyType::RSA,
            n: "AQAB".into(), // a 17-bit modulus
            e: "AQAB".into(),
        });
        assert!(parse_jwk(&bad).is_empty());
        let not_base64 = AlgorithmParameters::RSA(RSAKeyParameters {
            key_type: RSAKeyType::RSA,
            n: "***".into(),
            e: "AQAB".into(),
        });
        assert!(parse_jwk(&not_base64).is_empty());
    }
}
