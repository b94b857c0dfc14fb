// SPDX-License-Identifier: GPL-2.0

//! What a `KVM_SET_USER_MEMORY_REGION(2)` request means and whether it is
//! valid: pure logic over `core`, shared with the host tests.
//!
//! The checks and their order follow `kvm_set_memory_region()` in
//! `virt/kvm/kvm_main.c`, so each bad request gets the errno KVM gives it.
//! Differences, all deliberate: one address space (no SMM), and the
//! `GUEST_MEMFD` flag is refused with `EINVAL` (no guest_memfd).

/// Page size of guest frames and host mappings.
pub(crate) const PAGE_SIZE: u64 = 4096;
const PAGE_SHIFT: u32 = 12;

/// User memory slots per VM: ids 0 to `USER_MEM_SLOTS - 1` (KVM's x86
/// `KVM_USER_MEM_SLOTS`).
pub(crate) const USER_MEM_SLOTS: u32 = 32764;

/// `KVM_MEM_READONLY`: guest writes exit as MMIO.
pub(crate) const KVM_MEM_READONLY: u32 = 1 << 1;

/// `KVM_MEM_LOG_DIRTY_PAGES`: guest writes are logged in a bitmap read by
/// `KVM_GET_DIRTY_LOG`.
pub(crate) const KVM_MEM_LOG_DIRTY_PAGES: u32 = 1;

/// Flags a request may carry today.
pub(crate) const VALID_FLAGS: u32 = KVM_MEM_LOG_DIRTY_PAGES | KVM_MEM_READONLY;

/// Internal slot flag (never a `KVM_MEM_*` flag): the slot is being
/// deleted or moved; no new mapping may be made in it.
pub(crate) const SLOT_INVALID: u32 = 1 << 16;

/// The largest slot in pages (KVM_MEM_MAX_NR_PAGES: dirty bitmaps are indexed
/// by an unsigned int).
const MAX_NR_PAGES: u64 = (1 << 31) - 1;

/// A request, decoded from either structure version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Request {
    /// Address space in bits 31:16, slot id in bits 15:0.
    pub(crate) slot: u32,
    /// `KVM_MEM_*` flags.
    pub(crate) flags: u32,
    /// Guest physical address of the first byte.
    pub(crate) guest_phys_addr: u64,
    /// Size in bytes; 0 deletes the slot.
    pub(crate) memory_size: u64,
    /// Start of the backing memory in the VMM's address space.
    pub(crate) userspace_addr: u64,
}

/// A slot as stored in the VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Slot {
    /// Slot id (address space 0).
    pub(crate) id: u16,
    /// First guest frame number.
    pub(crate) base_gfn: u64,
    /// Number of pages (never 0 for a stored slot).
    pub(crate) npages: u64,
    /// `KVM_MEM_*` flags.
    pub(crate) flags: u32,
    /// Start of the backing memory in the VMM's address space.
    pub(crate) userspace_addr: u64,
}

impl Slot {
    /// One past the last guest frame number.
    pub(crate) fn end_gfn(&self) -> u64 {
        self.base_gfn + self.npages
    }

    /// Guest writes exit as MMIO (`KVM_MEM_READONLY`).
    pub(crate) fn readonly(&self) -> bool {
        self.flags & KVM_MEM_READONLY != 0
    }

    /// Guest writes are logged (`KVM_MEM_LOG_DIRTY_PAGES`).
    pub(crate) fn logs_dirty(&self) -> bool {
        self.flags & KVM_MEM_LOG_DIRTY_PAGES != 0
    }

    /// Being deleted or moved (see [`SLOT_INVALID`]).
    pub(crate) fn invalid(&self) -> bool {
        self.flags & SLOT_INVALID != 0
    }

    /// Whether the slot shares a frame with `[base, end)`.
    pub(crate) fn overlaps(&self, base: u64, end: u64) -> bool {
        base < self.end_gfn() && self.base_gfn < end
    }
}

/// The errno a refused request gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// EINVAL.
    Invalid,
    /// EEXIST: the range overlaps another slot.
    Overlap,
}

/// What a valid request does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Change {
    /// Add this new slot.
    Create(Slot),
    /// Remove the slot with this id.
    Delete(u16),
    /// Give the slot this new base (same size and backing).
    Move(Slot),
    /// Change only the flags.
    Flags(Slot),
    /// The request repeats the slot as it is.
    Nothing,
}

/// Decides what `req` does, given the slot currently under the same id
/// (`old`) and a test that reports whether `[base, end)` overlaps any slot
/// other than `id`. `user_range_ok` says whether `[addr, addr + size)` is a
/// valid user address range for the caller (`access_ok()` in C).
pub(crate) fn classify(
    req: &Request,
    old: Option<&Slot>,
    overlaps_other: impl Fn(u16, u64, u64) -> bool,
    user_range_ok: impl Fn(u64, u64) -> bool,
) -> Result<Change, Refusal> {
    if req.flags & !VALID_FLAGS != 0 {
        return Err(Refusal::Invalid);
    }
    let as_id = req.slot >> 16;
    let id = req.slot as u16;
    if req.memory_size & (PAGE_SIZE - 1) != 0 || req.guest_phys_addr & (PAGE_SIZE - 1) != 0 {
        return Err(Refusal::Invalid);
    }
    if req.userspace_addr & (PAGE_SIZE - 1) != 0
        || !user_range_ok(req.userspace_addr, req.memory_size)
    {
        return Err(Refusal::Invalid);
    }
    if as_id != 0 || u32::from(id) >= USER_MEM_SLOTS {
        return Err(Refusal::Invalid);
    }
    if req.guest_phys_addr.checked_add(req.memory_size).is_none() {
        return Err(Refusal::Invalid);
    }
    let npages = req.memory_size >> PAGE_SHIFT;
    if npages > MAX_NR_PAGES {
        return Err(Refusal::Invalid);
    }

    if npages == 0 {
        return match old {
            Some(_) => Ok(Change::Delete(id)),
            None => Err(Refusal::Invalid),
        };
    }

    let new = Slot {
        id,
        base_gfn: req.guest_phys_addr >> PAGE_SHIFT,
        npages,
        flags: req.flags,
        userspace_addr: req.userspace_addr,
    };
    let change = match old {
        None => Change::Create(new),
        Some(old) => {
            if new.userspace_addr != old.userspace_addr
                || new.npages != old.npages
                || (new.flags ^ old.flags) & KVM_MEM_READONLY != 0
            {
                return Err(Refusal::Invalid);
            }
            if new.base_gfn != old.base_gfn {
                Change::Move(new)
            } else if new.flags != old.flags {
                Change::Flags(new)
            } else {
                return Ok(Change::Nothing);
            }
        }
    };
    if matches!(change, Change::Create(_) | Change::Move(_))
        && overlaps_other(id, new.base_gfn, new.end_gfn())
    {
        return Err(Refusal::Overlap);
    }
    Ok(change)
}
