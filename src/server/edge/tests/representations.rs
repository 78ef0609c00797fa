//! Every HPACK representation of an over-long `:path` gets the marker, through the guard as a
//! connection's frames; fields that only look like one do not.

use super::super::reference::{Encoder, Field, Indexing, NameAs};
use super::super::scenario::{Planned, TABLE_LIMIT, check_stream, run_stream};
use super::super::{URI_TOO_LONG_PATH, guarded};
use super::long_path;

use Indexing::{Incremental, Never, Without};

const INDEXINGS: [Indexing; 3] = [Incremental, Without, Never];

/// A client's connection, block by block, with the reference encoder.
struct Client {
    enc: Encoder,
    blocks: Vec<Planned>,
}

impl Client {
    fn new() -> Self {
        Client {
            enc: Encoder::new(TABLE_LIMIT),
            blocks: Vec::new(),
        }
    }

    fn block(&mut self, write: impl FnOnce(&mut Encoder, &mut Vec<u8>) -> Vec<Field>) -> &mut Self {
        let mut bytes = Vec::new();
        let fields = write(&mut self.enc, &mut bytes);
        self.blocks.push(Planned::new(bytes, fields, &self.enc.table));
        self
    }

    /// One literal in a block of its own.
    fn field(&mut self, name: &str, value: &[u8], name_as: NameAs, indexing: Indexing) -> &mut Self {
        self.block(|e, b| vec![e.literal(b, (name.as_bytes(), value), name_as, false, indexing)])
    }

    /// Whether the guard changed each block, the same whatever the frame and read sizes; every
    /// block checked by `run_stream` on the way.
    fn changed(&self) -> Vec<bool> {
        let guard = |input: &[u8], chunk: usize| guarded(input, chunk);
        let a = run_stream(&self.blocks, 16_384, 65_536, &guard, URI_TOO_LONG_PATH);
        let b = run_stream(&self.blocks, 777, 5, &guard, URI_TOO_LONG_PATH);
        assert_eq!(a, b, "frame and read sizes change nothing");
        a
    }
}

fn long() -> Vec<u8> {
    long_path(70_000)
}

#[test]
fn a_static_path_name_index_either_entry() {
    for index in [4, 5] {
        for indexing in INDEXINGS {
            for huffman in [false, true] {
                let mut c = Client::new();
                c.block(|e, b| {
                    vec![e.literal(b, (b":path", &long()), NameAs::Index(index), huffman, indexing)]
                });
                c.field(":path", b"/k8s/api", NameAs::Index(index), indexing);
                assert_eq!(c.changed(), [true, false], "{index} {indexing:?} {huffman}");
            }
        }
    }
}

#[test]
fn a_literal_path_name_plain_or_huffman() {
    for name_as in [NameAs::Plain, NameAs::Huffman] {
        for indexing in INDEXINGS {
            for huffman in [false, true] {
                let mut c = Client::new();
                c.block(|e, b| vec![e.literal(b, (b":path", &long()), name_as, huffman, indexing)]);
                c.field(":path", b"/k8s/api", name_as, indexing);
                assert_eq!(c.changed(), [true, false], "{name_as:?} {indexing:?} {huffman}");
            }
        }
    }
}

#[test]
fn a_dynamic_name_index_to_an_entry_named_path() {
    for inserted_as in [NameAs::Index(4), NameAs::Plain, NameAs::Huffman] {
        for indexing in INDEXINGS {
            let mut c = Client::new();
            c.field(":path", b"/k8s/api/v1/pods", inserted_as, Incremental);
            c.field(":path", &long(), NameAs::Index(62), indexing);
            assert_eq!(c.changed(), [false, true], "{inserted_as:?} {indexing:?}");
        }
    }
}

#[test]
fn a_dynamic_name_index_after_newer_entries_moved_it() {
    let mut c = Client::new();
    c.field(":path", b"/k8s/api", NameAs::Index(4), Incremental);
    c.field("x-a", b"1", NameAs::Plain, Incremental);
    c.field("user-agent", b"kubectl", NameAs::Index(58), Incremental);
    // :path is now the third entry, 64; 62 and 63 are not :path.
    c.field(":path", &long(), NameAs::Index(64), Without);
    c.field("x-a", &long(), NameAs::Index(63), Without);
    c.field("user-agent", &long(), NameAs::Index(62), Never);
    assert_eq!(c.changed(), [false, false, false, true, false, false]);
}

#[test]
fn a_dynamic_name_index_whose_path_entry_was_evicted() {
    let mut c = Client::new();
    c.field(":path", b"/k8s/api", NameAs::Index(4), Incremental);
    // 3 × (3 + 1330 + 32) = 4095: the :path entry (45), the oldest, goes, and 64 where it was
    // is the oldest x-a.
    for _ in 0..3 {
        c.field("x-a", &[b'v'; 1330], NameAs::Plain, Incremental);
    }
    assert!(!c.enc.table.entries.iter().any(|e| e.0 == b":path"));
    c.field("x-a", &long(), NameAs::Index(64), Without);
    // A :path added now evicts the oldest x-a, and is found by its index.
    c.field(":path", b"/k8s/api/v1", NameAs::Plain, Incremental);
    c.field(":path", &long(), NameAs::Index(62), Never);
    assert_eq!(c.changed(), [false, false, false, false, false, false, true]);
}

#[test]
fn an_entry_that_fills_the_table_exactly_evicts_nothing() {
    let mut c = Client::new();
    c.field(":path", b"/k8s", NameAs::Index(4), Incremental);
    // 41 + (3 + 4020 + 32) = 4096.
    c.field("x-a", &[b'v'; 4020], NameAs::Plain, Incremental);
    c.field(":path", &long(), NameAs::Index(63), Without);
    // Too large for what is left: both older entries go, and 62 is this x-a.
    c.field("x-a", &[b'v'; 4021 - 41], NameAs::Plain, Incremental);
    c.field("x-a", &long(), NameAs::Index(62), Without);
    assert_eq!(c.changed(), [false, false, true, false, false]);
}

#[test]
fn a_table_size_update_evicts_and_bounds_new_entries() {
    let mut c = Client::new();
    c.field(":path", b"/k8s/api", NameAs::Index(4), Incremental);
    // Down to 0 (the :path entry goes), an insert that is not kept, back up, an insert of x-a:
    // index 62 is x-a, not :path.
    c.block(|e, b| {
        e.size_update(b, 0);
        vec![e.literal(b, (b":path", b"/k8s/a"), NameAs::Plain, false, Incremental)]
    });
    c.block(|e, b| {
        e.size_update(b, 100);
        e.size_update(b, TABLE_LIMIT);
        vec![e.literal(b, (b"x-a", b"1"), NameAs::Plain, false, Incremental)]
    });
    c.field("x-a", &long(), NameAs::Index(62), Without);
    // A table of 50 bytes keeps ":path: /k8s" (5 + 4 + 32), then the long path by its index.
    c.block(|e, b| {
        e.size_update(b, 50);
        vec![e.literal(b, (b":path", b"/k8s"), NameAs::Huffman, true, Incremental)]
    });
    c.field(":path", &long(), NameAs::Index(62), Incremental);
    assert_eq!(c.changed(), [false, false, false, false, false, true]);
}

#[test]
fn after_a_long_path_added_to_the_table_both_tables_are_empty() {
    let mut c = Client::new();
    c.field("x-a", b"1", NameAs::Plain, Incremental);
    c.field(":path", b"/k8s/api", NameAs::Index(4), Incremental);
    // Added with its name from the dynamic table: the client's table empties.
    c.field(":path", &long(), NameAs::Index(62), Incremental);
    assert!(c.enc.table.entries.is_empty());
    c.field(":path", b"/k8s/api/v1", NameAs::Huffman, Incremental);
    c.field(":path", &long(), NameAs::Index(62), Without);
    assert_eq!(c.changed(), [false, false, true, false, true]);
}

#[test]
fn every_long_path_of_a_block_and_nothing_else_changes() {
    let mut c = Client::new();
    c.field(":path", b"/k8s/api", NameAs::Plain, Incremental);
    c.block(|e, b| {
        vec![
            e.indexed(b, 2),
            e.literal(b, (b":path", &long()), NameAs::Index(62), true, Without),
            e.literal(b, (b":authority", b"k8s"), NameAs::Huffman, true, Incremental),
            e.literal(b, (b":path", &long_path(65_535)), NameAs::Huffman, false, Never),
            e.indexed(b, 62),
            e.literal(b, (b"x-a", &long()), NameAs::Plain, false, Incremental),
            e.literal(b, (b":path", b"/"), NameAs::Index(4), false, Incremental),
        ]
    });
    c.field(":path", &long(), NameAs::Index(62), Never);
    assert_eq!(c.changed(), [false, true, true]);
}

#[test]
fn long_values_of_other_names_are_left_alone() {
    let mut c = Client::new();
    for name_as in [NameAs::Plain, NameAs::Huffman, NameAs::Index(1)] {
        for indexing in INDEXINGS {
            c.field(":authority", &long(), name_as, indexing);
        }
    }
    c.field(":path", &long_path(65_534), NameAs::Huffman, Incremental);
    assert_eq!(c.changed(), [false; 10]);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 48, ..Default::default() })]

    /// Random blocks in every representation, in frames of any size h2 takes (from 512 bytes,
    /// so that no block grows past what the guard gathers), read in chunks of any size: exactly
    /// the blocks with a `:path` too long change, and h2's table stays the client's.
    #[test]
    fn any_blocks_through_the_guard(blocks in super::blocks(), frame_max in 512..=16_384usize, chunk in 1..70_000usize) {
        let guard = |input: &[u8], chunk: usize| guarded(input, chunk);
        check_stream(&blocks, frame_max, chunk, &guard, URI_TOO_LONG_PATH);
    }
}
