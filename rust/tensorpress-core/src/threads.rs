//! Thread pools by size, built once and reused: building a pool per call would cost more than
//! decoding a small tensor.

use rayon::{ThreadPool, ThreadPoolBuilder};
use std::sync::{Arc, Mutex, OnceLock};

/// Most worker threads a caller may request.
pub const MAX_THREADS: usize = 256;

/// Pools built so far, by thread count.
type PoolCache = Mutex<Vec<(usize, Arc<ThreadPool>)>>;

fn pools() -> &'static PoolCache {
    static POOLS: OnceLock<PoolCache> = OnceLock::new();
    POOLS.get_or_init(|| Mutex::new(Vec::new()))
}

/// Runs `f` on a pool of `threads` workers (`None` = rayon's global pool, one per core).
pub fn run_with_threads<R: Send>(threads: Option<usize>, f: impl FnOnce() -> R + Send) -> R {
    let Some(n) = threads.map(|n| n.clamp(1, MAX_THREADS)) else { return f() };
    let pool = {
        let mut guard = pools().lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, p)) = guard.iter().find(|(size, _)| *size == n) {
            Some(Arc::clone(p))
        } else {
            match ThreadPoolBuilder::new().num_threads(n).build() {
                Ok(p) => {
                    let p = Arc::new(p);
                    guard.push((n, Arc::clone(&p)));
                    Some(p)
                }
                Err(_) => None,
            }
        }
    };
    match pool {
        Some(p) => p.install(f),
        // Could not spawn threads: the global pool still gives a correct result.
        None => f(),
    }
}
