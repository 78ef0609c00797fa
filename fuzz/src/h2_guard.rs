//! The HTTP/2 edge guard on whatever a client sends after the connection preface: it never
//! panics, always ends, and changes nothing unless it put its marker path in (a `:path` too
//! long for the URI type).

use kube_oidc_proxy::server::edge::{URI_TOO_LONG_PATH, guarded};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Input: the first byte picks the read size (1 to 256 bytes), the rest follows the preface.
pub fn run(data: &[u8]) {
    let (chunk, rest) = match data.split_first() {
        Some((c, rest)) => (usize::from(*c) + 1, rest),
        None => (1, data),
    };
    let mut input = PREFACE.to_vec();
    input.extend_from_slice(rest);
    let out = guarded(&input, chunk);
    // Every rewrite puts the marker in: without one in the output, nothing may have changed.
    let marker = URI_TOO_LONG_PATH.as_bytes();
    if !out.windows(marker.len()).any(|w| w == marker) {
        assert_eq!(out, input, "the guard changed a stream without a long path");
    }
    assert!(out.starts_with(PREFACE));
}
