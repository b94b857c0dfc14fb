// SPDX-License-Identifier: GPL-2.0

//! `KVM_IOEVENTFD` requests: their checks, collisions, and which guest
//! writes they match. Pure logic over `core`, shared with the host tests.
//!
//! Semantics follow KVM's `virt/kvm/eventfd.c` (`kvm_assign_ioeventfd()`,
//! `ioeventfd_check_collision()`, `ioeventfd_in_range()`,
//! `kvm_deassign_ioeventfd_idx()`).

/// `KVM_IOEVENTFD_FLAG_*`.
pub(crate) mod flag {
    pub(crate) const DATAMATCH: u32 = 1 << 0;
    pub(crate) const PIO: u32 = 1 << 1;
    pub(crate) const DEASSIGN: u32 = 1 << 2;
    pub(crate) const VIRTIO_CCW_NOTIFY: u32 = 1 << 3;
    /// Every flag KVM accepts: the four above and bit 4 (the uapi's
    /// `kvm_ioeventfd_flag_nr_fast_mmio`, which has no effect).
    pub(crate) const VALID: u32 = (1 << 5) - 1;
}

/// KVM's `NR_IOBUS_DEVS`: devices per bus.
pub(crate) const MAX_PER_BUS: usize = 1000;

/// The bus a request registers on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Bus {
    Mmio,
    Pio,
    /// s390's virtio-ccw notifications: accepted, never matched on x86.
    Ccw,
}

/// What is registered: `datamatch` is `None` for a wildcard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Key {
    pub(crate) bus: Bus,
    pub(crate) addr: u64,
    pub(crate) len: u32,
    pub(crate) datamatch: Option<u64>,
}

impl Key {
    /// The key of a request's fields (`ioeventfd_bus_from_flags()`).
    pub(crate) fn from_request(addr: u64, len: u32, flags: u32, datamatch: u64) -> Self {
        let bus = if flags & flag::PIO != 0 {
            Bus::Pio
        } else if flags & flag::VIRTIO_CCW_NOTIFY != 0 {
            Bus::Ccw
        } else {
            Bus::Mmio
        };
        Self {
            bus,
            addr,
            len,
            datamatch: (flags & flag::DATAMATCH != 0).then_some(datamatch),
        }
    }

    /// Whether a write of `len` bytes of `value` to `addr` on `bus`
    /// signals this ioeventfd: same address, and any length for a length
    /// of 0, else the same length and (unless a wildcard) the same value.
    pub(crate) fn matches(&self, bus: Bus, addr: u64, len: u32, value: u64) -> bool {
        bus == self.bus
            && addr == self.addr
            && (self.len == 0 || (len == self.len && self.datamatch.is_none_or(|d| d == value)))
    }

    /// Whether two registrations would both take some write (KVM refuses
    /// the second with `EEXIST`).
    pub(crate) fn collides(&self, o: &Key) -> bool {
        self.bus == o.bus
            && self.addr == o.addr
            && (self.len == 0
                || o.len == 0
                || (self.len == o.len
                    && (self.datamatch.is_none()
                        || o.datamatch.is_none()
                        || self.datamatch == o.datamatch)))
    }
}

/// The checks of an assignment, in KVM's order; `false` means `EINVAL`
/// (a length other than 0, 1, 2, 4, 8; a range that wraps; unknown
/// flags; DATAMATCH with length 0).
pub(crate) fn assign_valid(addr: u64, len: u32, flags: u32) -> bool {
    matches!(len, 0 | 1 | 2 | 4 | 8)
        && addr.checked_add(u64::from(len)).is_some()
        && flags & !flag::VALID == 0
        && !(len == 0 && flags & flag::DATAMATCH != 0)
}
