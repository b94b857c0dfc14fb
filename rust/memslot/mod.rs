// SPDX-License-Identifier: GPL-2.0

//! Guest memory slots of one VM: two sets, one published to readers.
//!
//! Readers (vCPU faults, the emulator, the mmu_notifier callbacks) look
//! slots up in the *active* set inside an SRCU read-side section, without
//! locks. Writers hold the VM's `slots` mutex and follow KVM's protocol
//! (`virt/kvm/kvm_main.c`: `kvm_swap_active_memslots`,
//! `kvm_invalidate_memslot`): the change is made to the *inactive* set
//! (which equals the active one), that set is published, the readers of
//! the other are waited for (an SRCU grace period), and the same change is
//! made to the other set, which is then inactive and in line again. The
//! slot objects are shared by both sets (`Arc`), so a change costs
//! O(log slots): no set is ever copied.
//!
//! Each set indexes its slots three ways, all red-black trees: by last
//! guest frame (a lookup by gfn is one lower-bound search), by id, and by
//! (host address, id) for the notifier's host-range queries: a range query
//! starts at `start - largest slot size` and walks up in address order
//! until `end`, so it visits only slots that could overlap.
//!
//! A slot being deleted or moved is first published with
//! [`region::SLOT_INVALID`]: a fault that finds it retries instead of
//! mapping, so once the readers of the previous set are gone, nothing can
//! map the slot's pages again while its mappings are zapped.
//!
//! Every node a change needs is reserved before the first set is touched,
//! so a change either fails with `ENOMEM` before anything happened or
//! completes on both sets.

pub(crate) mod region;

use core::sync::atomic::{
    AtomicPtr,
    Ordering, //
};

use kernel::{
    prelude::*,
    rbtree::{
        RBTree,
        RBTreeNodeReservation, //
    },
    sync::{
        Arc,
        Srcu, //
    },
};

use region::{
    Change,
    Refusal,
    Request,
    Slot,
    SLOT_INVALID, //
};

/// The key of a slot in [`SlotSet::by_hva`].
type HvaKey = (u64, u16);

/// One set of slots.
///
/// # Invariants
///
/// The three trees hold the same slots, which do not overlap in guest
/// frames and have distinct ids; `max_bytes` is at least the size of every
/// slot in the set; `pages` is the sum of their sizes in pages;
/// `last_used` is null or points to a slot the trees hold.
#[derive(Default)]
pub(crate) struct SlotSet {
    by_gfn: RBTree<u64, Arc<Slot>>,
    by_id: RBTree<u16, Arc<Slot>>,
    by_hva: RBTree<HvaKey, Arc<Slot>>,
    max_bytes: u64,
    pages: u64,
    /// The slot the last gfn lookup found (KVM's `last_used_slot`).
    last_used: AtomicPtr<Slot>,
}

fn last_gfn(s: &Slot) -> u64 {
    s.end_gfn() - 1
}

fn hva_key(s: &Slot) -> HvaKey {
    (s.userspace_addr, s.id)
}

/// The host-address key right after `k`.
fn next_hva_key(k: HvaKey) -> Option<HvaKey> {
    match k.1.checked_add(1) {
        Some(id) => Some((k.0, id)),
        None => Some((k.0.checked_add(1)?, 0)),
    }
}

impl SlotSet {
    /// The number of guest pages all slots hold.
    pub(crate) fn total_pages(&self) -> u64 {
        self.pages
    }

    /// The slot holding guest frame `gfn`.
    pub(crate) fn find(&self, gfn: u64) -> Option<Slot> {
        let last = self.last_used.load(Ordering::Relaxed);
        if !last.is_null() {
            // SAFETY: a non-null `last_used` points to a slot the trees
            // hold (invariant); they keep it alive, and do not change while
            // `self` is readable (it is published, or `&mut` to it is gone).
            let s = unsafe { *last };
            if s.base_gfn <= gfn && gfn < s.end_gfn() {
                return Some(s);
            }
        }
        let c = self.by_gfn.cursor_lower_bound(&gfn)?;
        let (_, s) = c.current();
        if s.base_gfn > gfn {
            return None;
        }
        // INVARIANT: `s` is held by the trees.
        let p: *const Slot = &**s;
        self.last_used.store(p.cast_mut(), Ordering::Relaxed);
        Some(**s)
    }

    /// The slot with this id.
    pub(crate) fn by_id(&self, id: u16) -> Option<Slot> {
        self.by_id.get(&id).map(|s| **s)
    }

    /// Every slot some of whose backing lies in the VMM's `[start, end)`,
    /// with the guest frames `[first, last)` that part backs.
    pub(crate) fn by_hva(
        &self,
        start: u64,
        end: u64,
    ) -> impl Iterator<Item = (Slot, u64, u64)> + '_ {
        // A slot starting below `start - max_bytes` ends before `start`.
        let mut key = Some((start.saturating_sub(self.max_bytes), 0));
        core::iter::from_fn(move || loop {
            let (k, s) = {
                let c = self.by_hva.cursor_lower_bound(&key?)?;
                let (k, s) = c.current();
                (*k, **s)
            };
            if k.0 >= end {
                return None;
            }
            key = next_hva_key(k);
            let s_end = s.userspace_addr + (s.npages << 12);
            let lo = start.max(s.userspace_addr);
            let hi = end.min(s_end);
            if lo < hi {
                let first = s.base_gfn + ((lo - s.userspace_addr) >> 12);
                let last = s.base_gfn + (hi - s.userspace_addr).div_ceil(4096);
                return Some((s, first, last));
            }
        })
    }

    /// Whether a slot other than `id` has a frame in `[base, end)`.
    fn overlaps_other(&self, id: u16, base: u64, end: u64) -> bool {
        // The slots ending at or above `base`, in order, while they start
        // below `end` (slots do not overlap: at most `id` is skipped).
        let mut key = base;
        loop {
            let Some(c) = self.by_gfn.cursor_lower_bound(&key) else {
                return false;
            };
            let (k, s) = c.current();
            if !s.overlaps(base, end) {
                return false;
            }
            if s.id != id {
                return true;
            }
            match k.checked_add(1) {
                Some(next) => key = next,
                None => return false,
            }
        }
    }

    /// Applies one step of a change (see [`Op`]), with nodes from `res`.
    fn apply(&mut self, op: &Op, res: &mut Nodes) {
        // INVARIANT: the cached slot may be the one removed.
        *self.last_used.get_mut() = core::ptr::null_mut();
        if let Some(id) = op.remove {
            if let Some(old) = self.by_id.remove(&id) {
                self.by_gfn.remove(&last_gfn(&old));
                self.by_hva.remove(&hva_key(&old));
                self.pages -= old.npages;
            }
        }
        if let (Some(new), Some(n)) = (&op.insert, res.take()) {
            // INVARIANT: the caller (`classify`) made sure the new slot
            // overlaps no other and its id is free once `remove` is done.
            self.by_gfn
                .insert(n.gfn.into_node(last_gfn(new), new.clone()));
            self.by_id.insert(n.id.into_node(new.id, new.clone()));
            self.by_hva
                .insert(n.hva.into_node(hva_key(new), new.clone()));
            self.max_bytes = self.max_bytes.max(new.npages << 12);
            self.pages += new.npages;
        }
    }
}

/// Tree nodes for inserting one slot into one set.
struct NodeSet {
    gfn: RBTreeNodeReservation<u64, Arc<Slot>>,
    id: RBTreeNodeReservation<u16, Arc<Slot>>,
    hva: RBTreeNodeReservation<HvaKey, Arc<Slot>>,
}

/// Nodes reserved for a change (none when it inserts nothing).
type Nodes = Option<NodeSet>;

fn reserve() -> Result<NodeSet> {
    Ok(NodeSet {
        gfn: RBTreeNodeReservation::new(GFP_KERNEL_ACCOUNT)?,
        id: RBTreeNodeReservation::new(GFP_KERNEL_ACCOUNT)?,
        hva: RBTreeNodeReservation::new(GFP_KERNEL_ACCOUNT)?,
    })
}

/// One change to a set: the slot with id `remove` goes, then `insert`
/// comes (both: a replacement).
struct Op {
    remove: Option<u16>,
    insert: Option<Arc<Slot>>,
}

/// A change with everything it needs allocated: it cannot fail any more.
struct Prepared {
    op: Op,
    /// Nodes for the inactive set, then for the other one.
    nodes: [Nodes; 2],
}

impl Prepared {
    fn new(remove: Option<u16>, insert: Option<Slot>) -> Result<Self> {
        let (insert, nodes) = match insert {
            Some(s) => (
                Some(Arc::new(s, GFP_KERNEL_ACCOUNT)?),
                [Some(reserve()?), Some(reserve()?)],
            ),
            None => (None, [None, None]),
        };
        Ok(Self {
            op: Op { remove, insert },
            nodes,
        })
    }
}

/// The writer's side of a VM's slots (held under the VM's `slots` mutex).
///
/// # Invariants
///
/// The VM's published pointer is `sets[active]`, which is never written
/// while published; `sets[1 - active]` holds the same slots and has no
/// readers (every reader of it ended before `update` returned).
pub(crate) struct Memslots {
    sets: [KBox<SlotSet>; 2],
    active: usize,
}

/// A deletion or move under way: the old slot is published as invalid.
pub(crate) struct Retiring {
    /// The old slot.
    pub(crate) slot: Slot,
    /// The change that completes it, prepared.
    finish: Prepared,
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

    /// Makes a prepared change: to the inactive set, which is published;
    /// then, once the readers of the other are gone, to the other.
    fn update(&mut self, published: &AtomicPtr<SlotSet>, srcu: &Srcu, p: Prepared) {
        let Prepared {
            op,
            nodes: [mut a, mut b],
        } = p;
        let next = 1 - self.active;
        self.sets[next].apply(&op, &mut a);
        // INVARIANT: the set is complete before it is published; the other
        // gets no new readers from here on, and its last ones are waited
        // for before it is written.
        published.store(&mut *self.sets[next], Ordering::Release);
        self.active = next;
        srcu.synchronize_expedited();
        self.sets[1 - next].apply(&op, &mut b);
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
    ) -> Result<Option<Retiring>> {
        let set = self.active();
        let old = set.by_id(req.slot as u16);
        let change = region::classify(
            req,
            old.as_ref(),
            |id, base, end| set.overlaps_other(id, base, end),
            crate::shim::user_range_ok,
        )
        .map_err(|r| match r {
            Refusal::Invalid => EINVAL,
            Refusal::Overlap => EEXIST,
        })?;
        match change {
            Change::Nothing => Ok(None),
            Change::Create(new) => {
                let p = Prepared::new(None, Some(new))?;
                self.update(published, srcu, p);
                Ok(None)
            }
            Change::Flags(new) => {
                let p = Prepared::new(Some(new.id), Some(new))?;
                self.update(published, srcu, p);
                Ok(None)
            }
            Change::Delete(_) | Change::Move(_) => {
                let Some(mut slot) = old else {
                    return Ok(None);
                };
                let finish = match change {
                    Change::Move(new) => Prepared::new(Some(new.id), Some(new))?,
                    _ => Prepared::new(Some(slot.id), None)?,
                };
                slot.flags |= SLOT_INVALID;
                let invalid = Prepared::new(Some(slot.id), Some(slot))?;
                self.update(published, srcu, invalid);
                Ok(Some(Retiring { slot, finish }))
            }
        }
    }

    /// Completes a deletion or move started by [`Memslots::apply`]; its
    /// memory was reserved there, so it cannot fail.
    pub(crate) fn finish(&mut self, r: Retiring, published: &AtomicPtr<SlotSet>, srcu: &Srcu) {
        self.update(published, srcu, r.finish);
    }
}
