//! Byte histograms and the Shannon bound.

/// Counts of each byte value.
pub type Histogram = [u64; 256];

/// Counts byte values.
pub fn histogram(data: &[u8]) -> Histogram {
    histogram_by::<1>(data, |[b]| b)
}

/// Counts `byte(element)` over the `W`-byte elements of `src` (a trailing partial element is
/// ignored). Four sub-histograms break the store-to-load dependency on runs of the same value
/// (the common case in exponent planes).
pub fn histogram_by<const W: usize>(src: &[u8], byte: impl Fn([u8; W]) -> u8) -> Histogram {
    let mut sub = [[0u32; 256]; 4];
    let mut total = [0u64; 256];
    let value = |e: &[u8]| usize::from(byte(e.try_into().expect("a W-byte element")));
    // u32 sub-counts cannot overflow within a block of 2^31 elements.
    for block in src.chunks(W << 30) {
        let mut quads = block.chunks_exact(4 * W);
        for q in &mut quads {
            sub[0][value(&q[..W])] += 1;
            sub[1][value(&q[W..2 * W])] += 1;
            sub[2][value(&q[2 * W..3 * W])] += 1;
            sub[3][value(&q[3 * W..])] += 1;
        }
        for e in quads.remainder().chunks_exact(W) {
            sub[0][value(e)] += 1;
        }
        for s in 0..256 {
            total[s] += u64::from(sub[0][s]) + u64::from(sub[1][s]) + u64::from(sub[2][s]) + u64::from(sub[3][s]);
        }
        sub = [[0u32; 256]; 4];
    }
    total
}

/// Adds `other` into `acc`.
pub fn merge(acc: &mut Histogram, other: &Histogram) {
    for (a, b) in acc.iter_mut().zip(other) {
        *a += b;
    }
}

/// Shannon entropy in bits per symbol (0 for empty or constant data).
pub fn entropy_bits(hist: &Histogram) -> f64 {
    let n: u64 = hist.iter().sum();
    if n == 0 {
        return 0.0;
    }
    let n = n as f64;
    hist.iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum()
}

/// Symbols sorted by descending count, ties by ascending symbol value (deterministic).
pub fn ranked_symbols(hist: &Histogram) -> [u8; 256] {
    let mut order: Vec<u8> = (0..=255u8).collect();
    order.sort_by(|&a, &b| hist[usize::from(b)].cmp(&hist[usize::from(a)]).then(a.cmp(&b)));
    let mut out = [0u8; 256];
    out.copy_from_slice(&order);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_entropy() {
        let data: Vec<u8> = (0..1027u32).map(|i| (i % 4) as u8).collect();
        let h = histogram(&data);
        assert_eq!(h[0], 257);
        assert_eq!(h[3], 256);
        assert!((entropy_bits(&h) - 2.0).abs() < 1e-3);
        assert_eq!(entropy_bits(&histogram(&[7; 10])), 0.0);
        assert_eq!(entropy_bits(&histogram(&[])), 0.0);
    }

    #[test]
    fn ranking_is_by_count_then_value() {
        let h = histogram(&[5, 5, 5, 9, 9, 1]);
        let r = ranked_symbols(&h);
        assert_eq!(&r[..4], &[5, 9, 1, 0]);
    }
}
