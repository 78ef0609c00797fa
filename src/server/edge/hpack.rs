//! HPACK (RFC 7541), only as far as finding an over-long `:path` needs, in every representation a
//! client may choose: indexed or literal; with incremental indexing, without, never indexed; with
//! the name indexed in the static or the dynamic table, or a literal name, Huffman-coded or not.
//!
//! A literal's name may be an index into the dynamic table, so the guard keeps the client's
//! dynamic table as h2's decoder holds it, reduced to each entry's name and value lengths and
//! whether its name is `:path`: what eviction (section 4.4) and recognising `:path` need. Strings
//! are never decoded, only measured, and a Huffman-coded one only when its length counts: for a
//! new entry, or a `:path` value that might be too long.
//!
//! Where the guard's decoding and h2's could differ, the guard takes the more lenient view: h2
//! ends the connection on everything the guard takes and h2 does not (a size update in the
//! middle of a block; an invalid name or value; an integer of six octets), so what the guard then
//! holds never counts.

use std::collections::VecDeque;

use super::huffman;
use crate::proxy::size::{MAX_URI_LEN, URI_TOO_LONG_PATH};

/// The dynamic table size h2's decoder allows: SETTINGS_HEADER_TABLE_SIZE's default. hyper never
/// sets it on the server, so h2 advertises none, and a client's size update above this is a
/// connection error.
pub(super) const TABLE_LIMIT: usize = 4096;

// An entry larger than the table is never stored (section 4.4), so the value of an indexed field
// is never a path too long: only literals need looking at.
const _: () = assert!(TABLE_LIMIT < MAX_URI_LEN);

/// What an entry costs in the table beyond its name and value (section 4.1).
const ENTRY_OVERHEAD: usize = 32;

/// An encoded `:path` shorter than this cannot decode to more than [`MAX_URI_LEN`] bytes (no
/// Huffman code is shorter than 5 bits), so it is never decoded.
const MIN_SUSPECT: usize = MAX_URI_LEN * 5 / 8;

/// `:path` Huffman-coded. A string has exactly one Huffman coding h2 takes (the padding must be
/// fewer than 8 one-bits), so comparing the coded bytes is comparing the name.
const HUFFMAN_PATH: [u8; 4] = [0xb9, 0x58, 0xd3, 0x3f];

/// The names of the static table (Appendix A), for the length of a new entry's indexed name.
const STATIC_NAMES: [&str; 61] = [
    ":authority",
    ":method",
    ":method",
    ":path",
    ":path",
    ":scheme",
    ":scheme",
    ":status",
    ":status",
    ":status",
    ":status",
    ":status",
    ":status",
    ":status",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "accept",
    "access-control-allow-origin",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "content-disposition",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-range",
    "content-type",
    "cookie",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "link",
    "location",
    "max-forwards",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "refresh",
    "retry-after",
    "server",
    "set-cookie",
    "strict-transport-security",
    "transfer-encoding",
    "user-agent",
    "vary",
    "via",
    "www-authenticate",
];

/// What the guard keeps of a dynamic table entry. Both lengths are decoded ones, at most
/// [`TABLE_LIMIT`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Entry {
    pub name: u16,
    pub value: u16,
    pub path: bool,
}

impl Entry {
    fn size(&self) -> usize {
        usize::from(self.name) + usize::from(self.value) + ENTRY_OVERHEAD
    }
}

/// A header field's name as far as the guard cares: its decoded length (when it counts) and
/// whether it is `:path`.
struct Name {
    len: usize,
    path: bool,
}

/// What [`Table::scan`] made of a header block.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Scan {
    /// No `:path` too long: the block goes on as it came.
    Keep,
    /// The block with the marker path in place of each `:path` too long, and the first one's
    /// decoded length.
    Rewrite(usize, Vec<u8>),
    /// Not HPACK h2 takes: h2 ends the connection on it, and the guard's table no longer counts.
    Invalid,
}

/// The client's dynamic table as h2's decoder holds it, newest entry first.
#[derive(Debug)]
pub(super) struct Table {
    entries: VecDeque<Entry>,
    size: usize,
    max: usize,
}

impl Default for Table {
    fn default() -> Self {
        Table {
            entries: VecDeque::new(),
            size: 0,
            max: TABLE_LIMIT,
        }
    }
}

impl Table {
    #[cfg(test)]
    pub(super) fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter()
    }

    #[cfg(test)]
    pub(super) fn max(&self) -> usize {
        self.max
    }

    /// Reads a whole header block, keeping the table as h2's decoder will hold it after reading
    /// what the guard passes on (the block itself, or its rewrite).
    pub(super) fn scan(&mut self, block: &[u8]) -> Scan {
        match self.read(block) {
            Some(None) => Scan::Keep,
            Some(Some((len, new))) => Scan::Rewrite(len, new),
            None => Scan::Invalid,
        }
    }

    fn read(&mut self, block: &[u8]) -> Option<Option<(usize, Vec<u8>)>> {
        let mut i = 0;
        // The rewrite so far, and where the block's bytes not yet copied into it start.
        let mut rewrite: Option<(usize, Vec<u8>)> = None;
        let mut kept = 0;
        while let Some(&b) = block.get(i) {
            let start = i;
            if b & 0x80 != 0 {
                // Indexed: never a long path (see TABLE_LIMIT). An index out of the table is h2's
                // connection error.
                int(block, &mut i, 7)?;
                continue;
            }
            if b & 0xe0 == 0x20 {
                let max = int(block, &mut i, 5)?;
                if max > TABLE_LIMIT {
                    return None;
                }
                self.max = max;
                self.evict(0);
                continue;
            }
            let incremental = b & 0x40 != 0;
            let index = int(block, &mut i, if incremental { 6 } else { 4 })?;
            let name = if index == 0 {
                let (huffman, s, e) = string(block, &mut i)?;
                let raw = &block[s..e];
                let path = if huffman {
                    raw == HUFFMAN_PATH
                } else {
                    raw == b":path"
                };
                // The name's length only counts for a new entry.
                let len = if incremental {
                    decoded_len(huffman, raw)?
                } else {
                    0
                };
                Name { len, path }
            } else {
                // Resolved before the new entry evicts anything (section 4.4).
                self.name(index)?
            };
            let (huffman, s, e) = string(block, &mut i)?;
            let value = &block[s..e];
            let long = if name.path {
                too_long(huffman, value)?
            } else {
                None
            };
            if incremental {
                let len = match long {
                    Some(len) => len,
                    None => decoded_len(huffman, value)?,
                };
                self.insert(name.len, len, name.path);
            }
            if let Some(len) = long {
                let (_, out) = rewrite.get_or_insert_with(|| (len, Vec::with_capacity(block.len())));
                out.extend_from_slice(&block[kept..start]);
                push_marker(out, len, incremental);
                kept = i;
            }
        }
        Some(rewrite.map(|(len, mut out)| {
            out.extend_from_slice(&block[kept..]);
            (len, out)
        }))
    }

    /// The name at `index` (1 and up) of the static then the dynamic table.
    fn name(&self, index: usize) -> Option<Name> {
        if let Some(name) = index.checked_sub(1).and_then(|i| STATIC_NAMES.get(i)) {
            return Some(Name {
                len: name.len(),
                path: matches!(index, 4 | 5),
            });
        }
        let e = self.entries.get(index.checked_sub(STATIC_NAMES.len() + 1)?)?;
        Some(Name {
            len: usize::from(e.name),
            path: e.path,
        })
    }

    /// Section 4.4: evicts the oldest entries until the new one fits; one larger than the table
    /// empties it and is not kept.
    fn insert(&mut self, name: usize, value: usize, path: bool) {
        let size = name.saturating_add(value).saturating_add(ENTRY_OVERHEAD);
        self.evict(size);
        if self.size + size <= self.max {
            // Both fit in u16: the entry fits in the table.
            let (name, value) = (name as u16, value as u16);
            self.entries.push_front(Entry { name, value, path });
            self.size += size;
        }
    }

    /// Evicts the oldest entries until `room` more bytes fit, or the table is empty.
    fn evict(&mut self, room: usize) {
        while self.size.saturating_add(room) > self.max {
            match self.entries.pop_back() {
                Some(e) => self.size -= e.size(),
                None => return,
            }
        }
    }
}

/// A string's decoded length; `None` when it is not valid Huffman.
fn decoded_len(huffman: bool, raw: &[u8]) -> Option<usize> {
    if huffman {
        huffman::decoded_len(raw)
    } else {
        Some(raw.len())
    }
}

/// The decoded length of a `:path` value, when it is more than [`MAX_URI_LEN`]; the outer `None`
/// when it is not valid Huffman. Only a value that might be too long is decoded.
fn too_long(huffman: bool, raw: &[u8]) -> Option<Option<usize>> {
    if huffman && raw.len() < MIN_SUSPECT {
        return Some(None);
    }
    let len = decoded_len(huffman, raw)?;
    Some((len > MAX_URI_LEN).then_some(len))
}

/// The marker path for a `:path` of `len` bytes, as a literal with the static `:path` name.
fn push_marker(out: &mut Vec<u8>, len: usize, incremental: bool) {
    let mut value = format!("{URI_TOO_LONG_PATH}{len}");
    if incremental {
        // The client added the long path to its table, which emptied it (an entry larger than
        // the table does): an entry larger than any table empties h2's the same way.
        value.push('?');
        value.extend(std::iter::repeat_n('p', TABLE_LIMIT));
        out.push(0x44);
    } else {
        out.push(0x04);
    }
    push_int(out, value.len(), 7, 0);
    out.extend_from_slice(value.as_bytes());
}

/// An HPACK integer with an `n`-bit prefix at `b[*i]` (section 5.1).
pub(super) fn int(b: &[u8], i: &mut usize, n: u32) -> Option<usize> {
    let mask = (1usize << n) - 1;
    let mut v = usize::from(*b.get(*i)?) & mask;
    *i += 1;
    if v < mask {
        return Some(v);
    }
    let mut shift = 0u32;
    loop {
        let byte = *b.get(*i)?;
        *i += 1;
        v = v.checked_add(usize::from(byte & 0x7f).checked_shl(shift)?)?;
        if byte & 0x80 == 0 {
            return Some(v);
        }
        shift += 7;
        if shift > 28 {
            return None;
        }
    }
}

/// A string literal at `b[*i]` (section 5.2): (huffman, start, end).
pub(super) fn string(b: &[u8], i: &mut usize) -> Option<(bool, usize, usize)> {
    let huffman = *b.get(*i)? & 0x80 != 0;
    let len = int(b, i, 7)?;
    let start = *i;
    let end = start.checked_add(len).filter(|&e| e <= b.len())?;
    *i = end;
    Some((huffman, start, end))
}

pub(super) fn push_int(out: &mut Vec<u8>, v: usize, n: u32, high: u8) {
    let mask = (1usize << n) - 1;
    if v < mask {
        out.push(high | v as u8);
        return;
    }
    out.push(high | mask as u8);
    let mut rest = v - mask;
    while rest >= 0x80 {
        out.push((rest & 0x7f) as u8 | 0x80);
        rest >>= 7;
    }
    out.push(rest as u8);
}

#[cfg(test)]
mod tests;
