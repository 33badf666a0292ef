//! Byte-equality bitmasks over 64-byte blocks: the plaintext parser finds every `\n` of a
//! block in one step, then walks the set bits, instead of one `memchr` call per line (whose
//! setup and dispatch cost more than the search for lines of ~40 bytes).
//!
//! The only `unsafe` here is SSE2 (in every x86_64 CPU, and enabled for every x86_64
//! target): stable Rust gives no safe way to a byte-compare movemask, and a bit-building
//! loop does not vectorise. Other targets get the portable loop.

/// Bit `k` set exactly when `block[k] == byte`.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline(always)]
fn eq_mask64(block: &[u8; 64], byte: u8) -> u64 {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8,
    };
    let mut m = 0u64;
    for (k, chunk) in block.chunks_exact(16).enumerate() {
        // SAFETY: SSE2 is enabled for this target (the cfg above); the unaligned load reads
        // the 16 bytes of `chunk`, which `chunks_exact` guarantees are in bounds.
        let bits = unsafe {
            let v = _mm_loadu_si128(chunk.as_ptr().cast::<__m128i>());
            _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(byte as i8)))
        };
        m |= u64::from(bits as u16) << (16 * k);
    }
    m
}

/// Bit `k` set exactly when `block[k] == byte`.
#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
#[inline(always)]
fn eq_mask64(block: &[u8; 64], byte: u8) -> u64 {
    byte_loop_mask(block, byte)
}

/// Bit `k` set exactly when `bytes[k] == byte`, for the first 64 bytes of `bytes`.
#[inline]
pub(crate) fn eq_mask(bytes: &[u8], byte: u8) -> u64 {
    match bytes.first_chunk::<64>() {
        Some(block) => eq_mask64(block, byte),
        None => byte_loop_mask(bytes, byte),
    }
}

/// `eq_mask` a byte at a time: for a buffer's last partial block, and targets without SSE2.
fn byte_loop_mask(bytes: &[u8], byte: u8) -> u64 {
    bytes
        .iter()
        .take(64)
        .enumerate()
        .fold(0, |m, (k, &b)| m | (u64::from(b == byte) << k))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::xorshift;

    #[test]
    fn masks_match_a_byte_loop() {
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        for round in 0..2000 {
            let block: [u8; 64] = std::array::from_fn(|_| {
                xorshift(&mut x);
                // Mostly a few values, so hits are common; sometimes any byte (0x80.. too).
                if round % 2 == 0 {
                    b"\n a.\x8a"[(x % 5) as usize]
                } else {
                    x as u8
                }
            });
            for byte in [b'\n', b' ', b'.', 0x8a, 0] {
                let want = (0..64).fold(0u64, |m, k| m | (u64::from(block[k] == byte) << k));
                assert_eq!(eq_mask64(&block, byte), want, "{block:?} {byte}");
                for len in [0, 1, 15, 16, 17, 63, 64] {
                    let lo = if len == 64 {
                        u64::MAX
                    } else {
                        (1u64 << len) - 1
                    };
                    assert_eq!(eq_mask(&block[..len], byte), want & lo, "{len}");
                }
            }
        }
    }
}
