//! The message of a 403, worded exactly as kube-apiserver words it: `forbiddenMessage` and
//! `Forbidden` in `k8s.io/apiserver/pkg/endpoints/handlers/responsewriters/errors.go`, wrapped
//! by `apierrors.NewForbidden`. The Status details are `{group: api_group, kind: resource,
//! name}` of the same [`RequestInfo`].

use std::fmt::Write as _;

use super::request_info::RequestInfo;

/// The `message` of the Forbidden Status for `user` denied `info`.
pub fn forbidden_message(user: &str, info: &RequestInfo) -> String {
    let detail = sanitize(&denial(user, info));
    let mut out = forbidden_head(&info.resource, &info.api_group, &info.name);
    out.push_str(&detail);
    out
}

/// The start of `apierrors.NewForbidden`'s message: `resource[.group] ["name"] is forbidden: `,
/// with GroupResource.String() = "resource[.group]"; `forbidden: ` when there is no resource.
pub fn forbidden_head(resource: &str, group: &str, name: &str) -> String {
    let mut out = String::with_capacity(resource.len() + group.len() + name.len() + 64);
    if group.is_empty() && resource.is_empty() {
        out.push_str("forbidden: ");
        return out;
    }
    out.push_str(resource);
    if !group.is_empty() {
        out.push('.');
        out.push_str(group);
    }
    if !name.is_empty() {
        out.push(' ');
        out.push_str(&go_quote(name));
    }
    out.push_str(" is forbidden: ");
    out
}

/// `forbiddenMessage(attributes)`.
fn denial(user: &str, info: &RequestInfo) -> String {
    let user = go_quote(user);
    if !info.is_resource_request {
        return format!("User {user} cannot {} path {}", info.verb, go_quote(&info.path));
    }
    let resource = if info.subresource.is_empty() {
        go_quote(&info.resource)
    } else {
        go_quote(&format!("{}/{}", info.resource, info.subresource))
    };
    let group = go_quote(&info.api_group);
    if info.namespace.is_empty() {
        format!(
            "User {user} cannot {} resource {resource} in API group {group} at the cluster scope",
            info.verb
        )
    } else {
        let ns = go_quote(&info.namespace);
        format!(
            "User {user} cannot {} resource {resource} in API group {group} in the namespace {ns}",
            info.verb
        )
    }
}

/// kube's `sanitizer`: keep error text from looking like HTML.
fn sanitize(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Go's `%q` (`strconv.Quote`). Go keeps the runes `unicode.IsPrint` accepts; std has no such
/// table, so we escape controls, non-ASCII spaces, private-use and the common format runes,
/// which covers what user names and paths carry in practice.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if is_go_printable(c) => out.push(c),
            c if (c as u32) < 0x10000 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08x}", c as u32);
            }
        }
    }
    out.push('"');
    out
}

fn is_go_printable(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    let cp = c as u32;
    let format_rune = matches!(
        cp,
        0xad | 0x600..=0x605 | 0x61c | 0x6dd | 0x70f | 0x180e | 0x200b..=0x200f | 0x202a..=0x202e
            | 0x2060..=0x2064 | 0x2066..=0x206f | 0xfeff | 0xfff9..=0xfffb
    );
    let private_use = matches!(cp, 0xe000..=0xf8ff | 0xf0000..=0xffffd | 0x100000..=0x10fffd);
    !(c.is_control() || c.is_whitespace() || format_rune || private_use)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(url: &str, method: &str) -> RequestInfo {
        let (path, query) = url.split_once('?').map_or((url, None), |(p, q)| (p, Some(q)));
        match RequestInfo::parse(method, path, query, false) {
            Ok(i) => i,
            Err(e) => panic!("{url}: {e}"),
        }
    }

    #[test]
    fn messages_match_kube_apiserver() {
        #[rustfmt::skip]
        let cases: &[(&str, &str, &str, &str)] = &[
            ("ann", "GET", "/api/v1/namespaces/dev/pods", r#"pods is forbidden: User "ann" cannot list resource "pods" in API group "" in the namespace "dev""#),
            ("ann", "GET", "/api/v1/nodes", r#"nodes is forbidden: User "ann" cannot list resource "nodes" in API group "" at the cluster scope"#),
            ("ann", "POST", "/api/v1/namespaces/dev/pods/x/exec", r#"pods "x" is forbidden: User "ann" cannot create resource "pods/exec" in API group "" in the namespace "dev""#),
            ("ann", "GET", "/metrics", r#"forbidden: User "ann" cannot get path "/metrics""#),
            ("ann@example.com", "DELETE", "/apis/apps/v1/namespaces/dev/deployments/web", r#"deployments.apps "web" is forbidden: User "ann@example.com" cannot delete resource "deployments" in API group "apps" in the namespace "dev""#),
            ("ann", "GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles/admin", r#"clusterroles.rbac.authorization.k8s.io "admin" is forbidden: User "ann" cannot get resource "clusterroles" in API group "rbac.authorization.k8s.io" at the cluster scope"#),
            ("ann", "GET", "/api/v1/namespaces/dev", r#"namespaces "dev" is forbidden: User "ann" cannot get resource "namespaces" in API group "" in the namespace "dev""#),
            ("ann", "GET", "/api/v1/watch/namespaces/dev/secrets", r#"secrets is forbidden: User "ann" cannot watch resource "secrets" in API group "" in the namespace "dev""#),
            ("ann", "GET", "/api/v1/namespaces/dev/pods?fieldSelector=metadata.name%3Dweb&watch=1", r#"pods "web" is forbidden: User "ann" cannot watch resource "pods" in API group "" in the namespace "dev""#),
            ("ann", "DELETE", "/api/v1/namespaces/dev/pods", r#"pods is forbidden: User "ann" cannot deletecollection resource "pods" in API group "" in the namespace "dev""#),
            // Quotes are escaped by %q, then <, > and & are HTML-escaped in the detail part
            // only, not in the prefix built by NewForbidden.
            ("a\"<b>&", "GET", "/api/v1/namespaces/dev/pods/<x>", r#"pods "<x>" is forbidden: User "a\"&lt;b&gt;&amp;" cannot get resource "pods" in API group "" in the namespace "dev""#),
            ("ann", "GET", "/logs/a%3Cb", r#"forbidden: User "ann" cannot get path "/logs/a&lt;b""#),
        ];
        for &(user, method, url, want) in cases {
            assert_eq!(
                forbidden_message(user, &info(url, method)),
                want,
                "{method} {url}"
            );
        }
    }

    #[test]
    fn go_quote_table() {
        #[rustfmt::skip]
        let cases: &[(&str, &str)] = &[
            ("", r#""""#),
            ("ann", r#""ann""#),
            ("a\"b", r#""a\"b""#),
            ("a\\b", r#""a\\b""#),
            ("tab\there", r#""tab\there""#),
            ("nl\n", r#""nl\n""#),
            ("\u{0}\u{1b}\u{7f}", r#""\x00\x1b\x7f""#),
            ("é漢字", "\"é漢字\""),
            ("nb\u{a0}sp", r#""nb\u00a0sp""#),
            ("zw\u{200b}", r#""zw\u200b""#),
            ("\u{85}", r#""\u0085""#),
            ("\u{f0000}", r#""\U000f0000""#),
        ];
        for &(input, want) in cases {
            assert_eq!(go_quote(input), want, "{input:?}");
        }
    }
}
