//! Requests in every HPACK representation through the guard into hyper's HTTP/2 server, as the
//! proxy runs it: h2's own decoder must read the guard's output as the client meant it, with
//! the marker in place of each `:path` too long. The other tests check the guard against the
//! reference decoder; this one against the decoder that counts.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use proptest::prelude::*;
use tokio::io::AsyncWriteExt;

use super::super::reference::Encoder;
use super::super::scenario::{Op, PREFACE, Planned, TABLE_LIMIT, header_frames, plan};
use super::super::{H2PathGuard, MAX_HEAD_BYTES, MAX_URI_LEN, uri_too_long};

/// How a literal is written: (name as, Huffman value, indexing), as in [`Op::Literal`].
fn repr() -> impl Strategy<Value = (u8, bool, u8)> {
    (0..4u8, any::<bool>(), 0..3u8)
}

fn literal(name: u8, len: u32, fill: u8, (name_as, huffman, indexing): (u8, bool, u8)) -> Op {
    Op::Literal {
        name,
        len,
        fill,
        name_as,
        huffman,
        indexing,
    }
}

/// A GET: maybe a table size update, `:method` and `:scheme` from the static table, then
/// `:authority`, `:path` and a few other fields, each in any representation.
fn request() -> impl Strategy<Value = Vec<Op>> {
    let path_len = prop_oneof![
        4 => 1..48u32,
        1 => Just(MAX_URI_LEN as u32),
        2 => (MAX_URI_LEN as u32 + 1)..70_000u32,
    ];
    let extra = (3..6u8, prop_oneof![0..48u32, 1000..4000u32], any::<u8>(), repr());
    (
        prop::option::of(any::<u16>()),
        (1..20u32, 0..2u8, repr()),
        // By its dynamic name index most of all, and added to the table for the next to use.
        (
            path_len,
            any::<u8>(),
            (
                prop_oneof![Just(1u8), 0..4u8],
                any::<bool>(),
                prop_oneof![Just(0u8), 0..3u8],
            ),
        ),
        prop::collection::vec(extra, 0..3),
    )
        .prop_map(|(resize, authority, path, extras)| {
            let mut ops: Vec<Op> = resize.map(Op::Resize).into_iter().collect();
            // 1 + 1 and 1 + 6: static entries 2 (GET) and 7 (https).
            ops.extend([Op::Indexed(1), Op::Indexed(6)]);
            ops.push(literal(2, authority.0, authority.1, authority.2));
            ops.push(literal(0, path.0, path.1, path.2));
            ops.extend(
                extras
                    .into_iter()
                    .map(|(n, len, fill, r)| literal(n, len, fill, r)),
            );
            ops
        })
}

/// The request targets hyper's server saw, in order, for `blocks` sent as one connection.
async fn served(blocks: &[Planned]) -> Vec<String> {
    let (mut client, server) = tokio::io::duplex(1 << 20);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let svc = {
        let seen = seen.clone();
        service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            let target = req
                .uri()
                .path_and_query()
                .map_or(String::new(), |p| p.to_string());
            seen.lock().expect("lock").push(target);
            async { Ok::<_, std::convert::Infallible>(hyper::Response::new(String::new())) }
        })
    };
    let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .max_header_list_size(MAX_HEAD_BYTES as u32)
        .serve_connection(TokioIo::new(H2PathGuard::new(server)), svc);
    let conn = tokio::spawn(conn);
    let mut input = PREFACE.to_vec();
    input.extend_from_slice(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0]);
    for (k, p) in blocks.iter().enumerate() {
        header_frames(&mut input, 1 + 2 * k as u32, &p.bytes, 16_384);
    }
    client.write_all(&input).await.expect("write");
    for _ in 0..500 {
        if seen.lock().expect("lock").len() == blocks.len() || conn.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    conn.abort();
    seen.lock().expect("lock").clone()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn h2_reads_the_guards_output_as_the_client_meant_it(requests in prop::collection::vec(request(), 1..6)) {
        let mut enc = Encoder::new(TABLE_LIMIT);
        let blocks: Vec<Planned> = requests.iter().map(|ops| plan(&mut enc, ops)).collect();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let seen = rt.block_on(served(&blocks));
        prop_assert_eq!(seen.len(), blocks.len(), "requests served: {:?}", seen);
        for (k, (p, target)) in blocks.iter().zip(&seen).enumerate() {
            let path = &p.fields.iter().find(|f| f.0 == b":path").expect(":path").1;
            if path.len() > MAX_URI_LEN {
                let marker = target.split('?').next().unwrap_or_default();
                prop_assert_eq!(uri_too_long(marker), Some(path.len()), "request {}", k);
            } else {
                prop_assert_eq!(target.as_bytes(), &path[..], "request {}", k);
            }
        }
    }
}
