//! One journal record = one `append` batch, framed so a reader can tell an intact record from
//! a torn or damaged one without trusting anything else in the file.
//!
//! ```text
//! header (12 bytes, little-endian):  magic u32 | len u32 | crc32 u32
//! payload (len bytes), entries back to back until the payload ends:
//!     name_len varint | name bytes (UTF-8) | timestamp zigzag varint | value f64 LE
//! ```
//! The CRC (IEEE, `crc32fast`) covers the `len` field and the payload, so a flipped length
//! cannot point the reader at a plausible-looking but wrong payload. The journal is private to
//! carbonlite (unlike whisper files it never leaves the machine), so it uses the native
//! little-endian order of every platform carbonlite targets rather than whisper's big-endian.

use crate::points::Point;

/// First four bytes of every record; lets a reader resynchronise after damage.
pub const RECORD_MAGIC: u32 = 0xC7B1_0E5A;
/// Bytes of the record header (magic, len, crc).
pub const HEADER_LEN: usize = 12;
/// Largest payload a record may carry. Readers refuse larger lengths outright, so a damaged
/// length field can never make them allocate or skip gigabytes.
pub const MAX_PAYLOAD: usize = 1 << 30;

/// Why a payload could not be decoded (the CRC matched but the contents are not entries:
/// only a bug or a deliberate forgery produces this).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub &'static str);

/// Appends the record for `entries` to `out`. Returns the number of bytes written.
/// `None` if the payload would exceed [`MAX_PAYLOAD`] (`out` is then left unchanged).
pub fn encode(entries: &[(&str, Point)], out: &mut Vec<u8>) -> Option<usize> {
    encode_iter(entries.iter().copied(), out)
}

/// [`encode`] for entries that are not in a slice (the engine's batches): no copy first.
pub fn encode_iter<'a>(
    entries: impl IntoIterator<Item = (&'a str, Point)>,
    out: &mut Vec<u8>,
) -> Option<usize> {
    let start = out.len();
    out.extend_from_slice(&RECORD_MAGIC.to_le_bytes());
    out.extend_from_slice(&[0; 8]); // len + crc, filled in below
    for (name, p) in entries {
        put_varint(out, name.len() as u64);
        out.extend_from_slice(name.as_bytes());
        put_varint(out, zigzag(p.timestamp));
        out.extend_from_slice(&p.value.to_le_bytes());
    }
    let payload_len = out.len() - start - HEADER_LEN;
    if payload_len > MAX_PAYLOAD {
        out.truncate(start);
        return None;
    }
    let len = (payload_len as u32).to_le_bytes();
    out[start + 4..start + 8].copy_from_slice(&len);
    let crc = checksum(&len, &out[start + HEADER_LEN..]);
    out[start + 8..start + 12].copy_from_slice(&crc.to_le_bytes());
    Some(out.len() - start)
}

/// The CRC of a record: over its length field, then its payload.
pub fn checksum(len_field: &[u8; 4], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(len_field);
    h.update(payload);
    h.finalize()
}

/// What is at the start of `buf`, judged by the framing alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// An intact record of `total` bytes (header included) whose payload is
    /// `buf[HEADER_LEN..total]`.
    Intact {
        /// Header + payload length.
        total: usize,
    },
    /// The header is plausible but the buffer ends before the payload does: a torn write if
    /// this is the end of the file.
    Truncated,
    /// Not a record here (wrong magic, impossible length or CRC mismatch).
    Invalid,
}

/// Checks the record framing at the start of `buf` (never panics, whatever the bytes).
pub fn frame(buf: &[u8]) -> Frame {
    if buf.len() < HEADER_LEN {
        // A header cut short is only a torn tail if what is there so far matches the magic.
        let magic = RECORD_MAGIC.to_le_bytes();
        let n = buf.len().min(4);
        return if buf[..n] == magic[..n] {
            Frame::Truncated
        } else {
            Frame::Invalid
        };
    }
    let magic = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if magic != RECORD_MAGIC {
        return Frame::Invalid;
    }
    let len_field = [buf[4], buf[5], buf[6], buf[7]];
    let len = u32::from_le_bytes(len_field) as usize;
    if len > MAX_PAYLOAD {
        return Frame::Invalid;
    }
    let total = HEADER_LEN + len;
    if buf.len() < total {
        return Frame::Truncated;
    }
    let crc = u32::from_le_bytes([buf[8], buf[9], buf[10], buf[11]]);
    if checksum(&len_field, &buf[HEADER_LEN..total]) != crc {
        return Frame::Invalid;
    }
    Frame::Intact { total }
}

/// Decodes an intact record's payload, calling `each` for every entry in order. Stops at the
/// first malformed entry; entries already passed to `each` stay delivered, so callers that
/// must be all-or-nothing validate with a dry run first (see [`validate`]).
pub fn decode<'a>(
    payload: &'a [u8],
    mut each: impl FnMut(&'a str, Point),
) -> Result<usize, DecodeError> {
    let mut pos = 0;
    let mut n = 0;
    while pos < payload.len() {
        let name_len = get_varint(payload, &mut pos)?;
        let name_len = usize::try_from(name_len).map_err(|_| DecodeError("name too long"))?;
        if name_len > payload.len() - pos {
            return Err(DecodeError("name runs past the record"));
        }
        let name = std::str::from_utf8(&payload[pos..pos + name_len])
            .map_err(|_| DecodeError("name is not UTF-8"))?;
        pos += name_len;
        let ts = unzigzag(get_varint(payload, &mut pos)?);
        if payload.len() - pos < 8 {
            return Err(DecodeError("value runs past the record"));
        }
        let mut v = [0u8; 8];
        v.copy_from_slice(&payload[pos..pos + 8]);
        pos += 8;
        each(name, Point::new(ts, f64::from_le_bytes(v)));
        n += 1;
    }
    Ok(n)
}

/// Whether `payload` decodes completely; the entry count if so.
pub fn validate(payload: &[u8]) -> Result<usize, DecodeError> {
    decode(payload, |_, _| {})
}

/// LEB128, as Go's `binary.PutUvarint` (the dump format uses it too).
pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads a LEB128 `u64` at `*pos`, as Go's `binary.Uvarint`; an error if the bytes end
/// first or it overflows 64 bits.
pub(crate) fn get_varint(buf: &[u8], pos: &mut usize) -> Result<u64, DecodeError> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let Some(&b) = buf.get(*pos) else {
            return Err(DecodeError("varint runs past the record"));
        };
        *pos += 1;
        // The tenth byte may only carry the top bit of a u64.
        if shift == 63 && b > 1 {
            return Err(DecodeError("varint overflows u64"));
        }
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Ok(v);
        }
    }
    Err(DecodeError("varint overflows u64"))
}

/// Signed to unsigned as Go's `binary.PutVarint` maps it.
pub(crate) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// The inverse of [`zigzag`].
pub(crate) fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(entries: &[(&str, Point)]) -> Vec<(String, Point)> {
        let mut buf = Vec::new();
        let n = encode(entries, &mut buf).unwrap();
        assert_eq!(n, buf.len());
        let Frame::Intact { total } = frame(&buf) else {
            panic!("not intact: {:?}", frame(&buf));
        };
        assert_eq!(total, buf.len());
        let mut got = Vec::new();
        decode(&buf[HEADER_LEN..total], |n, p| got.push((n.to_owned(), p))).unwrap();
        got
    }

    #[test]
    fn entries_round_trip_with_extreme_values() {
        let entries = [
            ("a.b.c", Point::new(1_700_000_000, 1.5)),
            ("", Point::new(0, 0.0)),
            ("x;tag=v", Point::new(i64::MIN, f64::INFINITY)),
            ("ünïcode", Point::new(i64::MAX, -0.0)),
            ("n", Point::new(-1, f64::MIN_POSITIVE)),
        ];
        let got = roundtrip(&entries);
        assert_eq!(got.len(), entries.len());
        for ((gn, gp), (en, ep)) in got.iter().zip(entries.iter()) {
            assert_eq!(gn, en);
            assert_eq!(gp.timestamp, ep.timestamp);
            assert_eq!(gp.value.to_bits(), ep.value.to_bits());
        }
        assert!(roundtrip(&[]).is_empty());
    }

    #[test]
    fn varint_and_zigzag_edges() {
        for v in [0i64, 1, -1, 63, -64, 64, i64::MAX, i64::MIN, 1_700_000_000] {
            assert_eq!(unzigzag(zigzag(v)), v);
            let mut b = Vec::new();
            put_varint(&mut b, zigzag(v));
            let mut pos = 0;
            assert_eq!(get_varint(&b, &mut pos), Ok(zigzag(v)));
            assert_eq!(pos, b.len());
        }
        // 11 continuation bytes, and a 10th byte with more than the top bit: both refused.
        let mut pos = 0;
        assert!(get_varint(&[0xff; 11], &mut pos).is_err());
        let mut over = vec![0xff; 9];
        over.push(0x02);
        pos = 0;
        assert!(get_varint(&over, &mut pos).is_err());
    }

    #[test]
    fn framing_detects_every_single_bit_flip() {
        let mut buf = Vec::new();
        encode(
            &[("a.b", Point::new(10, 2.0)), ("c", Point::new(20, 3.0))],
            &mut buf,
        )
        .unwrap();
        for i in 0..buf.len() * 8 {
            let mut b = buf.clone();
            b[i / 8] ^= 1 << (i % 8);
            assert!(
                !matches!(frame(&b), Frame::Intact { total } if total == buf.len()),
                "flip of bit {i} went unnoticed"
            );
        }
    }

    #[test]
    fn short_buffers_are_truncated_or_invalid() {
        let mut buf = Vec::new();
        encode(&[("a", Point::new(1, 1.0))], &mut buf).unwrap();
        for cut in 0..buf.len() {
            assert_eq!(frame(&buf[..cut]), Frame::Truncated, "cut at {cut}");
        }
        assert_eq!(frame(b"xy"), Frame::Invalid);
        let mut huge = buf.clone();
        huge[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(frame(&huge), Frame::Invalid);
    }

    #[test]
    fn malformed_payloads_are_errors_not_panics() {
        for p in [
            &[0x05, b'a'][..],                  // name longer than the payload
            &[0x01, 0xff],                      // name not UTF-8
            &[0x01, b'a', 0x02],                // value missing
            &[0x01, b'a'],                      // timestamp missing
            &[0x80, 0x80, 0x80],                // varint cut
            &[0x01, b'a', 0x02, 1, 2, 3, 4, 5], // value cut
        ] {
            assert!(validate(p).is_err(), "{p:?}");
        }
    }
}
