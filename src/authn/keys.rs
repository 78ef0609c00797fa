//! The issuer's verification keys, as an immutable set indexed by `kid`.

use std::collections::HashMap;

use jsonwebtoken::{
    Algorithm, DecodingKey,
    jwk::{AlgorithmParameters, JwkSet, PublicKeyUse},
};

/// One usable key: what to verify with and which algorithms it may verify.
pub struct VerifyKey {
    pub key: DecodingKey,
    /// The JWK's own `alg` when it states one; tokens must then use exactly that.
    pub alg: Option<Algorithm>,
}

impl VerifyKey {
    pub fn accepts(&self, alg: Algorithm) -> bool {
        self.key.family() == alg.family() && self.alg.is_none_or(|a| a == alg)
    }
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
            let Ok(key) = DecodingKey::from_jwk(jwk) else {
                continue;
            };
            let alg = jwk
                .common
                .key_algorithm
                .and_then(|a| a.to_string().parse::<Algorithm>().ok());
            let vk = VerifyKey { key, alg };
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
