// SPDX-License-Identifier: GPL-2.0

//! The EPT identity map for unpaged guest modes: guest-physical frame `gfn`
//! of a memory slot maps to the host page backing it in the VMM.
//!
//! Pages are mapped on demand (EPT violation, outside the VMX window) and
//! long-term pinned while mapped. Tables are never freed before the VM:
//! only leaves are cleared. Clearing is followed by a kick of every vCPU in
//! a window (see `Vm::zap_gfns`) before the pages are unpinned, and every
//! window starts with an INVEPT, so no vCPU can reach an unmapped page.
//!
//! Format: Intel SDM Vol. 3C, section 29.3.2 (4-level EPT, 4 KiB leaves).

use kernel::prelude::*;

use super::Page4k;
use crate::shim;

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
}

impl Ept {
    /// An empty map.
    pub(crate) fn new() -> Result<Self> {
        Ok(Self {
            root: Page4k::new_zeroed()?,
            tables: KVec::new(),
            mapped: 0,
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

    /// Maps `gfn` to the pinned page `pfn`. Returns false, leaving the map
    /// unchanged and the pin with the caller, if `gfn` is already mapped.
    pub(crate) fn map(&mut self, gfn: u64, pfn: u64) -> Result<bool> {
        if gfn >> (GPA_BITS - 12) != 0 {
            return Err(EINVAL);
        }
        let entry = self.leaf(gfn, true)?.ok_or(EINVAL)?;
        if *entry & RWX != 0 {
            return Ok(false);
        }
        // INVARIANT: the pin passes to the map.
        *entry = (pfn << 12) | MEMTYPE_WB | RWX;
        self.mapped += 1;
        Ok(true)
    }

    /// Clears the leaves of `[start, end)` and moves their pins to `out`
    /// (which the caller releases after kicking the vCPUs). Fails only
    /// before changing anything.
    pub(crate) fn clear(&mut self, start: u64, end: u64, out: &mut KVec<u64>) -> Result {
        out.reserve(self.mapped, GFP_KERNEL)?;
        let mut gfn = start;
        while gfn < end {
            // Skip unallocated last-level tables 512 frames at a time.
            match self.leaf(gfn, false)? {
                Some(entry) => {
                    if *entry & RWX != 0 {
                        let pfn = (*entry & ADDR_MASK) >> 12;
                        *entry = 0;
                        self.mapped -= 1;
                        // Capacity was reserved for every mapped page.
                        out.push_within_capacity(pfn).map_err(|_| ENOMEM)?;
                    }
                    gfn += 1;
                }
                None => gfn = (gfn | 0x1ff) + 1,
            }
        }
        Ok(())
    }
}

impl Drop for Ept {
    fn drop(&mut self) {
        for t in self.tables.iter() {
            // Only last-level tables hold leaves; they are the tables whose
            // entries carry a memory type.
            for e in t.0.iter() {
                if *e & RWX != 0 && *e & MEMTYPE_WB == MEMTYPE_WB {
                    // SAFETY: a present leaf holds a pin owned by the map
                    // (invariant), released once here; no vCPU of this VM
                    // runs any more (the VM is being freed).
                    unsafe { shim::unpin_pfn((*e & ADDR_MASK) >> 12) };
                }
            }
        }
    }
}
