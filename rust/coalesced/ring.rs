// SPDX-License-Identifier: GPL-2.0

//! The coalesced MMIO/PIO ring (`struct kvm_coalesced_mmio_ring` in
//! `<linux/kvm.h>`) and the zone rules of `virt/kvm/coalesced_mmio.c`.
//!
//! The ring is one page shared with user space: a header of two u32
//! indices, `first` (the next entry user space reads) and `last` (the next
//! the kernel writes), then 170 entries of 24 bytes. Both indices are user
//! data the kernel never trusts. One entry always stays free, so a ring
//! with `(last + 1) % 170 == first` is full.
//!
//! Pure logic over `core`, shared with the host tests.

/// Bytes of a page.
const PAGE_SIZE: usize = 4096;
/// `struct kvm_coalesced_mmio_ring`: the header (`first`, `last`).
pub(crate) const HEADER: usize = 8;
/// `struct kvm_coalesced_mmio`: phys_addr, len, pio, data[8].
pub(crate) const ENTRY: usize = 24;
/// `KVM_COALESCED_MMIO_MAX`: the entries of one page.
pub(crate) const MAX: u32 = ((PAGE_SIZE - HEADER) / ENTRY) as u32;
/// `KVM_COALESCED_MMIO_PAGE_OFFSET` on x86: the ring's page in the vCPU
/// mmap (after `kvm_run` and the PIO data page).
pub(crate) const PAGE_OFFSET: usize = 2;
/// The most zones a VM may have (KVM's `NR_IOBUS_DEVS` per bus).
pub(crate) const MAX_ZONES: usize = 1000;

/// A registered zone (`struct kvm_coalesced_mmio_zone`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Zone {
    pub(crate) addr: u64,
    pub(crate) size: u32,
    pub(crate) pio: bool,
}

impl Zone {
    /// A zone from the ioctl's fields: `None` (EINVAL) unless `pio` is 0
    /// or 1.
    pub(crate) fn new(addr: u64, size: u32, pio: u32) -> Option<Self> {
        match pio {
            0 | 1 => Some(Self {
                addr,
                size,
                pio: pio == 1,
            }),
            _ => None,
        }
    }

    /// Whether `[addr, addr + len)` on the bus (`pio`) lies inside the
    /// zone (KVM's `coalesced_mmio_in_range()`: a range that wraps, or
    /// whose length is negative as a C int, does not).
    pub(crate) fn contains(&self, pio: bool, addr: u64, len: u32) -> bool {
        if len > i32::MAX as u32 {
            return false;
        }
        let Some(end) = addr.checked_add(u64::from(len)) else {
            return false;
        };
        let zone_end = u128::from(self.addr) + u128::from(self.size);
        pio == self.pio && addr >= self.addr && u128::from(end) <= zone_end
    }
}

/// Where the next entry goes, given the header user space left: `None`
/// when the ring is full or the indices are out of range (the write then
/// exits to user space as usual).
pub(crate) fn insert_at(first: u32, last: u32) -> Option<u32> {
    if last >= MAX || (last + 1) % MAX == first {
        return None;
    }
    Some(last)
}

/// The bytes of an entry: the address (the port for PIO), the length, the
/// bus and the first `len` bytes of `value` (at most 8).
pub(crate) fn entry(addr: u64, len: u32, pio: bool, value: u64) -> [u8; ENTRY] {
    let mut e = [0u8; ENTRY];
    e[..8].copy_from_slice(&addr.to_le_bytes());
    e[8..12].copy_from_slice(&len.to_le_bytes());
    e[12..16].copy_from_slice(&u32::from(pio).to_le_bytes());
    let n = (len as usize).min(8);
    e[16..16 + n].copy_from_slice(&value.to_le_bytes()[..n]);
    e
}
