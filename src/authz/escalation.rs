//! kube-apiserver's RBAC escalation rule, evaluated by the proxy for the real user: a set of
//! rules may be granted (written into a Role, or bound by a binding) only by someone whose own
//! rules cover every one of them. Same algorithm as `Covers` in
//! `pkg/registry/rbac/validation/policy_comparator.go`: break each granted rule into atomic
//! (group, resource, verb, name) or (URL, verb) pieces and look for one owner rule covering each.
//!
//! kube-apiserver runs this inside its role and binding storage with the requester's identity;
//! through the proxy the requester it sees is the proxy, whose rights are far wider, so the
//! proxy has to ask the question itself before forwarding.

use std::fmt::Write as _;

use super::forbidden::go_quote;
use super::rbac::PolicyRule;

/// The servant rules, broken down, that no owner rule covers (empty: no escalation).
pub fn uncovered(owner: &[&PolicyRule], servant: &[PolicyRule]) -> Vec<PolicyRule> {
    servant
        .iter()
        .flat_map(breakdown)
        .filter(|atom| !owner.iter().any(|o| rule_covers(o, atom)))
        .collect()
}

/// `{verbs: *, apiGroups: *, resources: *}` and `{verbs: *, nonResourceURLs: *}`: what a user
/// must hold to set a ClusterRole's `aggregationRule`, which can gather anything.
pub fn full_authority() -> Vec<PolicyRule> {
    let star = || vec!["*".to_string()];
    vec![
        PolicyRule {
            verbs: star(),
            api_groups: star(),
            resources: star(),
            ..PolicyRule::default()
        },
        PolicyRule {
            verbs: star(),
            non_resource_urls: star(),
            ..PolicyRule::default()
        },
    ]
}

/// One rule per (group, resource, verb[, name]) and per (URL, verb).
fn breakdown(rule: &PolicyRule) -> Vec<PolicyRule> {
    let one = |s: &String| vec![s.clone()];
    let mut out = Vec::new();
    for group in &rule.api_groups {
        for resource in &rule.resources {
            for verb in &rule.verbs {
                let atom = PolicyRule {
                    verbs: one(verb),
                    api_groups: one(group),
                    resources: one(resource),
                    ..PolicyRule::default()
                };
                if rule.resource_names.is_empty() {
                    out.push(atom);
                } else {
                    out.extend(rule.resource_names.iter().map(|n| PolicyRule {
                        resource_names: one(n),
                        ..atom.clone()
                    }));
                }
            }
        }
    }
    for url in &rule.non_resource_urls {
        for verb in &rule.verbs {
            out.push(PolicyRule {
                verbs: one(verb),
                non_resource_urls: one(url),
                ..PolicyRule::default()
            });
        }
    }
    out
}

fn has(set: &[String], s: &str) -> bool {
    set.iter().any(|x| x == s)
}

fn has_all(set: &[String], wanted: &[String]) -> bool {
    wanted.iter().all(|w| has(set, w))
}

/// `*`, every resource named, or for a subresource `*/<sub>`.
fn resources_cover(set: &[String], wanted: &[String]) -> bool {
    if has(set, "*") || has_all(set, wanted) {
        return true;
    }
    wanted.iter().all(|path| {
        has(set, path)
            || path
                .split_once('/')
                .is_some_and(|(_, sub)| has(set, &format!("*/{sub}")))
    })
}

fn urls_cover(set: &[String], wanted: &[String]) -> bool {
    wanted.iter().all(|path| {
        set.iter().any(|owner| {
            owner == path || (owner.ends_with('*') && path.starts_with(owner.trim_end_matches('*')))
        })
    })
}

/// Does `owner` (any shape) cover `atom` (at most one verb, resource, name or URL)?
fn rule_covers(owner: &PolicyRule, atom: &PolicyRule) -> bool {
    let verbs = has(&owner.verbs, "*") || has_all(&owner.verbs, &atom.verbs);
    let groups = has(&owner.api_groups, "*") || has_all(&owner.api_groups, &atom.api_groups);
    let resources = resources_cover(&owner.resources, &atom.resources);
    let urls = urls_cover(&owner.non_resource_urls, &atom.non_resource_urls);
    let names = if atom.resource_names.is_empty() {
        owner.resource_names.is_empty()
    } else {
        owner.resource_names.is_empty() || has_all(&owner.resource_names, &atom.resource_names)
    };
    verbs && groups && resources && names && urls
}

/// kube-apiserver's wording of an escalation refusal (`ConfirmNoEscalation`), with the missing
/// rules in `CompactString` form, one per line, sorted.
pub fn escalation_message(user: &str, groups: &[String], missing: &[PolicyRule]) -> String {
    let mut lines: Vec<String> = missing.iter().map(compact_string).collect();
    lines.sort();
    lines.dedup();
    let groups: Vec<String> = groups.iter().map(|g| go_quote(g)).collect();
    format!(
        "user {} (groups=[{}]) is attempting to grant RBAC permissions not currently held:\n{}",
        go_quote(user),
        groups.join(" "),
        lines.join("\n")
    )
}

/// `rbacv1helpers.CompactString`: `{APIGroups:["apps"], Resources:["deployments"], Verbs:["get"]}`.
fn compact_string(r: &PolicyRule) -> String {
    let mut s = String::from("{");
    let mut field = |name: &str, v: &[String]| {
        if v.is_empty() {
            return;
        }
        if s.len() > 1 {
            s.push_str(", ");
        }
        let quoted: Vec<String> = v.iter().map(|x| go_quote(x)).collect();
        let _ = write!(s, "{name}:[{}]", quoted.join(", "));
    };
    field("APIGroups", &r.api_groups);
    field("Resources", &r.resources);
    field("ResourceNames", &r.resource_names);
    field("NonResourceURLs", &r.non_resource_urls);
    field("Verbs", &r.verbs);
    s.push('}');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(verbs: &[&str], groups: &[&str], resources: &[&str], names: &[&str]) -> PolicyRule {
        PolicyRule::resource(verbs, groups, resources, names)
    }

    fn urls(verbs: &[&str], urls: &[&str]) -> PolicyRule {
        PolicyRule::urls(verbs, urls)
    }

    fn covers(owner: &[PolicyRule], servant: &[PolicyRule]) -> bool {
        let owner: Vec<&PolicyRule> = owner.iter().collect();
        uncovered(&owner, servant).is_empty()
    }

    /// Cases after `TestCoversExactMatch` and friends in kube's policy_comparator_test.go.
    #[test]
    fn coverage_follows_kubernetes() {
        let admin = full_authority();
        #[rustfmt::skip]
        let cases: Vec<(&str, Vec<PolicyRule>, Vec<PolicyRule>, bool)> = vec![
            ("exact", vec![rule(&["get"], &["v1"], &["builds"], &[])],
                vec![rule(&["get"], &["v1"], &["builds"], &[])], true),
            ("split across owner rules", vec![rule(&["get"], &["v1"], &["builds"], &[]), rule(&["delete"], &["v1"], &["builds"], &[])],
                vec![rule(&["get", "delete"], &["v1"], &["builds"], &[])], true),
            ("verb star", vec![rule(&["*"], &["v1"], &["builds"], &[])],
                vec![rule(&["get", "delete"], &["v1"], &["builds"], &[])], true),
            ("group star", vec![rule(&["get"], &["*"], &["builds"], &[])],
                vec![rule(&["get"], &["apps", ""], &["builds"], &[])], true),
            ("resource star covers subresources", vec![rule(&["get"], &[""], &["*"], &[])],
                vec![rule(&["get"], &[""], &["pods/exec"], &[])], true),
            ("*/sub covers one subresource", vec![rule(&["get"], &[""], &["*/status"], &[])],
                vec![rule(&["get"], &[""], &["pods/status"], &[])], true),
            ("*/sub does not cover the resource", vec![rule(&["get"], &[""], &["*/status"], &[])],
                vec![rule(&["get"], &[""], &["pods"], &[])], false),
            ("resource does not cover its subresource", vec![rule(&["create"], &[""], &["pods"], &[])],
                vec![rule(&["create"], &[""], &["pods/exec"], &[])], false),
            ("missing verb", vec![rule(&["get"], &["v1"], &["builds"], &[])],
                vec![rule(&["get", "delete"], &["v1"], &["builds"], &[])], false),
            ("granting a star needs a star", vec![rule(&["get", "list", "watch", "create", "update", "patch", "delete"], &[""], &["pods"], &[])],
                vec![rule(&["*"], &[""], &["pods"], &[])], false),
            ("names owned", vec![rule(&["get"], &[""], &["secrets"], &["a", "b"])],
                vec![rule(&["get"], &[""], &["secrets"], &["a"])], true),
            ("names not owned", vec![rule(&["get"], &[""], &["secrets"], &["a"])],
                vec![rule(&["get"], &[""], &["secrets"], &["a", "c"])], false),
            ("named owner does not cover all names", vec![rule(&["get"], &[""], &["secrets"], &["a"])],
                vec![rule(&["get"], &[""], &["secrets"], &[])], false),
            ("unnamed owner covers names", vec![rule(&["get"], &[""], &["secrets"], &[])],
                vec![rule(&["get"], &[""], &["secrets"], &["x"])], true),
            ("url prefix", vec![urls(&["get"], &["/apis/*"])],
                vec![urls(&["get"], &["/apis/apps"])], true),
            ("url exact only", vec![urls(&["get"], &["/apis"])],
                vec![urls(&["get"], &["/apis/apps"])], false),
            ("resource rule does not cover urls", vec![rule(&["*"], &["*"], &["*"], &[])],
                vec![urls(&["get"], &["/healthz"])], false),
            ("url rule does not cover resources", vec![urls(&["*"], &["*"])],
                vec![rule(&["get"], &[""], &["pods"], &[])], false),
            ("admin covers everything", admin.clone(),
                vec![rule(&["*"], &["*"], &["*"], &[]), urls(&["*"], &["*"]), rule(&["get"], &[""], &["secrets"], &["x"])], true),
            ("nothing covers nothing", vec![], vec![], true),
            ("empty rule grants nothing", vec![], vec![rule(&[], &[""], &["pods"], &[])], true),
        ];
        for (name, owner, servant, want) in cases {
            assert_eq!(covers(&owner, &servant), want, "{name}");
        }
    }

    #[test]
    fn the_message_lists_what_is_missing() {
        let owner = [rule(&["get"], &[""], &["pods"], &[])];
        let owner: Vec<&PolicyRule> = owner.iter().collect();
        let missing = uncovered(
            &owner,
            &[rule(&["get", "list"], &[""], &["pods", "secrets"], &[])],
        );
        assert_eq!(missing.len(), 3);
        let msg = escalation_message("ann", &["dev".into(), "system:authenticated".into()], &missing);
        assert_eq!(
            msg,
            "user \"ann\" (groups=[\"dev\" \"system:authenticated\"]) is attempting to grant RBAC \
             permissions not currently held:\n\
             {APIGroups:[\"\"], Resources:[\"pods\"], Verbs:[\"list\"]}\n\
             {APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"get\"]}\n\
             {APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"list\"]}"
        );
    }
}
