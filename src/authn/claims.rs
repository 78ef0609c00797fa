//! Turning verified claims into a [`User`], with kube-apiserver's `--oidc-*` semantics and our
//! fixes (required claims enforced, no `system:` names from an identity provider).

use serde_json::{Map, Value};

use super::{
    AuthnError,
    user::{SYSTEM_AUTHENTICATED, User},
};

/// How claims map to a user; from the `--oidc-*` flags.
#[derive(Debug, Clone, Default)]
pub struct ClaimMapping {
    pub username_claim: String,
    /// Empty means no prefix (`-` on the command line is turned into empty).
    pub username_prefix: String,
    pub groups_claim: String,
    pub groups_prefix: String,
    pub required_claims: Vec<(String, String)>,
}

impl ClaimMapping {
    /// Maps the verified claims of one token. Any failure means the token is refused.
    pub fn user(&self, claims: &Map<String, Value>) -> Result<User, AuthnError> {
        for (key, want) in &self.required_claims {
            match claims.get(key) {
                Some(Value::String(got)) if got == want => {}
                _ => {
                    return Err(AuthnError::Claims(format!(
                        "required claim {key} missing or different"
                    )));
                }
            }
        }

        let raw_name = match claims.get(&self.username_claim) {
            Some(Value::String(s)) if !s.is_empty() => s,
            _ => {
                return Err(AuthnError::Claims(format!(
                    "claim {} missing or not a string",
                    self.username_claim
                )));
            }
        };
        if self.username_claim == "email" {
            // kube-apiserver: a present email_verified must be true; a missing one is accepted.
            match claims.get("email_verified") {
                None | Some(Value::Bool(true)) => {}
                _ => return Err(AuthnError::Claims("email not verified".into())),
            }
        }
        let name = format!("{}{}", self.username_prefix, raw_name);
        if name.starts_with("system:") {
            return Err(AuthnError::Claims(
                "user names starting with system: are reserved".into(),
            ));
        }

        let mut groups = Vec::new();
        if !self.groups_claim.is_empty() {
            // A set beside the list: a token with many groups costs linear time, not quadratic.
            let mut seen = std::collections::HashSet::new();
            let mut push = |g: &str| {
                let g = format!("{}{}", self.groups_prefix, g);
                // Reserved names are never taken from an identity provider (system:masters!).
                if !g.starts_with("system:") && seen.insert(g.clone()) {
                    groups.push(g);
                }
            };
            match claims.get(&self.groups_claim) {
                None | Some(Value::Null) => {}
                Some(Value::String(g)) => push(g),
                Some(Value::Array(items)) => {
                    for item in items {
                        match item {
                            Value::String(g) => push(g),
                            _ => return Err(AuthnError::Claims("groups claim holds a non-string".into())),
                        }
                    }
                }
                Some(_) => return Err(AuthnError::Claims("groups claim is not a string or list".into())),
            }
        }
        groups.push(SYSTEM_AUTHENTICATED.to_string());

        let uid = match claims.get("sub") {
            Some(Value::String(s)) => s.clone(),
            _ => String::new(),
        };
        Ok(User {
            name,
            uid,
            groups,
            extra: Default::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn mapping() -> ClaimMapping {
        ClaimMapping {
            username_claim: "sub".into(),
            groups_claim: "groups".into(),
            ..Default::default()
        }
    }

    fn claims(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!("test claims are objects"),
        }
    }

    #[test]
    fn plain_mapping_adds_system_authenticated() {
        let u = mapping()
            .user(&claims(json!({"sub": "ann", "groups": ["k8s:devops", "dev"]})))
            .unwrap();
        assert_eq!(u.name, "ann");
        assert_eq!(u.uid, "ann");
        assert_eq!(u.groups, ["k8s:devops", "dev", "system:authenticated"]);
        assert_eq!(u.token_groups().collect::<Vec<_>>(), ["k8s:devops", "dev"]);
    }

    #[test]
    fn prefixes_and_string_groups() {
        let m = ClaimMapping {
            username_prefix: "oidc:".into(),
            groups_prefix: "kc:".into(),
            ..mapping()
        };
        let u = m.user(&claims(json!({"sub": "ann", "groups": "ops"}))).unwrap();
        assert_eq!(u.name, "oidc:ann");
        assert_eq!(u.groups, ["kc:ops", "system:authenticated"]);
    }

    #[test]
    fn reserved_names_never_come_from_claims() {
        let u = mapping()
            .user(&claims(
                json!({"sub": "ann", "groups": ["system:masters", "ops", "system:nodes"]}),
            ))
            .unwrap();
        assert_eq!(u.groups, ["ops", "system:authenticated"]);
        assert!(mapping().user(&claims(json!({"sub": "system:admin"}))).is_err());
        // With a prefix the IdP name is no longer reserved.
        let m = ClaimMapping {
            groups_prefix: "kc:".into(),
            ..mapping()
        };
        let u = m
            .user(&claims(json!({"sub": "ann", "groups": ["system:masters"]})))
            .unwrap();
        assert_eq!(u.groups, ["kc:system:masters", "system:authenticated"]);
    }

    #[test]
    fn required_claims_are_enforced() {
        let m = ClaimMapping {
            required_claims: vec![("tenant".into(), "a".into())],
            ..mapping()
        };
        assert!(m.user(&claims(json!({"sub": "ann", "tenant": "a"}))).is_ok());
        assert!(m.user(&claims(json!({"sub": "ann", "tenant": "b"}))).is_err());
        assert!(m.user(&claims(json!({"sub": "ann"}))).is_err());
        assert!(m.user(&claims(json!({"sub": "ann", "tenant": ["a"]}))).is_err());
    }

    #[test]
    fn email_must_be_verified_when_it_is_the_user_name() {
        let m = ClaimMapping {
            username_claim: "email".into(),
            ..mapping()
        };
        let ok = m
            .user(&claims(
                json!({"sub": "1", "email": "a@x", "email_verified": true}),
            ))
            .unwrap();
        assert_eq!(ok.name, "a@x");
        assert!(
            m.user(&claims(
                json!({"sub": "1", "email": "a@x", "email_verified": false})
            ))
            .is_err()
        );
        assert!(
            m.user(&claims(
                json!({"sub": "1", "email": "a@x", "email_verified": "true"})
            ))
            .is_err()
        );
        assert!(m.user(&claims(json!({"sub": "1", "email": "a@x"}))).is_ok());
    }

    #[test]
    fn bad_shapes_are_refused() {
        assert!(mapping().user(&claims(json!({"groups": []}))).is_err());
        assert!(mapping().user(&claims(json!({"sub": 5}))).is_err());
        assert!(mapping().user(&claims(json!({"sub": ""}))).is_err());
        assert!(
            mapping()
                .user(&claims(json!({"sub": "a", "groups": [1]})))
                .is_err()
        );
        assert!(
            mapping()
                .user(&claims(json!({"sub": "a", "groups": {"x": 1}})))
                .is_err()
        );
        let u = mapping()
            .user(&claims(json!({"sub": "a", "groups": null})))
            .unwrap();
        assert_eq!(u.groups, ["system:authenticated"]);
    }
}
