//! The reference decoder: one symbol at a time, every read bounds-checked.

use super::{check_lane_end, invalid_code};
use crate::bits::peek_bits_checked;
use crate::codes::SymbolDecoder;
use crate::error::Result;

pub fn decode_lanes<D: SymbolDecoder>(dec: &D, lanes: &[&[u8]], out: &mut [u8]) -> Result<()> {
    let n_lanes = lanes.len();
    for (l, lane) in lanes.iter().enumerate() {
        let mut pos = 0usize;
        for i in (l..out.len()).step_by(n_lanes) {
            let (sym, len, bad) = dec.decode(peek_bits_checked(lane, pos));
            if bad != 0 {
                return Err(invalid_code(l));
            }
            out[i] = sym;
            pos += len as usize;
        }
        check_lane_end(l, pos, lane.len())?;
    }
    Ok(())
}
