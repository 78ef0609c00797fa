//! Percent-decoding with Go's `net/url` rules, so that we see the path and query exactly as
//! kube-apiserver will: the path like `url.URL.Path` (`%XX` only, `+` stays), query values like
//! `url.ParseQuery` (`+` is a space, pairs with `;` or a bad escape are dropped).

use std::borrow::Cow;

use super::RequestInfoError;

/// Decodes a request path as Go's URL parser does for `URL.Path`.
pub(super) fn path(raw: &str) -> Result<String, RequestInfoError> {
    match unescape(raw, false) {
        // Nothing was escaped: the input itself, already UTF-8.
        Some(Cow::Borrowed(_)) => Ok(raw.to_owned()),
        Some(Cow::Owned(bytes)) => String::from_utf8(bytes).map_err(|_| RequestInfoError::PathNotUtf8),
        None => Err(RequestInfoError::InvalidPathEscape),
    }
}

/// The first value of `key` in a raw query string, as `url.Values.Get` after `url.ParseQuery`.
/// Values are bytes: Go allows any byte sequence there.
pub(super) fn query_first(query: &str, key: &str) -> Option<Vec<u8>> {
    for pair in query.split('&') {
        // Go >= 1.17 drops the whole pair when it contains a semicolon.
        if pair.is_empty() || pair.contains(';') {
            continue;
        }
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let Some(k) = unescape(k, true) else {
            continue;
        };
        if k.as_ref() != key.as_bytes() {
            continue;
        }
        if let Some(v) = unescape(v, true) {
            return Some(v.into_owned());
        }
    }
    None
}

/// [`query_first`] as a string for display and audit, empty when absent.
pub(super) fn query_first_lossy(query: &str, key: &str) -> String {
    query_first(query, key)
        .map(|v| String::from_utf8_lossy(&v).into_owned())
        .unwrap_or_default()
}

/// Go's `unescape` in path mode (`plus_is_space == false`) or query mode. `None` on a `%` not
/// followed by two hex digits.
fn unescape(s: &str, plus_is_space: bool) -> Option<Cow<'_, [u8]>> {
    let bytes = s.as_bytes();
    // A fold with no early exit (a vector loop): most paths and values have nothing to decode.
    let plus = if plus_is_space { b'+' } else { b'%' };
    if !bytes
        .iter()
        .fold(false, |found, &b| found | (b == b'%') | (b == plus))
    {
        return Some(Cow::Borrowed(bytes));
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                let hi = bytes.get(i + 1).copied().and_then(hex)?;
                let lo = bytes.get(i + 2).copied().and_then(hex)?;
                out.push(hi << 4 | lo);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    Some(Cow::Owned(out))
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_decoding_follows_go() {
        #[rustfmt::skip]
        let cases: &[(&str, Result<&str, RequestInfoError>)] = &[
            ("/api/v1/pods", Ok("/api/v1/pods")),
            ("/api/v1/namespaces/a%2Fb/pods", Ok("/api/v1/namespaces/a/b/pods")),
            ("/a+b", Ok("/a+b")),
            ("/%41%62%7e", Ok("/Ab~")),
            ("/%e2%82%ac", Ok("/\u{20ac}")),
            ("/%", Err(RequestInfoError::InvalidPathEscape)),
            ("/%4", Err(RequestInfoError::InvalidPathEscape)),
            ("/%zz", Err(RequestInfoError::InvalidPathEscape)),
            ("/%ff", Err(RequestInfoError::PathNotUtf8)),
        ];
        for (raw, want) in cases {
            assert_eq!(path(raw), want.clone().map(str::to_owned), "path {raw:?}");
        }
    }

    #[test]
    fn query_values_follow_go_parse_query() {
        #[rustfmt::skip]
        let cases: &[(&str, &str, Option<&[u8]>)] = &[
            ("watch=true", "watch", Some(b"true")),
            ("a=1&watch=1&watch=0", "watch", Some(b"1")),
            ("watch", "watch", Some(b"")),
            ("watch=", "watch", Some(b"")),
            ("fieldSelector=metadata.name%3Dfoo", "fieldSelector", Some(b"metadata.name=foo")),
            ("labelSelector=a+in+(x)", "labelSelector", Some(b"a in (x)")),
            ("field%53elector=x", "fieldSelector", Some(b"x")),
            // A pair with a semicolon is dropped whole; the next one counts.
            ("watch=false;x&watch=true", "watch", Some(b"true")),
            // A bad escape drops the pair.
            ("watch=%zz&watch=0", "watch", Some(b"0")),
            ("watch=%zz", "watch", None),
            ("&&", "watch", None),
            ("", "watch", None),
            ("Watch=true", "watch", None),
            ("v=%ff", "v", Some(b"\xff")),
        ];
        for (query, key, want) in cases {
            assert_eq!(
                query_first(query, key).as_deref(),
                *want,
                "query {query:?} key {key}"
            );
        }
        assert_eq!(query_first_lossy("v=%ff", "v"), "\u{fffd}");
        assert_eq!(query_first_lossy("x=1", "v"), "");
    }
}
