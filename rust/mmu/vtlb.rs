// SPDX-License-Identifier: GPL-2.0

//! Shadow page tables for paged 32-bit guests, first stage: a virtual TLB.
//!
//! The hardware runs a paged 32-bit guest (2-level or PAE paging) with PAE
//! paging on these tables, whose leaves map guest-linear pages straight to
//! host pages. They are filled one page at a time on shadow page faults
//! (the guest's tables walked by [`super::walk`]) and dropped whole when the
//! guest reloads CR3 or changes a paging control bit, one entry on INVLPG,
//! and whenever the VM's mapping generation moves (a slot deleted or
//! moved). That is exactly what the guest may expect of a TLB, so no guest
//! page table needs write protection; it costs a refill after every CR3
//! load. The shadow MMU proper (shadow pages hashed by guest table, rmaps,
//! write protection, special PAE roots) replaces this: see
//! `Documentation/rkvm/design.rst`.
//!
//! Leaves point at pages the VM's EPT map keeps pinned; they are only used
//! while the generation they were filled under is current, and the VM
//! kicks every vCPU out of its VMX window before unpinning after a
//! generation change, so no vCPU can reach an unpinned page.

use kernel::prelude::*;

use super::Page4k;

const P: u64 = 1 << 0;
const RW: u64 = 1 << 1;
const US: u64 = 1 << 2;
const XD: u64 = 1 << 63;
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

/// Permissions of one shadow leaf.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Leaf {
    /// The host page.
    pub(crate) pfn: u64,
    /// Writable.
    pub(crate) write: bool,
    /// User-accessible.
    pub(crate) user: bool,
    /// Not executable (only with EFER.NXE).
    pub(crate) no_exec: bool,
}

/// The shadow tables of one vCPU.
///
/// # Invariants
///
/// The root is a PAE page-directory-pointer table below 4 GiB whose present
/// entries point to page directories in `tables`, whose present entries
/// point to page tables in `tables`. Leaves were filled under generation
/// `gen`.
pub(crate) struct Vtlb {
    root: KBox<Page4k>,
    tables: KVec<KBox<Page4k>>,
    gen: u64,
}

impl Vtlb {
    /// Empty tables for mapping generation `gen`. `EIO` if the root lands
    /// above 4 GiB (PAE CR3 holds 32 bits).
    pub(crate) fn new(gen: u64) -> Result<Self> {
        let root = Page4k::new_zeroed()?;
        if root.phys() >> 32 != 0 {
            return Err(EIO);
        }
        Ok(Self {
            root,
            tables: KVec::new(),
            gen,
        })
    }

    /// The value for the hardware CR3.
    pub(crate) fn cr3(&self) -> u64 {
        self.root.phys()
    }

    /// The generation the leaves belong to.
    pub(crate) fn gen(&self) -> u64 {
        self.gen
    }

    /// Drops every translation; the tables are filled again under `gen`.
    pub(crate) fn flush(&mut self, gen: u64) {
        self.root.0 = [0; 512];
        self.tables.clear();
        self.gen = gen;
    }

    fn child(entry: u64) -> *mut [u64; 512] {
        crate::shim::phys_to_virt(entry & ADDR_MASK).cast()
    }

    /// Maps the 4 KiB page of linear address `la` (32 bits).
    pub(crate) fn map(&mut self, la: u64, leaf: Leaf) -> Result {
        let la = la & 0xffff_ffff;
        let pdpt: *mut [u64; 512] = &mut self.root.0;
        let mut table = pdpt;
        for (shift, upper) in [(30, P), (21, P | RW | US)] {
            // SAFETY: `table` is the root or a table in `self.tables`
            // (invariant), reached only through `&mut self`.
            let entry = unsafe { &mut (*table)[((la >> shift) & 0x1ff) as usize] };
            if *entry & P == 0 {
                let t = Page4k::new_zeroed()?;
                let pa = t.phys();
                self.tables.push(t, GFP_KERNEL_ACCOUNT)?;
                // INVARIANT: the new table is in `self.tables`. PDPTEs
                // carry only P (their RW/US bits are reserved).
                *entry = pa | upper;
            }
            table = Self::child(*entry);
        }
        let mut pte = (leaf.pfn << 12) | P;
        if leaf.write {
            pte |= RW;
        }
        if leaf.user {
            pte |= US;
        }
        if leaf.no_exec {
            pte |= XD;
        }
        // SAFETY: as above, for the page table.
        unsafe { (*table)[((la >> 12) & 0x1ff) as usize] = pte };
        Ok(())
    }

    /// Removes the translation of linear address `la`, if any (INVLPG).
    pub(crate) fn invalidate(&mut self, la: u64) {
        let la = la & 0xffff_ffff;
        let mut table: *mut [u64; 512] = &mut self.root.0;
        for shift in [30, 21] {
            // SAFETY: as in `map`.
            let entry = unsafe { (*table)[((la >> shift) & 0x1ff) as usize] };
            if entry & P == 0 {
                return;
            }
            table = Self::child(entry);
        }
        // SAFETY: as in `map`.
        unsafe { (*table)[((la >> 12) & 0x1ff) as usize] = 0 };
    }
}
