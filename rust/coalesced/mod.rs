// SPDX-License-Identifier: GPL-2.0

//! Coalesced MMIO and PIO (`KVM_REGISTER_COALESCED_MMIO`): guest writes to
//! registered zones are appended to a ring that user space drains at its
//! next exit, instead of each exiting. Model: `virt/kvm/coalesced_mmio.c`;
//! the ring layout and zone rules are in [`ring`].
//!
//! Only writes are coalesced: MMIO stores the decoder knows and OUT of 1,
//! 2 or 4 bytes (as ioeventfds, which are looked up first). When the ring
//! is full the write exits as usual. The ring page belongs to the VM and
//! is mapped by every vCPU at page offset 2 of its mmap.
//!
//! Locking: the zones and every append are under the VM's `coalesced`
//! mutex (KVM's `ring_lock`: appends from several vCPUs are serialized), a
//! leaf taken outside the VMX window.

pub(crate) mod ring;

use core::sync::atomic::{
    fence,
    Ordering, //
};

use kernel::{
    page::Page,
    prelude::*,
    uaccess::{
        UserPtr,
        UserSlice, //
    },
};

use crate::abi::{
    self,
    KvmCoalescedMmioZone, //
};
use ring::Zone;

/// The zones of a VM.
#[derive(Default)]
pub(crate) struct Zones {
    list: KVec<Zone>,
}

impl Zones {
    /// `KVM_REGISTER_COALESCED_MMIO` / `KVM_UNREGISTER_COALESCED_MMIO`:
    /// EINVAL for a `pio` other than 0 or 1, ENOSPC past 1000 zones.
    /// Unregistering removes every zone of that bus that contains the
    /// range and always succeeds, as KVM.
    pub(crate) fn ioctl(&mut self, cmd: u32, arg: usize) -> Result<isize> {
        let z = UserSlice::new(UserPtr::from_addr(arg), size_of::<KvmCoalescedMmioZone>())
            .reader()
            .read::<KvmCoalescedMmioZone>()?;
        let zone = Zone::new(z.addr, z.size, z.pio).ok_or(EINVAL)?;
        if cmd == abi::KVM_UNREGISTER_COALESCED_MMIO {
            self.list
                .retain(|d| !d.contains(zone.pio, zone.addr, zone.size));
            return Ok(0);
        }
        if self.list.len() >= ring::MAX_ZONES {
            return Err(ENOSPC);
        }
        self.list.push(zone, GFP_KERNEL_ACCOUNT)?;
        Ok(0)
    }

    /// A guest write of `len` bytes of `value` at `addr` on the PIO
    /// (`pio`) or MMIO bus: appended to the ring in `page` if a zone
    /// covers it and the ring has room; true if it was (no exit).
    pub(crate) fn write(&self, page: &Page, pio: bool, addr: u64, len: u32, value: u64) -> bool {
        if !self.list.iter().any(|z| z.contains(pio, addr, len)) {
            return false;
        }
        let mut header = [0u8; ring::HEADER];
        // SAFETY: the destination is a local array of HEADER bytes, inside
        // the page. Kernel writers of the page are serialized by the VM's
        // `coalesced` mutex, which the caller holds; user space may write
        // it at any time, as with `kvm_run` (`RunArea`): it can only leave
        // arbitrary bytes, and any bytes are valid u32s.
        if unsafe { page.read_raw(header.as_mut_ptr(), 0, ring::HEADER) }.is_err() {
            return false;
        }
        let first = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let last = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let Some(at) = ring::insert_at(first, last) else {
            return false;
        };
        let e = ring::entry(addr, len, pio, value);
        let offset = ring::HEADER + at as usize * ring::ENTRY;
        let next = ((at + 1) % ring::MAX).to_le_bytes();
        // SAFETY: `at` < MAX, so the entry lies inside the page; the
        // source is a local array. No other kernel writer runs (the mutex,
        // as above); user space may race with the write, as on KVM, and
        // only sees bytes.
        if unsafe { page.write_raw(e.as_ptr(), offset, ring::ENTRY) }.is_err() {
            return false;
        }
        // The entry is visible before the index that publishes it.
        fence(Ordering::Release);
        // SAFETY: `last` is at offset 4 of the page; the source is local;
        // the same reasoning as above.
        unsafe { page.write_raw(next.as_ptr(), 4, next.len()) }.is_ok()
    }
}
