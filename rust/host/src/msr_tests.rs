// SPDX-License-Identifier: GPL-2.0

//! The MSR table's validity rules.

use crate::msr::*;

#[test]
fn pat_accepts_only_memory_types() {
    assert!(pat_valid(PAT_RESET));
    assert!(pat_valid(0x0706_0504_0100_0706));
    for bad in [2u64, 3, 8, 0x10, 0x0200_0000_0000_0000, 0x0300, 0x80] {
        assert!(!pat_valid(bad), "{bad:#x}");
    }
}

#[test]
fn canonical_is_48_bit_sign_extension() {
    assert!(canonical(0));
    assert!(canonical(0x0000_7fff_ffff_ffff));
    assert!(canonical(0xffff_8000_0000_0000));
    assert!(!canonical(0x0000_8000_0000_0000));
    assert!(!canonical(0xfff0_0000_0000_0000));
}

#[test]
fn stored_msrs_keep_reset_values_and_refuse_bad_writes() {
    let mut m = Msrs::default();
    assert_eq!(m.get(index::PAT), Some(PAT_RESET));
    assert_eq!(m.get(index::MISC_ENABLE), Some(0x1800));
    assert_eq!(m.set(index::LSTAR, 0x0000_8000_0000_0000), Some(false));
    assert_eq!(m.get(index::LSTAR), Some(0));
    assert_eq!(m.set(index::LSTAR, 0xffff_ffff_8100_0000), Some(true));
    assert_eq!(m.get(index::LSTAR), Some(0xffff_ffff_8100_0000));
    assert_eq!(m.set(index::PAT, 0x2), Some(false));
    assert_eq!(m.set(index::TSC, 1), None, "the TSC is not stored here");
    assert_eq!(m.get(0x1234), None);
    // Every index the list reports is known to the write rules.
    for i in SAVED {
        assert!(write_valid(i, 0).is_some(), "{i:#x}");
    }
}

#[test]
fn misc_enable_and_hwcr_follow_kvm() {
    // hwcr_msr_test: bits 3, 6, 8 dropped, 18 and 24 kept, others refused.
    let mut m = Msrs::default();
    assert_eq!(m.set(index::HWCR, 1 << 3 | 1 << 18), Some(true));
    assert_eq!(m.get(index::HWCR), Some(1 << 18));
    assert_eq!(m.set(index::HWCR, 1 << 35), Some(false));
    // msrs_test: the PMU bits are read-only for the guest, EMON ignored.
    assert_eq!(guest_misc_enable(MISC_ENABLE_RESET, 1), None);
    assert_eq!(
        guest_misc_enable(MISC_ENABLE_RESET, MISC_ENABLE_RESET | 1 | 1 << 7),
        Some(MISC_ENABLE_RESET | 1)
    );
}

#[test]
fn guest_efer_keeps_lma() {
    assert_eq!(guest_efer(0x500, 0x101), 0x501);
    assert_eq!(guest_efer(0, 0x401), 0x1);
}

#[test]
fn sysenter_addresses_are_made_canonical() {
    assert_eq!(
        sysenter_address(0x0000_8000_0000_1234),
        0xffff_8000_0000_1234
    );
    assert_eq!(sysenter_address(0x1234), 0x1234);
    assert_eq!(
        write_valid(index::SYSENTER_EIP, 0x0000_8000_0000_0000),
        Some(true)
    );
}

#[test]
fn kvmclock_msr_pairs_alias() {
    let mut m = Msrs::default();
    assert_eq!(m.set(index::KVM_SYSTEM_TIME_NEW, 0x5001), Some(true));
    assert_eq!(m.get(index::KVM_SYSTEM_TIME), Some(0x5001));
    assert_eq!(m.set(index::KVM_WALL_CLOCK, 0x6000), Some(true));
    assert_eq!(m.get(index::KVM_WALL_CLOCK_NEW), Some(0x6000));
}

#[test]
fn ucode_rev_resets_to_kvms_value() {
    let mut m = Msrs::default();
    assert_eq!(m.get(index::UCODE_REV), Some(1 << 32));
    assert_eq!(m.set(index::UCODE_REV, 0x42 << 32), Some(true));
    assert!(SAVED.contains(&index::UCODE_REV));
}
