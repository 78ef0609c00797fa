//! The request sizes the proxy takes, as kube-apiserver takes them, and the one limit of the
//! HTTP libraries it is built on (see `crate::server::edge` for how each is enforced).

/// The longest request target the `http` crate's URI type holds.
pub const MAX_URI_LEN: usize = u16::MAX as usize - 1;
/// Request line and headers, as kube-apiserver (Go's `http.DefaultMaxHeaderBytes`).
pub const MAX_HEAD_BYTES: usize = 1 << 20;
/// Header fields per HTTP/1.1 request: hyper's default, kept because a larger one costs an
/// allocation per request. 100 fields is far beyond what kubectl sends.
pub const MAX_H1_HEADERS: usize = 100;
/// The path h2 sees instead of one that is too long, followed by the real length in bytes.
pub const URI_TOO_LONG_PATH: &str = "/.kube-oidc-proxy/uri-too-long/";

/// The length a marker path carries, when `path` is one.
pub fn uri_too_long(path: &str) -> Option<usize> {
    path.strip_prefix(URI_TOO_LONG_PATH)?.parse().ok()
}

/// The message of the 414 answer.
pub fn uri_too_long_message(len: Option<usize>) -> String {
    let len = len.map_or_else(|| "more than 65,534".to_string(), |n| format!("{n}"));
    format!(
        "the request URI is {len} bytes long; this proxy takes at most {MAX_URI_LEN} bytes (the limit of \
         the HTTP library it is built on, although kube-apiserver takes up to 1 MiB): shorten the \
         label or field selector, or split the request"
    )
}
