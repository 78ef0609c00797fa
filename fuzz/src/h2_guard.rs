//! The HTTP/2 edge guard on whatever a client sends after the connection preface: it never
//! panics, always ends, and changes nothing unless it put its marker path in (a `:path` too
//! long for the URI type). Then the same input read as header blocks for the reference HPACK
//! encoder (every representation, table size updates, eviction): exactly the blocks with a
//! `:path` too long change, and h2's table stays the client's.

use kube_oidc_proxy::server::edge::{URI_TOO_LONG_PATH, guarded};

// The proxy's own test encoder and scenarios, written apart from the guard's HPACK code.
#[allow(dead_code)]
#[path = "../../src/server/edge/reference.rs"]
mod reference;
#[allow(dead_code)]
#[path = "../../src/server/edge/scenario.rs"]
mod scenario;

use scenario::{Op, check_stream};

const MAX_OPS: usize = 32;
const MAX_LONG: usize = 2;

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
    let (blocks, frame_max, chunk) = scenario_of(data);
    check_stream(
        &blocks,
        frame_max,
        chunk,
        &|input, chunk| guarded(input, chunk),
        URI_TOO_LONG_PATH,
    );
}

/// Reads bytes as header blocks of encoder operations, a frame size and a read size. At most
/// [`MAX_OPS`] operations, [`MAX_LONG`] of them values of 64 KiB or more, and frames and reads
/// of 1 KiB or more: a block stays far within the 2 MiB the guard gathers (beyond, h2 ends the
/// connection), and an input takes milliseconds, not seconds.
fn scenario_of(data: &[u8]) -> (Vec<Vec<Op>>, usize, usize) {
    let mut b = data.iter().copied();
    let mut next = move || b.next();
    let frame_max = 1024 + usize::from(next().unwrap_or(255)) * 60;
    let chunk = 1024 + usize::from(next().unwrap_or(255)) * 97;
    let mut blocks = vec![Vec::new()];
    let (mut ops, mut long) = (0, 0);
    while let Some(x) = next().filter(|_| ops < MAX_OPS) {
        let mut byte = || next().unwrap_or(0);
        let op = match x % 8 {
            0 if blocks.len() < 16 => {
                blocks.push(Vec::new());
                continue;
            }
            0 => continue,
            1 => Op::Resize(u16::from_be_bytes([byte(), byte()])),
            2 => Op::Indexed(u16::from(byte())),
            _ => {
                let (name, class, n, fill) = (byte(), byte(), u32::from(byte()), byte());
                let class = if class % 4 >= 2 && long < MAX_LONG {
                    class
                } else {
                    class % 2
                };
                let len = match class % 4 {
                    0 => n % 48,
                    1 => 1000 + n * 13,
                    2 => 65_533 + n % 4,
                    _ => 69_990 + n,
                };
                long += usize::from(len > 65_000);
                Op::Literal {
                    name,
                    len,
                    fill,
                    name_as: (x >> 3) & 3,
                    huffman: x & 0x20 != 0,
                    indexing: x >> 6,
                }
            }
        };
        if let Some(block) = blocks.last_mut() {
            block.push(op);
            ops += 1;
        }
    }
    (blocks, frame_max, chunk)
}
