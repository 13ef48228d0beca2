//! Differential test of the encoder's bit packers: `put_lanes` with every kernel (the AVX-512
//! packer where the CPU has it) writes exactly the bytes and lane lengths of the scalar
//! reference, and fails exactly when the reference fails (a symbol without a code), for random
//! code tables up to the packer's 24-bit limit, every lane count and lengths around its blocks.

use proptest::prelude::*;
use tensorpress_core::bits::{put_lanes, MAX_STRIDED_CODE_LEN};
use tensorpress_core::Kernel;

/// `code | len << 32` entries: lengths 1..=max_len (0, no code, where `holes` says so), codes
/// masked to their length.
fn table_strategy() -> impl Strategy<Value = [u64; 256]> {
    (1..=u64::from(MAX_STRIDED_CODE_LEN), prop::collection::vec((any::<u64>(), any::<u64>(), 0u8..40), 256)).prop_map(
        |(max_len, entries)| {
            let mut t = [0u64; 256];
            for (e, (len_seed, code, hole)) in t.iter_mut().zip(entries) {
                let len = 1 + len_seed % max_len;
                *e = if hole == 0 { 0 } else { (code & ((1 << len) - 1)) | len << 32 };
            }
            t
        },
    )
}

fn lanes_of(kernel: Kernel, symbols: &[u8], n_lanes: usize, table: &[u64; 256]) -> Option<(Vec<u8>, Vec<u32>)> {
    let mut out = vec![0xa5];
    let mut lens = [0u32; 32];
    put_lanes(kernel, &mut out, symbols, n_lanes, table, &mut lens).then(|| (out, lens[..n_lanes].to_vec()))
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(256),
        ..ProptestConfig::default()
    })]

    #[test]
    fn packers_match_reference(
        table in table_strategy(),
        // Mostly few distinct symbols (as in exponent planes), so holes are hit only sometimes.
        symbols in prop::collection::vec(prop_oneof![4 => 0u8..16, 1 => any::<u8>()], 0..3000),
        n_lanes in prop_oneof![3 => prop::sample::select(vec![8usize, 16, 32]), 1 => 1usize..=32],
    ) {
        let reference = lanes_of(Kernel::Scalar, &symbols, n_lanes, &table);
        let mut kernels = Kernel::available();
        kernels.push(Kernel::Auto);
        for kernel in kernels {
            prop_assert_eq!(lanes_of(kernel, &symbols, n_lanes, &table), reference.clone(), "kernel {:?}", kernel);
        }
    }
}
