//! Request IDs: kube-apiserver's `Audit-ID` shape (a random version-4 UUID), made for every
//! request that did not bring one from a trusted front proxy, and shared by the access line, the
//! audit event, the upstream request and the answer.

use std::cell::RefCell;

/// 128 random bits as a UUID-shaped string (what kube-apiserver's Audit-ID looks like), built
/// in one allocation.
pub fn new_request_id() -> String {
    let mut b = [0u8; 16];
    if !random_bytes(&mut b) {
        // Without randomness, fall back to time: unique enough for log correlation.
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        b = n.to_le_bytes();
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    uuid_text(&b)
}

/// 16 bytes in UUID text form (`8-4-4-4-12` lowercase hex digits). Each byte's two digits go to
/// a fixed place, so the loop unrolls without a branch or a bounds check.
fn uuid_text(b: &[u8; 16]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    // Where each byte's first digit goes: dashes follow bytes 3, 5, 7 and 9.
    const AT: [usize; 16] = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];
    let mut id = *b"00000000-0000-0000-0000-000000000000";
    for (x, at) in b.iter().zip(AT) {
        id[at] = HEX[usize::from(x >> 4)];
        id[at + 1] = HEX[usize::from(x & 0x0f)];
    }
    // Hex digits and dashes: always ASCII.
    String::from_utf8(id.to_vec()).unwrap_or_default()
}

/// Random bytes from aws-lc's generator, drawn 512 at a time per thread: one `RAND_bytes` call
/// costs about a microsecond whatever its size, and this runs for every request.
fn random_bytes(out: &mut [u8; 16]) -> bool {
    struct Pool {
        buf: [u8; 512],
        used: usize,
    }
    thread_local! {
        static POOL: RefCell<Pool> = const { RefCell::new(Pool { buf: [0; 512], used: 512 }) };
    }
    POOL.try_with(|pool| {
        let Ok(mut pool) = pool.try_borrow_mut() else {
            return aws_lc_rs::rand::fill(out).is_ok();
        };
        if pool.used + out.len() > pool.buf.len() {
            if aws_lc_rs::rand::fill(&mut pool.buf).is_err() {
                return false;
            }
            pool.used = 0;
        }
        let start = pool.used;
        out.copy_from_slice(&pool.buf[start..start + 16]);
        // Each byte is handed out once.
        pool.buf[start..start + 16].fill(0);
        pool.used += 16;
        true
    })
    .unwrap_or_else(|_| aws_lc_rs::rand::fill(out).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Every byte's digits in their place, as `{:02x}` writes them.
        #[test]
        fn uuid_text_is_the_bytes_in_hex(b in proptest::prelude::any::<[u8; 16]>()) {
            let hex: Vec<String> = b.iter().map(|x| format!("{x:02x}")).collect();
            let expected = [&hex[..4], &hex[4..6], &hex[6..8], &hex[8..10], &hex[10..]]
                .map(|g| g.concat())
                .join("-");
            proptest::prop_assert_eq!(uuid_text(&b), expected);
        }
    }

    #[test]
    fn request_ids_are_random_version_4_uuids() {
        let a = new_request_id();
        let b = new_request_id();
        assert_ne!(a, b);
        // Across refills of the per-thread pool, no ID repeats.
        let many: std::collections::HashSet<String> = (0..200).map(|_| new_request_id()).collect();
        assert_eq!(many.len(), 200);
        for id in [&a, &b] {
            let groups: Vec<&str> = id.split('-').collect();
            let lens: Vec<usize> = groups.iter().map(|g| g.len()).collect();
            assert_eq!(lens, [8, 4, 4, 4, 12], "{id}");
            assert!(
                id.chars().all(|c| c == '-' || matches!(c, '0'..='9' | 'a'..='f')),
                "{id}"
            );
            assert!(groups[2].starts_with('4'), "version nibble: {id}");
            assert!(
                matches!(groups[3].as_bytes()[0], b'8' | b'9' | b'a' | b'b'),
                "variant: {id}"
            );
        }
    }
}
