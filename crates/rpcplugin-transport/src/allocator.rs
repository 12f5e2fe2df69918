//! The C allocator's thresholds, set for a process that moves gRPC messages.
//!
//! glibc returns freed memory to the kernel eagerly: a freed block of 128 KiB or
//! more is unmapped at once, and free memory at the top of the heap is trimmed once
//! it exceeds twice the largest such block. A process streaming messages of tens of
//! KiB through HTTP/2 and gRPC buffers allocates and frees such blocks for every
//! message, so every message pays page faults and zeroed pages: measured on a 2-core
//! machine, a 64 KiB download ran at ~590 MiB/s with glibc's defaults and ~1.8 GiB/s
//! with the thresholds below, the 1 MiB one at ~450 MiB/s and ~2.2 GiB/s
//! (docs/performance.md). The price is that up to a few MiB of freed memory stay in
//! the process for reuse instead of going back to the kernel.

/// Blocks smaller than this come from the heap, not from a fresh `mmap` each.
pub const MMAP_THRESHOLD: usize = 4 << 20;

/// Free memory at the top of the heap is returned to the kernel only beyond this.
pub const TRIM_THRESHOLD: usize = 8 << 20;

/// Sets glibc's `M_MMAP_THRESHOLD` and `M_TRIM_THRESHOLD` to [`MMAP_THRESHOLD`] and
/// [`TRIM_THRESHOLD`] for the whole process (this also turns off glibc's dynamic
/// adjustment of both). Returns whether they were set: `false` on other C
/// libraries (musl, macOS), where this does nothing.
///
/// rpcplugin's plugin entry point (`PluginServer::run`) calls it, since a plugin
/// owns its process. A host calls it once, early in `main`, when it wants the same
/// for its side; the library never changes a host's allocator by itself.
///
/// ```
/// // Idempotent, cheap, and safe to call from any thread.
/// let tuned = rpcplugin_transport::tune_allocator();
/// assert_eq!(tuned, cfg!(all(target_os = "linux", target_env = "gnu")));
/// ```
pub fn tune_allocator() -> bool {
    imp::tune()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod imp {
    use nix::libc::{M_MMAP_THRESHOLD, M_TRIM_THRESHOLD, c_int, mallopt};

    #[allow(unsafe_code)]
    pub(super) fn tune() -> bool {
        let value = |bytes: usize| c_int::try_from(bytes).unwrap_or(c_int::MAX);
        // SAFETY: mallopt takes the allocator's own locks; any thread may call it
        // at any time, and these parameters only change when memory goes back to
        // the kernel, never the validity of memory already handed out.
        unsafe {
            mallopt(M_MMAP_THRESHOLD, value(super::MMAP_THRESHOLD)) == 1
                && mallopt(M_TRIM_THRESHOLD, value(super::TRIM_THRESHOLD)) == 1
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod imp {
    pub(super) fn tune() -> bool {
        false
    }
}
