// SPDX-License-Identifier: GPL-2.0

//! The EPT identity map for unpaged guest modes: guest-physical frame `gfn`
//! of a memory slot maps to the host page backing it in the VMM.
//!
//! Pages are mapped on demand (EPT violation, outside the VMX window) and
//! long-term pinned while mapped. Every leaf is recorded in the reverse map
//! of its slot (one [`PteList`] per guest frame, from `rust/mmu/pte_list.rs`,
//! the structure the shadow MMU's rmaps use too), so taking a slot's pages
//! away drains its rmaps in one pass instead of walking tables. Tables are
//! never freed before the VM: only leaves are cleared. Clearing is followed
//! by a kick of every vCPU in a window (see `Vm::zap_slot`) before the pages
//! are unpinned, and every window starts with an INVEPT, so no vCPU can
//! reach an unmapped page.
//!
//! Format: Intel SDM Vol. 3C, section 29.3.2 (4-level EPT, 4 KiB leaves).

use core::{
    mem::MaybeUninit,
    ptr::NonNull, //
};

use kernel::prelude::*;

use super::{
    pte_list::{
        Desc,
        DescAlloc,
        PteList, //
    },
    Page4k,
};
use crate::shim;

/// Descriptors of the EPT's rmaps, from the kernel heap.
pub(crate) struct KernelDescs;

// SAFETY: `alloc` returns a fresh heap allocation sized and aligned for one
// `Desc`, owned by nobody else until `free`; `free` takes back any such
// allocation (the allocator has no state), whichever value it is called on.
unsafe impl DescAlloc for KernelDescs {
    fn alloc(&mut self) -> Option<NonNull<Desc>> {
        let b = KBox::<Desc>::new_uninit(GFP_KERNEL_ACCOUNT).ok()?;
        NonNull::new(KBox::into_raw(b).cast::<Desc>())
    }

    unsafe fn free(&mut self, d: NonNull<Desc>) {
        // SAFETY: `d` came from `alloc`, i.e. from `KBox::into_raw` of a
        // `KBox<MaybeUninit<Desc>>`, and is not used after this call.
        drop(unsafe { KBox::from_raw(d.as_ptr().cast::<MaybeUninit<Desc>>()) });
    }
}

/// The reverse map of one slot's frames: the EPT leaves mapping each.
struct SlotRmap {
    base_gfn: u64,
    lists: KVVec<PteList<KernelDescs>>,
}

/// Read, write and execute access.
const RWX: u64 = 0b111;
/// Leaf memory type: write-back.
const MEMTYPE_WB: u64 = 6 << 3;
/// Physical-address bits of an entry.
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
/// Guest-physical address width an EPT of 4 levels translates.
pub(crate) const GPA_BITS: u32 = 48;

/// Index of `gfn` in the table of `level` (4 = PML4 ... 1 = PT).
fn index(gfn: u64, level: u32) -> usize {
    ((gfn >> (9 * (level - 1))) & 0x1ff) as usize
}

/// The EPT of one VM.
///
/// # Invariants
///
/// Every non-leaf entry that is present points to a table in `tables`;
/// every present leaf holds a page pinned by [`shim::pin_user_page`] and
/// owned by this map; `mapped` counts them.
pub(crate) struct Ept {
    root: KBox<Page4k>,
    tables: KVec<KBox<Page4k>>,
    mapped: usize,
    /// Per slot (created at its first mapping): for each frame, the leaf
    /// entries (kernel addresses) that map it. Every present leaf is in
    /// exactly one list.
    rmaps: KVec<SlotRmap>,
}

impl Ept {
    /// An empty map.
    pub(crate) fn new() -> Result<Self> {
        Ok(Self {
            root: Page4k::new_zeroed()?,
            tables: KVec::new(),
            mapped: 0,
            rmaps: KVec::new(),
        })
    }

    /// The EPT pointer: write-back paging structures, 4-level walk.
    pub(crate) fn eptp(&self) -> u64 {
        self.root.phys() | (3 << 3) | 6
    }

    /// The table an entry points to.
    fn child(entry: u64) -> *mut [u64; 512] {
        shim::phys_to_virt(entry & ADDR_MASK).cast()
    }

    /// The leaf entry for `gfn`, allocating missing tables if `alloc`.
    fn leaf(&mut self, gfn: u64, alloc: bool) -> Result<Option<&mut u64>> {
        let mut table: *mut [u64; 512] = &mut self.root.0;
        for level in (2..=4).rev() {
            // SAFETY: `table` is the root or a table in `self.tables`
            // (invariant), alive and only reached through `&mut self`.
            let entry = unsafe { &mut (*table)[index(gfn, level)] };
            if *entry & RWX == 0 {
                if !alloc {
                    return Ok(None);
                }
                let t = Page4k::new_zeroed()?;
                let pa = t.phys();
                self.tables.push(t, GFP_KERNEL_ACCOUNT)?;
                // INVARIANT: the new table is in `self.tables`.
                *entry = pa | RWX;
            }
            table = Self::child(*entry);
        }
        // SAFETY: as above, for the last-level table.
        Ok(Some(unsafe { &mut (*table)[index(gfn, 1)] }))
    }

    /// The rmap of the slot `[base_gfn, base_gfn + npages)`, created empty
    /// on first use.
    fn rmap(&mut self, base_gfn: u64, npages: u64) -> Result<&mut SlotRmap> {
        let i = match self.rmaps.iter().position(|r| r.base_gfn == base_gfn) {
            Some(i) => i,
            None => {
                let n = usize::try_from(npages).map_err(|_| ENOMEM)?;
                let mut lists = KVVec::with_capacity(n, GFP_KERNEL_ACCOUNT)?;
                for _ in 0..n {
                    lists.push(PteList::new(), GFP_KERNEL_ACCOUNT)?;
                }
                self.rmaps
                    .push(SlotRmap { base_gfn, lists }, GFP_KERNEL_ACCOUNT)?;
                self.rmaps.len() - 1
            }
        };
        self.rmaps.get_mut(i).ok_or(EINVAL)
    }

    /// Maps `gfn`, a frame of the slot that starts at `base_gfn` and has
    /// `npages` frames, to the pinned page `pfn`. Returns false, leaving
    /// the map unchanged and the pin with the caller, if `gfn` is already
    /// mapped.
    pub(crate) fn map(&mut self, gfn: u64, pfn: u64, base_gfn: u64, npages: u64) -> Result<bool> {
        if gfn >> (GPA_BITS - 12) != 0 || gfn < base_gfn || gfn - base_gfn >= npages {
            return Err(EINVAL);
        }
        let entry: *mut u64 = self.leaf(gfn, true)?.ok_or(EINVAL)?;
        // SAFETY: `entry` points into a table of this map, alive while
        // `self` is, and nothing else refers to it during this call.
        if unsafe { *entry } & RWX != 0 {
            return Ok(false);
        }
        let list = self
            .rmap(base_gfn, npages)?
            .lists
            .get_mut((gfn - base_gfn) as usize)
            .ok_or(EINVAL)?;
        list.add(entry as u64, &mut KernelDescs)
            .map_err(|_| ENOMEM)?;
        // INVARIANT: the pin passes to the map, the leaf is in its rmap.
        // SAFETY: as above.
        unsafe { *entry = (pfn << 12) | MEMTYPE_WB | RWX };
        self.mapped += 1;
        Ok(true)
    }

    /// The page frame `gfn` maps to, if mapped.
    pub(crate) fn lookup(&mut self, gfn: u64) -> Option<u64> {
        let entry = self.leaf(gfn, false).ok()??;
        (*entry & RWX != 0).then_some((*entry & ADDR_MASK) >> 12)
    }

    /// Unmaps every frame of the slot that started at `base_gfn` by
    /// draining its rmap (one pass, descriptors freed as it goes), and
    /// moves the pins to `out`, which the caller releases after kicking the
    /// vCPUs. Fails only before changing anything.
    pub(crate) fn zap_slot(&mut self, base_gfn: u64, out: &mut KVec<u64>) -> Result {
        let Some(i) = self.rmaps.iter().position(|r| r.base_gfn == base_gfn) else {
            return Ok(());
        };
        out.reserve(self.mapped, GFP_KERNEL)?;
        let mut rmap = self.rmaps.remove(i)?;
        let mut cleared = 0;
        for list in rmap.lists.iter_mut() {
            list.drain(&mut KernelDescs, |h| {
                let entry = h as *mut u64;
                // SAFETY: every handle is the address of a present leaf of
                // this map (invariant); tables outlive their leaves.
                let pfn = unsafe { (*entry & ADDR_MASK) >> 12 };
                // SAFETY: as above.
                unsafe { *entry = 0 };
                // Capacity was reserved for every mapped page.
                let _ = out.push_within_capacity(pfn);
                cleared += 1;
            });
        }
        self.mapped -= cleared;
        Ok(())
    }
}

impl Drop for Ept {
    fn drop(&mut self) {
        for rmap in self.rmaps.iter_mut() {
            for list in rmap.lists.iter_mut() {
                list.drain(&mut KernelDescs, |h| {
                    // SAFETY: a handle is the address of a present leaf
                    // holding a pin owned by the map (invariant), released
                    // once here; no vCPU of this VM runs any more.
                    unsafe { shim::unpin_pfn((*(h as *const u64) & ADDR_MASK) >> 12) };
                });
            }
        }
    }
}
