//! The front half of token verification on any string: header checks, key choice, signature
//! check against a fixed public JWKS (RSA with and without kid, EC, and an `oct` key that must
//! never be used), then the registered-claim checks and claim mapping on the payload.

use std::sync::LazyLock;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, jwk::JwkSet};
use kube_oidc_proxy::authn::{ClaimMapping, jws, keys::KeySet};

static KEYS: LazyLock<KeySet> = LazyLock::new(|| {
    let set: JwkSet = serde_json::from_str(include_str!("../jwks.json")).expect("jwks.json");
    KeySet::from_jwks(&set)
});

static MAPPING: LazyLock<ClaimMapping> = LazyLock::new(|| ClaimMapping {
    username_claim: "email".into(),
    username_prefix: "oidc:".into(),
    groups_claim: "groups".into(),
    groups_prefix: "oidc:".into(),
    required_claims: vec![("tenant".into(), "blue".into())],
});

const ALGS: [Algorithm; 5] = [
    Algorithm::RS256,
    Algorithm::ES256,
    Algorithm::PS256,
    Algorithm::RS512,
    Algorithm::ES384,
];

pub fn run(data: &[u8]) {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(compact) = jws::parse(token, &ALGS) else {
        return;
    };
    // No signature made by the fuzzer can verify against these public keys.
    assert!(
        jws::verify(&KEYS, &compact).is_err(),
        "a token verified against keys whose private halves nobody has"
    );
    // The claims half, on the (unverified) payload the fuzzer wrote.
    let payload = compact.message.split_once('.').map(|(_, p)| p).unwrap_or("");
    let Ok(json) = URL_SAFE_NO_PAD.decode(payload) else {
        return;
    };
    let Ok(claims) = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&json) else {
        return;
    };
    for now in [0, 1_800_000_000, u64::MAX] {
        let _ = jws::check_registered_claims(&claims, "https://issuer.example", &["kube"], now);
    }
    if let Ok(user) = MAPPING.user(&claims) {
        assert!(user.name.starts_with("oidc:"));
    }
}
