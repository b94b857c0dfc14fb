// SPDX-License-Identifier: GPL-2.0

//! Tests of guest CPUID handling (`rust/x86/cpuid.rs`).

use crate::cpuid::*;
use crate::sregs::GuestCpu;

fn e(function: u32, index: u32, flags: u32, regs: [u32; 4]) -> Entry {
    Entry {
        function,
        index,
        flags,
        eax: regs[0],
        ebx: regs[1],
        ecx: regs[2],
        edx: regs[3],
    }
}

fn long_mode_cpu() -> Vec<Entry> {
    vec![
        e(0, 0, 0, [0xd, 0, 0, 0]),
        e(1, 0, 0, [0x306c3, 0, 1 << 21, 0]),
        e(7, 0, 1, [0, 0, 0, 0]),
        e(7, 1, 1, [0, 0, 0, 0]),
        e(0x8000_0000, 0, 0, [0x8000_0008, 0, 0, 0]),
        e(0x8000_0001, 0, 0, [0, 0, 0, 1 << 29 | 1 << 20]),
        e(0x8000_0008, 0, 0, [0x3028, 0, 0, 0]),
    ]
}

#[test]
fn lookup_honours_significant_index() {
    let c = long_mode_cpu();
    assert_eq!(find(&c, 7, 1), Some(3));
    assert_eq!(find(&c, 7, 5), None);
    // Without the flag, any index matches.
    assert_eq!(find(&c, 1, 99), Some(1));
    assert_eq!(find(&c, 2, 0), None);
}

#[test]
fn features_derived_from_cpuid() {
    assert_eq!(
        guest_cpu(&long_mode_cpu()),
        GuestCpu {
            long_mode: true,
            nx: true,
            x2apic: true,
            maxphyaddr: 40
        }
    );
    assert_eq!(guest_cpu(&[]), GuestCpu::NO_CPUID);
}

#[test]
fn maxphyaddr_needs_the_extended_leaf_range() {
    let mut c = long_mode_cpu();
    c[4].eax = 0x8000_0004;
    assert_eq!(guest_cpu(&c).maxphyaddr, 36);
}

#[test]
fn linear_address_width_must_be_48_or_57() {
    let mut c = long_mode_cpu();
    assert!(valid(&c));
    c[6].eax = 0x3128;
    assert!(!valid(&c));
    c[6].eax = 0x3928;
    assert!(valid(&c));
    c[6].eax = 0x0028;
    assert!(valid(&c));
}

#[test]
fn runtime_bits_follow_cr4_and_apic_base() {
    let mut c = long_mode_cpu();
    c.push(e(0xd, 0, 1, [7, 0, 0, 0]));
    c.push(e(0xd, 1, 1, [0b1000, 0, 0, 0]));
    c[1].ecx |= 1 << 27; // OSXSAVE set by the VMM, CR4.OSXSAVE clear
    update_runtime(&mut c, 0, 0xfee0_0900);
    assert_eq!(c[1].ecx & (1 << 27), 0);
    assert_ne!(c[1].edx & (1 << 9), 0);
    assert_eq!(c[7].ebx, 576);
    assert_eq!(c[8].ebx, 576);
    update_runtime(&mut c, 1 << 18 | 1 << 22, 0);
    assert_ne!(c[1].ecx & (1 << 27), 0);
    assert_eq!(c[1].edx & (1 << 9), 0);
    assert_ne!(c[2].ecx & (1 << 4), 0);
}
