// SPDX-License-Identifier: GPL-2.0

//! `KVM_IOEVENTFD`: guest writes to registered PIO ports or MMIO addresses
//! signal an eventfd instead of exiting to user space. Model:
//! `virt/kvm/eventfd.c`; the rules are in [`rules`].
//!
//! Handled today: OUT of 1, 2 or 4 bytes (not the string forms, which
//! still exit) and MMIO stores the decoder knows. The VM holds the list
//! under its own mutex (a leaf lock, taken outside the VMX window); each
//! entry holds a reference on its eventfd, dropped on deassignment or with
//! the VM.

pub(crate) mod rules;

use kernel::{
    prelude::*,
    uaccess::{
        UserPtr,
        UserSlice, //
    },
};

use crate::abi::KvmIoeventfd;
use rules::{
    flag,
    Bus,
    Key, //
};

/// A reference on an eventfd context.
///
/// # Invariants
///
/// `ctx` came from `eventfd_ctx_fdget()` and this value owns that
/// reference.
struct EventFd {
    ctx: *mut core::ffi::c_void,
}

// SAFETY: an eventfd context is reference-counted and its operations
// (signal, put) may be called from any thread.
unsafe impl Send for EventFd {}
// SAFETY: as above; `&EventFd` only signals.
unsafe impl Sync for EventFd {}

impl EventFd {
    /// The eventfd behind file descriptor `fd`: `EBADF` for a bad fd,
    /// `EINVAL` for a file that is not an eventfd.
    fn get(fd: i32) -> Result<Self> {
        let ctx = crate::shim::eventfd_get(fd)?;
        // INVARIANT: a reference from eventfd_ctx_fdget().
        Ok(Self { ctx })
    }

    fn signal(&self) {
        // SAFETY: `ctx` is a live context (type invariant).
        unsafe { crate::shim::eventfd_signal(self.ctx) };
    }
}

impl Drop for EventFd {
    fn drop(&mut self) {
        // SAFETY: drops the reference this value owns (type invariant).
        unsafe { crate::shim::eventfd_put(self.ctx) };
    }
}

struct Entry {
    key: Key,
    eventfd: EventFd,
}

/// The ioeventfds of a VM.
#[derive(Default)]
pub(crate) struct IoEventFds {
    list: KVec<Entry>,
}

impl IoEventFds {
    /// Signals the ioeventfd a guest write matches, if any; true if one
    /// took the write (the guest continues without an exit).
    pub(crate) fn write(&self, pio: bool, addr: u64, len: u32, value: u64) -> bool {
        let bus = if pio { Bus::Pio } else { Bus::Mmio };
        match self
            .list
            .iter()
            .find(|e| e.key.matches(bus, addr, len, value))
        {
            Some(e) => {
                e.eventfd.signal();
                true
            }
            None => false,
        }
    }

    /// `KVM_IOEVENTFD` (KVM's `kvm_ioeventfd()`).
    pub(crate) fn ioctl(&mut self, arg: usize) -> Result<isize> {
        let r = UserSlice::new(UserPtr::from_addr(arg), size_of::<KvmIoeventfd>())
            .reader()
            .read::<KvmIoeventfd>()?;
        let key = Key::from_request(r.addr, r.len, r.flags, r.datamatch);
        if r.flags & flag::DEASSIGN != 0 {
            let eventfd = EventFd::get(r.fd)?;
            let i = self
                .list
                .iter()
                .position(|e| e.key == key && e.eventfd.ctx == eventfd.ctx)
                .ok_or(ENOENT)?;
            self.list.remove(i)?;
            return Ok(0);
        }
        if !rules::assign_valid(r.addr, r.len, r.flags) {
            return Err(EINVAL);
        }
        let eventfd = EventFd::get(r.fd)?;
        if self.list.iter().any(|e| e.key.collides(&key)) {
            return Err(EEXIST);
        }
        if self.list.iter().filter(|e| e.key.bus == key.bus).count() >= rules::MAX_PER_BUS {
            return Err(ENOSPC);
        }
        self.list.push(Entry { key, eventfd }, GFP_KERNEL_ACCOUNT)?;
        Ok(0)
    }
}
