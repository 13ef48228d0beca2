//! Recycled chunk buffers. Where chunks are coded in parallel, each is built in a buffer of its
//! own (its size is known only once it is coded) until the stream is assembled, and then freed.
//! A buffer of a chunk's size is above glibc's mmap threshold once trimmed, so each one was
//! mapped afresh and every page faulted and zeroed by the kernel again: 15 % of a one-thread
//! bf16 `tp.save` of MiniLM. A one-worker stream is coded into one buffer of about its size,
//! taken here too. [`StreamParts`](super::StreamParts) hands its buffers back here when dropped
//! (a caller that copied the stream into its own buffer), and they are reused, up to
//! [`KEPT_BYTES`] of them.

use std::sync::{Mutex, PoisonError};

/// Most capacity kept for reuse (about 280 chunks of the default size).
pub const KEPT_BYTES: usize = 36 << 20;
/// Smallest buffer kept or handed out: smaller ones come from glibc's heap (under its 128 KiB
/// mmap threshold) without fresh page faults, and keeping them would fill the pool with
/// buffers no chunk of the default size can use, each searched on every take.
pub const MIN_KEPT_BYTES: usize = 64 << 10;

static POOL: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// An empty buffer of at least `capacity` bytes: the smallest kept one that is large enough
/// (so small chunks do not take the buffers large ones need), else a new one.
pub(crate) fn take(capacity: usize) -> Vec<u8> {
    if capacity < MIN_KEPT_BYTES {
        return Vec::with_capacity(capacity);
    }
    let mut pool = POOL.lock().unwrap_or_else(PoisonError::into_inner);
    let fitting = pool.iter().enumerate().filter(|(_, b)| b.capacity() >= capacity);
    if let Some((i, _)) = fitting.min_by_key(|(_, b)| b.capacity()) {
        let mut buffer = pool.swap_remove(i);
        buffer.clear();
        return buffer;
    }
    drop(pool);
    Vec::with_capacity(capacity)
}

/// Keeps `buffers` of at least [`MIN_KEPT_BYTES`] for reuse while the pool holds less than
/// [`KEPT_BYTES`].
pub(crate) fn recycle(buffers: impl IntoIterator<Item = Vec<u8>>) {
    let mut pool = POOL.lock().unwrap_or_else(PoisonError::into_inner);
    let mut kept: usize = pool.iter().map(Vec::capacity).sum();
    for buffer in buffers {
        if buffer.capacity() >= MIN_KEPT_BYTES && kept + buffer.capacity() <= KEPT_BYTES {
            kept += buffer.capacity();
            pool.push(buffer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_empty_and_large_enough() {
        let mut b = take(MIN_KEPT_BYTES + 1000);
        b.extend_from_slice(&[7; 1000]);
        recycle([b, Vec::new(), Vec::with_capacity(100)]);
        let again = take(MIN_KEPT_BYTES + 900);
        assert!(again.is_empty() && again.capacity() >= MIN_KEPT_BYTES + 900);
        assert!(take(900).capacity() >= 900);
        assert!(take(1 << 30).capacity() >= 1 << 30);
        recycle([Vec::with_capacity(KEPT_BYTES + 1)]);
        let pool = POOL.lock().unwrap_or_else(PoisonError::into_inner);
        assert!(pool.iter().map(Vec::capacity).sum::<usize>() <= KEPT_BYTES);
        assert!(pool.iter().all(|b| b.capacity() >= MIN_KEPT_BYTES));
    }
}
