//! Lane lengths of a version-2 coded chunk (docs/format.md §1.1): lane `l`'s byte length is
//! stored as the unsigned LEB128 varint of `zigzag(len[l] − len[l−1])`, with `len[−1] = 0`.
//! Lanes of one chunk hold nearly the same number of symbols, so the differences are small and
//! most take one byte, where version 1 spent four per lane.

use crate::error::{Error, Result};

/// Longest varint a reader accepts: 5 bytes hold any zigzag difference of two u32 lengths.
pub const MAX_VARINT_BYTES: usize = 5;

fn zigzag(d: i64) -> u64 {
    ((d << 1) ^ (d >> 63)) as u64
}

fn unzigzag(z: u64) -> i64 {
    (z >> 1) as i64 ^ -((z & 1) as i64)
}

/// Appends `v` as an unsigned LEB128 varint (7 bits per byte, low group first, top bit set on
/// every byte but the last).
fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends the lane-length table of `lens`.
pub fn put_lane_lengths(out: &mut Vec<u8>, lens: &[u32]) {
    let mut prev = 0i64;
    for &len in lens {
        put_varint(out, zigzag(i64::from(len) - prev));
        prev = i64::from(len);
    }
}

/// Bytes [`put_lane_lengths`] appends for `lens`.
pub fn lane_lengths_size(lens: &[u32]) -> usize {
    let mut prev = 0i64;
    let mut size = 0;
    for &len in lens {
        let z = zigzag(i64::from(len) - prev);
        size += (64 - (z | 1).leading_zeros() as usize).div_ceil(7);
        prev = i64::from(len);
    }
    size
}

/// Reads `lens.len()` lane lengths from the start of `body`; returns the bytes they took. A
/// varint longer than [`MAX_VARINT_BYTES`], not in its shortest form, or a length outside
/// `0..=u32::MAX` is corrupt.
pub fn read_lane_lengths(body: &[u8], lens: &mut [usize]) -> Result<usize> {
    let mut at = 0;
    let mut prev = 0i64;
    for len in lens.iter_mut() {
        let mut z = 0u64;
        let mut shift = 0;
        loop {
            let &byte = body.get(at).ok_or_else(|| Error::corrupt("lane-length table truncated"))?;
            at += 1;
            z |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                if byte == 0 && shift > 0 {
                    return Err(Error::corrupt("lane length varint is not in its shortest form"));
                }
                break;
            }
            shift += 7;
            if shift >= 7 * MAX_VARINT_BYTES as u32 {
                return Err(Error::corrupt("lane length varint longer than 5 bytes"));
            }
        }
        let value = prev + unzigzag(z);
        if !(0..=i64::from(u32::MAX)).contains(&value) {
            return Err(Error::corrupt(format!("lane length {value} outside 0..=2^32-1")));
        }
        *len = value as usize;
        prev = value;
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lane_lengths_round_trip_and_size() {
        let cases: [&[u32]; 5] =
            [&[], &[0], &[3000, 3010, 2990, 2991], &[u32::MAX, 0, u32::MAX], &[63, 127, 64, 64 + 8191]];
        for lens in cases {
            let mut out = Vec::new();
            put_lane_lengths(&mut out, lens);
            assert_eq!(out.len(), lane_lengths_size(lens));
            out.push(0xAB); // what follows is not read
            let mut got = vec![0usize; lens.len()];
            assert_eq!(read_lane_lengths(&out, &mut got).unwrap(), out.len() - 1);
            assert!(got.iter().zip(lens).all(|(&g, &l)| g == l as usize));
        }
        let mut out = Vec::new();
        put_lane_lengths(&mut out, &[3000, 3010, 2990]);
        assert_eq!(out.len(), 2 + 1 + 1, "differences of a few bytes take one byte each");
    }

    #[test]
    fn hostile_varints_are_corrupt_data() {
        let read = |b: &[u8], n: usize| read_lane_lengths(b, &mut vec![0; n]).map_err(|e| e.message().to_string());
        assert!(read(&[0x80], 1).unwrap_err().contains("truncated"));
        assert!(read(&[0x82, 0x00], 1).unwrap_err().contains("shortest"));
        assert!(read(&[0xff, 0xff, 0xff, 0xff, 0xff, 0x01], 1).unwrap_err().contains("longer"));
        assert!(read(&[0x01], 1).unwrap_err().contains("outside"), "zigzag 1 is −1");
        assert!(read(&[0x80, 0x80, 0x80, 0x80, 0x20], 1).unwrap_err().contains("outside"), "2^32");
        assert_eq!(read(&[0xfe, 0xff, 0xff, 0xff, 0x1f], 1).unwrap(), 5, "2^32 − 1 is a length");
        assert_eq!(read(&[0x00, 0x00], 2).unwrap(), 2);
    }
}
