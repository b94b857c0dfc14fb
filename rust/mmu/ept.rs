// SPDX-License-Identifier: GPL-2.0

//! The EPT identity map for unpaged guest modes: guest-physical frame `gfn`
//! of a memory slot maps to the host page backing it in the VMM.
//!
//! The map lives inside the shadow MMU ([`super::shadow::Shadow`]) and is
//! changed only under its lock (`mmu_lock`): table pages come from the
//! shadow MMU's page cache and rmap descriptors from its descriptor cache,
//! both filled outside the lock, so nothing here sleeps. That is what lets
//! the mmu_notifier callbacks unmap host pages from any context.
//!
//! Pages are mapped on demand (EPT violation, or as the host page of a
//! shadow fault) and long-term pinned while mapped. Every leaf is recorded
//! in the rmap of its slot (one pte_list per guest frame, beside the shadow
//! leaves' list), so unmapping a slot or a host range drains rmaps instead
//! of walking tables. Tables are freed with the VM: only leaves are
//! cleared. Clearing is followed by a kick of every vCPU in a window before
//! the pages are unpinned, and every window starts with an INVEPT, so no
//! vCPU can reach an unmapped page.
//!
//! Format: Intel SDM Vol. 3C, section 29.3.2 (4-level EPT, 4 KiB leaves).

use core::ptr::NonNull;

use kernel::prelude::*;

use super::Page4k;
use crate::shim;

/// Write access.
const W: u64 = 1 << 1;
/// Software bit (ignored by the CPU in a leaf): the page was pinned for
/// writing, so write access may be given, and the page is marked dirty
/// when released.
pub(crate) const PIN_W: u64 = 1 << 57;
/// Read, write and execute access.
const RWX: u64 = 0b111;
/// Leaf memory type: write-back.
const MEMTYPE_WB: u64 = 6 << 3;
/// Physical-address bits of an entry.
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
/// Guest-physical address width an EPT of 4 levels translates.
pub(crate) const GPA_BITS: u32 = 48;
/// Tables a mapping may have to add (levels 3, 2 and 1).
pub(crate) const TABLES_PER_MAP: usize = 3;

/// Index of `gfn` in the table of `level` (4 = PML4 ... 1 = PT).
fn index(gfn: u64, level: u32) -> usize {
    ((gfn >> (9 * (level - 1))) & 0x1ff) as usize
}

/// The table an entry points to.
fn child(entry: u64) -> *mut [u64; 512] {
    shim::phys_to_virt(entry & ADDR_MASK).cast()
}

/// The pinned page a present leaf maps.
pub(crate) fn leaf_pfn(entry: u64) -> u64 {
    (entry & ADDR_MASK) >> 12
}

/// The EPT of one VM.
///
/// # Invariants
///
/// Every present non-leaf entry points to a page from
/// [`shim::table_alloc`] owned by this map; every present leaf holds a
/// page pinned by [`shim::pin_user_page`] and owned by this map, and is in
/// the EPT rmap list of its gfn.
pub(crate) struct Ept {
    root: KBox<Page4k>,
}

impl Ept {
    /// An empty map.
    pub(crate) fn new() -> Result<Self> {
        Ok(Self {
            root: Page4k::new_zeroed()?,
        })
    }

    /// The EPT pointer: write-back paging structures, 4-level walk.
    pub(crate) fn eptp(&self) -> u64 {
        self.root.phys() | (3 << 3) | 6
    }

    /// The leaf entry for `gfn`; missing tables are taken from `tables`
    /// (zeroed pages from [`shim::table_alloc`]) unless it runs dry.
    fn leaf(
        &mut self,
        gfn: u64,
        mut tables: Option<&mut dyn FnMut() -> Option<NonNull<[u64; 512]>>>,
    ) -> Option<*mut u64> {
        let mut table: *mut [u64; 512] = &mut self.root.0;
        for level in (2..=4).rev() {
            // SAFETY: `table` is the root or a table this map owns
            // (invariant), alive and only reached through `&mut self`.
            let entry = unsafe { &mut (*table)[index(gfn, level)] };
            if *entry & RWX == 0 {
                let t = tables.as_mut()?()?;
                // INVARIANT: the new table is owned by the map from now on.
                *entry = shim::virt_to_phys(t.as_ptr()) | RWX;
            }
            table = child(*entry);
        }
        // SAFETY: as above, for the last-level table.
        Some(unsafe { core::ptr::from_mut(&mut (*table)[index(gfn, 1)]) })
    }

    /// The present leaf of `gfn`, if mapped.
    pub(crate) fn lookup(&mut self, gfn: u64) -> Option<u64> {
        let entry = self.leaf(gfn, None)?;
        // SAFETY: `entry` points into a table of this map.
        let v = unsafe { entry.read() };
        (v & RWX != 0).then_some(v)
    }

    /// Makes the leaf for `gfn` and returns its address (to be recorded in
    /// the rmap) if `gfn` is not mapped yet; `None` if it is, or if
    /// `tables` ran dry. [`Ept::set_leaf`] fills it.
    pub(crate) fn prepare(
        &mut self,
        gfn: u64,
        tables: &mut dyn FnMut() -> Option<NonNull<[u64; 512]>>,
    ) -> Option<*mut u64> {
        if gfn >> (GPA_BITS - 12) != 0 {
            return None;
        }
        let entry = self.leaf(gfn, Some(tables))?;
        // SAFETY: `entry` points into a table of this map.
        (unsafe { entry.read() } & RWX == 0).then_some(entry)
    }

    /// Fills the empty leaf `entry` (from [`Ept::prepare`], now in the
    /// rmap of its gfn) with the pinned page `pfn`, whose pin passes to
    /// the map; read-only (and executable) unless `writable`; `pin_w`:
    /// the page was pinned for writing (required for `writable`).
    pub(crate) fn set_leaf(&mut self, entry: *mut u64, pfn: u64, writable: bool, pin_w: bool) {
        let rights = if writable && pin_w { RWX } else { RWX & !W };
        let rights = if pin_w { rights | PIN_W } else { rights };
        // INVARIANT: the pin passes to the map, the leaf is in its rmap.
        // SAFETY: `entry` is an empty leaf of this map (`prepare`).
        unsafe { entry.write((pfn << 12) | MEMTYPE_WB | rights) };
    }

    /// Clears the present leaf `entry` (just removed from its rmap) and
    /// returns its old value: the pin of its page passes to the caller,
    /// who releases it (see [`unpin`]) after kicking the vCPUs.
    ///
    /// # Safety
    ///
    /// `entry` is a present leaf of this map.
    pub(crate) unsafe fn clear_leaf(&mut self, entry: *mut u64) -> u64 {
        // SAFETY: the caller's guarantee.
        let v = unsafe { entry.read() };
        // SAFETY: as above.
        unsafe { entry.write(0) };
        v
    }

    /// Frees the tables below `table` at `level` (leaves were cleared).
    fn free_tables(table: *mut [u64; 512], level: u32) {
        for i in 0..512 {
            // SAFETY: `table` is a live table of the map being dropped.
            let e = unsafe { (*table)[i] };
            if e & RWX == 0 {
                continue;
            }
            let c = child(e);
            if level > 2 {
                Self::free_tables(c, level - 1);
            }
            if let Some(c) = NonNull::new(c) {
                // SAFETY: the table came from `table_alloc` and the map
                // owned it; nothing refers to it any more.
                unsafe { shim::table_free(c) };
            }
        }
    }
}

impl Drop for Ept {
    fn drop(&mut self) {
        // Leaves were cleared (and unpinned) through the rmaps first: see
        // `Shadow`'s drop.
        Self::free_tables(&mut self.root.0, 4);
    }
}

/// Gives or takes the guest's write access through the present leaf
/// `entry` (given only if its page was pinned for writing); true if that
/// changed it.
///
/// # Safety
///
/// `entry` is a present leaf of an EPT map; the caller holds the lock
/// serializing the map.
pub(crate) unsafe fn set_writable(entry: *mut u64, write: bool) -> bool {
    // SAFETY: the caller's guarantee.
    let v = unsafe { entry.read() };
    let new = if write && v & PIN_W != 0 {
        v | W
    } else {
        v & !W
    };
    // SAFETY: as above.
    unsafe { entry.write(new) };
    new != v
}

/// Releases the pin of a leaf cleared by [`Ept::clear_leaf`]; the page is
/// marked dirty if it was pinned for writing (the guest may have written
/// it, through this leaf or a shadow leaf).
///
/// # Safety
///
/// `entry` is the old value of a leaf cleared by [`Ept::clear_leaf`], and
/// no vCPU can still reach its page; each such value is released once.
pub(crate) unsafe fn unpin(entry: u64) {
    // SAFETY: the leaf owned this pin, which passed to the caller.
    unsafe { shim::unpin_pfn(leaf_pfn(entry), entry & PIN_W != 0) };
}
