// SPDX-License-Identifier: GPL-2.0

//! Second-level translation of guest-physical memory.
//!
//! The EPT identity map that unpaged guest modes run on ([`ept`]), the
//! shadow MMU that paged guests run on ([`shadow`]), the guest page-table
//! walker it uses ([`walk`]), and the rmap lists ([`pte_list`]) both keep.

pub(crate) mod ept;
// Retain, the invalid flag and the chain statistics serve the invalidation
// work to come (host-tested already).
#[allow(dead_code)]
pub(crate) mod pte_list;
pub(crate) mod shadow;
pub(crate) mod stats;
// 5-level paging, implicit accesses and the PDPTE check are host-tested
// but not used by the module yet.
#[allow(dead_code)]
pub(crate) mod walk;

use kernel::prelude::*;

/// One 4 KiB page, 4 KiB aligned, from the direct map: a paging-structure
/// table, a VMXON region, a VMCS or an XSAVE area.
#[repr(C, align(4096))]
pub(crate) struct Page4k(pub(crate) [u64; 512]);

impl Page4k {
    /// A zeroed page.
    pub(crate) fn new_zeroed() -> Result<KBox<Self>> {
        let mut b = KBox::<Self>::new_uninit(GFP_KERNEL_ACCOUNT)?;
        // SAFETY: `b` points to a writable allocation of `Self`, and all
        // zeroes are a valid `[u64; 512]`.
        Ok(unsafe {
            core::ptr::write_bytes(b.as_mut_ptr(), 0, 1);
            b.assume_init()
        })
    }

    /// The page's physical address.
    pub(crate) fn phys(&self) -> u64 {
        crate::shim::virt_to_phys(self)
    }
}
