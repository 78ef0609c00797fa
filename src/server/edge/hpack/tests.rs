use proptest::prelude::*;

use super::super::reference::{self, Decoder, Encoder, huffman_encode};
use super::super::scenario::{self, plan};
use super::super::tests::blocks;
use super::*;

#[test]
fn the_constants_match_the_reference() {
    assert_eq!(huffman_encode(b":path"), HUFFMAN_PATH);
    let names: Vec<&str> = reference::STATIC.iter().map(|e| e.0).collect();
    assert_eq!(names, STATIC_NAMES);
    assert_eq!(scenario::TABLE_LIMIT, TABLE_LIMIT);
    assert_eq!(scenario::MAX_URI_LEN, MAX_URI_LEN);
}

/// The guard's view of the encoder's table.
fn view(enc: &Encoder) -> Vec<Entry> {
    enc.table
        .entries
        .iter()
        .map(|(n, v)| Entry {
            name: n.len() as u16,
            value: v.len() as u16,
            path: n == b":path",
        })
        .collect()
}

fn same_table(table: &Table, enc: &Encoder) -> bool {
    table.entries().copied().collect::<Vec<_>>() == view(enc) && table.max() == enc.table.max
}

#[test]
fn a_size_update_anywhere_is_taken_as_h2_takes_one_at_a_frame_start() {
    // h2 takes a size update at the start of each frame's part of a block, so in the middle of
    // a block too; where it does not, it ends the connection, and the table no longer counts.
    let mut t = Table::default();
    let mut b = vec![0x44, 4];
    b.extend_from_slice(b"/k8s");
    b.push(0x20); // size update to 0: the entry goes
    b.extend_from_slice(&[0x3f, 0xe1, 0x1f]); // and back to 4096
    b.extend_from_slice(&[0x40, 3]);
    b.extend_from_slice(b"x-a");
    b.extend_from_slice(&[1, b'1']);
    assert_eq!(t.scan(&b), Scan::Keep);
    assert_eq!(t.max(), 4096);
    let entries: Vec<Entry> = t.entries().copied().collect();
    assert_eq!(
        entries,
        [Entry {
            name: 3,
            value: 1,
            path: false
        }]
    );
}

#[test]
fn what_h2_ends_the_connection_on_is_invalid() {
    let cases: [&[u8]; 6] = [
        &[0x3f, 0xe2, 0x1f],                               // a size update to 4097
        &[0x0f, 0x2f, 0x01, b'x'],                         // a name index (62) beyond the table
        &[0x04, 0x05, b'/'],                               // a value cut short
        &[0x04, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01], // an integer beyond 28 bits
        &[0x40, 0x83, 0xff, 0xff, 0xff, 0x01, b'x'],       // an invalid Huffman name of a new entry
        &[0x44, 0x81, 0x00],                               // an invalid Huffman value of a new entry
    ];
    for b in cases {
        assert_eq!(Table::default().scan(b), Scan::Invalid, "{b:02x?}");
    }
}

#[test]
fn indexed_fields_and_strings_that_do_not_count_are_not_decoded() {
    // Invalid Huffman in a name and a value that are not new entries, and an indexed field out
    // of the table: h2 refuses them; the guard has no need to look.
    let mut t = Table::default();
    assert_eq!(
        t.scan(&[0x00, 0x81, 0x00, 0x81, 0x00, 0x04, 0x81, 0x00, 0xff, 0x7f]),
        Scan::Keep
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Blocks from the reference encoder, in every representation, one after the other: the
    /// guard's table is the encoder's after each, the blocks with a `:path` too long and only
    /// those are rewritten, and a decoder reading the rewrite holds the encoder's table too.
    #[test]
    fn the_table_follows_the_encoders_and_exactly_long_paths_are_rewritten(blocks in blocks()) {
        let mut enc = Encoder::new(TABLE_LIMIT);
        let mut dec = Decoder::new(TABLE_LIMIT);
        let mut table = Table::default();
        for (k, ops) in blocks.iter().enumerate() {
            let p = plan(&mut enc, ops);
            let out = match table.scan(&p.bytes) {
                Scan::Keep => {
                    prop_assert!(p.long.is_empty(), "block {} kept with a long path", k);
                    p.bytes.clone()
                }
                Scan::Rewrite(len, out) => {
                    prop_assert_eq!(Some(&len), p.long.first(), "block {}", k);
                    out
                }
                Scan::Invalid => return Err(TestCaseError::fail(format!("block {k} invalid"))),
            };
            prop_assert!(same_table(&table, &enc), "block {}: {:?}", k, table);
            let fields = dec.decode(&out, TABLE_LIMIT).expect("HPACK");
            prop_assert_eq!(fields.len(), p.fields.len());
            let mut long = p.long.iter();
            for (want, got) in p.fields.iter().zip(&fields) {
                if want.0 == b":path" && want.1.len() > MAX_URI_LEN {
                    let marker = format!("{URI_TOO_LONG_PATH}{}", long.next().expect("long"));
                    prop_assert!(got.1.starts_with(marker.as_bytes()));
                } else {
                    prop_assert!(want == got);
                }
            }
            prop_assert!(dec.table == p.table, "block {}", k);
        }
    }

    /// The guard's Huffman lengths are the reference decoder's, valid or not.
    #[test]
    fn huffman_lengths_match_the_reference(
        text in prop::collection::vec(any::<u8>(), 0..64),
        noise in prop::collection::vec(any::<u8>(), 0..16),
        cut in 0..8usize,
    ) {
        let coded = huffman_encode(&text);
        prop_assert_eq!(huffman::decoded_len(&coded), Some(text.len()));
        let mut bad = coded.clone();
        bad.truncate(bad.len().saturating_sub(cut));
        bad.extend_from_slice(&noise);
        prop_assert_eq!(huffman::decoded_len(&bad), reference::huffman_decode(&bad).map(|d| d.len()));
    }
}
