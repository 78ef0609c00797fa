//! Self-tests for the fake PKI and OIDC issuer: the fakes must be right
//! before anything is measured against them. In the main repo this file sits
//! next to `support/` and the `#[path]` attribute goes away.

mod support;

use jsonwebtoken::{Algorithm, DecodingKey, Validation, jwk::JwkSet};
use serde_json::{Value, json};
use support::client::{Conn, get};
use support::issuer::{Issuer, KeyKind, issuer};
use support::pki::{Ca, subject_cn_and_orgs};

const ALPN_BOTH: &[&[u8]] = &[b"h2", b"http/1.1"];

async fn fetch_json(iss: &Issuer, path: &str) -> (http::HeaderMap, Value) {
    let tls = iss.ca().client_config();
    let (status, headers, body) = get(iss.addr(), tls, path, &[]).await;
    assert_eq!(status, 200, "GET {path}");
    (headers, serde_json::from_slice(&body).expect("json"))
}

/// Verify `token` the way a correct verifier does: key from the served JWKS
/// by kid, algorithm pinned to the key's, iss and aud checked.
async fn verify(iss: &Issuer, token: &str) -> jsonwebtoken::errors::Result<Value> {
    let (_, jwks) = fetch_json(iss, "/keys").await;
    let jwks: JwkSet = serde_json::from_value(jwks).expect("jwks shape");
    let header = jsonwebtoken::decode_header(token)?;
    let kid = header.kid.unwrap_or_default();
    let Some(jwk) = jwks.find(&kid) else {
        return Err(jsonwebtoken::errors::ErrorKind::InvalidKeyFormat.into());
    };
    let alg = match jwk.algorithm {
        jsonwebtoken::jwk::AlgorithmParameters::RSA(_) => Algorithm::RS256,
        _ => Algorithm::ES256,
    };
    let mut validation = Validation::new(alg);
    validation.set_audience(&[iss.client_id()]);
    validation.set_issuer(&[iss.url()]);
    let key = DecodingKey::from_jwk(jwk)?;
    Ok(jsonwebtoken::decode::<Value>(token, &key, &validation)?.claims)
}

#[tokio::test]
async fn pki_server_and_client_certs() {
    let ca = Ca::new("test-ca");
    let client = ca.issue_client("proxy", &["system:masters", "ops"]);
    let der = &client.cert_chain()[0];
    let (cn, orgs) = subject_cn_and_orgs(der).expect("parse subject");
    assert_eq!(cn.as_deref(), Some("proxy"));
    assert_eq!(orgs, ["system:masters", "ops"]);

    let dir = support::TempDir::new("pki-test");
    let (cert, key) = ca.issue_server(&["localhost"]).write_to(dir.path(), "srv");
    assert!(
        std::fs::read_to_string(cert)
            .unwrap()
            .contains("BEGIN CERTIFICATE")
    );
    assert!(std::fs::read_to_string(key).unwrap().contains("PRIVATE KEY"));
}

#[tokio::test]
async fn issuer_serves_discovery_and_jwks_over_h1_and_h2() {
    let iss = issuer().client_id("kop").jwks_max_age(Some(60)).run().await;
    assert!(iss.url().starts_with("https://127.0.0.1:") && !iss.url().ends_with('/'));
    let (_, disco) = fetch_json(&iss, "/.well-known/openid-configuration").await;
    assert_eq!(disco["issuer"], json!(iss.url()));
    assert_eq!(disco["jwks_uri"], json!(format!("{}/keys", iss.url())));
    assert_eq!(disco["id_token_signing_alg_values_supported"], json!(["RS256"]));
    let (headers, jwks) = fetch_json(&iss, "/keys").await;
    assert_eq!(headers["cache-control"], "public, max-age=60");
    assert_eq!(jwks["keys"][0]["kid"], json!(iss.current_kid()));

    // Same over h2, counted too.
    let mut conn = Conn::connect(iss.addr(), iss.ca().client_config_alpn(ALPN_BOTH))
        .await
        .unwrap();
    assert!(conn.is_h2());
    let resp = conn.get("/keys", &[]).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(iss.jwks_fetches(), 2);
    assert_eq!(iss.discovery_fetches(), 1);

    // The CA file verifies the server (what the proxy will be given).
    let pem = std::fs::read_to_string(iss.ca_file()).unwrap();
    assert_eq!(pem, iss.ca_pem());
}

#[tokio::test]
async fn issuer_discovery_override_path_and_failures() {
    let iss = issuer()
        .path("/realms/test")
        .discovery_issuer_override(Some("https://elsewhere.example".into()))
        .run()
        .await;
    assert!(iss.url().ends_with("/realms/test"));
    let (_, disco) = fetch_json(&iss, "/realms/test/.well-known/openid-configuration").await;
    assert_eq!(disco["issuer"], "https://elsewhere.example");
    assert_eq!(disco["jwks_uri"], json!(format!("{}/keys", iss.url())));

    iss.set_jwks_status(503);
    let tls = iss.ca().client_config();
    let (status, _, _) = get(iss.addr(), tls.clone(), "/realms/test/keys", &[]).await;
    assert_eq!(status, 503);
    iss.set_jwks_status(200);
    iss.set_discovery_status(500);
    let disco_path = "/realms/test/.well-known/openid-configuration";
    let (status, _, _) = get(iss.addr(), tls.clone(), disco_path, &[]).await;
    assert_eq!(status, 500);
    assert_eq!(iss.jwks_fetches(), 1);
    assert_eq!(iss.discovery_fetches(), 2);
}

#[tokio::test]
async fn tokens_verify_with_jsonwebtoken_rsa_and_ec() {
    for kind in [KeyKind::Rsa2048, KeyKind::EcP256] {
        let iss = issuer().key_kind(kind).run().await;
        let token = iss
            .token()
            .sub("bob")
            .email("bob@example.com", Some(true))
            .groups(&["dev", "ops"])
            .claim("extra", json!(1))
            .sign();
        let claims = verify(&iss, &token).await.expect("valid token verifies");
        assert_eq!(claims["sub"], "bob");
        assert_eq!(claims["aud"], "kube");
        assert_eq!(claims["groups"], json!(["dev", "ops"]));
        assert_eq!(claims["email_verified"], true);

        let expired = iss.token().exp_in(-120).sign();
        assert!(verify(&iss, &expired).await.is_err(), "{kind:?} expired");
        let wrong_aud = iss.token().aud_list(&["other"]).sign();
        assert!(verify(&iss, &wrong_aud).await.is_err(), "{kind:?} aud");
        let no_kid = iss.token().kid(None).sign();
        assert!(jsonwebtoken::decode_header(&no_kid).unwrap().kid.is_none());
    }
}

#[tokio::test]
async fn hostile_tokens_are_what_they_claim() {
    let iss = issuer().run().await;
    let none = iss.token().sign_alg_none();
    assert!(none.ends_with('.'));
    assert!(verify(&iss, &none).await.is_err());

    // The confusion token is a genuine HS256 MAC under the public key PEM...
    // ...which a verifier that trusts the header's alg would accept.
    let hs = iss.token().sign_hs256_with_public_key();
    let mut v = Validation::new(Algorithm::HS256);
    v.set_audience(&["kube"]);
    let hmac = DecodingKey::from_secret(iss.public_key_pem().as_bytes()).unwrap();
    assert!(jsonwebtoken::decode::<Value>(&hs, &hmac, &v).is_ok());
    assert!(verify(&iss, &hs).await.is_err());

    let foreign = iss.token().sign_with_foreign_key();
    let header = jsonwebtoken::decode_header(&foreign).unwrap();
    assert_eq!(header.kid, Some(iss.current_kid()));
    assert!(verify(&iss, &foreign).await.is_err());

    let tampered = iss.token().sign_tampered();
    let claims: Value = jsonwebtoken::dangerous::insecure_decode(&tampered)
        .unwrap()
        .claims;
    assert_eq!(claims["sub"], "admin");
    assert!(verify(&iss, &tampered).await.is_err());
}

#[tokio::test]
async fn issuer_key_rotation() {
    let iss = issuer().key_kind(KeyKind::EcP256).run().await;
    let old = iss.token().sign();
    let first = iss.current_kid();
    iss.rotate();
    assert_eq!(iss.published_kids(), [first.clone(), iss.current_kid()]);
    let new = iss.token().sign();
    assert!(verify(&iss, &old).await.is_ok() && verify(&iss, &new).await.is_ok());
    iss.drop_old_keys();
    assert!(verify(&iss, &old).await.is_err() && verify(&iss, &new).await.is_ok());

    iss.rotate_unpublished();
    let pending = iss.token().sign();
    assert!(!iss.published_kids().contains(&iss.current_kid()));
    assert!(verify(&iss, &pending).await.is_err());
    iss.publish_pending();
    assert!(verify(&iss, &pending).await.is_ok());
}
