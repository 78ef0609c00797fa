//! Routing: the first path segment names the cluster, the rest is the Kubernetes path; or, with
//! `--cluster-host-suffix`, the host name `<cluster><suffix>` names it and the whole path is the
//! Kubernetes path (for tools that drop or rewrite the server URL's path).
//! Parsing is strict on purpose: a cluster segment or a dot-segment that some component would
//! decode or normalise differently is refused rather than guessed at, and a host and a path that
//! name two different clusters are refused rather than one of them chosen.

use crate::config::valid_cluster_name;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route<'a> {
    pub cluster: &'a str,
    /// The Kubernetes path, raw (as the client encoded it), starting with `/`, or empty.
    pub path: &'a str,
    pub query: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("the path must start with /<cluster-name>")]
    NoCluster,
    #[error("invalid cluster name in the path")]
    BadCluster,
    #[error("the path may not contain '.' or '..' segments")]
    DotSegment,
    #[error("the host names cluster {host:?} and the path cluster {path:?}")]
    Disagree { host: String, path: String },
}

/// The cluster a request's host names with `--cluster-host-suffix` (`k8s.proxy.example.com`
/// with suffix `.proxy.example.com` is cluster `k8s`), whatever the port. Host names are
/// compared without regard to case, as DNS does; the cluster part is a cluster name as written.
pub fn cluster_of_host<'a>(host: &'a str, suffix: &str) -> Option<&'a str> {
    if suffix.is_empty() {
        return None;
    }
    // `name:port`; an IPv6 literal (`[::1]:8443`) never ends with a name suffix.
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    let cut = name.len().checked_sub(suffix.len())?;
    if cut == 0 || !name.is_char_boundary(cut) || !name[cut..].eq_ignore_ascii_case(suffix) {
        return None;
    }
    let cluster = &name[..cut];
    valid_cluster_name(cluster).then_some(cluster)
}

/// The route of a request whose host named `host_cluster` (see [`cluster_of_host`]), or of one
/// routed by its path alone. Both styles work at once: under a cluster's host name, a path that
/// starts with a served cluster's name (`is_cluster`) must name the same cluster, and is then
/// read as a path-style one; any other path is the Kubernetes path as it is.
pub fn parse_with_host<'a>(
    host_cluster: Option<&'a str>,
    path: &'a str,
    query: Option<&'a str>,
    is_cluster: impl Fn(&str) -> bool,
) -> Result<Route<'a>, RouteError> {
    let Some(host) = host_cluster else {
        return parse(path, query);
    };
    if let Ok(route) = parse(path, query)
        && is_cluster(route.cluster)
    {
        if route.cluster != host {
            return Err(RouteError::Disagree {
                host: host.into(),
                path: route.cluster.into(),
            });
        }
        return Ok(route);
    }
    if !path.starts_with('/') {
        return Err(RouteError::NoCluster);
    }
    if has_dot_segment(path) || (path.contains('%') && has_decoded_dot_segment(path.as_bytes())) {
        return Err(RouteError::DotSegment);
    }
    Ok(Route {
        cluster: host,
        path,
        query,
    })
}

pub fn parse<'a>(path: &'a str, query: Option<&'a str>) -> Result<Route<'a>, RouteError> {
    let rest = path.strip_prefix('/').ok_or(RouteError::NoCluster)?;
    let (cluster, k8s_path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if cluster.is_empty() {
        return Err(RouteError::NoCluster);
    }
    // valid_cluster_name refuses '%', so %2F and friends never reach a lookup.
    if !valid_cluster_name(cluster) {
        return Err(RouteError::BadCluster);
    }
    // A dot-segment could climb out of the server URL's path prefix (Rancher-style servers put
    // several clusters behind one host), so refuse them whatever their encoding.
    if has_dot_segment(k8s_path) {
        return Err(RouteError::DotSegment);
    }
    // `x%2F..%2Fy` is one segment here but `x/../y` to a front end or API server that decodes
    // before it normalises: look again at the decoded path, where `%2F` is a separator.
    if k8s_path.contains('%') && has_decoded_dot_segment(k8s_path.as_bytes()) {
        return Err(RouteError::DotSegment);
    }
    Ok(Route {
        cluster,
        path: k8s_path,
        query,
    })
}

/// Whether a `/`-separated segment of `path` is a dot segment (see [`is_dot_segment`]). One
/// loop over the bytes: it runs on every request, and only a segment that starts with `.` or
/// `%` is looked at more closely.
fn has_dot_segment(path: &str) -> bool {
    let b = path.as_bytes();
    let mut start = 0;
    while start <= b.len() {
        let mut end = start;
        while end < b.len() && b[end] != b'/' {
            end += 1;
        }
        if end > start && matches!(b[start], b'.' | b'%') && is_dot_segment(&b[start..end]) {
            return true;
        }
        start = end + 1;
    }
    false
}

/// `.` or `..`, each dot possibly written `%2e` or `%2E`. Runs on every segment of every
/// request, so it reads bytes instead of building a decoded copy.
fn is_dot_segment(b: &[u8]) -> bool {
    let (mut i, mut dots) = (0, 0);
    while i < b.len() {
        if b[i] == b'.' {
            i += 1;
        } else if b.len() - i >= 3 && b[i] == b'%' && b[i + 1] == b'2' && b[i + 2] | 0x20 == b'e' {
            i += 3;
        } else {
            return false;
        }
        dots += 1;
        if dots > 2 {
            return false;
        }
    }
    dots > 0
}

/// True when percent-decoding `raw` (once, as Go's `url.PathUnescape` would) yields a `.` or `..`
/// segment. Bad escapes are left as they are: the request parser refuses them later.
fn has_decoded_dot_segment(raw: &[u8]) -> bool {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut segment_dots = 0usize;
    let mut segment_len = 0usize;
    let mut i = 0;
    loop {
        let byte = match raw.get(i) {
            None => None,
            Some(b'%') => match (
                raw.get(i + 1).and_then(|b| hex(*b)),
                raw.get(i + 2).and_then(|b| hex(*b)),
            ) {
                (Some(hi), Some(lo)) => {
                    i += 3;
                    Some(hi << 4 | lo)
                }
                _ => {
                    i += 1;
                    Some(b'%')
                }
            },
            Some(b) => {
                i += 1;
                Some(*b)
            }
        };
        match byte {
            None | Some(b'/') => {
                if segment_len > 0 && segment_len == segment_dots && segment_dots <= 2 {
                    return true;
                }
                if byte.is_none() {
                    return false;
                }
                segment_dots = 0;
                segment_len = 0;
            }
            Some(b) => {
                segment_len += 1;
                if b == b'.' {
                    segment_dots += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn dot_segments_are_found_in_what_split_gives(path in "([a-z/.%]|%2[eE]){0,24}") {
            proptest::prop_assert_eq!(
                has_dot_segment(&path),
                path.split('/').any(|seg| is_dot_segment(seg.as_bytes()))
            );
        }
    }

    #[test]
    fn routes() {
        let r = parse("/k8s/api/v1/namespaces/dev/pods", Some("watch=1")).unwrap();
        assert_eq!(
            r,
            Route {
                cluster: "k8s",
                path: "/api/v1/namespaces/dev/pods",
                query: Some("watch=1")
            }
        );
        assert_eq!(parse("/k8s", None).unwrap().path, "");
        assert_eq!(parse("/k8s/", None).unwrap().path, "/");
        // Encoded characters after the cluster segment stay as the client sent them.
        assert_eq!(parse("/a/api/v1/x%2Fy", None).unwrap().path, "/api/v1/x%2Fy");
    }

    #[test]
    fn refuses_malformed_clusters() {
        assert_eq!(parse("/", None), Err(RouteError::NoCluster));
        assert_eq!(parse("//api", None), Err(RouteError::NoCluster));
        assert_eq!(parse("", None), Err(RouteError::NoCluster));
        for bad in [
            "/../api",
            "/./api",
            "/a%2Fb/api",
            "/%6b8s/api",
            "/a b/api",
            "/k8s:x/api",
        ] {
            assert_eq!(parse(bad, None), Err(RouteError::BadCluster), "{bad}");
        }
    }

    #[test]
    fn refuses_dot_segments_in_the_rest() {
        for bad in [
            "/k8s/../other/api",
            "/k8s/api/./v1",
            "/k8s/%2e%2E/x",
            "/k8s/api/.%2e",
            "/k8s/..",
            // Decoded, `%2F` is a separator: these climb out of the authorized path.
            "/k8s/api/v1/namespaces/dev/pods/x%2F..%2F..%2F..%2Fsecrets",
            "/k8s/api/v1/namespaces/dev/pods/x%2f%2e%2e%2fy",
            "/k8s/api/v1/namespaces/dev/pods/a%2F.",
            "/k8s/api/%2E%2E%2Fv1",
        ] {
            assert_eq!(parse(bad, None), Err(RouteError::DotSegment), "{bad}");
        }
        assert!(parse("/k8s/api/...", None).is_ok());
        for ok in [
            "/k8s/api/%2e%2e%2e",
            "/k8s/.a",
            "/k8s/a.",
            "/k8s/%2ex",
            "/k8s/%2f",
            "/k8s/api/v1/namespaces/dev/configmaps/a%2F...%2Fb",
            "/k8s/api/v1/namespaces/dev/configmaps/a%2F.b",
            "/k8s/%2",
            "/k8s/%",
        ] {
            assert!(parse(ok, None).is_ok(), "{ok}");
        }
    }
}

#[cfg(test)]
mod host_tests {
    use super::*;

    #[test]
    fn the_host_names_the_cluster_with_the_suffix() {
        let s = ".proxy.example.com";
        assert_eq!(cluster_of_host("k8s.proxy.example.com", s), Some("k8s"));
        assert_eq!(cluster_of_host("k8s.proxy.example.com:8443", s), Some("k8s"));
        assert_eq!(cluster_of_host("k8s.PROXY.example.com.", s), Some("k8s"));
        // The cluster part is taken as written: a cluster named `k8s` is not `K8S` (404).
        assert_eq!(cluster_of_host("K8S.proxy.example.com", s), Some("K8S"));
        // Cluster names may hold dots (a wildcard certificate covers one label only).
        assert_eq!(cluster_of_host("a.b.proxy.example.com", s), Some("a.b"));
        assert_eq!(
            cluster_of_host("prod-eu-1.proxy.example.com", s),
            Some("prod-eu-1")
        );
        for not in [
            "proxy.example.com",
            ".proxy.example.com",
            "k8s.proxy.example.org",
            "k8s.evilproxy.example.com",
            "[::1]:8443",
            "127.0.0.1:8443",
            "",
        ] {
            assert_eq!(cluster_of_host(not, s), None, "{not}");
        }
        assert_eq!(cluster_of_host("k8s.proxy.example.com", ""), None);
    }

    #[test]
    fn host_and_path_styles_work_at_once_and_never_disagree_silently() {
        let served = |c: &str| c == "k8s" || c == "kind";
        let r = parse_with_host(Some("k8s"), "/api/v1/pods", Some("limit=1"), served).unwrap();
        assert_eq!(
            (r.cluster, r.path, r.query),
            ("k8s", "/api/v1/pods", Some("limit=1"))
        );
        let r = parse_with_host(Some("k8s"), "/k8s/api/v1/pods", None, served).unwrap();
        assert_eq!((r.cluster, r.path), ("k8s", "/api/v1/pods"));
        assert_eq!(
            parse_with_host(Some("k8s"), "/kind/api/v1/pods", None, served),
            Err(RouteError::Disagree {
                host: "k8s".into(),
                path: "kind".into()
            })
        );
        // A first segment that is no served cluster is part of the Kubernetes path.
        let r = parse_with_host(Some("k8s"), "/apis/apps/v1", None, served).unwrap();
        assert_eq!((r.cluster, r.path), ("k8s", "/apis/apps/v1"));
        let r = parse_with_host(Some("k8s"), "/", None, served).unwrap();
        assert_eq!(r.path, "/");
        for bad in ["/api/../../x", "/api/%2e%2e/x", "/x%2F..%2Fy"] {
            assert_eq!(
                parse_with_host(Some("k8s"), bad, None, served),
                Err(RouteError::DotSegment),
                "{bad}"
            );
        }
        // Without a host cluster, the path decides, as before.
        assert_eq!(
            parse_with_host(None, "/kind/api", None, served).unwrap().cluster,
            "kind"
        );
    }
}
