//! Lane decoders. Every kernel decodes the same thing: `out.len()` symbols spread round-robin
//! over the lane bitstreams (symbol i lives in lane i mod L) and must return exactly what the
//! scalar reference returns, errors included (differential tests enforce it).

#[cfg(target_arch = "x86_64")]
pub mod avx2;
#[cfg(target_arch = "x86_64")]
pub mod avx512;
#[cfg(target_arch = "x86_64")]
pub mod huffman_pairs;
pub mod interleaved;
#[cfg(target_arch = "x86_64")]
pub mod pack_avx512;
pub mod scalar;

use crate::codes::SymbolDecoder;
use crate::error::{Error, Result};

/// Which decode kernel to run; `Auto` picks the fastest one the CPU supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kernel {
    #[default]
    Auto,
    /// One symbol at a time, bounds-checked reads: the reference.
    Scalar,
    /// All lanes advanced together, one refill per lane per round, checked tail (portable).
    Interleaved,
    /// Eight lanes per AVX2 register (x86-64 with AVX2 only; lane counts that are not 8, 16 or
    /// 32 run the interleaved kernel).
    Avx2,
    /// The AVX2 kernel with AVX-512 VBMI pieces (x86-64 with AVX-512 F/BW/VBMI only).
    Avx512Vbmi,
}

impl Kernel {
    /// Every kernel that can run on this machine, reference first.
    pub fn available() -> Vec<Kernel> {
        let mut kernels = vec![Kernel::Scalar, Kernel::Interleaved];
        if avx2_supported() {
            kernels.push(Kernel::Avx2);
        }
        if avx512_supported() {
            kernels.push(Kernel::Avx512Vbmi);
        }
        kernels
    }

    /// The kernel `Auto` prefers here (it may still pick the interleaved kernel per codec and
    /// lane count where that measured faster).
    pub fn resolve(self) -> Kernel {
        match self {
            Kernel::Auto if avx512_supported() => Kernel::Avx512Vbmi,
            Kernel::Auto if avx2_supported() => Kernel::Avx2,
            Kernel::Auto => Kernel::Interleaved,
            k => k,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kernel::Auto => "auto",
            Kernel::Scalar => "scalar",
            Kernel::Interleaved => "interleaved",
            Kernel::Avx2 => "avx2",
            Kernel::Avx512Vbmi => "avx512vbmi",
        }
    }

    pub fn from_name(name: &str) -> Result<Kernel> {
        match name {
            "auto" => Ok(Kernel::Auto),
            "scalar" => Ok(Kernel::Scalar),
            "interleaved" => Ok(Kernel::Interleaved),
            "avx2" if avx2_supported() => Ok(Kernel::Avx2),
            "avx2" => Err(Error::invalid("kernel \"avx2\" needs an x86-64 CPU with AVX2")),
            "avx512vbmi" if avx512_supported() => Ok(Kernel::Avx512Vbmi),
            "avx512vbmi" => Err(Error::invalid("kernel \"avx512vbmi\" needs an x86-64 CPU with AVX-512 F/BW/VBMI")),
            _ => Err(Error::invalid(format!("unknown kernel {name:?} (auto, scalar, interleaved, avx2, avx512vbmi)"))),
        }
    }
}

fn avx512_supported() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        avx512::supported()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

fn avx2_supported() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        avx2::supported()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// What the kernel may read beyond a lane's own bytes while its window runs ahead of the code
/// it decodes.
#[derive(Debug, Clone, Copy)]
pub enum Readable<'a> {
    /// Only each lane's own bytes: the last rows of every lane run in the checked scalar tail.
    Lanes,
    /// `region` holds every lane, back to back in order, and whatever follows them (the rest of
    /// the stream): windows may read into the next lane or past the last one while inside it,
    /// so the vector loop runs to the last full row wherever `region` extends a window's width
    /// past the last lane (every chunk of a stream but its last).
    Region(&'a [u8]),
}

/// Decodes lanes into `out` with `kernel`.
pub fn decode_lanes<D: SymbolDecoder>(
    kernel: Kernel,
    dec: &D,
    lanes: &[&[u8]],
    readable: &Readable<'_>,
    out: &mut [u8],
) -> Result<()> {
    match kernel {
        // Measured (benches/RESULTS.md §2): AVX2 wins everywhere except Huffman on a single
        // register group, where its gather latency sits on the length chain.
        #[cfg(target_arch = "x86_64")]
        Kernel::Auto
            if avx2_supported()
                && !(lanes.len() < 16
                    && matches!(dec.simd_tables(), Some(crate::codes::SimdTables::Huffman { .. }))) =>
        {
            avx2::decode_lanes_with(dec, lanes, readable, out, avx512_supported())
        }
        Kernel::Auto => interleaved::decode_lanes(dec, lanes, out),
        Kernel::Scalar => scalar::decode_lanes(dec, lanes, out),
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 => avx2::decode_lanes_with(dec, lanes, readable, out, false),
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512Vbmi => avx2::decode_lanes_with(dec, lanes, readable, out, true),
        _ => interleaved::decode_lanes(dec, lanes, out),
    }
}

/// The end-of-lane check shared by all kernels: each lane must be consumed to its last byte.
pub(crate) fn check_lane_end(lane: usize, consumed_bits: usize, lane_len: usize) -> Result<()> {
    if consumed_bits.div_ceil(8) != lane_len {
        return Err(Error::corrupt(format!(
            "lane {lane} holds {lane_len} bytes but its symbols use {consumed_bits} bits"
        )));
    }
    Ok(())
}

pub(crate) fn invalid_code(lane: usize) -> Error {
    Error::corrupt(format!("lane {lane} contains a code no encoder writes"))
}
