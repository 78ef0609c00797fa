use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::hpack::{int, push_int, string};
use super::huffman::decoded_len as huffman_len;
use super::reference::huffman_encode;
use super::scenario::Op;
use super::*;

mod representations;
mod through_h2;

fn op() -> impl Strategy<Value = Op> {
    let len = prop_oneof![
        6 => 0..48u32,
        3 => 1000..4100u32,
        1 => Just(65_534u32),
        1 => 65_535..65_600u32,
        1 => 69_990..70_010u32,
    ];
    prop_oneof![
        1 => any::<u16>().prop_map(Op::Resize),
        2 => any::<u16>().prop_map(Op::Indexed),
        8 => (any::<u8>(), len, any::<u8>(), 0..4u8, any::<bool>(), 0..3u8).prop_map(
            |(name, len, fill, name_as, huffman, indexing)| Op::Literal { name, len, fill, name_as, huffman, indexing }
        ),
    ]
}

/// A connection's header blocks, each of operations for the reference encoder.
pub(super) fn blocks() -> impl Strategy<Value = Vec<Vec<Op>>> {
    prop::collection::vec(prop::collection::vec(op(), 0..8), 1..8)
}

/// `block` through a fresh connection's table: its decoded length and rewrite, when rewritten.
fn rewrite_long_path(block: &[u8]) -> Option<(usize, Vec<u8>)> {
    match Table::default().scan(block) {
        Scan::Rewrite(len, out) => Some((len, out)),
        Scan::Keep | Scan::Invalid => None,
    }
}

#[test]
fn huffman_matches_the_rfc_examples() {
    // RFC 7541, C.4.1 to C.4.3.
    let www = [
        0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab, 0x90, 0xf4, 0xff,
    ];
    assert_eq!(huffman_encode(b"www.example.com"), www);
    assert_eq!(huffman_len(&www), Some(15));
    let no_cache = [0xa8, 0xeb, 0x10, 0x64, 0x9c, 0xbf];
    assert_eq!(huffman_encode(b"no-cache"), no_cache);
    assert_eq!(huffman_len(&no_cache), Some(8));
    let custom = [0x25, 0xa8, 0x49, 0xe9, 0x5b, 0xb8, 0xe8, 0xb4, 0xbf];
    assert_eq!(huffman_encode(b"custom-value"), custom);
    assert_eq!(huffman_len(&custom), Some(12));
}

#[test]
fn huffman_len_counts_every_byte_and_refuses_bad_padding() {
    let all: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
    assert_eq!(huffman_len(&huffman_encode(&all)), Some(5000));
    assert_eq!(huffman_len(&[]), Some(0));
    // Padding must be ones, fewer than 8 bits: a whole byte of ones is EOS's prefix, too long.
    assert_eq!(huffman_len(&[0xff]), None);
    // '0' is 00000 (5 bits): padding of zeros is not valid.
    assert_eq!(huffman_len(&[0x00]), None);
    assert_eq!(huffman_len(&[0x07]), Some(1));
}

/// `:method GET`, `:scheme https`, the path as a literal (`first` byte: 0x04 without indexing,
/// 0x44 incremental, 0x14 never indexed), `:authority`, and a regular header after it.
fn block(first: u8, path: &[u8], huffman: bool) -> Vec<u8> {
    let mut b = vec![0x82, 0x87, first];
    let value = if huffman {
        huffman_encode(path)
    } else {
        path.to_vec()
    };
    push_int(&mut b, value.len(), 7, if huffman { 0x80 } else { 0 });
    b.extend_from_slice(&value);
    b.extend_from_slice(&[0x41, 0x09]);
    b.extend_from_slice(b"127.0.0.1");
    b.extend_from_slice(&[0x00, 0x06]);
    b.extend_from_slice(b"accept");
    b.extend_from_slice(&[0x10]);
    b.extend_from_slice(b"application/json");
    b
}

fn long_path(len: usize) -> Vec<u8> {
    let mut p = b"/k8s/api/v1/namespaces/default/configmaps?labelSelector=x+in+(".to_vec();
    while p.len() < len - 1 {
        p.extend_from_slice(b"v00001,");
    }
    p.truncate(len - 1);
    p.push(b')');
    p
}

#[test]
fn a_path_too_long_is_replaced_with_the_marker_and_its_length() {
    for huffman in [true, false] {
        for first in [0x04u8, 0x14, 0x44] {
            let path = long_path(72_000);
            let b = block(first, &path, huffman);
            let (len, out) = rewrite_long_path(&b).expect("rewritten");
            assert_eq!(len, 72_000);
            // Everything before and after the path is kept as it was.
            assert_eq!(&out[..2], &[0x82, 0x87]);
            assert!(out.ends_with(b"accept\x10application/json"));
            let mut i = 2;
            let incremental = out[i] == 0x44;
            assert_eq!(incremental, first == 0x44, "indexing kept for the table's sake");
            int(&out, &mut i, if incremental { 6 } else { 4 }).expect("name index");
            let (h, s, e) = string(&out, &mut i).expect("value");
            assert!(!h);
            let value = std::str::from_utf8(&out[s..e]).expect("utf8");
            assert_eq!(uri_too_long(value.split('?').next().expect("path")), Some(72_000));
            if incremental {
                assert!(
                    value.len() > 4096,
                    "as large as the table, like the original entry"
                );
            }
        }
    }
}

#[test]
fn paths_the_uri_type_holds_are_left_alone() {
    for len in [1, 100, MAX_URI_LEN - 10, MAX_URI_LEN] {
        let path = long_path(len.max(80));
        for huffman in [true, false] {
            assert_eq!(rewrite_long_path(&block(0x04, &path, huffman)), None, "{len}");
        }
    }
    // An indexed :path (static entry 4, "/") and a truncated block.
    assert_eq!(rewrite_long_path(&[0x82, 0x84, 0x87]), None);
    let b = block(0x04, &long_path(70_000), false);
    assert_eq!(rewrite_long_path(&b[..40_000]), None);
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// A HEADERS frame and CONTINUATIONs carrying `block`, in frames of at most `max`.
fn header_frames(stream: u32, block: &[u8], max: usize, end_stream: bool) -> Vec<u8> {
    let chunks: Vec<&[u8]> = block.chunks(max).collect();
    let mut out = Vec::new();
    for (n, c) in chunks.iter().enumerate() {
        let kind = if n == 0 { HEADERS } else { CONTINUATION };
        let mut flags = if n + 1 == chunks.len() { END_HEADERS } else { 0 };
        if n == 0 && end_stream {
            flags |= END_STREAM;
        }
        out.extend(frame(kind, flags, stream, c));
    }
    out
}

/// Splits frames into (kind, flags, stream, payload).
fn frames(mut b: &[u8]) -> Vec<(u8, u8, u32, Vec<u8>)> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let len = (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2]);
        let stream = u32::from_be_bytes([b[5], b[6], b[7], b[8]]);
        out.push((b[3], b[4], stream, b[9..9 + len].to_vec()));
        b = &b[9 + len..];
    }
    out
}

async fn through_guard(input: Vec<u8>, read_size: usize) -> Vec<u8> {
    let (mut client, server) = tokio::io::duplex(read_size);
    let writer = tokio::spawn(async move {
        client.write_all(&input).await.expect("write");
        client.shutdown().await.expect("shutdown");
        client
    });
    let mut guard = H2PathGuard::new(server);
    let mut out = Vec::new();
    guard.read_to_end(&mut out).await.expect("read");
    drop(writer.await.expect("writer"));
    out
}

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

#[tokio::test]
async fn the_guard_passes_ordinary_frames_byte_for_byte() {
    let mut input = PREFACE.to_vec();
    input.extend(frame(0x4, 0, 0, &[0, 3, 0, 0, 0, 100])); // SETTINGS
    input.extend(header_frames(
        1,
        &block(0x04, b"/k8s/api/v1/pods", true),
        16_384,
        true,
    ));
    // A large block that is not a long path, split over CONTINUATIONs, then DATA.
    let mut big = block(0x04, b"/k8s/api", false);
    for n in 0..3000 {
        big.extend_from_slice(&[0x00, 0x05]);
        big.extend_from_slice(b"x-big");
        big.push(20);
        big.extend_from_slice(format!("{n:020}").as_bytes());
    }
    input.extend(header_frames(3, &big, 16_384, false));
    input.extend(frame(0x0, 0x1, 3, &[b'{'; 40_000][..16_000]));
    input.extend(frame(0x6, 0, 0, &[1, 2, 3, 4, 5, 6, 7, 8])); // PING
    for read_size in [1, 7, 4096, 1 << 20] {
        assert_eq!(
            through_guard(input.clone(), read_size).await,
            input,
            "read size {read_size}"
        );
    }
}

#[tokio::test]
async fn the_guard_rewrites_a_long_path_and_keeps_everything_else() {
    let mut input = PREFACE.to_vec();
    input.extend(frame(0x4, 0, 0, &[]));
    let long = block(0x04, &long_path(80_000), true);
    input.extend(header_frames(5, &long, 9_000, true));
    input.extend(frame(0x6, 0, 0, &[8; 8]));
    input.extend(header_frames(7, &block(0x04, b"/k8s/api", true), 16_384, true));
    for read_size in [3, 4096, 1 << 20] {
        let out = through_guard(input.clone(), read_size).await;
        assert_eq!(&out[..24], PREFACE);
        let f = frames(&out[24..]);
        assert_eq!(
            f.len(),
            4,
            "settings, the rewritten HEADERS, ping, the next HEADERS"
        );
        assert_eq!((f[0].0, f[0].3.len()), (0x4, 0));
        let (kind, flags, stream, payload) = &f[1];
        assert_eq!((*kind, *flags, *stream), (HEADERS, END_HEADERS | END_STREAM, 5));
        let (len, _) = (uri_too_long_in(payload), ());
        assert_eq!(len, Some(80_000));
        assert_eq!(f[2].0, 0x6);
        assert_eq!(f[3].3, block(0x04, b"/k8s/api", true));
    }
}

/// The marker's length, read back from a rewritten block.
fn uri_too_long_in(block: &[u8]) -> Option<usize> {
    let mut i = 2;
    int(block, &mut i, 4)?;
    let (_, s, e) = string(block, &mut i)?;
    uri_too_long(std::str::from_utf8(&block[s..e]).ok()?)
}

#[tokio::test]
async fn h1_bare_answers_become_statuses_and_others_pass() {
    for (code, bare) in [
        (
            431u16,
            "HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: Tue, 01 Dec 2026 10:00:00 GMT\r\n\r\n",
        ),
        (
            414,
            "HTTP/1.1 414 URI Too Long\r\nconnection: close\r\ncontent-length: 0\r\n\r\n",
        ),
        (400, "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n"),
    ] {
        let (client, mut server) = tokio::io::duplex(64);
        let seen = std::sync::Arc::new(std::sync::Mutex::new(None));
        let seen2 = seen.clone();
        let mut w = H1Answers::new(client, Box::new(move |c| *seen2.lock().expect("lock") = Some(c)));
        let reader = tokio::spawn(async move {
            let mut out = Vec::new();
            server.read_to_end(&mut out).await.expect("read");
            out
        });
        w.write_all(bare.as_bytes()).await.expect("write");
        w.shutdown().await.expect("shutdown");
        drop(w);
        let out = String::from_utf8(reader.await.expect("reader")).expect("utf8");
        assert!(out.starts_with(&format!("HTTP/1.1 {code} ")), "{out}");
        let (head, body) = out.split_once("\r\n\r\n").expect("head");
        assert!(head.contains("content-type: application/json"));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let status: serde_json::Value = serde_json::from_str(body).expect("json");
        assert_eq!(status["kind"], "Status");
        assert_eq!(status["code"], code);
        let message = status["message"].as_str().expect("message");
        match code {
            414 => assert!(message.contains("65534 bytes"), "{message}"),
            431 => assert!(message.contains("1048576 bytes"), "{message}"),
            _ => assert!(message.contains("not valid HTTP/1.1"), "{message}"),
        }
        assert_eq!(*seen.lock().expect("lock"), Some(code));
    }
    // A proxied answer, even a 431 with a body, passes as it is.
    let ok = "HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
    let plain = "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
    for resp in [ok, plain] {
        let (client, mut server) = tokio::io::duplex(64);
        let mut w = H1Answers::new(client, Box::new(|_| panic!("not a refusal")));
        let reader = tokio::spawn(async move {
            let mut out = Vec::new();
            server.read_to_end(&mut out).await.expect("read");
            out
        });
        w.write_all(resp.as_bytes()).await.expect("write");
        w.shutdown().await.expect("shutdown");
        drop(w);
        assert_eq!(reader.await.expect("reader"), resp.as_bytes());
    }
}

#[tokio::test]
async fn after_a_101_the_stream_passes_whatever_it_looks_like() {
    let (client, mut server) = tokio::io::duplex(64);
    let mut w = H1Answers::new(client, Box::new(|_| panic!("not a refusal")));
    let reader = tokio::spawn(async move {
        let mut out = Vec::new();
        server.read_to_end(&mut out).await.expect("read");
        out
    });
    let head = "HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: SPDY/3.1\r\n\r\n";
    // A container printing what looks like hyper's bare answer, through port-forward.
    let forged = "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n";
    w.write_all(head.as_bytes()).await.expect("write");
    w.write_all(forged.as_bytes()).await.expect("write");
    w.write_all(b"more").await.expect("write");
    w.shutdown().await.expect("shutdown");
    drop(w);
    let out = reader.await.expect("reader");
    assert_eq!(out, format!("{head}{forged}more").as_bytes());
}
