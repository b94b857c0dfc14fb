// SPDX-License-Identifier: GPL-2.0

//! Safe wrappers of the C helpers in `c/shim.c` (prototypes in
//! `include/rkvm/shim.h`).

use kernel::prelude::*;

mod ffi {
    extern "C" {
        pub(super) fn rkvm_user_range_ok(addr: usize, size: usize) -> bool;
        pub(super) fn rkvm_num_online_cpus() -> u32;
        pub(super) fn rkvm_tsc_khz() -> u32;
        pub(super) fn rkvm_clock_read(raw_ns: *mut u64, real_ns: *mut u64, tsc: *mut u64);
        pub(super) fn rkvm_virt_to_phys(addr: *const core::ffi::c_void) -> u64;
        pub(super) fn rkvm_phys_to_virt(pa: u64) -> *mut core::ffi::c_void;
        pub(super) fn rkvm_pin_user_page(hva: usize, write: bool, pfn: *mut u64) -> i32;
        pub(super) fn rkvm_unpin_pfn(pfn: u64, dirty: bool);
        pub(super) fn rkvm_fpu_begin();
        pub(super) fn rkvm_fpu_end();
        pub(super) fn rkvm_signal_pending() -> bool;
        pub(super) fn rkvm_cond_resched();
        pub(super) fn rkvm_kick_cpu(cpu: i32);
        pub(super) fn rkvm_load_gs_index(sel: u16);
        pub(super) fn rkvm_rdmsr_safe(msr: u32, val: *mut u64) -> i32;
        pub(super) fn rkvm_wrmsr(msr: u32, val: u64);
        pub(super) fn rkvm_table_alloc() -> *mut core::ffi::c_void;
        pub(super) fn rkvm_table_free(va: *mut core::ffi::c_void);
        pub(super) fn rkvm_table_owner(va: *const core::ffi::c_void) -> core::ffi::c_ulong;
        pub(super) fn rkvm_table_set_owner(va: *mut core::ffi::c_void, owner: core::ffi::c_ulong);
        pub(super) fn rkvm_need_resched() -> bool;
        pub(super) fn rkvm_eventfd_get(fd: i32) -> *mut core::ffi::c_void;
        pub(super) fn rkvm_eventfd_signal(ctx: *mut core::ffi::c_void);
        pub(super) fn rkvm_eventfd_put(ctx: *mut core::ffi::c_void);
    }
}

/// Whether `[addr, addr + size)` is a valid user address range.
pub(crate) fn user_range_ok(addr: u64, size: u64) -> bool {
    let (Ok(addr), Ok(size)) = (usize::try_from(addr), usize::try_from(size)) else {
        return false;
    };
    // SAFETY: the helper only computes on its arguments.
    unsafe { ffi::rkvm_user_range_ok(addr, size) }
}

/// The number of online CPUs.
pub(crate) fn num_online_cpus() -> u32 {
    // SAFETY: reads a global counter.
    unsafe { ffi::rkvm_num_online_cpus() }
}

/// The host TSC frequency in kHz (`tsc_khz`).
pub(crate) fn tsc_khz() -> u32 {
    // SAFETY: reads a global set during boot.
    unsafe { ffi::rkvm_tsc_khz() }
}

/// One reading of the host clocks: (CLOCK_MONOTONIC_RAW ns,
/// CLOCK_REALTIME ns, TSC), taken together.
pub(crate) fn clock_read() -> (u64, u64, u64) {
    let (mut raw, mut real, mut tsc) = (0, 0, 0);
    // SAFETY: the helper writes the three locals and nothing else.
    unsafe { ffi::rkvm_clock_read(&mut raw, &mut real, &mut tsc) };
    (raw, real, tsc)
}

/// The physical address of a direct-map (kmalloc) address.
pub(crate) fn virt_to_phys<T>(addr: *const T) -> u64 {
    // SAFETY: only computes; callers pass direct-map addresses.
    unsafe { ffi::rkvm_virt_to_phys(addr.cast()) }
}

/// The direct-map address of physical address `pa`.
pub(crate) fn phys_to_virt(pa: u64) -> *mut u8 {
    // SAFETY: only computes.
    unsafe { ffi::rkvm_phys_to_virt(pa).cast() }
}

/// Pins the current process's page at user address `hva` (long-term), for
/// writing if `write`; returns its page frame number.
pub(crate) fn pin_user_page(hva: u64, write: bool) -> Result<u64> {
    let hva = usize::try_from(hva).map_err(|_| EFAULT)?;
    let mut pfn = 0;
    // SAFETY: `pfn` is a valid u64 for the call; GUP validates `hva`.
    let ret = unsafe { ffi::rkvm_pin_user_page(hva, write, &mut pfn) };
    if ret < 0 {
        return Err(Error::from_errno(ret));
    }
    Ok(pfn)
}

/// Releases a pin taken by [`pin_user_page`], marking the page dirty if
/// `dirty` (it was pinned for writing).
///
/// # Safety
///
/// `pfn` was returned by [`pin_user_page`] and this pin is released once.
pub(crate) unsafe fn unpin_pfn(pfn: u64, dirty: bool) {
    // SAFETY: guaranteed by the caller.
    unsafe { ffi::rkvm_unpin_pfn(pfn, dirty) }
}

/// A `kernel_fpu_begin()` section: the task's FPU state is saved and the
/// registers are free for the guest until the guard drops. Disables
/// preemption.
pub(crate) struct FpuGuard(());

impl FpuGuard {
    /// Enters the section; interrupts must be enabled.
    pub(crate) fn new() -> Self {
        // SAFETY: process context with interrupts enabled (the only caller
        // is `KVM_RUN`); paired with `kernel_fpu_end` in `drop`.
        unsafe { ffi::rkvm_fpu_begin() };
        Self(())
    }
}

impl Drop for FpuGuard {
    fn drop(&mut self) {
        // SAFETY: paired with the `kernel_fpu_begin` in `new`, with
        // interrupts in the same state.
        unsafe { ffi::rkvm_fpu_end() };
    }
}

/// Whether the current task has a signal pending.
pub(crate) fn signal_pending() -> bool {
    // SAFETY: reads the current task's flags.
    unsafe { ffi::rkvm_signal_pending() }
}

/// Yields the CPU if the scheduler wants it.
pub(crate) fn cond_resched() {
    // SAFETY: called from process context without spinlocks held.
    unsafe { ffi::rkvm_cond_resched() }
}

/// Interrupts `cpu` and waits until it has run the (empty) IPI handler,
/// i.e. until it has had interrupts enabled since this call.
pub(crate) fn kick_cpu(cpu: i32) {
    // SAFETY: called with interrupts enabled, from process context; the
    // helper validates nothing else.
    unsafe { ffi::rkvm_kick_cpu(cpu) }
}

/// `load_gs_index()`.
///
/// # Safety
///
/// Interrupts disabled; `sel` is the selector the task had in GS.
pub(crate) unsafe fn load_gs_index(sel: u16) {
    // SAFETY: guaranteed by the caller.
    unsafe { ffi::rkvm_load_gs_index(sel) }
}

/// Reads an MSR, `None` if it does not exist.
pub(crate) fn rdmsr_safe(msr: u32) -> Option<u64> {
    let mut v = 0;
    // SAFETY: `v` is a valid u64; the read is exception-safe.
    (unsafe { ffi::rkvm_rdmsr_safe(msr, &mut v) } == 0).then_some(v)
}

/// Writes an MSR.
///
/// # Safety
///
/// Writing `val` to `msr` must not break the kernel (the caller restores a
/// value it read).
pub(crate) unsafe fn wrmsr(msr: u32, val: u64) {
    // SAFETY: guaranteed by the caller.
    unsafe { ffi::rkvm_wrmsr(msr, val) }
}

/// Whether the scheduler wants this CPU back (lock-breaking loops).
pub(crate) fn need_resched() -> bool {
    // SAFETY: reads the current task's flags.
    unsafe { ffi::rkvm_need_resched() }
}

/// A zeroed page below 4 GiB for a shadow page table, owned by the caller
/// until [`table_free`]; `None` without memory.
pub(crate) fn table_alloc() -> Option<core::ptr::NonNull<[u64; 512]>> {
    // SAFETY: allocates; no precondition.
    core::ptr::NonNull::new(unsafe { ffi::rkvm_table_alloc() }.cast())
}

/// Frees a page from [`table_alloc`].
///
/// # Safety
///
/// `va` came from [`table_alloc`] and is not used afterwards.
pub(crate) unsafe fn table_free(va: core::ptr::NonNull<[u64; 512]>) {
    // SAFETY: guaranteed by the caller.
    unsafe { ffi::rkvm_table_free(va.as_ptr().cast()) }
}

/// The owner tag stored in the `struct page` of a page from [`table_alloc`].
///
/// # Safety
///
/// `va` is a live page from [`table_alloc`].
pub(crate) unsafe fn table_owner(va: *const [u64; 512]) -> u64 {
    // SAFETY: guaranteed by the caller.
    unsafe { ffi::rkvm_table_owner(va.cast()) }
}

/// Sets the owner tag of a page from [`table_alloc`].
///
/// # Safety
///
/// `va` is a live page from [`table_alloc`] owned by the caller.
pub(crate) unsafe fn table_set_owner(va: *mut [u64; 512], owner: u64) {
    // SAFETY: guaranteed by the caller.
    unsafe { ffi::rkvm_table_set_owner(va.cast(), owner as core::ffi::c_ulong) }
}

/// A counted reference on the eventfd behind `fd` (`eventfd_ctx_fdget()`);
/// `EBADF` or `EINVAL` as that function returns them. The caller owns the
/// reference and drops it with [`eventfd_put`].
pub(crate) fn eventfd_get(fd: i32) -> Result<*mut core::ffi::c_void> {
    // SAFETY: takes no pointer; returns a reference or an error pointer.
    let ctx = unsafe { ffi::rkvm_eventfd_get(fd) };
    kernel::error::from_err_ptr(ctx)
}

/// Signals an eventfd (adds 1 to its counter, wakes its waiters).
///
/// # Safety
///
/// `ctx` is a reference from [`eventfd_get`] not yet put.
pub(crate) unsafe fn eventfd_signal(ctx: *mut core::ffi::c_void) {
    // SAFETY: guaranteed by the caller.
    unsafe { ffi::rkvm_eventfd_signal(ctx) }
}

/// Drops a reference from [`eventfd_get`].
///
/// # Safety
///
/// `ctx` is such a reference, not used afterwards.
pub(crate) unsafe fn eventfd_put(ctx: *mut core::ffi::c_void) {
    // SAFETY: guaranteed by the caller.
    unsafe { ffi::rkvm_eventfd_put(ctx) }
}
