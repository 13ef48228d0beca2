//! Faulting in output memory ahead of the decoders' streaming stores.
//!
//! A fresh output (a `numpy.empty` or `torch.empty` the size of a model) has no pages yet: its
//! first write faults, and the kernel clears each page through the cache. The plane merges
//! write large outputs with non-temporal stores (`planes::nontemporal`), which skip reading each
//! line first; but a non-temporal store that faults lands on lines the clear just pulled into
//! the cache, and the decode then runs slower than with plain stores. Populating the output
//! first, on every worker, moves the clearing out of the decode loop and spreads it over the
//! cores. Memory that is already mapped (a reused buffer, model parameters) is left alone after
//! one `mincore` call per 2 MiB.

use crate::threads::map_pieces;

/// Bytes each worker populates per work item: one transparent huge page.
pub const POPULATE_PIECE_BYTES: usize = 2 << 20;

/// Page size assumed when rounding a range in to whole pages and when touching pages one by one
/// (4 KiB on every x86-64 and most aarch64 Linux systems; a larger page is then touched several
/// times, which is harmless).
const PAGE_BYTES: usize = 4096;

/// Faults in every whole page of `bufs`, on the shared pool, without changing their bytes.
pub fn populate(bufs: Vec<&mut [u8]>, threads: Option<usize>) {
    let pieces: Vec<&mut [u8]> = bufs.into_iter().flat_map(|b| b.chunks_mut(POPULATE_PIECE_BYTES)).collect();
    map_pieces(pieces, threads, populate_piece);
}

/// Faults in the whole pages of `piece`: `madvise(MADV_POPULATE_WRITE)` where the kernel has it
/// (Linux 5.14+), else one read and write back of a byte per page.
fn populate_piece(piece: &mut [u8]) {
    let start = piece.as_ptr().align_offset(PAGE_BYTES).min(piece.len());
    let whole = (piece.len() - start) / PAGE_BYTES * PAGE_BYTES;
    if whole == 0 {
        return;
    }
    let pages = &mut piece[start..start + whole];
    #[cfg(target_os = "linux")]
    {
        if first_page_mapped(pages) {
            // A reused buffer: MADV_POPULATE_WRITE would still walk its pages one by one, at
            // ~0.2 µs each (5 % of a load into reused arrays).
            return;
        }
        // SAFETY: `pages` is page-aligned memory this function holds exclusively;
        // MADV_POPULATE_WRITE only faults pages in, writable, and never changes their contents.
        let done = unsafe { libc::madvise(pages.as_mut_ptr().cast(), whole, libc::MADV_POPULATE_WRITE) } == 0;
        if done {
            return;
        }
    }
    touch_pages(pages);
}

/// Whether the first page of the page-aligned, non-empty `pages` is mapped (`mincore`): a
/// buffer is typically all fresh or all reused.
#[cfg(target_os = "linux")]
fn first_page_mapped(pages: &[u8]) -> bool {
    let mut resident = 0u8;
    // SAFETY: `pages` starts a page this process has mapped; mincore writes one byte per page
    // of the PAGE_BYTES range into `resident`.
    let ok = unsafe { libc::mincore(pages.as_ptr() as *mut libc::c_void, PAGE_BYTES, &mut resident) } == 0;
    ok && resident & 1 == 1
}

/// Reads and writes back the first byte of every page-sized piece of `pages`: the write faults
/// the page in, the value is kept.
fn touch_pages(pages: &mut [u8]) {
    for page in pages.chunks_mut(PAGE_BYTES) {
        let p = page.as_mut_ptr();
        // SAFETY: `p` points at the first byte of `page` (never empty); volatile so the
        // read-then-write of the same value is not optimised away.
        unsafe { std::ptr::write_volatile(p, std::ptr::read_volatile(p)) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn populate_keeps_every_byte() {
        let mut buf: Vec<u8> = (0..(5 << 20) + 123).map(|i: usize| (i.wrapping_mul(31) >> 3) as u8).collect();
        let copy = buf.clone();
        for (start, threads) in [(0, None), (1, Some(1)), (4095, Some(2)), (4097, None)] {
            populate(vec![&mut buf[start..]], threads);
            assert_eq!(buf, copy);
        }
        let (left, right) = buf.split_at_mut(3 << 20);
        populate(vec![left, &mut [], right], Some(2));
        assert_eq!(buf, copy);
        populate(vec![], None);
        populate(vec![&mut [7u8; 10]], None);
    }

    #[test]
    fn the_touch_fallback_keeps_every_byte() {
        let mut buf: Vec<u8> = (0..3 * PAGE_BYTES + 17).map(|i| (i % 251) as u8).collect();
        let copy = buf.clone();
        touch_pages(&mut buf[1..]);
        touch_pages(&mut []);
        assert_eq!(buf, copy);
    }
}
