//! tensorpress-core: lossless entropy codes for the bytes of tensors.
//!
//! Three code families over a 256-symbol alphabet — Quad/Dual Length Codes, length-limited
//! canonical Huffman, Exp-Golomb (on values or on frequency ranks) — inside a chunked,
//! lane-interleaved, checksummed stream (see [`stream`] for the bitstream contract). Decoders
//! never panic on untrusted input; every failure is an [`Error`].

pub mod bits;
pub mod checksum;
pub mod codes;
pub mod error;
pub mod fused;
pub mod histogram;
pub mod json_depth;
pub mod kernels;
pub mod memory;
pub mod planes;
pub mod stats;
pub mod stream;
pub mod threads;
pub mod varint;

pub use error::{Error, Result};
pub use kernels::Kernel;
pub use stream::{
    decode, decode_into, encode, encode_compact, parse_header, Codec, DecodeOptions, EncodeOptions, StreamInfo,
};
