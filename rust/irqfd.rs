// SPDX-License-Identifier: GPL-2.0

//! `KVM_IRQFD`: an eventfd whose signals raise a GSI, so a device model
//! (vhost, a VMM's I/O thread, VFIO) interrupts the guest without a trip
//! through `KVM_SIGNAL_MSI`. Model: `virt/kvm/eventfd.c`.
//!
//! With rkvm's split irqchip a GSI means its MSI route
//! (`KVM_SET_GSI_ROUTING`), looked up when the signal is delivered, so a
//! routing change applies to the next signal; a GSI without a route drops
//! the signal, as in KVM. Resampling irqfds (level-triggered, for an
//! in-kernel I/O APIC) need KVM's full irqchip: EINVAL, as KVM gives with a
//! split one.
//!
//! `c/irqfd.c` hangs each irqfd on its eventfd's wait queue as an exclusive
//! priority waiter, which is how KVM refuses (EBUSY) a second irqfd on an
//! eventfd, in this VM or another. A signal (in atomic context, under the
//! wait queue's lock) consumes the counter and schedules a work item; the
//! work item calls [`rkvm_irqfd_fire`], which delivers the MSI with the
//! VM's locks (`routing`, then `vcpus` and the target's `apic`). When the
//! eventfd's file is released the irqfd detaches itself; the VM prunes it
//! at its next `KVM_IRQFD`.
//!
//! Lifetime: closing the VM fd frees the VM's irqfds (as KVM); in any
//! case the VM's `irqfds` field is dropped right after the notifier,
//! before every field [`rkvm_irqfd_fire`] uses, and dropping an irqfd
//! detaches it and waits for its work item, so no work item outlives the
//! VM fields it reads. Lock order: `irqfds` is taken before `routing`,
//! `vcpus` and `apic` (freeing an irqfd waits for a delivery that takes
//! them), and a delivery never takes `irqfds`.

use core::{
    ffi::c_void,
    ptr::NonNull, //
};

use kernel::prelude::*;

use crate::{
    abi::{
        irqfd_flag,
        KvmIrqfd, //
    },
    vm::Vm,
};

extern "C" {
    fn rkvm_irqfd_new(fd: i32, vm: *const c_void, gsi: u32) -> *mut c_void;
    fn rkvm_irqfd_eventfd(irqfd: *const c_void) -> *const c_void;
    fn rkvm_irqfd_hung_up(irqfd: *const c_void) -> bool;
    fn rkvm_irqfd_free(irqfd: *mut c_void);
}

/// One assigned irqfd.
///
/// # Invariants
///
/// `raw` came from `rkvm_irqfd_new()` with the VM that holds this value in
/// its `irqfds` list, and is freed only by `drop`.
struct IrqFd {
    raw: NonNull<c_void>,
    gsi: u32,
}

// SAFETY: the C object is used from any thread: its wait-queue entry is
// guarded by the eventfd's lock and its work item by the workqueue; the
// fields read here (`eventfd`, `hung_up`) are set at creation or read with
// READ_ONCE.
unsafe impl Send for IrqFd {}

impl IrqFd {
    /// The eventfd context it listens to.
    fn eventfd(&self) -> *const c_void {
        // SAFETY: `raw` is live (type invariant).
        unsafe { rkvm_irqfd_eventfd(self.raw.as_ptr()) }
    }

    /// Whether the eventfd's file is gone (the irqfd no longer listens).
    fn hung_up(&self) -> bool {
        // SAFETY: `raw` is live (type invariant).
        unsafe { rkvm_irqfd_hung_up(self.raw.as_ptr()) }
    }
}

impl Drop for IrqFd {
    fn drop(&mut self) {
        // SAFETY: `raw` is live and freed once, here (type invariant).
        // Freeing waits for a pending delivery, which needs the VM's
        // `routing`, `vcpus` and `apic` locks but not `irqfds`, which our
        // caller may hold.
        unsafe { rkvm_irqfd_free(self.raw.as_ptr()) };
    }
}

/// The irqfds of a VM.
#[derive(Default)]
pub(crate) struct IrqFds {
    list: KVec<IrqFd>,
}

impl IrqFds {
    /// Frees every irqfd (each waits for its pending delivery).
    pub(crate) fn clear(&mut self) {
        self.list.clear();
    }

    /// `KVM_IRQFD` (KVM's `kvm_irqfd()`): EINVAL for unknown flags, for an
    /// assignment without the irqchip or with RESAMPLE; EBADF for a bad fd,
    /// EINVAL for a file that is no eventfd, EBUSY for an eventfd an irqfd
    /// already has. Deassigning removes the irqfds of that eventfd and GSI
    /// (none is no error) and returns once their pending signal is
    /// delivered.
    pub(crate) fn ioctl(&mut self, vm: &Vm, args: &KvmIrqfd) -> Result<isize> {
        use irqfd_flag::*;
        if args.flags & !(DEASSIGN | RESAMPLE) != 0 {
            return Err(EINVAL);
        }
        // Irqfds whose eventfd is gone cannot fire again.
        self.list.retain(|f| !f.hung_up());
        let fd = args.fd as i32;
        if args.flags & DEASSIGN != 0 {
            let ctx = crate::shim::eventfd_get(fd)?;
            self.list
                .retain(|f| !(f.gsi == args.gsi && f.eventfd() == ctx.cast_const()));
            // SAFETY: `ctx` is the reference `eventfd_get` just took.
            unsafe { crate::shim::eventfd_put(ctx) };
            return Ok(0);
        }
        if !vm.has_irqchip() || args.flags & RESAMPLE != 0 {
            return Err(EINVAL);
        }
        self.list.reserve(1, GFP_KERNEL_ACCOUNT)?;
        let owner: *const Vm = vm;
        // SAFETY: `owner` is the VM this list belongs to; the irqfd is
        // freed (waiting for its work item) before the VM's fields that
        // `rkvm_irqfd_fire` uses are dropped (module documentation).
        let raw = unsafe { rkvm_irqfd_new(fd, owner.cast(), args.gsi) };
        kernel::error::from_err_ptr(raw)?;
        let raw = NonNull::new(raw).ok_or(ENOMEM)?;
        // INVARIANT: `raw` is a new irqfd of `vm`, held by its list.
        self.list
            .push(IrqFd { raw, gsi: args.gsi }, GFP_KERNEL_ACCOUNT)?;
        Ok(0)
    }
}

/// Called by `c/irqfd.c`'s work item when the eventfd of an irqfd on GSI
/// `gsi` of `vm` was signalled.
#[no_mangle]
extern "C" fn rkvm_irqfd_fire(vm: *const c_void, gsi: u32) {
    // SAFETY: `vm` was given to `rkvm_irqfd_new` by `IrqFds::ioctl` and
    // the irqfd waits for this work item before the fields used here go
    // (module documentation).
    let vm = unsafe { &*vm.cast::<Vm>() };
    vm.irqfd_fire(gsi);
}
