//! The claim rules of one `jwt` entry of an `AuthenticationConfiguration`: claim validation,
//! claim mappings (username, groups, uid, extra) and user validation, with kube-apiserver's
//! semantics. Built (and every expression compiled) once when the file is loaded.

use std::collections::BTreeMap;

use cel::Value;
use serde_json::Map;

use super::{
    AuthnError,
    cel::{Expression, Input, Variable, claims_value, claims_value_of, string_list, type_name, user_value},
    user::{SYSTEM_AUTHENTICATED, User},
};

#[derive(Debug)]
pub enum ClaimRule {
    /// `claim` + `requiredValue`: the claim must be a string equal to the value.
    Required { claim: String, value: String },
    /// `expression` (+ `message`): must evaluate to true.
    Expression { expr: Expression, message: String },
}

/// `username` and `groups`: a claim with a prefix, or an expression.
#[derive(Debug)]
pub enum Prefixed {
    Claim { claim: String, prefix: String },
    Expression(Expression),
}

#[derive(Debug)]
pub enum Uid {
    Claim(String),
    Expression(Expression),
}

#[derive(Debug)]
pub struct ExtraMapping {
    pub key: String,
    pub expr: Expression,
}

#[derive(Debug)]
pub struct UserRule {
    pub expr: Expression,
    pub message: String,
}

#[derive(Debug)]
pub struct JwtRules {
    pub claim_rules: Vec<ClaimRule>,
    pub username: Prefixed,
    pub groups: Option<Prefixed>,
    pub uid: Option<Uid>,
    pub extra: Vec<ExtraMapping>,
    pub user_rules: Vec<UserRule>,
    /// The claims the expressions read by name, when none reads `claims` as a whole: only
    /// those are converted for CEL.
    claims_read: Option<Vec<String>>,
    /// Some claim rule or mapping is an expression (known at load, asked per token).
    claims_cel: bool,
}

fn claims_err(msg: impl Into<String>) -> AuthnError {
    AuthnError::Claims(msg.into())
}

impl JwtRules {
    pub fn new(
        claim_rules: Vec<ClaimRule>,
        username: Prefixed,
        groups: Option<Prefixed>,
        uid: Option<Uid>,
        extra: Vec<ExtraMapping>,
        user_rules: Vec<UserRule>,
    ) -> JwtRules {
        let mut rules = JwtRules {
            claim_rules,
            username,
            groups,
            uid,
            extra,
            user_rules,
            claims_read: None,
            claims_cel: false,
        };
        rules.claims_read = rules.claims_read();
        rules.claims_cel = !rules.claims_expressions().is_empty();
        rules
    }

    fn claims_expressions(&self) -> Vec<&Expression> {
        let mut all: Vec<&Expression> = Vec::new();
        for r in &self.claim_rules {
            if let ClaimRule::Expression { expr, .. } = r {
                all.push(expr);
            }
        }
        for p in [Some(&self.username), self.groups.as_ref()].into_iter().flatten() {
            if let Prefixed::Expression(e) = p {
                all.push(e);
            }
        }
        if let Some(Uid::Expression(e)) = &self.uid {
            all.push(e);
        }
        all.extend(self.extra.iter().map(|x| &x.expr));
        all
    }

    fn claims_read(&self) -> Option<Vec<String>> {
        let mut keys: Vec<String> = Vec::new();
        for e in self.claims_expressions() {
            for k in e.claims_read()? {
                if !keys.contains(k) {
                    keys.push(k.clone());
                }
            }
        }
        Some(keys)
    }

    /// Whether any expression of these rules runs per token (claims or user).
    pub fn uses_cel(&self) -> bool {
        self.uses_claims_cel() || !self.user_rules.is_empty()
    }

    fn uses_claims_cel(&self) -> bool {
        self.claims_cel
    }

    /// Maps verified claims to a user, or refuses the token.
    pub fn user(&self, claims: &Map<String, serde_json::Value>) -> Result<User, AuthnError> {
        // Claims as CEL sees them, built once per token and only when an expression reads them.
        let cel_claims = self.uses_claims_cel().then(|| {
            let value = match &self.claims_read {
                Some(keys) => claims_value_of(claims, keys),
                None => claims_value(claims),
            };
            Input::new(Variable::Claims, value)
        });
        let eval = |expr: &Expression| -> Result<Value, AuthnError> {
            let Some(input) = cel_claims.as_ref() else {
                return Err(claims_err("no claims to evaluate"));
            };
            expr.eval(input)
                .map_err(|e| claims_err(format!("evaluating '{}': {e}", expr.source)))
        };

        for rule in &self.claim_rules {
            match rule {
                ClaimRule::Required { claim, value } => match claims.get(claim) {
                    Some(serde_json::Value::String(got)) if got == value => {}
                    Some(_) => {
                        return Err(claims_err(format!("required claim {claim} value does not match")));
                    }
                    None => return Err(claims_err(format!("required claim {claim} not present"))),
                },
                ClaimRule::Expression { expr, message } => match eval(expr)? {
                    Value::Bool(true) => {}
                    Value::Bool(false) => {
                        return Err(claims_err(if message.is_empty() {
                            format!("validation expression '{}' failed", expr.source)
                        } else {
                            message.clone()
                        }));
                    }
                    other => {
                        return Err(claims_err(format!(
                            "validation expression '{}' returned {}, not a bool",
                            expr.source,
                            type_name(&other)
                        )));
                    }
                },
            }
        }

        let name = match &self.username {
            Prefixed::Claim { claim, prefix } => {
                let value = match claims.get(claim) {
                    Some(serde_json::Value::String(s)) => s,
                    Some(_) => return Err(claims_err(format!("claim {claim} is not a string"))),
                    None => return Err(claims_err(format!("claim {claim} not present"))),
                };
                if claim == "email" {
                    // A present email_verified must be true; a missing one is accepted.
                    match claims.get("email_verified") {
                        None | Some(serde_json::Value::Bool(true)) => {}
                        _ => return Err(claims_err("email not verified")),
                    }
                }
                format!("{prefix}{value}")
            }
            Prefixed::Expression(expr) => match eval(expr)? {
                Value::String(s) => s.to_string(),
                other => {
                    return Err(claims_err(format!(
                        "username expression must return a string, found {}",
                        type_name(&other)
                    )));
                }
            },
        };
        if name.is_empty() {
            return Err(claims_err("the username is empty"));
        }

        let groups = match &self.groups {
            None => Vec::new(),
            Some(Prefixed::Claim { claim, prefix }) => {
                let raw = match claims.get(claim) {
                    None | Some(serde_json::Value::Null) => Vec::new(),
                    Some(serde_json::Value::String(g)) => vec![g.clone()],
                    Some(serde_json::Value::Array(items)) => items
                        .iter()
                        .map(|i| match i {
                            serde_json::Value::String(g) => Ok(g.clone()),
                            _ => Err(claims_err(format!("claim {claim} holds a non-string"))),
                        })
                        .collect::<Result<_, _>>()?,
                    Some(_) => return Err(claims_err(format!("claim {claim} is not a string or a list"))),
                };
                raw.into_iter().map(|g| format!("{prefix}{g}")).collect()
            }
            Some(Prefixed::Expression(expr)) => {
                string_list(&eval(expr)?).map_err(|e| claims_err(format!("groups: {e}")))?
            }
        };

        let uid = match &self.uid {
            None => String::new(),
            Some(Uid::Claim(claim)) => match claims.get(claim) {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(_) => return Err(claims_err(format!("claim {claim} is not a string"))),
                None => return Err(claims_err(format!("claim {claim} not present"))),
            },
            Some(Uid::Expression(expr)) => match eval(expr)? {
                Value::String(s) => s.to_string(),
                other => {
                    return Err(claims_err(format!(
                        "uid expression must return a string, found {}",
                        type_name(&other)
                    )));
                }
            },
        };

        let mut extra = BTreeMap::new();
        for m in &self.extra {
            let values =
                string_list(&eval(&m.expr)?).map_err(|e| claims_err(format!("extra {}: {e}", m.key)))?;
            if !values.is_empty() {
                extra.insert(m.key.clone(), values);
            }
        }

        let mut user = User {
            name,
            uid,
            groups,
            extra,
        };
        if !self.user_rules.is_empty() {
            // As kube-apiserver: the user as mapped, before `system:authenticated` is added.
            let input = Input::new(Variable::User, user_value(&user));
            for rule in &self.user_rules {
                match rule.expr.eval(&input) {
                    Ok(Value::Bool(true)) => {}
                    Ok(Value::Bool(false)) => {
                        return Err(claims_err(if rule.message.is_empty() {
                            format!("validation expression '{}' failed", rule.expr.source)
                        } else {
                            rule.message.clone()
                        }));
                    }
                    Ok(other) => {
                        return Err(claims_err(format!(
                            "user validation expression '{}' returned {}, not a bool",
                            rule.expr.source,
                            type_name(&other)
                        )));
                    }
                    Err(e) => return Err(claims_err(format!("evaluating '{}': {e}", rule.expr.source))),
                }
            }
        }

        // The proxy's own rule on top of kube's: reserved names never come from an identity
        // provider, whatever the file says (a `system:masters` group would reach every cluster
        // with the proxy's credentials).
        if user.name.starts_with("system:") {
            return Err(claims_err("user names starting with system: are reserved"));
        }
        let mut seen = std::collections::HashSet::with_capacity(user.groups.len());
        let mut groups = Vec::with_capacity(user.groups.len() + 1);
        for g in std::mem::take(&mut user.groups) {
            if !g.starts_with("system:") && seen.insert(g.clone()) {
                groups.push(g);
            }
        }
        groups.push(SYSTEM_AUTHENTICATED.to_string());
        user.groups = groups;
        Ok(user)
    }
}
