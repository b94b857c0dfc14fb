// SPDX-License-Identifier: GPL-2.0

//! Guest CPUID as set by `KVM_SET_CPUID2`: lookup, validation, the features
//! that decide register validity, and the bits KVM owns at run time. Pure
//! logic over `core`, shared with the host tests.
//!
//! Follows `arch/x86/kvm/cpuid.c`: `kvm_find_cpuid_entry_index()`,
//! `kvm_check_cpuid()`, `cpuid_query_maxphyaddr()` and
//! `kvm_update_cpuid_runtime()`.

use super::sregs::GuestCpu;

/// `KVM_MAX_CPUID_ENTRIES`.
pub(crate) const MAX_ENTRIES: usize = 256;

/// `KVM_CPUID_FLAG_SIGNIFCANT_INDEX`: the entry applies to one subleaf.
const FLAG_SIGNIFICANT_INDEX: u32 = 1;

/// One CPUID leaf (or subleaf) as the VMM gave it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Entry {
    /// EAX input.
    pub(crate) function: u32,
    /// ECX input, when `flags` says it matters.
    pub(crate) index: u32,
    /// `KVM_CPUID_FLAG_*`.
    pub(crate) flags: u32,
    /// Output EAX.
    pub(crate) eax: u32,
    /// Output EBX.
    pub(crate) ebx: u32,
    /// Output ECX.
    pub(crate) ecx: u32,
    /// Output EDX.
    pub(crate) edx: u32,
}

/// The entry answering CPUID(`function`, `index`).
pub(crate) fn find(entries: &[Entry], function: u32, index: u32) -> Option<usize> {
    entries.iter().position(|e| {
        e.function == function && (e.index == index || e.flags & FLAG_SIGNIFICANT_INDEX == 0)
    })
}

/// The KVM paravirtual feature bits of a guest CPUID (KVM's
/// `kvm_get_hypervisor_cpuid()` and `pv_cpuid.features`): EAX of leaf
/// base + 1, where base is the first of 0x40000000, 0x40000100, ...,
/// 0x4000ff00 that carries the "KVMKVMKVM" signature; 0 without one.
pub(crate) fn pv_features(entries: &[Entry]) -> u32 {
    let sig = [
        u32::from_le_bytes(*b"KVMK"),
        u32::from_le_bytes(*b"VMKV"),
        u32::from_le_bytes(*b"M\0\0\0"),
    ];
    (0..0x100u32)
        .map(|i| KVM_SIGNATURE_LEAF + (i << 8))
        .find(|&base| {
            find(entries, base, 0)
                .is_some_and(|i| [entries[i].ebx, entries[i].ecx, entries[i].edx] == sig)
        })
        .and_then(|base| find(entries, base | 1, 0))
        .map_or(0, |i| entries[i].eax)
}

/// `kvm_check_cpuid()`: the only linear-address widths KVM's canonical
/// checks handle are 48 and 57 bits (0 means "not reported").
pub(crate) fn valid(entries: &[Entry]) -> bool {
    match find(entries, 0x8000_0008, 0) {
        Some(i) => matches!((entries[i].eax >> 8) & 0xff, 0 | 48 | 57),
        None => true,
    }
}

fn bit(v: u32, n: u32) -> bool {
    v & (1 << n) != 0
}

/// The guest features that decide register validity.
pub(crate) fn guest_cpu(entries: &[Entry]) -> GuestCpu {
    let ext = find(entries, 0x8000_0001, 0).map(|i| entries[i]);
    let leaf1 = find(entries, 1, 0).map(|i| entries[i]);
    let max_ext = find(entries, 0x8000_0000, 0).map_or(0, |i| entries[i].eax);
    let default = GuestCpu::NO_CPUID.maxphyaddr;
    let maxphyaddr = if max_ext >= 0x8000_0008 {
        find(entries, 0x8000_0008, 0).map_or(default, |i| entries[i].eax & 0xff)
    } else {
        default
    };
    GuestCpu {
        long_mode: ext.is_some_and(|e| bit(e.edx, 29)),
        nx: ext.is_some_and(|e| bit(e.edx, 20)),
        gbpages: ext.is_some_and(|e| bit(e.edx, 26)),
        x2apic: leaf1.is_some_and(|e| bit(e.ecx, 21)),
        maxphyaddr,
    }
}

/// Size of the XSAVE area for XCR0 = x87 only, the only state rkvm lets a
/// guest enable today: the legacy region and the header.
const XSAVE_SIZE_X87: u32 = 512 + 64;

/// Applies the bits KVM owns at run time to `entries`, as
/// `kvm_update_cpuid_runtime()` does: OSXSAVE and OSPKE mirror CR4,
/// the APIC flag mirrors IA32_APIC_BASE's global enable, and leaf 0xD
/// reports the XSAVE area size of the enabled state.
pub(crate) fn update_runtime(entries: &mut [Entry], cr4: u64, apic_base: u64) {
    let set = |v: &mut u32, n: u32, on: bool| {
        if on {
            *v |= 1 << n;
        } else {
            *v &= !(1 << n);
        }
    };
    if let Some(i) = find(entries, 1, 0) {
        set(&mut entries[i].ecx, 27, cr4 & (1 << 18) != 0);
        set(&mut entries[i].edx, 9, apic_base & (1 << 11) != 0);
    }
    if let Some(i) = find(entries, 7, 0) {
        set(&mut entries[i].ecx, 4, cr4 & (1 << 22) != 0);
    }
    if let Some(i) = find(entries, 0xd, 0) {
        entries[i].ebx = XSAVE_SIZE_X87;
    }
    if let Some(i) = find(entries, 0xd, 1) {
        // Only with XSAVEC or XSAVES.
        if entries[i].eax & 0b1010 != 0 {
            entries[i].ebx = XSAVE_SIZE_X87;
        }
    }
}

/// Whether the guest's CPUID(`function`, 0) has bit `n` of register `reg`
/// (0 EAX, 1 EBX, 2 ECX, 3 EDX).
pub(crate) fn has(entries: &[Entry], function: u32, reg: usize, n: u32) -> bool {
    find(entries, function, 0).is_some_and(|i| {
        let e = entries[i];
        bit([e.eax, e.ebx, e.ecx, e.edx][reg], n)
    })
}

/// With KVM_X86_QUIRK_MISC_ENABLE_NO_MWAIT disabled, CPUID.1:ECX.MWAIT
/// mirrors IA32_MISC_ENABLE.MWAIT (KVM's `kvm_update_cpuid_runtime()`).
pub(crate) fn update_mwait(entries: &mut [Entry], on: bool) {
    if let Some(i) = find(entries, 1, 0) {
        entries[i].ecx = (entries[i].ecx & !(1 << 3)) | u32::from(on) << 3;
    }
}

/// The CPUID a guest sees when user space never set one: a small table
/// that describes only what rkvm runs today (unpaged modes: no PSE/PAE
/// advertised, no APIC, no XSAVE), with its own vendor string. KVM would
/// return zeros everywhere; a guest that probes CPUID gets a sane answer.
pub(crate) const DEFAULT: [Entry; 3] = [
    Entry {
        function: 0,
        index: 0,
        flags: 0,
        eax: 1,
        // "rkvmrkvmrkvm" in EBX, EDX, ECX order.
        ebx: u32::from_le_bytes(*b"rkvm"),
        ecx: u32::from_le_bytes(*b"rkvm"),
        edx: u32::from_le_bytes(*b"rkvm"),
    },
    Entry {
        function: 1,
        index: 0,
        flags: 0,
        // Family 6, as the reset value of RDX says.
        eax: 0x600,
        ebx: 0,
        ecx: 0,
        // FPU, TSC, MSR, CX8, CMOV, FXSR, SSE, SSE2.
        edx: 1 | 1 << 4 | 1 << 5 | 1 << 8 | 1 << 15 | 1 << 24 | 1 << 25 | 1 << 26,
    },
    Entry {
        function: 0x8000_0000,
        index: 0,
        flags: 0,
        eax: 0x8000_0000,
        ebx: 0,
        ecx: 0,
        edx: 0,
    },
];

/// What CPUID(`function`, `index`) returns in the guest (EAX, EBX, ECX,
/// EDX), by KVM's rules (`kvm_cpuid()` in `arch/x86/kvm/cpuid.c`): the
/// matching entry; else, for a function above the maximum of its range on
/// a non-AMD vendor, the maximum basic leaf (what Intel CPUs do); else
/// zeros. Leaves 0xB and 0x1F keep the subleaf in ECX and the x2APIC ID in
/// EDX even for undefined subleaves.
pub(crate) fn lookup(entries: &[Entry], function: u32, index: u32) -> [u32; 4] {
    let regs = |e: &Entry| [e.eax, e.ebx, e.ecx, e.edx];
    if let Some(i) = find(entries, function, index) {
        return regs(&entries[i]);
    }
    let Some(basic) = find(entries, 0, 0).map(|i| entries[i]) else {
        return [0; 4];
    };
    let amd = (basic.ebx, basic.ecx, basic.edx)
        == (
            u32::from_le_bytes(*b"Auth"),
            u32::from_le_bytes(*b"cAMD"),
            u32::from_le_bytes(*b"enti"),
        )
        || (basic.ebx, basic.ecx, basic.edx)
            == (
                u32::from_le_bytes(*b"Hygo"),
                u32::from_le_bytes(*b"uine"),
                u32::from_le_bytes(*b"nGen"),
            );
    if amd {
        return [0; 4];
    }
    let class = match function {
        0x4000_0000..=0x4fff_ffff => function & 0xffff_ff00,
        0xc000_0000.. => 0xc000_0000,
        _ => function & 0x8000_0000,
    };
    if let Some(c) = find(entries, class, 0) {
        if function <= entries[c].eax {
            return [0; 4];
        }
    }
    let max = basic.eax;
    match find(entries, max, index) {
        Some(i) => regs(&entries[i]),
        None if max == 0xb || max == 0x1f => {
            let edx = find(entries, max, 0).map_or(0, |i| entries[i].edx);
            [0, 0, index & 0xff, edx]
        }
        None => [0; 4],
    }
}

/// Leaf 1 EDX bits rkvm can give a guest (when the host has them): FPU,
/// DE (MOV DR is emulated with CR4.DE's rules), PSE, TSC, MSR, PAE, MCE
/// and MCA (the machine-check MSRs and `KVM_X86_SETUP_MCE`), CX8, SEP,
/// MTRR (`super::mtrr`), PGE, CMOV, PAT, PSE-36, CLFLUSH, MMX, FXSR, SSE,
/// SSE2, APIC (the in-kernel local APIC of a split irqchip,
/// `super::lapic`; a VMM without one clears it, as with KVM). Not: VME,
/// HTT and the rest.
const LEAF1_EDX: u32 = 1
    | 1 << 2
    | 1 << 9
    | 1 << 7
    | 1 << 12
    | 1 << 14
    | 1 << 3
    | 1 << 4
    | 1 << 5
    | 1 << 6
    | 1 << 8
    | 1 << 11
    | 1 << 13
    | 1 << 15
    | 1 << 16
    | 1 << 17
    | 1 << 19
    | 1 << 23
    | 1 << 24
    | 1 << 25
    | 1 << 26;
/// Leaf 1 ECX: instructions that run natively (SSE3, PCLMULQDQ, SSSE3,
/// CX16, SSE4.1, SSE4.2, MOVBE, POPCNT, AES, RDRAND); not XSAVE/OSXSAVE
/// and what needs it (AVX, FMA, F16C), TSC deadline.
const LEAF1_ECX: u32 =
    1 | 1 << 1 | 1 << 9 | 1 << 13 | 1 << 19 | 1 << 20 | 1 << 22 | 1 << 23 | 1 << 25 | 1 << 30;
/// Leaf 1 ECX bit 31: running under a hypervisor (KVM sets it too), and
/// bit 21, x2APIC, which the in-kernel local APIC emulates whatever the
/// host has (as KVM).
const LEAF1_ECX_HYPERVISOR: u32 = 1 << 31 | 1 << 21;
/// Leaf 7.0 EBX: BMI1, BMI2, ERMS, ADX.
const LEAF7_EBX: u32 = 1 << 3 | 1 << 8 | 1 << 9 | 1 << 19;
/// Leaf 7.0 EBX TSC_ADJUST: IA32_TSC_ADJUST is emulated, host or not (KVM's
/// `EMULATED_F(TSC_ADJUST)`).
const LEAF7_EBX_EMULATED: u32 = 1 << 1;
/// Leaf 0x80000001 ECX: LAHF/SAHF, LZCNT, PREFETCHW.
const EXT1_ECX: u32 = 1 | 1 << 5 | 1 << 8;
/// Leaf 0x80000001 EDX: SYSCALL/SYSRET (their MSRs are switched around
/// the VMX window), NX (the shadow tables honour it), 1 GiB pages (the
/// walker takes them; their shadows are direct pages of 2 MiB entries) and
/// long mode (4-level shadow tables). Not RDTSCP.
const EXT1_EDX: u32 = 1 << 11 | 1 << 20 | 1 << 26 | 1 << 29;

/// KVM's paravirtual features rkvm offers (leaf 0x40000001 EAX): the
/// kvmclock and KVM_FEATURE_NOP_IO_DELAY (bit 1: port 0x80 delays are
/// pointless in a VM; a hint that asks nothing of the hypervisor). Not the
/// ones that need host work: async page faults, steal time, PV EOI, PV
/// TLB flush, the kvmclock stable bit.
const KVM_FEATURES: u32 = super::kvmclock::FEATURES | 1 << 1;

/// KVM's paravirtual CPUID leaves: the signature and the feature bits.
pub(crate) const KVM_SIGNATURE_LEAF: u32 = 0x4000_0000;
pub(crate) const KVM_FEATURES_LEAF: u32 = 0x4000_0001;

/// `KVM_GET_SUPPORTED_CPUID`: what rkvm can run, as a table a VMM may
/// narrow and hand to `KVM_SET_CPUID2`. `host` executes CPUID. Leaves are
/// limited to those rkvm describes: 0, 1, 7.0, KVM's paravirtual leaves
/// 0x40000000 (the "KVMKVMKVM" signature, as KVM: rkvm implements that
/// interface) and 0x40000001 (the kvmclock features and NOP_IO_DELAY), 0x80000000,
/// 0x80000001 and 0x80000008 (address sizes: the host's physical width, 48
/// linear bits).
pub(crate) fn supported(host: impl Fn(u32, u32) -> [u32; 4]) -> [Entry; 8] {
    let h0 = host(0, 0);
    let h1 = host(1, 0);
    let h7 = if h0[0] >= 7 { host(7, 0) } else { [0; 4] };
    let hx = host(0x8000_0000, 0);
    let hx1 = if hx[0] >= 0x8000_0001 {
        host(0x8000_0001, 0)
    } else {
        [0; 4]
    };
    let phys = if hx[0] >= 0x8000_0008 {
        host(0x8000_0008, 0)[0] & 0xff
    } else {
        36
    };
    let leaf = |function, index, flags, r: [u32; 4]| Entry {
        function,
        index,
        flags,
        eax: r[0],
        ebx: r[1],
        ecx: r[2],
        edx: r[3],
    };
    [
        leaf(0, 0, 0, [7, h0[1], h0[2], h0[3]]),
        // EBX keeps only the CLFLUSH line size (APIC ids and counts are the
        // VMM's to set).
        leaf(
            1,
            0,
            0,
            [
                h1[0],
                h1[1] & 0xff00,
                (h1[2] & LEAF1_ECX) | LEAF1_ECX_HYPERVISOR,
                h1[3] & LEAF1_EDX,
            ],
        ),
        leaf(
            7,
            0,
            FLAG_SIGNIFICANT_INDEX,
            [0, (h7[1] & LEAF7_EBX) | LEAF7_EBX_EMULATED, 0, 0],
        ),
        leaf(
            KVM_SIGNATURE_LEAF,
            0,
            0,
            [
                KVM_FEATURES_LEAF,
                u32::from_le_bytes(*b"KVMK"),
                u32::from_le_bytes(*b"VMKV"),
                u32::from_le_bytes(*b"M\0\0\0"),
            ],
        ),
        leaf(KVM_FEATURES_LEAF, 0, 0, [KVM_FEATURES, 0, 0, 0]),
        leaf(0x8000_0000, 0, 0, [0x8000_0008, 0, 0, 0]),
        leaf(
            0x8000_0001,
            0,
            0,
            [0, 0, hx1[2] & EXT1_ECX, hx1[3] & EXT1_EDX],
        ),
        leaf(0x8000_0008, 0, 0, [phys | 48 << 8, 0, 0, 0]),
    ]
}
