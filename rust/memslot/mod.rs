// SPDX-License-Identifier: GPL-2.0

//! Guest memory slots of one VM.
//!
//! For now a single set kept sorted by guest frame number, replaced under the
//! VM's `slots` mutex. The tree-based active/inactive sets with SRCU readers
//! described in `Documentation/rkvm/design.rst` replace this once vCPUs read
//! slots while they run.

pub(crate) mod region;

use kernel::{
    alloc::KVec,
    prelude::*, //
};

use region::{
    Change,
    Refusal,
    Request,
    Slot, //
};

/// The slots of a VM.
///
/// # Invariants
///
/// `slots` is sorted by `base_gfn`, no two slots share an id or a frame, and
/// every slot has at least one page.
#[derive(Default)]
pub(crate) struct Memslots {
    slots: KVec<Slot>,
}

impl Memslots {
    /// The number of guest pages all slots hold.
    pub(crate) fn total_pages(&self) -> u64 {
        self.slots.iter().map(|s| s.npages).sum()
    }

    /// The slot holding guest frame `gfn`.
    pub(crate) fn find(&self, gfn: u64) -> Option<&Slot> {
        let i = self.slots.partition_point(|s| s.end_gfn() <= gfn);
        self.slots.get(i).filter(|s| s.base_gfn <= gfn)
    }

    /// Applies one `KVM_SET_USER_MEMORY_REGION(2)` request. Returns the
    /// guest frames `[start, end)` that stopped being backed (a deleted or
    /// moved slot's old range), whose mappings the caller must zap.
    pub(crate) fn apply(&mut self, req: &Request) -> Result<Option<(u64, u64)>> {
        let old = self.slots.iter().find(|s| s.id == req.slot as u16);
        let old_range = old.map(|s| (s.base_gfn, s.end_gfn()));
        let change = region::classify(
            req,
            old,
            |id, base, end| {
                self.slots
                    .iter()
                    .any(|s| s.id != id && s.overlaps(base, end))
            },
            crate::shim::user_range_ok,
        )
        .map_err(|r| match r {
            Refusal::Invalid => EINVAL,
            Refusal::Overlap => EEXIST,
        })?;
        match change {
            Change::Nothing => {}
            Change::Create(new) => self.insert(new)?,
            Change::Delete(id) => {
                self.remove(id);
                return Ok(old_range);
            }
            Change::Move(new) => {
                // Reserve first so that a failed allocation leaves the old
                // slot in place.
                self.slots.reserve(1, GFP_KERNEL_ACCOUNT)?;
                self.remove(new.id);
                self.insert(new)?;
                return Ok(old_range);
            }
            Change::Flags(new) => {
                if let Some(s) = self.slots.iter_mut().find(|s| s.id == new.id) {
                    s.flags = new.flags;
                }
            }
        }
        Ok(None)
    }

    /// Inserts a slot that overlaps no other (checked by `classify`).
    fn insert(&mut self, new: Slot) -> Result {
        let at = self.slots.partition_point(|s| s.base_gfn < new.base_gfn);
        // INVARIANT: `at` keeps the order; `classify` ruled out overlaps.
        self.slots.insert_within_capacity(at, new).or_else(|_| {
            self.slots.reserve(1, GFP_KERNEL_ACCOUNT)?;
            self.slots
                .insert_within_capacity(at, new)
                .map_err(|_| ENOMEM)
        })
    }

    /// Removes the slot with this id, if any.
    fn remove(&mut self, id: u16) {
        if let Some(i) = self.slots.iter().position(|s| s.id == id) {
            // INVARIANT: removing keeps the order.
            self.slots.remove(i).ok();
        }
    }
}
