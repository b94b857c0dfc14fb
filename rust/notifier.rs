// SPDX-License-Identifier: GPL-2.0

//! The VM's mmu_notifier: host changes to the VMM's memory reach the
//! mappings rkvm made of it (the EPT map and the shadow leaves).
//!
//! `c/notifier.c` holds the ops table; its callbacks land here with the
//! VM they were registered for. Model: `virt/kvm/kvm_main.c`
//! (`kvm_mmu_notifier_*`).
//!
//! * `invalidate_range_start`: inside an SRCU section over the active
//!   slot set, every slot backed by part of the range has those frames
//!   unmapped through their rmaps (a batch at a time, vCPUs kicked before
//!   the pins are released). Before that the invalidation counts as in
//!   progress (under `mmu_lock`): no fault may install a mapping until
//!   `invalidate_range_end`, which also moves the invalidation sequence so
//!   that a fault that looked its page up before retries. Nothing on this
//!   path sleeps (the MMU lock is a spinlock, pins are released without
//!   the page lock), so non-blockable calls (the OOM reaper) are served
//!   the same way, without yielding the CPU between batches.
//! * `release` (the process's address space is torn down): every frame
//!   of every slot is unmapped and every shadow page retired.
//! * aging: a shadow leaf's accessed bit says whether the guest used the
//!   page since the last clear; the EPT map has no accessed bits (rkvm
//!   does not enable them), so a frame it maps always counts as young.

use core::{
    ffi::c_void,
    sync::atomic::{
        AtomicPtr,
        Ordering, //
    },
};

use kernel::{
    prelude::*,
    sync::Arc, //
};

use crate::vm::Vm;

extern "C" {
    fn rkvm_mn_register(vm: *const c_void, mm: *mut c_void) -> *mut c_void;
    fn rkvm_mn_unregister(reg: *mut c_void, mm: *mut c_void);
}

/// A VM's notifier registration, undone when dropped (which must happen
/// before the rest of the VM goes: it is the VM's first field).
pub(crate) struct Registration {
    reg: AtomicPtr<c_void>,
    mm: AtomicPtr<c_void>,
}

impl Registration {
    /// Not registered yet (see [`register`]).
    pub(crate) const fn new() -> Self {
        Self {
            reg: AtomicPtr::new(core::ptr::null_mut()),
            mm: AtomicPtr::new(core::ptr::null_mut()),
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let reg = *self.reg.get_mut();
        if !reg.is_null() {
            // SAFETY: `reg` came from `rkvm_mn_register` on `mm`, which the
            // VM still holds (`Vm::mm` is dropped after this field); it is
            // unregistered once. Unregistering waits for running callbacks.
            unsafe { rkvm_mn_unregister(reg, *self.mm.get_mut()) };
        }
    }
}

/// Registers the notifier of `vm` on its address space.
pub(crate) fn register(vm: &Arc<Vm>) -> Result {
    let mm = vm.mm().as_raw().cast::<c_void>();
    let owner: *const Vm = &**vm;
    // SAFETY: `mm` is the VM's address space, held (`mmgrab`) by the VM
    // and in use by the calling process; `owner` stays valid until the
    // registration is dropped, since the registration is a field of it.
    let reg = unsafe { rkvm_mn_register(owner.cast(), mm) };
    kernel::error::from_err_ptr(reg)?;
    vm.notifier().mm.store(mm, Ordering::Relaxed);
    vm.notifier().reg.store(reg, Ordering::Release);
    Ok(())
}

/// The VM a callback was registered for.
///
/// # Safety
///
/// `vm` was passed to `rkvm_mn_register`, whose registration is alive.
unsafe fn vm<'a>(vm: *const c_void) -> &'a Vm {
    // SAFETY: the registration is a field of the VM and unregisters
    // (waiting for callbacks) before the VM is gone.
    unsafe { &*vm.cast::<Vm>() }
}

#[no_mangle]
extern "C" fn rkvm_mn_invalidate_start(
    vm_ptr: *const c_void,
    start: u64,
    end: u64,
    blockable: bool,
) -> i32 {
    // SAFETY: called by `c/notifier.c` with the registered VM.
    unsafe { vm(vm_ptr) }.host_invalidate_start(start, end, blockable);
    0
}

#[no_mangle]
extern "C" fn rkvm_mn_invalidate_end(vm_ptr: *const c_void) {
    // SAFETY: called by `c/notifier.c` with the registered VM.
    unsafe { vm(vm_ptr) }.host_invalidate_end();
}

#[no_mangle]
extern "C" fn rkvm_mn_release(vm_ptr: *const c_void) {
    // SAFETY: called by `c/notifier.c` with the registered VM.
    unsafe { vm(vm_ptr) }.host_release();
}

#[no_mangle]
extern "C" fn rkvm_mn_age(vm_ptr: *const c_void, start: u64, end: u64, clear: bool) -> bool {
    // SAFETY: called by `c/notifier.c` with the registered VM.
    unsafe { vm(vm_ptr) }.host_age(start, end, clear)
}
