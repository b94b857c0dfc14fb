// SPDX-License-Identifier: GPL-2.0

//! Counters of the shadow MMU, read through the VM's binary statistics fd
//! (`KVM_GET_STATS_FD`). Names follow KVM's where KVM has the same counter.

/// Log2 buckets of the rmap chain-length histogram: bucket `i` counts the
/// rmap lists of length in `[2^i, 2^(i+1))` (bucket 0: length 1).
pub(crate) const RMAP_HIST_BUCKETS: usize = 16;

/// A snapshot of the shadow MMU's counters.
#[derive(Clone, Copy, Default)]
pub(crate) struct MmuStats {
    /// Shadow pages created (KVM: `mmu_cache_miss`). Cumulative.
    pub(crate) mmu_cache_miss: u64,
    /// Shadow pages zapped (KVM: `mmu_shadow_zapped`). Cumulative.
    pub(crate) mmu_shadow_zapped: u64,
    /// Guest page-table writes emulated (KVM: `mmu_pte_write`). Cumulative.
    pub(crate) mmu_pte_write: u64,
    /// Shadow pages reclaimed to stay within the page budget (KVM:
    /// `mmu_recycled`). Cumulative.
    pub(crate) mmu_recycled: u64,
    /// Shadow pages in use now. Instant.
    pub(crate) mmu_shadow_pages: u64,
    /// Shadow leaf entries (4 KiB mappings) now (KVM: `pages_4k`). Instant.
    pub(crate) pages_4k: u64,
    /// Longest rmap list seen (KVM: `max_mmu_rmap_size`). Peak.
    pub(crate) max_mmu_rmap_size: u64,
    /// Longest shadow-page hash chain seen (KVM:
    /// `max_mmu_page_hash_collisions`). Peak.
    pub(crate) max_mmu_page_hash_collisions: u64,
    /// Shadow page faults handled (KVM's per-vCPU `pf_taken`, VM-wide
    /// here). Cumulative.
    pub(crate) pf_taken: u64,
    /// Faults that installed a shadow entry (KVM: `pf_fixed`). Cumulative.
    pub(crate) pf_fixed: u64,
    /// Faults reflected into the guest as #PF (KVM: `pf_guest`). Cumulative.
    pub(crate) pf_guest: u64,
    /// Faults emulated (guest page-table writes; KVM: `pf_emulate`).
    /// Cumulative.
    pub(crate) pf_emulate: u64,
    /// Rmap chain lengths, log2 buckets (see [`RMAP_HIST_BUCKETS`]). Instant
    /// histogram, computed when read.
    pub(crate) rmap_len_hist: [u64; RMAP_HIST_BUCKETS],
}
