// SPDX-License-Identifier: GPL-2.0

//! User space's say over guest RDMSR/WRMSR: the MSR filter
//! (`KVM_X86_SET_MSR_FILTER`) and the failed accesses user space asked to
//! handle itself (`KVM_CAP_X86_USER_SPACE_MSR`).
//!
//! Rules follow KVM's `kvm_msr_allowed()`, `kvm_add_msr_filter()`,
//! `kvm_vm_ioctl_set_msr_filter()` and `kvm_msr_user_space()`
//! (`arch/x86/kvm/msrs.c`):
//! - a filter has up to 16 ranges, each a base, a count and a bitmap (bit
//!   set: allowed) for reads, writes or both; the first range covering the
//!   MSR for the access type decides; no range: the filter's default;
//! - the x2APIC MSRs (0x800-0x8ff) are never filtered;
//! - a filter applies to the guest's accesses only, never to
//!   `KVM_GET/SET_MSRS`.
//!
//! Pure logic over `core`, shared with the host tests.

/// `KVM_MSR_FILTER_READ` / `_WRITE`: the accesses a range filters.
pub(crate) const RANGE_READ: u32 = 1;
pub(crate) const RANGE_WRITE: u32 = 2;
const RANGE_VALID: u32 = RANGE_READ | RANGE_WRITE;
/// `KVM_MSR_FILTER_DEFAULT_DENY`: MSRs no range covers are denied.
pub(crate) const DEFAULT_DENY: u32 = 1;
/// `KVM_MSR_FILTER_MAX_BITMAP_SIZE`: the largest bitmap, in bytes.
pub(crate) const MAX_BITMAP_BYTES: usize = 0x600;

/// `KVM_MSR_EXIT_REASON_*`: why an access went to user space, and the
/// bits of `KVM_ENABLE_CAP(KVM_CAP_X86_USER_SPACE_MSR)`.
pub(crate) mod reason {
    /// rkvm knows the MSR but refused the access (#GP otherwise).
    pub(crate) const INVAL: u32 = 1;
    /// rkvm does not know the MSR.
    pub(crate) const UNKNOWN: u32 = 2;
    /// The filter denied the access.
    pub(crate) const FILTER: u32 = 4;
    /// Every reason (`KVM_MSR_EXIT_REASON_VALID_MASK`).
    pub(crate) const VALID: u32 = INVAL | UNKNOWN | FILTER;
}

/// A refused filter (EINVAL, as KVM).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Invalid;

/// Whether a filter's flags and the counts of its ranges are acceptable:
/// only DEFAULT_DENY, and a deny-by-default filter needs a range.
pub(crate) fn filter_valid(flags: u32, counts: impl Iterator<Item = u32>) -> Result<(), Invalid> {
    let mut empty = true;
    for n in counts {
        empty &= n == 0;
    }
    if flags & !DEFAULT_DENY != 0 || (empty && flags & DEFAULT_DENY != 0) {
        return Err(Invalid);
    }
    Ok(())
}

/// The bitmap bytes one range header asks to copy: `None` for an unused
/// range (no MSRs), which is skipped whatever its other fields. KVM copies
/// whole longs, so the size rounds up to 8 bytes; a range must filter
/// reads, writes or both and take at most `MAX_BITMAP_BYTES`.
pub(crate) fn range_bytes(flags: u32, nmsrs: u32) -> Result<Option<usize>, Invalid> {
    if nmsrs == 0 {
        return Ok(None);
    }
    if flags & !RANGE_VALID != 0 || flags == 0 {
        return Err(Invalid);
    }
    let bytes = (nmsrs as usize).div_ceil(64) * 8;
    if bytes > MAX_BITMAP_BYTES {
        return Err(Invalid);
    }
    Ok(Some(bytes))
}

/// One range of a filter. Invariant: `bitmap` holds at least
/// `nmsrs.div_ceil(8)` bytes (`range_bytes` of them).
pub(crate) struct Range<B> {
    pub(crate) flags: u32,
    pub(crate) base: u32,
    pub(crate) nmsrs: u32,
    pub(crate) bitmap: B,
}

/// Whether a guest read (`write` false) or write of MSR `index` passes a
/// filter with the default `default_allow` and these ranges.
pub(crate) fn allowed<B: core::ops::Deref<Target = [u8]>>(
    default_allow: bool,
    ranges: &[Range<B>],
    index: u32,
    write: bool,
) -> bool {
    if (0x800..=0x8ff).contains(&index) {
        return true;
    }
    let kind = if write { RANGE_WRITE } else { RANGE_READ };
    for r in ranges {
        // KVM computes the end in 32 bits: a range that wraps past
        // 0xffffffff covers nothing above its base.
        let end = r.base.wrapping_add(r.nmsrs);
        if index >= r.base && index < end && r.flags & kind != 0 {
            let bit = (index - r.base) as usize;
            return r
                .bitmap
                .get(bit / 8)
                .is_some_and(|b| b >> (bit % 8) & 1 != 0);
        }
    }
    default_allow
}
