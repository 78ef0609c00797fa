//! `kubectl --as`, `--as-group`, `--as-uid`: a client's `Impersonate-*` headers, honoured as
//! kube-apiserver honours them, with the proxy's RBAC deciding. The caller needs `impersonate`
//! on every part of the target: `users` (or `serviceaccounts` in the account's namespace for a
//! `system:serviceaccount:NS:NAME` user), `groups`, `uids` and `userextras/<key>` (the last two
//! in `authentication.k8s.io`). The request is then authorized, logged and audited as the
//! target, which carries `system:authenticated` (and a service account's implied groups).
//!
//! Stricter than kube-apiserver where it was loose: more than one `Impersonate-User`, an empty
//! one, groups, uid or extras without a user, an unknown `Impersonate-*` header, and control
//! characters in a value are refused with 400 and never forwarded.

use std::collections::BTreeMap;

use http::HeaderMap;
use percent_encoding::percent_decode_str;

use crate::authn::User;
use crate::authn::user::SYSTEM_AUTHENTICATED;
use crate::authz::{
    rbac::{Decision, Snapshot},
    request_info::RequestInfo,
};

const USER: &str = "impersonate-user";
const GROUP: &str = "impersonate-group";
const UID: &str = "impersonate-uid";
const EXTRA_PREFIX: &str = "impersonate-extra-";
const SERVICE_ACCOUNT_PREFIX: &str = "system:serviceaccount:";

/// The identity a client asks to act as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requested {
    pub user: String,
    pub groups: Vec<String>,
    pub uid: Option<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

/// Reads the `Impersonate-*` headers: `Ok(None)` without any, `Err` with the reason for a
/// malformed set or for an extra the proxy writes itself (`configured`: `--extra-user-headers`).
pub fn requested(headers: &HeaderMap, configured: &[(String, String)]) -> Result<Option<Requested>, String> {
    let mut users = Vec::new();
    let mut groups = Vec::new();
    let mut uids = Vec::new();
    let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut any = false;
    for (name, value) in headers {
        let name = name.as_str();
        if !name.starts_with("impersonate-") {
            continue;
        }
        any = true;
        let bytes = value.as_bytes();
        if bytes.iter().any(|b| b.is_ascii_control()) {
            return Err(format!("header {name} has a control character"));
        }
        let value = std::str::from_utf8(bytes)
            .map_err(|_| format!("header {name} is not UTF-8"))?
            .to_string();
        match name {
            USER => users.push(value),
            GROUP => groups.push(value),
            UID => uids.push(value),
            _ => match name.strip_prefix(EXTRA_PREFIX) {
                Some(key) if !key.is_empty() => {
                    let key = percent_decode_str(key)
                        .decode_utf8()
                        .map_err(|_| format!("header {name}: the extra key is not UTF-8 once decoded"))?
                        .to_lowercase();
                    extra.entry(key).or_default().push(value);
                }
                _ => return Err(format!("unknown impersonation header {name:?}")),
            },
        }
    }
    if !any {
        return Ok(None);
    }
    let user = match users.as_slice() {
        [] => {
            return Err(
                "requested impersonation of groups, a uid or extra fields without impersonating a user"
                    .into(),
            );
        }
        [one] if one.is_empty() => return Err("Impersonate-User is empty".into()),
        [one] => one.clone(),
        _ => return Err("more than one Impersonate-User header".into()),
    };
    if uids.len() > 1 {
        return Err("more than one Impersonate-Uid header".into());
    }
    let configured_key = |k: &str| configured.iter().any(|(c, _)| c.eq_ignore_ascii_case(k));
    if let Some(key) = extra.keys().find(|k| proxy_sets(k) || configured_key(k)) {
        return Err(format!(
            "the extra {key:?} is set by the proxy and cannot be impersonated"
        ));
    }
    Ok(Some(Requested {
        user,
        groups,
        uid: uids.pop(),
        extra,
    }))
}

/// Extra keys only the proxy writes (besides `--extra-user-headers`): those that name the person
/// behind a `kubectl --as` upstream (`authentication.kubernetes.io/original-*`, and
/// kube-apiserver's own namespace for what authentication established) and the client address
/// of `--extra-user-header-client-ip`. A caller allowed to impersonate any extra could otherwise
/// put a name of its choosing where the cluster's audit log looks for the real person.
fn proxy_sets(key: &str) -> bool {
    key.starts_with("authentication.kubernetes.io/") || key == "remote-client-ip"
}

fn check(api_group: &str, resource: &str, subresource: &str, namespace: &str, name: &str) -> RequestInfo {
    let mut parts = vec![resource.into()];
    if !name.is_empty() {
        parts.push(name.into());
    }
    if !subresource.is_empty() {
        parts.push(subresource.into());
    }
    RequestInfo {
        is_resource_request: true,
        path: String::new(),
        verb: "impersonate".into(),
        api_prefix: if api_group.is_empty() { "api" } else { "apis" }.into(),
        api_group: api_group.into(),
        api_version: "v1".into(),
        namespace: namespace.into(),
        resource: resource.into(),
        subresource: subresource.into(),
        name: name.into(),
        parts,
        ..RequestInfo::default()
    }
}

/// `system:serviceaccount:NS:NAME` as (NS, NAME).
fn service_account(user: &str) -> Option<(&str, &str)> {
    let (ns, name) = user.strip_prefix(SERVICE_ACCOUNT_PREFIX)?.split_once(':')?;
    (!ns.is_empty() && !name.is_empty() && !name.contains(':')).then_some((ns, name))
}

impl Requested {
    /// The `impersonate` checks the caller must pass, in kube-apiserver's order.
    pub fn checks(&self) -> Vec<RequestInfo> {
        let mut out = Vec::new();
        out.push(match service_account(&self.user) {
            Some((ns, name)) => check("", "serviceaccounts", "", ns, name),
            None => check("", "users", "", "", &self.user),
        });
        for g in &self.groups {
            out.push(check("", "groups", "", "", g));
        }
        if let Some(uid) = &self.uid {
            out.push(check("authentication.k8s.io", "uids", "", "", uid));
        }
        for (key, values) in &self.extra {
            for v in values {
                out.push(check("authentication.k8s.io", "userextras", key, "", v));
            }
        }
        out
    }

    /// The first check `caller` fails, if any.
    pub fn denied(&self, caller: &User, snapshot: &Snapshot) -> Option<RequestInfo> {
        self.checks()
            .into_iter()
            .find(|info| snapshot.authorize(&caller.name, &caller.groups, info) == Decision::Deny)
    }

    /// The identity exactly as asked (no implied groups), for a cluster that checks the
    /// impersonation again with the user's own token.
    pub fn as_asked(&self) -> User {
        User {
            name: self.user.clone(),
            uid: self.uid.clone().unwrap_or_default(),
            groups: self.groups.clone(),
            extra: self.extra.clone(),
        }
    }

    /// The user requests are authorized, logged and audited as.
    /// As kube-apiserver's impersonation filter builds it: a service account asked for without
    /// groups gets its two implied groups (asked groups replace them); a named user gets
    /// `system:authenticated` unless it or `system:unauthenticated` was asked for; anonymous
    /// gets `system:unauthenticated`.
    pub fn target(&self) -> User {
        let mut groups = self.groups.clone();
        if let Some((ns, _)) = service_account(&self.user)
            && groups.is_empty()
        {
            groups = vec![
                "system:serviceaccounts".to_string(),
                format!("system:serviceaccounts:{ns}"),
            ];
        }
        const UNAUTHENTICATED: &str = "system:unauthenticated";
        let add = if self.user == "system:anonymous" {
            (!groups.iter().any(|g| g == UNAUTHENTICATED)).then_some(UNAUTHENTICATED)
        } else {
            (!groups
                .iter()
                .any(|g| g == SYSTEM_AUTHENTICATED || g == UNAUTHENTICATED))
            .then_some(SYSTEM_AUTHENTICATED)
        };
        if let Some(g) = add {
            groups.push(g.to_string());
        }
        User {
            name: self.user.clone(),
            uid: self.uid.clone().unwrap_or_default(),
            groups,
            extra: self.extra.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use http::{HeaderName, HeaderValue};

    use super::*;

    /// Without `--extra-user-headers`.
    fn requested(h: &HeaderMap) -> Result<Option<Requested>, String> {
        super::requested(h, &[])
    }
    use crate::authz::rbac::{ClusterRole, ClusterRoleBinding, RbacObjects};

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_bytes(v.as_bytes()).unwrap(),
            );
        }
        h
    }

    #[test]
    fn parses_kubectl_as() {
        let r = requested(&headers(&[
            ("Impersonate-User", "bob"),
            ("Impersonate-Group", "team"),
            ("Impersonate-Group", "ops"),
            ("Impersonate-Uid", "42"),
            ("Impersonate-Extra-Acme.com%2FProject", "p1"),
            ("authorization", "Bearer x"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(r.user, "bob");
        assert_eq!(r.groups, ["team", "ops"]);
        assert_eq!(r.uid.as_deref(), Some("42"));
        assert_eq!(r.extra["acme.com/project"], ["p1"]);
        assert_eq!(requested(&headers(&[("accept", "x")])), Ok(None));
    }

    #[test]
    fn malformed_sets_are_refused() {
        for (pairs, why) in [
            (vec![("Impersonate-Group", "g")], "without impersonating a user"),
            (vec![("Impersonate-User", "")], "empty"),
            (
                vec![("Impersonate-User", "a"), ("Impersonate-User", "b")],
                "more than one",
            ),
            (
                vec![
                    ("Impersonate-User", "a"),
                    ("Impersonate-Uid", "1"),
                    ("Impersonate-Uid", "2"),
                ],
                "more than one",
            ),
            (
                vec![("Impersonate-User", "a"), ("Impersonate-Scopes", "x")],
                "unknown impersonation header",
            ),
            (
                vec![("Impersonate-User", "a"), ("Impersonate-Extra-", "x")],
                "unknown impersonation header",
            ),
            (vec![("Impersonate-User", "a\tb")], "control character"),
            // The extras that name the real person upstream, however the key is spelt.
            (
                vec![
                    ("Impersonate-User", "a"),
                    (
                        "Impersonate-Extra-Authentication.Kubernetes.IO%2Foriginal-username",
                        "x",
                    ),
                ],
                "set by the proxy",
            ),
            (
                vec![
                    ("Impersonate-User", "a"),
                    ("Impersonate-Extra-authentication.kubernetes.io%2fanything", "x"),
                ],
                "set by the proxy",
            ),
            (
                vec![
                    ("Impersonate-User", "a"),
                    ("Impersonate-Extra-Remote-Client-IP", "1.2.3.4"),
                ],
                "set by the proxy",
            ),
        ] {
            let err = requested(&headers(&pairs)).expect_err(why);
            assert!(err.contains(why), "{pairs:?}: {err}");
        }
    }

    #[test]
    fn configured_extra_user_headers_cannot_be_asked_for() {
        let h = headers(&[("Impersonate-User", "a"), ("Impersonate-Extra-Team", "x")]);
        let configured = [("TEAM".to_string(), "platform".to_string())];
        assert!(
            super::requested(&h, &configured)
                .unwrap_err()
                .contains("\"team\"")
        );
        let other = [("other".to_string(), "v".to_string())];
        assert!(matches!(super::requested(&h, &other), Ok(Some(_))));
    }

    #[test]
    fn service_accounts_are_checked_and_grouped_as_kube_apiserver_does() {
        let r = requested(&headers(&[(
            "Impersonate-User",
            "system:serviceaccount:ci:deployer",
        )]))
        .unwrap()
        .unwrap();
        let checks = r.checks();
        assert_eq!(checks[0].resource, "serviceaccounts");
        assert_eq!(checks[0].namespace, "ci");
        assert_eq!(checks[0].name, "deployer");
        let t = r.target();
        assert_eq!(
            t.groups,
            [
                "system:serviceaccounts",
                "system:serviceaccounts:ci",
                "system:authenticated"
            ]
        );
        let anon = requested(&headers(&[("Impersonate-User", "system:anonymous")]))
            .unwrap()
            .unwrap();
        assert_eq!(anon.target().groups, ["system:unauthenticated"]);
        // Groups asked for replace a service account's implied ones, as in kube-apiserver.
        let with_group = requested(&headers(&[
            ("Impersonate-User", "system:serviceaccount:ci:deployer"),
            ("Impersonate-Group", "team"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(with_group.target().groups, ["team", "system:authenticated"]);
        // Asking for system:unauthenticated keeps system:authenticated away.
        let unauth = requested(&headers(&[
            ("Impersonate-User", "bob"),
            ("Impersonate-Group", "system:unauthenticated"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(unauth.target().groups, ["system:unauthenticated"]);
        let authed = requested(&headers(&[
            ("Impersonate-User", "bob"),
            ("Impersonate-Group", "system:authenticated"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(authed.target().groups, ["system:authenticated"]);
    }

    #[test]
    fn every_part_needs_its_own_grant() {
        let rule = |resources: &[&str], names: &[&str], group: &str| serde_json::json!({"apiGroups": [group], "resources": resources, "resourceNames": names, "verbs": ["impersonate"]});
        let role: ClusterRole = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "imp"},
            "rules": [rule(&["users"], &["bob"], ""), rule(&["groups"], &["team"], ""),
                      rule(&["userextras/scopes"], &[], "authentication.k8s.io")]
        }))
        .unwrap();
        let binding: ClusterRoleBinding = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "imp"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "imp"},
            "subjects": [{"kind": "User", "name": "ann"}]
        }))
        .unwrap();
        let snapshot = Snapshot::build(&RbacObjects {
            cluster_roles: vec![role],
            cluster_role_bindings: vec![binding],
            ..RbacObjects::default()
        });
        let ann = User {
            name: "ann".into(),
            ..User::default()
        };
        let dev = User {
            name: "dev".into(),
            ..User::default()
        };
        let ask = |pairs: &[(&str, &str)]| requested(&headers(pairs)).unwrap().unwrap();
        let ok = ask(&[
            ("Impersonate-User", "bob"),
            ("Impersonate-Group", "team"),
            ("Impersonate-Extra-Scopes", "view"),
        ]);
        assert_eq!(ok.denied(&ann, &snapshot), None);
        let denied = ok.denied(&dev, &snapshot).expect("dev may not");
        assert_eq!((denied.resource.as_str(), denied.name.as_str()), ("users", "bob"));
        let other_group = ask(&[
            ("Impersonate-User", "bob"),
            ("Impersonate-Group", "system:masters"),
        ]);
        let denied = other_group.denied(&ann, &snapshot).expect("not that group");
        assert_eq!(
            (denied.resource.as_str(), denied.name.as_str()),
            ("groups", "system:masters")
        );
        let uid = ask(&[("Impersonate-User", "bob"), ("Impersonate-Uid", "1")]);
        let denied = uid.denied(&ann, &snapshot).expect("no uid grant");
        assert_eq!(
            (denied.api_group.as_str(), denied.resource.as_str()),
            ("authentication.k8s.io", "uids")
        );
    }
}
