// SPDX-License-Identifier: GPL-2.0

//! Segment registers as the VMCS holds them (base, limit, selector and the
//! access-rights word) and their conversion to and from the fields of
//! `struct kvm_segment`. Pure logic over `core`, shared with the host tests.
//!
//! The encoding is the VMX access-rights format (SDM Vol. 3C, 25.4.1); the
//! normalization on the way in matches KVM's `vmx_segment_access_rights()`
//! and `__vmx_set_segment()`, so `KVM_GET_SREGS` after `KVM_SET_SREGS`
//! returns what KVM returns.

/// Access rights: "segment unusable".
pub(crate) const AR_UNUSABLE: u32 = 1 << 16;

/// One segment register in VMCS form.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Segment {
    /// Base address.
    pub(crate) base: u64,
    /// Limit in bytes.
    pub(crate) limit: u32,
    /// Selector.
    pub(crate) selector: u16,
    /// Access rights.
    pub(crate) ar: u32,
}

/// The descriptor fields of `struct kvm_segment`, in their order there.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Fields {
    /// Type (4 bits).
    pub(crate) type_: u8,
    /// Present.
    pub(crate) present: u8,
    /// Descriptor privilege level.
    pub(crate) dpl: u8,
    /// Default operation size.
    pub(crate) db: u8,
    /// Code/data (1) or system (0) descriptor.
    pub(crate) s: u8,
    /// 64-bit code segment.
    pub(crate) l: u8,
    /// Granularity.
    pub(crate) g: u8,
    /// Available for software.
    pub(crate) avl: u8,
    /// Unusable.
    pub(crate) unusable: u8,
}

/// Access rights of a segment set by the VMM. Every descriptor field is
/// kept; a non-present segment is also marked unusable. Every segment but
/// the LDT gets its accessed bit set, as KVM does for unrestricted guests
/// (older VMMs clear it, which VM entry would reject).
pub(crate) fn ar_from_fields(f: &Fields, is_ldt: bool) -> u32 {
    let type_ = if is_ldt { f.type_ } else { f.type_ | 1 };
    let unusable = f.unusable != 0 || f.present == 0;
    u32::from(type_ & 15)
        | u32::from(f.s & 1) << 4
        | u32::from(f.dpl & 3) << 5
        | u32::from(f.present & 1) << 7
        | u32::from(f.avl & 1) << 12
        | u32::from(f.l & 1) << 13
        | u32::from(f.db & 1) << 14
        | u32::from(f.g & 1) << 15
        | if unusable { AR_UNUSABLE } else { 0 }
}

/// The `struct kvm_segment` fields of stored access rights; an unusable
/// segment reads as not present.
pub(crate) fn fields_from_ar(ar: u32) -> Fields {
    let unusable = (ar >> 16) & 1;
    Fields {
        type_: (ar & 15) as u8,
        s: ((ar >> 4) & 1) as u8,
        dpl: ((ar >> 5) & 3) as u8,
        present: u8::from(unusable == 0),
        avl: ((ar >> 12) & 1) as u8,
        l: ((ar >> 13) & 1) as u8,
        db: ((ar >> 14) & 1) as u8,
        g: ((ar >> 15) & 1) as u8,
        unusable: unusable as u8,
    }
}

/// Real-mode data segment at reset: base 0, 64 KiB, read/write, accessed.
pub(crate) const RESET_DATA_AR: u32 = 0x93;
/// Real-mode code segment at reset: execute/read, accessed.
pub(crate) const RESET_CODE_AR: u32 = 0x9b;
/// TR at reset: busy 32-bit TSS, present.
pub(crate) const RESET_TR_AR: u32 = 0x8b;
/// LDTR at reset: LDT, present.
pub(crate) const RESET_LDT_AR: u32 = 0x82;
