//! Tables from kube-apiserver's `requestinfo_test.go`, plus our upgrade rule and Go decoding.

use super::{RequestInfo, RequestInfoError};

fn parse(method: &str, url: &str) -> RequestInfo {
    parse_upgrade(method, url, false)
}

fn parse_upgrade(method: &str, url: &str, upgrade: bool) -> RequestInfo {
    let (path, query) = match url.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (url, None),
    };
    match RequestInfo::parse(method, path, query, upgrade) {
        Ok(info) => info,
        Err(e) => panic!("{method} {url}: unexpected error {e}"),
    }
}

/// (method, url, verb, prefix, group, version, namespace, resource, subresource, name, parts)
#[rustfmt::skip]
type Case = (&'static str, &'static str, &'static str, &'static str, &'static str, &'static str, &'static str,
    &'static str, &'static str, &'static str, &'static [&'static str]);

#[rustfmt::skip]
const RESOURCE_CASES: &[Case] = &[
    // resource paths
    ("GET", "/api/v1/namespaces", "list", "api", "", "v1", "", "namespaces", "", "", &["namespaces"]),
    ("GET", "/api/v1/namespaces/other", "get", "api", "", "v1", "other", "namespaces", "", "other", &["namespaces", "other"]),
    ("GET", "/api/v1/namespaces/other/pods", "list", "api", "", "v1", "other", "pods", "", "", &["pods"]),
    ("GET", "/api/v1/namespaces/other/pods/foo", "get", "api", "", "v1", "other", "pods", "", "foo", &["pods", "foo"]),
    ("HEAD", "/api/v1/namespaces/other/pods/foo", "get", "api", "", "v1", "other", "pods", "", "foo", &["pods", "foo"]),
    ("GET", "/api/v1/pods", "list", "api", "", "v1", "", "pods", "", "", &["pods"]),
    ("HEAD", "/api/v1/pods", "list", "api", "", "v1", "", "pods", "", "", &["pods"]),
    // Current kube keeps the namespace for a PATCH of a namespace (the SSA special case,
    // kubernetes PR 94656, was never merged).
    ("PATCH", "/api/v1/namespaces/new-namespace", "patch", "api", "", "v1", "new-namespace", "namespaces", "", "new-namespace", &["namespaces", "new-namespace"]),
    // special verbs
    ("GET", "/api/v1/proxy/namespaces/other/pods/foo", "proxy", "api", "", "v1", "other", "pods", "", "foo", &["pods", "foo"]),
    ("GET", "/api/v1/proxy/namespaces/other/pods/foo/subpath/not/a/subresource", "proxy", "api", "", "v1", "other", "pods", "", "foo", &["pods", "foo", "subpath", "not", "a", "subresource"]),
    ("GET", "/api/v1/watch/pods", "watch", "api", "", "v1", "", "pods", "", "", &["pods"]),
    ("GET", "/api/v1/pods?watch=true", "watch", "api", "", "v1", "", "pods", "", "", &["pods"]),
    ("GET", "/api/v1/pods?watch=false", "list", "api", "", "v1", "", "pods", "", "", &["pods"]),
    ("GET", "/api/v1/watch/namespaces/other/pods", "watch", "api", "", "v1", "other", "pods", "", "", &["pods"]),
    ("GET", "/api/v1/namespaces/other/pods?watch=1", "watch", "api", "", "v1", "other", "pods", "", "", &["pods"]),
    ("GET", "/api/v1/namespaces/other/pods?watch=0", "list", "api", "", "v1", "other", "pods", "", "", &["pods"]),
    ("GET", "/api/v1/watch/namespaces/other/pods/foo", "watch", "api", "", "v1", "other", "pods", "", "foo", &["pods", "foo"]),
    ("GET", "/api/v1/pods?watch=FALSE", "list", "api", "", "v1", "", "pods", "", "", &["pods"]),
    ("GET", "/api/v1/pods?watch=", "watch", "api", "", "v1", "", "pods", "", "", &["pods"]),
    ("GET", "/api/v1/pods?watch=yes", "watch", "api", "", "v1", "", "pods", "", "", &["pods"]),
    ("GET", "/api/v1/namespaces/other/pods/foo?watch=true", "get", "api", "", "v1", "other", "pods", "", "foo", &["pods", "foo"]),
    // subresource identification
    ("GET", "/api/v1/namespaces/other/pods/foo/status", "get", "api", "", "v1", "other", "pods", "status", "foo", &["pods", "foo", "status"]),
    ("GET", "/api/v1/namespaces/other/pods/foo/proxy/subpath", "get", "api", "", "v1", "other", "pods", "proxy", "foo", &["pods", "foo", "proxy", "subpath"]),
    ("PUT", "/api/v1/namespaces/other/finalize", "update", "api", "", "v1", "other", "namespaces", "finalize", "other", &["namespaces", "other", "finalize"]),
    ("PUT", "/api/v1/namespaces/other/status", "update", "api", "", "v1", "other", "namespaces", "status", "other", &["namespaces", "other", "status"]),
    ("GET", "/api/v1/namespaces/dev/pods/web/log", "get", "api", "", "v1", "dev", "pods", "log", "web", &["pods", "web", "log"]),
    ("POST", "/api/v1/namespaces/dev/pods/web/exec", "create", "api", "", "v1", "dev", "pods", "exec", "web", &["pods", "web", "exec"]),
    // Without an upgrade a GET on exec stays get, exactly as kube.
    ("GET", "/api/v1/namespaces/dev/pods/web/exec", "get", "api", "", "v1", "dev", "pods", "exec", "web", &["pods", "web", "exec"]),
    // verb identification
    ("PATCH", "/api/v1/namespaces/other/pods/foo", "patch", "api", "", "v1", "other", "pods", "", "foo", &["pods", "foo"]),
    ("DELETE", "/api/v1/namespaces/other/pods/foo", "delete", "api", "", "v1", "other", "pods", "", "foo", &["pods", "foo"]),
    ("POST", "/api/v1/namespaces/other/pods", "create", "api", "", "v1", "other", "pods", "", "", &["pods"]),
    ("PUT", "/api/v1/namespaces/other/pods/foo", "update", "api", "", "v1", "other", "pods", "", "foo", &["pods", "foo"]),
    ("OPTIONS", "/api/v1/namespaces/other/pods/foo", "", "api", "", "v1", "other", "pods", "", "foo", &["pods", "foo"]),
    ("get", "/api/v1/namespaces/other/pods/foo", "", "api", "", "v1", "other", "pods", "", "foo", &["pods", "foo"]),
    // deletecollection verb identification
    ("DELETE", "/api/v1/nodes", "deletecollection", "api", "", "v1", "", "nodes", "", "", &["nodes"]),
    ("DELETE", "/api/v1/namespaces", "deletecollection", "api", "", "v1", "", "namespaces", "", "", &["namespaces"]),
    ("DELETE", "/api/v1/namespaces/other/pods", "deletecollection", "api", "", "v1", "other", "pods", "", "", &["pods"]),
    ("DELETE", "/apis/extensions/v1/namespaces/other/pods", "deletecollection", "apis", "extensions", "v1", "other", "pods", "", "", &["pods"]),
    // api group identification
    ("POST", "/apis/extensions/v1/namespaces/other/pods", "create", "apis", "extensions", "v1", "other", "pods", "", "", &["pods"]),
    ("GET", "/apis/apps/v1/namespaces/dev/deployments/web/scale", "get", "apis", "apps", "v1", "dev", "deployments", "scale", "web", &["deployments", "web", "scale"]),
    ("GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles", "list", "apis", "rbac.authorization.k8s.io", "v1", "", "clusterroles", "", "", &["clusterroles"]),
    ("GET", "/apis/batch/v1/job/foo/scale", "get", "apis", "batch", "v1", "", "job", "scale", "foo", &["job", "foo", "scale"]),
    // api version identification
    ("POST", "/apis/extensions/v1beta3/namespaces/other/pods", "create", "apis", "extensions", "v1beta3", "other", "pods", "", "", &["pods"]),
    // slashes: trimmed at the ends, inner empty segments kept
    ("GET", "//api/v1/pods/", "list", "api", "", "v1", "", "pods", "", "", &["pods"]),
    ("GET", "/api/v1//x", "get", "api", "", "v1", "", "", "", "x", &["", "x"]),
    // the path is percent-decoded first, as Go's URL.Path
    ("GET", "/api/v1/namespaces/dev/pods%2Fweb", "get", "api", "", "v1", "dev", "pods", "", "web", &["pods", "web"]),
    ("GET", "/api/v1/namespaces/d%65v/pods", "list", "api", "", "v1", "dev", "pods", "", "", &["pods"]),
];

#[test]
fn resource_requests() {
    for &(method, url, verb, prefix, group, version, ns, resource, sub, name, parts) in RESOURCE_CASES {
        let info = parse(method, url);
        let got = (
            info.is_resource_request,
            info.verb.as_str(),
            info.api_prefix.as_str(),
            info.api_group.as_str(),
            info.api_version.as_str(),
            info.namespace.as_str(),
            info.resource.as_str(),
            info.subresource.as_str(),
            info.name.as_str(),
            info.parts.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
        );
        let want = (
            true,
            verb,
            prefix,
            group,
            version,
            ns,
            resource,
            sub,
            name,
            parts.to_vec(),
        );
        assert_eq!(got, want, "{method} {url}");
    }
}

#[test]
fn non_resource_requests() {
    // (method, url, verb, path, api_prefix)
    #[rustfmt::skip]
    let cases: &[(&str, &str, &str, &str, &str)] = &[
        ("GET", "/", "get", "/", ""),
        ("GET", "", "get", "", ""),
        ("GET", "/api", "get", "/api", ""),
        ("GET", "/api/version", "get", "/api/version", ""),
        ("GET", "/api/version/", "get", "/api/version/", ""),
        ("GET", "/apis", "get", "/apis", ""),
        ("GET", "/apis/group/version/", "get", "/apis/group/version/", "apis"),
        ("GET", "/apis/extensions/v1beta1", "get", "/apis/extensions/v1beta1", "apis"),
        ("GET", "/apis/version/resource", "get", "/apis/version/resource", "apis"),
        ("GET", "/badprefix/version/resource", "get", "/badprefix/version/resource", ""),
        ("GET", "/not-api/version/resource", "get", "/not-api/version/resource", ""),
        ("GET", "/healthz", "get", "/healthz", ""),
        ("GET", "/metrics", "get", "/metrics", ""),
        ("POST", "/logs/x", "post", "/logs/x", ""),
        ("HEAD", "/version", "head", "/version", ""),
        ("GET", "/openapi/v3/api%2Fv1", "get", "/openapi/v3/api/v1", ""),
        ("GET", "/version?watch=true", "get", "/version", ""),
    ];
    for &(method, url, verb, path, prefix) in cases {
        let info = parse(method, url);
        let want = RequestInfo {
            path: path.to_owned(),
            verb: verb.into(),
            api_prefix: prefix.into(),
            ..RequestInfo::default()
        };
        assert_eq!(info, want, "{method} {url}");
    }
}

#[test]
fn resource_or_not_from_kube_get_non_api_request_info() {
    #[rustfmt::skip]
    let cases: &[(&str, bool)] = &[
        ("/api/version/resource", true),
        ("/apis/group/version/resource/name/subresource", true),
        ("/api/version/resource/name/subresource", true),
        ("/apis/batch/v1/job", true),
        ("/apis/batch/v1/job/foo", true),
        ("/apis/batch/v1/job/foo/scale", true),
        ("/not-api/version/resource", false),
        ("/apis/extensions/v1beta1", false),
        ("/apis/extensions/v1beta1/", false),
        ("/api/version", false),
        ("/api", false),
        ("/", false),
        ("", false),
    ];
    for &(url, want) in cases {
        assert_eq!(parse("GET", url).is_resource_request, want, "{url}");
    }
}

#[test]
fn field_selector_gives_list_and_watch_a_name() {
    // (url, name, verb) from kube's TestFieldSelectorParsing, plus a few more.
    #[rustfmt::skip]
    let cases: &[(&str, &str, &str)] = &[
        ("/apis/group/version/resource", "", "list"),
        ("/apis/group/version/resource?fieldSelector=metadata.name=name1", "name1", "list"),
        ("/apis/group/version/resource?watch=true&fieldSelector=metadata.name=name1", "name1", "watch"),
        ("/apis/group/version/resource?fieldSelector=foo=bar", "", "list"),
        ("/apis/group/version/resource?fieldSelector=metadata.name=name1,foo", "", "list"),
        ("/apis/group/version/resource?fieldSelector=metadata.name=name1,foo&watch=true", "", "watch"),
        ("/apis/group/version/resource?fieldSelector=metadata.name=name1,foo&watch=false", "", "list"),
        ("/api/v1/namespaces/dev/pods?fieldSelector=metadata.name%3Dweb", "web", "list"),
        ("/api/v1/namespaces/dev/pods?fieldSelector=metadata.name%3D..", "", "list"),
        ("/api/v1/namespaces/dev/pods?fieldSelector=metadata.name%3Da%25b", "", "list"),
        ("/api/v1/namespaces/dev/pods?fieldSelector=metadata.name!%3Dweb", "", "list"),
        // The /watch/ path prefix never turns a selector into a name.
        ("/api/v1/watch/namespaces/dev/pods?fieldSelector=metadata.name%3Dweb", "", "watch"),
    ];
    for &(url, name, verb) in cases {
        let info = parse("GET", url);
        assert_eq!((info.name.as_str(), info.verb.as_str()), (name, verb), "{url}");
    }
    // A DELETE with a selector stays a deletecollection without name.
    let info = parse(
        "DELETE",
        "/api/v1/namespaces/dev/pods?fieldSelector=metadata.name%3Dweb",
    );
    assert_eq!((info.verb.as_str(), info.name.as_str()), ("deletecollection", ""));
}

#[test]
fn selectors_are_recorded_for_collection_verbs_only() {
    // (method, url, field_selector, label_selector)
    #[rustfmt::skip]
    let cases: &[(&str, &str, &str, &str)] = &[
        ("GET", "/api/v1/pods?fieldSelector=spec.nodeName%3Dn1&labelSelector=app+in+(a,b)", "spec.nodeName=n1", "app in (a,b)"),
        ("GET", "/api/v1/pods?watch=1&labelSelector=app%3Dweb", "", "app=web"),
        ("DELETE", "/api/v1/namespaces/dev/pods?labelSelector=app%3Dweb", "", "app=web"),
        ("GET", "/api/v1/namespaces/dev/pods?fieldSelector=metadata.name%3Dweb", "metadata.name=web", ""),
        ("GET", "/api/v1/namespaces/dev/pods/web?labelSelector=app%3Dweb", "", ""),
        ("POST", "/api/v1/namespaces/dev/pods?labelSelector=app%3Dweb", "", ""),
        ("GET", "/api/v1/watch/pods?labelSelector=app%3Dweb", "", ""),
        ("GET", "/metrics?labelSelector=app%3Dweb", "", ""),
    ];
    for &(method, url, fs, ls) in cases {
        let info = parse(method, url);
        let got = (info.field_selector.as_str(), info.label_selector.as_str());
        assert_eq!(got, (fs, ls), "{method} {url}");
    }
}

#[test]
fn upgrades_to_stream_subresources_need_create() {
    // (method, url, upgrade, verb)
    #[rustfmt::skip]
    let cases: &[(&str, &str, bool, &str)] = &[
        ("GET", "/api/v1/namespaces/dev/pods/web/exec?command=sh&stdin=true", true, "create"),
        ("GET", "/api/v1/namespaces/dev/pods/web/attach", true, "create"),
        ("GET", "/api/v1/namespaces/dev/pods/web/portforward?ports=80", true, "create"),
        ("POST", "/api/v1/namespaces/dev/pods/web/exec", true, "create"),
        ("GET", "/api/v1/namespaces/dev/pods/web/exec", false, "get"),
        ("GET", "/api/v1/namespaces/dev/pods/web/log?follow=true", true, "get"),
        ("GET", "/api/v1/namespaces/dev/pods/web/proxy/ws", true, "get"),
        ("GET", "/api/v1/namespaces/dev/services/web/exec", true, "get"),
        ("GET", "/api/v1/namespaces/dev/pods?watch=true", true, "watch"),
        ("GET", "/exec", true, "get"),
    ];
    for &(method, url, upgrade, verb) in cases {
        assert_eq!(
            parse_upgrade(method, url, upgrade).verb,
            verb,
            "{method} {url} upgrade={upgrade}"
        );
    }
    let info = parse_upgrade("GET", "/api/v1/namespaces/dev/pods/web/exec", true);
    assert_eq!(
        (
            info.resource.as_str(),
            info.subresource.as_str(),
            info.name.as_str()
        ),
        ("pods", "exec", "web")
    );
}

#[test]
fn errors() {
    #[rustfmt::skip]
    let cases: &[(&str, RequestInfoError)] = &[
        ("/api/v1/watch", RequestInfoError::MissingResourceAfterVerb),
        ("/api/v1/proxy/", RequestInfoError::MissingResourceAfterVerb),
        ("/apis/apps/v1/watch", RequestInfoError::MissingResourceAfterVerb),
        ("/api/v1/namespaces/%zz/pods", RequestInfoError::InvalidPathEscape),
        ("/api/v1/namespaces/%ff/pods", RequestInfoError::PathNotUtf8),
    ];
    for (path, want) in cases {
        assert_eq!(
            RequestInfo::parse("GET", path, None, false),
            Err(want.clone()),
            "{path}"
        );
    }
    assert_eq!(
        RequestInfoError::MissingResourceAfterVerb.to_string(),
        "unable to determine kind and namespace from url"
    );
}

#[test]
fn path_field_is_the_decoded_path() {
    let info = parse("GET", "/api/v1/namespaces/dev/config%6Daps?limit=500");
    assert_eq!(info.path, "/api/v1/namespaces/dev/configmaps");
    assert_eq!(info.resource, "configmaps");
}

/// Deterministic pseudo-random inputs: parsing never panics, and what it returns is coherent.
#[test]
fn arbitrary_inputs_parse_or_fail_cleanly() {
    #[rustfmt::skip]
    const TOKENS: &[&str] = &[
        "/", "/", "api", "apis", "v1", "apps", "namespaces", "dev", "pods", "watch", "proxy", "exec",
        "status", "%", "%2F", "%2", "%ff", "%e2%82%ac", "..", "é", "?", "&", "=", ";", "\\", ",", "+",
        "metadata.name", "fieldSelector", "watch=1",
    ];
    const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "get"];
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    for _ in 0..20_000 {
        let len = next(12);
        let mut url = String::new();
        for _ in 0..len {
            url.push_str(TOKENS[next(TOKENS.len())]);
        }
        let (path, query) = url
            .split_once('?')
            .map_or((url.as_str(), None), |(p, q)| (p, Some(q)));
        let method = METHODS[next(METHODS.len())];
        let upgrade = next(2) == 1;
        let Ok(info) = RequestInfo::parse(method, path, query, upgrade) else {
            continue;
        };
        if info.is_resource_request {
            assert_eq!(info.parts.first(), Some(&info.resource), "{method} {url}");
            assert!(
                info.api_prefix == "api" || info.api_prefix == "apis",
                "{method} {url}"
            );
            if !info.subresource.is_empty() {
                assert_eq!(info.parts.get(2), Some(&info.subresource), "{method} {url}");
            }
        } else {
            assert_eq!(info.verb, method.to_ascii_lowercase(), "{method} {url}");
            assert!(
                info.resource.is_empty() && info.parts.is_empty(),
                "{method} {url}"
            );
        }
    }
}

proptest::proptest! {
    #[test]
    fn path_segments_are_what_split_gives(path in "[a-z/]{0,24}") {
        let trimmed = path.trim_matches('/');
        let want: Vec<&str> = if trimmed.is_empty() { Vec::new() } else { trimmed.split('/').collect() };
        proptest::prop_assert_eq!(super::split_path(&path), want);
    }
}
