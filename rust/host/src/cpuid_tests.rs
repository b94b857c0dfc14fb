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
            gbpages: false,
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

#[test]
fn lookup_follows_kvm_rules() {
    let intel = [
        e(0, 0, 0, [4, 0x756e_6547, 0x6c65_746e, 0x4965_6e69]),
        e(1, 0, 0, [0x306c3, 1, 2, 3]),
        e(4, 0, 1, [10, 11, 12, 13]),
        e(4, 1, 1, [20, 21, 22, 23]),
        e(0x8000_0000, 0, 0, [0x8000_0001, 0, 0, 0]),
    ];
    // Exact matches, with and without a significant index.
    assert_eq!(lookup(&intel, 1, 7), [0x306c3, 1, 2, 3]);
    assert_eq!(lookup(&intel, 4, 1), [20, 21, 22, 23]);
    // In range but absent: zeros (leaf 2, subleaf 2 of leaf 4).
    assert_eq!(lookup(&intel, 2, 0), [0; 4]);
    assert_eq!(lookup(&intel, 4, 2), [0; 4]);
    assert_eq!(lookup(&intel, 0x8000_0001, 0), [0; 4]);
    // Above the basic maximum: the maximum basic leaf, same subleaf.
    assert_eq!(lookup(&intel, 5, 1), [20, 21, 22, 23]);
    assert_eq!(lookup(&intel, 0x8000_0002, 0), [10, 11, 12, 13]);
    assert_eq!(lookup(&intel, 0x4000_0000, 0), [10, 11, 12, 13]);
    // AMD never redirects.
    let mut amd = intel;
    amd[0] = e(0, 0, 0, [4, 0x6874_7541, 0x444d_4163, 0x6974_6e65]);
    assert_eq!(lookup(&amd, 5, 1), [0; 4]);
    // No table: zeros.
    assert_eq!(lookup(&[], 0, 0), [0; 4]);
    // Leaf 0xB as maximum keeps ECX[7:0] and the x2APIC id.
    let topo = [e(0, 0, 0, [0xb, 0, 0, 0]), e(0xb, 0, 1, [1, 1, 0x100, 7])];
    assert_eq!(lookup(&topo, 0xc, 0x1f3), [0, 0, 0xf3, 7]);
}

#[test]
fn default_table_describes_an_unpaged_cpu() {
    assert_eq!(
        lookup(&DEFAULT, 0, 0),
        [1, 0x6d76_6b72, 0x6d76_6b72, 0x6d76_6b72]
    );
    let edx = lookup(&DEFAULT, 1, 0)[3];
    assert_eq!(edx & (1 << 3 | 1 << 6 | 1 << 9), 0, "no PSE, PAE or APIC");
    // Leaf 2 is above the maximum (1): Intel-style redirect to leaf 1.
    assert_eq!(lookup(&DEFAULT, 2, 0), lookup(&DEFAULT, 1, 0));
}

/// A host with everything (all feature bits set, high leaves present).
fn rich_host(function: u32, _index: u32) -> [u32; 4] {
    match function {
        0 => [0x16, 0x756e_6547, 0x6c65_746e, 0x4965_6e69],
        0x8000_0000 => [0x8000_0008, 0, 0, 0],
        0x8000_0008 => [0x3027, 0, 0, 0],
        1 => [0x306c3, 0x0102_0800, u32::MAX, u32::MAX],
        _ => [u32::MAX; 4],
    }
}

#[test]
fn supported_table_offers_only_what_rkvm_runs() {
    let t = supported(rich_host);
    let get = |f, i| lookup(&t, f, i);
    assert_eq!(get(0, 0)[0], 7);
    assert_eq!(get(0, 0)[1], 0x756e_6547, "host vendor");
    let [eax, ebx, ecx, edx] = get(1, 0);
    assert_eq!(eax, 0x306c3);
    assert_eq!(ebx, 0x0800, "only the CLFLUSH size");
    assert_ne!(ecx & 1 << 31, 0, "hypervisor bit");
    for (bit, name) in [
        (26, "XSAVE"),
        (27, "OSXSAVE"),
        (28, "AVX"),
        (24, "TSC deadline"),
        (5, "VMX"),
    ] {
        assert_eq!(ecx & 1 << bit, 0, "{name} must not be offered");
    }
    assert_ne!(ecx & 1 << 21, 0, "x2APIC (emulated)");
    assert_ne!(edx & 1 << 9, 0, "APIC");
    assert_ne!(
        supported(|_, _| [0x16, 0, 0, 0])[1].ecx & 1 << 21,
        0,
        "x2APIC without the host's"
    );
    for (bit, name) in [(1, "VME")] {
        assert_eq!(edx & 1 << bit, 0, "{name} must not be offered");
    }
    for (bit, name) in [
        (2, "DE"),
        (3, "PSE"),
        (6, "PAE"),
        (7, "MCE"),
        (12, "MTRR"),
        (14, "MCA"),
        (13, "PGE"),
        (16, "PAT"),
        (25, "SSE"),
    ] {
        assert_ne!(edx & 1 << bit, 0, "{name} is supported");
    }
    let ext = get(0x8000_0001, 0);
    assert_ne!(ext[3] & 1 << 29, 0, "long mode");
    assert_ne!(ext[3] & 1 << 11, 0, "SYSCALL (its MSRs are switched)");
    assert_ne!(ext[3] & 1 << 26, 0, "1 GiB pages");
    assert_ne!(ext[3] & 1 << 20, 0, "NX");
    assert_eq!(get(0x8000_0008, 0)[0], 0x3027 & 0xff | 48 << 8);
    // Every entry is accepted by KVM_SET_CPUID2's checks.
    assert!(valid(&t));
}

#[test]
fn supported_table_follows_a_poor_host() {
    let t = supported(|f, _| match f {
        0 => [1, 0, 0, 0],
        1 => [0x600, 0, 0, 1],
        _ => [0; 4],
    });
    assert_eq!(lookup(&t, 1, 0)[3], 1, "only what the host has");
    assert_eq!(
        lookup(&t, 7, 0),
        [0, 1 << 1, 0, 0],
        "TSC_ADJUST is emulated"
    );
    assert_eq!(lookup(&t, 0x8000_0008, 0)[0], 36 | 48 << 8);
}

#[test]
fn pv_features_follow_the_kvm_signature() {
    let sup = supported(|_, _| [0xd, 0, 0, 0]);
    let bits = pv_features(&sup);
    assert_ne!(bits & 1, 0, "kvmclock offered");
    // Without the signature leaf, no features.
    let no_sig: Vec<Entry> = sup
        .iter()
        .copied()
        .filter(|e| e.function != KVM_SIGNATURE_LEAF)
        .collect();
    assert_eq!(pv_features(&no_sig), 0);
    // At another base (as behind Hyper-V's leaves): found there.
    let moved: Vec<Entry> = sup
        .iter()
        .map(|e| match e.function {
            KVM_SIGNATURE_LEAF | KVM_FEATURES_LEAF => Entry {
                function: e.function + 0x100,
                ..*e
            },
            _ => *e,
        })
        .collect();
    assert_eq!(pv_features(&moved), bits);
}
