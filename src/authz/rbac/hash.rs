//! A fast hasher for the subject index. A decision hashes the user and every group (often 20
//! or more) and SipHash made that most of its cost. Flooding is not a concern here: the keys
//! in the tables come from the cluster's RBAC objects, not from requests; a request only
//! chooses what to look up. The seed is still random per snapshot.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher, RandomState};

pub(super) type FastMap<K, V> = HashMap<K, V, FastState>;

const K: u64 = 0x517c_c1b7_2722_0a95;

/// Builds [`FastHasher`]s from one random seed.
#[derive(Debug, Clone, Copy)]
pub(super) struct FastState {
    seed: u64,
}

impl Default for FastState {
    fn default() -> Self {
        Self {
            seed: RandomState::new().build_hasher().finish(),
        }
    }
}

impl BuildHasher for FastState {
    type Hasher = FastHasher;

    fn build_hasher(&self) -> FastHasher {
        FastHasher { hash: self.seed }
    }
}

/// The Fx hash (rotate, xor, multiply) over 8-byte words.
#[derive(Debug, Clone)]
pub(super) struct FastHasher {
    hash: u64,
}

impl FastHasher {
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(K);
    }
}

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
        // Without the length, "a" and "a\0" would pad to the same word.
        self.add(bytes.len() as u64);
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    fn finish(&self) -> u64 {
        // Fold the high bits down: hashbrown takes its control byte from the top seven bits and
        // its bucket from the low ones.
        self.hash ^ (self.hash >> 32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_keys_hash_equal_and_near_keys_differ() {
        let state = FastState::default();
        let h = |s: &str| state.hash_one(s);
        assert_eq!(h("k8s:developer:dev"), h("k8s:developer:dev"));
        let keys = [
            "",
            "a",
            "a\0",
            "b",
            "ab",
            "ba",
            "abcdefgh",
            "abcdefgh\0",
            "k8s:devops",
            "k8s:devops:dev",
        ];
        let mut hashes: Vec<u64> = keys.iter().map(|k| h(k)).collect();
        hashes.sort_unstable();
        hashes.dedup();
        assert_eq!(hashes.len(), keys.len());
        let mut map: FastMap<Box<str>, usize> = FastMap::default();
        for (i, k) in keys.iter().enumerate() {
            map.insert((*k).into(), i);
        }
        assert_eq!(map.get("abcdefgh\0"), Some(&7));
        assert_eq!(map.get("abcdefgh"), Some(&6));
        assert_eq!(map.get("a\0"), Some(&2));
        assert_eq!(map.get("missing"), None);
    }
}
