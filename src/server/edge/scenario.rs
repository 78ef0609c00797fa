//! Header blocks in every HPACK representation, for the guard's property tests and its fuzz
//! target: operations (chosen at random) become blocks through the reference encoder, and
//! [`check_stream`] runs them through the guard as a connection's frames and checks what comes
//! out. Only std, so the fuzz crate includes this file as it is.

use super::reference::{Decoder, Encoder, Field, Indexing, NameAs, Table};

/// The dynamic table size h2 takes (SETTINGS_HEADER_TABLE_SIZE's default).
pub const TABLE_LIMIT: usize = 4096;
/// The longest request target the `http` crate's URI type holds.
pub const MAX_URI_LEN: usize = 65_534;

/// The names a literal may have: `:path` most of all, static table names, and others.
pub const NAMES: [&str; 6] = [
    ":path",
    ":path",
    ":authority",
    "user-agent",
    "x-a",
    "x-some-longer-name",
];

#[derive(Clone, Debug)]
pub enum Op {
    /// A table size update (`n` modulo [`TABLE_LIMIT`] + 1), written at the block's start, where
    /// h2 always takes one.
    Resize(u16),
    /// An indexed field: index 1 + `n` modulo the table's length.
    Indexed(u16),
    Literal {
        /// Into [`NAMES`].
        name: u8,
        len: u32,
        /// Picks the value's characters and, among several, the index of the name.
        fill: u8,
        /// 0: the name indexed in the static table, 1: in the dynamic table (each when there is
        /// one, else a literal name), 2: a literal name, 3: a Huffman-coded literal name.
        name_as: u8,
        huffman: bool,
        /// 0: with incremental indexing, 1: without indexing, 2: never indexed.
        indexing: u8,
    },
}

/// A block as the client sends it: its bytes, what it decodes to, the decoded lengths of its
/// `:path` fields too long, and the table after it.
pub struct Planned {
    pub bytes: Vec<u8>,
    pub fields: Vec<Field>,
    pub long: Vec<usize>,
    pub table: Table,
}

/// A value of `len` bytes; a path for `:path`.
pub fn value(path: bool, len: usize, fill: u8) -> Vec<u8> {
    const CHARS: [&[u8]; 4] = [
        b"0123456789",
        b"abcdefghijklmnopqrstuvwxyz",
        b"%2C()+=&~",
        b"v0,1",
    ];
    let chars = CHARS[usize::from(fill) % CHARS.len()];
    let mut v: Vec<u8> = if path {
        b"/k8s/api/v1/pods?q=".to_vec()
    } else {
        Vec::new()
    };
    v.truncate(len);
    let mut n = usize::from(fill);
    while v.len() < len {
        v.push(chars[n % chars.len()]);
        n = n.wrapping_mul(7).wrapping_add(3);
    }
    v
}

pub fn plan(enc: &mut Encoder, ops: &[Op]) -> Planned {
    let mut bytes = Vec::new();
    for op in ops {
        if let Op::Resize(n) = op {
            enc.size_update(&mut bytes, usize::from(*n) % (TABLE_LIMIT + 1));
        }
    }
    let mut fields = Vec::new();
    for op in ops {
        match *op {
            Op::Resize(_) => {}
            Op::Indexed(n) => {
                let index = 1 + usize::from(n) % enc.table.len();
                fields.push(enc.indexed(&mut bytes, index));
            }
            Op::Literal {
                name,
                len,
                fill,
                name_as,
                huffman,
                indexing,
            } => {
                let name = NAMES[usize::from(name) % NAMES.len()].as_bytes();
                let path = name == b":path";
                let value = value(path, len as usize, fill);
                let (stat, dynamic) = enc.table.indices_of(name);
                let pick = |v: &[usize]| v.get(usize::from(fill) % v.len().max(1)).copied();
                let name_as = match name_as % 4 {
                    0 => pick(&stat).map_or(NameAs::Plain, NameAs::Index),
                    1 => pick(&dynamic).map_or(NameAs::Huffman, NameAs::Index),
                    2 => NameAs::Plain,
                    _ => NameAs::Huffman,
                };
                let indexing =
                    [Indexing::Incremental, Indexing::Without, Indexing::Never][usize::from(indexing) % 3];
                fields.push(enc.literal(&mut bytes, (name, &value), name_as, huffman, indexing));
            }
        }
    }
    Planned::new(bytes, fields, &enc.table)
}

impl Planned {
    pub fn new(bytes: Vec<u8>, fields: Vec<Field>, table: &Table) -> Self {
        let long = fields
            .iter()
            .filter(|(n, v)| n == b":path" && v.len() > MAX_URI_LEN)
            .map(|(_, v)| v.len())
            .collect();
        Planned {
            bytes,
            fields,
            long,
            table: table.clone(),
        }
    }
}

pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = payload.len();
    out.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}

/// HEADERS (END_STREAM) and CONTINUATIONs of at most `max` octets carrying `block` (h2 takes
/// up to 16 KiB).
pub fn header_frames(out: &mut Vec<u8>, stream: u32, block: &[u8], max: usize) {
    let chunks: Vec<&[u8]> = if block.is_empty() {
        vec![block]
    } else {
        block.chunks(max.max(1)).collect()
    };
    for (n, c) in chunks.iter().enumerate() {
        let end = if n + 1 == chunks.len() { 0x4 } else { 0 };
        let (kind, flags) = if n == 0 { (0x1, 0x1 | end) } else { (0x9, end) };
        frame(out, kind, flags, stream, c);
    }
}

/// The blocks of a stream of HEADERS and CONTINUATIONs: (stream, the frames as they are,
/// the fragments joined).
fn blocks_of(mut b: &[u8]) -> Vec<(u32, Vec<u8>, Vec<u8>)> {
    let mut out: Vec<(u32, Vec<u8>, Vec<u8>)> = Vec::new();
    let mut open = false;
    while !b.is_empty() {
        assert!(b.len() >= 9, "a frame header cut short");
        let len = (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2]);
        let (kind, flags) = (b[3], b[4]);
        let stream = u32::from_be_bytes([b[5], b[6], b[7], b[8]]);
        let whole = b.get(..9 + len).expect("a frame cut short");
        assert_eq!(flags & 0x28, 0, "no padding or priority in what the test sends");
        if open {
            assert_eq!(
                (kind, stream),
                (0x9, out.last().map_or(0, |l| l.0)),
                "a CONTINUATION"
            );
        } else {
            assert_eq!(kind, 0x1, "a HEADERS frame");
            out.push((stream, Vec::new(), Vec::new()));
        }
        let last = out.last_mut().expect("a block");
        last.1.extend_from_slice(whole);
        last.2.extend_from_slice(&whole[9..]);
        open = flags & 0x4 == 0;
        b = &b[9 + len..];
    }
    assert!(!open, "a block without END_HEADERS");
    out
}

/// Sends `blocks` as one connection's requests (frames of at most `frame_max` octets) through
/// `guard` (read `chunk` octets at a time), then checks that exactly the blocks with a `:path`
/// too long changed, each such `:path` into the marker with its decoded length and the rest of
/// the block as it was, and that a decoder reading the guard's output holds the client's table
/// after every block.
pub fn check_stream(
    blocks: &[Vec<Op>],
    frame_max: usize,
    chunk: usize,
    guard: &dyn Fn(&[u8], usize) -> Vec<u8>,
    marker: &str,
) {
    let mut enc = Encoder::new(TABLE_LIMIT);
    let planned: Vec<Planned> = blocks.iter().map(|ops| plan(&mut enc, ops)).collect();
    run_stream(&planned, frame_max, chunk, guard, marker);
}

/// [`check_stream`] for blocks already encoded; for each block, whether the guard changed it.
pub fn run_stream(
    planned: &[Planned],
    frame_max: usize,
    chunk: usize,
    guard: &dyn Fn(&[u8], usize) -> Vec<u8>,
    marker: &str,
) -> Vec<bool> {
    let mut input = PREFACE.to_vec();
    frame(&mut input, 0x4, 0, 0, &[]);
    let head = input.len();
    for (k, p) in planned.iter().enumerate() {
        header_frames(&mut input, 1 + 2 * k as u32, &p.bytes, frame_max);
    }
    let out = guard(&input, chunk);
    assert_eq!(out.get(..head), Some(&input[..head]), "the preface and SETTINGS");
    let sent = blocks_of(&input[head..]);
    let got = blocks_of(&out[head..]);
    assert_eq!(got.len(), planned.len(), "one block out for each block in");
    let mut dec = Decoder::new(TABLE_LIMIT);
    for (k, p) in planned.iter().enumerate() {
        let (stream, frames, block) = &got[k];
        assert_eq!(*stream, sent[k].0, "block {k}'s stream");
        if p.long.is_empty() {
            assert!(
                *frames == sent[k].1,
                "block {k} has no path too long, yet changed"
            );
        }
        let fields = dec
            .decode(block, TABLE_LIMIT)
            .unwrap_or_else(|| panic!("block {k} out is not HPACK"));
        assert_eq!(fields.len(), p.fields.len(), "block {k}'s fields");
        let mut long = p.long.iter();
        for (n, (want, got)) in p.fields.iter().zip(&fields).enumerate() {
            if want.0 == b":path" && want.1.len() > MAX_URI_LEN {
                let len = long.next().expect("a long path");
                let value = std::str::from_utf8(&got.1).expect("the marker is text");
                let rest = value
                    .strip_prefix(&format!("{marker}{len}"))
                    .unwrap_or_else(|| panic!("block {k} field {n}: {value:.80}"));
                assert!(
                    rest.is_empty() || rest.starts_with('?'),
                    "block {k} field {n}: the marker's length"
                );
                assert_eq!(got.0, b":path", "block {k} field {n}");
            } else {
                assert!(want == got, "block {k} field {n} changed");
            }
        }
        assert!(
            dec.table == p.table,
            "block {k}: h2's table would not be the client's"
        );
    }
    got.iter().zip(&sent).map(|(g, s)| g.1 != s.1).collect()
}
