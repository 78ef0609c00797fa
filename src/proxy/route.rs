//! Routing: the first path segment names the cluster, the rest is the Kubernetes path.
//! Parsing is strict on purpose: a cluster segment or a dot-segment that some component would
//! decode or normalise differently is refused rather than guessed at.

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
    if k8s_path.split('/').any(is_dot_segment) {
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

/// `.` or `..`, each dot possibly written `%2e` or `%2E`. Runs on every segment of every
/// request, so it reads bytes instead of building a decoded copy.
fn is_dot_segment(seg: &str) -> bool {
    let b = seg.as_bytes();
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
