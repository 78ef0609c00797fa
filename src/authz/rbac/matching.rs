//! Does one rule allow one request: `RuleAllows` of kube's RBAC authorizer
//! (`plugin/pkg/auth/authorizer/rbac/rbac.go`) and the matchers of
//! `pkg/apis/rbac/v1/evaluation_helpers.go`, without allocating.

use super::types::PolicyRule;
use crate::authz::request_info::RequestInfo;

/// True when `rule` allows the request. Where the rule comes from (which binding, which
/// namespace) is the snapshot's business, not this function's.
pub fn rule_allows(rule: &PolicyRule, info: &RequestInfo) -> bool {
    if info.is_resource_request {
        verb_matches(rule, &info.verb)
            && api_group_matches(rule, &info.api_group)
            && resource_matches(rule, &info.resource, &info.subresource)
            && resource_name_matches(rule, &info.name)
    } else {
        verb_matches(rule, &info.verb) && non_resource_url_matches(rule, &info.path)
    }
}

pub fn verb_matches(rule: &PolicyRule, verb: &str) -> bool {
    rule.verbs.iter().any(|v| v == "*" || v == verb)
}

pub fn api_group_matches(rule: &PolicyRule, group: &str) -> bool {
    rule.api_groups.iter().any(|g| g == "*" || g == group)
}

/// `*` matches everything (subresources too); otherwise the rule names `resource` or
/// `resource/subresource` exactly, or `*/subresource`. There is no `resource/*` form in
/// Kubernetes: such a rule only matches a subresource literally named `*`.
pub fn resource_matches(rule: &PolicyRule, resource: &str, subresource: &str) -> bool {
    rule.resources.iter().any(|r| {
        if r == "*" {
            return true;
        }
        if subresource.is_empty() {
            return r == resource;
        }
        let combined = r.strip_prefix(resource).and_then(|rest| rest.strip_prefix('/'));
        combined == Some(subresource) || r.strip_prefix("*/") == Some(subresource)
    })
}

/// No names means all names; names never match a request without one (list, create, ...).
pub fn resource_name_matches(rule: &PolicyRule, name: &str) -> bool {
    rule.resource_names.is_empty() || rule.resource_names.iter().any(|n| n == name)
}

/// `*`, an exact path, or a prefix ending in `*` (all trailing stars trimmed, as Go's TrimRight).
pub fn non_resource_url_matches(rule: &PolicyRule, path: &str) -> bool {
    rule.non_resource_urls
        .iter()
        .any(|u| u == "*" || u == path || (u.ends_with('*') && path.starts_with(u.trim_end_matches('*'))))
}

#[cfg(test)]
mod tests {
    use super::*;

    use PolicyRule as R;
    fn rule(verbs: &[&str], groups: &[&str], resources: &[&str], names: &[&str]) -> PolicyRule {
        R::resource(verbs, groups, resources, names)
    }

    fn url_rule(verbs: &[&str], urls: &[&str]) -> PolicyRule {
        R::urls(verbs, urls)
    }

    fn req(method: &str, url: &str) -> RequestInfo {
        let (path, query) = url.split_once('?').map_or((url, None), |(p, q)| (p, Some(q)));
        match RequestInfo::parse(method, path, query, false) {
            Ok(i) => i,
            Err(e) => panic!("{url}: {e}"),
        }
    }

    #[test]
    fn resource_rules() {
        let pods = "/api/v1/namespaces/dev/pods";
        #[rustfmt::skip]
        let cases: &[(PolicyRule, &str, &str, bool)] = &[
            (rule(&["get", "list"], &[""], &["pods"], &[]), "GET", pods, true),
            (rule(&["get"], &[""], &["pods"], &[]), "GET", pods, false),
            (rule(&["*"], &[""], &["pods"], &[]), "DELETE", pods, true),
            (rule(&["list"], &["*"], &["pods"], &[]), "GET", pods, true),
            (rule(&["list"], &["apps"], &["pods"], &[]), "GET", pods, false),
            (rule(&["list"], &[], &["pods"], &[]), "GET", pods, false),
            (rule(&["list"], &[""], &[], &[]), "GET", pods, false),
            (rule(&[], &[""], &["pods"], &[]), "GET", pods, false),
            (rule(&["list"], &[""], &["*"], &[]), "GET", pods, true),
            (rule(&["list"], &[""], &["Pods"], &[]), "GET", pods, false),
            (rule(&["LIST"], &[""], &["pods"], &[]), "GET", pods, false),
            // subresources
            (rule(&["get"], &[""], &["pods"], &[]), "GET", "/api/v1/namespaces/dev/pods/x/log", false),
            (rule(&["get"], &[""], &["pods/log"], &[]), "GET", "/api/v1/namespaces/dev/pods/x/log", true),
            (rule(&["get"], &[""], &["pods/log"], &[]), "GET", "/api/v1/namespaces/dev/pods/x", false),
            (rule(&["get"], &[""], &["*/log"], &[]), "GET", "/api/v1/namespaces/dev/pods/x/log", true),
            (rule(&["get"], &[""], &["*/log"], &[]), "GET", "/api/v1/namespaces/dev/pods/x", false),
            (rule(&["get"], &[""], &["*/status"], &[]), "GET", "/api/v1/namespaces/dev/pods/x/log", false),
            (rule(&["get"], &[""], &["*"], &[]), "GET", "/api/v1/namespaces/dev/pods/x/log", true),
            (rule(&["get"], &[""], &["pods/*"], &[]), "GET", "/api/v1/namespaces/dev/pods/x/log", false),
            (rule(&["get"], &[""], &["pods/*"], &[]), "GET", "/api/v1/namespaces/dev/pods/x/*", true),
            (rule(&["get"], &[""], &["pod/log"], &[]), "GET", "/api/v1/namespaces/dev/pods/x/log", false),
            (rule(&["get"], &[""], &["podslog"], &[]), "GET", "/api/v1/namespaces/dev/pods/x/log", false),
            (rule(&["get"], &[""], &["pods/logs"], &[]), "GET", "/api/v1/namespaces/dev/pods/x/log", false),
            (rule(&["create"], &[""], &["pods/exec"], &[]), "POST", "/api/v1/namespaces/dev/pods/x/exec", true),
            // resource names
            (rule(&["get"], &[""], &["pods"], &["x"]), "GET", "/api/v1/namespaces/dev/pods/x", true),
            (rule(&["get"], &[""], &["pods"], &["y", "x"]), "GET", "/api/v1/namespaces/dev/pods/x", true),
            (rule(&["get"], &[""], &["pods"], &["y"]), "GET", "/api/v1/namespaces/dev/pods/x", false),
            (rule(&["list"], &[""], &["pods"], &["x"]), "GET", pods, false),
            (rule(&["create"], &[""], &["pods"], &["x"]), "POST", pods, false),
            (rule(&["deletecollection"], &[""], &["pods"], &["x"]), "DELETE", pods, false),
            (rule(&["list"], &[""], &["pods"], &["x"]), "GET", "/api/v1/namespaces/dev/pods?fieldSelector=metadata.name%3Dx", true),
            (rule(&["watch"], &[""], &["pods"], &["x"]), "GET", "/api/v1/namespaces/dev/pods?watch=1&fieldSelector=metadata.name%3Dx", true),
            (rule(&["get"], &[""], &["pods/log"], &["x"]), "GET", "/api/v1/namespaces/dev/pods/x/log", true),
            (rule(&["get"], &[""], &["*"], &["*"]), "GET", "/api/v1/namespaces/dev/pods/x", false),
            // groups
            (rule(&["get"], &["apps"], &["deployments"], &[]), "GET", "/apis/apps/v1/namespaces/dev/deployments/w", true),
            (rule(&["get"], &[""], &["deployments"], &[]), "GET", "/apis/apps/v1/namespaces/dev/deployments/w", false),
            (rule(&["get"], &["apps"], &["deployments/scale"], &[]), "GET", "/apis/apps/v1/namespaces/dev/deployments/w/scale", true),
            // a resource rule never matches a non-resource request
            (rule(&["*"], &["*"], &["*"], &[]), "GET", "/metrics", false),
            // unknown method: verb "" only matches "*"
            (rule(&["*"], &[""], &["pods"], &[]), "OPTIONS", "/api/v1/namespaces/dev/pods/x", true),
            (rule(&["get"], &[""], &["pods"], &[]), "OPTIONS", "/api/v1/namespaces/dev/pods/x", false),
        ];
        for (i, (rule, method, url, want)) in cases.iter().enumerate() {
            assert_eq!(
                rule_allows(rule, &req(method, url)),
                *want,
                "case {i}: {method} {url} {rule:?}"
            );
        }
    }

    #[test]
    fn non_resource_rules() {
        type UrlCase<'a> = (&'a [&'a str], &'a [&'a str], &'a str, &'a str, bool);
        #[rustfmt::skip]
        let cases: &[UrlCase] = &[
            (&["get"], &["/metrics"], "GET", "/metrics", true),
            (&["get"], &["/metrics"], "POST", "/metrics", false),
            (&["get"], &["/metrics"], "GET", "/metrics/x", false),
            (&["get"], &["/metrics"], "GET", "/metric", false),
            (&["get"], &["/api/*"], "GET", "/api/v1", true),
            (&["get"], &["/api/*"], "GET", "/api/", true),
            (&["get"], &["/api/*"], "GET", "/api", false),
            (&["get"], &["/api*"], "GET", "/apis", true),
            (&["get"], &["/api**"], "GET", "/apis", true),
            (&["get"], &["*"], "GET", "/anything", true),
            (&["*"], &["/healthz"], "HEAD", "/healthz", true),
            (&["get"], &["/healthz/*"], "GET", "/healthz", false),
            (&["get"], &["/a*b"], "GET", "/a*b", true),
            (&["get"], &["/a*b"], "GET", "/axb", false),
            (&["get"], &[], "GET", "/", false),
            (&["get"], &["/"], "GET", "/", true),
            // a URL rule never matches a resource request
            (&["*"], &["*"], "GET", "/api/v1/pods", false),
        ];
        for (verbs, urls, method, url, want) in cases {
            let r = url_rule(verbs, urls);
            assert_eq!(
                rule_allows(&r, &req(method, url)),
                *want,
                "{urls:?} {method} {url}"
            );
        }
    }
}
