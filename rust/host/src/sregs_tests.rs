// SPDX-License-Identifier: GPL-2.0

//! Tests of `KVM_SET_SREGS` validity (`rust/x86/sregs.rs`).

use crate::sregs::*;

const REAL_MODE_CR0: u64 = 0x6000_0010;
const LONG: GuestCpu = GuestCpu {
    long_mode: true,
    nx: true,
    gbpages: true,
    x2apic: true,
    maxphyaddr: 40,
};

#[test]
fn reset_state_is_valid() {
    assert!(GuestCpu::NO_CPUID.sregs_valid(REAL_MODE_CR0, 0, 0, 0, false));
}

#[test]
fn cr0_rules() {
    let g = GuestCpu::NO_CPUID;
    assert!(!g.cr0_valid(cr0::PG)); // paging without protection
    assert!(!g.cr0_valid(cr0::NW)); // not-write-through without cache-disable
    assert!(!g.cr0_valid(1 << 32)); // reserved high half
    assert!(g.cr0_valid(cr0::PE | cr0::PG));
}

#[test]
fn cr4_gated_bits_need_cpuid() {
    let g = GuestCpu::NO_CPUID;
    assert!(g.cr4_valid(CR4_PAE | 0x200));
    for bit in [13, 17, 18, 20, 21, 22, 12, 63] {
        assert!(!g.cr4_valid(1 << bit), "CR4 bit {bit}");
    }
}

#[test]
fn long_mode_needs_cpuid_pae_and_lma() {
    let cr0 = cr0::PE | cr0::PG;
    let e = efer::LME | efer::LMA;
    assert!(!GuestCpu::NO_CPUID.sregs_valid(cr0, 0, CR4_PAE, e, true));
    assert!(LONG.sregs_valid(cr0, 0x1000, CR4_PAE, e, true));
    assert!(!LONG.sregs_valid(cr0, 0x1000, 0, e, true));
    assert!(!LONG.sregs_valid(cr0, 0x1000, CR4_PAE, efer::LME, true));
    // CR3 beyond the physical address width.
    assert!(!LONG.sregs_valid(cr0, 1 << 40, CR4_PAE, e, true));
}

#[test]
fn lma_or_cs_l_outside_long_mode_is_invalid() {
    assert!(!LONG.sregs_valid(REAL_MODE_CR0, 0, 0, efer::LMA, false));
    assert!(!LONG.sregs_valid(REAL_MODE_CR0, 0, 0, 0, true));
}

#[test]
fn efer_bits_follow_cpuid() {
    assert!(GuestCpu::NO_CPUID.efer_valid(efer::SCE));
    assert!(!GuestCpu::NO_CPUID.efer_valid(efer::NXE));
    assert!(LONG.efer_valid(efer::SCE | efer::NXE | efer::LME));
    assert!(!LONG.efer_valid(1 << 2));
}

#[test]
fn apic_base_rules() {
    let g = GuestCpu::NO_CPUID;
    assert!(g.apic_base_valid(0));
    assert!(g.apic_base_valid(0xfee0_0900));
    assert!(!g.apic_base_valid(0xfee0_0901)); // reserved low bit
    assert!(!g.apic_base_valid(0xfee0_0c00)); // x2APIC without CPUID
    assert!(!LONG.apic_base_valid(0xfee0_0400)); // x2APIC without enable
    assert!(LONG.apic_base_valid(0xfee0_0c00));
    assert!(!g.apic_base_valid(1 << 36)); // beyond MAXPHYADDR
}
