// SPDX-License-Identifier: GPL-2.0

//! The model-specific registers rkvm keeps for a guest: which exist, their
//! reset values, and which values a write may store.
//!
//! One table serves `KVM_GET_MSR_INDEX_LIST`, `KVM_GET/SET_MSRS` (host
//! accesses) and the guest's RDMSR/WRMSR. Rules follow KVM's
//! `kvm_set_msr_common()`/`__kvm_set_msr()` (`arch/x86/kvm/msrs.c`,
//! `x86.c`): canonical checks on the address MSRs, `kvm_pat_valid()`, EFER
//! by the guest's CPUID, LMA read-only for the guest. An index not in the
//! table is refused (a guest gets #GP; a host access stops the batch).
//!
//! Pure logic over `core`, shared with the host tests.

use super::sregs::efer;

/// MSR numbers.
pub(crate) mod index {
    /// IA32_TIME_STAMP_COUNTER.
    pub(crate) const TSC: u32 = 0x10;
    /// IA32_APIC_BASE.
    pub(crate) const APIC_BASE: u32 = 0x1b;
    /// IA32_SYSENTER_CS.
    pub(crate) const SYSENTER_CS: u32 = 0x174;
    /// IA32_SYSENTER_ESP.
    pub(crate) const SYSENTER_ESP: u32 = 0x175;
    /// IA32_SYSENTER_EIP.
    pub(crate) const SYSENTER_EIP: u32 = 0x176;
    /// IA32_MISC_ENABLE.
    pub(crate) const MISC_ENABLE: u32 = 0x1a0;
    /// IA32_TSC_ADJUST.
    pub(crate) const TSC_ADJUST: u32 = 0x3b;
    /// MSR_K7_HWCR (emulated on every vendor, as KVM).
    pub(crate) const HWCR: u32 = 0xc001_0015;
    /// IA32_BIOS_SIGN_ID: the microcode revision (bits 63:32). The host
    /// sets it; a guest write (which asks the CPU to latch the revision)
    /// changes nothing, as on KVM.
    pub(crate) const UCODE_REV: u32 = 0x8b;
    /// IA32_PAT.
    pub(crate) const PAT: u32 = 0x277;
    /// IA32_EFER.
    pub(crate) const EFER: u32 = 0xc000_0080;
    /// IA32_STAR.
    pub(crate) const STAR: u32 = 0xc000_0081;
    /// IA32_LSTAR.
    pub(crate) const LSTAR: u32 = 0xc000_0082;
    /// IA32_CSTAR.
    pub(crate) const CSTAR: u32 = 0xc000_0083;
    /// IA32_FMASK.
    pub(crate) const SFMASK: u32 = 0xc000_0084;
    /// IA32_KERNEL_GS_BASE.
    pub(crate) const KERNEL_GS_BASE: u32 = 0xc000_0102;
    /// IA32_FS_BASE and IA32_GS_BASE: the FS and GS segment bases (in
    /// `kvm_sregs` too, so not in the index list, as on KVM).
    pub(crate) const FS_BASE: u32 = 0xc000_0100;
    pub(crate) const GS_BASE: u32 = 0xc000_0101;
    /// IA32_MCG_STATUS (the machine-check MSRs are `super::super::mce`'s).
    pub(crate) const MCG_STATUS: u32 = 0x17a;
    /// IA32_MCG_CTL.
    pub(crate) const MCG_CTL: u32 = 0x17b;
    /// IA32_TSC_DEADLINE: the APIC timer's TSC-deadline mode, which rkvm
    /// does not offer (no CPUID bit, the LVT timer refuses the mode); KVM
    /// then reads 0 and ignores writes, and so does rkvm.
    pub(crate) const TSC_DEADLINE: u32 = 0x6e0;
    /// MSR_IA32_POWER_CTL: stored, any value (KVM keeps it for guests
    /// that toggle C1E).
    pub(crate) const POWER_CTL: u32 = 0x1fc;
    /// MSR_PLATFORM_INFO: read-only for the guest, which may also be
    /// denied reading it (`KVM_CAP_MSR_PLATFORM_INFO`).
    pub(crate) const PLATFORM_INFO: u32 = 0xce;
    /// KVM's kvmclock MSRs (`super::super::kvmclock`): the first pair
    /// (KVM_FEATURE_CLOCKSOURCE) and the second (CLOCKSOURCE2) are two
    /// names for the same two registers, as on KVM.
    pub(crate) const KVM_WALL_CLOCK: u32 = 0x11;
    pub(crate) const KVM_SYSTEM_TIME: u32 = 0x12;
    pub(crate) const KVM_WALL_CLOCK_NEW: u32 = 0x4b56_4d00;
    pub(crate) const KVM_SYSTEM_TIME_NEW: u32 = 0x4b56_4d01;
}

/// What `KVM_GET_MSR_INDEX_LIST` reports: every MSR `KVM_GET/SET_MSRS`
/// save and restore (EFER and APIC_BASE travel in `kvm_sregs`, as on KVM,
/// but are accepted here too). The machine-check banks are not listed:
/// as on KVM, a VMM finds them through IA32_MCG_CAP.
pub(crate) const SAVED: [u32; 23] = [
    index::SYSENTER_CS,
    index::SYSENTER_ESP,
    index::SYSENTER_EIP,
    index::STAR,
    index::CSTAR,
    index::KERNEL_GS_BASE,
    index::SFMASK,
    index::LSTAR,
    index::TSC,
    index::TSC_ADJUST,
    index::PAT,
    index::MISC_ENABLE,
    index::UCODE_REV,
    index::MCG_STATUS,
    index::MCG_CTL,
    index::KVM_WALL_CLOCK,
    index::KVM_SYSTEM_TIME,
    index::KVM_WALL_CLOCK_NEW,
    index::KVM_SYSTEM_TIME_NEW,
    index::HWCR,
    index::PLATFORM_INFO,
    index::POWER_CTL,
    index::TSC_DEADLINE,
];

/// MSR_PLATFORM_INFO at reset: CPUID faulting supported (bit 31), as KVM
/// reports it (the value is user space's to set; rkvm does not implement
/// CPUID faulting itself).
pub(crate) const PLATFORM_INFO_RESET: u64 = 1 << 31;

/// IA32_PAT at reset.
pub(crate) const PAT_RESET: u64 = 0x0007_0406_0007_0406;
/// The microcode revision at reset (KVM's on Intel: revision 1).
pub(crate) const UCODE_REV_RESET: u64 = 1 << 32;
/// IA32_MISC_ENABLE at reset (KVM's: PEBS and BTS unavailable).
pub(crate) const MISC_ENABLE_RESET: u64 = 1 << 11 | 1 << 12;
/// MISC_ENABLE bits: EMON (guest writes ignored), MWAIT, and the PMU
/// bits a guest may not change (KVM's `MSR_IA32_MISC_ENABLE_PMU_RO_MASK`).
pub(crate) const MISC_ENABLE_EMON: u64 = 1 << 7;
pub(crate) const MISC_ENABLE_MWAIT: u64 = 1 << 18;
const MISC_ENABLE_PMU_RO: u64 = 1 << 11 | 1 << 12;

/// A guest write of `v` to MISC_ENABLE over `old` (KVM's
/// `kvm_set_msr_common()`): `None` (#GP) if a PMU read-only bit changes;
/// EMON keeps its value.
pub(crate) fn guest_misc_enable(old: u64, v: u64) -> Option<u64> {
    if (old ^ v) & MISC_ENABLE_PMU_RO != 0 {
        return None;
    }
    Some((v & !MISC_ENABLE_EMON) | (old & MISC_ENABLE_EMON))
}

/// HWCR bits a write may set (McStatusWrEn, TscFreqSel; not CpuidUserDis,
/// rkvm does not offer GP_ON_USER_CPUID) and bits silently dropped (TLB
/// cache, flush filter, IGNNE emulation), as KVM.
const HWCR_VALID: u64 = 1 << 18 | 1 << 24;
const HWCR_IGNORED: u64 = 1 << 3 | 1 << 6 | 1 << 8;

/// The MSRs rkvm stores itself (the others live in the VMCS or elsewhere
/// in the vCPU state).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Msrs {
    /// IA32_STAR.
    pub(crate) star: u64,
    /// IA32_LSTAR.
    pub(crate) lstar: u64,
    /// IA32_CSTAR.
    pub(crate) cstar: u64,
    /// IA32_FMASK.
    pub(crate) sfmask: u64,
    /// IA32_KERNEL_GS_BASE.
    pub(crate) kernel_gs_base: u64,
    /// IA32_PAT.
    pub(crate) pat: u64,
    /// IA32_MISC_ENABLE.
    pub(crate) misc_enable: u64,
    /// IA32_BIOS_SIGN_ID.
    pub(crate) ucode_rev: u64,
    /// IA32_TSC_ADJUST.
    pub(crate) tsc_adjust: u64,
    /// MSR_K7_HWCR.
    pub(crate) hwcr: u64,
    /// MSR_PLATFORM_INFO (only the host writes it).
    pub(crate) platform_info: u64,
    /// MSR_IA32_POWER_CTL.
    pub(crate) power_ctl: u64,
    /// Guest TSC minus host TSC (the VMCS TSC offset).
    pub(crate) tsc_offset: u64,
    /// MSR_KVM_SYSTEM_TIME(_NEW): the guest address of this vCPU's
    /// `pvclock_vcpu_time_info`, bit 0 the enable bit.
    pub(crate) kvm_system_time: u64,
    /// MSR_KVM_WALL_CLOCK(_NEW): the last address written (KVM keeps one
    /// per VM; rkvm per vCPU, which differs only when vCPUs read the
    /// value another one wrote).
    pub(crate) kvm_wall_clock: u64,
    /// The machine-check MSRs.
    pub(crate) mce: super::mce::Mce,
    /// The MTRRs.
    pub(crate) mtrr: super::mtrr::Mtrrs,
}

impl Default for Msrs {
    fn default() -> Self {
        Self {
            star: 0,
            lstar: 0,
            cstar: 0,
            sfmask: 0,
            kernel_gs_base: 0,
            pat: PAT_RESET,
            misc_enable: MISC_ENABLE_RESET,
            ucode_rev: UCODE_REV_RESET,
            tsc_adjust: 0,
            hwcr: 0,
            platform_info: PLATFORM_INFO_RESET,
            power_ctl: 0,
            tsc_offset: 0,
            kvm_system_time: 0,
            kvm_wall_clock: 0,
            mce: super::mce::Mce::default(),
            mtrr: super::mtrr::Mtrrs::default(),
        }
    }
}

/// What IA32_SYSENTER_ESP/EIP store from a write of `v`: KVM makes the
/// value canonical rather than refusing it (AMD ignores the upper half; a
/// canonical value keeps VM entry valid on Intel).
pub(crate) fn sysenter_address(v: u64) -> u64 {
    ((v << 16) as i64 >> 16) as u64
}

/// Whether `v` is canonical for 48-bit linear addresses.
pub(crate) fn canonical(v: u64) -> bool {
    ((v << 16) as i64 >> 16) as u64 == v
}

/// `kvm_pat_valid()`: each entry a memory type (0, 1, 4, 5, 6 or 7).
pub(crate) fn pat_valid(v: u64) -> bool {
    v & 0xf8f8_f8f8_f8f8_f8f8 == 0 && (v | ((v & 0x0202_0202_0202_0202) << 1)) == v
}

/// Whether a write of `v` to the stored MSR `index` is valid; `None` if
/// the index is not one of them.
pub(crate) fn write_valid(index: u32, v: u64) -> Option<bool> {
    Some(match index {
        index::LSTAR | index::CSTAR | index::KERNEL_GS_BASE | index::FS_BASE | index::GS_BASE => {
            canonical(v)
        }
        // Bits 63:32 are reserved on Intel CPUs (WRMSR faults): KVM, which
        // writes the value to the CPU, refuses it the same way.
        index::SFMASK => v >> 32 == 0,
        // Checked by `Mce::set`.
        index::MCG_STATUS | index::MCG_CTL => true,
        index::PAT => pat_valid(v),
        index::HWCR => v & !(HWCR_VALID | HWCR_IGNORED) == 0,
        // Made canonical instead (see `sysenter_address`).
        index::SYSENTER_ESP | index::SYSENTER_EIP => true,
        // Any address: one no slot backs is simply never written (KVM).
        index::KVM_WALL_CLOCK
        | index::KVM_SYSTEM_TIME
        | index::KVM_WALL_CLOCK_NEW
        | index::KVM_SYSTEM_TIME_NEW
        | index::STAR
        | index::MISC_ENABLE
        | index::UCODE_REV
        | index::SYSENTER_CS
        | index::TSC
        | index::TSC_ADJUST
        | index::EFER
        | index::PLATFORM_INFO
        | index::POWER_CTL
        | index::TSC_DEADLINE
        | index::APIC_BASE => true,
        _ => return None,
    })
}

impl Msrs {
    /// The value of one of the MSRs this struct stores.
    pub(crate) fn get(&self, index: u32) -> Option<u64> {
        Some(match index {
            index::STAR => self.star,
            index::LSTAR => self.lstar,
            index::CSTAR => self.cstar,
            index::SFMASK => self.sfmask,
            index::KERNEL_GS_BASE => self.kernel_gs_base,
            index::PAT => self.pat,
            index::MISC_ENABLE => self.misc_enable,
            index::UCODE_REV => self.ucode_rev,
            index::TSC_ADJUST => self.tsc_adjust,
            index::HWCR => self.hwcr,
            index::PLATFORM_INFO => self.platform_info,
            index::POWER_CTL => self.power_ctl,
            index::TSC_DEADLINE => 0,
            index::KVM_SYSTEM_TIME | index::KVM_SYSTEM_TIME_NEW => self.kvm_system_time,
            index::KVM_WALL_CLOCK | index::KVM_WALL_CLOCK_NEW => self.kvm_wall_clock,
            _ => return None,
        })
    }

    /// Stores one of the MSRs this struct holds, if `v` is valid for it.
    /// Returns `None` for another index, `Some(false)` for a refused value.
    pub(crate) fn set(&mut self, index: u32, v: u64) -> Option<bool> {
        if index == index::TSC_DEADLINE {
            return Some(true);
        }
        let slot = match index {
            index::STAR => &mut self.star,
            index::LSTAR => &mut self.lstar,
            index::CSTAR => &mut self.cstar,
            index::SFMASK => &mut self.sfmask,
            index::KERNEL_GS_BASE => &mut self.kernel_gs_base,
            index::PAT => &mut self.pat,
            index::MISC_ENABLE => &mut self.misc_enable,
            index::UCODE_REV => &mut self.ucode_rev,
            index::HWCR => &mut self.hwcr,
            index::PLATFORM_INFO => &mut self.platform_info,
            index::POWER_CTL => &mut self.power_ctl,
            index::KVM_SYSTEM_TIME | index::KVM_SYSTEM_TIME_NEW => &mut self.kvm_system_time,
            index::KVM_WALL_CLOCK | index::KVM_WALL_CLOCK_NEW => &mut self.kvm_wall_clock,
            _ => return None,
        };
        if !write_valid(index, v)? {
            return Some(false);
        }
        *slot = if index == index::HWCR {
            v & !HWCR_IGNORED
        } else {
            v
        };
        Some(true)
    }
}

impl Msrs {
    /// STAR, LSTAR, CSTAR, FMASK and KERNEL_GS_BASE: the MSRs the VMX
    /// window switches (see `vmx::window::SYSCALL_MSRS` for the order).
    pub(crate) fn syscall(&self) -> [u64; 5] {
        [
            self.star,
            self.lstar,
            self.cstar,
            self.sfmask,
            self.kernel_gs_base,
        ]
    }
}

/// The EFER a guest WRMSR produces from `old`: LMA is read-only for the
/// guest.
pub(crate) fn guest_efer(old: u64, v: u64) -> u64 {
    (v & !efer::LMA) | (old & efer::LMA)
}
