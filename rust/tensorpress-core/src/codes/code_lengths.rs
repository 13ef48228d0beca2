//! Optimal prefix-code lengths for a byte histogram: unrestricted Huffman depths, and where they
//! exceed the limit the optimal length-limited code, by package-merge. Both work on the present
//! symbols sorted once by (count, symbol), in fixed-size arrays on the stack: a table is fitted
//! for every chunk of every stream (to decide whether the chunk carries its own), so a fit must
//! cost a few microseconds, not allocations and sorts per level.

use crate::histogram::Histogram;

/// Most levels package-merge runs (the longest code the crate fits).
const MAX_LEVELS: usize = 16;

/// The present symbols in order of (count, symbol): the order in which both algorithms take
/// leaves, which makes ties (and so the lengths) deterministic.
pub(crate) struct Leaves {
    n: usize,
    symbol: [u8; 256],
    count: [u64; 256],
}

impl Leaves {
    pub(crate) fn of(hist: &Histogram) -> Self {
        let mut leaves = Leaves { n: 0, symbol: [0; 256], count: [0; 256] };
        if hist.iter().all(|&c| c < 1 << 56) {
            // One u64 key per symbol (count above, symbol below): a plain integer sort.
            let mut keys = [0u64; 256];
            for (s, &c) in hist.iter().enumerate().filter(|(_, &c)| c > 0) {
                keys[leaves.n] = c << 8 | s as u64;
                leaves.n += 1;
            }
            keys[..leaves.n].sort_unstable();
            for (i, &k) in keys[..leaves.n].iter().enumerate() {
                leaves.symbol[i] = k as u8;
                leaves.count[i] = k >> 8;
            }
        } else {
            let mut pairs = [(0u64, 0u8); 256];
            for (s, &c) in hist.iter().enumerate().filter(|(_, &c)| c > 0) {
                pairs[leaves.n] = (c, s as u8);
                leaves.n += 1;
            }
            pairs[..leaves.n].sort_unstable();
            for (i, &(c, s)) in pairs[..leaves.n].iter().enumerate() {
                leaves.symbol[i] = s;
                leaves.count[i] = c;
            }
        }
        leaves
    }

    /// Number of present symbols.
    pub(crate) fn len(&self) -> usize {
        self.n
    }

    /// The symbols, lightest first.
    pub(crate) fn symbols(&self) -> &[u8] {
        &self.symbol[..self.n]
    }

    /// Their counts, ascending.
    pub(crate) fn counts(&self) -> &[u64] {
        &self.count[..self.n]
    }
}

/// Unrestricted Huffman code lengths (tree depths) of the leaves `count` (ascending, 2 to 256 of
/// them), in the same order.
///
/// Merges the two lightest nodes; on equal weights a leaf goes first, then the earlier node.
/// Merged weights never decrease, so the internal nodes queue up already sorted and two queues
/// (the sorted leaves, the internal nodes in creation order) yield each step's minimum: the
/// same merges as a binary heap of (weight, node index), without its per-pop cost.
pub(crate) fn huffman_depths(count: &[u64]) -> [u32; 256] {
    let n = count.len();
    assert!((2..=256).contains(&n), "Huffman depths need 2 to 256 leaves, got {n}");
    let mut weight = [0u64; 511];
    weight[..n].copy_from_slice(count);
    let mut parent = [0u16; 511];
    let (mut leaf, mut internal) = (0usize, n);
    for node in n..2 * n - 1 {
        for _ in 0..2 {
            // `internal < node`: a created node not yet merged exists.
            let take_leaf = leaf < n && (internal == node || weight[leaf] <= weight[internal]);
            let picked = if take_leaf { &mut leaf } else { &mut internal };
            parent[*picked] = node as u16;
            weight[node] = weight[node].saturating_add(weight[*picked]);
            *picked += 1;
        }
    }
    // Parents always have larger indices, so one backward pass computes depths.
    let mut depth = [0u32; 511];
    for i in (0..2 * n - 2).rev() {
        depth[i] = depth[usize::from(parent[i])] + 1;
    }
    let mut out = [0u32; 256];
    out[..n].copy_from_slice(&depth[..n]);
    out
}

/// Optimal code lengths of at most `max_len` bits for the leaves `count` (ascending,
/// 2 ≤ n ≤ 2^max_len, max_len ≤ 16), in the same order, by package-merge (Larmore and
/// Hirschberg, 1990): the minimum-cost multiset of 2n − 2 "coins" drawn from `max_len`
/// denominations.
///
/// Level 0 lists the leaves; level j + 1 merges the leaves with the packages (sums of pairs) of
/// level j, a leaf before a package of equal weight. Only whether each item is a leaf is kept:
/// the items taken at a level are a prefix of its list, the leaves among them are the lightest
/// leaves (each one bit longer), and its packages take twice as many items from the level below.
pub(crate) fn package_merge(count: &[u64], max_len: u8) -> [u8; 256] {
    let n = count.len();
    let levels = usize::from(max_len);
    assert!(levels <= MAX_LEVELS && n >= 2 && n <= 1 << levels, "package-merge of {n} leaves in {levels} levels");
    // Item lists are at most n + (2n − 1) / 2 < 512 long; one slot more for a sentinel.
    let mut is_leaf = [[0u8; 512]; MAX_LEVELS];
    let mut list_len = [0usize; MAX_LEVELS];
    let mut list = [0u64; 512];
    list[..n].copy_from_slice(count);
    is_leaf[0][..n].fill(1);
    list_len[0] = n;
    let mut leaf_weight = [u64::MAX; 257];
    leaf_weight[..n].copy_from_slice(count);
    for level in 1..levels {
        let packages = list_len[level - 1] / 2;
        let mut package = [u64::MAX; 257];
        for (p, w) in package.iter_mut().enumerate().take(packages) {
            *w = list[2 * p].saturating_add(list[2 * p + 1]);
        }
        merge_level(&leaf_weight, n, &package, packages, &mut list, &mut is_leaf[level]);
        list_len[level] = n + packages;
    }
    // From the top: take the 2n − 2 lightest items. Leaf i's length is the number of levels
    // whose taken prefix holds more than i leaves: counted as a difference array.
    let mut longer_than = [0u8; 257];
    let mut take = 2 * n - 2;
    for level in (0..levels).rev() {
        let taken = take.min(list_len[level]);
        let leaves = is_leaf[level][..taken].iter().map(|&f| usize::from(f)).sum::<usize>();
        longer_than[leaves] += 1;
        take = 2 * (taken - leaves);
    }
    let mut lengths = [0u8; 256];
    let mut running = 0u8;
    for i in (0..n).rev() {
        running += longer_than[i + 1];
        lengths[i] = running;
    }
    lengths
}

/// Merges the `n` leaves and `packages` packages (ascending, each followed by `u64::MAX`
/// sentinels) into `list`, a leaf before a package of equal weight, flagging the leaves.
///
/// A branch-free merge is bound by the latency of its index chain (load, compare, add), so four
/// independent chains run at once: the list is split at its middle (the number of leaves among
/// its first half found by binary search), and each half is merged from its front (smallest
/// first; a leaf before an equal package) and from its back (largest first; an equal package
/// before the leaf) until the two meet.
fn merge_level(
    leaf: &[u64; 257],
    n: usize,
    package: &[u64; 257],
    packages: usize,
    list: &mut [u64; 512],
    flags: &mut [u8; 512],
) {
    let m = n + packages;
    let half = m / 2;
    // Leaves among the `half` first items: the largest `a` whose leaf a − 1 precedes package
    // half − a (monotone in `a`); at least `half − packages`, at most `half` and `n`.
    let (mut lo, mut hi) = (half.saturating_sub(packages), half.min(n));
    while lo < hi {
        let a = (lo + hi).div_ceil(2);
        if leaf[a - 1] <= package[half - a] {
            lo = a;
        } else {
            hi = a - 1;
        }
    }
    let split = (lo, half - lo);
    // (next leaf, next package) from the front; (one past the next leaf, package) from the back.
    let mut fronts = [(0usize, 0usize), split];
    let mut backs = [split, (n, packages)];
    let mut front_at = [0usize, half];
    let mut back_at = [half, m];
    // Items left to each front chain; the back chains take the rest of their half.
    let front_items = [half / 2, (m - half) / 2];
    let back_items = [half - front_items[0], m - half - front_items[1]];
    let steps = front_items[0].max(front_items[1]).max(back_items[0]).max(back_items[1]);
    for step in 0..steps {
        for c in 0..2 {
            if step < front_items[c] {
                let (l, p) = fronts[c];
                // Bitwise, not short-circuit, logic and masked selects: no branches to mispredict.
                let (lw, pw) = (leaf[l], package[p]);
                let take_leaf = (l < n) & (lw <= pw);
                list[front_at[c]] = select(take_leaf, lw, pw);
                flags[front_at[c]] = u8::from(take_leaf);
                fronts[c] = (l + usize::from(take_leaf), p + usize::from(!take_leaf));
                front_at[c] += 1;
            }
            if step < back_items[c] {
                let (l_end, p_end) = backs[c];
                let (lw, pw) = (leaf[l_end.wrapping_sub(1).min(256)], package[p_end.wrapping_sub(1).min(256)]);
                let last_leaf = (l_end > 0) & ((p_end == 0) | (lw > pw));
                back_at[c] -= 1;
                list[back_at[c]] = select(last_leaf, lw, pw);
                flags[back_at[c]] = u8::from(last_leaf);
                backs[c] = (l_end - usize::from(last_leaf), p_end - usize::from(!last_leaf));
            }
        }
    }
}

/// `a` if `pick`, else `b`, by masks.
#[inline(always)]
fn select(pick: bool, a: u64, b: u64) -> u64 {
    let mask = u64::from(pick).wrapping_neg();
    (a & mask) | (b & !mask)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::cmp::Reverse;

    fn next_random(x: &mut u64) -> u64 {
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        *x
    }

    /// The heap formulation the two-queue merge replaces: pop the two smallest (weight, node),
    /// leaves numbered in (count, symbol) order.
    pub(crate) fn heap_depths(count: &[u64]) -> Vec<u32> {
        use std::collections::BinaryHeap;
        let n = count.len();
        let mut parent = vec![usize::MAX; 2 * n - 1];
        let mut heap: BinaryHeap<Reverse<(u64, usize)>> =
            count.iter().enumerate().map(|(i, &c)| Reverse((c, i))).collect();
        let mut next = n;
        while heap.len() > 1 {
            let Reverse((w1, a)) = heap.pop().unwrap();
            let Reverse((w2, b)) = heap.pop().unwrap();
            parent[a] = next;
            parent[b] = next;
            heap.push(Reverse((w1 + w2, next)));
            next += 1;
        }
        let mut depth = vec![0u32; 2 * n - 1];
        for i in (0..2 * n - 2).rev() {
            depth[i] = depth[parent[i]] + 1;
        }
        depth.truncate(n);
        depth
    }

    /// Textbook package-merge: every item carries its leaves; the lengths are how often each
    /// leaf appears among the 2n − 2 items taken.
    pub(crate) fn reference_package_merge(count: &[u64], max_len: u8) -> Vec<u8> {
        let leaves: Vec<(u64, Vec<usize>)> = count.iter().enumerate().map(|(i, &c)| (c, vec![i])).collect();
        let mut list = leaves.clone();
        for _ in 1..max_len {
            let mut next: Vec<(u64, Vec<usize>)> =
                list.chunks_exact(2).map(|p| (p[0].0 + p[1].0, [p[0].1.clone(), p[1].1.clone()].concat())).collect();
            next.extend(leaves.iter().cloned());
            next.sort_by_key(|i| i.0);
            list = next;
        }
        let mut lengths = vec![0u8; count.len()];
        for item in list.iter().take(2 * leaves.len() - 2) {
            for &i in &item.1 {
                lengths[i] += 1;
            }
        }
        lengths
    }

    fn random_hist(x: &mut u64, case: usize) -> Histogram {
        let mut h = [0u64; 256];
        let symbols = 2 + case % 255;
        // Few distinct weights make ties (and tie-breaking) the common case; geometric-ish
        // counts make deep trees, so length limits bind.
        let spread = [2u64, 5, 40, 1 << 20, 0][case % 5];
        for c in h.iter_mut().take(symbols) {
            let r = next_random(x);
            *c = if spread == 0 { 1 + ((r % 1_000_000) >> (r % 23)) } else { 1 + r % spread };
        }
        if case.is_multiple_of(3) {
            h.swap(0, symbols / 2);
            h[symbols / 3] = 0;
        }
        h
    }

    #[test]
    fn leaves_sort_by_count_then_symbol() {
        let mut x = 0x1234_5678_9abc_def1u64;
        for case in 0..300 {
            let mut h = random_hist(&mut x, case);
            if case.is_multiple_of(7) {
                // Counts past 2^56 take the pair sort.
                h[3] = u64::MAX / 4;
            }
            let leaves = Leaves::of(&h);
            let mut want: Vec<(u64, u8)> = (0..256).filter(|&s| h[s] > 0).map(|s| (h[s], s as u8)).collect();
            want.sort();
            let got: Vec<(u64, u8)> = leaves.counts().iter().copied().zip(leaves.symbols().iter().copied()).collect();
            assert_eq!(got, want, "case {case}");
        }
    }

    #[test]
    fn two_queue_depths_equal_heap_depths() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for case in 0..2000 {
            let leaves = Leaves::of(&random_hist(&mut x, case));
            if leaves.len() >= 2 {
                let depths = huffman_depths(leaves.counts());
                assert_eq!(depths[..leaves.len()], heap_depths(leaves.counts())[..], "case {case}");
            }
        }
    }

    /// The merge as first written: one branchy chain, the lists in vectors.
    fn sequential_package_merge(count: &[u64], max_len: u8) -> Vec<u8> {
        let n = count.len();
        let mut levels: Vec<Vec<(u64, bool)>> = vec![count.iter().map(|&w| (w, true)).collect()];
        for _ in 1..max_len {
            let below = &levels[levels.len() - 1];
            let mut merged = Vec::new();
            let mut leaf = 0;
            for pair in below.chunks_exact(2) {
                let package = pair[0].0.saturating_add(pair[1].0);
                while leaf < n && count[leaf] <= package {
                    merged.push((count[leaf], true));
                    leaf += 1;
                }
                merged.push((package, false));
            }
            merged.extend(count[leaf..].iter().map(|&w| (w, true)));
            levels.push(merged);
        }
        let mut lengths = vec![0u8; n];
        let mut take = 2 * n - 2;
        for level in levels.iter().rev() {
            let taken = &level[..take.min(level.len())];
            let leaves = taken.iter().filter(|item| item.1).count();
            lengths[..leaves].iter_mut().for_each(|l| *l += 1);
            take = 2 * (taken.len() - leaves);
        }
        lengths
    }

    #[test]
    fn package_merge_is_as_cheap_as_the_textbook_algorithm() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let cost =
            |count: &[u64], lengths: &[u8]| -> u64 { count.iter().zip(lengths).map(|(&c, &l)| c * u64::from(l)).sum() };
        for case in 0..600 {
            let leaves = Leaves::of(&random_hist(&mut x, case));
            let count = leaves.counts();
            for limit in [8u8, 9, 10, 12, 16] {
                if count.len() < 2 || count.len() > 1 << limit {
                    continue;
                }
                let lengths = package_merge(count, limit);
                let lengths = &lengths[..count.len()];
                assert!(lengths.iter().all(|&l| (1..=limit).contains(&l)), "case {case} limit {limit}");
                // Lighter leaves never get shorter codes.
                assert!(lengths.windows(2).all(|w| w[0] >= w[1]), "case {case} limit {limit}");
                let kraft: u64 = lengths.iter().map(|&l| 1u64 << (16 - l)).sum();
                assert_eq!(kraft, 1 << 16, "case {case} limit {limit}");
                assert_eq!(cost(count, lengths), cost(count, &reference_package_merge(count, limit)), "case {case}");
                // Ties broken exactly as the plain merge breaks them: the same lengths.
                assert_eq!(lengths, &sequential_package_merge(count, limit)[..], "case {case} limit {limit}");
            }
        }
    }
}
