//! HPACK's Huffman code (RFC 7541, section 5.2 and Appendix B), as far as the guard needs it: how
//! many octets a string decodes to, and whether h2 would take it, without writing them out.

use std::sync::OnceLock;

/// Code lengths of HPACK's Huffman code, symbols 0 to 256 (EOS). The code is canonical, so the
/// lengths define it.
pub(super) const LENGTHS: [u8; 257] = [
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

const EOS: u16 = 256;
/// The code tree's inner nodes (one fewer than its 257 leaves), the root first: the states of a
/// walk through a string.
const STATES: usize = 256;
/// In a step: a symbol ended within the nibble (at most one can: no code is shorter than 5 bits).
const SYMBOL: u16 = 0x100;
/// In a step: EOS ended within the nibble, which RFC 7541 forbids in a string.
const INVALID: u16 = 0x200;
/// In the tree: a leaf, with its symbol in the low bits.
const LEAF: u16 = 0x8000;

/// The code walked four bits at a time: half the table lookups of a walk byte by byte would be
/// 128 KiB of table, bit by bit eight times as many steps.
struct Walk {
    /// Per state and nibble: the next state, and [`SYMBOL`] or [`INVALID`]. Indexed by a `u8`
    /// and a nibble, so without bounds checks.
    step: [[u16; 16]; STATES],
    /// Whether a string may end in the state: its padding is the start of EOS (all ones), and
    /// shorter than 8 bits.
    end: [bool; STATES],
}

fn walk() -> &'static Walk {
    static WALK: OnceLock<Walk> = OnceLock::new();
    WALK.get_or_init(build)
}

fn build() -> Walk {
    let mut order: Vec<u16> = (0..=EOS).collect();
    order.sort_by_key(|&s| (LENGTHS[usize::from(s)], s));
    // Inner nodes: their children (0 is the root, never a child, so "none yet"), and per node its
    // depth and whether the path to it is all ones.
    let mut tree: Vec<[u16; 2]> = vec![[0, 0]];
    let mut ones: Vec<(u8, bool)> = vec![(0, true)];
    let (mut code, mut prev) = (0u32, LENGTHS[usize::from(order[0])]);
    for (n, &sym) in order.iter().enumerate() {
        let len = LENGTHS[usize::from(sym)];
        if n > 0 {
            code = (code + 1) << (len - prev);
        }
        prev = len;
        let mut node = 0usize;
        for shift in (1..len).rev() {
            let bit = ((code >> shift) & 1) as usize;
            if tree[node][bit] == 0 {
                tree.push([0, 0]);
                let (depth, all_ones) = ones[node];
                ones.push((depth + 1, all_ones && bit == 1));
                tree[node][bit] = (tree.len() - 1) as u16;
            }
            node = usize::from(tree[node][bit]);
        }
        tree[node][(code & 1) as usize] = LEAF | sym;
    }
    debug_assert_eq!(tree.len(), STATES);
    let mut w = Walk {
        step: [[0; 16]; STATES],
        end: [false; STATES],
    };
    for (state, &(depth, all_ones)) in ones.iter().enumerate() {
        w.end[state] = depth < 8 && all_ones;
        for nibble in 0..16usize {
            let (mut node, mut flags) = (state, 0u16);
            for shift in (0..4).rev() {
                let child = tree[node][(nibble >> shift) & 1];
                if child & LEAF == 0 {
                    node = usize::from(child);
                } else if child & !LEAF == EOS {
                    flags = INVALID;
                    break;
                } else {
                    flags |= SYMBOL;
                    node = 0;
                }
            }
            w.step[state][nibble] = node as u16 | flags;
        }
    }
    w
}

/// How many octets a Huffman-coded string decodes to; `None` when h2 would refuse it (EOS inside,
/// or padding of 8 bits or more, or not all ones).
pub(super) fn decoded_len(data: &[u8]) -> Option<usize> {
    let w = walk();
    let (mut state, mut n) = (0u8, 0usize);
    for &byte in data {
        for nibble in [byte >> 4, byte & 0x0f] {
            let step = w.step[usize::from(state)][usize::from(nibble)];
            if step & INVALID != 0 {
                return None;
            }
            n += usize::from(step & SYMBOL != 0);
            state = step as u8;
        }
    }
    w.end[usize::from(state)].then_some(n)
}
