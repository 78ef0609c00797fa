//! `--authentication-config` on any text: the file loads or fails with errors naming the file,
//! never panics (YAML, validation and CEL compilation alike), and what loads maps a fixed set of
//! claims without panicking, never to a `system:` user or group.

use std::path::Path;

use kube_oidc_proxy::config::authentication;

pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match authentication::parse(Path::new("fuzz-authn.yaml"), text) {
        Ok(cfg) => {
            let claims = serde_json::json!({
                "iss": "https://issuer.example", "aud": "kube", "sub": "system:admin",
                "email": "a@example.com", "email_verified": true, "exp": 1800000000,
                "groups": ["system:masters", "dev", ""], "team": "platform", "n": 1.5,
            });
            let serde_json::Value::Object(claims) = claims else {
                return;
            };
            for issuer in &cfg.jwt {
                if let Ok(user) = issuer.rules.user(&claims) {
                    assert!(!user.name.starts_with("system:"), "{}", user.name);
                    assert!(
                        user.groups
                            .iter()
                            .all(|g| g == "system:authenticated" || !g.starts_with("system:")),
                        "{:?}",
                        user.groups
                    );
                }
            }
        }
        Err(e) => {
            for err in &e.0 {
                assert!(err.to_string().starts_with("fuzz-authn.yaml"), "{err}");
            }
        }
    }
}
