//! Small encodings shared by the crates: LEB128 varints (postcard's integer encoding) and a
//! 64-bit mixing function for digests and hashes.

use bytes::BufMut;

/// Writes `v` as a LEB128 varint.
pub fn put_varint(out: &mut impl BufMut, mut v: u64) {
    while v >= 0x80 {
        out.put_u8(v as u8 | 0x80);
        v >>= 7;
    }
    out.put_u8(v as u8);
}

/// Reads a varint from the front of `r`, advancing it; `None` if truncated or longer than a
/// `u64`.
pub fn get_varint(r: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = r.split_first()?;
        *r = rest;
        let bits = u64::from(b & 0x7f);
        if shift == 63 && bits > 1 {
            return None; // past 64 bits
        }
        v |= bits << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// Bytes of `v` as a varint.
pub fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// Mixes the bits of `z` (splitmix64's finaliser): a change of any input bit changes about
/// half the output bits. For digests and hashes, not for security.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Folds one more item into a running `digest` of a sequence: the item's `key` (who and which,
/// already mixed into one word) and its `bytes`. Two sequences fold to the same digest only
/// if they hold the same items in the same order (but for collisions: not for security).
pub fn fold(digest: u64, key: u64, bytes: &[u8]) -> u64 {
    let mut z = digest.rotate_left(5) ^ key;
    for chunk in bytes.chunks(8) {
        let mut w = [0u8; 8];
        w[..chunk.len()].copy_from_slice(chunk);
        z = (z ^ u64::from_le_bytes(w)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z ^= z >> 31;
    }
    mix64(z)
}

/// One word to key a [`fold`] with, for item `n` of endpoint `e` (its node, incarnation and
/// `n`).
pub fn item_key(e: crate::Endpoint, n: u64) -> u64 {
    (e.node ^ u64::from(e.incarnation).rotate_left(40))
        .wrapping_add(n.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::quickcheck;

    quickcheck! {
        fn varints_round_trip(v: u64) -> bool {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            let mut r = &b[..];
            b.len() == varint_len(v) && get_varint(&mut r) == Some(v) && r.is_empty()
        }

        fn garbage_never_panics(bytes: Vec<u8>) -> bool {
            let _ = get_varint(&mut &bytes[..]);
            true
        }
    }

    #[test]
    fn a_fold_tells_order_and_content_apart() {
        let (a, b) = (fold(0, 1, b"x"), fold(0, 2, b"y"));
        assert_ne!(fold(a, 2, b"y"), fold(b, 1, b"x"));
        assert_ne!(fold(0, 1, b"x"), fold(0, 1, b"z"));
        assert_eq!(fold(a, 2, b"y"), fold(fold(0, 1, b"x"), 2, b"y"));
    }

    #[test]
    fn a_varint_past_64_bits_is_refused() {
        let mut too_long = vec![0xff; 9];
        too_long.push(0x02);
        assert_eq!(get_varint(&mut &too_long[..]), None);
        let mut max = Vec::new();
        put_varint(&mut max, u64::MAX);
        assert_eq!(get_varint(&mut &max[..]), Some(u64::MAX));
    }
}
