//! A cache-line prefetch hint: the cache's one use of `unsafe` (the intrinsic is an
//! `unsafe fn`), kept to this function. It is only a hint — it reads nothing architecturally,
//! cannot fault and changes no result — so callers may pass any address, even a stale one.

/// Starts loading the cache line holding `p` into L1 without waiting for it. Never faults,
/// whatever `p` is (a stale or wild address costs a wasted load at most).
#[inline(always)]
pub(crate) fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `prefetcht0` needs SSE, which every x86_64 CPU has; it accesses no memory
    // architecturally, so no address can fault or be undefined behaviour.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
