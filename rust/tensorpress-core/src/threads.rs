//! One bounded worker pool for the whole process, built on first use and reused for every
//! `threads=` value: a pool per distinct value would leak OS threads (one pool of 64 workers
//! per value ever asked for), and building a pool per call would cost more than decoding a
//! small tensor.
//!
//! `threads = Some(n)` does not build anything: it caps how many pieces a parallel loop is cut
//! into (see [`min_len`]), so at most `n` workers of the shared pool work on one call.

use crate::error::{Error, Result};
use rayon::prelude::*;
use rayon::{ThreadPool, ThreadPoolBuilder};
use std::sync::OnceLock;

/// Largest `threads=` value accepted; larger values are refused rather than silently clamped.
pub const MAX_THREADS: usize = 1024;

/// Workers in the shared pool: one per core the process may use (never more than
/// [`MAX_THREADS`]).
pub fn pool_size() -> usize {
    pool().map_or(1, ThreadPool::current_num_threads)
}

fn pool() -> Option<&'static ThreadPool> {
    static POOL: OnceLock<Option<ThreadPool>> = OnceLock::new();
    POOL.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        ThreadPoolBuilder::new()
            .num_threads(cores.clamp(1, MAX_THREADS))
            .thread_name(|i| format!("tensorpress-{i}"))
            .build()
            .ok()
    })
    .as_ref()
}

/// Checks a `threads=` argument: `None` (all cores) or `1..=MAX_THREADS`.
pub fn validate_threads(threads: Option<usize>) -> Result<()> {
    match threads {
        Some(n) if !(1..=MAX_THREADS).contains(&n) => {
            Err(Error::invalid(format!("threads must be None (all cores) or 1..={MAX_THREADS}, got {n}")))
        }
        _ => Ok(()),
    }
}

/// Workers a call with `threads` may occupy: the request, at most the pool's size.
pub fn workers(threads: Option<usize>) -> usize {
    threads.map_or(pool_size(), |n| n.clamp(1, pool_size()))
}

/// Smallest piece (in items) a parallel loop over `items` items may be cut into so that no more
/// than [`workers`]`(threads)` pieces exist: pass it to rayon's `with_min_len`. When the call
/// may use the whole pool, pieces are single items instead: idle workers then steal from busy
/// ones, so uneven items (a tensor's short last chunk) or a worker that loses its core to another
/// process no longer leave the rest waiting.
pub fn min_len(items: usize, threads: Option<usize>) -> usize {
    if threads.is_none_or(|n| n >= pool_size()) {
        return 1;
    }
    items.div_ceil(workers(threads)).max(1)
}

/// Runs `f` inside the shared pool (its parallel loops then use the pool's workers). Callers
/// bound their loops' parallelism with [`min_len`]. Without a pool (threads could not be
/// spawned) `f` runs on the calling thread's default rayon context, still correctly.
pub fn in_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    match pool() {
        Some(p) => p.install(f),
        None => f(),
    }
}

/// `items.map(f)` in order, on the shared pool with at most [`workers`]`(threads)` pieces; on
/// the calling thread when there is one item or one worker (a pool round trip costs more than
/// a small tensor takes to decode, and far more on a busy machine).
pub fn map_pieces<T: Send, R: Send>(items: Vec<T>, threads: Option<usize>, f: impl Fn(T) -> R + Sync + Send) -> Vec<R> {
    if items.len() <= 1 || workers(threads) == 1 {
        return items.into_iter().map(f).collect();
    }
    let min = min_len(items.len(), threads);
    in_pool(|| items.into_par_iter().with_min_len(min).map(f).collect())
}

/// As [`map_pieces`], stopping at the first error.
pub fn try_for_each_piece<T: Send>(
    items: Vec<T>,
    threads: Option<usize>,
    f: impl Fn(T) -> Result<()> + Sync + Send,
) -> Result<()> {
    if items.len() <= 1 || workers(threads) == 1 {
        return items.into_iter().try_for_each(f);
    }
    let min = min_len(items.len(), threads);
    in_pool(|| items.into_par_iter().with_min_len(min).try_for_each(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_never_exceed_the_requested_workers() {
        for items in [0usize, 1, 2, 7, 100] {
            for threads in [None, Some(1), Some(2), Some(3), Some(1000)] {
                let pieces = items.div_ceil(min_len(items, threads));
                // A call that may use the whole pool is cut into items (work stealing); the
                // pool's size bounds its workers anyway.
                let whole_pool = threads.is_none_or(|n| n >= pool_size());
                assert!(whole_pool || pieces <= workers(threads), "{items} items, {threads:?}");
                assert!(!whole_pool || min_len(items, threads) == 1);
            }
        }
    }

    #[test]
    fn zero_and_huge_thread_counts_are_refused() {
        assert!(validate_threads(Some(0)).is_err());
        assert!(validate_threads(Some(MAX_THREADS + 1)).is_err());
        assert!(validate_threads(Some(1)).is_ok());
        assert!(validate_threads(None).is_ok());
    }
}
