//! Large buffers go back to the operating system when they are freed.
//!
//! A server's memory budget counts the bytes its connections hold (a frame in progress is
//! charged by its buffer's capacity), which bounds the resident size only if freed buffers
//! leave the process. glibc's malloc serves a block of 128 KiB or more with a mapping of its
//! own and unmaps it on free, but it raises that threshold to the size of every such block
//! freed (up to 32 MiB): after the first 8 MiB frame buffer is freed, later ones come from
//! the arenas' heaps, which fragment across threads and keep their pages. Under a churn of
//! large frames (clients that start an 8 MiB frame, are closed, reconnect and start again)
//! the resident size then grows past the budget and stays there. A fixed threshold turns
//! that adjustment off: blocks of [`LARGE_BLOCK`] or more are always mapped and unmapped.

/// Allocations at least this large get a mapping of their own (freed at once on free).
/// Editing traffic rarely allocates this much; large frames and snapshots do.
pub const LARGE_BLOCK: usize = 1 << 20;

/// Makes large freed buffers return to the OS (see the module doc). Call once at start.
/// A no-op outside glibc.
pub fn release_large_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    set_mmap_threshold(LARGE_BLOCK);
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn set_mmap_threshold(bytes: usize) {
    let bytes = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: mallopt only changes a malloc tuning parameter; it takes no pointers and is
    // safe to call from any thread at any time.
    let ok = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, bytes) };
    if ok != 1 {
        tracing::debug!("mallopt(M_MMAP_THRESHOLD) refused; freed large buffers may stay resident");
    }
}
