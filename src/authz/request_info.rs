//! What a request asks for, parsed exactly like kube-apiserver's `RequestInfoFactory`
//! (`k8s.io/apiserver/pkg/endpoints/request/requestinfo.go`) with `APIPrefixes {api, apis}` and
//! `GrouplessAPIPrefixes {api}`, with the `AuthorizeWithSelectors` gate on (the default since
//! 1.32), plus one deliberate difference: WebSocket exec/attach/portforward need `create`.

mod decode;
mod field_selector;
mod short;
#[cfg(test)]
mod tests;

use std::fmt;

pub use short::ShortStr;

/// The parsed request, field for field kube-apiserver's `RequestInfo`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestInfo {
    pub is_resource_request: bool,
    /// The percent-decoded URL path (Go's `req.URL.Path`), without the proxy's cluster prefix.
    pub path: String,
    /// Kubernetes verb for resource requests; the lowercase HTTP method otherwise.
    pub verb: ShortStr,
    pub api_prefix: ShortStr,
    pub api_group: ShortStr,
    pub api_version: ShortStr,
    pub namespace: ShortStr,
    pub resource: ShortStr,
    pub subresource: ShortStr,
    pub name: ShortStr,
    /// Path segments from the resource on: `resource/name/subresource/...`.
    pub parts: Vec<ShortStr>,
    /// The `fieldSelector` query value, only for list, watch and deletecollection.
    pub field_selector: ShortStr,
    /// The `labelSelector` query value, only for list, watch and deletecollection.
    pub label_selector: ShortStr,
}

/// Why a request has no `RequestInfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestInfoError {
    /// A `%` in the path not followed by two hex digits. Go's net/http answers 400 before any
    /// handler runs.
    InvalidPathEscape,
    /// The percent-decoded path is not UTF-8. Go would carry the raw bytes on; we refuse rather
    /// than authorize something other than what the API server will see (answer 400).
    PathNotUtf8,
    /// `/api/v1/watch` or `/apis/g/v1/proxy` with nothing after the verb. kube-apiserver answers
    /// 500 "failed to create RequestInfo".
    MissingResourceAfterVerb,
}

impl fmt::Display for RequestInfoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::InvalidPathEscape => "invalid URL escape in path",
            Self::PathNotUtf8 => "URL path is not valid UTF-8 once decoded",
            Self::MissingResourceAfterVerb => "unable to determine kind and namespace from url",
        })
    }
}

impl std::error::Error for RequestInfoError {}

/// Path segments that name a verb instead of a resource (`/api/v1/watch/pods`).
const SPECIAL_VERBS: [&str; 2] = ["proxy", "watch"];
/// `/api/v1/namespaces/x/status` is a subresource of namespace x, not a resource in x.
const NAMESPACE_SUBRESOURCES: [&str; 2] = ["status", "finalize"];
const VERBS_WITH_SELECTORS: [&str; 3] = ["list", "watch", "deletecollection"];
/// Pod subresources that open a stream into the container. kubectl >= 1.30 asks for them with a
/// WebSocket GET, which kube-apiserver (before 1.35) authorized as `get`; we demand `create`, as
/// for SPDY's POST, so that a read-only role can never open a shell.
const STREAM_SUBRESOURCES: [&str; 3] = ["exec", "attach", "portforward"];

impl RequestInfo {
    /// Parses a request. `raw_path` is the path as received (still percent-encoded), without
    /// the proxy's cluster prefix; pass `/` rather than an empty path. `query` is the raw query
    /// string without `?`. `is_upgrade` is true for a request asking for a protocol upgrade
    /// (`Connection: Upgrade`, SPDY or WebSocket).
    pub fn parse(
        method: &str,
        raw_path: &str,
        query: Option<&str>,
        is_upgrade: bool,
    ) -> Result<Self, RequestInfoError> {
        let path = decode::path(raw_path)?;
        let mut info = RequestInfo {
            verb: ShortStr::ascii_lowercase(method),
            ..RequestInfo::default()
        };
        let segments = split_path(&path);
        parse_segments(&mut info, &segments, method, query.unwrap_or(""))?;
        if is_upgrade
            && info.is_resource_request
            && info.resource == "pods"
            && STREAM_SUBRESOURCES.contains(&info.subresource.as_str())
        {
            info.verb = "create".into();
        }
        info.path = path;
        Ok(info)
    }
}

/// The body of `NewRequestInfo`, after the path is decoded and split. Leaves `info` describing
/// a non-resource request when the path is not an API path.
fn parse_segments(
    info: &mut RequestInfo,
    segments: &[&str],
    method: &str,
    query: &str,
) -> Result<(), RequestInfoError> {
    let [prefix, rest @ ..] = segments else {
        return Ok(());
    };
    if segments.len() < 3 || (*prefix != "api" && *prefix != "apis") {
        return Ok(());
    }
    // kube sets the prefix before it knows the request is a resource request.
    info.api_prefix = (*prefix).into();
    let mut rest = rest;
    if *prefix != "api" {
        let [group, after @ ..] = rest else {
            return Ok(());
        };
        if rest.len() < 3 {
            return Ok(());
        }
        info.api_group = (*group).into();
        rest = after;
    }
    let [version, after @ ..] = rest else {
        return Ok(());
    };
    info.is_resource_request = true;
    info.api_version = (*version).into();
    let mut rest = after;

    let mut verb_via_path_prefix = false;
    let mut verb = match rest.first() {
        Some(first) if SPECIAL_VERBS.contains(first) => {
            if rest.len() < 2 {
                return Err(RequestInfoError::MissingResourceAfterVerb);
            }
            verb_via_path_prefix = true;
            rest = &rest[1..];
            *first
        }
        _ => match method {
            "POST" => "create",
            "GET" | "HEAD" => "get",
            "PUT" => "update",
            "PATCH" => "patch",
            "DELETE" => "delete",
            _ => "",
        },
    };

    if rest.first() == Some(&"namespaces")
        && let Some(namespace) = rest.get(1)
    {
        info.namespace = (*namespace).into();
        if rest.get(2).is_some_and(|s| !NAMESPACE_SUBRESOURCES.contains(s)) {
            rest = &rest[2..];
        }
    }

    info.parts = rest.iter().map(|s| ShortStr::from(*s)).collect();
    let mut name = "";
    if rest.len() >= 3 && verb != "proxy" {
        info.subresource = rest[2].into();
    }
    if rest.len() >= 2 {
        name = rest[1];
    }
    if let Some(resource) = rest.first() {
        info.resource = (*resource).into();
    }

    let mut selector_name = None;
    if name.is_empty() && verb == "get" {
        verb = match decode::query_first(query, "watch") {
            Some(v) if !v.eq_ignore_ascii_case(b"false") && v != b"0" => "watch",
            _ => "list",
        };
        selector_name = decode::query_first(query, "fieldSelector")
            .and_then(|v| String::from_utf8(v).ok())
            .and_then(|s| field_selector::required_name(&s))
            .filter(|n| is_valid_path_segment_name(n));
    }
    if name.is_empty() && verb == "delete" {
        verb = "deletecollection";
    }
    if !verb_via_path_prefix && VERBS_WITH_SELECTORS.contains(&verb) {
        info.field_selector = decode::query_first_lossy(query, "fieldSelector").into();
        info.label_selector = decode::query_first_lossy(query, "labelSelector").into();
    }
    info.name = selector_name.map_or_else(|| name.into(), ShortStr::from);
    info.verb = verb.into();
    Ok(())
}

/// Go's `splitPath`: trim slashes at both ends, split on `/`, keep inner empty segments.
fn split_path(path: &str) -> Vec<&str> {
    let trimmed = path.trim_matches('/');
    if trimmed.is_empty() {
        return Vec::new();
    }
    // By bytes: `split('/')` searches each short segment with memchr, several times the work.
    let mut segments = Vec::with_capacity(8);
    let mut start = 0;
    for (i, b) in trimmed.bytes().enumerate() {
        if b == b'/' {
            segments.push(&trimmed[start..i]);
            start = i + 1;
        }
    }
    segments.push(&trimmed[start..]);
    segments
}

/// `k8s.io/apimachinery/pkg/api/validation/path.IsValidPathSegmentName` found nothing wrong.
fn is_valid_path_segment_name(name: &str) -> bool {
    name != "." && name != ".." && !name.contains('/') && !name.contains('%')
}
