// SPDX-License-Identifier: GPL-2.0

//! Safe wrappers of the C helpers in `c/shim.c` (prototypes in
//! `include/rkvm/shim.h`).

mod ffi {
    extern "C" {
        pub(super) fn rkvm_user_range_ok(addr: usize, size: usize) -> bool;
        pub(super) fn rkvm_num_online_cpus() -> u32;
        pub(super) fn rkvm_tsc_khz() -> u32;
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
