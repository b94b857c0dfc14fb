// SPDX-License-Identifier: GPL-2.0

//! Guest memory slots of one VM: two sets, one published to readers.
//!
//! Readers (vCPU faults, the emulator, the mmu_notifier callbacks) look
//! slots up in the *active* set inside an SRCU read-side section, without
//! locks. Writers hold the VM's `slots` mutex: they build the new contents
//! in the *inactive* set, publish it (it becomes active), wait for the
//! readers of the old one (SRCU grace period), and from then on the old
//! set is the inactive one, rebuilt from the active one at the next
//! update. KVM's model: `virt/kvm/kvm_main.c` (`kvm_swap_active_memslots`,
//! `kvm_invalidate_memslot`); rkvm's sets are arrays sorted by frame
//! (binary search), not trees: an update copies the set, O(slots).
//!
//! A slot being deleted or moved is first published with
//! [`region::SLOT_INVALID`]: a fault that finds it retries instead of mapping, so
//! once the readers of the previous set are gone, nothing can map the
//! slot's pages again while its mappings are zapped.

pub(crate) mod region;

use core::sync::atomic::{
    AtomicPtr,
    Ordering, //
};

use kernel::{
    alloc::KVec,
    prelude::*,
    sync::Srcu, //
};

use region::{
    Change,
    Refusal,
    Request,
    Slot,
    SLOT_INVALID, //
};

/// One set of slots.
///
/// # Invariants
///
/// `slots` is sorted by `base_gfn`, no two slots share an id or a frame, and
/// every slot has at least one page.
#[derive(Default)]
pub(crate) struct SlotSet {
    slots: KVec<Slot>,
}

impl SlotSet {
    /// The number of guest pages all slots hold.
    pub(crate) fn total_pages(&self) -> u64 {
        self.slots.iter().map(|s| s.npages).sum()
    }

    /// The slot holding guest frame `gfn`.
    pub(crate) fn find(&self, gfn: u64) -> Option<&Slot> {
        let i = self.slots.partition_point(|s| s.end_gfn() <= gfn);
        self.slots.get(i).filter(|s| s.base_gfn <= gfn)
    }

    /// The slot with this id.
    pub(crate) fn by_id(&self, id: u16) -> Option<&Slot> {
        self.slots.iter().find(|s| s.id == id)
    }

    /// Every slot some of whose backing lies in the VMM's `[start, end)`,
    /// with the guest frames `[first, last)` that part backs.
    pub(crate) fn by_hva(&self, start: u64, end: u64) -> impl Iterator<Item = (&Slot, u64, u64)> {
        self.slots.iter().filter_map(move |s| {
            let s_end = s.userspace_addr + (s.npages << 12);
            let lo = start.max(s.userspace_addr);
            let hi = end.min(s_end);
            (lo < hi).then(|| {
                let first = s.base_gfn + ((lo - s.userspace_addr) >> 12);
                let last = s.base_gfn + ((hi - s.userspace_addr).div_ceil(4096));
                (s, first, last)
            })
        })
    }

    /// Makes this set a copy of `from`; allocates only if this set never
    /// held as many slots as `from` holds.
    fn copy_from(&mut self, from: &SlotSet) -> Result {
        self.slots.clear();
        self.slots.reserve(from.slots.len(), GFP_KERNEL_ACCOUNT)?;
        for s in from.slots.iter() {
            // Capacity was reserved above.
            let _ = self.slots.push_within_capacity(*s);
        }
        Ok(())
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

    fn set_flags(&mut self, id: u16, flags: u32) {
        if let Some(s) = self.slots.iter_mut().find(|s| s.id == id) {
            s.flags = flags;
        }
    }
}

/// The writer's side of a VM's slots (held under the VM's `slots` mutex).
///
/// # Invariants
///
/// `published` points to `sets[active]`, which is never written while
/// published; `sets[1 - active]` has no readers (every reader of it ended
/// before `publish` returned).
pub(crate) struct Memslots {
    sets: [KBox<SlotSet>; 2],
    active: usize,
}

/// What an update must do to the mappings of an old slot.
pub(crate) struct Retired {
    /// The old slot (still published, marked [`SLOT_INVALID`]).
    pub(crate) slot: Slot,
}

impl Memslots {
    /// Two empty sets.
    pub(crate) fn new() -> Result<Self> {
        Ok(Self {
            sets: [
                KBox::new(SlotSet::default(), GFP_KERNEL_ACCOUNT)?,
                KBox::new(SlotSet::default(), GFP_KERNEL_ACCOUNT)?,
            ],
            active: 0,
        })
    }

    /// The active set's address, to publish first (it stays valid while
    /// `self` lives, wherever `self` moves: the sets are boxed).
    pub(crate) fn active_ptr(&self) -> *mut SlotSet {
        let p: *const SlotSet = &*self.sets[self.active];
        p.cast_mut()
    }

    /// The active set.
    pub(crate) fn active(&self) -> &SlotSet {
        &self.sets[self.active]
    }

    /// Builds the inactive set as the active one changed by `f`, publishes
    /// it and waits for the readers of the previous one.
    fn update(
        &mut self,
        published: &AtomicPtr<SlotSet>,
        srcu: &Srcu,
        f: impl FnOnce(&mut SlotSet) -> Result,
    ) -> Result {
        let next = 1 - self.active;
        let [a, b] = &mut self.sets;
        let (from, to) = if next == 1 {
            (&**a, &mut **b)
        } else {
            (&**b, &mut **a)
        };
        to.copy_from(from)?;
        f(to)?;
        // INVARIANT: the new set is complete before it is published; the
        // old one gets no new readers from here on and its last ones are
        // waited for before it can be written again.
        published.store(to, Ordering::Release);
        self.active = next;
        srcu.synchronize_expedited();
        Ok(())
    }

    /// Validates one `KVM_SET_USER_MEMORY_REGION(2)` request and applies
    /// it, except for a deletion or move: that slot is published as
    /// invalid and returned, and the caller zaps its mappings, then calls
    /// [`Memslots::finish`].
    pub(crate) fn apply(
        &mut self,
        req: &Request,
        published: &AtomicPtr<SlotSet>,
        srcu: &Srcu,
    ) -> Result<Option<(Retired, Change)>> {
        let set = self.active();
        let old = set.by_id(req.slot as u16).copied();
        let change = region::classify(
            req,
            old.as_ref(),
            |id, base, end| {
                set.slots
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
            Change::Nothing => Ok(None),
            Change::Create(new) => {
                self.update(published, srcu, |s| s.insert(new))?;
                Ok(None)
            }
            Change::Flags(new) => {
                self.update(published, srcu, |s| {
                    s.set_flags(new.id, new.flags);
                    Ok(())
                })?;
                Ok(None)
            }
            Change::Delete(id) | Change::Move(Slot { id, .. }) => {
                let Some(mut slot) = old else {
                    return Ok(None);
                };
                slot.flags |= SLOT_INVALID;
                self.update(published, srcu, |s| {
                    s.set_flags(id, slot.flags);
                    Ok(())
                })?;
                Ok(Some((Retired { slot }, change)))
            }
        }
    }

    /// Completes a deletion or move started by [`Memslots::apply`]. Needs
    /// no memory: the inactive set held as many slots before (see
    /// `copy_from`), and a move removes the slot before inserting it.
    pub(crate) fn finish(&mut self, change: Change, published: &AtomicPtr<SlotSet>, srcu: &Srcu) {
        let _ = self.update(published, srcu, |s| match change {
            Change::Move(new) => {
                s.remove(new.id);
                s.insert(new)
            }
            Change::Delete(id) => {
                s.remove(id);
                Ok(())
            }
            _ => Ok(()),
        });
    }
}
