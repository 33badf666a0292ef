//! Wire bytes → [`crate::points::Point`]s. No I/O here: receivers hand buffers in, and the
//! parsers call back per point so the hot path allocates nothing.

#[allow(unsafe_code)] // SSE2 byte compares: see its docs
mod mask;
pub mod pickle;
pub mod plain;

/// Whether `pred(b[i], b[i + 1])` holds for some `i` (the last byte is paired with `pad`),
/// 16 pairs at a time: fixed-size chunks compile to SIMD compares even for slices as short
/// as metric names, where a plain loop would run byte by byte (LLVM's vector loop wants
/// 32 bytes or more). `pred(x, pad)` must be false for every byte `x` that can be paired
/// with `pad`, which is how a short slice is padded.
#[inline(always)]
pub(crate) fn any_pair(b: &[u8], pad: u8, pred: impl Fn(u8, u8) -> bool) -> bool {
    // One lane per pair position, reduced once at the end (a reduction per chunk costs
    // more than the compares).
    let mut acc = [0u8; 16];
    let mut check = |x: &[u8], y: &[u8]| {
        if let (Ok(x), Ok(y)) = (<&[u8; 16]>::try_from(x), <&[u8; 16]>::try_from(y)) {
            for k in 0..16 {
                acc[k] |= u8::from(pred(x[k], y[k]));
            }
        }
    };
    let n = b.len();
    let mut last = false;
    if n > 16 {
        let mut i = 0;
        while i + 17 <= n {
            check(&b[i..i + 16], &b[i + 1..i + 17]);
            i += 16;
        }
        // The last pairs again, overlapping: cheaper than padding, harmless for "any".
        check(&b[n - 17..n - 1], &b[n - 16..]);
        last = pred(b[n - 1], pad);
    } else {
        let mut t = [pad; 17];
        t[..n].copy_from_slice(b);
        check(&t[..16], &t[1..]);
    }
    last | (acc.iter().fold(0, |a, &x| a | x) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_pair_sees_every_pair_and_the_last_byte() {
        for n in 0..80 {
            // No hit anywhere.
            let b = vec![b'a'; n];
            assert!(!any_pair(&b, b'a', |x, y| x == b'.' && y == b'.'), "{n}");
            assert!(!any_pair(&b, b'a', |x, _| x == b' '), "{n}");
            for i in 0..n {
                let mut b = vec![b'a'; n];
                b[i] = b' ';
                assert!(any_pair(&b, b'a', |x, _| x == b' '), "{n} {i}");
                if i + 1 < n {
                    b[i] = b'.';
                    b[i + 1] = b'.';
                    assert!(any_pair(&b, b'a', |x, y| x == b'.' && y == b'.'), "{n} {i}");
                    b[i + 1] = b'a';
                    assert!(
                        !any_pair(&b, b'a', |x, y| x == b'.' && y == b'.'),
                        "{n} {i}"
                    );
                }
            }
        }
    }
}
