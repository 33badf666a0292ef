//! Wire bytes → [`crate::points::Point`]s. No I/O here: receivers hand buffers in, and the
//! parsers call back per point so the hot path allocates nothing.

#[allow(unsafe_code)] // SSE2 byte compares: see its docs
mod mask;
pub mod pickle;
pub mod plain;

/// Calls `f` on 16-byte chunks that cover `b`: `stride` (at most 16) apart, the last one
/// ending at `b`'s end, or once on `b` padded with `pad` when it is shorter than 16. Fixed-size
/// chunks compile to SIMD compares even for slices as short as metric names, where a plain
/// loop would run byte by byte (LLVM's vector loop wants 32 bytes or more). With a stride of
/// 15 every pair of neighbouring bytes shares a chunk.
#[inline(always)]
pub(crate) fn for_chunks16(b: &[u8], stride: usize, pad: u8, mut f: impl FnMut(&[u8; 16])) {
    let n = b.len();
    if n >= 16 {
        // One call site, so the compiler emits one vector body for every chunk.
        let mut at = 0;
        loop {
            let start = at.min(n - 16);
            f(b[start..].first_chunk().expect("start + 16 <= n"));
            if start == n - 16 {
                break;
            }
            at += stride;
        }
    } else {
        let mut padded = [pad; 16];
        padded[..n].copy_from_slice(b);
        f(&padded);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every byte is in some chunk, with a stride of 15 every neighbour pair too, and a
    /// short slice comes padded.
    #[test]
    fn chunks_cover_every_byte_and_pair() {
        for n in 0..80usize {
            let b: Vec<u8> = (1..=n as u8).collect();
            for stride in [15, 16] {
                let (mut bytes, mut pairs, mut calls) = (vec![false; n + 1], vec![false; n], 0);
                for_chunks16(&b, stride, 0, |c| {
                    calls += 1;
                    for k in 0..16 {
                        bytes[usize::from(c[k])] = true;
                        if k < 15 && c[k] > 0 && c[k + 1] == c[k] + 1 {
                            pairs[usize::from(c[k])] = true;
                        }
                    }
                    if n < 16 {
                        assert!(c[n..].iter().all(|&p| p == 0), "{n}: padding");
                    }
                });
                assert!(bytes[1..].iter().all(|&s| s), "{n} {stride}: a byte missed");
                if stride == 15 && n > 1 {
                    assert!(pairs[1..n].iter().all(|&s| s), "{n}: a pair missed");
                }
                assert_eq!(
                    calls,
                    if n < 16 {
                        1
                    } else {
                        (n - 16).div_ceil(stride) + 1
                    }
                );
            }
        }
    }
}
