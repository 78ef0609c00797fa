//! What the HTTP/2 edge guard (`src/server/edge.rs`) costs per request: a client's stream of
//! small GETs (HEADERS frames with a header block as Go's HPACK encoder writes it after the
//! first request: mostly dynamic-table references, a short Huffman-coded path) and the
//! WINDOW_UPDATEs in between, read through the guard and, for the floor, read directly.
//!
//! `cargo bench --bench edge`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use kube_oidc_proxy::server::edge::H2PathGuard;
use tokio::io::AsyncReadExt;

const REQUESTS: u32 = 1000;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// The bytes a client-go connection sends for `REQUESTS` GETs.
fn client_stream() -> Vec<u8> {
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(frame(0x4, 0, 0, &[0, 2, 0, 0, 0, 0, 0, 4, 0, 0x40, 0, 0]));
    out.extend(frame(0x8, 0, 0, &0x3fff_0001u32.to_be_bytes()));
    // :method GET, :scheme https, :authority (dynamic), :path (Huffman, 42 bytes), then
    // authorization, user-agent, accept, accept-encoding as dynamic-table references.
    let mut block = vec![0x82, 0x87, 0xbe, 0x04, 0x80 | 30];
    block.extend(std::iter::repeat_n(0x63u8, 30));
    block.extend_from_slice(&[0xbf, 0xc0, 0xc1, 0xc2, 0xc3]);
    for n in 0..REQUESTS {
        out.extend(frame(0x1, 0x5, 1 + 2 * n, &block));
        if n % 10 == 9 {
            out.extend(frame(0x8, 0, 0, &65_535u32.to_be_bytes()));
        }
    }
    out
}

fn bench(c: &mut Criterion) {
    let stream = client_stream();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let mut g = c.benchmark_group("h2_edge_guard");
    g.throughput(criterion::Throughput::Elements(u64::from(REQUESTS)));
    g.bench_function("read_through_guard_per_request", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut guard = H2PathGuard::new(stream.as_slice());
                let mut buf = [0u8; 16 * 1024];
                let mut n = 0;
                loop {
                    let got = guard.read(&mut buf).await.expect("read");
                    if got == 0 {
                        break;
                    }
                    n += got;
                }
                black_box(n)
            })
        })
    });
    g.bench_function("read_directly_per_request", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut r = stream.as_slice();
                let mut buf = [0u8; 16 * 1024];
                let mut n = 0;
                loop {
                    let got = r.read(&mut buf).await.expect("read");
                    if got == 0 {
                        break;
                    }
                    n += got;
                }
                black_box(n)
            })
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
