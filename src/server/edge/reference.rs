//! An HPACK encoder and decoder (RFC 7541) written apart from the guard's HPACK code, for its
//! tests and its fuzz target: the encoder writes whichever representation it is told to, with its
//! own integers, strings, Huffman code and dynamic table, and the decoder's table is the view the
//! guard's must agree with. Only std, so the fuzz crate includes this file as it is.

use std::collections::VecDeque;

/// The static table (Appendix A).
pub const STATIC: [(&str, &str); 61] = [
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
];

/// Huffman code lengths (Appendix B), symbols 0 to 256; the code is canonical.
const CODE_LENGTHS: [u8; 257] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 30, 28, 28, 28,
    28, 28, 28, 28, 28, 28, 6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5, 5, 6, 6, 6, 6, 6,
    6, 6, 7, 8, 15, 6, 12, 10, 13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 8, 7,
    8, 13, 19, 13, 14, 6, 15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, 6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7,
    15, 11, 14, 13, 28, 20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, 24, 24, 22, 23, 24,
    23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, 22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23,
    23, 21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23, 26, 26, 20, 19, 22, 23, 22, 25, 26,
    26, 26, 27, 27, 26, 24, 25, 19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, 20, 24, 20,
    21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, 26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27,
    27, 27, 26, 30,
];

/// Each symbol's (code, length).
pub fn codes() -> Vec<(u32, u8)> {
    let mut order: Vec<usize> = (0..257).collect();
    order.sort_by_key(|&s| (CODE_LENGTHS[s], s));
    let mut codes = vec![(0u32, 0u8); 257];
    let (mut code, mut prev) = (0u32, CODE_LENGTHS[order[0]]);
    for (n, &s) in order.iter().enumerate() {
        let len = CODE_LENGTHS[s];
        if n > 0 {
            code = (code + 1) << (len - prev);
        }
        prev = len;
        codes[s] = (code, len);
    }
    codes
}

pub fn huffman_encode(s: &[u8]) -> Vec<u8> {
    let codes = codes();
    let (mut acc, mut bits, mut out) = (0u64, 0u32, Vec::new());
    for &b in s {
        let (code, len) = codes[usize::from(b)];
        acc = (acc << len) | u64::from(code);
        bits += u32::from(len);
        while bits >= 8 {
            out.push((acc >> (bits - 8)) as u8);
            bits -= 8;
        }
    }
    if bits > 0 {
        out.push(((acc << (8 - bits)) as u8) | ((1u8 << (8 - bits)) - 1));
    }
    out
}

/// Decodes bit by bit: a canonical code's codes of one length are consecutive, in symbol order.
pub fn huffman_decode(data: &[u8]) -> Option<Vec<u8>> {
    static CANONICAL: std::sync::OnceLock<(Vec<usize>, [u32; 31], [usize; 31])> = std::sync::OnceLock::new();
    let (order, first, base) = CANONICAL.get_or_init(|| {
        let mut order: Vec<usize> = (0..257).collect();
        order.sort_by_key(|&s| (CODE_LENGTHS[s], s));
        let codes = codes();
        let (mut first, mut base) = ([u32::MAX; 31], [0usize; 31]);
        for (n, &s) in order.iter().enumerate().rev() {
            let len = usize::from(codes[s].1);
            (first[len], base[len]) = (codes[s].0, n);
        }
        (order, first, base)
    });
    let (mut out, mut code, mut len) = (Vec::new(), 0u32, 0usize);
    for bit in data.iter().flat_map(|b| (0..8).rev().map(move |i| (b >> i) & 1)) {
        code = (code << 1) | u32::from(bit);
        len += 1;
        let n = base[len].wrapping_add(code.wrapping_sub(first[len]) as usize);
        if code >= first[len] && order.get(n).is_some_and(|&s| usize::from(CODE_LENGTHS[s]) == len) {
            if order[n] == 256 {
                return None;
            }
            out.push(order[n] as u8);
            (code, len) = (0, 0);
        } else if len >= 30 {
            return None;
        }
    }
    (len < 8 && code.count_ones() as usize == len).then_some(out)
}

pub fn push_int(out: &mut Vec<u8>, v: usize, n: u32, high: u8) {
    let max = (1usize << n) - 1;
    if v < max {
        out.push(high | v as u8);
    } else {
        out.push(high | max as u8);
        let mut rest = v - max;
        loop {
            let low = (rest % 128) as u8;
            rest /= 128;
            if rest == 0 {
                out.push(low);
                break;
            }
            out.push(low | 128);
        }
    }
}

pub fn push_string(out: &mut Vec<u8>, s: &[u8], huffman: bool) {
    if huffman {
        let coded = huffman_encode(s);
        push_int(out, coded.len(), 7, 0x80);
        out.extend_from_slice(&coded);
    } else {
        push_int(out, s.len(), 7, 0);
        out.extend_from_slice(s);
    }
}

fn read_int(b: &[u8], i: &mut usize, n: u32) -> Option<usize> {
    let max = (1usize << n) - 1;
    let first = usize::from(*b.get(*i)?) & max;
    *i += 1;
    if first < max {
        return Some(first);
    }
    let (mut v, mut m) = (first, 1usize);
    for _ in 0..4 {
        let byte = *b.get(*i)?;
        *i += 1;
        v += usize::from(byte % 128) * m;
        if byte < 128 {
            return Some(v);
        }
        m *= 128;
    }
    None
}

fn read_string(b: &[u8], i: &mut usize) -> Option<Vec<u8>> {
    let huffman = *b.get(*i)? >= 0x80;
    let len = read_int(b, i, 7)?;
    let raw = b.get(*i..*i + len)?;
    *i += len;
    if huffman {
        huffman_decode(raw)
    } else {
        Some(raw.to_vec())
    }
}

pub type Field = (Vec<u8>, Vec<u8>);

/// A dynamic table with its static table in front, indexed from 1.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    pub entries: VecDeque<Field>,
    pub size: usize,
    pub max: usize,
}

impl Table {
    pub fn new(max: usize) -> Self {
        Table {
            entries: VecDeque::new(),
            size: 0,
            max,
        }
    }

    pub fn get(&self, index: usize) -> Option<Field> {
        if (1..=61).contains(&index) {
            let (n, v) = STATIC[index - 1];
            return Some((n.as_bytes().to_vec(), v.as_bytes().to_vec()));
        }
        self.entries.get(index.checked_sub(62)?).cloned()
    }

    /// Every index whose entry has `name`.
    pub fn indices_of(&self, name: &[u8]) -> (Vec<usize>, Vec<usize>) {
        let stat = (1..=61).filter(|&i| STATIC[i - 1].0.as_bytes() == name).collect();
        let dynamic = (0..self.entries.len())
            .filter(|&i| self.entries[i].0 == name)
            .map(|i| i + 62)
            .collect();
        (stat, dynamic)
    }

    pub fn len(&self) -> usize {
        61 + self.entries.len()
    }

    fn shrink_to(&mut self, limit: usize) {
        while self.size > limit {
            let Some((n, v)) = self.entries.pop_back() else {
                break;
            };
            self.size -= n.len() + v.len() + 32;
        }
    }

    pub fn set_max(&mut self, max: usize) {
        self.max = max;
        self.shrink_to(max);
    }

    pub fn insert(&mut self, field: Field) {
        let size = field.0.len() + field.1.len() + 32;
        if size > self.max {
            self.shrink_to(0);
            return;
        }
        self.shrink_to(self.max - size);
        self.size += size;
        self.entries.push_front(field);
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Indexing {
    Incremental,
    Without,
    Never,
}

/// How a literal's name is written: an index into the static or dynamic table, or a string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameAs {
    Index(usize),
    Plain,
    Huffman,
}

pub struct Encoder {
    pub table: Table,
}

impl Encoder {
    pub fn new(max: usize) -> Self {
        Encoder {
            table: Table::new(max),
        }
    }

    pub fn size_update(&mut self, out: &mut Vec<u8>, max: usize) {
        push_int(out, max, 5, 0x20);
        self.table.set_max(max);
    }

    /// An indexed field; its name and value.
    pub fn indexed(&mut self, out: &mut Vec<u8>, index: usize) -> Field {
        push_int(out, index, 7, 0x80);
        self.table.get(index).expect("an index in the table")
    }

    pub fn literal(
        &mut self,
        out: &mut Vec<u8>,
        (name, value): (&[u8], &[u8]),
        name_as: NameAs,
        huffman_value: bool,
        indexing: Indexing,
    ) -> Field {
        let (high, prefix) = match indexing {
            Indexing::Incremental => (0x40, 6),
            Indexing::Without => (0x00, 4),
            Indexing::Never => (0x10, 4),
        };
        match name_as {
            NameAs::Index(i) => {
                assert_eq!(self.table.get(i).map(|f| f.0), Some(name.to_vec()), "index {i}");
                push_int(out, i, prefix, high);
            }
            NameAs::Plain | NameAs::Huffman => {
                out.push(high);
                push_string(out, name, name_as == NameAs::Huffman);
            }
        }
        push_string(out, value, huffman_value);
        let field = (name.to_vec(), value.to_vec());
        if indexing == Indexing::Incremental {
            self.table.insert(field.clone());
        }
        field
    }
}

pub struct Decoder {
    pub table: Table,
}

impl Decoder {
    pub fn new(max: usize) -> Self {
        Decoder {
            table: Table::new(max),
        }
    }

    /// The fields of a whole block; `None` when it is not valid HPACK. Table size updates are
    /// taken before the first field only, and up to `limit`.
    pub fn decode(&mut self, block: &[u8], limit: usize) -> Option<Vec<Field>> {
        let (mut i, mut fields) = (0, Vec::new());
        while let Some(&b) = block.get(i) {
            if b >= 0x80 {
                let index = read_int(block, &mut i, 7)?;
                fields.push(self.table.get(index)?);
            } else if b & 0xe0 == 0x20 {
                let max = read_int(block, &mut i, 5)?;
                if !fields.is_empty() || max > limit {
                    return None;
                }
                self.table.set_max(max);
            } else {
                let incremental = b >= 0x40;
                let index = read_int(block, &mut i, if incremental { 6 } else { 4 })?;
                let name = match index {
                    0 => read_string(block, &mut i)?,
                    _ => self.table.get(index)?.0,
                };
                let value = read_string(block, &mut i)?;
                if incremental {
                    self.table.insert((name.clone(), value.clone()));
                }
                fields.push((name, value));
            }
        }
        Some(fields)
    }
}
